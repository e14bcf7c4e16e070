"""What a notebook user meets: Results' containers, exports, errors, warnings and reprs."""

from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import nkflow as nk
from nkflow.config import RunConfig
from nkflow.pipeline.outdir import LABELS_FILE, NK_EVENTS_FILE, OutputFolder
from nkflow.pipeline.results import Results
from nkflow.tl.cluster import ClusteringResult

#: eleven metaclusters: string order would put "10" and "11" after "1"
CATEGORIES = [str(i) for i in range(1, 12)]


@pytest.fixture
def results(tmp_path: Path) -> Results:
    """A run folder of two samples whose events carry metaclusters 1..11."""
    rng = np.random.default_rng(0)
    ids = ["s1", "s2"]
    for sid in ids:
        folder = OutputFolder(tmp_path).sample_dir(sid)
        folder.mkdir(parents=True, exist_ok=True)
        n = len(CATEGORIES)
        adata = ad.AnnData(
            X=rng.normal(size=(n, 2)).astype(np.float32),
            obs=pd.DataFrame({"sample_id": sid, "NK": True}, index=[str(i) for i in range(n)]),
            var=pd.DataFrame({"marker": ["CD56", "CD16"]}, index=["PE-A", "FITC-A"]),
        )
        nk.io.write_h5ad(adata, folder / NK_EVENTS_FILE)
        labels = pd.DataFrame({"metacluster": CATEGORIES[::-1]})
        labels.to_parquet(folder / LABELS_FILE)
    return Results(
        out_dir=tmp_path,
        config=RunConfig(),
        metadata=pd.DataFrame({"sample_id": ids}),
        tables={"status": pd.DataFrame({"sample_id": [*ids, "s3"], "status": "ok"})},
        clustering=SimpleNamespace(categories=CATEGORIES),
    )


def test_metacluster_categories_follow_the_clustering(results: Results) -> None:
    """kept_events and to_anndata gave '1', '10', '11', '2' ...: the clustering's order."""
    assert list(results.kept_events("s1").obs["metacluster"].cat.categories) == CATEGORIES
    joined = results.to_anndata()
    assert list(joined.obs["metacluster"].cat.categories) == CATEGORIES
    assert list(joined.obs["metacluster"].astype(str)[:3]) == ["11", "10", "9"]


def test_an_unknown_sample_is_an_nkflow_error_naming_the_samples(results: Results) -> None:
    with pytest.raises(nk.NkflowError, match=r"'typo'.*s1, s2") as info:
        results.kept_events("typo")
    assert isinstance(info.value, KeyError)  # as it was: `except KeyError` still works
    assert results.to_anndata().n_obs == 2 * len(CATEGORIES)  # s3 kept nothing: left out


def test_a_clustering_result_has_a_short_repr() -> None:
    result = ClusteringResult(
        som=nk.models.SOM(xdim=4, ydim=4),
        metaclustering=nk.models.ConsensusMetaclustering(n_clusters=10),
        markers=["CD56", "CD16"],
        label_markers=["CD56", "CD16"],
        node_metacluster=np.arange(16) % 10 + 1,
        medians=pd.DataFrame(np.zeros((10, 40))),
        labels={i: f"CD56bright CD16- cluster {i}" for i in range(1, 11)},
        thresholds={"CD56": {"value": 1.0, "rule": "valley", "source": "x"}},
        population="NK",
    )
    text = repr(result)
    assert len(text) < 400
    assert text.startswith("<ClusteringResult: 10 metaclusters of NK cells, SOM 4x4")


@pytest.mark.parametrize("option", ["time_kwargs", "margin_kwargs"])
def test_qc_refuses_an_unknown_option_naming_the_valid_ones(gated_liver, option: str) -> None:
    adata, _ = gated_liver
    with pytest.raises(nk.exceptions.ConfigError, match=rf"{option} \['bogus'\].*valid"):
        nk.pp.qc(adata, inplace=False, **{option: {"bogus": 1}})


def test_gating_warnings_point_at_the_callers_line(gated_liver) -> None:
    adata, _ = gated_liver
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nk.gating.gate(adata, "human_tissue", n_boot=0, copy=True)
    mine = [w for w in caught if issubclass(w.category, nk.exceptions.NkflowWarning)]
    assert mine
    assert {w.filename for w in mine} == {__file__}


def test_an_ignore_filter_still_silences_gating_warnings(gated_liver) -> None:
    adata, _ = gated_liver
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", nk.exceptions.NkflowWarning)
        nk.gating.gate(adata, "human_tissue", n_boot=0, copy=True)
    assert not [w for w in caught if issubclass(w.category, nk.exceptions.NkflowWarning)]


def test_repair_profiles_is_exported_where_the_error_names_it() -> None:
    assert nk.pl.repair_profiles is nk.pl.score.repair_profiles
    assert "repair_profiles" in nk.pl.__all__ and "repair_profiles" in dir(nk.pl)
