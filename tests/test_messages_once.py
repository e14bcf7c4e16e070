"""A condition the analyst should see is said once: as a warning, not also as a log line.

In a notebook the library's WARNING log records reach stderr through Python's last-resort
handler and ``warnings`` print too, so every message used to appear twice (issue 17).
"""

from __future__ import annotations

import logging
import warnings

import pytest

import nkflow as nk
from nkflow.exceptions import NkflowWarning


def test_gating_warnings_are_not_logged_again(
    sample_data, caplog: pytest.LogCaptureFixture
) -> None:
    adata = nk.read_fcs(sample_data / "human" / "D1_liver_pre_unstim.fcs")
    nk.pp.compensate(adata)
    nk.pp.transform(adata)
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO):
        warnings.simplefilter("always")
        nk.gating.gate(adata, "human_tissue", n_boot=10)  # no FMO thresholds given
    said = [str(w.message) for w in caught if issubclass(w.category, NkflowWarning)]
    assert said, "expected MissingControlWarning for markers without an FMO"
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not set(said) & set(logged)
