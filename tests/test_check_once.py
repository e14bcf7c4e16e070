"""``nkflow check`` on a batch none of whose files can be gated names each file once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import as_transformed_export

from nkflow.cli import main
from nkflow.io import write_fcs

NO_ANCHOR = (["FSC-A", "SSC-A", "B2-A", "Time"], [None, None, "CD19 FITC", None])
RAW = ["FSC-A", "SSC-A", *(f"V{i}-A" for i in range(1, 17)), "Time"]
STAINED = (["FSC-A", "B1-A", "B2-A", "R1-A", "Time"],
           [None, "CD56 BV421", "CD16 FITC", "CD3 APC", None])  # fmt: skip


def _fcs(path: Path, channels: list[str], markers: list, **keywords: str) -> Path:
    data = np.random.default_rng(1).uniform(0, 1000, size=(30, len(channels))).astype(np.float32)
    return write_fcs(path, data, channels, markers=markers, keywords=keywords or None)


@pytest.mark.parametrize("kind", ["raw", "transformed"])
def test_an_ungateable_file_is_named_once(tmp_path: Path, kind: str) -> None:
    """The raw (or transformed) file was named in the batch's 'no file can be gated' line
    and again on its own FAILED line."""
    folder = tmp_path / "batch"
    folder.mkdir()
    _fcs(folder / "b1.fcs", *NO_ANCHOR)
    if kind == "raw":
        bad = _fcs(folder / "bad.fcs", RAW, [None] * len(RAW), **{"$CYT": "Aurora"})
    else:
        source = _fcs(tmp_path / "source.fcs", *STAINED)
        bad = as_transformed_export(source, folder / "bad.fcs")
    result = CliRunner().invoke(main, ["check", str(folder)])
    assert result.exit_code == 1, result.output
    failed = [x for x in result.stderr.splitlines() if x.startswith("nkflow: FAILED")]
    assert sum("bad.fcs" in line for line in failed) == 1, failed
    assert any("no file of the batch can be gated" in line for line in failed), failed
    assert bad.exists()
