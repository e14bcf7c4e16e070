from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nkflow.exceptions import ConfigError, MetadataError
from nkflow.stats import newcombe_interval
from nkflow.tl._score_config import ScoringConfig, load_scoring_config
from nkflow.tl.caveats import CAVEATS, SHORT_CAVEAT, caveats_comment
from nkflow.tl.score import RULES, score


def count_row(sample_id, population, n, areg_only, ifng_only, both, *, trnk=0, nkg2d=0, cd107a=0):
    return dict(
        sample_id=sample_id,
        population=population,
        tissue="lung",
        batch="b1",
        n_events=n,
        n_areg=areg_only + both,
        n_ifng=ifng_only + both,
        n_nkg2d=nkg2d,
        n_cd107a=cd107a,
        n_areg_only=areg_only,
        n_ifng_only=ifng_only,
        n_areg_ifng=both,
        n_trnk=trnk,
        threshold_areg=1.0,
        areg_rule="fmo_percentile:99.5",
        areg_control_file="fmo_AREG.fcs",
    )


def meta_row(
    sample_id, donor, stimulation, *, role="sample", batch="b1", timepoint="pre", species="human"
):
    return dict(
        sample_id=sample_id,
        donor=donor,
        tissue="lung",
        timepoint=timepoint,
        stimulation=stimulation,
        role=role,
        batch=batch,
        species=species,
        file="x.fcs",
    )


def basic(ilc_stim=(40, 0, 10), ilc_unstim=(2, 0, 0)):
    """One donor: NK responds (net 4 pts), CD56dim does not; ILC is the positive control."""
    counts = [
        count_row("s", "NK", 1000, 40, 20, 10, trnk=100, nkg2d=600, cd107a=200),
        count_row("u", "NK", 1000, 8, 10, 2, trnk=300, nkg2d=700, cd107a=50),
        count_row("s", "CD56dim", 800, 6, 50, 2),
        count_row("u", "CD56dim", 800, 6, 10, 2),
        count_row("s", "ILC", 200, *ilc_stim),
        count_row("u", "ILC", 200, *ilc_unstim),
    ]
    meta = [meta_row("s", "d1", "stim"), meta_row("u", "d1", "unstim")]
    return pd.DataFrame(counts), pd.DataFrame(meta)


def test_profile_numbers_by_hand():
    counts, meta = basic()
    res = score(counts, meta)
    nk = res.scores.set_index("population").loc["NK"]
    assert nk["unstim_sample_id"] == "u"
    assert nk["pct_areg_stim"] == pytest.approx(5.0)
    assert nk["pct_areg_unstim"] == pytest.approx(1.0)
    d, lo, hi = newcombe_interval(50, 1000, 10, 1000)
    assert nk["areg_net"] == pytest.approx(100 * d)
    assert (nk["areg_net_ci_low"], nk["areg_net_ci_high"]) == pytest.approx((100 * lo, 100 * hi))
    # RI on nets: AREG+IFN-g- 4.0-0.8 = 3.2; AREG-IFN-g+ 2.0-1.0 = 1.0
    assert nk["ri"] == pytest.approx(3.2 / 4.2)
    assert nk["ifng_net"] == pytest.approx(3.0 - 1.2)
    assert nk["cd107a_net"] == pytest.approx(15.0)
    assert nk["pct_nkg2d_unstim"] == pytest.approx(70.0)
    assert nk["residency_fraction"] == pytest.approx(0.3)  # from the unstimulated tube
    assert nk["areg_responsive"] and nk["repair_biased"]
    flag = res.flags.set_index("population").loc["NK"]
    assert flag["rule"] == "REPAIR_BIASED" and flag["failed_rules"] == ""
    assert (
        "AREG-responsive" in flag["message"]
        and "this stimulated tube's own ILC gate" in flag["message"]
    )


