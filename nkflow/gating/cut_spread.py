"""How far a threshold's own interval moves the share of events it calls positive.

A cut-off's bootstrap (or order-statistic) 95 % interval is on the marker's scale; what
an analyst reads is a percentage. Where the gating engine has the events a cut-off is
applied to (the parent gate of one sample or tube), it counts the share of them at or
above the cut-off were the cut-off at either end of its interval
(``percent_above_at_ci_low``, ``percent_above_at_ci_high``: percent of those events, the
same ``value >= cut`` a positive gate counts). A negative gate's share is 100 minus these,
so the spread, in percentage points, is the same for both sides.

A cut-off whose interval moves that share by more than :data:`UNSTABLE_RANGE_PP` is
*unstable*: its row's ``note`` says so (appended to any note it had), and the report
names it.

Which thresholds carry it: every one the engine applies to a sample's events and that
has an interval (density rules, percentiles, reference populations, FMO and batch-pool
cut-offs applied to the sample, a borrowed or manual cut-off that brings an interval).
A batch-level row of the thresholds table (an FMO or batch-pool cut-off listed once for
its tissue and batch) was computed on control or pooled events, not on any one sample's
gate, so it is left blank there; each sample's own record holds the measure. Scatter and
density polygon parameters are left blank too: their gate is a polygon drawn from several
parameters, not a one-sided cut on one marker.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from .thresholds import Threshold

__all__ = [
    "UNSTABLE_NOTE",
    "UNSTABLE_RANGE_PP",
    "percent_above",
    "unstable",
    "unstable_sentence",
    "with_cut_spread",
]

#: The population count below which nkflow flags a percentage as low-event
#: (``gating.min_events``, 100 by default).
LOW_EVENT_COUNT = 100

#: Percentage points a cut-off's own 95 % interval may move the share it calls positive
#: before the cut-off is called unstable: the widest 95 % counting interval a percentage
#: can have on the smallest population nkflow reports without a low-event flag
#: (:data:`LOW_EVENT_COUNT` events, at 50 %: ``2 * 1.96 * sqrt(0.25 / 100)`` = 19.6 pp).
#: Beyond it, where the cut-off sits adds more uncertainty than the worst counting
#: uncertainty the report lets pass unflagged, and the Wilson interval of the populations
#: table, which counts events at a fixed cut-off, does not include it. It is a property of
#: binomial counting, not of any data set.
UNSTABLE_RANGE_PP = round(100 * 2 * 1.959964 * np.sqrt(0.25 / LOW_EVENT_COUNT), 1)

#: How the note of an unstable cut-off starts (segments of a note are joined by ``"; "``).
UNSTABLE_NOTE = "unstable cut-off"


def percent_above(values: np.ndarray, cut: float) -> float:
    """Percent of ``values`` at or above ``cut`` (NaN for no values or a NaN cut).

    Parameters
    ----------
    values
        The marker's values in the gate the cut-off is applied to (transformed scale).
    cut
        A cut-off on the same scale; ``-inf`` gives 100, ``inf`` 0 (an open bound).

    Returns
    -------
    float
    """
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0 or np.isnan(cut):
        return float("nan")
    return float(100.0 * np.count_nonzero(v >= cut) / v.size)


def with_cut_spread(th: Threshold, values: np.ndarray | None) -> Threshold:
    """``th`` with the share above it at each end of its interval, and the note if unstable.

    Parameters
    ----------
    th
        The threshold as applied (its ``ci_low``/``ci_high`` resolved).
    values
        The marker's values in the gate it is applied to; None leaves ``th`` as it is.

    Returns
    -------
    Threshold
        Unchanged (both shares NaN) without values, a value or an interval; otherwise
        with ``percent_above_at_ci_low``/``_high`` and, when they differ by more than
        :data:`UNSTABLE_RANGE_PP`, ``note`` ending in an :data:`UNSTABLE_NOTE` segment (one
        carried over from where the record was copied is replaced).
    """
    lo, hi = float(th.ci_low), float(th.ci_high)
    if values is None or np.isnan(th.value) or np.isnan(lo) or np.isnan(hi):
        return th
    at_lo, at_hi = percent_above(values, lo), percent_above(values, hi)
    kept = [s for s in th.note.split("; ") if s and not s.startswith(UNSTABLE_NOTE)]
    spread = abs(at_lo - at_hi)
    if spread > UNSTABLE_RANGE_PP:
        kept.append(
            f"{UNSTABLE_NOTE}: at the low end of its 95 % interval {at_lo:.1f} % of "
            f"{th.gate or 'all events'} would be at or above it, at the high end {at_hi:.1f} % "
            f"({spread:.1f} pp > {UNSTABLE_RANGE_PP:g} pp)"
        )
    return replace(th, percent_above_at_ci_low=at_lo, percent_above_at_ci_high=at_hi,
                   note="; ".join(kept))  # fmt: skip


def unstable(table: pd.DataFrame | None) -> pd.DataFrame:
    """The rows of a thresholds table whose interval moves the share by more than the limit.

    Parameters
    ----------
    table
        A thresholds table (``percent_above_at_ci_low``/``_high`` columns; a table
        without them has no unstable row).

    Returns
    -------
    pandas.DataFrame
        The unstable rows with a ``spread_pp`` column (percentage points).
    """
    import pandas as pd

    cols = ("percent_above_at_ci_low", "percent_above_at_ci_high")
    if table is None or table.empty or not set(cols) <= set(table.columns):
        return pd.DataFrame()
    lo, hi = (pd.to_numeric(table[c], errors="coerce") for c in cols)
    spread = (lo - hi).abs()
    return table.assign(spread_pp=spread)[(spread > UNSTABLE_RANGE_PP).to_numpy()]


def unstable_sentence(table: pd.DataFrame | None, limit: int = 8) -> str:
    """One sentence naming the unstable cut-offs (marker, gate, sample), or ``""``.

    Parameters
    ----------
    table
        The thresholds table.
    limit
        At most this many are named; the rest are counted.

    Returns
    -------
    str
    """
    rows = unstable(table)
    if rows.empty:
        return ""

    def text(v: Any) -> str:
        return "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)

    def name(r: Any) -> str:
        sid = text(r.get("sample_id"))
        where = f"{sid}, " if sid else ""
        gate = text(r.get("gate")) or "all events"
        return f"{r['marker']} on {gate} ({where}{r['spread_pp']:.0f} pp)"

    names = [name(r) for _, r in rows.sort_values("spread_pp", ascending=False).iterrows()]
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return (
        f"{len(rows)} cut-off{'s are' if len(rows) > 1 else ' is'} unstable (between the two "
        f"ends of a cut-off's own 95% interval the share of events at or above it differs by "
        f"more than {UNSTABLE_RANGE_PP:g} percentage points, the widest counting interval at "
        f"{LOW_EVENT_COUNT} events: the percentage positive rests on where the cut-off was "
        f"put more than on the events; each row's note gives both shares): "
        f"{', '.join(names[:limit])}{more}."
    )
