"""A donor measured in several batches counts once in the report's summaries.

CytoNorm's design (three donors, each run in batch 1 and batch 2: a bridge donor re-run in
every batch) showed "blood · baseline, n=6" under "n: donors analysed": the medians were
over six values, two per donor, that are not independent.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nkflow.pl.populations import frequencies
from nkflow.report.findings import composition_table
from nkflow.report.sections import _population_summary
from nkflow.tl import donor_rows, phenotype_rows
from nkflow.tl._donors import donor_key, donor_means, donor_of

#: % CD56bright of NK per (donor, batch); donor means 15, 20, 35: median 20, range 15-35
VALUES = {("D1", "B1"): 10.0, ("D1", "B2"): 20.0, ("D2", "B1"): 18.0, ("D2", "B2"): 22.0,
          ("D3", "B1"): 30.0, ("D3", "B2"): 40.0}  # fmt: skip


def _sheet(donors=("D1", "D2", "D3")) -> pd.DataFrame:
    rows = [
        dict(sample_id=f"{d}_{b}", donor=d, tissue="blood", timepoint="baseline",
             stimulation="unstim", role="unstim", batch=b)
        for d in donors for b in ("B1", "B2")
    ]  # fmt: skip
    rows.append(dict(sample_id="FMO", donor="D1", tissue="blood", timepoint="baseline",
                     stimulation="unstim", role="fmo:CD56", batch="B1"))  # fmt: skip
    return pd.DataFrame(rows)


def _pops(meta: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for sid, donor, batch in meta[["sample_id", "donor", "batch"]].itertuples(index=False):
        value = VALUES.get((donor, batch), 99.0)
        thin = batch == "B1" and donor == "D1"
        rows.append(dict(sample_id=sid, population="CD56bright", parent="NK", count=value,
                         parent_count=100, percent_of_parent=value, ci_low=value - 5,
                         ci_high=value + 5, low_events=thin))  # fmt: skip
    return pd.DataFrame(rows)


def test_phenotype_rows_keep_a_tube_per_batch_and_donor_rows_one_per_donor():
    meta = _sheet()
    assert len(phenotype_rows(_pops(meta), meta)) == 6  # the per-sample tables' rows
    rows = donor_rows(_pops(meta), meta)
    assert list(rows["sample_id"]) == ["D1_B1", "D2_B1", "D3_B1"]  # the first tube's id
    assert list(rows["percent_of_parent"]) == [15.0, 20.0, 35.0]  # mean of the batches
    assert list(rows["n_tubes"]) == [2, 2, 2]
    assert rows["ci_low"].isna().all()  # no Wilson interval of a mean of tubes
    assert list(rows["low_events"]) == [True, False, False]  # D1's B1 tube was thin


def test_tubes_without_a_donor_stay_donors_of_their_own():
    meta = _sheet()
    meta["donor"] = ""  # nothing says the B1 and B2 tubes are one person's
    units = donor_of(meta)
    assert units.nunique() == 6
    assert len(donor_rows(_pops(meta).assign(percent_of_parent=1.0), meta)) == 6


def test_donor_means_weigh_each_batch_the_same_and_keep_unnamed_tubes_apart():
    values = pd.Series([10.0, 20.0, 30.0, 7.0])
    # the last tube names no donor; its id happens to be a donor's name
    donors = donor_key(pd.Series(["D1", "D1", "D1", None]), pd.Series(["a", "b", "c", "D1"]))
    batch = pd.Series(["B1", "B1", "B2", "B1"])
    assert list(donor_means(values, donors, batch)) == [22.5, 7.0]  # ((10+20)/2 + 30) / 2
    assert list(donor_means(values, donors)) == [20.0, 7.0]  # each row a batch of its own


def test_a_tube_without_a_donor_is_not_the_donor_its_id_spells():
    meta = _sheet(donors=("D1",))
    meta.loc[len(meta)] = dict(sample_id="D1", donor="", tissue="blood", timepoint="baseline",
                               stimulation="unstim", role="unstim", batch="B1")  # fmt: skip
    assert donor_of(meta).nunique() == 2  # donor D1 (two batches) and tube "D1"
    assert len(donor_rows(_pops(meta), meta)) == 2


def test_population_summary_counts_donors():
    meta = _sheet()
    summary = _population_summary(_pops(meta), meta)
    assert summary.loc[0, "blood · baseline"] == "20.0 (15.0–35.0), n=3"  # not n=6


def test_population_summary_of_one_donor_or_none_set():
    # "63.2 (63.2–63.2), n=1" for one donor; "–" for a gate no tube could set
    meta = _sheet(("D1",))
    summary = _population_summary(_pops(meta), meta)
    assert summary.loc[0, "blood · baseline"].endswith(", n=1")
    assert "(" not in summary.loc[0, "blood · baseline"]
    unset = _population_summary(_pops(meta).assign(percent_of_parent=np.nan), meta)
    assert unset.loc[0, "blood · baseline"] == "not set"


@pytest.mark.parametrize(
    ("donors", "expected"),
    [
        (("D1", "D2", "D3"), "20.0 (15.0-35.0)"),  # median (range) of the donor means
        (("D3",), "35.0 (mean of 2 batches, 30.0-40.0)"),  # one donor twice: no Wilson
    ],
)
def test_composition_counts_a_donor_once_across_batches(donors, expected):
    meta = _sheet(donors)
    comp = composition_table(_pops(meta), meta)
    assert comp.loc[0, "n"] == len(donors)
    assert comp.loc[0, "CD56bright % of NK"] == expected


def test_composition_says_how_many_donors_a_share_stands_on():
    meta = _sheet()
    pops = _pops(meta)
    pops.loc[pops["sample_id"].str.startswith("D3"), "percent_of_parent"] = np.nan  # not set
    comp = composition_table(pops, meta)
    assert comp.loc[0, "CD56bright % of NK"] == "17.5 (15.0-20.0); 2 of 3 donors measured (range)"


def test_frequency_plot_draws_a_dot_per_donor():
    meta = _sheet()
    fig = frequencies(_pops(meta), meta, show=["CD56bright"])
    ax = fig.axes[0]
    dots = [c for c in ax.collections if type(c).__name__ == "PathCollection"]
    assert sum(len(c.get_offsets()) for c in dots) == 3  # D1 hollow (a thin tube), D2, D3
    (bar,) = [c for c in ax.collections if type(c).__name__ == "LineCollection"]
    assert bar.get_segments()[0][0][1] == 20.0  # the median of the donor means


def test_frequency_plot_says_when_a_population_has_no_value():
    # CytoNorm: CD56bright never set drew an empty 0-0.05 axis, read as about 0 %
    meta = _sheet()
    pops = _pops(meta).assign(percent_of_parent=np.nan)
    ax = frequencies(pops, meta, show=["CD56bright"]).axes[0]
    assert [t.get_text() for t in ax.texts] == ["no value:\nnot set in any sample"]
    ax = frequencies(_pops(meta), meta, show=["CD56bright"]).axes[0]
    assert not ax.texts
