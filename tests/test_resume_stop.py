"""Stopping and resuming `nkflow run`: the resume command, SIGTERM, quiet workers,
and a resume that may only finish a run of the same inputs."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import time
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from nkflow._workers import new_pool
from nkflow.cli import main
from nkflow.config import RunConfig, replace_values
from nkflow.exceptions import OutputExistsError
from nkflow.io.write import file_sha256
from nkflow.pipeline import run
from nkflow.pipeline.outdir import MARKER, OutputFolder
from nkflow.pipeline.resume import RUN_RECORD, write_run_record
from nkflow.pipeline.state import RunState


def _stop_at_controls(monkeypatch: pytest.MonkeyPatch, stop) -> None:
    """The run stops where its first stage starts (after the folder is taken)."""
    monkeypatch.setattr(RunState, "thresholds", lambda self: stop())


def _ctrl_c() -> None:
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    "options",
    [
        [],
        ["--no-cluster"],
        ["--random-state", "7", "--no-score", "--bootstrap", "5"],  # in the options' order
        ["--workers", "1", "--no-cluster", "--no-score", "--transform", "arcsinh"],
    ],
    ids=["plain", "no-cluster", "valued", "mixed"],
)
def test_an_interrupted_run_names_its_own_options_and_the_folder_keeps_them(
    tiny_batch: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, options: list[str]
) -> None:
    """Under click 8.2+ a flag's default is a sentinel: every plain run's resume command
    said --no-cluster --no-score, and `nkflow thresholds` on the folder a bare --resume."""
    _stop_at_controls(monkeypatch, _ctrl_c)
    out = tmp_path / "out"
    runner = CliRunner()
    result = runner.invoke(main, ["run", str(tiny_batch), "-o", str(out), "-q", *options])
    assert result.exit_code == 130, result.output
    expected = shlex.join(["nkflow", "run", str(tiny_batch), "-o", str(out), *options,
                           "--resume"])  # fmt: skip
    assert result.output.strip().splitlines()[-1] == (
        f"nkflow: interrupted; finish with `{expected}`"
    )
    record = json.loads((out / RUN_RECORD).read_text(encoding="utf-8"))
    assert shlex.join(record["resume_command"]) == expected
    told = runner.invoke(main, ["thresholds", str(out)])
    assert told.exit_code == 2 and f"finish it with `{expected}`" in told.output


def test_sigterm_stops_the_run_like_ctrl_c_with_exit_143(
    tiny_batch: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM (kill, a scheduler's limit) ended the run with no resume hint."""
    caught: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: caught.append(signum))

    def terminate() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)  # the handler runs here
        raise RuntimeError("SIGTERM did not stop the run")

    _stop_at_controls(monkeypatch, terminate)
    out = tmp_path / "out"
    try:
        result = CliRunner().invoke(main, ["run", str(tiny_batch), "-o", str(out), "-q"])
    finally:
        restored = signal.signal(signal.SIGTERM, previous)
    assert result.exit_code == 143, result.output
    assert "interrupted; finish with `" in result.output and "--resume`" in result.output
    assert not caught and restored is not None  # the CLI put the caller's handler back


def test_workers_leave_ctrl_c_to_the_run() -> None:
    """Ctrl-C reaches the whole process group: each idle worker printed a traceback."""
    with new_pool(1) as pool:
        assert pool.submit(signal.getsignal, signal.SIGINT).result() == signal.SIG_IGN


def _finished_folder(root: Path, input_path: str, files: dict[str, str]) -> Path:
    root.mkdir()
    (root / MARKER).write_text("nkflow output folder\n")
    provenance = {"input": input_path, "inputs_sha256": files, "config": {}}
    (root / "provenance.json").write_text(json.dumps(provenance))
    return root


def _unfinished_folder(root: Path, source: Path, names_only: bool = False) -> Path:
    """A folder whose run on ``source`` stopped before any sample finished: its record
    only (an older build's held the file names alone)."""
    root.mkdir()
    (root / MARKER).write_text("nkflow output folder\n")
    files = {p.name: str(p) for p in sorted(source.glob("*.fcs"))}
    if names_only:
        record = {"input": str(source), "files": sorted(files)}
        (root / RUN_RECORD).write_text(json.dumps(record))
    else:
        write_run_record(root, source, files, RunConfig())
    return root


def _batch(folder: Path, content: bytes = b"") -> Path:
    folder.mkdir()
    for name in ("a.fcs", "b.fcs"):
        (folder / name).write_bytes((name.encode() + content) * 100)
    return folder


