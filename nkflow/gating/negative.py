"""Where "negative" comes from for a threshold: controls, the batch pool, a reference population.

A density rule on one sample cannot tell a lone negative peak from a lone positive one. For
markers whose positive population can dominate (residency and activation markers in tissue:
CD69, CD49a, CD103, CXCR6), the threshold is decided from evidence, in this order, and the
evidence used is recorded in the thresholds table (``evidence`` column):

``fmo`` / ``unstained``
    A control tube of the same tissue and batch (``role = "fmo:<MARKER>"``).
``batch_pool``
    The marker pooled over the batch's samples (same parent gate; each sample contributes a
    capped, seeded subsample), whose density valley is applied to every sample -- what
    FlowJo users do with one gate per batch. Pooling works because a batch mixes samples
    where the marker is mostly negative (blood) with samples where it is mostly positive
    (tissue): the pooled density has both peaks even where a sample has one. A pool that is
    itself unimodal identifies nothing and is not used.
``reference:<population>``
    A population of the same tube named in the template (``reference = "<gate>"``) that is
    known to be negative for the marker: the FMO percentile of the marker in it.
``sample_valley``
    The sample's own valley: two peaks, the lower one negative.
``sample_quantile``
    A percentile of the sample itself (a function marker's ``quantile`` fallback without an
    FMO): its top events are positive by construction, nothing told the negative peak.
``mirror``
    The sample's lowest peak taken as negative (the last resort; for a ``pool = true``
    marker it is used only when nothing above identified the negative peak, and a warning
    says so).
``manual``
    An analyst's override (:mod:`nkflow.gating.overrides`).

A sample whose own valley lies outside the batch threshold's reach (the batch value outside
the bootstrap CI of the sample's valley) is flagged (``disagrees``) with both values in
``note``. A sample without a valley whose main peak lies above the batch threshold has a
dominant positive population: its own cut-off is then the point below that peak where the
events become mostly negatives (``reflected positive``,
:func:`nkflow.gating.density.reflected_from_density`), compared the same way; without a
batch threshold nothing tells such a peak from a negative one (its mirror cut-off is
refused when its events refute it, :mod:`nkflow.gating.mirror_check`).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .template import DimSpec
from .thresholds import fmo_threshold, valley_threshold

__all__ = [
    "EVIDENCE",
    "POOL_CAP",
    "disagreement",
    "evidence_of",
    "pool_seed",
    "pool_threshold",
    "reference_threshold",
    "subsample",
]

logger = logging.getLogger(__name__)

EVIDENCE = (
    "fmo",
    "unstained",
    "batch_pool",
    "reference:<population>",
    "sample_valley",
    "sample_quantile",
    "mirror",
    "manual",
)
#: events each sample contributes to a batch pool (per gate and marker)
POOL_CAP = 5000


def evidence_of(rule_used: str) -> str:
    """The evidence a per-sample rule rests on: ``sample_valley``, ``sample_quantile``, ``mirror``.

    Any other rule (``fixed``, ``insufficient events``) is its own evidence.
    """
    if rule_used.startswith(("valley", "gmm")):
        return "sample_valley"
    if rule_used.startswith("mirror"):
        return "mirror"
    if rule_used.startswith("quantile"):
        return "sample_quantile"
    return rule_used


def pool_seed(random_state: int, sample_id: str, key: str) -> int:
    """Seed of one sample's pool subsample: depends on the run seed, the sample and the key."""
    text = f"{sample_id}|{key}".encode()
    return int((int(random_state) * 1_000_003 + zlib.crc32(text)) % 2**32)


