"""What the command line shows on a terminal: log lines, warnings, progress bars.

Log records and warnings print one line each above the progress bars (``tqdm.write``),
with untrusted text (file names, sheet values) escaped; a warning prints as its text,
which names the file, not as the code line that raised it. When stderr is not a terminal
(a log file, ``tee``, a scheduler), :class:`ProgressLines` prints plain progress lines
instead of bars.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any, TextIO

from .io.text_safety import escape_text

__all__ = ["ProgressBars", "ProgressLines", "setup_logging"]


class _EscapingFormatter(logging.Formatter):
    """Log lines quote file names and sample ids: escape them like every other message."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_text(super().formatMessage(record))


class _AboveProgressHandler(logging.StreamHandler):
    """Log lines printed above the progress bars (tqdm.write), never glued onto one."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging must never raise
            self.handleError(record)


def setup_logging(verbose: int, quiet: bool) -> None:
    """Route nkflow's log records and warnings to stderr, one line each.

    Per-sample warnings (low event counts, fallback thresholds) are in the status table and
    the report; the console shows errors unless asked for more.

    Parameters
    ----------
    verbose
        0 errors, 1 warnings, 2 info, 3 or more debug.
    quiet
        Errors only, whatever ``verbose`` says.
    """
    level = {0: logging.ERROR, 1: logging.WARNING, 2: logging.INFO}.get(verbose, logging.DEBUG)
    if quiet:
        level = logging.ERROR
    handler = _AboveProgressHandler()
    handler.setFormatter(_EscapingFormatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("nkflow")
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)  # keeps Python's own showwarning to restore
    warnings.showwarning = _show_warning
    warn_handler = _AboveProgressHandler()
    warn_handler.setFormatter(_EscapingFormatter("nkflow: warning: %(message)s"))
    warn_logger = logging.getLogger("py.warnings")
    warn_logger.handlers[:] = [warn_handler]
    warn_logger.setLevel(level)


def _show_warning(message: Warning | str, *_: object, **__: object) -> None:
    """A warning as one line: its text, which names the file, not the code that raised it."""
    logging.getLogger("py.warnings").warning("%s", message)


class ProgressBars:
    """tqdm bars, one per pipeline stage, fed by the pipeline's progress callback."""

    def __init__(self) -> None:
        self._bars: dict[str, Any] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        from tqdm import tqdm

        bar = self._bars.get(stage)
        if bar is None and total == 0:  # a stage with nothing to do (no FMO tubes)
            return
        if bar is None:
            self.close()  # one stage at a time: the previous stage is finished
            bar = tqdm(total=total, desc=stage, unit="step", leave=False, file=sys.stderr)
            self._bars[stage] = bar
        bar.total = total
        bar.n = done
        bar.refresh()

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()


class ProgressLines:
    """Progress as plain lines, for a stderr that is not a terminal (bars would not redraw).

    A line when a stage starts (``nkflow: samples (60) ...``), then ``nkflow: samples:
    24/60 done`` when a further tenth of the stage is done or ``every`` seconds have passed
    since the last line (whichever comes first; never twice for one count), and when the
    stage ends. A stage with nothing to do prints nothing.

    Parameters
    ----------
    every
        Seconds after which the next finished step prints a line even within a tenth.
    stream
        Where the lines go; default ``sys.stderr`` at the time of each line.
    clock
        Monotonic seconds (a test passes its own).
    """

    def __init__(
        self,
        every: float = 10.0,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._every, self._stream, self._clock = every, stream, clock
        self._stage = ""
        self._shown = -1  # the last count printed
        self._tenth = 0  # the tenth of the stage the last line was in
        self._when = 0.0  # when the last line was printed

    def _line(self, text: str) -> None:
        stream = self._stream or sys.stderr
        print(f"nkflow: {escape_text(text)}", file=stream, flush=True)
        self._when = self._clock()

    def __call__(self, stage: str, done: int, total: int) -> None:
        if total <= 0:  # a stage with nothing to do (no FMO tubes)
            return
        if stage != self._stage:
            self._stage, self._shown, self._tenth = stage, done, 10 * done // total
            self._line(f"{stage} ({total}) ..." if total > 1 else f"{stage} ...")
            return
        if done == self._shown or total == 1:  # a one-step stage: its start line says it
            return
        tenth = 10 * done // total
        if done >= total or tenth > self._tenth or self._clock() - self._when >= self._every:
            self._shown, self._tenth = done, tenth
            self._line(f"{stage}: {done}/{total} done")

    def close(self) -> None:
        """Nothing to clear (the same interface as :class:`ProgressBars`)."""
