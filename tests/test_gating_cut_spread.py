"""How far a cut-off's own interval moves the share it calls positive (gating.cut_spread).

CD7 on the CD3- events of a tiny CyTOF file was cut at 4.93 with a 95 % interval of
[0.81, 5.32]: anywhere in it the share positive went from 73 % to 2 %, and thresholds.csv
showed the interval on the marker's scale alone. The shares are measured, not judged: a
rule calling cut-offs "unstable" from them turned with the random seed on real files.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from nkflow.gating import gate
from nkflow.gating.cut_spread import percent_above, with_cut_spread
from nkflow.gating.thresholds import Threshold
from nkflow.io import nkflow_uns

TEMPLATE = (
    '[template]\nname = "one_cut"\nversion = "0.1.0"\nspecies = "human"\nanchor = "CD3+"\n'
    'description = "one cut"\n[manifest]\nrequired_markers = ["CD3"]\nmin_events = 10\n'
    '[[gates]]\nid = "CD3+"\nkind = "threshold"\nmarker = "CD3"\nside = "pos"\n'
    'rule = "valley"\n'
)


def _one_marker(values: np.ndarray) -> ad.AnnData:
    var = pd.DataFrame({"marker": ["CD3"], "kind": ["fluorescence"]}, index=["BV650-A"])
    adata = ad.AnnData(X=values.reshape(-1, 1).astype(np.float32), var=var)
    adata.obs_names = [str(i) for i in range(values.size)]
    adata.uns["nkflow"] = {"sample": {"sample_id": "s1", "tissue": "blood", "batch": "B1",
                                      "stimulation": "unstim"}}  # fmt: skip
    return adata


def _separated() -> np.ndarray:  # 2,000 events, two peaks 11 SDs apart
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(0.15, 0.05, 1000), rng.normal(0.72, 0.05, 1000)])


def _overlapping() -> np.ndarray:  # 60 events, two peaks 1.5 SDs apart
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(0.40, 0.10, 40), rng.normal(0.55, 0.10, 20)])


@pytest.mark.parametrize(
    ("cut", "expected"), [(1.5, 50.0), (1.0, 75.0), (-np.inf, 100.0), (np.inf, 0.0)]
)
def test_percent_above_counts_the_events_a_positive_gate_keeps(cut, expected) -> None:
    assert percent_above(np.array([0.0, 1.0, 2.0, 3.0]), cut) == expected


def test_percent_above_is_nan_without_a_cut_or_events() -> None:
    assert np.isnan(percent_above(np.array([1.0]), float("nan")))
    assert np.isnan(percent_above(np.array([]), 0.5))


@pytest.mark.parametrize(("lo", "hi"), [(0.5, 0.6), (0.05, 0.85), (-np.inf, np.inf)])
def test_the_shares_are_counted_and_the_note_is_left_alone(lo, hi) -> None:
    values = np.arange(10) / 10.0
    th = Threshold("CD3", "BV650-A", 0.55, ci_low=lo, ci_high=hi, gate="Lymphocytes",
                   note="manual, by AB")  # fmt: skip
    out = with_cut_spread(th, values)
    assert out.percent_above_at_ci_low == 100 * np.mean(values >= lo)
    assert out.percent_above_at_ci_high == 100 * np.mean(values >= hi)
    assert out.note == "manual, by AB"  # measured, not judged


@pytest.mark.parametrize(
    "th",
    [
        Threshold("CD3", "BV650-A", 0.5),  # no interval (n_boot = 0, manual)
        Threshold("CD3", "BV650-A", float("nan"), ci_low=0.1, ci_high=0.9),  # not set
    ],
)
def test_no_interval_or_no_cut_is_not_measured(th) -> None:
    out = with_cut_spread(th, np.arange(10) / 10.0)
    assert np.isnan(out.percent_above_at_ci_low) and out.note == ""


@pytest.mark.parametrize(("values", "wide"), [(_separated(), False), (_overlapping(), True)])
@pytest.mark.parametrize("n_threads", [1, 2])  # the interval computed inline or deferred
def test_gating_records_the_spread_of_each_cut(tmp_path, monkeypatch, values, wide, n_threads):
    template = tmp_path / "one_cut.toml"
    template.write_text(TEMPLATE)
    adata = _one_marker(values)
    monkeypatch.setenv("NKFLOW_NUM_THREADS", str(n_threads))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gate(adata, template, n_boot=200, random_state=0)
    (rec,) = [t for t in nkflow_uns(adata)["thresholds"] if t["marker"] == "CD3"]
    lo, hi = rec["percent_above_at_ci_low"], rec["percent_above_at_ci_high"]
    assert lo == 100 * np.mean(values.astype(np.float32) >= np.float32(rec["ci_low"]))
    assert hi == 100 * np.mean(values.astype(np.float32) >= np.float32(rec["ci_high"]))
    if wide:  # 60 events in two peaks 1.5 SDs apart: the interval spans both
        assert lo - hi > 20.0
    else:  # a clear valley: the interval sits in the gap between peaks
        assert lo - hi < 2.0
    assert rec.get("note", "") == ""


def test_the_thresholds_section_explains_the_shares_without_a_verdict() -> None:
    from nkflow.report.html import _gating_section

    table = pd.DataFrame({
        "sample_id": ["s1"], "gate": ["CD3-"], "marker": ["CD7"], "value": [4.9],
        "ci_low": [0.8], "ci_high": [5.3], "percent_above_at_ci_low": [73.0],
        "percent_above_at_ci_high": [2.4], "rule": ["mirror"], "note": [""],
    })  # fmt: skip
    html = _gating_section({"thresholds": table}, None, [], [0])
    assert "percent_above_at_ci_low" in html and "read a wide pair with the gating plot" in html
    assert "unstable" not in html


@pytest.mark.parametrize(("columns", "said"), [(True, True), (False, False)])
def test_the_methods_say_how_intervals_were_read(columns, said) -> None:
    from nkflow.report.methods import _gating_sentence

    table = pd.DataFrame({"sample_id": ["s1"], "gate": ["CD3-"], "marker": ["CD7"],
                          "rule": ["mirror"]})  # fmt: skip
    if columns:
        table = table.assign(percent_above_at_ci_low=[73.0], percent_above_at_ci_high=[2.4])
    text = _gating_sentence({"bootstrap": 200}, {}, table)
    assert ("read as percentages" in text) == said


#: (folder, file, marker, parent gate, percent above at ci_low, at ci_high), measured with
#: the default configuration (200 resamples, random_state 0) on one-file runs
REAL = [
    ("supercellcyto", "Data23_Panel3_base_NR4_Patient9.fcs", "CD7", "CD3-", 72.99, 2.37),
    ("cytonorm", "Gates_PTLG028_Unstim_Control_1.fcs", "CD56", "Lymphocytes", 60.70, 5.06),
]


@pytest.mark.parametrize(("folder", "name", "marker", "on", "at_lo", "at_hi"), REAL)
def test_a_wide_cut_on_a_tiny_cytof_file_shows_its_spread(
    external: Path, tmp_path: Path, folder, name, marker, on, at_lo, at_hi
) -> None:
    from nkflow.pipeline import run

    fcs = external / folder / "inst" / "extdata" / name
    if not fcs.is_file():
        pytest.skip(f"{fcs} not found")
    sheet = pd.DataFrame({
        "file": [str(fcs)], "sample_id": [fcs.stem], "tissue": "blood", "stimulation": "unstim",
        "role": "unstim", "species": "human", "donor": "d1", "batch": "B1",
    })  # fmt: skip
    sheet.to_csv(tmp_path / "metadata.csv", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = run(tmp_path / "metadata.csv", tmp_path / "out")
    t = res.tables["thresholds"]
    row = t[(t["marker"] == marker) & (t["gate"] == on)].iloc[0]
    lo, hi = row["percent_above_at_ci_low"], row["percent_above_at_ci_high"]
    assert (lo, hi) == (pytest.approx(at_lo, abs=0.01), pytest.approx(at_hi, abs=0.01))
    for pct in (lo, hi):  # whole events of the gate the cut-off was set in
        assert pct * row["n_events"] / 100 == pytest.approx(round(pct * row["n_events"] / 100))
    assert row["ci_low"] < row["value"] < row["ci_high"]
    assert "unstable" not in str(row["note"])
