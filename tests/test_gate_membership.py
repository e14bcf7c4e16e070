"""``nkflow gate --events``: one membership row per event of the file, row i = event i.

The rows were the events QC kept, renumbered from 0: joined by position with the file's
events (as anyone would), the simulator's NK truth gave F1 0.305 on a sample-data tube, and
on a CytoNorm file every row after the one margin event QC removed was off by one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import flowio
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from nkflow.cli import main
from nkflow.datasets import truth_membership
from nkflow.pipeline.gate import event_membership
from nkflow.pp import qc_events


def _gate_events(tmp_path: Path, fcs: Path, template: str) -> tuple[pd.DataFrame, int]:
    out = tmp_path / "out"
    args = ["gate", str(fcs), "--template", template, "-o", str(out), "--events", "-q",
            "--workers", "1", "--bootstrap", "0"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    (member,) = (out / "membership").glob("*.parquet")
    n_file = int(flowio.FlowData(str(fcs), only_text=True).text["tot"])
    return pd.read_parquet(member), n_file


def _f1(called: np.ndarray, truth: np.ndarray) -> float:
    both = float(np.sum(called & truth))
    return 2 * both / float(called.sum() + truth.sum())


def test_rows_are_the_files_events_against_the_simulators_truth(
    sample_data: Path, tmp_path: Path
) -> None:
    fcs = sample_data / "human" / "D2_blood_pre_stim.fcs"
    member, n_file = _gate_events(tmp_path, fcs, "human_blood")
    truth = pd.read_parquet(sample_data / "human" / "truth" / "D2_blood_pre_stim.parquet")
    assert len(member) == n_file == len(truth)
    assert member["event"].tolist() == list(range(n_file))
    assert 0 < (~member["qc_pass"]).sum() < n_file  # this tube loses events to QC
    assert not (member.drop(columns=["event", "qc_pass"]) & ~member[["qc_pass"]].values).any(
        axis=None
    )  # an event QC removed is in no gate
    nk_truth = truth_membership(truth["label"], "human")["NK"].to_numpy()
    kept = member["qc_pass"].to_numpy()
    assert _f1(member["NK"].to_numpy()[kept], nk_truth[kept]) > 0.95


def test_a_real_file_with_a_margin_event_keeps_its_event_numbers(
    external: Path, tmp_path: Path
) -> None:
    fcs = external / "cytonorm" / "inst" / "extdata" / "Gates_PTLG021_Unstim_Control_1.fcs"
    if not fcs.is_file():
        pytest.skip(f"{fcs} not found")
    shutil.copy(fcs, tmp_path / fcs.name)
    member, n_file = _gate_events(tmp_path, tmp_path / fcs.name, "auto")
    assert len(member) == n_file == 1000
    from nkflow.io import read_fcs

    passed, _ = qc_events(read_fcs(tmp_path / fcs.name))
    assert (member["qc_pass"].to_numpy() == passed).all()
    assert not passed.all()  # QC removes an event inside the file, not at its end
    assert np.flatnonzero(~passed).max() < n_file - 1


def test_event_membership_refuses_event_numbers_past_the_file() -> None:
    from nkflow.exceptions import GatingError

    obs = pd.DataFrame({"NK": [True, False]}, index=["0", "5"])
    with pytest.raises(GatingError, match="3 events"):
        event_membership(obs, ["NK"], 3)
    full = event_membership(obs, ["NK"], 6)
    assert full["NK"].tolist() == [True, False, False, False, False, False]
    assert full["qc_pass"].tolist() == [True, False, False, False, False, True]


def test_gates_named_like_the_event_columns_keep_their_own_column() -> None:
    # a workspace may call a gate "event": it was dropped from the table without a word
    obs = pd.DataFrame({"event": [True, False], "qc_pass": [False, True]}, index=["1", "2"])
    full = event_membership(obs, ["event", "qc_pass"], 3)
    assert list(full.columns) == ["event", "qc_pass", "event (gate)", "qc_pass (gate)"]
    assert full["event"].tolist() == [0, 1, 2]
    assert full["qc_pass"].tolist() == [False, True, True]
    assert full["event (gate)"].tolist() == [False, True, False]
    assert full["qc_pass (gate)"].tolist() == [False, False, True]
