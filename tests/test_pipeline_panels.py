"""Batches of two panels sharing markers: a control sets cut-offs for its own panel only.

A lab that moves CD69 to another fluorochrome halfway through a study has two panels with
the same markers. A cut-off set on the first panel's FMO tube is a value on that
channel's scale; the second panel's tubes must not be cut at it.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nkflow import io, pp
from nkflow.config import RunConfig
from nkflow.exceptions import MissingControlWarning
from nkflow.io import nkflow_uns
from nkflow.pipeline import run
from nkflow.pipeline.plan import plan_batch

MOVED = ("BV786-A", "BV750-A")  # CD69's channel in the first panel, in the second


def _moved_copy(source: Path, target: Path, scale: float) -> None:
    """``source`` with CD69 read on another detector, ``scale`` times brighter."""
    adata = io.read_fcs(source)
    pp.compensate(adata)
    names = [MOVED[1] if n == MOVED[0] else str(n) for n in adata.var_names]
    events = np.asarray(adata.X, dtype=np.float64)
    events[:, names.index(MOVED[1])] *= scale
    io.write_fcs(target, events.astype(np.float32), names, markers=list(adata.var["pns"]),
                 ranges=list(adata.var["range"]))  # fmt: skip


@pytest.fixture
def two_panels(tiny_batch: Path, tmp_path: Path) -> Path:
    """The tiny batch plus donor D2's blood tube from the second panel, without FMO tubes."""
    batch = tmp_path / "batch"
    shutil.copytree(tiny_batch, batch)
    _moved_copy(batch / "D1_blood_pre_unstim.fcs", batch / "D2_blood_pre_unstim.fcs", 4.0)
    sheet = pd.read_csv(batch / "metadata.csv", dtype=str, keep_default_na=False)
    d2 = sheet[sheet["sample_id"] == "D1_blood_pre_unstim"].assign(
        file="D2_blood_pre_unstim.fcs", sample_id="D2_blood_pre_unstim", donor="D2"
    )
    pd.concat([sheet, d2], ignore_index=True).to_csv(batch / "metadata.csv", index=False)
    return batch


def test_a_marker_on_another_channel_is_another_panel(two_panels: Path) -> None:
    """The plan gives D2's tube a hierarchy of its own; D1's tubes and FMOs share one."""
    meta = io.read_batch(two_panels).metadata
    plan = plan_batch(meta, RunConfig())
    keys = {sid: plan.hierarchy_key(sid) for sid in plan.hierarchy_of}
    assert keys["D2_blood_pre_unstim"] == "human_blood (panel 2)"
    assert keys["D1_blood_pre_unstim"] == keys["blood_FMO_CD69"] == "human_blood"
    assert plan.reference["human_blood (panel 2)"].endswith("D2_blood_pre_unstim.fcs")


def test_a_panel_without_its_fmo_tube_is_not_cut_at_the_other_panels(
    two_panels: Path, tmp_path: Path, fast_config: RunConfig
) -> None:
    """D1's blood CD69 FMO sets D1's CD69 cut-off; D2, on another detector and scale,
    falls back to its own evidence (before: cut at D1's FMO value, which read a 4x
    brighter channel as mostly CD69+)."""
    res = run(two_panels, tmp_path / "out", config=fast_config)
    assert (res.status["status"] == "ok").all(), res.status.to_string()
    th = res.tables["thresholds"]
    cd69 = th[(th["marker"] == "CD69") & (th["tissue"] == "blood")]
    fmo = cd69[cd69["control_file"] == "blood_FMO_CD69.fcs"]
    assert list(fmo["channel"]) == [MOVED[0]] and list(fmo["sample_id"]) == [""]
    own = cd69[cd69["sample_id"] == "D2_blood_pre_unstim"]  # its own cut-off, listed
    assert list(own["channel"]) == [MOVED[1]]
    assert own["control_file"].iloc[0] != "blood_FMO_CD69.fcs"


def test_the_library_does_not_apply_a_cut_off_set_on_another_channel(two_panels: Path) -> None:
    """``gate`` given a threshold record of another channel warns and leaves it out."""
    from nkflow.gating import gate

    adata = io.read_fcs(two_panels / "D2_blood_pre_unstim.fcs")
    pp.compensate(adata)
    pp.transform(adata)
    given = pd.DataFrame([{"gate": "NK", "marker": "CD69", "channel": MOVED[0], "value": 0.5,
                           "rule": "fmo p99.5", "control_file": "blood_FMO_CD69.fcs"}])  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = gate(adata, "human_blood", thresholds=given, n_boot=0)
    assert table is not None
    used = [t for t in nkflow_uns(adata)["thresholds"] if t["marker"] == "CD69"]
    assert used and all(t["control_file"] != "blood_FMO_CD69.fcs" for t in used)
    texts = [str(w.message) for w in caught if issubclass(w.category, MissingControlWarning)]
    assert any(f"set on channel {MOVED[0]}" in t and MOVED[1] in t for t in texts), texts
