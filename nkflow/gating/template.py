"""Gating templates: TOML files analysts can copy and edit, loaded and validated here.

A template (see ``gating/human_blood.toml`` for a commented example) has

``[template]``
    ``name``, ``version``, ``species`` (``human`` | ``mouse``), ``description``, ``anchor``,
    ``anchor_gate`` (the NK gate, default ``"NK"``: a panel that cannot draw it is refused),
    ``technology`` (``flow`` | ``cytof`` | ``any``, the data it was written for).
``[manifest]``
    ``required_markers``, ``optional_markers``, ``terminal_populations``, ``min_events``.
    A panel that lacks a required marker, with no gate written on it drawn by an
    alternative instead, is refused (:func:`nkflow.gating.resolve_template`); without an
    optional one, the gates that need it are skipped.
``[defaults]``
    ``fmo_percentile`` (99.5), ``bootstrap`` (200), ``fmo_fallback`` (``valley``: a missing
    FMO falls back to the density valley, or to ``mirror`` when the marker is unimodal).
``[[gates]]``
    One table per gate, in any order. Keys: ``id`` (the population name), ``parent``
    (``""`` for the root), ``kind`` and the kind's own keys:

    - ``polygon`` with ``rule = "density"`` and ``method`` one of ``debris`` (FSC valley),
      ``singlets`` (FSC-A/FSC-H ratio band), ``lymphocytes`` (low-SSC scatter cluster);
      or ``upper_cluster`` (the higher-``x`` cluster of a 2-component mixture, e.g. CD56bright
      in CD56 x NKp46); axes ``x`` and ``y`` (scatter channels or markers); ``params``.
    - ``threshold``: one marker, ``side`` (``pos`` | ``neg``) and a threshold rule.
    - ``rectangle``: ``dims``, a list of inline tables, each like a threshold.
    - ``quadrant``: ``x`` and ``y`` inline tables (marker + rule) and ``quadrants``, a table
      population name -> ``"+-"`` (x sign then y sign); one rectangle per quadrant.
    - ``boolean``: ``op`` (``and`` | ``or`` | ``not``) and ``operands`` (gate ids; prefix
      ``!`` to complement); ``by_tissue`` maps a tissue name to other operands.

    Threshold keys: ``marker``, ``side``, ``rule`` (``valley`` | ``gmm`` | ``fmo`` | ``mirror`` |
    ``quantile`` | ``fixed``), ``value`` (fixed), ``percentile``, ``on`` (gate whose events
    set the threshold; default the parent), ``unimodal`` (``negative`` | ``positive``),
    ``min_prominence``, ``bw_adjust``, ``between`` (valley between ``top2`` peaks, the
    ``first_two`` or ``below_main``), ``stim`` (``keep`` | ``drop``: drop this condition in
    stimulated tubes, e.g. CD16, which PMA sheds), ``pool`` (true: the positive population
    can dominate a sample, so without a control the threshold is the valley of the marker
    pooled over the batch, :mod:`nkflow.gating.negative`), ``reference`` (a gate whose cells
    are known to be negative for the marker in the same tube: the next evidence after the
    batch pool).

    Gate-level ``stim = "skip"`` leaves the gate out of stimulated tubes (residency: it comes
    from the paired unstimulated tube) and ``optional = true`` marks a gate whose markers
    panels often lack.

Panel adaptivity (applied by :func:`nkflow.gating.resolve_template` before any sample):

- ``alternatives``: a list of tables, each overriding keys of the gate (not ``id`` or
  ``parent``; a new ``kind`` drops the old kind's keys), tried in order when the panel
  cannot draw the gate as written, e.g. ``[{ marker = "NK1.1" }, { marker = "CD49b" }]``.
- ``technology = "flow"`` (or ``"cytof"``) on a gate or an alternative: only for that data.
- ``bypass = true``: when no variant can be drawn the gate is left out and its children
  hang on its parent (scatter gates on files exported pre-gated without scatter).
- Conditions: ``any_of = [...]`` markers that stand in for a missing one (each becomes its
  own condition, e.g. a combined viability/dump channel or a separate viability dye) and
  ``optional = true`` (dropped when neither it nor a stand-in is in the panel).

Special names for mass-cytometry channels: ``DNA1``, ``DNA2``, ``Event_length``,
``Cisplatin`` (see :mod:`nkflow.gating.resolve`).
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..exceptions import GatingTemplateError
from .depgraph import DependencyCycle, dependency_order
from .template_spec import (
    DENSITY_METHODS,
    FALLBACK_RULES,
    KINDS,
    OPS,
    RULES,
    SIDES,
    SPECIES,
    TECHNOLOGIES,
    DimSpec,
    GateSpec,
    Template,
    shared_cut_conflicts,
)
from .xml_kind import refuse_gating_document

__all__ = [
    "DimSpec",
    "GateSpec",
    "Template",
    "list_templates",
    "load_template",
    "template_dir",
    "template_hash",
    "validate_template",
]

_DIM_KEYS = {
    "marker",
    "side",
    "rule",
    "value",
    "percentile",
    "on",
    "unimodal",
    "min_prominence",
    "bw_adjust",
    "stim",
    "between",
    "fallback",
    "any_of",
    "optional",
    "pool",
    "reference",
}
_GATE_KEYS = {
    "id",
    "parent",
    "kind",
    "rule",
    "method",
    "x",
    "y",
    "params",
    "marker",
    "side",
    "value",
    "percentile",
    "on",
    "unimodal",
    "min_prominence",
    "bw_adjust",
    "between",
    "fallback",
    "dims",
    "quadrants",
    "op",
    "operands",
    "by_tissue",
    "stim",
    "optional",
    "description",
    "alternatives",
    "bypass",
    "technology",
    "pool",
    "reference",
}


def template_dir() -> Path:
    """Folder of the shipped templates: ``nkflow/_templates`` (wheel) or ``gating/`` (checkout)."""
    here = Path(__file__).resolve()
    for cand in (here.parents[1] / "_templates", here.parents[2] / "gating"):
        if (cand / "manifest.toml").is_file():
            return cand
    raise GatingTemplateError(f"no template folder found beside {here.parents[1]}")


def _index() -> dict[str, dict[str, Any]]:
    path = template_dir() / "manifest.toml"
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    return dict(data.get("templates", {}))


def list_templates() -> list[dict[str, Any]]:
    """The shipped templates: name, version, species, file, description.

    Returns
    -------
    list of dict
        One dict per template of the shipped ``manifest.toml``, in its order; ``file`` is
        relative to the template folder.
    """
    return [{"name": k, **v} for k, v in _index().items()]


def _canonical_hash(raw: Mapping[str, Any]) -> str:
    blob = json.dumps(raw, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def template_hash(template: Template | str | Path) -> str:
    """SHA-256 of a template's parsed content (comments and layout do not change it).

    Parameters
    ----------
    template
        A loaded template, a shipped template name or a TOML path.

    Returns
    -------
    str
        64 hex digits, as recorded in ``uns["nkflow"]["gating"]["template_hash"]``.

    Raises
    ------
    GatingTemplateError
        The template cannot be found or is not valid (:func:`load_template`).
    """
    if isinstance(template, Template):
        return template.hash
    return load_template(template).hash


def _err(path: str, where: str, msg: str) -> GatingTemplateError:
    return GatingTemplateError(f"{path}: {where}: {msg}")


def _choice(path: str, where: str, key: str, value: Any, valid: tuple[str, ...]) -> str:
    if value not in valid:
        raise _err(path, where, f"{key} = {value!r}; valid: {', '.join(valid)}")
    return str(value)


def _number(path: str, where: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _err(path, where, f"{key} = {value!r}; valid: a number")
    return float(value)


def _dim(path: str, where: str, raw: Any, *, need_side: bool = True) -> DimSpec:
    if not isinstance(raw, Mapping):
        raise _err(path, where, f"threshold {raw!r}; valid: a table with marker, side, rule")
    unknown = set(raw) - _DIM_KEYS
    if unknown:
        raise _err(path, where, f"unknown key(s) {sorted(unknown)}; valid: {sorted(_DIM_KEYS)}")
    marker = raw.get("marker")
    if not isinstance(marker, str) or not marker:
        raise _err(path, where, f"marker = {marker!r}; valid: a marker name such as 'CD56'")
    rule = _choice(path, where, "rule", raw.get("rule", "valley"), RULES)
    side = raw.get("side", "pos")
    if need_side:
        side = _choice(path, where, "side", side, SIDES)
    value = raw.get("value")
    if rule == "fixed":
        if value is None:
            raise _err(path, where, "rule = 'fixed' needs value = <number>")
        value = _number(path, where, "value", value)
    pct = raw.get("percentile")
    if pct is not None:
        pct = _number(path, where, "percentile", pct)
        if not 0 < pct < 100:
            raise _err(path, where, f"percentile = {pct!r}; valid: 0 < percentile < 100")
    return DimSpec(
        marker=marker,
        side=side,
        rule=rule,
        value=value,
        percentile=pct,
        on=raw.get("on") or None,
        unimodal=_choice(
            path, where, "unimodal", raw.get("unimodal", "negative"), ("negative", "positive")
        ),
        min_prominence=_number(path, where, "min_prominence", raw.get("min_prominence", 0.02)),
        bw_adjust=_number(path, where, "bw_adjust", raw.get("bw_adjust", 1.0)),
        stim=_choice(path, where, "stim", raw.get("stim", "keep"), ("keep", "drop")),
        between=_choice(
            path, where, "between", raw.get("between", "top2"), ("top2", "first_two", "below_main")
        ),
        fallback=(
            _choice(path, where, "fallback", raw["fallback"], FALLBACK_RULES)
            if "fallback" in raw
            else None
        ),
        any_of=_names(path, where, "any_of", raw.get("any_of", [])),
        optional=bool(raw.get("optional", False)),
        pool=_flag(path, where, "pool", raw.get("pool", False)),
        reference=_reference(path, where, raw.get("reference")),
    )


def _flag(path: str, where: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _err(path, where, f"{key} = {value!r}; valid: true or false")
    return value


def _reference(path: str, where: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _err(path, where, f"reference = {value!r}; valid: the id of a gate (population)")
    return value


def _names(path: str, where: str, key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _err(path, where, f"{key} = {value!r}; valid: a list of names")
    return tuple(value)


def _gate(path: str, i: int, raw: Any) -> GateSpec:
    """One gate and its ``alternatives`` (each a table of keys that override the gate's)."""
    if not isinstance(raw, Mapping):
        raise _err(path, f"gates[{i}]", "each [[gates]] entry must be a table")
    alts_raw = raw.get("alternatives", [])
    base = {k: v for k, v in raw.items() if k != "alternatives"}
    spec = _one_gate(path, i, base)
    if not isinstance(alts_raw, list) or not all(isinstance(a, Mapping) for a in alts_raw):
        raise _err(
            path, f"gate {spec.id!r}", f"alternatives = {alts_raw!r}; valid: a list of tables"
        )
    alts = []
    for j, alt in enumerate(alts_raw):
        bad = {"id", "parent", "alternatives"} & set(alt)
        if bad:
            raise _err(
                path,
                f"gate {spec.id!r} alternatives[{j}]",
                f"cannot change {sorted(bad)}; an alternative replaces how the gate is drawn",
            )
        merged = dict(base)
        if "kind" in alt:  # a new kind: drop the old kind's own keys
            merged = {k: v for k, v in base.items() if k in _COMMON_KEYS}
        merged.update(alt)
        a = _one_gate(path, i, merged)
        if a.populations != spec.populations:
            raise _err(
                path,
                f"gate {spec.id!r} alternatives[{j}]",
                f"produces {a.populations}, not {spec.populations}",
            )
        alts.append(a)
    return replace(spec, alternatives=tuple(alts))


_COMMON_KEYS = {"id", "parent", "stim", "optional", "description", "bypass", "technology"}


def _one_gate(path: str, i: int, raw: Any) -> GateSpec:
    gid = raw.get("id")
    if not isinstance(gid, str) or not gid:
        raise _err(path, f"gates[{i}]", f"id = {gid!r}; valid: a population name")
    where = f"gate {gid!r}"
    unknown = set(raw) - _GATE_KEYS
    if unknown:
        raise _err(path, where, f"unknown key(s) {sorted(unknown)}; valid: {sorted(_GATE_KEYS)}")
    kind = _choice(path, where, "kind", raw.get("kind"), KINDS)
    parent = raw.get("parent") or None
    common: dict[str, Any] = {
        "id": gid,
        "parent": parent,
        "kind": kind,
        "stim": _choice(path, where, "stim", raw.get("stim", "keep"), ("keep", "skip")),
        "optional": bool(raw.get("optional", False)),
        "description": str(raw.get("description", "")),
        "bypass": bool(raw.get("bypass", False)),
        "technology": tuple(
            _choice(path, where, "technology", t, TECHNOLOGIES)
            for t in _names(path, where, "technology", raw.get("technology", []))
        ),
    }
    if kind == "polygon":
        _choice(path, where, "rule", raw.get("rule", "density"), ("density",))
        method = _choice(path, where, "method", raw.get("method"), DENSITY_METHODS)
        for ax in ("x", "y"):
            if not isinstance(raw.get(ax), str) or not raw.get(ax):
                raise _err(path, where, f"{ax} = {raw.get(ax)!r}; valid: a channel or marker")
        params = raw.get("params", {})
        if not isinstance(params, Mapping):
            raise _err(path, where, f"params = {params!r}; valid: a table")
        return GateSpec(
            **common, rule="density", method=method, x=raw["x"], y=raw["y"], params=dict(params)
        )
    if kind == "threshold":
        dim_raw = {k: raw[k] for k in _DIM_KEYS - {"stim", "optional"} if k in raw}
        return GateSpec(**common, dims=(_dim(path, where, dim_raw),))
    if kind == "rectangle":
        dims = raw.get("dims")
        if not isinstance(dims, list) or not dims:
            raise _err(path, where, f"dims = {dims!r}; valid: a list of threshold tables")
        return GateSpec(**common, dims=tuple(_dim(path, where, d) for d in dims))
    if kind == "quadrant":
        x = _dim(path, where + " x", raw.get("x"), need_side=False)
        y = _dim(path, where + " y", raw.get("y"), need_side=False)
        quads = raw.get("quadrants")
        if not isinstance(quads, Mapping) or not quads:
            raise _err(path, where, f"quadrants = {quads!r}; valid: name = '+-' table")
        valid = ("++", "+-", "-+", "--")
        for name, signs in quads.items():
            _choice(path, where, f"quadrants.{name}", signs, valid)
        return GateSpec(**common, dims=(x, y), quadrants=dict(quads))
    # boolean
    op = _choice(path, where, "op", raw.get("op"), OPS)
    ops = raw.get("operands")
    if not isinstance(ops, list) or not ops or not all(isinstance(o, str) for o in ops):
        raise _err(path, where, f"operands = {ops!r}; valid: a list of gate ids")
    if op == "not" and len(ops) != 1:
        raise _err(path, where, f"op = 'not' takes one operand, got {ops!r}")
    by_tissue = raw.get("by_tissue", {})
    if not isinstance(by_tissue, Mapping):
        raise _err(path, where, f"by_tissue = {by_tissue!r}; valid: tissue = [gate ids]")
    return GateSpec(
        **common,
        op=op,
        operands=tuple(ops),
        by_tissue={str(k): tuple(v) for k, v in by_tissue.items()},
    )


def _check_graph(path: str, gates: list[GateSpec]) -> None:
    names: dict[str, str] = {}
    for g in gates:
        for p in g.populations:
            if p in names:
                raise _err(path, f"gate {g.id!r}", f"population {p!r} is defined twice")
            names[p] = g.id
    valid = ", ".join(names)
    for g in [v for g0 in gates for v in (g0, *g0.alternatives)]:
        refs = [("parent", g.parent)] if g.parent else []
        refs += [("on", d.on) for d in g.dims if d.on]
        refs += [("reference", d.reference) for d in g.dims if d.reference]
        refs += [("operands", o.lstrip("!")) for o in g.operands]
        refs += [("by_tissue", o.lstrip("!")) for v in g.by_tissue.values() for o in v]
        for key, ref in refs:
            if ref not in names:
                raise _err(path, f"gate {g.id!r}", f"{key} = {ref!r} is not a gate; valid: {valid}")
        if g.kind == "quadrant" and g.parent is None:
            raise _err(path, f"gate {g.id!r}", "a quadrant gate needs a parent")
    # cycles through parents and operands
    deps = {
        p: [g.parent] * bool(g.parent) + [o.lstrip("!") for o in g.operands]
        for g in gates
        for p in g.populations
    }
    try:
        dependency_order(deps)
    except DependencyCycle as exc:
        raise _err(path, f"gate {exc.chain[-1]!r}", f"cycle {exc}") from None


def _parse(raw: Mapping[str, Any], path: str) -> Template:
    head = raw.get("template")
    if not isinstance(head, Mapping):
        raise _err(path, "[template]", "missing table; valid keys: name, version, species")
    name = head.get("name")
    if not isinstance(name, str) or not name:
        raise _err(path, "[template]", f"name = {name!r}; valid: a non-empty string")
    species = _choice(path, "[template]", "species", head.get("species"), SPECIES)
    man = raw.get("manifest", {})
    if not isinstance(man, Mapping):
        raise _err(path, "[manifest]", "must be a table")
    defaults = raw.get("defaults", {})
    gates_raw = raw.get("gates")
    if not isinstance(gates_raw, list) or not gates_raw:
        raise _err(path, "[[gates]]", "no gates; valid: one [[gates]] table per gate")
    gates = [_gate(path, i, g) for i, g in enumerate(gates_raw)]
    _check_graph(path, gates)
    if conflicts := shared_cut_conflicts(gates):
        raise _err(path, "gates", "; ".join(conflicts))
    pops = {p for g in gates for p in g.populations}
    terminal = tuple(man.get("terminal_populations", ()))
    for t in terminal:
        if t not in pops:
            raise _err(
                path,
                "[manifest]",
                f"terminal population {t!r} is not a gate; valid: {', '.join(sorted(pops))}",
            )
    anchor_gate = str(head.get("anchor_gate", "NK"))
    if "anchor_gate" in head and anchor_gate not in pops:
        raise _err(
            path,
            "[template]",
            f"anchor_gate = {anchor_gate!r} is not a gate; valid: {sorted(pops)}",
        )
    min_events = man.get("min_events", 100)
    if isinstance(min_events, bool) or not isinstance(min_events, int) or min_events < 0:
        raise _err(path, "[manifest]", f"min_events = {min_events!r}; valid: an integer >= 0")
    fmo_pct = _number(path, "[defaults]", "fmo_percentile", defaults.get("fmo_percentile", 99.5))
    if not 50 <= fmo_pct < 100:
        raise _err(path, "[defaults]", f"fmo_percentile = {fmo_pct!r}; valid: 50 <= p < 100")
    boot = defaults.get("bootstrap", 200)
    if isinstance(boot, bool) or not isinstance(boot, int) or boot < 0:
        raise _err(path, "[defaults]", f"bootstrap = {boot!r}; valid: an integer >= 0")
    return Template(
        name=name,
        version=str(head.get("version", "0")),
        species=species,
        description=str(head.get("description", "")),
        anchor=str(head.get("anchor", "")),
        anchor_gate=anchor_gate,
        technology=_choice(
            path, "[template]", "technology", head.get("technology", "any"), (*TECHNOLOGIES, "any")
        ),
        required_markers=tuple(man.get("required_markers", ())),
        optional_markers=tuple(man.get("optional_markers", ())),
        terminal_populations=terminal,
        min_events=int(min_events),
        fmo_percentile=fmo_pct,
        bootstrap=int(boot),
        fmo_fallback=_choice(
            path,
            "[defaults]",
            "fmo_fallback",
            defaults.get("fmo_fallback", "valley"),
            ("mirror", "valley"),
        ),
        gates=tuple(gates),
        path=path,
        hash=_canonical_hash(raw),
    )


def _resolve_path(name_or_path: str | Path) -> Path:
    """A path to a file is that file; otherwise a shipped name comes before the file system.

    So a folder called ``human_blood`` in the working directory does not shadow the shipped
    ``human_blood`` template.
    """
    p = Path(name_or_path)
    if p.is_file():
        return p
    index = _index()
    if str(name_or_path) in index:
        return template_dir() / index[str(name_or_path)]["file"]
    if p.suffix == ".toml" or p.exists():
        what = "is a folder, not a template file" if p.is_dir() else "template file not found"
        raise GatingTemplateError(f"{p}: {what}")
    raise GatingTemplateError(
        f"{name_or_path!r} is neither a template file nor a shipped template; "
        f"valid names: {', '.join(index)}"
    )


def load_template(name_or_path: str | Path | Template) -> Template:
    """Load and validate a template by shipped name (``"human_blood"``) or TOML path.

    Parameters
    ----------
    name_or_path
        A path to an existing file is read; otherwise a shipped name comes before the file
        system. A :class:`Template` is returned as it is.

    Returns
    -------
    Template

    Raises
    ------
    GatingTemplateError
        Naming the file, the gate, the bad value and the valid choices.
    """
    if isinstance(name_or_path, Template):
        return name_or_path
    path = _resolve_path(name_or_path)
    refuse_gating_document(path)
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise GatingTemplateError(f"{path}: not valid TOML: {err}") from err
    return _parse(raw, str(path))


def validate_template(path: str | Path) -> Template:
    """Validate a template file; return it, or raise :class:`GatingTemplateError`.

    Parameters
    ----------
    path
        A template TOML file, or a shipped template name (as for :func:`load_template`).

    Returns
    -------
    Template
        The loaded template.

    Raises
    ------
    GatingTemplateError
        Naming the file, the gate, the bad value and the valid choices.
    """
    return load_template(path)
