"""Analysis design around scoring: clustering that stimulation cannot split, one phenotype row
per donor/tissue/timepoint in frequency summaries, timepoints in the sheet's order, per-condition
figures, and the clearance axis without an NKG2D cut-off."""

from __future__ import annotations

import dataclasses
import io
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure

from nkflow.config import ClusteringConfig, RunConfig
from nkflow.pipeline.figures import score_figures
from nkflow.pipeline.stages import _comparisons, timepoint_order
from nkflow.pipeline.steps import STIMULATION_LABILE_MARKERS, cluster_batch, is_stimulated
from nkflow.pl.populations import frequencies, group_labels, group_order
from nkflow.pl.score import repair_profile, repair_profiles
from nkflow.report.findings import composition_table
from nkflow.report.repair import repair_section
from nkflow.report.sections import _population_summary
from nkflow.tl import phenotype_rows
from nkflow.tl.annotate import abundance_table
from nkflow.tl.cluster import cluster as nk_cluster
from nkflow.tl.cluster import default_markers
from nkflow.tl.score import score

# --------------------------------------------------------------------------- clustering
MARKERS = ["CD56", "CD16", "CD69", "CD62L", "CD49a", "NKG2A", "AREG"]


def _tube(sid: str, stim: bool, seed: int, n: int = 600) -> ad.AnnData:
    """NK tube: 20 % CD56bright (CD16-, CD62L+, NKG2A+), 30 % CD49a+ CD69+; stimulation sheds
    CD16 and CD62L and raises CD69 (BIOLOGY.md section 4) but leaves CD56, CD49a and NKG2A
    alone (three stable markers: clustering needs at least three)."""
    rng = np.random.default_rng(seed)
    bright, tr = rng.random(n) < 0.2, rng.random(n) < 0.3
    shift = 2.5 if stim else 0.0
    x = np.column_stack(
        [
            np.where(bright, 3.5, 2.0),
            np.where(bright, 0.3, 3.0) - shift,
            np.where(tr, 3.0, 0.3) + shift,
            np.where(bright, 3.0, 1.0) - 0.6 * shift,
            np.where(tr, 3.0, 0.3),
            np.where(bright, 3.0, 1.5),
            np.full(n, 0.3),
        ]
    ) + rng.normal(0.0, 0.2, (n, len(MARKERS)))
    var = pd.DataFrame({"marker": MARKERS, "kind": "fluorescence"},
                       index=[f"ch{i}" for i in range(len(MARKERS))])  # fmt: skip
    adata = ad.AnnData(x.astype(np.float32), var=var)
    adata.obs_names = [f"{sid}_{i}" for i in range(n)]
    adata.obs["NK"] = True
    adata.uns["nkflow"] = {"sample": {"sample_id": sid, "tissue": "blood", "batch": "b",
                                      "role": "stim" if stim else "unstim",
                                      "stimulation": "stim" if stim else "unstim"}}  # fmt: skip
    return adata


def _tubes() -> dict[str, ad.AnnData]:
    return {"u1": _tube("u1", False, 1), "s1": _tube("s1", True, 2),
            "u2": _tube("u2", False, 3), "s2": _tube("s2", True, 4)}  # fmt: skip


