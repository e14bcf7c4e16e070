"""Atomic writing of output files, and output names that cannot escape their folder.

Every output nkflow writes goes through here: the bytes go to a temporary file in
the destination folder, are flushed to disk, and the temporary file is renamed over
the destination. A run killed mid-way therefore leaves either the old file or the
new one, never half of one.

Writers that work inside an output folder pass it as ``root``: every folder between
``root`` and the destination must then be a real folder (created if missing), never a
symbolic link, so nothing is written outside ``root`` through a link planted inside
it. Operating-system failures (no space, read-only file system, no permission) become
one :class:`~nkflow.exceptions.OutputFolderError` naming the path and the cause, and
leave no temporary file behind.
"""

from __future__ import annotations

import errno as errno_codes
import hashlib
import io
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from ..exceptions import OutputFolderError
from .text_safety import formula_safe_frame

__all__ = [
    "TEMP_SUFFIX",
    "ensure_folder",
    "file_sha256",
    "name_digest",
    "os_error_message",
    "output_error",
    "safe_name",
    "unique_name",
    "write_bytes_atomic",
    "write_table",
    "write_text_atomic",
]

#: Suffix of the temporary files :func:`write_bytes_atomic` renames into place; a file
#: named ``.<name>.<random>.tmp`` in an output folder is a leftover of a killed run.
TEMP_SUFFIX = ".tmp"

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")
_MAX_NAME = 120


def safe_name(name: object, *, default: str = "sample") -> str:
    """Turn any sample id or ``$FIL`` into a file name that stays inside its folder.

    Path separators, ``..``, NUL and other control characters, and characters that
    are unsafe on common file systems become ``_``; the result is at most 120
    characters and never empty, ``.`` or ``..``.

    Parameters
    ----------
    name
        The untrusted name.
    default
        Used when nothing usable remains.

    Returns
    -------
    str
        A single path component.
    """
    text = unicodedata.normalize("NFKC", str(name))
    text = _UNSAFE.sub("_", text).strip("._")
    if not text:
        text = default
    if len(text) > _MAX_NAME:
        text = text[:_MAX_NAME]
    return text


def name_digest(name: object) -> str:
    """Eight hex digits of a name's SHA-1, to keep apart names that share a safe name.

    Parameters
    ----------
    name
        A sample id or other name.

    Returns
    -------
    str
    """
    return hashlib.sha1(str(name).encode("utf-8")).hexdigest()[:8]


