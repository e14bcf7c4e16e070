"""nkflow.pp QC: simulated clogs, clean acquisitions, margins, cost in channels."""

from __future__ import annotations

import itertools

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from growth import growth_exponent

from nkflow.datasets import simulate_sample
from nkflow.exceptions import ChannelNotFoundError, ConfigError
from nkflow.io import channel_kind, nkflow_uns
from nkflow.pp import apply_qc, compensate, qc, qc_events, qc_margins, qc_time, transform

NAMES = ["FSC-A", "SSC-A", "FL1-A", "FL2-A", "FL3-A", "FL4-A", "Time"]
KINDS = ["scatter", "scatter", "fluorescence", "fluorescence", "fluorescence", "fluorescence"]


def acquisition(
    n: int = 40_000,
    *,
    clog: tuple[int, int] | None = None,
    rate_drop: float = 4.0,
    signal: float = 0.6,
    drift: float = 0.3,
    seed: int = 0,
    time: bool = True,
) -> ad.AnnData:
    """Poisson arrivals; a clog slows the flow and dims the signal over events [a, b)."""
    rng = np.random.default_rng(seed)
    dt = rng.exponential(1.0, n)
    scale = np.ones(n)
    if clog is not None:
        dt[clog[0] : clog[1]] *= rate_drop
        scale[clog[0] : clog[1]] = signal
    slow = 1 + drift * np.linspace(0, 1, n)  # a smooth drift is not an anomaly
    fl = rng.lognormal(6, 1, (n, 4)) * (scale * slow)[:, None] + rng.normal(0, 50, (n, 4))
    cols = [rng.normal(60000, 15000, (n, 2)).clip(1, None), fl]
    names, kinds = NAMES[:6], list(KINDS)
    if time:
        cols.append(np.cumsum(dt)[:, None] * 0.01)
        names, kinds = [*names, "Time"], [*kinds, "time"]
    var = pd.DataFrame({"kind": kinds, "range": 262144.0, "transform": ""}, index=names)
    uns = {"nkflow": {"sample": {"sample_id": "sim"}}}
    return ad.AnnData(X=np.column_stack(cols).astype(np.float32), var=var, uns=uns)


@pytest.mark.parametrize(
    ("clog", "rate_drop", "signal"),
    [
        ((12_000, 14_000), 4.0, 0.6),  # aligned to nothing in particular
        ((20_150, 20_750), 4.0, 0.6),  # short: 600 events
        ((35_000, 40_000), 3.0, 0.7),  # at the end of the run
        ((8_333, 10_333), 5.0, 1.0),  # flow-rate drop only
        ((8_333, 10_333), 1.0, 0.7),  # signal shift only
    ],
)
def test_clog_removed(clog: tuple[int, int], rate_drop: float, signal: float) -> None:
    adata = acquisition(clog=clog, rate_drop=rate_drop, signal=signal)
    qc(adata, remove=False)
    passed = adata.obs["qc_pass"].to_numpy()
    in_clog = np.zeros(adata.n_obs, dtype=bool)
    in_clog[clog[0] : clog[1]] = True
    assert 1 - passed[in_clog].mean() >= 0.95  # bins mixing clog and clean events may stay
    rec = adata.uns["nkflow"]["qc"]
    p = rec["params"]["time_qc"]
    # per clog edge at most the clean part of one mixed bin plus the guard
    assert (~passed[~in_clog]).sum() <= 2 * (1 + p["guard"]) * p["events_per_bin"]
    assert rec["removed_time"] == adata.n_obs - passed.sum() - rec["removed_margin"]
    assert rec["bins_removed"] >= (clog[1] - clog[0]) // rec["params"]["time_qc"]["events_per_bin"]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n", [5_000, 60_000])
def test_clean_acquisition_kept(seed: int, n: int) -> None:
    adata = acquisition(n, seed=seed)
    qc(adata)
    assert adata.n_obs / n >= 0.98
    rec = adata.uns["nkflow"]["qc"]
    assert rec["n_in"] == n and rec["n_out"] == adata.n_obs


