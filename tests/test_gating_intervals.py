"""Deferred bootstrap intervals: the same numbers whichever thread computes them, and when.

Golden truth is the interval computed at once on the caller's thread (one thread, as in
the workers of a parallel run); with a background thread (a notebook or ``nkflow gate``
on a machine with a core to spare) every threshold and interval must be identical.
"""

from __future__ import annotations

import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from nkflow.gating import gate
from nkflow.gating.intervals import NO_INTERVAL, Deferred, background_thread
from nkflow.gating.thresholds import density_fit, gmm_threshold, mirror_threshold, valley_threshold
from nkflow.io import nkflow_uns


def test_deferred_computes_once_on_first_request() -> None:
    calls: list[int] = []
    d = Deferred(lambda: calls.append(1) or (1.0, 2.0))
    assert not d.ready and not calls
    assert d.result() == (1.0, 2.0) and d.result() == (1.0, 2.0)
    assert d.ready and calls == [1]


def test_deferred_runs_on_the_executor_when_started() -> None:
    threads: list[str] = []
    d = Deferred(lambda: threads.append(threading.current_thread().name) or 3.0)
    with ThreadPoolExecutor(1, thread_name_prefix="bg") as pool:
        d.start(pool)
        d.start(pool)  # a second start submits nothing
        assert d.result() == 3.0
    assert len(threads) == 1 and threads[0].startswith("bg")


def test_items_share_one_computation() -> None:
    calls: list[int] = []
    both = Deferred(lambda: calls.append(1) or [(0.0, 1.0), (2.0, 3.0)])
    lo, hi = both.item(0), both.item(1)
    with ThreadPoolExecutor(1) as pool:
        hi.start(pool)
        lo.start(pool)
        assert lo.result() == (0.0, 1.0) and hi.result() == (2.0, 3.0)
    assert calls == [1]


def test_errors_reach_the_caller() -> None:
    def fail() -> None:
        raise ValueError("no interval")

    d = Deferred(fail)
    with ThreadPoolExecutor(1) as pool:
        d.start(pool)
        with pytest.raises(ValueError, match="no interval"):
            d.result()


def test_known_values_are_never_computed() -> None:
    assert NO_INTERVAL.ready and all(np.isnan(NO_INTERVAL.result()))
    with ThreadPoolExecutor(1) as pool:
        d = Deferred.known(5)
        d.start(pool)
        assert d.result() == 5


@pytest.mark.parametrize(("threads", "expect_thread"), [(1, False), (2, True)])
def test_background_thread_only_with_a_core_to_spare(threads: int, expect_thread: bool) -> None:
    with background_thread(threads) as executor:
        assert (executor is not None) == expect_thread


def test_leaving_with_an_error_cancels_the_intervals_not_started() -> None:
    ran: list[int] = []
    gate_open = threading.Event()

    def slow(i: int) -> int:
        gate_open.wait(5)
        ran.append(i)
        return i

    pending = [Deferred(lambda i=i: slow(i)) for i in range(5)]
    release = threading.Timer(0.2, gate_open.set)  # lets a running interval finish
    release.start()
    with pytest.raises(KeyError), background_thread(2) as executor:
        for d in pending:
            d.start(executor)
        raise KeyError("stop")
    release.join()
    assert len(ran) <= 1  # at most the one running; the queued ones were cancelled


@pytest.mark.parametrize(
    ("rule", "public"),
    [("valley", valley_threshold), ("gmm", gmm_threshold), ("mirror", mirror_threshold)],
)
def test_density_fit_resolved_is_the_public_rule(rule: str, public) -> None:
    rng = np.random.default_rng(4)
    v = np.r_[rng.normal(0.2, 0.05, 4000), rng.normal(0.6, 0.08, 1500)]
    keywords = {"percentile": 99.0} if rule == "mirror" else {"fallback_percentile": 99.0}
    expected = public(v, n_boot=30, random_state=11, **keywords)
    fit = density_fit(rule, v, percentile=99.0, n_boot=30, random_state=11)
    assert not fit.interval.ready  # the interval waits to be asked for
    assert fit.resolved() == expected


def test_generator_state_is_used_at_once() -> None:
    """A caller's Generator is drawn from when the rule is called, not later."""
    rng = np.random.default_rng(2)
    v = np.r_[rng.normal(0.2, 0.05, 3000), rng.normal(0.6, 0.08, 1000)]
    fit = density_fit("valley", v, n_boot=20, random_state=np.random.default_rng(9))
    assert fit.interval.ready


@pytest.fixture(scope="module")
def liver_events(sample_data):
    import nkflow as nk

    adata = nk.read_fcs(sample_data / "human" / "D1_liver_pre_unstim.fcs")
    nk.pp.compensate(adata)
    nk.pp.transform(adata)
    return adata


def test_gate_gives_the_same_thresholds_with_a_background_thread(liver_events, monkeypatch):
    started: list[str] = []
    start = Deferred.start

    def counting_start(self, executor):
        if executor is not None:
            started.append(threading.current_thread().name)
        start(self, executor)

    monkeypatch.setattr(Deferred, "start", counting_start)
    results = []
    for threads in ("1", "2"):
        monkeypatch.setenv("NKFLOW_NUM_THREADS", threads)
        adata = liver_events.copy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = gate(adata, "human_tissue", n_boot=40, random_state=3)
        results.append((nkflow_uns(adata)["thresholds"], table))
    (one, table_one), (two, table_two) = results
    assert len(started) >= 10  # with two threads the intervals went to the background
    assert [t["marker"] for t in one] == [t["marker"] for t in two]
    for a, b in zip(one, two, strict=True):
        for key in a:
            same = a[key] == b[key] or (a[key] != a[key] and b[key] != b[key])  # NaN == NaN
            assert same, (a["marker"], key, a[key], b[key])
    # the intervals were computed (not left NaN) for the density rules and scatter gates
    assert sum(np.isfinite(t["ci_low"]) for t in two) >= 10
    assert table_one.equals(table_two)
