"""The report opens with findings: composition by tissue/timepoint, responses, not judged."""

from __future__ import annotations

import pandas as pd
import pytest

from nkflow.report.findings import (
    composition_table,
    findings_section,
    flag_meaning,
    glossary_block,
    not_judged_table,
    report_species,
    responses_table,
)
from nkflow.tl.score import RULES

META = pd.DataFrame(
    {
        "sample_id": ["A_blood", "B_blood", "A_liver", "A_liver_stim", "FMO"],
        "donor": ["A", "B", "A", "A", "A"],
        "tissue": ["blood", "blood", "liver", "liver", "liver"],
        "timepoint": ["pre"] * 5,
        "role": ["unstim", "unstim", "unstim", "stim", "fmo:AREG"],
    }
)


def _pop(sid: str, population: str, pct: float) -> dict:
    return {"sample_id": sid, "population": population, "parent": "NK",
            "percent_of_parent": pct, "ci_low": pct - 1, "ci_high": pct + 1}  # fmt: skip


POPS = pd.DataFrame(
    [
        _pop("A_blood", "CD56bright", 5.0), _pop("B_blood", "CD56bright", 9.0),
        _pop("A_liver", "CD56bright", 40.0), _pop("A_liver_stim", "CD56bright", 99.0),
        _pop("FMO", "CD56bright", 99.0), _pop("A_liver", "trNK", 45.0),
    ]
)  # fmt: skip


def test_composition_uses_one_phenotype_tube_per_donor_tissue_timepoint() -> None:
    table = composition_table(POPS, META).set_index("tissue")
    assert table.loc["blood", "n"] == 2
    assert table.loc["blood", "CD56bright % of NK"] == "7.0 (5.0-9.0)"  # median (range)
    assert table.loc["liver", "n"] == 1
    assert table.loc["liver", "CD56bright % of NK"] == "40.0 (39.0-41.0)"  # value (CI)
    assert table.loc["liver", "trNK % of NK"] == "45.0 (44.0-46.0)"
    assert table.loc["blood", "trNK % of NK"] == "-"


def test_failed_tubes_are_no_donors_and_unset_gates_read_not_set():
    """n counted a tube that failed, and a CD56bright gate that could not be set read
    '0.0 (0.0-0.0)', then 'not gated' where the gating panels say 'not set'."""
    pops = POPS[POPS["sample_id"] != "B_blood"].copy()  # B's tube failed: no rows
    liver = pops["sample_id"] == "A_liver"
    pops.loc[liver & (pops["population"] == "CD56bright"), ["percent_of_parent", "ci_low",
                                                           "ci_high"]] = float("nan")  # fmt: skip
    table = composition_table(pops, META).set_index("tissue")
    assert table.loc["blood", "n"] == 1 and table.loc["blood", "CD56bright % of NK"] == (
        "5.0 (4.0-6.0)"
    )
    assert table.loc["liver", "CD56bright % of NK"] == "not set"


FLAGS = pd.DataFrame(
    {
        "condition": ["IL-15", "IL-15", "stim", "stim"],
        "tissue": ["liver", "liver", "blood", "blood"],
        "timepoint": ["pre"] * 4,
        "donor": ["A"] * 4,
        "population": ["CD56bright", "CD56dim", "NK", "Cells"],
        "label": ["CD56bright", "CD56dim", "NK", "Cells"],
        "areg_responsive": [True, False, False, False],
        "areg_net": [3.2, 0.4, 0.1, 0.0],
        "areg_net_ci_low": [1.1, -0.5, -0.2, -0.1],
        "areg_net_ci_high": [5.0, 1.2, 0.4, 0.1],
        "interpretation": ["", "", "", ""],
        "failed_rules": ["", "CI_LOWER_NOT_ABOVE_ZERO", "NO_AREG_THRESHOLD;EVENTS_BELOW_MIN",
                         "NOT_FLAGGABLE;NO_AREG_THRESHOLD"],
    }
)  # fmt: skip


def test_responses_list_flagged_rows_with_their_interval() -> None:
    table = responses_table(FLAGS)
    assert list(table["population"]) == ["CD56bright"]
    assert table["AREG net (pp, 95% CI)"].iloc[0] == "+3.2 (+1.1 to +5.0)"


def test_not_judged_counts_missing_controls_for_flaggable_rows_only() -> None:
    table = not_judged_table(FLAGS).set_index("rule")
    assert table.loc["NO_AREG_THRESHOLD", "population × tube rows"] == 1  # not the Cells row
    assert table.loc["EVENTS_BELOW_MIN", "population × tube rows"] == 1
    assert "CI_LOWER_NOT_ABOVE_ZERO" not in table.index  # judged, did not respond