def test_non_responder_says_which_rules_failed():
    counts, meta = basic()
    flags = score(counts, meta).flags.set_index("population")
    assert flags.loc["CD56dim", "failed_rules"] == (
        "AREG_EVENTS_BELOW_MIN;CI_LOWER_NOT_ABOVE_ZERO;NET_BELOW_MIN"
    )
    assert "CI lower bound" in flags.loc["CD56dim", "message"]
    assert flags.loc["ILC", "failed_rules"] == "NOT_FLAGGABLE"  # the control is not NK
    assert set(flags["failed_rules"].str.split(";").explode()) - {""} <= set(RULES)


@pytest.mark.parametrize(
    ("stim_nk", "rule"),
    [
        ((90, 8, 2, 2), "EVENTS_BELOW_MIN"),
        ((150, 5, 2, 4), "AREG_EVENTS_BELOW_MIN"),
    ],
)
def test_minima_rules(stim_nk, rule):
    counts, meta = basic()
    keep = ~((counts.sample_id == "s") & (counts.population == "NK"))
    counts = pd.concat([counts[keep], pd.DataFrame([count_row("s", "NK", *stim_nk)])])
    flags = score(counts, meta).flags.set_index("population")
    assert not flags.loc["NK", "areg_responsive"]
    assert flags.loc["NK", "failed_rules"] == rule


def test_min_net_rule_from_lab_config(tmp_path):
    lab = tmp_path / "lab.toml"
    lab.write_text("[flag]\nmin_net = 5.0\nri_cut = 0.9\n")
    counts, meta = basic()
    res = score(counts, meta, config=lab)
    assert res.config.min_net == 5.0 and res.config.source == str(lab)
    flags = res.flags.set_index("population")
    assert flags.loc["NK", "failed_rules"] == "NET_BELOW_MIN"


def test_failed_positive_control_blocks_flags():
    counts, meta = basic(ilc_stim=(2, 0, 0))
    flags = score(counts, meta).flags.set_index("population")
    assert flags.loc["NK", "failed_rules"] == "POSITIVE_CONTROL_FAILED"
    assert "did not respond" in flags.loc["NK", "message"]


def test_missing_positive_control_and_user_verdict():
    counts, meta = basic()
    counts = counts[counts.population != "ILC"]
    res = score(counts, meta)
    assert res.flags.set_index("population").loc["NK", "failed_rules"] == (
        "POSITIVE_CONTROL_MISSING"
    )
    res = score(counts, meta, positive_control={"b1": True})
    nk = res.flags.set_index("population").loc["NK"]
    assert nk["areg_responsive"] and nk["control_source"] == "user verdict"
    no_ctl = ScoringConfig(require_positive_control=False, populations=("NK",))
    assert (
        score(counts, meta, config=no_ctl)
        .flags.set_index("population")
        .loc["NK", "areg_responsive"]
    )


def test_positive_control_tube_used_for_the_batch():
    counts, meta = basic(ilc_stim=(2, 0, 0))  # the stim tube's own ILC did not respond
    counts = pd.concat([counts, pd.DataFrame([count_row("pc", "ILC", 500, 60, 0, 10)])])
    meta = pd.concat([meta, pd.DataFrame([meta_row("pc", "ctl", "stim", role="positive_control")])])
    res = score(counts, meta)
    ctl = res.controls.set_index("control_sample_id").loc["pc"]
    # no unstim tube for donor "ctl": the batch's unstimulated ILC is the baseline
    assert ctl["baseline_sample_id"] == "u" and bool(ctl["passed"])
    nk = res.flags.set_index("population").loc["NK"]
    assert nk["areg_responsive"] and nk["control_source"] == "positive_control tube"
    assert "pc" not in set(res.scores["sample_id"])  # a control tube is not scored


def test_missing_unstim_and_missing_areg_threshold():
    counts, meta = basic()
    only_stim = score(counts[counts.sample_id == "s"], meta[meta.sample_id == "s"])
    nk = only_stim.flags.set_index("population").loc["NK"]
    assert nk["failed_rules"] == "NO_UNSTIM;POSITIVE_CONTROL_MISSING"
    counts2 = counts.copy()
    counts2["n_areg"] = pd.array([pd.NA] * len(counts2), dtype="Int64")
    nk = score(counts2, meta).flags.set_index("population").loc["NK"]
    assert "NO_AREG_THRESHOLD" in nk["failed_rules"].split(";")


