r"""A sheet's ``file`` values as the files on disk, and advice when one is not there.

A value is found as written, with ``\`` as folder separator (a sheet written on Windows),
and with ``.fcs`` / ``.lmd`` appended when it does not end in one (``2024.03.04_D1_unstim``
for ``2024.03.04_D1_unstim.fcs``). Each part of the path is also matched in another
Unicode normal form (macOS writes ``ü`` as ``u`` + combining diaeresis, a spreadsheet as one
character) and the extension in any case (``x.FCS`` for ``x.fcs``): these are the same name
to the analyst. Letter case elsewhere is not matched (on Linux ``P034_unstim.fcs`` and
``P034_Unstim.fcs`` may be two files), but :func:`missing_file_advice` names the file that
differs from the value only in case.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from pathlib import Path

__all__ = ["FCS_SUFFIXES", "missing_file_advice", "sheet_path"]

#: file name endings read as FCS files (a folder's files, a sheet's names without one)
FCS_SUFFIXES = (".fcs", ".lmd")


def _written_forms(value: str) -> list[str]:
    """The paths ``value`` may stand for, as written first."""
    slashed = value.replace("\\", "/")
    forms = [value, slashed]
    if Path(slashed).suffix.lower() not in FCS_SUFFIXES:
        forms += [slashed + ext for ext in FCS_SUFFIXES]
    return list(dict.fromkeys(forms))


def _same_name(name: str, last: bool) -> str:
    """A name as the analyst reads it: one Unicode normal form, the FCS extension in lower case."""
    name = unicodedata.normalize("NFC", name)
    stem, dot, suffix = name.rpartition(".")
    if last and dot and f".{suffix.lower()}" in FCS_SUFFIXES:
        return f"{stem}.{suffix.lower()}"
    return name


def _case_blind(name: str, last: bool) -> str:
    return _same_name(name, last).casefold()


def _walk(base: Path, written: str, key: Callable[[str, bool], str]) -> Path | None:
    """The one existing path whose every part equals ``written``'s under ``key``, or None."""
    parts = Path(written).parts
    here = base
    for number, part in enumerate(parts):
        step = here / part  # an absolute first part replaces base
        if step.exists():
            here = step
            continue
        if not here.is_dir():
            return None
        last = number == len(parts) - 1
        wanted = key(part, last)
        try:
            found = [p for p in here.iterdir() if key(p.name, last) == wanted]
        except OSError:
            return None
        if len(found) != 1:
            return None
        here = found[0]
    return here


def sheet_path(value: str, base: Path) -> Path:
    r"""A sheet's ``file`` value as a path, relative ones from the sheet's folder ``base``.

    Parameters
    ----------
    value
        The cell as written (``D1/D1_liver.fcs``, ``human\D1_liver``, ``x.FCS`` ...).
    base
        The sheet's folder.

    Returns
    -------
    pathlib.Path
        The file found (see the module's description), else ``base / value``.
    """
    forms = _written_forms(value)
    for form in forms:
        if (base / form).exists():
            return base / form
    for form in forms:
        if found := _walk(base, form, _same_name):
            return found
    return base / value


def missing_file_advice(value: str, base: Path) -> str:
    """Where a sheet's missing file may be instead, as advice (``""`` when nowhere).

    A file whose name differs only in letter case is named (``did you mean ...?``); else
    one found from the working directory, beside the sheet's folder or in it: paths in a
    sheet are relative to the sheet's folder, so a sheet written with paths from the
    working directory, or kept in a subfolder of its files, finds nothing there.
    """
    for form in _written_forms(value):
        if found := _walk(base, form, _case_blind):
            try:
                shown = found.relative_to(base)
            except ValueError:
                shown = found
            return (
                f"; did you mean '{shown}'? (it differs in letter case, and file names on "
                "this system tell case apart)"
            )
    name = Path(value.replace("\\", "/")).name
    for candidate in (Path.cwd() / value, base.parent / value, base / name):
        if candidate.is_file():
            return (f"; it is at {candidate}: paths in the sheet are relative to the "
                    f"sheet's folder ({base})")  # fmt: skip
    return ""
