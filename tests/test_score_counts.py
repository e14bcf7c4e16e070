from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from nkflow.exceptions import (
    BatchConsistencyError,
    ChannelNotFoundError,
    ConfigError,
    GatingError,
    LowEventCountWarning,
    MissingControlWarning,
)
from nkflow.io import channel_for
from nkflow.tl.annotate import abundance_table
from nkflow.tl.cluster import cluster
from nkflow.tl.counts import COUNT_COLUMNS, count_positive, fmo_threshold

MARKERS = ["CD56", "AREG", "IFN-g", "NKG2D", "CD107a"]


def make_sample(n: int = 2000, *, seed: int = 0, markers=MARKERS, tissue="lung", batch="b1"):
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, size=(n, len(markers))).astype(np.float32)
    var = pd.DataFrame(
        {"marker": markers, "kind": "fluorescence"},
        index=[f"FL{i}-A" for i in range(len(markers))],
    )
    nk = rng.random(n) < 0.5
    ilc = ~nk & (rng.random(n) < 0.2)
    meta = np.where(nk, rng.integers(0, 3, n).astype(str), None)
    obs = pd.DataFrame(
        {
            "sample_id": pd.Categorical(["s1"] * n),
            "NK": nk,
            "ILC": ilc,
            "trNK": nk & (rng.random(n) < 0.3),
            "qc_pass": rng.random(n) > 0.05,
            "metacluster": pd.Categorical(meta, categories=["0", "1", "2"]),
        },
        index=[str(i) for i in range(n)],
    )
    adata = ad.AnnData(X=x, obs=obs, var=var)
    adata.uns["nkflow"] = {
        "sample": {"sample_id": "s1", "path": "s1.fcs", "tissue": tissue, "batch": batch}
    }
    return adata


THRESHOLDS = pd.DataFrame(
    [
        dict(
            marker=m,
            value=v,
            rule="fmo_percentile:99.5",
            control_file=f"fmo_{m}.fcs",
            tissue="lung",
            batch="b1",
        )
        for m, v in [("AREG", 1.0), ("IFN-g", 0.5), ("NKG2D", 0.0), ("CD107a", 1.5)]
    ]
)


def _expected(adata, member, thresholds=THRESHOLDS):
    col = {m: adata.X[:, i] for i, m in enumerate(adata.var["marker"])}
    cut = dict(zip(thresholds["marker"], thresholds["value"], strict=True))
    sel = member & adata.obs["qc_pass"].to_numpy()
    a, g = col["AREG"] > cut["AREG"], col["IFN-g"] > cut["IFN-g"]
    return {
        "n_events": sel.sum(),
        "n_areg": (a & sel).sum(),
        "n_ifng": (g & sel).sum(),
        "n_nkg2d": ((col["NKG2D"] > cut["NKG2D"]) & sel).sum(),
        "n_cd107a": ((col["CD107a"] > cut["CD107a"]) & sel).sum(),
        "n_areg_only": (a & ~g & sel).sum(),
        "n_ifng_only": (~a & g & sel).sum(),
        "n_areg_ifng": (a & g & sel).sum(),
        "n_trnk": (adata.obs["trNK"].to_numpy() & sel).sum(),
    }


def test_counts_match_numpy_for_gates_and_clusters():
    adata = make_sample()
    out = count_positive(adata, THRESHOLDS).set_index("population")
    assert set(out.index) == {
        "NK",
        "ILC",
        "trNK",
        "metacluster:0",
        "metacluster:1",
        "metacluster:2",
    }
    members = {p: adata.obs[p].to_numpy() for p in ("NK", "ILC", "trNK")}
    members |= {f"metacluster:{k}": (adata.obs["metacluster"] == k).to_numpy() for k in "012"}
    for pop, member in members.items():
        assert out.loc[pop, list(COUNT_COLUMNS)].astype(int).to_dict() == _expected(adata, member)
    assert (out["sample_id"] == "s1").all()
    assert (out["threshold_areg"] == 1.0).all()
    assert (out["areg_control_file"] == "fmo_AREG.fcs").all()


def test_thresholds_from_uns_and_most_specific_row_wins():
    adata = make_sample()
    rows = THRESHOLDS.to_dict("records")
    rows.append(dict(marker="AREG", value=99.0, tissue="", batch="", rule="x", control_file=""))
    rows.append(
        dict(marker="AREG", value=-99.0, tissue="blood", batch="b1", rule="x", control_file="")
    )
    adata.uns["nkflow"]["thresholds"] = rows
    out = count_positive(adata, populations=["NK"])
    assert out.loc[0, "threshold_areg"] == 1.0
    own = [*rows, dict(marker="AREG", value=2.0, sample_id="s1", tissue="lung", batch="b1")]
    out = count_positive(adata, own, populations=["NK"])
    assert out.loc[0, "threshold_areg"] == 2.0


