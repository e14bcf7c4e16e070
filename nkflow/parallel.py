"""Run per-sample work serially, on a local process pool, or on a Dask cluster.

The unit of work is one sample. :func:`map_samples` runs a picklable function over
``(key, argument)`` pairs and yields one :class:`TaskOutcome` per key, in completion
order, whatever happens: an exception in one sample becomes that sample's outcome
and the others go on. A worker process that dies (killed, out of memory, crashed in
native code) does not lose the batch: the unfinished samples are run again, each in
a fresh process of its own, so only the sample that kills its worker fails.

Local workers are forked from a ``forkserver`` on Linux (one process imports what the
tasks need once, :meth:`SampleExecutor.start`) and spawned elsewhere
(:mod:`nkflow._workers`). Either way nkflow starts them without re-running the caller's
script: a plain ``.py`` file calling :func:`nkflow.run` works with or without an
``if __name__ == "__main__":`` guard (workers only ever run nkflow's own functions).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import logging
import os
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from ._threads import available_cores, set_default_threads
from ._workers import START_METHOD, caller_script_hidden, import_modules, new_pool, start_forkserver
from .exceptions import SchedulerError

__all__ = ["Pending", "SampleExecutor", "TaskOutcome", "default_workers", "map_samples"]

logger = logging.getLogger(__name__)


@dataclass
class TaskOutcome:
    """What happened to one sample's task.

    Attributes
    ----------
    key
        The sample key given to :func:`map_samples`.
    value
        The function's return value, or ``None`` when it failed.
    error
        The exception raised, or ``None`` on success.
    detail
        The formatted traceback of a failure (for logs), ``""`` on success.
    """

    key: str
    value: Any = None
    error: BaseException | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        """True when the task succeeded."""
        return self.error is None


class Pending:
    """A task started with :meth:`SampleExecutor.submit`; :meth:`outcome` waits for it."""

    def __init__(self, wait: Callable[[], TaskOutcome]) -> None:
        self._wait: Callable[[], TaskOutcome] | None = wait
        self._outcome: TaskOutcome | None = None

    def outcome(self) -> TaskOutcome:
        """The task's outcome (its failure is an outcome too), waiting for it if needed."""
        if self._wait is not None:
            self._outcome, self._wait = self._wait(), None
        assert self._outcome is not None
        return self._outcome


def default_workers() -> int:
    """The number of cores this process may use."""
    return available_cores()


def _call(func: Callable[[Any], Any], key: str, arg: Any) -> TaskOutcome:
    try:
        return TaskOutcome(key, func(arg))
    except Exception as exc:  # isolate the sample: its failure is its outcome
        return TaskOutcome(key, None, exc, traceback.format_exc())
    finally:
        # a task's AnnData views (anndata's in-place subset makes one of the whole sample)
        # are reference cycles: left to the collector's own schedule they held a worker's
        # earlier tubes, 37 MB each (pooling: 381 -> 707 MB); the young generations, where
        # a task's garbage still is, take ~2 ms to sweep (a full sweep ~45 ms)
        gc.collect(1)


_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
#: glibc's ceiling for its adaptive mmap threshold on 64-bit systems (DEFAULT_MMAP_THRESHOLD_MAX)
ADAPTIVE_MMAP_CEILING = 32 * 1024 * 1024
_mmap_threshold_set = False


def restore_adaptive_mmap_threshold() -> bool:
    """Undo the side effect of ``MALLOC_TRIM_THRESHOLD_`` on glibc's mmap threshold.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``. Setting any malloc
    tunable turns off glibc's adaptive mmap threshold (mallopt(3)), so every array above
    128 KiB is mmap-ed and page-faulted afresh: gating a sample took 1.8x the CPU time of
    the same call in a process pool worker (measured 2.3-2.7 s vs 1.4-1.5 s per 200,000-event
    sample). This sets the mmap threshold to the ceiling the adaptive rule would reach
    (32 MiB) and leaves the trim threshold as Dask set it. Done once per process, only when
    ``MALLOC_TRIM_THRESHOLD_`` is set and ``MALLOC_MMAP_THRESHOLD_`` is not, and only with
    glibc.

    Returns
    -------
    bool
        True when the threshold was set (now or by an earlier call).
    """
    global _mmap_threshold_set
    if _mmap_threshold_set:
        return True
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _mmap_threshold_set = bool(mallopt(_M_MMAP_THRESHOLD, ADAPTIVE_MMAP_CEILING))
    return _mmap_threshold_set


