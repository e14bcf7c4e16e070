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
Scatter and density polygon parameters are left blank: their gate is a polygon drawn from
several parameters, not a one-sided cut on one marker.

A batch-level row of the thresholds table (an FMO or batch-pool cut-off, listed once for
its tissue and batch) was computed on control or pooled events, yet what its interval
moves is the percentage positive of each sample it is applied to. Each of those samples
records the measure (:func:`applied_batch_cuts` keeps those records of a sample, which its
own rows of the table leave out); :func:`with_batch_spread` puts on the batch row the two
shares of the sample whose share the interval moves most, and, when that is beyond the
limit, a note counting the samples where it is and naming the widest.
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
    "applied_batch_cuts",
    "percent_above",
    "unstable",
    "unstable_sentence",
    "with_batch_spread",
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

SPREAD = ("percent_above_at_ci_low", "percent_above_at_ci_high")
#: What ties a sample's record of a batch-level cut-off to the batch row it came from (the
#: engine copies them from the row; ``gate`` too, unless the row leaves it blank)
BATCH_KEY = ("tissue", "batch", "marker", "rule", "control_file")
#: The fields of such a record :func:`with_batch_spread` reads
APPLIED_FIELDS = ("sample_id", *BATCH_KEY, "gate", "value", *SPREAD)


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
    kept = _without_unstable(th.note)
    spread = abs(at_lo - at_hi)
    if spread > UNSTABLE_RANGE_PP:
        kept.append(
            f"{UNSTABLE_NOTE}: at the low end of its 95 % interval {at_lo:.1f} % of "
            f"{th.gate or 'all events'} would be at or above it, at the high end {at_hi:.1f} % "
            f"({spread:.1f} pp > {UNSTABLE_RANGE_PP:g} pp)"
        )
    return replace(th, percent_above_at_ci_low=at_lo, percent_above_at_ci_high=at_hi,
                   note="; ".join(kept))  # fmt: skip


def _without_unstable(note: Any) -> list[str]:
    """The segments of ``note`` but an :data:`UNSTABLE_NOTE` one (carried over or stale)."""
    return [s for s in _text(note).split("; ") if s and not s.startswith(UNSTABLE_NOTE)]


def _text(v: Any) -> str:
    """``v`` as text, ``""`` for a missing value (None, NaN)."""
    return "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)


def applied_batch_cuts(recorded: list[dict[str, Any]], sample_id: str) -> list[dict[str, Any]]:
    """A sample's records of the batch-level cut-offs it applied, under its own id.

    The sample's rows of the thresholds table list only the cut-offs it set or borrowed
    (:func:`nkflow.gating.apply.listed_thresholds`); a batch-level one it applied (an FMO
    cut-off: ``sample_id`` empty) is listed once for the batch, so the share its interval
    moves in this sample travels here, for :func:`with_batch_spread`.

    Parameters
    ----------
    recorded
        The sample's threshold records (``uns["nkflow"]["thresholds"]``).
    sample_id
        The sample's id.

    Returns
    -------
    list of dict
        :data:`APPLIED_FIELDS` of each record without a ``sample_id`` whose two shares were
        measured (a cut-off borrowed from the unstimulated partner is one too; it matches
        no batch row).
    """
    out = []
    for t in recorded:
        if _text(t.get("sample_id")) or any(_nan(t.get(c)) for c in SPREAD):
            continue
        out.append({**{k: t.get(k) for k in APPLIED_FIELDS}, "sample_id": sample_id})
    return out


def _nan(v: Any) -> bool:
    try:
        return bool(np.isnan(float(v)))
    except (TypeError, ValueError):
        return True


