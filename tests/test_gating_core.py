"""Gating core: threshold rules on known answers, resolved gates, apply, populations table."""

from __future__ import annotations

import json
import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from nkflow.exceptions import (
    GatingError,
    LowEventCountWarning,
    MissingControlWarning,
    ThresholdDriftWarning,
)
from nkflow.gating import (
    BooleanGate,
    Dimension,
    Operand,
    PolygonGate,
    RectangleGate,
    compare_thresholds,
    evaluate_gates,
    fmo_threshold,
    gate,
    gmm_threshold,
    mirror_threshold,
    population_table,
    valley_threshold,
)
from nkflow.gating.gates import gate_from_dict, gate_to_dict
from nkflow.io import nkflow_uns

RNG = np.random.default_rng(7)
BIMODAL = np.r_[RNG.normal(0.0, 0.3, 8000), RNG.normal(2.5, 0.4, 2000)]
UNIMODAL = RNG.normal(0.0, 0.3, 10000)


def test_valley_on_bimodal_is_between_the_modes_with_ci():
    v, lo, hi, rule, n = valley_threshold(BIMODAL, n_boot=100, random_state=0)
    assert rule == "valley" and n == BIMODAL.size
    assert 0.9 < v < 1.6
    assert lo <= v <= hi and hi - lo < 0.3


def test_valley_on_unimodal_falls_back_to_mirror():
    v, _, _, rule, _ = valley_threshold(UNIMODAL, n_boot=0)
    assert rule == "mirror"
    assert v == pytest.approx(2.576 * 0.3, abs=0.12)  # 99.5th percentile of N(0, 0.3)


def test_gmm_finds_the_equal_posterior_point_of_a_small_overlapping_population():
    rng = np.random.default_rng(11)
    x = np.r_[rng.normal(0.57, 0.04, 9000), rng.normal(0.77, 0.03, 1000)]
    # Bayes boundary of 0.9 N(0.57, 0.04) vs 0.1 N(0.77, 0.03), solved numerically
    grid = np.linspace(0.6, 0.77, 20001)
    lr = (np.log(0.1 / 0.03) - 0.5 * ((grid - 0.77) / 0.03) ** 2) - (
        np.log(0.9 / 0.04) - 0.5 * ((grid - 0.57) / 0.04) ** 2
    )
    bayes = grid[np.flatnonzero(lr > 0)[0]]
    v, lo, hi, rule, _ = gmm_threshold(x, n_boot=50, random_state=0)
    assert rule == "gmm" and abs(v - bayes) < 0.01 and lo <= v <= hi
    assert gmm_threshold(UNIMODAL, n_boot=0)[3] == "mirror"


@pytest.mark.parametrize("unimodal", ["negative", "positive"])
def test_mirror_side(unimodal):
    x = UNIMODAL if unimodal == "negative" else 3.0 - UNIMODAL
    v, *_ = mirror_threshold(x, unimodal=unimodal, n_boot=0)
    expected = 0.77 if unimodal == "negative" else 3.0 - 0.77
    assert v == pytest.approx(expected, abs=0.12)


def test_fmo_percentile_and_exact_interval():
    a = fmo_threshold(UNIMODAL, percentile=99.5, n_boot=50, random_state=3)
    b = fmo_threshold(UNIMODAL, percentile=99.5, n_boot=50, random_state=4)
    assert a == b  # order statistics: nothing random
    assert a[0] == pytest.approx(np.percentile(UNIMODAL, 99.5))
    assert a[1] < a[0] < a[2] and a[3] == "fmo"
    assert np.isnan(fmo_threshold(UNIMODAL, n_boot=0)[1])


