"""Zero-inflated negative channels (mass cytometry): a spike of zeros in the negatives.

On a mass cytometer most cells give no ion count on a channel they do not carry, so after
arcsinh the negative population is a spike at 0 plus a shoulder of one- and two-count
events. The density rules of :mod:`nkflow.gating.thresholds` treat the spike as part of the
negative population: peaks and valleys are sought among the other events, and the mirror
fallback becomes :func:`censored_mirror`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import stats as _sps

__all__ = ["ZERO_SPIKE", "above_negatives", "censored_mirror", "zero_spike"]


#: A spike holding at least this fraction of the events at the lowest value makes a channel
#: zero-inflated (mass cytometry: most cells give no ion count on a negative channel).
ZERO_SPIKE = 0.10


def zero_spike(v: NDArray[np.float64]) -> int:
    """Number of events at the floor when they are a spike (>= ZERO_SPIKE), else 0.

    At least 10 other events must remain, or the channel is handled as usual.
    """
    n0 = int(np.count_nonzero(v <= v.min()))
    if n0 < ZERO_SPIKE * v.size or v.size - n0 < 10:
        return 0
    return n0


def censored_mirror(
    counts: NDArray[np.float64], centers: NDArray[np.float64], n0: int, z: float
) -> float:
    """Mirror bound of a negative population censored at the floor (a zero spike).

    The negative population is taken as a normal whose lower part is piled up at the floor
    (``n0`` events, fraction ``p0``); its mean and SD come from two quantiles of the whole
    sample above the spike, at ``p0 + (1 - p0) / 4`` and ``p0 + (1 - p0) / 2``, and the
    bound is mean + z SD. ``counts`` hold the negative population only (the caller leaves
    out the events above a density valley, the positives). The plain mirror would measure
    the spread on the lower half, which is all spike, and cut just above the floor --
    removing every live cell with a single ion count.
    """
    total = n0 + counts.sum()
    p0 = n0 / total
    cdf = (n0 + np.cumsum(counts)) / total
    p1, p2 = p0 + (1 - p0) * 0.25, p0 + (1 - p0) * 0.5
    q1 = centers[min(int(np.searchsorted(cdf, p1)), centers.size - 1)]
    q2 = centers[min(int(np.searchsorted(cdf, p2)), centers.size - 1)]
    z1, z2 = _sps.norm.ppf(p1), _sps.norm.ppf(p2)
    sd = (q2 - q1) / (z2 - z1) if q2 > q1 else float(centers[1] - centers[0])
    mean = q1 - sd * z1
    return float(mean + z * sd)


def above_negatives(
    t: float, counts: NDArray[np.float64], centers: NDArray[np.float64], n0: int, z: float
) -> bool:
    """True when a cut ``t`` lies above the censored mirror of the events below it.

    The negative population is the spike plus the events below the cut; a valley or mixture
    crossing inside its own spread is counting noise, not a boundary.
    """
    return t > censored_mirror(np.where(centers <= t, counts, 0.0), centers, n0, z)
