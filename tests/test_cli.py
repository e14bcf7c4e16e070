"""The CLI in-process (click's CliRunner): help, exit codes, one line per failed file."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import as_transformed_export

from nkflow.cli import main
from nkflow.datasets import make_design, simulate_batch

COMMANDS = [
    ["--help"],
    ["run", "--help"],
    ["inspect", "--help"],
    ["check", "--help"],
    ["gate", "--help"],
    ["simulate", "--help"],
    ["templates", "--help"],
    ["templates", "list", "--help"],
    ["templates", "show", "--help"],
    ["templates", "validate", "--help"],
]

FAST = """
[gating]
bootstrap = 10
[clustering]
xdim = 4
ydim = 4
n_metaclusters = 4
"""


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="module")
def small_batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli_batch")
    design = make_design(
        "human", donors=("D1",), tissues=("liver",), timepoints=("pre",), n_events=8_000,
        fmo_events=4_000, fmo_markers=("AREG",), clog=False, nk_enrichment=3.0,
    )  # fmt: skip
    simulate_batch(folder, design=design, random_state=5)
    (folder.parent / "fast.toml").write_text(FAST)
    return folder


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a))
def test_help(runner: CliRunner, args: list[str]) -> None:
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0 and "nkflow" in result.output


def test_usage_error_exit_2(runner: CliRunner, small_batch: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[transform]\nmethod = 'cubic'\n")
    result = runner.invoke(main, ["run", str(small_batch), "-o", str(tmp_path / "o"),
                                  "--config", str(bad)])  # fmt: skip
    assert result.exit_code == 2
    assert "logicle" in result.output  # the valid choices are named
    assert runner.invoke(main, ["run"]).exit_code == 2


def test_templates(runner: CliRunner, tmp_path: Path) -> None:
    listed = runner.invoke(main, ["templates", "list"])
    assert listed.exit_code == 0 and "human_blood" in listed.output
    shown = runner.invoke(main, ["templates", "show", "mouse"])
    assert shown.exit_code == 0
    copy = tmp_path / "mine.toml"
    copy.write_text(shown.output)
    assert runner.invoke(main, ["templates", "validate", str(copy)]).exit_code == 0
    copy.write_text(shown.output.replace('kind = "', 'kind = "hexagon', 1))
    bad = runner.invoke(main, ["templates", "validate", str(copy)])
    assert bad.exit_code == 1 and "hexagon" in bad.output


def test_inspect_reports_bad_files(runner: CliRunner, small_batch: Path, tmp_path: Path) -> None:
    good = sorted(small_batch.glob("*.fcs"))[0]
    junk = tmp_path / "junk.fcs"
    junk.write_bytes(b"not an fcs file at all")
    result = runner.invoke(main, ["inspect", str(good), str(junk)])
    assert result.exit_code == 1
    assert f"FAILED {junk}" in result.output
    assert good.name in result.output


@pytest.mark.parametrize("wide", [False, True], ids=["blocks", "wide"])
def test_inspect_fits_a_100_column_terminal(
    runner: CliRunner, small_batch: Path, tmp_path: Path, wide: bool
) -> None:
    files = [str(p) for p in sorted(small_batch.glob("*.fcs"))[:3]]
    result = runner.invoke(main, ["inspect", *files, *(["--wide"] if wide else [])],
                           env={"COLUMNS": "100"})  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    long = [line for line in lines if len(line) > 100 and line not in files]
    assert bool(long) == wide  # --wide is the one-row-per-file table
    for path in files:
        assert path in result.output
    assert "CD56 (" in result.output and "spillover" in result.output


def test_full_run_with_a_broken_file(runner: CliRunner, small_batch: Path, tmp_path: Path) -> None:
    batch = tmp_path / "batch"
    shutil.copytree(small_batch, batch)
    victim = batch / pd.read_csv(batch / "metadata.csv")["file"].iloc[0]
    victim.write_bytes(victim.read_bytes()[:500])
    out = tmp_path / "out"
    args = [
        "run",
        str(batch),
        "-o",
        str(out),
        "--config",
        str(small_batch.parent / "fast.toml"),
        "-q",
    ]
    result = runner.invoke(main, args)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    failed = [line for line in result.output.splitlines() if line.startswith("nkflow: FAILED")]
    assert len(failed) == 1 and victim.name in failed[0], result.output
    assert failed[0].count(victim.name) == 1, failed[0]  # named once, not "path: path: ..."
    assert (out / "report.html").is_file()
    status = pd.read_csv(out / "tables" / "status.csv")
    assert (status["status"] == "parse-failed").sum() == 1
    # a second run refuses to overwrite (a usage error, README: exit 2); --force replaces
    again = runner.invoke(main, args)
    assert again.exit_code == 2 and "--force" in again.output
    assert runner.invoke(main, [*args, "--force"]).exit_code == 1


def test_gate_with_template_writes_membership(
    runner: CliRunner, small_batch: Path, tmp_path: Path
) -> None:
    out = tmp_path / "gated"
    result = runner.invoke(
        main, ["gate", str(small_batch), "--template", "human_tissue", "-o", str(out), "--events"]
    )
    assert result.exit_code == 0, result.output
    pops = pd.read_csv(out / "populations.csv")
    assert {"sample_id", "population", "parent", "count", "percent_of_parent", "ci_low",
            "ci_high"} <= set(pops.columns)  # fmt: skip
    members = sorted((out / "membership").glob("*.parquet"))
    assert members
    assert pd.read_parquet(members[0])["NK"].dtype == bool
    # as nkflow run's: each tube's status row says what it was warned about
    status = pd.read_csv(out / "status.csv").fillna("")
    assert status.loc[status["status"] == "ok", "message"].str.contains("Warning: ").any()


def test_simulate(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["simulate", str(tmp_path / "sim"), "--species", "mouse",
                                  "--events", "2000"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "sim" / "metadata.csv").is_file()


def _tiny_fcs(path: Path, channels: list[str], markers: list[str | None]) -> None:
    from nkflow.io import write_fcs

    data = np.random.default_rng(1).uniform(0, 1000, size=(30, len(channels))).astype(np.float32)
    write_fcs(path, data, channels, markers=markers)


# a panel a template can gate (CD3 for the lineage gate, CD56 as NK anchor)
STAINED = (
    ["FSC-A", "B1-A", "B2-A", "R1-A", "Time"],
    [None, "CD56 BV421", "CD16 FITC", "CD3 APC", None],
)


@pytest.mark.parametrize(
    ("n_bad", "foreign"), [(0, False), (1, False), (5, False), (0, True), (5, True)]
)
def test_check_fails_on_unusable_files(
    runner: CliRunner, tmp_path: Path, n_bad: int, foreign: bool
) -> None:
    """Unreadable files and a file with none of the panel's channels: exit 1, one line each."""
    for name in ("good1", "good2"):
        _tiny_fcs(tmp_path / f"{name}.fcs", *STAINED)
    bad = [tmp_path / f"bad{i}.fcs" for i in range(n_bad)]
    for path in bad:
        path.write_bytes(b"\x00garbage" * 20)
    if foreign:  # another instrument: none of the panel's channels, no marker
        bad.append(tmp_path / "other.fcs")
        _tiny_fcs(bad[-1], ["FSC-H", "FL1-H", "FL2-H"], [None, None, None])
    panel = tmp_path.parent / f"{tmp_path.name}_panel.csv"
    panel.write_text("channel,marker\nB1-A,CD56\nB2-A,CD16\nR1-A,CD3\n")
    result = runner.invoke(main, ["check", str(tmp_path), "--panel", str(panel)])
    assert result.exit_code == (1 if bad else 0), result.output
    failed = [line for line in result.stderr.splitlines() if line.startswith("nkflow: FAILED")]
    assert len(failed) == len(bad), result.stderr
    for path in bad:
        (line,) = [x for x in failed if x.startswith(f"nkflow: FAILED {path.resolve()}: ")]
        reason = "none of the panel's 3 channel(s)" if path.stem == "other" else "not an FCS"
        assert reason in line, line
    # the consistency report for the readable files is still printed
    assert "good1" in result.stdout and "Marker -> channel" in result.stdout
    assert ("OK" in result.stdout.splitlines()[0]) == (not bad)