def test_gating_and_scoring_fmo_thresholds_agree():
    """nk.gating.fmo_threshold (arrays) and nk.tl.fmo_threshold (a gated FMO container)
    report the same value and interval."""
    import anndata as ad
    import pandas as pd

    from nkflow.tl import fmo_threshold as tl_fmo_threshold

    n = UNIMODAL.size
    fmo = ad.AnnData(
        X=np.column_stack([UNIMODAL, UNIMODAL[::-1]]).astype(np.float32),
        obs=pd.DataFrame({"NK": np.arange(n) % 3 > 0}, index=[str(i) for i in range(n)]),
        var=pd.DataFrame({"marker": ["AREG", "CD69"]}, index=["PE-A", "APC-A"]),
    )
    rec = tl_fmo_threshold(fmo, "AREG")
    nk = fmo.obs["NK"].to_numpy()
    value, lo, hi, _, count = fmo_threshold(fmo.X[nk, 0])
    assert (rec["value"], rec["ci_low"], rec["ci_high"], rec["n_events"]) == (value, lo, hi, count)


@pytest.mark.parametrize("shape", ["normal", "exponential", "uniform"])
def test_quantile_interval_covers_the_true_quantile(shape):
    from nkflow.stats import quantile_interval

    rng = np.random.default_rng(5)
    draw = {
        "normal": lambda n: rng.standard_normal(n),
        "exponential": lambda n: rng.exponential(size=n),
        "uniform": lambda n: rng.random(n),
    }
    truth = {"normal": 2.5758293, "exponential": -np.log(0.005), "uniform": 0.995}[shape]
    hits = 0
    for _ in range(400):
        lo, hi = quantile_interval(np.sort(draw[shape](2000)), 0.995)
        hits += lo <= truth <= hi
    assert hits / 400 >= 0.93  # exact method: coverage >= 95% up to simulation noise


def test_compare_thresholds_flags_drift():
    t = pd.DataFrame({
        "tissue": ["liver"] * 3, "gate": ["NK"] * 3, "marker": ["CD69"] * 3,
        "batch": ["B1", "B2", "B3"], "value": [0.40, 0.42, 0.70],
    })  # fmt: skip
    with pytest.warns(ThresholdDriftWarning, match="B3"):
        out = compare_thresholds(t, max_shift=0.1)
    assert out.set_index("batch")["drift"].to_dict() == {"B1": False, "B2": False, "B3": True}


def test_resolved_gates_evaluate_and_round_trip():
    data = {"a": np.array([0.0, 1.0, 2.0, 3.0]), "b": np.array([0.0, 1.0, 2.0, 3.0])}
    gates = [
        BooleanGate("notP", "A", "not", (Operand("P"),)),
        RectangleGate("A", None, (Dimension("a", 1.0, None),)),
        PolygonGate("P", "A", "a", "b", ((0.5, 0.5), (2.5, 0.5), (2.5, 2.5), (0.5, 2.5))),
    ]
    m = evaluate_gates(gates, data)
    assert m["A"].tolist() == [False, True, True, True]
    assert m["P"].tolist() == [False, True, True, False]
    assert m["notP"].tolist() == [False, False, False, True]
    assert all(gate_from_dict(gate_to_dict(g)) == g for g in gates)


