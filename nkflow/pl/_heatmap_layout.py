"""Layout of the metacluster heatmap: figure size, fonts and wrapped labels from its content.

The heatmap's cells, row and column labels, the numbers written in the cells, the colour
bar and the title share one figure. Its size follows the number of markers (columns) and
metaclusters (rows) and the lengths of their labels, up to :data:`MAX_WIDTH_IN` ×
:data:`MAX_HEIGHT_IN`; past that the cells shrink, and the numbers with them, down to
:data:`MIN_VALUE_PT`, below which they are not written (the caller says so). Text widths
are measured on the font's glyphs (:class:`matplotlib.textpath.TextPath`, the font the
figure draws with), so the layout is the same on every machine.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

from matplotlib.textpath import TextPath

__all__ = ["MAX_HEIGHT_IN", "MAX_WIDTH_IN", "MIN_VALUE_PT", "HeatmapLayout", "heatmap_layout"]

MAX_WIDTH_IN = 16.0
MAX_HEIGHT_IN = 20.0
MARGIN_IN = 0.15
LABEL_PT = 8.0  # row and column labels, at most
MIN_LABEL_PT = 5.0
VALUE_PT = 7.5  # the numbers in the cells, at most
MIN_VALUE_PT = 5.5  # below this the numbers are not written
TITLE_PT = 10.0
SUBTITLE_PT = 8.0
COLORBAR_PT = 8.0  # the colour bar's label
COLORBAR_TICK_PT = 7.0
ROW_LABEL_IN = 3.4  # row labels wrap at this width
CELL_W_IN = 0.45  # a cell is at least this wide while the figure may still widen
CELL_H_IN = 0.3
TICK_PAD_PT = 2.0  # gap between a tick label and the cells (ticks have no length)
_VALUE_ROOM = 1.3  # a cell is this many times its widest number, when it can be
_VALUE_FIT = 1.25  # ... and never less than this once the figure stopped widening
_LINE = 1.25  # line height per point of font size
_BAR_W_IN, _BAR_GAP_IN = 0.16, 0.2


@lru_cache(maxsize=4096)
def _width_at_1pt(text: str) -> float:
    """Inked width of ``text`` at 1 pt, in points (0 for blank text).

    From the glyph outlines' points, curve control points included: at most a hair wider
    than the ink (0.5 % on row labels), and ten times quicker than the curves' exact extents
    (``Path.get_extents``: 16 ms a label, 2.9 s of a 48-tube run's clustering stage).
    """
    if not text.strip():
        return 0.0
    x = TextPath((0, 0), text, size=1.0).vertices[:, 0]
    return float(x.max() - x.min()) if x.size else 0.0


def text_width_in(text: str, pt: float) -> float:
    """Width in inches of ``text`` (its widest line) at ``pt`` points."""
    return max(_width_at_1pt(line) for line in text.split("\n")) * pt / 72.0


def wrap(text: str, pt: float, width_in: float) -> str:
    """``text`` broken at spaces into lines at most ``width_in`` wide (a longer word stays).

    A parenthesised group (``(more CD127)``) is kept on one line.
    """
    lines: list[str] = []
    line = ""
    for word in re.findall(r"(?:[^\s(]|\([^()]*\))+|\S+", text):
        trial = f"{line} {word}" if line else word
        if line and text_width_in(trial, pt) > width_in:
            lines.append(line)
            line = word
        else:
            line = trial
    lines.append(line)
    return "\n".join(lines)


def _lines(text: str) -> int:
    return text.count("\n") + 1 if text else 0


@dataclass(frozen=True)
class HeatmapLayout:
    """Where everything of the heatmap goes, and at what size.

    Attributes
    ----------
    figsize
        Figure width and height, inches.
    heat, colorbar
        Axes rectangles ``(left, bottom, width, height)`` in figure fractions.
    title_xy, subtitle_xy
        Top-left corners of the title and the subtitle, figure fractions.
    title, subtitle, colorbar_label, row_labels
        The texts, wrapped to their room.
    label_pt, col_pt
        Font sizes of the row and column labels.
    value_pt
        Font size of the numbers in the cells; ``None``: they do not fit, leave them out.
    """

    figsize: tuple[float, float]
    heat: tuple[float, float, float, float]
    colorbar: tuple[float, float, float, float]
    title_xy: tuple[float, float]
    subtitle_xy: tuple[float, float]
    title: str
    subtitle: str
    colorbar_label: str
    row_labels: list[str]
    label_pt: float
    col_pt: float
    value_pt: float | None


def heatmap_layout(
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    values: Sequence[str],
    *,
    title: str,
    subtitle: str,
    colorbar_label: str,
    omitted: str = "",
) -> HeatmapLayout:
    """Size a heatmap of ``len(row_labels)`` × ``len(col_labels)`` cells around its texts.

    Parameters
    ----------
    row_labels, col_labels
        Metacluster labels (left, wrapped at :data:`ROW_LABEL_IN`) and marker names
        (below, vertical).
    values
        The numbers to be written in the cells, as text (their widest sets the cell width).
    title, subtitle, colorbar_label
        Texts wrapped to the figure's width and the colour bar's height.
    omitted
        Added to ``colorbar_label`` when the numbers do not fit (saying they are left out).

    Returns
    -------
    HeatmapLayout
        Cells at least :data:`CELL_W_IN` × :data:`CELL_H_IN` and wide enough for the
        numbers at :data:`VALUE_PT` while the figure stays within :data:`MAX_WIDTH_IN`;
        beyond, narrower cells with smaller numbers, and none below :data:`MIN_VALUE_PT`.
        Rows are as tall as their wrapped labels; past :data:`MAX_HEIGHT_IN` their fonts
        shrink instead.
    """
    n_rows, n_cols = max(len(row_labels), 1), max(len(col_labels), 1)
    label_pt = LABEL_PT
    rows = [wrap(t, label_pt, ROW_LABEL_IN) for t in row_labels]
    n_lines = max((_lines(t) for t in rows), default=1)
    pad_in = TICK_PAD_PT / 72.0
    left = MARGIN_IN + max((text_width_in(t, label_pt) for t in rows), default=0.0) + pad_in
    value_1pt = max((text_width_in(v, 1.0) for v in values), default=0.0)
    # the colour bar's label runs along the bar: wrap it to the shortest the bar can be
    bar_h = max(n_rows * CELL_H_IN, 1.0)
    cbar_label = wrap(colorbar_label, COLORBAR_PT, bar_h)
    ticks_in = text_width_in("\N{MINUS SIGN}0.00", COLORBAR_TICK_PT) + 2 * pad_in + 0.05
    right = (
        _BAR_GAP_IN
        + _BAR_W_IN
        + ticks_in
        + _lines(cbar_label) * COLORBAR_PT * _LINE / 72.0
        + MARGIN_IN
    )
    cell_w = max(CELL_W_IN, value_1pt * VALUE_PT * _VALUE_ROOM, LABEL_PT * 1.6 / 72.0)
    if left + n_cols * cell_w + right > MAX_WIDTH_IN:
        cell_w = max((MAX_WIDTH_IN - left - right) / n_cols, 0.05)
    value_pt: float | None = VALUE_PT
    if value_1pt > 0:
        value_pt = min(VALUE_PT, cell_w / (value_1pt * _VALUE_FIT))
    col_pt = max(MIN_LABEL_PT, min(LABEL_PT, cell_w * 72.0 / 1.5))
    width = left + n_cols * cell_w + right

    text_w = width - 2 * MARGIN_IN
    title = wrap(title, TITLE_PT, text_w)
    subtitle = wrap(subtitle, SUBTITLE_PT, text_w)
    title_in = _lines(title) * TITLE_PT * _LINE / 72.0
    top = MARGIN_IN + title_in + _lines(subtitle) * SUBTITLE_PT * _LINE / 72.0 + 0.15
    bottom = MARGIN_IN + pad_in + max((text_width_in(t, col_pt) for t in col_labels), default=0.0)
    row_h = max(
        CELL_H_IN,
        (n_lines * label_pt * _LINE + 3.0) / 72.0,
        (value_pt or 0.0) * 1.8 / 72.0,
    )
    if top + n_rows * row_h + bottom > MAX_HEIGHT_IN:
        row_h = (MAX_HEIGHT_IN - top - bottom) / n_rows
        label_pt = max(MIN_LABEL_PT, min(label_pt, (row_h * 72.0 - 2.0) / (n_lines * _LINE)))
        if value_pt is not None:
            value_pt = min(value_pt, row_h * 72.0 / 1.5)
    if value_pt is not None and value_pt < MIN_VALUE_PT:
        if values:  # again without numbers, the colour bar saying why
            return replace(
                heatmap_layout(row_labels, col_labels, (), title=title, subtitle=subtitle,
                               colorbar_label=colorbar_label + omitted),
                value_pt=None,
            )  # fmt: skip
        value_pt = None
    height = top + n_rows * row_h + bottom

    heat_w, heat_h = n_cols * cell_w, n_rows * row_h
    return HeatmapLayout(
        figsize=(round(width, 3), round(height, 3)),
        heat=(left / width, bottom / height, heat_w / width, heat_h / height),
        colorbar=(
            (left + heat_w + _BAR_GAP_IN) / width,
            bottom / height,
            _BAR_W_IN / width,
            heat_h / height,
        ),
        title_xy=(MARGIN_IN / width, 1.0 - MARGIN_IN / height),
        subtitle_xy=(MARGIN_IN / width, 1.0 - (MARGIN_IN + title_in) / height),
        title=title,
        subtitle=subtitle,
        colorbar_label=cbar_label,
        row_labels=rows,
        label_pt=round(label_pt, 2),
        col_pt=round(col_pt, 2),
        value_pt=None if value_pt is None else round(value_pt, 2),
    )
