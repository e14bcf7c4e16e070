"""What a batch's panel offers a gating template: channels, markers, technology, species.

:class:`PanelView` finds a template's names in a panel (canonical markers, mass-cytometry
channels by isotope, scatter); :func:`dump_stand_in` finds a dump channel for a negative
condition; :func:`panel_technology` and :func:`infer_species` read the panel as a whole.
Used by :func:`nkflow.gating.resolve_template`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..exceptions import GatingTemplateError
from ..io.panel import NK_COMBINED, canonical_marker, marker_equivalents
from ..io.records import nkflow_record
from ..io.technology import detect_technology as detect_io_technology

__all__ = [
    "SPECIES_TELLS",
    "PanelView",
    "combined_channel_note",
    "dump_stand_in",
    "infer_species",
    "panel_technology",
    "species_markers",
]

_SCATTER = re.compile(r"^(FSC|SSC)[-_ ]?(A|H|W)?$", re.IGNORECASE)
#: mass channel names as CyTOF software writes them (``Yb176Di``, ``176Yb(Di)``)
#: special name -> (PnN patterns in preference order, PnS words)
_SPECIAL: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "DNA1": ((r"^(Ir)?191(Ir)?(Di|Dd)?$",), ("dna1", "191ir", "ir191")),
    "DNA2": ((r"^(Ir)?193(Ir)?(Di|Dd)?$",), ("dna2", "193ir", "ir193")),
    "Event_length": ((r"^Event[ _]?length$",), ("eventlength",)),
    "Cisplatin": (
        tuple(rf"^(Pt)?{m}(Pt)?(Di|Dd)?$" for m in (195, 194, 196, 198)),
        ("cisplatin",),
    ),
}
#: markers that only mouse panels carry (NK1.1 is absent from human; DX5 is anti-mouse CD49b)
_MOUSE_MARKERS = ("NK1.1", "Ly49", "DX5", "F4-80", "LD_CD19_F4-80", "CD3e")
_HUMAN_MARKERS = ("CD56", "HLA-DR", "CD57", "KIR2D", "NKp30", "NKp44", "NKp80")


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(text).lower())


@dataclass(frozen=True)
class PanelView:
    """What a batch's panel offers: channels, their markers and ``$PnS`` labels.

    Build one with :meth:`of`. The three tuples run in parallel, one entry per channel.

    Attributes
    ----------
    channels
        ``$PnN`` channel names.
    markers
        Each channel's marker (``""`` when it has none).
    labels
        Each channel's ``$PnS`` label (``""`` when unknown, e.g. a mapping was given).
    source
        Where the panel came from (a file or sample id), for messages.
    """

    channels: tuple[str, ...]
    markers: tuple[str, ...]
    labels: tuple[str, ...]
    source: str = ""

    @classmethod
    def of(cls, panel: Any, source: str = "") -> PanelView:
        """Build a view of a panel.

        ``panel`` is an AnnData (``var["marker"]``, ``var["pns"]``), a ``{channel: marker}``
        mapping, a DataFrame with ``channel``/``marker`` columns or a list of names.
        """
        if isinstance(panel, PanelView):
            return panel
        var = getattr(panel, "var", None)
        if var is not None and hasattr(panel, "var_names"):
            chans = tuple(str(c) for c in panel.var_names)
            marks = (
                tuple(str(m) for m in var["marker"].fillna(""))
                if "marker" in var.columns
                else ("",) * len(chans)
            )
            labels = (
                tuple(str(v) for v in var["pns"].fillna(""))
                if "pns" in var.columns
                else ("",) * len(chans)
            )
            if not source:
                info = nkflow_record(panel, "sample") or {}
                source = str(info.get("file") or info.get("sample_id") or "")
            return cls(chans, marks, labels, source)
        if hasattr(panel, "columns") and {"channel", "marker"} <= set(panel.columns):
            chans = tuple(str(c) for c in panel["channel"])
            marks = tuple(str(m) if isinstance(m, str) else "" for m in panel["marker"])
            return cls(chans, marks, ("",) * len(chans), source)
        if isinstance(panel, Mapping):
            chans = tuple(str(c) for c in panel)
            marks = tuple(str(v or "") for v in panel.values())
            return cls(chans, marks, ("",) * len(chans), source)
        if isinstance(panel, Iterable) and not isinstance(panel, str | bytes):
            names = tuple(str(p) for p in panel)
            return cls(names, names, ("",) * len(names), source)
        raise GatingTemplateError(
            f"panel {panel!r}; valid: an AnnData, a channel -> marker mapping or marker names"
        )

    @property
    def marker_names(self) -> list[str]:
        """The panel's markers (non-empty), in channel order."""
        return [m for m in dict.fromkeys(self.markers) if m]

    def find(self, name: str) -> str | None:
        """The name to use for ``name`` in this panel (a marker or a channel), or None."""
        if name in _SPECIAL:
            return self._special(name)
        canon = canonical_marker(name)
        same = marker_equivalents(canon) | {name}
        if any(m in same for m in self.markers):
            return name
        if name in self.channels:
            return name
        return None

    def _special(self, name: str) -> str | None:
        patterns, words = _SPECIAL[name]
        if name == "Cisplatin" and "Viability" in self.markers:
            return "Viability"
        for pat in patterns:
            rx = re.compile(pat, re.IGNORECASE)
            for ch, mk in zip(self.channels, self.markers, strict=True):
                if not rx.match(ch):
                    continue
                # a Pt channel carrying another stain (e.g. 198Pt_CD8) is not viability
                if name == "Cisplatin" and mk and mk != "Viability":
                    continue
                return ch
        for ch, lab in zip(self.channels, self.labels, strict=True):
            tokens = {_norm(t) for t in re.split(r"[\s_/,;:()]+", lab) if t}
            if tokens & set(words) or _norm(ch) in words:
                return ch
        return None

    def has_scatter(self) -> bool:
        """True when the panel has a forward or side scatter channel."""
        return any(_SCATTER.match(c) for c in self.channels)


