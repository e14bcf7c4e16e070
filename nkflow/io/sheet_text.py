"""A metadata sheet's text as a table: encoding, delimiter, header and the file line of each row.

:func:`sheet_table` is the reading half of :func:`nkflow.io.read_metadata`: it decodes the
bytes (UTF-8 with or without BOM, UTF-16 with BOM, else Windows-1252/Latin-1), honours
Excel's ``sep=;`` first line, detects the delimiter, refuses a header that names one
column twice (``Donor`` beside ``donor``: pandas would keep both, or rename an exact
repeat to ``donor.1`` and ignore it) and numbers each row by its line in the file, the
number a spreadsheet shows (blank lines and quoted line breaks counted).
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Callable

import pandas as pd

from .text_safety import escape_text

__all__ = ["decode_sheet", "sheet_table"]

logger = logging.getLogger(__name__)

#: Excel's first line naming the delimiter (``sep=;``), quoted or not
_SEP_LINE = re.compile(r'^\s*"?sep=(.)"?[ \t]*$', re.IGNORECASE)


def decode_sheet(raw: bytes, problems: list[str]) -> str | None:
    """The sheet's text, or None with the reason appended to ``problems``."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError as exc:
            problems.append(f"sheet looks like UTF-16 but cannot be decoded ({exc.reason})")
            return None
    if raw.startswith((b"PK\x03\x04", b"\xd0\xcf\x11\xe0")):  # zip (.xlsx, .ods), OLE (.xls)
        problems.append(
            "sheet is a spreadsheet workbook (Excel .xlsx/.xls or .ods), not a CSV: save it "
            "from the spreadsheet as 'CSV UTF-8' and pass the .csv"
        )
        return None
    if b"\x00" in raw:
        problems.append(
            "sheet contains NUL bytes: not a text CSV (UTF-16 without BOM or a binary file); "
            "save it as UTF-8 CSV"
        )
        return None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        text = raw.decode("cp1252")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    logger.warning("metadata sheet is not UTF-8; read it as Windows-1252/Latin-1")
    return text


def _leading_lines(text: str) -> tuple[str, str | None, int]:
    """The text without Excel's ``sep=`` line and leading blank lines, its delimiter, lines cut."""
    cut = 0
    sep = None
    lines = text.splitlines(keepends=True)
    while cut < len(lines) and not lines[cut].strip():
        cut += 1
    if cut < len(lines) and (match := _SEP_LINE.match(lines[cut].rstrip("\r\n"))):
        sep = match.group(1)
        cut += 1
        while cut < len(lines) and not lines[cut].strip():
            cut += 1
    return "".join(lines[cut:]), sep, cut


def _repeated_columns(header: list[str], read_as: Callable[[object], str]) -> str:
    """``"'Donor' (column 3) and 'donor' (column 10) both read as 'donor'"`` ..., or ``""``."""
    by_name: dict[str, list[tuple[int, str]]] = {}
    for number, name in enumerate(header, start=1):
        if name.strip():
            by_name.setdefault(read_as(name), []).append((number, name))
    return "; ".join(
        " and ".join(f"'{escape_text(name)}' (column {n})" for n, name in found)
        + f" both read as '{escape_text(column)}'"
        for column, found in by_name.items()
        if len(found) > 1
    )


def sheet_table(
    text: str, problems: list[str], read_as: Callable[[object], str]
) -> pd.DataFrame | None:
    """The sheet's rows as strings, indexed by their line in the file (the header is line 1).

    Parameters
    ----------
    text
        The decoded sheet (:func:`decode_sheet`).
    problems
        An unreadable CSV or a column named twice is appended here (and None returned).
    read_as
        Header -> nkflow's column name (:func:`nkflow.io.metadata.sheet_header`).

    Returns
    -------
    pandas.DataFrame or None
        Columns renamed by ``read_as``, every cell a string; blank rows are kept (as
        ``""``), so a caller dropping them keeps the others' line numbers.
    """
    body, sep, cut = _leading_lines(text)
    if sep is None:
        try:
            sep = csv.Sniffer().sniff(body[:4096], delimiters=",;\t").delimiter
        except csv.Error:
            sep = ","
    reader = csv.reader(io.StringIO(body), delimiter=sep, skipinitialspace=True)
    starts: list[int] = []
    records: list[list[str]] = []
    try:
        previous = 0
        for record in reader:
            starts.append(cut + previous + 1)
            records.append(record)
            previous = reader.line_num
    except csv.Error:
        records = []  # pandas says what is wrong below
    repeated = _repeated_columns(records[0], read_as) if records else ""
    if repeated:
        problems.append(
            f"header: column(s) appear twice: {repeated}; nkflow cannot tell which one "
            "holds the values: keep one (rename or delete the other)"
        )
        return None
    try:
        table = pd.read_csv(
            io.StringIO(body),
            sep=sep,
            dtype=str,
            keep_default_na=False,
            skipinitialspace=True,
            skip_blank_lines=False,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        problems.append(f"not a readable CSV: {str(exc).strip()}")
        return None
    table = table.fillna("")
    table.columns = [read_as(c) for c in table.columns]
    lines = starts[1:]
    # one pandas row per csv record; if they ever disagree, number the rows as they come
    table.index = lines if len(lines) == len(table) else range(cut + 2, cut + 2 + len(table))
    return table