@pytest.mark.parametrize("flags", [FLAGS, FLAGS.assign(areg_responsive=False), None])
def test_findings_section_renders(flags) -> None:
    tables = {"populations": POPS} | ({"flags": flags} if flags is not None else {})
    html = findings_section(tables, META)
    assert "NK composition by tissue and timepoint" in html
    if flags is None:
        assert "No repair scoring was run" in html
    elif flags["areg_responsive"].any():
        assert "+3.2 (+1.1 to +5.0)" in html
    else:
        assert "No NK population met every AREG rule" in html


def test_report_opens_with_findings(tiny_run) -> None:
    text = tiny_run.report_path.read_text(encoding="utf-8")
    assert text.index('id="findings"') < text.index('id="overview"')


@pytest.mark.parametrize(("notes", "said"), [("INHIBITOR_CONDITION", True), ("", False)])
def test_meaning_of_a_flag_under_an_inhibitor_says_it_is_unexpected(notes, said) -> None:
    row = FLAGS.iloc[0].copy()
    row["notes"], row["condition"] = notes, "IL-15 + TGF-beta1"
    assert ("Unexpected under 'IL-15 + TGF-beta1'" in flag_meaning(row)) == said


@pytest.mark.parametrize(
    "rule", ["POSITIVE_CONTROL_MISSING", "POSITIVE_CONTROL_FAILED", "POSITIVE_CONTROL_INSUFFICIENT"]
)
def test_rows_withheld_for_the_control_are_listed_as_not_judged(rule) -> None:
    """Rows withheld only for the control vanished from 'What could not be judged'."""
    flags = pd.DataFrame({"population": ["NK", "CD56dim"], "failed_rules": [rule, rule]})
    table = not_judged_table(flags).set_index("rule")
    assert table.loc[rule, "population × tube rows"] == 2
    assert table.loc[rule, "reason"] == RULES[rule]
    assert table.attrs["distinct_rows"] == 2
    assert "What could not be judged" in findings_section({"flags": flags}, META)


@pytest.mark.parametrize(
    ("species", "has", "lacks"),
    [
        ({"human"}, ["CD69+ with a tissue integrin", "CD56bright / CD56dim", "circNK"],
         ["CD49b(DX5)"]),
        (set(), ["CD69+ with a tissue integrin"], ["CD49b(DX5)"]),
        ({"mouse"}, ["CD49a+ CD49b(DX5)−", "conventional NK (mouse)", "Lin− NKp46− CD127+"],
         ["CD69+ with a tissue integrin", "CD56bright / CD56dim", "circNK"]),
        ({"human", "mouse"}, ["trNK (human)", "trNK (mouse)", "CD49a+ CD49b(DX5)−",
                              "CD69+ with a tissue integrin"], []),
    ],
)  # fmt: skip
def test_glossary_follows_the_batch_species(species, has, lacks) -> None:
    """A mouse batch was told trNK = CD69+ with CD49a/CD103/CXCR6, the human rule."""
    html = glossary_block(species)
    for text in has:
        assert text in html
    for text in lacks:
        assert text not in html


def test_findings_read_the_species_from_the_sheet_and_the_panel() -> None:
    mouse = META.assign(species="mouse")
    assert "CD49a+ CD49b(DX5)−" in findings_section({"populations": POPS}, mouse)
    assert report_species(META.assign(species=""), {"species_from_panel": {"a.fcs": "mouse"}}) == {
        "mouse"
    }
    empty = findings_section({"populations": POPS.iloc[:0]}, mouse)
    assert "CD49a and CD49b (DX5)" in empty and "CD69 plus" not in empty


@pytest.mark.parametrize(
    ("exposure", "source", "interpretation", "said"),
    [
        ("no", "sheet", "", "Glucocorticoid exposure: no (sheet)."),
        ("", "not recorded", "", "Glucocorticoid exposure: not recorded (the sheet names neither"),
        (float("nan"), float("nan"), "", "Glucocorticoid exposure: not recorded (the sheet"),
        ("nan", "nan", "", "Glucocorticoid exposure: not recorded (the sheet names"),
        ("yes", "treatment names dexamethasone",
         "context: glucocorticoid exposure (treatment names dexamethasone): ...",
         "Context: glucocorticoid exposure (treatment names dexamethasone)"),
    ],
)  # fmt: skip
def test_meaning_of_every_flag_states_the_exposure(exposure, source, interpretation, said):
    row = FLAGS.iloc[0].copy()
    row["glucocorticoid"], row["glucocorticoid_source"] = exposure, source
    row["interpretation"] = interpretation
    text = flag_meaning(row)
    assert said in text
    assert text.count("lucocorticoid exposure") == 1
