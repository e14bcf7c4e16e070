"""The overrides file on the command line and in a config: read before the folder is touched."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from nkflow.cli import main
from nkflow.config import load_config
from nkflow.exceptions import ConfigError

GOOD = 'set_by = "A"\n[[threshold]]\ngate = "NK"\nmarker = "CD69"\nvalue = 0.5\nreason = "r"\n'


def _finished_folder(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    (out / "tables").mkdir(parents=True)
    (out / ".nkflow").write_text("nkflow output folder\n")
    (out / "tables" / "thresholds.csv").write_text("kept\n")
    (out / "provenance.json").write_text("{}")
    return out


@pytest.mark.parametrize("flag", ["--force", "--resume"])
def test_bad_overrides_file_leaves_the_results_alone(tmp_path, flag):
    """Before, a TOML typo was found after --force/--resume had emptied tables/."""
    out = _finished_folder(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text('[[threshold]]\ngate = "NK\n')
    args = ["run", str(tmp_path), "-o", str(out), flag, "-q", "--overrides", str(bad)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "not valid TOML" in result.output
    assert (out / "tables" / "thresholds.csv").read_text() == "kept\n"


def test_ctrl_c_says_how_to_finish_and_exits_130(tmp_path, monkeypatch):
    import nkflow.pipeline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(nkflow.pipeline, "run", interrupted)
    result = CliRunner().invoke(main, ["run", str(tmp_path), "-o", str(tmp_path / "o"), "-q"])
    assert result.exit_code == 130
    assert "interrupted; finish with `nkflow run" in result.output and "--resume`" in result.output


def test_the_resume_command_keeps_the_runs_settings(tmp_path, monkeypatch):
    """The hint was `nkflow run IN -o OUT --resume`: run as printed, it finished a
    --no-cluster --bootstrap 0 --random-state 3 run with clustering, 200 redraws and seed 0,
    redoing every tube (the settings are in each tube's fingerprint)."""
    import shlex

    import nkflow.pipeline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(nkflow.pipeline, "run", interrupted)
    out = tmp_path / "out dir"
    args = ["run", str(tmp_path), "-o", str(out), "-q", "--no-cluster", "--bootstrap", "0",
            "--random-state", "3", "--force"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 130
    hint = result.output.split("finish with `", 1)[1].split("`", 1)[0]
    words = shlex.split(hint)
    assert words[:5] == ["nkflow", "run", str(tmp_path), "-o", str(out)]
    assert {"--no-cluster", "--resume"} <= set(words) and "--force" not in words
    assert words[words.index("--bootstrap") + 1] == "0"
    assert words[words.index("--random-state") + 1] == "3"


def test_thresholds_of_an_unfinished_run_says_resume(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".nkflow").write_text("nkflow output folder\n")
    result = CliRunner().invoke(main, ["thresholds", str(out)])
    assert result.exit_code == 2 and "did not finish" in result.output
    assert "not an nkflow output folder" not in result.output


def test_config_overrides_path_is_relative_to_the_config_file(tmp_path, monkeypatch):
    folder = tmp_path / "cfg"
    folder.mkdir()
    (folder / "ov.toml").write_text(GOOD)
    (folder / "run.toml").write_text('[gating]\noverrides = "ov.toml"\n')
    monkeypatch.chdir(tmp_path)  # not the config's folder
    config = load_config(folder / "run.toml")
    assert config.gating.overrides == str((folder / "ov.toml").resolve())


@pytest.mark.parametrize(
    ("text", "needle"), [(None, "cannot be read"), ('set_by = "A"\n[[threshold]]\nx = 1\n', "x")]
)
def test_config_overrides_file_is_checked_at_load(tmp_path, text, needle):
    if text is not None:
        (tmp_path / "ov.toml").write_text(text)
    (tmp_path / "run.toml").write_text('[gating]\noverrides = "ov.toml"\n')
    with pytest.raises(ConfigError, match=f"run.toml.*overrides.*{needle}"):
        load_config(tmp_path / "run.toml")


@pytest.mark.slow
def test_entry_the_batch_would_not_apply_stops_before_the_folder(tiny_batch, fast_config, tmp_path):
    """Checked against the plan (gates of the resolved template, the sheet's tissues)
    before the output folder is made: before, a misspelt gate ran the whole batch and
    left a manual row in thresholds.csv that no population used."""
    from nkflow.config import replace_values
    from nkflow.exceptions import GatingTemplateError
    from nkflow.pipeline import run

    path = tmp_path / "o.toml"
    path.write_text(GOOD.replace('"NK"', '"NKcells"'))
    config = replace_values(fast_config, {"gating.overrides": str(path)})
    with pytest.raises(GatingTemplateError, match=r"threshold\[0\]: gate 'NKcells'.*valid gates"):
        run(tiny_batch, tmp_path / "out", config=config)
    assert not (tmp_path / "out").exists()


def test_gate_refuses_a_bad_overrides_entry_before_any_tube_and_leaves_no_folder(
    tmp_path, sample_data
):
    """`nkflow gate --overrides` with tissue = "livre" refused only after the FMO tubes
    were gated (~14 s), leaving an empty output folder that the corrected run refused."""
    import shutil

    batch = tmp_path / "batch"
    batch.mkdir()
    for name in ("D1_blood_pre_unstim.fcs", "D1_liver_pre_unstim.fcs"):
        shutil.copy(sample_data / "human" / name, batch / name)
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'set_by = "A. Analyst"\n[[threshold]]\ntissue = "livre"\ngate = "NK"\n'
        'marker = "CD69"\nvalue = 0.5\nreason = "FMO failed"\n'
    )
    out = tmp_path / "gout"
    args = ["gate", str(batch), "--template", "human_tissue", "-o", str(out), "-q",
            "--overrides", str(bad)]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "livre" in result.output
    assert not out.exists()