def _cluster(markers=(), **kwargs):
    tubes = _tubes()
    loads = dict.fromkeys(tubes, 0)

    def loader(sid):
        def load():
            loads[sid] += 1
            return tubes[sid].copy()

        return load

    cfg = dataclasses.replace(
        RunConfig(), clustering=ClusteringConfig(xdim=4, ydim=4, n_metaclusters=4, markers=markers)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no AREG thresholds in these tubes
        res = cluster_batch({k: loader(k) for k in tubes}, cfg, **kwargs)
    wide = res.abundance.pivot_table(index="sample_id", columns="metacluster", values="percent")
    return res, wide.fillna(0.0), loads


def _split(wide: pd.DataFrame) -> float:
    """Largest metacluster abundance difference between a stim and an unstim tube (pts)."""
    stim, unstim = wide.loc[["s1", "s2"]].mean(), wide.loc[["u1", "u2"]].mean()
    return float((stim - unstim).abs().max())


def test_pooled_clustering_on_labile_markers_splits_by_stimulation():
    _, wide, _ = _cluster(markers=("CD56", "CD16", "CD69", "CD62L", "CD49a"))
    assert _split(wide) > 50  # the failure the issue found: metaclusters = stimulation


def test_fit_on_unstim_tubes_and_stable_markers_keeps_metaclusters_shared():
    res, wide, loads = _cluster(fit_on={"u1", "u2"})  # labile markers out by default
    assert res.result.markers == ["CD56", "CD49a", "NKG2A"]
    assert _split(wide) < 5
    # stimulated tubes are read once (mapped), never used to train
    assert loads == {"u1": 2, "s1": 1, "u2": 2, "s2": 1}
    assert set(res.counts["sample_id"]) == {"u1", "s1", "u2", "s2"}


def test_library_and_pipeline_leave_out_the_same_labile_markers_by_default():
    """nk.tl.cluster clustered on CD69, CD16 and CD62L while nk.run left them out: stim
    and unstim tubes clustered together from Python split into metaclusters by stimulation."""
    tubes = _tubes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no AREG thresholds in these tubes
        res = nk_cluster(tubes, xdim=4, ydim=4, n_metaclusters=4, n_resamples=20)
    pipeline, _, _ = _cluster()
    assert res.markers == pipeline.result.markers == ["CD56", "CD49a", "NKG2A"]
    assert not set(res.markers) & set(STIMULATION_LABILE_MARKERS)
    ab = abundance_table(tubes, res)
    wide = ab.pivot_table(index="sample_id", columns="metacluster", values="percent")
    assert _split(wide.fillna(0.0)) < 5
    # on a batch without stimulated tubes they can be asked for
    kept = default_markers(tubes, include_stimulation_labile=True)
    assert kept == ["CD56", "CD16", "CD69", "CD62L", "CD49a", "NKG2A"]
    # and are kept by default (CD16 tells CD56dim from CD56bright NK), by both
    resting = {sid: tubes[sid] for sid in ("u1", "u2")}
    assert default_markers(resting) == kept
    loaders = {sid: (lambda a=a: a.copy()) for sid, a in resting.items()}
    grid = ClusteringConfig(xdim=4, ydim=4, n_metaclusters=4)
    cfg = dataclasses.replace(RunConfig(), clustering=grid)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        only_resting = cluster_batch(loaders, cfg, fit_on=set(resting))
    assert only_resting.result.markers == kept


@pytest.mark.parametrize(
    ("row", "stimulated"),
    [
        ({"role": "stim", "stimulation": "IL-15"}, True),
        ({"role": "unstim", "stimulation": "unstim"}, False),
        ({"role": "sample", "stimulation": "PMA/iono"}, True),
        ({"role": "sample", "stimulation": ""}, False),
        ({"role": "positive_control", "stimulation": "stim"}, True),
        ({"role": "", "stimulation": "stim"}, True),
    ],
)
def test_is_stimulated_reads_condition_names(row, stimulated):
    assert is_stimulated(row) is stimulated


# ------------------------------------------------------------------ frequency summaries
def _sheet() -> pd.DataFrame:
    rows = []
    for donor in ("D1", "D2"):
        for tp in ("pre", "post"):  # the sheet lists pre before post
            for stim, role in (("unstim", "unstim"), ("stim", "stim"), ("IL-15", "stim")):
                sid = f"{donor}_{tp}_{stim}"
                rows.append(dict(sample_id=sid, donor=donor, tissue="blood", timepoint=tp,
                                 stimulation=stim, role=role, batch="H1"))  # fmt: skip
    rows.append(dict(sample_id="PC", donor="D1", tissue="blood", timepoint="pre",
                     stimulation="stim", role="positive_control", batch="H1"))  # fmt: skip
    rows.append(dict(sample_id="FMO", donor="D1", tissue="blood", timepoint="pre",
                     stimulation="stim", role="fmo:AREG", batch="H1"))  # fmt: skip
    rows.append(dict(sample_id="D3_pre_stim", donor="D3", tissue="blood", timepoint="pre",
                     stimulation="stim", role="stim", batch="H1"))  # fmt: skip
    return pd.DataFrame(rows)


def _pops(meta: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        [dict(sample_id=s, population="NK", parent="CD3-", percent_of_parent=10.0 + i,
              count=100, low_events=False) for i, s in enumerate(meta["sample_id"])]
    )  # fmt: skip


def test_phenotype_rows_one_per_donor_tissue_timepoint_controls_left_out():
    meta = _sheet()
    kept = phenotype_rows(_pops(meta), meta)
    # the unstim tube of each key; D3 has only a stimulated tube, which then stands in
    assert sorted(kept["sample_id"]) == sorted(
        ["D1_pre_unstim", "D1_post_unstim", "D2_pre_unstim", "D2_post_unstim", "D3_pre_stim"]
    )
    summary = _population_summary(_pops(meta), meta)
    assert list(summary.columns) == ["population", "parent", "blood · pre", "blood · post"]
    assert summary.loc[0, "blood · pre"].endswith("n=3")  # not 7 (stim, IL-15, PC, FMO)
    assert summary.loc[0, "blood · post"].endswith("n=2")


def test_phenotype_rows_without_donors_count_each_unstimulated_tube():
    meta = _sheet()
    meta["donor"] = ""  # a folder run without a sheet: D1 and D2 cannot be told apart
    kept = phenotype_rows(_pops(meta), meta)
    # each unstimulated tube is a unit; stimulated tubes beside them stand for none;
    # D3's lone stimulated tube of "blood, pre" now shares its key with unstimulated ones
    assert sorted(kept["sample_id"]) == sorted(
        ["D1_pre_unstim", "D1_post_unstim", "D2_pre_unstim", "D2_post_unstim"]
    )
    comp = composition_table(_pops(meta).assign(population="CD56bright", parent="NK",
                                                ci_low=0.0, ci_high=1.0), meta)  # fmt: skip
    assert list(comp["n"]) == [2, 2] and comp.attrs["tubes_without_donor"] == 4


@pytest.mark.parametrize(
    ("sheet_order", "natural"),
    [
        (["post", "pre"], ["pre", "post"]),  # a sheet sorted by file name
        (["Post-treatment", "Baseline"], ["Baseline", "Post-treatment"]),
        (["D14", "D0", "D7"], ["D0", "D7", "D14"]),  # by number, not as text
        (["week 12", "baseline", "week 4"], ["baseline", "week 4", "week 12"]),
        (["follow-up", "pre", "on"], ["pre", "on", "follow-up"]),
        (
            ["C2D1", "baseline", "C1D15", "C1D1", "EOT"],  # trial visits: cycle, then day
            ["baseline", "C1D1", "C1D15", "C2D1", "EOT"],
        ),
        (
            ["Progression", "Cycle 2", "Screening", "Cycle 1"],
            ["Screening", "Cycle 1", "Cycle 2", "Progression"],
        ),
        (["48h", "0h", "24h"], ["0h", "24h", "48h"]),
        (["2024-04-05", "2024-03-12"], ["2024-03-12", "2024-04-05"]),  # ISO dates
        (["12/03/2024", "05/04/2024"], ["12/03/2024", "05/04/2024"]),  # d/m or m/d: as given
        (["D7", "week 4"], ["D7", "week 4"]),  # two scales: the sheet's order
        (["visit B", "visit A"], ["visit B", "visit A"]),  # the lab's own names: the sheet's
    ],
)
def test_timepoints_in_natural_order_unless_configured(sheet_order, natural):
    meta = pd.DataFrame({"timepoint": sheet_order})
    assert timepoint_order(meta) == natural
    assert timepoint_order(meta, configured=sheet_order) == sheet_order


def test_findings_list_the_baseline_first():
    meta = _sheet()
    meta = pd.concat([meta[meta.timepoint == "post"], meta[meta.timepoint != "post"]])
    pops = _pops(meta).assign(population="CD56bright", parent="NK", ci_low=0.0, ci_high=1.0)
    meta.attrs["timepoint_order"] = timepoint_order(meta)  # as a run sets it
    assert list(composition_table(pops, meta)["timepoint"]) == ["pre", "post"]


def test_groups_follow_the_sheet_or_the_configured_timepoint_order():
    meta = _sheet()
    labels = group_labels(_pops(meta), meta)
    assert group_order(labels, meta) == ["blood · pre", "blood · post"]
    assert group_order(labels, meta, timepoint_order=["post"]) == ["blood · post", "blood · pre"]
    meta.attrs["timepoint_order"] = ["post", "pre"]
    assert group_order(labels, meta) == ["blood · post", "blood · pre"]
    assert timepoint_order(_sheet()) == ["pre", "post"]
    assert timepoint_order(_sheet(), ("post", "later")) == ["post", "pre"]
    fig = frequencies(_pops(meta), meta)
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks == ["blood · post", "blood · pre"]
    # a group without hollow (low-event) dots draws no empty layer (it cost layout time)
    dots = [c for ax in fig.axes for c in ax.collections if isinstance(c, PathCollection)]
    assert dots and all(len(c.get_offsets()) for c in dots)


# --------------------------------------------------------- scoring outputs in the run
def _scored():
    counts, meta = [], []
    for donor, base in (("D1", 0), ("D2", 3)):
        for tp, extra in (("pre", 0), ("post", 20)):
            for stim, role, k in (("unstim", "unstim", 5), ("stim", "stim", 30 + extra + base),
                                  ("IL-15", "stim", 25 + base)):  # fmt: skip
                sid = f"{donor}_{tp}_{stim}"
                meta.append(dict(sample_id=sid, donor=donor, tissue="blood", timepoint=tp,
                                 stimulation=stim, role=role, batch="H1"))  # fmt: skip
                for pop, n in (("NK", 1000), ("CD56bright", 200), ("CD56dim", 800), ("ILC", 200)):
                    areg = k * n // 1000 if pop != "ILC" else (40 if role == "stim" else 2)
                    counts.append(dict(sample_id=sid, population=pop, n_events=n, n_areg=areg,
                                       n_ifng=0, n_nkg2d=pd.NA, n_cd107a=0, n_areg_only=areg,
                                       n_ifng_only=0, n_areg_ifng=0, n_trnk=0,
                                       threshold_areg=1.0, areg_rule="fmo_percentile:99.5",
                                       areg_control_file="f.fcs"))  # fmt: skip
    counts = pd.DataFrame(counts)
    counts["n_nkg2d"] = counts["n_nkg2d"].astype("Int64")
    return score(counts, pd.DataFrame(meta)), pd.DataFrame(meta)


def test_comparisons_per_condition_in_sheet_timepoint_order():
    result, meta = _scored()
    comp = _comparisons(result.scores, timepoint_order(meta))
    nk = comp[comp["population"] == "NK"].set_index("condition")
    assert set(nk.index) == {"stim", "IL-15"}
    assert set(comp["comparison"]) == {"post - pre"}
    assert nk.loc["stim", "mean_difference"] == pytest.approx(2.0)
    assert nk.loc["IL-15", "mean_difference"] == pytest.approx(0.0)
    one_timepoint = result.scores.assign(timepoint="")
    assert _comparisons(one_timepoint, timepoint_order(meta.assign(timepoint=""))).empty


def test_comparisons_cover_flaggable_populations_and_count_glucocorticoid_donors():
    """Cells, Live or the ILC positive-control gate are not NK read-outs: only flaggable
    populations are compared. D2's post tubes came with dexamethasone, D1's did not: each
    row says 1 of its 2 donors was exposed after, and that 2 pairs allow p >= 0.5 (1 where
    no donor changed: a zero difference has no sign to flip)."""
    result, _ = _scored()
    scores = result.scores.copy()
    exposed = (scores["donor"] == "D2") & (scores["timepoint"] == "post")
    scores["glucocorticoid"] = np.where(exposed, "yes", "no")
    comp = _comparisons(scores, ["pre", "post"])
    assert set(comp["population"]) == set(scores.loc[scores["flaggable"], "population"])
    assert "ILC" not in set(comp["population"])
    assert (comp["n_glucocorticoid_before"] == 0).all()
    assert (comp["n_glucocorticoid_after"] == 1).all()
    moved = (comp["n_increase"] + comp["n_decrease"]).to_numpy()
    assert comp["p_min"].tolist() == [0.5 if m == 2 else 1.0 for m in moved]
    assert (moved == 2).any() and (moved == 0).any()
    empty = _comparisons(scores.assign(timepoint=""), ["pre", "post"])
    assert {"n_glucocorticoid_after", "p_min"} <= set(empty.columns)


def test_one_repair_figure_per_condition_and_no_nkg2d_without_a_cut_off():
    result, _ = _scored()
    figures = score_figures(result)
    assert all(png.startswith(b"\x89PNG") for png in figures.values())
    assert sorted(figures) == [
        "repair_condition IL-15: AREG net, polarisation, clearance",
        "repair_condition stim: AREG net, polarisation, clearance",
    ]
    with pytest.raises(ValueError, match="2 stimulation conditions"):
        repair_profile(result)
    profiles = repair_profiles(result)
    assert list(profiles) == ["stim", "IL-15"]
    fig = profiles["IL-15"]
    assert isinstance(fig, Figure)
    assert "IL-15" in fig._suptitle.get_text()
    title = fig.axes[3].get_title()
    assert "NKG2D not gated" in title and "triangle" not in title
    assert len(fig.axes[3].collections) == 4  # trNK rings of the four IL-15 tubes, no NKG2D
    fig.savefig(io.BytesIO(), format="png")


def test_report_shows_conditions_side_by_side_and_the_bright_dim_read_out():
    result, _ = _scored()
    html = repair_section(
        {"scores": result.scores, "flags": result.flags, "bright_dim": result.bright_dim},
        result.caveats,
        [],
        [0],
    )
    assert "Stimulation conditions side by side" in html
    assert "<th>IL-15</th>" in html and "<th>stim</th>" in html
    assert "CD56bright vs CD56dim" in html
    assert "Wang et al." in html and "Wei et al." in html


@pytest.mark.parametrize(
    ("role", "stimulation", "expected"),
    [("sample", "IL-15", True), ("sample", "unstim", False), ("stim", "", True),
     ("unstim", "IL-15", False), ("sample", "", False), ("positive_control", "stim", True)],
)  # fmt: skip
def test_gating_and_pairing_share_one_stimulation_rule(role, stimulation, expected) -> None:
    """A named condition on a role=sample row is a stimulated tube for gating too."""
    from nkflow.io.metadata import is_stimulated as io_rule

    row = {"role": role, "stimulation": stimulation}
    assert is_stimulated(row) is expected
    assert io_rule(row) is expected
