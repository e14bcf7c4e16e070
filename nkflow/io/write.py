"""Atomic writing of output files, and output names that cannot escape their folder.

Every output nkflow writes goes through here: the bytes go to a temporary file in
the destination folder, are flushed to disk, and the temporary file is renamed over
the destination. A run killed mid-way therefore leaves either the old file or the
new one, never half of one.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

__all__ = [
    "safe_name",
    "write_bytes_atomic",
    "write_table",
    "write_text_atomic",
]

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


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename).

    Parameters
    ----------
    path
        Destination; its folder is created if needed.
    data
        The complete content.

    Returns
    -------
    Path
        The destination path.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def write_text_atomic(path: str | Path, text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; see :func:`write_bytes_atomic`."""
    return write_bytes_atomic(path, text.encode(encoding))


def write_table(
    table: pd.DataFrame,
    path_stem: str | Path,
    *,
    formats: Iterable[str] = ("csv", "parquet"),
) -> list[Path]:
    """Write a tidy table as CSV and/or Parquet, each atomically and deterministically.

    Parameters
    ----------
    table
        The table; its index is not written.
    path_stem
        Destination without suffix, e.g. ``out/tables/populations``.
    formats
        Any of ``"csv"`` and ``"parquet"``.

    Returns
    -------
    list of Path
        The files written.
    """
    stem = Path(path_stem)
    written: list[Path] = []
    for fmt in formats:
        if fmt == "csv":
            text = table.to_csv(index=False, lineterminator="\n", float_format="%.10g")
            written.append(write_text_atomic(stem.with_suffix(".csv"), text))
        elif fmt == "parquet":
            buf = io.BytesIO()
            table.reset_index(drop=True).to_parquet(buf, index=False)
            written.append(write_bytes_atomic(stem.with_suffix(".parquet"), buf.getvalue()))
        else:
            raise ValueError(f"unknown table format {fmt!r}; valid: 'csv', 'parquet'")
    return written