def subsample(values: ArrayLike, cap: int, seed: int) -> NDArray[np.float32]:
    """At most ``cap`` finite values, drawn without replacement in event order (seeded)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size > cap:
        idx = np.sort(np.random.default_rng(seed).choice(v.size, size=cap, replace=False))
        v = v[idx]
    return v.astype(np.float32)


def pool_threshold(
    contributions: Sequence[ArrayLike],
    dim: DimSpec,
    *,
    percentile: float,
    n_boot: int,
    random_state: int,
) -> tuple[float, float, float, int] | None:
    """Density valley of the pooled contributions, or ``None`` when the pool has no valley.

    Parameters
    ----------
    contributions
        One array per sample (each already capped, :func:`subsample`).
    dim
        The condition (its ``between``, ``min_prominence``, ``bw_adjust``).
    percentile, n_boot, random_state
        As for :func:`~nkflow.gating.thresholds.valley_threshold`.

    Returns
    -------
    (value, ci_low, ci_high, n_events) or None
    """
    parts = [np.asarray(c, dtype=np.float64).ravel() for c in contributions]
    pooled = np.concatenate(parts) if parts else np.empty(0)
    if pooled.size < 10:
        return None
    v, lo, hi, used, n = valley_threshold(
        pooled,
        **dim.valley_options(),
        fallback_percentile=percentile,
        n_boot=n_boot,
        random_state=random_state,
        check_mirror=False,  # only a valley is used
    )
    if used != "valley":
        return None
    return v, lo, hi, n


def reference_threshold(
    values: ArrayLike, *, percentile: float, n_boot: int, random_state: int = 0
) -> tuple[float, float, float, int]:
    """The ``percentile`` of the marker in a population known to be negative for it.

    The same computation as an FMO threshold (order-statistic CI), on cells of the same
    tube, so it carries the tube's own spillover spread.
    """
    v, lo, hi, _, n = fmo_threshold(
        values, percentile=percentile, n_boot=n_boot, random_state=random_state
    )
    return v, lo, hi, n


#: A batch cut-off outside the sample's own valley interval is worth a review only when it
#: moves the sample's % positive by at least this many percentage points: with 20,000
#: events a valley's interval is a few thousandths wide, and a batch cut just outside it in
#: the same valley changed 390C liver's CD69+ by 0.5 point (67.6 % against 67.1 %).
MIN_DISAGREEMENT_PP = 1.0

#: The sample's own rules a batch cut-off is compared with, and how the note names them.
_OWN_CUTS = {
    "valley": "own valley",
    "reflected positive": "own cut below its dominant positive peak (reflected positive)",
}


def disagreement(
    own: tuple[float, float, float, str],
    batch_value: float,
    values: ArrayLike | None = None,
    *,
    side: str = "pos",
) -> tuple[bool, str]:
    """Whether a sample's own valley disagrees with the batch threshold, and by how much.

    Parameters
    ----------
    own
        ``(value, ci_low, ci_high, rule_used)`` of the sample's own density rule (a
        ``valley`` or a ``reflected positive`` cut-off is compared; a mirror is not).
    batch_value
        The batch threshold applied to the sample.
    values
        The sample's events the cut-off applies to; with them the note gives the % positive
        under each cut-off, and a disagreement must move it by at least
        :data:`MIN_DISAGREEMENT_PP` percentage points to be flagged.
    side
        ``"pos"``: events above the cut-off are positive; ``"neg"``: below it.

    Returns
    -------
    (flag, note)
        ``flag`` only when the sample has a cut-off of its own (a valley, or a dominant
        positive peak's reflected cut-off) with a finite CI that does not contain the
        batch value (and, given ``values``, the two cut-offs' % positive
        differ by at least :data:`MIN_DISAGREEMENT_PP`); ``note`` states the sample's own
        value either way.
    """
    value, lo, hi, used = own
    shares = ""
    moved = float("inf")
    if values is not None:
        v = np.asarray(values, dtype=np.float64)
        v = v[np.isfinite(v)]
        if v.size:
            above = side in ("pos", "+")
            own_pct = 100.0 * float(np.mean(v > value if above else v < value))
            batch_pct = 100.0 * float(np.mean(v > batch_value if above else v < batch_value))
            moved = abs(own_pct - batch_pct)
            what = "positive" if above else "in gate (below the cut)"
            shares = f"; {own_pct:.1f} % {what} at its own cut, {batch_pct:.1f} % at the batch's"
    if used not in _OWN_CUTS:
        return False, f"own density has no valley (own rule: {used} at {value:.4g}){shares}"
    own_name = _OWN_CUTS[used]
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return False, f"{own_name} {value:.4g} (no CI: bootstrap off){shares}"
    flag = not (lo <= batch_value <= hi) and moved >= MIN_DISAGREEMENT_PP
    return flag, f"{own_name} {value:.4g} [{lo:.4g}, {hi:.4g}]{shares}"
