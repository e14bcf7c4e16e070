"""Which tubes lost an unusual share of their events to QC, by one rule for the whole batch.

QC (margin events, unstable time stretches) removes a few tenths of a percent from a
typical tube. A tube that loses far more than its batch (a clog, a bubble, a tube run dry)
still passes (only more than half removed fails it), so its numbers rest on a different
selection of events than its neighbours'. :func:`unusual_removal` names such tubes: the
status message (:mod:`nkflow.pipeline.state`) and the report's Files table
(:mod:`nkflow.report.sections`) use the same rule, written out in :data:`RULE_TEXT`.
"""

from __future__ import annotations

import pandas as pd

__all__ = [
    "RULE_TEXT",
    "RULE_WHY",
    "UNUSUAL_FOLD",
    "UNUSUAL_MIN",
    "batch_median",
    "median_text",
    "removed_fraction",
    "unusual_message",
    "unusual_removal",
]

#: a tube is unusual only if QC removed more than this fraction of its events ...
UNUSUAL_MIN = 0.05
#: ... and more than this many times the batch's median removed fraction
UNUSUAL_FOLD = 3.0
#: the rule, as the report states it
RULE_TEXT = (
    f"QC removed more than {UNUSUAL_MIN:.0%} of the tube's events and more than "
    f"{UNUSUAL_FOLD:g}× the batch median (every tube QC read, FMO tubes included)"
)
#: why the rule is what it is, said beside it
RULE_WHY = (
    f"The {UNUSUAL_MIN:.0%} floor keeps a batch whose tubes all lose a fraction of a percent "
    "from flagging noise; the multiple of the median keeps a batch that loses more "
    "throughout (a noisy instrument day) from flagging every tube. Such a tube still "
    "passed (it fails only when QC removes more than half), but its events are a different "
    "selection from its neighbours'."
)


def removed_fraction(qc: pd.DataFrame) -> pd.Series:
    """The fraction of each row's events QC removed (``(n_in - n_out) / n_in``; NaN if unknown).

    Parameters
    ----------
    qc
        A QC table with ``n_in`` and ``n_out`` columns (or, without them, a
        ``removed_fraction`` column).

    Returns
    -------
    pandas.Series
        Indexed like ``qc``; NaN where ``n_in`` is missing or zero or a column is absent.
    """
    if "n_in" not in qc.columns or "n_out" not in qc.columns:
        if "removed_fraction" in qc.columns:  # tables/qc.csv read back
            return pd.to_numeric(qc["removed_fraction"], errors="coerce")
        return pd.Series(float("nan"), index=qc.index)
    n_in = pd.to_numeric(qc["n_in"], errors="coerce")
    n_out = pd.to_numeric(qc["n_out"], errors="coerce")
    return (n_in - n_out) / n_in.where(n_in > 0)


def unusual_removal(qc: pd.DataFrame | None) -> pd.Series:
    """True for each QC row whose removed fraction is unusual for the batch (:data:`RULE_TEXT`).

    Parameters
    ----------
    qc
        The run's QC table (one row per tube QC read: analysed and FMO tubes).

    Returns
    -------
    pandas.Series
        Booleans indexed like ``qc`` (empty for an absent table). A batch of fewer than
        three tubes flags none: a tube is then too large a part of its own median.
    """
    if qc is None or qc.empty:
        return pd.Series(False, index=getattr(qc, "index", pd.RangeIndex(0)), dtype=bool)
    frac = removed_fraction(qc)
    known = frac.dropna()
    if len(known) < 3:
        return pd.Series(False, index=qc.index, dtype=bool)
    median = float(known.median())
    return ((frac > UNUSUAL_MIN) & (frac > UNUSUAL_FOLD * median)).fillna(False).astype(bool)


def batch_median(qc: pd.DataFrame) -> float:
    """The batch's median removed fraction (:func:`unusual_removal` compares with it).

    Parameters
    ----------
    qc
        A QC table (as for :func:`removed_fraction`).

    Returns
    -------
    float
        0 to 1; NaN when no tube's fraction is known.
    """
    return float(removed_fraction(qc).median())


def median_text(median: float) -> str:
    """The batch median as every message about unusual QC loss words it."""
    return f"batch median {100 * median:.2f}%"


def unusual_message(n_in: float, n_out: float, batch_median: float) -> str:
    """The warning a flagged tube's status carries (text for ``status.csv``).

    Parameters
    ----------
    n_in, n_out
        The tube's events before and after QC.
    batch_median
        The batch's median removed fraction.

    Returns
    -------
    str
        ``"UnusualQCLossWarning: ..."`` naming the numbers and the rule.
    """
    removed = int(n_in) - int(n_out)
    return (
        f"UnusualQCLossWarning: QC removed {removed:,} of {int(n_in):,} events "
        f"({removed / n_in:.1%}), unusual for this batch ({median_text(batch_median)}; "
        f"flagged when {RULE_TEXT}): check what QC removed and its gating plot before "
        "comparing it with the other tubes"
    )
