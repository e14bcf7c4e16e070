"""Data-driven thresholds on the transformed scale, each with a bootstrap confidence interval.

Rules
-----
``valley``
    Density valley between the two most prominent peaks of a smoothed histogram (a fast
    binned Gaussian KDE, Silverman bandwidth). Used for bimodal markers (CD3, CD45, dump,
    CD16, NKp46, CD49b, Eomes). When the data are unimodal (no second peak with at least
    ``min_prominence`` of the main peak's height) it falls back to ``mirror``: the main peak
    is taken as the negative (``unimodal="negative"``) or the positive
    (``unimodal="positive"``) population and the threshold sits ``z`` robust standard
    deviations beyond its mode, measured on the side away from the other population.
``gmm``
    Where the posteriors of a two-component 1-D Gaussian mixture are equal (between the two
    means). Less biased than the valley when one population is small and the two overlap
    (CD56bright among NK: the density minimum sits inside the minority population's flank).
    Falls back to ``valley`` when the components are not separated (d' < 1.5).
``fmo``
    The ``percentile`` (default 99.5) of the marker in the FMO control's parent gate.
``mirror``
    The "negative mirror" described above; the documented fallback for a missing FMO
    (``z`` = the normal quantile of the FMO percentile, so 2.576 for 99.5).
``quantile``
    A plain quantile of the parent (``percentile``).
``fixed``
    A literal ``value``.

Confidence intervals: the density rules (valley, gmm, mirror) take ``n_boot`` bootstrap
resamples (``random_state`` seeds a local generator); they are computed on a fine histogram,
so a resample is an exact multinomial redraw of the bin counts (fast for any event count).
Percentile rules (fmo, quantile) need no resampling: their interval is the exact
distribution-free order-statistic interval (:func:`nkflow.stats.quantile_interval`), the
same one :func:`nkflow.tl.fmo_threshold` reports. ``n_boot=0`` skips every interval.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats as _sps
from scipy.ndimage import gaussian_filter1d
from scipy.signal import find_peaks

from ..exceptions import GatingError
from ..stats import quantile_interval
from .censored import above_negatives
from .censored import censored_mirror as _censored_mirror
from .censored import zero_spike as _zero_spike

__all__ = [
    "TABLE_COLUMNS",
    "THRESHOLD_COLUMNS",
    "Threshold",
    "fmo_threshold",
    "gmm_threshold",
    "mirror_threshold",
    "quantile_threshold",
    "valley_threshold",
]

logger = logging.getLogger(__name__)

THRESHOLD_COLUMNS = [
    "sample_id",
    "tissue",
    "batch",
    "gate",
    "marker",
    "channel",
    "value",
    "ci_low",
    "ci_high",
    "rule",
    "control_file",
    "n_events",
    "evidence",
    "disagrees",
    "note",
]

#: The thresholds table as nkflow writes it: the record's columns with the cut-off also in
#: the instrument's linear units (added by the pipeline, which knows each sample's transform)
#: and how it was found next to the rule.
TABLE_COLUMNS = (
    "sample_id", "tissue", "batch", "gate", "marker", "channel", "value", "ci_low", "ci_high",
    "value_linear", "ci_low_linear", "ci_high_linear", "rule", "evidence", "control_file",
    "n_events", "disagrees", "note",
)  # fmt: skip

_N_BINS = 1024


@dataclass(frozen=True)
class Threshold:
    """A resolved threshold with its provenance (one row of the thresholds table).

    ``gate`` is the id of the gate whose events the threshold was computed on (so the same
    marker can carry different thresholds in different parents).
    """

    marker: str
    channel: str
    value: float
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    rule: str = ""
    control_file: str = ""
    n_events: int = 0
    gate: str = ""
    sample_id: str = ""
    tissue: str = ""
    batch: str = ""
    evidence: str = ""  # where "negative" came from: see nkflow.gating.negative.EVIDENCE
    disagrees: bool = False  # the sample's own valley disagrees with a batch threshold
    note: str = ""  # manual: reason and who set it; batch pool: the sample's own valley

    def to_record(self) -> dict[str, object]:
        """Dict in :data:`THRESHOLD_COLUMNS` order (JSON-able)."""
        return {c: getattr(self, c) for c in THRESHOLD_COLUMNS}


def _clean(values: ArrayLike) -> NDArray[np.float64]:
    v = np.asarray(values, dtype=np.float64).ravel()
    return v[np.isfinite(v)]


_QUANTILES = [0.0005, 0.9995, 0.75, 0.25]  # the grid's range, then the quartiles


def _quantiles(v: NDArray[np.float64]) -> NDArray[np.float64]:
    """The quantiles :func:`_grid` and :func:`_sigma_bins` need, in one partition of ``v``.

    Each quantile is the same number as when asked for alone (same order statistics, same
    interpolation), at half the cost of two calls.
    """
    return np.quantile(v, _QUANTILES)


def _grid(
    v: NDArray[np.float64], q: NDArray[np.float64] | None = None
) -> tuple[NDArray[np.float64], NDArray[np.float64], float]:
    lo, hi = (_quantiles(v) if q is None else q)[:2]
    if not hi > lo:
        lo, hi = float(v.min()) - 0.5, float(v.max()) + 0.5
    pad = 0.05 * (hi - lo)
    edges = np.linspace(lo - pad, hi + pad, _N_BINS + 1)
    counts, _ = np.histogram(v, bins=edges)
    centers = 0.5 * (edges[:-1] + edges[1:])
    return counts.astype(np.float64), centers, float(edges[1] - edges[0])


def _sigma_bins(
    v: NDArray[np.float64], width: float, bw_adjust: float, q: NDArray[np.float64] | None = None
) -> float:
    sd = np.std(v)
    iqr = np.subtract(*(_quantiles(v) if q is None else q)[2:])
    s = min(sd, iqr / 1.349) if iqr > 0 else sd
    if s <= 0:
        s = width
    bw = bw_adjust * 0.9 * s * v.size ** (-0.2)
    return max(bw / width, 1.0)


def _density(counts: NDArray[np.float64], sigma_bins: float) -> NDArray[np.float64]:
    return gaussian_filter1d(counts, sigma_bins, mode="constant")


def _valley_from_density(
    dens: NDArray[np.float64],
    centers: NDArray[np.float64],
    min_prominence: float,
    between: str = "top2",
) -> float | None:
    top = dens.max()
    if top <= 0:
        return None
    peaks, props = find_peaks(dens, prominence=min_prominence * top)
    if peaks.size < 2:
        return None
    prom = props["prominences"]
    if between == "top2":
        order = np.argsort(prom)[::-1][:2]
        a, b = np.sort(peaks[order])
    elif between == "first_two":  # the lowest peak and the next one (negative | dim | bright)
        a, b = int(peaks[0]), int(peaks[1])
    else:  # "below_main": the main peak and the most prominent peak left of it
        main = int(np.argmax(dens[peaks]))
        left = np.flatnonzero(peaks < peaks[main])
        if left.size == 0:
            return None
        a, b = int(peaks[left[np.argmax(prom[left])]]), int(peaks[main])
    seg = dens[a : b + 1]
    i = a + int(np.argmin(seg))
    return float(centers[i])


def _mirror_from_density(
    counts: NDArray[np.float64],
    dens: NDArray[np.float64],
    centers: NDArray[np.float64],
    z: float,
    unimodal: str,
    sigma_bins: float,
    wide: Callable[[], NDArray[np.float64]] | None = None,
) -> float:
    """Mode +- z * sigma, sigma from the half of the outermost peak away from the others.

    The peak is the lowest (``negative``) or highest (``positive``) one of the density with
    at least 10 % of the top height; its position is then refined on a 3x wider kernel,
    which is steadier for a broad negative population. ``wide`` returns that 3x-wider
    density when the caller can give it cheaper (the bootstrap smooths all resamples of a
    chunk in one call, the first time one of them needs it).
    """
    total = counts.sum()
    top = dens.max()
    peaks, _ = find_peaks(np.r_[0.0, dens, 0.0], height=0.1 * top, prominence=0.05 * top)
    peaks = peaks - 1
    if peaks.size == 0:
        peaks = np.array([int(np.argmax(dens))])
    mode_i = int(peaks[0] if unimodal == "negative" else peaks[-1])
    smooth = _density(counts, 3.0 * sigma_bins) if wide is None else wide()
    w = int(np.ceil(3.0 * sigma_bins))
    lo_i, hi_i = max(0, mode_i - w), min(smooth.size, mode_i + w + 1)
    mode_i = lo_i + int(np.argmax(smooth[lo_i:hi_i]))
    mode = centers[mode_i]
    if unimodal == "negative":
        half = counts[: mode_i + 1]
        dev = mode - centers[: mode_i + 1]
    else:
        half = counts[mode_i:]
        dev = centers[mode_i:] - mode
    # half-normal: median of |dev| = 0.6745 sigma
    if half.sum() <= 0:
        sigma = float(np.sqrt(np.average((centers - mode) ** 2, weights=counts + 1e-12)))
    else:
        cum = np.cumsum(half[::-1] if unimodal == "negative" else half)
        d = dev[::-1] if unimodal == "negative" else dev
        med = d[int(np.searchsorted(cum, 0.5 * cum[-1]))]
        sigma = float(med / 0.6745)
    if sigma <= 0 or not np.isfinite(sigma):
        sigma = float(centers[1] - centers[0]) if total else 1.0
    return float(mode + z * sigma) if unimodal == "negative" else float(mode - z * sigma)


def _gmm_crossing(counts: NDArray[np.float64], x: NDArray[np.float64]) -> float | None:
    """Equal-posterior point of a 2-component Gaussian mixture fitted by EM to binned data."""
    w = counts / counts.sum()
    cdf = np.cumsum(w)
    m = np.array([x[np.searchsorted(cdf, 0.3)], x[min(np.searchsorted(cdf, 0.95), x.size - 1)]])
    sd0 = np.sqrt(np.sum(w * (x - np.sum(w * x)) ** 2)) / 2 + 1e-9
    sd = np.array([sd0, sd0])
    pi = np.array([0.7, 0.3])
    for _ in range(300):
        z = (x - m[:, None]) / sd[:, None]
        logp = np.log(pi)[:, None] - np.log(sd)[:, None] - 0.5 * z**2
        logp -= logp.max(axis=0)
        r = np.exp(logp)
        r /= r.sum(axis=0)
        rw = r * w
        nk = rw.sum(axis=1) + 1e-12
        new_m = (rw @ x) / nk
        sd = np.sqrt((rw * (x - new_m[:, None]) ** 2).sum(axis=1) / nk) + 1e-9
        pi = nk / nk.sum()
        done = np.max(np.abs(new_m - m)) < 1e-7
        m = new_m
        if done:
            break
    lo, hi = np.argsort(m)
    if (m[hi] - m[lo]) / np.sqrt(sd[lo] * sd[hi]) < 1.5 or min(pi) < 0.005:
        return None
    grid = np.linspace(m[lo], m[hi], 512)
    ratio = (np.log(pi[hi]) - np.log(sd[hi]) - 0.5 * ((grid - m[hi]) / sd[hi]) ** 2) - (
        np.log(pi[lo]) - np.log(sd[lo]) - 0.5 * ((grid - m[lo]) / sd[lo]) ** 2
    )
    cross = np.flatnonzero(ratio > 0)
    return float(grid[cross[0]]) if cross.size else None


def _z_for(percentile: float) -> float:
    return float(_sps.norm.ppf(percentile / 100.0))


def _binned_rule(
    values: ArrayLike,
    *,
    rule: str,
    min_prominence: float,
    bw_adjust: float,
    unimodal: str,
    z: float,
    n_boot: int,
    random_state: int | np.random.Generator | None,
    confidence: float,
    between: str = "top2",
) -> tuple[float, float, float, str, int]:
    v = _clean(values)
    if v.size < 10:
        raise GatingError(f"{rule} threshold needs at least 10 events, got {v.size}")
    if unimodal not in ("negative", "positive"):
        raise GatingError(f"unimodal = {unimodal!r}; valid: negative, positive")
    n0 = _zero_spike(v) if unimodal == "negative" else 0
    if n0:  # zero-inflated (mass cytometry): see nkflow.gating.censored
        v = v[v > v.min()]
    q = _quantiles(v)
    counts, centers, width = _grid(v, q)
    sig = _sigma_bins(v, width, bw_adjust, q)

    def estimate(
        c: NDArray[np.float64],
        dens: NDArray[np.float64],
        wide: Callable[[], NDArray[np.float64]] | None = None,
    ) -> tuple[float, str]:
        cuts = []
        if rule == "gmm":
            cuts.append((_gmm_crossing(c, centers), "gmm"))
        if rule in ("valley", "gmm"):
            cuts.append((_valley_from_density(dens, centers, min_prominence, between), "valley"))
        for t, name in cuts:
            if t is not None and (not n0 or above_negatives(t, c, centers, n0, z)):
                return t, name
        if n0:
            return _censored_mirror(c, centers, n0, z), "mirror (zero-inflated)"
        return _mirror_from_density(c, dens, centers, z, unimodal, sig, wide), "mirror"

    value, used = estimate(counts, _density(counts, sig))
    lo = hi = float("nan")
    if n_boot > 0:
        boots = _bootstrap(counts, sig, n_boot, random_state, estimate)
        a = (1.0 - confidence) / 2.0
        lo, hi = (float(x) for x in np.quantile(boots, [a, 1.0 - a]))
    return value, lo, hi, used, int(v.size) + n0


_BOOT_CHUNK = 256


def _bootstrap(
    counts: NDArray[np.float64],
    sigma_bins: float,
    n_boot: int,
    random_state: int | np.random.Generator | None,
    estimate: Callable[..., tuple[float, str]],
) -> NDArray[np.float64]:
    """Threshold of ``n_boot`` multinomial redraws of the binned data.

    All redraws of a chunk are drawn in one call (the generator yields the same values as
    one call per redraw) and smoothed in one 2-D filter call, so a resample costs one
    peak search instead of a histogram, a filter call and Python overhead each. The 3x
    wider smoothing of the mirror rule is made only for the redraws that need it
    (``estimate``'s third argument returns it), in one call for the rest of the chunk
    when most do (:class:`_WideRows`).
    """
    rng = np.random.default_rng(random_state)
    n = int(counts.sum())
    p = counts / counts.sum()
    out = np.empty(n_boot)
    for start in range(0, n_boot, _BOOT_CHUNK):
        size = min(_BOOT_CHUNK, n_boot - start)
        draws = rng.multinomial(n, p, size=size).astype(np.float64)
        dens = gaussian_filter1d(draws, sigma_bins, axis=1, mode="constant")
        wide = _WideRows(draws, 3.0 * sigma_bins)
        for i in range(size):
            out[start + i] = estimate(draws[i], dens[i], partial(wide.row, i))[0]
    return out


class _WideRows:
    """Rows of a wider smoothing of a chunk of redraws, asked for in increasing row order.

    The first requests are smoothed one redraw at a time; once at least 16 have come and
    they are at least half of the rows seen, the rest of the chunk is smoothed in one 2-D
    call (about a third of the cost per row). Every row is bit for bit the same either way.
    """

    def __init__(self, draws: NDArray[np.float64], sigma_bins: float) -> None:
        self._draws, self._sigma = draws, sigma_bins
        self._rows: NDArray[np.float64] | None = None
        self._first = 0
        self._asked = 0

    def row(self, i: int) -> NDArray[np.float64]:
        if self._rows is None or i < self._first:
            self._asked += 1
            if self._rows is not None or self._asked < max(16, 0.5 * (i + 1)):
                return gaussian_filter1d(self._draws[i], self._sigma, mode="constant")
            self._first = i
            self._rows = gaussian_filter1d(self._draws[i:], self._sigma, axis=1, mode="constant")
        return self._rows[i - self._first]


def valley_threshold(
    values: ArrayLike,
    *,
    min_prominence: float = 0.02,
    bw_adjust: float = 1.0,
    unimodal: str = "negative",
    fallback_percentile: float = 99.5,
    n_boot: int = 200,
    random_state: int | np.random.Generator | None = 0,
    confidence: float = 0.95,
    between: str = "top2",
) -> tuple[float, float, float, str, int]:
    """Density valley between the two most prominent peaks, with a bootstrap CI.

    Parameters
    ----------
    values
        Marker values on the transformed scale (events of the parent gate).
    min_prominence
        A peak counts when its prominence is at least this fraction of the highest density.
    bw_adjust
        Multiplier of Silverman's bandwidth.
    unimodal
        What a single peak is, for the fallback: ``"negative"`` or ``"positive"``.
    fallback_percentile
        The mirror fallback puts the threshold at this percentile of a normal fitted to the
        main peak's outer half.
    n_boot
        Bootstrap resamples (0: no CI).
    random_state
        Seed or generator for the bootstrap.
    confidence
        Coverage of the percentile bootstrap interval.
    between
        ``"top2"``: the two most prominent peaks; ``"first_two"``: the lowest peak and the
        next one (a negative, a dim and a bright peak: cut negative from dim);
        ``"below_main"``: the highest peak and the most prominent peak left of it (debris
        below cells).

    Returns
    -------
    value, ci_low, ci_high, rule_used, n_events
        ``rule_used`` is ``"valley"`` or ``"mirror"`` (unimodal fallback).
    """
    return _binned_rule(
        values,
        between=between,
        rule="valley",
        min_prominence=min_prominence,
        bw_adjust=bw_adjust,
        unimodal=unimodal,
        z=_z_for(fallback_percentile),
        n_boot=n_boot,
        random_state=random_state,
        confidence=confidence,
    )


def gmm_threshold(
    values: ArrayLike,
    *,
    unimodal: str = "negative",
    fallback_percentile: float = 99.5,
    min_prominence: float = 0.02,
    bw_adjust: float = 1.0,
    n_boot: int = 200,
    random_state: int | np.random.Generator | None = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float, str, int]:
    """Equal-posterior threshold of a two-component Gaussian mixture, with a bootstrap CI.

    Falls back to :func:`valley_threshold` (then its mirror) when the mixture does not find
    two separated components.

    Returns
    -------
    value, ci_low, ci_high, rule_used, n_events
        ``rule_used`` is ``"gmm"``, ``"valley"`` or ``"mirror"``.
    """
    return _binned_rule(
        values,
        rule="gmm",
        min_prominence=min_prominence,
        bw_adjust=bw_adjust,
        unimodal=unimodal,
        z=_z_for(fallback_percentile),
        n_boot=n_boot,
        random_state=random_state,
        confidence=confidence,
    )


def mirror_threshold(
    values: ArrayLike,
    *,
    percentile: float = 99.5,
    unimodal: str = "negative",
    bw_adjust: float = 1.0,
    n_boot: int = 200,
    random_state: int | np.random.Generator | None = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float, str, int]:
    """Negative-mirror threshold: mode of the main peak + z(percentile) robust SDs.

    The negative population is assumed symmetric about its mode, so its spread is measured
    on its lower half, where positive cells do not contribute. This is the fallback for a
    missing FMO control.

    Returns
    -------
    value, ci_low, ci_high, rule_used, n_events
    """
    return _binned_rule(
        values,
        rule="mirror",
        min_prominence=1.0,
        bw_adjust=bw_adjust,
        unimodal=unimodal,
        z=_z_for(percentile),
        n_boot=n_boot,
        random_state=random_state,
        confidence=confidence,
    )


def quantile_threshold(
    values: ArrayLike,
    *,
    percentile: float = 99.5,
    n_boot: int = 200,
    random_state: int | np.random.Generator | None = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float, str, int]:
    """Percentile of ``values`` with its distribution-free (order-statistic) CI.

    Parameters
    ----------
    values
        Marker values on the transformed scale.
    percentile
        In (0, 100).
    n_boot
        0 skips the interval (as for the other rules); any other value gives the exact
        interval of :func:`nkflow.stats.quantile_interval`, which needs no resampling.
    random_state
        Unused (no resampling); accepted so that every rule takes the same arguments.
    confidence
        Coverage of the interval.

    Returns
    -------
    value, ci_low, ci_high, rule_used, n_events
    """
    del random_state  # the interval is exact
    v = _clean(values)
    if v.size == 0:
        raise GatingError("percentile threshold on an empty population")
    if not 0.0 < percentile < 100.0:
        raise GatingError(f"percentile = {percentile!r}; valid: 0 < percentile < 100")
    v.sort()
    value = float(np.percentile(v, percentile))
    lo = hi = float("nan")
    if n_boot > 0:
        lo, hi = quantile_interval(v, percentile / 100.0, confidence=confidence)
    return value, lo, hi, "quantile", int(v.size)


def fmo_threshold(
    values: ArrayLike,
    *,
    percentile: float = 99.5,
    n_boot: int = 200,
    random_state: int | np.random.Generator | None = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float, str, int]:
    """FMO threshold: the ``percentile`` of the marker in the FMO tube's parent gate.

    Same computation as :func:`quantile_threshold` (value and order-statistic interval).

    Returns
    -------
    value, ci_low, ci_high, rule_used, n_events
        ``rule_used`` is ``"fmo"``.
    """
    value, lo, hi, _, n = quantile_threshold(
        values,
        percentile=percentile,
        n_boot=n_boot,
        random_state=random_state,
        confidence=confidence,
    )
    return value, lo, hi, "fmo", n
