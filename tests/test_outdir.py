"""The output folder's discipline: inputs never deleted, no writes through links, one run
at a time, no stale temporaries, complete products on resume, one line for a full or
read-only disk (issue 13's attack recipes)."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from nkflow.exceptions import OutputExistsError, OutputFolderError
from nkflow.io.write import ensure_folder, write_bytes_atomic, write_table
from nkflow.pipeline import run
from nkflow.pipeline.outdir import LOCK, MARKER, OutputFolder

REPO = Path(__file__).resolve().parents[1]


def _ours(root: Path) -> Path:
    """An existing nkflow output folder with a table and a work folder."""
    folder = OutputFolder(root)
    folder.prepare()
    folder.release()
    (root / "tables").mkdir()
    (root / "tables" / "populations.csv").write_text("x\n")
    (root / "work" / "s1").mkdir(parents=True)
    return root


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")}


# --------------------------------------------------------------------- --force and inputs
@pytest.mark.parametrize(
    "layout",
    ["input_folder_inside", "input_file_inside", "sheet_inside", "out_inside_input", "same"],
)
def test_force_never_deletes_an_input(tmp_path: Path, layout: str) -> None:
    out = _ours(tmp_path / "out")
    if layout == "out_inside_input":
        data = tmp_path
        inputs = [data]
    elif layout == "same":
        data = out
        inputs = [out]
    else:
        data = out / "data"
        data.mkdir()
        fcs = data / "a.fcs"
        fcs.write_bytes(b"raw data")
        sheet = data / "metadata.csv"
        sheet.write_text("file\na.fcs\n")
        inputs = {
            "input_folder_inside": [data, fcs],
            "input_file_inside": [tmp_path / "elsewhere.csv", fcs],
            "sheet_inside": [sheet],
        }[layout]
    before = _files(tmp_path)
    with pytest.raises(OutputExistsError, match="--force"):
        OutputFolder(out).prepare(force=True, inputs=inputs)
    assert _files(tmp_path) == before  # nothing deleted, no lock file taken


def test_force_replaces_contents_without_following_links(tmp_path: Path) -> None:
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    out = _ours(tmp_path / "out")
    (out / "linked").symlink_to(outside, target_is_directory=True)
    (out / "work" / "s1" / "link.txt").symlink_to(outside / "keep.txt")
    with OutputFolder(out) as folder:
        folder.prepare(force=True, inputs=[tmp_path / "input"])
        assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, LOCK])
    assert (outside / "keep.txt").read_text() == "keep"


def test_force_allows_inputs_elsewhere(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    out = _ours(tmp_path / "out")
    with OutputFolder(out) as folder:
        folder.prepare(force=True, inputs=[data, data / "a.fcs"])
    assert not (out / "tables").exists()


# --------------------------------------------------------------------- links and --resume
@pytest.mark.parametrize("link", ["tables", "figures", "work", "work/s1", "report.html"])
def test_resume_refuses_links_inside_out(tmp_path: Path, link: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    out = _ours(tmp_path / "out")
    target = out / link
    if target.is_dir():
        shutil.rmtree(target)
    target.symlink_to(outside, target_is_directory=True)
    with pytest.raises(OutputFolderError, match="symbolic link") as info:
        OutputFolder(out).prepare(resume=True)
    assert link.split("/")[-1] in str(info.value)
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("writer", ["bytes", "table"])
def test_writers_refuse_a_link_below_their_root(tmp_path: Path, writer: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "tables").symlink_to(outside, target_is_directory=True)
    with pytest.raises(OutputFolderError, match="symbolic link"):
        if writer == "bytes":
            write_bytes_atomic(out / "tables" / "x.csv", b"x", root=out)
        else:
            write_table(pd.DataFrame({"a": [1]}), out / "tables" / "x", root=out)
    assert list(outside.iterdir()) == []
    # without a root (a user's own destination) links are theirs to use
    write_bytes_atomic(out / "tables" / "mine.csv", b"x")
    assert (outside / "mine.csv").is_file()


def test_resume_removes_stale_temporaries_and_the_previous_runs_batch_products(
    tmp_path: Path,
) -> None:
    """A resume killed while writing tables left the old run's config.toml, figures and
    half its tables beside the new ones; they go when the resume starts, its work stays."""
    out = _ours(tmp_path / "out")
    stale = [out / "tables" / ".populations.csv.abc123.tmp", out / "work" / "s1" / ".x.tmp"]
    for path in stale:
        path.write_bytes(b"half")
    (out / "figures").mkdir()
    old = ["report.html", "provenance.json", "config.toml", "tables/populations.parquet",
           "figures/gating_s1.svg", "figures/clusters_heatmap.png"]  # fmt: skip
    for rel in old:
        (out / rel).write_text("old run")
    (out / "tables" / "my_notes.txt").write_text("mine")
    (out / "work" / "s1" / "result.json").write_text("{}")
    with OutputFolder(out) as folder:
        folder.prepare(resume=True)
    assert not any(p.exists() for p in stale)
    assert not [rel for rel in [*old, "tables/populations.csv"] if (out / rel).exists()]
    assert (out / "tables" / "my_notes.txt").read_text() == "mine"
    assert (out / "work" / "s1" / "result.json").is_file()
    assert "did not finish" in OutputFolder(out).unfinished()


def _work_folder(folder: OutputFolder, sample_id: str, *names: str) -> Path:
    work = ensure_folder(folder.sample_dir(sample_id), folder.root)
    for name in names:
        (work / name).write_bytes(b"x")
    return work


def test_resume_removes_only_nkflows_work_folders_of_samples_left_out(tmp_path: Path) -> None:
    out = _ours(tmp_path / "out")
    folder = OutputFolder(out)
    kept = _work_folder(folder, "A", "result.json", "nk.h5ad", "gating.svg")
    left_out = _work_folder(folder, "B", "result.json", "nk.h5ad", "metacluster.parquet")
    half_done = _work_folder(folder, "C", ".nk.h5ad.1a2b.tmp")  # killed before result.json
    foreign = _work_folder(folder, "D", "result.json", "my_analysis.R")
    with folder:
        folder.prepare(resume=True, samples=["A"])
    assert kept.is_dir() and foreign.is_dir()
    assert not left_out.exists() and not half_done.exists()
    assert not (out / "work" / "s1").exists()  # empty
    assert (foreign / "my_analysis.R").is_file()


def test_a_folder_is_finished_when_its_provenance_is_there(tmp_path: Path) -> None:
    out = _ours(tmp_path / "out")
    reason = OutputFolder(out).unfinished()
    assert str(out) in reason and "--resume" in reason
    assert "--resume" not in OutputFolder(out, resumable=False).unfinished()
    (out / "provenance.json").write_text("{}")
    assert OutputFolder(out).unfinished() == ""
    assert OutputFolder(tmp_path).unfinished() == ""  # not a folder nkflow made


# --------------------------------------------------------------------- the lock
def test_second_run_on_the_same_out_is_refused_with_the_pid(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = OutputFolder(out)
    first.prepare()
    try:
        for kwargs in ({"force": True}, {"resume": True}):
            with pytest.raises(OutputFolderError, match=f"PID {os.getpid()}") as info:
                OutputFolder(out).prepare(**kwargs)
            assert info.value.errno == errno.EBUSY
        assert (out / MARKER).is_file()  # the second run deleted nothing
    finally:
        first.release()
    with OutputFolder(out) as again:
        again.prepare(force=True)


def test_lock_is_held_against_another_process(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with OutputFolder(out) as folder:
        folder.prepare()
        code = (
            "import sys\n"
            "from nkflow.pipeline.outdir import OutputFolder\n"
            "from nkflow.exceptions import OutputFolderError\n"
            "try:\n"
            f"    OutputFolder({str(out)!r}).prepare(force=True)\n"
            "except OutputFolderError as exc:\n"
            "    print(exc); sys.exit(3)\n"
        )
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env=env, timeout=120)  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    assert f"PID {os.getpid()}" in proc.stdout


# --------------------------------------------------------------------- resume validation
def _sample_with_products(root: Path) -> tuple[OutputFolder, Path]:
    from nkflow.pipeline.outdir import product_record

    folder = OutputFolder(root)
    work = ensure_folder(folder.sample_dir("S1"), folder.root)
    (work / "nk.h5ad").write_bytes(b"h5ad bytes " * 100)
    summary = {"sample_id": "S1", "products": {"nk.h5ad": product_record(work / "nk.h5ad")}}
    (work / "result.json").write_text(pd.Series(summary).to_json())
    return folder, work


@pytest.mark.parametrize("damage", ["none", "truncate", "delete", "replace", "old_format"])
def test_resume_reuses_only_complete_samples(tmp_path: Path, damage: str) -> None:
    folder, work = _sample_with_products(tmp_path / "out")
    events = work / "nk.h5ad"
    if damage == "truncate":
        events.write_bytes(events.read_bytes()[:100])
    elif damage == "delete":
        events.unlink()
    elif damage == "replace":
        events.write_bytes(events.read_bytes().replace(b"h5ad", b"H5AD"))
    elif damage == "old_format":
        (work / "result.json").write_text('{"sample_id": "S1"}')
    result = folder.sample_result("S1")
    assert (result is not None) == (damage == "none")


def test_truncated_events_file_is_redone_on_resume(
    tiny_batch: Path, fast_config, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = run(tiny_batch, out, config=fast_config)
    victim = next(p for p in sorted((out / "work").glob("*/nk.h5ad")))
    intact = victim.read_bytes()
    victim.write_bytes(intact[: len(intact) // 3])
    again = run(tiny_batch, out, config=fast_config, resume=True)
    assert victim.read_bytes() == intact
    pd.testing.assert_frame_equal(again.populations, first.populations)
    assert not list(out.rglob("*.tmp"))


# --------------------------------------------------------------------- full and read-only disks
def _mount_tmpfs(mount: Path, size: str) -> None:
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                          capture_output=True, text=True)  # fmt: skip
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs here: {proc.stderr.strip()}")


@pytest.fixture
def tiny_disk(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A small tmpfs (256 KiB unless parametrised; needs root and mount, else skipped)."""
    mount = tmp_path / "disk"
    _mount_tmpfs(mount, getattr(request, "param", "256k"))
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_disk_is_one_error_with_no_temporary_left(tiny_disk: Path) -> None:
    with pytest.raises(OutputFolderError) as info:
        write_bytes_atomic(tiny_disk / "out" / "big.bin", b"x" * (1 << 20), root=tiny_disk)
    assert info.value.errno == errno.ENOSPC
    message = str(info.value)
    assert "\n" not in message and "big.bin" in message and "ENOSPC" in message
    assert not list(tiny_disk.rglob("*.tmp"))


