"""Binned densities of one marker: the fine histogram, its smoothing, peaks and valleys.

The density rules of :mod:`nkflow.gating.thresholds` and the scatter rules of
:mod:`nkflow.gating.scatter` work on a histogram of ``N_BINS`` bins between the 0.05th and
99.95th percentiles (padded by 5 %), smoothed with a Gaussian of Silverman's bandwidth (a
binned KDE). A bootstrap resample is then an exact multinomial redraw of the bin counts
(:func:`bootstrap_thresholds`), fast for any number of events.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import gaussian_filter1d

from .peaks import Peaks, RowPeaks, local_maxima

__all__ = [
    "GRID_QUANTILES",
    "N_BINS",
    "Redraw",
    "bandwidth_bins",
    "bootstrap_thresholds",
    "gmm_crossing",
    "grid_quantiles",
    "histogram_grid",
    "mirror_from_density",
    "mirror_peak",
    "reflected_from_density",
    "smoothed",
    "valley_from_density",
]

N_BINS = 1024

GRID_QUANTILES = [0.0005, 0.9995, 0.75, 0.25]  # the grid's range, then the quartiles


def grid_quantiles(v: NDArray[np.float64]) -> NDArray[np.float64]:
    """The quantiles :func:`histogram_grid` and :func:`bandwidth_bins` need, in one pass.

    Each quantile is the same number as when asked for alone (same order statistics, same
    interpolation), at half the cost of two calls.
    """
    return np.quantile(v, GRID_QUANTILES)


def histogram_grid(
    v: NDArray[np.float64], q: NDArray[np.float64] | None = None
) -> tuple[NDArray[np.float64], NDArray[np.float64], float]:
    """Counts, bin centres and bin width of ``v`` on the rules' grid.

    ``N_BINS`` bins between the 0.05th and 99.95th percentiles padded by 5 % of their span
    (or around the value range, when those percentiles coincide); ``q`` is
    :func:`grid_quantiles` of ``v`` when the caller has it.
    """
    lo, hi = (grid_quantiles(v) if q is None else q)[:2]
    if not hi > lo:
        lo, hi = float(v.min()) - 0.5, float(v.max()) + 0.5
    pad = 0.05 * (hi - lo)
    # equal bins given as a count and a range: numpy bins by arithmetic, checked against
    # the same linspace edges (identical counts); given as an edge array, it sorts ``v``
    counts, edges = np.histogram(v, bins=N_BINS, range=(lo - pad, hi + pad))
    centers = 0.5 * (edges[:-1] + edges[1:])
    return counts.astype(np.float64), centers, float(edges[1] - edges[0])


def bandwidth_bins(
    v: NDArray[np.float64], width: float, bw_adjust: float, q: NDArray[np.float64] | None = None
) -> float:
    """Silverman's bandwidth (times ``bw_adjust``) in bins of ``width``, at least one bin."""
    sd = np.std(v)
    iqr = np.subtract(*(grid_quantiles(v) if q is None else q)[2:])
    s = min(sd, iqr / 1.349) if iqr > 0 else sd
    if s <= 0:
        s = width
    bw = bw_adjust * 0.9 * s * v.size ** (-0.2)
    return max(bw / width, 1.0)


def smoothed(counts: NDArray[np.float64], sigma_bins: float) -> NDArray[np.float64]:
    """The binned KDE: ``counts`` smoothed with a Gaussian of ``sigma_bins`` bins."""
    return gaussian_filter1d(counts, sigma_bins, mode="constant")