# ---- a tiny synthetic sample with a known answer -----------------------------------------
def _tiny(n: int = 6000, seed: int = 0, stim: str = "unstim") -> tuple[ad.AnnData, pd.DataFrame]:
    """Lymphocytes (T, NK dim/bright, B-like), debris and doublets in a logicle-like scale."""
    rng = np.random.default_rng(seed)
    kinds = rng.choice(["debris", "doublet", "dead", "T", "NKdim", "NKbright"], n,
                       p=[0.08, 0.06, 0.08, 0.50, 0.24, 0.04])  # fmt: skip
    fsc = np.where(kinds == "debris", rng.normal(15e3, 4e3, n), rng.normal(70e3, 6e3, n))
    ratio = np.where(kinds == "doublet", rng.normal(0.5, 0.03, n), rng.normal(0.8, 0.02, n))
    ssc = np.where(kinds == "debris", rng.normal(8e3, 2e3, n), rng.normal(18e3, 2.5e3, n))

    def level(pos, hi=0.7, lo=0.15, sd=0.05):
        return np.where(pos, rng.normal(hi, sd, n), rng.normal(lo, sd, n))

    nk = np.isin(kinds, ["NKdim", "NKbright"])
    cols = {
        "FSC-A": fsc, "FSC-H": fsc * ratio, "SSC-A": ssc,
        "BUV395-A": level(kinds != "debris", 0.7, 0.3),
        "BV510-A": level(kinds == "dead", 0.8, 0.3),
        "BV650-A": level(kinds == "T", 0.72, 0.15),
        "BUV737-A": np.where(kinds == "NKbright", rng.normal(0.8, 0.03, n),
                             level(kinds == "NKdim", 0.57, 0.15, 0.04)),
        "FITC-A": level(kinds == "NKdim", 0.75, 0.3),
        "APC-A": np.where(kinds == "NKbright", rng.normal(0.65, 0.03, n),
                          level(kinds == "NKdim", 0.55, 0.15, 0.03)),
        "BV786-A": level(nk & (rng.random(n) < 0.3), 0.6, 0.15),
        "BV421-A": level(nk & (rng.random(n) < 0.3), 0.6, 0.2),
    }  # fmt: skip
    markers = ["", "", "", "CD45", "LD_CD14_CD19", "CD3", "CD56", "CD16", "NKp46", "CD69", "CD49a"]
    X = np.column_stack(list(cols.values())).astype(np.float32)
    var = pd.DataFrame(index=list(cols))
    var["marker"] = markers
    var["kind"] = ["scatter"] * 3 + ["fluorescence"] * 8
    adata = ad.AnnData(X=X, var=var)
    adata.obs_names = [str(i) for i in range(n)]
    adata.uns["nkflow"] = {"sample": {"sample_id": f"tiny{seed}", "tissue": "blood",
                                      "batch": "B1", "stimulation": stim}}  # fmt: skip
    truth = pd.DataFrame({"NK": nk, "CD56bright": kinds == "NKbright",
                          "CD56dim": kinds == "NKdim", "CD3-": ~np.isin(kinds, ["T"])})  # fmt: skip
    return adata, truth


def _f1(pred: np.ndarray, true: np.ndarray) -> float:
    tp = int((pred & true).sum())
    return 2 * tp / max(1, int(pred.sum() + true.sum()))


@pytest.fixture(scope="module")
def tiny_gated():
    adata, truth = _tiny()
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        table = gate(adata, "human_blood", n_boot=20, random_state=0)
    return adata, truth, table, rec


@pytest.mark.parametrize("population", ["NK", "CD56bright", "CD56dim"])
def test_tiny_sample_known_answer(tiny_gated, population):
    adata, truth, _, _ = tiny_gated
    assert _f1(adata.obs[population].to_numpy(), truth[population].to_numpy()) >= 0.95


def test_gate_writes_container_and_provenance(tiny_gated):
    adata, _, _, rec = tiny_gated
    g = adata.uns["nkflow"]["gating"]
    assert g["template"] == "human_blood" and len(g["template_hash"]) == 64
    assert adata.obs["NK"].dtype == bool
    th = pd.DataFrame(adata.uns["nkflow"]["thresholds"])
    cd3 = th[(th["marker"] == "CD3") & (th["gate"] == "Lymphocytes")].iloc[0]
    assert cd3["rule"] == "valley" and cd3["ci_low"] <= cd3["value"] <= cd3["ci_high"]
    assert 0.3 < cd3["value"] < 0.6
    # no FMO given: the fallback is recorded and warned about
    cd69 = th[th["marker"] == "CD69"].iloc[0]
    assert "fallback" in cd69["rule"] and cd69["control_file"] == "fallback:no-fmo"
    assert any(issubclass(w.category, MissingControlWarning) for w in rec)
    # optional gates whose markers the panel lacks are skipped, not failed
    assert "NK_CD103+" in g["skipped"]


def test_populations_table(tiny_gated):
    adata, _, table, rec = tiny_gated
    row = table.set_index("population").loc["CD56bright"]
    nk = int(adata.obs["NK"].sum())
    assert row["parent"] == "NK" and row["parent_count"] == nk
    assert row["percent_of_parent"] == pytest.approx(100 * row["count"] / nk)
    assert row["ci_low"] < row["percent_of_parent"] < row["ci_high"]
    assert row["percent_of_nk"] == pytest.approx(row["percent_of_parent"])
    assert "median_CD56" in table.columns
    assert np.isnan(table.set_index("population").loc["Lymphocytes", "percent_of_nk"])
    assert table.set_index("population").loc["NK", "percent_of_nk"] == 100.0
    low = table.set_index("population")["low_events"]
    assert bool(low["trNK"]) == (table.set_index("population").loc["trNK", "count"] < 100)
    assert any(issubclass(w.category, LowEventCountWarning) for w in rec)


