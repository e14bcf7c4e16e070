"""Text escaping, number formatting and HTML tables for the batch report.

Every string that reaches the report passes through :func:`esc`: FCS keywords, metadata
values, table cells, column names and figure names are untrusted, so they are HTML-escaped,
control characters become U+FFFD and lone surrogates (from byte-level decoding of FCS TEXT)
become ``?`` so the page always encodes as UTF-8.
"""

from __future__ import annotations

import html
import math
import numbers
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "MAX_ROWS",
    "esc",
    "fmt_value",
    "html_table",
    "is_empty",
    "parquet_safe",
    "split_qc",
]

MAX_ROWS = 400
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_MISSING = "–"


def esc(value: object) -> str:
    """HTML-escape any value for use in element text or a quoted attribute.

    Parameters
    ----------
    value
        Anything; ``str()`` is applied first.

    Returns
    -------
    str
        Text safe inside an element or a double- or single-quoted attribute.
    """
    text = value if isinstance(value, str) else str(value)
    text = text.encode("utf-8", "replace").decode("utf-8")
    text = _CONTROL.sub("\ufffd", text)
    return html.escape(text, quote=True)


def is_empty(table: pd.DataFrame | None) -> bool:
    """True when a table is absent or has no rows."""
    return table is None or not isinstance(table, pd.DataFrame) or table.empty


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    try:
        return bool(isinstance(value, float | np.floating) and math.isnan(value))
    except TypeError:
        return False


def fmt_value(value: Any, *, digits: int = 3) -> str:
    """Format one cell as plain text (not yet escaped).

    Integers get thousands separators, floats ``digits`` significant digits (no
    scientific notation below a million), booleans ``yes``/``no``, missing values a dash.

    Parameters
    ----------
    value
        The cell.
    digits
        Significant digits of floats.

    Returns
    -------
    str
        The formatted cell.
    """
    if _is_missing(value):
        return _MISSING
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        v = float(value)
        if math.isinf(v):
            return "∞" if v > 0 else "−∞"
        if v == 0:
            return "0"
        if abs(v) >= 1e6 or abs(v) < 1e-4:
            return f"{v:.{digits}g}"
        if abs(v) >= 10**digits:
            return f"{v:,.0f}"
        text = f"{v:.{digits}g}"
        if "e" in text:  # e.g. 1e+03 at the boundary
            text = f"{v:,.0f}"
        return text
    return str(value)


CellClass = Callable[[str, Any, pd.Series], str]


def html_table(
    table: pd.DataFrame | None,
    *,
    columns: Sequence[str] | None = None,
    labels: Mapping[str, str] | None = None,
    max_rows: int = MAX_ROWS,
    empty: str = "No rows.",
    row_class: Callable[[pd.Series], str] | None = None,
    cell_class: CellClass | None = None,
    cell_style: Callable[[str, Any, pd.Series], str] | None = None,
    formatters: Mapping[str, Callable[[Any], str]] | None = None,
    links: Callable[[str, Any, pd.Series], str] | None = None,
    source: str | None = None,
    caption: str | None = None,
) -> str:
    """Render a DataFrame as an escaped HTML table.

    Parameters
    ----------
    table
        The table (``None`` or empty renders the ``empty`` note).
    columns
        Columns to show, in order; names missing from the table are skipped. Default: all.
    labels
        Header text per column (default: the column name).
    max_rows
        Rows shown; the rest are counted in a note that points to ``source``.
    empty
        Text shown for an absent or empty table.
    row_class, cell_class, cell_style
        Optional callables giving a CSS class for a row or cell, or an inline style for a
        cell. Their results are developer-controlled class names / styles, still escaped.
    formatters
        Per-column functions turning a cell into plain text (escaped afterwards).
    links
        Optional callable giving the ``href`` a cell links to (``""``: no link), e.g.
        ``#gating-<id>`` for a sample's plot; escaped like the text.
    source
        File name of the complete table, named in the truncation note.
    caption
        Optional caption (escaped).

    Returns
    -------
    str
        HTML.
    """
    if is_empty(table):
        return f'<p class="empty">{esc(empty)}</p>'
    frame = table if isinstance(table, pd.DataFrame) else pd.DataFrame(table)
    cols = [c for c in (columns or list(frame.columns)) if c in frame.columns]
    labels = labels or {}
    formatters = formatters or {}
    out: list[str] = ['<div class="table-wrap"><table>']
    if caption:
        out.append(f"<caption>{esc(caption)}</caption>")
    out.append("<thead><tr>")
    for col in cols:
        numeric = pd.api.types.is_numeric_dtype(frame[col].dtype) and not (
            pd.api.types.is_bool_dtype(frame[col].dtype)
        )
        cls = ' class="num"' if numeric else ""
        out.append(f"<th{cls}>{esc(labels.get(col, col))}</th>")
    out.append("</tr></thead><tbody>")
    shown = frame.iloc[:max_rows]
    for _, row in shown.iterrows():
        rc = row_class(row) if row_class else ""
        out.append(f'<tr class="{esc(rc)}">' if rc else "<tr>")
        for col in cols:
            value = row[col]
            fmt = formatters.get(col)
            text = fmt(value) if fmt else fmt_value(value)
            classes = []
            if isinstance(value, numbers.Number) and not isinstance(value, bool | np.bool_):
                classes.append("num")
            if cell_class:
                extra = cell_class(col, value, row)
                if extra:
                    classes.append(extra)
            attr = f' class="{esc(" ".join(classes))}"' if classes else ""
            if cell_style:
                style = cell_style(col, value, row)
                if style:
                    attr += f' style="{esc(style)}"'
            href = links(col, value, row) if links else ""
            inner = f'<a href="{esc(href)}">{esc(text)}</a>' if href else esc(text)
            out.append(f"<td{attr}>{inner}</td>")
        out.append("</tr>")
    out.append("</tbody></table></div>")
    hidden = len(frame) - len(shown)
    if hidden > 0:
        where = f" (all rows in {esc(source)})" if source else ""
        out.append(f'<p class="note">{hidden:,} more rows not shown{where}.</p>')
    return "".join(out)


