"""nkflow.tl.cluster / annotate on tiny synthetic NK batches with planted phenotypes."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from sklearn.metrics import adjusted_rand_score

from nkflow.exceptions import ChannelNotFoundError, ConfigError, NkflowWarning
from nkflow.io.fcs import channel_for
from nkflow.models import hungarian_f1
from nkflow.pl import cluster as plc
from nkflow.tl.annotate import abundance_table, median_table, valley_threshold
from nkflow.tl.cluster import cluster, default_markers

CHANNELS = [
    ("FSC-A", "", "scatter"),
    ("BV510-A", "LD_CD14_CD19", "fluorescence"),
    ("BUV395-A", "CD3", "fluorescence"),
    ("BV605-A", "CD56", "fluorescence"),
    ("FITC-A", "CD16", "fluorescence"),
    ("BV421-A", "CD69", "fluorescence"),
    ("PerCP-A", "CD49a", "fluorescence"),
    ("BV786-A", "CD103", "fluorescence"),
    ("PE-A", "AREG", "fluorescence"),
    ("Time", "", "time"),
]
# planted NK phenotypes (transformed units; 1 = positive, 0 = negative), CD56 2 = bright
PHENOTYPES = {
    "bright_tr": {"CD56": 2.0, "CD16": 0.0, "CD69": 1.0, "CD49a": 1.0, "CD103": 0.0, "AREG": 1.0},
    "dim_circ": {"CD56": 1.0, "CD16": 1.0, "CD69": 0.0, "CD49a": 0.0, "CD103": 0.0, "AREG": 0.0},
    "dim_tr": {"CD56": 1.0, "CD16": 1.0, "CD69": 1.0, "CD49a": 0.0, "CD103": 1.0, "AREG": 0.0},
}
EXPECTED = {
    "bright_tr": "CD56bright CD16- CD69+ CD49a+ CD103- AREG+",
    "dim_circ": "CD56dim CD16+ CD69- CD49a- CD103- AREG-",
    "dim_tr": "CD56dim CD16+ CD69+ CD49a- CD103+ AREG-",
}


def _sample(sid: str, n: int, weights, tissue: str, seed: int) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    kinds = list(PHENOTYPES)
    truth = rng.choice(len(kinds) + 1, size=n, p=[*weights, 0.2])  # last = non-NK
    X = rng.normal(scale=0.12, size=(n, len(CHANNELS))).astype(np.float32)
    X[:, 0] = rng.uniform(5e4, 1e5, n)
    X[:, -1] = np.arange(n)
    col = {m: i for i, (_, m, _) in enumerate(CHANNELS) if m}
    for k, name in enumerate(kinds):
        sel = truth == k
        for m, v in PHENOTYPES[name].items():
            X[sel, col[m]] += v
    X[truth == len(kinds), col["CD3"]] += 1.5  # T cells, not NK
    var = pd.DataFrame(
        {
            "marker": [m for _, m, _ in CHANNELS],
            "pns": [m for _, m, _ in CHANNELS],
            "kind": [k for _, _, k in CHANNELS],
        },
        index=[c for c, _, _ in CHANNELS],
    )
    obs = pd.DataFrame(index=[str(i) for i in range(n)])
    obs["sample_id"] = pd.Categorical([sid] * n)
    obs["NK"] = truth < len(kinds)
    obs["CD56bright"] = truth == 0
    obs["CD56dim"] = (truth == 1) | (truth == 2)
    obs["truth"] = [kinds[t] if t < len(kinds) else "" for t in truth]
    thresholds = [
        {"marker": m, "channel": CHANNELS[col[m]][0], "value": 0.5, "rule": "fmo"}
        for m in ("CD16", "CD69", "CD49a", "CD103", "AREG")
    ]
    uns = {"nkflow": {"sample": {"sample_id": sid, "tissue": tissue}, "thresholds": thresholds}}
    return ad.AnnData(X=X, obs=obs, var=var, uns=uns)


@pytest.fixture
def batch() -> dict[str, ad.AnnData]:
    return {
        "blood1": _sample("blood1", 3000, [0.1, 0.6, 0.1], "blood", 1),
        "liver1": _sample("liver1", 1500, [0.3, 0.2, 0.3], "liver", 2),
        "liver2": _sample("liver2", 800, [0.3, 0.2, 0.3], "liver", 3),
    }


def _run(batch, **kw):
    # resting tubes only: CD16 and CD69 (moved by stimulation) may be clustered on
    kw = {"xdim": 5, "ydim": 5, "n_metaclusters": 3, "per_sample_cap": 1000,
          "include_stimulation_labile": True, **kw}  # fmt: skip
    return cluster(batch, **kw)


def test_default_markers_exclude_scatter_dump_lineage_and_function(batch):
    # a resting batch keeps CD16 and CD69 (no tube is stimulated); asked, they go
    assert default_markers(batch) == ["CD56", "CD16", "CD69", "CD49a", "CD103"]
    assert default_markers(batch, include_stimulation_labile=False) == ["CD56", "CD49a", "CD103"]
    assert "AREG" in default_markers(batch, include_function=True)
    # a viability dye on its own and a lineage dump channel are no phenotype either
    relabelled = {}
    for sid, adata in batch.items():
        other = adata.copy()
        other.var["marker"] = other.var["marker"].replace(
            {"LD_CD14_CD19": "Viability", "CD3": "Dump_CD14_CD19_CD3"}
        )
        relabelled[sid] = other
    assert default_markers(relabelled) == ["CD56", "CD16", "CD69", "CD49a", "CD103"]
    # T-cell markers of the lineage exclusion (mouse 68983's NK were clustered on CD4 and
    # TCRgd) are no NK phenotype either; CD8 is (human NK carry CD8a in subsets)
    relabelled = {}
    for sid, adata in batch.items():
        other = adata.copy()
        other.var["marker"] = other.var["marker"].replace(
            {"CD69": "CD4", "CD49a": "TCRgd", "CD103": "CD8"}
        )
        relabelled[sid] = other
    assert default_markers(relabelled, include_stimulation_labile=True) == ["CD56", "CD16", "CD8"]


@pytest.mark.parametrize(
    ("marker", "clustered"),
    [
        # lineage markers panels carry to exclude other cells: T, B, myeloid, granulocyte,
        # progenitor, red-cell, platelet, congenic (constant on NK cells)
        *[(m, False) for m in ("TCRb", "TCRab", "CD5", "FoxP3", "B220", "CD21", "CD23",
                               "CD138", "CD33", "CD15", "CD66", "CD66b", "CD64", "CD123",
                               "CD34", "CD1a", "CD235ab", "CD41", "Ly6G", "Gr-1", "Ter119",
                               "CD45.1", "CD45.2")],
        # NK and ILC phenotype markers the table now reads join the clustering
        *[(m, True) for m in ("CD38", "CD94", "TIGIT", "PD-1", "TIM-3", "LAG-3", "KLRG1",
                              "CD57", "DNAM-1", "2B4", "CD45RA", "CCR7", "Tbet", "Helios",
                              "CD117", "CD61", "HLA-DR", "MHCII", "Ly6C", "Ly49H")],
    ],
)  # fmt: skip
def test_default_markers_leave_lineage_markers_out(batch, marker, clustered):
    relabelled = {}
    for sid, adata in batch.items():
        other = adata.copy()
        other.var["marker"] = other.var["marker"].replace({"CD49a": marker})
        relabelled[sid] = other
    got = default_markers(relabelled, include_stimulation_labile=True)
    assert got == (["CD56", "CD16", "CD69", marker, "CD103"] if clustered else
                   ["CD56", "CD16", "CD69", "CD103"])  # fmt: skip


def test_cluster_recovers_planted_phenotypes_with_readable_names(batch):
    res = _run(batch)
    for sid, adata in batch.items():
        nk = adata.obs["NK"].to_numpy()
        got = adata.obs["metacluster_label"].astype(str).to_numpy()
        truth = adata.obs["truth"].to_numpy()
        assert adjusted_rand_score(truth[nk], got[nk]) > 0.95, sid
        assert adata.obs["metacluster"][~nk].isna().all()
        assert adata.obs["som_node"][~nk].isna().all()
        assert adata.obs["som_node"][nk].notna().all()
        # every planted phenotype gets its expected name
        for name, label in EXPECTED.items():
            assert pd.Series(got[truth == name]).mode()[0] == label
    assert sorted(res.labels.values()) == sorted(EXPECTED.values())
    params = batch["blood1"].uns["nkflow"]["clustering"]
    assert params["markers"] == res.markers
    assert params["n_train"] == 1000 + 1000 + int(batch["liver2"].obs["NK"].sum())
    assert res.thresholds["CD56"]["source"] == "data"
    assert res.thresholds["CD69"]["source"] == "gating"


def test_same_random_state_same_labels_and_streaming_assign(batch):
    a = _run(batch, random_state=7, assign=False)
    b = _run(batch, random_state=7, assign=False)
    np.testing.assert_array_equal(a.som.codes_, b.som.codes_)
    assert a.labels == b.labels
    one = batch["liver1"]
    a.assign(one, key_added="mc")
    first = one.obs["mc"].copy()
    b.assign(one, key_added="mc")
    pd.testing.assert_series_equal(first, one.obs["mc"])
    assert str(one.obs["mc"].dtype) == "category"


def test_tables_are_long_and_consistent(batch):
    res = _run(batch)
    ab = abundance_table(batch, res)
    assert list(ab.columns[:5]) == ["sample_id", "metacluster", "label", "count", "percent"]
    for sid, grp in ab.groupby("sample_id"):
        assert grp["count"].sum() == batch[sid].obs["NK"].sum()
        assert grp["percent"].sum() == pytest.approx(100.0)
    assert set(ab["tissue"]) == {"blood", "liver"}
    med = median_table(batch, res)
    assert set(med["marker"]) == set(res.label_markers)
    row = med[(med.sample_id == "liver1") & (med.marker == "CD56")]
    assert row["n_cells"].sum() == batch["liver1"].obs["NK"].sum()
    assert (
        ab.merge(abundance_table(batch), on=["sample_id", "metacluster"])["label_y"] == ab["label"]
    ).all()


def test_automatic_number_of_metaclusters(batch):
    res = _run(batch, n_metaclusters=None, max_metaclusters=8)
    assert res.metaclustering.n_clusters_ == 3


def test_missing_population_column_names_what_exists(batch):
    with pytest.raises(ChannelNotFoundError, match="CD56bright"):
        _run(batch, population="nope")


def test_valley_threshold_finds_gap_and_falls_back():
    rng = np.random.default_rng(0)
    bimodal = np.concatenate([rng.normal(0, 0.2, 2000), rng.normal(2, 0.2, 1000)])
    value, rule = valley_threshold(bimodal)
    assert rule == "valley" and 0.6 < value < 1.4
    value, rule = valley_threshold(rng.normal(1, 0.3, 2000))
    assert rule == "quantile" and value == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize(
    "draw",
    [
        lambda b, r: plc.heatmap(r),
        lambda b, r: plc.heatmap(r, scale="none", markers=["CD56", "CD16"]),
        lambda b, r: plc.abundance(abundance_table(b, r)),
        lambda b, r: plc.abundance(abundance_table(b, r), by="tissue", value="count"),
        lambda b, r: plc.abundance(abundance_table(b, r).iloc[0:0]),
        lambda b, r: plc.embedding(b, r, n_cells=300),
    ],
    ids=["heatmap", "heatmap-raw", "abundance", "abundance-tissue", "empty", "pca"],
)
def test_plots_return_figures(batch, draw):
    res = _run(batch)
    fig = draw(batch, res)
    assert isinstance(fig, Figure)
    assert fig.axes


def test_heatmap_rows_are_named_metaclusters(batch):
    res = _run(batch)
    fig = plc.heatmap(res)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert any("CD56bright" in t for t in labels)
    with pytest.raises(ConfigError, match="scale"):
        plc.heatmap(res, scale="log")


# flowsom (saeyslab 0.2.2) mean F1 on the same cells, markers and k, seeds 0-2, printed by
# ``benchmarks/bench_cluster.py --simulator`` (per seed: 0.829, 0.822, 0.826; simulator as of
# commit 521cb5c). Re-record both numbers when the simulator changes.
FLOWSOM_SIMULATOR_F1 = 0.826


def test_simulated_batch_nk_truth_at_least_as_good_as_flowsom(tmp_path):
    import warnings

    import nkflow.pp as pp
    from nkflow.datasets.batch import write_sample
    from nkflow.datasets.simulate import simulate_sample
    from nkflow.io.fcs import read_fcs

    adatas, truth = {}, []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, tissue in enumerate(["blood", "liver"]):
            sim = simulate_sample("human", tissue, n_events=30_000, random_state=i)
            adata = read_fcs(write_sample(sim, tmp_path / f"s{i}.fcs"))
            pp.compensate(adata)
            pp.transform(adata)
            labels = sim.truth["label"].astype(str).to_numpy()
            adata.obs["NK"] = pd.Series(labels).str.startswith("NK_").to_numpy()
            adatas[f"s{i}"] = adata
            truth.append(labels[adata.obs["NK"].to_numpy()])
    y = np.concatenate(truth)
    f1 = []
    for seed in range(3):
        cluster(  # resting samples, clustered on every marker as FlowSOM was
            adatas,
            n_metaclusters=6,
            per_sample_cap=10**7,
            random_state=seed,
            include_stimulation_labile=True,
        )
        pred = np.concatenate(
            [
                a.obs["metacluster"].to_numpy()[a.obs["NK"].to_numpy()].astype(str)
                for a in adatas.values()
            ]
        )
        f1.append(hungarian_f1(y, pred))
    assert np.mean(f1) >= FLOWSOM_SIMULATOR_F1 - 0.02


def test_som_and_metaclustering_parameters_reach_the_estimators(batch):
    res = _run(
        batch,
        rlen=4,
        alpha=(0.1, 0.02),
        batch_size=64,
        min_updates_per_pass=4,
        som_init="pca",
        linkage="ward",
        final_linkage="complete",
        n_resamples=7,
        resample_fraction=0.8,
        assign=False,
    )
    som, mc = res.som.get_params(), res.metaclustering.get_params()
    assert (som["rlen"], som["alpha"], som["batch_size"]) == (4, (0.1, 0.02), 64)
    assert (som["min_updates_per_pass"], som["init"]) == (4, "pca")
    assert (mc["linkage"], mc["final_linkage"]) == ("ward", "complete")
    assert (mc["n_resamples"], mc["resample_fraction"]) == (7, 0.8)
    for key, value in {"batch_size": 64, "som_init": "pca", "n_resamples": 7}.items():
        assert res.params[key] == value
    assert res.params["alpha"] == [0.1, 0.02]


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"som_init": "kmeans"}, "init"),
        ({"min_updates_per_pass": 0}, "min_updates_per_pass"),
        ({"n_resamples": 0}, "n_resamples"),
        ({"resample_fraction": 1.5}, "resample_fraction"),
        ({"final_linkage": "ward"}, "final_linkage"),
    ],
)
def test_invalid_clustering_parameter_is_named(batch, kw, match):
    with pytest.raises(ConfigError, match=match):
        _run(batch, assign=False, **kw)


def test_a_batch_with_fewer_cells_than_som_nodes_is_not_clustered(batch, caplog):
    """22 NK cells in a 10 x 10 SOM gave 10 'metaclusters' of one or two cells each."""
    from nkflow.config import RunConfig
    from nkflow.pipeline.steps import cluster_batch

    few = {sid: a[:12].copy() for sid, a in batch.items()}  # ~30 NK cells in all
    n_nk = sum(int(a.obs["NK"].sum()) for a in few.values())
    assert 0 < n_nk < 100
    with caplog.at_level("WARNING", logger="nkflow"):
        assert cluster_batch({sid: (lambda a=a: a) for sid, a in few.items()}, RunConfig()) is None
    assert f"clustering skipped: {n_nk} NK training cell(s)" in caplog.text
    assert "fewer than the 90 clustering needs" in caplog.text  # tests/test_cluster_size.py


def test_config_clustering_keys_reach_the_fit(batch, tmp_path):
    from nkflow.config import RunConfig, config_to_toml, load_config, replace_values
    from nkflow.pipeline.steps import cluster_batch

    cfg = replace_values(
        RunConfig(),
        {
            "clustering.xdim": 5,
            "clustering.ydim": 5,
            "clustering.n_metaclusters": 3,
            "clustering.rlen": 5,
            "clustering.alpha_start": 0.08,
            "clustering.batch_size": 64,
            "clustering.min_updates_per_pass": 8,
            "clustering.min_batch_size": 16,
            "clustering.som_init": "pca",
            "clustering.final_linkage": "complete",
            "clustering.n_resamples": 9,
            "clustering.resample_fraction": 0.75,
        },
    )
    out = cluster_batch({sid: (lambda a=a: a) for sid, a in batch.items()}, cfg)
    som, mc = out.result.som, out.result.metaclustering
    assert (som.rlen, som.alpha, som.batch_size) == (5, (0.08, 0.01), 64)
    assert (som.min_updates_per_pass, som.min_batch_size, som.init) == (8, 16, "pca")
    assert (mc.final_linkage, mc.n_resamples, mc.resample_fraction) == ("complete", 9, 0.75)
    # the effective configuration round-trips through TOML
    path = tmp_path / "run.toml"
    path.write_text(config_to_toml(cfg), encoding="utf-8")
    assert load_config(path).clustering == cfg.clustering
    with pytest.raises(ConfigError, match=r"clustering\.som_init"):
        replace_values(cfg, {"clustering.som_init": "kmeans"})
    with pytest.raises(ConfigError, match=r"clustering\.resample_fraction"):
        replace_values(cfg, {"clustering.resample_fraction": 0.0})
    assert load_config(None).clustering.min_updates_per_pass == 128


def test_cluster_batch_hands_over_the_fit_before_mapping(batch):
    """``on_fitted`` gets the clustering before any sample is mapped (a run draws its
    heatmap then), and the mapping does not change what it got."""
    from nkflow.config import RunConfig, replace_values
    from nkflow.pipeline.steps import cluster_batch

    cfg = replace_values(RunConfig(), {"clustering.xdim": 5, "clustering.ydim": 5})
    events: list[tuple[str, object]] = []
    medians: list[pd.DataFrame] = []

    def fitted(result):
        events.append(("fitted", result))
        medians.append(result.medians.copy())

    out = cluster_batch(
        {sid: (lambda a=a: a.copy()) for sid, a in batch.items()},
        cfg,
        on_assigned=lambda sid, adata: events.append(("mapped", sid)),
        on_fitted=fitted,
    )
    assert [e[0] for e in events] == ["fitted", "mapped", "mapped", "mapped"]
    assert events[0][1] is out.result
    pd.testing.assert_frame_equal(medians[0], out.result.medians)


def test_each_cluster_figure_is_drawn_or_left_out_on_its_own(batch, caplog):
    """The heatmap and the abundance bars are separate tasks of a run: one that cannot be
    drawn is logged and left out, the other is still drawn."""
    from nkflow.pipeline.figures import cluster_abundance, cluster_heatmap
    from nkflow.tl.annotate import abundance_table

    result = _run(batch)
    abundance = abundance_table(batch, result)
    heat = cluster_heatmap(result)
    bars = cluster_abundance(abundance)
    assert list(heat) == ["clusters_heatmap"] and list(bars) == ["clusters_abundance"]
    assert heat["clusters_heatmap"].startswith(b"\x89PNG")
    assert bars["clusters_abundance"].startswith(b"\x89PNG")
    with caplog.at_level("WARNING", logger="nkflow.pipeline.run"):
        assert cluster_heatmap(object()) == {}
        assert cluster_abundance(abundance) == bars
    assert "cluster heatmap not drawn" in caplog.text


def _relabel(adata: ad.AnnData, aspect: str) -> ad.AnnData:
    other = adata.copy()
    if aspect == "species":
        other.uns["nkflow"]["sample"]["species"] = "mouse"
    elif aspect == "technology":
        other.uns["nkflow"]["technology"] = {"kind": "mass_cytometry"}
    else:
        other.var["transform"] = ["", *["arcsinh"] * (len(CHANNELS) - 2), ""]
    return other


@pytest.mark.parametrize(
    ("aspect", "values"),
    [
        ("species", "human: blood1, liver1; mouse: liver2"),
        ("technology", "flow cytometry: blood1, liver1; mass cytometry: liver2"),
        ("transform", "logicle: blood1, liver1; arcsinh: liver2"),
    ],
)
def test_samples_that_cannot_be_pooled_are_refused(batch, aspect, values):
    """Human with mouse NK, flow with mass cytometry, logicle with arcsinh values: pooled,
    their cells would cluster by sample, not phenotype."""
    for sid in ("blood1", "liver1"):
        batch[sid].uns["nkflow"]["sample"]["species"] = "human"
        batch[sid].uns["nkflow"]["technology"] = {"kind": "flow"}
        batch[sid].var["transform"] = ["", *["logicle"] * (len(CHANNELS) - 2), ""]
    batch["liver2"].uns["nkflow"]["sample"]["species"] = "human"
    batch["liver2"].uns["nkflow"]["technology"] = {"kind": "flow"}
    batch["liver2"].var["transform"] = ["", *["logicle"] * (len(CHANNELS) - 2), ""]
    batch["liver2"] = _relabel(batch["liver2"], aspect)
    with pytest.raises(ConfigError, match=f"differ in {aspect} \\({values}\\)"):
        _run(batch)


def test_markers_some_samples_lack_are_named_when_left_out(batch):
    batch["liver2"] = batch["liver2"][:, batch["liver2"].var["marker"] != "CD103"].copy()
    with pytest.warns(NkflowWarning, match=r"CD103 \(not in liver2\); clustering on the 4 shared"):
        assert default_markers(batch) == ["CD56", "CD16", "CD69", "CD49a"]


@pytest.mark.parametrize(
    ("medians", "expected"),
    [
        # two CD127- metaclusters apart on CD127 (and AREG) most: told apart by NKG2D, not
        # "CD127hi", nor by a function read-out ("AREGhi" would read as AREG-producing)
        (
            {
                "CD56": [1, 1, 0],
                "CD127": [0.1, 0.4, 0.9],
                "NKG2D": [0.9, 1.2, 1.0],
                "AREG": [0.1, 0.9, 0.2],
            },
            {"CD56+ CD127- (NKG2Dlo)", "CD56+ CD127- (NKG2Dhi)", "CD56- CD127+"},
        ),
        # named by a relative call only: a number, not "CD4hi (CD4lo)"
        (
            {"CD56": [1, 1, 0], "CD4": [0.9, 0.8, 0.1]},
            {"CD56+ CD4hi [1]", "CD56+ CD4hi [2]", "CD56- CD4lo"},
        ),
    ],
    ids=["marker already called", "only called markers"],
)
def test_metaclusters_sharing_a_name_are_told_apart_by_a_marker_it_does_not_call(
    medians: dict, expected: set
) -> None:
    """The reviewer read "CD56bright ... CD127- NKG2D+ (CD127hi)" and "CD4hi (CD4lo)": the
    marker added to tell clashing names apart was one the name already called."""
    from nkflow.tl.annotate import name_metaclusters

    table = pd.DataFrame(medians, index=[1, 2, 3], dtype=float)
    thresholds = {"CD56": {"value": 0.5, "rule": "fmo"}, "CD127": {"value": 0.5, "rule": "valley"},
                  "NKG2D": {"value": 0.5, "rule": "valley"}, "AREG": {"value": 1.5, "rule": "fmo"},
                  "CD4": {"value": 0.5, "rule": "quantile", "spread": 0.2}}  # fmt: skip
    assert set(name_metaclusters(table, thresholds).values()) == expected


def test_cd56bright_and_dim_come_from_the_gated_subsets_not_from_one_cd56_cut() -> None:
    """The README's ``name_metaclusters(res.medians, res.thresholds)`` called every
    metacluster above the NK anchor's CD56 cut (CD56- vs CD56+) "CD56bright", CD56dim
    clusters included: bright/dim are a 2-D gate, so only the gated subsets name them."""
    from nkflow.tl.annotate import name_metaclusters

    medians = pd.DataFrame({"CD56": [0.9, 0.55, 0.2]}, index=[1, 2, 3])
    thresholds = {"CD56": {"value": 0.38, "rule": "valley"}}  # the NK anchor's cut
    assert name_metaclusters(medians, thresholds) == {1: "CD56+ [1]", 2: "CD56+ [2]", 3: "CD56-"}
    subsets = pd.DataFrame({"CD56bright": [True, False, False, False],
                            "CD56dim": [False, True, True, False]})  # fmt: skip
    named = name_metaclusters(
        medians, thresholds, subsets=subsets, cell_metacluster=np.array([1, 2, 2, 3])
    )
    assert named == {1: "CD56bright", 2: "CD56dim", 3: "CD56-"}


def test_more_metaclusters_than_som_nodes_is_refused_up_front(batch, monkeypatch):
    """xdim=3, ydim=3, n_metaclusters=20 silently gave 9 metaclusters."""
    import importlib

    tlc = importlib.import_module("nkflow.tl.cluster")  # the module, not the function
    with monkeypatch.context() as m:
        m.setattr(tlc, "default_markers", lambda *a, **k: pytest.fail("work was done"))
        with pytest.raises(ConfigError, match=r"n_metaclusters=20 exceeds the 3 x 3 = 9 SOM"):
            cluster(batch, xdim=3, ydim=3, n_metaclusters=20, assign=False)
    assert len(_run(batch, xdim=2, ydim=2, n_metaclusters=4, assign=False).labels) == 4


def test_predict_refuses_an_anndata_at_once_and_says_what_to_pass(batch):
    """predict(adata) walked the AnnData cell by cell for minutes, eating GBs."""
    res = _run(batch, assign=False)
    adata = batch["liver2"]
    with pytest.raises(ConfigError, match=r"AnnData .*result\.markers order .*assign\(adata\)"):
        res.predict(adata)
    with pytest.raises(ConfigError, match=f"expected {len(res.markers)}"):
        res.predict(np.zeros((3, len(res.markers) + 1)))
    # the array it asks for gives what assign writes
    cols = adata.var_names.get_indexer([channel_for(adata, m) for m in res.markers])
    nk = adata.obs["NK"].to_numpy()
    got = res.predict(adata.X[nk][:, cols])
    res.assign(adata)
    assert (got.astype(str) == adata.obs["metacluster"][nk].astype(str).to_numpy()).all()


def test_predict_takes_a_dataframes_columns_by_name(batch):
    """A DataFrame with the markers in another order got other metaclusters, silently."""
    res = _run(batch, assign=False)
    adata = batch["liver2"]
    cols = adata.var_names.get_indexer([channel_for(adata, m) for m in res.markers])
    table = pd.DataFrame(np.asarray(adata.X)[:, cols], columns=list(res.markers))
    expected = res.predict(table.to_numpy())
    np.testing.assert_array_equal(res.predict(table), expected)
    np.testing.assert_array_equal(res.predict(table[list(res.markers)[::-1]]), expected)
    with pytest.raises(ConfigError, match=f"no column '{res.markers[0]}'"):
        res.predict(table.drop(columns=[res.markers[0]]))


def test_name_metaclusters_refuses_what_is_not_wide_medians(batch):
    """median_table's long table gave 1040 names ' #1', ' #2', ... and no error."""
    from nkflow.tl.annotate import name_metaclusters

    res = _run(batch)
    assert set(name_metaclusters(res.medians, res.thresholds)) == set(res.labels)  # wide: named
    long = median_table(batch, res)
    with pytest.raises(ConfigError, match=r"wide metacluster x marker .*result\.medians.*long"):
        name_metaclusters(long, res.thresholds)
    with pytest.raises(ConfigError, match=r"none of its columns \(a, b\)"):
        name_metaclusters(pd.DataFrame({"a": [1.0], "b": [2.0]}), res.thresholds)
    with pytest.raises(ConfigError, match=r"no metacluster ids: \['x'\]"):
        name_metaclusters(res.medians.rename(index={1: "x"}), res.thresholds)


