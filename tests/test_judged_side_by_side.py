"""Repair profile › Stimulation conditions side by side: tubes that could not be judged are
not measured zeros (b62, sample_data: 0.00 (0.00 to 0.00) from 0 of 5 AREG+)."""

from __future__ import annotations

import pandas as pd
import pytest

from nkflow.report.repair import _side_by_side

_FEW = "EVENTS_BELOW_MIN;AREG_EVENTS_BELOW_MIN;CI_LOWER_NOT_ABOVE_ZERO;NET_BELOW_MIN"


def _tables(nets, rules, ci_high=None):
    scores = pd.DataFrame(
        {
            "sample_id": [f"D{i}_blood_pre_stim" for i in range(len(nets))],
            "tissue": "blood",
            "timepoint": "pre",
            "condition": "stim",
            "population": "metacluster:1",
            "flaggable": True,
            "areg_responsive": False,
            "areg_net": nets,
        }
    )
    flags = scores[["sample_id", "population", "condition"]].assign(failed_rules=rules)
    if ci_high is not None:
        flags["areg_net_ci_high"] = ci_high
    return scores, flags


@pytest.mark.parametrize(
    ("nets", "rules", "ci_high", "said"),
    [
        ([0.0, 0.0], [_FEW, _FEW], None, "not judged (2)"),
        ([0.0, -7.14, 1.0], [_FEW, _FEW, "NET_BELOW_MIN"], None,
         "1.00 (1.00 to 1.00); flagged 0/1 (2 not judged)"),
        # few AREG+ events whose interval stays at or below zero: a measured non-response
        ([-0.7, -1.0], ["AREG_EVENTS_BELOW_MIN"] * 2, [-0.2, 0.0],
         "-0.85 (-1.00 to -0.70); flagged 0/2<"),
        # ... while one reaching above zero cannot rule a response out
        ([-0.7, 1.5], ["AREG_EVENTS_BELOW_MIN"] * 2, [-0.2, 5.2],
         "-0.70 (-0.70 to -0.70); flagged 0/1 (1 not judged)"),
        # a tube whose positive control failed is not judged either
        ([0.5, 1.0], ["POSITIVE_CONTROL_FAILED", "NET_BELOW_MIN"], [2.0, 2.0],
         "1.00 (1.00 to 1.00); flagged 0/1 (1 not judged)"),
    ],
)  # fmt: skip
def test_tubes_that_could_not_be_judged_leave_the_median(nets, rules, ci_high, said):
    scores, flags = _tables(nets, rules, ci_high)
    html = _side_by_side(scores, flags=flags)
    assert said in html


def test_without_flags_every_tube_counts():
    scores, _ = _tables([0.0, 2.0], [_FEW, _FEW])
    assert "1.00 (0.00 to 2.00); flagged 0/2" in _side_by_side(scores)