def test_conflicting_thresholds_raise():
    rows = [
        *THRESHOLDS.to_dict("records"),
        dict(marker="AREG", value=3.0, tissue="lung", batch="b1"),
    ]
    with pytest.raises(BatchConsistencyError, match="AREG"):
        count_positive(make_sample(), rows)


def test_missing_marker_and_missing_threshold_give_na_not_zero():
    adata = make_sample(markers=["CD56", "AREG", "IFN-g"])  # mouse-like: no NKG2D, CD107a
    out = count_positive(adata, THRESHOLDS, populations=["NK"])
    assert out["n_nkg2d"].isna().all() and out["n_cd107a"].isna().all()
    assert out["n_areg"].notna().all()
    with pytest.warns(MissingControlWarning, match="no AREG threshold"):
        out = count_positive(make_sample(), THRESHOLDS[THRESHOLDS.marker != "AREG"])
    assert out["n_areg"].isna().all() and out["n_areg_only"].isna().all()
    assert out["n_ifng"].notna().all()
    assert set(out["areg_channel"]) == {str(channel_for(make_sample(), "AREG"))}
    without = count_positive(make_sample(markers=["CD56", "IFN-g"]), THRESHOLDS)
    assert without["n_areg"].isna().all() and set(without["areg_channel"]) == {""}


def test_unknown_population_lists_available():
    """A population asked for by name and missing is the same error in every tool
    (count_positive raised a GatingError, cluster and export_fcs a ChannelNotFoundError)."""
    with pytest.raises(ChannelNotFoundError, match="no population 'Treg'; available: NK, ILC"):
        count_positive(make_sample(), THRESHOLDS, populations=["Treg"])


def test_fmo_threshold_percentile_and_interval():
    fmo = make_sample(20000, seed=4)
    rec = fmo_threshold(fmo, "AREG")
    nk = fmo.obs["NK"].to_numpy() & fmo.obs["qc_pass"].to_numpy()
    values = fmo.X[nk, 1].astype(float)
    assert rec["value"] == pytest.approx(np.quantile(values, 0.995))
    assert rec["ci_low"] < rec["value"] < rec["ci_high"]
    assert rec["n_events"] == nk.sum()
    assert rec["rule"] == "fmo_percentile:99.5"
    assert (rec["tissue"], rec["batch"], rec["control_file"]) == ("lung", "b1", "s1.fcs")
    # the record feeds count_positive directly: about 0.5% of the FMO's own NK are positive
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingControlWarning)
        counts = count_positive(fmo, [rec], populations=["NK"])
    assert counts.loc[0, "n_areg"] / counts.loc[0, "n_events"] == pytest.approx(0.005, abs=1e-3)


def test_fmo_threshold_errors_and_low_event_warning():
    fmo = make_sample(300)
    with pytest.warns(LowEventCountWarning):
        fmo_threshold(fmo, "AREG")
    with pytest.raises(ChannelNotFoundError, match="CD69"):
        fmo_threshold(fmo, "CD69")
    with pytest.raises(GatingError, match="no gate 'CD56bright'"):
        fmo_threshold(fmo, "AREG", population="CD56bright")


@pytest.mark.parametrize("population", [None, "NK"])
def test_fmo_threshold_leaves_the_tubes_qc_column_as_it_was(population):
    """It and-ed the gate into the array pandas handed out for obs['qc_pass']: the column
    became the gate, and every later count of the container was wrong without a word."""
    fmo = make_sample(2000, seed=5)
    before = fmo.obs["qc_pass"].copy()
    counts = count_positive(fmo, THRESHOLDS, populations=["NK"])
    fmo_threshold(fmo, "AREG", population=population)
    pd.testing.assert_series_equal(fmo.obs["qc_pass"], before)
    pd.testing.assert_frame_equal(count_positive(fmo, THRESHOLDS, populations=["NK"]), counts)


def test_fmo_threshold_refuses_pooled_tubes():
    pooled = ad.concat([make_sample(500, seed=1), make_sample(500, seed=2)], index_unique="-")
    pooled.obs["sample_id"] = ["a"] * 500 + ["b"] * 500
    pooled.uns["nkflow"] = make_sample(10).uns["nkflow"]
    with pytest.raises(ConfigError, match="fmo_threshold: the AnnData holds 2 samples"):
        fmo_threshold(pooled, "AREG")


def test_threshold_set_on_the_nk_gate_wins_over_other_gates():
    rows = [dict(r, gate="NK") for r in THRESHOLDS.to_dict("records")]
    rows.append(dict(marker="AREG", value=3.0, tissue="lung", batch="b1", gate="ILC"))
    out = count_positive(make_sample(), rows, populations=["NK"])
    assert out.loc[0, "threshold_areg"] == 1.0
    out = count_positive(make_sample(), rows, populations=["NK"], threshold_gate="ILC")
    assert out.loc[0, "threshold_areg"] == 3.0


