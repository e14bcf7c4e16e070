"""A run's batch notes (files the sheet leaves out, files with identical content) reach
report.html and provenance.json, not only a terminal: a ``-q`` run prints none of them."""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

import pytest

from nkflow.config import RunConfig, replace_values
from nkflow.pipeline import run

SAMPLE_DATA = Path(__file__).resolve().parents[1] / "sample_data" / "human"
SHEET = """file,sample_id,donor,tissue,timepoint,stimulation,role,species,batch
D1_blood_pre_unstim.fcs,D1,D1,blood,pre,unstim,unstim,human,B1
D1_blood_pre_stim.fcs,D1_stim,D1,blood,pre,stim,stim,human,B1
D9_blood_pre_unstim.fcs,D9,D9,blood,pre,unstim,unstim,human,B1
"""


@pytest.fixture(scope="module")
def noted_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sheet that leaves out an FMO tube beside its files and lists a tube copied under a
    second donor's name; the run's output folder."""
    batch = tmp_path_factory.mktemp("noted_batch")
    for name in ("D1_blood_pre_unstim.fcs", "D1_blood_pre_stim.fcs", "blood_FMO_AREG.fcs"):
        shutil.copy(SAMPLE_DATA / name, batch / name)
    shutil.copy(SAMPLE_DATA / "D1_blood_pre_unstim.fcs", batch / "D9_blood_pre_unstim.fcs")
    (batch / "metadata.csv").write_text(SHEET, encoding="utf-8")
    config = replace_values(
        RunConfig(),
        {"gating.bootstrap": 0, "clustering.enabled": False, "execution.workers": 1},
    )
    out = tmp_path_factory.mktemp("noted_out") / "out"
    run(batch / "metadata.csv", out, config=config)
    return out


@pytest.mark.parametrize(
    "expected",
    [
        "1 FCS file(s) beside the sheet's files are not in it, so not analysed: blood_FMO_AREG.fcs",
        "1 group(s) of files with identical content: "
        "'D1_blood_pre_unstim.fcs' = 'D9_blood_pre_unstim.fcs'",
    ],
)
def test_batch_notes_reach_the_report_and_the_provenance(noted_run: Path, expected: str) -> None:
    report = html.unescape((noted_run / "report.html").read_text(encoding="utf-8"))
    overview = report[report.index('id="overview"') : report.index('id="gating"')]
    assert expected in overview
    provenance = json.loads((noted_run / "provenance.json").read_text(encoding="utf-8"))
    assert any(expected in note for note in provenance["batch_notes"])


def test_batch_notes_shown_once_in_the_report(noted_run: Path) -> None:
    """The overview shows them; the provenance section does not repeat them."""
    report = html.unescape((noted_run / "report.html").read_text(encoding="utf-8"))
    assert report.count("beside the sheet's files are not in it") == 1
