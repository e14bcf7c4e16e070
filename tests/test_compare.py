from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from nkflow.exceptions import ConfigError
from nkflow.tl._compare_groups import _mann_whitney_counts
from nkflow.tl._compare_groups import hodges_lehmann_shift as _hodges_lehmann_shift
from nkflow.tl.compare import (
    _hodges_lehmann_paired,
    _signed_rank_counts,
    benjamini_hochberg,
    compare_groups,
    compare_paired,
)


def _paired_table(diffs: dict[str, list[float]], seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for pop, ds in diffs.items():
        for i, d in enumerate(ds):
            pre = rng.uniform(0, 3)
            rows.append(
                dict(population=pop, donor=f"d{i}", tissue="lung", timepoint="pre", areg_net=pre)
            )
            rows.append(
                dict(
                    population=pop, donor=f"d{i}", tissue="lung", timepoint="post", areg_net=pre + d
                )
            )
    return pd.DataFrame(rows)


def test_benjamini_hochberg_matches_hand_computation():
    p = np.array([0.01, 0.04, 0.03, 0.5, np.nan])
    # sorted 0.01, 0.03, 0.04, 0.5 -> 0.04, 0.0533, 0.0533, 0.5
    expected = np.array([0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.5, np.nan])
    np.testing.assert_allclose(benjamini_hochberg(p), expected)


def test_gated_populations_are_adjusted_apart_from_the_metaclusters():
    """A gated population's p_adj moved with --random-state and the sheet's order: it was
    adjusted together with the metaclusters of a random clustering fit."""
    gated = {"NK": [1.0, 2.0, 0.5, 1.5, 3.0, 2.5, 0.8], "CD56dim": [0.4, -0.2, 0.1, 0.3, -0.5,
             0.2, 0.1]}  # fmt: skip
    alone = compare_paired(_paired_table(gated), before="pre", after="post")
    clusters = {
        "metacluster:1": [1, 1, 1, 1, 1, 1, 1.0],
        "metacluster:2": [0.5, 1, -1, -0.5, 1, 0.3, 2],
    }
    both = compare_paired(_paired_table({**gated, **clusters}), before="pre", after="post")
    both = both.set_index("population")
    expected = benjamini_hochberg(alone.set_index("population").loc[list(gated), "p_value"])
    np.testing.assert_allclose(both.loc[list(gated), "p_adj"], expected)
    expected_mc = benjamini_hochberg(both.loc[list(clusters), "p_value"])
    np.testing.assert_allclose(both.loc[list(clusters), "p_adj"], expected_mc)


@pytest.mark.parametrize("n", [1, 4, 9])
def test_signed_rank_counts_match_enumeration(n):
    sums = [
        sum(r for r, s in zip(range(1, n + 1), signs, strict=True) if s)
        for signs in itertools.product((0, 1), repeat=n)
    ]
    np.testing.assert_array_equal(_signed_rank_counts(n), np.bincount(sums))


@pytest.mark.parametrize(("nx", "ny"), [(1, 3), (3, 4), (5, 5)])
def test_mann_whitney_counts_match_enumeration(nx, ny):
    values = np.arange(nx + ny)
    us = []
    for idx in itertools.combinations(range(nx + ny), nx):
        x = values[list(idx)]
        y = np.delete(values, idx)
        us.append(int((x[:, None] > y[None, :]).sum()))
    np.testing.assert_array_equal(_mann_whitney_counts(nx, ny), np.bincount(us))


def test_paired_exact_values_for_small_n():
    # every donor increases: the exact two-sided sign-flip p is 2 / 2**n
    table = _paired_table({"NK": [1.0, 2.0, 0.5, 1.5, 3.0, 2.5, 0.8]})
    out = compare_paired(table, before="pre", after="post")
    row = out.iloc[0]
    assert row["n_pairs"] == 7
    assert row["p_value"] == pytest.approx(2 / 2**7)
    assert row["p_sign"] == pytest.approx(2 / 2**7)
    assert row["n_increase"] == 7
    assert row["mean_difference"] == pytest.approx(np.mean([1.0, 2.0, 0.5, 1.5, 3.0, 2.5, 0.8]))
    assert row["ci_low"] <= row["hl_estimate"] <= row["ci_high"]
    assert row["comparison"] == "post - pre"


def test_paired_interval_undefined_below_six_pairs():
    out = compare_paired(
        _paired_table({"NK": [1.0, 2.0, 0.5, 1.5, 3.0]}), before="pre", after="post"
    )
    assert np.isnan(out.loc[0, "ci_low"]) and np.isnan(out.loc[0, "ci_high"])
    assert out.loc[0, "p_value"] == pytest.approx(2 / 32)


def test_paired_with_many_pairs_uses_resampling_and_seed():
    rng = np.random.default_rng(3)
    table = _paired_table({"NK": list(rng.normal(0.5, 1, 25))})
    a = compare_paired(table, before="pre", after="post", random_state=1, n_resamples=4000)
    b = compare_paired(table, before="pre", after="post", random_state=1, n_resamples=4000)
    pd.testing.assert_frame_equal(a, b)
    assert "resamples" in a.loc[0, "test"]
    # close to the t-test on 25 roughly normal differences
    d = (
        table[table.timepoint == "post"].areg_net.to_numpy()
        - table[table.timepoint == "pre"].areg_net.to_numpy()
    )
    assert a.loc[0, "p_value"] == pytest.approx(sps.ttest_1samp(d, 0).pvalue, abs=0.02)


def test_hodges_lehmann_paired_coverage():
    rng = np.random.default_rng(11)
    hits = 0
    for _ in range(400):
        d = rng.normal(1.0, 1.0, 8)
        _, lo, hi = _hodges_lehmann_paired(d, 0.95)
        hits += lo <= 1.0 <= hi
    assert 0.92 <= hits / 400 <= 0.995


def test_paired_bh_across_populations_and_unpaired_donor_dropped():
    table = _paired_table({"NK": [1, 2, 1, 2, 1, 2], "CD56dim": [0.1, -0.1, 0.2, -0.2, 0.05, 0.1]})
    table = pd.concat(
        [
            table,
            pd.DataFrame(
                [
                    dict(
                        population="NK",
                        donor="lonely",
                        tissue="lung",
                        timepoint="pre",
                        areg_net=1.0,
                    )
                ]
            ),
        ]
    )
    out = compare_paired(table, before="pre", after="post").set_index("population")
    assert out.loc["NK", "n_pairs"] == 6
    assert out.loc["NK", "p_adj"] == pytest.approx(min(1, out.loc["NK", "p_value"] * 2))
    assert out.loc["CD56dim", "p_value"] > 0.5


def test_groups_exact_permutation_and_shift_interval():
    rows = [
        dict(population="NK", donor=f"p{i}", tissue="lung", group="patient", areg_net=v)
        for i, v in enumerate([3.0, 4.0, 5.0, 6.0, 4.5])
    ]
    rows += [
        dict(population="NK", donor=f"c{i}", tissue="lung", group="control", areg_net=v)
        for i, v in enumerate([0.5, 1.0, 1.5, 0.0, 2.0])
    ]
    out = compare_groups(pd.DataFrame(rows), "group")
    row = out.iloc[0]
    assert (row["group_a"], row["group_b"]) == ("control", "patient")
    # complete separation of 5 vs 5: exact two-sided p = 2 / C(10, 5)
    assert row["p_value"] == pytest.approx(2 / 252)
    assert row["p_mannwhitney"] == pytest.approx(2 / 252)
    assert row["ci_low"] <= row["hl_shift"] <= row["ci_high"] < 0


def test_hodges_lehmann_shift_coverage():
    rng = np.random.default_rng(5)
    hits = sum(
        (lambda lo, hi: lo <= 2.0 <= hi)(
            *_hodges_lehmann_shift(rng.normal(2, 1, 6), rng.normal(0, 1, 7), 0.95)[1:]
        )
        for _ in range(400)
    )
    assert 0.92 <= hits / 400 <= 0.995


def test_compare_errors_name_the_column():
    with pytest.raises(ConfigError, match="no column 'timepoint'"):
        compare_paired(pd.DataFrame({"areg_net": [1.0]}), before="a", after="b")
    with pytest.raises(ConfigError, match="need two groups"):
        compare_groups(
            pd.DataFrame(
                dict(population=["NK"], donor=["d"], tissue=["t"], g=["x"], areg_net=[1.0])
            ),
            "g",
        )
    all_nan = pd.DataFrame(
        dict(population="NK", donor=["d1", "d2"], tissue="t", g=["x", "y"], areg_net=np.nan)
    )
    with pytest.raises(ConfigError, match=r"found \[\] with values in 'areg_net' .*'x', 'y'"):
        compare_groups(all_nan, "g")  # said "found []" although both groups are there


def test_a_donors_tissues_are_one_pair_not_several():
    """Donor d0 measured in lung and in bone marrow: two tissues of one donor are not two
    independent pairs. They are averaged into one, so n_pairs counts donors (3) and the
    exact sign-flip test sees 3 differences (p = 2/8), not 4 (p = 2/16)."""
    table = _paired_table({"NK": [1.0, 2.0, 3.0]})
    marrow = table[table["donor"] == "d0"].assign(tissue="bone marrow")
    marrow.loc[marrow["timepoint"] == "post", "areg_net"] += 4.0  # d0's marrow: +5
    res = compare_paired(pd.concat([table, marrow]), before="pre", after="post").iloc[0]
    assert (res["n_pairs"], res["n_units"]) == (3, 4)
    assert res["mean_difference"] == pytest.approx(np.mean([(1.0 + 5.0) / 2, 2.0, 3.0]))
    assert res["p_value"] == pytest.approx(2 / 8)
    by_tissue = compare_paired(
        pd.concat([table, marrow]), before="pre", after="post", by=["tissue", "population"]
    ).set_index("tissue")
    assert by_tissue["n_pairs"].to_dict() == {"bone marrow": 1, "lung": 3}
    assert (by_tissue["n_units"] == by_tissue["n_pairs"]).all()


@pytest.mark.parametrize(("n", "expected"), [(1, 1.0), (2, 0.5), (5, 2 / 32), (16, 2 / 2**16)])
def test_smallest_p_each_row_allows_is_reported(n, expected):
    """With 2 donors an exact sign-flip test never goes below 0.5: ``p_min`` says so, and it
    is what the observed p reaches when every donor moves the same way."""
    from nkflow.tl.compare import signflip_min_p

    out = compare_paired(_paired_table({"NK": [1.0 + i for i in range(n)]}), before="pre",
                         after="post").iloc[0]  # fmt: skip
    assert out["p_min"] == pytest.approx(expected)
    assert out["p_value"] == pytest.approx(expected)
    assert signflip_min_p(17, n_resamples=999) == pytest.approx(1 / 1000)
    assert np.isnan(signflip_min_p(0))


def test_exposure_counted_per_row_not_stratified():
    """Donor d1's post tube came with dexamethasone, d0's and d2's did not: one row, which
    says 1 of its 3 donors was exposed after and none before."""
    table = _paired_table({"NK": [1.0, 2.0, 3.0]}).assign(glucocorticoid="no")
    table.loc[(table["donor"] == "d1") & (table["timepoint"] == "post"), "glucocorticoid"] = "yes"
    out = compare_paired(table, before="pre", after="post", exposures=("glucocorticoid",))
    assert len(out) == 1
    row = out.iloc[0]
    assert (row["n_glucocorticoid_before"], row["n_glucocorticoid_after"]) == (0, 1)
    cols = list(out.columns)
    assert cols.index("n_glucocorticoid_before") == cols.index("n_pairs_too_few_events") + 1
    empty = compare_paired(table, before="pre", after="never", exposures=("glucocorticoid",))
    assert list(empty.columns) == cols


def _group_rows(values: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    """``{(group, donor): [value per tissue]}`` as a scores table."""
    tissues = ("blood", "liver", "lung")
    return pd.DataFrame(
        [dict(population="NK", donor=donor, tissue=tissues[k], group=group, areg_net=v)
         for (group, donor), vs in values.items() for k, v in enumerate(vs)]
    )  # fmt: skip


def test_groups_count_donors_not_their_tissues():
    """2 vs 2 donors with 3 tissues each gave n 6 vs 6 and p 0.0022: a donor counted three
    times. The unit is the donor (its tissues averaged): 2 vs 2 cannot go below 1/3."""
    table = _group_rows({("a", "a1"): [5, 6, 7], ("a", "a2"): [6, 7, 8],
                         ("b", "b1"): [1, 2, 3], ("b", "b2"): [2, 3, 4]})  # fmt: skip
    row = compare_groups(table, "group").iloc[0]
    assert (row["n_a"], row["n_b"]) == (2, 2)
    assert row["p_value"] == pytest.approx(1 / 3) and row["p_min"] == pytest.approx(1 / 3)
    assert row["mean_a"] == pytest.approx(6.5) and row["mean_b"] == pytest.approx(2.5)
    # stratified by tissue, each tissue is its own test of 2 vs 2 donors
    by_tissue = compare_groups(table, "group", by=("population", "tissue"))
    assert len(by_tissue) == 3 and (by_tissue["n_a"] == 2).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"group_key": "tissue"}, "both the group column and a unit_on/by column"),
        ({"group_key": "tissue", "unit_on": ("donor",), "by": ("population",)}, "paired"),
    ],
    ids=["group-is-a-unit", "same-donors-in-both"],
)
def test_groups_refuse_what_is_not_two_independent_groups(kwargs: dict, match: str) -> None:
    table = _group_rows({("a", "d1"): [5, 6, 7], ("a", "d2"): [6, 7, 8]})
    kwargs = {"unit_on": ("donor", "tissue"), **kwargs}
    with pytest.raises(ConfigError, match=match):
        compare_groups(table, **kwargs)
