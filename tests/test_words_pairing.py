"""The pairing line names a stimulated tube that fails itself as failing, not as unpaired."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from nkflow.io.pairing import pairing_summary

SHEET = """file,sample_id,donor,tissue,timepoint,stimulation,role,species,batch
D1_blood_pre_unstim.fcs,D1,D1,blood,pre,unstim,unstim,human,B1
D1_blood_pre_stim.fcs,D1_stim,D1,blood,pre,stim,stim,human,B1
ext_corrupted.fcs,X999_blood_pre_stim,X999,blood,pre,stim,stim,human,B1
"""


@pytest.mark.parametrize(
    ("failing", "says", "not_says"),
    [
        ((), "1 without any (no unstimulated tube", "fail"),
        (
            ("X999_blood_pre_stim",),
            "pairing: 2 stimulated tube(s), 1 with their unstimulated tube; 1 that fail(s) "
            "to be read or analysed (ext_corrupted.fcs; why is said with each file)",
            "without any",
        ),
    ],
    ids=["listed", "it fails to read"],
)
def test_a_failed_stimulated_tube_without_a_partner_is_named_as_failing(failing, says, not_says):
    """X999_blood_pre_stim (parse-failed) was counted "1 without any (no unstimulated tube
    ...)", as if its sheet lacked a partner; it has no data to pair."""
    line = pairing_summary(pd.read_csv(io.StringIO(SHEET), dtype=str), failing)
    assert says in line and not_says not in line
