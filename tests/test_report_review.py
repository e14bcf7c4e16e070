"""What a reviewer of three real reports asked the text to say: comparisons that name their
method and limits, flags with their meaning, methods that describe what the run did, counts
that agree, defined terms and consistent units."""

from __future__ import annotations

import pandas as pd
import pytest


def _comparisons() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "condition": ["stim", "stim"],
            "tissue": ["blood", "liver"],
            "population": ["NK", "NK"],
            "n_pairs": [2, 7],
            "n_units": [2, 7],
            "n_glucocorticoid_before": [0, 0],
            "n_glucocorticoid_after": [1, 7],
            "hl_estimate": [1.5, 2.0],
            "p_value": [0.5, 2 / 128],
            "p_min": [0.5, 2 / 128],
            "p_sign": [0.5, 2 / 128],
            "p_adj": [0.5, 2 / 64],
        }
    )


def test_comparisons_name_bh_explain_columns_and_say_what_n_allows():
    from nkflow.report.repair import comparisons_block

    html = comparisons_block(_comparisons())
    assert "Benjamini-Hochberg" in html
    for term in ("hl_estimate", "p_sign", "n_units", "p_min"):
        assert f"<code>{term}</code>" in html
    assert "1 of 2 row(s) have too few donors with a non-zero change to reach p ≤ 0.05" in html
    assert "after: 1 of 2 donors (mixed)" in html  # D2 on dexamethasone, D1 not
    assert "after: 7 of 7 donors<" in html  # every donor exposed: not mixed
    assert "1 row(s) mix glucocorticoid-exposed and unexposed donors" in html
    assert comparisons_block(pd.DataFrame()) == ""
    confounded = _comparisons().assign(glucocorticoid_confounded=["some", "all"])
    assert "glucocorticoid exposure changed between the timepoints" in comparisons_block(confounded)
    assert "Tarone 1990" in html


def _flags() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "condition": ["IL-15", "stim", "stim", "stim"],
            "tissue": ["blood", "blood", "blood", "liver"],
            "timepoint": ["pre", "post", "post", "pre"],
            "donor": ["D1", "D2", "D2", "D1"],
            "population": ["NK", "NK", "CD56bright", "CD56bright"],
            "areg_responsive": [True, True, True, False],
            "repair_biased": [False, False, True, False],
            "ri": [0.12, 0.3, 0.8, float("nan")],
            "areg_net": [1.1, 1.4, 6.2, 0.1],
            "areg_net_ci_low": [0.3, 0.8, 3.4, -0.2],
            "areg_net_ci_high": [1.9, 2.1, 9.8, 0.4],
            "interpretation": ["", "context: glucocorticoid exposure: may be pro-tumour", "", ""],
        }
    )


def test_responses_show_ri_repair_bias_and_a_meaning_for_every_row():
    """The meaning cell was blank without glucocorticoid context and RI was not shown."""
    from nkflow.report.findings import findings_section, responses_table

    table = responses_table(_flags()).set_index(["condition", "population"])
    il15 = table.loc[("IL-15", "NK")]
    assert (il15["RI"], il15["repair-biased"]) == ("0.12", "no")
    assert il15["meaning in this context"].startswith("AREG-responsive against its FMO")
    assert "not repair-biased: IFN-γ dominates (RI 0.12)" in il15["meaning in this context"]
    gc = table.loc[("stim", "NK"), "meaning in this context"]
    assert "IFN-γ dominates" in gc and "pro-tumour" in gc
    biased = table.loc[("stim", "CD56bright")]
    assert biased["repair-biased"] == "yes"
    assert (
        "repair-biased (AREG over IFN-γ): a hypothesis to test" in biased["meaning in this context"]
    )
    html = findings_section({"flags": _flags()}, None)
    assert "3 population × tube row(s) covering 2 population(s)" in html
    assert "1 of them are repair-biased" in html


@pytest.mark.parametrize(
    ("ri_cut", "wording"),
    [(None, "cut-off (0.5 by default)"), (0.7, "this run's cut-off, 0.7"), ("0.6", "cut-off, 0.6")],
)
def test_findings_name_the_ri_cut_the_scoring_used(ri_cut, wording):
    """The findings said 'RI above the scoring's cut-off (0.5 by default)' whatever the
    run's scoring used; the report passes the recorded cut-off now."""
    from nkflow.report.findings import findings_section

    assert wording in findings_section({"flags": _flags()}, None, ri_cut=ri_cut)


def _methods(provenance: dict | None = None, **tables: pd.DataFrame) -> str:
    from nkflow.config import RunConfig, config_to_dict
    from nkflow.report import methods_text

    meta = tables.pop("metadata", None)
    return methods_text(config_to_dict(RunConfig()), provenance or {}, tables, metadata=meta)


