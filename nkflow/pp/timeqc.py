"""Time QC: remove unstable acquisition stretches (clogs, bubbles, start-up transients).

The idea follows PeacoQC (Emmaneel et al. 2022): cut the acquisition into consecutive
bins of events and remove whole bins whose flow rate or signals are anomalous. What
differs is how a bin is scored, so that sampling noise can never be flagged:

* flow rate: the log of events per unit of Time; its sampling error in a stable
  acquisition is Poisson, ``sqrt(1 / (epb - 1))``, plus the Time resolution relative
  to a bin's duration;
* every checked channel: the mean, over the bin's events, of each event's mid-rank in
  the whole file (a Mann-Whitney statistic of the bin against the file). Its
  sampling error in a stable acquisition is ``sd(rank) / sqrt(epb)`` whatever the
  shape of the channel's distribution: bimodal channels, piles of zeros, 10-bit
  quantisation and any monotone transform give the same scores. A bin median (what
  PeacoQC compares) jumps between the modes of a bimodal marker by chance, which is
  why median-based scores flagged clean files.

Each signal is scored across bins as ``(value - median) / max(1.4826 MAD, SE)``: the
spread between bins, never less than the sampling error ``SE``. A bin is anomalous
when one score exceeds ``mad_threshold`` (a spike), or when a run of at least
``min_run`` bins has a rolling-median score above ``shift_threshold`` (a sustained
shift); a run grows into neighbouring bins while the signals that shifted stay past
``edge_threshold`` in the same direction, and short kept gaps between removed
stretches are removed too.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from anndata import AnnData
from scipy.ndimage import median_filter

from nkflow._order import radix_argsort
from nkflow._threads import column_rows
from nkflow.exceptions import ChannelNotFoundError
from nkflow.io.records import nkflow_record

__all__ = ["qc_time"]

log = logging.getLogger(__name__)

_MAD_SCALE = 1.4826
_REF_EVENTS = 20_000  # events of the reference distribution the ranks are taken in
RATE = "flow rate"


def _label(adata: AnnData) -> str:
    sample = nkflow_record(adata, "sample") or {}
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


def _time_channel(names: list[str], kinds: list[str]) -> str | None:
    for name, kind in zip(names, kinds, strict=True):
        if kind == "time":
            return name
    return None


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Start/stop (exclusive) of each run of True."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts, stops = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    return [(int(a), int(b)) for a, b in zip(starts, stops, strict=True)]


def _robust_z(s: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """Per-column ``(s - median) / max(1.4826 MAD, floor)``; zero-spread columns score 0."""
    med = np.nanmedian(s, axis=0)
    mad = np.maximum(_MAD_SCALE * np.nanmedian(np.abs(s - med), axis=0), floor)
    mad = np.where(mad > 0, mad, np.inf)
    return np.nan_to_num((s - med) / mad, nan=0.0)


def _bin_edges(n: int, epb: int) -> np.ndarray:
    """Bins of ``epb`` consecutive events; the last one also takes the remainder."""
    nb = max(1, n // epb)
    return np.append(np.arange(nb) * epb, n)


def _rate_signal(t: np.ndarray, edges: np.ndarray, epb: int) -> tuple[np.ndarray, float]:
    """Per-bin log flow rate and its sampling error in a stable acquisition."""
    first, last = edges[:-1], edges[1:] - 1
    dt = t[last] - t[first]
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(dt > 0, np.log((last - first) / dt), np.nan)
    steps = np.diff(t)
    res = float(steps[steps > 0].min()) if np.any(steps > 0) else 0.0
    dur = float(np.median(dt)) if dt.size else 0.0
    rel = res / dur if dur > 0 else 0.0
    return rate, float(np.sqrt(1.0 / max(epb - 1, 1) + rel * rel))


def _mid_ranks(col: np.ndarray, step: int) -> np.ndarray:
    """Each event's mid-rank in the reference ``col[::step]``, as a fraction of its size.

    The rank of a value is the fraction of reference values below it plus half the
    fraction equal to it; NaN ranks 1. The events are sorted once and the reference
    events counted along the sorted order, so a run of equal values (a tie) reads
    both counts at its ends: no search in the reference and no sort of it.
    """
    n = col.size
    size = -(-n // step)  # reference events: 0, step, 2 step, ...
    order = radix_argsort(col)  # ties may come in any order: ranks are read off runs
    ordered = col[order]
    is_ref = np.zeros(n, dtype=bool)
    is_ref[::step] = True
    seen = np.cumsum(is_ref[order])  # reference events at or before each sorted position
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    ends = np.append(starts[1:], n) - 1
    below = np.where(starts > 0, seen[starts - 1], 0)  # reference values < the run's value
    ranks = 0.5 * (below + seen[ends]) / size  # + half those equal to it
    u = np.empty(n)
    u[order] = np.repeat(ranks, ends - starts + 1)
    u[np.isnan(col)] = 1.0
    return u


def _rank_signals(cols: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-bin mean mid-rank of each channel's events in the file, and its sampling error.

    ``cols`` holds one channel per row (channels x events), ``edges`` the bin edges.
    Ranks are taken in a reference of at most ``_REF_EVENTS`` events spread over the
    acquisition (:func:`_mid_ranks`), so ties (zeros, quantised channels) share one rank.
    """
    p, n = cols.shape
    counts = np.diff(edges).astype(np.float64)
    epb = float(counts[:-1].min()) if counts.size > 1 else float(counts[0])
    step = max(1, n // _REF_EVENTS)
    means = np.empty((edges.size - 1, p))
    se = np.empty(p)
    cols = np.ascontiguousarray(cols)
    for j in range(p):
        u = _mid_ranks(cols[j], step)
        means[:, j] = np.add.reduceat(u, edges[:-1]) / counts
        se[j] = float(u.std()) / np.sqrt(epb)
    return means, se


def _describe(
    names: list[str], z: np.ndarray, a: int, b: int, threshold: float, k: int = 3
) -> list[str]:
    """Signals most out of line over bins ``[a, b)``: ``"<name> up|down (z 8.1)"``."""
    seg = z[a:b]
    peak = np.abs(seg).max(axis=0)
    order = [j for j in np.argsort(-peak) if peak[j] > threshold][:k]
    out = []
    for j in order:
        sign = "up" if seg[np.abs(seg[:, j]).argmax(), j] > 0 else "down"
        out.append(f"{names[j]} {sign} (z {peak[j]:.1f})")
    return out


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
    guard: float = 0.5,
    min_bins: int = 20,
    key_added: str | None = "qc_time_pass",
    mask: np.ndarray | None = None,
) -> dict[str, Any]:
    """Flag unstable acquisition stretches from Time (PeacoQC-like).

    Scores are in units of the sampling error a bin has in a stable acquisition (see
    the module docstring), so thresholds of 3-6 never remove statistical noise.

    Parameters
    ----------
    adata
        Sample container with a channel of kind ``time``. Linear or transformed data
        give the same result (channels are compared through ranks).
    events_per_bin
        Events per bin; default ``n // 100`` clipped to [100, 1000].
    channels
        Channels checked; default the fluorescence channels.
    mad_threshold
        Score above which one bin is a spike.
    shift_threshold
        Rolling-median score above which a run of bins is a sustained shift.
    smooth_bins
        Width (bins) of the rolling median.
    min_run
        Minimum length (bins) of a sustained shift.
    max_gap
        Kept stretches of at most this many bins between removed ones are removed.
    edge_threshold
        A sustained shift grows into neighbouring bins (mixed bins at its edges) while
        one of the signals that shifted stays past this, in the same direction.
    guard
        Bins (a fraction) added at each edge of a sustained shift that did not grow
        into its neighbour: the shift's onset may lie in that neighbour, too weak to
        score (a clog builds up and fades), and bins mix anomalous and clean events.
    min_bins
        Time QC is skipped (reason recorded) when the events fill fewer bins.
    key_added
        Bool obs column written (True = passes); None writes nothing.
    mask
        Events to consider (others are left out of the bins and marked as failing).

    Returns
    -------
    dict
        ``passed`` (bool array), ``skipped`` (reason or None), ``removed`` (events),
        ``bins``, ``bins_removed``, ``stretches`` (one dict per removed stretch:
        ``first_event``, ``last_event`` (row numbers, inclusive), ``events``,
        ``time_start``, ``time_end``, ``kind`` (``"shift"`` or ``"spike"``) and
        ``signals``: the signals most out of line, e.g. ``"flow rate down (z 9.2)"``)
        and ``params``.

    Raises
    ------
    ChannelNotFoundError
        ``channels`` names a channel the sample does not have.
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
        "guard": float(guard),
        "score": "robust z of per-bin log flow rate and mean event rank, floored at "
        "the sampling error",
    }
    names = [str(c) for c in adata.var_names]
    kinds = _kinds(adata)
    time_ch = _time_channel(names, kinds)
    pass_ = use.copy()
    result: dict[str, Any] = {
        "skipped": None,
        "removed": 0,
        "bins": 0,
        "bins_removed": 0,
        "stretches": [],
    }
    ev = np.flatnonzero(use)
    reason = None
    epb = int(events_per_bin or np.clip(ev.size // 100, 100, 1000))
    params["events_per_bin"] = epb
    params["min_bins"] = int(min_bins)
    col_of = {c: j for j, c in enumerate(names)}
    if time_ch is None:
        reason = "no Time channel"
    elif ev.size // epb < min_bins:
        reason = (
            f"too few events for time QC ({ev.size} events give {ev.size // epb} bins "
            f"of {epb}; at least {min_bins} needed)"
        )
    if reason is None:
        t = np.asarray(adata.X[:, col_of[time_ch]], dtype=np.float64)[ev]  # never transformed
        if np.ptp(t) <= 0:
            reason = f"Time channel {time_ch!r} is constant"
        elif np.mean(np.diff(t) < 0) > 0.01:
            reason = f"Time channel {time_ch!r} is not increasing (events not in acquisition order)"
    if reason is not None:
        log.info("%s: time QC skipped: %s", _label(adata), reason)
        result.update(skipped=reason, params=params, passed=pass_)
        if key_added is not None:
            adata.obs[key_added] = pass_
        return result
    params["time_channel"] = time_ch
    if channels is None:
        chans = [c for c, k in zip(names, kinds, strict=True) if k == "fluorescence"]
    else:
        chans = list(channels)
        missing = [c for c in chans if c not in col_of]
        if missing:
            raise ChannelNotFoundError(", ".join(missing), names, source=_label(adata))
    params["channels"] = chans
    cidx = [col_of[c] for c in chans]
    x = np.asarray(adata.X)
    if ev.size < n:
        x = x[ev]
    # one channel per row (each channel's events contiguous for the sort)
    rows, _ = column_rows(x, cidx)
    edges = _bin_edges(ev.size, epb)
    nb = edges.size - 1
    rate, rate_se = _rate_signal(t, edges, epb)
    # a coarse Time resolution leaves most bins without a measurable duration
    rate_ok = bool(np.mean(np.isfinite(rate)) >= 0.5)
    params["flow_rate_used"] = rate_ok
    ranks, rank_se = _rank_signals(rows, edges)
    sig_names = ([RATE] if rate_ok else []) + chans
    sig = np.column_stack(([rate] if rate_ok else []) + [ranks]) if sig_names else None
    if sig is None or sig.shape[1] == 0:
        sig, floor, sig_names = np.zeros((nb, 1)), np.zeros(1), ["none"]
    else:
        floor = np.concatenate([[rate_se] if rate_ok else [], rank_se])
    z = _robust_z(sig, floor)
    zmax = np.abs(z).max(axis=1)
    spike = zmax > mad_threshold
    k = max(1, int(smooth_bins))
    zs = median_filter(z, size=(k, 1), mode="nearest") if nb >= k else z
    shift = np.abs(zs) > shift_threshold
    shifted = np.zeros(nb, dtype=bool)
    for a, b in _runs(shift.any(axis=1)):
        if b - a < min_run:
            continue
        cols = np.flatnonzero(shift[a:b].any(axis=0))
        # neighbours join while a signal that shifted stays past edge_threshold, same sign
        past = (z[:, cols] * np.sign(zs[a:b, cols].sum(axis=0)) > edge_threshold).any(axis=1)
        while a > 0 and past[a - 1]:
            a -= 1
        while b < nb and past[b]:
            b += 1
        shifted[a:b] = True
    bad = spike | shifted
    for a, b in _runs(~bad):
        if 0 < a and b < nb and b - a <= max_gap:
            bad[a:b] = True
    gone = np.zeros(ev.size, dtype=bool)  # over the considered events
    pad = round(guard * epb)
    for a, b in _runs(bad):
        lo, hi = edges[a], edges[b]
        if shifted[a:b].any():
            lo, hi = max(0, lo - pad), min(ev.size, hi + pad)
        gone[lo:hi] = True
    pass_[ev[gone]] = False
    bin_of = np.minimum(np.arange(ev.size) // epb, nb - 1)
    stretches = []
    for lo, hi in _runs(gone):
        a, b = int(bin_of[lo]), int(bin_of[hi - 1]) + 1
        stretches.append(
            {
                "first_event": int(ev[lo]),
                "last_event": int(ev[hi - 1]),
                "events": int(hi - lo),
                "time_start": float(t[lo]),
                "time_end": float(t[hi - 1]),
                "kind": "shift" if shifted[a:b].any() else "spike",
                "signals": _describe(sig_names, z, a, b, edge_threshold),
            }
        )
    if key_added is not None:
        adata.obs[key_added] = pass_
    removed = int(use.sum() - pass_.sum())
    if removed > 0.2 * max(ev.size, 1):
        log.warning(
            "%s: time QC removes %.0f%% of the events (%d of %d bins); check the acquisition",
            _label(adata),
            100 * removed / ev.size,
            int(bad.sum()),
            nb,
        )
    result.update(
        passed=pass_,
        removed=removed,
        bins=int(nb),
        bins_removed=int(bad.sum()),
        stretches=stretches,
        params=params,
    )
    return result
