"""One rule for "could not be judged", shared by the Findings and the side-by-side table.

mixed3 (sample_data human tubes among vendor files): the Findings counted CD56bright's two
tubes (2 and 3 AREG+ events, intervals up to +5.2 pp) as "could not be judged" while the
Repair profile's side-by-side table showed "1.40 (1.35 to 1.46); flagged 0/2" for them,
which reads as two measured negatives.
"""

from __future__ import annotations

import pandas as pd
import pytest

from nkflow.report.findings_responses import not_judged_table, responses_by_group
from nkflow.report.repair import _side_by_side
from nkflow.tl._score_judged import FEW_AREG_REASON, not_judged, unjudged_rules

_FEW_AREG = "AREG_EVENTS_BELOW_MIN;CI_LOWER_NOT_ABOVE_ZERO"

# mixed3's flaggable rows, numbers from its tables/flags.csv
ROWS = pd.DataFrame(
    {
        "sample_id": ["D1_stim", "D2_stim", "D1_stim", "D2_stim"],
        "donor": ["D1", "D2", "D1", "D2"],
        "tissue": "blood",
        "timepoint": "pre",
        "condition": "stim",
        "population": ["CD56bright", "CD56bright", "NK", "NK"],
        "flaggable": True,
        "areg_responsive": False,
        "areg_net": [1.459854, 1.345291, -0.729699, 0.151569],
        "areg_net_ci_high": [5.166317, 3.879918, -0.200366, 0.614906],
        "failed_rules": [
            _FEW_AREG,
            _FEW_AREG,
            f"{_FEW_AREG};NET_BELOW_MIN",  # 7 AREG+ of 1,978: the interval ends at -0.20
            "CI_LOWER_NOT_ABOVE_ZERO;NET_BELOW_MIN",
        ],
    }
)


def test_the_findings_and_the_side_by_side_table_count_the_same_rows():
    findings = not_judged_table(ROWS)
    assert findings.attrs["distinct_rows"] == 2
    assert findings.set_index("rule").loc["AREG_EVENTS_BELOW_MIN", "reason"] == FEW_AREG_REASON
    html = _side_by_side(ROWS, flags=ROWS)
    assert "<td>CD56bright</td><td>not judged (2)</td>" in html
    assert "<td>NK</td><td>-0.29 (-0.73 to 0.15); flagged 0/2</td>" in html


def test_responses_by_group_counts_unjudged_donors_by_the_same_rule():
    flags = pd.concat([ROWS, ROWS.iloc[[0]].assign(
        donor="D3", sample_id="D3_stim", areg_responsive=True, failed_rules="")])  # fmt: skip
    row = responses_by_group(flags).set_index("population").loc["CD56bright"]
    assert row["donors responded"] == "1 of 3 (2 not judged)"


@pytest.mark.parametrize(
    ("rules", "ci_high", "expected"),
    [
        ("AREG_EVENTS_BELOW_MIN", 5.2, ["AREG_EVENTS_BELOW_MIN"]),
        ("AREG_EVENTS_BELOW_MIN", 0.0, []),  # no increase inside the interval
        ("AREG_EVENTS_BELOW_MIN", float("nan"), ["AREG_EVENTS_BELOW_MIN"]),
        ("EVENTS_BELOW_MIN;AREG_EVENTS_BELOW_MIN", -1.0, ["EVENTS_BELOW_MIN"]),
        ("CI_LOWER_NOT_ABOVE_ZERO;NET_BELOW_MIN", 3.0, []),  # judged, did not respond
        ("NO_UNSTIM;POSITIVE_CONTROL_FAILED", 3.0, ["NO_UNSTIM", "POSITIVE_CONTROL_FAILED"]),
        ("", 3.0, []),
    ],
)
def test_unjudged_rules(rules, ci_high, expected):
    flags = pd.DataFrame({"failed_rules": [rules], "areg_net_ci_high": [ci_high]})
    assert unjudged_rules(flags).iloc[0] == expected
    assert not_judged(flags).iloc[0] == bool(expected)


def test_without_an_interval_too_few_areg_events_are_not_judged():
    flags = pd.DataFrame({"failed_rules": ["AREG_EVENTS_BELOW_MIN", None]})
    assert not_judged(flags).tolist() == [True, False]
    assert not_judged(pd.DataFrame()).empty