def with_batch_spread(
    table: pd.DataFrame, applied: pd.DataFrame | list[dict[str, Any]] | None = None
) -> pd.DataFrame:
    """The thresholds table with each batch-level row measured on the samples it reached.

    A batch-level row (``sample_id`` empty: an FMO or batch-pool cut-off) is matched to the
    samples' records of it: those in ``applied`` (FMO cut-offs, :func:`applied_batch_cuts`)
    and the table's own per-sample rows of it (a batch-pool cut-off applied to a sample is
    listed under the sample, with its own valley beside it). A record matches on
    :data:`BATCH_KEY`, ``value`` and, when the row names one, ``gate``.

    Parameters
    ----------
    table
        The thresholds table (batch-level rows and per-sample rows).
    applied
        Per-sample records of batch-level cut-offs not listed in ``table``.

    Returns
    -------
    pandas.DataFrame
        A copy. A batch-level row applied to samples whose two shares were measured gets
        ``percent_above_at_ci_low``/``_high`` of the sample whose share its interval moves
        most (of a tie, the first sample id in sort order); when that
        spread exceeds :data:`UNSTABLE_RANGE_PP`, its ``note`` ends in an
        :data:`UNSTABLE_NOTE` segment naming the number of samples over the limit, of those
        measured, and the widest with its two shares. Other rows are unchanged.
    """
    import pandas as pd

    if table is None or table.empty or "sample_id" not in table.columns:
        return table
    sid = table["sample_id"].map(_text)
    records = pd.DataFrame(list(applied) if isinstance(applied, list) else applied)
    records = pd.concat([records, table[sid != ""]], ignore_index=True)
    if records.empty or not {*APPLIED_FIELDS} <= set(records.columns):
        return table
    records = records[list(APPLIED_FIELDS)].copy()
    for c in ("value", *SPREAD):
        records[c] = pd.to_numeric(records[c], errors="coerce")
    records = records[records[list(SPREAD)].notna().all(axis=1)]
    records["spread"] = (records[SPREAD[0]] - records[SPREAD[1]]).abs()
    by_key = {k: g for k, g in records.groupby([records[c].map(_text) for c in BATCH_KEY])}
    out = table.copy()
    for c in (*SPREAD, "note"):
        if c not in out.columns:
            out[c] = np.nan if c != "note" else ""
    out = out.astype({c: "float64" for c in SPREAD})
    for i in np.flatnonzero((sid == "").to_numpy()):
        row = out.iloc[i]
        mine = by_key.get(tuple(_text(row.get(c)) for c in BATCH_KEY))
        if mine is None:
            continue
        value = pd.to_numeric(row.get("value"), errors="coerce")
        same = np.isclose(mine["value"].to_numpy(), value, rtol=1e-9, atol=0.0)
        if gate := _text(row.get("gate")):
            same &= (mine["gate"].map(_text) == gate).to_numpy()
        # a sample applies a cut-off once per gate: its widest, one per sample
        per_sample = mine[same].assign(sample_id=mine["sample_id"].map(_text))
        per_sample = per_sample.sort_values(["spread", "sample_id"], ascending=[False, True])
        per_sample = per_sample.drop_duplicates("sample_id")
        if per_sample.empty:
            continue
        widest = per_sample.iloc[0]
        at_lo, at_hi = float(widest[SPREAD[0]]), float(widest[SPREAD[1]])
        out.iat[i, out.columns.get_loc(SPREAD[0])] = at_lo
        out.iat[i, out.columns.get_loc(SPREAD[1])] = at_hi
        kept = _without_unstable(row.get("note"))
        over = int((per_sample["spread"] > UNSTABLE_RANGE_PP).sum())
        if over:
            kept.append(
                f"{UNSTABLE_NOTE}: its 95 % interval moves the share of {gate or 'the events'} "
                f"at or above it by more than {UNSTABLE_RANGE_PP:g} pp in {over} of "
                f"{len(per_sample)} samples it was applied to (widest: {widest['sample_id']}, "
                f"{at_lo:.1f} % -> {at_hi:.1f} %, {widest['spread']:.1f} pp)"
            )
        if (note := "; ".join(kept)) != _text(row.get("note")):
            out.iat[i, out.columns.get_loc("note")] = note
    return out


def unstable(table: pd.DataFrame | None) -> pd.DataFrame:
    """The unstable cut-offs of a thresholds table: one row each.

    A row is unstable when its interval moves the share by more than the limit. A
    batch-pool cut-off is counted once, by its batch-level row (:func:`with_batch_spread`),
    not again by the rows of the samples it was applied to.

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

    if table is None or table.empty or not set(SPREAD) <= set(table.columns):
        return pd.DataFrame()
    lo, hi = (pd.to_numeric(table[c], errors="coerce") for c in SPREAD)
    spread = (lo - hi).abs()
    rows = table.assign(spread_pp=spread)[(spread > UNSTABLE_RANGE_PP).to_numpy()]
    place = ("tissue", "batch", "gate", "marker")
    sids = [_text(r.get("sample_id")) for _, r in rows.iterrows()]
    batch_wide = np.array([not s for s in sids], dtype=bool)
    named = {tuple(_text(r.get(c)) for c in place) for _, r in rows[batch_wide].iterrows()}
    if named and "evidence" in rows:
        again = [not b and _text(r.get("evidence")) == "batch_pool"
                 and tuple(_text(r.get(c)) for c in place) in named
                 for b, (_, r) in zip(batch_wide, rows.iterrows(), strict=True)]  # fmt: skip
        rows = rows[~np.array(again, dtype=bool)]
    return rows


def unstable_sentence(table: pd.DataFrame | None, limit: int = 8) -> str:
    """One sentence naming the unstable cut-offs (marker, gate, sample or batch), or ``""``.

    A batch-level row (:func:`with_batch_spread`) is named by its tissue and batch with the
    spread of its widest sample; a batch-pool cut-off once (:func:`unstable`).

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

    def name(r: Any) -> str:
        sid = _text(r.get("sample_id"))
        gate = _text(r.get("gate")) or "all events"
        if sid:
            return f"{r['marker']} on {gate} ({sid}, {r['spread_pp']:.0f} pp)"
        group = " ".join(x for x in (_text(r.get("tissue")), _text(r.get("batch"))) if x)
        return (f"{r['marker']} on {gate} ({group + ' ' if group else ''}batch-level, "
                f"{r['spread_pp']:.0f} pp in its widest sample)")  # fmt: skip

    names = [name(r) for _, r in rows.sort_values("spread_pp", ascending=False).iterrows()]
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    batch_wide = any(not _text(r.get("sample_id")) for _, r in rows.iterrows())
    widest = ", a batch-level row's those of the sample they differ most in" if batch_wide else ""
    return (
        f"{len(rows)} cut-off{'s are' if len(rows) > 1 else ' is'} unstable (between the two "
        f"ends of a cut-off's own 95% interval the share of events at or above it differs by "
        f"more than {UNSTABLE_RANGE_PP:g} percentage points, the widest counting interval at "
        f"{LOW_EVENT_COUNT} events: the percentage positive rests on where the cut-off was "
        f"put more than on the events; each row's note gives both shares{widest}): "
        f"{', '.join(names[:limit])}{more}."
    )
