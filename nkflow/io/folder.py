"""A metadata sheet built from a folder of FCS files, when the lab gives none.

One row per ``*.fcs`` / ``*.lmd`` file of the folder (not its subfolders), its
``sample_id`` the file name and its role guessed from the name: FMO tubes and their
marker, unstained, unstimulated and stimulated tubes and named conditions. Donor, tissue
and timepoint are left empty: :mod:`nkflow.io.pairing` says what that means for pairing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..exceptions import MetadataError
from .metadata import FCS_SUFFIXES, OPTIONAL_COLUMNS, REQUIRED_COLUMNS, screen_cells
from .panel import CANONICAL_MARKERS, marker_from_text
from .text_safety import escape_text

__all__ = [
    "folder_sheet_hint",
    "metadata_from_files",
    "metadata_from_folder",
    "role_from_name",
    "unlisted_files_summary",
]

_POSITIVE_CONTROL = re.compile(
    r"(?:^|[^a-z])(?:pc|posctrl|poscontrol|positive[-_ ]?control)(?:[^a-z]|$)"
)
_ROLE_PATTERNS = (
    (re.compile(r"(?:^|[^a-z])unstained(?:[^a-z]|$)"), "unstained"),
    (re.compile(r"(?:^|[^a-z])(?:unstim|unstimulated|nostim|no[-_ ]stim)(?:[^a-z]|$)"), "unstim"),
    (re.compile(r"(?:^|[^a-z])(?:stim|stimulated|pma|pmaiono)(?:[^a-z]|$)"), "stim"),
)


def _fmo_marker(stem: str) -> str | None:
    """The canonical marker an FMO file name names, before or after ``FMO``, or None.

    ``liver_FMO_AREG``, ``FMO-IFN-g_liver``, ``liver_AREG_FMO``, ``CD69 FMO``: the one or
    two words next to ``FMO`` (joined with ``-`` or not) are read as a marker name, those
    after it first.
    """
    words = [w for w in re.split(r"[-_ .]+", stem) if w]
    for k, word in enumerate(words):
        if word.lower() != "fmo":
            continue
        after, before = words[k + 1 : k + 3], words[max(0, k - 2) : k]
        for pair, nearest in ((after, after[:1]), (before, before[-1:])):
            for text in ("-".join(pair), "".join(pair), *nearest):
                if text and (marker := marker_from_text(text)) in CANONICAL_MARKERS:
                    return marker
    glued = re.search(r"(?:^|[^a-z])fmo([a-z0-9]+)", stem.lower())  # FMOAREG
    if glued and (marker := marker_from_text(glued.group(1))) in CANONICAL_MARKERS:
        return marker
    return None


def role_from_name(stem: str) -> tuple[str, str]:
    """Guess (role, stimulation) from a file stem, conservatively.

    ``FMO`` with a marker -> ``fmo:<MARKER>``; ``PC`` or ``positive control`` -> the
    (stimulated) positive control; ``unstained``; ``unstim``; ``stim``/``PMA`` or a named
    condition (``IL-15``, ``IL2``, ``dex``) -> a stimulated tube; else ``sample``.
    """
    low = stem.lower()
    if re.search(r"(?:^|[^a-z])fmo", low):
        marker = _fmo_marker(stem)
        return (f"fmo:{marker}", "") if marker else ("sample", "")
    if _POSITIVE_CONTROL.search(low):  # e.g. PC_ILC_stim: judged as the batch's control
        return "positive_control", "stim"
    for pattern, role in _ROLE_PATTERNS:
        if pattern.search(low):
            if role == "stim" and (named := _named_condition(low)):
                return role, named
            if role == "unstained":
                return role, ""
            return role, role
    named = _named_condition(low)
    return ("stim", named) if named else ("sample", "")


def _named_condition(low: str) -> str:
    """A stimulation condition a lower-cased file stem names (``IL15``, ``IL-2``, ``dex``)."""
    cytokine = re.search(r"(?:^|[^a-z0-9])il-?(2|12|15|18|21)(?:[^0-9a-z]|$)", low)
    if cytokine:
        return f"IL-{cytokine.group(1)}"
    if re.search(r"(?:^|[^a-z])(?:dex|dexa|dexamethasone)(?:[^a-z]|$)", low):
        return "dexamethasone"
    return ""


def metadata_from_folder(folder: str | Path, *, neutralise_formulas: bool = False) -> pd.DataFrame:
    """Build a metadata sheet from the FCS files of a folder (not recursive).

    ``sample_id`` is the file stem (made unique with ``_2``, ``_3`` ... if needed);
    ``role`` is guessed conservatively from the name (``FMO_CD69`` or ``CD69_FMO`` ->
    ``fmo:CD69``, ``unstained``, ``unstim``, ``stim``; ``IL-15``, ``IL2``, ``dex`` -> a
    stimulated tube of that condition), else ``sample``.

    Parameters
    ----------
    folder
        A folder holding ``*.fcs`` / ``*.lmd`` files.
    neutralise_formulas
        As in :func:`read_metadata`: file names (and so sample ids) that a spreadsheet
        would run as formulas or that hold control characters are refused, or with True
        prefixed with ``'``.

    Returns
    -------
    pandas.DataFrame
        Same columns as :func:`read_metadata`, files sorted by name.

    Raises
    ------
    MetadataError
        The folder does not exist, holds no FCS files, or file names are refused (each
        one listed).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MetadataError(folder, ["not a folder"])
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FCS_SUFFIXES)
    if not files:
        raise MetadataError(folder, [_no_files_here(folder)])
    return _files_table(files, folder, [f.name for f in files], neutralise_formulas)


