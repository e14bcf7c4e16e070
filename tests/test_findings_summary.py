"""Findings state the batch's result, its failures, and responses per group (60-tube review)."""

from __future__ import annotations

import pandas as pd
import pytest

from nkflow.report.findings import composition_table, findings_section, responses_table
from nkflow.report.findings_responses import responses_by_group
from nkflow.report.findings_summary import (
    changes_block,
    failures_note,
    population_name,
    unusual_qc,
)
from nkflow.report.qc_outliers import RULE_TEXT
from nkflow.report.tables import esc


def _comparison(population: str, p_adj: float, confounded: str = "none", **kw) -> dict:
    row = {"condition": "stim", "tissue": "liver", "population": population, "n_pairs": 6,
           "n_glucocorticoid_before": 0, "n_glucocorticoid_after": 0,
           "glucocorticoid_confounded": confounded, "median_difference": 2.99,
           "n_increase": 6, "n_decrease": 0, "p_adj": p_adj, "value": "areg_net",
           "comparison": "post - pre"}  # fmt: skip
    return row | kw


COMPARISONS = pd.DataFrame(
    [
        _comparison("metacluster:4", 0.04),
        _comparison("CD56bright", 0.0375, "some", n_glucocorticoid_after=1),
        _comparison("CD56dim", 0.2),
        _comparison("NK", float("nan")),  # too few donors: not tested
    ]
)


def test_what_changed_lists_the_rows_within_the_fdr_level_gated_first():
    """The batch's main result (CD56bright AREG up post vs pre) was only in the wide table."""
    html = changes_block(COMPARISONS, {"metacluster:4": "CD56bright CXCR6+"})
    assert "What changed over time" in html
    said = "2 of 3 tested row(s) had p_adj ≤ 0.05 (1 more had too few donors with a non-zero change"
    assert said in html
    bright = html.index("<b>CD56bright</b> — stim, liver, post − pre")
    assert bright < html.index("<b>metacluster 4: CD56bright CXCR6+</b>")
    assert "median change +2.99 pp (up in 6, down in 0 of 6 donors), p_adj 0.0375" in html
    assert "partly glucocorticoid-confounded" in html and "1 of 6 donor(s)" in html
    assert "CD56dim" not in html
    assert "hypothesis" in html


@pytest.mark.parametrize(
    ("table", "said"),
    [
        (COMPARISONS.assign(p_adj=[0.3, 0.2, 0.9, float("nan")]), "3 row(s) were tested"),
        (COMPARISONS.assign(p_adj=float("nan")), "none of its 4 row(s) could be tested"),
    ],
)
def test_what_changed_says_when_nothing_passed(table, said):
    html = changes_block(table)
    assert said in html and "<li>" not in html


def test_what_changed_is_absent_without_comparisons():
    assert changes_block(None) == changes_block(pd.DataFrame()) == ""


def _qc(fractions: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sample_id": [f"T{i}" for i in range(len(fractions))],
            "role": "stim",
            "removed_fraction": fractions,
            "summary": "QC kept some events.",
        }
    )


@pytest.mark.parametrize(
    ("fractions", "unusual"),
    [
        ([0.003, 0.004, 0.003, 0.135], ["T3"]),  # 13.5% against a 0.3% batch
        ([0.04, 0.045, 0.04, 0.06], []),  # above 5% but not 3x the others
        ([0.001, 0.002, 0.001, 0.04], []),  # 20x the others but under 5%
        ([0.5], []),  # no batch to compare with
        ([0.003, 0.2], []),  # two tubes: each too large a part of the median
    ],
)
def test_unusual_qc_needs_five_percent_and_three_times_the_batch_median(fractions, unusual):
    assert list(unusual_qc(_qc(fractions))["sample_id"]) == unusual


def test_failures_note_counts_failed_files_and_names_unusual_qc():
    status = pd.DataFrame(
        {"sample_id": ["A", "B", "C"], "status": ["ok", "parse-failed", "skipped"]}
    )
    html = failures_note(status, _qc([0.003, 0.004, 0.003, 0.135]))
    assert "1 of 3 input file(s) failed</b> (B)" in html and 'href="#overview"' in html
    assert "T3 13.5%" in html and esc(RULE_TEXT) in html
    assert failures_note(status.assign(status="ok"), _qc([0.003, 0.004])) == ""


def _flag(donor: str, timepoint: str, population: str, responsive: bool, net: float,
          rules: str = "") -> dict:  # fmt: skip
    return {"condition": "stim", "tissue": "liver", "timepoint": timepoint, "donor": donor,
            "population": population, "label": population, "areg_responsive": responsive,
            "repair_biased": False, "ri": 0.1, "areg_net": net, "areg_net_ci_low": net - 1,
            "areg_net_ci_high": net + 1, "interpretation": "", "failed_rules": rules}  # fmt: skip


FLAGS = pd.DataFrame(
    [
        _flag("D1", "post", "CD56bright", True, 4.0),
        _flag("D2", "post", "CD56bright", True, 5.0),
        _flag("D3", "post", "CD56bright", False, 0.2, "CI_LOWER_NOT_ABOVE_ZERO"),
        _flag("D4", "post", "CD56bright", False, 0.1, "AREG_EVENTS_BELOW_MIN"),
        _flag("D1", "pre", "CD56bright", True, 2.0),
        _flag("D1", "pre", "metacluster:4", True, 1.5),
        _flag("D1", "pre", "Cells", True, 0.1, "NOT_FLAGGABLE"),
    ]
).assign(label=lambda f: f["population"].replace({"metacluster:4": "CD56bright CXCR6+"}))


