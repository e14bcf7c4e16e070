"""How the command line stops when asked to: Ctrl-C, SIGTERM, and the command that resumes.

A scheduler's time limit, ``kill`` or a container's stop send SIGTERM, whose default
action ends the process where it stands: no resume hint, and the multiprocessing
resource tracker's "leaked semaphore objects" warning. :func:`sigterm_interrupts` makes
SIGTERM raise :class:`Terminated`, a :class:`KeyboardInterrupt`, so both stop the same
clean way; :func:`interrupt_exit_code` is 128 + the signal (130 for SIGINT, 143 for
SIGTERM), as a shell reports a process that a signal ended.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import click
from click.core import ParameterSource

__all__ = ["Terminated", "interrupt_exit_code", "resume_command", "sigterm_interrupts"]

#: run options the resume command leaves out: how the run talks, not what it computes
NOT_RESUMED = frozenset({"force", "resume", "quiet", "verbose", "out"})
#: options whose value is a shipped name or a keyword (these), or else a file: a file is
#: made absolute, as the run reads it (a template file before a shipped name of the same)
NAME_OR_FILE: dict[str, tuple[str, ...]] = {"template": (), "compensation": ("file", "none")}
#: where a value the user gave comes from (not click's defaults)
_GIVEN = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's :class:`KeyboardInterrupt`."""

    signum = signal.SIGTERM


def interrupt_exit_code(exc: BaseException) -> int:
    """128 + the signal that stopped the run: 130 for Ctrl-C, 143 for SIGTERM."""
    return 128 + int(getattr(exc, "signum", signal.SIGINT))


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (only in the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def resume_command(ctx: click.Context, out_dir: Path) -> list[str]:
    """The command that finishes an interrupted run: its input, the options given, ``--resume``.

    Only the options the user gave (on the command line or in the environment), by
    :meth:`click.Context.get_parameter_source`: comparing a value with the option's
    default fails on click 8.2+, where a flag's default is a sentinel, and the command
    then switched off clustering and scoring. A bare ``nkflow run INPUT -o OUT --resume``
    would finish the run with the default settings: every tube's fingerprint holds the
    settings, so each would be redone under others.

    Every path is absolute (:func:`_absolute`): the folder records the command, and
    ``nkflow thresholds`` or a later run print it, from whatever directory they run in.
    """
    words = ["nkflow", ctx.info_name or "run"]
    options: list[str] = []
    for param in ctx.command.params:
        name = param.name or ""
        value = ctx.params.get(name)
        if isinstance(param, click.Argument):
            words.append(_absolute(param, value))
        elif name in NOT_RESUMED or value is None or ctx.get_parameter_source(name) not in _GIVEN:
            continue
        elif isinstance(param, click.Option) and param.is_flag:
            opts = param.opts if value or not param.secondary_opts else param.secondary_opts
            if value or param.secondary_opts:
                options.append(max(opts, key=len))
        else:
            options += [max(param.opts, key=len), _absolute(param, value)]
    return [*words, "-o", os.path.abspath(out_dir), *options, "--resume"]


def _absolute(param: click.Parameter, value: object) -> str:
    """A value as the command gives it again: a path made absolute (``..`` folded, links kept).

    A :class:`click.Path` parameter's value is a path; a template or compensation value
    is one when it names an existing file, as the run reads it (a shipped name or
    ``file``/``none`` stays as it is).
    """
    text = str(value)
    keywords = NAME_OR_FILE.get(param.name or "")
    if isinstance(param.type, click.Path) or (
        keywords is not None and text not in keywords and Path(text).is_file()
    ):
        return os.path.abspath(text)
    return text


def shown(command: list[str]) -> str:
    """A command as one line a shell reads back the same (quoted where needed)."""
    return shlex.join(command)
