"""Random states as the type hints say, and scikit-learn's check_estimator on the SOM."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from sklearn.utils.estimator_checks import check_estimator

import nkflow as nk
from nkflow.models import SOM, ConsensusMetaclustering

X = np.random.default_rng(0).normal(size=(200, 3))


@pytest.mark.parametrize(
    "make",
    [
        lambda rs: SOM(3, 3, rlen=2, random_state=rs),
        lambda rs: ConsensusMetaclustering(3, n_resamples=5, random_state=rs),
    ],
    ids=["SOM", "ConsensusMetaclustering"],
)
def test_estimators_take_a_generator(make) -> None:
    """The hints say Generator; fit raised numpy's ValueError. One seed, one result."""
    a = make(np.random.default_rng(7)).fit_predict(X)
    b = make(np.random.default_rng(7)).fit_predict(X)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(make(0).fit_predict(X), make(0).fit_predict(X))


def _samples() -> list[ad.AnnData]:
    rng = np.random.default_rng(1)
    return [
        ad.AnnData(
            rng.normal(size=(50, 2)).astype(np.float32),
            obs=pd.DataFrame(index=[str(i) for i in range(50)]),
            var=pd.DataFrame(index=["PE-A", "FITC-A"]),
            uns={"nkflow": {"sample": {"sample_id": f"s{k}"}}},
        )
        for k in range(2)
    ]


def test_pooled_subsample_takes_a_generator_as_subsample_does() -> None:
    pools = [
        nk.pp.pooled_subsample(_samples(), per_sample=10, random_state=np.random.default_rng(3))
        for _ in range(2)
    ]
    assert pools[0].n_obs == 20
    assert list(pools[0].obs_names) == list(pools[1].obs_names)
    assert pools[0].uns["nkflow"]["subsample"]["random_state"] == "Generator"
    seeded = nk.pp.pooled_subsample(_samples(), per_sample=10, random_state=3)
    assert seeded.uns["nkflow"]["subsample"]["random_state"] == 3


def test_check_estimator_passes_with_the_soms_declared_failures() -> None:
    """check_clustering fails by design (node indices as labels); the SOM declares it."""
    assert set(SOM.expected_failed_checks) == {"check_clustering"}
    check_estimator(
        SOM(xdim=4, ydim=4, rlen=3, random_state=0),
        expected_failed_checks=SOM.expected_failed_checks,
    )


def test_cluster_takes_a_generator_and_records_the_seed_it_drew() -> None:
    """A Generator crashed in the per-sample draw (int(Generator)) once a sample had more
    cells than the cap; it now gives one int seed, recorded in params (JSON-able)."""
    rng = np.random.default_rng(1)
    adata = ad.AnnData(
        rng.normal(size=(300, 3)).astype(np.float32),
        obs=pd.DataFrame({"NK": True}, index=[str(i) for i in range(300)]),
        var=pd.DataFrame(index=["CD56", "CD16", "NKG2D"]),
    )
    kwargs = {"markers": ["CD56", "CD16", "NKG2D"], "per_sample_cap": 100, "xdim": 2, "ydim": 2}
    kwargs |= {"n_metaclusters": 2, "rlen": 1, "n_resamples": 3, "assign": False}
    fits = [
        nk.tl.cluster({"s": adata}, random_state=np.random.default_rng(5), **kwargs)
        for _ in range(2)
    ]
    seed = fits[0].params["random_state"]
    assert isinstance(seed, int) and seed == fits[1].params["random_state"]
    np.testing.assert_array_equal(fits[0].node_metacluster, fits[1].node_metacluster)
