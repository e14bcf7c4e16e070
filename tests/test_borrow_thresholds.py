"""Stimulated tubes take the unstimulated partner's cut-off for markers without an FMO."""

from __future__ import annotations

from nkflow.gating import borrow_unstim_thresholds

UNSTIM = [
    {"marker": "CD107a", "gate": "NK", "value": 0.31, "rule": "quantile (fmo fallback)",
     "sample_id": "D1_unstim", "control_file": "fallback:no-fmo"},
    {"marker": "AREG", "gate": "NK", "value": 0.40, "rule": "quantile (fmo fallback)",
     "sample_id": "D1_unstim", "control_file": "fallback:no-fmo"},
    {"marker": "CD3", "gate": "Lymphocytes", "value": 0.5, "rule": "valley",
     "sample_id": "D1_unstim", "control_file": ""},
]  # fmt: skip
FMO = [{"marker": "AREG", "gate": "NK", "value": 0.42, "rule": "fmo p99.5"}]


def test_only_fallback_cutoffs_without_an_fmo_are_borrowed() -> None:
    borrowed = borrow_unstim_thresholds(UNSTIM, FMO, control_file="D1_unstim.fcs")
    assert [(t["marker"], t["value"]) for t in borrowed] == [("CD107a", 0.31)]
    (t,) = borrowed
    assert t["sample_id"] == ""  # applies to the partner tube
    assert t["rule"] == "unstimulated tube: quantile (fmo fallback)"
    assert t["control_file"] == "D1_unstim.fcs"


def test_nothing_to_borrow_without_fallbacks() -> None:
    assert borrow_unstim_thresholds(UNSTIM[2:], FMO) == []
