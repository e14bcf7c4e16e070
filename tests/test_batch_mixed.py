"""A folder of mixed files: each file the plan cannot gate fails alone, whatever its name.

An analyst's folder held a mouse file, a raw Cytek Aurora file (no marker names), a
corrupted and a truncated file. The plan resolved the template against the alphabetically
first readable file, so the Aurora file stopped the whole batch ("no NK anchor") unless
the mouse file was renamed to sort first; ``check`` pooled every file's markers to guess
one file's species and blamed the file with no markers; a raw spectral file was only
told to "label the channels or give a panel"; and ``check`` said OK on its first line
above a FAILED plan.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from nkflow.cli import main
from nkflow.config import RunConfig, replace_values
from nkflow.datasets import make_design, simulate_batch
from nkflow.exceptions import BatchConsistencyError, PanelMismatchError, UnmixingRequiredError
from nkflow.io import check_batch, read_batch, write_fcs
from nkflow.pipeline.plan import plan_batch
from nkflow.pipeline.plan_species import batch_species

UNMIX = (
    "raw spectral detector data (Cytek Aurora/NL): unmix it (e.g. in SpectroFlo) and export "
    "the unmixed file"
)
HUMAN = (
    ["FSC-A", "B1-A", "B2-A", "R1-A", "Time"],
    [None, "CD56 BV421", "CD16 FITC", "CD3 APC", None],
)
MOUSE = (
    ["FSC-A", "SSC-A", "B1-A", "B2-A", "R1-A", "Time"],
    [None, None, "NK1.1 PE", "CD19 FITC", "CD3e APC", None],
)
NO_ANCHOR = (["FSC-A", "SSC-A", "B2-A", "Time"], [None, None, "CD19 FITC", None])
RAW = ["FSC-A", "SSC-A", *(f"V{i}-A" for i in range(1, 17)), "Time"]
MOUSE_TEMPLATE = replace_values(RunConfig(), {"gating.template": "mouse"})


def _fcs(path: Path, channels: list[str], markers: list[str | None], **keywords: str) -> Path:
    """A 30-event file: only its TEXT matters to the plan and the check."""
    data = np.random.default_rng(1).uniform(0, 1000, size=(30, len(channels))).astype(np.float32)
    return write_fcs(path, data, channels, markers=markers, keywords=keywords or None)


def _raw(path: Path) -> Path:
    """Raw detector channels of a Cytek Aurora, no marker names."""
    return _fcs(path, RAW, [None] * len(RAW), **{"$CYT": "Aurora"})


def _failed(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("nkflow: FAILED")]


@pytest.fixture(scope="module")
def mouse_tube(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One simulated mouse tube the mouse template gates."""
    folder = tmp_path_factory.mktemp("mouse_tube")
    design = make_design(
        "mouse", donors=("M1",), tissues=("spleen",), timepoints=("",), n_events=3_000,
        fmo_markers=(), positive_control=False, clog=False, nk_enrichment=3.0,
    )  # fmt: skip
    simulate_batch(folder, design=design, random_state=2)
    return folder / "M1_spleen_unstim.fcs"


# --------------------------------------------------------------------------- D2
@pytest.mark.parametrize("bad_name", ["a_bad", "z_bad"])
def test_a_file_without_an_nk_anchor_fails_alone_whatever_its_name(
    tmp_path: Path, bad_name: str
) -> None:
    """The file without the anchor sorted first stopped the batch; now it fails alone."""
    _fcs(tmp_path / "m_good.fcs", *MOUSE)
    _fcs(tmp_path / f"{bad_name}.fcs", *NO_ANCHOR)
    plan = plan_batch(read_batch(tmp_path).metadata, MOUSE_TEMPLATE)
    assert list(plan.resolved) == ["mouse"] and plan.hierarchy_of == {"m_good": "mouse"}
    error = plan.unreadable[bad_name]
    assert isinstance(error, PanelMismatchError) and "no NK anchor" in str(error)
    assert str(error).startswith(str(tmp_path / f"{bad_name}.fcs"))
    assert error.resolution is not None  # what its panel supports, for check