def valley_from_density(
    dens: NDArray[np.float64],
    centers: NDArray[np.float64],
    min_prominence: float,
    between: str = "top2",
    local_peaks: Peaks | None = None,
) -> float | None:
    """Centre of the lowest bin between two peaks of ``dens``, or None with fewer peaks.

    Where several bins share the lowest density (an empty stretch between two peaks far
    apart), the middle of the widest such stretch.

    Peaks count with a prominence of at least ``min_prominence`` of the top; ``between``
    picks the pair (see :func:`nkflow.gating.thresholds.valley_threshold`).
    ``local_peaks``: every local maximum of ``dens`` when the caller has them
    (:meth:`Redraw.peaks`).
    """
    top = dens.max()
    if top <= 0:
        return None
    if local_peaks is None:
        local_peaks = local_maxima(dens)
    found = local_peaks.select(min_prominence * top)
    peaks, prom = found.positions, found.prominences
    if peaks.size < 2:
        return None
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
    low = np.flatnonzero(seg == seg.min())
    if low.size == 1:
        return float(centers[a + int(low[0])])
    # an empty stretch (the truncated kernel leaves exact zeros between well-separated
    # peaks): its middle, not its first bin at the foot of the lower peak; of several such
    # stretches the widest
    runs = np.split(low, np.flatnonzero(np.diff(low) > 1) + 1)
    run = max(runs, key=len)
    return float((centers[a + int(run[0])] + centers[a + int(run[-1])]) / 2.0)


def mirror_from_density(
    counts: NDArray[np.float64],
    dens: NDArray[np.float64],
    centers: NDArray[np.float64],
    z: float,
    unimodal: str,
    sigma_bins: float,
    redraw: Redraw | None = None,
) -> float:
    """Mode +- z * sigma, sigma from the half of the outermost peak away from the others.

    The peak is the lowest (``negative``) or highest (``positive``) one of the density with
    at least 10 % of the top height (the density padded with a zero bin on each side, so an
    edge bin can be that peak); its position is then refined on a 3x wider kernel, which is
    steadier for a broad negative population. ``redraw`` gives that refined mode when the
    caller has it cheaper (a bootstrap redraw: computed for the rest of its chunk once most
    redraws ask, :meth:`_Chunk.mirror_mode`).
    """
    total = counts.sum()
    if redraw is None:
        rough = mirror_peak(dens, unimodal)
        mode_i = _refined(smoothed(counts, 3.0 * sigma_bins), rough, sigma_bins)
    else:
        mode_i = redraw.mirror_mode(unimodal)
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


def mirror_peak(dens: NDArray[np.float64], unimodal: str = "negative") -> int:
    """The bin of the peak the mirror rule takes for the ``unimodal`` population.

    The lowest (``negative``) or highest (``positive``) peak of ``dens`` with at least 10 %
    of the top height and 5 % of it in prominence (the density padded with a zero bin on
    each side, so an edge bin can be that peak), before any refinement.
    """
    return _outer_peak(local_maxima(np.r_[0.0, dens, 0.0]), dens, unimodal)


def reflected_from_density(
    dens: NDArray[np.float64], centers: NDArray[np.float64], peak: int
) -> float | None:
    """Cut below a positive peak: where the events under it become mostly negatives.

    The peak at bin ``peak`` is taken as the positive population, symmetric about its
    mode: below the mode its density is its upper half reflected,
    ``P(x) = dens(2 mode - x)``. What the data hold beyond that, ``dens - P``, is the
    negative population below it. The cut is the highest bin below the mode where the
    negatives make at least half the density (``dens >= 2 P``): the two estimated
    populations' equal-density point, the boundary a valley approximates when both have
    a peak. No constant is involved beyond the peak the mirror rule would take.

    Parameters
    ----------
    dens
        The smoothed density (:func:`smoothed`).
    centers
        Its bin centres.
    peak
        The bin of the positive peak (:func:`mirror_peak`).

    Returns
    -------
    float or None
        The cut-off, or None when no bin below the peak qualifies (a peak at the grid's
        first bin).

    Notes
    -----
    Above the largest value the reflection reads zero density. A positive peak whose upper
    tail was cut off (a ceiling, margin QC) is then taken as too narrow and the cut lands
    inside it (77.7 % positive for 98.8 % when cut one SD above the mode). Bounding the
    reflection by the density at the largest value avoids that, but in files of a few
    thousand events that density is not negligible and the rule then gave no cut-off at
    all (FlowAtlas 390C ileum, 670 T cells); the cut feeds only the comparison with the
    batch's cut-off, which sets the gate, so the zero reading is kept.
    """
    below = np.arange(peak - 1, -1, -1)
    mirror = 2 * peak - below
    reflected = np.where(mirror < dens.size, dens[np.minimum(mirror, dens.size - 1)], 0.0)
    found = np.flatnonzero(dens[below] >= 2.0 * reflected)
    return float(centers[below[found[0]]]) if found.size else None


