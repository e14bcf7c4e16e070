"""nkflow.pp transforms against flowkit (flowutils) and on the container."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nkflow.exceptions import ChannelNotFoundError, ConfigError, TransformedDataError
from nkflow.io import detect_technology, read_fcs
from nkflow.pp import (
    arcsinh,
    arcsinh_inverse,
    compensate,
    estimate_logicle_w,
    logicle,
    logicle_inverse,
    transform,
)

fk = pytest.importorskip("flowkit")

# rtol is the 1e-6; atol only matters where the scale crosses 0
RTOL, ATOL = 1e-6, 1e-8

LOGICLE_PARAMS = [
    (262144.0, 0.5, 4.5, 0.0),
    (262144.0, 0.0, 4.5, 0.0),
    (262144.0, 1.5, 4.5, 0.0),
    (262144.0, 1.0, 4.0, 1.0),
    (10000.0, 0.5, 4.0, -0.25),
    (1024.0, 0.3, 3.0, 0.0),
]


def _values(n: int = 40_000) -> np.ndarray:
    rng = np.random.default_rng(7)
    edge = [0.0, -0.0, 1e-30, -1e-30, 1.0, -1.0, 262143.0, 262144.0, 1e6, -5e4]
    return np.concatenate(
        [
            rng.normal(0, 300, n),
            rng.lognormal(7, 2.5, n),
            -rng.lognormal(3, 2, n // 4),
            np.linspace(-2000, 2000, n // 4),
            edge,
        ]
    )


def _fk_logicle(v: np.ndarray, t: float, w: float, m: float, a: float) -> np.ndarray:
    return fk.transforms.LogicleTransform(t, w, m, a).apply(v.reshape(-1, 1)).ravel()


@pytest.mark.parametrize(("t", "w", "m", "a"), LOGICLE_PARAMS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logicle_matches_flowkit(t: float, w: float, m: float, a: float, dtype) -> None:
    v = _values().astype(dtype)
    ref = _fk_logicle(v.astype(np.float64), t, w, m, a)
    out = logicle(v, T=t, W=w, M=m, A=a)
    assert out.dtype == dtype
    if w == 0:
        # flowutils' solver does not converge for |v| = 1e-30 when W = 0 (it returns
        # +-6.87, far above the scale top 1.0); the true scale there is x1 = 0.
        tiny = (np.abs(v) > 0) & (np.abs(v) < 1e-20)
        np.testing.assert_allclose(out[tiny], 0.0, atol=1e-12)
        v, ref, out = v[~tiny], ref[~tiny], out[~tiny]
    np.testing.assert_allclose(out, ref, rtol=RTOL, atol=ATOL)
    if dtype is np.float64:  # the exact path is double precision
        np.testing.assert_allclose(out, ref, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize(("t", "w", "m", "a"), LOGICLE_PARAMS)
def test_logicle_inverse_round_trip(t: float, w: float, m: float, a: float) -> None:
    scale = np.linspace(-0.2, 1.1, 5001)
    back = logicle(logicle_inverse(scale, T=t, W=w, M=m, A=a), T=t, W=w, M=m, A=a)
    np.testing.assert_allclose(back, scale, rtol=1e-10, atol=1e-12)
    assert logicle_inverse(np.float64(1.0), T=t, W=w, M=m, A=a) == pytest.approx(t, rel=1e-12)


def test_logicle_shape_and_nonfinite() -> None:
    v = np.array([[np.nan, np.inf], [-np.inf, 0.0]], dtype=np.float32)
    out = logicle(v)
    assert out.shape == (2, 2)
    assert np.isnan(out[0, 0]) and out[0, 1] == np.inf and out[1, 0] == -np.inf
    assert out[1, 1] == pytest.approx(0.5 / 4.5)


@pytest.mark.parametrize(
    "params",
    [{"W": -0.1}, {"W": 3.0}, {"T": 0.0}, {"M": -1.0}, {"A": 5.0}, {"W": 1.0, "A": -2.0}],
)
def test_logicle_bad_params(params: dict) -> None:
    with pytest.raises(ConfigError, match="logicle"):
        logicle(np.ones(3), **params)


@pytest.mark.parametrize("cofactor", [5.0, 150.0, 1000.0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_arcsinh_matches_flowkit_mapping(cofactor: float, dtype) -> None:
    """flowkit's asinh(T, M, A=0) is asinh(x sinh(M ln10) / T) / (M ln10).

    With ``T = cofactor * sinh(M ln10)`` it equals ``arcsinh(x / cofactor) / (M ln10)``.
    """
    m = 4.5
    t = cofactor * math.sinh(m * math.log(10))
    v = _values().astype(dtype)
    ref = fk.transforms.AsinhTransform(t, m, 0.0).apply(v.astype(np.float64).reshape(-1, 1))
    out = arcsinh(v, cofactor=cofactor)
    assert out.dtype == dtype
    np.testing.assert_allclose(out / (m * math.log(10)), ref.ravel(), rtol=RTOL, atol=ATOL)
    back = arcsinh_inverse(out, cofactor=cofactor)
    np.testing.assert_allclose(back, v, rtol=1e-5, atol=1e-3 * cofactor)


def test_estimate_w_formula() -> None:
    rng = np.random.default_rng(3)
    v = np.concatenate([rng.normal(-100, 50, 5000), rng.lognormal(8, 1, 5000)])
    r = np.percentile(v[v < 0], 5)
    expected = (4.5 - math.log10(262144 / abs(r))) / 2
    assert estimate_logicle_w(v) == pytest.approx(expected)
    assert estimate_logicle_w(np.abs(v)) == 0.0
    assert estimate_logicle_w(np.array([-1e9, 1.0])) == 2.25  # clipped to M/2
    with pytest.raises(ConfigError, match="percentile"):
        estimate_logicle_w(v, percentile=0)


def _container() -> ad.AnnData:
    rng = np.random.default_rng(0)
    n = 3000
    x = np.column_stack(
        [
            rng.normal(60000, 9000, n),
            rng.normal(-50, 80, n),
            rng.lognormal(7, 1.5, n),
            np.linspace(0, 100, n),
        ]
    ).astype(np.float32)
    var = pd.DataFrame(
        {"kind": ["scatter", "fluorescence", "fluorescence", "time"], "transform": ""},
        index=["FSC-A", "FL1-A", "FL2-A", "Time"],
    )
    return ad.AnnData(X=x, var=var, uns={"nkflow": {"sample": {"sample_id": "s1"}}})


@pytest.mark.parametrize("method", ["logicle", "arcsinh"])
def test_transform_container(method: str) -> None:
    adata = _container()
    raw = adata.X.copy()
    out = transform(adata, method=method, inplace=False)
    assert np.array_equal(adata.X, raw)  # inplace=False leaves the input alone
    assert out.X.dtype == np.float32
    np.testing.assert_array_equal(out.X[:, [0, 3]], raw[:, [0, 3]])
    f = logicle if method == "logicle" else arcsinh
    np.testing.assert_array_equal(out.X[:, 1:3], f(raw[:, 1:3]))
    assert out.var["transform"].tolist() == ["linear", method, method, "linear"]
    rec = out.uns["nkflow"]["transform"]
    assert rec["kind"] == method and sorted(rec["params"]) == ["FL1-A", "FL2-A"]
    key = "W" if method == "logicle" else "cofactor"
    assert rec["params"]["FL1-A"][key] == (0.5 if method == "logicle" else 150.0)


def test_transform_overrides_and_estimate_w() -> None:
    adata = _container()
    raw = adata.X.copy()
    transform(adata, estimate_w=True, params={"FL2-A": {"W": 1.0, "T": 100000}})
    p = adata.uns["nkflow"]["transform"]["params"]
    assert p["FL2-A"] == {"T": 100000.0, "W": 1.0, "M": 4.5, "A": 0.0}
    w1 = estimate_logicle_w(raw[:, 1])
    assert p["FL1-A"]["W"] == pytest.approx(w1) and w1 > 0
    np.testing.assert_array_equal(adata.X[:, 1], logicle(raw[:, 1], W=w1))
    np.testing.assert_array_equal(adata.X[:, 2], logicle(raw[:, 2], T=100000, W=1.0))


def test_transform_scattered_channels() -> None:
    """Channels out of file order, a scatter channel included, two logicle settings."""
    adata = _container()
    raw = adata.X.copy()
    transform(adata, channels=["FL2-A", "FSC-A"], params={"FSC-A": {"W": 0.0}})
    np.testing.assert_array_equal(adata.X[:, 2], logicle(raw[:, 2]))
    np.testing.assert_array_equal(adata.X[:, 0], logicle(raw[:, 0], W=0.0))
    np.testing.assert_array_equal(adata.X[:, [1, 3]], raw[:, [1, 3]])
    assert adata.var["transform"].tolist() == ["logicle", "linear", "logicle", "linear"]


def test_transform_from_compensated_layer_and_guards() -> None:
    adata = _container()
    adata.uns["nkflow"]["spillover"] = {
        "channels": ["FL1-A", "FL2-A"],
        "matrix": [[1.0, 0.1], [0.02, 1.0]],
    }
    compensate(adata)
    comp = adata.layers["compensated"].copy()
    transform(adata, method="arcsinh", cofactor=5, channels=["FL2-A"])
    transform(adata)  # starts again from layers["compensated"]
    np.testing.assert_array_equal(adata.layers["compensated"], comp)
    np.testing.assert_array_equal(adata.X[:, 1], logicle(comp[:, 1]))
    bare = _container()
    transform(bare)
    with pytest.raises(ConfigError, match="already transformed"):
        transform(bare)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"method": "log"}, ConfigError, "valid: \\['auto', 'logicle', 'arcsinh'\\]"),
        ({"channels": ["PE-A"]}, ChannelNotFoundError, "PE-A"),
        ({"params": {"PE-A": {"W": 1}}}, ChannelNotFoundError, "PE-A"),
        ({"params": {"FL1-A": {"cofactor": 5}}}, ConfigError, "cofactor"),
        ({"method": "arcsinh", "cofactor": 0}, ConfigError, "cofactor"),
        ({"W": 4}, ConfigError, "W must lie"),
    ],
)
def test_transform_errors(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        transform(_container(), **kwargs)


MASS = detect_technology({"$CYT": "Helios"}, ["Time", "Event_length", "Yb173Di", "Nd142Di"])


@pytest.mark.parametrize(
    ("record", "kwargs", "kind", "key", "value"),
    [
        (None, {}, "logicle", "W", 0.5),  # no record: conventional flow assumed
        (MASS, {}, "arcsinh", "cofactor", 5.0),  # mass cytometry: arcsinh / 5
        (MASS, {"method": "arcsinh"}, "arcsinh", "cofactor", 5.0),  # its cofactor too
        (MASS, {"cofactor": 15.0}, "arcsinh", "cofactor", 15.0),  # a given cofactor wins
        (MASS, {"method": "logicle"}, "logicle", "W", 0.5),  # an explicit method wins
        (None, {"method": "arcsinh"}, "arcsinh", "cofactor", 150.0),  # flow arcsinh: 150
    ],
    ids=["flow-auto", "mass-auto", "mass-arcsinh", "mass-cofactor", "mass-logicle", "flow-asinh"],
)
def test_auto_follows_recorded_technology(record, kwargs, kind, key, value) -> None:
    adata = _container()
    if record is not None:
        adata.uns["nkflow"]["technology"] = record.to_dict()
    raw = adata.X.copy()
    transform(adata, **kwargs)
    rec = adata.uns["nkflow"]["transform"]
    assert rec["kind"] == kind and rec["requested"] == kwargs.get("method", "auto")
    assert {p[key] for p in rec["params"].values()} == {value}
    expected = arcsinh(raw[:, 1:3], cofactor=value) if kind == "arcsinh" else logicle(raw[:, 1:3])
    np.testing.assert_array_equal(adata.X[:, 1:3], expected)
    assert rec["reason"]


def test_read_compensate_logicle_matches_flowkit(external: Path) -> None:
    """The whole chain on a real LSRII file equals flowkit's xform events."""
    fcs = external / "flowkit/data/test_comp_example.fcs"
    csv = external / "flowkit/data/comp_complete_example.csv"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = read_fcs(fcs)
        sample = fk.Sample(str(fcs), ignore_offset_error=True)
    compensate(adata, matrix=csv)
    transform(adata)
    sample.apply_compensation(str(csv))
    sample.apply_transform(fk.transforms.LogicleTransform(262144, 0.5, 4.5, 0))
    ref = sample.get_events(source="xform")
    fluo = (adata.var["kind"] == "fluorescence").to_numpy()
    assert fluo.sum() == 14
    np.testing.assert_allclose(adata.X[:, fluo], ref[:, fluo], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(adata.X[:, ~fluo], ref[:, ~fluo], rtol=RTOL)


@settings(max_examples=60, deadline=None)
@given(
    values=hnp.arrays(
        np.float32,
        st.integers(1, 200),
        elements=st.floats(-1e6, 1e7, allow_nan=False, width=32),
    ),
    w=st.floats(0.0, 2.0),
)
def test_logicle_table_path_is_exact_and_monotone(values: np.ndarray, w: float) -> None:
    """The float32 table path agrees with the double-precision solver, and is monotone.

    (To within float32 rounding: the table's entries are rounded, so two neighbouring
    bins may disagree by an ulp at their shared edge.)
    """
    fast = logicle(values, W=w)
    exact = logicle(values.astype(np.float64), W=w)
    np.testing.assert_allclose(fast, exact, rtol=RTOL, atol=ATOL)
    order = np.argsort(values, kind="stable")
    assert np.all(np.diff(fast[order]) >= -2.5e-7)


@pytest.mark.parametrize("block_strided", [False, True])
@pytest.mark.parametrize("out_strided", [False, True])
def test_logicle_table_path_same_bits_on_strided_views(block_strided: bool, out_strided: bool):
    """A column range of a row chunk (as transform() passes) gives the contiguous bits."""
    from nkflow.pp import _logicle

    p = _logicle.logicle_params(262144.0, 0.5, 4.5, 0.0)
    values = _values(2_500).astype(np.float32)  # 6,260 values, the edge cases last
    wide = values[-6_000:][::-1].reshape(1_000, 6)  # edge cases in the first rows
    expected = np.empty((1_000, 4), dtype=np.float32)
    _logicle.scale_float32(p, np.ascontiguousarray(wide[:, 1:5]), expected)
    block = wide[:, 1:5] if block_strided else np.ascontiguousarray(wide[:, 1:5])
    target = np.full((1_000, 6), np.nan, dtype=np.float32)
    out = target[:, 1:5] if out_strided else np.empty((1_000, 4), dtype=np.float32)
    _logicle.scale_float32(p, block, out)
    assert np.array_equal(out.view(np.uint32), expected.view(np.uint32))
    if out_strided:  # the columns around the range are left alone
        assert np.isnan(target[:, [0, 5]]).all()


@pytest.mark.parametrize(
    ("compensation", "warned"), [(None, True), ("file", False), ("none", False)]
)
def test_transform_warns_when_a_spillover_was_never_applied(
    sample_data: Path, compensation: str | None, warned: bool
) -> None:
    """A notebook that skips ``compensate`` on a file with a spillover matrix is told so;
    ``compensate(matrix="none")`` records the choice and silences it."""
    from nkflow.exceptions import NkflowWarning

    adata = read_fcs(sample_data / "human" / "D1_liver_pre_unstim.fcs")
    if compensation is not None:
        compensate(adata, matrix=compensation)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        transform(adata)
    told = [w for w in caught if issubclass(w.category, NkflowWarning)]
    assert bool(told) == warned
    assert all("without compensation" in str(w.message) for w in told)


@pytest.mark.parametrize("method", ["auto", "logicle", "arcsinh"])
def test_transformed_export_is_not_transformed_again(method: str, transformed_export: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = read_fcs(transformed_export)
    before = np.asarray(adata.X).copy()
    with pytest.raises(TransformedDataError, match=r"flowcore_export\.fcs: .*already transformed"):
        transform(adata, method=method)  # type: ignore[arg-type]
    assert "transform" not in adata.uns["nkflow"] and set(adata.var["transform"]) == {""}
    np.testing.assert_array_equal(adata.X, before)


@pytest.mark.parametrize("method", ["logicle", "arcsinh"])
def test_a_gated_sample_is_not_transformed_again(sample_data: Path, method: str) -> None:
    """A second transform rebuilt X from the compensated layer on another scale and kept
    the gates and cut-offs of the first: AREG+ NK went from 12 to 2,069 of 2,326."""
    from nkflow.gating import gate

    adata = read_fcs(sample_data / "human" / "D1_liver_pre_unstim.fcs")
    compensate(adata)
    transform(adata)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gate(adata, "human_tissue", n_boot=0)
    before, obs = np.asarray(adata.X).copy(), adata.obs.copy()
    with pytest.raises(ConfigError, match=r"D1_liver_pre_unstim: already gated"):
        transform(adata, method=method)  # type: ignore[arg-type]
    np.testing.assert_array_equal(adata.X, before)
    pd.testing.assert_frame_equal(adata.obs, obs)
