"""Settings and setting files are checked once, before any work (exit 2 in the CLI)."""

from __future__ import annotations

import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from nkflow.cli import main
from nkflow.config import ExecutionConfig, RunConfig, load_config, replace_values
from nkflow.exceptions import ConfigError

BAD = [
    ("execution.random_state", -5),
    ("execution.random_state", 2**32),
    ("execution.workers", -1),
    ("gating.bootstrap", -1),
    ("gating.min_events", -3),
    ("gating.fmo_percentile", 100.0),
    ("gating.fmo_percentile", float("nan")),
    ("gating.max_threshold_drift", -0.1),
    ("clustering.xdim", 0),
    ("clustering.per_sample_cap", 0),
    ("clustering.n_metaclusters", 0),
    ("transform.W", 3.0),
    ("transform.A", -1.0),
    ("transform.T", float("inf")),
]


@pytest.mark.parametrize(("key", "value"), BAD, ids=lambda v: str(v))
def test_out_of_range_setting_is_a_config_error(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        replace_values(RunConfig(), {key: value})


def test_more_metaclusters_than_som_nodes_is_a_config_error() -> None:
    """A 3 x 3 SOM with 20 metaclusters silently gave 9."""
    over = {"clustering.xdim": 3, "clustering.ydim": 3, "clustering.n_metaclusters": 20}
    with pytest.raises(ConfigError, match=r"n_metaclusters = 20; valid: at most .* = 9 SOM"):
        replace_values(RunConfig(), over)
    with pytest.raises(ConfigError, match="n_metaclusters"):
        replace_values(RunConfig(), {"clustering.xdim": 3, "clustering.ydim": 3})  # 10 > 9
    assert replace_values(RunConfig(), {**over, "clustering.n_metaclusters": 9})


def test_sections_check_themselves_when_built_in_python() -> None:
    with pytest.raises(ConfigError, match="random_state"):
        ExecutionConfig(random_state=-1)
    assert ExecutionConfig(random_state=2**32 - 1).random_state == 2**32 - 1


def test_config_file_values_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[execution]\nrandom_state = -5\n")
    with pytest.raises(ConfigError, match=r"c\.toml: .*random_state = -5.*0 <= value"):
        load_config(path)


@pytest.mark.parametrize("flags", [["--random-state", "-5"], ["--random-state", "4294967296"]])
def test_cli_refuses_a_bad_seed_before_any_work(monkeypatch, tmp_path: Path, flags) -> None:
    """``--random-state -5`` crashed deep in the run (numpy) and left an output folder."""
    from nkflow import pipeline

    called = []
    monkeypatch.setattr(
        pipeline, "run", lambda *a, **k: called.append(1) or types.SimpleNamespace()
    )
    out = tmp_path / "o"
    result = CliRunner().invoke(main, ["run", str(tmp_path), "-o", str(out), *flags])
    assert result.exit_code == 2, result.output
    assert "execution.random_state" in result.output and "Traceback" not in result.output
    assert not called and not out.exists()


@pytest.mark.parametrize("command", ["run", "gate"])
def test_unparseable_matrix_file_is_one_usage_error(tmp_path: Path, command: str) -> None:
    """An empty matrix file failed each of 31 files with the same message."""
    matrix = tmp_path / "zero.fcs"
    matrix.write_bytes(b"")
    (tmp_path / "in").mkdir()
    out = tmp_path / "o"
    extra = ["--template", "human_tissue"] if command == "gate" else []
    args = [command, str(tmp_path / "in"), *extra, "-o", str(out), "--compensation", str(matrix)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "zero.fcs: no header row" in result.output and "FAILED" not in result.output
    assert not out.exists()


def test_library_run_checks_the_matrix_before_the_output_folder(tmp_path: Path) -> None:
    import nkflow as nk

    matrix = tmp_path / "m.csv"
    matrix.write_text("A,B\n1,0.1\n")  # one row for two channels
    cfg = replace_values(RunConfig(), {"compensation.matrix": str(matrix)})
    with pytest.raises(ConfigError, match=r"m\.csv: header names 2 channels"):
        nk.run(tmp_path, tmp_path / "o", config=cfg)
    assert not (tmp_path / "o").exists()
