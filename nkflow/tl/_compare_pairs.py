"""The pairs of :func:`nkflow.tl.compare.compare_paired` (split from that module).

Units measured at both timepoints, the tubes left out for too few events, and the pairs per
group. Nothing here is public API.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

__all__ = ["pairs_per_group", "too_few_events", "wide"]


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
