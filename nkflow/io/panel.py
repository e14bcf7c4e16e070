"""Marker resolution: from free-text ``$PnS`` (or ``$PnN``) to canonical marker names.

Real files label channels freely: ``"CD56 PEDazzle594"``, ``"173Yb_CD56"``,
``"FL1-H CD4 FITC"``, ``"Zombie aqua CD14 CD19"``, ``"NK1/1"``. The text is split into
tokens (on spaces, ``_ / , ; : ( ) -`` ...), runs of up to four tokens are looked up in an
alias table under a normalised key (lower case, Greek letters spelled, punctuation dropped),
and what matched decides the marker. Fluorochrome, detector and isotope tokens are simply
not in the table, so ``"CD16 APC-Cy7"`` is ``CD16`` and ``"PE-Cy7-A"`` is no marker.

A viability dye together with dump markers becomes one combined marker, e.g.
``"Zombie aqua CD14 CD19"`` -> ``LD_CD14_CD19``, ``"L/D CD19 F4/80"`` -> ``LD_CD19_F4-80``;
a viability dye alone is ``Viability`` (``FVS780`` too). A channel of several markers
without a viability dye, or one called a dump or lineage channel, is a dump channel:
``"CD3/CD14/CD19 BV510"`` -> ``Dump_CD14_CD19_CD3``, ``"Lineage FITC"`` -> ``Dump`` (its
markers not named). Gating templates use a dump channel for a negative condition on a
marker it holds (:mod:`nkflow.gating.resolve`). The exception is the one channel that
clinical panels (BD Multitest TBNK and the like) give CD16 and CD56 together to find NK
cells: ``"CD16+56 PE"`` is ``CD16_CD56``, a positive NK channel, not a dump. A number after
a CD marker and ``/`` or ``+`` is a CD marker too (``"CD3/14/19"``, ``"CD56/16"``).

A user panel (CSV ``channel,marker`` or TOML ``[channels]``) overrides the table for the
channels it names. The table itself is :data:`~nkflow.io.marker_aliases.ALIASES`; a label
naming a marker it does not know resolves to ``""`` and is named by
:func:`nkflow.io.panel_labels.unread_labels` (``nkflow check``, ``nkflow inspect``, the
run's Methods), never dropped in silence.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import tomllib
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Union

from ..exceptions import PanelError
from .marker_aliases import ALIASES

__all__ = [
    "ALIASES",
    "CANONICAL_MARKERS",
    "NK_COMBINED",
    "PanelLike",
    "canonical_marker",
    "conflict_message",
    "load_panel",
    "marker_equivalents",
    "marker_from_text",
    "panel_overrides",
    "resolve_markers",
    "resolve_with_conflicts",
]

logger = logging.getLogger(__name__)

PanelLike = Union[str, Path, Mapping[str, str], None]  # noqa: UP007 - runtime alias


#: Every canonical marker name (the keys of :data:`ALIASES`, the viability combinations
#: of docs/contracts.md and ``Viability``).
CANONICAL_MARKERS: frozenset[str] = frozenset(
    [*ALIASES, "LD_CD14_CD19", "LD_CD19_F4-80", "Viability"]
)

# Dump markers that only appear inside viability/dump combinations.
_DUMP_ONLY = {"F4-80": ("F4-80", "F4/80", "F480", "Adgre1", "EMR1")}
_VIABILITY = (
    "LD", "L/D", "Live/Dead", "LiveDead", "Live Dead", "Zombie", "Viability", "Viab",
    "Viakrome", "FVS", "FVD", "Fixable viability", "7AAD", "7-AAD", "DAPI", "PI",
    "Propidium iodide", "Sytox", "Dead", "eF780 viability", "Ghost dye", "Ghost",
)  # fmt: skip
#: a dump or lineage channel by its label: "Dump", "Lineage", "Lin cocktail", or "Lin"
#: alone or before a fluorochrome ("Lin-FITC"; not "FS Lin", a linear scatter channel)
_DUMP_LABEL = re.compile(
    r"(?:^|[^a-z])(?:dump|lineage|lin[-\s]*cocktail)(?:[^a-z]|$)|^\s*lin(?:[-\s_+]+[a-z0-9-]*)?\s*$",
    re.IGNORECASE,
)
#: viability aliases also read with a dye's number glued on (FVS780, FVD506, Zombie405)
_NUMBERED_DYE = re.compile(r"([a-z]{3,})\d+[a-z]*")
_GREEK = {"γ": "g", "δ": "d", "α": "a", "β": "b", "ε": "e", "κ": "k"}
_SPLIT = re.compile(r"[\s_/,;:()\[\]{}|+\-.@#*]+")
_MAX_NGRAM = 4
#: "CD16/56", "CD16+56", "CD3/14/19": the bare number is a CD marker too
_CD_SHORTHAND = re.compile(r"(?i)(\bcd\d+[a-z]?\s*[/+&]\s*)(?=\d)")
#: markers a panel puts together in one channel to find NK cells (clinical TBNK panels'
#: "CD16+56"): positive on NK, so not a dump channel
NK_COMBINED = frozenset({"CD16", "CD56"})


def _norm(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    for greek, latin in _GREEK.items():
        text = text.replace(greek, latin)
    return re.sub(r"[^a-z0-9]", "", text)


def _build_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for canon, aliases in {**ALIASES, **_DUMP_ONLY}.items():
        for alias in (canon, *aliases):
            table.setdefault(_norm(alias), canon)
    for alias in _VIABILITY:
        table.setdefault(_norm(alias), "__viability__")
    return table


_TABLE = _build_table()
_CANON_BY_NORM = {_norm(c): c for c in CANONICAL_MARKERS}


_EQUIVALENT = ({"CD3", "CD3e"},)


def _species_form(marker: str, species: str | None) -> str:
    if species == "mouse" and marker == "CD3":
        return "CD3e"
    if species == "human" and marker == "CD3e":
        return "CD3"
    return marker


def marker_equivalents(marker: str) -> set[str]:
    """Canonical names that denote the same marker (``CD3`` and mouse ``CD3e``).

    Parameters
    ----------
    marker
        A canonical marker name.

    Returns
    -------
    set of str
        ``marker`` and its species spellings.
    """
    for group in _EQUIVALENT:
        if marker in group:
            return set(group)
    return {marker}


def _tokens(text: str) -> list[str]:
    text = unicodedata.normalize("NFKC", text)
    while (spelled := _CD_SHORTHAND.sub(r"\1CD", text)) != text:
        text = spelled
    return [t for t in _SPLIT.split(text) if t]


def _match(tokens: list[str], i: int) -> tuple[str, int] | None:
    """The longest run of tokens from ``i`` in the table: ``(canonical, length)``."""
    for n in range(min(_MAX_NGRAM, len(tokens) - i), 0, -1):
        key = "".join(tokens[i : i + n])
        hit = _TABLE.get(key)
        if hit is None and n == 1 and (dye := _NUMBERED_DYE.fullmatch(key)):
            hit = "__viability__" if _TABLE.get(dye.group(1)) == "__viability__" else None
        if hit is not None:
            return hit, n
    return None


def _scan(text: str) -> list[str]:
    """Canonical markers (and ``__viability__``) found in ``text``, in order.

    A run of several tokens yields to a run starting inside it that reaches further: in
    ``"FL2-H NK1.1 PE"`` the detector's ``H`` and ``NK1`` spell HNK-1 (CD57), but ``NK1.1``
    starts after the ``H`` and ends later.
    """
    tokens = [_norm(t) for t in _tokens(text)]
    tokens = [t for t in tokens if t]
    found: list[str] = []
    i = 0
    while i < len(tokens):
        hit = _match(tokens, i)
        if hit is None:
            i += 1
            continue
        if hit[1] > 1 and (later := _match(tokens, i + 1)) and 1 + later[1] > hit[1]:
            i += 1  # the later run wins; it is taken at the next step
            continue
        found.append(hit[0])
        i += hit[1]
    return found


def marker_from_text(text: str, *, species: str | None = None) -> str:
    """Resolve one free-text channel label to a canonical marker (``""`` when none).

    Parameters
    ----------
    text
        A ``$PnS`` (or ``$PnN``) string such as ``"CD56 BUV737"`` or ``"173Yb_CD56"``.
    species
        ``"mouse"`` writes CD3 as ``CD3e``, ``"human"`` writes CD3e as ``CD3``; ``None`` keeps
        what the text says.

    Returns
    -------
    str
        The canonical marker; ``LD_<markers>`` for a viability dye with dump markers,
        ``Dump_<markers>`` (sorted) for a channel of several markers or one called a dump
        or lineage channel (``Dump`` when it names none); ``CD16_CD56`` for the clinical
        panels' combined NK channel; ``""`` when the text names no marker.
    """
    whole = _TABLE.get(_norm(text))
    if whole is not None and whole != "__viability__" and whole not in _DUMP_ONLY:
        return _species_form(whole, species)
    found = list(dict.fromkeys(_scan(text)))
    viability = "__viability__" in found
    markers = [m for m in found if m != "__viability__"]
    if viability:
        if not markers:
            return "Viability"
        return "LD_" + "_".join(sorted(markers))
    dump_label = _DUMP_LABEL.search(text)
    if len(markers) > 1 and set(markers) <= NK_COMBINED and not dump_label:
        return "_".join(sorted(markers))
    if len(markers) > 1 or dump_label:
        named = sorted({_species_form(m, species) for m in markers})
        return "_".join(["Dump", *named])
    if markers and markers[0] not in _DUMP_ONLY:
        return _species_form(markers[0], species)
    return ""


def canonical_marker(name: str, *, species: str | None = None) -> str:
    """Return the canonical spelling of a marker name or alias (unknown names unchanged).

    Parameters
    ----------
    name
        ``"NCAM1"``, ``"ifn-gamma"``, ``"CD56"`` ...
    species
        As in :func:`marker_from_text`.

    Returns
    -------
    str
        The canonical name, or ``name`` stripped when it is not in the table.
    """
    key = _norm(name)
    if key in _CANON_BY_NORM:
        return _species_form(_CANON_BY_NORM[key], species)
    hit = marker_from_text(name, species=species)
    return hit or name.strip()


def _decode_bytes(raw: bytes) -> str:
    for enc in ("utf-8-sig", "utf-16") if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else ("utf-8-sig",):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


def load_panel(path: str | Path) -> dict[str, str]:
    """Load a user panel: CSV with columns ``channel,marker`` or TOML with ``[channels]``.

    Marker names are written in canonical form when they are aliases (``NCAM1`` ->
    ``CD56``); other names are kept as the user wrote them; an empty marker means "this
    channel carries no marker".

    Parameters
    ----------
    path
        ``.csv`` or ``.toml`` file.

    Returns
    -------
    dict
        ``channel -> marker``; channels match ``$PnN`` (or, failing that, ``$PnS``).

    Raises
    ------
    PanelError
        The file is unreadable, lacks the columns/table, or names a channel twice.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PanelError(f"{path}: cannot read panel file: {exc.strerror or exc}") from None
    text = _decode_bytes(raw)
    pairs: list[tuple[str, str]] = []
    if path.suffix.lower() == ".toml":
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PanelError(f"{path}: invalid TOML: {exc}") from None
        table = doc.get("channels")
        if not isinstance(table, dict):
            raise PanelError(f'{path}: needs a [channels] table of channel = "marker"')
        for channel, marker in table.items():
            if not isinstance(marker, str):
                raise PanelError(f"{path}: marker for {channel!r} must be a string, not {marker!r}")
            pairs.append((str(channel), marker))
    else:
        reader = csv.DictReader(io.StringIO(text))
        fields = {(f or "").strip().lower(): f for f in reader.fieldnames or []}
        if "channel" not in fields or "marker" not in fields:
            raise PanelError(
                f"{path}: panel CSV needs columns 'channel' and 'marker'; "
                f"found {list(reader.fieldnames or [])}"
            )
        for row in reader:
            channel = (row.get(fields["channel"]) or "").strip()
            if channel:
                pairs.append((channel, (row.get(fields["marker"]) or "").strip()))
    panel: dict[str, str] = {}
    dups = []
    for channel, marker in pairs:
        if channel in panel:
            dups.append(channel)
        panel[channel] = canonical_marker(marker) if marker.strip() else ""
    if dups:
        raise PanelError(f"{path}: channel(s) listed more than once: {sorted(set(dups))}")
    return panel