def test_a_batch_none_of_whose_files_can_be_gated_stops(tmp_path: Path) -> None:
    """Nothing to gate: one error naming the files and why, before anything is written."""
    _fcs(tmp_path / "b1.fcs", *NO_ANCHOR)
    _fcs(tmp_path / "b2.fcs", *NO_ANCHOR)
    _raw(tmp_path / "raw.fcs")
    with pytest.raises(PanelMismatchError) as info:
        plan_batch(read_batch(tmp_path).metadata, MOUSE_TEMPLATE)
    message = str(info.value)
    assert message.startswith("no file of the batch can be gated: ")
    assert f"raw.fcs: {UNMIX}" in message
    assert "b1.fcs, b2.fcs: no NK anchor for template 'mouse'" in message
    assert str(tmp_path) not in message and "\n" not in message
    assert info.value.resolution is not None


@pytest.mark.parametrize("raw_name", ["a_aurora", "z_aurora"])
def test_run_gates_the_usable_file_of_a_mixed_folder(
    tmp_path: Path, mouse_tube: Path, raw_name: str
) -> None:
    """Mouse tube + raw Aurora + no-anchor + corrupted file: the mouse tube is gated, each
    other file has its FAILED line and status row, a report is written; names do not matter."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(mouse_tube, folder / mouse_tube.name)
    _raw(folder / f"{raw_name}.fcs")
    _fcs(folder / "b_no_anchor.fcs", *NO_ANCHOR)
    (folder / "c_corrupted.fcs").write_bytes(b"\x00garbage!")
    out = tmp_path / "out"
    args = ["run", str(folder), "-o", str(out), "--template", "mouse", "--no-cluster",
            "--no-score", "--bootstrap", "0"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    failed = _failed(result.stderr)
    assert len(failed) == 3, result.stderr
    assert any(f"{raw_name}.fcs: {UNMIX}" in line for line in failed), failed
    assert any("b_no_anchor.fcs: no NK anchor" in line for line in failed), failed
    status = pd.read_csv(out / "tables" / "status.csv", comment="#").set_index("sample_id")
    assert status.loc["M1_spleen_unstim", "status"] == "ok"
    assert status.loc[raw_name, "reason_code"] == "UnmixingRequiredError"
    assert status.drop("M1_spleen_unstim")["status"].ne("ok").all()
    assert (out / "report.html").is_file()


# --------------------------------------------------------------------------- D3
def test_species_is_told_by_each_file_not_by_the_batch_pooled(tmp_path: Path) -> None:
    """A mouse and a human file: each its own species and template, when gated only."""
    _fcs(tmp_path / "h.fcs", *HUMAN)
    _fcs(tmp_path / "m.fcs", *MOUSE)
    plan = plan_batch(read_batch(tmp_path).metadata, RunConfig(), pooled=False)
    assert plan.species_of == {"h": "human", "m": "mouse"}
    assert plan.template_of == {"h": "human_blood", "m": "mouse"}
    assert "this batch mixes mouse (m.fcs: NK1.1, CD3e) and human (h.fcs: CD56) files" in (
        plan.to_text()
    )


def test_a_pooled_batch_of_two_species_names_its_files(tmp_path: Path) -> None:
    """Clustering and scoring pool the batch: two species stop it, the files named."""
    _fcs(tmp_path / "h.fcs", *HUMAN)
    _fcs(tmp_path / "m.fcs", *MOUSE)
    _fcs(tmp_path / "a_unlabelled.fcs", HUMAN[0], [None] * len(HUMAN[0]))
    with pytest.raises(BatchConsistencyError) as info:
        plan_batch(read_batch(tmp_path).metadata, RunConfig())
    message = str(info.value)
    assert message.startswith(
        "this batch mixes mouse (m.fcs: NK1.1, CD3e) and human (h.fcs: CD56) files: "
    )
    assert "run each species as a batch of its own" in message
    assert "a_unlabelled" not in message


@pytest.mark.parametrize(("flags", "exit_code"), [([], 1), (["--no-cluster", "--no-score"], 0)])
def test_check_judges_two_species_as_the_run_it_is_told_of(
    tmp_path: Path, flags: list[str], exit_code: int
) -> None:
    """check failed a two-species batch that `nkflow run --no-cluster --no-score` gates,
    and its message named options check did not have."""
    _fcs(tmp_path / "h.fcs", *HUMAN)
    _fcs(tmp_path / "m.fcs", *MOUSE)
    result = CliRunner().invoke(main, ["check", str(tmp_path), *flags])
    assert result.exit_code == exit_code, result.output
    if exit_code:
        assert "this batch mixes mouse (m.fcs" in result.output
    else:
        assert "each is gated with its species' template" in result.output


def test_a_file_that_tells_no_species_is_named_for_what_it_is(tmp_path: Path) -> None:
    """No marker names, in a batch of two species: it fails alone, its own words; it does
    not list the other files' markers."""
    _fcs(tmp_path / "h.fcs", *HUMAN)
    _fcs(tmp_path / "m.fcs", *MOUSE)
    _fcs(tmp_path / "a_unlabelled.fcs", HUMAN[0], [None] * len(HUMAN[0]))
    plan = plan_batch(read_batch(tmp_path).metadata, RunConfig(), pooled=False)
    message = str(plan.unreadable["a_unlabelled"])
    assert "the file's channels carry no marker names" in message
    assert "which mix human and mouse" in message
    assert "CD56" not in message.split("(mouse:")[0] and "NK1.1," not in message
    assert set(plan.template_of) == {"h", "m"}