def test_read_only_output_is_one_error(tiny_disk: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], check=True)
    with pytest.raises(OutputFolderError) as info:
        OutputFolder(tiny_disk / "out").prepare()
    assert info.value.errno == errno.EROFS
    assert "read-only" in str(info.value)


@pytest.mark.parametrize("tiny_disk", ["256k", "24k"], indirect=True)
def test_cli_on_a_full_disk_prints_one_line_per_problem_and_exits_3(
    tiny_batch: Path, fast_config, tiny_disk: Path, tmp_path: Path
) -> None:
    """256 KiB: samples cannot keep their events (one FAILED line each), the small tables
    and report still fit; 24 KiB: the tables cannot be written either (one error line)."""
    from nkflow.config import config_to_toml

    config = tmp_path / "fast.toml"
    config.write_text(config_to_toml(fast_config))
    env = {**os.environ, "PYTHONPATH": str(REPO), "NKFLOW_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "nkflow.cli", "run", str(tiny_batch), "-o", str(tiny_disk / "o"),
         "--config", str(config), "--workers", "1", "-q"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines and all(line.startswith("nkflow: ") for line in lines), proc.stderr
    assert all("ENOSPC" in line for line in lines), proc.stderr
    assert not list(tiny_disk.rglob("*.tmp"))
    report = tiny_disk / "o" / "report.html"
    if any(line.startswith("nkflow: error:") for line in lines):
        assert len(lines) == 1 and not report.exists()
    else:
        status = pd.read_csv(tiny_disk / "o" / "tables" / "status.csv")
        assert set(status.loc[status["status"] == "failed", "reason_code"]) == {"OUTPUT_WRITE"}
        assert len(lines) == (status["status"] == "failed").sum()


@pytest.mark.parametrize(
    ("extra", "code", "phrase"),
    [(["--force"], 2, "inside the output folder"), (["--resume"], 3, "symbolic link")],
    ids=["force-input-inside", "resume-link"],
)
def test_cli_refuses_before_any_work(
    tiny_batch: Path, fast_config, tmp_path: Path, extra: list[str], code: int, phrase: str
) -> None:
    from click.testing import CliRunner

    from nkflow.cli import main

    out = _ours(tmp_path / "out")
    data = out / "data"
    shutil.copytree(tiny_batch, data)
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.rmtree(out / "tables")
    (out / "tables").symlink_to(outside, target_is_directory=True)
    before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}
    result = CliRunner().invoke(main, ["run", str(data), "-o", str(out), "-q", *extra])
    assert result.exit_code == code, result.output
    assert phrase in result.output
    assert {p: p.read_bytes() for p in data.rglob("*") if p.is_file()} == before
    assert list(outside.iterdir()) == []