def test_methods_say_scoring_had_nothing_to_score_and_why():
    """A single unstimulated mouse tube with no AREG channel was described as 'Repair
    profiles used the score definitions ... The tubes were scored as mouse'."""
    meta = pd.DataFrame({"sample_id": ["m1"], "role": ["unstim"]})
    counts = pd.DataFrame({"sample_id": ["m1"], "population": ["NK"], "areg_channel": [""]})
    text = _methods(scores=pd.DataFrame(columns=["population"]), counts=counts, metadata=meta)
    assert (
        "Repair scoring had nothing to score: the batch has no stimulated tube and the panel "
        "has no AREG channel" in text
    )
    assert "Repair profiles used" not in text and "scored as mouse" not in text
    scored = _methods(scores=pd.DataFrame({"population": ["NK"]}), metadata=meta)
    assert "Repair profiles used" in scored


def test_methods_say_time_qc_was_skipped_in_every_file():
    qc = pd.DataFrame(
        {
            "n_in": [1000, 1000],
            "n_out": [999, 998],
            "removed_time": [0, 0],
            "removed_margin": [1, 2],
            "time_qc": ["skipped", "skipped"],
            "time_qc_skipped": [
                "too few events for time QC (999 events give 9 bins of 100; at least 20 needed)",
                "too few events for time QC (998 events give 9 bins of 100; at least 20 needed)",
            ],
        }
    )
    text = _methods(qc=qc)
    assert "on, but skipped in every file (too few events for time QC)" in text
    assert "by time QC" not in text and "no time QC was applied" in text
    partly = _methods(qc=qc.assign(time_qc=["ran", "skipped"]))
    assert "skipped in 1 of 2 files (too few events for time QC)" in partly
    assert "(0 by time QC, 3 as margin events)" in partly


def test_methods_name_the_clustered_markers_and_consensus_settings():
    fit = {"markers": ["CD56", "CD16", "NKG2D"], "n_train": 5000, "rlen": 7, "xdim": 6,
           "ydim": 5, "alpha": [0.05, 0.01], "n_resamples": 40, "resample_fraction": 0.8,
           "linkage": "complete", "final_linkage": "average", "n_metaclusters": 8,
           "n_metaclusters_requested": 10}  # fmt: skip
    text = _methods({"clustering": fit})
    assert "on 3 marker(s): CD56, CD16, NKG2D" in text
    assert (
        "6×5 grid (7 training passes, learning rate 0.05 to 0.01, random start; "
        "166.7 training cells per node on average)"
    ) in text
    assert "40 resampling rounds, each drawing 80% of the nodes, complete linkage" in text
    assert "k = 8 (of 10 requested)" in text and "5,000 cells" in text


def test_provenance_records_what_the_clustering_fit_used():
    from types import SimpleNamespace

    from nkflow.pipeline.stages import _clustering_record

    fit = SimpleNamespace(
        markers=["CD56", "CD16"],
        params={
            "markers": ["CD56", "CD16"],
            "n_resamples": 100,
            "resample_fraction": 0.9,
            "labels": {"1": "x"},
            "samples": ["a", "b"],
            "rlen": 10,
        },
    )
    record = _clustering_record(fit)
    assert record["markers"] == ["CD56", "CD16"] and record["n_samples"] == 2
    assert record["n_resamples"] == 100 and "labels" not in record


def test_overview_counts_fmo_controls_apart_from_analysed_tubes():
    """'31 analysed (ok)' sat beside 'QC removed events from 19 of the 19 analysed tube(s)':
    the 31 counted 12 FMO tubes that only set cut-offs."""
    from nkflow.report.sections import overview_section

    status = pd.DataFrame(
        {
            "sample_id": ["a", "b", "fmo1"],
            "status": ["ok", "ok", "ok"],
            "reason_code": ["OK", "OK", "CONTROL"],
        }
    )
    qc = pd.DataFrame({"sample_id": ["a", "b"], "n_in": [100, 100], "n_out": [99, 100]})
    html = overview_section({"status": status, "qc": qc}, None, [], [0])
    assert "analysed tubes (ok)" in html and "FMO controls (ok)" in html
    assert "analysed (ok)" not in html
    assert "QC removed events from 1 of the 2 analysed tube(s)" in html


def test_flag_summary_counts_rows_and_populations_and_not_judged_rows_are_distinct():
    from nkflow.report.findings import not_judged_table
    from nkflow.report.repair import _flag_summary

    flags = _flags()
    assert "3 population × tube rows (2 populations) flagged" in _flag_summary(flags)
    failing = pd.DataFrame(
        {"failed_rules": ["EVENTS_BELOW_MIN;AREG_EVENTS_BELOW_MIN", "AREG_EVENTS_BELOW_MIN", ""]}
    )
    table = not_judged_table(failing)
    assert table["population × tube rows"].sum() == 3
    assert table.attrs["distinct_rows"] == 2
    from nkflow.report.findings import findings_section

    html = findings_section({"flags": failing.assign(areg_responsive=False)}, None)
    assert "2 distinct population × tube row(s) could not be judged" in html
    assert "counts per rule overlap" in html