@pytest.mark.parametrize(
    ("areg_channel", "code"),
    [("", "AREG_NOT_IN_PANEL"), ("PE-A", "NO_AREG_THRESHOLD")],
    ids=["panel without AREG", "AREG without a cut-off"],
)
def test_missing_areg_counts_say_whether_the_panel_has_areg(areg_channel: str, code: str):
    """A panel without AREG read "no AREG cut-off (AREG FMO missing ...)", which sent the
    analyst looking for an FMO file; the counts table's ``areg_channel`` tells the two
    apart."""
    counts, meta = basic()
    counts = counts.assign(n_areg=pd.array([pd.NA] * len(counts), dtype="Int64"),
                           areg_channel=areg_channel)  # fmt: skip
    nk = score(counts, meta).flags.set_index("population").loc["NK"]
    failed = nk["failed_rules"].split(";")
    (other,) = {"AREG_NOT_IN_PANEL", "NO_AREG_THRESHOLD"} - {code}
    assert code in failed and other not in failed
    assert RULES[code] in nk["message"]


def test_replicate_unstim_tubes_are_pooled():
    counts, meta = basic()
    extra = counts[counts.sample_id == "u"].assign(sample_id="u2")
    counts = pd.concat([counts, extra], ignore_index=True)
    meta = pd.concat([meta, pd.DataFrame([meta_row("u2", "d1", "unstim")])], ignore_index=True)
    nk = score(counts, meta).scores.set_index("population").loc["NK"]
    assert nk["unstim_sample_id"] == "u;u2"
    assert nk["n_events_unstim"] == 2000 and nk["n_areg_unstim"] == 20


@pytest.mark.parametrize("donor", ["", "d1"])
def test_several_unstim_tubes_without_a_donor_are_no_baseline(donor):
    counts, meta = basic()
    extra = counts[counts.sample_id == "u"].assign(sample_id="u2")
    counts = pd.concat([counts, extra], ignore_index=True)
    meta = pd.concat([meta, pd.DataFrame([meta_row("u2", "d1", "unstim")])], ignore_index=True)
    meta["donor"] = donor  # "": a folder without a sheet; u and u2 may be two donors
    nk = score(counts, meta).flags.set_index("population").loc["NK"]
    if donor:  # replicates of one donor: pooled, and the tube is judged
        assert nk["unstim_sample_id"] == "u;u2" and nk["areg_responsive"]
    else:
        assert nk["failed_rules"].split(";")[0] == "UNSTIM_AMBIGUOUS"
        assert not nk["areg_responsive"] and nk["unstim_sample_id"] == ""
        assert np.isnan(nk["areg_net"])  # no net against another donor's tube
        assert RULES["UNSTIM_AMBIGUOUS"] in nk["message"]
    # one unstimulated tube without a donor is still the partner (a one-donor experiment)
    single = score(counts[counts.sample_id != "u2"], meta[meta.sample_id != "u2"])
    assert single.flags.set_index("population").loc["NK", "areg_responsive"]


def test_counts_joined_from_records_of_several_panels_score_alike():
    """A run joins each tube's counts from JSON records: a tube whose panel lacks the
    read-outs has None there, and the cluster counts bring pd.NA, so the columns are of
    object dtype. Scoring stopped with "float() argument must be ... not 'NAType'"."""
    counts, meta = basic()
    mixed = counts.astype({c: object for c in counts.columns if c.startswith("n_")})
    mixed.loc[mixed["population"] == "CD56dim", "n_cd107a"] = None
    mixed.loc[mixed["population"] == "ILC", "n_nkg2d"] = pd.NA
    plain = counts.astype({"n_cd107a": "Float64", "n_nkg2d": "Float64"})
    plain.loc[plain["population"] == "CD56dim", "n_cd107a"] = pd.NA
    plain.loc[plain["population"] == "ILC", "n_nkg2d"] = pd.NA
    pd.testing.assert_frame_equal(score(mixed, meta).scores, score(plain, meta).scores)
    bad = mixed.assign(n_areg=mixed["n_areg"].astype(str).str.replace("50", "fifty"))
    with pytest.raises(ConfigError, match="'n_areg' holds a value that is no count"):
        score(bad, meta)


