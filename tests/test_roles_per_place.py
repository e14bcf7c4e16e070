"""Which sheet roles each part of nkflow treats as a sample, an analysed tube or a control.

The control-role lists were written in several places (the report's gallery, the
frequency summaries, the run's analysed tubes, the pairing, the sheet notes); they come
from one definition in :mod:`nkflow.io.metadata`. This pins what each place does with every
role, so that sharing the lists changes none of them.
"""

from __future__ import annotations

import pandas as pd
import pytest

from nkflow.io.pairing import SAMPLE_ROLES
from nkflow.io.sheet_notes import unnamed_controls_summary
from nkflow.pipeline.steps import sample_waves
from nkflow.report.gallery import is_control_role
from nkflow.tl import phenotype_rows

#: role -> (gallery sample, phenotype tube, analysed by a run, pairing sample)
EXPECTED = {
    "": (True, True, False, True),
    "sample": (True, True, True, True),
    "unstim": (True, True, True, True),
    "stim": (True, True, True, True),
    "positive_control": (False, False, True, False),
    "unstained": (False, False, False, False),
    "fmo:CD69": (False, False, False, False),
    "single_stain:CD56": (False, False, False, False),
    "Sample": (True, True, False, True),  # case: the run matches roles as normalised
    "other": (False, True, False, False),  # unknown: a phenotype tube, not a gallery sample
}


def _sheet() -> pd.DataFrame:
    """One tube per role, each of its own donor (so none hides another)."""
    return pd.DataFrame(
        {
            "sample_id": [f"T{i}" for i in range(len(EXPECTED))],
            "role": list(EXPECTED),
            "stimulation": ["stim" if r == "stim" else "" for r in EXPECTED],
            "donor": [f"D{i}" for i in range(len(EXPECTED))],
            "tissue": "blood",
            "timepoint": "pre",
            "batch": "B1",
        }
    )


@pytest.mark.parametrize("role", list(EXPECTED))
def test_each_place_keeps_its_own_notion_of_a_sample(role: str) -> None:
    sheet = _sheet()
    sid = sheet.loc[sheet["role"] == role, "sample_id"].iloc[0]
    pops = pd.DataFrame({"sample_id": sheet["sample_id"], "population": "NK"})
    unstim, stim = sample_waves(sheet)
    got = (
        not is_control_role(role),
        sid in set(phenotype_rows(pops, sheet)["sample_id"]),
        sid in {*unstim["sample_id"], *stim["sample_id"]},
        role.lower() in SAMPLE_ROLES,
    )
    assert got == EXPECTED[role]


def test_sheet_notes_name_files_named_like_every_kind_of_control() -> None:
    files = ["FMO_CD69.fcs", "PC_stim.fcs", "unstained.fcs", "d1_unstim.fcs", "d1_stim.fcs",
             "d1.fcs"]  # fmt: skip
    text = unnamed_controls_summary(pd.DataFrame({"file": files, "sample_id": files}))
    assert "3 file(s) named like controls" in text
    for control in ("(fmo:CD69)", "(positive_control)", "(unstained)"):
        assert control in text