def test_the_fit_does_not_depend_on_the_order_the_samples_come_in(batch):
    """A metadata sheet listed in reverse gave other metaclusters, names and counts: the
    SOM walked the rows in sheet order and the capped draws shared one random stream."""
    forward = _run(batch, assign=False)
    backward = _run(dict(reversed(list(batch.items()))), assign=False)
    assert forward.labels == backward.labels
    pd.testing.assert_frame_equal(forward.medians, backward.medians)
    np.testing.assert_array_equal(forward.node_metacluster, backward.node_metacluster)


def test_a_runs_clustering_does_not_depend_on_the_sheets_row_order(batch):
    """nkflow run on a sheet listed in reverse gave other metacluster counts per sample."""
    from nkflow.config import RunConfig, replace_values
    from nkflow.pipeline.steps import cluster_batch

    cfg = replace_values(RunConfig(), {"clustering.xdim": 5, "clustering.ydim": 5,
                                       "clustering.n_metaclusters": 3})  # fmt: skip
    tables = []
    for order in (list(batch), list(reversed(batch))):
        out = cluster_batch({sid: (lambda a=batch[sid]: a) for sid in order}, cfg)
        tables.append(out.counts.sort_values(["sample_id", "population"], ignore_index=True))
    pd.testing.assert_frame_equal(*tables)


def test_random_state_none_draws_a_seed_and_records_it(batch):
    """random_state=None raised TypeError once each sample's draw was seeded by its id."""
    res = _run(batch, per_sample_cap=200, random_state=None, assign=False)
    seed = res.params["random_state"]
    assert isinstance(seed, int)
    again = _run(batch, per_sample_cap=200, random_state=seed, assign=False)
    assert again.labels == res.labels
    pd.testing.assert_frame_equal(again.medians, res.medians)
