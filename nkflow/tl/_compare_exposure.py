"""Exposure counts of :func:`nkflow.tl.compare.compare_paired` (split from that module).

A tube is exposed when its exposure column (``glucocorticoid``) says ``yes``, unexposed when
it says ``no``, and of unknown exposure otherwise (``unknown``, not recorded): an unknown
exposure is never counted as none. Nothing here is public API.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["changed_units", "exposed_counts", "with_exposures"]

#: values of an exposure column (``glucocorticoid``) that mark a tube as exposed
_EXPOSED = frozenset({"yes", "true", "1"})
#: values that mark a tube as unexposed; any other value (``unknown``, empty) is unknown
_UNEXPOSED = frozenset({"no", "false", "0"})


def with_exposures(
    wide: pd.DataFrame,
    sub: pd.DataFrame,
    keys: list[str],
    timepoint_key: str,
    points: tuple[str, str],
    exposures: Sequence[str],
) -> pd.DataFrame:
    """``wide`` plus ``_<col>_before``/``_<col>_after``: a unit's exposure then.

    ``yes`` when any of its tubes is exposed, ``no`` when every tube says ``no``, else
    ``unknown`` (``unknown``, not recorded or unrecognised: never read as unexposed).
    """
    for col in exposures:
        text = sub[col].astype(str).str.strip().str.lower()
        rank = np.where(text.isin(_EXPOSED), 2, np.where(text.isin(_UNEXPOSED), 0, 1))
        per_unit = (
            sub.assign(_rank=rank)
            .groupby([*keys, timepoint_key], dropna=False, observed=True)["_rank"]
            .max()
            .unstack(timepoint_key)
            .reindex(columns=list(points))
        )
        per_unit.columns = [f"_{col}_before", f"_{col}_after"]
        wide = wide.merge(per_unit.reset_index(), on=keys, how="left")
    return wide


def exposed_counts(part: pd.DataFrame, exposures: Sequence[str]) -> dict[str, object]:
    """Exposed and unknown-exposure pairs of ``part`` before and after, and the confounding.

    Pairs are donors when ``part`` has a ``donor`` column, else units; the keys are those of
    :func:`~nkflow.tl.compare.paired_columns`.
    """
    out: dict[str, object] = {}
    unit = part["donor"] if "donor" in part else pd.Series(range(len(part)), index=part.index)
    for col in exposures:
        # a donor's state at a timepoint: exposed in any tissue > unknown in any > no
        rank = part[[f"_{col}_before", f"_{col}_after"]].fillna(1).groupby(unit.to_numpy()).max()
        before, after = rank.iloc[:, 0].to_numpy(), rank.iloc[:, 1].to_numpy()
        out[f"n_{col}_before"] = int((before == 2).sum())
        out[f"n_{col}_after"] = int((after == 2).sum())
        out[f"n_{col}_unknown_before"] = int((before == 1).sum())
        out[f"n_{col}_unknown_after"] = int((after == 1).sum())
        known = (before != 1) & (after != 1)
        changed = known & (before != after)
        if changed.all():
            verdict = "all"
        elif changed.any():
            verdict = "some"
        else:
            verdict = "none" if known.all() else "unknown"
        out[f"{col}_confounded"] = verdict
    return out


def changed_units(part: pd.DataFrame, col: str) -> set[object]:
    """Donors (units when ``part`` has no ``donor``) whose known ``col`` exposure changed.

    A donor's state at a timepoint is ranked as in :func:`exposed_counts` (exposed in any
    tissue > unknown in any > no); one unknown at either timepoint is not a known change.
    """
    unit = part["donor"] if "donor" in part else pd.Series(range(len(part)), index=part.index)
    rank = part[[f"_{col}_before", f"_{col}_after"]].fillna(1).groupby(unit.to_numpy()).max()
    before, after = rank.iloc[:, 0].to_numpy(), rank.iloc[:, 1].to_numpy()
    changed = (before != 1) & (after != 1) & (before != after)
    return set(rank.index[changed])
