"""Biology wording: mouse batches read no human-only biology, the ILC gate and the steroid
reading say what is known, and the glossary defines the terms the report uses."""

from __future__ import annotations

import pandas as pd
import pytest

from nkflow.report.findings import glossary
from nkflow.report.methods_analysis import _SCORE_SETTINGS, _clearance_text
from nkflow.tl._score_context import interpretation
from nkflow.tl.caveats import CAVEATS, PRO_TUMOUR_TEXT, caveats_for_species, caveats_text

HUMAN_ONLY = ("sheds CD16", "changes CD56", "natural inducers of human NK AREG are")


@pytest.mark.parametrize(
    ("species", "present"),
    [({"mouse"}, False), ({"human"}, True), ({"human", "mouse"}, True), (set(), True)],
)
def test_mouse_caveats_state_no_human_only_biology(species, present) -> None:
    """A mouse report read 'PMA ... sheds CD16', 'collagenase changes CD56' and the human
    NK AREG inducers as if they held for its tubes."""
    text = caveats_for_species(caveats_text(), species)
    assert all((phrase in text) == present for phrase in HUMAN_ONLY)
    assert len(text.splitlines()) == len(CAVEATS)
    if not present:
        assert "no natural inducer of mouse NK AREG is reported" in text
        assert "in human NK, glucocorticoids induce AREG" in text
        assert caveats_text("mouse") == text


@pytest.mark.parametrize(
    ("nkg2d", "cd107a", "says"),
    [
        ([1.0], [0.5], "the clearance axis (NKG2D+, CD107a net) kept separate"),
        ([None], [None], "(NKG2D+, CD107a net; not in this panel, so not measured)"),
        ([1.0], [None], "(NKG2D+; CD107a not in this panel) kept separate"),
    ],
)
def test_methods_clearance_axis_says_what_the_panel_lacks(nkg2d, cd107a, says) -> None:
    """Methods of a mouse run named 'the clearance axis (NKG2D+, CD107a net)', neither of
    which the mouse panel stains."""
    scores = pd.DataFrame({"pct_nkg2d_stim": nkg2d, "cd107a_net": cd107a}, dtype=float)
    assert says in _clearance_text(scores)


def test_the_tgf_beta_note_names_human_nk() -> None:
    assert "TGF-β1 blocks human NK AREG" in _SCORE_SETTINGS["inhibitor_conditions"]


def test_the_ilc_gate_is_not_called_ilc2() -> None:
    text = " ".join(CAVEATS)
    assert "ILC gate (ILC2)" not in text
    assert "CD127+ lineage-negative ILC gate (ILC2 among them, with ILC1 and ILC3" in text


@pytest.mark.parametrize("context", ["glucocorticoid", "glucocorticoid condition"])
def test_the_steroid_reading_is_a_possibility_said_once(context) -> None:
    """'AREG+ NK here may be steroid-induced: pro-tumour and immunosuppressive, not repair'
    read as settled on blood and normal liver; the pro-tumour evidence is from tumour NK."""
    text = interpretation(context, "sheet")
    assert "steroid-induced: " not in text and "not repair" not in text
    assert "may be steroid-induced and, as in tumour NK, pro-tumour" in text
    assert text.count(PRO_TUMOUR_TEXT) == 1 and text.count("Wei et al") == 1


TERMS = ("margin events", "time QC", "unstable stretch", "z", "Wilson 95% interval", "p_adj",
         "mirror", "valley", "fmo fallback", "Hodges-Lehmann", "Newcombe", "p_min")  # fmt: skip


@pytest.mark.parametrize("species", [{"human"}, {"mouse"}])
def test_the_glossary_defines_the_terms_the_report_uses(species) -> None:
    defined = dict(glossary(species))
    assert not [t for t in TERMS if t not in defined]


def test_a_mouse_score_tables_caveats_are_worded_for_mouse():
    """score() attached the human caveats to a mouse batch's tables (attrs and to_csv):
    IL-2/IL-15 as 'the reported natural inducers', CD16 shed by PMA."""
    from test_score_conditions import crow, mrow

    from nkflow.tl import score
    from nkflow.tl.caveats import MOUSE_WORDING, caveats_for_species, caveats_text

    counts = pd.DataFrame([crow("u", "NK", 1000, 5), crow("s", "NK", 1000, 60)])
    meta = pd.DataFrame([mrow("u", "m1", "unstim", "unstim", species="mouse"),
                         mrow("s", "m1", "stim", "stim", species="mouse")])  # fmt: skip
    result = score(counts, meta)
    mouse = caveats_for_species(caveats_text(), {"mouse"})
    assert result.caveats == mouse != caveats_text()
    assert result.scores.attrs["caveats"] == mouse
    assert not any(human in result.csv_text("scores") for human in MOUSE_WORDING)
