"""Benjamini-Hochberg over testable rows only, and exposure confounding of paired rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nkflow.exceptions import ConfigError
from nkflow.tl.compare import (
    FDR_ALPHA,
    compare_groups,
    compare_paired,
    paired_columns,
    permutation_min_p,
)


def _pairs(diffs: dict[str, list[float]], tissue: str = "lung") -> pd.DataFrame:
    rows = []
    for pop, ds in diffs.items():
        for i, d in enumerate(ds):
            for when, value in (("pre", 1.0 + i), ("post", 1.0 + i + d)):
                rows.append(dict(population=pop, donor=f"{tissue}{i}", tissue=tissue,
                                 timepoint=when, areg_net=value))  # fmt: skip
    return pd.DataFrame(rows)


def test_rows_that_cannot_reach_the_level_do_not_inflate_the_others():
    """One population measured in a single donor (p = p_min = 1) took the others' p_adj up:
    with it, BH over 3 rows; without it, over the 2 that can reach 0.05 (Tarone 1990).

    By hand: seven donors all up, p = 2/2**7 = 0.015625; six all up, p = 2/2**6 = 0.03125.
    Over these two: 0.015625 * 2/1 = 0.03125 and 0.03125 * 2/2 = 0.03125. Counted with the
    single-donor row (m = 3) they were 0.046875, 0.046875 and 1.
    """
    table = _pairs({"NK": [1.0] * 7, "CD56dim": [1.0] * 6, "CD56bright": [1.0]})
    out = compare_paired(table, before="pre", after="post").set_index("population")
    assert out.loc["NK", "p_value"] == pytest.approx(0.015625)
    assert out.loc["CD56dim", "p_value"] == pytest.approx(0.03125)
    assert out.loc["CD56bright", "p_min"] == 1.0
    assert out.loc["NK", "p_adj"] == pytest.approx(0.03125)
    assert out.loc["CD56dim", "p_adj"] == pytest.approx(0.03125)
    assert np.isnan(out.loc["CD56bright", "p_adj"])


@pytest.mark.parametrize(("n_pairs", "testable"), [(1, False), (5, False), (6, True)])
def test_p_adj_is_nan_exactly_when_p_min_is_above_the_level(n_pairs, testable):
    """Five pairs allow p >= 0.0625 > 0.05: not testable; six allow 0.03125."""
    out = compare_paired(_pairs({"NK": [1.0] * n_pairs}), before="pre", after="post").iloc[0]
    assert (out["p_min"] <= FDR_ALPHA) == testable
    assert np.isfinite(out["p_adj"]) == testable


def test_the_level_is_a_parameter():
    table = _pairs({"NK": [1.0] * 5})
    assert np.isnan(compare_paired(table, before="pre", after="post")["p_adj"].iat[0])
    loose = compare_paired(table, before="pre", after="post", fdr_alpha=0.1)
    assert loose["p_adj"].iat[0] == pytest.approx(0.0625)
    with pytest.raises(ConfigError, match="fdr_alpha"):
        compare_paired(table, before="pre", after="post", fdr_alpha=1.5)


@pytest.mark.parametrize(
    ("n_a", "n_b", "expected"), [(1, 1, 1.0), (2, 2, 2 / 6), (3, 4, 1 / 35), (0, 3, np.nan)]
)
def test_group_min_p(n_a, n_b, expected):
    np.testing.assert_allclose(permutation_min_p(n_a, n_b), expected)


def test_group_rows_that_cannot_reach_the_level_get_nan():
    """1 vs 1 donor cannot be significant (p_min = 1); 4 vs 4 can (2/70)."""
    rows = [dict(population="NK", donor=f"{g}{i}", tissue="lung", group=g, areg_net=v)
            for g, vals in (("a", [5, 6, 7, 8]), ("b", [1, 2, 3, 4]))
            for i, v in enumerate(vals)]  # fmt: skip
    rows += [dict(population="CD56dim", donor=f"{g}0", tissue="lung", group=g, areg_net=v)
             for g, v in (("a", 3.0), ("b", 1.0))]  # fmt: skip
    out = compare_groups(pd.DataFrame(rows), "group").set_index("population")
    assert out.loc["NK", "p_min"] == pytest.approx(2 / 70)
    assert out.loc["NK", "p_adj"] == pytest.approx(out.loc["NK", "p_value"])
    assert out.loc["CD56dim", "p_min"] == 1.0 and np.isnan(out.loc["CD56dim", "p_adj"])


def _exposed(before: list[str], after: list[str]) -> pd.Series:
    table = _pairs({"NK": [1.0] * len(before)})
    gc = []
    for _, row in table.iterrows():
        i = int(row["donor"].removeprefix("lung"))
        gc.append((before if row["timepoint"] == "pre" else after)[i])
    table["glucocorticoid"] = gc
    out = compare_paired(table, before="pre", after="post", exposures=("glucocorticoid",))
    return out.iloc[0]


@pytest.mark.parametrize(
    ("before", "after", "counts", "verdict"),
    [
        # every donor exposed after and none before: the change is the steroid's too
        (["no", "no", "no"], ["yes", "yes", "yes"], (0, 3, 0, 0), "all"),
        (["no", "no", "no"], ["yes", "no", "no"], (0, 1, 0, 0), "some"),
        (["no", "no", "no"], ["no", "no", "no"], (0, 0, 0, 0), "none"),
        (["yes", "yes"], ["yes", "yes"], (2, 2, 0, 0), "none"),
        # an unknown exposure is not "no": counted apart, and the row cannot say "none"
        (["no", "no"], ["unknown", "no"], (0, 0, 0, 1), "unknown"),
        (["no", "no"], ["", "no"], (0, 0, 0, 1), "unknown"),
        (["no", "no"], ["unknown", "yes"], (0, 1, 0, 1), "some"),
    ],
)
def test_exposure_confounding(before, after, counts, verdict):
    row = _exposed(before, after)
    got = tuple(int(row[f"n_glucocorticoid_{k}"]) for k in
                ("before", "after", "unknown_before", "unknown_after"))  # fmt: skip
    assert got == counts
    assert row["glucocorticoid_confounded"] == verdict


def test_exposure_columns_follow_n_units():
    cols = paired_columns(["population"], ["glucocorticoid"])
    assert cols.index("n_pairs_too_few_events") == cols.index("n_units") + 1
    at = cols.index("n_pairs_too_few_events")
    assert cols[at + 1 : at + 6] == [
        "n_glucocorticoid_before",
        "n_glucocorticoid_after",
        "n_glucocorticoid_unknown_before",
        "n_glucocorticoid_unknown_after",
        "glucocorticoid_confounded",
    ]


def test_zero_differences_do_not_make_a_row_testable():
    """Populations with no AREG+ events have net 0 at both timepoints: p = 1 whatever the
    data, yet p_min counted their pairs (0.03125 for 6) and their rows raised NK's p_adj
    from 0.03125 to 0.1875. A zero difference has no sign to flip."""
    diffs = {"NK": [1.0, 2.0, 0.5, 1.5, 3.0, 2.5]}
    diffs |= {f"empty{i}": [0.0] * 6 for i in range(5)}
    diffs["some_zero"] = [1.0, 0.0, 0.0, 2.0, 0.0, 1.0]  # 3 signs: p_min 2/8
    rows = []
    for pop, ds in diffs.items():
        for i, d in enumerate(ds):
            rows += [dict(population=pop, donor=f"d{i}", tissue="lung", timepoint="pre",
                          areg_net=0.0),
                     dict(population=pop, donor=f"d{i}", tissue="lung", timepoint="post",
                          areg_net=d)]  # fmt: skip
    out = compare_paired(pd.DataFrame(rows), before="pre", after="post").set_index("population")
    assert (out.filter(like="empty", axis=0)["p_min"] == 1.0).all()
    assert out.loc["some_zero", "p_min"] == pytest.approx(2 / 8)
    assert out.filter(like="empty", axis=0)["p_adj"].isna().all()
    assert out.loc["NK", "p_adj"] == pytest.approx(out.loc["NK", "p_value"]) == 2 / 64


def test_comparisons_table_is_adjusted_once_over_its_timepoints():
    """With pre, d7 and d14, comparisons.csv joined one compare_paired per later timepoint,
    each adjusted on its own: d7 - pre passed at 0.031 where BH over the table gives 0.0625
    (README: one adjustment per family of the output table)."""
    from nkflow.pipeline.stages import _comparisons
    from nkflow.tl.compare import benjamini_hochberg

    rows = [dict(donor=f"D{i}", tissue="blood", timepoint=tp, condition="stim", population=pop,
                 areg_net={"pre": 0, "d7": 1 + i, "d14": (-1) ** i * (1 + i)}[tp],
                 flaggable=True, batch="H1")
            for i in range(6) for tp in ("pre", "d7", "d14")
            for pop in ("NK", "CD56bright")]  # fmt: skip
    out = _comparisons(pd.DataFrame(rows), ["pre", "d7", "d14"])
    assert set(out["comparison"]) == {"d7 - pre", "d14 - pre"}
    np.testing.assert_allclose(out["p_adj"], benjamini_hochberg(out["p_value"]))
    d7 = out[out["comparison"] == "d7 - pre"]
    assert d7["p_adj"].tolist() == pytest.approx([0.0625, 0.0625])
