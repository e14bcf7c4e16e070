"""``nkflow gate`` as an analyst meets it: required markers, one row per threshold, the
template's kind named, options it has, and one sample id across its tables."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from nkflow.cli import main
from nkflow.datasets import make_design, simulate_batch
from nkflow.exceptions import GatingTemplateError
from nkflow.gating import resolve_template


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="module")
def fmo_batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One donor's liver: unstimulated and stimulated tubes sharing an AREG FMO tube."""
    folder = tmp_path_factory.mktemp("gate_batch")
    design = make_design(
        "human", donors=("D1",), tissues=("liver",), timepoints=("pre",), n_events=6_000,
        fmo_events=3_000, fmo_markers=("AREG",), clog=False, nk_enrichment=3.0,
    )  # fmt: skip
    simulate_batch(folder, design=design, random_state=5)
    return folder


# ------------------------------------------------------------------ required markers
def test_a_required_marker_the_panel_lacks_is_refused_by_name(
    tmp_path: Path, tcell_template
) -> None:
    panel = {"FSC-A": "", "B1-A": "CD3", "B2-A": "CD56"}
    with pytest.raises(GatingTemplateError, match=r"requires CD8 \(\[manifest\] required_markers"):
        resolve_template(tcell_template(tmp_path, "CD8"), panel)


def test_a_required_marker_a_gate_alternative_stands_in_for_is_accepted(
    tmp_path: Path, tcell_template
) -> None:
    path = tcell_template(tmp_path, "CD56", alternatives=("NKp46",))
    res = resolve_template(path, {"B1-A": "CD3", "B2-A": "NKp46"})
    assert [d.marker for d in res.template.gate("T_CD56+").dims] == ["NKp46"]


@pytest.mark.parametrize("command", ["gate", "run"])
def test_gate_and_run_fail_a_file_without_the_required_markers(
    runner: CliRunner, sample_data: Path, tmp_path: Path, command: str, tcell_template
) -> None:
    """Not exit 0 with empty tables: the file fails, naming what it lacks."""
    fcs = tmp_path / "D1_blood_pre_unstim.fcs"
    shutil.copy(sample_data / "human" / fcs.name, fcs)
    template = tcell_template(tmp_path, "CD8", min_events=100, anchor_gate=False)
    args = [command, str(fcs), "--template", str(template), "-o", str(tmp_path / "out")]
    result = runner.invoke(main, args if command == "gate" else [*args, "-q"])
    assert result.exit_code == 1, result.output
    assert "FAILED" in result.output and "requires CD8" in result.output


def test_gate_on_a_sheet_fails_only_the_file_without_the_markers(
    runner: CliRunner, external: Path, tmp_path: Path, tcell_template
) -> None:
    """FlowAtlas: 412C carries no $PnS labels, 390C does; the sheet's other files go on."""
    src = external / "flowatlas" / "data"
    files = {"390C_Liver_026.fcs": "390C", "412C_Blood_025.fcs": "412C"}
    if not all((src / donor / name).is_file() for name, donor in files.items()):
        pytest.skip(f"FlowAtlas files not found under {src}")
    for name, donor in files.items():
        shutil.copy(src / donor / name, tmp_path / name)
    (tmp_path / "metadata.csv").write_text(
        "file,sample_id,donor,tissue,timepoint,stimulation,role,species,batch\n"
        "390C_Liver_026.fcs,390C_Liver,390C,liver,pre,unstim,unstim,human,FA1\n"
        "412C_Blood_025.fcs,412C_Blood,412C,blood,pre,unstim,unstim,human,FA1\n"
    )
    template = tcell_template(tmp_path, "CD69", min_events=100, anchor_gate=False)
    out = tmp_path / "out"
    result = runner.invoke(main, ["gate", str(tmp_path / "metadata.csv"), "--template",
                                  str(template), "-o", str(out)])  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "412C_Blood_025.fcs: template 't_CD69' requires CD3, CD69" in result.output
    status = pd.read_csv(out / "status.csv").set_index("sample_id")
    assert status.loc["390C_Liver", "status"] == "ok"
    assert status.loc["412C_Blood", "reason_code"] == "PanelMismatchError"
    assert set(pd.read_csv(out / "populations.csv")["sample_id"]) == {"390C_Liver"}


# ------------------------------------------------------------------ thresholds
def test_gate_lists_a_batch_level_fmo_threshold_once(
    runner: CliRunner, fmo_batch: Path, tmp_path: Path
) -> None:
    """Two tubes apply the liver AREG FMO cut-off: one row, blank sample_id (batch-level)."""
    out = tmp_path / "out"
    result = runner.invoke(main, ["gate", str(fmo_batch), "--template", "human_tissue",
                                  "-o", str(out), "--bootstrap", "0"])  # fmt: skip
    assert result.exit_code == 0, result.output
    thr = pd.read_csv(out / "thresholds.csv", dtype={"sample_id": str}).fillna({"sample_id": ""})
    fmo = thr[thr["rule"].astype(str).str.startswith("fmo")]
    assert len(fmo) == 1 and fmo["sample_id"].tolist() == [""]
    assert fmo["marker"].tolist() == ["AREG"]
    key = ["sample_id", "tissue", "batch", "gate", "marker"]
    assert not thr.duplicated(key).any(), thr[thr.duplicated(key, keep=False)]
    assert "value_linear" in thr.columns  # as nkflow run's table


# ------------------------------------------------------------------ XML templates
#: FlowJo 9 / FACSDiva documents of flowWorkspaceData and an FCS file each goes with
OTHER_XML = {
    "flowjo9": ("A2004Analysis.xml", "a2004_O1T2pb05i_A2_A02.fcs", "a FlowJo 9.2 XML workspace"),
    "diva": ("diva/PE_2.xml", "diva/124500.fcs", "a BD FACSDiva XML export (FACSDiva 6.1.3)"),
}


