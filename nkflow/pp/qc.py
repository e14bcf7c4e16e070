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


def _ceilings(adata: AnnData, cols: list[int]) -> np.ndarray:
    """Largest value each channel can hold: ``$PnR - 1`` decoded like the events.

    Log-amplified channels (``$PnE = f1,f2``, f1 > 0) hold ``f2 * 10^(f1 (R-1)/R)``;
    linear ones ``(R - 1) / $PnG``. NaN when the range is unknown.
    """
    fcs = (adata.uns.get("nkflow") or {}).get("fcs") or {}
    kw = {str(k).upper(): v for k, v in (fcs.get("keywords") or {}).items()}
    if "range" in adata.var.columns:
        ranges = adata.var["range"].to_numpy(dtype=np.float64)
    else:
        ranges = np.full(adata.n_vars, np.nan)
    out = np.full(len(cols), np.nan)
    for i, j in enumerate(cols):
        r = ranges[j]
        if not (np.isfinite(r) and r > 0):
            continue
        try:
            f1, f2 = (float(v) for v in str(kw.get(f"$P{j + 1}E", "0,0")).split(",")[:2])
        except ValueError:
            f1, f2 = 0.0, 0.0
        try:
            gain = float(kw.get(f"$P{j + 1}G", 1.0)) or 1.0
        except ValueError:
            gain = 1.0
        if f1 > 0:
            out[i] = (f2 if f2 > 0 else 1.0) * 10.0 ** (f1 * (r - 1) / r)
        else:
            out[i] = (r - 1) / gain
    return out


def _margin_mask(
    adata: AnnData,
    channels: Sequence[str] | None,
    kinds: Sequence[str],
    lower_kinds: Sequence[str],
    upper: bool,
    lower: bool,
    min_pile_fraction: float,
    max_channel_fraction: float,
) -> tuple[np.ndarray, dict[str, int], list[str], list[str], list[str]]:
    names = [str(c) for c in adata.var_names]
    all_kinds = _kinds(adata)
    if channels is None:
        chans = [c for c, k in zip(names, all_kinds, strict=True) if k in kinds or k in lower_kinds]
        up_sel = np.array([all_kinds[names.index(c)] in kinds for c in chans], dtype=bool)
        low_sel = np.array([all_kinds[names.index(c)] in lower_kinds for c in chans], dtype=bool)
    else:
        missing = [c for c in channels if c not in names]
        if missing:
            raise ChannelNotFoundError(", ".join(missing), names, source=_label(adata))
        chans = list(channels)
        up_sel = low_sel = np.ones(len(chans), dtype=bool)
    n = adata.n_obs
    if not chans or n == 0:
        return np.zeros(n, dtype=bool), dict.fromkeys(chans, 0), chans, [], []
    cols = [names.index(c) for c in chans]
    x = _linear_raw(adata, cols)
    flags = np.zeros(x.shape, dtype=bool)
    no_ceiling: list[str] = []
    if upper:
        ceil = _ceilings(adata, cols)
        top = x.max(axis=0).astype(np.float64)
        # a channel whose data exceed the decoded $PnR has no hard ceiling (e.g. CyTOF)
        beyond = np.isfinite(ceil) & (top > ceil * (1 + 1e-3))
        no_ceiling = [c for c, b, u in zip(chans, beyond, up_sel, strict=True) if b and u]
        use = up_sel & np.isfinite(ceil) & ~beyond
        thr = np.where(use, ceil * (1 - 1e-6), np.inf)  # rebuilt raw values may round
        flags |= x >= thr.astype(np.float32)
    if lower and low_sel.any():
        at_min = x <= x.min(axis=0)
        pile = (at_min.sum(axis=0) >= max(2.0, min_pile_fraction * n)) & low_sel
        flags |= at_min & pile
    counts = flags.sum(axis=0)
    implausible = counts > max_channel_fraction * n
    if implausible.any():
        flags[:, implausible] = False
    per = dict(zip(chans, (int(v) for v in counts), strict=True))
    skipped = [c for c, b in zip(chans, implausible, strict=True) if b]
    return flags.any(axis=1), per, chans, no_ceiling, skipped