def test_tubes_pair_only_within_timepoint_and_batch():
    counts, meta = basic()
    meta.loc[meta.sample_id == "u", "timepoint"] = "post"
    assert (score(counts, meta).flags["failed_rules"].str.startswith("NO_UNSTIM")).all()


def test_metadata_problems_are_reported():
    counts, meta = basic()
    with pytest.raises(MetadataError, match="'s' is in the counts but not in the sheet"):
        score(counts, meta[meta.sample_id != "s"])
    with pytest.raises(MetadataError, match="appears more than once"):
        score(counts, pd.concat([meta, meta]))


def test_caveats_travel_with_every_output():
    counts, meta = basic()
    res = score(counts, meta)
    assert res.caveats.startswith("1. What is reported: human blood NK cells make AREG")
    assert len(res.caveats.splitlines()) == len(CAVEATS)
    # corrected literature: reported in human (Wang 2023), not mouse, context (Wei 2025)
    for needle in ("EMBO J 2023", "CD56bright", "IL-15", "TGF-beta1", "mouse NK cells have not",
                   "NR3C1", "10.1002/advs.202512620", "dexamethasone", "FMO",
                   "unstimulated", "positive control", "exploratory"):  # fmt: skip
        assert needle.lower() in res.caveats.lower(), needle
    assert "no published" not in res.caveats.lower()
    for table in (res.scores, res.flags, res.controls, res.bright_dim):
        assert table.attrs["caveats"] == res.caveats
    assert (res.scores["caveat"] == SHORT_CAVEAT).all()
    text = res.csv_text("flags")
    assert text.startswith(caveats_comment())
    back = pd.read_csv(io.StringIO(text), comment="#")
    assert list(back["population"]) == list(res.flags["population"])
    with pytest.raises(ValueError, match="valid: scores, flags, controls, bright_dim"):
        res.csv_text("nope")


def test_ranking_is_within_batch_and_only_for_flaggable():
    counts, meta = basic()
    s = score(counts, meta).scores.set_index("population")
    assert s.loc["NK", "order_rank"] == 1 and s.loc["CD56dim", "order_rank"] == 2
    assert pd.isna(s.loc["ILC", "order_rank"])


def test_gated_populations_are_ranked_apart_from_the_metaclusters():
    """A gated row's order_score moved with --random-state and the sheet's order: it was
    z-scored together with the metaclusters of a random clustering fit."""
    counts, meta = basic()
    alone = score(counts, meta).scores.set_index("population")
    clusters = pd.DataFrame([count_row("s", "metacluster:1", 500, 60, 5, 5),
                             count_row("u", "metacluster:1", 500, 5, 5, 5),
                             count_row("s", "metacluster:2", 300, 3, 30, 5),
                             count_row("u", "metacluster:2", 300, 3, 3, 5)])  # fmt: skip
    both = score(pd.concat([counts, clusters], ignore_index=True), meta).scores
    both = both.set_index("population")
    assert both.loc["metacluster:1", "flaggable"]  # ranked, in a family of its own
    for column in ("order_score", "order_rank"):
        pd.testing.assert_series_equal(alone.loc[["NK", "CD56dim"], column],
                                       both.loc[["NK", "CD56dim"], column])  # fmt: skip
    assert both.loc["metacluster:1", "order_rank"] == 1


def test_mouse_defaults_chosen_from_sheet():
    counts, meta = basic()
    meta["species"] = "mouse"
    res = score(counts, meta)
    assert res.config.species == "mouse" and "cNK" in res.config.populations
    assert not res.scores.set_index("population").loc["CD56dim", "flaggable"]


