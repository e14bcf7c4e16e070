"""GatingML export round trip and FlowJo workspace interop through flowkit.

- nkflow's resolved gates, exported as GatingML 2.0 with the transforms nkflow used, must
  select the same events when flowkit re-imports them (logicle and arcsinh; the file's
  spillover, a user matrix, or no compensation).
- FlowJo workspaces in ../shared/external: nkflow's counts match FlowJo's saved counts
  exactly (flowkit's small workspaces) or within 1% per gate (FlowSOM's 68983 workspace).
"""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from nkflow.exceptions import FCSReadError, GatingError, GatingTemplateError
from nkflow.gating.flowjo import COMPARISON_COLUMNS, apply_flowjo_workspace, flowjo_counts
from nkflow.gating.gates import (
    BooleanGate,
    Dimension,
    Operand,
    PolygonGate,
    RectangleGate,
    evaluate_gates,
)
from nkflow.gating.gatingml import apply_gatingml, export_gatingml, validate_gatingml
from nkflow.io import nkflow_uns
from nkflow.pp.transform import arcsinh, logicle

FLUOR = ["FL1-A", "FL2-A", "FL3-A"]
CHANNELS = ["FSC-A", "SSC-A", *FLUOR, "Time"]
SPILL = np.array([[1.0, 0.12, 0.02], [0.05, 1.0, 0.2], [0.0, 0.08, 1.0]])


def _container(kind: str, compensation: str, n: int = 20_000, seed: int = 0) -> ad.AnnData:
    """Synthetic sample: raw events -> compensated -> transformed, as the pipeline stores it."""
    rng = np.random.default_rng(seed)
    pos = rng.random((n, 3)) < 0.4
    fl = np.where(pos, rng.lognormal(8.5, 0.8, (n, 3)), rng.normal(0, 150, (n, 3)))
    scatter = np.column_stack([rng.normal(60_000, 20_000, n), rng.normal(30_000, 12_000, n)])
    comp_lin = np.column_stack([scatter, fl, np.sort(rng.uniform(0, 1000, n))])
    raw = comp_lin.copy()
    if compensation != "none":
        raw[:, 2:5] = comp_lin[:, 2:5] @ SPILL
    raw = raw.astype(np.float32)
    comp32 = raw.astype(np.float64)
    if compensation != "none":
        comp32[:, 2:5] = raw[:, 2:5].astype(np.float64) @ np.linalg.inv(SPILL)
    comp32 = comp32.astype(np.float32)
    X = comp32.copy()
    if kind == "logicle":
        params = {ch: {"T": 262144.0, "W": 0.5, "M": 4.5, "A": 0.0} for ch in FLUOR}
        X[:, 2:5] = logicle(comp32[:, 2:5])
    else:
        params = {ch: {"cofactor": 150.0} for ch in FLUOR}
        X[:, 2:5] = arcsinh(comp32[:, 2:5], cofactor=150.0)
    var = pd.DataFrame(
        {
            "marker": ["", "", "CD3", "CD56", "CD16", ""],
            "pns": ["", "", "CD3 FITC", "CD56 PE", "CD16 APC", ""],
            "kind": ["scatter", "scatter", *["fluorescence"] * 3, "time"],
            "range": 262144.0,
            "transform": ["linear", "linear", kind, kind, kind, "linear"],
        },
        index=CHANNELS,
    )
    spill = {"channels": FLUOR, "matrix": SPILL.tolist()}
    source = {"file": "file", "user": "user:matrix.csv", "none": "none"}[compensation]
    comp_rec: dict = {"source": source, "channels": FLUOR if compensation != "none" else []}
    if compensation == "user":
        comp_rec["matrix"] = SPILL.tolist()
        comp_rec["channels"] = FLUOR
    uns = {
        "nkflow": {
            "sample": {"sample_id": f"syn_{kind}_{compensation}"},
            "spillover": spill if compensation == "file" else None,
            "compensation": comp_rec,
            "transform": {"kind": kind, "params": params},
        }
    }
    obs = pd.DataFrame(index=[str(i) for i in range(n)])
    return ad.AnnData(X=X, obs=obs, var=var, layers={"compensated": comp32}, uns=uns)


