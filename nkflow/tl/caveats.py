"""What every repair score must be read with (BIOLOGY.md sections 3, 4 and 6c, in our words).

Corrected with the AREG literature: human blood NK cells make AREG protein (Wang et al.,
EMBO J 2023;42:e114153), CD56bright NK more often than CD56dim, induced by IL-2, IL-15 or
TCF7/WNT and not by
inflammatory cytokines, inhibited by TGF-beta1; mouse NK cells have not been shown to make it.
Glucocorticoids induce AREG in NK cells through NR3C1, and AREG+ NK in skin tumours are
pro-tumour and immunosuppressive (Wei et al., Adv Sci 2025, doi 10.1002/advs.202512620), so
the sample's context (tissue kind, glucocorticoid exposure) decides what a flag means.

The text travels with every :class:`~nkflow.tl.score.ScoreResult` (``result.caveats``), in
each scored table (``DataFrame.attrs["caveats"]`` and a short ``caveat`` column), at the top
of every CSV (:func:`caveats_comment`) and in the HTML report.
"""

from __future__ import annotations

__all__ = [
    "BRIGHT_DIM_READOUT",
    "CAVEATS",
    "CONTEXT_INTERPRETATION",
    "CONTEXT_REASON",
    "EVIDENCE",
    "KEY_CAVEAT",
    "MOUSE_BRIGHT_DIM",
    "MOUSE_WORDING",
    "PRO_TUMOUR_TEXT",
    "SHORT_CAVEAT",
    "UNKNOWN_EXPOSURE_READING",
    "caveats_comment",
    "caveats_for_species",
    "caveats_text",
]

#: one line for figures and the ``caveat`` column of every scored table
SHORT_CAVEAT = (
    "AREG+ NK is reported in human blood NK (CD56bright-enriched, IL-2/IL-15-induced), not in "
    "mouse NK; each assay must still prove it against FMO, unstimulated and positive controls; "
    "in tumour or after glucocorticoids AREG+ NK may be pro-tumour, not repair; a flag is a "
    "hypothesis to test"
)

#: the statement the report puts first
KEY_CAVEAT = (
    "Human blood NK cells make AREG (CD56bright NK are more often AREG+ than CD56dim; induced "
    "by IL-2/IL-15); mouse NK have not been shown to, so mouse AREG scores are exploratory. "
    "Every assay must still prove AREG+ NK against FMO, unstimulated and positive controls, "
    "and in tumour tissue or after glucocorticoids (e.g. dexamethasone) AREG+ NK may be "
    "pro-tumour rather than repair."
)

#: the CD56bright vs CD56dim read-out (human tubes only; :data:`MOUSE_BRIGHT_DIM` for mouse)
BRIGHT_DIM_READOUT = (
    "Expect CD56bright NK to be at least as often AREG+ as CD56dim: nkflow reports that "
    "comparison per human tube (a consistency read-out, not a flag rule)."
)
#: what replaces :data:`BRIGHT_DIM_READOUT` for a batch of mouse tubes only
MOUSE_BRIGHT_DIM = (
    "Mouse NK carry no CD56, so mouse tubes have no CD56bright versus CD56dim read-out."
)

