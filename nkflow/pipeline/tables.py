"""Shaping the batch tables the way docs/contracts.md lists them.

Per-sample summaries travel as JSON with sorted keys, so tables gathered from them come
out with alphabetical columns (``ci_high`` first, ``sample_id`` last). These helpers put
the contract's columns first, in the contract's order, and add what an analyst reads
next to a transformed threshold: the same cut-off in the instrument's linear units.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .._frames import concat_rows
from ..gating.cut_spread import with_batch_spread
from ..gating.overrides import SUPERSEDED
from ..gating.thresholds import TABLE_COLUMNS
from ..pp.transform import to_linear

__all__ = [
    "POPULATION_COLUMNS",
    "THRESHOLD_COLUMNS",
    "add_linear_thresholds",
    "batch_thresholds_table",
    "mark_superseded",
    "order_columns",
    "without_applied_overrides",
]

POPULATION_COLUMNS = (
    "sample_id", "population", "parent", "count", "parent_count", "percent_of_parent",
    "ci_low", "ci_high", "percent_of_nk", "low_events", "phenotype_source",
)  # fmt: skip
THRESHOLD_COLUMNS = TABLE_COLUMNS  # one definition, shared with the report
LINEAR = {"value": "value_linear", "ci_low": "ci_low_linear", "ci_high": "ci_high_linear"}


def order_columns(table: pd.DataFrame, leading: Sequence[str]) -> pd.DataFrame:
    """``table`` with the ``leading`` columns it has first, in that order, then the rest.

    The remaining columns keep their order, except ``median_<marker>`` columns, which are
    sorted by marker so every sample's table has the same layout.
    """
    if table.empty and not len(table.columns):
        return table
    first = [c for c in leading if c in table.columns]
    rest = [c for c in table.columns if c not in first]
    medians = sorted(c for c in rest if str(c).startswith("median_"))
    others = [c for c in rest if not str(c).startswith("median_")]
    return table[first + others + medians]


def without_applied_overrides(batch_level: pd.DataFrame, per_sample: pd.DataFrame) -> pd.DataFrame:
    """The batch-level rows minus manual overrides that a sample's row already records.

    An override reaches each sample as a threshold and is recorded there, with the
    sample's channel and both scales; its batch-level entry (no channel, one scale) would
    be a second, incomplete row. An override no sample applied keeps its entry, so the
    table still shows it.

    Parameters
    ----------
    batch_level
        FMO, batch-pool and override rows (``sample_id`` empty for the first two).
    per_sample
        The thresholds recorded by the processed samples.

    Returns
    -------
    pandas.DataFrame
    """
    need = {"rule", "gate", "marker", "tissue", "batch", "sample_id"}
    if batch_level.empty or per_sample.empty or not need <= set(per_sample.columns):
        return batch_level
    applied = per_sample[per_sample["rule"] == "manual"]
    seen = {
        tuple(str(r[k]) for k in ("gate", "marker", "tissue", "batch", "sample_id"))
        for _, r in applied.iterrows()
    }
    sample_ids = set(applied["sample_id"].astype(str))

    def applied_somewhere(r: pd.Series) -> bool:
        if r.get("rule") != "manual":
            return False
        key = tuple(str(r.get(k, "") or "") for k in ("gate", "marker", "tissue", "batch"))
        own = str(r.get("sample_id", "") or "")
        return any((*key, sid) in seen for sid in ([own] if own else sample_ids))

    keep = [not applied_somewhere(r) for _, r in batch_level.iterrows()]
    return batch_level[np.array(keep, dtype=bool)].reset_index(drop=True)


def mark_superseded(batch_level: pd.DataFrame) -> pd.DataFrame:
    """Mark the computed batch-level rows a tissue- or batch-wide override replaced.

    A manual entry without ``sample_id`` wins for every sample of its tissue, batch and
    template (:func:`nkflow.gating.overrides.override_rank`), so the FMO or batch-pool
    cut-off of that group reached no sample. Its row stays (what the control gave), its
    ``note`` starting with :data:`SUPERSEDED` and naming the overrides file.

    Parameters
    ----------
    batch_level
        FMO, batch-pool and override rows (with ``template`` when the run has it).

    Returns
    -------
    pandas.DataFrame
    """
    if batch_level.empty or "rule" not in batch_level.columns:
        return batch_level
    keys = [k for k in ("gate", "marker", "tissue", "batch", "template") if k in batch_level]

    def key(r: pd.Series) -> tuple[str, ...]:
        return tuple("" if pd.isna(r.get(k)) else str(r.get(k)) for k in keys)

    def own(r: pd.Series) -> bool:
        v = r.get("sample_id")
        return isinstance(v, str) and bool(v)

    wide = {key(r): str(r.get("control_file", "") or "") for _, r in batch_level.iterrows()
            if r.get("rule") == "manual" and not own(r)}  # fmt: skip
    if not wide:
        return batch_level
    out = batch_level.copy()
    if "note" not in out.columns:
        out["note"] = ""
    for i, r in out.iterrows():
        if r.get("rule") != "manual" and not own(r) and key(r) in wide:
            note = "" if pd.isna(r["note"]) else str(r["note"])
            out.at[i, "note"] = (f"{SUPERSEDED} not applied, every sample of this tissue and "
                                 f"batch takes the manual threshold of {wide[key(r)]}"
                                 + (f"; {note}" if note else ""))  # fmt: skip
    return out


def batch_thresholds_table(
    batch_level: pd.DataFrame,
    per_sample: pd.DataFrame,
    transforms: Mapping[str, Mapping[str, Any]],
    sample_groups: Mapping[str, tuple[str, str]],
    applied: Sequence[Mapping[str, Any]] = (),
) -> pd.DataFrame:
    """The thresholds table of a batch (``nkflow run`` and ``nkflow gate``): one row each.

    A batch-level threshold (an FMO cut-off, the batch pool: ``sample_id`` empty, it
    applies to every sample of its tissue and batch) is listed once, however many samples
    applied it, with how far its interval moves the share positive in the samples it was
    applied to (:func:`nkflow.gating.cut_spread.with_batch_spread`); each sample lists only
    the thresholds it set itself.

    Parameters
    ----------
    batch_level
        FMO, batch-pool and override rows (a ``template`` column is dropped).
    per_sample
        The thresholds each sample set itself (its own ``sample_id``).
    transforms, sample_groups
        As in :func:`add_linear_thresholds`.
    applied
        Each sample's records of the batch-level cut-offs it applied
        (:func:`nkflow.gating.cut_spread.applied_batch_cuts`).

    Returns
    -------
    pandas.DataFrame
        Contract columns first, with the linear values; empty when there is no threshold.
    """
    batch_level = without_applied_overrides(
        mark_superseded(batch_level).drop(columns=["template"], errors="ignore"), per_sample
    )
    parts = [t for t in (batch_level, per_sample) if not t.empty]
    if not parts:
        return pd.DataFrame()
    table = with_batch_spread(concat_rows(parts), list(applied))
    table = add_linear_thresholds(table, transforms, sample_groups)
    return order_columns(table, THRESHOLD_COLUMNS)


def add_linear_thresholds(
    thresholds: pd.DataFrame,
    transforms: Mapping[str, Mapping[str, Any]],
    sample_groups: Mapping[str, tuple[str, str]] | None = None,
) -> pd.DataFrame:
    """Add ``value_linear``, ``ci_low_linear`` and ``ci_high_linear`` to a thresholds table.

    Parameters
    ----------
    thresholds
        The thresholds table (``value``, ``ci_low``, ``ci_high`` on the transformed scale;
        ``channel`` the ``$PnN`` channel).
    transforms
        ``sample_id -> transform record`` (``uns["nkflow"]["transform"]``) of each
        processed sample.
    sample_groups
        ``sample_id -> (tissue, batch)``: a batch-level row (``sample_id == ""``, e.g. an
        FMO cut-off) is converted with a sample of the same tissue and batch (all tubes of
        a batch share their transform unless ``estimate_w`` fits one per file).

    Returns
    -------
    pandas.DataFrame
        A copy with the three columns; a channel that was not transformed (scatter,
        density gates) keeps its value, which is already linear; a row whose transform is
        unknown gets NaN.
    """
    out = thresholds.copy()
    if out.empty or "channel" not in out.columns:
        return out
    by_group: dict[tuple[str, str], Mapping[str, Any]] = {}
    for sid, (tissue, batch) in (sample_groups or {}).items():
        if sid in transforms:
            by_group.setdefault((str(tissue), str(batch)), transforms[sid])
    fallback = next(iter(transforms.values()), None)
    columns = {target: np.full(len(out), np.nan) for target in LINEAR.values()}
    for i, row in enumerate(out.itertuples(index=False)):
        record = _record_for(row, transforms, by_group, fallback)
        if not str(row.channel or ""):  # an override no sample applied: no channel known
            for target in LINEAR.values():
                if target in out.columns:
                    columns[target][i] = pd.to_numeric(getattr(row, target), errors="coerce")
            continue
        if record is None:
            continue
        for source, target in LINEAR.items():
            value = getattr(row, source, np.nan)
            if value is None or pd.isna(value):
                continue
            linear = to_linear([float(value)], str(row.channel), record)
            columns[target][i] = float(value) if linear is None else float(linear[0])
    for target, values in columns.items():
        out[target] = values
    return out


def _record_for(
    row: Any,
    transforms: Mapping[str, Mapping[str, Any]],
    by_group: Mapping[tuple[str, str], Mapping[str, Any]],
    fallback: Mapping[str, Any] | None,
) -> Mapping[str, Any] | None:
    sid = str(getattr(row, "sample_id", "") or "")
    if sid in transforms:
        return transforms[sid]
    key = (str(getattr(row, "tissue", "")), str(getattr(row, "batch", "")))
    return by_group.get(key, fallback)