def _as_panel(panel: PanelLike) -> dict[str, str] | None:
    if panel is None:
        return None
    if isinstance(panel, str | Path):
        return load_panel(panel)
    return {str(k): (canonical_marker(str(v)) if str(v).strip() else "") for k, v in panel.items()}


_SUFFIX = re.compile(r"[-_ ]?(A|H|W|Area|Height|Width)$", re.IGNORECASE)


def _preferred(channels: list[tuple[int, str]]) -> int | None:
    """Among channels sharing a marker, pick the area one when the rest are -H/-W twins."""
    stems = {_SUFFIX.sub("", name) for _, name in channels}
    if len(stems) != 1:
        return None
    areas = [i for i, name in channels if re.search(r"[-_ ]?(A|Area)$", name)]
    return areas[0] if len(areas) == 1 else None


def resolve_markers(
    pnn: Sequence[str],
    pns: Sequence[str],
    *,
    panel: PanelLike = None,
    species: str | None = None,
    on_conflict: str = "raise",
) -> list[str]:
    """Resolve every channel to a canonical marker (``""`` when it carries none).

    ``$PnS`` is read first; when it is empty ``$PnN`` is used. When the area, height and
    width versions of one detector all carry the same label (``CD123`` on ``Am Cyan-A``
    and ``Am Cyan-H``), the area channel gets the marker.

    Parameters
    ----------
    pnn
        Channel names.
    pns
        Stain labels, same length (``""`` where absent).
    panel
        Panel file, mapping ``channel -> marker`` or None; its entries override the table.
    species
        ``"human"``, ``"mouse"`` or None (see :func:`marker_from_text`).
    on_conflict
        ``"raise"`` (default): two channels claiming one marker raise :class:`PanelError`.
        ``"blank"``: such markers are left unresolved (``""`` on every claimant).

    Returns
    -------
    list of str
        One marker per channel.

    Raises
    ------
    PanelError
        Two channels resolve to the same marker; the message lists both.
    """
    if on_conflict not in ("raise", "blank"):
        raise ValueError(f"on_conflict={on_conflict!r}; valid: 'raise', 'blank'")
    markers, clashes = resolve_with_conflicts(pnn, pns, panel=panel, species=species)
    if clashes and on_conflict == "raise":
        raise PanelError(conflict_message(clashes, pnn, pns))
    return markers


