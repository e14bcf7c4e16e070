"""Run, check and scoring pair a stimulated tube with the same unstimulated tube, or none.

A folder without a sheet names no donor, tissue or timepoint: every tube has the same empty
pair key. One resting tube is the stimulated tube's partner; several may be different
donors (rule ``UNSTIM_AMBIGUOUS``): the stimulated tube borrows no cut-off, is not scored,
and ``nkflow check`` says so. A resting tube is any sample tube that is not stimulated
(:func:`nkflow.io.pairing.is_resting`), named ``unstim`` or not, and a tube that fails to
read still counts: it may be the other donor's.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nkflow.config import RunConfig, replace_values
from nkflow.io import metadata_from_folder
from nkflow.io.pairing import pairing_summary
from nkflow.pipeline import run
from nkflow.tl.score import score

STIM = "D1_blood_pre_stim"


@pytest.mark.parametrize(
    ("copies", "partner"),
    [
        ({"D1_blood_pre_unstim": "D1_blood_pre_unstim"}, "D1_blood_pre_unstim"),
        # a tube whose name says no condition is resting: the one partner, everywhere
        ({"D1_blood_pre_unstim": "other"}, "other"),
        # a liver tube of unknown tissue beside it: two resting tubes, no partner
        ({"D1_blood_pre_unstim": "D1_blood_pre_unstim", "D1_liver_pre_unstim": "other"}, ""),
        # a file that cannot be read is still a second resting tube of the folder
        ({"D1_blood_pre_unstim": "D1_blood_pre_unstim", "": "corrupted_unstim"}, ""),
    ],
)
def test_run_check_and_scores_agree_on_the_partner(
    tiny_batch: Path, tmp_path: Path, fast_config: RunConfig, copies: dict, partner: str
) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(tiny_batch / f"{STIM}.fcs", bare)
    for source, name in copies.items():
        if source:
            shutil.copy(tiny_batch / f"{source}.fcs", bare / f"{name}.fcs")
        else:
            (bare / f"{name}.fcs").write_bytes(b"FCS3.0    ")  # too short for a HEADER
    note = pairing_summary(metadata_from_folder(bare))
    assert ("1 with their unstimulated tube" in note) == bool(partner)  # nkflow check
    assert ("1 without a sure one" in note) != bool(partner)
    cfg = replace_values(fast_config, {"gating.bootstrap": 0, "clustering.enabled": False})
    res = run(bare, tmp_path / "run", config=cfg)
    counts = res.tables["counts"]
    rules = counts.loc[counts["sample_id"] == STIM, "areg_rule"].astype(str)
    assert rules.str.startswith("unstimulated tube:").all() == bool(partner)  # cut-off
    flags = res.tables["flags"]
    assert (flags["unstim_sample_id"].fillna("") == partner).all()  # scored against it
    first_rule = flags["failed_rules"].str.split(";").str[0]
    assert (first_rule == "UNSTIM_AMBIGUOUS").all() != bool(partner)
    assert np.isnan(res.tables["scores"]["areg_net"]).all() != bool(partner)


def _counts(sample_id: str) -> dict:
    return dict(sample_id=sample_id, population="NK", n_events=1000, n_areg=20, n_ifng=20,
                n_nkg2d=500, n_cd107a=50, n_areg_only=10, n_ifng_only=10, n_areg_ifng=10,
                n_trnk=100, threshold_areg=1.0, areg_rule="fmo p99.5",
                areg_control_file="fmo.fcs", areg_channel="PE-A")  # fmt: skip


def _tube(sample_id: str, role: str, stimulation: str, donor: str = "") -> dict:
    return dict(sample_id=sample_id, file=f"{sample_id}.fcs", donor=donor, tissue="",
                timepoint="", batch="", role=role, stimulation=stimulation)  # fmt: skip


@pytest.mark.parametrize(
    ("others", "donor", "partner"),
    [
        ([("u", "unstim", "unstim")], "", "u"),
        ([("o", "sample", "")], "", "o"),  # role sample, no condition: a resting tube
        ([("u", "unstim", "unstim"), ("o", "sample", "")], "", ""),  # may be two donors
        ([("u", "unstim", "unstim"), ("o", "sample", "")], "d1", "o;u"),  # replicates
        ([("u", "unstim", "unstim"), ("gone", "sample", "")], "", ""),  # no counts: failed
    ],
)
def test_scoring_pairs_on_the_resting_tube_rule(
    others: list[tuple[str, str, str]], donor: str, partner: str
) -> None:
    sheet = pd.DataFrame([_tube("s", "stim", "stim", donor)]
                         + [_tube(sid, role, st, donor) for sid, role, st in others])  # fmt: skip
    counts = pd.DataFrame([_counts(sid) for sid in sheet["sample_id"] if sid != "gone"])
    nk = score(counts, sheet).flags.set_index("population").loc["NK"]
    assert nk["unstim_sample_id"] == partner
    assert (nk["failed_rules"].split(";")[0] == "UNSTIM_AMBIGUOUS") != bool(partner)
    assert ("1 with their unstimulated tube" in pairing_summary(sheet)) == bool(partner)