def panel_technology(panel: Any) -> str:
    """``"cytof"`` for mass-cytometry data, else ``"flow"`` (the two hierarchies templates know).

    A container read by :func:`nkflow.read_fcs` carries its file's technology
    (``uns["nkflow"]["technology"]``, from keywords and channel names); otherwise the same
    rules (:func:`nkflow.io.detect_technology`) are applied to the panel's channel names
    and labels, without keywords.

    Parameters
    ----------
    panel
        Anything :meth:`PanelView.of` accepts.

    Returns
    -------
    str
    """
    record = nkflow_record(panel, "technology") or {}
    kind = record.get("kind") if isinstance(record, Mapping) else None
    if kind is None:
        view = PanelView.of(panel)
        kind = detect_io_technology({}, list(view.channels), list(view.labels)).kind
    return "cytof" if kind == "mass_cytometry" else "flow"


#: what tells each species (:func:`infer_species`'s rule), in words for messages
SPECIES_TELLS = "mouse: NK1.1, DX5, Ly49, F4/80; human: CD56, HLA-DR, CD57, KIR, NKp30/44/80"


def infer_species(markers: Iterable[str]) -> str | None:
    """Species told by the panel: ``"mouse"``, ``"human"`` or None (cannot tell).

    Mouse-only markers: NK1.1, DX5 (anti-mouse CD49b), Ly49, F4/80, the mouse ``CD3e``
    spelling. Human-only NK-panel markers: CD56, HLA-DR, CD57, KIRs, NKp30, NKp44, NKp80
    (mouse NK carry none of them). A panel with both kinds, or neither, gives None and the
    caller asks for the species (metadata ``species`` column).

    Parameters
    ----------
    markers
        Canonical marker names and/or raw ``$PnS`` labels.

    Returns
    -------
    str or None
        ``"mouse"`` or ``"human"`` when only that species' markers are present, else None.
    """
    told = species_markers(markers)
    if bool(told["mouse"]) == bool(told["human"]):
        return None
    return "mouse" if told["mouse"] else "human"