def test_shipped_configs_load_and_validate(tmp_path):
    human, mouse = load_scoring_config("human"), load_scoring_config("mouse")
    assert human.percentile == 99.5 and human.min_events == 100 and human.min_areg_events == 10
    assert human.min_net == 1.0 and human.ri_cut == 0.5 and human.confidence == 0.95
    assert human.control_population == mouse.control_population == "ILC"
    assert not human.residency_in_score
    assert human.is_flaggable("metacluster:12") and not human.is_flaggable("Lymphocytes")
    bad = tmp_path / "bad.toml"
    bad.write_text("[flag]\nmin_nett = 1\n")
    with pytest.raises(ConfigError, match="min_nett"):
        load_scoring_config(bad)
    bad.write_text("[thresholds]\npercentile = 100.5\n")
    with pytest.raises(ConfigError, match="percentile"):
        load_scoring_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_scoring_config(tmp_path / "missing.toml")


def test_net_intervals_are_percentage_points_and_nan_without_events():
    counts, meta = basic()
    counts.loc[
        counts.population == "CD56dim",
        ["n_events", "n_areg", "n_areg_only", "n_ifng_only", "n_areg_ifng", "n_ifng"],
    ] = 0
    s = score(counts, meta).scores.set_index("population")
    assert np.isnan(s.loc["CD56dim", "areg_net"]) and np.isnan(s.loc["CD56dim", "ri"])
    assert (
        "EVENTS_BELOW_MIN"
        in score(counts, meta).flags.set_index("population").loc["CD56dim", "failed_rules"]
    )


def test_notes_flag_unlike_thresholds_and_unstim_above_stim():
    counts, meta = basic()
    counts["threshold_cd107a"] = np.where(counts["sample_id"] == "s", 1.0, 0.2)
    high = (counts.sample_id == "u") & (counts.population == "CD56dim")
    counts.loc[high, ["n_areg", "n_areg_only"]] = [80, 72]
    notes = score(counts, meta).flags.set_index("population")["notes"]
    assert notes["NK"] == "THRESHOLD_MISMATCH:CD107a"
    assert notes["CD56dim"] == "UNSTIM_ABOVE_STIM;THRESHOLD_MISMATCH:CD107a"
    counts["threshold_cd107a"] = 0.5
    assert score(counts, meta).flags.set_index("population").loc["NK", "notes"] == ""


@st.composite
def tube_counts(draw):
    n = draw(st.integers(0, 3000))
    a_only = draw(st.integers(0, n))
    g_only = draw(st.integers(0, n - a_only))
    both = draw(st.integers(0, n - a_only - g_only))
    return n, a_only, g_only, both


@settings(max_examples=60, deadline=None, derandomize=True)
@given(stim=tube_counts(), unstim=tube_counts(), ctl=st.booleans())
def test_profile_invariants(stim, unstim, ctl):
    counts = pd.DataFrame([count_row("s", "NK", *stim), count_row("u", "NK", *unstim)])
    meta = pd.DataFrame([meta_row("s", "d1", "stim"), meta_row("u", "d1", "unstim")])
    res = score(counts, meta, positive_control={"b1": ctl})
    row = res.scores.iloc[0]
    flag = res.flags.iloc[0]
    if stim[0] and unstim[0]:
        assert row["areg_net_ci_low"] <= row["areg_net"] <= row["areg_net_ci_high"]
        # bounds within [-100, 100] up to rounding in nkflow.stats.newcombe_interval
        assert -100 - 1e-9 <= row["areg_net_ci_low"] and row["areg_net_ci_high"] <= 100 + 1e-9
    assert np.isnan(row["ri"]) or 0.0 <= row["ri"] <= 1.0
    responsive = (
        ctl
        and stim[0] >= 100
        and unstim[0] >= 100
        and stim[1] + stim[3] >= 10
        and row["areg_net_ci_low"] > 0
        and row["areg_net"] >= 1.0
    )
    assert bool(flag["areg_responsive"]) == responsive
    assert (flag["failed_rules"] == "") == responsive
    assert not flag["repair_biased"] or (responsive and row["ri"] > 0.5)


