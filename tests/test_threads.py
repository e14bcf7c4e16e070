"""Row ranges on threads (nkflow._threads): coverage, errors, settings, and results that
do not depend on the number of threads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nkflow import _threads
from nkflow.parallel import SampleExecutor
from nkflow.pp import compensate_array, logicle
from nkflow.pp.transform import _logicle_fn, _transform_rows

ROWS = 3 * _threads.MIN_ROWS_PER_THREAD + 17  # enough rows for three threads


@pytest.fixture(autouse=True)
def _clean_default(monkeypatch):
    monkeypatch.delenv(_threads.ENV_VAR, raising=False)
    yield
    _threads.set_default_threads(None)


@pytest.mark.parametrize("n_threads", [1, 2, 3, 8])
@pytest.mark.parametrize("n_rows", [0, 5, ROWS])
def test_ranges_cover_every_row_once(n_rows, n_threads):
    seen = np.zeros(n_rows, dtype=int)
    calls = []

    def work(lo, hi):
        calls.append((lo, hi))
        seen[lo:hi] += 1

    _threads.run_row_ranges(n_rows, work, n_threads=n_threads)
    assert np.all(seen == 1)
    expected_calls = min(n_threads, max(1, n_rows // _threads.MIN_ROWS_PER_THREAD))
    assert len(calls) == expected_calls


def test_error_in_a_range_reaches_the_caller_after_all_ranges_end():
    finished = []

    def work(lo, hi):
        if lo == 0:
            raise ValueError("bad block")
        finished.append(lo)

    with pytest.raises(ValueError, match="bad block"):
        _threads.run_row_ranges(ROWS, work, n_threads=3)
    assert len(finished) == 2


@pytest.mark.parametrize("n_threads", [1, 2, 4])
def test_thread_map_keeps_the_order_of_items(n_threads):
    rng = np.random.default_rng(1)
    parts = [rng.normal(size=n) for n in (5, 50_000, 1, 3_000, 20)]
    out = _threads.thread_map(np.median, parts, n_threads=n_threads)
    assert [float(m) for m in out] == [float(np.median(p)) for p in parts]
    assert _threads.thread_map(np.median, [], n_threads=n_threads) == []


def test_thread_map_errors_reach_the_caller():
    def fn(x):
        if x == 2:
            raise ValueError("item 2")
        return x

    with pytest.raises(ValueError, match="item 2"):
        _threads.thread_map(fn, [1, 2, 3], n_threads=2)


def test_thread_count_precedence(monkeypatch):
    assert _threads.resolve_threads() == _threads.available_cores()
    _threads.set_default_threads(3)
    assert _threads.resolve_threads() == 3
    monkeypatch.setenv(_threads.ENV_VAR, "2")
    assert _threads.resolve_threads() == 2
    assert _threads.resolve_threads(5) == 5


@pytest.mark.parametrize("bad", ["0", "two", "-1"])
def test_invalid_thread_counts_are_refused(monkeypatch, bad):
    monkeypatch.setenv(_threads.ENV_VAR, bad)
    with pytest.raises(ValueError, match=_threads.ENV_VAR):
        _threads.resolve_threads()
    with pytest.raises(ValueError, match="n_threads"):
        _threads.resolve_threads(0)


@pytest.fixture(scope="module")
def events():
    rng = np.random.default_rng(11)
    x = rng.lognormal(6, 2, (ROWS, 7)) * rng.choice([-1.0, 1.0, 1.0], (ROWS, 7))
    spill = np.eye(5) + np.triu(rng.uniform(0.0, 0.2, (5, 5)), 1)
    return x.astype(np.float32), spill


@pytest.mark.parametrize("columns", [[1, 2, 3, 4, 5], [0, 2, 3, 5, 6]])
def test_compensation_is_identical_for_any_thread_count(events, columns):
    x, spill = events
    one = compensate_array(x, spill, columns=columns, n_threads=1)
    for n in (2, 3):
        assert compensate_array(x, spill, columns=columns, n_threads=n).tobytes() == one.tobytes()


@pytest.mark.parametrize("columns", [[1, 2, 3, 4, 5], [0, 2, 3, 5, 6]])
def test_logicle_rows_are_identical_for_any_thread_count(events, columns):
    x, _ = events
    idx = np.asarray(columns)
    fn = _logicle_fn([(262144.0, 0.5, 4.5, 0.0)] * idx.size)
    results = []
    for n in (1, 2, 3):
        out = np.empty_like(x)
        _transform_rows(x, out, idx, fn, n)
        results.append(out)
    assert results[0].tobytes() == results[1].tobytes() == results[2].tobytes()
    np.testing.assert_array_equal(results[0][:, idx], logicle(x[:, idx]))
    other = np.setdiff1d(np.arange(x.shape[1]), idx)
    np.testing.assert_array_equal(results[0][:, other], x[:, other])


def _worker_threads(_: object) -> int:
    return _threads.resolve_threads()


def test_pool_workers_share_the_cores():
    cores = _threads.available_cores()
    with SampleExecutor(workers=2) as ex:
        outcomes = list(ex.map(_worker_threads, [("a", None), ("b", None)]))
    assert {o.value for o in outcomes} == {max(1, cores // 2)}


def test_read_fcs_event_names_report_no_missing_values(tmp_path):
    from nkflow.io import read_fcs, write_fcs

    data = np.arange(40, dtype=np.float32).reshape(20, 2)
    path = write_fcs(tmp_path / "a.fcs", data, ["FSC-A", "SSC-A"])
    adata = read_fcs(path)
    assert not adata.obs_names.isna().any()
    assert list(adata.obs_names[:3]) == ["0", "1", "2"]
    assert pd.Index(adata.obs_names).equals(pd.Index([str(i) for i in range(20)]))


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("n_rows", [0, 3, 8192, 8193, 70_001])
def test_column_rows_equal_the_transposed_columns(n_rows, n_threads):
    rng = np.random.default_rng(n_rows)
    x = rng.normal(size=(n_rows, 7)).astype(np.float32)
    cols = [6, 1, 3]
    out, has_nan = _threads.column_rows(x, cols, np.float64, n_threads=n_threads)
    assert out.dtype == np.float64 and out.flags.c_contiguous and not has_nan
    np.testing.assert_array_equal(out, x[:, cols].T.astype(np.float64))
    ints, _ = _threads.column_rows(np.arange(12).reshape(4, 3), [2, 0], n_threads=n_threads)
    np.testing.assert_array_equal(ints, [[2, 5, 8, 11], [0, 3, 6, 9]])
    if n_rows:
        x[n_rows // 2, 1] = np.nan
        assert _threads.column_rows(x, cols, n_threads=n_threads)[1]
        assert not _threads.column_rows(x, [6, 3], n_threads=n_threads)[1]
