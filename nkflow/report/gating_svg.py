"""A sample's gate grid as one self-contained SVG document, without matplotlib figures.

The panels (which gates, counts, outlines, limits, ticks, titles) come from
:func:`nkflow.pl.gating_panels.gate_panels`, the definition the matplotlib
:func:`nkflow.pl.gate_grid` draws too; this module only lays them out as SVG: each 2-D
density is a small embedded PNG (viridis, empty bins transparent, as ``hist2d(cmin=1)``),
1-D gates a grey step histogram with crimson threshold lines. Text from the data is
escaped, and identical input gives identical bytes (fixed number formatting, no time).
About 15 times cheaper than drawing and rasterising the matplotlib grid (0.045 s against
0.65 s of CPU for a 200k-event sample with 19 panels).
"""

from __future__ import annotations

import base64
import re
import struct
import zlib
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np

from ..pl.gating_panels import Axis, Panel, gate_panels

__all__ = ["SVG_MIME", "gating_svg", "panels_svg"]

SVG_MIME = "image/svg+xml"

# one grid cell, in px (CSS pixels; the matplotlib grid is 3.4 x 3.0 in at 72 dpi)
_CELL_W, _CELL_H = 260, 230
# the axes box inside a cell: room for the title above, tick labels and axis labels
_LEFT, _RIGHT, _TOP, _BOTTOM = 62, 12, 30, 46
_TICK = 3.5
_FONT = "DejaVu Sans,Verdana,Arial,sans-serif"
_CRIMSON = "#dc143c"
_GREY = "#808080"
_PNG_LEVEL = 3  # level 6 would take 3x the time for a 15 % smaller image
# characters XML 1.0 cannot carry (a sample's name could hold them)
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _esc(text: Any) -> str:
    """Text safe in SVG element content and in double-quoted attributes."""
    s = _NOT_XML.sub("\ufffd", str(text))
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _n(v: float) -> str:
    """A coordinate with one decimal, the same text for the same number ("0", never "-0")."""
    return f"{round(float(v), 1) + 0.0:g}"


def _ns(values: np.ndarray) -> list[str]:
    """:func:`_n` of many coordinates at once."""
    return [f"{v:g}" for v in (np.round(np.asarray(values, float), 1) + 0.0).tolist()]


@cache
def _viridis() -> np.ndarray:
    """Viridis as 256 RGBA bytes plus a transparent last row for empty bins."""
    from matplotlib import colormaps

    lut = np.zeros((257, 4), np.uint8)
    lut[:256] = colormaps["viridis"](np.arange(256), bytes=True)
    return lut


def _png(rgba: np.ndarray) -> bytes:
    """A minimal RGBA PNG (no filter, fixed zlib level: the same pixels give the same bytes)."""
    height, width = rgba.shape[:2]
    raw = np.zeros((height, 1 + 4 * width), np.uint8)
    raw[:, 1:] = rgba.reshape(height, 4 * width)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    head = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", head)
        + chunk(b"IDAT", zlib.compress(raw.tobytes(), _PNG_LEVEL))
        + chunk(b"IEND", b"")
    )


def density_rgba(counts: np.ndarray) -> np.ndarray:
    """The density image of a panel's counts, as matplotlib's ``pcolormesh`` colours it.

    ``counts[i, j]`` (x bin ``i``, y bin ``j``) become RGBA rows, the top row the highest
    y bin; viridis with a linear norm over the non-empty bins, empty bins transparent.

    Parameters
    ----------
    counts
        Events per bin, as ``np.histogram2d`` returns them.

    Returns
    -------
    numpy.ndarray
        ``(n_y_bins, n_x_bins, 4)`` uint8.
    """
    h = np.asarray(counts, float).T[::-1]
    filled = h >= 1
    idx = np.full(h.shape, 256, np.intp)
    if filled.any():
        lo, hi = float(h[filled].min()), float(h[filled].max())
        norm = (h[filled] - lo) / (hi - lo) if hi > lo else np.zeros(int(filled.sum()))
        # matplotlib's Colormap: index int(x * N), the top value folded into the last colour
        idx[filled] = np.clip(norm * 256.0, 0, 255).astype(np.intp)
    return _viridis()[idx]


