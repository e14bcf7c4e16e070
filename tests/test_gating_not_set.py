"""A gate that could not be set, and every gate hanging on it, is not set everywhere.

Golden truth on a tiny deterministic container: 180 CD3+ T cells and 20 CD3- NK cells.
Twenty NK events are too few to split CD56bright from CD56dim (a density cut inside NK
needs 50), so ``CD56bright`` is not set; ``CD56dim`` (NOT CD56bright), a child of it, a
boolean AND with it, a quadrant below it and a cut-off set on its events are not set
either. The populations table gives them NA, and so does ``obs`` (``<NA>`` on the 20 NK
events, False on the T cells outside NK), the counts, ``gate --events``, the h5ad file
and the metacluster names. Before, ``obs["CD56dim"]`` was True on every NK event.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from nkflow.exceptions import ChannelNotFoundError
from nkflow.gating import gate, population_table
from nkflow.gating.membership import is_set, member_mask, membership_column
from nkflow.io import nkflow_uns, read_h5ad, write_h5ad
from nkflow.pipeline.gate import event_membership
from nkflow.tl.annotate import name_metaclusters, subset_calls
from nkflow.tl.counts import count_positive

N_T, N_NK = 180, 20

#: the CD56bright gate, drawn three ways that cannot be set on 20 NK events
BRIGHT = {
    "valley": '[[gates]]\nid = "CD56bright"\nparent = "NK"\nkind = "threshold"\n'
    'marker = "CD56"\nside = "pos"\nrule = "valley"\n',
    "cluster fit": '[[gates]]\nid = "CD56bright"\nparent = "NK"\nkind = "polygon"\n'
    'rule = "density"\nmethod = "upper_cluster"\nx = "CD56"\ny = "CD16"\n'
    'params = { split = "valley", y_side = "low" }\n',
    # a cut-off given as NaN (a control that could not set it)
    "given NaN": '[[gates]]\nid = "CD56bright"\nparent = "NK"\nkind = "threshold"\n'
    'marker = "CD56"\nside = "pos"\nrule = "fmo"\n',
}

REST = """
[[gates]]
id = "CD56dim"
parent = "NK"
kind = "boolean"
op = "not"
operands = ["CD56bright"]

[[gates]]
id = "NK_CD16+"
parent = "NK"
kind = "threshold"
marker = "CD16"
side = "pos"
rule = "fixed"
value = 0.5

[[gates]]
id = "CD56dim_CD16+"
parent = "CD56dim"
kind = "boolean"
op = "and"
operands = ["NK_CD16+"]

[[gates]]
id = "CD56bright_CD16+"
parent = "CD56bright"
kind = "threshold"
marker = "CD16"
side = "pos"
rule = "fixed"
value = 0.5

[[gates]]
id = "bright_and_CD16+"
parent = "NK"
kind = "boolean"
op = "and"
operands = ["CD56bright", "NK_CD16+"]

[[gates]]
id = "dim_quadrants"
parent = "CD56dim"
kind = "quadrant"
x = { marker = "CD16", rule = "fixed", value = 0.5 }
y = { marker = "CD56", rule = "fixed", value = 0.5 }
quadrants = { "Q++" = "++", "Q+-" = "+-", "Q-+" = "-+", "Q--" = "--" }

[[gates]]
id = "NK_CD56+_on_bright"
parent = "NK"
kind = "threshold"
marker = "CD56"
side = "pos"
rule = "valley"
on = "CD56bright"
"""

HEAD = """[template]
name = "not_set_golden"
version = "1"
species = "human"
anchor = "CD3"
[manifest]
required_markers = ["CD3", "CD56", "CD16"]
terminal_populations = ["CD56dim_CD16+"]
min_events = 10
[defaults]
bootstrap = 0

