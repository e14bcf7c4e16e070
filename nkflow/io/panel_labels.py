"""Labelled channels whose label nkflow cannot read as a marker, so that none is lost in silence.

A ``$PnS`` such as ``"ICAM-1 BV605"``, ``"IL-12"`` or ``"156Gd_CD86"`` names a stain; when
the alias table (:mod:`nkflow.io.marker_aliases`) does not know it, the channel's marker
is ``""`` and the channel plays no part in gating, clustering, medians or the report.
:func:`unread_labels` finds those channels so that ``nkflow check``, ``nkflow inspect`` and
the run's Methods name them; a panel file (``channel,marker``) names their markers.

Labels that name no stain are not listed: a label that only repeats the channel name
(``"BL1-A"`` on ``BL1-A``); scatter, time and housekeeping channels (``"FSC-Height"``,
``"Time (10.24 sec.)"``, ``"Event_length"``, ``"Pulse Width"``); and labels made only of
fluorochromes, detectors, filters and lasers (``"PE-Cy7-A"``, ``"Alexa Fluor 405-A"``,
``"V2-A"``, ``"355-448/59"``, ``"Violet 1"``), metal isotopes (``"195Pt"``), mass
cytometry's DNA, barcode, bead and cisplatin channels (``"191Ir_DNA1"``, ``"BC1"``,
``"140Ce_Beads"``, ``"beadDist"``), fluorescent reporters (``"GFP"``, ``"mCherry-A"``)
and filler (``"xxxxxxx"``, ``"empty"``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from .channels import channel_kind
from .panel import PanelLike, _norm, _preferred, _tokens, marker_from_text, panel_overrides

__all__ = [
    "format_unread",
    "looks_like_marker",
    "unread_by_label",
    "unread_items",
    "unread_labels",
]

#: fluorochromes, written as the run of pieces a normalised token is made of
#: ("pecy7" = pe + cy7, "apcvio770", "percpef710", "bv421", "alexafluor")
#: ("FL1 LinA": a detector's scale and area, height or width suffix, ends in a|h|w)
_FLUOR = re.compile(
    r"(?!\d)(?:fitc|fluorescein|pe|phycoerythrin|apc|allophycocyanin|percp|pacific|pac|blue|"
    r"orange|amcyan|aqua|cy|tr|txred|texas|red|ecd|pc|h7|r\d{3}|af|alexa|fluor|ax|"
    r"a\d{3}|bv|buv|bb|bux|brilliant|violet|ultraviolet|uv|bright|super|sb|ef|efluor|"
    r"e\d{3}|qdot|qd|spark|nir|green|yellow|ultra|cf|dazzle|vio|fire|v\d{3}|horizon|bd|"
    r"krome|kro|ko|pb|po|real|rb|ry|nova|atto|dylight|lin|log|int|peak|area|height|width|"
    r"\d+)+[ahw]?"
)
#: detector names of flow cytometers: FL1, BL2, VL1, YL2, RL1, B1, V2, Y2, R1, UV3, YG1
#: (alone too: "FL_Green", "PE-TxRed YG-A"), and BD's laser + wavelength (B710, G780; not
#: B220, a marker)
_DETECTOR = re.compile(
    r"(?:fl|bl|vl|yl|rl|gl|uv|yg)(?:\d{1,2}[a-z]?)?|[bvrygu](?:\d{1,2}|[3-8]\d\d)[a-z]?"
)
#: metals of mass cytometry; "112Cd", "Cd112Di" are isotopes, a bare "CD112" a marker
_ELEMENTS = (
    "y|la|ce|pr|nd|sm|eu|gd|tb|dy|ho|er|tm|yb|lu|hf|ta|ir|pt|pd|in|rh|bi|au|ag|cs|ba|i|xe|"
    "pb|os|sn|ru|te|zr|nb|mo|re|cd"
)
_ISOTOPE = re.compile(
    rf"\d{{2,3}}(?:{_ELEMENTS})(?:di|dd)?|(?:{_ELEMENTS})\d{{2,3}}(?:di|dd)"
    rf"|(?:{_ELEMENTS.removesuffix('|cd')})\d{{2,3}}"
)
#: housekeeping, mass-cytometry and reporter words, alone or with a number (DNA1, BC6)
_WORDS = re.compile(
    r"(?:dna|bc|barcode\w*|bead\w*|cisplatin|intercalator|time|event\w*|length|center|"
    r"offset|residual|doublet|ev|hdr|pulse|count|fsc|ssc|fs|ss|sc|comp|fjcomp|channel|"
    r"laser|filter|sec|di|dd|gfp|egfp|yfp|eyfp|rfp|cfp|bfp|mcherry|tdtomato|tomato|dsred|"
    r"mkate|mneongreen|zsgreen|venus|citrine|cerulean|empty|blank|unused|none|na|null|"
    r"nothing|autofluorescence|auto|unstained)\d*"
)
#: one character repeated ("xxxxxxx", "---" leaves nothing after normalisation)
_FILLER = re.compile(r"(.)\1{2,}")
#: marks that NFKC spells out ("Alexa Fluor™ 405")
_MARKS = re.compile("[\u2122\u00ae\u00a9]")


def _names_no_stain(token: str) -> bool:
    """Whether one normalised label token names no stain (fluorochrome, detector, ...)."""
    return (
        len(token) < 2
        or token.isdigit()
        or any(p.fullmatch(token) for p in (_FLUOR, _DETECTOR, _ISOTOPE, _WORDS, _FILLER))
    )


def looks_like_marker(label: str, channel: str = "") -> bool:
    """Whether a channel label names a stain (known to the alias table or not).

    Parameters
    ----------
    label
        The ``$PnS`` (or the ``$PnN`` of a channel without one).
    channel
        The ``$PnN``: a label that only repeats it, and the channels of scatter, time and
        housekeeping counters, name no stain.

    Returns
    -------
    bool
        True when some word of the label is not a fluorochrome, detector, filter, laser,
        isotope, housekeeping, DNA/barcode/bead or reporter word (see the module docstring).

    Examples
    --------
    >>> looks_like_marker("CD28 BV605"), looks_like_marker("PE-Cy7-A")
    (True, False)
    >>> looks_like_marker("191Ir_DNA1"), looks_like_marker("154Gd_ICAM-1")
    (False, True)
    """
    text = _MARKS.sub(" ", label).strip()
    if not text or (channel and _norm(text) == _norm(channel)):
        return False
    kinds = {channel_kind(text), channel_kind(channel or text, text)}
    if kinds != {"fluorescence"}:  # scatter, time, event counters, pulse width
        return False
    return not all(_names_no_stain(_norm(t)) for t in _tokens(text))


def unread_labels(
    pnn: Sequence[str], pns: Sequence[str], *, panel: PanelLike = None
) -> dict[str, str]:
    """Channels whose label names a stain the alias table cannot read as a marker.

    A channel the user panel names is never listed (its marker is the panel's), nor is one
    whose label the table reads (a marker left blank by a conflict between two channels is
    reported as a conflict, not here). When the area, height and width channels of one
    detector carry the label, the area channel stands for them.

    Parameters
    ----------
    pnn
        Channel names.
    pns
        Stain labels (``""`` where absent; may be shorter than ``pnn``); a channel without
        one is judged by its ``$PnN``, as :func:`nkflow.io.resolve_markers` reads it.
    panel
        Panel file, mapping ``channel -> marker`` or None.

    Returns
    -------
    dict
        ``$PnN`` -> the label as written, in channel order; empty when every label is read.

    Examples
    --------
    >>> unread_labels(["FL1-A", "FL2-A", "FL3-A"], ["CD56 FITC", "CD86 PE", "PE-Cy5-A"])
    {'FL2-A': 'CD86 PE'}
    """
    pnn = [str(c) for c in pnn]
    pns = [str(s or "") for s in pns] + [""] * (len(pnn) - len(pns))
    named = panel_overrides(pnn, pns, panel)
    found: dict[str, str] = {}
    for i, (channel, label) in enumerate(zip(pnn, pns, strict=True)):
        text = label.strip()
        if i in named or marker_from_text(text or channel):
            continue
        # a label repeating the channel name is none; a channel without one is read by name
        if looks_like_marker(text, channel) if text else looks_like_marker(channel):
            found[channel] = text or channel
    by_label: dict[str, list[tuple[int, str]]] = {}
    for i, channel in enumerate(pnn):
        if channel in found:
            by_label.setdefault(found[channel], []).append((i, channel))
    for chans in by_label.values():
        keep = _preferred(chans) if len(chans) > 1 else None
        for i, channel in chans:
            if keep is not None and i != keep:
                del found[channel]
    return found


def unread_by_label(rows: pd.DataFrame | None) -> list[dict[str, Any]]:
    """The per-file unread rows tallied: each label and channel once, with its files.

    Parameters
    ----------
    rows
        One row per file and channel (``sample_id, channel, label``), as
        :attr:`nkflow.io.BatchCheck.unread` holds them.

    Returns
    -------
    list of dict
        ``{"label", "channel", "files"}`` (how many files carry it), in first-seen order;
        empty when there is none.
    """
    if rows is None or rows.empty:
        return []
    files = rows.groupby(["label", "channel"], sort=False)["sample_id"].nunique()
    return [
        {"label": str(label), "channel": str(channel), "files": int(n)}
        for (label, channel), n in files.items()
    ]


def unread_items(
    unread: Mapping[str, str] | Iterable[Mapping[str, Any]], *, n_files: int | None = None
) -> list[str]:
    """``'CD86 PE' (FL2-A)`` per labelled channel: the one way nkflow names them.

    Parameters
    ----------
    unread
        ``$PnN`` -> label, as :func:`unread_labels` returns, or entries of
        :func:`unread_by_label` (``label``, ``channel``, optionally ``files``).
    n_files
        The readable files of the batch: each entry then says in how many of them its
        label is (``'CD86 PE' (FL2-A, all 3 files)``, ``(FL2-A, 1 of 3 file(s))``).

    Returns
    -------
    list of str
        One item per label and channel; empty when there is none.
    """
    if isinstance(unread, Mapping):
        unread = [{"label": label, "channel": channel} for channel, label in unread.items()]
    items = []
    for entry in unread:
        where = str(entry.get("channel", ""))
        n = entry.get("files")
        if n_files is not None and n is not None:
            n = int(n)
            where += ", " + (
                f"all {n} files" if n == n_files and n > 1 else f"{n} of {n_files} file(s)"
            )
        items.append(f"{str(entry.get('label', ''))!r} ({where})")
    return items


def format_unread(
    unread: Mapping[str, str] | Iterable[Mapping[str, Any]], *, n_files: int | None = None
) -> str:
    """``'CD86 PE' (FL2-A), 'IL-12' (Pacific Blue-A)``: the labels with their channels.

    Parameters
    ----------
    unread
        ``$PnN`` -> label, as :func:`unread_labels` returns, or entries of
        :func:`unread_by_label`.
    n_files
        As in :func:`unread_items`.

    Returns
    -------
    str
        :func:`unread_items` joined; ``""`` when there is none.
    """
    return ", ".join(unread_items(unread, n_files=n_files))
