"""Local maxima of binned densities and their prominences, for many rows at once.

The density rules look for peaks of a smoothed histogram with a minimum prominence (and,
for the mirror rule, a minimum height). Each bootstrap redraw is one such histogram, so a
threshold's interval asks for the peaks of a few hundred rows. :class:`RowPeaks` finds them
for a whole block of rows in a few array passes instead of one call per row.

Definitions (those of :func:`scipy.signal.find_peaks`, which this reproduces exactly, to the
bit, for finite rows; ``tests/test_gating_peaks.py`` compares the two):

* a peak is a run of equal values ``x[l..r]`` with ``x[l-1] < x[l]`` and ``x[r] > x[r+1]``
  (so never the first or last sample), placed at ``(l + r) // 2``;
* its prominence is ``x[p] - max(left_min, right_min)``, where ``left_min`` is the lowest
  value between ``p`` and the nearest sample to its left higher than ``x[p]`` (or the
  row's start), ``right_min`` likewise to its right.

How the prominences are found without walking the samples: between two neighbouring peaks
a row only falls and then rises (any rise then fall would be another peak), and so it does
between its start and the first peak and between the last peak and its end. Walking left
from a peak, the samples stay at or below it until the walk climbs towards a higher peak
(or the row's start), and the lowest sample passed is the lowest of the valleys between
the peaks passed. So each row needs only its valley minima (one ``minimum.reduceat``) and,
per peak, a walk over the neighbouring peaks, done for all peaks of the block together.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

__all__ = ["Peaks", "RowPeaks", "find_peaks", "local_maxima"]

_FEW_PEAKS = 32  # up to this many peaks in a block, walk them one by one


class Peaks(NamedTuple):
    """The local maxima of one row: positions (ascending), heights and prominences."""

    positions: NDArray[np.intp]
    heights: NDArray[np.float64]
    prominences: NDArray[np.float64]

    def select(self, prominence: float, height: float | None = None) -> Peaks:
        """The peaks with at least ``prominence`` (and ``height``, when given)."""
        keep = prominence <= self.prominences
        if height is not None:
            keep &= height <= self.heights
        return Peaks(self.positions[keep], self.heights[keep], self.prominences[keep])


class RowPeaks:
    """Every local maximum of every row of a 2-D array, with its prominence.

    Parameters
    ----------
    rows
        ``(n_rows, n_samples)`` finite values (e.g. smoothed histograms, one per row).

    Raises
    ------
    ValueError
        ``rows`` is not 2-D or not finite.
    """

    def __init__(self, rows: NDArray[np.float64]) -> None:
        x = np.ascontiguousarray(rows, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"RowPeaks needs a 2-D array, got {x.ndim} dimension(s)")
        if not np.isfinite(x).all():
            raise ValueError("RowPeaks needs finite values")
        n_rows, n = x.shape
        self._n_rows = n_rows
        if n < 3 or n_rows == 0:  # no sample has a neighbour on both sides
            self._start = np.zeros(n_rows + 1, dtype=np.intp)
            self._pos = np.empty(0, dtype=np.intp)
            self._height = self._prom = np.empty(0)
            return
        row, pos = _plateau_midpoints(x)
        # peaks per row, and where each row's peaks start in the flat arrays
        start = np.zeros(n_rows + 1, dtype=np.intp)
        np.cumsum(np.bincount(row, minlength=n_rows), out=start[1:])
        height = x[row, pos]
        # the valleys of each row: [start, p1), [p1, p2), ..., [pm, end), as flat offsets;
        # a row's k-th valley is at valley_start[row] + k
        bounds = np.empty(pos.size + n_rows, dtype=np.intp)
        valley_start = start[:-1] + np.arange(n_rows)
        is_row_start = np.zeros(bounds.size, dtype=bool)
        is_row_start[valley_start] = True
        bounds[valley_start] = np.arange(n_rows) * n
        bounds[~is_row_start] = row * n + pos
        valleys = np.minimum.reduceat(x.ravel(), bounds)
        local = np.arange(pos.size) - start[row]  # index of each peak within its row
        first_valley = valley_start[row] + local  # the valley just left of each peak
        count = start[row + 1] - start[row]
        left = _walk(height, valleys, first_valley, local, count, step=-1)
        right = _walk(height, valleys, first_valley + 1, local, count, step=1)
        self._start, self._pos, self._height = start, pos, height
        self._prom = height - np.maximum(left, right)

    def __len__(self) -> int:
        return self._n_rows

    def row(self, i: int) -> Peaks:
        """The local maxima of row ``i`` (positions ascending)."""
        a, b = self._start[i], self._start[i + 1]
        return Peaks(self._pos[a:b], self._height[a:b], self._prom[a:b])


def _plateau_midpoints(x: NDArray[np.float64]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Row and position of every peak (plateau midpoint), ordered by row, then position."""
    n = x.shape[1]
    rise = x[:, 1:] > x[:, :-1]  # step j: x[j] -> x[j + 1]
    fall = x[:, 1:] < x[:, :-1]
    into = rise[:, :-1]  # a rise into sample j + 1 (which then has two neighbours)
    row, j = np.nonzero(into & fall[:, 1:])  # single-sample peaks
    pos = j + 1
    flat = into & ~(rise[:, 1:] | fall[:, 1:])  # a rise into a plateau (rare: equal values)
    if not flat.any():
        return row, pos
    prow, pj = np.nonzero(flat)
    # the plateau [l, r] ends at the first change after it: a peak when that is a fall
    changes = np.flatnonzero(rise | fall)  # as flat step indices row * (n - 1) + step
    at = np.minimum(np.searchsorted(changes, prow * (n - 1) + pj + 1), changes.size - 1)
    k_flat = changes[at] if changes.size else np.full(prow.size, -1)
    is_peak = (k_flat // (n - 1) == prow) & (k_flat > prow * (n - 1) + pj)
    is_peak &= fall.ravel()[np.maximum(k_flat, 0)]
    prow, l_pos = prow[is_peak], pj[is_peak] + 1
    r_pos = k_flat[is_peak] - prow * (n - 1)
    row = np.concatenate([row, prow])
    pos = np.concatenate([pos, (l_pos + r_pos) // 2])
    order = np.argsort(row * n + pos, kind="stable")
    return row[order], pos[order]


def _walk(
    height: NDArray[np.float64],
    valleys: NDArray[np.float64],
    first: NDArray[np.intp],
    local: NDArray[np.intp],
    count: NDArray[np.intp],
    step: int,
) -> NDArray[np.float64]:
    """Lowest valley each peak's walk passes before a higher peak, in direction ``step``.

    ``first`` is the valley next to each peak on that side; the walk passes the next peak
    when it is not higher and goes on to the valley beyond it. All peaks walk at once;
    a few (one row's) walk one by one, in fewer calls.
    """
    if height.size <= _FEW_PEAKS:
        rows = zip(first.tolist(), local.tolist(), count.tolist(), strict=True)
        return _walk_each(height.tolist(), valleys.tolist(), rows, step)
    low = valleys[first].copy()
    nxt = local + step  # the neighbouring peak's index within the row
    active = (nxt >= 0) & (nxt < count)
    d = 1
    while active.any():
        idx = np.flatnonzero(active)
        beyond = height[idx + step * d] <= height[idx]
        idx = idx[beyond]
        low[idx] = np.minimum(low[idx], valleys[first[idx] + step * d])
        active[:] = False
        nxt = local[idx] + step * (d + 1)
        active[idx[(nxt >= 0) & (nxt < count[idx])]] = True
        d += 1
    return low


def _walk_each(
    h: list[float], v: list[float], rows: Iterable[tuple[int, int, int]], step: int
) -> NDArray[np.float64]:
    """:func:`_walk` peak by peak; ``rows``: each peak's first valley, index and row count."""
    out = []
    for g, (f, i, n) in enumerate(rows):
        low, d = v[f], 1
        while 0 <= i + step * d < n and h[g + step * d] <= h[g]:
            low = min(low, v[f + step * d])
            d += 1
        out.append(low)
    return np.array(out, dtype=np.float64)


def local_maxima(x: NDArray[np.float64]) -> Peaks:
    """Every local maximum of one finite 1-D row, with its prominence (ascending)."""
    return RowPeaks(np.asarray(x, dtype=np.float64)[None, :]).row(0)


def find_peaks(x: NDArray[np.float64], *, prominence: float, height: float | None = None) -> Peaks:
    """Peaks of one row with at least ``prominence`` (and ``height``), ascending.

    The same peaks and prominences as ``scipy.signal.find_peaks(x, height=height,
    prominence=prominence)`` for a finite 1-D ``x``.
    """
    return local_maxima(x).select(prominence, height)
