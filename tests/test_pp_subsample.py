"""nkflow.pp subsampling: caps, determinism, pooling."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from nkflow.exceptions import BatchConsistencyError, ConfigError
from nkflow.pp import pooled_subsample, subsample


def sample(n: int, sid: str, channels: tuple[str, ...] = ("FL1-A", "FL2-A")) -> ad.AnnData:
    x = np.arange(n * len(channels), dtype=np.float32).reshape(n, len(channels))
    obs = pd.DataFrame(index=[str(i) for i in range(n)])
    var = pd.DataFrame(index=list(channels))
    adata = ad.AnnData(X=x, obs=obs, var=var, uns={"nkflow": {"sample": {"sample_id": sid}}})
    adata.layers["compensated"] = x.copy()
    return adata


@pytest.mark.parametrize(("n_obs", "n", "expected"), [(100, 10, 10), (100, 100, 100), (5, 10, 5)])
def test_subsample_counts_and_order(n_obs: int, n: int, expected: int) -> None:
    adata = sample(n_obs, "a")
    out = subsample(adata, n, random_state=1)
    assert out.n_obs == expected and adata.n_obs == n_obs
    idx = out.obs_names.astype(int)
    assert np.all(np.diff(idx) > 0)  # file order kept, no repeats
    np.testing.assert_array_equal(out.X, adata.X[idx])


def test_subsample_deterministic_and_inplace() -> None:
    a = subsample(sample(1000, "a"), 50, random_state=7)
    b = subsample(sample(1000, "a"), 50, random_state=7)
    c = subsample(sample(1000, "a"), 50, random_state=8)
    assert list(a.obs_names) == list(b.obs_names) != list(c.obs_names)
    inplace = sample(1000, "a")
    assert subsample(inplace, 50, random_state=7, copy=False) is None
    assert list(inplace.obs_names) == list(a.obs_names)


@pytest.mark.parametrize("bad", [-1, 2.5, True])
def test_subsample_bad_n(bad) -> None:
    with pytest.raises(ConfigError, match="non-negative integer"):
        subsample(sample(10, "a"), bad)


def test_pooled_subsample() -> None:
    samples = [sample(5000, "big"), sample(300, "small"), sample(2000, "mid")]
    pooled = pooled_subsample(samples, per_sample=1000, random_state=3)
    counts = pooled.obs["sample_id"].value_counts().to_dict()
    assert counts == {"big": 1000, "small": 300, "mid": 1000}
    assert pooled.uns["nkflow"]["subsample"]["counts"] == {"big": 1000, "small": 300, "mid": 1000}
    assert "compensated" in pooled.layers and pooled.X.dtype == np.float32
    big = pooled[pooled.obs["sample_id"] == "big"]
    np.testing.assert_array_equal(big.X, samples[0].X[big.obs["event"].astype(int)])
    again = pooled_subsample(samples, per_sample=1000, random_state=3)
    assert list(again.obs_names) == list(pooled.obs_names)
    # a sample's draw does not depend on the other samples
    alone = pooled_subsample([samples[0], sample(10, "x")], per_sample=1000, random_state=3)
    first = alone[alone.obs["sample_id"] == "big"].obs["event"].tolist()
    assert first == big.obs["event"].tolist()


def test_pooled_subsample_errors() -> None:
    with pytest.raises(ConfigError, match="at least one sample"):
        pooled_subsample([])
    with pytest.raises(BatchConsistencyError, match="'b' has channels"):
        pooled_subsample([sample(10, "a"), sample(10, "b", ("FL1-A", "PE-A"))])


def test_repeated_calls_without_a_seed_draw_the_same_events() -> None:
    """The default seed made every call draw other events: not reproducible unless the
    user knew to pass one (scanpy's subsample defaults to 0 as well)."""
    import anndata as ad
    import numpy as np

    from nkflow.pp import subsample

    adata = ad.AnnData(np.arange(200, dtype=np.float32).reshape(100, 2))
    first, second = subsample(adata, 10), subsample(adata, 10)
    np.testing.assert_array_equal(first.X, second.X)
