"""The report says only what holds: species-aware statements, one definition, no repeats."""

from __future__ import annotations

import pandas as pd
import pytest

from nkflow.report.comparisons import _exposure_text
from nkflow.report.findings import (
    GLOSSARY,
    flag_meaning,
    glossary,
    response_statement,
    responses_table,
)
from nkflow.report.methods_analysis import _FLAG_RULES, _definition_text, scoring_sentence
from nkflow.report.repair import (
    _flag_summary,
    _scores_shown,
    _side_by_side,
    caveats_block,
    repair_section,
)
from nkflow.tl._score_context import interpretation
from nkflow.tl._score_messages import RULES, worded
from nkflow.tl.caveats import CAVEATS, KEY_CAVEAT, PRO_TUMOUR_TEXT, caveats_text

FLAG = {
    "batch": "B1", "sample_id": "s1", "population": "CD56bright", "tissue": "liver",
    "timepoint": "pre", "donor": "A", "condition": "IL-15", "areg_responsive": True,
    "areg_net": 3.0, "areg_net_ci_low": 1.0, "areg_net_ci_high": 5.0, "ri": 0.2,
    "repair_biased": False, "control_source": "positive_control tube", "interpretation": "",
    "notes": "", "glucocorticoid": "no", "glucocorticoid_source": "sheet",
}  # fmt: skip
CONTROLS = pd.DataFrame(
    {
        "batch": ["B1"], "condition": ["stim"], "control_source": ["positive_control tube"],
        "control_sample_id": ["PC"], "n_events": [400.0], "n_areg": [100.0],
        "baseline_n_events": [60.0], "net": [25.0], "passed": [True], "verdict": ["passed"],
    }
)  # fmt: skip


@pytest.mark.parametrize(
    ("context", "times"),
    [("tumour;glucocorticoid", 1), ("tumour;glucocorticoid;glucocorticoid condition", 1),
     ("tumour", 1), ("glucocorticoid unknown", 0)],
)  # fmt: skip
def test_the_pro_tumour_consequence_is_said_once(context, times) -> None:
    text = interpretation(context, "sheet")
    assert text.count(PRO_TUMOUR_TEXT) == times
    if "tumour" in context.split(";"):
        assert "in skin tumours; Wei et" in text
    row = {"exploratory": False, "interpretation": text, "glucocorticoid": "yes"}
    message = worded("AREG-responsive", row | {"condition": "stim"}, True)
    assert message.count(PRO_TUMOUR_TEXT) == times


@pytest.mark.parametrize(
    ("species", "has", "lacks"),
    [({"mouse"}, "Mouse NK carry no CD56", "Expect CD56bright"),
     ({"human"}, "Expect CD56bright NK to be at least as often AREG+", "Mouse NK carry no")],
)  # fmt: skip
def test_caveats_follow_the_species(species, has, lacks) -> None:
    html = caveats_block(caveats_text(), species)
    assert has in html and lacks not in html


@pytest.mark.parametrize(
    ("species", "has", "lacks"),
    [({"mouse"}, "natural inducer of mouse NK AREG is reported", "natural inducers of human"),
     ({"human"}, "natural inducers of human NK AREG", "mouse NK AREG"),
     ({"human", "mouse"}, "natural inducers of human NK AREG", "x" * 9)],
)  # fmt: skip
def test_side_by_side_lead_follows_the_species(species, has, lacks) -> None:
    html = _side_by_side(pd.DataFrame([FLAG]), species)
    assert has in html and lacks not in html


@pytest.mark.parametrize(
    ("species", "said"),
    [({"human"}, "A response proves AREG+ NK"), ({"mouse"}, "exploratory observation"),
     ({"human", "mouse"}, "Mouse rows: mouse NK")],
)  # fmt: skip
def test_what_a_response_shows_follows_the_species(species, said) -> None:
    assert said in response_statement(species)