[[gates]]
id = "NK"
kind = "threshold"
marker = "CD3"
side = "neg"
rule = "fixed"
value = 0.5
"""

#: every gate that hangs on CD56bright, and CD56bright itself
NOT_SET = ["CD56bright", "CD56dim", "CD56dim_CD16+", "CD56bright_CD16+", "bright_and_CD16+",
           "Q++", "Q+-", "Q-+", "Q--", "NK_CD56+_on_bright"]  # fmt: skip
#: children of a gate not set: their parent's count is not measured either
BELOW_NOT_SET = ["CD56dim_CD16+", "CD56bright_CD16+", "Q++", "Q+-", "Q-+", "Q--"]


def _container() -> ad.AnnData:
    """180 T cells (CD3 1.0) then 20 NK (CD3 0.0); NK CD16 alternates 0.2 / 0.8."""
    n = N_T + N_NK
    nk = np.arange(n) >= N_T
    cd3 = np.where(nk, 0.0, 1.0)
    cd56 = np.where(nk, np.linspace(0.3, 0.9, n), 0.1)
    cd16 = np.where(nk & (np.arange(n) % 2 == 0), 0.8, 0.2)
    var = pd.DataFrame(
        {"marker": ["CD3", "CD56", "CD16"], "kind": "fluorescence", "transform": "arcsinh"},
        index=["Ch1", "Ch2", "Ch3"],
    )
    adata = ad.AnnData(X=np.column_stack([cd3, cd56, cd16]).astype(np.float32), var=var)
    adata.obs_names = [str(i) for i in range(n)]
    adata.uns["nkflow"] = {
        "sample": {"sample_id": "s1", "tissue": "blood", "batch": "B1", "stimulation": ""},
        "fcs": {"n_events": n},
    }
    return adata


@pytest.fixture(scope="module", params=list(BRIGHT))
def gated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("not_set")
    path = Path(folder) / "not_set_golden.toml"
    path.write_text(HEAD + BRIGHT[request.param] + REST)
    given = None
    if request.param == "given NaN":
        given = pd.DataFrame([{"marker": "CD56", "gate": "NK", "value": np.nan, "rule": "fmo",
                               "control_file": "fmo_CD56.fcs"}])  # fmt: skip
    adata = _container()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = gate(adata, path, thresholds=given, n_boot=0)
    return adata, table.set_index("population")


def test_the_gates_that_could_be_set_are_measured(gated):
    adata, rows = gated
    assert rows.loc["NK", "count"] == N_NK
    assert rows.loc["NK_CD16+", "count"] == N_NK // 2
    for name in ("NK", "NK_CD16+"):
        assert adata.obs[name].dtype == bool


@pytest.mark.parametrize("population", NOT_SET)
def test_the_table_says_not_set(gated, population):
    _, rows = gated
    assert pd.isna(rows.loc[population, "count"])
    assert np.isnan(rows.loc[population, "percent_of_parent"])
    assert np.isnan(rows.loc[population, "percent_of_nk"])
    below = population in BELOW_NOT_SET
    assert pd.isna(rows.loc[population, "parent_count"]) is below


@pytest.mark.parametrize("population", NOT_SET)
def test_obs_says_not_set_where_the_gate_would_decide(gated, population):
    adata, _ = gated
    column = adata.obs[population]
    nk = np.arange(adata.n_obs) >= N_T
    assert column.dtype == "boolean" and not is_set(column)
    assert column.isna().to_numpy().tolist() == nk.tolist()  # every NK event: <NA>
    assert not column[~nk].any()  # outside NK: known not to be in it
    assert pd.isna(column[nk].mean())  # its share of NK: not measured, never 0 % or 100 %


def test_the_record_in_uns_names_the_same_gates(gated):
    adata, _ = gated
    assert sorted(nkflow_uns(adata)["gating"]["unset"]) == sorted(NOT_SET)


def test_the_table_reads_not_set_from_obs_alone(gated):
    """A container whose ``uns`` record was dropped still gives NA, from its ``<NA>``."""
    adata, rows = gated
    table = population_table(adata, unset={}, warn=False).set_index("population")
    assert table["count"].isna().to_dict() == rows["count"].isna().to_dict()


def test_counts_are_na_not_zero(gated):
    adata, _ = gated
    counts = count_positive(adata, thresholds=[]).set_index("population")
    assert counts["n_events"].isna().to_dict() == {p: p in NOT_SET for p in counts.index}
    assert counts.loc["NK", "n_events"] == N_NK


def test_gate_events_keeps_na(gated):
    adata, _ = gated
    pops = [p["name"] for p in nkflow_uns(adata)["gating"]["populations"]]
    events = event_membership(adata.obs, pops, adata.n_obs)
    nk = np.arange(adata.n_obs) >= N_T
    assert events["CD56dim"].isna().tolist() == nk.tolist()
    assert events["NK"].dtype == bool and events["NK"].tolist() == nk.tolist()


def test_h5ad_keeps_na_for_plain_anndata_too(gated, tmp_path):
    adata, _ = gated
    path = write_h5ad(adata, tmp_path / "s1.h5ad")
    for back in (read_h5ad(path), ad.read_h5ad(path)):
        assert back.obs["CD56dim"].isna().tolist() == adata.obs["CD56dim"].isna().tolist()
        assert back.obs["NK"].dtype == bool


def test_membership_column_is_na_only_where_the_parent_could_hold_the_event():
    parent = pd.array([True, False, pd.NA, True], dtype="boolean")
    column = membership_column(np.zeros(4, bool), parent, not_set=True)
    assert column.isna().tolist() == [True, False, True, True]
    assert member_mask(column).tolist() == [False] * 4
    assert membership_column(np.ones(2, bool), None).dtype == bool  # a set gate: bool


@pytest.mark.parametrize(
    "column",
    [
        pd.Series([True, False, True], index=["a", "b", "c"]),
        pd.Series(pd.array([True, pd.NA, False], dtype="boolean")),
        np.array([True, False, True]),
        [True, None, False],
    ],
    ids=["bool-series", "nullable-series", "array", "list"],
)
def test_member_mask_is_a_copy_and_is_set_reads_every_form(column):
    mask = member_mask(column)
    expected = pd.array(column, dtype="boolean").fillna(False).to_numpy(dtype=bool)
    assert mask.dtype == bool and mask.tolist() == expected.tolist()
    mask[:] = False  # the caller's array, never a view of the obs column
    assert member_mask(column).tolist() == expected.tolist()
    assert is_set(column) == (not pd.isna(pd.array(column, dtype="boolean")).any())


def _medians(n_clusters: int) -> pd.DataFrame:
    frame = pd.DataFrame({"CD56": [0.6] * n_clusters, "CD16": [0.8, 0.1][:n_clusters]})
    frame.index = range(1, n_clusters + 1)
    return frame


THRESHOLDS = {"CD56": {"value": 0.5, "rule": "gating"}, "CD16": {"value": 0.5, "rule": "gating"}}


def test_a_split_not_set_names_no_metacluster_bright_or_dim(gated):
    adata, _ = gated
    nk = np.flatnonzero(np.arange(adata.n_obs) >= N_T)
    subsets = subset_calls(adata.obs.iloc[nk])
    cells = np.where(np.arange(nk.size) % 2 == 0, 1, 2)
    names = name_metaclusters(_medians(2), THRESHOLDS, subsets=subsets, cell_metacluster=cells)
    assert names == {1: "CD56+ CD16+", 2: "CD56+ CD16-"}


@pytest.mark.parametrize(("measured", "expected"), [(3, "CD56dim"), (2, "CD56+")])
def test_a_split_set_for_half_of_a_metaclusters_cells_names_it(measured, expected):
    """Of 6 cells, 3 measured (half) name it from those cells; 2 do not."""
    unknown = [pd.NA] * (6 - measured)
    subsets = pd.DataFrame({
        "CD56bright": pd.array([False] * measured + unknown, dtype="boolean"),
        "CD56dim": pd.array([True] * measured + unknown, dtype="boolean"),
    })  # fmt: skip
    names = name_metaclusters(
        _medians(1), THRESHOLDS, subsets=subsets, cell_metacluster=np.ones(6, int)
    )
    assert names[1].split()[0] == expected


def test_cytonorm_names_no_metacluster_by_a_split_it_could_not_set(external, fast_config, tmp_path):
    """CytoNorm CyTOF (6 files of 1,000 events): every tube has under 50 NK, so the
    CD56bright/dim split is not set; all ten metaclusters were named "CD56dim" (a CD16- one
    too), because obs["CD56dim"], the negation of an empty CD56bright, was every NK event."""
    from nkflow.pipeline import run

    files = sorted((external / "cytonorm" / "inst" / "extdata").glob("*.fcs"))
    if len(files) < 6:
        pytest.skip(f"CytoNorm files not found under {external}")
    sheet = pd.DataFrame({
        "file": [str(f) for f in files], "sample_id": [f.stem for f in files],
        "tissue": "blood", "stimulation": "unstim", "role": "unstim", "species": "human",
        "donor": [f.stem.split("_")[1] for f in files], "batch": [f.stem[-1] for f in files],
    })  # fmt: skip
    sheet.to_csv(tmp_path / "metadata.csv", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = run(tmp_path / "metadata.csv", tmp_path / "out", config=fast_config)
    pops = res.tables["populations"]
    split = pops[pops["population"].isin(["CD56bright", "CD56dim"])]
    assert len(split) == 12 and split["count"].isna().all()  # the premise: not set
    words = {w for label in res.tables["clusters"]["label"] for w in str(label).split()}
    assert not words & {"CD56dim", "CD56bright"}, words
    counts = res.tables["counts"]
    assert counts.loc[counts["population"] == "CD56dim", "n_events"].isna().all()
    for sid in sheet["sample_id"]:
        obs = res.kept_events(sid).obs
        assert obs["CD56dim"].isna().all() and obs["CD56bright"].isna().all(), sid
        assert obs["NK"].dtype == bool and obs["NK"].all()
    joined = res.to_anndata().obs  # every tube's kept NK events
    assert joined["CD56dim"].isna().all() and joined["NK"].dtype == bool
    with pytest.raises(ChannelNotFoundError, match=r"no population set in any sample 'CD56dim'"):
        res.export_fcs(tmp_path / "fcs", population="CD56dim")  # no events to export


def _count_row(sample_id: str, population: str, n: float, areg: float) -> dict:
    zero = dict.fromkeys(("n_nkg2d", "n_cd107a", "n_ifng_only", "n_areg_ifng", "n_trnk"), 0)
    return {"sample_id": sample_id, "population": population, "tissue": "blood", "batch": "B1",
            "n_events": n, "n_areg": areg, "n_ifng": areg, "n_areg_only": areg, **zero,
            "threshold_areg": 1.0, "areg_rule": "fmo",
            "areg_control_file": "fmo_AREG.fcs"}  # fmt: skip


def test_a_population_not_set_in_the_stimulated_tube_is_not_scored_as_zero_events():
    """Before, the message read "events 0/800": a gate not set read as an empty one; then
    "events NA/800 < 100", comparing a count not set with the minimum."""
    from nkflow.tl.score import score

    na = pd.NA
    counts = pd.DataFrame([
        _count_row("s", "NK", 1000, 50), _count_row("u", "NK", 1000, 10),
        _count_row("s", "CD56dim", na, na), _count_row("u", "CD56dim", 800, 6),
    ])  # fmt: skip
    for col in ("n_events", "n_areg", "n_ifng", "n_areg_only"):
        counts[col] = counts[col].astype("Int64")
    meta = pd.DataFrame([
        {"sample_id": s, "donor": "d1", "tissue": "blood", "timepoint": "pre", "stimulation": st,
         "role": "sample", "batch": "B1", "species": "human", "file": "x.fcs"}
        for s, st in (("s", "stim"), ("u", "unstim"))
    ])  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = score(counts, meta)
    dim = res.scores.set_index("population").loc["CD56dim"]
    assert np.isnan(dim["areg_net"]) and not dim["areg_responsive"]
    message = res.flags.set_index("population").loc["CD56dim", "message"]
    assert "0/800" not in message and "NA" not in message  # not "events NA/800 < 100"
    assert "EVENTS_BELOW_MIN: events not set/800, 100 needed in each;" in message
    assert "AREG_EVENTS_BELOW_MIN: AREG+ events not set, 10 needed;" in message
    assert "AREG+ events not set, not set/800 events stim/unstim]" in message