@pytest.mark.parametrize(
    ("case", "refused"),
    [
        ("same", False),
        ("moved", False),
        ("one file changed", False),
        ("other names", True),
        ("same names, other content", True),
        ("names only, same input", False),
        # the folder holds no results (no sample finished): nothing would be replaced,
        # and every sample's fingerprint holds its file's content, so none could mix; a
        # batch copied elsewhere or given as its sheet was refused ("holds the results")
        ("names only, other input", False),
        ("unfinished, moved", False),
        ("unfinished, other content", True),
        ("unfinished, other names", True),
        ("unfinished, names and other sizes", True),
    ],
)
def test_resume_takes_only_a_folder_of_the_same_inputs(
    tmp_path: Path, case: str, refused: bool
) -> None:
    """`--resume` into another batch's finished folder replaced it silently (exit 0)."""
    batch = _batch(tmp_path / "batch")
    hashes = {n: file_sha256(batch / n) for n in ("a.fcs", "b.fcs")}
    recorded_input = str(batch)
    out = tmp_path / "out"
    if case == "moved":
        recorded_input = str(tmp_path / "elsewhere")
    elif case == "one file changed":
        hashes["a.fcs"] = "0" * 64
    elif case == "other names":
        hashes = {"x.fcs": "1" * 64}
    elif case == "same names, other content":
        hashes = {n: "2" * 64 for n in hashes}
    if case.startswith("names only"):
        source = batch if case.endswith("same input") else shutil.copytree(batch, tmp_path / "o")
        _unfinished_folder(out, source, names_only=True)
    elif case == "unfinished, moved":
        _unfinished_folder(out, shutil.copytree(batch, tmp_path / "before"))
    elif case == "unfinished, other content":
        _unfinished_folder(out, _batch(tmp_path / "other", b"other"))
    elif case == "unfinished, other names":
        (tmp_path / "other").mkdir()
        (tmp_path / "other" / "x.fcs").write_bytes(b"x" * 100)
        _unfinished_folder(out, tmp_path / "other")
    elif case == "unfinished, names and other sizes":  # an older record's names, and sizes
        _unfinished_folder(out, _batch(tmp_path / "other", b"longer"), names_only=True)
        record = json.loads((out / RUN_RECORD).read_text())
        record["sizes"] = {n: 1 for n in record["files"]}
        (out / RUN_RECORD).write_text(json.dumps(record))
    else:
        _finished_folder(out, recorded_input, hashes)
    paths = {n: str(batch / n) for n in ("a.fcs", "b.fcs")}
    folder = OutputFolder(out, batch=(batch, paths))
    if refused:
        with pytest.raises(OutputExistsError, match=r"--resume refused.*--force") as info:
            folder.refuse_existing(resume=True)
        assert str(out) in str(info.value) and str(batch) in str(info.value)
        finished = not case.startswith("unfinished")
        assert ("holds the results" in str(info.value)) == finished  # never when it holds none
    else:
        assert folder.refuse_existing(resume=True)
    folder.refuse_existing(force=True)  # --force replaces it whatever it holds