def test_remove_and_record() -> None:
    adata = acquisition(clog=(12_000, 14_000))
    out = qc(adata, inplace=False)
    assert "qc" not in adata.uns["nkflow"]  # input untouched
    rec = nkflow_uns(out)["qc"]
    assert set(rec) == {
        "n_in",
        "n_out",
        "removed_time",
        "removed_margin",
        "removed_fraction",
        "removed_time_fraction",
        "removed_margin_fraction",
        "bins_removed",
        "time_qc",
        "time_qc_skipped",
        "margins_checked",
        "time_stretches",
        "summary",
        "params",
    }
    assert out.n_obs == rec["n_out"] == rec["n_in"] - rec["removed_time"] - rec["removed_margin"]
    assert rec["removed_fraction"] == pytest.approx(1 - rec["n_out"] / rec["n_in"])
    assert rec["removed_time_fraction"] == pytest.approx(rec["removed_time"] / rec["n_in"])
    assert rec["time_qc"] == "ran" and rec["time_qc_skipped"] is None
    (stretch,) = rec["time_stretches"]  # the one clog, events 12,000-14,000
    assert stretch["events"] == rec["removed_time"] and stretch["kind"] == "shift"
    assert stretch["first_event"] <= 12_000 and stretch["last_event"] >= 13_999
    assert stretch["last_event"] - stretch["first_event"] + 1 == stretch["events"]
    assert stretch["signals"][0].startswith("flow rate down")
    assert f"{rec['n_out']:,} of 40,000" in rec["summary"]
    assert f"{stretch['first_event']:,}-{stretch['last_event']:,}" in rec["summary"]
    assert out.obs["qc_pass"].all()
    p = rec["params"]["time_qc"]
    assert p["mad_threshold"] == 6.0 and p["time_channel"] == "Time" and p["skipped"] is None
    assert p["events_per_bin"] == 400 and p["bins"] == 100


@pytest.mark.parametrize("remove", [True, False])
def test_qc_is_its_outcome_applied(remove: bool) -> None:
    """qc() = qc_events() (which leaves the container alone) + apply_qc()."""
    adata = acquisition(clog=(12_000, 14_000))
    passed, record = qc_events(adata)
    assert "qc" not in adata.uns["nkflow"] and "qc_pass" not in adata.obs
    assert int(passed.sum()) == record["n_out"] < adata.n_obs
    whole = qc(adata, remove=remove, inplace=False)
    applied = apply_qc(adata, passed, record, remove=remove, inplace=False)
    assert whole.uns["nkflow"]["qc"] == applied.uns["nkflow"]["qc"]
    assert applied.uns["nkflow"]["qc"]["params"]["remove"] is remove
    assert whole.obs_names.equals(applied.obs_names)
    assert np.array_equal(whole.X, applied.X)
    assert np.array_equal(whole.obs["qc_pass"], applied.obs["qc_pass"])


def test_apply_qc_refuses_an_outcome_of_other_events() -> None:
    adata = acquisition()
    passed, record = qc_events(acquisition(n=30_000))
    with pytest.raises(ValueError, match="does not fit 40000 events"):
        apply_qc(adata, passed, record)
    assert "qc" not in adata.uns["nkflow"]


def test_qc_refuses_events_it_already_removed_events_from() -> None:
    """A second qc() read the gap the first left as a flow-rate drop, removed 100 more good
    events ("spike: flow rate down") and overwrote the record of the real clog. Flagging
    only (remove=False) may run again: the events are all there."""
    adata = acquisition(clog=(12_000, 14_000))
    qc(adata, remove=False)
    qc(adata)  # the flags replaced, then the removal
    first = dict(adata.uns["nkflow"]["qc"])
    with pytest.raises(ConfigError, match=r"sim: QC already removed events .*40000 -> "):
        qc(adata)
    passed, record = qc_events(adata)
    with pytest.raises(ConfigError, match="not run twice"):
        apply_qc(adata, passed, record)
    assert adata.uns["nkflow"]["qc"] == first and adata.n_obs == first["n_out"]