@pytest.mark.parametrize("suffix", [".xml", ".wsp"])
@pytest.mark.parametrize("which", sorted(OTHER_XML))
def test_an_xml_template_nkflow_cannot_apply_is_a_usage_error_named(
    runner: CliRunner, external: Path, tmp_path: Path, which: str, suffix: str
) -> None:
    """Not "FAILED <the FCS file>", exit 1: the template is bad (exit 2), said what it is,
    with a remedy in the analyst's words (no API names), and no output folder is made."""
    xml, fcs, named = OTHER_XML[which]
    src = external / "flowworkspacedata" / "inst" / "extdata"
    if not (src / xml).is_file() or not (src / fcs).is_file():
        pytest.skip(f"{xml} / {fcs} not found under {src}")
    template = tmp_path / (Path(xml).stem + suffix)
    shutil.copy(src / xml, template)
    shutil.copy(src / fcs, tmp_path / Path(fcs).name)
    out = tmp_path / "out"
    result = runner.invoke(main, ["gate", str(tmp_path / Path(fcs).name), "--template",
                                  str(template), "-o", str(out)])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert f"nkflow: error: {template}: {named}; " in result.output
    assert "FlowJo 10" in result.output and ".wsp" in result.output
    assert "FAILED" not in result.output and "apply_" not in result.output
    assert not out.exists()


def _flowsom(external: Path, tmp_path: Path) -> tuple[Path, Path]:
    src = external / "flowsom" / "inst" / "extdata"
    if not (src / "gating.wsp").is_file() or not (src / "68983.fcs").is_file():
        pytest.skip(f"FlowSOM's gating.wsp / 68983.fcs not found under {src}")
    for name in ("gating.wsp", "68983.fcs"):
        shutil.copy(src / name, tmp_path / name)
    return tmp_path / "gating.wsp", tmp_path / "68983.fcs"


def test_a_workspace_says_once_which_options_do_not_apply(
    runner: CliRunner, external: Path, tmp_path: Path
) -> None:
    wsp, fcs = _flowsom(external, tmp_path)
    out = tmp_path / "out"
    result = runner.invoke(main, ["gate", str(fcs), "--template", str(wsp), "-o", str(out),
                                  "--compensation", "none", "--transform", "arcsinh",
                                  "--bootstrap", "0"])  # fmt: skip
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if line.startswith("nkflow: note:")]
    assert len(notes) == 1, result.output
    assert "workspace's own compensation and transforms" in notes[0]
    assert all(s in notes[0] for s in ("compensation = 'none'", "'arcsinh'", "bootstrap = 0"))
    status = pd.read_csv(out / "status.csv")
    assert status["message"].str.contains("do not apply").all()
    # without such options nothing is said
    plain = runner.invoke(main, ["gate", str(fcs), "--template", str(wsp), "-o",
                                 str(tmp_path / "plain")])  # fmt: skip
    assert plain.exit_code == 0 and "note:" not in plain.output


# ------------------------------------------------------------------ the output folder
def test_an_existing_output_folder_suggests_only_gate_options(
    runner: CliRunner, sample_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / ".nkflow").write_text("nkflow output folder\n")  # made by nkflow
    (out / "populations.csv").write_text("sample_id\n")
    fcs = sample_data / "human" / "D1_blood_pre_unstim.fcs"
    result = runner.invoke(main, ["gate", str(fcs), "--template", "human_blood", "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert "--force" in result.output and "--resume" not in result.output
    run = runner.invoke(main, ["run", str(fcs), "-o", str(out), "-q"])
    assert run.exit_code == 2 and "--resume" in run.output  # nkflow run has it


# ------------------------------------------------------------------ sample ids
def test_a_workspace_names_samples_as_the_other_tables_and_counts_events(
    runner: CliRunner, external: Path, tmp_path: Path
) -> None:
    """68983.fcs is sample 68983 in every table (not '68983.fcs' in two of them), its
    status row has its events, and FlowJo's NK count is reproduced."""
    wsp, fcs = _flowsom(external, tmp_path)
    out = tmp_path / "out"
    result = runner.invoke(main, ["gate", str(fcs), "--template", str(wsp), "-o", str(out),
                                  "--events"])  # fmt: skip
    assert result.exit_code == 0, result.output
    tables = {n: pd.read_csv(out / f"{n}.csv", dtype={"sample_id": str})
              for n in ("populations", "flowjo_comparison", "status")}  # fmt: skip
    for name, table in tables.items():
        assert set(table["sample_id"]) == {"68983"}, name
    assert tables["status"]["n_events"].tolist() == [19225]
    pops = tables["populations"].set_index("population")
    assert pops.loc["NK cells", "count"] == 312
    assert [p.stem for p in (out / "membership").glob("*.parquet")] == ["68983"]


def test_a_file_the_workspace_has_no_sample_for_fails_alone(
    runner: CliRunner, external: Path, sample_data: Path, tmp_path: Path
) -> None:
    wsp, fcs = _flowsom(external, tmp_path)
    other = tmp_path / "D1_blood_pre_unstim.fcs"
    shutil.copy(sample_data / "human" / other.name, other)
    out = tmp_path / "out"
    result = runner.invoke(main, ["gate", str(fcs), str(other), "--template", str(wsp),
                                  "-o", str(out)])  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "the workspace has no sample for this file" in result.output
    status = pd.read_csv(out / "status.csv", dtype={"sample_id": str}).set_index("sample_id")
    assert status.loc["68983", "status"] == "ok"
    assert status.loc["D1_blood_pre_unstim", "status"] == "failed"