def _gates(adata: ad.AnnData) -> list:
    """A hierarchy with every gate kind nkflow resolves to, boundaries from the data."""
    x = pd.DataFrame(adata.X, columns=adata.var_names)
    q = x.quantile
    return [
        PolygonGate(
            "Cells",
            None,
            "FSC-A",
            "SSC-A",
            (
                (20_000.5, 5_000.25),
                (110_000.0, 8_000.0),
                (100_000.0, 70_000.0),
                (25_000.0, 50_000.0),
            ),
        ),
        RectangleGate("CD3-", "Cells", (Dimension("FL1-A", max=float(q(0.55)["FL1-A"])),)),
        RectangleGate(
            "CD56+CD16 window",
            "CD3-",
            (
                Dimension("FL2-A", min=float(q(0.5)["FL2-A"])),
                Dimension("FL3-A", min=float(q(0.2)["FL3-A"]), max=float(q(0.9)["FL3-A"])),
            ),
        ),
        PolygonGate(
            "NK",
            "CD3-",
            "FL2-A",
            "FL3-A",
            tuple(
                (float(a), float(b))
                for a, b in [
                    (q(0.3)["FL2-A"], q(0.1)["FL3-A"]),
                    (q(0.99)["FL2-A"], q(0.2)["FL3-A"]),
                    (q(0.95)["FL2-A"], q(0.97)["FL3-A"]),
                    (q(0.45)["FL2-A"], q(0.8)["FL3-A"]),
                ]
            ),
        ),
        RectangleGate("Late", "Cells", (Dimension("Time", min=500.0),)),
        BooleanGate(
            "NK not window", "NK", "and", (Operand("NK"), Operand("CD56+CD16 window", True))
        ),
        BooleanGate("NK or late", None, "or", (Operand("NK"), Operand("Late"))),
        BooleanGate("not Cells", None, "not", (Operand("Cells"),)),
        BooleanGate("only NK", None, "and", (Operand("NK"),)),
    ]


@pytest.mark.parametrize("compensation", ["file", "user", "none"])
@pytest.mark.parametrize("kind", ["logicle", "arcsinh"])
def test_export_round_trip_identical_membership(tmp_path: Path, kind: str, compensation: str):
    adata = _container(kind, compensation)
    gates = _gates(adata)
    expected = evaluate_gates(gates, pd.DataFrame(adata.X, columns=adata.var_names))
    comp = {"file": "FCS", "none": "uncompensated"}.get(compensation) or {
        "channels": FLUOR,
        "matrix": SPILL.tolist(),
    }
    out = export_gatingml(
        gates, adata.uns["nkflow"]["transform"], tmp_path / "g.xml", compensation=comp
    )
    assert out.is_file()
    re_gated = adata.copy()
    table = apply_gatingml(out, re_gated)
    assert set(table["population"]) == set(expected)
    for gid, mask in expected.items():
        got = re_gated.obs[gid].to_numpy()
        assert 0 < mask.sum() < mask.size, f"{gid}: degenerate test gate"
        diff = np.flatnonzero(got != mask)
        assert diff.size == 0, f"{gid}: {diff.size} events differ after the round trip"
    rows = table.set_index("population")
    assert rows.loc["NK not window", "parent"] == "NK"
    assert rows.loc["CD3-", "median_CD56"] == pytest.approx(
        float(np.median(adata.X[expected["CD3-"], 3]))
    )


