"""Stimulation conditions, sample context and the CD56bright/CD56dim consistency read-out.

Split from :mod:`nkflow.tl.score`. The literature behind it (BIOLOGY.md section 3):

- each stimulation condition (IL-15, IL-2, IL-12/IL-15/IL-18, PMA/iono, dexamethasone ...)
  is scored against the unstimulated tube of the same donor, tissue, timepoint and batch;
- glucocorticoids induce pro-tumour AREG in NK cells (Wei et al., Adv Sci 2025) and tumour
  NK make more of it, so a row in tumour / peri-tumour tissue, after glucocorticoid exposure
  or in a glucocorticoid condition carries that interpretation;
- human CD56bright NK make more AREG than CD56dim (Wang et al., EMBO J 2023), so a tube
  where CD56bright is below CD56dim beyond both intervals is worth a note (not a rule).

Nothing here is public API.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
import pandas as pd

from ..io.metadata import GLUCOCORTICOID_VALUES, TISSUE_KIND_ALIASES, is_blood, name_words
from .caveats import CONTEXT_INTERPRETATION, EVIDENCE

_GC_ALIASES = {v: v for v in GLUCOCORTICOID_VALUES}
PRO_TUMOUR_TEXT = (
    "AREG+ NK here may be pro-tumour and immunosuppressive (glucocorticoid/NR3C1-induced AREG; "
    "Wei et al., Adv Sci 2025), not repair"
)
EXPLORATORY_PREFIX = "EXPLORATORY (mouse: AREG not shown in mouse NK cells): "


def condition_key(name: object) -> str:
    """Spelling-tolerant key of a condition name: ``"IL-12/IL-15/IL-18"`` -> ``"il12il15il18"``."""
    return re.sub(r"[^0-9a-z]+", "", str(name).lower())


def matches_condition(condition: str, patterns: Iterable[str]) -> bool:
    """Whether ``condition`` is one of ``patterns`` (``"*"`` matches any), spelling-tolerant."""
    key = condition_key(condition)
    return any(p == "*" or condition_key(p) == key for p in patterns)


def contains_condition(condition: str, patterns: Iterable[str]) -> bool:
    """Whether ``condition`` is, or combines, one of ``patterns``.

    A combination's parts are split at spaces, ``+``, ``/``, ``,``, ``;``, ``&`` and ``_``:
    ``IL-15 + dex`` and ``Dex 100nM`` contain ``dex``.
    """
    wanted = {condition_key(p) for p in patterns}
    parts = [condition_key(x) for x in re.split(r"[\s+/,;&_]+", str(condition))]
    return condition_key(condition) in wanted or any(x in wanted for x in parts if x)


def normalise_tissue_kind(value: object) -> str | None:
    """Canonical tissue kind, ``""`` for empty, ``None`` when not recognised."""
    text = " ".join(str(value).strip().lower().replace("_", " ").split())
    if not text:
        return ""
    return TISSUE_KIND_ALIASES.get(text)


def normalise_glucocorticoid(value: object) -> str | None:
    """``yes`` / ``no`` / ``unknown``, ``""`` for empty, ``None`` when not recognised."""
    text = str(value).strip().lower()
    if not text:
        return ""
    return _GC_ALIASES.get(text)


#: words of a tissue name that say tumour, and those that say beside one
_TUMOUR_WORDS = {"til", "tils", "tme", "carcinoma", "cancer", "metastasis", "metastases",
                 "met", "mets", "neoplasm", "malignant"}  # fmt: skip
_BESIDE_WORDS = {"adjacent", "nat", "margin", "peritumour", "peritumor", "peritumoral"}


def infer_tissue_kind(tissue: object) -> str:
    """Tissue kind from a tissue name when the sheet gives none (``""`` if unclear).

    ``tumour``/``tumor`` anywhere, or a word such as TIL, carcinoma, metastasis, met:
    tumour; with ``peri``, ``adjacent``, ``NAT`` or ``margin``: peri-tumour.
    """
    text = str(tissue).strip().lower()
    if is_blood(text):
        return "blood"
    words = set(name_words(text))
    if "tumo" in text or words & _TUMOUR_WORDS or words & _BESIDE_WORDS:
        beside = "peri" in text or words & _BESIDE_WORDS
        return "peri-tumour" if beside else "tumour"
    return ""


def add_context(meta: pd.DataFrame, glucocorticoid_conditions: Iterable[str]) -> pd.DataFrame:
    """Add ``condition``, normalised ``tissue_kind``/``glucocorticoid`` and ``context``.

    ``meta`` holds ``kind`` (stim/unstim/...), ``stimulation``, ``tissue`` and the optional
    context columns (``""`` when absent). Unrecognised context values are kept as given
    (the sheet reader refuses them; a table built by hand is trusted).
    """
    out = meta.copy()
    stim = out["stimulation"].astype(str)
    out["condition"] = np.where(
        out["kind"] == "stim",
        np.where(stim.isin(["", "unstim"]), "stim", stim),
        np.where(out["kind"] == "unstim", "unstim", stim),
    )
    kinds = []
    for given, tissue in zip(out["tissue_kind"], out["tissue"], strict=True):
        norm = normalise_tissue_kind(given)
        kinds.append(norm if norm else (str(given) if norm is None else infer_tissue_kind(tissue)))
    out["tissue_kind"] = kinds
    out["glucocorticoid"] = [
        (normalise_glucocorticoid(v) if normalise_glucocorticoid(v) is not None else str(v))
        for v in out["glucocorticoid"]
    ]
    gc_conditions = list(glucocorticoid_conditions)
    codes = []
    for kind, gc, cond, role in zip(
        out["tissue_kind"], out["glucocorticoid"], out["condition"], out["kind"], strict=True
    ):
        c = []
        if kind in ("tumour", "peri-tumour"):
            c.append(kind)
        if gc == "yes":
            c.append("glucocorticoid")
        if role == "stim" and gc_conditions and contains_condition(cond, gc_conditions):
            c.append("glucocorticoid condition")
        codes.append(";".join(c))
    out["context"] = codes
    return out


def interpretation(context: str) -> str:
    """Interpretation text for a context code list (``""`` when there is no such context)."""
    codes = [c for c in str(context).split(";") if c]
    if not codes:
        return ""
    where = ", ".join(CONTEXT_INTERPRETATION.get(c, c) for c in codes)
    return f"context: {where}: {PRO_TUMOUR_TEXT}"


def evidence(species: str) -> str:
    """The ``evidence`` label of a species (human unless ``mouse``)."""
    return EVIDENCE["mouse" if str(species).lower() == "mouse" else "human"]


def bright_dim(scores: pd.DataFrame, bright: str, dim: str) -> pd.DataFrame:
    """CD56bright vs CD56dim AREG net per stimulated tube, with the literature's expectation.

    Parameters
    ----------
    scores
        The scores table (``sample_id``, ``population``, ``areg_net`` and its interval).
    bright, dim
        Population names of the two subsets.

    Returns
    -------
    pandas.DataFrame
        One row per stimulated tube holding both populations: both nets with intervals,
        ``difference`` (bright - dim), ``bright_below_dim`` (bright's interval entirely below
        dim's) and a ``note``. Empty (same columns) when the subsets are not scored.
    """
    keys = ["batch", "donor", "tissue", "timepoint", "condition", "sample_id"]
    cols = ["areg_net", "areg_net_ci_low", "areg_net_ci_high"]
    names = [
        *keys,
        "bright_net",
        "bright_ci_low",
        "bright_ci_high",
        "dim_net",
        "dim_ci_low",
        "dim_ci_high",
        "difference",
        "bright_below_dim",
        "note",
    ]
    if scores.empty or not {bright, dim} <= set(scores["population"]):
        return pd.DataFrame(columns=names)
    b = scores.loc[scores["population"] == bright, [*keys, *cols]]
    d = scores.loc[scores["population"] == dim, ["sample_id", *cols]]
    b = b.rename(columns=dict(zip(cols, ["bright_net", "bright_ci_low", "bright_ci_high"],
                                  strict=True)))  # fmt: skip
    d = d.rename(columns=dict(zip(cols, ["dim_net", "dim_ci_low", "dim_ci_high"], strict=True)))
    out = b.merge(d, on="sample_id", how="inner")
    out["difference"] = out["bright_net"] - out["dim_net"]
    below = (out["bright_ci_high"] < out["dim_ci_low"]).to_numpy(dtype=bool)
    out["bright_below_dim"] = below
    out["note"] = np.where(
        below,
        f"{bright} AREG net below {dim} beyond both intervals; human blood NK are expected to "
        f"show {bright} >= {dim} (Wang 2023): check the gates and the AREG cut-off",
        "",
    )
    return out[names].reset_index(drop=True)
