"""What an output folder records of the run that wrote it, and what ``--resume`` may take.

A run records, as soon as it holds the folder, its input, its files, its effective
settings and (from the command line) the command that finishes it
(:data:`RUN_RECORD`). A finished run's ``provenance.json`` and each finished sample's
``work/<sample>/result.json`` record its files too (by name, with their SHA-256), so
folders written before the record existed are judged as well.

``--resume`` finishes or updates a run *of the same inputs*: at least one file of the
new run must be a file of the folder's run, by name and content (its SHA-256, which a
finished run or sample records); when the folder records no file's content yet (a run
stopped before its first sample), a file of the same name in the same input folder or
sheet. A folder holding another batch's results is refused (it would be
replaced silently); ``--force`` replaces it. Within the same inputs a resume may differ:
a file replaced (its sample is redone), files left out or added, the batch folder moved,
other settings (an overrides file, ``--no-cluster``). Every sample's fingerprint holds
all its settings, so a sample computed under other settings is redone, never mixed with
this run's; the run says which recorded settings differ (:func:`resume_notes`).
"""

from __future__ import annotations

import json
import logging
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._version import __version__
from ..config import RunConfig, config_to_dict
from ..exceptions import OutputExistsError
from ..io.write import file_sha256, write_text_atomic

__all__ = [
    "RUN_RECORD",
    "finish_hint",
    "previous_run",
    "refuse_other_inputs",
    "resume_notes",
    "write_run_record",
]

logger = logging.getLogger(__name__)

#: The run's own record in its output folder (input, files, settings, finishing command)
RUN_RECORD = ".nkflow-run.json"
PROVENANCE = "provenance.json"
#: Settings that say where the work ran, not what it computed (left out of the comparison)
_WHERE = ("execution.workers", "execution.scheduler")
MAX_SHOWN = 3


def _read_json(path: Path) -> dict[str, Any]:
    try:
        if path.is_symlink():
            return {}
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def previous_run(root: Path) -> dict[str, Any]:
    """What the folder records of its run: ``input``, ``config``, ``resume_command``, ``files``.

    ``files`` maps each recorded input file's name to its SHA-256 (``""`` when only its
    name is known). Empty when the folder records nothing (a new folder).
    """
    record = _read_json(root / RUN_RECORD)
    provenance = _read_json(root / PROVENANCE)
    files: dict[str, str] = {str(Path(n).name): "" for n in record.get("files") or ()}
    for name, sha in (provenance.get("inputs_sha256") or {}).items():
        files[Path(str(name)).name] = str(sha)
    work = root / "work"
    if work.is_dir() and not work.is_symlink():
        for result in sorted(work.glob("*/result.json")):
            summary = _read_json(result)
            if summary.get("file") and summary.get("input_sha256"):
                files[Path(str(summary["file"])).name] = str(summary["input_sha256"])
    run = {k: record[k] for k in ("input", "config", "resume_command") if k in record}
    for key in ("input", "config"):
        if key not in run and key in provenance:
            run[key] = provenance[key]
    return {**run, "files": files} if files or run else {}


