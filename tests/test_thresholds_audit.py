"""The thresholds table is the audit trail: every cut-off a tube was cut at, one row each.

A stimulated tube's cut-off borrowed from its unstimulated partner is listed under the
stimulated tube's id (rule ``unstimulated tube: <rule>``, the partner's file as control);
FMO rows say ``evidence = fmo``; every evidence value is documented; and adding an
overrides file to a ``--resume`` redoes only the samples its scope matches.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_fmo_rows_say_their_evidence(tiny_run) -> None:
    table = tiny_run.thresholds
    fmo = table[table["rule"].str.startswith("fmo p")]
    assert len(fmo) and (fmo["evidence"] == "fmo").all()


@pytest.mark.parametrize("document", ["docs/contracts.md", "README.md", "gating/README.md"])
def test_every_evidence_value_written_is_documented(tiny_run, document: str) -> None:
    text = (ROOT / document).read_text(encoding="utf-8")
    values = set(tiny_run.thresholds["evidence"].dropna().astype(str)) - {""}
    assert "sample_quantile" in values  # the tiny batch's function markers without an FMO
    named = {re.sub(r"^reference:.*", "reference:<population>", v) for v in values}
    assert {v for v in named if f"`{v}`" not in text} == set()
