"""Cell types of the simulator: labels, tissue composition, scatter and marker profiles.

Every event gets one leaf label (``truth`` in docs/contracts.md). Frequencies follow
BIOLOGY.md section 5; marker levels are linear, compensated units on an 18-bit
(0-262,143) instrument. A marker profile is ``(p, median, sdlog)``: a fraction ``p`` of the
cells of that label express the marker at a log-normal level; the rest carry no stain.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..exceptions import ConfigError
from .panels import get_panel

__all__ = [
    "HUMAN_LABELS",
    "MOUSE_LABELS",
    "TISSUES",
    "TissueProfile",
    "composition",
    "labels_for",
    "marker_table",
    "scatter_table",
    "tissue_profile",
]

HUMAN_LABELS = (
    "debris", "doublet", "dead", "nonleukocyte", "granulocyte", "monocyte", "B", "T",
    "NKT-like", "ILC", "other_lin_neg", "NK_CD56bright_circ", "NK_CD56bright_tr", "NK_CD56dim_circ",
    "NK_CD56dim_tr",
)  # fmt: skip
MOUSE_LABELS = (
    "debris", "doublet", "dead", "nonleukocyte", "granulocyte", "macrophage", "B", "T",
    "NKT", "ILC", "other_lin_neg", "cNK_CD27+CD11b-", "cNK_CD27+CD11b+", "cNK_CD27-CD11b+",
    "cNK_CD27-CD11b-", "trNK", "DP_CD49a_CD49b",
)  # fmt: skip
TISSUES = {"human": ("blood", "liver", "lung", "tumour"), "mouse": ("liver", "spleen")}
#: simulated on request only (not in a default design): ileum, ~90 % CD69+ NK
EXTRA_TISSUES = {"human": ("ileum",), "mouse": ()}
HUMAN_NK = ("NK_CD56bright_circ", "NK_CD56bright_tr", "NK_CD56dim_circ", "NK_CD56dim_tr")
MOUSE_NK = (
    "cNK_CD27+CD11b-", "cNK_CD27+CD11b+", "cNK_CD27-CD11b+", "cNK_CD27-CD11b-", "trNK",
    "DP_CD49a_CD49b",
)  # fmt: skip
# Labels whose cells sit in the lymphocyte scatter gate.
LYMPHOID = {"B", "T", "NKT-like", "NKT", "ILC", *HUMAN_NK, *MOUSE_NK}


def labels_for(species: str) -> tuple[str, ...]:
    """Leaf labels of ``species`` in their fixed categorical order.

    Parameters
    ----------
    species
        ``"human"`` or ``"mouse"``.

    Returns
    -------
    tuple of str
        The labels a simulated event can carry (the truth files' ``label`` column), in the
        order of the simulator's per-label arrays.

    Raises
    ------
    ConfigError
        ``species`` is neither ``"human"`` nor ``"mouse"``.
    """
    get_panel(species)
    return HUMAN_LABELS if species == "human" else MOUSE_LABELS


@dataclass(frozen=True)
class TissueProfile:
    """Composition of one tissue preparation (fractions; each group is renormalised).

    Attributes
    ----------
    artefacts
        Fractions of all events: debris, doublet, dead.
    live
        Weights among live singlets: nonleukocyte, granulocyte, monocyte/macrophage, B,
        lymphocytes (T, NKT, ILC, NK together).
    lymph
        Weights among lymphocytes other than B: T, NKT, ILC, NK.
    nk
        Weights among NK leaf labels.
    residency
        Human trNK: probability of CD49a, CD103, CXCR6 (the first listed is forced on
        when a resident cell drew none, so every trNK carries one integrin/receptor).
    af
        Autofluorescence multiplier of the tissue.
    cd56_loss
        Fraction of CD56 epitope left after enzymatic digestion.
    """

    artefacts: dict[str, float]
    live: dict[str, float]
    lymph: dict[str, float]
    nk: dict[str, float]
    residency: dict[str, float] = field(default_factory=dict)
    af: float = 1.0
    cd56_loss: float = 1.0


def _nk_human(bright: float, tr_bright: float, tr_dim: float) -> dict[str, float]:
    return {
        "NK_CD56bright_circ": bright * (1 - tr_bright),
        "NK_CD56bright_tr": bright * tr_bright,
        "NK_CD56dim_circ": (1 - bright) * (1 - tr_dim),
        "NK_CD56dim_tr": (1 - bright) * tr_dim,
    }


def _nk_mouse(cnk: float, trnk: float, dp: float, mat: tuple[float, ...]) -> dict[str, float]:
    names = ("cNK_CD27+CD11b-", "cNK_CD27+CD11b+", "cNK_CD27-CD11b+", "cNK_CD27-CD11b-")
    out = {n: cnk * m for n, m in zip(names, mat, strict=True)}
    out.update({"trNK": trnk, "DP_CD49a_CD49b": dp})
    return out


_PROFILES: dict[tuple[str, str], TissueProfile] = {
    ("human", "blood"): TissueProfile(
        {"debris": 0.05, "doublet": 0.04, "dead": 0.06},
        {"nonleukocyte": 0.003, "granulocyte": 0.02, "monocyte": 0.16, "B": 0.09,
         "lymph": 0.727},
        {"T": 0.82, "NKT-like": 0.04, "ILC": 0.004, "other_lin_neg": 0.02, "NK": 0.12},
        _nk_human(0.08, 0.06, 0.025),  # trNK ~2.8% of blood NK (BIOLOGY.md 5: 0-3%)
        {"CXCR6": 0.6, "CD49a": 0.3, "CD103": 0.1},
    ),
    ("human", "liver"): TissueProfile(
        {"debris": 0.18, "doublet": 0.08, "dead": 0.20},
        {"nonleukocyte": 0.25, "granulocyte": 0.06, "monocyte": 0.14, "B": 0.05,
         "lymph": 0.50},
        {"T": 0.55, "NKT-like": 0.10, "ILC": 0.006, "other_lin_neg": 0.01, "NK": 0.35},
        _nk_human(0.45, 0.75, 0.25),
        {"CXCR6": 0.92, "CD49a": 0.35, "CD103": 0.08},
        af=1.5,
        cd56_loss=0.8,
    ),
    ("human", "lung"): TissueProfile(
        {"debris": 0.15, "doublet": 0.07, "dead": 0.18},
        {"nonleukocyte": 0.30, "granulocyte": 0.10, "monocyte": 0.20, "B": 0.05,
         "lymph": 0.35},
        {"T": 0.75, "NKT-like": 0.03, "ILC": 0.01, "other_lin_neg": 0.02, "NK": 0.15},
        _nk_human(0.20, 0.60, 0.08),
        {"CD49a": 0.8, "CD103": 0.5, "CXCR6": 0.4},
        af=1.8,
        cd56_loss=0.8,
    ),
    ("human", "tumour"): TissueProfile(
        {"debris": 0.25, "doublet": 0.10, "dead": 0.30},
        {"nonleukocyte": 0.45, "granulocyte": 0.05, "monocyte": 0.15, "B": 0.05,
         "lymph": 0.30},
        {"T": 0.88, "NKT-like": 0.03, "ILC": 0.01, "other_lin_neg": 0.02, "NK": 0.06},
        _nk_human(0.50, 0.60, 0.20),
        {"CD103": 0.6, "CD49a": 0.7, "CXCR6": 0.4},
        af=1.6,
        cd56_loss=0.7,
    ),
    # gut epithelium/lamina propria: ~90 % of NK are CD69+ resident (CD103+), the extreme a
    # per-sample density rule misreads without a control (issue 15); not a default tissue
    ("human", "ileum"): TissueProfile(
        {"debris": 0.15, "doublet": 0.07, "dead": 0.18},
        {"nonleukocyte": 0.30, "granulocyte": 0.05, "monocyte": 0.10, "B": 0.10,
         "lymph": 0.45},
        {"T": 0.70, "NKT-like": 0.04, "ILC": 0.02, "other_lin_neg": 0.02, "NK": 0.22},
        _nk_human(0.50, 0.95, 0.88),
        {"CD103": 0.9, "CD49a": 0.6, "CXCR6": 0.3},
        af=1.6,
        cd56_loss=0.8,
    ),
    ("mouse", "spleen"): TissueProfile(
        {"debris": 0.06, "doublet": 0.05, "dead": 0.08},
        {"nonleukocyte": 0.02, "granulocyte": 0.04, "macrophage": 0.06, "B": 0.52,
         "lymph": 0.36},
        {"T": 0.85, "NKT": 0.03, "ILC": 0.006, "other_lin_neg": 0.02, "NK": 0.10},
        _nk_mouse(0.93, 0.04, 0.03, (0.20, 0.30, 0.45, 0.05)),
    ),
    ("mouse", "liver"): TissueProfile(
        {"debris": 0.15, "doublet": 0.07, "dead": 0.15},
        {"nonleukocyte": 0.15, "granulocyte": 0.05, "macrophage": 0.15, "B": 0.25,
         "lymph": 0.40},
        {"T": 0.45, "NKT": 0.30, "ILC": 0.01, "other_lin_neg": 0.015, "NK": 0.24},
        _nk_mouse(0.50, 0.42, 0.08, (0.30, 0.35, 0.30, 0.05)),
        af=1.5,
    ),
}  # fmt: skip


def tissue_profile(species: str, tissue: str) -> TissueProfile:
    """The composition profile of ``tissue`` in ``species``."""
    get_panel(species)
    if (species, tissue) not in _PROFILES:
        raise ConfigError(
            f"unknown {species} tissue {tissue!r}; "
            f"valid: {list(TISSUES[species] + EXTRA_TISSUES[species])}"
        )
    return _PROFILES[(species, tissue)]


def _norm(weights: dict[str, float]) -> dict[str, float]:
    total = sum(weights.values())
    return {k: v / total for k, v in weights.items()}


def composition(
    species: str,
    tissue: str,
    *,
    nk_enrichment: float = 1.0,
    ilc_boost: float = 1.0,
    donor_shift: np.ndarray | None = None,
) -> np.ndarray:
    """Probability of each leaf label (order of :func:`labels_for`) for one tube.

    Parameters
    ----------
    species, tissue
        Which profile.
    nk_enrichment
        Factor of a partial magnetic depletion of non-NK cells: NK and ILC weights among
        lymphocytes are multiplied by it, B/myeloid/non-leukocyte weights divided by it.
    ilc_boost
        Extra factor on ILCs (an ILC-enriched positive-control tube).
    donor_shift
        Four log-scale offsets (NK share, CD56bright/cNK share, residency, myeloid) that
        make donors differ; zeros when ``None``.

    Returns
    -------
    numpy.ndarray
        Probabilities summing to 1.
    """
    prof = tissue_profile(species, tissue)
    shift = np.zeros(4) if donor_shift is None else np.asarray(donor_shift, dtype=float)
    labels = labels_for(species)
    art = prof.artefacts
    live = dict(prof.live)
    myeloid = "monocyte" if species == "human" else "macrophage"
    for key in ("nonleukocyte", "granulocyte", myeloid, "B"):
        live[key] = live[key] / nk_enrichment
    live[myeloid] *= float(np.exp(shift[3]))
    live = _norm(live)
    lymph = dict(prof.lymph)
    lymph["NK"] *= nk_enrichment * float(np.exp(shift[0]))
    lymph["ILC"] *= nk_enrichment * ilc_boost
    lymph = _norm(lymph)
    nk = dict(prof.nk)
    if species == "human":
        for key in ("NK_CD56bright_circ", "NK_CD56bright_tr"):
            nk[key] *= float(np.exp(shift[1]))
        for key in ("NK_CD56bright_tr", "NK_CD56dim_tr"):
            nk[key] *= float(np.exp(shift[2]))
    else:
        nk["trNK"] *= float(np.exp(shift[2]))
        for key in MOUSE_NK[:4]:
            nk[key] *= float(np.exp(shift[1]))
    nk = _norm(nk)
    singlet_live = 1.0 - sum(art.values())
    prob = dict.fromkeys(labels, 0.0)
    prob.update(art)
    for key, w in live.items():
        if key != "lymph":
            prob[key] = singlet_live * w
    lymph_total = singlet_live * live["lymph"]
    for key, w in lymph.items():
        if key == "NK":
            for nk_label, v in nk.items():
                prob[nk_label] = lymph_total * w * v
        else:
            prob[key] = lymph_total * w
    out = np.array([prob[k] for k in labels], dtype=float)
    return out / out.sum()


# (FSC-A mean, FSC-A sd, SSC-A median, SSC-A sdlog, autofluorescence median)
_SCATTER = {
    "debris": (14000, 9000, 7000, 0.85, 1.2),
    "doublet": (0, 0, 0, 0, 0),  # built from two singlets
    "dead": (42000, 12000, 26000, 0.40, 2.0),
    "nonleukocyte": (135000, 32000, 62000, 0.45, 5.0),
    "granulocyte": (102000, 13000, 118000, 0.20, 4.5),
    "monocyte": (108000, 14000, 46000, 0.25, 3.5),
    "macrophage": (115000, 18000, 60000, 0.30, 5.0),
    "B": (64000, 7500, 16000, 0.22, 0.9),
    "T": (66000, 7500, 17000, 0.22, 1.0),
    "NKT-like": (69000, 8000, 20000, 0.22, 1.0),
    "NKT": (69000, 8000, 20000, 0.22, 1.0),
    "ILC": (67000, 7500, 18000, 0.22, 1.0),
    # basophils, dendritic cells, progenitors: lineage-negative, CD56-/NKp46-
    "other_lin_neg": (73000, 9500, 27000, 0.28, 1.5),
}


def scatter_table(species: str) -> np.ndarray:
    """Scatter/autofluorescence parameters per label, shape (labels, 5)."""
    rows = []
    for label in labels_for(species):
        if label in _SCATTER:
            rows.append(_SCATTER[label])
        elif "bright" in label:
            rows.append((76000, 8500, 21000, 0.22, 1.1))
        else:  # CD56dim NK and mouse NK: slightly larger and more granular than T
            rows.append((72000, 8000, 23000, 0.22, 1.05))
    return np.array(rows, dtype=float)


Spec = tuple[float, float, float]


def _human_specs(tissue: str) -> dict[str, dict[str, Spec]]:
    prof = tissue_profile("human", tissue)
    tis = tissue != "blood"
    res = prof.residency
    nk_common = {"CD45": (1, 9000, 0.25), "NKG2D": (0.97, 4200, 0.35)}
    tr = {"CD69": (1, 4200, 0.5), "CD62L": (0.04, 1800, 0.4)}
    for m in ("CD49a", "CD103", "CXCR6"):
        tr[m] = (res[m], {"CD49a": 3200, "CD103": 2600, "CXCR6": 2200}[m], 0.5)
    circ = {
        "CD69": (0.01, 1800, 0.5),
        "CD49a": (0.02, 1500, 0.5),
        "CD103": (0.01, 1500, 0.5),
        "CXCR6": (0.03, 1500, 0.5),
    }
    bright = {
        "CD56": (1, 28000, 0.35),
        "CD16": (0.35, 900, 0.7),
        "NKp46": (1, 5200, 0.3),
        "CD127": (0.4, 900, 0.4),
        "NKG2D": (1, 5200, 0.3),
    }
    dim = {
        "CD56": (1, 2800, 0.4),
        "CD16": (0.93, 20000, 0.65),
        "NKp46": (1, 2500, 0.35),
        "CD127": (0.03, 600, 0.4),
    }
    return {
        "debris": {"CD45": (0.4, 1500, 0.8), "LD_CD14_CD19": (0.5, 20000, 1.0)},
        "dead": {"CD45": (0.7, 3000, 0.6), "LD_CD14_CD19": (1, 60000, 0.4),
                 "CD3": (0.4, 4000, 0.6), "CD16": (0.1, 6000, 0.7)},
        "nonleukocyte": {"CD49a": (0.15 if tis else 0.0, 1500, 0.6),
                         "CD103": (0.05 if tis else 0.0, 1200, 0.5)},
        "granulocyte": {"CD45": (0.95, 4000, 0.3), "CD16": (1, 42000, 0.35),
                        "CD62L": (0.9, 6000, 0.4), "CD69": (0.2 if tis else 0.02, 1500, 0.5)},
        "monocyte": {"CD45": (1, 8000, 0.3), "LD_CD14_CD19": (1, 12000, 0.35),
                     "CD16": (0.12, 15000, 0.5), "CD56": (0.08, 1200, 0.5),
                     "CD62L": (0.3, 2000, 0.5), "NKG2D": (0.05, 800, 0.4)},
        "B": {"CD45": (1, 10000, 0.25), "LD_CD14_CD19": (1, 5200, 0.3),
              "CD62L": (0.8, 4000, 0.4), "CD69": (0.3 if tis else 0.05, 2000, 0.5)},
        "T": {"CD45": (1, 12000, 0.25), "CD3": (1, 15000, 0.3), "CD127": (0.7, 2500, 0.4),
              "CD62L": (0.25 if tis else 0.5, 4000, 0.4), "NKG2D": (0.4, 2500, 0.4),
              "CD69": (0.45 if tis else 0.03, 3000, 0.5), "CD49a": (0.1 if tis else 0.01,
              2500, 0.5), "CD103": (0.15 if tis else 0.01, 2500, 0.5),
              "CXCR6": (0.25 if tis else 0.03, 2000, 0.5), "CD56": (0.02, 1500, 0.5)},
        "NKT-like": {"CD45": (1, 12000, 0.25), "CD3": (1, 10000, 0.35),
                     "CD56": (1, 2600, 0.5), "CD16": (0.4, 8000, 0.6),
                     "NKp46": (0.2, 1500, 0.4), "NKG2D": (0.7, 3000, 0.4),
                     "CD69": (0.5 if tis else 0.1, 3000, 0.5),
                     "CXCR6": (0.4 if tis else 0.1, 2000, 0.5), "CD62L": (0.2, 3000, 0.4)},
        "ILC": {"CD45": (1, 10000, 0.25), "CD127": (1, 6500, 0.3), "NKp46": (0.15, 1500, 0.4),
                "CD62L": (0.5, 3000, 0.4), "CD69": (0.5 if tis else 0.05, 2500, 0.5),
                "CD49a": (0.2 if tis else 0.02, 2000, 0.5), "NKG2D": (0.2, 1500, 0.4)},
        "other_lin_neg": {"CD45": (1, 6000, 0.35), "CD62L": (0.2, 2000, 0.5),
                          "CD69": (0.1, 1500, 0.5), "CD16": (0.05, 3000, 0.5),
                          "CD127": (0.05, 800, 0.4)},
        "NK_CD56bright_circ": {**nk_common, **circ, **bright, "CD62L": (0.92, 5200, 0.4)},
        "NK_CD56bright_tr": {**nk_common, **tr, **bright},
        "NK_CD56dim_circ": {**nk_common, **circ, **dim, "CD62L": (0.35, 2500, 0.5)},
        "NK_CD56dim_tr": {**nk_common, **tr, **dim, "CD16": (0.8, 16000, 0.5)},
    }  # fmt: skip


def _mouse_specs(tissue: str) -> dict[str, dict[str, Spec]]:
    liver = tissue == "liver"
    nk = {
        "CD45": (1, 9000, 0.25),
        "NK1.1": (1, 6000, 0.35),
        "NKp46": (1, 4500, 0.3),
        "CD69": (0.08, 2000, 0.5),
        "CD127": (0.02, 800, 0.4),
    }
    cnk = {**nk, "CD49b": (1, 9000, 0.35), "Eomes": (1, 5000, 0.35)}
    mat = {
        "cNK_CD27+CD11b-": ((1, 5000), (0.0, 0)),
        "cNK_CD27+CD11b+": ((1, 5000), (1, 8000)),
        "cNK_CD27-CD11b+": ((0.0, 0), (1, 12000)),
        "cNK_CD27-CD11b-": ((0.0, 0), (0.0, 0)),
    }
    specs: dict[str, dict[str, Spec]] = {}
    for name, ((p27, m27), (p11, m11)) in mat.items():
        specs[name] = {**cnk, "CD27": (p27, m27, 0.4), "CD11b": (p11, m11, 0.4)}
    specs["trNK"] = {
        **nk,
        "CD49a": (1, 6000, 0.4),
        "CD69": (0.8, 3500, 0.5),
        "CD103": (0.06 if liver else 0.15, 2000, 0.5),
        "Eomes": (0.05, 1500, 0.5),
        "CD27": (0.8, 4000, 0.4),
        "CD11b": (0.15, 3000, 0.5),
        "CD127": (0.35, 1500, 0.4),
    }
    specs["DP_CD49a_CD49b"] = {
        **nk,
        "CD49a": (1, 3500, 0.4),
        "CD49b": (1, 4000, 0.4),
        "Eomes": (0.6, 3000, 0.5),
        "CD27": (0.7, 4000, 0.4),
        "CD11b": (0.5, 6000, 0.5),
        "CD69": (0.4, 2500, 0.5),
    }
    specs.update({
        "debris": {"CD45": (0.4, 1500, 0.8), "LD_CD19_F4-80": (0.5, 20000, 1.0)},
        "dead": {"CD45": (0.7, 3000, 0.6), "LD_CD19_F4-80": (1, 60000, 0.4),
                 "CD3e": (0.3, 4000, 0.6)},
        "nonleukocyte": {"CD49a": (0.1, 1500, 0.6)},
        "granulocyte": {"CD45": (0.95, 4000, 0.3), "CD11b": (1, 20000, 0.35),
                        "CD69": (0.1, 1500, 0.5)},
        "macrophage": {"CD45": (1, 7000, 0.3), "LD_CD19_F4-80": (1, 11000, 0.4),
                       "CD11b": (0.8, 15000, 0.4), "CD69": (0.2, 1500, 0.5)},
        "B": {"CD45": (1, 10000, 0.25), "LD_CD19_F4-80": (1, 5200, 0.3),
              "CD69": (0.1, 2000, 0.5)},
        "T": {"CD45": (1, 12000, 0.25), "CD3e": (1, 14000, 0.3), "CD27": (0.9, 5000, 0.4),
              "CD127": (0.7, 2500, 0.4), "CD69": (0.3 if liver else 0.08, 2500, 0.5),
              "CD103": (0.08, 2000, 0.5), "Eomes": (0.15, 2000, 0.5)},
        "NKT": {"CD45": (1, 12000, 0.25), "CD3e": (1, 8000, 0.35), "NK1.1": (1, 5000, 0.4),
                "CD69": (0.6, 3000, 0.5), "CD27": (0.6, 3000, 0.4), "CD11b": (0.2, 4000, 0.5),
                "CD49a": (0.1, 2000, 0.5), "NKp46": (0.05, 1200, 0.4)},
        "other_lin_neg": {"CD45": (1, 6000, 0.35), "CD11b": (0.3, 3000, 0.5),
                          "CD69": (0.1, 1500, 0.5)},
        "ILC": {"CD45": (1, 10000, 0.25), "CD127": (1, 7000, 0.3), "CD69": (0.4, 2500, 0.5),
                "CD27": (0.3, 2500, 0.4), "CD103": (0.1, 2000, 0.5)},
    })  # fmt: skip
    return specs


def marker_table(
    species: str, tissue: str, *, stimulated: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-label marker profiles of one tube (functional markers excluded).

    Stimulation (PMA/ionomycin-like) sheds CD16 and CD62L through ADAM17 and raises CD69
    on lymphocytes; tissue digestion removes part of the CD56 epitope.

    Returns
    -------
    tuple of numpy.ndarray
        ``(p, median, sdlog)``, each of shape (labels, fluorescence channels).
    """
    panel = get_panel(species)
    labels = labels_for(species)
    specs = _human_specs(tissue) if species == "human" else _mouse_specs(tissue)
    shape = (len(labels), len(panel.channels))
    p, med, sd = np.zeros(shape), np.zeros(shape), np.full(shape, 0.3)
    for i, label in enumerate(labels):
        for marker, (pp, mm, ss) in specs.get(label, {}).items():
            j = panel.index(marker)
            p[i, j], med[i, j], sd[i, j] = pp, mm, ss
    prof = tissue_profile(species, tissue)
    if species == "human":
        med[:, panel.index("CD56")] *= prof.cd56_loss
    if stimulated:
        for marker, keep in (("CD16", 0.25), ("CD62L", 0.12)):
            if marker in panel.markers:
                med[:, panel.index(marker)] *= keep
        j = panel.index("CD69")
        for i, label in enumerate(labels):
            if label in LYMPHOID:
                rise = 0.9 if label not in ("B", "T") else 0.6
                p[i, j] = max(p[i, j], rise)
                med[i, j] = max(med[i, j], 3500.0)
    return p, med, sd
