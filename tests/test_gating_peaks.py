"""nkflow's peak finder gives exactly the peaks and prominences of scipy's ``find_peaks``.

Golden truth is :func:`scipy.signal.find_peaks` itself (nkflow no longer imports it): the
same positions and bit-identical prominences for single rows and for blocks of rows, with
plateaus, ties, edges and the mirror rule's zero-padded rows with a height condition. The
bootstrap of the density rules, which now asks a whole chunk of redraws for its peaks at
once, gives the same thresholds as asking each redraw with scipy.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d
from scipy.signal import find_peaks as scipy_find_peaks

from nkflow.gating import density
from nkflow.gating.density import bootstrap_thresholds, histogram_grid
from nkflow.gating.peaks import Peaks, RowPeaks, find_peaks


def _rows(seed: int, n_rows: int) -> list[np.ndarray]:
    """Rows with plateaus (small integers), ties (rounded normals), smooth densities, edges."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n_rows):
        n = int(rng.integers(3, 50))
        kind = k % 4
        if kind == 0:
            row = rng.integers(0, 4, n).astype(float)
        elif kind == 1:
            row = rng.normal(size=n)
        elif kind == 2:
            draw = rng.multinomial(int(rng.integers(5, 200)), np.full(n, 1.0 / n))
            row = gaussian_filter1d(draw.astype(float), rng.uniform(0.5, 3.0), mode="constant")
        else:
            row = np.round(rng.normal(size=n), 1)
        out.append(row)
    out += [np.zeros(5), np.ones(4), np.array([0.0, 1.0, 1.0]), np.array([1.0, 2.0, 1.0])]
    out += [np.array([0.0, 2.0, 2.0, 2.0, 1.0, 3.0, 3.0, 0.0]), np.arange(6.0)]
    return out


def _expected(x, prominence, height=None):
    peaks, props = scipy_find_peaks(x, height=height, prominence=prominence)
    return peaks, props["prominences"]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("prominence", [0.0, 0.05, 0.5])
def test_one_row_matches_scipy(seed: int, prominence: float) -> None:
    for x in _rows(seed, 300):
        peaks, prom = _expected(x, prominence)
        got = find_peaks(x, prominence=prominence)
        np.testing.assert_array_equal(got.positions, peaks)
        assert got.prominences.tobytes() == prom.tobytes()
        # the mirror rule: zero-padded, with a height condition
        padded = np.r_[0.0, x, 0.0]
        top = float(x.max())
        peaks, prom = _expected(padded, 0.05 * top, height=0.1 * top)
        got = find_peaks(padded, prominence=0.05 * top, height=0.1 * top)
        np.testing.assert_array_equal(got.positions, peaks)
        assert got.prominences.tobytes() == prom.tobytes()


@pytest.mark.parametrize("seed", [0, 1])
def test_blocks_of_rows_match_scipy_row_by_row(seed: int) -> None:
    """Rows are independent in a block: a peak never reaches into the next row."""
    rng = np.random.default_rng(seed)
    for _ in range(200):
        n_rows, n = int(rng.integers(1, 12)), int(rng.integers(3, 40))
        if rng.random() < 0.5:
            block = rng.integers(0, 3, (n_rows, n)).astype(float)
        else:
            block = np.round(rng.normal(size=(n_rows, n)), 1)
        table = RowPeaks(block)
        assert len(table) == n_rows
        for i in range(n_rows):
            peaks, prom = _expected(block[i], 0.0)
            np.testing.assert_array_equal(table.row(i).positions, peaks)
            assert table.row(i).prominences.tobytes() == prom.tobytes()
            np.testing.assert_array_equal(table.row(i).heights, block[i][peaks])


def test_redraw_chunk_matches_scipy_row_by_row() -> None:
    """A chunk of smoothed multinomial redraws, as the bootstrap makes them."""
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.full(1024, 0.3))
    dens = gaussian_filter1d(
        rng.multinomial(40_000, p, size=64).astype(float), 12.0, axis=1, mode="constant"
    )
    table = RowPeaks(dens)
    for i in range(len(dens)):
        top = dens[i].max()
        peaks, prom = _expected(dens[i], 0.02 * top)
        got = table.row(i).select(0.02 * top)
        np.testing.assert_array_equal(got.positions, peaks)
        assert got.prominences.tobytes() == prom.tobytes()


@pytest.mark.parametrize(
    "bad, match",
    [(np.zeros(5), "2-D"), (np.array([[0.0, np.nan, 1.0]]), "finite")],
)
def test_row_peaks_refuses_what_it_cannot_search(bad, match) -> None:
    with pytest.raises(ValueError, match=match):
        RowPeaks(bad)


def test_short_and_empty_blocks_have_no_peaks() -> None:
    assert find_peaks(np.array([1.0, 2.0]), prominence=0.0).positions.size == 0
    assert len(RowPeaks(np.zeros((0, 10)))) == 0


@pytest.mark.parametrize(
    "rule, unimodal", [("valley", "negative"), ("mirror", "negative"), ("mirror", "positive")]
)
def test_bootstrap_with_chunk_peaks_equals_scipy_per_redraw(monkeypatch, rule, unimodal) -> None:
    """Every redraw's threshold is the one scipy's peaks give for that redraw alone."""
    rng = np.random.default_rng(5)
    values = np.r_[rng.normal(0.5, 0.2, 3000), rng.normal(2.2, 0.3, 1200)]
    counts, centers, width = histogram_grid(values)
    sigma = density.bandwidth_bins(values, width, 1.0)

    def valley_or_mirror(c, dens, redraw=None):
        if rule == "valley":
            cut = density.valley_from_density(
                dens, centers, 0.02, "top2", None if redraw is None else redraw.peaks()
            )
            return (np.nan if cut is None else cut), "valley"
        return density.mirror_from_density(c, dens, centers, 2.5, unimodal, sigma, redraw), "m"

    fast = bootstrap_thresholds(counts, sigma, 300, 7, valley_or_mirror)
    monkeypatch.setattr(density, "local_maxima", _scipy_local_maxima)
    slow = bootstrap_thresholds(
        counts, sigma, 300, 7, lambda c, dens, redraw: valley_or_mirror(c, dens)
    )
    assert fast.tobytes() == slow.tobytes()
    assert np.isfinite(fast).all()


def _scipy_local_maxima(x):
    peaks, props = scipy_find_peaks(x, prominence=0.0)  # every local maximum
    return Peaks(peaks, x[peaks], props["prominences"])


@pytest.mark.parametrize(
    ("dens", "expected"),
    [
        ([0.1, 2, 5, 2, 0.5, 0, 0, 0, 0, 0, 0.4, 3, 1], 7.0),  # one empty stretch: its middle
        ([0.1, 2, 5, 2, 0, 0, 0.2, 0, 0, 0, 0, 0.4, 3, 1], 8.5),  # two: the widest one's
        ([0.1, 2, 5, 2, 0.5, 0.3, 0.6, 0.9, 3, 1], 5.0),  # a single lowest bin, as before
    ],
)
def test_a_valley_across_an_empty_stretch_is_its_middle(dens, expected) -> None:
    """Two tight peaks far apart (CyTOF CD3- and CD3+): the smoothed density is exactly 0
    across the gap (the kernel is truncated). The valley was the stretch's first bin, at
    the foot of the lower peak; it is the middle of the (widest) empty stretch now."""
    dens = np.asarray(dens, dtype=float)
    centers = np.arange(dens.size, dtype=float)
    assert density.valley_from_density(dens, centers, 0.02) == expected