def test_a_file_that_tells_no_species_takes_the_batch_s_one() -> None:
    rows = {s: {"file": f"{s}.fcs", "species": ""} for s in ("m1", "m2", "x")}
    markers = {"m1": ["NK1.1", "CD3e"], "m2": ["CD3", "NK1.1"], "x": ["CD3", "CD19"]}
    told = batch_species(rows, markers, needed=True)
    assert told.species == {"m1": "mouse", "m2": "mouse", "x": "mouse"}
    assert told.evidence["x"] == [] and not told.refused and not told.mixed


def test_a_file_whose_own_markers_contradict_fails_alone() -> None:
    rows = {s: {"file": f"{s}.fcs", "species": ""} for s in ("m", "both")}
    told = batch_species(rows, {"m": ["NK1.1"], "both": ["NK1.1", "CD56"]}, needed=True)
    assert set(told.refused) == {"both"}
    assert "tell both mouse (NK1.1) and human (CD56)" in str(told.refused["both"])
    assert told.species == {"m": "mouse"}


def test_a_sheet_species_is_evidence_of_its_own(tmp_path: Path) -> None:
    rows = {"h": {"file": "h.fcs", "species": "human"}, "m": {"file": "m.fcs", "species": ""}}
    told = batch_species(rows, {"h": ["CD3"], "m": ["NK1.1"]}, needed=True)
    assert told.species == {"h": "human", "m": "mouse"} and told.inferred == {"m": "mouse"}
    assert told.mix_text() == (
        "this batch mixes mouse (m.fcs: NK1.1) and human (h.fcs: species column) files"
    )


@pytest.mark.parametrize(
    ("sheet", "markers", "refused"),
    [
        ("human", ["NK1.1", "CD49b (DX5)", "CD3e"], True),  # a mouse panel called human
        ("mouse", ["CD56", "HLA-DR", "CD3"], True),  # a human panel called mouse
        ("human", ["CD56", "NK1.1"], False),  # both told: the sheet decides
        ("mouse", ["CD3", "CD19"], False),  # nothing told: the sheet decides
    ],
)
def test_a_sheet_species_the_files_own_markers_contradict_is_not_believed(
    sheet: str, markers: list[str], refused: bool
) -> None:
    """A mouse batch whose sheet said human was gated with the human template and its
    AREG+ NK flagged with human evidence (exploratory=False, 'reported in human NK')."""
    told = batch_species({"f": {"file": "f.fcs", "species": sheet}}, {"f": markers}, needed=True)
    assert ("f" in told.refused) is refused
    if refused:
        assert f"the sheet says {sheet}, but the file's markers (" in str(told.refused["f"])
        assert "correct the sheet's 'species' column" in str(told.refused["f"])
    else:
        assert told.species == {"f": sheet}