def test_check_fails_an_already_transformed_file(runner: CliRunner, tmp_path: Path) -> None:
    """A flowCore export after compensate() + transform() is one FAILED line naming the
    evidence; the other files are still checked."""
    for name in ("good1", "good2"):
        _tiny_fcs(tmp_path / f"{name}.fcs", *STAINED)
    source = tmp_path.parent / f"{tmp_path.name}_raw.fcs"
    _tiny_fcs(source, *STAINED)
    done = as_transformed_export(source, tmp_path / "flowcore.fcs")
    result = runner.invoke(main, ["check", str(tmp_path)])
    assert result.exit_code == 1, result.output
    failed = [line for line in result.stderr.splitlines() if line.startswith("nkflow: FAILED")]
    assert len(failed) == 1 and failed[0].startswith(f"nkflow: FAILED {done.resolve()}: ")
    assert "already transformed" in failed[0] and "TRANSFORMATION = 'custom'" in failed[0]
    assert "good1" in result.stdout and "1 file(s) unusable" in result.stdout


@pytest.mark.parametrize("command", ["run", "gate"])
def test_an_already_transformed_file_fails_alone(
    runner: CliRunner, small_batch: Path, tmp_path: Path, command: str
) -> None:
    batch = tmp_path / "batch"
    shutil.copytree(small_batch, batch)
    meta = pd.read_csv(batch / "metadata.csv")
    victim = batch / meta.loc[meta["role"] == "unstim", "file"].iloc[0]
    as_transformed_export(victim, tmp_path / "export.fcs").replace(victim)
    out = tmp_path / "out"
    args = {
        "run": [
            "run",
            str(batch),
            "-o",
            str(out),
            "--config",
            str(small_batch.parent / "fast.toml"),
        ],
        "gate": ["gate", str(batch), "--template", "human_tissue", "-o", str(out)],
    }[command]
    result = runner.invoke(main, [*args, "-q"] if command == "run" else args)
    assert result.exit_code == 1, result.output
    failed = [line for line in result.output.splitlines() if line.startswith("nkflow: FAILED")]
    assert len(failed) == 1 and f"FAILED {victim}: " in failed[0], result.output
    assert "already transformed" in failed[0]
    status = pd.read_csv(out / ("tables/status.csv" if command == "run" else "status.csv"))
    bad = status[status["status"] == "failed"]
    assert bad["reason_code"].tolist() == ["TransformedDataError"]
    assert (status["status"] == "ok").sum() >= 2  # the rest of the batch went on


