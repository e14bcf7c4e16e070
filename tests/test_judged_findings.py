"""Findings and the Comparisons legend say what the comparisons' donors allow (b62 review)."""

from __future__ import annotations

import pandas as pd
import pytest

from nkflow.report.comparisons import comparisons_block
from nkflow.report.findings_summary import changes_block


def _row(p_unchanged: float, p_min_unchanged: float) -> dict:
    return {
        "condition": "stim", "tissue": "liver", "population": "CD56bright", "n_pairs": 6,
        "n_pairs_too_few_events": 0, "n_glucocorticoid_before": 0,
        "n_glucocorticoid_after": 1, "glucocorticoid_confounded": "some",
        "median_difference": 2.99, "n_increase": 6, "n_decrease": 0, "p_value": 0.031,
        "p_min": 0.031, "p_adj": 0.031, "p_value_glucocorticoid_unchanged": p_unchanged,
        "p_min_glucocorticoid_unchanged": p_min_unchanged, "value": "areg_net",
        "comparison": "post - pre",
    }  # fmt: skip


ONLY_WITH = "significant only with the exposed donor(s): "


@pytest.mark.parametrize(
    ("p_unchanged", "p_min_unchanged", "only_with", "detail"),
    [
        # D2 exposed after only: 5 donors left cannot go below 2/2^5
        (0.0625, 0.0625, True, "p 0.0625 without them; the donors left allow p ≥ 0.0625"),
        (float("nan"), float("nan"), True, "no donor is left"),
        (0.2, 0.0078, True, "p 0.2 without them"),
        (0.0078, 0.0078, False, ""),  # the others show it alone: partly confounded only
    ],
)
def test_a_change_resting_on_the_exposed_donors_says_so(
    p_unchanged, p_min_unchanged, only_with, detail
):
    html = changes_block(pd.DataFrame([_row(p_unchanged, p_min_unchanged)]))
    assert (ONLY_WITH + "without them the change cannot be shown" in html) is only_with
    assert ("partly glucocorticoid-confounded" in html) is not only_with
    assert detail in html


def test_comparisons_legend_defines_p_min_on_non_zero_changes_and_counts_lost_pairs():
    table = pd.DataFrame([_row(0.0625, 0.0625), _row(0.0625, 0.0625)]).assign(
        p_min=[1.0, 0.031], n_pairs_too_few_events=[6, 1]
    )
    html = comparisons_block(table)
    assert "donors with a non-zero difference allow (2/2^k" in html
    assert "1 of 2 row(s) have too few donors with a non-zero change" in html
    assert "7 pair(s) in 2 row(s) were left out for too few events" in html
    assert "EVENTS_BELOW_MIN" in html
    assert "no pair left" not in html


def test_comparisons_legend_counts_rows_without_any_pair():
    table = pd.DataFrame([_row(0.0625, 0.0625), _row(0.0625, 0.0625)]).assign(
        n_pairs=[0, 6], n_pairs_too_few_events=[6, 0], p_min=[float("nan"), 0.031]
    )
    html = comparisons_block(table)
    assert "1 row(s) have no pair left (n_pairs 0)" in html
    assert "6 pair(s) in 1 row(s) were left out for too few events" in html


def test_findings_count_rows_without_enough_non_zero_changes():
    table = pd.DataFrame([_row(0.0078, 0.0078), _row(0.0078, 0.0078)]).assign(
        p_adj=[0.031, float("nan")], p_min=[0.031, 1.0]
    )
    html = changes_block(table)
    assert "1 more had too few donors with a non-zero change to reach p ≤ 0.05" in html
