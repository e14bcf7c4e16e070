"""End to end on the committed simulated batches: read -> QC -> compensate -> transform ->
gate (FMO thresholds per tissue and batch) -> count_positive -> score, checked against the
planted AREG truth (sample_data/<batch>/truth/planted.csv)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nkflow import pp
from nkflow.gating.apply import gate_batch
from nkflow.io import read_fcs
from nkflow.io.records import nkflow_record
from nkflow.tl.counts import count_positive
from nkflow.tl.score import score

TEMPLATES = {
    "human": {"blood": "human_blood", "liver": "human_tissue"},
    "mouse": {"liver": "mouse", "spleen": "mouse"},
}


def _score_batch(root):
    meta = pd.read_csv(root / "metadata.csv", dtype=str, keep_default_na=False)
    rows = meta.set_index("sample_id")

    def reader(sid):
        row = rows.loc[sid]
        adata = read_fcs(root / row["file"], sample_id=sid, metadata=dict(row, sample_id=sid))
        pp.qc(adata, remove=True)
        pp.compensate(adata)
        pp.transform(adata, method="logicle")
        return adata

    frames, cuts = [], []

    def on_sample(sid, adata, pops):
        frames.append(count_positive(adata))
        # the AREG cut-off as applied to this tube: its interval and the shares it moves
        cuts.extend(
            dict(r, sample_id=sid)
            for r in nkflow_record(adata, "thresholds")
            if r["marker"] == "AREG"
        )

    species = meta["species"].iloc[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fallback-threshold and low-event warnings
        for tissue, template in TEMPLATES[species].items():
            gate_batch(
                meta[meta["tissue"] == tissue],
                reader,
                template,
                n_boot=20,  # > 0: the FMO cut-offs carry their exact interval
                on_sample=on_sample,
            )
    counts = pd.concat(frames, ignore_index=True)
    return meta, counts, score(counts, meta), pd.DataFrame(cuts)


def _planted_net(root, meta):
    planted = pd.read_csv(root / "truth" / "planted.csv")
    planted = planted[planted["marker"] == "AREG"].merge(meta, on="sample_id")
    key = ["donor", "tissue", "timepoint", "batch", "population"]
    # every stimulated tube (any condition: stim, IL-15) against its unstimulated partner
    stim = planted[planted["role"] == "stim"]
    unstim = planted[planted["role"] == "unstim"].set_index(key)["planted_percent"]
    stim = stim.join(unstim.rename("unstim_percent"), on=key)
    stim["planted_net"] = stim["planted_percent"] - stim["unstim_percent"]
    return stim[["sample_id", "population", "planted_net"]]


_SCORED: dict[Path, tuple] = {}  # each species' batch scored once for the module's tests


def _scored(sample_data: Path, species: str) -> tuple:
    root = sample_data / species
    if not (root / "metadata.csv").is_file():
        pytest.skip(f"no committed sample batch at {root}")
    if root not in _SCORED:
        meta, counts, result, cuts = _score_batch(root)
        scores = result.scores.merge(
            _planted_net(root, meta), on=["sample_id", "population"], how="left"
        )
        _SCORED[root] = (species, counts, result, scores, cuts)
    return _SCORED[root]


@pytest.fixture(scope="module", params=["human", "mouse"])
def batch(request, sample_data):
    return _scored(sample_data, request.param)


@pytest.fixture(scope="module")
def human_batch(sample_data):
    return _scored(sample_data, "human")


def test_counts_cover_every_analysed_tube(batch):
    _, counts, _, _, _ = batch
    assert {"NK", "ILC"} <= set(counts["population"])
    nk = counts[counts["population"] == "NK"]
    assert (nk["n_events"] >= 100).all()
    assert nk["n_areg"].notna().all()  # the AREG FMO of every tissue reached the counts
    assert (counts["areg_rule"].str.startswith("fmo")).all()


def test_positive_control_responds(batch):
    _, _, result, _, _ = batch
    ctl = result.controls
    assert (ctl["control_source"] == "positive_control tube").all()
    assert ctl["passed"].all() and (ctl["net"] > 15).all()


def test_no_false_flags_against_planted_truth(batch):
    _, _, result, scores, _ = batch
    flagged = scores[scores["areg_responsive"]]
    assert len(flagged) >= 2
    assert (flagged["planted_net"] > 0).all(), flagged[["sample_id", "population"]]
    assert (result.flags["caveat"].str.contains("hypothesis")).all()
    nk = scores[scores["population"] == "NK"]
    assert nk["planted_net"].notna().all()  # every scored tube has its planted truth


def test_conditions_context_and_species_labels(batch):
    species, _, result, scores, _ = batch
    flags = result.flags
    if species == "mouse":
        assert flags["exploratory"].all()
        assert flags.loc[flags["areg_responsive"], "message"].str.startswith("EXPLORATORY").all()
        return
    assert not flags["exploratory"].any()
    assert set(scores["condition"]) == {"stim", "IL-15"}
    il15 = scores[scores["condition"] == "IL-15"].set_index(["donor", "population"])
    # IL-15 pairs with the same unstimulated tube as the generic stimulation
    assert il15.loc[("D1", "NK"), "unstim_sample_id"] == "D1_blood_pre_unstim"
    # CD56bright-enriched AREG: flagged in both donors' IL-15 tubes
    assert il15.loc[("D1", "CD56bright"), "areg_responsive"]
    assert il15.loc[("D2", "CD56bright"), "areg_responsive"]
    # donor D2 after treatment had dexamethasone: every flag there says what it may mean
    d2_post = flags[(flags["donor"] == "D2") & (flags["timepoint"] == "post")]
    assert d2_post["areg_responsive"].any()
    assert (d2_post["context"] == "glucocorticoid").all()
    assert d2_post.loc[d2_post["areg_responsive"], "message"].str.contains("pro-tumour").all()
    others = flags[~flags.index.isin(d2_post.index)]
    assert (others["interpretation"] == "").all()
    bd = result.bright_dim
    assert len(bd) == len(scores["sample_id"].unique())


def test_strong_planted_responses_flagged(batch):
    _, _, _, scores, _ = batch
    strong = scores[
        scores["flaggable"]
        & (scores["planted_net"] >= 3.0)
        & (scores["n_events_stim"] >= 400)
        & (scores["n_events_unstim"] >= 400)
    ]
    assert len(strong) >= 2
    assert strong["areg_responsive"].all(), strong[["sample_id", "population", "areg_net"]]
    # and their intervals contain the planted net
    assert (
        (strong["areg_net_ci_low"] <= strong["planted_net"])
        & (strong["planted_net"] <= strong["areg_net_ci_high"])
    ).all()


def test_counts_at_the_areg_cut_off_ends_match_the_shares_gating_measured(batch):
    """Golden: AREG+ events at ci_low / ci_high are the shares the gating engine recorded."""
    _, counts, _, _, cuts = batch
    nk = counts[counts["population"] == "NK"].set_index("sample_id")
    applied = cuts[cuts["gate"] == "NK"].drop_duplicates("sample_id").set_index("sample_id")
    applied = applied.loc[nk.index]
    assert (nk["threshold_areg_ci_low"] == applied["ci_low"]).all()
    for end in ("ci_low", "ci_high"):
        share = 100.0 * nk[f"n_areg_at_{end}"].astype(float) / nk["n_events"].astype(float)
        closed = np.isfinite(applied[end].astype(float).to_numpy())
        assert share.to_numpy()[closed] == pytest.approx(
            applied[f"percent_above_at_{end}"].to_numpy()[closed]
        )
        assert share[~closed].isna().all()  # an open bound (mouse spleen FMO): not counted


def test_a_flag_is_labelled_fragile_exactly_when_it_fails_at_an_end(batch):
    """Every flagged row: 'fragile' in its message and CUTOFF_FRAGILE in its notes if and
    only if its rules fail at one end of the AREG cut-off's interval; unflagged rows and
    rows without an interval carry neither."""
    _, _, result, _, _ = batch
    flags = result.flags
    holds = flags["holds_across_cutoff_interval"].astype("boolean")
    fragile = (holds == False).fillna(False).to_numpy(dtype=bool)  # noqa: E712
    labelled = flags["message"].fillna("").str.contains("fragile: the flag rests").to_numpy()
    assert (labelled == fragile).all()
    assert (flags["notes"].fillna("").str.contains("CUTOFF_FRAGILE").to_numpy() == fragile).all()
    flagged = flags["areg_responsive"].astype(bool).to_numpy()
    assert not (fragile & ~flagged).any()  # judged only where the rules flagged it
    assert (holds[~flagged].isna()).all()


def test_d1_blood_post_stim_flag_rests_on_the_blood_areg_fmo_cut_off(human_batch):
    _, counts, result, _, _ = human_batch
    nk = counts[counts["population"] == "NK"].set_index("sample_id")
    pct = {
        (sid, end): 100.0 * nk.loc[sid, f"n_areg_at_{end}"] / nk.loc[sid, "n_events"]
        for sid in ("D1_blood_post_stim", "D1_blood_post_unstim")
        for end in ("ci_low", "ci_high")
    }
    # the cut-off's interval moves the unstimulated share more than the stimulated one
    assert pct[("D1_blood_post_unstim", "ci_low")] > 3 * pct[("D1_blood_post_unstim", "ci_high")]
    flag = result.flags.set_index(["sample_id", "population"]).loc[("D1_blood_post_stim", "NK")]
    min_net = result.config.min_net
    assert flag["areg_responsive"] and flag["areg_net"] >= min_net  # flagged at the cut-off
    assert flag["areg_net_at_cut_ci_low"] == pytest.approx(
        pct[("D1_blood_post_stim", "ci_low")] - pct[("D1_blood_post_unstim", "ci_low")]
    )
    assert flag["areg_net_at_cut_ci_low"] < min_net <= flag["areg_net_at_cut_ci_high"]
    assert "NET_BELOW_MIN" in flag["failed_rules_at_cut_ci_low"]
    assert not flag["holds_across_cutoff_interval"]
    assert "fragile: the flag rests on the AREG FMO cut-off's exact place" in flag["message"]
    assert "CUTOFF_FRAGILE" in flag["notes"]
    # flags whose rules pass at both ends are not labelled
    holds = result.flags["holds_across_cutoff_interval"].astype("boolean").fillna(False)
    sturdy = result.flags[holds.to_numpy(dtype=bool)]
    assert len(sturdy) and not sturdy["message"].str.contains("fragile").any()