@pytest.mark.parametrize(
    ("clustering", "said", "in_report", "clustered"),
    [
        (  # too thin to cluster: the run says why, and makes no clusters
            'xdim = 4\nydim = 4\nn_metaclusters = 4\nmarkers = ["CD56", "CD16"]',
            "clustering skipped: only 2 clustering marker(s) (CD56, CD16)",
            "Clustering was skipped: only 2",
            False,
        ),
        (  # more nodes than cells: the grid the cells fill, said
            "xdim = 100\nydim = 100\nn_metaclusters = 4",
            "clustering: the SOM grid was lowered from 100×100 to ",
            "Clustering: the SOM grid was lowered from 100×100 to ",
            True,
        ),
    ],
    ids=["skipped", "shrunk"],
)
def test_run_says_why_it_skipped_or_shrank_clustering(
    runner: CliRunner, small_batch: Path, tmp_path: Path, clustering, said, in_report, clustered
) -> None:
    """A batch too thin for its clustering settings: the reason was only in a log hidden
    by default; the report said "switched off, or no sample reached this step"."""
    config = tmp_path / "thin.toml"
    head, fast = FAST.split("[clustering]\n")  # its settings, replaced
    assert fast == "xdim = 4\nydim = 4\nn_metaclusters = 4\n"
    config.write_text(f"{head}[clustering]\n{clustering}\n")
    out = tmp_path / "out"
    result = runner.invoke(main, ["run", str(small_batch), "-o", str(out), "--config",
                                  str(config), "--no-score"])  # fmt: skip
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if line.startswith("nkflow: note:")]
    assert len(notes) == 1 and said in notes[0], result.stderr
    html = (out / "report.html").read_text(encoding="utf-8")
    assert in_report in html and "switched off, or no sample" not in html
    assert (out / "tables" / "clusters.csv").exists() == clustered


