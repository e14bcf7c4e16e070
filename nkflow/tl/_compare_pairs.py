"""The pairs of :func:`nkflow.tl.compare.compare_paired` (split from that module).

Units measured at both timepoints, the tubes left out for too few events, and the pairs per
group. Nothing here is public API.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

__all__ = [
    "group_key",
    "lost_pairs",
    "pairs_per_group",
    "rows_without_pairs",
    "too_few_events",
    "wide",
]


def wide(
    sub: pd.DataFrame, keys: list[str], timepoint_key: str, before: str, after: str, value: str
) -> pd.DataFrame:
    """One row per unit measured at both timepoints: its mean ``value`` then (tubes averaged)."""
    return (
        sub.groupby([*keys, timepoint_key], dropna=False, observed=True)[value]
        .mean()
        .unstack(timepoint_key)
        .reindex(columns=[before, after])
        .dropna()
        .reset_index()
    )


def too_few_events(sub: pd.DataFrame, events: Sequence[str], min_events: int) -> pd.Series:
    """Tubes with fewer than ``min_events`` in any ``events`` column (the scoring's rule)."""
    few = pd.Series(False, index=sub.index)
    for col in events:
        if col in sub.columns:
            few |= pd.to_numeric(sub[col], errors="coerce").fillna(0) < min_events
    return few


def pairs_per_group(wide: pd.DataFrame, by: Sequence[str]) -> pd.Series:
    """Pairs (donors when the table has them, else units) per ``by`` group."""
    if wide.empty:
        return pd.Series(dtype=float)
    grouped = wide.groupby(list(by), dropna=False, sort=False)
    counts = grouped["donor"].nunique() if "donor" in wide.columns else grouped.size()
    if not isinstance(counts.index, pd.MultiIndex) and len(by) > 1:
        counts.index = pd.MultiIndex.from_tuples(counts.index)
    return counts


def group_key(group: object) -> tuple:
    """A ``by`` group as a tuple in which missing values compare equal (NaN != NaN)."""
    values = group if isinstance(group, tuple) else (group,)
    return tuple(None if pd.isna(v) else v for v in values)


def lost_pairs(lost: pd.Series) -> dict[tuple, int]:
    """:func:`pairs_per_group`'s differences by :func:`group_key` (a NaN group found too)."""
    return {group_key(g): int(n) for g, n in lost.items()}


def rows_without_pairs(lost: pd.Series, by: Sequence[str], kept: set[tuple]) -> list[dict]:
    """Rows for the groups whose every pair was left out for too few events.

    Without them a comparison vanished from the table, and its lost pairs from the count
    the report gives: a row with ``n_pairs`` 0 says it was asked and why it has no test.
    ``kept`` holds the groups that have rows, as :func:`group_key` gives them.
    """
    rows = []
    for group, n_lost in lost.items():
        group = group if isinstance(group, tuple) else (group,)
        if n_lost > 0 and group_key(group) not in kept:
            row = dict(zip(by, group, strict=True))
            row.update(n_pairs=0, n_units=0, n_pairs_too_few_events=int(n_lost))
            rows.append(row)
    return rows
