"""Figures for the report: deterministic PNG bytes, data URIs and section assignment.

Figures arrive as a ``name -> matplotlib Figure`` mapping (PNG bytes are accepted too).
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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from matplotlib.figure import Figure

__all__ = [
    "CAPTIONS",
    "PNG_DPI",
    "FigureItem",
    "data_uri",
    "figure_png",
    "figure_section",
    "png_size",
]

PNG_DPI = 110
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

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
    """One encoded figure: its given name, section, caption, file stem and PNG bytes."""

    name: str
    section: str
    caption: str
    png: bytes


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


#: Captions of the figures the report makes itself (and of common pipeline figure names).
CAPTIONS = {
    "populations_by_tissue_timepoint": "% of parent per sample, grouped by tissue and "
    "timepoint (bar: median; hollow dot: too few events)",
    "populations_heatmap": "% of parent, samples by populations (hatched: too few events)",
    "cluster_heatmap": "Median marker expression per metacluster",
    "cluster_abundance": "Metacluster abundance per sample",
    "clusters_heatmap": "Median marker expression per metacluster",
    "clusters_abundance": "Metacluster abundance per sample",
    "repair_profile": "Repair profile: AREG net response with intervals, polarisation and "
    "clearance",
}


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
    if not isinstance(figure, Figure):
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


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height in pixels read from a PNG's IHDR chunk (0, 0 if unreadable)."""
    if len(png) < 24 or not png.startswith(_PNG_MAGIC) or png[12:16] != b"IHDR":
        return 0, 0
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def data_uri(png: bytes) -> str:
    """A ``data:image/png;base64,...`` URI for inline images."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def decode_data_uri(uri: str) -> bytes:
    """Inverse of :func:`data_uri` (used by tests and checks).

    Raises
    ------
    ValueError
        When ``uri`` is not a base64 PNG data URI.
    """
    prefix = "data:image/png;base64,"
    if not uri.startswith(prefix):
        raise ValueError(f"not a PNG data URI: {uri[:40]!r}")
    try:
        return base64.b64decode(uri[len(prefix) :], validate=True)
    except binascii.Error as exc:
        raise ValueError(f"invalid base64 in data URI: {exc}") from exc


def encode_figures(figures: Mapping[str, Any] | None) -> list[FigureItem]:
    """Encode every figure once, in the mapping's order, with its section and caption."""
    items: list[FigureItem] = []
    for name, fig in (figures or {}).items():
        if fig is None:
            continue
        section, caption = figure_section(str(name))
        items.append(FigureItem(str(name), section, caption, figure_png(fig)))
    return items
