"""Gating-ML 2.0 compliance: FlowKit's reference gates on data1.fcs, event for event.

Every ``gml/*.xml`` of ``flowkit/data/gate_ref`` is applied through nkflow's GatingML path
(``nkflow.io.read_fcs`` container -> :func:`nkflow.gating.gatingml.apply_gatingml`) and each
gate whose id has a ``truth/Results_<id>.txt`` vector must select exactly those events.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import EXTERNAL

from nkflow.exceptions import GatingTemplateError
from nkflow.gating.gatingml import GATING_NS, apply_gatingml
from nkflow.gating.xml_safety import parse_xml_safely

GATE_REF = EXTERNAL / "flowkit"
GATE_REF = GATE_REF / "data" / "gate_ref"
#: The one document FlowKit ships as deliberately invalid (a non-GatingML ``<sample>``
#: element wraps the gate); it must be rejected, not evaluated.
INVALID = "gml_range_gate_attr_testing.xml"
#: Truth files named differently from the gate id they hold (FlowKit's test suite mapping).
TRUTH_ALIAS = {"ParRectangle1": "ParQuadRect"}


def _truth_name(gate_id: str) -> str:
    return TRUTH_ALIAS.get(gate_id, gate_id)


def _cases() -> list:
    if not (GATE_REF / "gml").is_dir():
        return [pytest.param(None, None, marks=pytest.mark.skip(reason=f"{GATE_REF} absent"))]
    cases = []
    for xml in sorted((GATE_REF / "gml").glob("*.xml")):
        if xml.name == INVALID:
            continue
        ids = [
            el.get(f"{{{GATING_NS}}}id")
            for el in parse_xml_safely(xml).iter()
            if el.get(f"{{{GATING_NS}}}id")
        ]
        for gid in ids:
            if (GATE_REF / "truth" / f"Results_{_truth_name(gid)}.txt").is_file():
                cases.append(pytest.param(xml.name, gid, id=f"{xml.stem}-{gid}"))
    return cases


CASES = _cases()


@pytest.fixture(scope="module")
def data1(external: Path):
    from nkflow.io import read_fcs

    return read_fcs(external / "flowkit" / "data" / "gate_ref" / "data1.fcs")


@pytest.fixture(scope="module")
def gated(data1):
    """Each GatingML file applied once to its own copy of the container."""
    cache: dict[str, tuple] = {}

    def run(name: str):
        if name not in cache:
            adata = data1.copy()
            table = apply_gatingml(GATE_REF / "gml" / name, adata)
            cache[name] = (adata, table)
        return cache[name]

    return run


def _truth(gate_id: str) -> np.ndarray:
    path = GATE_REF / "truth" / f"Results_{_truth_name(gate_id)}.txt"
    return np.loadtxt(path, dtype=np.int64).astype(bool)


@pytest.mark.parametrize(("xml_name", "gate_id"), CASES)
def test_gate_matches_reference_event_for_event(gated, xml_name: str, gate_id: str) -> None:
    adata, table = gated(xml_name)
    truth = _truth(gate_id)
    got = adata.obs[gate_id].to_numpy()
    assert got.dtype == bool
    assert got.shape == truth.shape
    mismatched = np.flatnonzero(got != truth)
    assert mismatched.size == 0, (
        f"{gate_id}: {mismatched.size} events differ, e.g. {mismatched[:5]}"
    )
    row = table.set_index("population").loc[gate_id]
    assert row["count"] == truth.sum()


def test_every_truth_vector_is_checked() -> None:
    if not (GATE_REF / "truth").is_dir():
        pytest.skip(f"{GATE_REF} absent")
    checked = {_truth_name(p.values[1]) for p in CASES}
    truth = {p.stem.removeprefix("Results_") for p in (GATE_REF / "truth").glob("*.txt")}
    assert truth <= checked, f"truth vectors without a gate: {sorted(truth - checked)}"


def test_invalid_document_is_rejected_naming_the_file(external: Path, data1) -> None:
    path = external / "flowkit" / "data" / "gate_ref" / "gml" / INVALID
    with pytest.raises(GatingTemplateError, match=INVALID):
        apply_gatingml(path, data1.copy())


def test_populations_table_follows_the_contract(gated) -> None:
    adata, table = gated("gml_parent_quadrant_rect_gate.xml")
    assert list(table.columns[:10]) == [
        "sample_id",
        "population",
        "parent",
        "count",
        "parent_count",
        "percent_of_parent",
        "ci_low",
        "ci_high",
        "percent_of_nk",
        "low_events",
    ]
    rows = table.set_index("population")
    # quadrants are populations of the root; the rectangle is gated inside one quadrant
    assert set(rows.index) == {"FL2P-FL4P", "FL2N-FL4P", "FL2N-FL4N", "FL2P-FL4N", "ParRectangle1"}
    assert rows.loc["ParRectangle1", "parent"] == "FL2P-FL4P"
    assert rows.loc["ParRectangle1", "parent_count"] == rows.loc["FL2P-FL4P", "count"]
    assert rows.loc["FL2P-FL4P", "parent_count"] == adata.n_obs
    assert rows["count"].sum() - rows.loc["ParRectangle1", "count"] == adata.n_obs
    assert (rows["ci_low"] <= rows["percent_of_parent"]).all()
    assert (rows["percent_of_parent"] <= rows["ci_high"]).all()
    assert bool(rows.loc["ParRectangle1", "low_events"])
    assert rows["percent_of_nk"].isna().all()
    assert adata.uns["nkflow"]["gating"]["template"].endswith("gml_parent_quadrant_rect_gate.xml")
