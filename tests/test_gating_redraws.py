"""Singlet bands of bootstrap redraws read off counts equal ``singlet_band`` on each redraw.

Golden truth is :func:`nkflow.gating.scatter.singlet_band` applied to each redraw's values
(partitions, numpy's medians); the counts-based bands must equal it bit for bit, signed
zeros included, and NaN where it gives NaN (a core with no values).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import EXTERNAL

from nkflow.gating.redraws import median_band_redraws
from nkflow.gating.scatter import singlet_band, singlet_polygon


def _reference(sub: np.ndarray, draws: list[np.ndarray], k_low: float, k_high: float):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's median of an empty core
        return np.array([singlet_band(sub[d], k_low, k_high) for d in draws])


def _assert_same(fast: np.ndarray, ref: np.ndarray, label: str = "") -> None:
    assert fast.shape == ref.shape, label
    np.testing.assert_array_equal(fast, ref, err_msg=label)  # NaN where NaN
    assert np.array_equal(np.signbit(fast), np.signbit(ref)) or np.isnan(ref).any(), label


SAMPLES = {
    "singlets": lambda rng: rng.normal(0.8, 0.05, 20_000),
    "singlets and doublets": lambda rng: np.r_[
        rng.normal(0.8, 0.03, 15_000), rng.normal(0.5, 0.05, 5_000)
    ],
    "rounded (ties)": lambda rng: np.round(rng.normal(0.8, 0.05, 4_000), 3),
    "ties around signed zeros": lambda rng: np.r_[
        np.zeros(30), -np.zeros(30), np.round(rng.normal(0.0, 0.01, 941), 2)
    ],
    "odd size": lambda rng: rng.normal(size=21),
    "all equal (empty core)": lambda rng: np.full(50, 0.75),
    "tiny magnitudes": lambda rng: rng.exponential(size=1_000) * 1e-300,
    "huge magnitudes": lambda rng: rng.normal(size=3_000) * 1e300,
    "neighbouring floats": lambda rng: np.r_[
        1.0, np.nextafter(1.0, 2.0), np.nextafter(1.0, 0.0), 1.0 + 2e-16 * np.arange(40)
    ],
}


@pytest.mark.parametrize("name", list(SAMPLES))
@pytest.mark.parametrize("length", ["same", "one shorter"])
def test_bands_equal_singlet_band_of_each_redraw(name: str, length: str) -> None:
    rng = np.random.default_rng(len(name))
    sub = SAMPLES[name](rng)
    size = sub.size if length == "same" else sub.size - 1
    draws = [rng.integers(0, sub.size, size) for _ in range(150)]  # more than one chunk
    fast = median_band_redraws(sub, iter(draws), 4.0, 3.5)
    _assert_same(fast, _reference(sub, draws, 4.0, 3.5))


def test_no_redraws_and_non_finite_values() -> None:
    assert median_band_redraws(np.arange(5.0), [], 4.0, 4.0).shape == (0, 2)
    with pytest.raises(ValueError, match="finite"):
        median_band_redraws(np.array([1.0, np.inf, 2.0]), [np.array([0, 1, 2])], 4.0, 4.0)


@pytest.mark.filterwarnings("ignore:overflow encountered in divide:RuntimeWarning")
def test_singlet_interval_with_an_infinite_ratio_still_computed() -> None:
    """A ratio that overflows (FSC-A near 0) takes singlet_band on each redraw."""
    rng = np.random.default_rng(3)
    area = np.r_[rng.normal(5e4, 1e4, 3_000).clip(1e3), 1e-320]
    height = np.r_[area[:-1] * rng.normal(0.8, 0.03, 3_000), 5e4]
    _, params = singlet_polygon(area, height, {}, n_boot=30, random_state=1)
    lo, hi = params[0].interval.result()
    assert np.isfinite(lo) and lo <= hi


def _real_ratio_sets() -> list[tuple[str, np.ndarray]]:
    if not EXTERNAL.is_dir():
        return []
    from nkflow.io import read_fcs

    out = []
    for path in sorted(EXTERNAL.rglob("*.fcs"))[:40]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                adata = read_fcs(path)
        except Exception:
            continue
        names = [str(c) for c in adata.var_names]
        if "FSC-A" in names and "FSC-H" in names:
            a = np.asarray(adata[:, "FSC-A"].X, float).ravel()
            h = np.asarray(adata[:, "FSC-H"].X, float).ravel()
            ok = (a > 0) & np.isfinite(h)
            r = h[ok] / a[ok]
            if r.size >= 20 and np.isfinite(r).all():
                out.append((path.name, r))
    return out


def test_bands_equal_on_real_scatter() -> None:
    sets = _real_ratio_sets()
    if not sets:
        pytest.skip(f"no FCS file with FSC-A and FSC-H under {EXTERNAL}")
    for i, (name, r) in enumerate(sets):
        rng = np.random.default_rng(i)
        sub = r if r.size <= 20_000 else rng.choice(r, 20_000, replace=False)
        draws = [rng.integers(0, sub.size, sub.size) for _ in range(20)]
        fast = median_band_redraws(sub, iter(draws), 4.0, 4.0)
        _assert_same(fast, _reference(sub, draws, 4.0, 4.0), name)
    assert len(sets) >= 5
