"""Resolve a gating template against a panel: template x panel x technology -> applied hierarchy.

A template is written for an ideal panel; real panels lack markers (no NKp46, no CD56), name
viability and dump as one channel or several, and mass cytometry has no scatter at all. A
gate can therefore offer ``alternatives`` (tables of keys that replace the gate's own, e.g.
``{ marker = "NK1.1" }`` for an NKp46 anchor, or DNA / event-length gates for CyTOF), a
condition can list ``any_of`` markers that stand in for it (``LD_CD14_CD19`` -> ``Viability``,
``CD14``, ``CD19`` on separate channels) or be ``optional``, a negative condition is drawn on
a dump channel that holds its marker (``CD3-`` on ``CD3/CD14/CD19``), and a gate marked ``bypass``
is left out (its children hang on its parent) when the panel cannot draw it -- scatter gates
on files exported pre-gated without scatter.

:func:`resolve_template` decides all of that once, before any sample is read, and says what
it decided: the gates kept as written, each substitution, each skipped gate with its reason
and the populations that can therefore not be reported. It stops only when the NK anchor
gate cannot be drawn at all, naming what the panel has and what would be needed.

Special names a template may use for mass-cytometry channels (found by isotope channel name,
``$PnN`` or ``$PnS``): ``DNA1`` (Ir191), ``DNA2`` (Ir193), ``Event_length`` and
``Cisplatin`` (Pt195, Pt194, Pt196 or Pt198 without another stain).
"""

from __future__ import annotations

import hashlib
import json
import logging
import textwrap
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..exceptions import GatingTemplateError
from .panel_view import (
    SPECIES_TELLS,
    PanelView,
    combined_channel_note,
    dump_stand_in,
    infer_species,
    panel_technology,
    species_markers,
)
from .template import DimSpec, GateSpec, Template, load_template, shared_cut_conflicts

__all__ = [
    "PanelView",
    "ResolvedTemplate",
    "infer_species",
    "panel_technology",
    "resolve_template",
]

logger = logging.getLogger(__name__)


