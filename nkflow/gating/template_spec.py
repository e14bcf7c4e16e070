"""What a gating template is made of: the frozen specs :mod:`nkflow.gating.template` parses.

Kept apart from the parser so the resolver, the engine and the parser share one
definition without importing each other (see :mod:`nkflow.gating.template` for the
TOML format).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..exceptions import GatingTemplateError

__all__ = [
    "DENSITY_METHODS",
    "FALLBACK_RULES",
    "KINDS",
    "OPS",
    "RULES",
    "SIDES",
    "SPECIES",
    "TECHNOLOGIES",
    "DimSpec",
    "GateSpec",
    "Template",
    "shared_cut_conflicts",
]

KINDS = ("polygon", "rectangle", "threshold", "quadrant", "boolean")
RULES = ("valley", "gmm", "fmo", "mirror", "quantile", "fixed")
FALLBACK_RULES = ("valley", "gmm", "mirror", "quantile")
DENSITY_METHODS = ("debris", "singlets", "lymphocytes", "upper_cluster", "cytof_singlets")
SIDES = ("pos", "neg")
SPECIES = ("human", "mouse")
OPS = ("and", "or", "not")
TECHNOLOGIES = ("flow", "cytof")


@dataclass(frozen=True)
class DimSpec:
    """How one marker condition of a gate is thresholded (see the module docstring)."""

    marker: str
    side: str = "pos"
    rule: str = "valley"
    value: float | None = None
    percentile: float | None = None
    on: str | None = None
    unimodal: str = "negative"
    min_prominence: float = 0.02
    bw_adjust: float = 1.0
    stim: str = "keep"
    between: str = "top2"
    fallback: str | None = None
    any_of: tuple[str, ...] = ()
    optional: bool = False
    pool: bool = False
    reference: str | None = None

    def cut_settings(self) -> dict[str, Any]:
        """What sets the condition's cut-off, not its side.

        Two conditions on one marker and population share one threshold, so they must
        agree on these.
        """
        return {
            "rule": self.rule,
            "value": self.value,
            "percentile": self.percentile,
            "unimodal": self.unimodal,
            "min_prominence": self.min_prominence,
            "bw_adjust": self.bw_adjust,
            "between": self.between,
            "fallback": self.fallback,
            "pool": self.pool,
            "reference": self.reference,
        }

    def valley_options(self) -> dict[str, Any]:
        """The condition's keywords of :func:`~nkflow.gating.thresholds.valley_threshold`."""
        return {
            "between": self.between,
            "min_prominence": self.min_prominence,
            "bw_adjust": self.bw_adjust,
            "unimodal": self.unimodal,
        }


@dataclass(frozen=True)
class GateSpec:
    """One gate of a template, before thresholds are known."""

    id: str
    parent: str | None
    kind: str
    rule: str = ""
    method: str = ""
    x: str = ""
    y: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    dims: tuple[DimSpec, ...] = ()
    quadrants: Mapping[str, str] = field(default_factory=dict)
    op: str = ""
    operands: tuple[str, ...] = ()
    by_tissue: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    stim: str = "keep"
    optional: bool = False
    description: str = ""
    alternatives: tuple[GateSpec, ...] = ()
    bypass: bool = False
    technology: tuple[str, ...] = ()

    @property
    def populations(self) -> list[str]:
        """Population names this gate produces (its quadrants, or itself)."""
        return list(self.quadrants) if self.kind == "quadrant" else [self.id]


@dataclass(frozen=True)
class Template:
    """A validated gating template.

    Made by :func:`nkflow.gating.load_template`; the TOML keys are described in
    :mod:`nkflow.gating.template`.

    Attributes
    ----------
    name, version, species, description
        From ``[template]``; ``species`` is ``"human"`` or ``"mouse"``.
    anchor
        The marker NK cells are anchored on (``"CD56"``, ``"NKp46"``, ``"CD7"``...).
    anchor_gate
        The NK gate (default ``"NK"``): a panel that cannot draw it is refused.
    technology
        The data the template was written for: ``"flow"``, ``"cytof"`` or ``"any"``.
    required_markers, optional_markers, terminal_populations
        From ``[manifest]``.
    min_events
        Populations with fewer events are flagged ``low_events`` (default 100).
    fmo_percentile
        Percentile of the FMO events a threshold is put at (default 99.5).
    bootstrap
        Bootstrap resamples per data-driven threshold (default 200).
    fmo_fallback
        Rule for an FMO threshold whose FMO tube is missing (default ``"valley"``).
    gates
        The gate specs, parents before children.
    path
        The TOML file it was read from.
    hash
        SHA-256 of the parsed content (:func:`nkflow.gating.template_hash`).
    """

    name: str
    version: str
    species: str
    description: str
    anchor: str
    anchor_gate: str
    technology: str
    required_markers: tuple[str, ...]
    optional_markers: tuple[str, ...]
    terminal_populations: tuple[str, ...]
    min_events: int
    fmo_percentile: float
    bootstrap: int
    fmo_fallback: str
    gates: tuple[GateSpec, ...]
    path: str
    hash: str

    @property
    def populations(self) -> list[str]:
        """Every population name, in template order."""
        return [p for g in self.gates for p in g.populations]

    def gate(self, gate_id: str) -> GateSpec:
        """The gate spec producing population ``gate_id``."""
        for g in self.gates:
            if gate_id in g.populations:
                return g
        raise GatingTemplateError(
            f"{self.path}: no gate {gate_id!r}; gates: {', '.join(self.populations)}"
        )


def shared_cut_conflicts(gates: Iterable[GateSpec]) -> list[str]:
    """Conditions that cut one marker on one population with different settings.

    A marker is cut once per population it is thresholded on (the thresholds table, the
    overrides and the batch pool have one row per population and marker): the first gate
    that needs it sets it and later gates reuse it. Two conditions that ask for it with
    different settings (say ``rule = "fixed"`` on one, the valley on the other) would
    silently get the first one's cut.

    Parameters
    ----------
    gates
        Gates of one hierarchy (a template's written gates, or a resolved hierarchy).

    Returns
    -------
    list of str
        One line per conflict, naming both gates, the marker, the population and the
        settings that differ; empty when every shared cut agrees.
    """
    first: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    out: list[str] = []
    for g in gates:
        for d in g.dims:
            on = d.on or g.parent or ""
            key, settings = (on, d.marker), d.cut_settings()
            if key not in first:
                first[key] = (g.id, settings)
                continue
            other, before = first[key]
            differ = [f"{k} {before[k]!r} vs {settings[k]!r}" for k in settings
                      if settings[k] != before[k]]  # fmt: skip
            if differ:
                out.append(
                    f"gates {other!r} and {g.id!r} both cut {d.marker} on {on or 'all events'!r} "
                    f"but differ in {', '.join(differ)}: one cut is shared, so give both the "
                    f"same settings (or cut one on another population with on = ...)"
                )
    return out
