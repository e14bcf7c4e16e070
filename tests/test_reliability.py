"""Reliability: determinism, untouched inputs, hostile names, a run killed with SIGKILL."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from nkflow.config import RunConfig, config_to_toml
from nkflow.pipeline import run


def _hashes(folder: Path, pattern: str) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.glob(pattern))
        if p.is_file()
    }


def test_two_runs_give_byte_identical_outputs(
    tiny_batch: Path, tiny_run, fast_config: RunConfig, tmp_path: Path
) -> None:
    inputs_before = _hashes(tiny_batch, "**/*")
    again = run(tiny_batch, tmp_path / "again", config=fast_config)
    for pattern in (
        "tables/*.csv",
        "tables/*.parquet",
        "figures/*.png",
        "figures/*.svg",
        "report.html",
    ):
        assert _hashes(again.out_dir, pattern) == _hashes(tiny_run.out_dir, pattern), pattern
    # input files are never modified
    assert _hashes(tiny_batch, "**/*") == inputs_before


HOSTILE_IDS = ["../../escaped", "/tmp/absolute_escape", "a/b\\c", "x" * 300, "<script>x</script>"]


def test_hostile_sample_ids_write_nothing_outside_out(
    tiny_batch: Path, fast_config: RunConfig, tmp_path: Path
) -> None:
    batch = tmp_path / "deep" / "er" / "batch"
    shutil.copytree(tiny_batch, batch)
    sheet = pd.read_csv(batch / "metadata.csv", keep_default_na=False)
    analysed = sheet.index[sheet["role"].isin(["unstim", "stim"])][: len(HOSTILE_IDS)]
    sheet.loc[analysed, "sample_id"] = HOSTILE_IDS[: len(analysed)]
    sheet.to_csv(batch / "metadata.csv", index=False)
    before = {p for p in tmp_path.rglob("*")}
    out = tmp_path / "deep" / "out"
    res = run(batch, out, config=fast_config)
    after = {p for p in tmp_path.rglob("*")}
    outside = [p for p in after - before if not p.is_relative_to(out)]
    assert outside == []
    assert not Path("/tmp/absolute_escape").exists()
    ids = set(res.status["sample_id"])
    assert set(HOSTILE_IDS[: len(analysed)]) <= ids
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<script>x</script>" not in html


def _run_cli(batch: Path, out: Path, config: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "nkflow.cli", "run", str(batch), "-o", str(out),
           "--config", str(config), "-q", *extra]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_sigkill_mid_run_then_resume_equals_clean_run(
    tiny_batch: Path, tiny_run, fast_config: RunConfig, tmp_path: Path
) -> None:
    config = tmp_path / "run.toml"
    config.write_text(config_to_toml(fast_config))
    out = tmp_path / "killed"
    proc = _run_cli(tiny_batch, out, config)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list((out / "work").glob("*/result.json"))) >= 2:
            break
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.fail(f"the run ended before it could be killed: {proc.communicate()}")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "report.html").exists()
    # nothing half-written: every file present is complete (no temporary files left to read)
    resumed = _run_cli(tiny_batch, out, config, "--resume")
    _, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr.decode()
    for pattern in ("tables/*.csv", "report.html"):
        assert _hashes(out, pattern) == _hashes(tiny_run.out_dir, pattern), pattern