def test_margins() -> None:
    adata = acquisition(2_000, seed=4)
    adata.X[:5, 0] = 262143.0  # saturated FSC
    adata.X[10:20, 3] = adata.X[:, 3].min() - 5  # pile-up at the minimum of FL2-A
    res = qc_margins(adata)  # lower margin on scatter only by default
    assert res["removed"] == 5 and (~adata.obs["qc_margin_pass"].to_numpy()[:5]).all()
    res = qc_margins(adata, lower_kinds=("scatter", "fluorescence"))
    flagged = ~adata.obs["qc_margin_pass"].to_numpy()
    assert res["removed"] == 15 and flagged[:5].all() and flagged[10:20].all()
    assert res["per_channel"]["FSC-A"] == 5 and res["per_channel"]["FL2-A"] == 10
    res = qc_margins(adata, channels=["FL2-A"], upper=False)
    assert res["removed"] == 10
    with pytest.raises(ChannelNotFoundError, match="PE-A"):
        qc_margins(adata, channels=["PE-A"])


@pytest.mark.parametrize(
    ("keywords", "ceiling"),
    [
        ({}, 1023.0),
        ({"$P2G": "4"}, 1023.0 / 4),
        ({"$P2E": "4,0"}, 10 ** (4 * 1023 / 1024)),
        ({"$P2E": "3,2"}, 2 * 10 ** (3 * 1023 / 1024)),
    ],
)
def test_margin_ceiling_decoded_like_events(keywords: dict, ceiling: float) -> None:
    """FACSCalibur-style channels: $PnR=1024 is a channel number, not a value."""
    adata = acquisition(1_000, seed=6, time=False)
    adata.var["range"] = 1024.0
    adata.uns["nkflow"]["fcs"] = {"keywords": keywords}
    adata.X[:, 1] = np.linspace(0, ceiling, adata.n_obs)
    adata.X[:, 0] = 10.0
    adata.X[:, 2:] = 1.0
    adata.X[:7, 1] = ceiling
    res = qc_margins(adata, lower=False)
    assert res["per_channel"]["SSC-A"] == 8  # 7 set + the last of the ramp
    assert res["params"]["no_ceiling"] == []


def test_margin_skips_channels_without_ceiling() -> None:
    """Mass cytometry: $PnR is far below the counts, so it is no ceiling."""
    adata = acquisition(1_000, seed=7, time=False)
    adata.var["range"] = 100.0
    res = qc_margins(adata)
    assert res["params"]["no_ceiling"] == ["FSC-A", "SSC-A", "FL1-A", "FL2-A", "FL3-A", "FL4-A"]
    assert res["removed"] == 0


def test_margins_after_compensation_use_raw_values() -> None:
    adata = acquisition(2_000, seed=5, time=False)
    adata.X[:3, 2] = 262143.0
    adata.uns["nkflow"]["spillover"] = {
        "channels": ["FL1-A", "FL2-A"],
        "matrix": [[1.0, 0.3], [0.1, 1.0]],
    }
    compensate(adata)
    res = qc_margins(adata, lower=False)
    assert res["removed"] == 3


def test_no_time_channel_skipped() -> None:
    adata = acquisition(3_000, time=False, clog=(1000, 1500))
    qc(adata)
    rec = adata.uns["nkflow"]["qc"]
    assert rec["params"]["time_qc"]["skipped"] == "no Time channel"
    assert rec["removed_time"] == 0 and rec["bins_removed"] == 0
    assert rec["time_qc"] == "skipped" and rec["time_qc_skipped"] == "no Time channel"
    assert rec["time_stretches"] == [] and "Time QC was skipped: no Time channel" in rec["summary"]


def test_time_qc_on_transformed_data() -> None:
    adata = acquisition(clog=(12_000, 14_000))
    transform(adata)
    res = qc_time(adata)
    passed = adata.obs["qc_time_pass"].to_numpy()
    assert res["removed"] == adata.n_obs - passed.sum()
    assert not passed[12_100:13_900].any() and passed[:11_000].all()


@pytest.mark.parametrize("guard", [0.0, 0.5, 3.0])
def test_stretches_partition_the_removed_events(guard: float) -> None:
    """Two clogs close together: stretches never overlap and add up to ``removed``."""
    adata = acquisition(clog=(12_000, 14_000))
    adata.X[15_500:17_000, 2:6] *= 0.6  # a second, signal-only shift
    res = qc_time(adata, guard=guard)
    failed = ~res["passed"]
    stretches = res["stretches"]
    assert sum(s["events"] for s in stretches) == res["removed"] == failed.sum()
    for s, nxt in itertools.pairwise(stretches):
        assert s["last_event"] < nxt["first_event"]
    for s in stretches:
        assert failed[s["first_event"] : s["last_event"] + 1].all()
    assert failed[12_400:13_600].all() and failed[15_600:16_800].all()  # whole bins


