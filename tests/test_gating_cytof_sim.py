"""human_cytof on simulated mass-cytometry batches, scored per event against the truth.

Whole chain as a user runs it: simulated Helios files -> read_fcs -> compensate (none on
mass data) -> arcsinh(x / 5) -> resolve_template("human_cytof") -> gate. NK, CD56bright
and CD56dim must each reach F1 >= 0.95 in blood (CD56bright ~10 % of NK) and liver (about
half), unstimulated and stimulated (PMA sheds CD16). The seeds are not the ones the rule
was developed on. Plus the CD56bright rule (``upper_cluster`` with ``split = "valley"``)
on small synthetic clouds: the top CD56 peak, and no bright gate without a bright peak.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import nkflow as nk
from nkflow.datasets import make_design, simulate_batch, truth_membership
from nkflow.exceptions import GatingError
from nkflow.gating.scatter import upper_cluster_polygon

SEEDS = (7, 8, 9)
TISSUES = ("blood", "liver")
POPULATIONS = ("NK", "CD56bright", "CD56dim")
MIN_F1 = 0.95


def _f1(called: np.ndarray, truth: np.ndarray) -> float:
    both = called.sum() + truth.sum()
    return float(2 * (called & truth).sum() / both) if both else float("nan")


@pytest.fixture(scope="module")
def scores(tmp_path_factory):
    """F1 per (seed, tissue, stimulation, population), each batch simulated once."""
    cache: dict[int, dict[tuple[str, str, str], float]] = {}

    def get(seed: int) -> dict[tuple[str, str, str], float]:
        if seed in cache:
            return cache[seed]
        folder = tmp_path_factory.mktemp(f"cytof_s{seed}")
        design = make_design(
            "human",
            donors=("D1",),
            tissues=TISSUES,
            timepoints=("pre",),
            n_events=30_000,
            fmo_markers=(),
            positive_control=False,
            clog=False,
            nk_enrichment=2.0,
            technology="mass",
        )
        simulate_batch(folder, design=design, random_state=seed)
        out = {}
        for _, row in pd.read_csv(folder / "metadata.csv").iterrows():
            adata = nk.read_fcs(folder / row["file"])
            nk.pp.compensate(adata)
            nk.pp.transform(adata)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                resolved = nk.gating.resolve_template("human_cytof", adata)
                nk.gating.gate(adata, resolved, n_boot=0)
            labels = pd.read_parquet(folder / "truth" / f"{row['sample_id']}.parquet")["label"]
            truth = truth_membership(labels, "human")
            for pop in POPULATIONS:
                called = adata.obs[pop].to_numpy(bool)
                out[(row["tissue"], row["stimulation"], pop)] = _f1(called, truth[pop].to_numpy())
        cache[seed] = out
        return out

    return get


@pytest.mark.parametrize("tissue", TISSUES)
@pytest.mark.parametrize("seed", SEEDS)
def test_nk_and_cd56_subsets_match_the_truth(scores, seed, tissue):
    got = {k: v for k, v in scores(seed).items() if k[0] == tissue}
    assert len(got) == 2 * len(POPULATIONS)  # unstim and stim tubes
    low = {f"{stim} {pop}": round(v, 3) for (_, stim, pop), v in got.items() if not v >= MIN_F1}
    assert not low, f"seed {seed} {tissue}: F1 below {MIN_F1}: {low}"


def _clouds(rng, parts):
    """Concatenated Gaussian clouds: (n, x mean, x sd, y mean, y sd) per part."""
    x = np.concatenate([rng.normal(m, s, n) for n, m, s, _, _ in parts])
    y = np.concatenate([rng.normal(m, s, n) for n, _, _, m, s in parts])
    truth = np.concatenate([np.full(n, i) for i, (n, *_) in enumerate(parts)])
    return x, y, truth


def _inside(verts, x, y):
    from matplotlib.path import Path

    return Path(np.asarray(verts)).contains_points(np.column_stack([x, y]))


@pytest.mark.parametrize("bright_share", [0.05, 0.5])
def test_valley_split_takes_the_top_cd56_peak_with_low_cd16(bright_share):
    # CD56- cells (CD7+ ILC), CD56dim CD16+ and CD56bright CD16-/lo, as in a CD7 NK gate;
    # a 2-component mixture on these splits CD16- from CD16+ instead
    rng = np.random.default_rng(0)
    n_nk = 4000
    n_bright = int(bright_share * n_nk)
    x, y, truth = _clouds(
        rng,
        [(300, 0.3, 0.3, 0.3, 0.3), (n_nk - n_bright, 3.3, 0.4, 5.2, 0.6),
         (n_bright, 5.6, 0.35, 0.8, 0.8)],
    )  # fmt: skip
    verts, params = upper_cluster_polygon(
        x, y, {"split": "valley", "y_side": "low"}, n_boot=20, random_state=0
    )
    called = _inside(verts, x, y)
    assert _f1(called, truth == 2) > 0.97
    cut = {p.name: p for p in params}["upper cluster x cut (valley)"]
    lo, hi = cut.interval.result()
    assert 3.8 < cut.value < 5.0 and lo <= cut.value <= hi


def test_valley_split_finds_no_bright_cluster_in_cd56_negative_and_dim():
    # two peaks, but the top one is the CD16+ CD56dim cluster: no CD56bright peak
    rng = np.random.default_rng(1)
    x, y, _ = _clouds(rng, [(600, 0.3, 0.3, 0.3, 0.3), (3000, 3.3, 0.4, 5.2, 0.6)])
    with pytest.raises(GatingError, match="not y-low"):
        upper_cluster_polygon(x, y, {"split": "valley", "y_side": "low"}, n_boot=0, random_state=0)


@pytest.mark.parametrize(
    ("params", "match"),
    [({"split": "valley", "y_side": "left"}, "y_side"), ({"split": "kmeans"}, "split")],
)
def test_upper_cluster_rejects_unknown_options(params, match):
    rng = np.random.default_rng(2)
    x, y, _ = _clouds(rng, [(100, 1.0, 0.3, 1.0, 0.3), (100, 4.0, 0.3, 1.0, 0.3)])
    with pytest.raises(GatingError, match=match):
        upper_cluster_polygon(x, y, params, n_boot=0, random_state=0)