class _Box:
    """Data -> pixel mapping of one panel's axes box."""

    def __init__(self, left: float, top: float, x: Axis, y: Axis) -> None:
        self.left, self.top = left, top
        self.w, self.h = _CELL_W - _LEFT - _RIGHT, _CELL_H - _TOP - _BOTTOM
        self.x, self.y = x, y

    def px(self, v: float) -> float:
        return self.left + (v - self.x.lo) / (self.x.hi - self.x.lo) * self.w

    def py(self, v: float) -> float:
        return self.top + self.h - (v - self.y.lo) / (self.y.hi - self.y.lo) * self.h


def _text(x: float, y: float, text: str, size: float, **attrs: str) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    return f'<text x="{_n(x)}" y="{_n(y)}" font-size="{size:g}"{extra}>{_esc(text)}</text>'


def _title(panel: Panel, box: _Box, x0: float) -> str:
    # an approximate width (0.6 em a character): a long title is squeezed into its cell
    # instead of running into the neighbour
    if 0.6 * 10 * len(panel.title) > _CELL_W - 8:
        return _text(x0 + 4, box.top - 8, panel.title, 10, textLength=str(_CELL_W - 8),
                     lengthAdjust="spacingAndGlyphs")  # fmt: skip
    return _text(box.left + box.w / 2, box.top - 8, panel.title, 10, text_anchor="middle")


def _ticks(box: _Box) -> list[str]:
    out = []
    marks = []
    bottom, left = box.top + box.h, box.left
    for v, label in zip(box.x.ticks, box.x.tick_labels, strict=True):
        p = box.px(v)
        marks.append(f"M{_n(p)} {_n(bottom)}v{_TICK}")
        out.append(_text(p, bottom + _TICK + 10, label, 9, text_anchor="middle"))
    for v, label in zip(box.y.ticks, box.y.tick_labels, strict=True):
        p = box.py(v)
        marks.append(f"M{_n(left)} {_n(p)}h-{_TICK}")
        out.append(_text(left - _TICK - 2, p + 3.2, label, 9, text_anchor="end"))
    if marks:
        out.insert(0, f'<path d="{"".join(marks)}" stroke="#000" stroke-width="0.8"/>')
    return out


def _density(panel: Panel, box: _Box) -> list[str]:
    out = []
    if panel.counts is not None and panel.xedges is not None and panel.yedges is not None:
        x0, x1 = box.px(panel.xedges[0]), box.px(panel.xedges[-1])
        y0, y1 = box.py(panel.yedges[-1]), box.py(panel.yedges[0])
        uri = base64.b64encode(_png(density_rgba(panel.counts))).decode("ascii")
        out.append(
            f'<image x="{_n(x0)}" y="{_n(y0)}" width="{_n(x1 - x0)}" height="{_n(y1 - y0)}" '
            f'preserveAspectRatio="none" style="image-rendering:pixelated" '
            f'href="data:image/png;base64,{uri}"/>'
        )
    if panel.outline is not None:
        xs = _ns([box.px(a) for a in panel.outline[:, 0]])
        ys = _ns([box.py(b) for b in panel.outline[:, 1]])
        points = " ".join(f"{a},{b}" for a, b in zip(xs, ys, strict=True))
        out.append(
            f'<polygon class="gate" points="{points}" fill="none" stroke="{_CRIMSON}" '
            'stroke-width="1.5"/>'
        )
    return out