def _pick_reference(table, marker, sample_id, tissue, batch, gate):
    """The specification of the pick, one DataFrame filter per level (the former code)."""
    rows = table[table["marker"] == marker]
    levels = [
        rows["sample_id"] == sample_id,
        (rows["sample_id"] == "") & (rows["tissue"] == tissue) & (rows["batch"] == batch),
        (rows["sample_id"] == "") & (rows["tissue"] == "") & (rows["batch"] == batch),
        (rows["sample_id"] == "") & (rows["tissue"] == tissue) & (rows["batch"] == ""),
        (rows["sample_id"] == "") & (rows["tissue"] == "") & (rows["batch"] == ""),
    ]
    for mask in levels:
        hit = rows[mask]
        if hit.empty:
            continue
        values = hit["value"].astype(float).unique()
        if len(values) > 1 and gate is not None and (hit["gate"] == gate).any():
            hit = hit[hit["gate"] == gate]
            values = hit["value"].astype(float).unique()
        if len(values) > 1:
            return "conflict"
        return hit.iloc[0].to_dict()
    return None


@pytest.mark.parametrize("seed", range(4))
def test_threshold_pick_follows_its_specification(seed):
    """Random tables of shared, tissue, batch and per-sample rows on several gates."""
    from nkflow.tl.counts import _threshold_table, _ThresholdPicker

    rng = np.random.default_rng(seed)
    n = 40
    rows = pd.DataFrame(
        {
            "marker": rng.choice(["AREG", "IFN-g", "CD69"], n),
            "value": rng.choice([0.5, 1.0, 2.0], n),
            "sample_id": rng.choice(["", "", "s1", "s2"], n),
            "tissue": rng.choice(["", "lung", "blood"], n),
            "batch": rng.choice(["", "b1", "b2"], n),
            "gate": rng.choice(["NK", "ILC", ""], n),
            "rule": "x",
        }
    )
    table = _threshold_table(rows, make_sample())
    picker = _ThresholdPicker(table)
    for marker in ("AREG", "IFN-g", "CD69", "NKG2D"):
        for sid in ("s1", "s3"):
            for tissue in ("lung", "liver"):
                for batch in ("b1", "b3"):
                    for gate in ("NK", None):
                        expected = _pick_reference(table, marker, sid, tissue, batch, gate)
                        if expected == "conflict":
                            with pytest.raises(BatchConsistencyError, match=marker):
                                picker.pick(marker, sid, tissue, batch, "here", gate)
                        else:
                            assert picker.pick(marker, sid, tissue, batch, "here", gate) == (
                                expected
                            )


@pytest.mark.parametrize(
    "column",
    [
        pd.Series(pd.Categorical(["s2", "s1", "s2", "s3"], categories=["s3", "s1", "s2", "s9"])),
        pd.Series(pd.Categorical(["s2", None, "s2"])),  # a missing id reads "nan"
        pd.Series(pd.Categorical([2, 1, 2])),  # non-string ids
        pd.Series(["b", "a", "b"]),
        pd.Series([1, 1.0, "1"], dtype=object),  # ids that are equal as strings
    ],
)
def test_sample_codes_are_those_of_the_ids_as_strings(column):
    from nkflow.tl.counts import _sample_codes

    codes, names = _sample_codes(column)
    expected_codes, expected_names = pd.factorize(column.astype(str))
    np.testing.assert_array_equal(codes, expected_codes)
    assert list(names) == list(expected_names)


@pytest.mark.parametrize("step", ["count_positive", "cluster"])
def test_an_ungated_sample_says_to_gate_first(gated_liver, step):
    """Counting or clustering before gating gave an empty table, or 'no channel or
    marker NK'; both now name the missing step."""
    from nkflow.tl.cluster import cluster

    adata = gated_liver[0].copy()
    adata.obs = adata.obs[[c for c in adata.obs.columns if adata.obs[c].dtype != bool]]
    adata.uns["nkflow"] = {k: v for k, v in adata.uns["nkflow"].items() if k != "gating"}
    error = GatingError if step == "count_positive" else ChannelNotFoundError
    with pytest.raises(error, match=r"run nk\.gating\.gate first"):
        count_positive(adata) if step == "count_positive" else cluster(adata)


@pytest.mark.parametrize(
    ("tool", "advice"),
    [
        (count_positive, r"res\.kept_events\(sid\)"),
        (abundance_table, r"adata\[adata\.obs"),
        (cluster, r"adata\[adata\.obs"),
    ],
    ids=["count_positive", "abundance_table", "cluster"],
)
def test_a_container_of_several_samples_is_refused(tool, advice):
    """A combined container (as Results.to_anndata gives) was counted as one sample: one
    sample_id from abundance_table, all-NA AREG counts from count_positive."""
    second = make_sample(seed=1)
    second.obs["sample_id"] = pd.Categorical(["s2"] * second.n_obs)
    combined = ad.concat([make_sample(), second], index_unique="-")
    with pytest.raises(ConfigError, match=rf"holds 2 samples.*{advice}"):
        tool(combined)