def test_responses_are_grouped_over_donors_in_the_runs_timepoint_order():
    """47 per-donor rows for 6 donors, and 'post' sorted before 'pre' as strings."""
    table = responses_by_group(FLAGS, timepoint_order=["pre", "post"])
    assert list(zip(table["timepoint"], table["population"], strict=True)) == [
        ("pre", "CD56bright"),
        ("pre", "metacluster 4: CD56bright CXCR6+"),
        ("post", "CD56bright"),
    ]
    post = table.iloc[2]
    assert post["donors responded"] == "2 of 4 (1 not judged)"
    assert post["AREG net of responders (pp)"] == "+4.5 (+4.0 to +5.0)"
    assert table.iloc[0]["AREG net of responders (pp)"] == "+2.0"
    detail = responses_table(FLAGS, timepoint_order=["pre", "post"])
    assert list(detail["timepoint"]) == ["pre", "pre", "pre", "post", "post"]


def _bridge_flags(responders: dict[str, list[float]]) -> pd.DataFrame:
    """Each responder's batches (B1, B2, ...) with its AREG nets, and D9 who did not respond."""
    rows = [
        _flag(donor, "post", "CD56bright", True, net)
        | {"batch": f"B{i + 1}", "repair_biased": True, "ri": 0.6 + 0.2 * i,
           "interpretation": "tumour reading"}
        for donor, nets in responders.items()
        for i, net in enumerate(nets)
    ]  # fmt: skip
    rows.append(_flag("D9", "post", "CD56bright", False, 1.0, "CI_LOWER_NOT_ABOVE_ZERO"))
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    ("responders", "responded", "biased", "net", "ri"),
    [
        # D1 in two batches (net 10, 30) and D9: one donor, its batches' mean, not a range
        ({"D1": [10.0, 30.0]}, "1 of 2", "1 of 1", "+20.0", "0.70"),
        # median over the donors (20 and 5), not over the tubes (10, 30, 5)
        ({"D1": [10.0, 30.0], "D3": [5.0]}, "2 of 3", "2 of 2", "+12.5 (+5.0 to +20.0)",
         "0.65 (0.60 to 0.70)"),
    ],
)  # fmt: skip
def test_responses_by_group_count_and_spread_donors_not_batches(
    responders, responded, biased, net, ri
):
    """'donors responded 1 of 2' beside 'repair-biased 2 of 2', a spread over batches."""
    row = responses_by_group(_bridge_flags(responders)).iloc[0]
    assert row["donors responded"] == responded
    assert row["repair-biased"] == biased
    assert row["AREG net of responders (pp)"] == net
    assert row["RI of responders"] == ri
    meaning = row["meaning in this context"]
    assert f"{biased} repair-biased" in meaning and ". Tumour reading." in meaning


def test_findings_show_groups_wrap_the_meaning_and_keep_per_donor_rows():
    html = findings_section({"flags": FLAGS}, None)
    assert "2 of 4 (1 not judged)" in html
    assert "<details" in html and "Every responding population × tube row (5)" in html
    # each meaning on a line under its row, grouped rows and per-donor rows
    assert html.count('<tr class="meaning">') >= 4


@pytest.mark.parametrize(
    ("population", "label", "name"),
    [
        ("metacluster:4", "CD56bright CXCR6+", "metacluster 4: CD56bright CXCR6+"),
        ("metacluster:4", "metacluster:4", "metacluster 4"),
        ("metacluster:4", None, "metacluster 4"),
        ("CD56bright", "CD56bright", "CD56bright"),
    ],
)
def test_metaclusters_are_named_as_clusters(population, label, name):
    assert population_name(population, label) == name


def test_findings_carry_the_results_and_failures_of_the_batch():
    tables = {
        "flags": FLAGS,
        "comparisons": COMPARISONS,
        "status": pd.DataFrame({"sample_id": ["A", "B"], "status": ["ok", "failed"]}),
    }
    html = findings_section(tables, None)
    assert "1 of 2 input file(s) failed" in html
    assert html.index("What changed over time") < html.index("Populations that responded")


def test_composition_says_how_many_donors_a_share_stands_on():
    """n=2 with one donor measured printed that donor's Wilson interval as a donors' range."""
    meta = pd.DataFrame({"sample_id": ["A", "B"], "donor": ["A", "B"], "tissue": "blood",
                         "timepoint": "pre", "role": "unstim"})  # fmt: skip
    pops = pd.DataFrame({"sample_id": ["A", "B"], "population": "CD56bright", "parent": "NK",
                         "percent_of_parent": [8.8, float("nan")], "ci_low": [7.6, float("nan")],
                         "ci_high": [10.2, float("nan")]})  # fmt: skip
    cell = composition_table(pops, meta)["CD56bright % of NK"].iloc[0]
    assert cell == "8.8 (7.6-10.2); 1 of 2 donors measured (Wilson 95% interval)"
    full = composition_table(pops.fillna({"percent_of_parent": 9.0}), meta)
    assert full["CD56bright % of NK"].iloc[0] == "8.9 (8.8-9.0)"
