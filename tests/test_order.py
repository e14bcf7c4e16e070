"""Integer keys that sort like floats (nkflow._order)."""

from __future__ import annotations

import numpy as np
import pytest

from nkflow._order import float_keys, radix_argsort

SPECIAL = [-np.inf, -3.5, -1e-40, -0.0, 0.0, 1e-40, 2.0, np.inf]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_keys_follow_float_order_with_nan_last(dtype: type) -> None:
    x = np.array([*SPECIAL, np.nan, -np.nan], dtype=dtype)
    keys = float_keys(x)
    assert keys.dtype.itemsize == x.itemsize and keys.dtype.kind == "u"
    ordered = keys[: len(SPECIAL)]
    assert np.all(ordered[1:] > ordered[:-1])  # strictly increasing, -0.0 just below 0.0
    assert keys[-1] == keys[-2] == np.iinfo(keys.dtype).max  # NaN of either sign
    rows = np.array([SPECIAL, SPECIAL[::-1]], dtype=dtype)  # 2-D rows keep their own order
    assert np.array_equal(float_keys(rows)[1], float_keys(rows)[0][::-1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_radix_argsort_equals_a_stable_argsort(dtype: type) -> None:
    rng = np.random.default_rng(2)
    x = np.round(rng.normal(size=5_000) * 4).astype(dtype)  # many ties, signed zeros
    if np.dtype(dtype).kind == "f":
        x[::97] = -0.0
    order = radix_argsort(x)
    np.testing.assert_array_equal(x[order], np.sort(x))
    if np.dtype(dtype).kind == "f":  # stable by key: ties keep their event order
        keys = float_keys(x)
        np.testing.assert_array_equal(order, np.argsort(keys, kind="stable"))
