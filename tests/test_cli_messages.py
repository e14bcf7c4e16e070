"""Small CLI message defects: said twice, a literal ``\\n``, GatingML called not TOML."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import nkflow.io as nio
from nkflow.cli import main
from nkflow.exceptions import MetadataError

HEADER = "file,sample_id,donor,tissue,timepoint,stimulation,role,species,batch"
STAINS = {"B1-A": "CD56 BV421", "B2-A": "CD16 FITC", "R1-A": "CD3 APC"}


def _fcs(path: Path) -> Path:
    channels = ["FSC-A", "SSC-A", *STAINS, "Time"]
    data = np.random.default_rng(3).uniform(0, 1000, size=(40, len(channels)))
    return nio.write_fcs(path, data.astype(np.float32), channels,
                         markers=[None, None, *STAINS.values(), None])  # fmt: skip


@pytest.fixture
def _restore_logging():
    import logging
    import warnings

    nk_logger = logging.getLogger("nkflow")
    handlers, level, show = nk_logger.handlers[:], nk_logger.level, warnings.showwarning
    yield
    nk_logger.handlers[:] = handlers
    nk_logger.setLevel(level)
    warnings.showwarning = show
    logging.captureWarnings(False)


def test_latin1_sheet_is_said_once_by_check(tmp_path: Path, _restore_logging) -> None:
    _fcs(tmp_path / "a.fcs")
    row = "a.fcs,Zoë,D1,blood,pre,unstim,sample,human,B1"
    sheet = tmp_path / "sheet.csv"
    sheet.write_bytes(f"{HEADER}\n{row}\n".encode("latin-1"))
    result = CliRunner().invoke(main, ["check", str(sheet)])
    assert result.output.count("not UTF-8") == 1, result.output


def test_ragged_csv_error_has_no_literal_newline(tmp_path: Path) -> None:
    sheet = tmp_path / "ragged.csv"
    row = "a.fcs,s1,D1,blood,pre,unstim,sample,human,B1"
    sheet.write_text(f"{HEADER}\n{row}\n{row},extra,more\n")  # pandas' tokenizer fails
    with pytest.raises(MetadataError) as err:
        nio.read_metadata(sheet)
    assert err.value.problems[0].startswith("not a readable CSV")
    assert not err.value.problems[0].endswith("\n")  # the CLI showed it as a literal \n


def test_templates_validate_accepts_gatingml(tmp_path: Path) -> None:
    from nkflow.gating.gates import Dimension, RectangleGate
    from nkflow.gating.gatingml import export_gatingml

    gate = RectangleGate("r", None, (Dimension("FL1-A", min=0.1, max=5.0),))
    path = export_gatingml([gate], None, tmp_path / "g.xml")
    result = CliRunner().invoke(main, ["templates", "validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "valid GatingML 2.0 (1 populations)" in result.output
    bad = tmp_path / "bad.toml"
    bad.write_text("not = [toml\n")
    result = CliRunner().invoke(main, ["templates", "validate", str(bad)])
    assert result.exit_code == 1 and "TOML" in result.output