def test_resume_into_another_batchs_folder_is_refused_and_leaves_it(
    tiny_run, tmp_path: Path
) -> None:
    from nkflow.datasets import make_design, simulate_batch

    other = tmp_path / "other"
    design = make_design("mouse", donors=("M1",), tissues=("liver",), timepoints=("pre",),
                         n_events=2_000, fmo_events=1_000, fmo_markers=())  # fmt: skip
    simulate_batch(other, design=design, random_state=1)
    out = tmp_path / "out"
    shutil.copytree(tiny_run.out_dir, out)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    result = CliRunner().invoke(main, ["run", str(other), "-o", str(out), "--resume", "-q"])
    assert result.exit_code == 2, result.output
    assert "--resume refused" in result.output and "--force" in result.output
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def test_a_resume_says_what_it_reused_and_which_settings_differ(
    tiny_batch: Path, tiny_run, fast_config, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    shutil.copytree(tiny_run.out_dir, out)
    same = run(tiny_batch, out, config=fast_config, resume=True)
    found = re.fullmatch(r"resumed: (\d+) of (\d+) samples already done, 0 run now",
                         same.notes[0])  # fmt: skip
    assert found and found[1] == found[2] and int(found[1]) > 0
    analysed = int(found[1])
    assert not any("settings other" in n for n in same.notes)
    other = replace_values(fast_config, {"scoring.enabled": False})
    changed = run(tiny_batch, out, config=other, resume=True)
    assert changed.notes[0].startswith(f"resumed: 0 of {analysed} samples")
    assert "scoring.enabled True -> False" in changed.notes[1]


def test_the_recorded_resume_command_works_from_any_directory(
    tiny_batch: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record held the paths as typed (relative to where the run started) beside an
    absolute input: `nkflow thresholds` printed a command that failed elsewhere."""
    _stop_at_controls(monkeypatch, _ctrl_c)
    start, elsewhere = tmp_path / "start", tmp_path / "elsewhere"
    shutil.copytree(tiny_batch, start / "batch")
    (start / "run.toml").write_text("[gating]\nbootstrap = 5\n")
    elsewhere.mkdir()
    runner = CliRunner()
    monkeypatch.chdir(start)
    args = ["run", "batch", "-o", "out", "--config", "run.toml", "--random-state", "3", "-q"]
    assert runner.invoke(main, args).exit_code == 130
    record = json.loads((start / "out" / RUN_RECORD).read_text(encoding="utf-8"))
    command = record["resume_command"]
    assert command == ["nkflow", "run", str(start / "batch"), "-o", str(start / "out"),
                       "--config", str(start / "run.toml"), "--random-state", "3",
                       "--resume"]  # fmt: skip
    monkeypatch.chdir(elsewhere)
    told = runner.invoke(main, ["thresholds", str(start / "out")])
    assert f"finish it with `{shlex.join(command)}`" in told.output
    again = runner.invoke(main, command[1:])  # from here: it finds all, and stops again
    assert again.exit_code == 130, again.output
    # the batch copied elsewhere and given as its sheet: no sample finished, same files
    moved = shutil.copytree(start / "batch", elsewhere / "copy")
    sheet = ["run", str(moved / "metadata.csv"), "-o", str(start / "out"), "--resume", "-q"]
    resumed = runner.invoke(main, sheet)
    assert resumed.exit_code == 130, resumed.output


@pytest.mark.parametrize(
    ("given", "absolute"),
    [
        (["--panel", "panel.csv"], True),
        (["--overrides", "over.toml"], True),
        (["--template", "mine.toml"], True),
        (["--template", "human_blood"], False),
        (["--compensation", "spill.csv"], True),
        (["--compensation", "none"], False),
    ],
)
def test_path_options_are_recorded_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: list[str], absolute: bool
) -> None:
    from nkflow._cli_stop import resume_command

    monkeypatch.chdir(tmp_path)
    for name in ("panel.csv", "over.toml", "mine.toml", "spill.csv", "none"):
        (tmp_path / name).write_text("")  # a file called "none" is still the keyword
    (tmp_path / "in").mkdir()
    ctx = main.commands["run"].make_context("run", ["in", *given])
    command = resume_command(ctx, Path("out"))
    value = str(tmp_path / given[1]) if absolute else given[1]
    assert command == ["nkflow", "run", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
                       given[0], value, "--resume"]  # fmt: skip


def test_a_sample_summary_of_an_older_layout_is_redone_not_half_used(
    tiny_batch: Path, tiny_run, fast_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A result.json of a build before `applied_batch_thresholds` matched the fingerprint
    (same version string): a resume reused it, and the FMO rows' spread came only from the
    samples run again, or stayed blank, silently."""
    from nkflow.pipeline import sample

    out = tmp_path / "out"
    shutil.copytree(tiny_run.out_dir, out)
    results = sorted(out.glob("work/*/result.json"))
    assert results and all(sample.APPLIED_KEY in json.loads(p.read_text()) for p in results)
    # the same folder as the layout before would hold it: no such key, its own schema
    monkeypatch.setattr(sample, "SUMMARY_SCHEMA", sample.SUMMARY_SCHEMA - 1)
    in_process = replace_values(fast_config, {"execution.workers": 1})  # sees the patch
    older = run(tiny_batch, out, config=in_process, resume=True)
    assert older.notes[0].startswith("resumed: 0 of")  # redone under that layout
    for path in sorted(out.glob("work/*/result.json")):
        summary = json.loads(path.read_text())
        summary.pop(sample.APPLIED_KEY)
        path.write_text(json.dumps(summary))
    monkeypatch.undo()
    now = run(tiny_batch, out, config=fast_config, resume=True)
    assert now.notes[0].startswith("resumed: 0 of"), now.notes[0]
    redone = [json.loads(p.read_text()) for p in sorted(out.glob("work/*/result.json"))]
    assert redone and all(sample.APPLIED_KEY in s for s in redone)
    pd.testing.assert_frame_equal(now.tables["thresholds"], tiny_run.tables["thresholds"])
