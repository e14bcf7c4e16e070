"""Clustering only as large as the batch's cells and markers support (nkflow.tl._cluster_size).

A review ran ``nkflow run`` on real batches: CytoNorm's six CyTOF tubes gave 135 NK cells
for a 10 x 10 SOM ("1.4 training cells per node") and named metaclusters of 1, 3, 4 and 5
cells; mouse 68983 gave 332 NK in 10 metaclusters on two markers, "(NK1.1hi) [1]",
"(NK1.1hi) [2]" ... Nothing said so.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from nkflow.config import ClusteringConfig, RunConfig
from nkflow.exceptions import ClusterSizeWarning, ConfigError
from nkflow.pipeline.steps import cluster_batch
from nkflow.report.methods_analysis import clustering_sentence
from nkflow.report.sections import clusters_section
from nkflow.tl import cluster
from nkflow.tl._cluster_size import MIN_CELLS, cluster_size, refusal

MARKERS = ("CD56", "NKG2D", "CD57", "NKp46")


def _tube(sid: str, n: int, markers=MARKERS, seed: int = 0) -> ad.AnnData:
    """``n`` NK cells in three planted phenotypes (blobs one unit apart) on ``markers``."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 2, size=(3, len(markers))).astype(np.float32)
    which = np.arange(n) % 3
    X = centres[which] + rng.normal(scale=0.1, size=(n, len(markers))).astype(np.float32)
    var = pd.DataFrame(
        {"marker": list(markers), "pns": list(markers), "kind": "fluorescence"},
        index=[f"FL{i}-A" for i in range(len(markers))],
    )
    obs = pd.DataFrame({"NK": True}, index=[str(i) for i in range(n)])
    uns = {"nkflow": {"sample": {"sample_id": sid, "tissue": "blood"}}}
    return ad.AnnData(X=X, obs=obs, var=var, uns=uns)


# ------------------------------------------------------------------ the rule, in numbers
@pytest.mark.parametrize(
    ("n_cells", "asked", "expected"),
    [
        (18_771, (10, 10, 10), (10, 10, 10)),  # sample_data: clustered as configured
        (1_000, (10, 10, 10), (10, 10, 10)),  # exactly 10 per node
        (999, (10, 10, 10), (9, 10, 10)),  # one cell short: one row less
        (332, (10, 10, 10), (5, 6, 10)),  # mouse 68983's NK count
        (135, (10, 10, 10), (3, 4, 6)),  # CytoNorm's NK count: 11.2 per node, 22 per mc
        (90, (10, 10, 10), (3, 3, 4)),  # the smallest batch clustered
        (135, (2, 2, 4), (2, 2, 4)),  # a grid asked smaller than 3 x 3 is kept
        (135, (10, 3, 3), (4, 3, 3)),  # the longer side goes first
    ],
)
def test_grid_and_metaclusters_keep_enough_cells(n_cells, asked, expected):
    size = cluster_size(n_cells, *asked, max_metaclusters=20)
    assert (size.xdim, size.ydim, size.n_metaclusters) == expected
    assert n_cells / (size.xdim * size.ydim) >= 10 or (size.xdim, size.ydim) == asked[:2]
    # every setting lowered is said, with both numbers; none when nothing was
    assert len(size.notes) == (expected[:2] != asked[:2]) + (expected[2] != asked[2])
    if expected[:2] != asked[:2]:
        grid = f"from {asked[0]}×{asked[1]} to {expected[0]}×{expected[1]}"
        assert grid in size.notes[0]


def test_an_automatic_metacluster_count_is_bounded_as_well():
    size = cluster_size(135, 10, 10, None, max_metaclusters=20)
    assert size.n_metaclusters is None and size.max_metaclusters == 6
    assert "chosen from 2 to 6, not up to 20" in size.notes[-1]


@pytest.mark.parametrize(
    ("n_cells", "markers", "said"),
    [
        (MIN_CELLS - 1, MARKERS, "89 NK training cell(s) in the batch, fewer than the 90"),
        (22, MARKERS, "22 NK training cell(s)"),  # SuperCellCyto
        (332, ("CD8", "NK1.1"), "only 2 clustering marker(s) (CD8, NK1.1)"),  # 68983
        (5_000, ("CD56",), "only 1 clustering marker(s) (CD56)"),
    ],
)
def test_too_thin_to_cluster_says_why(n_cells, markers, said):
    assert said in refusal(n_cells, markers)


