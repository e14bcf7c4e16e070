"""How local worker processes start and end.

On Linux, workers are forked from a ``forkserver``: one clean process that imports what
the tasks need once, so a worker is ready in milliseconds instead of importing nkflow
and its dependencies itself (~2 s of CPU each); elsewhere they are started with
``spawn``. Either way a worker:

* never re-runs the caller's script (:func:`caller_script_hidden`);
* sees the caller's environment as it was when its pool was made;
* takes the caller's nkflow log level and its share of the cores for numpy work;
* ends itself when the process that made its pool is gone, even one killed by SIGKILL
  (:func:`_exit_without_parent`);
* ignores Ctrl-C (SIGINT): the terminal sends it to the whole process group, and each
  idle worker printed a ``KeyboardInterrupt`` traceback; the caller stops its workers.

A fork server lives as long as the process that started it and keeps what it imported:
nkflow code edited after a notebook's first run reaches forked workers only after the
kernel restarts. On Python 3.11 the server does not take the caller's ``sys.path``: it
looks in its working directory first, so a run started inside another nkflow source tree
gives its workers that tree's code (benchmarks compare checkouts by starting each run in
its own).

:mod:`nkflow.parallel` runs tasks on these pools.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import multiprocessing
import multiprocessing.forkserver
import os
import select
import signal
import sys
import threading
import time
import types
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

from ._threads import available_cores, set_default_threads

__all__ = ["START_METHOD", "caller_script_hidden", "import_modules", "new_pool", "start_forkserver"]

logger = logging.getLogger("nkflow.parallel")


#: How local workers start: forked from a server that imported nkflow once (Linux), or
#: spawned (a fresh interpreter each) where forking is not safe or not available.
START_METHOD = (
    "forkserver"
    if sys.platform.startswith("linux") and "forkserver" in multiprocessing.get_all_start_methods()
    else "spawn"
)


def start_forkserver(modules: tuple[str, ...]) -> None:
    """Start this process's fork server now, importing ``modules`` (returns at once).

    The server imports them while the caller goes on; workers forked from it later
    share those imports. A server already running (an earlier run of this process)
    keeps its own imports; the workers import the rest themselves (:func:`_init_worker`).
    """
    multiprocessing.get_context("forkserver").set_forkserver_preload(list(modules))
    multiprocessing.forkserver.ensure_running()


def import_modules(names: tuple[str, ...]) -> None:
    """Import what the tasks need; one that fails is left to fail the task needing it."""
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # e.g. ImportError: the task that needs it reports it
            logger.debug("worker could not import %s", name, exc_info=True)


def _exit_without_parent(parent: int, every: float = 1.0) -> None:
    """Stop this worker once the process that started the pool (pid ``parent``) is gone.

    A pool's worker waits for its next task on a pipe it holds both ends of, so it never
    sees its parent die: a run killed by SIGKILL or the out-of-memory killer left its
    workers (a few hundred MB each) waiting for ever. Run on a daemon thread. A spawned
    worker watches its own parent; one forked from the fork server waits on the parent
    itself (a pidfd, readable once it has exited), since the server lives as long as
    any of its workers does.
    """
    if os.getppid() == parent:  # spawned by the parent
        while os.getppid() == parent:
            time.sleep(every)
        os._exit(1)
    try:
        pidfd = os.pidfd_open(parent)
    except ProcessLookupError:
        os._exit(1)
    except (AttributeError, OSError):  # no pidfd (old kernel): poll the parent
        while _alive(parent):
            time.sleep(every)
        os._exit(1)
    select.select([pidfd], [], [])
    os._exit(1)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (not exited, not a zombie waiting to be reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: not ours to watch
        return True
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            return "\nState:\tZ" not in fh.read()
    except OSError:
        return True


def _init_worker(
    level: int,
    threads: int,
    parent: int,
    modules: tuple[str, ...] = (),
    environ: dict[str, str] | None = None,
) -> None:
    """Worker logging and threads: the parent's level, no last-resort printing to stderr.

    A new worker has no handlers, so Python's last-resort handler would print every
    warning to the terminal. The sample's warnings reach the parent in its summary.
    ``threads`` is the worker's share of the cores for the per-event numpy work
    (:mod:`nkflow._threads`); ``modules`` are imported now (nothing left to do for those
    a fork server imported); ``environ`` is the parent's environment when the pool was
    made (a fork server's is the one it started with). The worker ends itself when the
    process that started it is gone (:func:`_exit_without_parent`): the parent (pid
    ``parent``, passed in: a parent killed while this worker started would already have
    handed it to init).
    """
    # Ctrl-C reaches every process of the terminal's group: the caller alone answers it
    # (it stops the workers), an idle worker would print a KeyboardInterrupt traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if environ is not None and environ != os.environ:
        os.environ.clear()
        os.environ.update(environ)
    set_default_threads(threads)
    root = logging.getLogger("nkflow")
    root.setLevel(level)
    if not root.handlers:
        root.addHandler(logging.NullHandler())
    watch = threading.Thread(
        target=_exit_without_parent, args=(parent,), name="nkflow-parent", daemon=True
    )
    watch.start()
    import_modules(modules)


def new_pool(n: int, modules: tuple[str, ...] = ()) -> ProcessPoolExecutor:
    """A process pool of ``n`` workers that import ``modules`` when they start.

    With the fork server, a server not yet running starts with ``modules`` (and never
    with the caller's ``__main__``, which would re-run a script without a main guard).
    """
    if START_METHOD == "forkserver":
        start_forkserver(modules)
    return ProcessPoolExecutor(
        max_workers=n,
        mp_context=multiprocessing.get_context(START_METHOD),
        initializer=_init_worker,
        initargs=(
            logging.getLogger("nkflow").getEffectiveLevel(),
            max(1, available_cores() // n),
            os.getpid(),
            modules,
            dict(os.environ),
        ),
    )


@contextlib.contextmanager
def caller_script_hidden() -> Iterator[None]:
    """Start workers without them re-importing the caller's ``__main__``.

    A spawned (or fork-server) worker imports the parent's main script (as ``__mp_main__``) so that
    functions defined there can be unpickled. nkflow's workers only run nkflow's own
    functions, and re-importing a script without an ``if __name__ == "__main__":``
    guard would run the script's ``nk.run(...)`` again inside every worker, which
    breaks the pool. While workers start, the parent's ``__main__`` is a blank module,
    so the workers have no script to import.
    """
    main = sys.modules.get("__main__")
    if main is None or not (getattr(main, "__file__", None) or getattr(main, "__spec__", None)):
        yield  # a notebook or an interactive session: nothing to hide
        return
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main