@pytest.mark.parametrize(("condition", "said"), [("IL-15", True), ("stim", False)])
def test_a_flag_says_its_control_ran_under_another_condition(condition, said) -> None:
    flags = pd.DataFrame([FLAG | {"condition": condition}])
    meaning = responses_table(flags, CONTROLS)["meaning in this context"].iloc[0]
    assert ("run under condition stim and applied to IL-15" in meaning) == said
    html = repair_section({"controls": CONTROLS, "flags": flags}, "", [], [0])
    assert ("positive-control tube was run under condition stim only" in html) == said


def test_controls_table_shows_the_verdict_and_explains_its_columns() -> None:
    html = repair_section({"controls": CONTROLS}, "", [], [0])
    assert "<code>baseline_n_events</code>: events in" in html
    assert ">passed</th>" not in html and "verdict" in html
    assert RULES["POSITIVE_CONTROL_INSUFFICIENT"].split("had ")[1].split(";")[0] in html


@pytest.mark.parametrize("notes", ["INHIBITOR_CONDITION", ""])
def test_the_tgf_beta_note_shows_wherever_a_flags_context_does(notes) -> None:
    flags = pd.DataFrame([FLAG | {"notes": notes, "condition": "IL-15+TGF-b"}])
    scores = flags.assign(flaggable=True)
    shown = [
        _flag_summary(flags),
        _scores_shown(scores, flags)["interpretation"].iloc[0],
        _side_by_side(scores, {"human"}, flags),
    ]
    assert all(("TGF-β1 blocks it" in text) == bool(notes) for text in shown)


@pytest.mark.parametrize(("k", "n", "said"), [(1, 1, "after: 1 of 1 donor"),
                                             (1, 2, "after: 1 of 2 donors (mixed)")])  # fmt: skip
def test_donor_counts_agree_in_number(k, n, said) -> None:
    row = pd.Series({"n_pairs": n, "n_glucocorticoid_before": 0, "n_glucocorticoid_after": k})
    assert _exposure_text(row) == said


@pytest.mark.parametrize(
    ("key", "value", "said"),
    [("min_net", 1, "≥ 1 percentage point"), ("min_net", 2.5, "≥ 2.5 percentage points"),
     ("require_fmo_threshold", True, "the AREG cut-off was set on an FMO control"),
     ("require_positive_control", True, "the batch's positive control responded"),
     ("require_positive_control", False, "a responding positive control was not required"),
     ("conditions", ["*"], "(*; * = every condition)")],
)  # fmt: skip
def test_flag_rules_read_as_sentences(key, value, said) -> None:
    text = _definition_text(key, value, _FLAG_RULES)
    assert text.endswith(said) or said in text
    assert "required: " not in text and "percentage points" not in text.replace(said, "")


def test_methods_say_a_contradicted_no_reads_unknown() -> None:
    scores = pd.DataFrame({"population": ["NK"], "batch": ["B1"], "condition": ["stim"]})
    text = scoring_sentence({}, {}, None, {"scores": scores})
    assert "was read as unknown, since the sheet says no but the treatment names" in text
    assert "read as exposed" not in text
    assert "the flag says 'not recorded'" in text


@pytest.mark.parametrize(
    "text",
    [KEY_CAVEAT, " ".join(CAVEATS), dict(GLOSSARY)["CD56bright / CD56dim"]],
)
def test_cd56bright_is_more_often_areg_positive_not_the_main_source(text) -> None:
    assert "more often AREG+ than CD56dim" in text
    assert "most AREG" not in text and "most in CD56bright" not in text


def test_treg_control_needs_its_own_gate() -> None:
    text = " ".join(CAVEATS)
    assert "ILC2 or Treg in the ILC gate" not in text
    assert "CD3+CD4+CD25+FOXP3+ gate" in text


@pytest.mark.parametrize("species", [{"human"}, {"mouse"}])
def test_glossary_explains_where_exposure_was_read(species) -> None:
    text = dict(glossary(species))["glucocorticoid_source"]
    assert "CHOP contains prednisone" in text


def test_a_flag_meaning_keeps_the_tumour_and_steroid_reasons_once() -> None:
    row = pd.Series(FLAG | {"interpretation": interpretation("tumour;glucocorticoid", "sheet")})
    assert flag_meaning(row).count(PRO_TUMOUR_TEXT) == 1