def test_enough_cells_and_markers_are_not_refused():
    assert refusal(MIN_CELLS, MARKERS[:3]) == ""


# ------------------------------------------------------------------ nk.tl.cluster
_FAST = {"rlen": 3, "n_resamples": 10, "assign": False}


def test_api_shrinks_a_thin_batch_with_a_warning_and_records_it():
    tubes = {"a": _tube("a", 70, seed=1), "b": _tube("b", 65, seed=2)}  # 135 NK
    with pytest.warns(ClusterSizeWarning) as caught:
        res = cluster(tubes, markers=list(MARKERS), **_FAST)
    said = [str(w.message) for w in caught if w.category is ClusterSizeWarning]
    assert any("lowered from 10×10 to 3×4" in s for s in said)
    assert any("6 metaclusters were made, not the 10 asked for" in s for s in said)
    assert (res.som.xdim, res.som.ydim) == (3, 4)
    assert len(res.labels) == 6
    p = res.params
    assert (p["xdim"], p["ydim"], p["xdim_requested"], p["ydim_requested"]) == (3, 4, 10, 10)
    assert (p["n_metaclusters"], p["n_metaclusters_requested"]) == (6, 10)
    assert len(p["sizing"]) == 2


def test_api_clusters_a_batch_that_supports_its_settings_without_a_word():
    tubes = {"a": _tube("a", 600, seed=1), "b": _tube("b", 600, seed=2)}
    with warnings.catch_warnings():
        warnings.simplefilter("error", ClusterSizeWarning)
        res = cluster(tubes, markers=list(MARKERS), **_FAST)
    assert (res.som.xdim, res.som.ydim, len(res.labels)) == (10, 10, 10)
    assert res.params["sizing"] == []


@pytest.mark.parametrize(
    ("n", "markers", "match"),
    [
        (80, MARKERS, r"not clustered: 80 NK training cell\(s\)"),
        (600, ("CD56", "NKG2D"), r"not clustered: only 2 clustering marker\(s\) \(CD56, NKG2D\)"),
    ],
)
def test_api_refuses_a_batch_too_thin_to_cluster(n, markers, match):
    with pytest.raises(ConfigError, match=match):
        cluster({"a": _tube("a", n, markers=markers)}, markers=list(markers), **_FAST)


# ------------------------------------------------------------------ nkflow run
def _config(**clustering) -> RunConfig:
    return dataclasses.replace(RunConfig(), clustering=ClusteringConfig(**clustering))


def test_run_says_what_it_lowered_and_no_warning_escapes(caplog):
    tubes = {"a": _tube("a", 70, seed=1), "b": _tube("b", 65, seed=2)}
    cfg = _config(markers=MARKERS, rlen=3, n_resamples=10)
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING, logger="nkflow"):
        warnings.simplefilter("error", ClusterSizeWarning)
        out = cluster_batch({sid: (lambda a=a: a) for sid, a in tubes.items()}, cfg)
    assert (out.result.som.xdim, out.result.som.ydim) == (3, 4)
    assert "clustering: the SOM grid was lowered from 10×10 to 3×4" in caplog.text
    assert set(out.abundance["metacluster"].astype(str)) <= {str(k) for k in range(1, 7)}


@pytest.mark.parametrize(
    ("tubes", "said"),
    [
        ({"a": _tube("a", 40), "b": _tube("b", 40)}, "80 NK training cell(s)"),
        ({"a": _tube("a", 400, markers=("CD8", "NK1.1"))}, "only 2 clustering marker(s)"),
        # a T-cell template gates no NK: the tubes keep nothing to cluster
        ({"a": None}, "no sample has NK events (clustering.population: the gated population"),
    ],
    ids=["cells", "markers", "no-population"],
)
def test_run_skips_a_batch_too_thin_to_cluster_and_says_why(tubes, said, caplog):
    skipped: list[str] = []
    with caplog.at_level(logging.WARNING, logger="nkflow"):
        out = cluster_batch({s: (lambda a=a: a) for s, a in tubes.items()}, RunConfig(),
                            skipped=skipped)  # fmt: skip
    assert out is None and len(skipped) == 1 and said in skipped[0]
    assert f"clustering skipped: {skipped[0]}" in caplog.text


