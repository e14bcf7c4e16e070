"""QC on files with truth: the committed sample batch and real public files.

sample_data tubes were simulated with a per-event ``qc_anomaly`` truth: clean tubes must
lose <= 1% of their events to time QC, the clogged tube >= 95% of its clog. Real files
are checked only where something is known: PeacoQC's margin output for 111.fcs, and the
FlowSOM example 68983.fcs whose FlowJo gating keeps every event.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nkflow.io import nkflow_uns, read_fcs
from nkflow.pp import qc

SAMPLE_DATA = Path(__file__).resolve().parents[1] / "sample_data"

FILES = sorted(SAMPLE_DATA.glob("*/*.fcs"))


def _read(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_fcs(path)


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.stem}" for p in FILES])
def test_sample_data_time_qc_against_truth(path: Path) -> None:
    anomaly = pd.read_parquet(path.parent / "truth" / f"{path.stem}.parquet")["qc_anomaly"]
    anomaly = anomaly.to_numpy()
    adata = _read(path)
    qc(adata, remove=False)
    rec = adata.uns["nkflow"]["qc"]
    # the 2,000-event mouse FMO tubes minus margin events fill fewer than 20 bins
    assert rec["time_qc"] == "ran" or rec["time_qc_skipped"].startswith("too few events")
    passed = adata.obs["qc_pass"].to_numpy()
    if anomaly.any():
        assert rec["time_qc"] == "ran" and 1 - passed[anomaly].mean() >= 0.95
        assert len(rec["time_stretches"]) == 1
    else:
        assert rec["removed_time_fraction"] <= 0.01, rec["summary"]


def _peacoqc_removed(external: Path, adata) -> np.ndarray:
    """Events of 111.fcs missing from 111_Comp_Trans.fcs (matched on Time and raw FSC-A)."""
    after = _read(external / "peacoqc/inst/extdata/111_Comp_Trans.fcs")
    key = lambda a: list(zip(a[:, "Time"].X.ravel(), a[:, "FSC-A"].X.ravel(), strict=True))  # noqa: E731
    kept = set(key(after))
    return np.array([k not in kept for k in key(adata)])


def test_peacoqc_file(external: Path) -> None:
    """Real LSRII file; PeacoQC's 111_Comp_Trans.fcs keeps 9,617 of its 10,000 events.

    Those 383 are PeacoQC's margin step (events at a channel's maximum, or at or below
    flowCore's minimum range -111; 99.9% of events agree with that rule), not its time
    QC. nkflow removes the same saturated events, keeps the negative ones (spread, not
    margin), and its time QC removes the start-up transient where the G-laser channel
    medians climb from below zero to their plateau.
    """
    adata = _read(external / "peacoqc/inst/extdata/111.fcs")
    removed_by_peacoqc = _peacoqc_removed(external, adata)
    assert removed_by_peacoqc.sum() == 10_000 - 9_617
    qc(adata, remove=False, margin_kwargs={"key_added": "qc_margin_pass"})
    rec = nkflow_uns(adata)["qc"]
    margin = ~adata.obs["qc_margin_pass"].to_numpy()
    assert rec["removed_margin"] == margin.sum() >= 60
    assert removed_by_peacoqc[margin].all()  # every nkflow margin event is one of PeacoQC's
    (stretch,) = rec["time_stretches"]
    assert stretch["first_event"] == 0 and stretch["last_event"] < 1_200
    assert all(s.split()[0].startswith("G") and " down " in s for s in stretch["signals"])
    assert 8_500 <= rec["n_out"] <= 9_617


def test_clean_real_file_kept(external: Path) -> None:
    """FlowSOM's 68983.fcs: its FlowJo gating (Lymphocytes 19,212 of 19,225) keeps the
    acquisition whole, so time QC must not remove more than 1%."""
    adata = _read(external / "flowsom/inst/extdata/68983.fcs")
    qc(adata, remove=False)
    rec = adata.uns["nkflow"]["qc"]
    assert rec["time_qc"] == "ran" and rec["removed_time_fraction"] <= 0.01