def metadata_from_files(
    paths: Sequence[str | Path], *, neutralise_formulas: bool = False
) -> pd.DataFrame:
    """Build a metadata sheet for FCS files given one by one, as a folder's would be.

    ``sample_id`` and ``role`` as in :func:`metadata_from_folder`; ``file`` is the absolute
    path, so the sheet can be written and read anywhere.

    Parameters
    ----------
    paths
        FCS files, in the order wanted.
    neutralise_formulas
        As in :func:`metadata_from_folder`.

    Returns
    -------
    pandas.DataFrame
        Same columns as :func:`read_metadata`.

    Raises
    ------
    MetadataError
        A path is not a file, or file names are refused (each one listed).
    """
    files = [Path(os.path.abspath(p)) for p in paths]  # symlinks keep their names
    missing = [f"{escape_text(f)}: no such file" for f in files if not f.is_file()]
    if missing:
        raise MetadataError("<files>", missing)
    source = files[0] if len(files) == 1 else "<files>"
    return _files_table(files, source, [str(f) for f in files], neutralise_formulas)


def _files_table(
    files: list[Path], source: str | Path, names: list[str], neutralise_formulas: bool
) -> pd.DataFrame:
    """The sheet of ``files`` (``file`` column: ``names``), each role guessed from its name."""
    rows = []
    used: set[str] = set()
    for f, name in zip(files, names, strict=True):
        sid = f.stem
        k = 2
        while sid in used:
            sid = f"{f.stem}_{k}"
            k += 1
        used.add(sid)
        role, stim = role_from_name(f.stem)
        row = {"file": name, "sample_id": sid}
        row.update({c: "" for c in OPTIONAL_COLUMNS})
        row.update({"role": role, "stimulation": stim, "path": os.path.abspath(f)})
        rows.append(row)
    table = pd.DataFrame(rows, columns=[*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS, "path"])
    problems: list[str] = []
    screen_cells(
        table,
        source,
        problems,
        neutralise_formulas=neutralise_formulas,
        locate=lambda i: f"file '{escape_text(files[int(str(i))].name)}'",
    )
    if problems:
        raise MetadataError(source, problems)
    table.attrs["source"] = str(source)
    return table