def test_time_qc_skips_unusable_time() -> None:
    few = acquisition(1_500)
    res = qc_time(few)
    assert res["skipped"].startswith("too few events") and res["removed"] == 0
    shuffled = acquisition(10_000)
    shuffled.X[:, 6] = np.random.default_rng(0).permutation(shuffled.X[:, 6])
    assert "not increasing" in qc_time(shuffled)["skipped"]


def test_coarse_time_resolution_drops_flow_rate() -> None:
    """Time in whole seconds: most bins have no measurable duration; medians still work."""
    adata = acquisition(clog=(12_000, 14_000), rate_drop=1.0)
    adata.X[:, 6] = np.floor(adata.X[:, 6] / 20)
    res = qc_time(adata)
    assert res["params"]["flow_rate_used"] is False
    passed = adata.obs["qc_time_pass"].to_numpy()
    assert not passed[12_400:13_600].any() and passed[:11_000].all()


def test_implausible_margin_channel_left_out(caplog: pytest.LogCaptureFixture) -> None:
    adata = acquisition(2_000, seed=8, time=False)
    adata.X[:600, 1] = adata.X[:, 1].min()  # 30% (+ the minimum itself) of SSC at its floor
    adata.X[:4, 0] = 262143.0
    res = qc_margins(adata)
    assert res["params"]["implausible"] == ["SSC-A"] and res["per_channel"]["SSC-A"] == 601
    assert res["removed"] == 4
    assert "SSC-A" in caplog.text


def simulated(tissue: str, seed: int, clog: bool, technology: str = "flow") -> tuple:
    """A small nkflow.datasets tube as AnnData, and its truth ``qc_anomaly`` per event."""
    sim = simulate_sample(
        "human", tissue, n_events=5_000, clog=clog, random_state=seed, technology=technology
    )
    ranges = sim.ranges if sim.ranges is not None else [262144.0] * len(sim.channels)
    kinds = [channel_kind(c) for c in sim.channels]
    var = pd.DataFrame({"kind": kinds, "range": ranges, "transform": ""}, index=sim.channels)
    uns = {"nkflow": {"sample": {"sample_id": f"{tissue}-{seed}"}}}
    adata = ad.AnnData(X=sim.data, var=var, uns=uns)
    return adata, sim.truth["qc_anomaly"].to_numpy()


CASES = [(t, s, "flow") for t in ("blood", "liver", "lung") for s in range(5)]
CASES += [(t, s, "mass") for t in ("blood", "liver") for s in range(3)]


@pytest.mark.parametrize(("tissue", "seed", "technology"), CASES)
def test_simulated_clog_recall(tissue: str, seed: int, technology: str) -> None:
    """Truth: >= 95% of the events acquired during a clog (ramped build-up) removed."""
    adata, anomaly = simulated(tissue, seed, True, technology)
    qc(adata, remove=False)
    passed = adata.obs["qc_pass"].to_numpy()
    assert 1 - passed[anomaly].mean() >= 0.95
    rec = adata.uns["nkflow"]["qc"]
    assert len(rec["time_stretches"]) == 1  # one clog, one stretch


@pytest.mark.parametrize(("tissue", "seed", "technology"), CASES)
def test_simulated_clean_not_removed(tissue: str, seed: int, technology: str) -> None:
    """Truth: a clean acquisition loses <= 1% of its events to time QC."""
    adata, anomaly = simulated(tissue, seed, False, technology)
    assert not anomaly.any()
    qc(adata, remove=False)
    rec = adata.uns["nkflow"]["qc"]
    assert rec["time_qc"] == "ran"
    assert rec["removed_time_fraction"] <= 0.01


def test_bimodal_channel_is_not_a_shift() -> None:
    """A marker half positive, half negative: bin medians jump between the modes by
    chance, so median scores flagged clean files; mean ranks have a known noise."""
    n = 20_000
    rng = np.random.default_rng(3)
    adata = acquisition(n, seed=3, drift=0.0)
    pos = rng.random(n) < 0.5
    adata.X[:, 2] = np.where(pos, rng.lognormal(9, 0.3, n), rng.normal(0, 60, n))
    res = qc_time(adata, events_per_bin=100)
    assert res["removed"] == 0


