"""Confidence intervals computed apart from the estimates they belong to.

A data-driven threshold's value decides the next gate of the hierarchy; its bootstrap
interval decides nothing downstream and is only recorded. The rules therefore return the
value at once and the interval as a :class:`Deferred`: a computation that runs when its
result is first asked for, or earlier on a background thread
(:func:`background_thread`), while the engine goes on gating with the values.

Each interval is fixed when its rule is called (its seed is drawn then, its data are
the rule's own binned counts or values), so the result is the same whichever thread
computes it and in whatever order: deferring changes when the work is done, never what
it gives.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, Generic, TypeVar

import numpy as np

from .._threads import resolve_threads

__all__ = ["NO_INTERVAL", "Deferred", "background_thread", "deferred_interval"]

T = TypeVar("T")

_NAN = float("nan")


class Deferred(Generic[T]):
    """A value computed once: when first asked for, or ahead of that on an executor.

    Parameters
    ----------
    compute
        Computes the value. It must not depend on mutable state that changes after the
        :class:`Deferred` is made (the result must not depend on when it runs).
    """

    __slots__ = ("_compute", "_future", "_lock", "_ready", "_value")

    def __init__(self, compute: Callable[[], T]) -> None:
        self._compute: Callable[[], T] | None = compute
        self._future: Future[T] | None = None
        self._lock = threading.Lock()
        self._value: T | None = None
        self._ready = False

    @classmethod
    def known(cls, value: T) -> Deferred[T]:
        """A :class:`Deferred` whose value is already known."""
        out: Deferred[T] = cls(lambda: value)
        out._value, out._ready, out._compute = value, True, None
        return out

    @property
    def ready(self) -> bool:
        """Whether the value has been computed (nothing left to run)."""
        return self._ready

    def start(self, executor: Executor | None) -> None:
        """Submit the computation to ``executor`` (nothing when None, known or started)."""
        with self._lock:
            if executor is None or self._ready or self._future is not None:
                return
            self._future = executor.submit(self._compute)  # type: ignore[arg-type]

    def result(self) -> T:
        """The value: computed here unless it was started; the same object every time.

        Raises
        ------
        Exception
            Whatever the computation raised.
        """
        with self._lock:
            if not self._ready:
                if self._future is not None:
                    value = self._future.result()
                else:
                    assert self._compute is not None
                    value = self._compute()
                self._value, self._ready = value, True
                self._compute = self._future = None
            return self._value  # type: ignore[return-value]

    def item(self, index: int) -> Deferred[Any]:
        """Element ``index`` of this (sequence) value, deferred as well.

        Starting the element runs this computation (once, for all its elements).
        """
        return Deferred(lambda: self.result()[index])  # type: ignore[index]


#: The interval of a rule run with ``n_boot=0`` (or of one without an interval).
NO_INTERVAL: Deferred[tuple[float, float]] = Deferred.known((_NAN, _NAN))


def deferred_interval(
    compute: Callable[[], tuple[float, float]],
    random_state: int | np.random.Generator | None,
) -> Deferred[tuple[float, float]]:
    """``compute`` as a :class:`Deferred`, or computed now when it draws from a Generator.

    A seed fixes the resamples whenever they are drawn; a caller's Generator would give
    other resamples if the caller drew from it in between.
    """
    if isinstance(random_state, np.random.Generator):
        return Deferred.known(compute())
    return Deferred(compute)


@contextlib.contextmanager
def background_thread(n_threads: int | None = None) -> Iterator[Executor | None]:
    """One background thread for deferred intervals, when the process has a core to spare.

    Parameters
    ----------
    n_threads
        Threads this call may use (see :func:`nkflow._threads.resolve_threads`); with one,
        no thread is started and None is yielded (everything runs on the caller's thread,
        as in the workers of a parallel run, which share the cores between samples).

    Yields
    ------
    concurrent.futures.Executor or None
        Leaving the context waits for whatever is still running on it; leaving it with an
        exception (an error, Ctrl-C) cancels the intervals not yet started.
    """
    if resolve_threads(n_threads) < 2:
        yield None
        return
    # one pool per call, not per process: a forked worker must not inherit a pool whose
    # thread did not survive the fork
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nkflow-intervals")
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
