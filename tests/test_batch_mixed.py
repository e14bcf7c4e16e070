"""A folder of mixed files: each file the plan cannot gate fails alone, whatever its name.

An analyst's folder held a mouse file, a raw Cytek Aurora file (no marker names), a
corrupted and a truncated file. The plan resolved the template against the alphabetically
first readable file, so the Aurora file stopped the whole batch ("no NK anchor") unless
the mouse file was renamed to sort first; ``check`` pooled every file's markers to guess
one file's species and blamed the file with no markers; a raw spectral file was only
told to "label the channels or give a panel"; and ``check`` said OK on its first line
above a FAILED plan.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nkflow.config import RunConfig, replace_values
from nkflow.io import check_batch, write_fcs

UNMIX = (
    "raw spectral detector data (Cytek Aurora/NL): unmix it (e.g. in SpectroFlo) and export "
    "the unmixed file"
)
HUMAN = (
    ["FSC-A", "B1-A", "B2-A", "R1-A", "Time"],
    [None, "CD56 BV421", "CD16 FITC", "CD3 APC", None],
)
MOUSE = (
    ["FSC-A", "SSC-A", "B1-A", "B2-A", "R1-A", "Time"],
    [None, None, "NK1.1 PE", "CD19 FITC", "CD3e APC", None],
)
NO_ANCHOR = (["FSC-A", "SSC-A", "B2-A", "Time"], [None, None, "CD19 FITC", None])
RAW = ["FSC-A", "SSC-A", *(f"V{i}-A" for i in range(1, 17)), "Time"]
MOUSE_TEMPLATE = replace_values(RunConfig(), {"gating.template": "mouse"})


def _fcs(path: Path, channels: list[str], markers: list[str | None], **keywords: str) -> Path:
    """A 30-event file: only its TEXT matters to the plan and the check."""
    data = np.random.default_rng(1).uniform(0, 1000, size=(30, len(channels))).astype(np.float32)
    return write_fcs(path, data, channels, markers=markers, keywords=keywords or None)


def _raw(path: Path) -> Path:
    """Raw detector channels of a Cytek Aurora, no marker names."""
    return _fcs(path, RAW, [None] * len(RAW), **{"$CYT": "Aurora"})


def _failed(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("nkflow: FAILED")]


def test_check_says_a_raw_spectral_file_needs_unmixing(tmp_path: Path) -> None:
    """Not "label the channels or give a panel": a panel would gate raw detectors."""
    _fcs(tmp_path / "a.fcs", *HUMAN)
    _raw(tmp_path / "raw.fcs")
    check = check_batch(tmp_path, raise_on_error=False)
    (row,) = check.problems.itertuples()
    assert row.sample_id == "raw" and row.reason.startswith(UNMIX)
    assert "(16 numbered detectors (V1-V16)" in row.reason
    assert set(check.differences["sample_id"]) == {"raw"}  # not compared channel by channel
    assert "raw" not in check.mapping.columns