def _histogram(panel: Panel, box: _Box) -> list[str]:
    out = []
    if panel.counts is not None and panel.xedges is not None:
        # the step outline: up the first edge, across each bin at its count, down the last
        xs = _ns(box.left + (panel.xedges - box.x.lo) / (box.x.hi - box.x.lo) * box.w)
        tops = np.asarray(panel.counts, float)
        ys = _ns(box.top + box.h - (tops - box.y.lo) / (box.y.hi - box.y.lo) * box.h)
        base = _n(box.py(0.0))
        steps = "".join(f"L{xs[i]} {y}L{xs[i + 1]} {y}" for i, y in enumerate(ys))
        d = f"M{xs[0]} {base}{steps}L{xs[-1]} {base}Z"
        out.append(f'<path d="{d}" fill="{_GREY}" stroke="{_GREY}" stroke-width="1"/>')
    for v in panel.thresholds:
        out.append(
            f'<path class="gate" d="M{_n(box.px(v))} {_n(box.top)}v{_n(box.h)}" '
            f'stroke="{_CRIMSON}" stroke-width="1.5"/>'
        )
    return out


def _panel(panel: Panel, x0: float, y0: float) -> list[str]:
    if panel.x is None or panel.y is None:  # a boolean gate: its definition as text
        mid = x0 + _CELL_W / 2
        return [
            _text(mid, y0 + _TOP - 8, panel.title, 10, text_anchor="middle"),
            _text(mid, y0 + _CELL_H / 2, f"{panel.gate} = {panel.text}", 10, text_anchor="middle"),
        ]
    box = _Box(x0 + _LEFT, y0 + _TOP, panel.x, panel.y)
    out = [f'<g class="panel" data-gate="{_esc(panel.gate)}">']
    out += _density(panel, box) if panel.kind == "density" else _histogram(panel, box)
    out.append(
        f'<rect x="{_n(box.left)}" y="{_n(box.top)}" width="{box.w}" height="{box.h}" '
        'fill="none" stroke="#000" stroke-width="0.8"/>'
    )
    out += _ticks(box)
    out.append(_text(box.left + box.w / 2, box.top + box.h + 36, panel.x.label, 10,
                     text_anchor="middle"))  # fmt: skip
    cy = box.top + box.h / 2
    out.append(_text(x0 + 12, cy, panel.y.label, 10, text_anchor="middle",
                     transform=f"rotate(-90 {_n(x0 + 12)} {_n(cy)})"))  # fmt: skip
    out.append(_title(panel, box, x0))
    out.append("</g>")
    return out


def panels_svg(panels: Sequence[Panel], *, ncols: int = 4) -> bytes:
    """Lay gating panels out as one SVG grid, ``ncols`` to a row.

    Parameters
    ----------
    panels
        From :func:`nkflow.pl.gating_panels.gate_panels`.
    ncols
        Panels per row.

    Returns
    -------
    bytes
        The UTF-8 SVG document.
    """
    ncols = max(1, int(ncols))
    cols = max(1, min(ncols, len(panels)))
    rows = -(-len(panels) // cols) if panels else 1
    width, height = cols * _CELL_W, rows * _CELL_H
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="{_FONT}">',
        f'<rect width="{width}" height="{height}" fill="#fff"/>',
    ]
    for i, panel in enumerate(panels):
        row, col = divmod(i, cols)
        out += _panel(panel, col * _CELL_W, row * _CELL_H)
    out.append("</svg>")
    return "\n".join(out).encode("utf-8")


def gating_svg(
    adata: Any, *, gates: list[str] | None = None, ncols: int = 4, bins: int = 96
) -> bytes:
    """A sample's gate grid (as :func:`nkflow.pl.gate_grid` draws it) as SVG bytes.

    Parameters
    ----------
    adata
        A sample gated by :func:`nkflow.gating.gate`.
    gates
        Gate ids to draw (default: every geometric gate, in template order).
    ncols
        Panels per row.
    bins
        Histogram bins per axis.

    Returns
    -------
    bytes
        The UTF-8 SVG document.

    Raises
    ------
    GatingError
        When the sample is not gated or has no geometric gate.
    """
    return panels_svg(gate_panels(adata, gates=gates, bins=bins), ncols=ncols)
