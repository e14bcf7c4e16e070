"""Simulator: frequencies match what was asked, artefacts look like an instrument's, determinism."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom

from nkflow.datasets import (
    functional_rates,
    get_panel,
    labels_for,
    make_design,
    population_names,
    simulate_sample,
    truth_membership,
)
from nkflow.exceptions import ConfigError

N = 40_000


def _within_binomial(count: int, n: int, p: float, alpha: float = 1e-4) -> bool:
    lo, hi = binom.interval(1 - alpha, n, p)
    return lo <= count <= hi


@pytest.fixture(scope="module")
def liver_stim():
    return simulate_sample(
        "human", "liver", stimulation="stim", n_events=N,
        areg_net={"NK_CD56bright_tr": 5.0, "NK_CD56dim_circ": 1.0}, random_state=7,
    )  # fmt: skip


@pytest.fixture(scope="module")
def liver_unstim():
    return simulate_sample("human", "liver", n_events=N, random_state=7)


def _col(sample, marker):
    pnn = get_panel("human").channels[get_panel("human").index(marker)].pnn
    return sample.channels.index(pnn)


@pytest.mark.parametrize(
    ("species", "tissue"),
    [("human", "blood"), ("human", "tumour"), ("mouse", "spleen"), ("mouse", "liver")],
)
def test_label_frequencies_match_composition(species, tissue):
    sample = simulate_sample(species, tissue, n_events=N, random_state=3)
    counts = sample.truth["label"].value_counts()
    for label, p in sample.label_probabilities.items():
        assert _within_binomial(int(counts.get(label, 0)), N, float(p)), label


def test_functional_rates_match_planted(liver_stim):
    truth = liver_stim.truth
    prob = liver_stim.label_probabilities
    rates = functional_rates("human", "stim", {"NK_CD56bright_tr": 5.0, "NK_CD56dim_circ": 1.0})
    labels = list(labels_for("human"))
    for marker in ("AREG", "IFN-g", "CD107a"):
        for label in ("NK_CD56bright_tr", "NK_CD56dim_circ", "ILC", "T", "B"):
            rows = truth["label"] == label
            p = rates[marker][labels.index(label)]
            assert _within_binomial(int(truth.loc[rows, marker].sum()), int(rows.sum()), p)
    planted = liver_stim.planted.set_index(["population", "marker"])["planted_percent"]
    assert planted[("CD56bright_trNK", "AREG")] == pytest.approx(5.3)
    assert planted[("CD56bright_circNK", "AREG")] == pytest.approx(0.3)  # background only
    # an aggregate is the abundance-weighted mean of its leaves
    w = prob[["NK_CD56bright_tr", "NK_CD56bright_circ"]]
    expected = (w["NK_CD56bright_tr"] * 5.3 + w["NK_CD56bright_circ"] * 0.3) / w.sum()
    assert planted[("CD56bright", "AREG")] == pytest.approx(expected, rel=1e-4)


def test_null_population_has_same_rate_stim_and_unstim():
    stim = functional_rates("human", "stim", {"NK_CD56bright_tr": 5.0})
    unstim = functional_rates("human", "unstim")
    i = labels_for("human").index("NK_CD56dim_circ")
    assert stim["AREG"][i] == unstim["AREG"][i] > 0


def test_areg_signal_separates_producers(liver_stim):
    """AREG+ cells are brighter in PE than non-producers (after compensation)."""
    comp = liver_stim.compensated()[:, _col(liver_stim, "AREG")]
    nk = truth_membership(liver_stim.truth["label"], "human")["NK"].to_numpy()
    pos = liver_stim.truth["AREG"].to_numpy()
    assert np.median(comp[nk & pos]) > 3 * np.percentile(comp[nk & ~pos], 99)


def test_compensation_gives_negatives_and_spread(liver_unstim):
    comp = liver_unstim.compensated()
    red = comp[:, _col(liver_unstim, "CD107a")]  # little autofluorescence in the red
    assert (red < 0).mean() > 0.2  # compensated negatives, as on a real instrument
    assert np.percentile(red, 0.5) < -100
    # spreading error: APC (NKp46, bright on NK) photons spilled into Alexa Fluor 700
    # widen the IFN-g negatives of NK compared with NKp46- T cells
    ifng = comp[:, _col(liver_unstim, "IFN-g")]
    labels = liver_unstim.truth["label"].to_numpy()
    quiet = ~liver_unstim.truth["IFN-g"].to_numpy()
    nk = np.isin(labels, ["NK_CD56bright_tr", "NK_CD56bright_circ"]) & quiet
    t = (labels == "T") & quiet
    assert np.std(ifng[nk]) > 1.3 * np.std(ifng[t])


def test_raw_values_on_18bit_scale(liver_unstim):
    data = liver_unstim.data
    assert data.dtype == np.float32
    assert data.max() <= 262143
    assert (data[:, :4] >= 0).all()
    assert np.all(np.diff(data[:, -1]) >= 0)  # Time increases


def test_stimulation_sheds_cd16_cd62l_and_raises_cd69(liver_stim, liver_unstim):
    def med(sample, marker, pop):
        m = truth_membership(sample.truth["label"], "human")[pop].to_numpy()
        return np.median(sample.compensated()[m, _col(sample, marker)])

    assert med(liver_stim, "CD16", "CD56dim") < 0.5 * med(liver_unstim, "CD16", "CD56dim")
    assert med(liver_stim, "CD69", "circNK") > 10 * max(med(liver_unstim, "CD69", "circNK"), 50)


def test_doublets_fall_off_the_diagonal(liver_unstim):
    d = liver_unstim.data
    ratio = d[:, 1] / d[:, 0]
    labels = liver_unstim.truth["label"].to_numpy()
    assert np.median(ratio[labels == "doublet"]) < np.median(ratio[labels == "T"]) - 0.15


def test_dead_cells_are_viability_bright(liver_unstim):
    ld = liver_unstim.compensated()[:, _col(liver_unstim, "LD_CD14_CD19")]
    labels = liver_unstim.truth["label"].to_numpy()
    assert np.percentile(ld[labels == "dead"], 10) > np.percentile(ld[labels == "T"], 99)


def test_fmo_channel_carries_only_spread():
    full = simulate_sample("human", "liver", n_events=20_000, random_state=2)
    fmo = simulate_sample("human", "liver", n_events=20_000, fmo="CD69", random_state=2)
    j = _col(full, "CD69")
    tr = truth_membership(fmo.truth["label"], "human")["trNK"].to_numpy()
    tr_full = truth_membership(full.truth["label"], "human")["trNK"].to_numpy()
    assert np.median(full.compensated()[tr_full, j]) > 2000
    assert np.percentile(fmo.compensated()[tr, j], 99.5) < 1500


def test_clog_slows_flow_and_dims_signal():
    s = simulate_sample("human", "blood", n_events=20_000, clog=True, random_state=1)
    bad = s.truth["qc_anomaly"].to_numpy()
    assert 0.1 < bad.mean() < 0.2
    gaps = np.diff(s.data[:, -1])
    assert np.median(gaps[bad[1:]]) > 2 * np.median(gaps[~bad[1:]])
    fsc = s.data[:, 0]
    assert np.median(fsc[bad]) < 0.9 * np.median(fsc[~bad])


def test_same_seed_same_events_other_seed_differs():
    a = simulate_sample("mouse", "liver", n_events=3000, random_state=5)
    b = simulate_sample("mouse", "liver", n_events=3000, random_state=5)
    c = simulate_sample("mouse", "liver", n_events=3000, random_state=6)
    assert a.data.tobytes() == b.data.tobytes()
    pd.testing.assert_frame_equal(a.truth, b.truth)
    assert a.data.tobytes() != c.data.tobytes()


@pytest.mark.parametrize("species", ["human", "mouse"])
def test_truth_membership_consistent_with_labels(species):
    labels = pd.Series(list(labels_for(species)) * 3)
    m = truth_membership(labels, species)
    assert list(m.columns) == population_names(species)
    assert m.dtypes.eq(bool).all()
    assert not m.loc[labels == "debris"].any(axis=None)
    assert (m["NK"] <= m["Singlets"]).all() and (m["Singlets"] <= m["Cells"]).all()
    assert (m["NK"] <= m["Live"]).all()
    if species == "human":
        assert (m["CD56bright"] | m["CD56dim"]).eq(m["NK"]).all()
        assert (m["trNK"] | m["circNK"]).eq(m["NK"]).all()
        assert not (m["trNK"] & m["circNK"]).any()
        assert (m["CD56bright_trNK"] == (m["CD56bright"] & m["trNK"])).all()
        assert not m.loc[labels.isin(["B", "monocyte", "dead"]), "Live"].any()
    else:
        assert (m["cNK"] | m["trNK"] | m["DP_CD49a_CD49b"]).eq(m["NK"]).all()
        assert (m["cNK_CD27+CD11b+"] <= m["cNK"]).all()


def test_design_counts_and_roles():
    d = make_design("human", tissues=("blood", "liver"), n_events=1000)
    roles = pd.Series([t.role for t in d.tubes]).value_counts()
    assert roles["unstim"] == roles["stim"] == 2 * 2 * 2
    assert sum(r.startswith("fmo:") for r in roles.index) == 6
    assert roles["positive_control"] == 1
    assert sum(t.clog for t in d.tubes) == 1
    fmo_stim = {t.fmo: t.stimulation for t in d.tubes if t.fmo}
    assert fmo_stim["AREG"] == fmo_stim["IFN-g"] == "stim" and fmo_stim["CD69"] == "unstim"
    d2_liver_pre = next(t for t in d.tubes if t.sample_id == "D2_liver_pre_stim")
    assert d.areg_net(d2_liver_pre)["NK_CD56bright_tr"] == 0.0  # planted null sample


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"species": "rat"}, "unknown species"),
        ({"tissue": "brain"}, "unknown human tissue"),
        ({"fmo": "CD99"}, "FMO marker"),
        ({"stimulation": "PMA", "areg_net": {}}, "stimulation"),
        ({"stimulation": "stim", "areg_net": {"NK": 5.0}}, "unknown labels"),
        ({"n_events": 0}, "n_events"),
    ],
)
def test_invalid_arguments_raise(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        simulate_sample(**kwargs)


@pytest.mark.parametrize(
    ("marker", "positive", "negative", "cut"),
    [
        ("CD3", ("T", "NKT-like"), ("NK_CD56dim_circ", "NK_CD56bright_circ", "ILC"), 2500.0),
        ("CD56", ("NK_CD56bright_circ", "NK_CD56bright_tr"), ("NK_CD56dim_circ",), 7000.0),
        ("CD127", ("ILC",), ("NK_CD56dim_circ", "other_lin_neg"), 2500.0),
        ("LD_CD14_CD19", ("dead",), ("T", "NK_CD56dim_circ"), 15000.0),
    ],
)
def test_compensated_data_carry_the_label_frequencies(
    liver_unstim, marker, positive, negative, cut
):
    """A plain cut on the compensated channel recovers the simulated populations."""
    labels = liver_unstim.truth["label"].to_numpy()
    x = liver_unstim.compensated()[:, _col(liver_unstim, marker)]
    pos, neg = np.isin(labels, positive), np.isin(labels, negative)
    assert (x[pos] > cut).mean() > 0.95
    assert (x[neg] <= cut).mean() > 0.95


def test_design_rejects_unsafe_sample_ids():
    from dataclasses import replace

    d = make_design("mouse", tissues=("liver",), timepoints=("",), n_events=10)
    bad = replace(d.tubes[0], sample_id="../escape")
    with pytest.raises(ConfigError, match="safe file name"):
        type(d)(d.species, (bad,))
