"""``nkflow run`` with default settings on real public files (issue 14's "done when").

Every file is used as it was published: no edited template, no sheet unless the
folder has one. Mass cytometry is recognised and gated without scatter or spillover;
a mouse NK1.1 panel is recognised as mouse and gated with the shipped template; a
T-cell panel without any NK anchor stops before anything is written.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from nkflow.exceptions import PanelMismatchError
from nkflow.pipeline import run

CYTOF = {
    "cytonorm": "cytonorm/inst/extdata",
    "supercellcyto": "supercellcyto/inst/extdata",
}


def _batch(external: Path, rel: str, tmp_path: Path, pattern: str = "*.fcs") -> Path:
    folder = tmp_path / "batch"
    folder.mkdir()
    for fcs in sorted((external / rel).glob(pattern)):
        shutil.copy(fcs, folder / fcs.name)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CYTOF))
def test_cytof_batches_run_with_defaults(
    external: Path, tmp_path: Path, fast_config, name: str
) -> None:
    batch = _batch(external, CYTOF[name], tmp_path)
    res = run(batch, tmp_path / "out", config=fast_config)
    status = res.status
    assert (status["status"] == "ok").all(), status.to_string()
    provenance = json.loads((tmp_path / "out" / "provenance.json").read_text())
    for record in provenance["preprocessing"].values():
        assert record["technology"] == "mass_cytometry"
        assert (
            record["compensation"] == "none" and "mass cytometry" in record["compensation_reason"]
        )
        assert record["transform"] == "arcsinh"
    plan = provenance["gating_plan"]
    assert list(plan) == ["human_cytof"]
    assert {"NK", "CD56bright", "CD56dim"} <= set(plan["human_cytof"]["kept"]) | {
        s["gate"] for s in plan["human_cytof"]["substitutions"]
    }
    pops = res.populations.set_index(["sample_id", "population"])
    for sid in status["sample_id"]:
        nk = pops.loc[(sid, "NK"), "count"]
        assert nk > 0, sid
        bright = pops.loc[(sid, "CD56bright"), "count"]
        dim = pops.loc[(sid, "CD56dim"), "count"]
        if nk >= 50:  # enough to split (the CD56-high cluster's minimum)
            assert bright + dim == nk, sid  # the two subsets partition NK
        else:  # not measured: NA, not 0 % CD56bright beside 100 % CD56dim
            assert pd.isna(bright) and pd.isna(dim), sid
    assert (tmp_path / "out" / "report.html").is_file()


@pytest.mark.slow
def test_mouse_panel_is_recognised_and_gated_without_a_sheet(
    external: Path, tmp_path: Path, fast_config
) -> None:
    """68983.fcs: NK1.1 tells the species; manual counts NK 312, NK T 535 (gating.wsp)."""
    batch = _batch(external, "flowsom/inst/extdata", tmp_path, "68983.fcs")
    res = run(batch, tmp_path / "out", config=fast_config)
    assert (res.status["status"] == "ok").all(), res.status.to_string()
    provenance = json.loads((tmp_path / "out" / "provenance.json").read_text())
    assert list(provenance["gating_plan"]) == ["mouse"]
    counts = res.populations.set_index("population")["count"]
    assert counts["NK"] == pytest.approx(312, rel=0.15)
    assert counts["NKT"] == pytest.approx(535, rel=0.15)


def test_panel_without_nk_anchor_stops_before_anything_is_written(
    external: Path, tmp_path: Path
) -> None:
    donor = sorted(p for p in (external / "flowatlas" / "data").iterdir() if p.is_dir())[0]
    out = tmp_path / "out"
    with pytest.raises(PanelMismatchError, match="no NK anchor") as info:
        run(donor, out)
    message = str(info.value)
    assert "\n" not in message and "CD56" in message and "NKp46" in message
    assert "the panel has" in message and "CD3" in message
    assert not out.exists()


def test_check_lists_what_a_t_cell_panel_supports(external: Path) -> None:
    from click.testing import CliRunner

    from nkflow.cli import main

    donor = sorted(p for p in (external / "flowatlas" / "data").iterdir() if p.is_dir())[0]
    result = CliRunner().invoke(main, ["check", str(donor)])
    assert result.exit_code == 1
    assert "What this panel supports" in result.output
    assert "Lymphocytes" in result.output or "Live" in result.output
    failed = [line for line in result.output.splitlines() if line.startswith("nkflow: FAILED")]
    assert len(failed) == 1 and "no NK anchor" in failed[0]


def test_check_prints_the_plan_of_the_sample_batch(sample_data: Path) -> None:
    from click.testing import CliRunner

    from nkflow.cli import main

    result = CliRunner().invoke(main, ["check", str(sample_data / "human")])
    assert result.exit_code == 0, result.output
    assert "template 'human_blood' resolved for a flow panel" in result.output
    assert "template 'human_tissue' resolved for a flow panel" in result.output


def test_a_mass_cytometry_file_in_a_flow_batch_fails_alone(
    external: Path, sample_data: Path, tmp_path: Path, fast_config
) -> None:
    """Two flow tubes and one CytoNorm CyTOF file in one folder: the CyTOF file fails with
    a line that says why, the flow tubes run, and nothing is pooled across technologies.
    Before, all three came back ok and the clustering had one shared marker (CD56)."""
    from nkflow.io import check_batch

    cytof = sorted((external / CYTOF["cytonorm"]).glob("*.fcs"))
    if not cytof:
        pytest.skip("CytoNorm files not available (../shared/external)")
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in ("D1_blood_pre_unstim.fcs", "D2_blood_pre_unstim.fcs"):
        shutil.copy(sample_data / "human" / name, folder / name)
    shutil.copy(cytof[0], folder / cytof[0].name)
    why = "mass cytometry data in a batch of flow cytometry files (2 of 3)"
    check = check_batch(folder, raise_on_error=False)
    (row,) = check.problems.itertuples()
    assert row.sample_id == cytof[0].stem and why in row.reason
    assert set(check.differences["sample_id"]) == {cytof[0].stem}  # no channel-by-channel noise
    res = run(folder, tmp_path / "out", config=fast_config)
    status = res.status.set_index("sample_id")
    assert status.loc[cytof[0].stem, "status"] == "failed"
    assert why in status.loc[cytof[0].stem, "message"]
    assert (status.drop(cytof[0].stem)["status"] == "ok").all()
    assert len(res.clustering.markers) > 5


def test_files_without_marker_names_do_not_outvote_the_files_that_have_them(
    external: Path, tmp_path: Path
) -> None:
    """Three vendor flow files without a marker name and two CyTOF files: the CyTOF files
    were refused as "mass cytometry data in a batch of flow cytometry files (3 of 5)",
    although the flow files could never be gated, and the batch stopped."""
    from nkflow.io import check_batch

    vendor = external / "fcsparser" / "fcsparser" / "tests" / "data" / "FlowCytometers"
    flow = [
        vendor / "Fortessa" / "FCS_3.0_Fortessa_PBS_Specimen_001_A1_A01.fcs",
        vendor / "FACSCaliburHTS" / "Sample_Well_A02.fcs",
        vendor / "MiltenyiBiotec" / "FCS3.0" / "FCS3.0_Custom_Compatible.fcs",
    ]
    cytof = sorted((external / CYTOF["cytonorm"]).glob("*.fcs"))[:2]
    if len(cytof) < 2 or not all(f.is_file() for f in flow):
        pytest.skip("vendor or CytoNorm files not available (../shared/external)")
    folder = tmp_path / "mixed"
    folder.mkdir()
    for f in [*flow, *cytof]:
        shutil.copy(f, folder / f.name)
    check = check_batch(folder, raise_on_error=False)
    refused = check.problems[check.problems["reason"].str.contains("in a batch of")]
    assert set(refused["sample_id"]) == {f.stem for f in flow}
    assert (
        "flow cytometry data in a batch of mass cytometry files (2 of 2 with marker names)"
        in (refused["reason"].iloc[0])
    )


def test_two_cytof_panels_in_one_batch_each_get_their_hierarchy(
    external: Path, tmp_path: Path, fast_config
) -> None:
    """CytoNorm's and SuperCellCyto's CyTOF files in one folder: two panels (cisplatin
    Pt195 without a label vs a labelled Pt198 viability channel; event length in one
    only). One hierarchy resolved on the first file failed the other panel's 6 files
    ("no channel or marker 'Viability'"); each panel now gets its own."""
    folder = tmp_path / "batch"
    folder.mkdir()
    for rel in CYTOF.values():
        for fcs in sorted((external / rel).glob("*.fcs")):
            shutil.copy(fcs, folder / fcs.name)
    if len(list(folder.glob("*.fcs"))) < 8:
        pytest.skip("CyTOF files not available (../shared/external)")
    res = run(folder, tmp_path / "out", config=fast_config)
    assert (res.status["status"] == "ok").all(), res.status.to_string()
    plan = json.loads((tmp_path / "out" / "provenance.json").read_text())["gating_plan"]
    assert sorted(plan) == ["human_cytof", "human_cytof (panel 2)"]
    assert sorted(len(p["samples"]) for p in plan.values()) == [2, 6]