def qc_margins(
    adata: AnnData,
    *,
    channels: Sequence[str] | None = None,
    kinds: Sequence[str] = ("scatter", "fluorescence"),
    lower_kinds: Sequence[str] = ("scatter",),
    upper: bool = True,
    lower: bool = True,
    min_pile_fraction: float = 0.001,
    max_channel_fraction: float = 0.2,
    key_added: str | None = "qc_margin_pass",
) -> dict[str, Any]:
    """Flag saturated (margin) events.

    Upper margin: the raw value reaches the channel's ceiling, ``$PnR - 1`` decoded
    like the events (``$PnE`` anti-log, ``$PnG`` gain). Channels whose data exceed
    that ceiling (mass cytometry, where ``$PnR`` is no limit) are skipped and listed.
    Lower margin: the value equals the channel's minimum while at least
    ``min_pile_fraction`` of the events pile up there; by default only on scatter,
    because a pile at the bottom of a fluorescence channel (log amplifiers, zero
    counts in mass cytometry) holds ordinary negative cells. Works on raw linear
    data; after compensation the raw values are rebuilt from the recorded matrix.

    Parameters
    ----------
    adata
        Sample container (linear ``X``).
    channels
        Channels to check (both margins); default the channels of ``kinds`` (upper)
        and ``lower_kinds`` (lower).
    kinds
        ``var["kind"]`` values checked for the upper margin when ``channels`` is None.
    lower_kinds
        ``var["kind"]`` values checked for the lower margin when ``channels`` is None.
    upper, lower
        Check the upper / lower margin.
    min_pile_fraction
        Fraction of events that must sit at the minimum for it to count as a margin.
    max_channel_fraction
        A channel flagging more than this fraction of the events is not removing
        margin artefacts (e.g. a width channel piled at 0, a log FSC at its floor):
        it is left out, listed in ``params["implausible"]`` and logged as a warning.
    key_added
        Bool obs column written (True = passes); None writes nothing.

    Returns
    -------
    dict
        ``passed`` (bool array), ``removed`` (events failing), ``per_channel`` counts
        (before the ``max_channel_fraction`` rule) and ``params`` (including
        ``no_ceiling``: channels skipped for the upper margin, and ``implausible``).
    """
    bad, per, chans, no_ceiling, implausible = _margin_mask(
        adata, channels, kinds, lower_kinds, upper, lower, min_pile_fraction, max_channel_fraction
    )
    if implausible:
        log.warning(
            "%s: margin check left out %s: they flag more than %.0f%% of the events",
            _label(adata),
            {c: per[c] for c in implausible},
            100 * max_channel_fraction,
        )
    if no_ceiling:
        log.info("%s: no upper margin on %s (data exceed $PnR)", _label(adata), no_ceiling)
    if key_added is not None:
        adata.obs[key_added] = ~bad
    return {
        "passed": ~bad,
        "removed": int(bad.sum()),
        "per_channel": per,
        "params": {
            "channels": chans,
            "kinds": list(kinds),
            "lower_kinds": list(lower_kinds),
            "upper": bool(upper),
            "lower": bool(lower),
            "min_pile_fraction": float(min_pile_fraction),
            "max_channel_fraction": float(max_channel_fraction),
            "no_ceiling": no_ceiling,
            "implausible": implausible,
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


def _robust_z(s: np.ndarray, floor: np.ndarray | None = None) -> np.ndarray:
    """Per-column ``(s - median) / max(1.4826 MAD, floor)``; constant columns score 0.

    ``floor`` is the sampling noise a bin statistic has in a stable acquisition; it
    keeps quantised data (10-bit channels, coarse Time) from scoring huge z values
    when the bins happen to agree more closely than chance allows.
    """
    med = np.nanmedian(s, axis=0)
    mad = _MAD_SCALE * np.nanmedian(np.abs(s - med), axis=0)
    if floor is not None:
        mad = np.maximum(mad, floor)
    mad = np.where(mad > 0, mad, np.inf)
    return (s - med) / mad


def _noise_floor(
    x: np.ndarray, t: np.ndarray, epb: int, transformed: np.ndarray, rate_used: bool
) -> np.ndarray:
    """Standard error of a bin's log flow rate and of its channel medians, if stable.

    Median: ``1.2533 sigma / sqrt(epb)`` with sigma the robust spread of the events
    (on the scale the medians are compared on). Log rate: Poisson ``1 / sqrt(epb)``
    combined with the Time resolution relative to a bin's duration.
    """
    out = []
    if rate_used:
        steps = np.diff(t)
        res = float(steps[steps > 0].min()) if np.any(steps > 0) else 0.0
        durations = np.diff(t[:: max(1, epb)])
        dur = float(np.median(durations)) if durations.size else 0.0
        rel = res / dur if dur > 0 else 0.0
        out.append(np.sqrt(1.0 / epb + rel * rel))
    if x.shape[1]:
        sub = x[:: max(1, x.shape[0] // 20_000)].astype(np.float64)
        sub = np.where(transformed, sub, np.arcsinh(sub / 150.0))
        sigma = _MAD_SCALE * np.median(np.abs(sub - np.median(sub, axis=0)), axis=0)
        out.extend(1.2533 * sigma / np.sqrt(epb))
    return np.asarray(out, dtype=np.float64)


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
    min_bins: int = 20,
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
    min_bins
        Time QC is skipped (reason recorded) when the events fill fewer bins.
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
    epb = int(events_per_bin or np.clip(ev.size // 100, 100, 1000))
    params["events_per_bin"] = epb
    params["min_bins"] = int(min_bins)
    if time_ch is None:
        reason = "no Time channel"
    elif ev.size // epb < min_bins:
        reason = (
            f"too few events for time QC ({ev.size} events give {ev.size // epb} bins "
            f"of {epb}; at least {min_bins} needed)"
        )
    if reason is None:
        col = list(map(str, adata.var_names)).index(time_ch)
        t = np.asarray(adata.X[:, col], dtype=np.float64)[ev]  # Time is never transformed
        if np.ptp(t) <= 0:
            reason = f"Time channel {time_ch!r} is constant"
        elif np.mean(np.diff(t) < 0) > 0.01:
            reason = f"Time channel {time_ch!r} is not increasing (events not in acquisition order)"
    if reason is not None:
        log.info("%s: time QC skipped: %s", _label(adata), reason)
        result["skipped"] = reason
        if key_added is not None:
            adata.obs[key_added] = pass_
        result["params"] = params
        result["passed"] = pass_
        return result
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
    # a coarse Time resolution leaves most bins without a measurable duration
    rate_ok = bool(np.mean(np.isfinite(rate)) >= 0.5)
    params["flow_rate_used"] = rate_ok
    signals = ([rate[:, None]] if rate_ok else []) + ([med] if med.size else [])
    if not signals:
        signals = [np.zeros((nb, 1))]
    sig = np.column_stack(signals)
    floor = _noise_floor(x, t, epb, transformed, rate_ok) if (rate_ok or med.size) else None
    z = np.nan_to_num(_robust_z(sig, floor), nan=0.0)
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
    frac = float(bad.mean()) if nb else 0.0
    if frac > 0.2:
        log.warning(
            "%s: time QC removes %.0f%% of the events (%d of %d bins); check the acquisition",
            _label(adata),
            100 * frac,
            int(bad.sum()),
            nb,
        )
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
