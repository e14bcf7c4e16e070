"""Shared pytest fixtures: paths anchored to this file, never to the working directory."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXTERNAL = REPO.parent / "shared" / "external"
SAMPLE_DATA = REPO / "sample_data"


@pytest.fixture(scope="session")
def external() -> Path:
    """The folder of real public FCS files (skips when it is not beside the checkout)."""
    if not EXTERNAL.is_dir():
        pytest.skip(f"external test data not found at {EXTERNAL}")
    return EXTERNAL


@pytest.fixture(scope="session")
def sample_data() -> Path:
    """The committed sample batch."""
    return SAMPLE_DATA
