"""nkflow.pp QC: simulated clogs, clean acquisitions, margins, real PeacoQC file."""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from nkflow.exceptions import ChannelNotFoundError
from nkflow.io import read_fcs
from nkflow.pp import compensate, qc, qc_margins, qc_time, transform

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
    assert passed[~in_clog].mean() >= 0.98
    rec = adata.uns["nkflow"]["qc"]
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
    rec = out.uns["nkflow"]["qc"]
    assert set(rec) == {"n_in", "n_out", "removed_time", "removed_margin", "bins_removed", "params"}
    assert out.n_obs == rec["n_out"] == rec["n_in"] - rec["removed_time"] - rec["removed_margin"]
    assert out.obs["qc_pass"].all()
    p = rec["params"]["time_qc"]
    assert p["mad_threshold"] == 6.0 and p["time_channel"] == "Time" and p["skipped"] is None
    assert p["events_per_bin"] == 400 and p["bins"] == 100


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


def test_time_qc_on_transformed_data() -> None:
    adata = acquisition(clog=(12_000, 14_000))
    transform(adata)
    res = qc_time(adata)
    passed = adata.obs["qc_time_pass"].to_numpy()
    assert res["removed"] == adata.n_obs - passed.sum()
    assert not passed[12_100:13_900].any() and passed[:11_000].all()


def test_peacoqc_file(external: Path) -> None:
    """Real LSRII file. Weak oracle: PeacoQC's output file keeps 9,617 of 10,000 events.

    nkflow removes the start-up transient (the first ~900 events, where several
    channel medians climb from below zero to their plateau) and ~70 margin events.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = read_fcs(external / "peacoqc/inst/extdata/111.fcs")
    qc(adata, remove=False, margin_kwargs={"key_added": "qc_margin_pass"})
    rec = adata.uns["nkflow"]["qc"]
    assert 8_500 <= rec["n_out"] <= 9_617
    assert 30 <= rec["removed_margin"] <= 200
    failed_time = ~adata.obs["qc_pass"].to_numpy() & adata.obs["qc_margin_pass"].to_numpy()
    assert failed_time[:1000].sum() >= 0.8 * failed_time.sum()


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
