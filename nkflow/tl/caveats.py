"""What every repair score must be read with (BIOLOGY.md sections 3, 4 and 6c, in our words).

The text travels with every :class:`~nkflow.tl.score.ScoreResult` (``result.caveats``), in
each scored table (``DataFrame.attrs["caveats"]`` and a short ``caveat`` column) and is meant
to be printed at the top of every CSV (:func:`caveats_comment`) and in the HTML report.
"""

from __future__ import annotations

__all__ = ["CAVEATS", "SHORT_CAVEAT", "caveats_comment", "caveats_text"]

SHORT_CAVEAT = (
    "AREG+ NK is an unproven hypothesis (no published report of AREG protein in NK cells); "
    "a flag is evidence to test, not a demonstrated repair function"
)

CAVEATS: tuple[str, ...] = (
    "AREG+ NK cells are a hypothesis. We know of no published primary report of AREG protein "
    "in human or mouse NK cells, so every assay has to prove it: an AREG FMO sets the cut-off, "
    "an unstimulated tube sets the background, and an AREG-producing positive control (ILC2 or "
    "Treg in the ILC gate) must respond in the same batch before any NK population is flagged.",
    "Anti-AREG antibodies for flow cytometry have little independent validation. Confirm with an "
    "AREG-high control and, where possible, AREG in the culture supernatant (ELISA).",
    "Intracellular staining sees the membrane precursor (pro-AREG). ADAM17 sheds it, and the "
    "choice of brefeldin A and/or monensin changes how much stays in the cell.",
    "PMA/ionomycin is supraphysiological and activates ADAM17 (which also sheds CD16 and CD62L). "
    "Run a cytokine condition too (IL-18/IL-33, or IL-12/IL-15/IL-18).",
    "Enzymatic digestion (collagenase) changes CD56 and other epitopes; CD69 rises with "
    "digestion and with stimulation, so residency is read from the unstimulated tube and is "
    "context, not part of the score.",
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


def caveats_text() -> str:
    """Return the caveats as numbered plain-text lines (one paragraph per caveat)."""
    return "\n".join(f"{i}. {text}" for i, text in enumerate(CAVEATS, start=1))


def caveats_comment(prefix: str = "# ") -> str:
    """Return the caveats as comment lines for the top of a CSV file.

    Parameters
    ----------
    prefix
        Put before every line (``"# "`` suits ``pandas.read_csv(..., comment="#")``).

    Returns
    -------
    str
        Lines ending with a newline, headed ``nkflow repair-score caveats``.
    """
    lines = ["nkflow repair-score caveats (read before using any score or flag):"]
    lines += caveats_text().splitlines()
    return "".join(f"{prefix}{line}\n" for line in lines)
