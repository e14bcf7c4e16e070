"""Ground truth: which gated populations each leaf label belongs to, and planted rates.

The population names are those of docs/contracts.md. Membership follows what the
gating hierarchy of BIOLOGY.md 6(b) can see: because viability dye and the CD14/CD19
dump share one channel, ``Live`` is live, CD45+ *and* dump-negative (B cells and
monocytes/macrophages fall outside it, as do CD45- cells); ``Lymphocytes`` are the live
cells in the lymphocyte scatter gate.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .panels import get_panel
from .populations import HUMAN_NK, MOUSE_NK, labels_for

__all__ = ["population_leaves", "population_names", "truth_membership"]

_HUMAN_LYMPH = ("T", "NKT-like", "ILC", "other_lin_neg", *HUMAN_NK)
_MOUSE_LIVE = ("granulocyte", "T", "NKT", "ILC", "other_lin_neg", *MOUSE_NK)
_MOUSE_CNK = MOUSE_NK[:4]

_POPULATIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "human": {
        "Lymphocytes": _HUMAN_LYMPH,
        "CD3-": ("ILC", "other_lin_neg", *HUMAN_NK),
        "NKT-like": ("NKT-like",),
        "NK": HUMAN_NK,
        "ILC": ("ILC",),
        "CD56bright": ("NK_CD56bright_circ", "NK_CD56bright_tr"),
        "CD56dim": ("NK_CD56dim_circ", "NK_CD56dim_tr"),
        "trNK": ("NK_CD56bright_tr", "NK_CD56dim_tr"),
        "circNK": ("NK_CD56bright_circ", "NK_CD56dim_circ"),
        "CD56bright_trNK": ("NK_CD56bright_tr",),
        "CD56bright_circNK": ("NK_CD56bright_circ",),
        "CD56dim_trNK": ("NK_CD56dim_tr",),
        "CD56dim_circNK": ("NK_CD56dim_circ",),
    },
    "mouse": {
        "CD3e-": ("ILC", "other_lin_neg", *MOUSE_NK),
        "NKT": ("NKT",),
        "NK": MOUSE_NK,
        "ILC": ("ILC",),
        "cNK": _MOUSE_CNK,
        "trNK": ("trNK",),
        "DP_CD49a_CD49b": ("DP_CD49a_CD49b",),
        "cNK_CD27+CD11b-": ("cNK_CD27+CD11b-",),
        "cNK_CD27+CD11b+": ("cNK_CD27+CD11b+",),
        "cNK_CD27-CD11b+": ("cNK_CD27-CD11b+",),
    },
}


def population_leaves(species: str) -> dict[str, tuple[str, ...]]:
    """Map each population name of ``species`` to the leaf labels it contains.

    Parameters
    ----------
    species
        ``"human"`` or ``"mouse"``.

    Returns
    -------
    dict of str to tuple of str
        Population name (docs/contracts.md, hierarchy order) -> the leaf labels
        (:func:`labels_for`) whose events belong to it.

    Raises
    ------
    ConfigError
        ``species`` is neither ``"human"`` nor ``"mouse"``.
    """
    get_panel(species)
    labels = labels_for(species)
    cells = tuple(lab for lab in labels if lab != "debris")
    singlets = tuple(lab for lab in cells if lab != "doublet")
    if species == "human":
        live = ("granulocyte", *_HUMAN_LYMPH)
    else:
        live = _MOUSE_LIVE
    out = {"Cells": cells, "Singlets": singlets, "Live": live}
    out.update(_POPULATIONS[species])
    return out


def population_names(species: str) -> list[str]:
    """Population names of ``species`` in hierarchy order (docs/contracts.md).

    Parameters
    ----------
    species
        ``"human"`` or ``"mouse"``.

    Returns
    -------
    list of str
        The keys of :func:`population_leaves`, parents before their children.

    Raises
    ------
    ConfigError
        ``species`` is neither ``"human"`` nor ``"mouse"``.
    """
    return list(population_leaves(species))


def truth_membership(labels: Sequence[str] | pd.Series, species: str) -> pd.DataFrame:
    """Bool membership of each event in every population of ``species``.

    Parameters
    ----------
    labels
        Leaf labels (the ``label`` column of a truth file).
    species
        ``"human"`` or ``"mouse"``.

    Returns
    -------
    pandas.DataFrame
        One bool column per population name (docs/contracts.md), one row per event,
        index as in ``labels`` when it is a Series.
    """
    series = labels if isinstance(labels, pd.Series) else pd.Series(list(labels))
    values = series.astype(str).to_numpy()
    cols = {
        name: np.isin(values, np.array(leaves, dtype=object))
        for name, leaves in population_leaves(species).items()
    }
    return pd.DataFrame(cols, index=series.index)


def planted_rates(
    species: str, label_prob: np.ndarray, rates: dict[str, np.ndarray]
) -> list[tuple[str, str, float]]:
    """Expected percent of producers per population, weighting leaf rates by abundance.

    Parameters
    ----------
    species
        ``"human"`` or ``"mouse"``.
    label_prob
        Probability of each leaf label (order of :func:`labels_for`).
    rates
        Marker -> probability of producing it, per leaf label.

    Returns
    -------
    list of tuple
        ``(population, marker, percent)`` for the NK-lineage, NKT and ILC populations.
    """
    labels = labels_for(species)
    index = {lab: i for i, lab in enumerate(labels)}
    skip = {"Cells", "Singlets", "Live", "Lymphocytes", "CD3-", "CD3e-"}
    rows = []
    for pop, leaves in population_leaves(species).items():
        if pop in skip:
            continue
        idx = [index[lab] for lab in leaves]
        weight = label_prob[idx]
        for marker, rate in rates.items():
            pct = 100.0 * float(np.dot(weight, rate[idx]) / weight.sum()) if weight.sum() else 0.0
            rows.append((pop, marker, round(pct, 6)))
    return rows
