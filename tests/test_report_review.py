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
