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

from ..gating.thresholds import TABLE_COLUMNS
from ..pp.transform import to_linear

__all__ = [
    "POPULATION_COLUMNS",
    "THRESHOLD_COLUMNS",
    "add_linear_thresholds",
    "order_columns",
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
