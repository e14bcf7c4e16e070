"""The names scoring reads from a sheet: condition keys, glucocorticoids, AREG inhibitors.

One list of glucocorticoid names (:data:`STEROID_NAMES`) serves both the stimulation
conditions (``IL-15 + betamethasone`` is a glucocorticoid condition) and the free-text
``treatment`` column (``chemotherapy + dexamethasone`` is glucocorticoid exposure), so the
two can never disagree about what a steroid is (BIOLOGY.md section 3: glucocorticoids induce
pro-tumour AREG in NK cells through NR3C1, Wei et al., Adv Sci 2025).

Nothing here is public API.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = [
    "AMBIGUOUS_ABBREVIATIONS",
    "STEROID_NAMES",
    "STEROID_REGIMENS",
    "STEROID_WORDS",
    "TGF_BETA_NAMES",
    "condition_key",
    "contains_condition",
    "glucocorticoid_condition_names",
    "matches_condition",
    "steroid_in_treatment",
]

#: systemic and inhaled glucocorticoids, by generic name (cortisol = hydrocortisone)
STEROID_NAMES: tuple[str, ...] = (
    "dexamethasone",
    "prednisone",
    "prednisolone",
    "methylprednisolone",
    "hydrocortisone",
    "cortisol",
    "betamethasone",
    "budesonide",
    "triamcinolone",
    "fludrocortisone",
)
#: words for the drug class, brand names and an abbreviation that name no other drug
STEROID_WORDS: tuple[str, ...] = (
    "glucocorticoid", "glucocorticoids", "corticosteroid", "corticosteroids", "steroid",
    "steroids", "decadron", "medrol", "cortef", "pred",
)  # fmt: skip
#: chemotherapy regimens that contain a glucocorticoid by definition, with the one they contain
STEROID_REGIMENS: dict[str, str] = {
    "chop": "prednisone (CHOP)",
    "choep": "prednisone (CHOEP)",
    "cvp": "prednisone (CVP)",
    "beacopp": "prednisone (BEACOPP)",
    "cvad": "dexamethasone (hyper-CVAD)",
    "vrd": "dexamethasone (VRd)",
    "krd": "dexamethasone (KRd)",
    "drd": "dexamethasone (DRd)",
}
#: abbreviations that usually mean a glucocorticoid but also name other drugs ("dex":
#: dexmedetomidine, dexrazoxane): a condition in culture may use them, a treatment text
#: with one leaves exposure unknown rather than yes
AMBIGUOUS_ABBREVIATIONS: tuple[str, ...] = ("dex",)
#: spellings of TGF-beta, which inhibits NK AREG (Wang et al., EMBO J 2023); matched
#: spelling-tolerantly (``TGF-β1`` = ``TGF-beta1``, ``TGFb`` = ``TGF-b``)
TGF_BETA_NAMES: tuple[str, ...] = (
    "TGF-beta", "TGF-beta1", "TGF-beta2", "TGF-beta3", "TGF-b", "TGF-b1", "TGF-b2", "TGF-b3",
)  # fmt: skip
#: words up to three before a steroid name that deny it (``no dexamethasone``, ``not on
#: steroids``, ``no prior steroids``, ``off steroids since 2019``) ...
_DENIED_BEFORE = {"no", "not", "non", "without", "nil", "never", "off", "none", "denies",
                  "denied"}  # fmt: skip
_DENIAL_WINDOW = 3
#: ... and just after it (``steroid-free``, ``steroid-sparing``, ``steroid-naive``,
#: ``dexamethasone withheld``); a steroid "stopped" or "discontinued" was given, and counts
_DENIED_AFTER = {"free", "sparing", "naive", "withheld", "omitted", "avoided",
                 "contraindicated"}  # fmt: skip


def condition_key(name: object) -> str:
    """Spelling-tolerant key of a condition name: ``"IL-12/IL-15/IL-18"`` -> ``"il12il15il18"``.

    Greek beta is spelled out (``TGF-β1`` -> ``tgfbeta1``), so ``TGF-β`` matches ``TGF-beta``.
    """
    text = str(name).lower().replace("β", "beta")
    return re.sub(r"[^0-9a-z]+", "", text)


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


def glucocorticoid_condition_names(configured: Iterable[str]) -> tuple[str, ...]:
    """The names that make a stimulation condition a glucocorticoid condition.

    The lab's ``[context] glucocorticoid_conditions`` plus :data:`STEROID_NAMES`, which a
    lab list cannot drop (an old list without ``prednisone`` still catches it).
    """
    return tuple(dict.fromkeys([*configured, *STEROID_NAMES]))


def _words(text: object) -> list[str]:
    return [w for w in re.split(r"[^0-9a-z]+", str(text).lower()) if w]


def _named(words: list[str], names: dict[str, str]) -> str:
    """The first of ``names`` (key -> shown name) among ``words`` not denied, else ``""``."""
    for i, word in enumerate(words):
        pair = word + words[i + 1] if i + 1 < len(words) else ""
        for key, length in ((word, 1), (pair, 2)):
            if key not in names:
                continue
            before = set(words[max(0, i - _DENIAL_WINDOW) : i])
            after = words[i + length] if i + length < len(words) else ""
            if not before & _DENIED_BEFORE and after not in _DENIED_AFTER:
                return names[key]
    return ""


def steroid_in_treatment(treatment: object, extra: Iterable[str] = ()) -> tuple[str, str]:
    """The glucocorticoid a free-text treatment names, and an ambiguous abbreviation in it.

    Parameters
    ----------
    treatment
        The sheet's ``treatment`` text (``"chemotherapy + dexamethasone"``, ``"R-CHOP"``).
    extra
        More names (the lab's glucocorticoid conditions); ambiguous abbreviations among
        them are not read as a glucocorticoid.

    Returns
    -------
    tuple of str
        ``(name, ambiguous)``: the first glucocorticoid named as a whole word, case-blind
        (:data:`STEROID_NAMES`, :data:`STEROID_WORDS`, or a regimen of
        :data:`STEROID_REGIMENS`: ``"prednisone (CHOP)"``), ``""`` if none; and an
        abbreviation of :data:`AMBIGUOUS_ABBREVIATIONS` found (``"dex"``), else ``""``.
        A name denied by one of the three words before it or by the word after it (``no
        dexamethasone``, ``not on steroids``, ``steroid-free``, ``steroid-naive``) does
        not count.
    """
    words = _words(treatment)
    if not words:
        return "", ""
    ambiguous = {condition_key(a) for a in AMBIGUOUS_ABBREVIATIONS}
    names = {condition_key(n): n for n in (*STEROID_NAMES, *STEROID_WORDS, *extra)}
    names = {k: v for k, v in names.items() if k and k not in ambiguous}
    names.update(STEROID_REGIMENS)
    found = _named(words, names)
    maybe = _named(words, {a: a for a in ambiguous})
    return found, maybe
