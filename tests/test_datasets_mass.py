"""Mass-cytometry simulator: files look like a Helios export, counts look like real CyTOF
counts (calibrated on the CytoNorm and Krieg et al. files), truth is exact and aligned."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom

import nkflow as nk
from nkflow.datasets import (
    HUMAN_MASS_LABELS,
    get_mass_panel,
    make_design,
    simulate_batch,
    simulate_sample,
    truth_membership,
)
from nkflow.datasets.batch import write_sample
from nkflow.exceptions import ConfigError

N = 30_000
SINGLETS = [lab for lab in HUMAN_MASS_LABELS if lab not in ("debris", "doublet", "bead")]
LIVE_LEUKOCYTES = ["T", "B", "monocyte", "NK_CD56dim_circ", "NK_CD56bright_circ"]


@pytest.fixture(scope="module")
def liver():
    return simulate_sample("human", "liver", n_events=N, technology="mass", random_state=11)


@pytest.fixture(scope="module")
def liver_stim():
    return simulate_sample(
        "human", "liver", stimulation="stim", n_events=N, technology="mass",
        areg_net={"NK_CD56bright_tr": 5.0, "NK_CD56dim_circ": 2.0}, random_state=11,
    )  # fmt: skip


def _col(sample, key):
    """Column of a ``$PnN`` or of a marker of the mass panel."""
    if key in sample.channels:
        return sample.data[:, sample.channels.index(key)].astype(float)
    pnn = get_mass_panel().channels[get_mass_panel().column(key)].pnn
    return sample.data[:, sample.channels.index(pnn)].astype(float)


def _labels(sample):
    return sample.truth["label"].to_numpy().astype(str)


def _asinh(x):
    return np.arcsinh(np.asarray(x, dtype=float) / 5.0)


def test_channels_look_like_a_helios_export(liver):
    ch = liver.channels
    assert not any(c.upper().startswith(("FSC", "SSC")) for c in ch)
    assert ch[:2] == ["Time", "Event_length"]
    assert ch[-4:] == ["Center", "Offset", "Width", "Residual"]
    for required in ("Ir191Di", "Ir193Di", "Pt195Di", "Ce140Di"):
        assert required in ch
    metal = [(c, m) for c, m in zip(ch, liver.markers, strict=True) if c.endswith("Di")]
    masses = []
    for pnn, pns in metal:
        got = re.fullmatch(r"([A-Z][a-z]?)(\d{2,3})Di", pnn)
        assert got, pnn
        assert pns.startswith(f"{got.group(2)}{got.group(1)}_"), (pnn, pns)
        masses.append(int(got.group(2)))
    assert masses == sorted(set(masses))  # unique, in mass order as the instrument writes
    assert liver.keywords["$CYT"] == "Helios"
    assert liver.spillover_channels == [] and liver.technology == "mass"
    np.testing.assert_array_equal(liver.compensated(), liver.data.astype(float))


def test_panel_markers_resolve_through_the_reader(liver, tmp_path):
    path = write_sample(liver, tmp_path / "mass.fcs")
    adata = nk.read_fcs(path)
    meta = adata.uns["nkflow"]
    assert meta["spillover"] is None
    assert meta["fcs"]["datatype"] == "F" and meta["fcs"]["cyt"] == "Helios"
    keywords = meta["fcs"]["keywords"]
    assert not any(k in keywords for k in ("$SPILLOVER", "SPILL", "$SPILL"))
    assert min(float(adata.var.loc[c, "range"]) for c in adata.var_names) >= 2**20
    assert (adata.var["kind"] == "scatter").sum() == 0
    markers = set(adata.var["marker"])
    expected = {"CD45", "CD3", "CD19", "CD14", "CD56", "CD16", "NKp46", "CD7", "CD127",
                "CD69", "CD49a", "CD103", "CXCR6", "CD62L", "AREG", "IFN-g", "CD107a",
                "Viability"}  # fmt: skip
    assert expected <= markers
    np.testing.assert_array_equal(np.asarray(adata.X), liver.data)


def test_arcsinh_transform_works_on_mass_files(liver, tmp_path):
    adata = nk.read_fcs(write_sample(liver, tmp_path / "mass.fcs"))
    nk.pp.transform(adata, method="arcsinh", cofactor=5)
    x = np.asarray(adata.X)
    assert np.isfinite(x).all()
    j = list(adata.var_names).index("Pr141Di")
    np.testing.assert_allclose(x[:, j], _asinh(liver.data[:, liver.channels.index("Pr141Di")]),
                               rtol=1e-5, atol=1e-6)  # fmt: skip
    assert adata.var.loc["Time", "transform"] == "linear"


def test_counts_are_randomised_ion_counts(liver):
    metal = [j for j, c in enumerate(liver.channels) if c.endswith("Di")]
    x = liver.data[:, metal].astype(float)
    # real files have no negative values: Fluidigm's randomisation turns a count k >= 1
    # into k - U(0, 1) and leaves zeros at exactly 0
    assert x.min() == 0.0
    positive = x[x > 0]
    assert np.mean(positive == np.floor(positive)) < 1e-3
    length = _col(liver, "Event_length")
    assert np.array_equal(length, np.rint(length))
    assert length.min() >= 10 and length.max() <= 75
    assert np.all(np.diff(_col(liver, "Time")) >= 0)


# Zero inflation, calibrated on the real CyTOF files (events with arcsinh(x/5) < 1.5 taken
# as a channel's negatives): exact zeros are 54-57 % (CD3, CytoNorm), 53-65 % (CD14,
# CytoNorm), 43-54 % (CD16, CytoNorm), 65-71 % (CD19, Krieg), 25-34 % (CD7, CytoNorm),
# 38-46 % (HLA-DR), 32-55 % (CD123); values in (0, 1) are 8-44 %. Cisplatin on live
# cells: 72-78 % zeros (CytoNorm). Simulated negatives are cells of a label that carries
# no stain for the marker.
@pytest.mark.parametrize(
    ("marker", "negative", "zeros", "below_one"),
    [
        ("CD3", ["B", "monocyte"], (0.25, 0.75), (0.08, 0.45)),
        ("CD19", ["T", "monocyte"], (0.25, 0.75), (0.08, 0.45)),
        ("CD14", ["T", "B"], (0.25, 0.75), (0.08, 0.45)),
        ("CD16", ["T", "B"], (0.25, 0.75), (0.08, 0.45)),
        ("CD56", ["T", "B"], (0.25, 0.75), (0.08, 0.45)),
        ("CD7", ["B", "monocyte"], (0.25, 0.75), (0.08, 0.45)),
        ("Viability", LIVE_LEUKOCYTES, (0.60, 0.85), (0.08, 0.30)),
    ],
)
def test_negative_populations_are_zero_inflated(liver, marker, negative, zeros, below_one):
    x = _col(liver, marker)[np.isin(_labels(liver), negative)]
    assert zeros[0] <= np.mean(x == 0) <= zeros[1]
    assert below_one[0] <= np.mean((x > 0) & (x < 1)) <= below_one[1]
    assert np.median(_asinh(x)) < 0.5


def test_real_files_support_the_zero_inflation_range(external):
    """The documented range holds on the real CytoNorm files (CD3 and CD14 negatives)."""
    files = sorted((external / "cytonorm" / "inst" / "extdata").glob("*.fcs"))
    if not files:
        pytest.skip("CytoNorm CyTOF files absent")
    for path in files:
        adata = nk.read_fcs(path)
        for marker in ("CD3", "CD14"):
            j = list(adata.var["marker"]).index(marker)
            x = np.asarray(adata.X[:, j], dtype=float)
            neg = x[_asinh(x) < 1.5]
            assert 0.25 <= np.mean(neg == 0) <= 0.75, (path.name, marker)
            assert x.min() >= 0


# Positive populations of the real files sit at arcsinh(x/5) medians of 3.2-5.0 (CD3,
# CD45, CD7, CD16, CD56, CD14, HLA-DR; CytoNorm, Krieg et al.), 99th percentiles up to 7.
@pytest.mark.parametrize(
    ("marker", "label"),
    [("CD3", "T"), ("CD19", "B"), ("CD14", "monocyte"), ("CD45", "T"),
     ("CD56", "NK_CD56bright_tr"), ("CD56", "NK_CD56dim_circ"), ("CD16", "NK_CD56dim_circ"),
     ("NKp46", "NK_CD56dim_circ"), ("CD7", "NK_CD56dim_circ"), ("CD127", "ILC")],
)  # fmt: skip
def test_positive_populations_on_the_cytof_scale(liver, marker, label):
    x = _col(liver, marker)[_labels(liver) == label]
    assert 2.8 <= np.median(_asinh(x)) <= 6.0


def test_dna_levels_match_real_files(liver):
    labels = _labels(liver)
    live = np.isin(labels, LIVE_LEUKOCYTES)
    ir191, ir193 = _col(liver, "Ir191Di"), _col(liver, "Ir193Di")
    # CytoNorm: Ir191 median 85-96 (asinh 3.5-3.7), Ir193 170-190; Krieg: 60-68 / 120-134
    assert 3.2 <= np.median(_asinh(ir191[live])) <= 3.9
    assert 1.7 <= np.median(ir193[live] / ir191[live]) <= 2.2
    # CytoNorm: Event_length median 26-27, p10 15, p90 44-48 (events of 10-75 pushes)
    assert 18 <= np.median(_col(liver, "Event_length")[live]) <= 30


def test_dna_and_event_length_separate_singlets_from_doublets(liver):
    labels = _labels(liver)
    single = np.isin(labels, SINGLETS)
    double = labels == "doublet"
    dna, length = _col(liver, "Ir191Di"), _col(liver, "Event_length")
    assert np.median(dna[double]) > 1.7 * np.median(dna[single])
    assert np.median(length[double]) > 1.4 * np.median(length[single])
    # a gate keeping singlets below their 95th percentile of DNA and event length
    # removes most doublets
    flagged = (dna > np.percentile(dna[single], 95)) | (length > np.percentile(length[single], 95))
    assert flagged[double].mean() > 0.8
    assert flagged[single].mean() < 0.12
    resid = _col(liver, "Residual")
    assert np.median(resid[double]) > 2 * np.median(resid[single])


def test_debris_beads_and_dead_cells_are_separable(liver):
    labels = _labels(liver)
    dna = _asinh(_col(liver, "Ir191Di"))
    live = np.isin(labels, LIVE_LEUKOCYTES)
    assert np.percentile(dna[labels == "debris"], 75) < np.percentile(dna[live], 1)
    beads = labels == "bead"
    assert np.percentile(_asinh(_col(liver, "Ce140Di"))[beads], 1) > 5
    assert np.percentile(_asinh(_col(liver, "Ce140Di"))[live], 99) < 2
    assert np.percentile(dna[beads], 99) < 1.5
    cis = _asinh(_col(liver, "Viability"))
    assert np.percentile(cis[labels == "dead"], 10) > np.percentile(cis[live], 99)


def test_truth_aligns_and_frequencies_match_composition(liver):
    truth = liver.truth
    assert len(truth) == liver.data.shape[0] == N
    assert list(truth["label"].cat.categories) == list(HUMAN_MASS_LABELS)
    counts = truth["label"].value_counts()
    for label, p in liver.label_probabilities.items():
        lo, hi = binom.interval(1 - 1e-4, N, float(p))
        assert lo <= counts.get(label, 0) <= hi, label
    member = truth_membership(truth["label"], "human")
    beads = _labels(liver) == "bead"
    assert not member[beads].any(axis=None)  # beads are no population, not even Cells
    assert member["NK"].sum() > 100 and member["CD56bright_trNK"].sum() > 10


def test_same_donor_same_composition_as_flow():
    flow = simulate_sample("human", "lung", donor="D3", n_events=10)
    mass = simulate_sample("human", "lung", donor="D3", n_events=10, technology="mass")
    cells = mass.label_probabilities.drop("bead")
    np.testing.assert_allclose(cells / cells.sum(), flow.label_probabilities)


def test_functional_producers_are_brighter(liver_stim):
    nk_cells = truth_membership(liver_stim.truth["label"], "human")["NK"].to_numpy()
    for marker in ("AREG", "IFN-g", "CD107a"):
        producer = liver_stim.truth[marker].to_numpy()
        x = _asinh(_col(liver_stim, marker))
        assert np.median(x[nk_cells & producer]) > np.percentile(x[nk_cells & ~producer], 99)
    planted = liver_stim.planted.set_index(["population", "marker"])["planted_percent"]
    assert planted[("CD56bright_trNK", "AREG")] == pytest.approx(5.3)


def test_fmo_channel_carries_only_background():
    fmo = simulate_sample("human", "liver", n_events=10_000, fmo="CD69", technology="mass",
                          random_state=2)  # fmt: skip
    tr = truth_membership(fmo.truth["label"], "human")["trNK"].to_numpy()
    assert np.percentile(_asinh(_col(fmo, "CD69"))[tr], 95) < 1.5


def test_clog_slows_flow_and_dims_signal():
    s = simulate_sample("human", "blood", n_events=20_000, clog=True, technology="mass",
                        random_state=1)  # fmt: skip
    bad = s.truth["qc_anomaly"].to_numpy()
    assert 0.1 < bad.mean() < 0.2
    gaps = np.diff(_col(s, "Time"))
    assert np.median(gaps[bad[1:]]) > 2 * np.median(gaps[~bad[1:]])
    labels = _labels(s)
    t_cells = labels == "T"
    dna = _col(s, "Ir191Di")
    assert np.median(dna[t_cells & bad]) < 0.85 * np.median(dna[t_cells & ~bad])


def _batch(out, seed):
    design = make_design("human", donors=("D1",), tissues=("blood",), timepoints=("pre",),
                         n_events=1500, fmo_markers=(), positive_control=False, clog=False,
                         technology="mass")  # fmt: skip
    return simulate_batch(out, design=design, random_state=seed)


def test_batch_is_deterministic_and_truth_matches_files(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    _batch(a, 4), _batch(b, 4), _batch(c, 5)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert (a / "D1_blood_pre_stim.fcs").read_bytes() != (c / "D1_blood_pre_stim.fcs").read_bytes()
    meta = pd.read_csv(a / "metadata.csv", keep_default_na=False)
    for row in meta.itertuples():
        adata = nk.read_fcs(a / row.file)
        truth = pd.read_parquet(a / "truth" / f"{row.sample_id}.parquet")
        assert len(truth) == adata.n_obs == 1500
        assert list(truth.columns) == ["label", "AREG", "IFN-g", "CD107a", "qc_anomaly"]
        assert adata.uns["nkflow"]["fcs"]["cyt"] == "Helios"


def test_mass_mode_rejects_what_it_cannot_simulate(tmp_path):
    with pytest.raises(ConfigError, match="human"):
        simulate_sample("mouse", "liver", n_events=10, technology="mass")
    with pytest.raises(ConfigError, match="technology"):
        simulate_sample("human", "blood", n_events=10, technology="spectral")
    with pytest.raises(ConfigError, match="technology"):
        simulate_batch(tmp_path, design=make_design("human", n_events=10), technology="mass")
    with pytest.raises(ConfigError, match="not in"):
        simulate_sample("human", "blood", n_events=10, fmo="LD_CD14_CD19", technology="mass")
