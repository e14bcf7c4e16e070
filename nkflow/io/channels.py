"""What a channel measures, from its name: ``var["kind"]`` of a container.

Kinds, and the rule that gives each (names compared in any case, ``_``, ``-``, ``.``,
``#`` and spaces ignored where said):

``other``
    Housekeeping counters and pulse shapes, no signal of a stain: event counters
    (``Event``, ``Event Count``, ``Event #``, ``EventNumber`` ...), ``Pulse Width``, and
    one 16-bit word of a wider counter, a channel whose ``$PnN`` or ``$PnS`` ends in
    ``LSW`` or ``MSW`` (CyAn's ``TIME`` labelled ``Time LSW``, which wraps every 65,536
    ticks, and ``Time MSW``). Neither transformed, margin-checked, clustered nor used
    as the time axis.
``time``
    ``$PnN`` starting with ``time``, ``HDR-T``/``HDR-TM``, or ``Computed Time`` (the
    monotone time a CyAn computes from its split counter).
``scatter``
    FSC/SSC (and Beckman ``FS``/``SS``, ``Forward Scatter``/``Side Scatter``).
``fluorescence``
    Everything else (also mass-cytometry channels, ``Event_length`` included, which
    the CyTOF templates gate on).

An FCS 3.2 ``$PnTYPE`` of Forward_Scatter, Side_Scatter or Time overrides the name.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["channel_kind", "channel_kinds"]

_SEPARATORS = re.compile(r"[\s_.#-]+")
_COUNTER = re.compile(r"^events?(count|counter|number|num|no|id|index)?$")
_OTHER = frozenset({"pulsewidth"})
_SPLIT_WORD = re.compile(r"(lsw|msw)$")
_TIME = frozenset({"hdr-t", "hdr-tm"})
_TYPE_KIND = {"forward_scatter": "scatter", "side_scatter": "scatter", "time": "time"}


def channel_kind(name: str, label: str = "") -> str:
    """Classify a channel as ``"scatter"``, ``"time"``, ``"other"`` or ``"fluorescence"``.

    Parameters
    ----------
    name
        The channel name (``$PnN``).
    label
        Its ``$PnS`` (``""`` when none); only an ``LSW``/``MSW`` ending is read from it.

    Returns
    -------
    str
        See the module docstring for the rules.

    Examples
    --------
    >>> [channel_kind(n) for n in ("FSC-A", "Time", "Event Count", "PE-A")]
    ['scatter', 'time', 'other', 'fluorescence']
    >>> channel_kind("TIME", "Time LSW")
    'other'
    """
    low = name.strip().lower()
    packed = _SEPARATORS.sub("", low)
    if (
        _COUNTER.match(packed)
        or packed in _OTHER
        or _SPLIT_WORD.search(packed)
        or _SPLIT_WORD.search(_SEPARATORS.sub("", label.strip().lower()))
    ):
        return "other"
    if low.startswith("time") or low in _TIME or packed == "computedtime":
        return "time"
    head = low.replace("_", "-").replace(" ", "-")
    if head.startswith(("fsc", "ssc", "fs-", "ss-")):
        return "scatter"
    if low in ("fs", "ss") or low.startswith(("forward scatter", "side scatter")):
        return "scatter"
    return "fluorescence"


def channel_kinds(
    names: Sequence[str], labels: Sequence[str] | None = None, types: Sequence[str] | None = None
) -> list[str]:
    """``var["kind"]`` of every channel: FCS 3.2 ``$PnTYPE`` when it says scatter or time.

    Parameters
    ----------
    names
        ``$PnN`` of the channels.
    labels
        Their ``$PnS`` (None: none).
    types
        Their ``$PnTYPE`` (None: none).

    Returns
    -------
    list of str
        One kind per channel (:func:`channel_kind`).
    """
    given = list(labels) if labels is not None else [""] * len(names)
    kinds = [channel_kind(n, s or "") for n, s in zip(names, given, strict=True)]
    for j, value in enumerate(types or []):
        kind = _TYPE_KIND.get(value.lower())
        if kind is not None:
            kinds[j] = kind
    return kinds
