"""Robust bands of bootstrap redraws, read off counts instead of a partition per redraw.

A bootstrap redraw of ``m`` values drawn with replacement from ``sub`` is fully described
by how often it drew each value. With ``sub`` sorted once, every order statistic of every
redraw is a search in the cumulative counts, and so is every order statistic of the
distances ``|v - c|`` to a centre ``c``: for values sorted by ``v``, ``fl(v - c)`` is
non-decreasing (rounding is monotone), so the values within distance ``t`` of ``c`` are
one contiguous run of the sorted values, found by two searches. The ``k``-th smallest
distance is then the smallest distance of a sorted position that at least ``k + 1`` drawn
values lie within, bisected on each side of the centre: one of the distances, to the bit.

:func:`median_band_redraws` gives, for every redraw, the singlet gate's band (median and
MAD of the redraw, the core above ``median - 3 MAD``, then ``median -+ k MAD`` of the core)
exactly as :func:`nkflow.gating.scatter.singlet_band` computes it on the redraw's values
(bit for bit), at about a third of the cost (``tests/test_gating_redraws.py`` compares the
two).
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice

import numpy as np
from numpy.typing import NDArray

__all__ = ["median_band_redraws"]

_CHUNK_ROWS = 64  # redraws per pass: ~30 MB of counts for 20k values (rows x values)


def median_band_redraws(
    sub: NDArray[np.float64],
    draws: Iterable[NDArray[np.integer]],
    k_low: float,
    k_high: float,
) -> NDArray[np.float64]:
    """The singlet band of each redraw ``sub[d]`` for ``d`` in ``draws``.

    Parameters
    ----------
    sub
        The values redrawn from (finite float64).
    draws
        Index arrays into ``sub`` of one length, one per redraw; consumed in order,
        ``_CHUNK_ROWS`` at a time (a generator of random draws keeps memory bounded).
    k_low, k_high
        MAD multiples below and above the core's median.

    Returns
    -------
    numpy.ndarray
        ``(n_redraws, 2)``: ``median - k_low MAD`` and ``median + k_high MAD`` of the core
        of each redraw (the values above its ``median - 3 MAD``).
    """
    sub = np.asarray(sub, dtype=np.float64)
    if not np.isfinite(sub).all():
        raise ValueError("median_band_redraws needs finite values")
    order = np.argsort(sub, kind="stable")
    values = sub[order]
    rank = np.empty(sub.size, dtype=np.intp)
    rank[order] = np.arange(sub.size)
    bands = [np.empty((0, 2))]
    draws = iter(draws)
    while (first := next(draws, None)) is not None:
        # each redraw's sorted positions, one row per redraw (the draws themselves are
        # not kept: a generator's arrays are freed as they are read)
        ranks = np.empty((_CHUNK_ROWS, np.size(first)), dtype=np.intp)
        n_rows = 0
        for d in (first, *islice(draws, _CHUNK_ROWS - 1)):
            rank.take(d, out=ranks[n_rows])
            n_rows += 1
        bands.append(_Redraws(values, ranks[:n_rows]).band(k_low, k_high))
        del ranks
    return np.concatenate(bands)


class _Redraws:
    """Counts of a chunk of redraws over the sorted values, and searches in them."""

    def __init__(self, values: NDArray[np.float64], ranks: NDArray[np.intp]) -> None:
        """``ranks``: each redraw's sorted positions, one row per redraw (overwritten)."""
        n_rows, length = ranks.shape
        self.values, self.m = values, values.size
        self.rows = np.arange(n_rows)
        ranks += (self.rows * self.m)[:, None]
        counts = np.bincount(ranks.ravel(), minlength=n_rows * self.m).reshape(n_rows, self.m)
        # _cum[r, j] - r * _step: values of redraw r at sorted positions < j. Each row is
        # offset past the previous row's largest count, so the flattened rows increase and
        # one search finds a rank in every row.
        self._step = length + 1
        self._cum = np.zeros((n_rows, self.m + 1), dtype=np.int64)
        np.cumsum(counts, axis=1, out=self._cum[:, 1:])
        del counts
        self._offset = self.rows * self._step
        self._cum += self._offset[:, None]
        self._flat = self._cum.ravel()

    def _at(self, j: NDArray[np.intp]) -> NDArray[np.int64]:
        return self._cum[self.rows, j] - self._offset

    def order_statistic(self, k: NDArray[np.int64]) -> NDArray[np.float64]:
        """The value of rank ``k`` (0-based, over all sorted positions) of each redraw."""
        hits = np.searchsorted(self._flat, k + self._offset, side="right")
        pos = hits - self.rows * (self.m + 1) - 1
        return self.values[np.clip(pos, 0, self.m - 1)]

    def median(self, first: NDArray[np.intp]) -> NDArray[np.float64]:
        """Median of each redraw's values at sorted positions ``>= first``."""
        before = self._at(first)
        n = self._at(np.full(len(self.rows), self.m)) - before
        low = self.order_statistic(before + np.maximum(n - 1, 0) // 2)
        high = self.order_statistic(before + n // 2)
        return _middle(low, high, n)

    def _within(
        self, centre: NDArray[np.float64], t: NDArray[np.float64], first: NDArray[np.intp]
    ) -> NDArray[np.int64]:
        """Drawn values at positions ``>= first`` with ``|fl(v - centre)| <= t``."""
        v, m = self.values, self.m
        # positions with fl(v - centre) <= t: a prefix; its end, from a search, then mended
        up = np.searchsorted(v, centre + t, side="right")
        while (move := (up < m) & (v[np.minimum(up, m - 1)] - centre <= t)).any():
            up = up + move
        while (move := (up > 0) & (v[np.maximum(up - 1, 0)] - centre > t)).any():
            up = up - move
        # positions with fl(v - centre) >= -t: a suffix; its start
        low = np.searchsorted(v, centre - t, side="left")
        while (move := (low > 0) & (v[np.maximum(low - 1, 0)] - centre >= -t)).any():
            low = low - move
        while (move := (low < m) & (v[np.minimum(low, m - 1)] - centre < -t)).any():
            low = low + move
        low = np.maximum(low, first)
        return np.maximum(self._at(up) - self._at(np.minimum(low, up)), 0)

    def _distance_rank(
        self, centre: NDArray[np.float64], k: NDArray[np.int64], first: NDArray[np.intp]
    ) -> NDArray[np.float64]:
        """The ``k``-th smallest (0-based) ``|fl(v - centre)|`` over positions ``>= first``.

        The answer is the distance of a sorted position on one side of the centre: on each
        side, bisect for the position nearest the centre whose distance has at least
        ``k + 1`` drawn values within it; the smaller of the two distances is the answer.
        """
        v, m = self.values, self.m
        split = np.maximum(np.searchsorted(v, centre, side="left"), first)  # v >= centre
        need = k + 1

        def enough(pos: NDArray[np.intp]) -> NDArray[np.bool_]:
            t = np.abs(v[np.clip(pos, 0, m - 1)] - centre)
            return self._within(centre, t, first) >= need

        # right side, distances rising with the position: the first position with enough
        lo, hi = split.copy(), np.full(len(self.rows), m)
        while (open_ := lo < hi).any():
            mid = (lo + hi) // 2
            ok = enough(mid)
            hi = np.where(open_ & ok, mid, hi)
            lo = np.where(open_ & ~ok, mid + 1, lo)
        right = np.where(lo < m, np.abs(v[np.minimum(lo, m - 1)] - centre), np.inf)
        # left side, distances falling with the position: the last position with enough
        lo, hi = first.copy(), split.copy()
        while (open_ := lo < hi).any():
            mid = (lo + hi) // 2
            ok = enough(mid)
            lo = np.where(open_ & ok, mid + 1, lo)
            hi = np.where(open_ & ~ok, mid, hi)
        last = lo - 1
        left = np.where(last >= first, np.abs(v[np.clip(last, 0, m - 1)] - centre), np.inf)
        return np.minimum(left, right)

    def mad_median(
        self, centre: NDArray[np.float64], first: NDArray[np.intp]
    ) -> NDArray[np.float64]:
        """Median of ``|v - centre|`` over each redraw's values at positions ``>= first``."""
        n = self._at(np.full(len(self.rows), self.m)) - self._at(first)
        safe = np.where(n > 0, centre, 0.0)  # no values: the median is NaN (below)
        low = self._distance_rank(safe, np.maximum(n - 1, 0) // 2, first)
        high = self._distance_rank(safe, n // 2, first)
        return _middle(low, high, n)

    def band(self, k_low: float, k_high: float) -> NDArray[np.float64]:
        """The singlet band of each redraw (see :func:`median_band_redraws`)."""
        everything = np.zeros(len(self.rows), dtype=np.intp)
        med = self.median(everything)
        mad = 1.4826 * self.mad_median(med, everything)
        core = np.searchsorted(self.values, med - 3 * mad, side="right")  # first v > cut
        med = self.median(core)
        mad = 1.4826 * self.mad_median(med, core)
        return np.column_stack([med - k_low * mad, med + k_high * mad])


def _middle(
    low: NDArray[np.float64], high: NDArray[np.float64], n: NDArray[np.int64]
) -> NDArray[np.float64]:
    """The median from its middle order statistics, as :func:`numpy.mean` averages them.

    NaN where there are no values (``numpy.median`` of an empty array).
    """
    pair = np.mean(np.column_stack([low, high]), axis=1)
    return np.where(n == 0, np.nan, np.where(n % 2 == 1, high, pair))