#: files beside a folder's FCS files that may be the batch's metadata sheet
_SHEET_SUFFIXES = (".csv", ".tsv", ".xlsx", ".xls", ".ods")


def folder_sheet_hint(meta: pd.DataFrame) -> str:
    """One line when a folder run read file names although the folder holds a sheet, or ``""``.

    A folder is described by its ``metadata.csv``; without one, donors, tissues and
    timepoints are unknown (:func:`metadata_from_folder`). A sheet under another name
    (``samples.csv``, ``layout.xlsx``) is not read: this names it and how to use it.
    ``meta.attrs["source"]`` is the folder.
    """
    source = str(meta.attrs.get("source", "") or "")
    folder = Path(source)
    if not source or not folder.is_dir() or (folder / "metadata.csv").is_file():
        return ""
    found = sorted(p.name for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in _SHEET_SUFFIXES)  # fmt: skip
    if not found:
        return ""
    names = ", ".join(escape_text(n) for n in found[:5]) + (" ..." if len(found) > 5 else "")
    return (
        f"sheet: none read: without a metadata.csv the folder's FCS files are read by their "
        f"names alone (no donor, tissue or timepoint), and it holds {names}; to use a sheet, "
        f"give its path instead of the folder (a workbook saved as CSV UTF-8 first)"
    )


def unlisted_files_summary(meta: pd.DataFrame) -> str:
    """One line naming FCS files beside a sheet's files that the sheet does not list, or ``""``.

    A tube left out of the sheet is not analysed, and a forgotten FMO leaves its marker
    on the fallback rule; this names them. Only a sheet's batch (``attrs["source"]`` a
    file) is checked, in the folders its files are in (not their subfolders).
    """
    source = str(meta.attrs.get("source", "") or "")
    if not source or not Path(source).is_file() or "path" not in meta.columns:
        return ""
    listed = {Path(os.path.abspath(str(p))) for p in meta["path"] if str(p)}
    folders = {p.parent for p in listed}
    unlisted = sorted(
        f for d in folders if d.is_dir() for f in d.iterdir()
        if f.is_file() and f.suffix.lower() in FCS_SUFFIXES and f not in listed
    )  # fmt: skip
    if not unlisted:
        return ""
    names = ", ".join(escape_text(f.name) for f in unlisted[:8])
    more = f" ... ({len(unlisted)} in all)" if len(unlisted) > 8 else ""
    return (
        f"sheet: {len(unlisted)} FCS file(s) beside the sheet's files are not in it, so not "
        f"analysed: {names}{more} (an FMO left out leaves its marker on the fallback rule)"
    )


def _no_files_here(folder: Path, limit: int = 10_000) -> str:
    """Why a folder gives no batch, and where its FCS files are when they sit in subfolders.

    Subfolders are not read (they may hold exports of the same events); when they hold FCS
    files, the message names them and says how to run them: a metadata sheet in the folder
    lists each file by its path relative to the sheet. At most ``limit`` entries are walked.
    """
    found: dict[str, list[Path]] = {}
    try:
        for n, p in enumerate(folder.rglob("*")):
            if n >= limit:
                break
            if p.suffix.lower() in FCS_SUFFIXES and p.is_file():
                found.setdefault(p.relative_to(folder).parts[0], []).append(p)
    except OSError:  # a subfolder that cannot be listed: say what was found before it
        pass
    if not found:
        return "no *.fcs or *.lmd files in the folder"
    total = sum(len(v) for v in found.values())
    names = sorted(found)
    shown = ", ".join(f"{escape_text(d)}/ ({len(found[d])})" for d in names[:5])
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    example = min(found[names[0]]).relative_to(folder).as_posix()
    return (
        f"no *.fcs or *.lmd files in the folder itself, {total} in its subfolders "
        f"{shown}{more} (subfolders are not read): run one subfolder, or put a "
        f"metadata.csv in this folder listing each file by its path relative to it "
        f"(columns file and sample_id, e.g. {escape_text(example)!r}; the README's "
        "'The metadata sheet' has the rest)"
    )
