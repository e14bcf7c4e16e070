"""How far a threshold's own interval moves the share of events it calls positive.

A cut-off's bootstrap (or order-statistic) 95 % interval is on the marker's scale; what
an analyst reads is a percentage. Where the gating engine has the events a cut-off is
applied to (the parent gate of one sample or tube), it counts the share of them at or
above the cut-off were the cut-off at either end of its interval
(``percent_above_at_ci_low``, ``percent_above_at_ci_high``: percent of those events, the
same ``value >= cut`` a positive gate counts). A negative gate's share is 100 minus these,
so the spread, in percentage points, is the same for both sides.

The two shares are what the interval says, not a verdict on it. A bootstrap percentile
interval of a density valley is as wide as its outermost redraws (an FMO percentile's
order-statistic interval ends at its brightest few FMO events): where a few of 200 redraws find
another valley (a shoulder of the positive peak, the mirror rule on a marker most events
carry), the ends, and so the shares, sit there while the cut-off itself stays in a clear
gap; and on a rare readout (AREG+ at 1-2 %) a three-fold change is a point or two. A rule
that called cut-offs "unstable" from the two ends alone was tried on real batches and
withdrawn: it turned with the random seed and missed the rare readouts. Read the shares
with the gating plot.

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
shares of the sample whose share the interval moves most, and names it in the row's note.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

    from .thresholds import Threshold

__all__ = ["applied_batch_cuts", "percent_above", "with_batch_spread", "with_cut_spread"]

SPREAD = ("percent_above_at_ci_low", "percent_above_at_ci_high")
#: how a batch-level row's note names the sample its two shares are of
SAMPLE_NOTE = "shares at the interval's ends: of"
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
    """``th`` with the share of ``values`` at or above it at each end of its interval.

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
        with ``percent_above_at_ci_low``/``_high`` (an open bound, ``-inf``/``inf``, gives
        100 / 0).
    """
    lo, hi = float(th.ci_low), float(th.ci_high)
    if values is None or np.isnan(th.value) or np.isnan(lo) or np.isnan(hi):
        return th
    return replace(th, percent_above_at_ci_low=percent_above(values, lo),
                   percent_above_at_ci_high=percent_above(values, hi))  # fmt: skip


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
        most (of a tie, the first sample id in sort order), and its ``note`` names that
        sample (:data:`SAMPLE_NOTE`). Other rows are unchanged.
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
    for c in SPREAD:
        if c not in out.columns:
            out[c] = np.nan
    if "note" not in out.columns:
        out["note"] = ""
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
        said = f"{SAMPLE_NOTE} {widest['sample_id']}, the sample its interval moves most"
        kept = [
            p for p in _text(row.get("note")).split("; ") if p and not p.startswith(SAMPLE_NOTE)
        ]
        out.iat[i, out.columns.get_loc("note")] = "; ".join([*kept, said])
    return out
