"""Row-wise concatenation of tables without pandas' all-NA deprecation.

pandas 2.1+ warns (``FutureWarning``) when a part holds a column only as NA values of
another dtype: today the result's dtype ignores such parts (a float column stays float
although one part holds it as ``None`` objects), a future pandas will not. Giving those
columns, before the concat, the NA of the dtype the other parts agree on keeps today's
result, now and in the future, and says nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["concat_rows"]


def concat_rows(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """``pd.concat(frames, ignore_index=True)``, the same result, without the warning.

    Parameters
    ----------
    frames
        The tables to stack (at least one).

    Returns
    -------
    pandas.DataFrame
        The stacked rows; the index is 0 .. n-1.
    """
    frames = list(frames)
    if len(frames) < 2:
        return pd.concat(frames, ignore_index=True)
    parts = []
    for i, f in enumerate(frames):
        cast = {}
        for c in f.columns:
            if f[c].notna().any():
                continue
            target = _value_dtype([g[c] for j, g in enumerate(frames) if j != i and c in g])
            if target is not None and target != f[c].dtype:
                cast[c] = target
        parts.append(f.astype(cast) if cast else f)
    return pd.concat(parts, ignore_index=True)


def _value_dtype(columns: list[pd.Series]) -> np.dtype | None:
    """The dtype pandas gives the values of ``columns`` with NA among them, or None.

    None when no column has a value, a dtype is not NumPy's, or it is not a float, complex
    or date dtype (integers, bool, strings): then pandas keeps the all-NA part's values as
    they are, and does not warn.
    """
    dtypes = [s.dtype for s in columns if s.notna().any()]
    if not dtypes or not all(isinstance(d, np.dtype) for d in dtypes):
        return None
    try:
        target = np.result_type(*dtypes)
    except TypeError:  # no common NumPy dtype (dates and numbers): pandas makes objects
        return None
    return target if target.kind in "fcmM" else None
