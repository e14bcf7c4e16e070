"""Figures for the report: deterministic image bytes, data URIs and section assignment.

Figures arrive as a ``name -> matplotlib Figure`` mapping; PNG bytes and SVG bytes (the
per-sample gate grids of :mod:`nkflow.report.gating_svg`) are accepted too. Figures are
encoded as PNG; image bytes pass through unchanged.
The name decides the report section, by prefix (case-insensitive; the separator after
the prefix may be ``_``, ``:``, ``/``, ``-`` or ``.``):

==================  =====================================================
prefix              section
==================  =====================================================
``gating``          gating per sample (thumbnails; the rest is the caption)
``populations``     population frequencies (also ``frequencies``)
``cluster``         clusters (heatmap, abundance, ...)
``repair``          repair profile (also ``score``, ``scores``, ``flags``)
``qc``              batch overview (also ``overview``, ``status``)
anything else       other figures
==================  =====================================================
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import sys
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "CAPTIONS",
    "PNG_DPI",
    "FigureItem",
    "data_uri",
    "figure_bytes",
    "figure_format",
    "figure_png",
    "figure_section",
    "image_size",
    "png_size",
    "svg_size",
]

PNG_DPI = 110
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_PNG_URI = "data:image/png;base64,"
_SVG_URI = "data:image/svg+xml;charset=utf-8,"
# the root element's size attributes (in px or unitless), read from the document's start
_SVG_ROOT = re.compile(rb"^\s*(?:<\?xml[^>]*\?>\s*)?<svg\b([^>]*)>")
_SVG_SIZE = re.compile(rb'\b(width|height)="([0-9]+(?:\.[0-9]+)?)(?:px)?"')
# left as they are in an SVG data URI: none of them ends a double-quoted HTML attribute or
# starts an entity, a fragment or an escape (base64 images inside the SVG stay readable)
_URI_SAFE = "/+=:;,.()!*~_-"
# bytes urllib.parse.quote(..., safe=_URI_SAFE) leaves as they are: letters, digits, "_.-~"
_KEEP = np.zeros(256, dtype=bool)
_KEEP[np.frombuffer(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~"
    + _URI_SAFE.encode("ascii"), dtype=np.uint8)] = True  # fmt: skip
_HEX = np.frombuffer(b"0123456789ABCDEF", dtype=np.uint8)

_SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("gating", ("gating", "gate", "gates")),
    ("populations", ("populations", "population", "frequencies", "frequency")),
    ("clusters", ("clusters", "cluster", "metaclusters", "metacluster")),
    ("repair", ("repair", "scores", "score", "flags")),
    ("overview", ("qc", "overview", "status")),
)
_SEP = re.compile(r"^[_:/.\-\s]")


@dataclass(frozen=True)
class FigureItem:
    """One encoded figure: its given name, section, caption and image (PNG or SVG) bytes."""

    name: str
    section: str
    caption: str
    data: bytes

    @property
    def format(self) -> str:
        """``"png"`` or ``"svg"``."""
        return figure_format(self.data)


def figure_section(name: str) -> tuple[str, str]:
    """The report section of a figure and the caption left after its prefix.

    Parameters
    ----------
    name
        The figure's name in the ``figures`` mapping.

    Returns
    -------
    section, caption
        ``section`` is one of ``gating``, ``populations``, ``clusters``, ``repair``,
        ``overview``, ``other``; ``caption`` is the rest of the name (or the whole name).
    """
    text = str(name)
    lower = text.lower()
    for section, prefixes in _SECTIONS:
        for prefix in sorted(prefixes, key=len, reverse=True):
            if lower.startswith(prefix):
                rest = text[len(prefix) :]
                if rest and not _SEP.match(rest):
                    continue  # "gatekeeper" is not a gating figure
                caption = CAPTIONS.get(text) or _SEP.sub("", rest) or text
                return section, caption
    return "other", text


_HEATMAP_CAPTION = (
    "Median marker expression per metacluster: the median of the pooled training cells "
    "(the table below gives the median over tubes of each tube's median instead)"
)

#: Captions of the figures the report makes itself (and of common pipeline figure names).
CAPTIONS = {
    "populations_by_tissue_timepoint": "% of parent per donor (a donor's batches averaged), "
    "grouped by tissue and timepoint (bar: median; hollow dot: too few events; 'no value': "
    "the gate was set in no tube)",
    "populations_heatmap": "% of parent, samples by populations (hatched: too few events)",
    "cluster_heatmap": _HEATMAP_CAPTION,
    "cluster_abundance": "Metacluster abundance per sample",
    "clusters_heatmap": _HEATMAP_CAPTION,
    "clusters_abundance": "Metacluster abundance per sample",
    "repair_profile": "Repair profile: AREG net response with intervals, polarisation and "
    "clearance",
}


def _is_figure(obj: object) -> bool:
    """True for a matplotlib Figure; bytes need no matplotlib import.

    A batch run's figures arrive as bytes, and an object can only be a Figure once
    matplotlib is imported.
    """
    module = sys.modules.get("matplotlib.figure")
    return module is not None and isinstance(obj, module.Figure)


def figure_png(figure: Figure | bytes, *, dpi: int = PNG_DPI) -> bytes:
    """Encode a figure as PNG bytes that are identical for identical figures.

    Matplotlib's ``Software`` text chunk is dropped and no time is written, so two runs
    give byte-identical files.

    Parameters
    ----------
    figure
        A matplotlib Figure, or PNG bytes (returned unchanged after a signature check).
    dpi
        Resolution.

    Returns
    -------
    bytes
        The PNG file.

    Raises
    ------
    TypeError
        When ``figure`` is neither a Figure nor PNG bytes.
    """
    if isinstance(figure, bytes | bytearray | memoryview):
        data = bytes(figure)
        if not data.startswith(_PNG_MAGIC):
            raise TypeError("figure bytes are not a PNG file (bad signature)")
        return data
    if not _is_figure(figure):
        raise TypeError(
            f"figure must be a matplotlib Figure or PNG bytes, got {type(figure).__name__}"
        )
    buf = io.BytesIO()
    figure.savefig(
        buf,
        format="png",
        dpi=dpi,
        metadata={"Software": None},
        facecolor="white",
        bbox_inches="tight",
        pad_inches=0.08,
    )
    return buf.getvalue()


def figure_format(data: bytes) -> str:
    """``"png"`` or ``"svg"`` from an image's first bytes.

    Raises
    ------
    TypeError
        When ``data`` is neither a PNG file nor an SVG document.
    """
    if data.startswith(_PNG_MAGIC):
        return "png"
    if _SVG_ROOT.match(data[:4096]):
        return "svg"
    raise TypeError("figure bytes are neither a PNG file (bad signature) nor an SVG document")


def figure_bytes(figure: Figure | bytes, *, dpi: int = PNG_DPI) -> bytes:
    """A figure's image bytes: a matplotlib Figure as PNG, PNG or SVG bytes unchanged.

    Parameters
    ----------
    figure
        A matplotlib Figure, PNG bytes or SVG bytes.
    dpi
        Resolution of a Figure's PNG.

    Returns
    -------
    bytes
        The PNG file or the SVG document.

    Raises
    ------
    TypeError
        When ``figure`` is none of these.
    """
    if isinstance(figure, bytes | bytearray | memoryview):
        data = bytes(figure)
        figure_format(data)
        return data
    if not _is_figure(figure):
        raise TypeError(
            "figure must be a matplotlib Figure, PNG bytes or SVG bytes, "
            f"got {type(figure).__name__}"
        )
    return figure_png(figure, dpi=dpi)


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height in pixels read from a PNG's IHDR chunk (0, 0 if unreadable)."""
    if len(png) < 24 or not png.startswith(_PNG_MAGIC) or png[12:16] != b"IHDR":
        return 0, 0
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def svg_size(svg: bytes) -> tuple[int, int]:
    """Width and height in px from an SVG root's ``width``/``height`` (0, 0 if absent)."""
    root = _SVG_ROOT.match(svg[:4096])
    if root is None:
        return 0, 0
    size = {k: float(v) for k, v in _SVG_SIZE.findall(root.group(1))}
    if b"width" not in size or b"height" not in size:
        return 0, 0
    return round(size[b"width"]), round(size[b"height"])


