"""Replicate FMO tubes pooled into one threshold (nkflow.gating.fmo_pool)."""

from __future__ import annotations

import numpy as np
import pytest

from nkflow.gating.fmo_pool import pool_fmo_replicates
from nkflow.gating.thresholds import fmo_threshold

RNG = np.random.default_rng(11)


def _record(file: str, marker: str = "AREG", gate: str = "NK") -> dict:
    return {"marker": marker, "gate": gate, "control_file": file, "rule": "fmo p99.5",
            "value": 0.0, "ci_low": 0.0, "ci_high": 0.0, "n_events": 0, "note": "",
            "template": "human_tissue"}  # fmt: skip


def test_replicates_are_pooled_where_the_first_stood_and_others_pass():
    a, b = RNG.normal(0.2, 0.05, 3000), RNG.normal(0.25, 0.05, 2000)
    cd69 = RNG.normal(0.3, 0.1, 1000)
    records = [_record("a.fcs"), _record("x.fcs", "CD69"), _record("b.fcs")]
    values = {("a.fcs", "NK", "AREG"): (a, 99.5, 20), ("b.fcs", "NK", "AREG"): (b, 99.5, 20),
              ("x.fcs", "NK", "CD69"): (cd69, 99.5, 20)}  # fmt: skip
    out = pool_fmo_replicates(
        records, values, {"a.fcs": ("AREG", "liver"), "b.fcs": ("AREG", "liver")}
    )
    assert [r["control_file"] for r in out] == ["a.fcs", "x.fcs"]
    value, low, high, _, n = fmo_threshold(np.concatenate([a, b]), percentile=99.5, n_boot=20)
    pooled = out[0]
    assert (pooled["value"], pooled["ci_low"], pooled["ci_high"]) == (value, low, high)
    assert pooled["n_events"] == n == 5000
    assert pooled["rule"] == "fmo p99.5 pooled"
    assert pooled["note"] == "2 replicate FMO tubes pooled: a.fcs, b.fcs"
    assert out[1] is records[1]  # no replicate: unchanged


@pytest.mark.parametrize(
    "values",
    [
        {("a.fcs", "NK", "AREG"): (np.zeros(10), 99.5, 0)},  # b's events missing (it failed)
        {},
    ],
)
def test_replicates_without_their_events_are_left_as_they_were(values):
    records = [_record("a.fcs"), _record("b.fcs")]
    replicate_of = {"a.fcs": ("AREG",), "b.fcs": ("AREG",)}
    assert pool_fmo_replicates(records, values, replicate_of) == records


def test_replicates_of_different_gates_or_templates_stay_apart():
    records = [
        _record("a.fcs"),
        _record("b.fcs", gate="CD3-"),
        {**_record("c.fcs"), "template": "human_blood"},
    ]
    values = {(r["control_file"], r["gate"], "AREG"): (np.ones(5), 99.5, 0) for r in records}
    replicate_of = {f: ("AREG",) for f in ("a.fcs", "b.fcs", "c.fcs")}
    assert pool_fmo_replicates(records, values, replicate_of) == records


def test_a_control_too_small_to_bound_its_percentile_is_named_with_its_count():
    from nkflow.exceptions import LowEventCountWarning
    from nkflow.gating.fmo_pool import warn_small_controls

    small = {**_record("FMO_CD16.fcs", "CD16"), "n_events": 40}
    large = {**_record("FMO_AREG.fcs"), "n_events": 736}
    with pytest.warns(LowEventCountWarning, match=r"FMO_CD16\.fcs.*only 40 events.*736") as got:
        warn_small_controls([small, large], 99.5)
    assert len(got) == 1  # 736 events bound the 99.5th percentile: no warning
    value, low, high, _, n = fmo_threshold(RNG.normal(size=40), percentile=99.5)
    assert n == 40 and high == np.inf and low < value


def test_density_gate_parameters_name_the_axis_they_are_measured_on():
    """A 2-D gate's cut-off on one axis is converted to linear units with that axis's
    transform (the CyTOF singlet band's DNA bounds were left on the arcsinh scale)."""
    from nkflow.gating.scatter import cytof_singlet_polygon

    x, y = RNG.normal(4.0, 0.1, 200), RNG.normal(5.0, 0.2, 200)
    _, params = cytof_singlet_polygon(x, y, {}, n_boot=0, random_state=0)
    assert {p.name: p.axis for p in params} == {
        "event length high": "x", "DNA low": "y", "DNA high": "y",
    }  # fmt: skip
