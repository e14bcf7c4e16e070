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


def _linear_raw(adata: AnnData) -> np.ndarray:
    """Raw (uncompensated, untransformed) linear values, rebuilt when needed."""
    meta = adata.uns.get("nkflow") or {}
    comp = meta.get("compensation")
    if "compensated" in adata.layers:
        x = np.array(adata.layers["compensated"], dtype=np.float64)
    elif "transform" in meta:
        raise ConfigError(f"{_label(adata)}: margins need linear data; run qc before transform")
    else:
        x = np.asarray(adata.X, dtype=np.float64)
    if comp and comp.get("channels") and comp.get("matrix"):
        col = {str(c): i for i, c in enumerate(adata.var_names)}
        idx = [col[c] for c in comp["channels"]]
        x[:, idx] = x[:, idx] @ np.asarray(comp["matrix"], dtype=np.float64)
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
    x = _linear_raw(adata)
    n = x.shape[0]
    bad = np.zeros(n, dtype=bool)
    per: dict[str, int] = {}
    ranges = adata.var["range"] if "range" in adata.var.columns else None
    for ch in chans:
        j = names.index(ch)
        v = x[:, j]
        flag = np.zeros(n, dtype=bool)
        if upper and ranges is not None:
            rng = float(ranges.iloc[j])
            if np.isfinite(rng) and rng > 0:
                flag |= v >= (rng - 1) * (1 - 1e-6)  # rebuilt raw values may round
        if lower and n:
            vmin = float(np.min(v))
            at_min = v <= vmin
            if at_min.sum() >= max(2, min_pile_fraction * n):
                flag |= at_min
        per[ch] = int(flag.sum())
        bad |= flag
    return bad, per, chans


def qc_margins(
    adata: AnnData,
    *,
    channels: Sequence[str] | None = None,
    kinds: Sequence[str] = ("scatter", "fluorescence"),
    upper: bool = True,
    lower: bool = True,
    min_pile_fraction: float = 0.001,
    key_added: str = "qc_margin_pass",
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
        Bool obs column written (True = passes).

    Returns
    -------
    dict
        ``removed`` (events failing), ``per_channel`` counts and ``params``.
    """
    bad, per, chans = _margin_mask(adata, channels, kinds, upper, lower, min_pile_fraction)
    adata.obs[key_added] = ~bad
    return {
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
    x: np.ndarray, t: np.ndarray, edges: np.ndarray, transformed: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin log flow rate and per-bin channel medians (asinh scale if linear)."""
    nb = edges.size - 1
    rate = np.full(nb, np.nan)
    med = np.empty((nb, x.shape[1]))
    for i in range(nb):
        a, b = edges[i], edges[i + 1]
        dt = float(t[b - 1] - t[a]) if b - a > 1 else 0.0
        if dt > 0:
            rate[i] = np.log((b - a - 1) / dt)
        med[i] = np.median(x[a:b], axis=0)
    med = np.where(transformed, med, np.arcsinh(med / 150.0))
    return rate, med


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
    key_added: str = "qc_time_pass",
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
        Bool obs column written (True = passes).
    mask
        Events to consider (others are left out of the bins and marked as failing).

    Returns
    -------
    dict
        ``skipped`` (reason or None), ``removed``, ``bins``, ``bins_removed`` and ``params``.
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
        adata.obs[key_added] = pass_
        result["params"] = params
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
    nb = max(1, round(ev.size / epb))
    edges = np.linspace(0, ev.size, nb + 1).round().astype(int)
    rate, med = _bin_signals(x, t, edges, transformed)
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
    adata.obs[key_added] = pass_
    result.update(
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
        res = qc_margins(adata, **(margin_kwargs or {}))
        key = (margin_kwargs or {}).get("key_added", "qc_margin_pass")
        passed &= adata.obs[key].to_numpy(dtype=bool)
        removed_margin = res["removed"]
        params["margin"] = res["params"] | {"per_channel": res["per_channel"]}
    if time:
        res = qc_time(adata, mask=passed, **(time_kwargs or {}))
        key = (time_kwargs or {}).get("key_added", "qc_time_pass")
        passed &= adata.obs[key].to_numpy(dtype=bool)
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