def test_methods_and_clusters_section_say_what_was_lowered():
    note = "the SOM grid was lowered from 10×10 to 3×4: 135 NK training cells give 11.2 per node"
    fit = {"n_train": 135, "xdim": 3, "ydim": 4, "markers": list(MARKERS), "sizing": [note]}
    text = clustering_sentence({}, {"clustering": fit}, 0)
    assert "on a 3×4 grid" in text and "11.2 training cells per node" in text
    assert "The SOM grid was lowered from 10×10 to 3×4: 135 NK" in text
    html = clusters_section({}, [], [0], sizing=[note])
    assert "Clustering: the SOM grid was lowered from 10×10 to 3×4" in html
    assert "Clustering produced no results" in html  # the tables still say what they say


# ------------------------------------------------------------------ real batches
def _cytonorm_batch(external: Path, tmp_path: Path) -> Path:
    """CytoNorm's six tubes with a sheet: three donors, each run in batch 1 and batch 2."""
    files = sorted((external / "cytonorm" / "inst" / "extdata").glob("Gates_*.fcs"))
    if len(files) != 6:
        pytest.skip("CytoNorm files not available (../shared/external)")
    folder = tmp_path / "cytonorm"
    folder.mkdir()
    rows = []
    for fcs in files:
        shutil.copy(fcs, folder / fcs.name)
        donor, run = fcs.stem.split("_")[1], fcs.stem.rsplit("_", 1)[1]
        rows.append(dict(file=fcs.name, sample_id=f"{donor}_b{run}", donor=donor,
                         tissue="blood", timepoint="baseline", stimulation="unstim",
                         role="unstim", species="human", batch=f"B{run}"))  # fmt: skip
    pd.DataFrame(rows).to_csv(folder / "metadata.csv", index=False)
    return folder


@pytest.mark.slow
def test_cytonorm_nk_are_clustered_on_a_grid_they_fill(external: Path, tmp_path: Path) -> None:
    from nkflow.pipeline import run

    folder = _cytonorm_batch(external, tmp_path)
    cfg = dataclasses.replace(RunConfig(), gating=dataclasses.replace(RunConfig().gating,
                                                                      bootstrap=20))  # fmt: skip
    res = run(folder, tmp_path / "out", config=cfg)  # the folder's metadata.csv
    fit = json.loads((tmp_path / "out" / "provenance.json").read_text())["clustering"]
    assert fit["n_train"] >= MIN_CELLS
    assert fit["n_train"] / (fit["xdim"] * fit["ydim"]) >= 10  # was 1.4 on 10 x 10
    assert fit["n_metaclusters"] <= fit["n_train"] // 20 < 10
    assert (fit["xdim_requested"], fit["ydim_requested"]) == (10, 10)
    assert any(n.startswith("clustering: the SOM grid was lowered") for n in res.notes)
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "Clustering: the SOM grid was lowered from 10×10" in html
    assert "The SOM grid was lowered from 10×10" in html  # the Methods
    # a bridge design: three donors, each measured in two batches, are three donors
    assert "n=3" in html and "n=6" not in html


@pytest.mark.slow
def test_68983_nk_are_not_clustered_on_two_markers(external: Path, tmp_path: Path) -> None:
    from nkflow.pipeline import run

    fcs = external / "flowsom" / "inst" / "extdata" / "68983.fcs"
    if not fcs.is_file():
        pytest.skip("68983.fcs not available (../shared/external)")
    folder = tmp_path / "mouse"
    folder.mkdir()
    shutil.copy(fcs, folder / fcs.name)
    cfg = dataclasses.replace(RunConfig(), gating=dataclasses.replace(RunConfig().gating,
                                                                      bootstrap=20))  # fmt: skip
    res = run(folder, tmp_path / "out", config=cfg)
    provenance = json.loads((tmp_path / "out" / "provenance.json").read_text())
    if res.clustering is not None:  # a panel whose default markers grew: the rule holds
        fit = provenance["clustering"]
        assert len(fit["markers"]) >= 3 and fit["n_train"] / (fit["xdim"] * fit["ydim"]) >= 10
        return
    assert "clustering marker(s)" in provenance["clustering_skipped"]
    assert any("clustering skipped: only" in n for n in res.notes)
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "Clustering was not run: only" in html and "Clustering was skipped: only" in html