def test_a_contradicted_sheet_species_is_kept_with_a_note_when_it_decides_nothing() -> None:
    """`nkflow gate --template mouse` refused mouse files whose sheet said human although
    neither the template nor any scoring depended on the sheet's species."""
    rows = {"f": {"file": "f.fcs", "species": "human"}}
    told = batch_species(rows, {"f": ["NK1.1", "CD3e"]}, needed=False, scored=False)
    assert not told.refused and told.species == {"f": "human"}
    assert "its species is kept as the sheet says" in told.contradicted["f"]
    scored = batch_species(rows, {"f": ["NK1.1", "CD3e"]}, needed=False, scored=True)
    assert "scored with human evidence, its results would be wrong" in str(scored.refused["f"])
    assert "gated with" not in str(scored.refused["f"])


def test_the_plan_says_when_a_species_came_from_the_batch_not_the_panel(
    tmp_path: Path,
) -> None:
    """The note read 'species: mouse, inferred from the panel () for 1 file(s)'."""
    _fcs(tmp_path / "m1.fcs", *MOUSE)
    _fcs(tmp_path / "m2.fcs", *MOUSE)
    _fcs(tmp_path / "x.fcs", ["FSC-A", "SSC-A", "B1-A", "R1-A", "Time"],
         [None, None, "NKp46 PE", "CD3 APC", None])  # fmt: skip
    plan = plan_batch(read_batch(tmp_path).metadata, MOUSE_TEMPLATE)
    text = "\n".join(plan.notes)
    assert "inferred from the panel ()" not in text
    assert "inferred from the panel (NK1.1, CD3e) for 2 file(s)" in text, text
    assert "species: mouse, taken from the batch's other files for 1 file(s)" in text, text


