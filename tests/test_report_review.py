"""What a reviewer of three real reports asked the text to say: comparisons that name their
method and limits, flags with their meaning, methods that describe what the run did, counts
that agree, defined terms and consistent units."""

from __future__ import annotations

import pandas as pd

from nkflow.report.repair import comparisons_block


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
    html = comparisons_block(_comparisons())
    assert "Benjamini-Hochberg" in html
    for term in ("hl_estimate", "p_sign", "n_units", "p_min"):
        assert f"<code>{term}</code>" in html
    assert "1 of 2 row(s) have too few donors to reach p &lt; 0.05" in html
    assert "after: 1 of 2 donors (mixed)" in html  # D2 on dexamethasone, D1 not
    assert "after: 7 of 7 donors<" in html  # every donor exposed: not mixed
    assert "1 row(s) mix glucocorticoid-exposed and unexposed donors" in html
    assert comparisons_block(pd.DataFrame()) == ""


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
