"""Progress when stderr is not a terminal (nohup, tee, a scheduler): plain lines, a few per
stage, instead of bars that would not redraw; nothing under ``-q``."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from nkflow._console import ProgressLines
from nkflow.cli import main

SAMPLE_DATA = Path(__file__).resolve().parents[1] / "sample_data" / "human"
SHEET = """file,sample_id,donor,tissue,timepoint,stimulation,role,species,batch
D1_blood_pre_unstim.fcs,D1,D1,blood,pre,unstim,unstim,human,B1
D1_blood_pre_stim.fcs,D1_stim,D1,blood,pre,stim,stim,human,B1
"""


class _Clock:
    """Seconds that advance by ``step`` each time they are read."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def _lines(step: float, total: int) -> list[str]:
    out = io.StringIO()
    progress = ProgressLines(every=10.0, stream=out, clock=_Clock(step))
    progress("controls", 0, 0)  # nothing to do: no line
    progress("samples", 0, total)
    for done in range(1, total + 1):
        progress("samples", done, total)
    progress("report", 0, 1)
    progress("report", 1, 1)
    return out.getvalue().splitlines()


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        # fast steps: the start, then one line per tenth of the stage
        (0.01, ["nkflow: samples (60) ..."] + [f"nkflow: samples: {n}/60 done" for n in
                                                range(6, 61, 6)] + ["nkflow: report ..."]),
        # slow steps (11 s each): every step is news
        (11.0, ["nkflow: samples (60) ..."] + [f"nkflow: samples: {n}/60 done" for n in
                                                range(1, 61)] + ["nkflow: report ..."]),
    ],
    ids=["fast", "slow"],
)  # fmt: skip
def test_progress_lines_per_tenth_or_every_ten_seconds(step: float, expected: list[str]) -> None:
    assert _lines(step, 60) == expected


@pytest.mark.parametrize(("flags", "shown"), [([], True), (["-q"], False)], ids=["plain", "-q"])
def test_run_prints_progress_lines_when_stderr_is_not_a_terminal(
    tmp_path: Path, flags: list[str], shown: bool
) -> None:
    for name in ("D1_blood_pre_unstim.fcs", "D1_blood_pre_stim.fcs"):
        shutil.copy(SAMPLE_DATA / name, tmp_path / name)
    (tmp_path / "metadata.csv").write_text(SHEET, encoding="utf-8")
    args = ["run", str(tmp_path / "metadata.csv"), "-o", str(tmp_path / "out"), "--no-cluster"]
    result = CliRunner().invoke(main, [*args, "--bootstrap", "0", "--workers", "1", *flags])
    assert result.exit_code == 0, result.output
    progress = ["nkflow: samples (2) ...", "nkflow: samples: 2/2 done", "nkflow: report ..."]
    lines = result.output.splitlines()
    assert all(line in lines for line in progress) is shown
    assert any(line.startswith("nkflow: samples") for line in lines) is shown
