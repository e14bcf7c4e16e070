"""Stimulation conditions, sample context and the CD56bright/CD56dim consistency read-out.

Split from :mod:`nkflow.tl.score`. The literature behind it (BIOLOGY.md section 3):

- each stimulation condition (IL-15, IL-2, IL-12/IL-15/IL-18, PMA/iono, dexamethasone ...)
  is scored against the unstimulated tube of the same donor, tissue, timepoint and batch;
- tumour NK make more AREG than NK beside the tumour (in skin tumours), and glucocorticoids
  induce AREG in NK cells through NR3C1 (Wei et al., Adv Sci 2025), so an NK row in tumour /
  peri-tumour tissue, after glucocorticoid exposure or in a glucocorticoid condition carries
  the reading of its own context (the tumour's, the steroid's, or both, the conclusion said
  once), and a row whose exposure is unknown
  says that the steroid reading cannot be excluded; populations that are not NK (ILC,
  NKT-like, lineage gates) get neither this reading nor the NK evidence;
- glucocorticoid exposure is the sheet's ``glucocorticoid`` column, or else read from the
  ``treatment`` text (one list of steroid names, :mod:`nkflow.tl._score_names`); a ``no``
  beside a treatment that names a steroid is read as unknown, with a
  :class:`~nkflow.exceptions.ContextWarning`;
- human CD56bright NK make more AREG than CD56dim (Wang et al., EMBO J 2023), so a tube
  where CD56bright is below CD56dim beyond both intervals is worth a note (not a rule).

Nothing here is public API.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import numpy as np
import pandas as pd

from ..exceptions import ContextWarning
from ..io.metadata import GLUCOCORTICOID_VALUES, TISSUE_KIND_ALIASES, is_blood, name_words
from ._score_names import (
    contains_condition,
    glucocorticoid_condition_names,
    steroid_in_treatment,
)
from .caveats import (
    CONTEXT_INTERPRETATION,
    CONTEXT_REASON,
    EVIDENCE,
    PRO_TUMOUR_TEXT,
    UNKNOWN_EXPOSURE_READING,
)

__all__ = [
    "EXPLORATORY_PREFIX",
    "NOT_NK_EVIDENCE",
    "PRO_TUMOUR_TEXT",
    "add_context",
    "bright_dim",
    "evidence",
    "exposure_statement",
    "infer_tissue_kind",
    "interpretation",
    "is_nk_population",
    "normalise_glucocorticoid",
    "normalise_tissue_kind",
    "read_exposure",
]

_GC_ALIASES = {v: v for v in GLUCOCORTICOID_VALUES}
EXPLORATORY_PREFIX = "EXPLORATORY (mouse: AREG not shown in mouse NK cells): "


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


def read_exposure(
    recorded: object, treatment: object, names: Iterable[str] = ()
) -> tuple[str, str]:
    """Glucocorticoid exposure of a tube from the sheet's column and its treatment text.

    Parameters
    ----------
    recorded
        The ``glucocorticoid`` value (``yes`` / ``no`` / ``unknown`` / empty).
    treatment
        The ``treatment`` free text.
    names
        Extra glucocorticoid names (the lab's ``[context] glucocorticoid_conditions``).

    Returns
    -------
    tuple of str
        ``(exposure, source)``. ``exposure`` is ``yes`` / ``no`` / ``unknown`` / ``""`` (not
        recorded; an unrecognised value is kept as given). A treatment that names a
        glucocorticoid makes it ``yes`` when the column is empty or ``unknown``; beside a
        column that says ``no`` it makes it ``unknown`` (two records disagree: a flag then
        says the steroid's pro-tumour reading cannot be excluded; ``source`` names the
        contradiction). An empty column beside a
        treatment that names none (or only an ambiguous abbreviation such as ``dex``) reads
        ``unknown``: steroids are routine in cancer treatment. ``source`` says where the
        value came from, in words.
    """
    given = normalise_glucocorticoid(recorded)
    text = " ".join(str(treatment).split())
    named, maybe = steroid_in_treatment(text, names)
    if given is None:  # a table built by hand: trusted as given
        return str(recorded), "sheet"
    if named:
        if given == "yes":
            return "yes", f"sheet; treatment names {named}"
        if given == "no":  # two records disagree: neither reading can be excluded
            return "unknown", f"the sheet says no, but the treatment names {named}"
        if given == "unknown":
            return "yes", f"treatment names {named}; the sheet says unknown"
        return "yes", f"treatment names {named}"
    if given:
        told = f"; treatment {text!r}" if given == "unknown" and text else ""
        return given, "sheet" + told
    if maybe:
        return "unknown", (
            f"not recorded; treatment {text!r}: {maybe!r} may or may not be a glucocorticoid"
        )
    if text:
        return "unknown", f"not recorded; treatment {text!r}"
    return "", "not recorded"


def exposure_statement(exposure: object, source: object) -> str:
    """``"yes (treatment names dexamethasone)"``, ``"no (sheet)"``, ``"not recorded"``."""
    value = str(exposure or "").strip()
    where = str(source or "").strip()
    if not value:
        return "not recorded"
    return f"{value} ({where})" if where else value


def add_context(meta: pd.DataFrame, glucocorticoid_conditions: Iterable[str]) -> pd.DataFrame:
    """Add ``condition``, normalised ``tissue_kind``/``glucocorticoid`` and ``context``.

    ``meta`` holds ``kind`` (stim/unstim/...), ``stimulation``, ``tissue`` and the optional
    context columns (``""`` when absent). Unrecognised context values are kept as given
    (the sheet reader refuses them; a table built by hand is trusted). ``glucocorticoid``
    becomes the exposure :func:`read_exposure` reads (sheet and treatment text), with its
    ``glucocorticoid_source``; context codes are ``tumour`` / ``peri-tumour``,
    ``glucocorticoid`` (exposed), ``glucocorticoid unknown`` and ``glucocorticoid condition``.

    Warns
    -----
    ContextWarning
        A tube's sheet says ``glucocorticoid`` ``no`` while its treatment names a
        glucocorticoid (read as exposed).
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
    gc_names = glucocorticoid_condition_names(glucocorticoid_conditions)
    read = [
        read_exposure(v, t, gc_names)
        for v, t in zip(out["glucocorticoid"], out["treatment"], strict=True)
    ]
    out["glucocorticoid"] = [value for value, _ in read]
    out["glucocorticoid_source"] = [source for _, source in read]
    conflict = out.loc[out["glucocorticoid_source"].str.startswith("the sheet says no, but"),
                       "sample_id"].astype(str)  # fmt: skip
    if len(conflict):
        shown = ", ".join(conflict.iloc[:5]) + (" ..." if len(conflict) > 5 else "")
        warnings.warn(
            f"{len(conflict)} tube(s) record glucocorticoid 'no' while their treatment names a "
            f"glucocorticoid ({shown}): read as unknown, so their flags say the pro-tumour "
            "reading (glucocorticoids induce NK AREG, pro-tumour in tumour NK) cannot be excluded; "
            "correct the sheet's glucocorticoid or treatment value",
            ContextWarning,
            stacklevel=3,
        )
    codes = []
    for kind, gc, cond, role in zip(
        out["tissue_kind"], out["glucocorticoid"], out["condition"], out["kind"], strict=True
    ):
        c = []
        if kind in ("tumour", "peri-tumour"):
            c.append(kind)
        if gc == "yes":
            c.append("glucocorticoid")
        elif gc == "unknown":
            c.append("glucocorticoid unknown")
        if role == "stim" and contains_condition(cond, gc_names):
            c.append("glucocorticoid condition")
        codes.append(";".join(c))
    out["context"] = codes
    return out


#: ``evidence`` of a population that is not NK: the NK literature says nothing about it
NOT_NK_EVIDENCE = "not an NK population: the NK evidence (Wang 2023) does not apply"
_STEROID_CODES = ("glucocorticoid", "glucocorticoid condition")
#: first word of a population name (split at ``_`` and spaces) that says NK
_NK_WORDS = frozenset({"nk", "cnk", "trnk", "circnk", "cd56bright", "cd56dim"})


def is_nk_population(population: object, flaggable: bool = False) -> bool:
    """Whether the NK evidence and context readings apply to a scored population.

    Parameters
    ----------
    population
        Population name (a gate or ``metacluster:<id>``; metaclusters are fit on NK cells).
    flaggable
        The population is one the scoring may flag (``[flag] populations``: NK subsets).

    Returns
    -------
    bool
        ``True`` when flaggable, a metacluster, ``DP_CD49a_CD49b`` (mouse NK) or named
        ``NK``, ``cNK``, ``trNK``, ``circNK``, ``CD56bright`` or ``CD56dim`` up to its first
        ``_`` (``NK_AREG+``, ``CD56dim_trNK``); ``False`` for ``NKT-like``, ``ILC``,
        ``Lymphocytes``, ``CD3-`` and the other lineage gates.
    """
    name = str(population).strip().lower()
    if flaggable or name.startswith("metacluster:") or name == "dp_cd49a_cd49b":
        return True
    first = name.replace(" ", "_").split("_", 1)[0]
    return first in _NK_WORDS


def interpretation(context: str, source: str = "", *, nk: bool = True) -> str:
    """Interpretation text for a context code list (``""`` when there is no such context).

    Each context gets its own reason (:data:`~nkflow.tl.caveats.CONTEXT_REASON`): tumour
    tissue the tumour's, glucocorticoid exposure the steroid's (NR3C1), both when both, and
    the pro-tumour
    conclusion they share is said once, after them (``steroid-induced`` when a steroid is
    among them). An unknown exposure says that reading cannot be excluded
    (:data:`~nkflow.tl.caveats.UNKNOWN_EXPOSURE_READING`). ``source`` (where the exposure was read)
    follows the exposure's label. For a population that is not NK (``nk=False``) the NK
    readings do not apply: only the contexts are named.
    """
    codes = [c for c in str(context).split(";") if c]
    if not codes:
        return ""
    labels = {}
    for code in codes:
        label = CONTEXT_INTERPRETATION.get(code, code)
        if code in ("glucocorticoid", "glucocorticoid unknown") and source:
            label += f" ({source})"
        labels[code] = label
    if not nk:
        return "context: " + "; ".join(labels.values())
    concluding = [c for c in codes if c in CONTEXT_REASON]
    parts = [f"{labels[c]}: {CONTEXT_REASON[c]}" for c in concluding]
    if concluding:
        # the steroid reading is a possibility outside tumours: its evidence is tumour NK
        steroid = (
            "steroid-induced and, as in tumour NK, "
            if set(concluding) & set(_STEROID_CODES)
            else ""
        )
        so = f"so AREG+ NK here may be {steroid}{PRO_TUMOUR_TEXT}"
        if len(parts) == 1:
            parts[0] += f", {so}"
        else:
            parts.append(so)
    for code in codes:
        if code not in CONTEXT_REASON:
            reading = UNKNOWN_EXPOSURE_READING if code == "glucocorticoid unknown" else ""
            parts.append(f"{labels[code]}: {reading}" if reading else labels[code])
    return "context: " + "; ".join(parts)


def evidence(species: str, nk: bool = True) -> str:
    """The ``evidence`` label of a species (human unless ``mouse``).

    A population that is not NK (``nk=False``) gets :data:`NOT_NK_EVIDENCE` (after
    ``exploratory: `` for mouse, whose scores are all exploratory).
    """
    mouse = str(species).lower() == "mouse"
    if not nk:
        return f"exploratory: {NOT_NK_EVIDENCE}" if mouse else NOT_NK_EVIDENCE
    return EVIDENCE["mouse" if mouse else "human"]


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