def conflict_message(
    clashes: Mapping[str, list[str]], pnn: Sequence[str], pns: Sequence[str]
) -> str:
    """Describe marker conflicts (marker -> channels) in one message naming every channel."""
    label = dict(zip(pnn, list(pns) + [""] * (len(pnn) - len(pns)), strict=True))
    parts = [
        f"{marker} on " + ", ".join(f"{c!r} ($PnS {label.get(c, '')!r})" for c in chans)
        for marker, chans in clashes.items()
    ]
    return (
        "several channels resolve to one marker: "
        + "; ".join(parts)
        + " — name the right channel in a panel file (channel,marker)"
    )


def panel_overrides(pnn: Sequence[str], pns: Sequence[str], panel: PanelLike) -> dict[int, str]:
    """The channels a user panel names in one file, by index: ``{index: marker}``.

    A panel channel matches a ``$PnN``, or failing that a stripped ``$PnS``; panel rows
    matching no channel are skipped.

    Parameters
    ----------
    pnn, pns
        Channel names and stain labels of the file (``pns`` may be shorter).
    panel
        Panel file, mapping ``channel -> marker`` or None.

    Returns
    -------
    dict
        Channel index -> the panel's marker (``""`` for "no marker").
    """
    pnn = list(pnn)
    user = _as_panel(panel) or {}
    by_pns = {s.strip(): i for i, s in enumerate(pns) if s.strip()}
    overridden: dict[int, str] = {}
    for channel, marker in user.items():
        idx = pnn.index(channel) if channel in pnn else by_pns.get(channel)
        if idx is None:
            logger.debug("panel channel %r not in this file", channel)
            continue
        overridden[idx] = marker
    return overridden