def test_check_fails_a_file_whose_panel_has_no_nk_anchor(runner: CliRunner, tmp_path: Path) -> None:
    """A file of the batch without the NK anchor (its CD56 channel unlabelled) dropped out
    of check's plan without a word and check exited 0; run then failed it. It is a FAILED
    line and exit 1 now, named once."""
    for name in ("a", "b"):
        _tiny_fcs(tmp_path / f"{name}.fcs", *STAINED)
    channels, markers = STAINED
    _tiny_fcs(tmp_path / "c.fcs", channels, [None if m and "CD56" in m else m for m in markers])
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("file,sample_id,species\n" + "".join(
        f"{n}.fcs,{n},human\n" for n in "abc"))  # fmt: skip
    result = runner.invoke(main, ["check", str(sheet)])
    assert result.exit_code == 1, result.output
    failed = [line for line in result.stderr.splitlines() if line.startswith("nkflow: FAILED")]
    assert len(failed) == 1 and "c.fcs" in failed[0] and "no NK anchor" in failed[0], failed


def test_check_one_fcs_file(runner: CliRunner, tmp_path: Path) -> None:
    """``nkflow check file.fcs`` checks that file (it was read as a metadata sheet)."""
    _tiny_fcs(tmp_path / "one.fcs", *STAINED)
    result = runner.invoke(main, ["check", str(tmp_path / "one.fcs")])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("1 file(s); reference layout: one; OK")


def test_check_names_sheet_columns_it_does_not_read(runner: CliRunner, tmp_path: Path) -> None:
    """A sheet naming its donors ``Patient``: the plan says to rename it, before any work."""
    for name in ("a", "b"):
        _tiny_fcs(tmp_path / f"{name}.fcs", *STAINED)
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("File,Sample ID,Patient,species\na.fcs,a,P1,human\nb.fcs,b,P2,human\n")
    result = runner.invoke(main, ["check", str(sheet)])
    assert result.exit_code == 0, result.output
    assert "look like its own: 'patient' -> 'donor' (" in result.stdout


def test_check_states_a_files_quirk_on_one_line(
    runner: CliRunner, external: Path, tmp_path: Path
) -> None:
    """SuperCellCyto's CyTOF files declare log amplification on float data. ``check`` said
    so as a raw Python warning: the nkflow source path and line, then the code line."""
    source = external / "supercellcyto" / "inst" / "extdata" / "Data23_Panel3_base_R5_Patient15.fcs"
    if not source.is_file():
        pytest.skip("SuperCellCyto files not available (../shared/external)")
    shutil.copy(source, tmp_path / source.name)
    result = runner.invoke(main, ["check", str(tmp_path / source.name)])
    assert result.exit_code == 0, result.output
    said = [line for line in result.stderr.splitlines() if "log amplification" in line]
    assert len(said) == 1 and said[0].startswith(f"nkflow: warning: {tmp_path / source.name}: ")
    assert "fcs_text.py" not in result.stderr and "_parse_dataset(" not in result.stderr


