"""Failure isolation and equivalence of the execution back-ends."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from nkflow import parallel
from nkflow.parallel import map_samples


def _square_or_fail(arg: tuple[str, int]) -> int:
    kind, value = arg
    if kind == "raise":
        raise ValueError(f"bad sample {value}")
    if kind == "crash":
        os._exit(3)  # a worker dying in native code looks like this
    return value * value


ITEMS = [(f"s{i}", ("ok", i)) for i in range(6)]


@pytest.mark.parametrize("workers", [1, 2])
def test_all_succeed_and_match_serial(workers: int) -> None:
    out = {o.key: o.value for o in map_samples(_square_or_fail, ITEMS, workers=workers)}
    assert out == {f"s{i}": i * i for i in range(6)}


@pytest.mark.parametrize("workers", [1, 2])
def test_exception_fails_only_its_sample(workers: int) -> None:
    items = [*ITEMS, ("bad", ("raise", 7))]
    outcomes = {o.key: o for o in map_samples(_square_or_fail, items, workers=workers)}
    assert not outcomes["bad"].ok
    assert isinstance(outcomes["bad"].error, ValueError)
    assert "bad sample 7" in outcomes["bad"].detail
    assert all(outcomes[f"s{i}"].value == i * i for i in range(6))


def test_dead_worker_loses_only_its_sample() -> None:
    items = [*ITEMS[:3], ("dies", ("crash", 0)), *ITEMS[3:]]
    outcomes = {o.key: o for o in map_samples(_square_or_fail, items, workers=2)}
    assert set(outcomes) == {k for k, _ in items}
    assert not outcomes["dies"].ok
    assert all(outcomes[f"s{i}"].value == i * i for i in range(6))


@pytest.mark.parametrize("workers", [1, 2])
def test_submitted_tasks_run_beside_a_map_and_keep_their_outcomes(workers: int) -> None:
    with parallel.SampleExecutor(workers=workers) as ex:
        jobs = {
            "ok": ex.submit(_square_or_fail, "ok", ("ok", 5)),
            "bad": ex.submit(_square_or_fail, "bad", ("raise", 2)),
        }
        mapped = {o.key: o.value for o in ex.map(_square_or_fail, ITEMS)}  # meanwhile
        outcomes = {key: job.outcome() for key, job in jobs.items()}
    assert mapped == {f"s{i}": i * i for i in range(6)}
    assert outcomes["ok"].ok and outcomes["ok"].value == 25
    assert not outcomes["bad"].ok and "bad sample 2" in outcomes["bad"].detail
    assert jobs["ok"].outcome() is outcomes["ok"]  # asked twice, run once


def test_in_process_submit_runs_when_asked() -> None:
    calls: list[int] = []
    with parallel.SampleExecutor(workers=1) as ex:
        job = ex.submit(calls.append, "append", 1)
        assert calls == []  # the caller's order of work is kept
        assert job.outcome().ok and calls == [1]


def test_submitted_task_whose_worker_dies_runs_again_alone() -> None:
    with parallel.SampleExecutor(workers=2) as ex:
        job = ex.submit(_square_or_fail, "dies", ("crash", 0))
        outcome = job.outcome()
    assert outcome.key == "dies" and not outcome.ok


def test_duplicate_keys_rejected() -> None:
    with pytest.raises(ValueError, match="unique"):
        list(map_samples(_square_or_fail, [ITEMS[0], ITEMS[0]]))


def test_dask_local_cluster_matches_serial() -> None:
    distributed = pytest.importorskip("distributed")
    serial = {o.key: o.value for o in map_samples(_square_or_fail, ITEMS)}
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        items = [*ITEMS, ("bad", ("raise", 1))]
        outcomes = {
            o.key: o
            for o in map_samples(_square_or_fail, items, scheduler=cluster.scheduler_address)
        }
        threads = list(
            map_samples(_numpy_threads, [("t", None)], scheduler=cluster.scheduler_address)
        )
    assert {k: outcomes[k].value for k in serial} == serial
    assert isinstance(outcomes["bad"].error, ValueError)
    assert threads[0].value == 1  # Dask runs one task per worker thread: no oversubscription


def _numpy_threads(_: object) -> int:
    from nkflow._threads import resolve_threads

    return resolve_threads()


def test_mmap_threshold_is_restored_only_under_a_malloc_tunable(monkeypatch):
    import platform

    monkeypatch.setattr(parallel, "_mmap_threshold_set", False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    assert parallel.restore_adaptive_mmap_threshold() is False  # nothing to undo
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")  # as Dask's nanny sets it
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "1048576")
    assert parallel.restore_adaptive_mmap_threshold() is False  # the user chose one
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    glibc = platform.libc_ver()[0] == "glibc"
    assert parallel.restore_adaptive_mmap_threshold() is glibc
    assert parallel.restore_adaptive_mmap_threshold() is glibc  # once per process


def _has_module(name: str) -> bool:
    import sys

    return name in sys.modules


@pytest.mark.parametrize("workers", [1, 2])
def test_started_workers_run_the_same_and_leave_failed_imports_to_tasks(workers: int) -> None:
    """start() imports ahead of the tasks; a module it cannot import fails no task."""
    with parallel.SampleExecutor(workers=workers) as ex:
        ex.start(("colorsys", "nkflow_no_such_module"))
        out = {o.key: o.value for o in ex.map(_square_or_fail, ITEMS)}
    assert out == {f"s{i}": i * i for i in range(6)}


def test_a_second_start_submits_nothing() -> None:
    with parallel.SampleExecutor(workers=2) as ex:
        ex.start(("colorsys",))
        ex.start(("wave",))  # the workers run already
        seen = [o.value for o in ex.map(_has_module, [(f"w{i}", "wave") for i in range(4)])]
    assert seen == [False] * 4


def _gone(pid: int) -> bool:
    """The process has exited (no /proc entry, or a zombie nobody reaps in a container)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


