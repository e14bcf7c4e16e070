"""The one rule for whether a scored row (population × stimulated tube) could be judged.

A flag row that was not flagged either was judged and did not respond (its interval or net
stayed below the bar) or could not be judged (a control, a partner tube or the data were
missing). Every section of the report that counts "not judged" rows (the Findings'
"What could not be judged" and responses per group, the Repair profile's "Stimulation
conditions side by side") reads it from here, so they cannot disagree.
"""

from __future__ import annotations

import pandas as pd

from ._score_messages import RULES

__all__ = ["FEW_AREG_REASON", "NOT_JUDGED", "not_judged", "reason", "unjudged_rules"]

#: Failed rules that mean "could not be judged" (a control or data was missing), as
#: opposed to "judged, and did not respond" (interval or net below the bar). A positive
#: control that is missing, insufficient or did not respond leaves the assay unproven in
#: that tube, so its NK rows are not judged either. ``AREG_EVENTS_BELOW_MIN`` counts only
#: while the row's AREG net interval reaches above zero (:func:`unjudged_rules`).
NOT_JUDGED = (
    "NO_UNSTIM",
    "UNSTIM_AMBIGUOUS",
    "AREG_NOT_IN_PANEL",
    "NO_AREG_THRESHOLD",
    "AREG_THRESHOLD_NOT_FMO",
    "EVENTS_BELOW_MIN",
    "AREG_EVENTS_BELOW_MIN",
    "CONDITION_NOT_FLAGGABLE",
    "POSITIVE_CONTROL_MISSING",
    "POSITIVE_CONTROL_INSUFFICIENT",
    "POSITIVE_CONTROL_FAILED",
)

#: why a row with too few AREG+ events is not judged, in words
FEW_AREG_REASON = (
    "too few AREG+ events in the stimulated tube, and an AREG net interval that does not "
    "rule out an increase"
)

_FEW_AREG = "AREG_EVENTS_BELOW_MIN"
_CI_HIGH = "areg_net_ci_high"


def unjudged_rules(flags: pd.DataFrame) -> pd.Series:
    """Per row, the failed rules that leave it not judged (empty list: judged).

    Too few AREG+ events in the stimulated tube (``AREG_EVENTS_BELOW_MIN``) stop a flag
    resting on a handful of events, but they only leave the row unjudged while the AREG
    net's interval still reaches above zero: then a response cannot be ruled out (2 AREG+
    of 137 cells, net +1.46 pp, interval -0.98 to +5.17). An interval wholly at or below
    zero (7 AREG+ of 1,978 cells, -1.33 to -0.20) measured no increase: judged, did not
    respond. Without the interval (no ``areg_net_ci_high`` column, or NaN) the row is
    not judged.

    Parameters
    ----------
    flags
        Rows of ``tables/flags.csv`` (``failed_rules``: ``;``-separated codes; optionally
        ``areg_net_ci_high``).

    Returns
    -------
    pandas.Series
        Lists of codes of :data:`NOT_JUDGED`, in the row's order, on ``flags``' index.
    """
    if flags.empty or "failed_rules" not in flags.columns:
        return pd.Series([[] for _ in range(len(flags))], index=flags.index, dtype=object)
    cells = flags["failed_rules"].fillna("").astype(str)
    if _CI_HIGH in flags.columns:
        high = pd.to_numeric(flags[_CI_HIGH], errors="coerce")
    else:
        high = pd.Series(float("nan"), index=flags.index)
    measured_none = (high <= 0).to_numpy()  # NaN compares False: not ruled out
    out = []
    for cell, ruled_out in zip(cells, measured_none, strict=True):
        codes = [c for c in filter(None, cell.split(";")) if c in NOT_JUDGED]
        out.append([c for c in codes if not (c == _FEW_AREG and ruled_out)])
    return pd.Series(out, index=flags.index, dtype=object)


def not_judged(flags: pd.DataFrame) -> pd.Series:
    """True for the rows that could not be judged (:func:`unjudged_rules` not empty).

    Parameters
    ----------
    flags
        Rows of ``tables/flags.csv``.

    Returns
    -------
    pandas.Series
        Booleans on ``flags``' index.
    """
    return unjudged_rules(flags).map(bool).astype(bool)


def reason(code: str) -> str:
    """What a not-judged rule means, in words (:data:`RULES`, with the interval condition).

    Parameters
    ----------
    code
        A code of :data:`NOT_JUDGED`.

    Returns
    -------
    str
        The words.
    """
    return FEW_AREG_REASON if code == _FEW_AREG else RULES.get(code, code)