def _record_config(monkeypatch, tmp_path: Path, command: str) -> dict:
    """Replace the command's pipeline call; the returned dict gets the config it was given."""
    import types

    import nkflow.pipeline as pipeline

    seen: dict = {}

    def fake(*args, config, **kwargs):
        seen["config"] = config
        return types.SimpleNamespace(failures=[], notes=[], out_dir=tmp_path, report_path=tmp_path)

    monkeypatch.setattr(pipeline, "run" if command == "run" else "gate_files", fake)
    return seen


@pytest.mark.parametrize("command", ["run", "gate"])
@pytest.mark.parametrize(
    ("flags", "matrix", "method"),
    [
        ([], "file", "auto"),  # the defaults: each file's technology decides
        (["--compensation", "none", "--transform", "arcsinh"], "none", "arcsinh"),
        (["--compensation", "MATRIX", "--transform", "logicle"], "MATRIX", "logicle"),
    ],
    ids=["defaults", "none-arcsinh", "path-logicle"],
)
def test_compensation_and_transform_reach_the_config(
    runner: CliRunner, monkeypatch, tmp_path: Path, command, flags, matrix, method
) -> None:
    seen = _record_config(monkeypatch, tmp_path, command)
    spill = tmp_path / "spill.csv"
    spill.write_text("FL1-A,FL2-A\n1,0.1\n0.2,1\n")
    flags = [str(spill) if f == "MATRIX" else f for f in flags]
    extra = ["--template", "human_tissue"] if command == "gate" else []
    result = runner.invoke(
        main, [command, str(tmp_path), *extra, "-o", str(tmp_path / "o"), *flags]
    )
    assert result.exit_code == 0, result.output
    cfg = seen["config"]
    assert cfg.compensation.matrix == (str(spill) if matrix == "MATRIX" else matrix)
    assert cfg.transform.method == method


@pytest.mark.parametrize("command", ["run", "gate"])
@pytest.mark.parametrize(
    ("flags", "boots"),
    [
        ([], 200),
        (["--bootstrap", "0"], 0),
        (["--bootstrap", "50"], 50),
        (["--bootstrap", "-1"], None),
    ],
)
def test_bootstrap_reaches_the_config(
    runner: CliRunner, monkeypatch, tmp_path: Path, command: str, flags: list[str], boots
) -> None:
    """``--bootstrap N`` sets the redraws of every density threshold; 0 turns them off."""
    _check_count_option(runner, monkeypatch, tmp_path, command, flags, boots, "gating.bootstrap")


@pytest.mark.parametrize("command", ["run", "gate"])
@pytest.mark.parametrize(
    ("flags", "workers"),
    [([], 0), (["--workers", "1"], 1), (["--workers", "3"], 3), (["--workers", "-2"], None)],
)
def test_workers_reaches_the_config(
    runner: CliRunner, monkeypatch, tmp_path: Path, command: str, flags: list[str], workers
) -> None:
    """``--workers N`` on both commands (``nkflow gate`` runs its tubes on workers too)."""
    _check_count_option(runner, monkeypatch, tmp_path, command, flags, workers,
                        "execution.workers")  # fmt: skip


def _check_count_option(runner, monkeypatch, tmp_path, command, flags, expected, key) -> None:
    """The option's value reaches config ``key``; a negative count is a usage error."""
    seen = _record_config(monkeypatch, tmp_path, command)
    extra = ["--template", "human_tissue"] if command == "gate" else []
    result = runner.invoke(
        main, [command, str(tmp_path), *extra, "-o", str(tmp_path / "o"), *flags]
    )
    if expected is None:  # the usage error names the option
        assert result.exit_code == 2 and flags[0] in result.output, result.output
        assert not seen
    else:
        assert result.exit_code == 0, result.output
        section, name = key.split(".")
        assert getattr(getattr(seen["config"], section), name) == expected