def _descendants(pid: int) -> list[int]:
    """Processes started by ``pid``, their children, and so on (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _pid(arg: object) -> int:
    return os.getpid()


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc (Linux)")
@pytest.mark.parametrize("workers", [1, 2])
def test_workers_exit_in_the_background_and_close_waits_for_them(workers: int) -> None:
    """close_in_background() lets the workers go while the caller works on; a later wave
    gets new workers; close() returns once every worker has exited."""
    ex = parallel.SampleExecutor(workers=workers)
    first = {o.value for o in ex.map(_pid, ITEMS)}
    ex.close_in_background()
    second = {o.value for o in ex.map(_pid, ITEMS)}
    assert {o.key: o.value for o in ex.map(_square_or_fail, ITEMS)} == {
        f"s{i}": i * i for i in range(6)
    }
    ex.close_in_background()
    ex.close()
    if workers == 1:  # in process: nothing to stop
        assert first == second == {os.getpid()}
    else:
        assert os.getpid() not in first | second and not first & second
        assert all(_gone(pid) for pid in first | second)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc (Linux)")
def test_workers_end_when_their_parent_is_killed(tmp_path) -> None:
    """A run killed with SIGKILL (or by the OOM killer) leaves no worker behind."""
    import signal
    import subprocess
    import sys
    import time

    (tmp_path / "pid_helper.py").write_text("import os\n\ndef pid(_):\n    return os.getpid()\n")
    script = (
        "import sys, time\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n"
        "import pid_helper\n"
        "from nkflow.parallel import SampleExecutor\n"
        "ex = SampleExecutor(workers=2)\n"
        "pids = {o.value for o in ex.map(pid_helper.pid, [('a', 0), ('b', 1), ('c', 2)])}\n"
        "import multiprocessing\n"
        "pids |= {p.pid for p in multiprocessing.active_children()}  # idle ones too\n"
        "print(*sorted(pids), flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(p) for p in parent.stdout.readline().split()]
        assert workers and not any(_gone(p) for p in workers)
        # and every other process it started: a fork server, a resource tracker
        workers += [p for p in _descendants(parent.pid) if p not in workers]
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not all(_gone(p) for p in workers):
        time.sleep(0.2)
    left = [p for p in workers if not _gone(p)]
    for p in left:  # do not leave them to the next test either
        os.kill(p, signal.SIGKILL)
    assert not left, f"workers {left} outlived their killed parent"


def _environ(name: str) -> str | None:
    return os.environ.get(name)


def test_workers_see_the_environment_their_pool_was_made_in(monkeypatch) -> None:
    """A fork server keeps the environment it started with; its workers take the
    caller's (NKFLOW_NUM_THREADS set in a notebook between two runs must reach them)."""
    with parallel.SampleExecutor(workers=2) as ex:
        list(ex.map(_pid, ITEMS))  # a fork server (Linux) runs from here on
    monkeypatch.setenv("NKFLOW_TEST_LATER", "set after the first pool")
    with parallel.SampleExecutor(workers=2) as ex:
        seen = {o.value for o in ex.map(_environ, [(f"e{i}", "NKFLOW_TEST_LATER") for i in "abc"])}
    assert seen == {"set after the first pool"}


def _ppid(arg: object) -> int:
    return os.getppid()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork server: Linux")
def test_workers_fork_from_one_server_on_linux() -> None:
    """Every pool's workers are children of one fork server, not of this process: they
    import nothing the server imported, and a second run starts no server again."""
    parents = set()
    for _ in range(2):
        with parallel.SampleExecutor(workers=2) as ex:
            ex.start(("colorsys",))
            parents |= {o.value for o in ex.map(_ppid, ITEMS)}
    assert len(parents) == 1 and os.getpid() not in parents


def test_a_tasks_cyclic_garbage_is_freed_when_it_ends() -> None:
    """anndata's in-place subset leaves a view of the whole sample in a reference cycle;
    left to the collector's schedule, a worker held earlier tubes (pooling 381 -> 707 MB)."""
    import gc
    import weakref

    from nkflow.parallel import _call

    class Node:
        pass

    held: list[weakref.ref] = []

    def task(_arg):
        node = Node()
        node.me = node  # a cycle, as a view and its element references make
        held.append(weakref.ref(node))
        return "done"

    gc.disable()  # so only the task runner's sweep can free it
    try:
        assert _call(task, "s1", None).value == "done"
        assert held[0]() is None
    finally:
        gc.enable()


def _pid_then_sleep(arg: float) -> int:
    import time

    time.sleep(arg)
    return os.getpid()


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc (Linux)")
def test_close_without_waiting_returns_once_the_stopped_workers_are_gone() -> None:
    """An interrupted run closes its pool with wait=False and then releases the folder's
    lock: a worker still dying could have written after another run took the folder."""
    ex = parallel.SampleExecutor(workers=2)
    pids = {o.value for o in ex.map(_pid, ITEMS)}
    busy = ex.submit(_pid_then_sleep, "sleeper", 30.0)
    ex.close(wait=False)
    assert pids and all(_gone(pid) for pid in pids)
    del busy