@pytest.mark.parametrize("transformed", [False, True])
def test_time_qc_same_on_linear_and_transformed(transformed: bool) -> None:
    """Channels are compared through ranks: a monotone transform changes nothing."""
    adata = acquisition(clog=(12_000, 14_000))
    if transformed:
        transform(adata)
    passed = qc_time(adata)["passed"]
    expected = qc_time(acquisition(clog=(12_000, 14_000)))["passed"]
    assert np.array_equal(passed, expected)


def wide(n_channels: int, n_events: int = 3) -> ad.AnnData:
    names = [f"P{i}-A" for i in range(n_channels)] + ["Time"]
    kinds = ["scatter", "scatter"] + ["fluorescence"] * (n_channels - 2) + ["time"]
    var = pd.DataFrame({"kind": kinds, "range": 262144.0, "transform": ""}, index=names)
    x = np.random.default_rng(0).uniform(0, 1000, (n_events, n_channels + 1))
    x[:, -1] = np.arange(n_events)
    keywords = {f"$P{i + 1}R": "262144" for i in range(n_channels + 1)}
    uns = {"nkflow": {"sample": {"sample_id": "wide"}, "fcs": {"keywords": keywords}}}
    return ad.AnnData(X=x.astype(np.float32), var=var, uns=uns)


def test_cost_linear_in_channels() -> None:
    """Issue 13: a file declaring 100,000 parameters spent minutes in QC (quadratic)."""

    def qc_of_width(n_channels: int):
        adata = wide(n_channels)
        return lambda: qc(adata.copy(), remove=False)

    exponent = growth_exponent(qc_of_width, [2_000, 4_000, 8_000, 16_000, 32_000])
    assert exponent < 1.5  # time ~ channels**exponent: linear 1, quadratic 2


RANK_CASES = ["continuous", "ties", "signed_zeros", "infinite", "nan", "constant", "sorted"]


def rank_column(case: str, dtype: type, n: int = 30_000) -> np.ndarray:
    rng = np.random.default_rng(11)
    col = rng.normal(size=n).astype(dtype)
    if case == "ties":
        col = np.round(col * 3)
    elif case == "signed_zeros":
        col[::3], col[1::7] = 0.0, -0.0
    elif case == "infinite":
        col[::17], col[::19] = np.inf, -np.inf
    elif case == "nan":  # NaN of both signs: their bits order them first and last
        col[::13], col[5::11] = np.nan, -np.nan
    elif case == "constant":
        col[:] = 2.0
    elif case == "sorted":
        col = np.sort(col)
    return col


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", RANK_CASES)
def test_radix_argsort_sorts_like_argsort(case: str, dtype: type) -> None:
    """The radix order gives np.sort's values (NaN last); only equal values may swap."""
    from nkflow._order import radix_argsort

    col = rank_column(case, dtype)
    order = radix_argsort(col)
    assert np.array_equal(np.sort(order), np.arange(col.size))
    np.testing.assert_array_equal(col[order], np.sort(col))  # NaN positions must match too


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", RANK_CASES)
def test_rank_signals_equal_mid_ranks_searched_per_event(case: str, dtype: type) -> None:
    """Mean mid-ranks per bin equal the definition: (#ref < v + #ref <= v) / 2 / ref size.

    A NaN event ranks 1; a NaN in the reference counts in its size, below no value.
    """
    from nkflow.pp.timeqc import _bin_edges, _rank_signals

    n = 30_000
    col = rank_column(case, dtype, n)
    edges = _bin_edges(n, 300)
    means, se = _rank_signals(col[None, :], edges)
    ref = np.sort(col[:: max(1, n // 20_000)])
    u = (np.searchsorted(ref, col, "left") + np.searchsorted(ref, col, "right")) / 2 / ref.size
    u[np.isnan(col)] = 1.0
    expected = np.add.reduceat(u, edges[:-1]) / np.diff(edges)
    np.testing.assert_allclose(means[:, 0], expected, rtol=0, atol=1e-12)
    epb = float(np.diff(edges)[:-1].min())
    assert se[0] == pytest.approx(u.std() / np.sqrt(epb), rel=1e-12)
