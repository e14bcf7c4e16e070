"""A stimulated tube whose unstimulated tube is in the sheet but fails is told so: the
NO_UNSTIM message names the partner and why it failed, and the pairing line of ``check``
and of the run's plan says the partner fails, not that there is none."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from nkflow.cli import main
from nkflow.config import RunConfig, replace_values
from nkflow.io.pairing import pairing_summary
from nkflow.pipeline import run
from nkflow.tl.score import RULES, score

SAMPLE_DATA = Path(__file__).resolve().parents[1] / "sample_data" / "human"
SHEET = """file,sample_id,donor,tissue,timepoint,stimulation,role,species,batch
D1_blood_pre_unstim.fcs,D1,D1,blood,pre,unstim,unstim,human,B1
D1_blood_pre_stim.fcs,D1_stim,D1,blood,pre,stim,stim,human,B1
D2_blood_pre_unstim.fcs,D2,D2,blood,pre,unstim,unstim,human,B1
D2_blood_pre_stim.fcs,D2_stim,D2,blood,pre,stim,stim,human,B1
"""


@pytest.fixture(scope="module")
def broken_batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two donors; donor D2's unstimulated tube is a 10-byte file that cannot be read."""
    batch = tmp_path_factory.mktemp("broken_partner")
    for name in ("D1_blood_pre_unstim.fcs", "D1_blood_pre_stim.fcs", "D2_blood_pre_stim.fcs"):
        shutil.copy(SAMPLE_DATA / name, batch / name)
    (batch / "D2_blood_pre_unstim.fcs").write_bytes(b"FCS3.1    ")
    (batch / "metadata.csv").write_text(SHEET, encoding="utf-8")
    return batch / "metadata.csv"


def _sheet() -> pd.DataFrame:
    return pd.read_csv(pd.io.common.StringIO(SHEET), dtype=str)


@pytest.mark.parametrize(
    ("failing", "expected"),
    [
        ((), "pairing: 2 stimulated tube(s), 2 with their unstimulated tube"),
        (
            ("D2",),
            "pairing: 2 stimulated tube(s), 1 with their unstimulated tube; 1 whose "
            "unstimulated tube in the sheet fails (D2_blood_pre_unstim.fcs;",
        ),
        (
            ("D2_stim",),
            "pairing: 2 stimulated tube(s), 1 with their unstimulated tube; 1 that fail(s) "
            "to be read or analysed (D2_blood_pre_stim.fcs;",
        ),
    ],
    ids=["none fails", "the partner fails", "a stimulated tube fails"],
)
def test_pairing_line_says_a_listed_partner_fails(failing: tuple[str, ...], expected: str) -> None:
    assert pairing_summary(_sheet(), failing).startswith(expected)


def test_check_says_the_partner_fails(broken_batch: Path) -> None:
    result = CliRunner().invoke(main, ["check", str(broken_batch)])
    assert "1 whose unstimulated tube in the sheet fails (D2_blood_pre_unstim.fcs;" in (
        result.output
    )
    assert "without any" not in result.output


def _counts(sample_id: str) -> dict:
    return dict(
        sample_id=sample_id, population="NK", n_events=1000, n_areg=50, n_ifng=30, n_nkg2d=0,
        n_cd107a=0, n_areg_only=40, n_ifng_only=20, n_areg_ifng=10, n_trnk=0,
        threshold_areg=1.0, areg_rule="fmo_percentile:99.5", areg_control_file="fmo.fcs",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("sheet_ids", "unavailable", "expected"),
    [
        (["D1_stim"], None, "NO_UNSTIM: " + RULES["NO_UNSTIM"]),
        (["D1", "D1_stim"], None, "'D1' has no counts (not analysed)"),
        (
            ["D1", "D1_stim"],
            {"D1": "parse-failed, FCS_READ: D1.fcs: too short"},
            "'D1' failed (parse-failed, FCS_READ: D1.fcs: too short)",
        ),
    ],
    ids=["no partner listed", "partner listed, no counts", "partner listed, failed"],
)
def test_no_unstim_message_names_the_listed_partner(
    sheet_ids: list[str], unavailable: dict[str, str] | None, expected: str
) -> None:
    sheet = _sheet()
    meta = sheet[sheet["sample_id"].isin(sheet_ids)]
    flags = score(pd.DataFrame([_counts("D1_stim")]), meta, unavailable=unavailable).flags
    assert flags["failed_rules"].iat[0].startswith("NO_UNSTIM")
    assert expected in flags["message"].iat[0]


def test_run_flags_name_the_failed_partner(broken_batch: Path, tmp_path: Path) -> None:
    config = replace_values(
        RunConfig(),
        {"gating.bootstrap": 0, "clustering.enabled": False, "execution.workers": 1},
    )
    results = run(broken_batch, tmp_path / "out", config=config)
    flags = results.tables["flags"]
    messages = set(flags.loc[flags["sample_id"] == "D2_stim", "message"])
    assert messages and all("'D2' failed (parse-failed" in m for m in messages)
    assert not set(flags.loc[flags["sample_id"] == "D1_stim", "failed_rules"]) & {"NO_UNSTIM"}