def _call_on_dask_worker(func: Callable[[Any], Any], key: str, arg: Any) -> TaskOutcome:
    """``_call`` on a Dask worker, whose own threads already run one task per core they own.

    One numpy thread per task (:mod:`nkflow._threads`): more would oversubscribe the cores.
    glibc's adaptive mmap threshold, which the nanny's ``MALLOC_TRIM_THRESHOLD_`` turns off,
    is put back (:func:`restore_adaptive_mmap_threshold`).
    """
    set_default_threads(1)
    restore_adaptive_mmap_threshold()
    return _call(func, key, arg)


def map_samples(
    func: Callable[[Any], Any],
    items: Sequence[tuple[str, Any]],
    *,
    workers: int = 1,
    scheduler: str = "",
) -> Iterator[TaskOutcome]:
    """Run ``func(argument)`` for every ``(key, argument)`` and yield the outcomes.

    A one-shot :class:`SampleExecutor`; use the executor itself to run several waves
    of tasks on the same worker processes (or Dask client).

    Parameters
    ----------
    func
        A module-level (picklable) function of one argument.
    items
        ``(key, argument)`` pairs; keys must be unique.
    workers
        1 runs in this process; more uses a local process pool; 0 means one per core.
    scheduler
        Address of a running Dask distributed scheduler (``tcp://host:8786``); when
        given, ``workers`` is ignored and the cluster runs the tasks.

    Yields
    ------
    TaskOutcome
        One per key, in completion order.
    """
    _check_keys(items)
    with SampleExecutor(workers=workers, scheduler=scheduler) as ex:
        yield from ex.map(func, items)


def _check_keys(items: Sequence[tuple[str, Any]]) -> None:
    keys = [k for k, _ in items]
    if len(set(keys)) != len(keys):
        raise ValueError("map_samples: keys must be unique")


