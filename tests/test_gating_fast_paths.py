"""The fast paths of issue 18 give exactly the numbers of the numpy calls they replace.

Golden truth is numpy itself: ``np.median`` (singlet band bootstrap), ``np.histogram2d``
(gate-grid densities), ``np.quantile`` asked once per quantile (density-rule grid),
``np.histogram`` on the explicit edge array (the density rules' grid, now binned by
arithmetic), and the whole-sample evaluation of every resolved gate (polygon gates now
test parent events only).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from nkflow.gating.apply import gate
from nkflow.gating.density import (
    GRID_QUANTILES,
    N_BINS,
    _refined,
    _refined_modes,
    grid_quantiles,
    histogram_grid,
)
from nkflow.gating.gates import evaluate_gates, gate_from_dict
from nkflow.gating.scatter import _median
from nkflow.io import nkflow_uns
from nkflow.pl.gating_panels import _bin_index


def _samples(seed: int) -> list[np.ndarray]:
    """Odd and even sizes, ties, rounded values (signed zeros), a constant array."""
    rng = np.random.default_rng(seed)
    out = []
    for n in (1, 2, 3, 4, 7, 10, 101, 1000, 20_000, 20_001):
        out.append(rng.normal(size=n))
        out.append(np.round(rng.normal(scale=0.05, size=n), 1))  # many ties, -0.0
        out.append(rng.choice(rng.normal(size=max(2, n // 10)), n))  # bootstrap-like repeats
    out.append(np.full(9, 3.25))
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_median_bit_identical_to_numpy(seed: int) -> None:
    for v in _samples(seed):
        expected = np.float64(np.median(v))
        assert np.float64(_median(v)).tobytes() == expected.tobytes(), v.size


@pytest.mark.parametrize("values", [[1.0, np.nan, 2.0], [np.inf, 1.0], [-0.0, -0.0], [-0.0]])
def test_median_special_values(values: list[float]) -> None:
    """NaN propagates, inf and signed zeros come out as numpy gives them."""
    expected = np.float64(np.median(np.array(values)))
    assert np.float64(_median(np.array(values))).tobytes() == expected.tobytes()


@pytest.mark.parametrize("bins", [1, 2, 16, 96, 128])
def test_bin_index_counts_equal_histogram2d(bins: int) -> None:
    rng = np.random.default_rng(bins)
    x = np.r_[rng.normal(5e4, 2e4, 3000), np.round(rng.normal(size=500), 1)]
    y = np.r_[np.round(rng.exponential(size=3000) * 3), np.full(500, 2.0)]
    for a, b in ((x, y), (y, x), (np.full(50, 1.5), x[:50])):  # constant axis included
        h, xe, ye = np.histogram2d(a, b, bins=bins)
        ex, ix = _bin_index(a, bins)
        ey, iy = _bin_index(b, bins)
        counts = np.bincount(ix * bins + iy, minlength=bins * bins).reshape(bins, bins)
        assert np.array_equal(ex, xe) and np.array_equal(ey, ye)
        assert np.array_equal(counts.astype(float), h)


def test_quantiles_in_one_call_equal_separate_calls() -> None:
    rng = np.random.default_rng(3)
    for v in _samples(3):
        v = v + rng.normal(scale=1e-3, size=v.size)
        one = grid_quantiles(v)
        each = [np.quantile(v, q) for q in GRID_QUANTILES]
        assert np.array_equal(one, np.array(each))


@pytest.mark.parametrize("scale", [1e-3, 1.0, 5e4])
def test_grid_counts_equal_histogram_of_the_edge_array(scale: float) -> None:
    """Counts binned by arithmetic equal the sorted-search counts of the same edges.

    Events sit exactly on every edge and one float either side, and beyond both ends.
    """
    rng = np.random.default_rng(int(scale * 10) % 97)
    for _ in range(20):
        v = np.r_[rng.normal(size=3000), rng.normal(3.0, 0.2, 500)] * scale
        q = grid_quantiles(v)
        lo, hi = q[:2]
        pad = 0.05 * (hi - lo)
        edges = np.linspace(lo - pad, hi + pad, N_BINS + 1)
        probe = np.r_[v, edges, np.nextafter(edges, np.inf), np.nextafter(edges, -np.inf)]
        counts, centers, width = histogram_grid(probe, q)
        expected, _ = np.histogram(probe, bins=edges)
        assert np.array_equal(counts, expected.astype(np.float64))
        assert np.array_equal(centers, 0.5 * (edges[:-1] + edges[1:]))
        assert width == edges[1] - edges[0]


@pytest.mark.parametrize("sigma_bins", [1.0, 2.5, 7.5, 21.3])
def test_windowed_wide_smoothing_gives_the_filter_s_mode(sigma_bins: float) -> None:
    """The mirror rule's mode refined on windows of the wider smoothing equals the mode
    refined on the whole 1-D filter output, peaks at the edges of the bins included."""
    from scipy.ndimage import gaussian_filter1d

    rng = np.random.default_rng(5)
    draws = rng.multinomial(50_000, rng.dirichlet(np.full(256, 0.4)), size=60).astype(float)
    rough = rng.integers(0, 256, size=60)
    rough[:4] = [0, 1, 254, 255]
    modes = _refined_modes(draws, rough, sigma_bins)
    for i in range(60):
        wide = gaussian_filter1d(draws[i], 3.0 * sigma_bins, mode="constant")
        assert modes[i] == _refined(wide, int(rough[i]), sigma_bins), i


@pytest.mark.parametrize("unimodal", ["negative", "positive"])
@pytest.mark.parametrize("asked", ["all", "every_third", "late_dense", "first_only"])
def test_chunk_mirror_modes_equal_one_redraw_at_a_time(unimodal: str, asked: str) -> None:
    """Whichever rows ask (one by one first, then the rest of the chunk together), each
    gets the mode the mirror rule finds on that redraw alone."""
    from scipy.ndimage import gaussian_filter1d

    from nkflow.gating.density import _Chunk, _outer_peak, mirror_from_density
    from nkflow.gating.peaks import find_peaks

    rng = np.random.default_rng(6)
    p = rng.dirichlet(np.full(300, 0.3))
    draws = rng.multinomial(20_000, p, size=60).astype(float)
    rows = {
        "all": range(60),
        "every_third": range(0, 60, 3),
        "late_dense": [*range(0, 30, 5), *range(30, 60)],
        "first_only": [0],
    }[asked]
    chunk = _Chunk(draws, 4.0)
    centers = np.arange(300.0)
    for i in rows:
        dens = chunk.dens[i]
        top = dens.max()
        found = find_peaks(np.r_[0.0, dens, 0.0], prominence=0.05 * top, height=0.1 * top)
        wide = gaussian_filter1d(draws[i], 12.0, mode="constant")
        mode = chunk.mirror_mode(i, unimodal)
        assert mode == _refined(wide, _outer_peak(found, dens, unimodal), 4.0), i
        alone = mirror_from_density(draws[i], dens, centers, 2.0, unimodal, 4.0)
        assert mirror_from_density(draws[i], dens, centers, 2.0, unimodal, 4.0, _Fixed(mode)) == (
            alone
        ), i


class _Fixed:
    """A redraw whose mirror mode is given (to compare the rest of the rule)."""

    def __init__(self, mode: int) -> None:
        self._mode = mode

    def mirror_mode(self, unimodal: str) -> int:
        return self._mode


def test_gate_memberships_equal_whole_sample_evaluation(tiny_gated) -> None:
    """Every population from :func:`gate` equals its gate evaluated on all events."""
    adata = tiny_gated[0]
    pops = nkflow_uns(adata)["gating"]["populations"]
    gates = [gate_from_dict(p["gate"]) for p in pops]
    assert any(g.kind == "polygon" and g.parent for g in gates)
    expected = evaluate_gates(gates, pd.DataFrame(adata.X, columns=list(adata.var_names)))
    for g in gates:
        assert np.array_equal(adata.obs[g.id].to_numpy(bool), expected[g.id]), g.id


@pytest.fixture(scope="module")
def tiny_gated(sample_data):
    import nkflow as nk

    adata = nk.read_fcs(sample_data / "human" / "D1_liver_pre_unstim.fcs")
    nk.pp.compensate(adata)
    nk.pp.transform(adata)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gate(adata, "human_tissue", n_boot=10)
    return (adata,)


@pytest.mark.parametrize("threads", ["1", "2"])
def test_population_medians_equal_numpy_median(tiny_gated, threads: str, monkeypatch) -> None:
    """Per-population medians (partitioned in float32, one thread per population where
    cores are free) equal ``np.median`` of the float64 events, on any number of threads."""
    from nkflow.gating.stats import population_table

    monkeypatch.setenv("NKFLOW_NUM_THREADS", threads)
    adata = tiny_gated[0]
    table = population_table(adata, warn=False).set_index("population")
    markers = {m: i for i, m in enumerate(adata.var["marker"]) if f"median_{m}" in table}
    assert len(markers) >= 10
    for pop, row in table.iterrows():
        mask = adata.obs[pop].to_numpy(bool)
        for marker, col in markers.items():
            got = row[f"median_{marker}"]
            if not mask.any():
                assert np.isnan(got)
                continue
            expected = np.median(adata.X[mask, col].astype(np.float64))
            assert got == expected, (pop, marker)


@pytest.mark.parametrize("n_picked", [20_000, 20_001, 60_001])
@pytest.mark.parametrize("case", ["normal", "ties", "infinite", "signed_zeros", "median_zero"])
def test_bucket_medians_equal_partition_medians(n_picked: int, case: str, monkeypatch) -> None:
    """Medians taken from one histogram bucket are the partition's bits and np.median's
    values, also where the middle value is a zero of either sign (the partition decides)."""
    from nkflow.gating import stats

    assert n_picked >= stats._BUCKET_MIN  # the bucket path is the one tested
    n_events = n_picked + 1_000
    rng = np.random.default_rng(n_picked)
    x = rng.normal(0.4, 0.2, (6, n_events)).astype(np.float32)
    if case == "ties":
        x = np.round(x * 20) / 20
    elif case == "infinite":
        x[:, ::7], x[:, 1::11] = np.inf, -np.inf
    elif case == "signed_zeros":
        x[:, ::3], x[:, 1::5] = 0.0, -0.0
    elif case == "median_zero":  # most events zero, a quarter of them -0.0
        x[:, : n_events * 2 // 3], x[:, : n_events // 4] = 0.0, -0.0
    x = np.ascontiguousarray(rng.permuted(x, axis=1))
    idx = np.sort(rng.choice(n_events, n_picked, replace=False))
    got = stats._medians(x, idx, False)
    monkeypatch.setattr(stats, "_BUCKET_MIN", 10**12)  # partition only
    assert got.tobytes() == stats._medians(x, idx, False).tobytes()
    np.testing.assert_array_equal(got, np.median(x[:, idx].astype(np.float64), axis=1))


@pytest.mark.parametrize("n_rows", [0, 5, 8192, 8193, 70_001])
@pytest.mark.parametrize("threads", [1, 2])
def test_marker_major_copy_equals_the_transposed_columns(n_rows: int, threads: int) -> None:
    """The blocked, threaded copy for the medians equals ``X[:, cols].T``; NaN is found."""
    from nkflow._threads import set_default_threads
    from nkflow.gating.stats import _columns

    rng = np.random.default_rng(n_rows)
    x = rng.normal(size=(n_rows, 9)).astype(np.float32)
    cols = [7, 0, 3, 4]
    set_default_threads(threads)
    try:
        out, has_nan = _columns(x, cols)
        assert out.flags.c_contiguous and out.dtype == np.float32 and not has_nan
        assert np.array_equal(out, x[:, cols].T)
        if n_rows:
            x[n_rows - 1, 3] = np.nan
            assert _columns(x, cols)[1] and not _columns(x, [7, 0])[1]
    finally:
        set_default_threads(None)


def test_prefetched_columns_equal_columns_read_one_at_a_time(tiny_gated) -> None:
    from nkflow.gating.engine import _Columns

    adata = tiny_gated[0]
    names = [str(c) for c in adata.var_names]
    lazy, fetched = _Columns(adata), _Columns(adata)
    fetched.prefetch([names[3], names[0], names[3], "no such channel", names[-1]])
    for name in (names[3], names[0], names[-1]):
        assert fetched._cache[name].dtype == np.float64
        assert np.array_equal(fetched[name], lazy[name]), name
    assert names[1] not in fetched._cache