@pytest.mark.parametrize("command", ["run", "gate"])
@pytest.mark.parametrize(
    ("flags", "word"),
    [
        (["--compensation", "no/such/matrix.csv"], "no/such/matrix.csv"),
        (["--transform", "log"], "log"),
    ],
)
def test_bad_compensation_or_transform_is_usage_error(
    runner: CliRunner, tmp_path: Path, command: str, flags: list[str], word: str
) -> None:
    extra = ["--template", "human_tissue"] if command == "gate" else []
    result = runner.invoke(
        main, [command, str(tmp_path), *extra, "-o", str(tmp_path / "o"), *flags]
    )
    assert result.exit_code == 2 and word in result.output, result.output


@pytest.mark.parametrize(
    ("toml", "error"),
    [
        ('[compensation]\nmatrix = "none"\n[transform]\nmethod = "auto"\ncofactor = 0\n', None),
        ('[transform]\nmethod = "arcsinh"\ncofactor = 5\n', None),
        ("[transform]\ncofactor = -1\n", "transform.cofactor"),
        ('[compensation]\nmatrix = " "\n', "compensation.matrix"),
    ],
    ids=["none-auto", "arcsinh-5", "negative-cofactor", "empty-matrix"],
)
def test_config_compensation_and_transform_keys(tmp_path: Path, toml: str, error) -> None:
    from nkflow.config import config_to_toml, load_config
    from nkflow.exceptions import ConfigError

    path = tmp_path / "c.toml"
    path.write_text(toml)
    if error is not None:
        with pytest.raises(ConfigError, match=error):
            load_config(path)
        return
    cfg = load_config(path)
    path.write_text(config_to_toml(cfg))
    assert load_config(path) == cfg  # a run's config.toml reproduces it


def test_a_stage_with_nothing_to_do_draws_no_bar() -> None:
    """A batch without FMO tubes printed an empty 'controls: 0step' bar."""
    from nkflow._console import ProgressBars

    bars = ProgressBars()
    bars("controls", 0, 0)
    assert bars._bars == {}
    bars("samples", 1, 3)
    assert list(bars._bars) == ["samples"]
    bars.close()


def test_thresholds_refuses_a_folder_whose_run_did_not_finish(
    runner: CliRunner, tiny_run, tmp_path: Path
) -> None:
    """A resume killed while writing tables left old and new tables side by side, and
    `nkflow thresholds` exported from them with exit 0."""
    out = tmp_path / "out"
    shutil.copytree(tiny_run.out_dir, out)
    finished = runner.invoke(main, ["thresholds", str(out)])
    assert finished.exit_code == 0, finished.output
    assert "override" in finished.output
    (out / "provenance.json").unlink()  # what a run killed before its end leaves
    result = runner.invoke(main, ["thresholds", str(out)])
    assert result.exit_code == 2, result.output
    (line,) = result.output.splitlines()
    assert "did not finish" in line and "--resume" in line and str(out) in line


def test_an_unreachable_scheduler_is_one_line_exit_3_and_no_output_folder(
    runner: CliRunner, small_batch: Path, tmp_path: Path
) -> None:
    """It was a page of distributed's traceback, exit 1, and a folder with .nkflow and
    its lock, so the next run needed --force."""
    import dask
    import distributed  # noqa: F401  (its defaults loaded first: leaving the block below
    # would otherwise drop the whole "distributed" section it created, and later
    # LocalClusters in this process fail with KeyError: 'distributed')

    out = tmp_path / "out"
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        result = runner.invoke(
            main, ["run", str(small_batch), "-o", str(out), "-q",
                   "--scheduler", "tcp://127.0.0.1:1"],
        )  # fmt: skip
    assert result.exit_code == 3, result.output
    (line,) = result.output.splitlines()
    assert line.startswith("nkflow: error: Dask scheduler tcp://127.0.0.1:1: cannot connect")
    assert not out.exists()
