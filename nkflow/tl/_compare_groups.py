"""The group tests behind :func:`nkflow.tl.compare.compare_groups` (patients vs controls).

Label permutation of the difference in means (exact up to :data:`EXACT_ARRANGEMENTS`),
the smallest p-value group sizes allow, and the Hodges-Lehmann shift with its exact
Mann-Whitney interval. :mod:`nkflow.tl.compare` gives the rationale.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from math import comb

import numpy as np
import pandas as pd
from scipy import stats as sps

from ..exceptions import ConfigError

__all__ = [
    "EXACT_ARRANGEMENTS",
    "hodges_lehmann_shift",
    "perm_groups_p",
    "permutation_min_p",
    "refuse_shared_donors",
]

#: Label arrangements enumerated exactly; above it the p-value is resampled
EXACT_ARRANGEMENTS = 20_000


def refuse_shared_donors(units: pd.DataFrame, group_key: str, labels: Sequence[str]) -> None:
    """Donors in two compared groups make the data paired: an unpaired test is wrong."""
    keys = units[group_key].astype(str)
    mine = {str(g): set(units.loc[keys == str(g), "donor"].astype(str)) for g in labels}
    for a, b in itertools.combinations(labels, 2):
        if shared := sorted(mine[str(a)] & mine[str(b)]):
            raise ConfigError(
                f"compare_groups: donor(s) {', '.join(shared[:5])} are in both {a!r} and "
                f"{b!r}: the groups are paired, not independent; compare them with "
                f"compare_paired(scores, before={a!r}, after={b!r}, "
                f"timepoint_key={group_key!r}, pair_on=('donor',))"
            )


def perm_groups_p(
    x: np.ndarray, y: np.ndarray, rng: np.random.Generator, n_resamples: int
) -> tuple[float, str]:
    """Two-sided label-permutation p-value of the difference in means."""
    pooled = np.concatenate([x, y])
    n, nx = pooled.size, x.size
    observed = abs(x.mean() - y.mean())
    total = pooled.sum()
    if comb(n, nx) <= EXACT_ARRANGEMENTS:
        idx = np.array(list(itertools.combinations(range(n), nx)))
        sx = pooled[idx].sum(axis=1)
        null = np.abs(sx / nx - (total - sx) / (n - nx))
        return float(np.mean(null >= observed - 1e-12)), "label permutation (exact)"
    perms = rng.permuted(np.tile(pooled, (n_resamples, 1)), axis=1)
    sx = perms[:, :nx].sum(axis=1)
    null = np.abs(sx / nx - (total - sx) / (n - nx))
    p = (1.0 + np.sum(null >= observed - 1e-12)) / (n_resamples + 1.0)
    return float(p), f"label permutation ({n_resamples} resamples)"


def permutation_min_p(n_a: int, n_b: int, n_resamples: int = 20_000) -> float:
    """Smallest two-sided p-value the label permutation can give with these group sizes.

    Parameters
    ----------
    n_a, n_b
        Units in the two groups.
    n_resamples
        Random permutations used above 20 000 arrangements.

    Returns
    -------
    float
        With distinct values, only the observed split (and, for equal sizes, its mirror)
        reaches the largest difference: ``1 / C(n, n_a)`` (``2 / C(n, n_a)`` for equal
        sizes), capped at 1, when exact; ``1 / (n_resamples + 1)`` when resampled; NaN for
        an empty group. Ties can only raise the attainable p.
    """
    if n_a < 1 or n_b < 1:
        return float("nan")
    arrangements = comb(n_a + n_b, n_a)
    if arrangements > EXACT_ARRANGEMENTS:
        return 1.0 / (n_resamples + 1.0)
    return min(1.0, (2.0 if n_a == n_b else 1.0) / arrangements)


def _mann_whitney_counts(nx: int, ny: int) -> np.ndarray:
    """Number of arrangements giving each Mann-Whitney U = 0..nx*ny (no ties)."""
    # f[i][j] = f[i-1][j] shifted by j + f[i][j-1]; rows over j kept as polynomials
    prev = [np.ones(1) for _ in range(ny + 1)]  # i = 0: only U = 0
    for _ in range(nx):  # add the x's one at a time
        cur = [np.ones(1)]  # j = 0: only U = 0
        for j in range(1, ny + 1):
            a = np.concatenate([np.zeros(j), prev[j]])  # x_i above all j y's
            b = cur[j - 1]
            size = max(a.size, b.size)
            cur.append(np.pad(a, (0, size - a.size)) + np.pad(b, (0, size - b.size)))
        prev = cur
    return prev[ny]


def hodges_lehmann_shift(
    x: np.ndarray, y: np.ndarray, confidence: float
) -> tuple[float, float, float]:
    diffs = np.sort(np.subtract.outer(x, y).ravel())
    estimate = float(np.median(diffs))
    nx, ny = x.size, y.size
    alpha = 1.0 - confidence
    if nx * ny > 400:
        sd = np.sqrt(nx * ny * (nx + ny + 1) / 12.0)
        k = int(np.floor(nx * ny / 2.0 - sps.norm.ppf(1 - alpha / 2) * sd))
    else:
        counts = _mann_whitney_counts(nx, ny)
        cdf = np.cumsum(counts) / counts.sum()
        k = int(np.searchsorted(cdf, alpha / 2.0, side="right"))
    if k < 1:
        return estimate, np.nan, np.nan
    return estimate, float(diffs[k - 1]), float(diffs[diffs.size - k])