def refuse_other_inputs(
    root: Path, previous: Mapping[str, Any], input_path: Path, paths: Mapping[str, str]
) -> None:
    """Refuse ``--resume`` into a folder whose run had other inputs.

    Parameters
    ----------
    root
        The output folder.
    previous
        What it records (:func:`previous_run`).
    input_path
        This run's input folder or sheet.
    paths
        This run's input files: name -> path.

    Raises
    ------
    OutputExistsError
        No file of this run is one of the folder's run (by name and recorded SHA-256; by
        name in the same input when no content is recorded): the message names the
        folder, both inputs, the files and that ``--force`` replaces it.
    """
    recorded: dict[str, str] = dict(previous.get("files") or {})
    if not recorded:
        return  # the folder records no input: nothing to tell apart
    common = [name for name in paths if name in recorded]
    hashed = [name for name in common if recorded[name]]
    for name in hashed:
        if Path(paths[name]).is_file() and file_sha256(paths[name]) == recorded[name]:
            return  # one file of the same name and content: the same inputs
    if common and not hashed and _same_place(previous.get("input"), input_path):
        return  # only names recorded (no sample finished yet), in the same input
    old_input = str(previous.get("input") or "an unrecorded input")
    if hashed:
        files = (f"its {len(hashed)} file(s) of the same name as this run's have other "
                 f"content ({_shown(hashed)})")  # fmt: skip
    elif common:
        files = f"{len(common)} of its {len(recorded)} file names recur, in another input"
    else:
        files = (f"none of its {len(recorded)} file(s) ({_shown(sorted(recorded))}) is among "
                 f"this run's {len(paths)} ({_shown(sorted(paths))})")  # fmt: skip
    raise OutputExistsError(
        f"{root}: --resume refused: the folder holds the results of other inputs "
        f"(input {old_input}, this run's {input_path}; {files}); --resume only finishes a "
        "run of the same inputs: pass --force to replace it, or choose another -o/--out"
    )


def _same_place(recorded: object, input_path: Path) -> bool:
    """Whether the recorded input is ``input_path`` (a relative one: from here)."""
    try:
        return recorded is not None and Path(str(recorded)).resolve() == input_path.resolve()
    except OSError:
        return False


def _shown(names: Sequence[str]) -> str:
    more = f" and {len(names) - MAX_SHOWN} more" if len(names) > MAX_SHOWN else ""
    return ", ".join(names[:MAX_SHOWN]) + more


def _flat(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def resume_notes(
    previous: Mapping[str, Any], config: RunConfig, reused: int, total: int
) -> list[str]:
    """What a resume kept and changed: the samples reused, the settings that differ.

    Parameters
    ----------
    previous
        What the folder recorded before the resume (:func:`previous_run`).
    config
        This run's settings.
    reused, total
        Samples taken from the earlier run, samples analysed.

    Returns
    -------
    list of str
        One sentence each.
    """
    notes = [f"resumed: {reused} of {total} samples already done, {total - reused} run now"]
    old = _flat(previous.get("config") or {})
    new = _flat(config_to_dict(config))
    changed = [f"{k} {old[k]!r} -> {new[k]!r}" for k in sorted(set(old) & set(new))
               if k not in _WHERE and old[k] != new[k]]  # fmt: skip
    if changed:
        notes.append(
            f"resumed with settings other than the folder's run ({'; '.join(changed)}): "
            "every sample they change was run again, none mixes the two"
        )
    return notes


def write_run_record(
    root: Path,
    input_path: Path,
    files: Sequence[str],
    config: RunConfig,
    command: Sequence[str] | None = None,
) -> None:
    """Record the run in its folder (:data:`RUN_RECORD`) once it holds the folder.

    Parameters
    ----------
    root
        The output folder (locked by this run).
    input_path
        The input folder or sheet.
    files
        The batch's file entries.
    config
        The effective settings.
    command
        The command that finishes this run when interrupted (``nkflow run ... --resume``),
        or ``None`` (a run started from Python).
    """
    record = {
        "nkflow": __version__,
        "input": str(Path(input_path).resolve()),
        "files": sorted({Path(str(f)).name for f in files}),
        "config": config_to_dict(config),
        "resume_command": list(command) if command else None,
    }
    write_text_atomic(root / RUN_RECORD, json.dumps(record, indent=2, default=str), root=root)


def finish_hint(root: Path) -> str:
    """How to finish the folder's unfinished run, from what it records."""
    previous = previous_run(root)
    if previous.get("resume_command"):
        return f"finish it with `{shlex.join(map(str, previous['resume_command']))}`"
    if previous.get("input"):
        return (f"finish it with `nkflow run {shlex.quote(str(previous['input']))} -o "
                f"{shlex.quote(str(root))} --resume` and the settings it was started with "
                f"(recorded in {root / RUN_RECORD})")  # fmt: skip
    return f"finish it with `nkflow run INPUT -o {root} --resume` and its own options"