#: stimulation artefacts (human wording; :data:`MOUSE_WORDING` holds the mouse one)
PMA_CAVEAT = (
    "PMA/ionomycin is supraphysiological and activates ADAM17 (which also sheds CD16 and CD62L); "
    "the reported natural inducers of human NK AREG are IL-2 and IL-15, so score a cytokine "
    "condition too. Each condition is scored against its own unstimulated partner and shown "
    "side by side."
)
#: tissue digestion (human wording: CD56 is a human NK marker)
DIGESTION_CAVEAT = (
    "Enzymatic digestion (collagenase) changes CD56 and other epitopes; CD69 rises with "
    "digestion and with stimulation, so residency is read from the unstimulated tube and is "
    "context, not part of the score."
)
#: what a tumour or glucocorticoid context means (the evidence is from human NK)
CONTEXT_CAVEAT = (
    "Context decides the meaning: glucocorticoids induce AREG in NK cells through NR3C1, and "
    "AREG+ NK in skin tumours are pro-tumour and immunosuppressive (Wei et al., Adv Sci 2025, "
    "doi 10.1002/advs.202512620). Dexamethasone is routine in cancer treatment, so AREG+ NK "
    "after treatment, in tumour tissue or in a glucocorticoid condition can mean steroid-driven "
    "immunosuppression rather than repair; such rows carry that interpretation beside the flag."
)
#: the mouse wording of each caveat that states human biology (:func:`caveats_for_species`)
MOUSE_WORDING: dict[str, str] = {
    BRIGHT_DIM_READOUT: MOUSE_BRIGHT_DIM,
    PMA_CAVEAT: (
        "PMA/ionomycin is supraphysiological and activates ADAM17 (which also sheds CD62L, and "
        "pro-AREG); no natural inducer of mouse NK AREG is reported (IL-2 and IL-15 induce it "
        "in human NK), so compare a cytokine condition too. Each condition is scored against "
        "its own unstimulated partner and shown side by side."
    ),
    DIGESTION_CAVEAT: (
        "Enzymatic digestion (collagenase) can change surface epitopes; CD69 rises with "
        "digestion and with stimulation, so residency is read from the unstimulated tube and "
        "is context, not part of the score."
    ),
    CONTEXT_CAVEAT: (
        "Context decides the meaning: in human NK, glucocorticoids induce AREG through NR3C1, "
        "and AREG+ NK in skin tumours are pro-tumour and immunosuppressive (Wei et al., Adv Sci "
        "2025, doi 10.1002/advs.202512620); mouse NK have not been studied so. Dexamethasone is "
        "routine in cancer treatment, so rows after treatment, in tumour tissue or in a "
        "glucocorticoid condition carry that human reading beside the flag."
    ),
}

CAVEATS: tuple[str, ...] = (
    "What is reported: human blood NK cells make AREG protein (Wang et al., EMBO J "
    "2023;42:e114153): CD56bright NK are more often AREG+ than CD56dim NK; it is induced by "
    "IL-2, IL-15 or TCF7/WNT signalling, not by inflammatory cytokines, and inhibited by "
    f"TGF-beta1. {BRIGHT_DIM_READOUT}",
    "What is not reported: mouse NK cells have not been shown to make AREG. Mouse AREG scores "
    "and flags are exploratory and labelled so in every table and in the report.",
    CONTEXT_CAVEAT,
    "Every assay must still show it: an AREG FMO sets the cut-off, the unstimulated tube of the "
    "same donor, tissue, timepoint and batch sets the background for each stimulation "
    "condition, and an AREG-producing positive control must respond in the same batch before "
    "any NK population is flagged: in the tube, the CD127+ lineage-negative ILC gate (ILC2 "
    "among them, with ILC1 and ILC3 unless the panel separates them); a Treg control is CD3+ "
    "and never in that gate, so it needs its own CD3+CD4+CD25+FOXP3+ gate.",
    "Anti-AREG antibodies for flow cytometry have little independent validation. Confirm with an "
    "AREG-high control and, where possible, AREG in the culture supernatant (ELISA).",
    "Intracellular staining sees the membrane precursor (pro-AREG). ADAM17 sheds it, and the "
    "choice of brefeldin A and/or monensin changes how much stays in the cell.",
    PMA_CAVEAT,
    DIGESTION_CAVEAT,
    "Cryopreservation, batch effects and instrument drift move positivity cut-offs, so "
    "thresholds are set per batch and tissue; percentages from few events are unstable "
    "(populations under the event minimum are never flagged).",
    "AREG is also made by epithelium, tumour cells, ILC2, Tregs and macrophages: NK-specific "
    "claims need clean lineage gates (CD3-, ILC excluded).",
    "Cytotoxic 'clearance' (NKG2D, CD107a) is scored separately and never added to the AREG "
    "response: killing senescent stellate cells and killing progenitors are both cytotoxic. In "
    "mouse wound models NK cells can even delay repair (Cavalcante-Silva 2023).",
    "A high score or a flag is a hypothesis to test, not a demonstrated repair function.",
)