@dataclass
class ResolvedTemplate:
    """A template applied to one panel: what is gated, substituted, skipped and not reported.

    Attributes
    ----------
    template
        The applied hierarchy (a :class:`Template` without alternatives; pass it to
        :func:`nkflow.gating.gate`).
    source
        The template as written.
    technology
        ``"flow"`` or ``"cytof"``.
    kept
        Gates applied as written.
    substitutions
        ``{"gate", "template", "applied", "reason"}`` per gate drawn differently.
    skipped
        ``(gate, reason)`` per gate left out (bypassed or not drawable).
    unreportable
        Populations the panel cannot give (skipped gates and everything below them).
    panel
        The panel's markers.
    descriptions
        Gate -> its template ``description``, for the gates it still describes as applied:
        drawn as written or by an alternative with a description of its own, none of its
        conditions dropped (a "CD45-bright" gate drawn without CD45 loses it).
    """

    template: Template
    source: Template
    technology: str
    kept: list[str] = field(default_factory=list)
    substitutions: list[dict[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    unreportable: list[str] = field(default_factory=list)
    panel: list[str] = field(default_factory=list)
    descriptions: dict[str, str] = field(default_factory=dict)

    @property
    def skipped_populations(self) -> dict[str, str]:
        """``{population: reason}`` for every population the panel cannot give."""
        reason = dict(self.skipped)
        out = {}
        for g in self.source.gates:
            for p in g.populations:
                if p in self.unreportable:
                    out[p] = reason.get(g.id, "not gated")
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-able record for provenance."""
        return {
            "template": self.source.name,
            "template_hash": self.source.hash,
            "applied_hash": self.template.hash,
            "technology": self.technology,
            "anchor": self.template.anchor,
            "kept": list(self.kept),
            "substitutions": [dict(s) for s in self.substitutions],
            "skipped": [{"gate": g, "reason": r} for g, r in self.skipped],
            "unreportable": list(self.unreportable),
            "panel": list(self.panel),
        }

    def lineage(self) -> list[dict[str, str]]:
        """The gates from the root down to the NK anchor gate, as applied to the panel.

        Each ``{"gate", "applied", "description"}``: the gate id, its definition on the
        panel's markers (``"Pt195Di- & CD45+"``) and what it does (:attr:`descriptions`,
        ``""`` when none applies), so a reader learns what a parent such as ``Live``
        holds before reading its share.
        """
        tpl = self.template
        by_pop = {p: g for g in tpl.gates for p in g.populations}
        chain: list[GateSpec] = []
        name: str | None = tpl.anchor_gate
        while name in by_pop and len(chain) < len(tpl.gates):
            chain.append(by_pop[name])
            name = by_pop[name].parent
        return [
            {"gate": g.id, "applied": _describe(g), "description": self.descriptions.get(g.id, "")}
            for g in reversed(chain)
        ]

    def to_text(self) -> str:
        """Human-readable statement of the hierarchy that will be applied."""
        tpl = self.template
        lines = [
            f"template {self.source.name!r} resolved for a {self.technology} panel "
            f"(NK anchor: {tpl.anchor or '?'})",
            "hierarchy applied:",
        ]
        children: dict[str | None, list[GateSpec]] = {}
        for g in tpl.gates:
            children.setdefault(g.parent, []).append(g)

        def walk(parent: str | None, depth: int) -> None:
            for g in children.get(parent, []):
                lines.append("  " * (depth + 1) + f"{' / '.join(g.populations)}  [{_describe(g)}]")
                for p in g.populations:
                    walk(p, depth + 1)

        walk(None, 0)
        if self.substitutions:
            lines.append("substitutions:")
            lines += [
                f"  {s['gate']}: {s['template']} -> {s['applied']} ({s['reason']})"
                for s in self.substitutions
            ]
        if self.skipped:
            lines.append("skipped:")
            lines += [f"  {g}: {r}" for g, r in self.skipped]
        if self.unreportable:
            lines += textwrap.wrap(
                "not reportable with this panel: " + ", ".join(self.unreportable),
                width=100,
                subsequent_indent="  ",
                break_on_hyphens=False,
            )
        return "\n".join(lines)


def _describe(g: GateSpec) -> str:
    if g.kind == "polygon":
        return f"{g.method} on {g.x} x {g.y}"
    if g.kind == "boolean":
        return f"{g.op}({', '.join(g.operands)})"
    if g.kind == "quadrant":
        return f"quadrant {g.dims[0].marker} x {g.dims[1].marker}"
    return " & ".join(f"{d.marker}{'+' if d.side == 'pos' else '-'}" for d in g.dims)


def _needs(g: GateSpec) -> str:
    if g.kind == "polygon":
        return f"{g.x} and {g.y}"
    if g.kind == "boolean":
        return ", ".join(g.operands)
    parts = []
    for d in g.dims:
        alts = [d.marker, *d.any_of]
        parts.append(" or ".join(alts) + (" (optional)" if d.optional else ""))
    return " and ".join(parts)


class _Unfit(Exception):
    def __init__(self, missing: str) -> None:
        super().__init__(missing)
        self.missing = missing


def _fit_dims(g: GateSpec, view: PanelView, ref: Any, notes: list[str]) -> tuple[DimSpec, ...]:
    out: list[DimSpec] = []
    for d in g.dims:
        on = ref(d.on) if d.on else None
        hit = view.find(d.marker)
        if hit is not None:
            if hit != d.marker:
                notes.append(f"{d.marker} = {hit}")
            if (combined := combined_channel_note(hit)) is not None:
                notes.append(combined)
            out.append(replace(d, marker=hit, on=on, any_of=()))
            continue
        subs = [(a, view.find(a)) for a in d.any_of]
        seen: set[str] = set()
        subs = [(a, h) for a, h in subs if h is not None and not (h in seen or seen.add(h))]
        if g.kind == "quadrant":
            subs = subs[:1]
        dump = dump_stand_in(d.marker, view) if not subs and d.side == "neg" else None
        if subs:
            names = ", ".join(h if a == h else f"{a} ({h})" for a, h in subs)
            notes.append(f"{d.marker} -> {names}")
            out += [replace(d, marker=h, on=on, any_of=()) for _, h in subs]
        elif dump is not None:
            notes.append(dump[1])
            out.append(replace(d, marker=dump[0], on=on, any_of=()))
        elif d.optional:
            notes.append(f"{d.marker} condition dropped (not in panel)")
        else:
            raise _Unfit(" or ".join([d.marker, *d.any_of]))
    return tuple(out)


def _fit(g: GateSpec, view: PanelView, ref: Any, dropped: set[str]) -> tuple[GateSpec, list[str]]:
    """The gate drawn with this panel's names, or :class:`_Unfit` naming what is missing."""
    notes: list[str] = []
    parent = ref(g.parent) if g.parent else None
    if g.kind == "polygon":
        x, y = view.find(g.x), view.find(g.y)
        if x is None or y is None:
            raise _Unfit(" and ".join(a for a, h in ((g.x, x), (g.y, y)) if h is None))
        for a, h in ((g.x, x), (g.y, y)):
            if a != h:
                notes.append(f"{a} = {h}")
        return replace(g, parent=parent, x=x, y=y, alternatives=()), notes
    if g.kind in ("threshold", "rectangle", "quadrant"):
        dims = _fit_dims(g, view, ref, notes)
        if not dims:
            raise _Unfit("every condition (" + _needs(g) + ")")
        kind = g.kind
        if kind == "threshold" and len(dims) > 1:
            kind = "rectangle"
        return replace(g, kind=kind, parent=parent, dims=dims, alternatives=()), notes

    def operands(ops: tuple[str, ...]) -> tuple[str, ...]:
        keep = []
        for o in ops:
            name = o.lstrip("!")
            if name in dropped or ref(name) is None:
                if g.op != "or":
                    raise _Unfit(f"population {name}")
                notes.append(f"operand {name} dropped (not gated)")
                continue
            keep.append(("!" if o.startswith("!") else "") + str(ref(name)))
        if not keep:
            raise _Unfit("any of " + ", ".join(ops))
        return tuple(keep)

    ops = operands(g.operands)
    by_tissue = {t: operands(v) for t, v in g.by_tissue.items()}
    return replace(g, parent=parent, operands=ops, by_tissue=by_tissue, alternatives=()), notes


def _order(tpl: Template) -> list[GateSpec]:
    by_pop = {p: g for g in tpl.gates for p in g.populations}
    out: list[GateSpec] = []
    seen: set[str] = set()

    def visit(g: GateSpec) -> None:
        if g.id in seen:
            return
        seen.add(g.id)
        deps = [g.parent] if g.parent else []
        for v in (g, *g.alternatives):
            deps += [d.on for d in v.dims if d.on]
            deps += [o.lstrip("!") for o in v.operands]
            deps += [o.lstrip("!") for ops in v.by_tissue.values() for o in ops]
        for d in deps:
            if d in by_pop:
                visit(by_pop[d])
        out.append(g)

    for g in tpl.gates:
        visit(g)
    return out


def _require_species(tpl: Template, view: PanelView) -> None:
    """Refuse a template of one species on a panel whose markers only the other carries.

    The species decides the gates (NK1.1 or CD56), and how AREG is read (reported in human
    NK, exploratory in mouse): a human tube gated with the mouse template was scored as
    mouse without a word.
    """
    told = species_markers(view.marker_names)
    species = infer_species(view.marker_names)
    if not tpl.species or species is None or species == tpl.species:
        return
    raise GatingTemplateError(
        f"template {tpl.name!r} is for {tpl.species}, but the panel's markers "
        f"({', '.join(told[species])}) are {species}-only ({SPECIES_TELLS}); choose a "
        f"{species} template (`nkflow templates` lists them) or correct the panel"
    )


def resolve_template(
    template: str | Path | Template,
    panel: Any,
    technology: str | None = None,
) -> ResolvedTemplate:
    """Resolve a template against a panel: the hierarchy this panel supports.

    Parameters
    ----------
    template
        Shipped template name, TOML path or loaded :class:`Template`.
    panel
        The batch's panel: an AnnData (``var["marker"]``, ``var["pns"]``), a
        ``{channel: marker}`` mapping, a DataFrame with ``channel`` and ``marker`` columns, or
        a list of marker and channel names.
    technology
        ``"flow"`` or ``"cytof"``; None detects it from the channel names.

    Returns
    -------
    ResolvedTemplate

    Raises
    ------
    GatingTemplateError
        The panel cannot draw the NK anchor gate (``[template] anchor_gate``, default ``NK``)
        by any of its alternatives; the message names what the panel has, what would be
        needed and the hierarchy that could be applied (also in ``err.resolution``). Or a
        marker of the manifest's ``required_markers`` is neither in the panel nor stood in
        for by an alternative of a gate written on it (named, with the same attachments).
    """
    tpl = load_template(template)
    view = PanelView.of(panel)
    tech = technology or panel_technology(panel)
    if tech not in ("flow", "cytof"):
        raise GatingTemplateError(f"technology {technology!r}; valid: flow, cytof")
    _require_species(tpl, view)
    redirect: dict[str, str] = {}
    dropped: set[str] = set()
    root_cause: dict[str, str] = {}  # gate -> why it (or the ancestor it hangs on) is out
    reroot: set[str] = set()  # root gates left out: their children become roots
    res = ResolvedTemplate(template=tpl, source=tpl, technology=tech, panel=view.marker_names)
    applied: list[GateSpec] = []
    anchor_needs: list[str] = []
    anchor_reason = ""

    def ref(name: str) -> str | None:
        while name in redirect:
            name = redirect[name]
        return None if name in reroot else name

    for spec in _order(tpl):
        candidates = [
            c for c in (spec, *spec.alternatives) if not c.technology or tech in c.technology
        ]
        if tpl.anchor_gate in spec.populations:
            anchor_needs = [_needs(c) for c in candidates]
        if spec.parent and spec.parent in dropped:
            dropped.update(spec.populations)
            why = f"parent {spec.parent!r} is not gated"
            res.skipped.append((spec.id, why))
            root_cause[spec.id] = root_cause.get(spec.parent, why)
            if tpl.anchor_gate in spec.populations:
                anchor_reason = f"{why}: {root_cause[spec.id]}"
            continue
        missing: list[str] = []
        chosen = None
        for cand in candidates:
            try:
                fitted, notes = _fit(cand, view, ref, dropped)
            except _Unfit as err:
                missing.append(err.missing)
                continue
            chosen = (cand, fitted, notes)
            break
        if chosen is None:
            lacks = "; ".join(dict.fromkeys(missing)) or f"no variant for {tech}"
            if spec.bypass:
                parent = ref(spec.parent) if spec.parent else None
                for p in spec.populations:
                    if parent is not None:
                        redirect[p] = parent
                if parent is None:
                    dropped.difference_update(spec.populations)
                    reroot.update(spec.populations)
                res.skipped.append(
                    (spec.id, f"panel lacks {lacks}; left out (events taken as already gated)")
                )
            else:
                dropped.update(spec.populations)
                res.skipped.append((spec.id, f"panel lacks {lacks}"))
                root_cause[spec.id] = f"gate {spec.id!r} needs {lacks}"
                if tpl.anchor_gate in spec.populations:
                    anchor_reason = f"panel lacks {lacks}"
            continue
        cand, fitted, notes = chosen
        written_for = cand is spec or cand.description != spec.description
        if fitted.description and written_for and len(fitted.dims) == len(cand.dims):
            res.descriptions[spec.id] = fitted.description
        if cand is spec and not notes:
            res.kept.append(spec.id)
        else:
            if cand is spec:
                reason = "; ".join(notes)
            else:
                why = [f"panel lacks {'; '.join(dict.fromkeys(missing))}"] if missing else []
                if spec.technology and tech not in spec.technology:
                    why = [f"the written gate is for {'/'.join(spec.technology)} data"]
                reason = "; ".join([*why, *notes])
            res.substitutions.append(
                {
                    "gate": spec.id,
                    "template": _describe(spec),
                    "applied": _describe(fitted),
                    "reason": reason,
                }
            )
        applied.append(fitted)
    if conflicts := shared_cut_conflicts(applied):  # substitutions can bring them in
        raise GatingTemplateError(
            f"{view.source or 'panel'}: template {tpl.name!r} as resolved for this panel: "
            + "; ".join(conflicts)
        )
    reportable = {p for g in applied for p in g.populations}
    res.unreportable = [p for p in tpl.populations if p not in reportable]
    res.template = _applied_template(tpl, applied, res)
    if tpl.anchor_gate not in reportable and tpl.anchor_gate in tpl.populations:
        needs = " | ".join(dict.fromkeys(anchor_needs)) or "?"
        err = GatingTemplateError(
            f"{view.source or 'panel'}: no NK anchor for template {tpl.name!r} "
            f"({anchor_reason or 'not drawable'}): gate {tpl.anchor_gate!r} needs {needs} "
            f"({tech}); the panel has {', '.join(view.marker_names) or 'no named markers'}. "
            f"What this panel supports:\n{res.to_text()}"
        )
        err.resolution = res  # type: ignore[attr-defined]
        raise err
    if lacking := _missing_required(tpl, view, {g.id for g in applied}):
        err = GatingTemplateError(
            f"{view.source or 'panel'}: template {tpl.name!r} requires "
            f"{', '.join(lacking)} ([manifest] required_markers), which the panel lacks and "
            "no gate of the template stands in for; the panel has "
            f"{', '.join(view.marker_names) or 'no named markers'} (label the channels or "
            f"give a panel file). What this panel supports:\n{res.to_text()}"
        )
        err.resolution = res  # type: ignore[attr-defined]
        raise err
    for sub in res.substitutions:
        logger.info("template %s: %s: %s -> %s (%s)", tpl.name, *sub.values())
    for gid, why in res.skipped:
        logger.info("template %s: gate %s skipped: %s", tpl.name, gid, why)
    return res


def _written_markers(g: GateSpec) -> set[str]:
    """Every marker or channel name a gate is written on (its own keys, not alternatives)."""
    if g.kind == "polygon":
        return {g.x, g.y}
    return {name for d in g.dims for name in (d.marker, *d.any_of)}


def _missing_required(tpl: Template, view: PanelView, applied: set[str]) -> list[str]:
    """The manifest's required markers that neither the panel nor a stand-in provides.

    A required marker is provided when the panel carries it, or when a gate written on it
    was drawn anyway (by one of its alternatives: an NKp46 anchor for CD56, a dump channel
    for CD3-). A required marker whose gates are all left out, or that no gate uses, is
    missing: the template's author said the analysis needs it.
    """
    missing = []
    for marker in tpl.required_markers:
        if view.find(marker) is not None:
            continue
        if any(g.id in applied and marker in _written_markers(g) for g in tpl.gates):
            continue
        missing.append(marker)
    return missing


def _applied_template(tpl: Template, gates: list[GateSpec], res: ResolvedTemplate) -> Template:
    used = [
        m
        for g in gates
        for m in ([d.marker for d in g.dims] if g.kind != "polygon" else [g.x, g.y])
    ]
    pops = {p for g in gates for p in g.populations}
    anchor = tpl.anchor
    for g in gates:
        if tpl.anchor_gate in g.populations and g.dims:
            anchor = next((d.marker for d in g.dims if d.side == "pos"), g.dims[-1].marker)
    blob = json.dumps(
        {"source": tpl.hash, "technology": res.technology, "gates": [repr(g) for g in gates]},
        sort_keys=True,
    )
    return replace(
        tpl,
        anchor=anchor,
        required_markers=tuple(dict.fromkeys(used)),
        terminal_populations=tuple(p for p in tpl.terminal_populations if p in pops),
        gates=tuple(gates),
        hash=hashlib.sha256(blob.encode()).hexdigest(),
    )