@pytest.mark.parametrize("rule", ["mirror (fmo fallback)", "valley", ""])
def test_areg_cut_off_must_come_from_an_fmo(rule):
    counts, meta = basic()
    counts["areg_rule"] = rule
    nk = score(counts, meta).flags.set_index("population").loc["NK"]
    assert nk["failed_rules"] == "AREG_THRESHOLD_NOT_FMO"
    assert "is not an FMO" in nk["message"]
    lax = ScoringConfig(require_fmo_threshold=False, populations=("NK",))
    assert (
        score(counts, meta, config=lax).flags.set_index("population").loc["NK", "areg_responsive"]
    )


def test_empty_or_foreign_counts():
    counts, meta = basic()
    with pytest.raises(ConfigError, match="lacks column"):
        score(pd.DataFrame(), meta)
    only_unstim = score(counts[counts.sample_id == "u"], meta)
    assert only_unstim.scores.empty and only_unstim.flags.empty


def test_user_verdict_table():
    counts, meta = basic(ilc_stim=(2, 0, 0))
    table = pd.DataFrame({"batch": ["b1"], "passed": [True]})
    nk = score(counts, meta, positive_control=table).flags.set_index("population").loc["NK"]
    assert nk["areg_responsive"] and nk["control_source"] == "user verdict"
    with pytest.raises(ConfigError, match="'batch' and 'passed'"):
        score(counts, meta, positive_control=pd.DataFrame({"batch": ["b1"]}))


def test_a_population_without_events_reads_undefined_not_nan():
    """An empty metacluster's flag read 'CI lower bound nan <= 0; AREG_net nan < 1'."""
    counts, meta = basic()
    empty = counts["population"] == "CD56dim"
    counts.loc[empty, [c for c in counts.columns if c.startswith("n_")]] = 0
    message = score(counts, meta).flags.set_index("population").loc["CD56dim", "message"]
    assert "nan" not in message
    assert "AREG_net undefined (no events to compare" in message
    assert "CI_LOWER_NOT_ABOVE_ZERO: no interval without AREG_net" in message


def test_message_words_the_control_source_and_gives_nets_in_pp():
    """'positive control positive_control tube net 25.37' repeated a raw code, and the net
    read 'pts' where the report says pp."""
    from nkflow.tl._score_messages import _control_text

    row = {"control_source": "positive_control tube", "control_sample_id": "PC_ILC_stim",
           "control_net": 25.37, "control_ci_low": 18.37}  # fmt: skip
    text = _control_text(row)
    assert text == (
        "positive control (the batch's positive-control tube PC_ILC_stim): net 25.37 pp "
        "(CI low 18.37)"
    )
    assert _control_text({"control_source": ""}) == "no positive control"
    counts, meta = basic()
    message = score(counts, meta).flags.set_index("population").loc["NK", "message"]
    assert " pp (CI " in message and "pts" not in message


def test_numeric_sample_ids_read_back_from_csv_keep_their_flags():
    """Sample ids 1, 2 read back from a counts CSV are integers: every row matched no
    metadata row, lost its AREG rule and was silently not flagged."""
    counts, meta = basic()
    ids = {"s": "1", "u": "2"}
    counts["sample_id"] = counts["sample_id"].map(ids)
    meta["sample_id"] = meta["sample_id"].map(ids)
    expected = score(counts, meta).flags
    back = pd.read_csv(io.StringIO(counts.to_csv(index=False)))
    assert back["sample_id"].dtype.kind == "i"
    flags = score(back, meta).flags
    assert flags["areg_responsive"].tolist() == expected["areg_responsive"].tolist()
    assert bool(flags.set_index("population").loc["NK", "areg_responsive"])
    assert not flags["failed_rules"].str.contains("AREG_THRESHOLD_NOT_FMO").any()


def test_categorical_metadata_is_read_as_text():
    """An ordered Categorical timepoint (the natural way to state visit order) raised
    pandas' 'Cannot setitem on a Categorical with a new category'."""
    counts, meta = basic()
    expected = score(counts, meta).flags
    meta["timepoint"] = pd.Categorical(meta["timepoint"], categories=["pre", "post"],
                                       ordered=True)  # fmt: skip
    meta["tissue"] = meta["tissue"].astype("category")
    flags = score(counts, meta).flags
    assert flags["areg_responsive"].tolist() == expected["areg_responsive"].tolist()