#: ``evidence`` column of every scored row, by species
EVIDENCE: dict[str, str] = {
    "human": "reported in human NK (Wang 2023); this assay must still prove it with its controls",
    "mouse": "exploratory: AREG has not been shown in mouse NK cells",
}

#: label of each context code in a row's ``interpretation``
CONTEXT_INTERPRETATION: dict[str, str] = {
    "tumour": "tumour tissue",
    "peri-tumour": "peri-tumour tissue",
    "glucocorticoid": "glucocorticoid exposure",
    "glucocorticoid unknown": "glucocorticoid exposure unknown",
    "glucocorticoid condition": "a glucocorticoid stimulation condition",
}

#: the words every pro-tumour reading of a context ends with (a possibility: the evidence is
#: from tumour NK, Wei et al., Adv Sci 2025)
PRO_TUMOUR_TEXT = "pro-tumour and immunosuppressive rather than repair"

#: why each context that ends in the pro-tumour reading does (Wei et al., Adv Sci 2025);
#: :func:`nkflow.tl._score_context.interpretation` joins them and says the shared
#: conclusion (``so AREG+ NK here may be ...``) once
CONTEXT_REASON: dict[str, str] = {
    "tumour": "NK cells in tumours make more AREG than NK beside them (in skin tumours; Wei "
    "et al., Adv Sci 2025)",
    "peri-tumour": "the neighbouring tumour can raise NK AREG (tumour NK make more of it, in "
    "skin tumours; Wei et al., Adv Sci 2025)",
    "glucocorticoid": "glucocorticoids induce NK AREG through their receptor NR3C1 (Wei et al., "
    "Adv Sci 2025)",
    "glucocorticoid condition": "the condition adds a glucocorticoid, which induces NK AREG "
    "through NR3C1 (Wei et al., Adv Sci 2025)",
}
#: what an unknown exposure means for an AREG+ NK row: the steroid reading stays open
UNKNOWN_EXPOSURE_READING = (
    "glucocorticoids, routine in cancer treatment, induce NK AREG through NR3C1, pro-tumour in "
    "tumours (Wei et al., Adv Sci 2025): that reading cannot be excluded here"
)


def caveats_text(species: str = "human") -> str:
    """Return the caveats as numbered plain-text lines (one paragraph per caveat).

    Parameters
    ----------
    species
        ``"mouse"`` words the caveats that state human biology for mouse
        (:data:`MOUSE_WORDING`); anything else keeps the human wording.

    Returns
    -------
    str
        :data:`CAVEATS` numbered from 1 (``"1. ..."``), one per line, no trailing newline.
    """
    text = "\n".join(f"{i}. {text}" for i, text in enumerate(CAVEATS, start=1))
    return caveats_for_species(text, {species})


def caveats_for_species(text: str, species: set[str] | None) -> str:
    """Word caveats for the batch's species: a mouse-only batch reads the mouse wording.

    Parameters
    ----------
    text
        Caveats text (:func:`caveats_text`, as a scored table carries it).
    species
        The batch's species; only ``{"mouse"}`` changes the text (a mixed batch keeps the
        human wording, which names human NK where it states human biology).

    Returns
    -------
    str
        ``text`` with each human-only caveat replaced by its :data:`MOUSE_WORDING`.
    """
    if species != {"mouse"}:
        return text
    for human, mouse in MOUSE_WORDING.items():
        text = text.replace(human, mouse)
    return text


def caveats_comment(prefix: str = "# ", *, text: str | None = None) -> str:
    """Return the caveats as comment lines for the top of a CSV file.

    Parameters
    ----------
    prefix
        Put before every line (``"# "`` suits ``pandas.read_csv(..., comment="#")``).
    text
        The numbered caveats (:func:`caveats_text`, or a scored table's species-worded
        ``caveats``); ``None``: the human wording.

    Returns
    -------
    str
        Lines ending with a newline, headed ``nkflow repair-score caveats``.
    """
    lines = ["nkflow repair-score caveats (read before using any score or flag):"]
    lines += (caveats_text() if text is None else text).splitlines()
    return "".join(f"{prefix}{line}\n" for line in lines)
