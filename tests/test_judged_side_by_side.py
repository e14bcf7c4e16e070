"""Repair profile › Stimulation conditions side by side: tubes with too few events are not
judged, not measured zeros (b62, sample_data: 0.00 (0.00 to 0.00) from 0 of 5 AREG+)."""

from __future__ import annotations

import pandas as pd
import pytest

from nkflow.report.repair import _side_by_side

_FEW = "EVENTS_BELOW_MIN;AREG_EVENTS_BELOW_MIN;CI_LOWER_NOT_ABOVE_ZERO;NET_BELOW_MIN"


def _tables(nets, rules):
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
    return scores, flags


@pytest.mark.parametrize(
    ("nets", "rules", "said"),
    [
        ([0.0, 0.0], [_FEW, _FEW], "not judged (2)"),
        ([0.0, -7.14, 1.0], [_FEW, _FEW, "NET_BELOW_MIN"],
         "1.00 (1.00 to 1.00); flagged 0/1 (2 not judged)"),
        # few AREG+ events among many cells is a measured low net: still in the median
        ([0.0, -1.0], ["AREG_EVENTS_BELOW_MIN"] * 2, "-0.50 (-1.00 to 0.00); flagged 0/2<"),
    ],
)  # fmt: skip
def test_tubes_with_too_few_events_are_not_judged(nets, rules, said):
    scores, flags = _tables(nets, rules)
    html = _side_by_side(scores, flags=flags)
    assert said in html


def test_without_flags_every_tube_counts():
    scores, _ = _tables([0.0, 2.0], [_FEW, _FEW])
    assert "1.00 (0.00 to 2.00); flagged 0/2" in _side_by_side(scores)
