"""The marker that tells metaclusters sharing a name apart must read truthfully."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from nkflow.tl.annotate import name_metaclusters

_THRESHOLDS = {
    "CD56": {"value": 0.5, "rule": "fmo"},
    "CD127": {"value": 0.7, "rule": "valley"},
    "NKG2D": {"value": 0.5, "rule": "valley"},
}


@pytest.mark.parametrize(
    ("medians", "expected"),
    [
        # Within each clash CD127 spreads most, and the old within-clash call named 3
        # "(CD127hi)" at 0.214 below 1 "(CD127lo)" at 0.275. Against CD127's median over all
        # four (0.2445) both of 1 and 2 are above and both of 3 and 4 below: CD127 cannot
        # tell either pair apart; NKG2D (median 0.81) can.
        (
            {
                "CD56": [1, 1, 0, 0],
                "CD127": [0.275, 0.6, 0.214, 0.05],
                "NKG2D": [0.8, 0.85, 0.8, 0.82],
            },
            {
                1: "CD56+ (NKG2Dlo)",
                2: "CD56+ (NKG2Dhi)",
                3: "CD56- (NKG2Dlo)",
                4: "CD56- (NKG2Dhi)",
            },
        ),
        # no marker puts either pair on both sides of its overall median (CD127 0.2, NKG2D
        # 0.75): each pair is compared within itself, in words that say so
        (
            {
                "CD56": [1, 1, 0, 0],
                "CD127": [0.3, 0.35, 0.1, 0.05],
                "NKG2D": [0.9, 1.0, 0.6, 0.5],
            },
            {
                1: "CD56+ (less NKG2D)",
                2: "CD56+ (more NKG2D)",
                3: "CD56- (more NKG2D)",
                4: "CD56- (less NKG2D)",
            },
        ),
        # nothing tells them apart: numbered, without "#" (CSV readers cut a comment there)
        (
            {"CD56": [1, 1, 0, 0], "CD127": [0.3, 0.3, 0.1, 0.1], "NKG2D": [0.9, 0.9, 0.6, 0.6]},
            {1: "CD56+ [1]", 2: "CD56+ [2]", 3: "CD56- [1]", 4: "CD56- [2]"},
        ),
    ],
    ids=["hi-lo across clashes", "within each clash", "alike"],
)
def test_hi_and_lo_are_against_every_metacluster(medians: dict, expected: dict) -> None:
    table = pd.DataFrame(medians, index=[1, 2, 3, 4], dtype=float)
    names = name_metaclusters(table, _THRESHOLDS)
    assert names == expected
    for marker in ("CD127", "NKG2D"):
        tagged = {k: re.search(rf"\({marker}(hi|lo)\)", n) for k, n in names.items()}
        hi = [table.loc[k, marker] for k, m in tagged.items() if m and m.group(1) == "hi"]
        lo = [table.loc[k, marker] for k, m in tagged.items() if m and m.group(1) == "lo"]
        assert not hi or not lo or min(hi) > max(lo)


def test_names_without_a_marker_call_start_with_their_tag() -> None:
    """On 68983.fcs (mouse, 332 NK) no metacluster was called on any marker: the names read
    " (NK1.1lo) [1]", with a leading space, in the tables and the report."""
    thresholds = {"NK1.1": {"value": 0.5, "rule": "quantile", "spread": 1.0}}
    table = pd.DataFrame({"NK1.1": [0.3, 0.4, 0.6, 0.7, 0.5, 0.5]}, index=range(1, 7))
    names = name_metaclusters(table, thresholds)
    assert all(n == n.strip() and n for n in names.values()), names
    assert names == {
        1: "(NK1.1lo) [1]",
        2: "(NK1.1lo) [2]",
        3: "(NK1.1hi) [1]",
        4: "(NK1.1hi) [2]",
        5: "(NK1.1lo) [3]",
        6: "(NK1.1lo) [4]",
    }


def test_a_cut_off_recorded_under_another_name_of_the_marker_is_used():
    """68983 read without a species names its CD3 channel CD3; the mouse template records
    its cut-off as CD3e. The names fell back to the data's own valley (CD19hi on NK)."""
    import anndata as ad
    import numpy as np

    from nkflow.tl.annotate import resolve_thresholds

    adata = ad.AnnData(np.zeros((4, 2), np.float32))
    adata.uns["nkflow"] = {
        "thresholds": [{"marker": "CD3e", "value": 1.25}, {"marker": "NK1.1", "value": 0.5}]
    }
    pooled = np.random.default_rng(0).normal(size=(200, 3))
    out = resolve_thresholds([adata], ["CD3", "NK1.1", "CD8"], pooled)
    assert out["CD3"] == {"value": 1.25, "rule": "gating", "source": "gating"}
    assert out["NK1.1"]["value"] == 0.5
    assert out["CD8"]["source"] == "data"