def test_template_gates_on_sample_data_round_trip(sample_data: Path, tmp_path: Path) -> None:
    """nkflow's human template on a committed sample: exported gates re-import identically."""
    from nkflow.gating import gate
    from nkflow.gating.gatingml import export_sample_gatingml
    from nkflow.io import read_fcs
    from nkflow.pp import compensate, transform

    fcs = sample_data / "human" / "D1_blood_pre_unstim.fcs"
    if not fcs.is_file():
        pytest.skip(f"{fcs} absent")
    adata = read_fcs(fcs, sample_id="D1_blood_pre_unstim")
    compensate(adata)
    transform(adata)
    with pytest.warns(Warning):  # missing FMO tubes and small populations are announced
        gate(adata, "human_blood", random_state=0, n_boot=20)
    pops = [p["name"] for p in nkflow_uns(adata)["gating"]["populations"]]
    path = export_sample_gatingml(adata, tmp_path / "D1.xml")
    assert 'compensation-ref="FCS"' in path.read_text()
    again = adata.copy()
    again.obs = again.obs[["sample_id"]].copy()
    table = apply_gatingml(path, again)
    assert list(table["population"]) == pops
    for pop in pops:
        a, b = adata.obs[pop].to_numpy(), again.obs[pop].to_numpy()
        assert np.array_equal(a, b), f"{pop}: {(a != b).sum()} events differ"
    assert adata.obs["NK"].sum() > 100


def test_exported_document_is_schema_valid_gatingml(tmp_path: Path) -> None:
    adata = _container("logicle", "file", n=2_000)
    path = export_gatingml(_gates(adata), adata.uns["nkflow"]["transform"], tmp_path / "g.xml")
    text = path.read_text()
    assert 'transforms:logicle transforms:T="262144.0"' in text
    assert 'compensation-ref="FCS"' in text
    # flowkit validates against the Gating-ML 2.0 schema; names come back from custom_info
    assert validate_gatingml(path) == [g.id for g in _gates(adata)]


def test_export_rejects_what_gatingml_cannot_express(tmp_path: Path) -> None:
    unbounded = RectangleGate("open", None, (Dimension("FL1-A"),))
    with pytest.raises(GatingError, match="no bounded dimension"):
        export_gatingml([unbounded], None, tmp_path / "x.xml")
    with pytest.raises(GatingError, match="cannot be exported"):
        export_gatingml(
            [RectangleGate("r", None, (Dimension("FL1-A", min=0.1),))],
            {"kind": "hyperlog", "params": {"FL1-A": {}}},
            tmp_path / "x.xml",
        )


def test_apply_to_several_containers_and_missing_channel(tmp_path: Path) -> None:
    a, b = _container("logicle", "none", n=3_000, seed=1), _container("logicle", "none", n=2_000)
    b.uns["nkflow"]["sample"]["sample_id"] = "other"
    gates = _gates(a)[:2]
    path = export_gatingml(
        gates, a.uns["nkflow"]["transform"], tmp_path / "g.xml", compensation="uncompensated"
    )
    table = apply_gatingml(path, {"s1": a, "s2": b})
    assert list(table["sample_id"].unique()) == ["s1", "s2"]
    assert table.groupby("sample_id").size().tolist() == [2, 2]
    lacking = a[:, [c for c in a.var_names if c != "FL1-A"]].copy()
    with pytest.raises(GatingError, match=r"FL1-A"):
        apply_gatingml(path, lacking)


def test_gate_ids_cannot_overwrite_container_columns(tmp_path: Path) -> None:
    adata = _container("logicle", "none", n=500)
    adata.obs["sample_id"] = "s1"
    gates = [RectangleGate("sample_id", None, (Dimension("FSC-A", min=1.0),))]
    path = export_gatingml(gates, None, tmp_path / "g.xml", compensation="uncompensated")
    with pytest.raises(GatingTemplateError, match="overwrite"):
        apply_gatingml(path, adata)
    assert (adata.obs["sample_id"] == "s1").all()


# ----------------------------------------------------------------- FlowJo workspaces


def _flowkit_data(external: Path) -> Path:
    return external / "flowkit" / "data"


