"""What a sheet leaves unread: columns under other names, controls it calls samples.

Both are said, never acted on: a ``Patient`` column may be the donor or a study code, a
file named ``FMO CD69`` may be a sample of a study of FMO artefacts. The notes go to
``nkflow check``, the run's plan and the report (:func:`nkflow.io.pairing.batch_notes`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from .._dates import AMBIGUOUS, date_order
from .folder import role_from_name
from .metadata import CONTROL_ROLE_PREFIXES, OPTIONAL_COLUMNS, REQUIRED_COLUMNS, role_of
from .sheet_columns import COLUMN_SYNONYMS, column_renames, filled
from .text_safety import escape_text
from .write import file_sha256

__all__ = [
    "ambiguous_dates_summary",
    "identical_files_summary",
    "unnamed_controls_summary",
    "unread_columns_summary",
]


def _role_columns(meta: pd.DataFrame) -> list[str]:
    """Unread columns whose every value is an nkflow role, not all of them ``sample``.

    For example a ``Tube`` column of ``unstim``, ``stim``, ``fmo:CD69`` ...
    """
    own = {*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS, *COLUMN_SYNONYMS, "path"}
    out = []
    for column in meta.columns:
        if column in own:
            continue
        values = meta[column].fillna("").astype(str).str.strip()
        roles = [role_of(v) for v in values if v]
        if roles and None not in roles and set(roles) != {"sample"}:
            out.append(column)
    return out


def unread_columns_summary(meta: pd.DataFrame) -> str:
    """One line on sheet columns nkflow does not read that look like one it does, or ``""``.

    A sheet that names its donors ``Patient`` (or its conditions ``Condition``, its
    batches ``Plate`` ...) leaves nkflow's own column empty: tubes of different donors
    are then not told apart. Named when nkflow's column is empty (``role`` all
    ``sample``) and a :data:`~nkflow.io.sheet_columns.COLUMN_SYNONYMS` column holds values,
    or, for ``role``, a column whose values are all roles (``Tube``: ``fmo:CD69``,
    ``unstim`` ...).

    Parameters
    ----------
    meta
        The sheet as :func:`nkflow.io.read_metadata` returns it.

    Returns
    -------
    str
    """
    renames = column_renames(meta, [c for c in COLUMN_SYNONYMS if not filled(meta, c)])
    if not filled(meta, "role") and (roles := _role_columns(meta)):
        renames.append(f"'{escape_text(roles[0])}' -> 'role'")
    if not renames:
        return ""
    return (
        "sheet: column(s) nkflow does not read that look like its own: "
        + ", ".join(renames)
        + " (nkflow reads only its own column names, listed in the README's metadata "
        "sheet section: rename them if they hold that, or they stay unused)"
    )


def unnamed_controls_summary(meta: pd.DataFrame, *, shown: int = 4) -> str:
    """One line on files a sheet without roles analyses as samples though named as controls.

    Without a ``role`` column every tube is a sample: an FMO tube is then gated, scored
    and pooled as a donor's sample, and its marker is cut by the fallback rule. A folder
    run guesses roles from file names (:func:`~nkflow.io.folder.role_from_name`); a sheet
    says what each tube is, so here the guesses are only named.

    Parameters
    ----------
    meta
        The sheet as :func:`nkflow.io.read_metadata` returns it.
    shown
        Files named in the line (the rest are counted).

    Returns
    -------
    str
        ``""`` when the sheet gives roles or no file is named like a control.
    """
    if filled(meta, "role") or "file" not in meta.columns:
        return ""
    named = []
    for file in meta["file"].astype(str):
        role = role_from_name(Path(file).stem)[0]
        if role.startswith(CONTROL_ROLE_PREFIXES):
            named.append(f"'{escape_text(Path(file).name)}' ({role})")
    if not named:
        return ""
    more = f" and {len(named) - shown} more" if len(named) > shown else ""
    return (
        f"sheet: no role column, so {len(named)} file(s) named like controls are analysed as "
        f"samples: {', '.join(named[:shown])}{more}; add a role column (fmo:<MARKER>, "
        "positive_control, unstained, unstim, stim) to use them as controls"
    )


def identical_files_summary(meta: pd.DataFrame, *, shown: int = 3) -> str:
    """One line on rows whose files hold the very same bytes, or ``""``.

    A tube copied under a second name (``D2_blood.fcs`` from ``D1_blood.fcs``) is analysed
    as a second donor's, tissue's or timepoint's tube. Files are compared by size first,
    then by content (only files of equal size are read).

    Parameters
    ----------
    meta
        The sheet with each row's ``path`` (:func:`nkflow.io.read_batch`).
    shown
        Groups named in the line (the rest are counted).

    Returns
    -------
    str
    """
    if "path" not in meta.columns:
        return ""
    by_size: dict[int, list[Path]] = {}
    for path in dict.fromkeys(Path(p) for p in meta["path"].astype(str)):
        try:
            by_size.setdefault(path.stat().st_size, []).append(path)
        except OSError:  # said where the file is read
            continue
    same: list[list[str]] = []
    for paths in by_size.values():
        if len(paths) < 2:
            continue
        # the ends first (TEXT and the last events tell acquisitions apart), all bytes only
        # for files whose ends agree
        for group in _grouped(paths, _ends_digest):
            same += [[escape_text(p.name) for p in g] for g in _grouped(group, _digest)]
    if not same:
        return ""
    groups = ["'" + "' = '".join(names) + "'" for names in sorted(same)[:shown]]
    more = f" and {len(same) - shown} more group(s)" if len(same) > shown else ""
    return (
        f"files: {len(same)} group(s) of files with identical content: {'; '.join(groups)}"
        f"{more}; each is analysed as its row says (check that no tube was copied under "
        "another name)"
    )


def ambiguous_dates_summary(meta: pd.DataFrame) -> str:
    """Timepoints written as dates whose order the sheet's writing cannot tell, or ``""``.

    ``04.03.2024`` and ``03.04.2024`` read day first and month first give opposite orders;
    the run keeps the sheet's order (its first timepoint is every comparison's baseline)
    and said so only in the report's Methods.

    Parameters
    ----------
    meta
        The metadata sheet (a ``timepoint`` column, if any).

    Returns
    -------
    str
        One line naming the timepoints and the baseline, or ``""``.
    """
    if "timepoint" not in meta.columns:
        return ""
    seen = [str(t) for t in dict.fromkeys(meta["timepoint"].fillna("").astype(str)) if str(t)]
    dated = date_order(seen)
    if not dated or dated[1] != AMBIGUOUS:
        return ""
    return (
        f"timepoints: {', '.join(escape_text(t) for t in seen)} are dates whose day-first and "
        f"month-first readings give different orders; the sheet's order is kept, so "
        f"{escape_text(seen[0])} is every comparison's baseline (write them as YYYY-MM-DD, "
        "or set [design] timepoint_order)"
    )


def _grouped(paths: list[Path], digest: Callable[[Path], str | None]) -> list[list[Path]]:
    """The groups of two or more paths with the same digest (unreadable ones left out)."""
    groups: dict[str, list[Path]] = {}
    for path in paths:
        if (key := digest(path)) is not None:
            groups.setdefault(key, []).append(path)
    return [g for g in groups.values() if len(g) > 1]


def _ends_digest(path: Path, size: int = 1 << 16) -> str | None:
    try:
        with path.open("rb") as fh:
            head = fh.read(size)
            fh.seek(max(0, path.stat().st_size - size))
            return hashlib.sha1(head + fh.read(size)).hexdigest()
    except OSError:
        return None


def _digest(path: Path) -> str | None:
    try:
        return file_sha256(path)
    except OSError:
        return None
