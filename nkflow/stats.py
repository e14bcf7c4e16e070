"""Small statistics shared by gating and scoring: proportions, differences, quantiles.

Kept dependency-free (numpy and scipy only) and vectorised, because gating computes a
confidence interval for every population of every sample.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats as _sps

__all__ = ["newcombe_interval", "quantile_bound_min_n", "quantile_interval", "wilson_interval"]


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence!r}")
    return float(_sps.norm.ppf(0.5 + confidence / 2.0))


def wilson_interval(
    successes: ArrayLike, trials: ArrayLike, *, confidence: float = 0.95
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Wilson score interval for a binomial proportion.

    Parameters
    ----------
    successes
        Number of events in the population (array-like of non-negative integers).
    trials
        Number of events in the parent (same shape, ``>= successes``).
    confidence
        Coverage of the interval, 0.95 by default.

    Returns
    -------
    low, high
        Interval bounds as proportions in [0, 1]; NaN where ``trials == 0``; exactly 0
        (the low bound) at 0 successes and exactly 1 (the high bound) at ``trials``.
    """
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    if np.any(k < 0) or np.any(k > n):
        raise ValueError("successes must lie between 0 and trials")
    z = _z(confidence)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1.0 + z * z / n
        centre = (p + z * z / (2.0 * n)) / denom
        half = z * np.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denom
        low = np.clip(centre - half, 0.0, 1.0)
        high = np.clip(centre + half, 0.0, 1.0)
    # exact at the ends: centre - half rounds to ~5e-17 at 0 of n (and 1 - 1e-16 at n of
    # n), which a "ci_low > 0" filter would read as a population present
    low = np.where(k == 0, 0.0, low)
    high = np.where(k == n, 1.0, high)
    low = np.where(n > 0, low, np.nan)
    high = np.where(n > 0, high, np.nan)
    return low, high


def newcombe_interval(
    k1: ArrayLike,
    n1: ArrayLike,
    k2: ArrayLike,
    n2: ArrayLike,
    *,
    confidence: float = 0.95,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Difference of two independent proportions with Newcombe's hybrid score interval.

    Newcombe (1998), method 10: the difference ``p1 - p2`` with bounds built from the
    Wilson intervals of each proportion. It keeps close to nominal coverage for small
    counts and proportions near 0, which is where AREG responses live.

    Parameters
    ----------
    k1, n1
        Positive events and total events in the first tube (e.g. stimulated).
    k2, n2
        Positive events and total events in the second tube (e.g. unstimulated).
    confidence
        Coverage of the interval, 0.95 by default.

    Returns
    -------
    difference, low, high
        ``p1 - p2`` and its interval bounds, as proportions in [-1, 1].
    """
    k1a, n1a = np.asarray(k1, float), np.asarray(n1, float)
    k2a, n2a = np.asarray(k2, float), np.asarray(n2, float)
    l1, u1 = wilson_interval(k1a, n1a, confidence=confidence)
    l2, u2 = wilson_interval(k2a, n2a, confidence=confidence)
    with np.errstate(invalid="ignore", divide="ignore"):
        p1 = k1a / n1a
        p2 = k2a / n2a
        d = p1 - p2
        low = d - np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
        high = d + np.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return d, low, high


def quantile_interval(
    sorted_values: NDArray[np.float64], q: float, *, confidence: float = 0.95
) -> tuple[float, float]:
    """Distribution-free confidence interval of a quantile, from order statistics.

    The number of values below the population's ``q`` quantile is Binomial(n, q), so the
    order statistics at that binomial's ``alpha/2`` and ``1 - alpha/2`` quantiles bracket
    it with at least ``confidence`` coverage whatever the distribution (exact, no
    resampling; bootstraps of extreme percentiles such as an FMO's 99.5th under-cover).

    A sample too small to hold the order statistic a bound needs leaves that bound open:
    ``+inf`` for the upper one (the 99.5th percentile of fewer than
    :func:`quantile_bound_min_n` events is not bounded above by the sample maximum, which
    falls below it with probability ``q ** n``), ``-inf`` for the lower one. Clipping the
    rank to the sample instead would cover far less than promised (16 % at n = 40).

    Parameters
    ----------
    sorted_values
        The sample, sorted ascending, finite.
    q
        Quantile in (0, 1), e.g. 0.995.
    confidence
        Coverage, 0.95 by default.

    Returns
    -------
    low, high
        Interval bounds (values of the sample, or ``-inf`` / ``+inf`` for an open bound);
        NaN for an empty sample.
    """
    _z(confidence)  # validates
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must be between 0 and 1, got {q!r}")
    n = len(sorted_values)
    if n == 0:
        return float("nan"), float("nan")
    alpha = 1.0 - confidence
    lo_rank = int(_sps.binom.ppf(alpha / 2.0, n, q))  # 1-based ranks of order statistics
    hi_rank = int(_sps.binom.ppf(1.0 - alpha / 2.0, n, q)) + 1
    low = float(sorted_values[lo_rank - 1]) if lo_rank >= 1 else float("-inf")
    high = float(sorted_values[hi_rank - 1]) if hi_rank <= n else float("inf")
    return low, high


def quantile_bound_min_n(q: float, *, confidence: float = 0.95) -> int:
    """Fewest values whose order statistics bound the ``q`` quantile on both sides.

    Below this count :func:`quantile_interval` leaves a bound open: the sample maximum
    (minimum) is the last candidate, and it lies above (below) the quantile with
    probability ``1 - q ** n`` (``1 - (1 - q) ** n``), which must reach ``1 - alpha/2``.

    Parameters
    ----------
    q
        Quantile in (0, 1).
    confidence
        Coverage, 0.95 by default.

    Returns
    -------
    int
        E.g. 736 for the 99.5th percentile at 95 %.
    """
    _z(confidence)
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must be between 0 and 1, got {q!r}")
    tail = (1.0 - confidence) / 2.0
    n = int(np.ceil(np.log(tail) / np.log(max(q, 1.0 - q))))
    while n > 1 and max(q, 1.0 - q) ** (n - 1) <= tail:  # guard against rounding
        n -= 1
    while max(q, 1.0 - q) ** n > tail:
        n += 1
    return n
