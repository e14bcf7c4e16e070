"""status.csv carries every per-file reason: all of a tube's warnings (the fifth and later
were cut, ThresholdDriftWarning always among them), a warning for a tube whose QC loss is
unusual for the batch, and the events FMO tubes were read with."""

from __future__ import annotations

import pandas as pd
import pytest

from nkflow.pipeline.state import RunState


def _state(ids: list[str]) -> RunState:
    """A RunState with only a sheet: enough for its status bookkeeping."""
    state = object.__new__(RunState)
    state.meta = pd.DataFrame(
        {"sample_id": ids, "file": [f"{s}.fcs" for s in ids], "role": "unstim"}
    )
    state.status, state.summaries, state.control_qc = {}, {}, {}
    return state


def _summary(n_in: int, n_out: int, warnings: list[str] | None = None) -> dict:
    return {
        "n_events": n_in,
        "n_kept": n_out,
        "warnings": warnings or [],
        "qc": {"n_in": n_in, "n_out": n_out},
    }


def test_every_warning_reaches_the_status_message() -> None:
    state = _state(["a"])
    said = [f"LowEventCountWarning: {i}" for i in range(8)] + ["ThresholdDriftWarning: CXCR6"]
    state._accept("a", _summary(9000, 8974, said))
    message = state.status_table().set_index("sample_id").loc["a", "message"]
    assert message == "; ".join(said)


@pytest.mark.parametrize(("d_removed", "warned"), [(1350, True), (30, False)])
def test_a_tube_with_unusual_qc_loss_says_so(d_removed: int, warned: bool) -> None:
    state = _state(["a", "b", "c", "d"])
    for sid, removed in zip("abc", (26, 28, 20), strict=True):
        state._accept(sid, _summary(10_000, 10_000 - removed, ["LowEventCountWarning: x"]))
    state._accept("d", _summary(10_000, 10_000 - d_removed, ["LowEventCountWarning: x"]))
    status = state.status_table().set_index("sample_id")
    assert status.loc["d", "status"] == "ok"
    message = status.loc["d", "message"]
    assert message.startswith("UnusualQCLossWarning: QC removed 1,350 of 10,000") is warned
    assert message.endswith("LowEventCountWarning: x")  # its own warnings kept
    assert not status.loc[["a", "b", "c"], "message"].str.contains("Unusual").any()
    assert state.status["d"]["message"] == "LowEventCountWarning: x"  # recomputed, not stored


def test_fmo_tubes_have_their_events_in_the_status_table(tiny_run) -> None:
    status = tiny_run.status.set_index("sample_id")
    qc = tiny_run.tables["qc"].set_index("sample_id")
    fmo = [s for s in status.index if str(status.loc[s, "role"]).startswith("fmo:")]
    assert fmo
    for sid in fmo:
        assert status.loc[sid, "n_events"] == qc.loc[sid, "n_in"], sid
        assert status.loc[sid, "n_kept"] == qc.loc[sid, "n_out"], sid
