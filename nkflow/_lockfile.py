"""An exclusive lock on an open file that never waits: ``flock`` on POSIX, ``msvcrt`` on Windows.

The output folder's lock (:mod:`nkflow.pipeline.outdir`) keeps two runs from writing into
one folder. ``fcntl`` does not exist on Windows, where ``msvcrt.locking`` locks a byte range
from the file's current position instead (and another process cannot read a locked range:
the holder's PID then reads as unknown).
"""

from __future__ import annotations

import logging
import os
from types import ModuleType

__all__ = ["lock", "read_head", "unlock", "write_pid"]

logger = logging.getLogger(__name__)

fcntl: ModuleType | None
msvcrt: ModuleType | None
try:
    import fcntl
except ImportError:  # pragma: no cover - Windows (tested with a stand-in module)
    fcntl = None
try:
    import msvcrt  # type: ignore[import-not-found,unused-ignore]
except ImportError:
    msvcrt = None


def lock(fd: int) -> None:
    """Lock ``fd`` exclusively; raise OSError at once when another process holds it."""
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    elif msvcrt is not None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    else:  # neither POSIX nor Windows: run unguarded rather than not at all
        logger.warning("no file locking on this platform: two runs into one folder are not stopped")


def unlock(fd: int) -> None:
    """Let go of :func:`lock`."""
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    elif msvcrt is not None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def read_head(fd: int, size: int = 64) -> bytes:
    """The first ``size`` bytes of the file (empty when they cannot be read)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, size)
    except OSError:  # Windows: the holder's locked range
        return b""


def write_pid(fd: int) -> None:
    """Replace the file's content with this process's PID."""
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, f"{os.getpid()}\n".encode("ascii"))