def species_markers(markers: Iterable[str]) -> dict[str, list[str]]:
    """The markers that tell each species (:func:`infer_species`'s evidence).

    Parameters
    ----------
    markers
        Canonical marker names and/or raw ``$PnS`` labels.

    Returns
    -------
    dict
        ``{"mouse": [...], "human": [...]}``: the canonical names of the markers only that
        species carries, each once, in the order given.
    """
    told: dict[str, list[str]] = {"mouse": [], "human": []}
    for m in markers:
        text = str(m)
        canon = canonical_marker(text)
        norm = _norm(text)
        # a dump channel's markers (F4/80: mouse), a combined channel's (CD16_CD56: human)
        held = (_parts(canon) or frozenset()) | set(canon.split("_"))
        if (
            canon in _MOUSE_MARKERS
            or held & set(_MOUSE_MARKERS)
            or norm.startswith("ly49")
            or norm in ("dx5", "nk11", "f480")
        ):
            species = "mouse"
        elif canon in _HUMAN_MARKERS or held & set(_HUMAN_MARKERS):
            species = "human"
        else:
            continue
        if canon not in told[species]:
            told[species].append(canon)
    return told


#: what a dump channel that names none of its markers ("Lineage", "Dump") is taken to hold:
#: the lineage cocktail of NK panels (T cells, monocytes, B cells)
_LINEAGE_COCKTAIL = frozenset({"CD3", "CD14", "CD19"})


def _parts(marker: str) -> frozenset[str] | None:
    """The markers a channel holds: ``LD_A_B`` is viability, A and B; ``Dump`` is unknown."""
    if marker == "Dump":
        return None
    for prefix, extra in (("LD_", {"Viability"}), ("Dump_", set())):
        if marker.startswith(prefix):
            return frozenset({*marker[len(prefix) :].split("_"), *extra})
    return frozenset({marker})


def dump_stand_in(marker: str, view: PanelView) -> tuple[str, str] | None:
    """A dump channel of the panel that holds every part of ``marker``, with a note.

    Negative on a dump channel (several markers, or a lineage cocktail) is negative on
    each marker it holds, so it can draw a negative condition on one of them: ``CD3-`` as
    ``Dump_CD14_CD19_CD3-`` (T cells, monocytes and B cells out: the NK panels' lineage
    gate). A dump channel that names none of its markers is taken to hold CD3, CD14 and
    CD19, and the note says so.

    Parameters
    ----------
    marker
        The condition's marker (a canonical name, or an ``LD_`` combination).
    view
        The panel.

    Returns
    -------
    tuple of str, or None
        The dump channel's marker name and the note for the plan; None when no dump
        channel holds ``marker``.
    """
    needed = _parts(marker) or frozenset({marker})
    for panel_marker in view.marker_names:
        if not panel_marker.startswith(("LD_", "Dump")):
            continue
        held = _parts(panel_marker)
        covers = held if held is not None else _LINEAGE_COCKTAIL
        if all(marker_equivalents(n) & covers for n in needed):
            if held is None:
                return panel_marker, (
                    f"{marker} -> {panel_marker} (a dump channel that names no markers, "
                    f"taken to hold {', '.join(sorted(_LINEAGE_COCKTAIL))}: name them in "
                    "the panel file if it holds others)"
                )
            return panel_marker, f"{marker} -> {panel_marker} (a dump channel that holds {marker})"
    return None


def combined_channel_note(marker: str) -> str | None:
    """What gating on a channel that holds two NK markers means, for the plan; else None.

    Clinical panels (BD Multitest TBNK and the like) put CD16 and CD56 in one channel
    (:data:`nkflow.io.panel.NK_COMBINED`): its positive cells are CD16+ or CD56+, the
    clinical NK definition within CD3- lymphocytes, and CD56bright and CD56dim NK cannot
    be told apart on it.
    """
    parts = set(marker.split("_"))
    if len(parts) < 2 or not parts <= NK_COMBINED:
        return None
    return (
        f"{marker} is one channel for {' and '.join(sorted(parts))}: NK are its positive "
        "CD3- cells (either marker); CD56bright and CD56dim need the two apart"
    )