def image_size(data: bytes) -> tuple[int, int]:
    """Width and height in pixels of a PNG or SVG figure (0, 0 if unreadable)."""
    return png_size(data) if data.startswith(_PNG_MAGIC) else svg_size(data)


def data_uri(data: bytes) -> str:
    """A data URI for an inline image.

    PNG as ``data:image/png;base64,...``; SVG percent-encoded as text (a third smaller
    than base64, and its embedded base64 images pass through as they are). The URI holds
    no ``"``, ``&``, ``<`` or ``>``, so it is safe in a double-quoted HTML attribute.
    """
    if figure_format(data) == "svg":
        return _SVG_URI + _percent_encode(data)
    return _PNG_URI + base64.b64encode(data).decode("ascii")


def _percent_encode(data: bytes) -> str:
    """``urllib.parse.quote(data, safe=_URI_SAFE)``, character for character.

    Vectorised: urllib's encoder loops over the bytes in Python (~30 ms for one
    sample's gating SVG, and the report embeds one per sample).
    """
    raw = np.frombuffer(data, dtype=np.uint8)
    keep = _KEEP[raw]
    width = np.where(keep, 1, 3)
    start = np.cumsum(width) - width
    out = np.empty(int(width.sum()), dtype=np.uint8)
    out[start[keep]] = raw[keep]
    escaped, where = raw[~keep], start[~keep]
    out[where] = ord("%")
    out[where + 1] = _HEX[escaped >> 4]
    out[where + 2] = _HEX[escaped & 15]
    return out.tobytes().decode("ascii")


def decode_data_uri(uri: str) -> bytes:
    """Inverse of :func:`data_uri` (used by tests and checks).

    Raises
    ------
    ValueError
        When ``uri`` is not a PNG or SVG data URI as :func:`data_uri` makes them.
    """
    if uri.startswith(_SVG_URI):
        return urllib.parse.unquote_to_bytes(uri[len(_SVG_URI) :])
    if not uri.startswith(_PNG_URI):
        raise ValueError(f"not a PNG or SVG data URI: {uri[:40]!r}")
    try:
        return base64.b64decode(uri[len(_PNG_URI) :], validate=True)
    except binascii.Error as exc:
        raise ValueError(f"invalid base64 in data URI: {exc}") from exc


def encode_figures(figures: Mapping[str, Any] | None) -> list[FigureItem]:
    """Encode every figure once, in the mapping's order, with its section and caption."""
    items: list[FigureItem] = []
    for name, fig in (figures or {}).items():
        if fig is None:
            continue
        section, caption = figure_section(str(name))
        items.append(FigureItem(str(name), section, caption, figure_bytes(fig)))
    return items