def test_given_thresholds_take_precedence():
    adata, _ = _tiny(seed=1)
    given = [{"gate": "NK", "marker": "CD69", "value": 0.4, "rule": "fmo p99.5",
              "control_file": "fmo_CD69.fcs", "tissue": "blood", "batch": "B1"}]  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gate(adata, "human_blood", thresholds=given, n_boot=0)
    th = pd.DataFrame(adata.uns["nkflow"]["thresholds"])
    cd69 = th[th["marker"] == "CD69"].iloc[0]
    assert cd69["value"] == 0.4 and cd69["control_file"] == "fmo_CD69.fcs"
    x = adata.X[:, list(adata.var_names).index("BV786-A")]
    assert (adata.obs["NK_CD69+"] == (adata.obs["NK"] & (x >= 0.4))).all()


def test_stimulated_tube_drops_cd16_and_takes_residency_from_unstim():
    unstim, _ = _tiny(seed=2)
    stim, _ = _tiny(seed=3, stim="stim")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = gate(unstim, "human_blood", n_boot=0)
        table = gate(stim, "human_blood", n_boot=0, paired_unstim=ref)
    g = nkflow_uns(stim)["gating"]
    bright = next(p for p in g["populations"] if p["name"] == "CD56bright")["gate"]
    assert bright["kind"] == "polygon" and bright["x_channel"] == "BUV737-A"
    assert "CD16" not in json.dumps(bright) and "FITC-A" not in json.dumps(bright)
    assert "NK_CD16+" in g["skipped"]
    assert "trNK" not in stim.obs.columns and "trNK" in g["skipped"]
    tr = table[table["population"] == "trNK"].iloc[0]
    assert tr["phenotype_source"] == "tiny2" and tr["sample_id"] == "tiny3"


def test_a_borrowed_row_of_an_unset_gate_joins_without_a_pandas_warning():
    """The unstimulated partner's gates had no cut-off (NA counts and medians, as a run's
    task sends them): the stimulated tube still takes their rows, as NA, and pandas'
    FutureWarning about all-NA columns no longer reaches the tube's status message."""
    unstim, _ = _tiny(seed=2)
    stim, _ = _tiny(seed=3, stim="stim")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = gate(unstim, "human_blood", n_boot=0)
    medians = [c for c in ref.columns if c.startswith("median_")]
    ref.loc[:, ["count", "percent_of_parent", "ci_low", "ci_high", *medians]] = np.nan
    ref = pd.DataFrame(json.loads(ref.to_json(orient="records")))  # as a run's task sends it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", FutureWarning)
        table = gate(stim, "human_blood", n_boot=0, paired_unstim=ref)
    tr = table[table["population"] == "trNK"].iloc[0]
    assert tr["phenotype_source"] == "tiny2" and pd.isna(tr["count"])