def test_a_mouse_batch_whose_sheet_says_human_is_not_analysed(
    sample_data: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "mouse"
    shutil.copytree(sample_data / "mouse", folder)
    sheet = pd.read_csv(folder / "metadata.csv", dtype=str, keep_default_na=False)
    sheet["species"] = "human"
    sheet.to_csv(folder / "metadata.csv", index=False)
    result = CliRunner().invoke(main, ["check", str(folder)])
    assert result.exit_code == 1
    assert "the sheet says human, but the file's markers (" in result.output
    assert "NK1.1" in result.output and "correct the sheet's 'species' column" in result.output


# --------------------------------------------------------------------------- D4
def test_check_says_a_raw_spectral_file_needs_unmixing(tmp_path: Path) -> None:
    """Not "label the channels or give a panel": a panel would gate raw detectors."""
    _fcs(tmp_path / "a.fcs", *HUMAN)
    _raw(tmp_path / "raw.fcs")
    check = check_batch(tmp_path, raise_on_error=False)
    (row,) = check.problems.itertuples()
    assert row.sample_id == "raw" and row.reason.startswith(UNMIX)
    assert "16 numbered detectors (V1-V16)" in row.reason
    assert set(check.differences["sample_id"]) == {"raw"}  # not compared channel by channel
    assert "raw" not in check.mapping.columns


def test_the_plan_refuses_a_raw_spectral_file_alone(tmp_path: Path) -> None:
    _fcs(tmp_path / "h.fcs", *HUMAN)
    _raw(tmp_path / "a_raw.fcs")
    plan = plan_batch(read_batch(tmp_path).metadata, RunConfig())
    error = plan.unreadable["a_raw"]
    assert isinstance(error, UnmixingRequiredError)
    assert str(error).startswith(f"{tmp_path / 'a_raw.fcs'}: {UNMIX} (evidence: ")
    assert str(error).endswith(
        "16 numbered detectors (V1-V16) and no unmixed fluorochrome channel)"
    )
    assert plan.template_of == {"h": "human_blood"}


@pytest.mark.parametrize("command", ["check", "gate"])
def test_check_and_gate_say_a_raw_file_needs_unmixing(tmp_path: Path, command: str) -> None:
    folder = tmp_path / "batch"
    folder.mkdir()
    _fcs(folder / "h.fcs", *HUMAN)
    _raw(folder / "a_raw.fcs")
    args = [command, str(folder)]
    if command == "gate":
        args += ["--template", "human_blood", "-o", str(tmp_path / "out"), "--bootstrap", "0"]
    result = CliRunner().invoke(main, args)
    failed = [line for line in _failed(result.stderr) if "a_raw.fcs" in line]
    assert len(failed) == 1 and UNMIX in failed[0], result.stderr
    assert "label the channels" not in result.output and "no NK anchor" not in result.output


# --------------------------------------------------------------------------- D5
def test_check_s_first_line_is_not_ok_when_nothing_can_be_gated(tmp_path: Path) -> None:
    _fcs(tmp_path / "b1.fcs", *NO_ANCHOR)
    _fcs(tmp_path / "b2.fcs", *NO_ANCHOR)
    result = CliRunner().invoke(main, ["check", str(tmp_path), "--template", "mouse"])
    assert result.exit_code == 1, result.output
    first = result.stdout.splitlines()[0]
    assert first == "2 file(s); reference layout: b1; gating plan FAILED", first
    assert "OK" not in first
    assert len(_failed(result.stderr)) == 1 and "no NK anchor" in result.stderr


def test_check_counts_files_the_plan_refuses_as_unusable(tmp_path: Path) -> None:
    _fcs(tmp_path / "m.fcs", *MOUSE)
    _fcs(tmp_path / "n.fcs", *NO_ANCHOR)
    result = CliRunner().invoke(main, ["check", str(tmp_path), "--template", "mouse"])
    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines()[0].endswith("; 1 file(s) unusable")


# --------------------------------------------------------------------------- real files
def _mixed_folder(external: Path, folder: Path) -> Path:
    """The analyst's folder: FlowSOM's mouse file, the raw Cytek NL-2000 file, fcsparser's
    corrupted file and a truncated copy of the mouse file."""
    mouse = external / "flowsom/inst/extdata/68983.fcs"
    aurora = external / "cytoflow/cytoflow/tests/data/instruments/Cytek NL-2000.fcs"
    corrupted = external / "fcsparser/fcsparser/tests/data/FlowCytometers/corrupted/corrupted.fcs"
    for path in (mouse, aurora, corrupted):
        if not path.is_file():
            pytest.skip(f"{path} not found")
    folder.mkdir()
    shutil.copy(mouse, folder / "mouse.fcs")
    shutil.copy(aurora, folder / "aurora.fcs")
    shutil.copy(corrupted, folder / "corrupted.fcs")
    (folder / "trunc.fcs").write_bytes(mouse.read_bytes()[:20_000])
    return folder


def test_real_mixed_folder_is_planned_file_by_file(external: Path, tmp_path: Path) -> None:
    folder = _mixed_folder(external, tmp_path / "mixed")
    plan = plan_batch(read_batch(folder).metadata, RunConfig(), pooled=False)
    assert plan.template_of == {"mouse": "mouse"} and plan.species_of == {"mouse": "mouse"}
    assert UNMIX in str(plan.unreadable["aurora"])
    assert set(plan.unreadable) == {"aurora", "corrupted", "trunc"}


def test_real_check_of_a_folder_of_two_species(external: Path, tmp_path: Path) -> None:
    """FlowAtlas lung (human: HLA-DR), a CyTOF file, the mouse, Aurora and broken files."""
    folder = _mixed_folder(external, tmp_path / "mixed")
    lung = sorted((external / "flowatlas/data/423C").glob("*Lung*"))
    cytof = sorted((external / "cytonorm/inst/extdata").glob("*.fcs"))
    if not lung or not cytof:
        pytest.skip("FlowAtlas 423C or CytoNorm files not found")
    shutil.copy(lung[0], folder / lung[0].name)
    shutil.copy(cytof[0], folder / cytof[0].name)
    result = CliRunner().invoke(main, ["check", str(folder)])
    assert result.exit_code == 1
    failed = _failed(result.stderr)
    mixes = f"this batch mixes mouse (mouse.fcs: NK1.1) and human ({lung[0].name}: HLA-DR) files"
    assert any(mixes in line for line in failed), failed
    detectors = "22 numbered detectors (B1-B14, R1-R8) and no unmixed fluorochrome channel)"
    assert any(f"aurora.fcs: {UNMIX} (evidence: " in line and line.endswith(detectors)
               for line in failed), failed  # fmt: skip
    assert "sample 'aurora'" not in result.output and "label the channels" not in result.output
    assert result.stdout.splitlines()[0].endswith("gating plan FAILED")
