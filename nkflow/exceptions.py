"""Exceptions and warnings raised by nkflow.

One base class, :class:`NkflowError`, so callers can catch everything nkflow
raises on purpose with a single ``except``. Each subclass also inherits the
matching built-in exception (``OSError``, ``KeyError``, ``ValueError``), so code
written against the standard library keeps working.

Messages name the file, the bad value and the valid choices.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "BatchConsistencyError",
    "ChannelNotFoundError",
    "ClusterSizeWarning",
    "ConfigError",
    "ContextWarning",
    "FCSQuirkWarning",
    "FCSReadError",
    "GatingError",
    "GatingTemplateError",
    "LowEventCountWarning",
    "MetadataError",
    "MissingControlWarning",
    "MissingSpilloverWarning",
    "NkflowError",
    "NkflowWarning",
    "OutputExistsError",
    "OutputFolderError",
    "PanelError",
    "PanelMismatchError",
    "PanelWarning",
    "SchedulerError",
    "ThresholdDriftWarning",
    "TransformedDataError",
    "UnmixingRequiredError",
]


class NkflowError(Exception):
    """Base class of every error nkflow raises on purpose."""


class FCSReadError(NkflowError, OSError):
    """An events file cannot be read: an FCS file, or an ``.h5ad`` container.

    Parameters
    ----------
    path
        The file that failed.
    reason
        What is wrong with it, in words an analyst understands.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"

    def __reduce__(self) -> tuple:
        # errors cross process boundaries (worker pools, Dask): rebuild from the fields
        return (type(self), (self.path, self.reason))


class ChannelNotFoundError(NkflowError, KeyError):
    """A channel or marker was asked for that the data does not have.

    Parameters
    ----------
    name
        The channel or marker asked for.
    available
        What the data has, listed in the message.
    source
        Where the lookup happened (a file path or sample id), if known.
    what
        What was looked for: ``"channel or marker"``, or ``"population"`` (a gate's
        population in ``obs``; with none there the message says to gate first).
    """

    def __init__(
        self,
        name: str,
        available: Iterable[str] = (),
        source: str | Path | None = None,
        what: str = "channel or marker",
    ) -> None:
        self.name = name
        self.available = list(available)
        self.source = source
        where = f"{source}: " if source is not None else ""
        have = ", ".join(map(str, self.available)) or "none"
        if what == "population" and not self.available:
            have += " (the sample is not gated: run nk.gating.gate first)"
        self.message = f"{where}no {what} {name!r}; available: {have}"
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would add quotes around the message
        return self.message

    def __reduce__(self) -> tuple:
        return (type(self), (self.name, self.available, self.source))


class PanelError(NkflowError, ValueError):
    """Markers cannot be resolved unambiguously from a file's channels and panel."""


class MetadataError(NkflowError, ValueError):
    """A metadata sheet has problems; every problem found is listed.

    Parameters
    ----------
    path
        The sheet (or folder) that was validated.
    problems
        One line per problem.
    """

    def __init__(self, path: str | Path, problems: Iterable[str]) -> None:
        self.path = Path(path)
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{self.path}: {len(self.problems)} problem(s)\n{lines}")

    def __reduce__(self) -> tuple:
        return (type(self), (self.path, self.problems))


class BatchConsistencyError(NkflowError, ValueError):
    """The files of a batch disagree in a way nkflow cannot reconcile."""


class GatingTemplateError(NkflowError, ValueError):
    """A gating template (nkflow TOML, GatingML or FlowJo workspace) is invalid."""


class PanelMismatchError(GatingTemplateError):
    """A batch's panel cannot support the gating template (found before any work).

    No NK anchor at all (the message names what the panel has and what would be needed),
    or no species in the sheet and none the panel can tell. An input problem, not a
    usage error: the CLI exits 1.
    """


class GatingError(NkflowError, RuntimeError):
    """Gating a sample failed (for example a threshold could not be computed)."""


class ConfigError(NkflowError, ValueError):
    """A run configuration value is invalid."""


class UnmixingRequiredError(NkflowError, ValueError):
    """A spectral file holds raw detector channels; it must be unmixed before analysis."""


class TransformedDataError(NkflowError, ValueError):
    """A file's events are already transformed (e.g. logicle in a flowCore export).

    nkflow cannot know the transform's parameters, so it can neither bring the values
    back to a linear scale nor compensate or transform them again; the untransformed
    (linear) events must be exported instead.
    """


class OutputExistsError(NkflowError, FileExistsError):
    """The output folder exists and overwriting it was not allowed."""


class OutputFolderError(NkflowError, OSError):
    """The output folder cannot be used or written.

    No space left, a read-only file system, no permission, a symbolic link inside the
    folder, or another nkflow run holding its lock. ``errno`` is set when the cause was
    an operating-system error. The message names the path and the cause in one line.
    """

    def __init__(self, message: str, errno: int | None = None) -> None:
        self.message = message
        super().__init__(message)
        self.errno = errno

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple:
        return (type(self), (self.message, self.errno))


class SchedulerError(NkflowError, ConnectionError):
    """The Dask scheduler a run was given cannot be used.

    It cannot be reached (the message names its address and the cause), or Dask's
    ``distributed`` is not installed. Raised before the run creates its output folder.
    """


class NkflowWarning(UserWarning):
    """Base class of nkflow's warnings."""


class FCSQuirkWarning(NkflowWarning):
    """An FCS file breaks the standard in a way nkflow tolerates (the quirk is named)."""


class ContextWarning(NkflowWarning):
    """A sample's recorded context contradicts itself; neither record was believed.

    For example ``glucocorticoid`` ``no`` beside a treatment that names a glucocorticoid:
    read as unknown (the flag says the pro-tumour reading cannot be excluded), and the
    message names the tubes.
    """


class LowEventCountWarning(NkflowWarning):
    """A population has fewer events than the minimum needed for stable percentages."""


class MissingControlWarning(NkflowWarning):
    """A control (FMO, unstimulated, positive) is missing; a fallback rule was used."""


class MissingSpilloverWarning(NkflowWarning):
    """A conventional flow file has no spillover matrix; it was left uncompensated."""


class PanelWarning(NkflowWarning):
    """A user panel names channels a file lacks, or markers the alias table does not know.

    Nothing is changed: such entries are ignored (channels) or kept as written (markers).
    """


class ThresholdDriftWarning(NkflowWarning):
    """A threshold moved between batches by more than the configured bound."""


class ClusterSizeWarning(NkflowWarning):
    """A batch's cells support a smaller clustering than asked for.

    The SOM grid or the metacluster count was lowered to what the training cells support
    (:mod:`nkflow.tl._cluster_size`); the message names both numbers and why.
    """
