"""An AREG flag checked at both ends of its FMO cut-off's own interval.

Counting (``n_areg_at_ci_low`` / ``_high``), the flag's rules at each end, the fragile label
(the flag stays), NA without an interval, and the sample batch's D1_blood_post_stim NK flag,
which rests on the blood AREG FMO cut-off's exact place.
"""

from __future__ import annotations

import io

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from test_score import basic

from nkflow.exceptions import ConfigError
from nkflow.stats import newcombe_interval
from nkflow.tl.counts import CUT_END_COLUMNS, count_positive
from nkflow.tl.score import score

AREG = np.round(np.arange(1, 21) / 20.0, 2)  # 0.05 ... 1.00, twenty events


def _tube() -> ad.AnnData:
    """Twenty NK events with known AREG values (and a second channel nobody thresholds)."""
    x = np.column_stack([AREG, np.zeros_like(AREG)]).astype(np.float64)
    var = pd.DataFrame({"marker": ["AREG", "CD56"]}, index=["FL1-A", "FL2-A"])
    obs = pd.DataFrame({"NK": np.ones(20, dtype=bool)}, index=[str(i) for i in range(20)])
    adata = ad.AnnData(X=x, obs=obs, var=var)
    adata.uns["nkflow"] = {"sample": {"sample_id": "s1", "path": "s1.fcs", "tissue": "blood"}}
    return adata


@pytest.mark.parametrize(
    ("value", "ci_low", "ci_high"),
    [(0.5, 0.33, 0.74), (0.5, 0.35, 0.75), (0.62, -np.inf, np.inf)],
)
def test_counts_at_the_interval_ends_are_events_above_each_end(value, ci_low, ci_high):
    record = dict(marker="AREG", value=value, ci_low=ci_low, ci_high=ci_high, rule="fmo p99.5")
    row = count_positive(_tube(), [record], cluster_key=None).set_index("population").loc["NK"]
    # golden: the same strict ">" as n_areg, at each end of the cut-off's interval
    assert row["n_areg"] == np.count_nonzero(AREG > value)
    for end, at in (("ci_low", ci_low), ("ci_high", ci_high)):
        if np.isfinite(at):
            assert row[f"n_areg_at_{end}"] == np.count_nonzero(AREG > at)
        else:  # an open bound puts the end nowhere: not counted, so not checked there
            assert pd.isna(row[f"n_areg_at_{end}"])
    assert (row["threshold_areg_ci_low"], row["threshold_areg_ci_high"]) == (ci_low, ci_high)


def test_counts_by_hand():
    record = dict(marker="AREG", value=0.5, ci_low=0.35, ci_high=0.75, rule="fmo p99.5")
    row = count_positive(_tube(), [record], cluster_key=None).iloc[0]
    assert (row["n_areg"], row["n_areg_at_ci_low"], row["n_areg_at_ci_high"]) == (10, 13, 5)


@pytest.mark.parametrize(
    "interval",
    [{}, {"ci_low": np.nan, "ci_high": np.nan}, {"ci_low": None, "ci_high": 0.7}],
    ids=["manual, no interval", "bootstrap 0", "one end missing"],
)
def test_a_cut_off_without_an_interval_counts_na_at_its_ends(interval):
    record = dict(marker="AREG", value=0.5, rule="manual", **interval)
    row = count_positive(_tube(), [record], cluster_key=None).iloc[0]
    assert row["n_areg"] == 10
    assert all(pd.isna(row[c]) for c in CUT_END_COLUMNS)


def _with_ends(nk_stim, nk_unstim, *, cut=(0.9, 1.2)):
    """``basic()`` (NK flagged, net 4 pp) with AREG+ counts at the cut-off's two ends."""
    counts, meta = basic()
    counts["threshold_areg_ci_low"], counts["threshold_areg_ci_high"] = cut
    for col in CUT_END_COLUMNS:  # other populations: their own count at both ends
        counts[col] = counts["n_areg"].astype(float)
    for sid, ends in (("s", nk_stim), ("u", nk_unstim)):
        hit = (counts["sample_id"] == sid) & (counts["population"] == "NK")
        counts.loc[hit, list(CUT_END_COLUMNS)] = ends
    return counts, meta


def _expected_rules(k_s, k_u, n=1000):
    """The flag's moving rules by hand, at one end (min_net 1 pp, 10 AREG+ events)."""
    d, lo, _ = newcombe_interval(k_s, n, k_u, n)
    failed = [("AREG_EVENTS_BELOW_MIN", k_s < 10), ("CI_LOWER_NOT_ABOVE_ZERO", lo <= 0)]
    failed.append(("NET_BELOW_MIN", 100 * d < 1.0))
    return 100 * d, ";".join(code for code, hit in failed if hit)


