"""What an output folder records of the run that wrote it, and what ``--resume`` may take.

A run records, as soon as it holds the folder, its input, its files (their names and
sizes, and the SHA-256 of the smallest one), its effective settings and (from the
command line) the command that finishes it, with absolute paths (:data:`RUN_RECORD`). A
finished run's ``provenance.json`` and each finished sample's ``work/<sample>/result.json``
record its files too (by name, with their SHA-256), so folders written before the record
existed are judged as well.

``--resume`` finishes or updates a run *of the same inputs*: at least one file of the
new run must be a file of the folder's run, by name and content (its SHA-256, which the
record, a finished run or a finished sample holds). A folder whose run finished no
sample holds no results: when none of this run's files has a recorded SHA-256 (a record
of an older build, or the hashed file left out), a file of the same name and size (the
name alone when no size is recorded) is enough, wherever the batch now lies. A folder
holding another batch's results is refused (it would be replaced silently); ``--force``
replaces it. Within the same inputs a resume may differ: a file replaced (its sample is
redone), files left out or added, the batch folder moved or given as its sheet, other
settings (an overrides file, ``--no-cluster``). Every sample's fingerprint holds all its
settings, so a sample computed under other settings is redone, never mixed with this
run's; the run says which recorded settings differ (:func:`resume_notes`).
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
    """What an output folder records of the run that wrote it.

    Parameters
    ----------
    root
        The output folder.

    Returns
    -------
    dict
        Empty when the folder records nothing (a new folder). Otherwise ``files``: each
        recorded input file's name -> its SHA-256 (``""`` when only its name is known);
        ``sizes``: name -> bytes, as the run record holds them; ``finished``: whether the
        folder holds results (a ``provenance.json`` or a finished sample's
        ``result.json``); and, where recorded, ``input``, ``config`` and
        ``resume_command``.
    """
    record = _read_json(root / RUN_RECORD)
    provenance = _read_json(root / PROVENANCE)
    files: dict[str, str] = {str(Path(n).name): "" for n in record.get("files") or ()}
    hashes = record.get("sha256") if isinstance(record.get("sha256"), dict) else {}
    files.update({Path(str(n)).name: str(sha) for n, sha in hashes.items() if sha})
    raw_sizes = record.get("sizes") if isinstance(record.get("sizes"), dict) else {}
    sizes = {Path(str(n)).name: v for n, v in raw_sizes.items() if isinstance(v, int)}
    finished = bool(provenance)
    for name, sha in (provenance.get("inputs_sha256") or {}).items():
        files[Path(str(name)).name] = str(sha)
    work = root / "work"
    if work.is_dir() and not work.is_symlink():
        for result in sorted(work.glob("*/result.json")):
            summary = _read_json(result)
            finished = finished or bool(summary)
            if summary.get("file") and summary.get("input_sha256"):
                files[Path(str(summary["file"])).name] = str(summary["input_sha256"])
    run = {k: record[k] for k in ("input", "config", "resume_command") if k in record}
    for key in ("input", "config"):
        if key not in run and key in provenance:
            run[key] = provenance[key]
    if not (files or run):
        return {}
    return {**run, "files": files, "sizes": sizes, "finished": finished}


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
        No file of this run is one of the folder's run: by name and recorded SHA-256;
        where none of the common files has one, by name and size when the folder holds
        no results yet, by name in the same input when it does. The message names the
        folder, both inputs, the files and that ``--force`` replaces it, and says
        whether the folder holds results.
    """
    recorded: dict[str, str] = dict(previous.get("files") or {})
    if not recorded:
        return  # the folder records no input: nothing to tell apart
    common = [name for name in paths if name in recorded]
    hashed = [name for name in common if recorded[name]]
    for name in hashed:
        if Path(paths[name]).is_file() and file_sha256(paths[name]) == recorded[name]:
            return  # one file of the same name and content: the same inputs
    finished = bool(previous.get("finished", True))
    sizes: Mapping[str, int] = previous.get("sizes") or {}
    alike = [name for name in common if name not in sizes or _size(paths[name]) == sizes[name]]
    if common and not hashed:
        if not finished and alike:
            return  # no results yet, and files of the same name (and size) wherever they lie
        if finished and _same_place(previous.get("input"), input_path):
            return  # only names recorded for these files, in the same input
    old_input = str(previous.get("input") or "an unrecorded input")
    if hashed:
        files = (f"its {len(hashed)} file(s) of the same name as this run's have other "
                 f"content ({_shown(hashed)})")  # fmt: skip
    elif common and not finished:
        files = f"its {len(common)} file(s) of the same name have other sizes ({_shown(common)})"
    elif common:
        files = f"{len(common)} of its {len(recorded)} file names recur, in another input"
    else:
        files = (f"none of its {len(recorded)} file(s) ({_shown(sorted(recorded))}) is among "
                 f"this run's {len(paths)} ({_shown(sorted(paths))})")  # fmt: skip
    holds = ("holds the results of other inputs" if finished else
             "was started on other inputs (it stopped before any sample finished)")  # fmt: skip
    raise OutputExistsError(
        f"{root}: --resume refused: the folder {holds} "
        f"(input {old_input}, this run's {input_path}; {files}); --resume only finishes a "
        "run of the same inputs: pass --force to replace it, or choose another -o/--out"
    )