def test_an_existing_output_folder_stops_the_run_before_the_plan(
    tiny_batch: Path, tmp_path: Path
) -> None:
    """The batch was checked and its 70-line plan printed before 'output folder exists'."""
    from nkflow.exceptions import OutputExistsError
    from nkflow.pipeline import run

    out = _ours(tmp_path / "out")
    plans: list = []
    with pytest.raises(OutputExistsError, match="output folder exists"):
        run(tiny_batch, out, on_plan=plans.append)
    assert plans == []


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_outputs_follow_the_users_umask(tmp_path: Path, umask: int) -> None:
    previous = os.umask(umask)
    try:
        path = write_bytes_atomic(tmp_path / "report.html", b"<html></html>")
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize(
    ("option", "value", "phrase"),
    [
        ("--template", "no_such_template", "no_such_template"),
        ("--panel", "missing_panel.csv", "missing_panel.csv"),
        ("--config", "bad.toml", "bad.toml"),
    ],
    ids=["template", "panel", "config"],
)
def test_bad_template_panel_or_config_stops_before_anything_is_written(
    tiny_batch: Path, tmp_path: Path, option: str, value: str, phrase: str
) -> None:
    from click.testing import CliRunner

    from nkflow.cli import main

    (tmp_path / "bad.toml").write_text("[gating]\nbootstrap = 'many'\n")
    arg = value if option == "--template" else str(tmp_path / value)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", str(tiny_batch), "-o", str(out), option, arg, "-q"])
    assert result.exit_code == 2, result.output
    assert phrase in result.output
    assert not out.exists()


