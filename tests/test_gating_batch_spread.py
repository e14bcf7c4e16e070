"""How far a batch-level cut-off's interval moves the samples it is applied to (cut_spread).

An FMO cut-off (a p99.5 of a small FMO tube) is listed once for its tissue and batch; its
row of thresholds.csv left the two shares blank, so an interval that swings the AREG+
percentage of the samples it is applied to by tens of points was never shown. The batch
row now carries the widest of those samples' spreads.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from nkflow.gating import gate
from nkflow.gating.cut_spread import applied_batch_cuts, with_batch_spread
from nkflow.io import nkflow_uns

SPREAD = ["percent_above_at_ci_low", "percent_above_at_ci_high"]

#: the batch's FMO cut-off of CD69 on T cells: 0.5 in [0.35, 0.65]
FMO_ROW = {
    "sample_id": "", "tissue": "blood", "batch": "B1", "gate": "T", "marker": "CD69",
    "channel": "PE-A", "value": 0.5, "ci_low": 0.35, "ci_high": 0.65, "rule": "fmo p99.5",
    "evidence": "fmo", "control_file": "FMO_CD69.fcs", "n_events": 400, "disagrees": False,
    "note": "",
}  # fmt: skip

#: CD69 of the 1,000 T cells of each sample (no value on a bound of the interval)
CD69 = {
    "spread": (np.arange(1000) + 0.5) / 1000,  # even: 65 % at 0.35, 35 % at 0.65
    "firm": np.r_[np.full(600, 0.1), np.full(400, 0.9)],  # 40 % at either end
}


def _sample(sid: str, cd69: np.ndarray) -> ad.AnnData:
    """A sample of 1,000 CD3- and 1,000 CD3+ events, ``cd69`` on the CD3+ ones."""
    rng = np.random.default_rng(0)
    cd3 = np.r_[rng.normal(0.1, 0.03, cd69.size), rng.normal(0.9, 0.03, cd69.size)]
    x = np.c_[cd3, np.r_[np.zeros(cd69.size), cd69]].astype(np.float32)
    var = pd.DataFrame({"marker": ["CD3", "CD69"], "kind": "fluorescence"},
                       index=["BV650-A", "PE-A"])  # fmt: skip
    adata = ad.AnnData(X=x, var=var)
    adata.obs_names = [str(i) for i in range(x.shape[0])]
    adata.uns["nkflow"] = {"sample": {"sample_id": sid, "tissue": "blood", "batch": "B1",
                                      "stimulation": "unstim"}}  # fmt: skip
    return adata


def _applied(template: Path, sids: list[str]) -> list[dict]:
    """Gate each sample with the FMO row; its records of the batch-level cut-off."""
    out = []
    for sid in sids:
        adata = _sample(sid, CD69[sid])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gate(adata, template, thresholds=pd.DataFrame([FMO_ROW]), n_boot=0)
        out += applied_batch_cuts(nkflow_uns(adata)["thresholds"], sid)
    return out


@pytest.mark.parametrize(
    ("sids", "at_lo", "at_hi"), [(["spread", "firm"], 65.0, 35.0), (["firm"], 40.0, 40.0)]
)
def test_the_batch_row_carries_its_widest_sample(
    tmp_path: Path, tcell_template, sids, at_lo, at_hi
) -> None:
    template = tcell_template(tmp_path, "CD69", rule="fmo", min_events=10)
    applied = _applied(template, sids)
    assert [a["sample_id"] for a in applied] == sids  # one record each, under its id
    table = pd.DataFrame([FMO_ROW])
    out = with_batch_spread(table, applied)
    row = out.iloc[0]
    assert (row[SPREAD[0]], row[SPREAD[1]]) == (at_lo, at_hi)
    # measured, not judged: the note only names whose shares they are
    assert (
        row["note"] == f"shares at the interval's ends: of {sids[0]}, the sample its "
        "interval moves most"
    )
    assert SPREAD[0] not in table.columns  # the table given is left as it was


def _record(sid: str, lo: float, hi: float, **kw) -> dict:
    return {**FMO_ROW, "sample_id": sid, SPREAD[0]: lo, SPREAD[1]: hi, **kw}


POOL = {"rule": "valley (batch pool)", "evidence": "batch_pool",
        "control_file": "batch pool: 2 samples"}  # fmt: skip
#: records of other cut-offs than FMO_ROW: another gate, control file, batch or value
OTHER_CUTS = [_record("a", 90, 10, gate="NK"), _record("b", 90, 10, control_file="x"),
              _record("c", 90, 10, batch="B2"), _record("d", 90, 10, value=0.51)]  # fmt: skip


@pytest.mark.parametrize(
    ("row", "table_rows", "applied", "expected"),
    [
        # samples measured: the widest pair, the tie to the first id
        ({}, [], [_record("b", 50, 20), _record("a", 60, 30)], (60, 30)),
        # another gate, control file, batch or value: another cut-off, not counted
        ({}, [], [*OTHER_CUTS, _record("e", 45, 40)], (45, 40)),
        # a row without a gate takes the cut-off on whichever gate it was applied to
        ({"gate": ""}, [], [_record("a", 45, 40, gate="NK")], (45, 40)),
        # no sample applied it (a manual threshold superseded it) or measured it: blank
        ({}, [], [], None),
        ({}, [], [_record("a", np.nan, np.nan)], None),
        # a batch pool's applications are the samples' own rows of the table
        (POOL, [_record("s1", 70, 30, **POOL), _record("s2", 52, 48, **POOL)], [], (70, 30)),
    ],
)
def test_a_batch_row_is_matched_to_the_records_of_its_own_cut_off(
    row, table_rows, applied, expected
) -> None:
    table = pd.DataFrame([{**FMO_ROW, **row}, *table_rows])
    out = with_batch_spread(table, applied).iloc[0]
    if expected is None:
        assert out.reindex(SPREAD).isna().all() and out["note"] == ""
    else:
        assert (out[SPREAD[0]], out[SPREAD[1]]) == expected
        assert out["note"].startswith("shares at the interval's ends: of ")


def test_the_note_keeps_what_the_row_said_and_names_the_sample_once() -> None:
    table = pd.DataFrame([{**FMO_ROW, "note": "from 2 tubes"}])
    records = [_record("a", 80, 20), _record("b", 70, 40)]
    out = with_batch_spread(table, records)
    again = with_batch_spread(out, records).iloc[0]  # a table measured twice says it once
    assert (
        again["note"] == "from 2 tubes; shares at the interval's ends: of a, the sample "
        "its interval moves most"
    )
    assert (again[SPREAD[0]], again[SPREAD[1]]) == (80, 20)


def test_applied_records_are_the_cut_offs_the_sample_did_not_set_itself() -> None:
    recorded = [
        _record("", 60, 30),  # the batch's FMO cut-off as applied here
        _record("s1", 60, 30, rule="valley"),  # its own
        _record("", np.nan, np.nan),  # applied, no interval: nothing to carry
    ]
    (rec,) = applied_batch_cuts(recorded, "s1")
    assert rec["sample_id"] == "s1" and rec["rule"] == "fmo p99.5" and rec[SPREAD[0]] == 60


def test_gate_batch_puts_the_widest_sample_on_its_fmo_row(tmp_path: Path, tcell_template) -> None:
    """The library's ``gate_batch`` lists the FMO cut-off once, as ``nkflow run`` does,
    with the shares of the sample its interval moves most."""
    from nkflow.gating import gate_batch

    template = tcell_template(tmp_path, "CD69", rule="fmo", min_events=10)
    rng = np.random.default_rng(1)
    tubes = {sid: _sample(sid, values) for sid, values in CD69.items()}
    tubes["fmo"] = _sample("fmo", rng.normal(0.5, 0.05, 1000))  # the CD69 background
    sheet = pd.DataFrame({
        "sample_id": list(tubes), "file": [f"{s}.fcs" for s in tubes], "tissue": "blood",
        "batch": "B1", "role": ["unstim", "unstim", "fmo:CD69"], "donor": ["d1", "d2", ""],
    })  # fmt: skip
    seen: dict[str, list] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = gate_batch(sheet, tubes, template, n_boot=50, on_sample=lambda sid, adata, _: (
            seen.setdefault(sid, nkflow_uns(adata)["thresholds"])))  # fmt: skip
    table = res.thresholds
    (row,) = table[(table["sample_id"] == "") & (table["marker"] == "CD69")].to_dict("records")
    spreads = {}
    for sid, recorded in seen.items():
        (rec,) = [t for t in recorded if t["marker"] == "CD69" and not t["sample_id"]]
        spreads[sid] = (rec[SPREAD[0]], rec[SPREAD[1]])
    widest = max(spreads.values(), key=lambda p: abs(p[0] - p[1]))
    assert (row[SPREAD[0]], row[SPREAD[1]]) == widest
    assert abs(widest[0] - widest[1]) > 0  # the interval was measured in a sample