#: flowkit's FlowJo 10 workspaces (folder, file) whose saved counts nkflow must equal exactly.
EXACT_WSP = [
    ("simple_diamond_example", "simple_diamond_example_quad_gate.wsp"),
    ("simple_diamond_example", "test_data_diamond_asinh_rect.wsp"),
    ("simple_diamond_example", "test_data_diamond_asinh_rect2.wsp"),
    ("simple_diamond_example", "test_data_diamond_biex_rect.wsp"),
    ("simple_line_example", "single_ellipse_51_events.wsp"),
]


@pytest.mark.parametrize(("folder", "wsp"), EXACT_WSP, ids=[w for _, w in EXACT_WSP])
def test_flowkit_workspaces_match_flowjo_exactly(external: Path, folder: str, wsp: str) -> None:
    d = _flowkit_data(external) / folder
    res = apply_flowjo_workspace(d / wsp, d)
    comp = res.comparison
    assert list(comp.columns) == COMPARISON_COLUMNS
    assert len(comp) > 0 and comp["count_flowjo"].notna().all()
    bad = comp[comp["difference"] != 0]
    assert bad.empty, bad.to_string()
    for sid, members in res.membership.items():
        for pop in members:
            n = comp.set_index(["sample_id", "population"]).loc[(sid, pop), "count_nkflow"]
            assert members[pop].sum() == n


def test_unreadable_fcs_in_a_workspace_is_named(external: Path, tmp_path: Path) -> None:
    src = _flowkit_data(external) / "simple_line_example" / "single_ellipse_51_events.wsp"
    wsp = tmp_path / src.name
    wsp.write_bytes(src.read_bytes())
    bad = tmp_path / "data_set_simple_line_100.fcs"
    bad.write_bytes(b"FCS3.0   not really an FCS file")
    with pytest.raises(FCSReadError, match=bad.name):
        apply_flowjo_workspace(wsp, tmp_path)


def test_stale_flowjo_counts_are_reported_not_hidden(external: Path) -> None:
    # FlowJo saved poly1 = 0 in this workspace although its polygon (named "poly50")
    # holds 50 of the 100 events; rect1 = 0 is right. A stale count shows as a difference.
    d = _flowkit_data(external) / "simple_line_example"
    comp = apply_flowjo_workspace(d / "simple_poly_and_rect_v2_poly50.wsp", d).comparison
    rows = comp.set_index("population")
    assert rows.loc["poly1", ["count_nkflow", "count_flowjo", "difference"]].tolist() == [50, 0, 50]
    assert np.isnan(rows.loc["poly1", "difference_percent"])
    assert rows.loc["rect1", "difference"] == 0
    # count="-1" means FlowJo never computed the gate: no FlowJo count, no difference
    counts = flowjo_counts(d / "simple_poly_and_rect.wsp")
    assert counts["count_flowjo"].isna().all()


#: FlowSOM's 68983 workspace, FlowJo's saved counts (also in the external README).
FLOWSOM_COUNTS = {
    "Lymphocytes": 19212,
    "Singlets": 18689,
    "Singlets2": 18573,
    "NK1_1+": 923,
    "NK cells": 312,
    "NK T cells": 535,
    "NK1_1-": 17458,
    "B cells": 2459,
    "T cells": 10745,
    "ab T cells": 9188,
    "CD4 T cells": 7480,
    "CD8 T cells": 1407,
    "DN T cells": 266,
}


@pytest.fixture(scope="module")
def flowsom_result(external: Path):
    d = external / "flowsom" / "inst" / "extdata"
    return apply_flowjo_workspace(d / "gating.wsp", [d / "68983.fcs"])


@pytest.mark.parametrize("population", sorted(FLOWSOM_COUNTS))
def test_flowsom_workspace_within_one_percent(flowsom_result, population: str) -> None:
    rows = flowsom_result.comparison.set_index("population")
    assert rows.loc[population, "count_flowjo"] == FLOWSOM_COUNTS[population]
    assert abs(rows.loc[population, "difference_percent"]) <= 1.0