def test_note_codes_are_in_the_legend_and_terms_are_defined():
    from nkflow.report.findings import findings_section
    from nkflow.report.repair import _rule_legend

    flags = _flags().assign(
        failed_rules=["", "", "", "CI_LOWER_NOT_ABOVE_ZERO"],
        notes=["", "UNSTIM_ABOVE_STIM", "THRESHOLD_MISMATCH:CD107a", ""],
    )
    legend = _rule_legend(flags)
    assert "Rule and note codes" in legend
    for code in ("UNSTIM_ABOVE_STIM", "THRESHOLD_MISMATCH", "CI_LOWER_NOT_ABOVE_ZERO"):
        assert f"<code>{code}</code>" in legend
    html = findings_section({"flags": flags}, None)
    assert "Terms used in this report" in html
    for term in ("FMO", "pp", "trNK", "circNK", "RI"):
        assert f"<th>{term}</th>" in html


def _scores() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sample_id": ["s1"],
            "population": ["NK"],
            "condition": ["stim"],
            "areg_net": [1.15],
            "areg_net_ci_low": [0.4],
            "areg_net_ci_high": [1.9],
            "ri": [0.03],
            "residency_fraction": [0.0279],
            "order_rank": [1],
            "flaggable": [True],
        }
    )


def test_nets_read_pp_resident_share_reads_percent_and_rank_is_explained():
    """Net AREG read '1.15%' in the flag list, 'pts' in the messages and 'pp' in findings;
    the resident fraction 0.0279 sat beside % columns while findings said 2.8."""
    from nkflow.report.repair import _flag_summary, repair_section

    assert "AREG net 1.1 pp [0.3, 1.9]" in _flag_summary(_flags())
    html = repair_section({"scores": _scores(), "flags": _flags()}, "", [], [0])
    assert "AREG net (pp)" in html and "AREG net %" not in html
    assert "resident % of population" in html and ">2.8<" in html and "0.0279" not in html
    assert "rank: order of the population within its batch and condition" in html


def test_thresholds_table_says_what_value_and_gate_are():
    from nkflow.report.html import _gating_section

    thresholds = pd.DataFrame(
        {
            "tissue": ["blood"],
            "gate": ["NK"],
            "marker": ["AREG"],
            "channel": ["PE-A"],
            "value": [0.39],
            "rule": ["fmo p99.5"],
        }
    )
    html = _gating_section({"thresholds": thresholds}, None, [], [0])
    assert "the population the cut-off was set in" in html
    assert "transformed scale" in html and "scatter channels stay linear" in html
    assert "ratios are unitless" in html


def test_mouse_findings_say_why_composition_and_scoring_are_empty():
    """A single unstimulated mouse tube: the composition table showed a row of blanks and
    'No repair scoring was run (no stimulated tubes)' did not say the panel has no AREG."""
    from nkflow.report.findings import composition_table, findings_section

    meta = pd.DataFrame(
        {
            "sample_id": ["m1"],
            "donor": [""],
            "tissue": [""],
            "timepoint": [""],
            "role": ["unstim"],
            "species": ["mouse"],
        }
    )
    pops = pd.DataFrame(
        {
            "sample_id": ["m1"],
            "population": ["NK"],
            "parent": ["Live"],
            "percent_of_parent": [3.0],
            "ci_low": [2.0],
            "ci_high": [4.0],
        }
    )
    assert composition_table(pops, meta).empty
    counts = pd.DataFrame({"sample_id": ["m1"], "population": ["NK"], "areg_channel": [""]})
    html = findings_section({"populations": pops, "counts": counts}, meta)
    assert "mouse NK carry no CD56" in html and "trNK (ILC1) needs CD49a and CD49b (DX5)" in html
    assert (
        "No repair scoring was run: the batch has no stimulated tube and the panel has no "
        "AREG channel." in html
    )


def test_empty_bright_dim_appendix_table_says_it_is_a_human_read_out():
    from nkflow.report.html import _appendix

    html = _appendix({"bright_dim": pd.DataFrame(columns=["sample_id"])}, [], [0])
    assert "human NK read-out" in html and "mouse NK carry no CD56" in html


def test_methods_count_fmo_controls_apart():
    status = pd.DataFrame(
        {"status": ["ok", "ok", "ok", "parse-failed"], "reason_code": ["OK", "OK", "CONTROL", "X"]}
    )
    text = _methods(status=status)
    assert "4 FCS file(s) (3 ok: 2 analysed tube(s), 1 FMO control(s); 1 parse-failed)" in text