def resolve_with_conflicts(
    pnn: Sequence[str],
    pns: Sequence[str],
    *,
    panel: PanelLike = None,
    species: str | None = None,
) -> tuple[list[str], dict[str, list[str]]]:
    """Resolve markers, leaving conflicting ones blank, and report the conflicts.

    Parameters
    ----------
    pnn, pns, panel, species
        As in :func:`resolve_markers`.

    Returns
    -------
    tuple
        The markers (``""`` for unresolved and conflicting channels) and
        ``{marker: [channels claiming it]}``.
    """
    pnn = list(pnn)
    pns = list(pns) + [""] * (len(pnn) - len(pns))
    overridden = panel_overrides(pnn, pns, panel)
    markers: list[str] = []
    for i, (name, label) in enumerate(zip(pnn, pns, strict=True)):
        if i in overridden:
            markers.append(overridden[i])
            continue
        text = label.strip() or name
        markers.append(marker_from_text(text, species=species))
    user_markers = {m for m in overridden.values() if m}
    for i, marker in enumerate(markers):
        if i not in overridden and marker in user_markers:
            logger.debug("channel %r: %s assigned elsewhere by the panel", pnn[i], marker)
            markers[i] = ""
    groups: dict[str, list[tuple[int, str]]] = {}
    for i, marker in enumerate(markers):
        if marker:
            groups.setdefault(marker, []).append((i, pnn[i]))
    clashes: dict[str, list[str]] = {}
    for marker, chans in groups.items():
        if len(chans) < 2:
            continue
        keep = _preferred(chans)
        if keep is None:
            clashes[marker] = [name for _, name in chans]
        for i, _ in chans:
            if i != keep:
                markers[i] = ""
    return markers, clashes
