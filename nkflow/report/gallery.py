"""Figure galleries of the report, and the ids that let a listed sample link to its plot.

:func:`gallery` lays figures out as thumbnails that enlarge on click (pure CSS);
:func:`sample_anchors` gives each per-sample gating plot an id from its sample id, so the
overview's tables and lists (:func:`sample_link`) can point at it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from .figures import FigureItem, data_uri, image_size
from .tables import esc

__all__ = ["gallery", "sample_anchors", "sample_link"]

_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_.-]+")


def sample_anchors(items: Sequence[FigureItem], prefix: str = "gating") -> dict[str, str]:
    """An element id per figure, from its caption (a sample id): ``gating-<safe id>``.

    Characters other than letters, digits, ``_``, ``.`` and ``-`` become ``-``; ids that
    would clash (``a b`` and ``a-b``) get ``-2``, ``-3`` ... in figure order.

    Parameters
    ----------
    items
        The figures (each ``caption`` a sample id).
    prefix
        The ids' prefix (keeps them apart from the sections' ids).

    Returns
    -------
    dict
        ``figure name -> id``.
    """
    used: set[str] = set()
    out: dict[str, str] = {}
    for item in items:
        base = f"{prefix}-{_UNSAFE_ID.sub('-', item.caption).strip('-') or 'sample'}"
        anchor, n = base, 1
        while anchor.lower() in used:
            n += 1
            anchor = f"{base}-{n}"
        used.add(anchor.lower())
        out[item.name] = anchor
    return out


def sample_link(sample_id: Any, anchors: Mapping[str, str] | None) -> str:
    """A sample id as escaped HTML, linked to its gating plot when it has one."""
    sid = str(sample_id)
    anchor = (anchors or {}).get(sid)
    return f'<a href="#{esc(anchor)}">{esc(sid)}</a>' if anchor else esc(sid)


def gallery(
    items: Sequence[FigureItem],
    *,
    wide: bool = False,
    captions: Mapping[str, str] | None = None,
    counter: list[int],
    ids: Mapping[str, str] | None = None,
) -> str:
    """Figures as a grid of thumbnails that enlarge on click (pure CSS).

    Parameters
    ----------
    items
        Encoded figures.
    wide
        One figure per row, shown at full width.
    captions
        Extra caption text per figure name (escaped).
    counter
        A one-element list used to number figures across the page.
    ids
        Element id per figure name (:func:`sample_anchors`); default ``fig-<number>``.

    Returns
    -------
    str
        HTML.
    """
    if not items:
        return ""
    captions = captions or {}
    out = [f'<div class="gallery{" wide" if wide else ""}">']
    for item in items:
        counter[0] += 1
        width, height = image_size(item.data)
        size = f' width="{width}" height="{height}"' if width and height else ""
        extra = captions.get(item.name, "")
        cap = f"<b>{esc(item.caption)}</b>" + (f"<br>{esc(extra)}" if extra else "")
        anchor = (ids or {}).get(item.name) or f"fig-{counter[0]}"
        out.append(
            f'<figure id="{esc(anchor)}"><label class="zoom" title="Click to enlarge">'
            f'<input type="checkbox" aria-label="Enlarge figure {counter[0]}">'
            f'<img src="{data_uri(item.data)}" alt="{esc(item.name)}"{size}>'
            f"</label><figcaption>Figure {counter[0]}. {cap}</figcaption></figure>"
        )
    out.append("</div>")
    return "".join(out)