def file_sha256(path: str | Path, *, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's content, read in chunks (input files are never modified).

    Parameters
    ----------
    path
        The file.
    chunk
        Bytes read at a time.

    Returns
    -------
    str
        The hex digest.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def unique_name(name: object) -> str:
    """:func:`safe_name` plus :func:`name_digest`, so names stay apart.

    ``D1 liver`` and ``D1_liver`` have one safe name but two unique names.

    Parameters
    ----------
    name
        A sample id or other name.

    Returns
    -------
    str
        ``<safe name>-<8 hex digits>``.
    """
    return f"{safe_name(name)}-{name_digest(name)}"


def os_error_message(exc: OSError, path: str | Path, action: str = "cannot write") -> str:
    """One line naming the path and the cause of an operating-system error.

    For example ``out/tables/qc.csv: cannot write: no space left on device (ENOSPC)``.
    """
    code = exc.errno
    name = errno_codes.errorcode.get(code, "") if code is not None else ""
    cause = (exc.strerror or str(exc) or type(exc).__name__).splitlines()[0].strip()
    cause = cause[:1].lower() + cause[1:]
    return f"{path}: {action}: {cause}" + (f" ({name})" if name else "")


def _file_mode() -> int:
    """Mode for new files: ``0o666`` less the process umask (what ``open()`` would give).

    :func:`tempfile.mkstemp` creates files readable by their owner only; outputs are
    meant for colleagues too (a report on a shared drive), so they get the usual mode.
    """
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def output_error(exc: OSError, path: str | Path, action: str) -> OutputFolderError:
    """``exc`` as one :class:`OutputFolderError` line naming ``path`` and the cause."""
    if isinstance(exc, OutputFolderError):
        return exc
    return OutputFolderError(os_error_message(exc, path, action), exc.errno)


def ensure_folder(folder: str | Path, root: str | Path | None = None) -> Path:
    """Create ``folder`` (and its parents) and return it, refusing links below ``root``.

    Parameters
    ----------
    folder
        The folder to create.
    root
        An output folder that ``folder`` lies in. Every path component from ``root``
        (exclusive) down to ``folder`` must be a real folder: an existing symbolic link,
        or a file, raises instead of being followed. ``None``: no such check (a user's
        own destination, where links are theirs to use).

    Returns
    -------
    Path
        ``folder``.

    Raises
    ------
    OutputFolderError
        A component is a link or a file, or the folder cannot be created.
    """
    target = Path(folder)
    try:
        if root is None:
            target.mkdir(parents=True, exist_ok=True)
            return target
        base = Path(root)
        try:
            parts = target.relative_to(base).parts
        except ValueError:
            raise OutputFolderError(f"{target}: not inside the output folder {base}") from None
        base.mkdir(parents=True, exist_ok=True)
        current = base
        for part in parts:
            current = current / part
            if current.is_symlink():
                raise OutputFolderError(
                    f"{current}: is a symbolic link inside the output folder; nkflow never "
                    "writes through links (remove it, or choose another -o/--out)"
                )
            try:
                current.mkdir()
            except FileExistsError:
                if not current.is_dir():
                    raise OutputFolderError(
                        f"{current}: exists and is not a folder", errno_codes.ENOTDIR
                    ) from None
        return target
    except OutputFolderError:
        raise
    except OSError as exc:
        raise output_error(exc, target, "cannot create folder") from exc


def write_bytes_atomic(path: str | Path, data: bytes, *, root: str | Path | None = None) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename).

    Parameters
    ----------
    path
        Destination; its folder is created if needed.
    data
        The complete content.
    root
        The output folder the destination belongs to; links between it and the
        destination are refused (:func:`ensure_folder`).

    Returns
    -------
    Path
        The destination path.

    Raises
    ------
    OutputFolderError
        The file cannot be written (no space, read-only, permission, a link); no
        temporary file is left behind and an existing destination is unchanged.
    """
    dest = Path(path)
    ensure_folder(dest.parent, root)
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=TEMP_SUFFIX, dir=dest.parent)
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise output_error(exc, dest, "cannot write") from exc
        raise
    return dest


def write_text_atomic(
    path: str | Path, text: str, *, encoding: str = "utf-8", root: str | Path | None = None
) -> Path:
    """Write ``text`` to ``path`` atomically; see :func:`write_bytes_atomic`.

    Parameters
    ----------
    path
        Destination; its folder is created if needed.
    text
        The complete content.
    encoding
        Encoding of ``text`` in the file.
    root
        The output folder the destination belongs to; links between it and the
        destination are refused (:func:`ensure_folder`).

    Returns
    -------
    Path
        The destination path.

    Raises
    ------
    OutputFolderError
        The file cannot be written (no space, read-only, permission, a link); no
        temporary file is left behind and an existing destination is unchanged.
    """
    return write_bytes_atomic(path, text.encode(encoding), root=root)


def write_table(
    table: pd.DataFrame,
    path_stem: str | Path,
    *,
    formats: Iterable[str] = ("csv", "parquet"),
    root: str | Path | None = None,
) -> list[Path]:
    """Write a tidy table as CSV and/or Parquet, each atomically and deterministically.

    In the CSV, text cells and column names a spreadsheet would run as a formula (such as
    an FCS file's ``$CYT = '=cmd|calc'``) start with ``'``
    (:func:`~nkflow.io.text_safety.formula_safe_frame`); the Parquet file keeps them as read.

    Parameters
    ----------
    table
        The table; its index is not written.
    path_stem
        Destination without suffix, e.g. ``out/tables/populations``.
    formats
        Any of ``"csv"`` and ``"parquet"``.
    root
        The output folder the table belongs to (links below it are refused).

    Returns
    -------
    list of Path
        The files written.
    """
    stem = Path(path_stem)
    written: list[Path] = []
    for fmt in formats:
        if fmt == "csv":
            # text from FCS files (instrument names, labels) may read as a formula
            safe = formula_safe_frame(table)
            text = safe.to_csv(index=False, lineterminator="\n", float_format="%.10g")
            written.append(write_text_atomic(stem.with_suffix(".csv"), text, root=root))
        elif fmt == "parquet":
            buf = io.BytesIO()
            table.reset_index(drop=True).to_parquet(buf, index=False)
            written.append(
                write_bytes_atomic(stem.with_suffix(".parquet"), buf.getvalue(), root=root)
            )
        else:
            raise ValueError(f"unknown table format {fmt!r}; valid: 'csv', 'parquet'")
    return written