def _outer_peak(padded: Peaks, dens: NDArray[np.float64], unimodal: str) -> int:
    """The mirror rule's peak in ``dens``: the lowest or highest of its padded maxima.

    ``padded``: the local maxima of ``dens`` with a zero bin added at each end; those with
    at least 10 % of the top height and 5 % of it in prominence count.
    """
    top = dens.max()
    peaks = padded.select(0.05 * top, 0.1 * top).positions - 1
    if peaks.size == 0:
        return int(np.argmax(dens))
    return int(peaks[0] if unimodal == "negative" else peaks[-1])


def _half_window(sigma_bins: float) -> int:
    """Bins on each side of the rough mode searched on the 3x wider density."""
    return int(np.ceil(3.0 * sigma_bins))


def _refined(wide: NDArray[np.float64], rough: int, sigma_bins: float) -> int:
    """The highest bin of the 3x wider density within ``ceil(3 sigma)`` bins of ``rough``."""
    w = _half_window(sigma_bins)
    lo, hi = max(0, rough - w), min(wide.size, rough + w + 1)
    return lo + int(np.argmax(wide[lo:hi]))


def gmm_crossing(counts: NDArray[np.float64], x: NDArray[np.float64]) -> float | None:
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


_BOOT_CHUNK = 256


def bootstrap_thresholds(
    counts: NDArray[np.float64],
    sigma_bins: float,
    n_boot: int,
    random_state: int | np.random.Generator | None,
    estimate: Callable[[NDArray[np.float64], NDArray[np.float64], Redraw], tuple[float, str]],
) -> NDArray[np.float64]:
    """Threshold of ``n_boot`` multinomial redraws of the binned data.

    All redraws of a chunk are drawn in one call (the generator yields the same values as
    one call per redraw) and smoothed in one 2-D filter call, so a resample costs one
    peak search instead of a histogram, a filter call and Python overhead each. What the
    rules ask of a redraw beyond its density (its peaks, the mirror rule's 3x wider
    smoothing) is computed for the whole chunk too (:class:`Redraw`): ``estimate`` is
    called as ``estimate(counts, density, redraw)``.
    """
    rng = np.random.default_rng(random_state)
    n = int(counts.sum())
    p = counts / counts.sum()
    out = np.empty(n_boot)
    for start in range(0, n_boot, _BOOT_CHUNK):
        size = min(_BOOT_CHUNK, n_boot - start)
        draws = rng.multinomial(n, p, size=size).astype(np.float64)
        chunk = _Chunk(draws, sigma_bins)
        for i in range(size):
            out[start + i] = estimate(draws[i], chunk.dens[i], Redraw(chunk, i))[0]
    return out