class SampleExecutor:
    """Runs waves of per-sample tasks on workers that live as long as the executor.

    A batch run has several waves (FMO controls, unstimulated tubes, stimulated tubes
    that need their unstimulated partner's results). A spawned worker spends about two
    seconds importing nkflow and its dependencies, so one executor per run pays that once
    instead of once per wave; a worker forked from the fork server (Linux) shares the
    imports the server made once (:meth:`start`). Processes start on the first parallel
    wave, or earlier with :meth:`start`, while this process does other work.

    Parameters
    ----------
    workers
        1 runs in this process; more uses a local process pool (``forkserver`` on
        Linux, ``spawn`` elsewhere); 0 means one per core.
    scheduler
        Address of a running Dask distributed scheduler; when given, ``workers`` is
        ignored and one client is kept open for the executor's lifetime.

    Examples
    --------
    >>> with SampleExecutor(workers=2) as ex:  # doctest: +SKIP
    ...     first = list(ex.map(process_control, controls))  # (key, outcome) pairs
    ...     second = list(ex.map(process_sample, samples))
    """

    def __init__(self, *, workers: int = 1, scheduler: str = "") -> None:
        self.scheduler = scheduler
        self.workers = default_workers() if workers == 0 else max(1, int(workers))
        self._pool: ProcessPoolExecutor | None = None
        self._client: Any = None
        self._wave = 0
        self._exiting: threading.Thread | None = None
        self._modules: tuple[str, ...] = ()  # what start() was told the tasks need
        self._started = False

    def __enter__(self) -> SampleExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, modules: Sequence[str]) -> None:
        """Start importing ``modules`` for the workers now, while this process goes on.

        Returns at once. With a ``forkserver`` (Linux) its server process imports them
        (about two seconds for nkflow's pipeline), once for every worker this process will
        start, and the workers fork from it when the first wave is submitted. With
        ``spawn`` the workers start now and each imports them. Nothing happens in process
        (one worker), on a Dask scheduler, or after the first call or the first wave. A
        module that fails to import is left to fail the first task that needs it.

        Parameters
        ----------
        modules
            Modules the coming tasks need (e.g. the module of their function).
        """
        if self.scheduler or self.workers <= 1 or self._started or self._pool is not None:
            return  # in process, on Dask, or started already
        self._started, self._modules = True, tuple(modules)
        if START_METHOD == "forkserver":
            start_forkserver(self._modules)
            return
        self._pool = new_pool(self.workers, self._modules)  # each worker imports them
        with caller_script_hidden():  # a submit() starts a worker process: one each
            for _ in range(self.workers):
                self._pool.submit(import_modules, ())

    @contextlib.contextmanager
    def before_tasks(self) -> Iterator[None]:
        """Work done before the first task: an error in it stops the workers at once.

        Started workers (:meth:`start`) spend about two seconds importing (a fork
        server's import goes on alone and ends with it); when the batch turns out unusable
        before any task ran, its error should not wait for them.
        """
        try:
            yield
        except BaseException:
            self.close(wait=False)
            raise

    def close(self, *, wait: bool = True) -> None:
        """Stop the worker processes (or close the Dask client).

        Parameters
        ----------
        wait
            Let the workers finish the task they are on and wait for them to exit
            (default). ``False`` stops them at once, whatever they are doing: for tasks
            that write nothing (the imports of :meth:`start` when a run stops on bad input
            before its first wave: its error then waits for no import), or whose every
            write is atomic, as a sample's are (:func:`nkflow.io.write.write_bytes_atomic`:
            a temporary file, then a rename, ``result.json`` last). A stopped worker
            leaves each file whole or as it was, at most a hidden ``.<name>.*.tmp``,
            which a ``--resume`` removes; a sample without its new ``result.json`` is
            redone. The workers are waited for after the signal (a few seconds at most),
            so none writes once this returns and the run's lock is released.
        """
        if self._pool is not None:
            pool, self._pool = self._pool, None
            # the pool's processes (a private attribute of concurrent.futures, 3.11-3.13)
            workers = [] if wait else list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=wait, cancel_futures=True)
            for process in workers:
                process.terminate()
            for process in workers:  # none writes once the caller releases the folder
                process.join(timeout=5)
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._exiting is not None and wait:
            self._exiting.join()
            self._exiting = None

    def close_in_background(self) -> None:
        """Let the worker processes exit while this process goes on; :meth:`close` waits.

        For when every task's outcome has been collected, e.g. before a run writes its
        report: a worker takes about half a second to exit (it frees its heap), which
        then overlaps this process's own work. A later :meth:`map` or :meth:`submit`
        starts new workers. Nothing happens in process or on Dask.
        """
        if self._pool is None:
            return
        pool, self._pool = self._pool, None
        if self._exiting is not None:
            self._exiting.join()  # one exiting pool at a time
        self._exiting = threading.Thread(target=pool.shutdown, name="nkflow-workers-exit")
        self._exiting.start()

    def map(
        self, func: Callable[[Any], Any], items: Sequence[tuple[str, Any]]
    ) -> Iterator[TaskOutcome]:
        """Run ``func(argument)`` for every ``(key, argument)``; yield outcomes as they end.

        An exception in one task is that task's outcome. A worker process that dies takes
        no other sample with it: the tasks it left unfinished run again, each in a fresh
        process of its own, and the next wave gets a new pool.

        Parameters
        ----------
        func
            A module-level (picklable) function of one argument.
        items
            ``(key, argument)`` pairs; keys must be unique within the call.

        Yields
        ------
        TaskOutcome
            One per key, in completion order.
        """
        _check_keys(items)
        self._wave += 1
        if self.scheduler:
            yield from self._map_dask(func, items)
        elif self.workers <= 1 or len(items) <= 1:
            for key, arg in items:
                yield _call(func, key, arg)
        else:
            yield from self._map_pool(func, items)

    def submit(self, func: Callable[[Any], Any], key: str, arg: Any) -> Pending:
        """Start ``func(arg)`` on a worker and go on; ``.outcome()`` of the result waits.

        For work the main process does not need until later (the report's figures while
        it clusters). In process (one worker) the task runs when its outcome is asked for,
        so the order of the work is the caller's. Ask for every outcome before the
        executor closes: closing cancels tasks not started yet.

        Parameters
        ----------
        func
            A module-level (picklable) function of one argument.
        key
            A name for the task (logs, Dask keys).
        arg
            Its argument.

        Returns
        -------
        Pending
        """
        self._wave += 1
        if self.scheduler:
            fut = self._dask_client().submit(_call_on_dask_worker, func, key, arg,
                                      key=f"nkflow-{self._wave}-{key}", pure=False)  # fmt: skip

            def wait_dask() -> TaskOutcome:
                try:
                    return fut.result()
                except Exception as exc:  # a lost worker, a cancelled task
                    return TaskOutcome(key, None, exc, traceback.format_exc())
                finally:
                    fut.release()

            return Pending(wait_dask)
        if self.workers <= 1:
            return Pending(lambda: _call(func, key, arg))
        if self._pool is None:
            self._pool = new_pool(self.workers, self._modules)
        with caller_script_hidden():
            future = self._pool.submit(_call, func, key, arg)

        def wait_pool() -> TaskOutcome:
            try:
                return future.result()
            except BrokenProcessPool:  # the worker died: once more in a process of its own
                return _run_isolated(func, key, arg)

        return Pending(wait_pool)

    def _map_pool(
        self, func: Callable[[Any], Any], items: Sequence[tuple[str, Any]]
    ) -> Iterator[TaskOutcome]:
        if self._pool is None:
            self._pool = new_pool(self.workers, self._modules)
        pending: dict[Future[TaskOutcome], tuple[str, Any]] = {}
        unfinished: list[tuple[str, Any]] = []
        try:
            with caller_script_hidden():  # submit() starts the worker processes
                for key, arg in items:
                    pending[self._pool.submit(_call, func, key, arg)] = (key, arg)
        except BrokenProcessPool:  # a worker died while this wave was being submitted
            done_keys = {pending[f][0] for f in pending}
            unfinished.extend(it for it in items if it[0] not in done_keys)
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                item = pending.pop(fut)
                try:
                    yield fut.result()
                except BrokenProcessPool:
                    unfinished.append(item)
        if unfinished:
            logger.warning(
                "a worker process died; re-running %d sample(s), each in its own process",
                len(unfinished),
            )
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
            for key, arg in unfinished:
                yield _run_isolated(func, key, arg)

    def connect(self) -> None:
        """Connect to the Dask scheduler now (nothing happens without one, or once connected).

        A run calls it before it creates its output folder, so an unreachable scheduler
        stops the run with nothing written.

        Raises
        ------
        SchedulerError
            The scheduler cannot be reached (the message names the address and the
            cause), or ``distributed`` is not installed.
        """
        if self.scheduler:
            self._dask_client()

    def _dask_client(self) -> Any:
        """The client of ``scheduler``, connected on first use."""
        if self._client is None:
            try:
                from distributed import Client
            except ImportError as exc:  # pragma: no cover - depends on the environment
                raise SchedulerError(
                    f"Dask scheduler {self.scheduler}: running on a Dask cluster needs "
                    "dask[distributed]: pip install 'nkflow[dask]'"
                ) from exc
            try:
                self._client = Client(self.scheduler)
            except (OSError, ValueError) as exc:  # refused, timed out, a bad address
                raise SchedulerError(
                    f"Dask scheduler {self.scheduler}: cannot connect: {_cause(exc)}"
                ) from None
        return self._client

    def _map_dask(
        self, func: Callable[[Any], Any], items: Sequence[tuple[str, Any]]
    ) -> Iterator[TaskOutcome]:
        client = self._dask_client()  # first: it says how to install distributed
        from distributed import as_completed

        futures = {
            client.submit(
                _call_on_dask_worker, func, key, arg, key=f"nkflow-{self._wave}-{i}-{key}",
                pure=False,
                retries=2,
            ): key
            for i, (key, arg) in enumerate(items)
        }  # fmt: skip
        for fut in as_completed(futures):
            key = futures[fut]
            try:
                yield fut.result()
            except Exception as exc:  # a lost worker past its retries, a cancelled task
                yield TaskOutcome(key, None, exc, traceback.format_exc())
            finally:
                fut.release()


def _cause(exc: BaseException) -> str:
    """An error's text, with the first error behind it when that says something else.

    distributed says "Timed out trying to connect ... after 30 s" for a scheduler that
    refused every attempt: the refusal is the cause worth naming.
    """
    text = str(exc) or type(exc).__name__
    root = exc
    while root.__cause__ is not None or root.__context__ is not None:
        root = root.__cause__ or root.__context__  # type: ignore[assignment]
    first = getattr(root, "strerror", None) or str(root)
    return f"{text} ({first})" if root is not exc and first and first not in text else text


def _run_isolated(func: Callable[[Any], Any], key: str, arg: Any) -> TaskOutcome:
    with new_pool(1) as pool:
        try:
            with caller_script_hidden():
                future = pool.submit(_call, func, key, arg)
            return future.result()
        except BrokenProcessPool as exc:
            return TaskOutcome(
                key, None, exc, "the worker process died while processing this sample"
            )