class _StandInMsvcrt:
    """``msvcrt.locking`` semantics for the test: a byte range per file, one holder."""

    LK_NBLCK, LK_UNLCK = 2, 0

    def __init__(self) -> None:
        self.held: dict[tuple[int, int], int] = {}

    def locking(self, fd: int, mode: int, nbytes: int) -> None:
        assert nbytes == 1 and os.lseek(fd, 0, os.SEEK_CUR) == 0
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino)
        if mode == self.LK_NBLCK:
            if key in self.held and self.held[key] != fd:
                raise PermissionError(errno.EACCES, "locked")
            self.held[key] = fd
        elif self.held.get(key) == fd:
            del self.held[key]


def test_the_lock_works_without_fcntl_as_on_windows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``fcntl`` is POSIX only: ``import fcntl`` stopped every run on Windows before it read
    a file. There the lock is ``msvcrt.locking`` (here a stand-in with its semantics)."""
    from nkflow import _lockfile

    monkeypatch.setattr(_lockfile, "fcntl", None)
    monkeypatch.setattr(_lockfile, "msvcrt", _StandInMsvcrt())
    out = tmp_path / "out"
    with OutputFolder(out) as first:
        first.prepare()
        assert (out / LOCK).read_text().strip() == str(os.getpid())
        with pytest.raises(OutputFolderError, match="another nkflow run") as info:
            OutputFolder(out).prepare(force=True)
        assert info.value.errno == errno.EBUSY
    with OutputFolder(out) as again:  # released: the next run takes it
        again.prepare(force=True)
