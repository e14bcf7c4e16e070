"""Acquisition quality control: margin (saturated) events and unstable Time stretches.

``qc_time`` follows the idea of PeacoQC (Emmaneel et al. 2022): cut the acquisition
into consecutive bins of events, compute per bin the flow rate (events per unit of
Time) and the median of every fluorescence channel, and remove whole bins whose
signals are anomalous. Robust statistics only: a signal's bins are scored by
``(value - median) / (1.4826 * MAD)``. A bin is anomalous when one score exceeds
``mad_threshold`` (a spike), or when a run of at least ``min_run`` consecutive bins
has a rolling-median score above ``shift_threshold`` (a sustained shift: a clog, a
bubble, a drift). Short kept gaps between removed stretches are removed too.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from anndata import AnnData
from scipy.ndimage import median_filter

from nkflow.exceptions import ChannelNotFoundError, ConfigError
from nkflow.pp.compensate import compensate_array

__all__ = ["qc", "qc_margins", "qc_time"]

log = logging.getLogger(__name__)

_MAD_SCALE = 1.4826


def _meta(adata: AnnData) -> dict[str, Any]:
    meta = adata.uns.get("nkflow")
    if not isinstance(meta, dict):
        meta = {}
        adata.uns["nkflow"] = meta
    return meta


def _label(adata: AnnData) -> str:
    sample = (adata.uns.get("nkflow") or {}).get("sample") or {}
    return str(sample.get("sample_id") or sample.get("path") or "<sample>")


def _kinds(adata: AnnData) -> list[str]:
    if "kind" in adata.var.columns:
        return [str(k) for k in adata.var["kind"]]
    out = []
    for name in map(str, adata.var_names):
        up = name.upper()
        out.append(
            "time"
            if up == "TIME"
            else "scatter"
            if up.startswith(("FSC", "SSC"))
            else "fluorescence"
        )
    return out


def _linear_raw(adata: AnnData, cols: list[int]) -> np.ndarray:
    """Raw (uncompensated, untransformed) float32 values of ``cols``, rebuilt if needed."""
    meta = adata.uns.get("nkflow") or {}
    if "compensated" in adata.layers:
        src = np.asarray(adata.layers["compensated"])
    elif "transform" in meta:
        raise ConfigError(f"{_label(adata)}: margins need linear data; run qc before transform")
    else:
        src = np.asarray(adata.X)
    x = np.take(src, cols, axis=1).astype(np.float32, copy=False)
    comp = meta.get("compensation") or {}
    if "compensated" in adata.layers and comp.get("channels") and comp.get("matrix"):
        names = [str(c) for c in adata.var_names]
        pos = {j: i for i, j in enumerate(cols)}
        chans = [names.index(c) for c in comp["channels"]]
        spill = np.asarray(comp["matrix"], dtype=np.float64)
        full = np.take(src, chans, axis=1)
        raw = compensate_array(full, np.linalg.inv(spill))  # comp @ S
        for k, j in enumerate(chans):
            if j in pos:
                x[:, pos[j]] = raw[:, k]
    return x


def _margin_mask(
    adata: AnnData,
    channels: Sequence[str] | None,
    kinds: Sequence[str],
    upper: bool,
    lower: bool,
    min_pile_fraction: float,
) -> tuple[np.ndarray, dict[str, int], list[str]]:
    names = [str(c) for c in adata.var_names]
    all_kinds = _kinds(adata)
    if channels is None:
        chans = [c for c, k in zip(names, all_kinds, strict=True) if k in kinds]
    else:
        missing = [c for c in channels if c not in names]
        if missing:
            raise ChannelNotFoundError(", ".join(missing), names, source=_label(adata))
        chans = list(channels)
    n = adata.n_obs
    if not chans or n == 0:
        return np.zeros(n, dtype=bool), dict.fromkeys(chans, 0), chans
    cols = [names.index(c) for c in chans]
    x = _linear_raw(adata, cols)
    flags = np.zeros(x.shape, dtype=bool)
    if upper and "range" in adata.var.columns:
        rng = adata.var["range"].to_numpy(dtype=np.float64)[cols]
        ok = np.isfinite(rng) & (rng > 0)
        thr = np.where(ok, (rng - 1) * (1 - 1e-6), np.inf)  # rebuilt raw values may round
        flags |= x >= thr.astype(np.float32)
    if lower:
        at_min = x <= x.min(axis=0)
        pile = at_min.sum(axis=0) >= max(2.0, min_pile_fraction * n)
        flags |= at_min & pile
    per = dict(zip(chans, (int(v) for v in flags.sum(axis=0)), strict=True))
    return flags.any(axis=1), per, chans


def qc_margins(
    adata: AnnData,
    *,
    channels: Sequence[str] | None = None,
    kinds: Sequence[str] = ("scatter", "fluorescence"),
    upper: bool = True,
    lower: bool = True,
    min_pile_fraction: float = 0.001,
    key_added: str | None = "qc_margin_pass",
) -> dict[str, Any]:
    """Flag saturated (margin) events.

    An event fails when, on any checked channel, its raw value is ``>= $PnR - 1``
    (upper margin) or equals the channel's minimum while at least
    ``min_pile_fraction`` of the events pile up there (lower margin). Works on raw
    linear data; after compensation the raw values are rebuilt from the recorded
    matrix.

    Parameters
    ----------
    adata
        Sample container (linear ``X``).
    channels
        Channels to check; default all of the given ``kinds``.
    kinds
        ``var["kind"]`` values checked when ``channels`` is None.
    upper, lower
        Check the upper / lower margin.
    min_pile_fraction
        Fraction of events that must sit at the minimum for it to count as a margin.
    key_added
        Bool obs column written (True = passes); None writes nothing.

    Returns
    -------
    dict
        ``passed`` (bool array), ``removed`` (events failing), ``per_channel`` counts
        and ``params``.
    """
    bad, per, chans = _margin_mask(adata, channels, kinds, upper, lower, min_pile_fraction)
    if key_added is not None:
        adata.obs[key_added] = ~bad
    return {
        "passed": ~bad,
        "removed": int(bad.sum()),
        "per_channel": per,
        "params": {
            "channels": chans,
            "upper": bool(upper),
            "lower": bool(lower),
            "min_pile_fraction": float(min_pile_fraction),
        },
    }


def _time_channel(adata: AnnData) -> str | None:
    for name, kind in zip(map(str, adata.var_names), _kinds(adata), strict=True):
        if kind == "time":
            return name
    return None


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Start/stop (exclusive) of each run of True."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1), strict=True))


def _robust_z(s: np.ndarray) -> np.ndarray:
    """Per-column ``(s - median) / (1.4826 MAD)``; constant columns score 0."""
    med = np.nanmedian(s, axis=0)
    mad = _MAD_SCALE * np.nanmedian(np.abs(s - med), axis=0)
    mad = np.where(mad > 0, mad, np.inf)
    return (s - med) / mad


def _bin_signals(
    x: np.ndarray, t: np.ndarray, epb: int, transformed: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bin edges, per-bin log flow rate and channel medians (asinh scale if linear).

    Bins hold ``epb`` consecutive events; the last one also takes the remainder.
    """
    n = x.shape[0]
    nb = max(1, n // epb)
    edges = np.append(np.arange(nb) * epb, n)
    first, last = edges[:-1], edges[1:] - 1
    dt = t[last] - t[first]
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(dt > 0, np.log((last - first) / dt), np.nan)
    med = np.empty((nb, x.shape[1]))
    if x.shape[1]:
        bulk = (nb - 1) * epb
        if nb > 1:
            med[:-1] = np.median(x[:bulk].reshape(nb - 1, epb, -1), axis=1)
        med[-1] = np.median(x[bulk:], axis=0)
        med = np.where(transformed, med, np.arcsinh(med / 150.0))
    return edges, rate, med


def qc_time(
    adata: AnnData,
    *,
    events_per_bin: int | None = None,
    channels: Sequence[str] | None = None,
    mad_threshold: float = 6.0,
    shift_threshold: float = 3.5,
    smooth_bins: int = 5,
    min_run: int = 3,
    max_gap: int = 2,
    edge_threshold: float = 3.0,
    key_added: str | None = "qc_time_pass",
    mask: np.ndarray | None = None,
) -> dict[str, Any]:
    """Flag unstable acquisition stretches from Time (PeacoQC-like).

    Parameters
    ----------
    adata
        Sample container with a channel of kind ``time``.
    events_per_bin
        Events per bin; default ``n // 100`` clipped to [100, 1000].
    channels
        Channels whose per-bin medians are checked; default the fluorescence channels.
    mad_threshold
        Robust z-score above which one bin is a spike.
    shift_threshold
        Rolling-median z-score above which a run of bins is a sustained shift.
    smooth_bins
        Width (bins) of the rolling median.
    min_run
        Minimum length (bins) of a sustained shift.
    max_gap
        Kept stretches of at most this many bins between removed ones are removed.
    edge_threshold
        A sustained shift grows into neighbouring bins (mixed bins at its edges)
        while one of their scores exceeds this.
    key_added
        Bool obs column written (True = passes); None writes nothing.
    mask
        Events to consider (others are left out of the bins and marked as failing).

    Returns
    -------
    dict
        ``passed`` (bool array), ``skipped`` (reason or None), ``removed``, ``bins``,
        ``bins_removed`` and ``params``.
    """
    n = adata.n_obs
    use = np.ones(n, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    params: dict[str, Any] = {
        "mad_threshold": float(mad_threshold),
        "shift_threshold": float(shift_threshold),
        "smooth_bins": int(smooth_bins),
        "min_run": int(min_run),
        "max_gap": int(max_gap),
        "edge_threshold": float(edge_threshold),
    }
    time_ch = _time_channel(adata)
    pass_ = use.copy()
    result: dict[str, Any] = {"skipped": None, "removed": 0, "bins": 0, "bins_removed": 0}
    ev = np.flatnonzero(use)
    reason = None
    if time_ch is None:
        reason = "no Time channel"
    elif ev.size < 2 * 100:
        reason = f"too few events for time QC ({ev.size} < 200)"
    if reason is None:
        col = list(map(str, adata.var_names)).index(time_ch)
        t = np.asarray(adata.X[:, col], dtype=np.float64)[ev]  # Time is never transformed
        if np.ptp(t) <= 0:
            reason = f"Time channel {time_ch!r} is constant"
    if reason is not None:
        log.info("%s: time QC skipped: %s", _label(adata), reason)
        result["skipped"] = reason
        if key_added is not None:
            adata.obs[key_added] = pass_
        result["params"] = params
        result["passed"] = pass_
        return result
    epb = events_per_bin or int(np.clip(ev.size // 100, 100, 1000))
    params["events_per_bin"] = int(epb)
    params["time_channel"] = time_ch
    names = list(map(str, adata.var_names))
    kinds = _kinds(adata)
    chans = (
        [c for c, k in zip(names, kinds, strict=True) if k == "fluorescence"]
        if channels is None
        else list(channels)
    )
    params["channels"] = chans
    cidx = [names.index(c) for c in chans]
    x = np.asarray(adata.X, dtype=np.float32)[np.ix_(ev, cidx)] if cidx else np.empty((ev.size, 0))
    tf = adata.var["transform"] if "transform" in adata.var.columns else None
    transformed = np.array(
        [bool(tf is not None and tf.iloc[j] in ("logicle", "arcsinh")) for j in cidx]
    )
    edges, rate, med = _bin_signals(x, t, epb, transformed)
    nb = edges.size - 1
    sig = np.column_stack([rate, med]) if med.size else rate[:, None]
    z = np.nan_to_num(_robust_z(sig), nan=0.0)
    zmax = np.abs(z).max(axis=1)
    spike = zmax > mad_threshold
    k = max(1, int(smooth_bins))
    zs = median_filter(z, size=(k, 1), mode="nearest") if nb >= k else z
    shift = np.any(np.abs(zs) > shift_threshold, axis=1)
    shift_runs = np.zeros(nb, dtype=bool)
    for a, b in _runs(shift):
        if b - a >= min_run:
            while a > 0 and zmax[a - 1] > edge_threshold:
                a -= 1
            while b < nb and zmax[b] > edge_threshold:
                b += 1
            shift_runs[a:b] = True
    bad = spike | shift_runs
    for a, b in _runs(~bad):
        if 0 < a and b < nb and b - a <= max_gap:
            bad[a:b] = True
    for i in np.flatnonzero(bad):
        pass_[ev[edges[i] : edges[i + 1]]] = False
    if key_added is not None:
        adata.obs[key_added] = pass_
    result.update(
        passed=pass_,
        removed=int(use.sum() - pass_.sum()),
        bins=int(nb),
        bins_removed=int(bad.sum()),
        params=params,
    )
    return result


def qc(
    adata: AnnData,
    *,
    time: bool = True,
    margins: bool = True,
    remove: bool = True,
    margin_kwargs: dict[str, Any] | None = None,
    time_kwargs: dict[str, Any] | None = None,
    inplace: bool = True,
) -> AnnData | None:
    """Run margin QC, then time QC on the events that pass it.

    Writes bool ``obs["qc_pass"]`` and ``uns["nkflow"]["qc"] = {n_in, n_out,
    removed_time, removed_margin, bins_removed, params}`` (``params`` also records
    why time QC was skipped, e.g. a file without a Time channel).

    Parameters
    ----------
    adata
        Sample container with linear data (run before ``transform``).
    time, margins
        Which checks to run.
    remove
        Drop failing events (else keep them, flagged in ``qc_pass``).
    margin_kwargs, time_kwargs
        Options passed to :func:`qc_margins` and :func:`qc_time`.
    inplace
        Modify ``adata`` and return None; else return a new container.

    Returns
    -------
    AnnData or None
        The QC'd container when ``inplace=False``.
    """
    if not inplace:
        adata = adata.copy()
    n_in = adata.n_obs
    passed = np.ones(n_in, dtype=bool)
    params: dict[str, Any] = {"time": bool(time), "margins": bool(margins), "remove": bool(remove)}
    removed_margin = removed_time = bins_removed = 0
    if margins:
        res = qc_margins(adata, **({"key_added": None} | (margin_kwargs or {})))
        passed &= res["passed"]
        removed_margin = res["removed"]
        params["margin"] = res["params"] | {"per_channel": res["per_channel"]}
    if time:
        res = qc_time(adata, mask=passed, **({"key_added": None} | (time_kwargs or {})))
        passed &= res["passed"]
        removed_time = res["removed"]
        bins_removed = res["bins_removed"]
        params["time_qc"] = res["params"] | {"bins": res["bins"], "skipped": res["skipped"]}
    adata.obs["qc_pass"] = passed
    record = {
        "n_in": int(n_in),
        "n_out": int(passed.sum()),
        "removed_time": int(removed_time),
        "removed_margin": int(removed_margin),
        "bins_removed": int(bins_removed),
        "params": params,
    }
    _meta(adata)["qc"] = record
    log.info(
        "%s: QC kept %d of %d events (margin %d, time %d removed)",
        _label(adata),
        record["n_out"],
        n_in,
        removed_margin,
        removed_time,
    )
    if remove and not passed.all():
        if inplace:
            adata._inplace_subset_obs(passed)
            return None
        return adata[passed].copy()
    return None if inplace else adata
