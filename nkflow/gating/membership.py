"""Gate membership in ``obs``: what a column holds for a gate that could not be set.

A gate the engine could not set (too few events for its cut-off or cluster fit, a
cut-off the mirror check refused, or a gate below or combining such a gate: the
engine's ``GatingRun.unset``, kept in ``uns["nkflow"]["gating"]["unset"]``) measured
nothing. Its ``obs`` column is pandas' nullable ``"boolean"``:

- ``<NA>`` on every event the gate would have decided (its parent's events, and the
  events where the parent is itself ``<NA>``): not measured, neither in nor out;
- ``False`` outside its parent, where the hierarchy already says the event is not in it.

A gate that was set keeps a plain ``bool`` column. So ``obs`` says what the populations
table says: the table's count of a not-set gate is NA, and so is the column's. The
negation of a not-set gate (``CD56dim = NOT CD56bright``) is not-set too, never "every
event". ``<NA>`` is what pandas and anndata use for a missing value: it survives
subsetting, concatenation (``anndata.concat``, ``Results.to_anndata``) and ``.h5ad``
(anndata's ``nullable-boolean`` encoding), where a record in ``uns`` would be lost;
its mean over the parent's events (the kept NK events of ``nk.h5ad``) is ``<NA>`` rather
than 0 % or 100 %, and masking with it raises rather than silently selecting nothing or
everything.

Readers in nkflow take :func:`member_mask` (the events known to be in the gate, as a
bool array) and :func:`is_set` (no event left undecided) instead of
``obs[name].to_numpy(dtype=bool)``, which refuses ``<NA>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "NOT_SET_DTYPE",
    "is_set",
    "member_mask",
    "membership_column",
    "not_set_gates",
    "obs_columns",
]

#: the dtype of the ``obs`` column of a gate that could not be set
NOT_SET_DTYPE = "boolean"


def membership_column(members: np.ndarray, parent: Any = None, *, not_set: bool = False) -> Any:
    """The ``obs`` column of one gate.

    Parameters
    ----------
    members
        The engine's bool membership of the gate (all-False when it was not set).
    parent
        The parent gate's ``obs`` column (bool or nullable ``boolean``); ``None`` for a
        gate on all events.
    not_set
        The gate could not be set (it is in ``GatingRun.unset``).

    Returns
    -------
    numpy.ndarray or pandas.arrays.BooleanArray
        ``members`` as bool for a set gate; for a not-set gate a nullable ``boolean``
        array, ``<NA>`` where the parent is True or ``<NA>``, False elsewhere.
    """
    members = np.asarray(members, dtype=bool)
    if not not_set:
        return members
    if parent is None:
        undecided = np.ones(members.shape, dtype=bool)
    else:
        values = pd.array(parent, dtype=NOT_SET_DTYPE)
        undecided = values.fillna(True).to_numpy(dtype=bool)
    out = pd.array(np.zeros(members.shape, dtype=bool), dtype=NOT_SET_DTYPE)
    out[undecided] = pd.NA
    return out


def obs_columns(
    parents: Mapping[str, str | None],
    members: Mapping[str, np.ndarray],
    unset: Mapping[str, str],
) -> dict[str, Any]:
    """The ``obs`` columns of a gating run, parents first (:func:`membership_column`).

    Parameters
    ----------
    parents
        Gate -> parent gate (``None`` on all events), in the order the gates were drawn
        (a parent before its children), as ``GatingRun.parents``.
    members
        Gate -> bool membership (``GatingRun.members``).
    unset
        The gates that could not be set (``GatingRun.unset``).

    Returns
    -------
    dict
        Gate -> column, in the order of ``parents``.
    """
    out: dict[str, Any] = {}
    for name, parent in parents.items():
        above = out.get(parent) if parent else None
        if parent and above is None:  # a parent drawn elsewhere: its bool membership
            above = members[parent]
        out[name] = membership_column(members[name], above, not_set=name in unset)
    return out


def member_mask(column: Any) -> np.ndarray:
    """The events known to be in a gate: a bool array, ``<NA>`` (not set) as False.

    Parameters
    ----------
    column
        A gate's ``obs`` column (bool or nullable ``boolean``).

    Returns
    -------
    numpy.ndarray
        Bool; check :func:`is_set` before taking its sum for a count.
    """
    values = _values(column)
    if getattr(values, "dtype", None) == "bool":  # a set gate: a copy, no nullable round trip
        return np.array(values, dtype=bool)
    return pd.array(values, dtype=NOT_SET_DTYPE).fillna(False).to_numpy(dtype=bool)


def _values(column: Any) -> Any:
    """The array under an ``obs`` column (a Series' values), else the column itself.

    Taking the values first keeps numpy off the Series: ``np.asarray`` on a Series looks
    its array attributes up through pandas' ``__getattr__``, which searches the index of
    event names (a fifth of a millisecond per call on 200,000 events).
    """
    return column.array if isinstance(column, pd.Series | pd.Index) else column


def is_set(column: Any) -> bool:
    """Whether the gate decided every event (no ``<NA>`` in its ``obs`` column).

    Parameters
    ----------
    column
        A gate's ``obs`` column.

    Returns
    -------
    bool
    """
    values = _values(column)
    if getattr(values, "dtype", None) == "bool":  # plain bool: every event decided
        return True
    return not bool(np.asarray(pd.isna(values)).any())


def not_set_gates(obs: pd.DataFrame, names: Iterable[str]) -> list[str]:
    """The gates among ``names`` (those ``obs`` has) whose columns hold ``<NA>``.

    Parameters
    ----------
    obs
        The container's ``obs``.
    names
        Gate names.

    Returns
    -------
    list of str
        In the order of ``names``.
    """
    return [n for n in names if n in obs.columns and not is_set(obs[n])]
