"""Threshold drift across batches: the same cut-off moving more than a bound.

Data-driven thresholds are set per batch and tissue (cryopreservation, instrument drift
and batch effects move positivity cut-offs); this table keeps that movement visible.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import pandas as pd

from ..exceptions import GatingError, ThresholdDriftWarning

__all__ = ["compare_thresholds"]

logger = logging.getLogger(__name__)


def compare_thresholds(
    tables: pd.DataFrame | Sequence[pd.DataFrame],
    *,
    max_shift: float = 0.1,
    by: Sequence[str] = ("tissue", "gate", "marker"),
    warn: bool = True,
) -> pd.DataFrame:
    """Compare thresholds of the same marker, gate and tissue across batches.

    For each group the reference is the median of the per-batch values (each batch's value
    is the median over its samples). A batch whose value differs from the reference by more
    than ``max_shift`` (transformed units) is flagged and a :class:`ThresholdDriftWarning`
    is issued.

    Parameters
    ----------
    tables
        One thresholds table (see ``docs/contracts.md``) or several, e.g. one per batch.
    max_shift
        Largest tolerated shift from the reference.
    by
        Columns that define "the same threshold".
    warn
        Issue a warning per drifting batch.

    Returns
    -------
    DataFrame
        One row per group and batch: the ``by`` columns, ``batch``, ``value``, ``reference``,
        ``shift``, ``n_batches``, ``drift`` (bool).

    Raises
    ------
    GatingError
        A table lacks one of the ``by`` columns, ``batch`` or ``value``.
    """
    if isinstance(tables, pd.DataFrame):
        df = tables
    else:
        df = pd.concat(list(tables), ignore_index=True) if len(tables) else pd.DataFrame()
    cols = [*by, "batch", "value", "reference", "shift", "n_batches", "drift"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    missing = [c for c in [*by, "batch", "value"] if c not in df.columns]
    if missing:
        raise GatingError(f"thresholds table lacks column(s) {missing}; has {list(df.columns)}")
    per_batch = df.groupby([*by, "batch"], dropna=False, observed=True)["value"].median()
    per_batch = per_batch.reset_index()
    ref = per_batch.groupby(list(by), dropna=False, observed=True)["value"].transform("median")
    nb = per_batch.groupby(list(by), dropna=False, observed=True)["value"].transform("size")
    per_batch["reference"] = ref
    per_batch["shift"] = per_batch["value"] - ref
    per_batch["n_batches"] = nb.astype(int)
    per_batch["drift"] = (per_batch["shift"].abs() > max_shift) & (per_batch["n_batches"] > 1)
    if warn:
        for _, r in per_batch[per_batch["drift"]].iterrows():
            what = ", ".join(f"{k}={r[k]}" for k in by)
            msg = (
                f"threshold drift: {what}, batch {r['batch']!r}: {r['value']:.3f} vs "
                f"reference {r['reference']:.3f} (shift {r['shift']:+.3f} > {max_shift})"
            )
            logger.debug(msg)  # shown once, as the warning below
            warnings.warn(msg, ThresholdDriftWarning, stacklevel=2)
    return per_batch[cols]