class _Chunk:
    """A chunk of redraws: their densities, and the rest computed for all rows when asked."""

    def __init__(self, draws: NDArray[np.float64], sigma_bins: float) -> None:
        self.draws, self.sigma_bins = draws, sigma_bins
        self.dens = gaussian_filter1d(draws, sigma_bins, axis=1, mode="constant")
        self._peaks: RowPeaks | None = None
        self._padded: RowPeaks | None = None
        self._modes: tuple[str, int, NDArray[np.intp]] | None = None
        self._asked = 0

    def peaks(self) -> RowPeaks:
        if self._peaks is None:
            self._peaks = RowPeaks(self.dens)
        return self._peaks

    def padded_peaks(self) -> RowPeaks:
        if self._padded is None:
            self._padded = RowPeaks(np.pad(self.dens, ((0, 0), (1, 1))))
        return self._padded

    def mirror_mode(self, i: int, unimodal: str) -> int:
        """The mirror rule's refined mode of redraw ``i`` (rows asked in increasing order).

        The first requests smooth their redraw whole (one filter call each); once at least
        16 have come and they are at least half of the rows seen, the modes of the rest of
        the chunk are refined together on windows of the wider smoothing
        (:func:`_refined_modes`): the same bins, bit for bit.
        """
        if self._modes is not None and self._modes[0] == unimodal and i >= self._modes[1]:
            return int(self._modes[2][i - self._modes[1]])
        self._asked += 1
        if self._modes is None and self._asked >= max(16, 0.5 * (i + 1)):
            rough = [self._rough(r, unimodal) for r in range(i, len(self.dens))]
            modes = _refined_modes(self.draws[i:], np.array(rough), self.sigma_bins)
            self._modes = (unimodal, i, modes)
            return int(modes[0])
        wide = gaussian_filter1d(self.draws[i], 3.0 * self.sigma_bins, mode="constant")
        return _refined(wide, self._rough(i, unimodal), self.sigma_bins)

    def _rough(self, i: int, unimodal: str) -> int:
        return _outer_peak(self.padded_peaks().row(i), self.dens[i], unimodal)


def _refined_modes(
    draws: NDArray[np.float64], rough: NDArray[np.intp], sigma_bins: float
) -> NDArray[np.intp]:
    """:func:`_refined` of every row, smoothing only each row's window of bins.

    ``gaussian_filter1d(row, 3 sigma, mode="constant")`` at bin ``p`` is the centre weight
    times ``row[p]``, plus ``(row[p - j] + row[p + j])`` times the weight of ``j``, added
    from the farthest ``j`` to the nearest (scipy's symmetric-kernel loop; zeros beyond the
    row). The same sums in the same order, over the ``2 ceil(3 sigma) + 1`` bins around
    each row's peak instead of all bins, give the same values to the bit
    (``tests/test_gating_fast_paths.py`` compares them with the filter).
    """
    sigma = 3.0 * sigma_bins
    radius = int(4.0 * float(sigma) + 0.5)  # scipy's truncate = 4
    x = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 / (sigma * sigma) * x**2)
    weights = weights / weights.sum()
    n_rows, n = draws.shape
    w = _half_window(sigma_bins)
    width = 2 * w + 1
    start = rough - w  # each row's window: bins start .. start + width - 1
    padded = np.zeros((n_rows, n + 2 * (radius + w)))
    padded[:, radius + w : radius + w + n] = draws
    # the bins the window's sums read, from start - radius on
    reads = np.take_along_axis(padded, (start + w)[:, None] + np.arange(width + 2 * radius), 1)
    wide = reads[:, radius : radius + width] * weights[radius]
    for j in range(radius, 0, -1):
        left = reads[:, radius - j : radius - j + width]
        right = reads[:, radius + j : radius + j + width]
        wide += (left + right) * weights[radius - j]
    bins = start[:, None] + np.arange(width)
    wide[(bins < 0) | (bins >= n)] = -np.inf
    return start + np.argmax(wide, axis=1)


class Redraw:
    """One bootstrap redraw of a chunk, and what the density rules ask of it.

    Each answer is computed for every redraw of the chunk the first time one of them asks
    (:class:`~nkflow.gating.peaks.RowPeaks`), or for the rest of the chunk once most rows
    ask (:meth:`_Chunk.mirror_mode`); every row is bit for bit what the rule computes from
    the redraw alone.
    """

    __slots__ = ("_chunk", "_i")

    def __init__(self, chunk: _Chunk, i: int) -> None:
        self._chunk, self._i = chunk, i

    def peaks(self) -> Peaks:
        """Every local maximum of the redraw's density, with its prominence."""
        return self._chunk.peaks().row(self._i)

    def mirror_mode(self, unimodal: str) -> int:
        """The mirror rule's mode bin: its outer peak refined on the 3x wider smoothing."""
        return self._chunk.mirror_mode(self._i, unimodal)

    def mirror_peak(self, unimodal: str) -> int:
        """The mirror rule's outer peak before refinement (:func:`mirror_peak`)."""
        return self._chunk._rough(self._i, unimodal)