def definition_list(items: Iterable[tuple[str, Any]]) -> str:
    """Render ``(term, value)`` pairs as an escaped two-column key/value table."""
    rows = "".join(
        f'<tr><th scope="row">{esc(k)}</th><td>{esc(fmt_value(v))}</td></tr>' for k, v in items
    )
    if not rows:
        return '<p class="empty">None recorded.</p>'
    return f'<div class="table-wrap"><table class="kv">{rows}</table></div>'


def parquet_safe(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` in a form Arrow can write: string column names, no mixed object columns.

    Object columns that mix strings with numbers (or other objects) have their non-missing
    values turned into strings; object columns of plain numbers become numeric. Type
    inference runs in pandas' C code, so per-event tables stay cheap. The table is
    returned unchanged (not copied) when nothing needs fixing.

    Parameters
    ----------
    table
        Any DataFrame.

    Returns
    -------
    pandas.DataFrame
        The table, or a fixed copy.
    """
    names = [str(c) for c in table.columns]
    if len(set(names)) != len(names):
        seen: dict[str, int] = {}
        unique = []
        for c in names:
            n = seen.get(c, 0)
            unique.append(c if n == 0 else f"{c}.{n}")
            seen[c] = n + 1
        names = unique
    fixes: dict[int, str] = {}
    for i in range(table.shape[1]):
        series = table.iloc[:, i]
        if series.dtype != object:
            continue
        kind = pd.api.types.infer_dtype(series, skipna=True)
        if kind in ("string", "empty", "boolean", "bytes"):
            continue
        fixes[i] = (
            "numeric"
            if kind in ("integer", "floating", "mixed-integer-float", "decimal")
            else "string"
        )
    if not fixes and names == list(table.columns):
        return table
    out = table.copy()
    out.columns = names
    for i, how in fixes.items():
        series = out.iloc[:, i]
        if how == "numeric":
            out.isetitem(i, pd.to_numeric(series, errors="coerce"))
        else:
            out.isetitem(
                i,
                pd.Series(
                    [None if _is_missing(v) else str(v) for v in series],
                    index=series.index,
                    dtype=object,
                ),
            )
    return out


def split_qc(qc: pd.DataFrame | None) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """The QC rows of analysed tubes and those of the FMO tubes read for their cut-offs.

    Parameters
    ----------
    qc
        The run's QC table (``role`` tells FMO tubes, ``fmo:<MARKER>``, apart).

    Returns
    -------
    analysed, fmo
        The two parts (``fmo`` None when the table has none or no ``role`` column).
    """
    if is_empty(qc) or "role" not in qc.columns:
        return qc, None
    fmo = qc["role"].fillna("").astype(str).str.startswith("fmo:")
    return qc[~fmo], (qc[fmo] if fmo.any() else None)