def test_flowsom_workspace_populations_table(flowsom_result) -> None:
    pops = flowsom_result.populations.set_index("population")
    assert pops.loc["NK cells", "parent"] == "NK1_1+"
    assert pops.loc["NK cells", "count"] == 312
    assert pops.loc["Lymphocytes", "parent"] == ""
    members = flowsom_result.membership["68983.fcs"]
    assert not (members["NK cells"] & members["NK T cells"]).any()
    assert (members["NK cells"] <= members["NK1_1+"]).all()


def test_flowjo9_workspace_is_refused_with_a_reason(external: Path) -> None:
    d = external / "flowworkspacedata" / "inst" / "extdata"
    with pytest.raises(GatingTemplateError, match=r"a FlowJo 9\.2 XML workspace; .* FlowJo 10"):
        apply_flowjo_workspace(d / "A2004Analysis.xml", d / "a2004_O1T2pb05i_A2_A02.fcs")


def test_diva_xml_is_refused_with_a_reason(external: Path) -> None:
    d = external / "flowworkspacedata" / "inst" / "extdata" / "diva"
    with pytest.raises(GatingTemplateError, match=r"a BD FACSDiva XML export .* FlowJo 10"):
        apply_flowjo_workspace(d / "PE_2.xml", d / "124500.fcs")


def test_flowjo_gatingml_export_without_compensation_ref_is_applied_with_a_warning(
    external: Path,
) -> None:
    # FlowSOM's manualGating.xml (FlowJo's GatingML export of the 68983 gates) omits the
    # compensation-ref attribute the Gating-ML 2.0 schema requires and names compensated
    # channels 'Comp-<channel>'; nkflow applies it with a named warning, and the counts
    # match FlowJo's own (gating.wsp, external README section 4) within 1 %.
    from nkflow import io as nkio
    from nkflow.gating.gatingml import GatingMLQuirkWarning

    d = external / "flowsom" / "inst" / "extdata"
    adata = nkio.read_fcs(d / "68983.fcs")
    with pytest.warns(GatingMLQuirkWarning, match="compensation-ref") as rec:
        table = apply_gatingml(d / "manualGating.xml", adata)
    assert any("manualGating.xml" in str(w.message) for w in rec)
    counts = sorted(table["count"], reverse=True)
    for flowjo in (19212, 18689, 18573, 10745, 7480, 2459, 1407, 312):
        assert min(abs(c - flowjo) for c in counts) <= 0.01 * flowjo


#: Reference counts shipped with FlowJo 9 / DiVa exports (external README section 4).
OTHER_REFERENCES = {
    "flowjo9-A2004": (
        ("flowworkspacedata/inst/extdata", "A2004Analysis.xml", "a2004_O1T2pb05i_A2_A02.fcs"),
        {"Live": 34469, "APC": 2839, "B Cell": 1727, "mDC": 449, "pDC": 81, "Monocytes": 1846},
    ),
    "diva-PE_2": (
        ("flowworkspacedata/inst/extdata/diva", "PE_2.xml", "124500.fcs"),
        {"P1": 17902, "P2": 17543, "P3": 12334, "P4": 1160, "P5": 1100},
    ),
}


@pytest.mark.parametrize("ref", sorted(OTHER_REFERENCES))
def test_flowjo9_and_diva_reference_counts(external: Path, ref: str) -> None:
    (folder, xml, fcs), expected = OTHER_REFERENCES[ref]
    d = external / folder
    try:
        res = apply_flowjo_workspace(d / xml, d / fcs)
    except GatingTemplateError as exc:
        pytest.skip(f"flowkit cannot read {xml}, so its reference counts are not checked: {exc}")
    counts = res.comparison.drop_duplicates("population").set_index("population")["count_nkflow"]
    for pop, n in expected.items():
        assert abs(counts[pop] - n) <= 0.01 * n, f"{pop}: nkflow {counts[pop]} vs {n}"
