"""Stimulation conditions, sample context, mouse = exploratory, the CD56bright/dim read-out.

Tiny hand-made count tables (numbers checkable by hand) and sheets written to tmp_path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import nkflow.io as nio
from nkflow.exceptions import ConfigError, MetadataError
from nkflow.io.fcs_write import write_fcs
from nkflow.stats import newcombe_interval
from nkflow.tl._score_config import ScoringConfig, load_scoring_config
from nkflow.tl._score_context import PRO_TUMOUR_TEXT, bright_dim, infer_tissue_kind
from nkflow.tl.compare import compare_groups, compare_paired
from nkflow.tl.score import NOTES, RULES, score

COUNT_KEYS = ("n_events", "n_areg", "n_ifng", "n_nkg2d", "n_cd107a", "n_areg_only",
              "n_ifng_only", "n_areg_ifng", "n_trnk")  # fmt: skip


def crow(sample_id, population, n, areg, ifng=0):
    """Counts of one population: ``areg`` AREG+IFN-g-, ``ifng`` AREG-IFN-g+."""
    row = dict(zip(COUNT_KEYS, (n, areg, ifng, 0, 0, areg, ifng, 0, 0), strict=True))
    row.update(sample_id=sample_id, population=population, threshold_areg=1.0,
               areg_rule="fmo_percentile:99.5", areg_control_file="fmo.fcs")  # fmt: skip
    return row


def mrow(sample_id, donor, stimulation, role, *, tissue="blood", timepoint="pre", **extra):
    row = dict(sample_id=sample_id, donor=donor, tissue=tissue, timepoint=timepoint,
               stimulation=stimulation, role=role, batch="b1", species="human")  # fmt: skip
    row.update(extra)
    return row


def tube(sid, *, nk, bright, dim, ilc=(200, 40)):
    """One tube: NK, CD56bright, CD56dim (events, AREG+) and the ILC control gate."""
    return [
        crow(sid, "NK", *nk),
        crow(sid, "CD56bright", *bright),
        crow(sid, "CD56dim", *dim),
        crow(sid, "ILC", *ilc),
    ]


def three_conditions(**context):
    """One donor, one unstim tube, three conditions: IL-15 (responds, bright > dim),
    PMA/iono (responds, bright < dim), dexamethasone (responds)."""
    counts = [
        *tube("u", nk=(1000, 5), bright=(200, 1), dim=(800, 4), ilc=(200, 2)),
        *tube("il15", nk=(1000, 45), bright=(200, 25), dim=(800, 20)),
        *tube("pma", nk=(1000, 40), bright=(200, 1), dim=(800, 40)),
        *tube("dex", nk=(1000, 35), bright=(200, 15), dim=(800, 20)),
    ]
    meta = [
        mrow("u", "d1", "unstim", "unstim", **context),
        mrow("il15", "d1", "IL-15", "stim", **context),
        mrow("pma", "d1", "PMA/iono", "stim", **context),
        mrow("dex", "d1", "dexamethasone", "stim", **context),
    ]
    return pd.DataFrame(counts), pd.DataFrame(meta)


def test_each_condition_is_scored_against_the_same_unstim_partner():
    counts, meta = three_conditions()
    res = score(counts, meta)
    nk = res.scores[res.scores["population"] == "NK"].set_index("condition")
    assert set(nk.index) == {"IL-15", "PMA/iono", "dexamethasone"}
    assert (nk["unstim_sample_id"] == "u").all()
    for cond, k in (("IL-15", 45), ("PMA/iono", 40), ("dexamethasone", 35)):
        d, lo, _ = newcombe_interval(k, 1000, 5, 1000)
        assert nk.loc[cond, "areg_net"] == pytest.approx(100 * d)
        assert nk.loc[cond, "areg_net_ci_low"] == pytest.approx(100 * lo)
    assert nk["areg_responsive"].all()
    # ranks are within batch and condition: one flaggable NK-subset set per condition
    ranks = res.scores.dropna(subset=["order_rank"]).groupby("condition")["order_rank"]
    assert (ranks.min() == 1).all()
    assert "condition" in res.flags.columns and "condition" in res.controls.columns


def test_conditions_config_key_decides_which_conditions_may_flag(tmp_path: Path):
    counts, meta = three_conditions()
    source = load_scoring_config("human").source  # the shipped file: copy and restrict it
    toml = (Path(__file__).parents[1] / source).read_text(encoding="utf-8")
    assert 'conditions = ["*"]' in toml
    path = tmp_path / "natural.toml"
    path.write_text(toml.replace('conditions = ["*"]', 'conditions = ["il15", "IL-2"]'))
    res = score(counts, meta, config=str(path))
    nk = res.flags[res.flags["population"] == "NK"].set_index("condition")
    assert nk.loc["IL-15", "areg_responsive"]  # spelling-tolerant match il15 = IL-15
    for cond in ("PMA/iono", "dexamethasone"):
        assert not nk.loc[cond, "areg_responsive"]
        assert nk.loc[cond, "failed_rules"] == "CONDITION_NOT_FLAGGABLE"
        assert f"condition {cond!r} not in [flag] conditions" in nk.loc[cond, "message"]
    assert "CONDITION_NOT_FLAGGABLE" in RULES
    with pytest.raises(ConfigError, match="conditions is empty"):
        ScoringConfig(conditions=())
    with pytest.raises(ConfigError, match="a list of strings"):
        ScoringConfig(conditions="IL-15")


@pytest.mark.parametrize("name", ["dexamethasone", "IL-15 + dex", "Dex 100nM", "IL-15/DEX"])
def test_a_condition_that_combines_a_glucocorticoid_carries_its_context(name: str):
    counts, meta = three_conditions()
    meta.loc[meta["stimulation"] == "dexamethasone", "stimulation"] = name
    res = score(counts, meta)
    rows = res.scores[res.scores["condition"] == name]
    assert len(rows) and (rows["context"] == "glucocorticoid condition").all()
    others = res.scores[res.scores["condition"].isin(["IL-15", "PMA/iono"])]
    assert (others["context"] == "").all()


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ({"tissue_kind": "tumour"}, {"tumour"}),
        ({"tissue_kind": "peri-tumour"}, {"peri-tumour"}),
        ({"tissue_kind": "normal tissue", "glucocorticoid": "yes"}, {"glucocorticoid"}),
        ({"tissue_kind": "blood", "glucocorticoid": "no"}, set()),
        ({}, set()),
    ],
)
def test_context_interpretation_beside_every_flag(context, expected):
    counts, meta = three_conditions(**context)
    res = score(counts, meta)
    for table in (res.scores, res.flags):
        for _, row in table[table["population"] == "NK"].iterrows():
            codes = set(filter(None, row["context"].split(";")))
            # a glucocorticoid stimulation condition is a context of its own
            want = expected | ({"glucocorticoid condition"} if row["condition"] == "dexamethasone"
                               else set())  # fmt: skip
            assert codes == want
            assert (PRO_TUMOUR_TEXT in row["interpretation"]) == bool(want)
    flagged = res.flags[res.flags["areg_responsive"]]
    assert len(flagged) >= 3
    for _, row in flagged.iterrows():
        assert (PRO_TUMOUR_TEXT in row["message"]) == bool(row["context"])
    # the context columns travel with the rows
    for col in ("tissue_kind", "glucocorticoid", "treatment"):
        assert col in res.scores.columns and col in res.flags.columns


@pytest.mark.parametrize(
    ("tissue", "kind"),
    [
        ("Tumour", "tumour"),
        ("peri-tumor skin", "peri-tumour"),
        ("TILs", "tumour"),  # the names labs give tumour samples carry the caveat too
        ("Melanoma metastasis", "tumour"),
        ("liver met", "tumour"),
        ("Lung carcinoma", "tumour"),
        ("NAT", "peri-tumour"),  # normal adjacent tissue
        ("PBMC", "blood"),
        ("Whole blood", "blood"),
        ("PBMCs", "blood"),
        ("liver", ""),
        ("lymph node", ""),
    ],
)
def test_tissue_kind_inferred_from_the_tissue_name(tissue: str, kind: str):
    assert infer_tissue_kind(tissue) == kind


def test_tissue_kind_inferred_when_the_sheet_has_none():
    counts, meta = three_conditions()
    meta["tissue"] = "skin tumour"
    res = score(counts, meta)
    assert (res.scores["tissue_kind"] == "tumour").all()
    assert res.flags.loc[res.flags["areg_responsive"], "interpretation"].str.len().gt(0).all()


def test_mouse_scores_are_exploratory_never_established():
    counts, meta = three_conditions()
    meta["species"] = "mouse"
    res = score(counts, meta)
    assert res.config.species == "mouse"
    assert res.scores["exploratory"].all() and res.flags["exploratory"].all()
    assert res.flags["evidence"].str.startswith("exploratory").all()
    flagged = res.flags[res.flags["areg_responsive"]]
    assert len(flagged)  # flags can be raised, but never presented as established
    assert flagged["message"].str.startswith("EXPLORATORY (mouse").all()
    human = score(*three_conditions())
    assert not human.flags["exploratory"].any()
    nk = human.flags["population"] != "ILC"  # the ILC control row is no NK population
    assert human.flags.loc[nk, "evidence"].str.startswith("reported in human NK").all()
    assert not human.flags.loc[~nk, "evidence"].str.contains("reported in human NK").any()


def test_bright_dim_read_out_notes_bright_below_dim_beyond_the_intervals():
    counts, meta = three_conditions()
    res = score(counts, meta)
    bd = res.bright_dim.set_index("condition")
    assert set(bd.index) == {"IL-15", "PMA/iono", "dexamethasone"}
    d, _lo, hi = newcombe_interval(1, 200, 1, 200)  # PMA/iono bright: no response
    assert bd.loc["PMA/iono", "bright_net"] == pytest.approx(100 * d)
    assert bd.loc["PMA/iono", "bright_ci_high"] == pytest.approx(100 * hi)
    assert bool(bd.loc["PMA/iono", "bright_below_dim"])
    assert not bd.loc["IL-15", "bright_below_dim"]
    assert "expected" in bd.loc["PMA/iono", "note"] and bd.loc["IL-15", "note"] == ""
    # a note on the rows, never a rule: the dim flag stands
    flags = res.flags.set_index(["condition", "population"])
    assert "BRIGHT_BELOW_DIM" in flags.loc[("PMA/iono", "CD56dim"), "notes"]
    assert flags.loc[("PMA/iono", "CD56dim"), "areg_responsive"]
    assert "BRIGHT_BELOW_DIM" in NOTES and "BRIGHT_BELOW_DIM" not in RULES
    assert "BRIGHT_BELOW_DIM" not in flags.loc[("IL-15", "CD56dim"), "notes"]


def test_bright_dim_empty_without_the_subsets():
    empty = bright_dim(pd.DataFrame(columns=["population", "sample_id"]), "CD56bright", "CD56dim")
    assert empty.empty and "bright_below_dim" in empty.columns


def _two_donor_scores():
    counts, meta = [], []
    for donor, base in (("d1", 0), ("d2", 2), ("d3", 4), ("d4", 1), ("d5", 3), ("d6", 5)):
        for tp, extra in (("pre", 0), ("post", 30)):
            u, s1, s2 = f"{donor}{tp}u", f"{donor}{tp}il15", f"{donor}{tp}pma"
            kind = "tumour" if donor in ("d1", "d2", "d3") else "normal tissue"
            counts += tube(u, nk=(1000, 5), bright=(200, 1), dim=(800, 4))
            counts += tube(s1, nk=(1000, 20 + base + extra), bright=(200, 9), dim=(800, 9))
            counts += tube(s2, nk=(1000, 20 + base), bright=(200, 9), dim=(800, 9))
            ctx = dict(timepoint=tp, tissue_kind=kind)
            meta += [mrow(u, donor, "unstim", "unstim", **ctx),
                     mrow(s1, donor, "IL-15", "stim", **ctx),
                     mrow(s2, donor, "PMA/iono", "stim", **ctx)]  # fmt: skip
    return score(pd.DataFrame(counts), pd.DataFrame(meta)).scores


def test_comparisons_per_condition_and_stratified_by_context():
    scores = _two_donor_scores()
    paired = compare_paired(scores, before="pre", after="post")
    nk = paired[paired["population"] == "NK"].set_index("condition")
    assert set(nk.index) == {"IL-15", "PMA/iono"}  # never pooled across conditions
    assert nk.loc["IL-15", "mean_difference"] == pytest.approx(3.0)
    assert nk.loc["PMA/iono", "mean_difference"] == pytest.approx(0.0)
    strat = compare_paired(scores, before="pre", after="post",
                           by=("condition", "tissue_kind", "population"))  # fmt: skip
    rows = strat[(strat["population"] == "NK") & (strat["condition"] == "IL-15")]
    assert set(rows["tissue_kind"]) == {"tumour", "normal tissue"}
    assert (rows["n_pairs"] == 3).all()
    groups = compare_groups(scores[scores["timepoint"] == "pre"], "tissue_kind")
    g = groups[groups["population"] == "NK"].set_index("condition")
    assert g.loc["IL-15", "mean_difference"] == pytest.approx(0.1, abs=1e-9)  # normal - tumour


# ------------------------------------------------------------------ sheet validation
def _sheet(tmp_path: Path, header: str, rows: list[str]) -> Path:
    data = np.zeros((10, 3), dtype=np.float32)
    for row in rows:
        name = row.split(",")[0]
        if not (tmp_path / name).exists():
            write_fcs(tmp_path / name, data, ["FSC-A", "SSC-A", "Time"])
    path = tmp_path / "sheet.csv"
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


HEADER = (
    "file,sample_id,donor,tissue,timepoint,stimulation,role,tissue_kind,glucocorticoid,treatment"
)


def test_sheet_accepts_conditions_and_normalises_context(tmp_path: Path):
    sheet = _sheet(tmp_path, HEADER, [
        "a.fcs,a,D1,skin,pre,unstim,unstim,Tumor,YES,dexamethasone 8 mg",
        "b.fcs,b,D1,skin,pre,IL-12/IL-15/IL-18,stim,tumour,yes,dexamethasone 8 mg",
        "c.fcs,c,D1,skin,pre,PMA/iono,stim,peri-tumor,unknown,",
        "d.fcs,d,D1,blood,pre,IL-15,,PBMC,no,",
        "e.fcs,e,D1,skin,pre,Stim,stim,,,",
    ])  # fmt: skip
    table = nio.read_metadata(sheet)
    assert list(table["stimulation"]) == ["unstim", "IL-12/IL-15/IL-18", "PMA/iono", "IL-15",
                                          "stim"]  # fmt: skip
    assert list(table["tissue_kind"]) == ["tumour", "tumour", "peri-tumour", "blood", ""]
    assert list(table["glucocorticoid"]) == ["yes", "yes", "unknown", "no", ""]
    assert table.loc[0, "treatment"] == "dexamethasone 8 mg"


def test_sheet_without_context_columns_gains_none(tmp_path: Path):
    sheet = _sheet(tmp_path, "file,sample_id,stimulation", ["a.fcs,a,IL-2"])
    table = nio.read_metadata(sheet)
    assert not {"tissue_kind", "glucocorticoid", "treatment"} & set(table.columns)
    assert table.loc[0, "stimulation"] == "IL-2"


def test_sheet_refuses_bad_context_and_contradictions(tmp_path: Path):
    sheet = _sheet(tmp_path, HEADER, [
        "a.fcs,a,D1,skin,pre,unstim,unstim,tumourish,maybe,",
        "b.fcs,b,D1,skin,pre,IL-15,unstim,,,",
        "c.fcs,c,D1,skin,pre,unstim,stim,,,",
        "d.fcs,d,D1,skin,pre,stimmed,stim,,,",  # "stimulated" reads as stim
    ])  # fmt: skip
    with pytest.raises(MetadataError) as info:
        nio.read_metadata(sheet)
    text = str(info.value)
    for needle in (
        "tissue_kind 'tumourish' invalid",
        "glucocorticoid 'maybe' invalid",
        "role 'unstim' with stimulation 'IL-15'",
        "role 'stim' with stimulation 'unstim'",
        "stimulation 'stimmed' invalid",
    ):
        assert needle in text, needle
    assert len(info.value.problems) == 5
