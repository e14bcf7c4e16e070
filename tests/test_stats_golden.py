"""Wilson and Newcombe intervals against an independent implementation (golden truth).

The expected values are statsmodels 0.15's ``proportion_confint(method="wilson")`` and
``confint_proportions_2indep(method="newcomb", compare="diff")``, written out here so the
suite does not depend on statsmodels.
"""

from __future__ import annotations

import numpy as np
import pytest

from nkflow.stats import newcombe_interval, wilson_interval

WILSON = [
    ((0, 3), (0.0, 0.5614970317550455)),
    ((3, 3), (0.43850296824495444, 1.0)),
    ((1, 10), (0.017876213095072924, 0.40415002679523854)),
    ((45, 200), (0.17262369715089126, 0.2877412323566053)),
    ((0, 1), (0.0, 0.7934506856227627)),
    ((1, 1), (0.2065493143772374, 1.0)),
    ((7, 9000), (0.0003768119684965124, 0.001604726567282078)),
]
NEWCOMBE = [
    ((12, 200, 3, 180), (0.003148746417247321, 0.08667942818357832)),
    ((0, 50, 0, 40), (-0.08762160119728668, 0.07134759913335874)),
    ((30, 30, 0, 25), (0.8249986681762721, 1.0)),
    ((5, 1000, 9, 1000), (-0.01251158103138452, 0.00389716751361355)),
]


@pytest.mark.parametrize(("counts", "expected"), WILSON, ids=[str(c) for c, _ in WILSON])
def test_wilson_matches_statsmodels(counts, expected):
    low, high = wilson_interval(*counts)
    np.testing.assert_allclose([low, high], expected, rtol=1e-12, atol=1e-15)


def test_wilson_is_exact_at_none_and_all():
    """At 0 of n the low bound rounded to ~5e-17 for 40,283 of n = 1..200,000 (and the high
    bound at n of n to 1 - 1e-16): a ``ci_low > 0`` filter called an empty population present."""
    n = np.arange(1, 200_001)
    low, _ = wilson_interval(np.zeros_like(n), n)
    _, high = wilson_interval(n, n)
    assert (low == 0.0).all() and (high == 1.0).all()


@pytest.mark.parametrize(("counts", "expected"), NEWCOMBE, ids=[str(c) for c, _ in NEWCOMBE])
def test_newcombe_matches_statsmodels(counts, expected):
    k1, n1, k2, n2 = counts
    difference, low, high = newcombe_interval(*counts)
    assert difference == pytest.approx(k1 / n1 - k2 / n2)
    np.testing.assert_allclose([low, high], expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("n_boot", [200, 0])
@pytest.mark.parametrize(("n", "percentile"), [(5, 99.5), (8, 99.9), (2, 99.5), (1000, 99.5)])
def test_a_percentile_cut_off_lies_inside_its_interval(n: int, percentile: float, n_boot: int):
    """The 99.5th percentile of 5 FMO events read 4.98 with the interval (5.0, inf): the
    interpolated value sat below the order statistic that bounds it from below."""
    from nkflow.gating.thresholds import quantile_threshold

    values = np.arange(1.0, n + 1.0)
    value, _, _, _, _ = quantile_threshold(values, percentile=percentile, n_boot=n_boot)
    _, lo, hi, _, _ = quantile_threshold(values, percentile=percentile)
    assert lo <= value <= hi
    if n == 1000:  # enough events: the interpolated percentile itself
        assert value == pytest.approx(np.percentile(values, percentile))
