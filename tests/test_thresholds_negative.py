"""Where "negative" comes from: batch pool, reference population, evidence, disagreement."""

from __future__ import annotations

import numpy as np
import pytest

from nkflow.gating.negative import disagreement, evidence_of, pool_threshold, subsample
from nkflow.gating.template import DimSpec


def _sample(rng, frac_pos, n=4000):
    k = int(frac_pos * n)
    return np.r_[rng.normal(0.2, 0.06, n - k), rng.normal(0.7, 0.05, k)]


def test_pool_finds_the_valley_a_dominant_positive_sample_lacks():
    rng = np.random.default_rng(1)
    blood, gut = _sample(rng, 0.02), _sample(rng, 0.995)
    found = pool_threshold([subsample(blood, 2000, 1), subsample(gut, 2000, 2)],
                           DimSpec("CD69"), percentile=99.5, n_boot=0, random_state=0)  # fmt: skip
    assert found is not None and 0.3 < found[0] < 0.6
    assert np.mean(gut >= found[0]) > 0.95 and np.mean(blood >= found[0]) < 0.05


def test_unimodal_pool_identifies_nothing():
    rng = np.random.default_rng(2)
    parts = [rng.normal(0.7, 0.05, 3000) for _ in range(3)]
    assert pool_threshold(parts, DimSpec("CD69"), percentile=99.5, n_boot=0,
                          random_state=0) is None  # fmt: skip


def test_subsample_is_capped_and_deterministic():
    v = np.arange(10_000, dtype=float)
    a, b = subsample(v, 100, 7), subsample(v, 100, 7)
    assert a.size == 100 and np.array_equal(a, b) and np.all(np.diff(a) > 0)


@pytest.mark.parametrize(
    ("own", "batch", "flag"),
    [((0.5, 0.48, 0.52, "valley"), 0.6, True), ((0.5, 0.48, 0.52, "valley"), 0.5, False),
     ((0.9, 0.8, 1.0, "mirror"), 0.5, False), ((0.5, np.nan, np.nan, "valley"), 0.9, False)],
)  # fmt: skip
def test_disagreement(own, batch, flag):
    assert disagreement(own, batch)[0] is flag


_VALLEY = np.r_[np.linspace(0.0, 0.3, 6000), np.linspace(0.7, 1.0, 4000)]


@pytest.mark.parametrize(
    ("own", "batch", "flag", "shares"),
    [
        # both cuts in the empty valley: outside the interval, the same % positive
        ((0.45, 0.44, 0.46, "valley"), 0.55, False, "40.0 % positive at its own cut, 40.0 %"),
        # the batch cut inside the negatives: 10 points more positive
        ((0.45, 0.44, 0.46, "valley"), 0.25, True, "40.0 % positive at its own cut, 50.0 %"),
        # a mirror of its own: never flagged, the shares said
        ((0.9, 0.8, 1.0, "mirror"), 0.45, False, "13.3 % positive at its own cut, 40.0 %"),
    ],
    ids=["same-valley", "into-the-negatives", "own-mirror"],
)
def test_a_disagreement_must_move_the_percent_positive(own, batch, flag, shares):
    """With 20,000 events a valley's interval is a few thousandths wide: a batch cut just
    outside it flagged 390C liver's CD69 at 67.6 % against 67.1 % positive, and 5 of 6
    samples of an ideal simulated batch (misclassifying at most 0.1 %)."""
    got, note = disagreement(own, batch, _VALLEY)
    assert got is flag
    assert shares in note


def test_evidence_names():
    assert evidence_of("valley") == "sample_valley"
    assert evidence_of("mirror (zero-inflated)") == "mirror"


def test_reference_population_sets_the_threshold(tmp_path):
    import anndata as ad
    import pandas as pd

    from nkflow.gating.engine import run_template
    from nkflow.gating.template import load_template

    rng = np.random.default_rng(3)
    # channel A splits two populations; in the A+ one CD69 is 95 % positive (one peak),
    # the A- one is a known CD69-negative reference in the same tube
    a = np.r_[rng.normal(0.2, 0.05, 3000), rng.normal(0.8, 0.05, 3000)]
    cd69 = np.r_[rng.normal(0.2, 0.05, 3000), rng.normal(0.2, 0.05, 150),
                 rng.normal(0.7, 0.05, 2850)]  # fmt: skip
    adata = ad.AnnData(
        np.c_[a, cd69].astype(np.float32),
        var=pd.DataFrame({"marker": ["A", "CD69"]}, index=["c1", "c2"]),
    )
    adata.uns["nkflow"] = {"sample": {"sample_id": "S"}}
    path = tmp_path / "t.toml"
    path.write_text(
        '[template]\nname="t"\nspecies="human"\n'
        '[[gates]]\nid="Aneg"\nkind="threshold"\nmarker="A"\nside="neg"\nrule="valley"\n'
        '[[gates]]\nid="Apos"\nkind="threshold"\nmarker="A"\nside="pos"\nrule="valley"\n'
        '[[gates]]\nid="CD69+"\nparent="Apos"\nkind="threshold"\nmarker="CD69"\nside="pos"\n'
        'rule="fmo"\npool=true\nreference="Aneg"\n'
    )
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = run_template(adata, load_template(path), n_boot=0)
    th = next(t for t in run.thresholds if t.marker == "CD69")
    assert th.evidence == "reference:Aneg" and th.rule.startswith("reference")
    frac = run.members["CD69+"].sum() / run.members["Apos"].sum()
    assert 0.9 < frac < 0.98
