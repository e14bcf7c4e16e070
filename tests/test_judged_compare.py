"""Paired comparisons leave out tubes with too few events, and re-test without the donors
whose glucocorticoid exposure changed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nkflow.tl.compare import compare_paired


def _scores(diffs, events=None, exposed_after=()):
    """One donor per difference, pre 1 pp; ``events`` per donor (both tubes, both times)."""
    rows = []
    for i, d in enumerate(diffs):
        donor = f"D{i + 1}"
        n = 500 if events is None else events[i]
        for tp, value in (("pre", 1.0), ("post", 1.0 + d)):
            gc = "yes" if tp == "post" and donor in exposed_after else "no"
            rows.append(
                dict(donor=donor, tissue="liver", timepoint=tp, population="NK",
                     areg_net=value, n_events_stim=n, n_events_unstim=n, glucocorticoid=gc)
            )  # fmt: skip
    return pd.DataFrame(rows)


def _one(scores, **kw):
    out = compare_paired(scores, before="pre", after="post", by=["population"], **kw)
    assert len(out) == 1
    return out.iloc[0]


@pytest.mark.parametrize(
    ("events", "min_events", "n_pairs", "lost"),
    [
        ([500] * 6, 100, 6, 0),
        ([500, 500, 500, 500, 8, 6], 100, 4, 2),
        ([500, 500, 500, 500, 8, 6], None, 6, 0),  # no rule: every tube counts
    ],
)
def test_tubes_with_too_few_events_drop_their_pair(events, min_events, n_pairs, lost):
    row = _one(_scores([5, 6, 7, 8, 30, 40], events), min_events=min_events)
    assert (row["n_pairs"], row["n_pairs_too_few_events"]) == (n_pairs, lost)


def test_one_small_tube_drops_the_pair_and_its_p_value():
    events = [500, 500, 500, 500, 500, 500]
    scores = _scores([5, 6, 7, 8, 30, 40], events)
    # D6's post tube alone has 6 unstim events: its pair goes, the others stay
    scores.loc[(scores["donor"] == "D6") & (scores["timepoint"] == "post"), "n_events_unstim"] = 6
    row = _one(scores, min_events=100)
    assert (row["n_pairs"], row["n_pairs_too_few_events"]) == (5, 1)
    assert row["p_min"] == pytest.approx(2 / 2**5)


def test_a_group_with_every_tube_too_small_keeps_its_row_without_a_test():
    # the row says the comparison was asked and why it has no test (it used to vanish,
    # and its lost pairs with it from the report's count)
    out = compare_paired(
        _scores([5, 6, 7], [4, 5, 6]).assign(population="NK_AREG+"),
        before="pre", after="post", by=["population"], min_events=100,
    )  # fmt: skip
    assert out[["population", "n_pairs", "n_units", "n_pairs_too_few_events"]].values.tolist() == [
        ["NK_AREG+", 0, 0, 3]
    ]
    row = out.iloc[0]
    assert row[["p_value", "p_min", "p_adj", "mean_difference"]].isna().all()
    assert row["comparison"] == "post - pre"
    assert (row["n_increase"], row["n_decrease"]) == (0, 0)  # counts stay integers


def test_rows_without_pairs_keep_the_groups_order():
    scores = pd.concat(
        [
            _scores([5, 6, 7], [4, 5, 6]).assign(population="A"),  # every tube too small
            _scores([5, 6, 7]).assign(population="B"),
        ]
    )
    out = compare_paired(scores, before="pre", after="post", by=["population"], min_events=100)
    assert out["population"].tolist() == ["A", "B"]
    assert out["n_pairs"].tolist() == [0, 3]


def test_without_the_exposed_donor_the_change_cannot_be_shown():
    # 6 donors up: p = 2/64; without D2 (exposed after only) 5 cannot go below 0.0625
    row = _one(_scores([5, 6, 7, 8, 9, 10], exposed_after=("D2",)), exposures=["glucocorticoid"])
    assert row["glucocorticoid_confounded"] == "some"
    assert row["p_value"] == pytest.approx(2 / 64)
    assert row["p_value_glucocorticoid_unchanged"] == pytest.approx(2 / 32)
    assert row["p_min_glucocorticoid_unchanged"] == pytest.approx(2 / 32)


def test_unchanged_p_equals_p_when_no_exposure_changed_and_nan_when_all_did():
    row = _one(_scores([5, 6, 7, 8, 9, 10]), exposures=["glucocorticoid"])
    assert row["p_value_glucocorticoid_unchanged"] == pytest.approx(row["p_value"])
    everyone = tuple(f"D{i}" for i in range(1, 4))
    row = _one(_scores([5, 6, 7], exposed_after=everyone), exposures=["glucocorticoid"])
    assert np.isnan(row["p_value_glucocorticoid_unchanged"])
    assert np.isnan(row["p_min_glucocorticoid_unchanged"])


def test_p_min_counts_only_non_zero_differences():
    row = _one(_scores([0, 0, 0, 5, 6, 7]))
    assert row["p_min"] == pytest.approx(2 / 2**3)


def test_the_pipeline_comparisons_use_the_scoring_event_minimum():
    """stim | liver | metacluster:9 was tested from tubes of 4-10 events (b62): +31 pp,
    p 0.031, and entered the metaclusters' BH family."""
    from nkflow.pipeline.stages import _comparisons

    scores = _scores([5, 6, 7, 8, 9, 10], [6] * 6).assign(
        condition="stim", population="metacluster:9", flaggable=True
    )
    assert _comparisons(scores, ["pre", "post"]).iloc[0]["n_pairs"] == 6
    kept = _comparisons(scores, ["pre", "post"], min_events=100)
    assert kept[["n_pairs", "n_pairs_too_few_events"]].values.tolist() == [[0, 6]]
    assert np.isnan(kept.iloc[0]["p_adj"])


def test_a_group_with_a_missing_value_is_one_row_with_its_lost_pairs():
    # NaN != NaN: the (NaN, stim) group got a second, empty row, and its own row said 0 lost
    scores = _scores([5, 6, 7, 8, 9, 10], [500, 500, 500, 500, 500, 50]).assign(
        population=np.nan, condition="stim"
    )
    out = compare_paired(
        scores, before="pre", after="post", by=["population", "condition"], min_events=100
    )
    assert len(out) == 1
    assert (out.iloc[0]["n_pairs"], out.iloc[0]["n_pairs_too_few_events"]) == (5, 1)
