"""The exact (order-statistic) interval of an FMO percentile keeps its promised coverage.

Small controls are the case that matters: at n = 40 the 99.5th percentile lies above the
sample maximum with probability 1 - 0.995**40 = 18 %, so no value of the sample bounds it
from above and the interval's upper bound must be open, not the maximum.
"""

from __future__ import annotations

import numpy as np
import pytest

from nkflow.stats import quantile_bound_min_n, quantile_interval

DRAWS = {
    "normal": (lambda rng, size: rng.standard_normal(size), 2.5758293035489),
    "lognormal": (lambda rng, size: rng.lognormal(size=size), float(np.exp(2.5758293035489))),
}


def _coverage(shape: str, n: int, q: float = 0.995, reps: int = 2000) -> tuple[float, int]:
    draw, truth = DRAWS[shape]
    rng = np.random.default_rng(n)
    samples = np.sort(draw(rng, (reps, n)), axis=1)
    hits = 0
    open_high = 0
    for row in samples:
        lo, hi = quantile_interval(row, q)
        hits += lo <= truth <= hi
        open_high += bool(np.isinf(hi))
    return hits / reps, open_high


@pytest.mark.parametrize("shape", sorted(DRAWS))
@pytest.mark.parametrize("n", [40, 200, 1000])
def test_interval_covers_the_fmo_percentile_at_small_n(shape, n):
    reps = 2000
    cover, open_high = _coverage(shape, n, reps=reps)
    mc_error = 3.0 * np.sqrt(0.95 * 0.05 / reps)  # three Monte Carlo standard errors
    assert cover >= 0.95 - mc_error
    # below 736 events the upper bound does not exist: it is open, never the maximum
    assert open_high == (reps if n < quantile_bound_min_n(0.995) else 0)


def test_open_bounds_are_infinite_not_the_sample_extremes():
    values = np.sort(np.random.default_rng(0).normal(size=40))
    lo, hi = quantile_interval(values, 0.995)
    assert hi == np.inf and lo <= values[-1]
    lo, hi = quantile_interval(values, 0.005)
    assert lo == -np.inf and hi >= values[0]
    lo, hi = quantile_interval(values, 0.5)  # the median is bounded on both sides
    assert np.isfinite(lo) and np.isfinite(hi) and lo < np.median(values) < hi


@pytest.mark.parametrize(("q", "n"), [(0.995, 736), (0.005, 736), (0.99, 368), (0.5, 6)])
def test_min_n_is_where_both_bounds_first_exist(q, n):
    assert quantile_bound_min_n(q) == n
    for size, closed in ((n - 1, False), (n, True)):
        lo, hi = quantile_interval(np.arange(size, dtype=float), q)
        assert bool(np.isfinite(lo) and np.isfinite(hi)) is closed