def test_gating_again_with_another_template_drops_the_first_templates_populations(tmp_path):
    """Gated with human_blood, then with a T-cell template: obs kept CD56bright, trNK ...
    beside the new gates and count_positive counted both hierarchies' populations."""
    from nkflow.tl import count_positive

    template = tmp_path / "t_cells.toml"
    template.write_text(
        '[template]\nname = "t_cells"\nversion = "0.1.0"\nspecies = "human"\n'
        'anchor = "CD3"\ndescription = "T cells"\n[manifest]\nrequired_markers = ["CD3"]\n'
        'min_events = 10\n[[gates]]\nid = "T"\nkind = "threshold"\nmarker = "CD3"\n'
        'side = "pos"\nrule = "valley"\n'
    )
    adata, _ = _tiny(seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = gate(adata, "human_blood", n_boot=0)
        gate(adata, template, n_boot=0)
        counts = count_positive(adata)
    assert {"NK", "CD56bright"} <= set(first["population"])
    gated = [p["name"] for p in nkflow_uns(adata)["gating"]["populations"]]
    assert gated == ["T"]
    assert not {"NK", "CD56bright", "trNK"} & set(adata.obs.columns)
    assert set(counts["population"]) <= {"T", "Cells"}


def test_population_table_handles_root_and_missing_nk():
    adata, _ = _tiny(n=500)
    adata.obs["A"] = np.arange(500) < 50
    t = population_table(adata, populations=["A"], parents={"A": None}, min_events=10)
    assert t.loc[0, "parent_count"] == 500 and np.isnan(t.loc[0, "percent_of_nk"])


def test_population_table_refuses_several_samples_concatenated():
    # anndata.concat of gated samples: counted as one, under the first one's name
    import anndata as ad

    from nkflow.exceptions import ConfigError

    samples = []
    for i in (1, 2):
        adata, _ = _tiny(n=300, seed=i)
        adata.obs["A"] = np.arange(300) < 30
        adata.obs["sample_id"] = f"s{i}"
        samples.append(adata)
    both = ad.concat(samples, merge="same", uns_merge="first")
    with pytest.raises(ConfigError, match=r"holds 2 samples in obs\['sample_id'\].*per sample"):
        population_table(both, populations=["A"], parents={"A": None}, min_events=10)
    one = population_table(samples[0], populations=["A"], parents={"A": None}, min_events=10)
    assert one.loc[0, "count"] == 30


def test_gating_refuses_several_samples_before_changing_them(tmp_path):
    # gate() gated the concatenation, then failed in population_table naming it
    import anndata as ad

    from nkflow.exceptions import ConfigError
    from nkflow.gating import apply_gatingml

    samples = []
    for i in (1, 2):
        adata, _ = _tiny(n=300, seed=i)
        adata.obs["sample_id"] = f"s{i}"
        samples.append(adata)
    both = ad.concat(samples, merge="same", uns_merge="first")
    columns, uns = list(both.obs.columns), dict(both.uns)
    with pytest.raises(ConfigError, match=r"^gate: the AnnData holds 2 samples"):
        gate(both, "human_blood", n_boot=0)
    gml = tmp_path / "range.xml"
    gml.write_text(
        '<gating:Gating-ML xmlns:gating="http://www.isac-net.org/std/Gating-ML/v2.0/gating" '
        'xmlns:data-type="http://www.isac-net.org/std/Gating-ML/v2.0/datatypes">'
        '<gating:RectangleGate gating:id="R"><gating:dimension gating:min="0">'
        '<data-type:fcs-dimension data-type:name="FSC-A"/></gating:dimension>'
        "</gating:RectangleGate></gating:Gating-ML>"
    )
    with pytest.raises(ConfigError, match=r"^apply_gatingml: the AnnData holds 2 samples"):
        apply_gatingml(gml, [samples[0], both])
    assert list(both.obs.columns) == columns and dict(both.uns) == uns  # nothing changed
    assert "R" not in samples[0].obs  # the first container was not gated either


@pytest.mark.parametrize("gate_id", ["Cells", "Singlets", "CD3-", "CD56bright", "CD56dim"])
def test_gate_plot_returns_figure(tiny_gated, gate_id):
    from matplotlib.figure import Figure

    from nkflow.pl.gating import gate_plot

    fig = gate_plot(tiny_gated[0], gate_id, bins=32)
    assert isinstance(fig, Figure) and gate_id in fig.axes[0].get_title()


def test_gate_grid(tiny_gated):
    from nkflow.pl.gating import gate_grid

    fig = gate_grid(tiny_gated[0], bins=16)
    assert len([a for a in fig.axes if a.has_data()]) >= 6


def test_gate_batch_flags_threshold_drift_between_batches():
    from nkflow.gating import gate_batch

    store, rows = {}, []
    for i, batch in enumerate(["B1", "B1", "B2"]):
        adata, _ = _tiny(n=3000, seed=10 + i)
        if batch == "B2":  # CD3 brighter in this batch: its valley moves up
            adata.X[:, list(adata.var_names).index("BV650-A")] += 0.3
        sid = f"s{i}"
        adata.uns["nkflow"]["sample"].update(sample_id=sid, batch=batch)
        store[sid] = adata
        rows.append({"file": f"{sid}.fcs", "sample_id": sid, "tissue": "blood",
                     "batch": batch, "role": "unstim", "stimulation": "unstim"})  # fmt: skip
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        res = gate_batch(pd.DataFrame(rows), store, "human_blood", n_boot=0, max_shift=0.1)
    assert set(res.populations["sample_id"]) == {"s0", "s1", "s2"}
    cd3 = res.drift[(res.drift["marker"] == "CD3") & (res.drift["gate"] == "Lymphocytes")]
    assert cd3.set_index("batch")["drift"].any()
    assert any(issubclass(w.category, ThresholdDriftWarning) for w in rec)


def test_a_gate_with_too_few_events_is_empty_and_flagged_the_sample_goes_on():
    adata, truth = _tiny()
    nk = truth["NK"].to_numpy()
    keep = np.flatnonzero(~nk).tolist() + np.flatnonzero(nk)[:12].tolist()
    small = adata[sorted(keep)].copy()
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        table = gate(small, "human_blood", n_boot=0)
    rows = table.set_index("population")
    assert 0 < rows.loc["NK", "count"] < 50  # too few for the CD56 x NKp46 mixture
    assert rows.loc["NK", "low_events"]
    # not set, so not measured: NA rather than 0 % CD56bright and 100 % CD56dim
    for population in ("CD56bright", "CD56dim", "CD56bright_circNK", "CD56dim_circNK"):
        assert pd.isna(rows.loc[population, "count"]), population
        assert np.isnan(rows.loc[population, "percent_of_parent"]), population
    assert "CD56bright_circNK" in set(rows.index)  # gated below the empty gate, not failed
    # a density cut inside NK needs 50 NK as the bright/dim split does: not measured either
    assert pd.isna(rows.loc["NK_CD16+", "count"])
    assert rows.loc["NK", "count"] > 0  # gates that could be set are measured
    assert any(
        issubclass(w.category, LowEventCountWarning) and "CD56bright" in str(w.message) for w in rec
    )


def _zero_inflated(rng, n, p_zero, positives=0.0):
    """Mass-cytometry-like negative channel: a spike at 0 plus the count-noise shoulder."""
    v = np.abs(rng.normal(0.0, 0.15, n))
    v[rng.random(n) < p_zero] = 0.0
    pos = rng.random(n) < positives
    v[pos] = rng.normal(3.5, 0.4, pos.sum())
    return v, pos


@pytest.mark.parametrize("p_zero", [0.5, 0.75, 0.9])
@pytest.mark.parametrize("rule", [valley_threshold, gmm_threshold, mirror_threshold])
def test_zero_inflated_negative_channel_keeps_live_cells(p_zero, rule):
    v, _ = _zero_inflated(np.random.default_rng(3), 5000, p_zero)
    t, lo, hi, used, n = rule(v, n_boot=20)
    assert n == v.size and "zero-inflated" in used
    assert lo <= t <= hi
    assert np.mean(v > t) < 0.01  # the plain mirror cut away every non-zero event


@pytest.mark.parametrize("p_zero", [0.4, 0.75])
def test_zero_inflated_channel_with_positives_cuts_in_the_valley(p_zero):
    v, pos = _zero_inflated(np.random.default_rng(4), 5000, p_zero, positives=0.3)
    t, _, _, used, _ = valley_threshold(v, n_boot=0)
    assert used == "valley" and 0.5 < t < 3.0
    assert np.mean((v > t) == pos) > 0.99


@pytest.mark.parametrize(
    ("steps", "refused"),
    [
        ((), True),  # read only: raw linear values
        (("compensate",), True),  # compensated, still linear
        (("compensate", "transform"), False),
    ],
)
def test_gating_refuses_a_sample_that_was_never_transformed(sample_data, steps, refused):
    """Templates find their thresholds on the logicle/arcsinh scale: on linear values the
    gates look plausible and are wrong (sample_data's liver tube: 1 NKT-like cell instead
    of 194), so a container whose fluorescence was never transformed is refused."""
    from nkflow import pp
    from nkflow.io import read_fcs

    adata = read_fcs(sample_data / "human" / "D1_liver_pre_unstim.fcs")
    for step in steps:
        getattr(pp, step)(adata)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if refused:
            with pytest.raises(GatingError, match=r"not transformed .* nk\.pp\.transform"):
                gate(adata, "human_tissue", n_boot=0)
        else:
            assert gate(adata, "human_tissue", n_boot=0)["count"].sum() > 0


def test_a_container_transformed_by_hand_is_gated():
    adata, _ = _tiny(n=2000)  # logicle-like values, var["transform"] not filled in
    assert not set(adata.var.get("transform", pd.Series([""])).astype(str)) - {""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert gate(adata, "human_blood", n_boot=0)["count"].sum() > 0


def test_a_quantile_fallback_says_its_positives_are_set_by_construction(gated_liver):
    """Without an AREG FMO a tube is cut at its own 99.5th percentile: AREG+ is then ~0.5 %
    of NK in every tube, stimulated or not, and the warning says so."""
    adata = gated_liver[0].copy()
    with pytest.warns(MissingControlWarning) as caught:
        gate(adata, "human_tissue", n_boot=0)
    areg = [str(w.message) for w in caught if "for AREG" in str(w.message)]
    assert areg and "fallback rule 'quantile'" in areg[0]
    assert "top 0.5 % are positive by construction" in areg[0]


def test_gate_on_a_copy_returns_the_table_and_the_copy_apart(gated_liver):
    """The copy rode in the table's attrs: pd.concat of two tables raised (AnnData has no
    equality) and to_parquet could not serialise it."""
    adata = gated_liver[0].copy()
    adata.obs = adata.obs[[c for c in adata.obs.columns if adata.obs[c].dtype != bool]]
    before = set(adata.obs.columns)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table, gated = gate(adata, "human_tissue", n_boot=0, copy=True)
    assert set(adata.obs.columns) == before and "NK" in gated.obs.columns
    assert table.attrs == {}
    assert len(pd.concat([table, table])) == 2 * len(table)


def test_one_populations_events_are_refused_as_a_sample(gated_liver):
    """Results.kept_events (the NK events of a gated tube) gated again gave NK 0,
    CD56bright 0 and trNK 0 with 20 low-event warnings, and overwrote obs['NK']."""
    adata = gated_liver[0]
    nk_only = adata[adata.obs["NK"].to_numpy(bool)].copy()
    with pytest.raises(GatingError, match=r"every one of its .* events is in its gated "
                       r"population 'NK'.*gate the whole sample"):  # fmt: skip
        gate(nk_only, "human_tissue", n_boot=0)
    assert nk_only.obs["NK"].all()  # left as it was
    # its populations table read Cells, Lymphocytes, CD3- and NK as 100 % of their parents
    with pytest.raises(GatingError, match="give population_table the whole gated sample"):
        population_table(nk_only)


def test_a_debris_cut_below_every_event_keeps_all_without_a_false_interval():
    """PeacoQC 111.fcs: 'FSC valley (mirror) = 15,264, CI -34,336 to -23,577': the cut was
    moved up to the data's edge but kept the interval of the mirror below it."""
    from nkflow.gating.scatter import debris_polygon

    rng = np.random.default_rng(0)
    fsc = 50_000 + rng.exponential(20_000, 5000)  # cells only, a long upper tail: no debris
    ssc = rng.normal(30_000, 5_000, 5000)
    verts, (param,) = debris_polygon(fsc, ssc, {}, n_boot=50, random_state=0)
    assert param.name == "FSC valley (mirror below every event: none cut)"
    assert param.value == verts[0][0] < fsc.min()  # every event kept
    assert np.isnan(param.interval.result()).all()
    with_debris = np.r_[rng.normal(15_000, 4_000, 1500), fsc]  # a debris peak: a valley
    verts, (param,) = debris_polygon(with_debris, np.r_[ssc[:1500], ssc], {}, n_boot=50,
                                     random_state=0)  # fmt: skip
    lo, hi = param.interval.result()
    assert param.name == "FSC valley (valley)" and lo <= param.value <= hi
