r"""Untrusted text (file names, sheet values, FCS labels) made safe to show or to tabulate.

Two hazards, two helpers:

- :func:`escape_text` for terminals and one-line messages: a name holding a newline would
  split ``nkflow: FAILED <path>: <reason>`` so that its second half reads like nkflow's own
  output, and ANSI/CSI sequences or Unicode bidi overrides would repaint or reorder what
  the user sees. Every such character becomes a visible escape (``\n``, ``\x1b``,
  ``\u202e``); the rest of the text is unchanged (backslashes too, so Windows paths stay
  readable).
- :func:`formula_risk` for values that end up in CSV tables: spreadsheet programs run a cell
  that starts with ``=``, ``+``, ``-`` or ``@`` as a formula (OWASP "CSV injection"), and
  control characters hide or split cells. Plain numbers (``-1.5``, ``+2``, ``1e-3``) are not
  formulas and pass. :func:`neutralise_formula` is the OWASP remedy: a leading ``'`` makes
  the spreadsheet show the cell as text.
"""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only annotations: the CLI imports this module before pandas is needed
    import pandas as pd

__all__ = [
    "escape_frame",
    "escape_text",
    "formula_risk",
    "formula_safe_frame",
    "neutralise_formula",
]

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Unicode categories never shown as themselves: controls (Cc: C0, DEL, C1), format
# characters (Cf: bidi embeddings/overrides/isolates, marks, zero-width ones), line and
# paragraph separators (Zl, Zp) and surrogates (Cs: undecodable bytes of a file name).
_HIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_FORMULA_START = ("=", "+", "-", "@")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def _escape_char(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's stand-in for an undecodable byte
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def escape_text(value: object) -> str:
    r"""``str(value)`` on one line with every control, format and bidi character escaped.

    Parameters
    ----------
    value
        Anything; ``str()`` of it is escaped.

    Returns
    -------
    str
        The text with newlines, carriage returns, tabs, other C0/C1 controls, ESC (so ANSI
        sequences print as ``\x1b[31m``), DEL, Unicode bidi overrides and isolates,
        zero-width and other format characters, line/paragraph separators and
        surrogate-escaped bytes replaced by visible escapes. Printable text is unchanged.

    Examples
    --------
    >>> escape_text("a.fcs\nnkflow: OK")
    'a.fcs\\nnkflow: OK'
    >>> escape_text("\x1b[2Jx")
    '\\x1b[2Jx'
    """
    text = str(value)
    if text.isprintable():  # fast path: nothing to escape (space is printable)
        return text
    return "".join(
        _escape_char(ch) if ch in _NAMED or unicodedata.category(ch) in _HIDDEN else ch
        for ch in text
    )


def escape_frame(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``table`` with every text cell, column name and index label escaped.

    For printing a table with ``to_string()`` on a terminal: a cell holding a newline would
    otherwise start a line of its own.
    """
    out = table.copy()
    out.columns = [escape_text(c) if isinstance(c, str) else c for c in out.columns]
    out.index = out.index.map(lambda v: escape_text(v) if isinstance(v, str) else v)
    return out.map(lambda v: escape_text(v) if isinstance(v, str) else v)


def formula_risk(value: str) -> str:
    """Why a text value is unsafe in a spreadsheet cell (``""`` when it is safe).

    Parameters
    ----------
    value
        A cell value.

    Returns
    -------
    str
        ``""``, or the reason: it starts with ``=``, ``+``, ``-`` or ``@`` and is not a plain
        number (a spreadsheet would evaluate it as a formula), or it contains a control
        character (tab, CR, LF, other C0/C1 controls, DEL). A value that starts with ``'``
        is already neutralised (:func:`neutralise_formula`): spreadsheets show it as text.
    """
    if value.startswith("'"):
        return ""
    controls = sorted({ch for ch in value if unicodedata.category(ch) == "Cc"})
    if controls:
        shown = ", ".join(_escape_char(ch) for ch in controls)
        return f"contains control character(s) {shown}"
    if value.startswith(_FORMULA_START) and not _NUMBER.fullmatch(value) and value != "-":
        return f"starts with {value[0]!r}: a spreadsheet would run it as a formula"
    return ""


def neutralise_formula(value: str) -> str:
    """Prefix ``'`` so a spreadsheet shows the value as text (the OWASP remedy)."""
    return "'" + value


def _runs_as_formula(value: object) -> bool:
    return (
        isinstance(value, str)
        and value.startswith(_FORMULA_START)
        and not _NUMBER.fullmatch(value)
        and value != "-"
    )


def formula_safe_frame(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with every text cell a spreadsheet would run as a formula neutralised.

    Text read from FCS files (``$CYT``, ``$SRC``, channel labels, keyword values) reaches
    the CSV tables without the metadata sheet's check: a cell or column name such as
    ``=cmd|calc`` gets the sheet's remedy, a leading ``'`` (:func:`neutralise_formula`).
    Numeric columns, plain numbers written as text and every other cell are unchanged.

    Parameters
    ----------
    table
        A table about to be written as CSV.

    Returns
    -------
    pandas.DataFrame
        ``table`` itself when nothing needed it, else a copy.
    """
    columns = [c for c in table.columns if table[c].dtype == object]
    hits = {c: table[c].map(_runs_as_formula).astype(bool) for c in columns}
    hits = {c: mask for c, mask in hits.items() if mask.any()}
    renamed = [c for c in table.columns if _runs_as_formula(c)]
    if not hits and not renamed:
        return table
    out = table.copy()
    for c, mask in hits.items():  # by position: an index may repeat labels
        values = out[c].to_numpy(dtype=object, copy=True)
        at = mask.to_numpy()
        values[at] = [neutralise_formula(v) for v in values[at]]
        out[c] = values
    if renamed:
        out.columns = [neutralise_formula(c) if c in renamed else c for c in out.columns]
    return out