def _size(path: str) -> int | None:
    try:
        return Path(path).stat().st_size
    except OSError:
        return None


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
    files: Mapping[str, str],
    config: RunConfig,
    command: Sequence[str] | None = None,
) -> None:
    """Record the run in its folder (:data:`RUN_RECORD`) once it holds the folder.

    Besides the file names it records their sizes and the SHA-256 of the smallest
    non-empty file (one read, a small one), so that a ``--resume`` of a run stopped
    before any sample finished is judged by content too, wherever the batch then lies.

    Parameters
    ----------
    root
        The output folder (locked by this run).
    input_path
        The input folder or sheet.
    files
        The batch's files: name -> path.
    config
        The effective settings.
    command
        The command that finishes this run when interrupted (``nkflow run ... --resume``,
        with absolute paths), or ``None`` (a run started from Python).
    """
    names = {Path(str(f)).name: str(p) for f, p in files.items()}
    sizes = {name: size for name, path in names.items() if (size := _size(path))}
    hashed: dict[str, str] = {}
    for name in sorted(sizes, key=lambda n: (sizes[n], n)):
        try:
            hashed[name] = file_sha256(names[name])
            break
        except OSError:  # unreadable: its own reading fails and says why
            continue
    record = {
        "nkflow": __version__,
        "input": str(Path(input_path).resolve()),
        "files": sorted(names),
        "sizes": sizes,
        "sha256": hashed,
        "config": config_to_dict(config),
        "resume_command": list(command) if command else None,
    }
    write_text_atomic(root / RUN_RECORD, json.dumps(record, indent=2, default=str), root=root)


def finish_hint(root: Path) -> str:
    """How to finish the folder's unfinished run, from what it records.

    Parameters
    ----------
    root
        The output folder.

    Returns
    -------
    str
        ``finish it with `COMMAND```: the recorded command (absolute paths, so it works
        from any directory), else one built from the recorded input that says where the
        settings are recorded, else a generic one.
    """
    previous = previous_run(root)
    if previous.get("resume_command"):
        return f"finish it with `{shlex.join(map(str, previous['resume_command']))}`"
    if previous.get("input"):
        return (f"finish it with `nkflow run {shlex.quote(str(previous['input']))} -o "
                f"{shlex.quote(str(root.absolute()))} --resume` and the settings it was "
                f"started with (recorded in {root / RUN_RECORD})")  # fmt: skip
    return f"finish it with `nkflow run INPUT -o {root.absolute()} --resume` and its own options"
