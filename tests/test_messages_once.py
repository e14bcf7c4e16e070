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


def test_mirror_rule_is_said_once(
    tmp_path, caplog: pytest.LogCaptureFixture, tcell_template
) -> None:
    """A pooled marker on one unimodal sample: the mirror rule's caveat was also logged."""
    import anndata as ad
    import numpy as np
    import pandas as pd

    template = tcell_template(tmp_path, "CD69", rule="fmo", pool=True, name="mirror_case")
    rng = np.random.default_rng(0)
    n = 4000
    cd3 = np.where(rng.random(n) < 0.6, rng.normal(2.5, 0.2, n), rng.normal(0.5, 0.2, n))
    var = pd.DataFrame({"marker": ["CD3", "CD69"], "kind": "fluorescence"}, index=["A", "B"])
    x = np.column_stack([cd3, rng.normal(2.0, 0.2, n)]).astype(np.float32)
    adata = ad.AnnData(X=x, var=var)
    adata.uns["nkflow"] = {"sample": {"sample_id": "s1", "tissue": "blood", "batch": "B1"}}
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO):
        warnings.simplefilter("always")
        nk.gating.gate(adata, str(template), n_boot=0)
    said = [str(w.message) for w in caught if "mirror rule" in str(w.message)]
    assert len(said) == 1
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert said[0] not in logged


def test_library_log_records_do_not_reach_stderr() -> None:
    """Without a handler, Python's last-resort handler printed WARNING records."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parent.parent)  # this checkout's nkflow
    env = {**os.environ, "PYTHONPATH": root}
    code = "import logging, nkflow; logging.getLogger('nkflow.io').warning('sample X failed')"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