@pytest.mark.parametrize(
    ("stim", "unstim", "holds", "fails_low", "fails_high"),
    [
        ((55, 45), (14, 6), True, "", ""),
        ((60, 45), (55, 6), False, "CI_LOWER_NOT_ABOVE_ZERO;NET_BELOW_MIN", ""),
        ((55, 9), (14, 0), False, "", "AREG_EVENTS_BELOW_MIN;NET_BELOW_MIN"),
    ],
    ids=["holds at both ends", "low end: net below min", "high end: too few AREG+"],
)
def test_flag_checked_at_both_ends_of_the_cut_off_interval(
    stim, unstim, holds, fails_low, fails_high
):
    counts, meta = _with_ends(stim, unstim)
    flags = score(counts, meta).flags.set_index("population")
    nk = flags.loc["NK"]
    assert nk["areg_responsive"]  # the point estimate is the rule: never unflagged
    for end, k_s, k_u, fails in (
        ("low", stim[0], unstim[0], fails_low),
        ("high", stim[1], unstim[1], fails_high),
    ):
        net, rules = _expected_rules(k_s, k_u)
        assert nk[f"areg_net_at_cut_ci_{end}"] == pytest.approx(net)
        assert nk[f"failed_rules_at_cut_ci_{end}"] == rules == fails
    assert bool(nk["holds_across_cutoff_interval"]) is holds
    said = "fragile: the flag rests on the AREG FMO cut-off's exact place"
    assert (said in nk["message"]) is (not holds)
    assert ("CUTOFF_FRAGILE" in nk["notes"]) is (not holds)
    if fails_low:
        assert "at the low end of its interval (0.9) its CI lower bound" in nk["message"]
        assert "AREG_net 0.50 pp < 1 pp" in nk["message"]
    if fails_high:
        assert "at the high end of its interval (1.2) 9 AREG+ events < 10" in nk["message"]
    # a row not flagged has no flag to hold
    assert pd.isna(flags.loc["CD56dim", "holds_across_cutoff_interval"])


@pytest.mark.parametrize(
    ("stim", "unstim", "holds"),
    [((55, np.nan), (14, np.nan), None), ((60, np.nan), (55, np.nan), False)],
    ids=["passes where counted: not checked", "fails where counted: fragile"],
)
def test_an_open_bound_is_not_checked_rather_than_failed(stim, unstim, holds):
    """An FMO under 736 events has no upper bound for its p99.5 (inf): counted there, every
    flag of the tissue failed (0 AREG+ in both tubes), however strong its response."""
    counts, meta = _with_ends(stim, unstim, cut=(0.9, np.inf))
    nk = score(counts, meta).flags.set_index("population").loc["NK"]
    assert nk["areg_responsive"]
    assert not nk["failed_rules_at_cut_ci_high"]  # the open end: nothing counted, nothing failed
    if holds is None:
        assert pd.isna(nk["holds_across_cutoff_interval"])
        assert "fragile" not in nk["message"] and "CUTOFF_FRAGILE" not in nk["notes"]
    else:
        assert not pd.isna(nk["holds_across_cutoff_interval"])
        assert not nk["holds_across_cutoff_interval"]
        assert "fragile" in nk["message"] and "at the high end" not in nk["message"]


def test_an_end_count_that_is_no_number_is_refused_like_the_other_counts():
    """It was coerced to NaN without a word, and the flag read as not checked."""
    counts, meta = _with_ends((55, 45), (14, 6))
    bad = counts.astype({"n_areg_at_ci_low": object})
    bad.loc[0, "n_areg_at_ci_low"] = "fifty"
    with pytest.raises(ConfigError, match="'n_areg_at_ci_low' holds a value that is no count"):
        score(bad, meta)


@pytest.mark.parametrize("absent", [True, False], ids=["no end columns", "ends NaN"])
def test_no_interval_gives_na_and_leaves_the_flag_as_it_was(absent):
    counts, meta = basic()
    before = score(counts, meta).flags.set_index("population")
    if not absent:
        counts = counts.assign(**dict.fromkeys(CUT_END_COLUMNS, np.nan))
    after = score(counts, meta).flags.set_index("population")
    assert after["holds_across_cutoff_interval"].isna().all()
    assert after["areg_net_at_cut_ci_low"].isna().all()
    assert after["message"].equals(before["message"])
    assert after["notes"].equals(before["notes"])


@pytest.mark.parametrize("from_csv", [False, True], ids=["in memory", "read back from CSV"])
@pytest.mark.parametrize(
    ("stim", "unstim", "fragile"),
    [((55, 45), (14, 6), False), ((60, 45), (55, 6), True)],
    ids=["holds", "fragile"],
)
def test_report_labels_a_fragile_flag_and_methods_count_them(stim, unstim, fragile, from_csv):
    from nkflow.report.findings_responses import flag_meaning
    from nkflow.report.methods_analysis import scoring_sentence
    from nkflow.report.repair import repair_section

    counts, meta = _with_ends(stim, unstim)
    res = score(counts, meta)
    flags = res.flags
    if from_csv:
        flags = pd.read_csv(io.StringIO(res.csv_text("flags")), comment="#")
    html = repair_section({"flags": flags, "scores": res.scores}, "", [], [0])
    label = "fragile: the flag rests on the AREG FMO cut-off&#x27;s exact place"
    assert (label in html) is fragile
    assert f"{int(fragile)} of 1 flag(s) checked fail them at an end" in html
    assert ("Those stay flagged" in html) is fragile
    nk = flags.set_index("population").loc["NK"]
    meaning = flag_meaning(nk)  # the rules that fail, not always the net
    assert ("at the low end of its interval:" in meaning) is fragile
    assert ("net below the minimum" in meaning) is fragile
    text = scoring_sentence({}, {}, meta, {"scores": res.scores, "flags": flags})
    assert f"{int(fragile)} of 1 flag(s) checked here were fragile" in text
    assert "The positive control and the IFN-γ, NKG2D and CD107a cut-offs" in text
    assert "a flag that failed them at an end was kept" in text
