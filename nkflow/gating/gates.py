"""Resolved gates: plain, documented geometry for one sample after its thresholds are known.

A gating *template* (``gating/*.toml``) names markers and rules ("CD3 at the density valley",
"CD69 at the FMO 99.5th percentile"). Applying it to a sample resolves every rule to numbers
and every marker to a channel; the result is a list of the gates below. They are what
``nkflow.gating.gatingml`` exports to GatingML 2.0, what the plots draw, and what
:func:`evaluate_gates` applies.

Coordinates
-----------
Every coordinate is in the units of ``adata.X`` for that channel: the *transformed* scale for
fluorescence channels (logicle or arcsinh, parameters in ``uns["nkflow"]["transform"]``) and
the linear scale for scatter (``FSC*``, ``SSC*``) and ``Time``. Channels are ``$PnN`` names.

Semantics (GatingML 2.0)
------------------------
- A gate's membership is its parent's membership AND its own geometry (``parent=None`` means
  all events).
- :class:`RectangleGate`: for each dimension ``min <= x < max``; ``None`` is an open bound.
  A rectangle with one dimension is a threshold ("CD3-" = ``max`` at the CD3 threshold).
- :class:`PolygonGate`: the closed polygon through ``vertices`` (even-odd rule, as GatingML).
- :class:`BooleanGate`: ``op`` in ``"and" | "or" | "not"`` over the *full* memberships of the
  operand gates (each operand may be complemented); ``"not"`` takes exactly one operand.
  Operands are gate ids only, never nested expressions, so the gate maps one-to-one onto a
  GatingML ``BooleanGate``.
Quadrant gates of a template resolve to one :class:`RectangleGate` per quadrant.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from ..exceptions import GatingError
from .depgraph import DependencyCycle, UnknownDependency, dependency_order
from .polygon import points_in_polygon

__all__ = [
    "BooleanGate",
    "Dimension",
    "Gate",
    "Operand",
    "PolygonGate",
    "RectangleGate",
    "evaluate_gates",
    "gate_from_dict",
    "gate_to_dict",
    "topological_order",
]


@dataclass(frozen=True)
class Dimension:
    """One axis of a rectangle gate.

    Parameters
    ----------
    channel
        ``$PnN`` channel name.
    min, max
        Bounds on the ``adata.X`` scale; ``None`` is unbounded. ``min`` is inclusive,
        ``max`` exclusive (GatingML).
    marker
        Canonical marker of the channel (for labels only; ``""`` for scatter).
    """

    channel: str
    min: float | None = None
    max: float | None = None
    marker: str = ""

    def contains(self, values: NDArray[Any]) -> NDArray[np.bool_]:
        """Return the events inside this dimension's interval."""
        v = np.asarray(values)
        inside = np.ones(v.shape, dtype=bool)
        if self.min is not None:
            inside &= v >= self.min
        if self.max is not None:
            inside &= v < self.max
        return inside


@dataclass(frozen=True)
class RectangleGate:
    """Axis-aligned (hyper)rectangle; one dimension makes a threshold or range gate.

    Parameters
    ----------
    id
        Gate id, equal to the population name (e.g. ``"CD3-"``).
    parent
        Id of the parent gate, or ``None`` for the root.
    dims
        The dimensions, each a :class:`Dimension`.
    """

    id: str
    parent: str | None
    dims: tuple[Dimension, ...]
    kind: Literal["rectangle"] = field(default="rectangle", init=False)

    @property
    def channels(self) -> list[str]:
        """Channels the gate reads."""
        return [d.channel for d in self.dims]

    def contains(self, data: Mapping[str, NDArray[Any]]) -> NDArray[np.bool_]:
        """Events inside the rectangle (ignores the parent)."""
        mask = None
        for d in self.dims:
            m = d.contains(data[d.channel])
            mask = m if mask is None else mask & m
        if mask is None:
            raise GatingError(f"rectangle gate {self.id!r} has no dimensions")
        return mask


@dataclass(frozen=True)
class PolygonGate:
    """Closed polygon in two channels.

    Parameters
    ----------
    id
        Gate id (population name).
    parent
        Parent gate id or ``None``.
    x_channel, y_channel
        ``$PnN`` channels of the two axes.
    vertices
        ``((x0, y0), (x1, y1), ...)`` on the ``adata.X`` scale; the polygon closes itself.
    x_marker, y_marker
        Canonical markers of the axes (labels only).
    """

    id: str
    parent: str | None
    x_channel: str
    y_channel: str
    vertices: tuple[tuple[float, float], ...]
    x_marker: str = ""
    y_marker: str = ""
    kind: Literal["polygon"] = field(default="polygon", init=False)

    @property
    def channels(self) -> list[str]:
        """Channels the gate reads."""
        return [self.x_channel, self.y_channel]

    def contains(self, data: Mapping[str, NDArray[Any]]) -> NDArray[np.bool_]:
        """Events inside the polygon (ignores the parent)."""
        if len(self.vertices) < 3:
            raise GatingError(f"polygon gate {self.id!r} needs at least 3 vertices")
        return points_in_polygon(data[self.x_channel], data[self.y_channel], self.vertices)


@dataclass(frozen=True)
class Operand:
    """An operand of a boolean gate: another gate's full membership, optionally negated.

    Parameters
    ----------
    gate
        Id of the gate whose membership (its parent's included) is combined.
    complement
        Use the events outside that gate instead (``NOT gate``).
    """

    gate: str
    complement: bool = False


@dataclass(frozen=True)
class BooleanGate:
    """AND / OR / NOT over other gates' full memberships.

    Parameters
    ----------
    id
        Gate id (population name).
    parent
        Parent gate id or ``None``; the result is intersected with the parent.
    op
        ``"and"``, ``"or"`` or ``"not"`` (exactly one operand).
    operands
        The operand gates, each an :class:`Operand`.
    """

    id: str
    parent: str | None
    op: Literal["and", "or", "not"]
    operands: tuple[Operand, ...]
    kind: Literal["boolean"] = field(default="boolean", init=False)

    @property
    def channels(self) -> list[str]:
        """Boolean gates read no channel directly."""
        return []

    def combine(self, members: Mapping[str, NDArray[np.bool_]]) -> NDArray[np.bool_]:
        """Combine operand memberships (ignores the parent)."""
        vals = []
        for o in self.operands:
            if o.gate not in members:
                raise GatingError(
                    f"boolean gate {self.id!r}: operand {o.gate!r} is not evaluated yet; "
                    f"known gates: {', '.join(members)}"
                )
            m = members[o.gate]
            vals.append(~m if o.complement else m)
        if self.op == "not":
            if len(vals) != 1:
                raise GatingError(f"boolean gate {self.id!r}: 'not' takes exactly one operand")
            return ~vals[0]
        if not vals:
            raise GatingError(f"boolean gate {self.id!r} has no operands")
        if self.op == "and":
            return np.logical_and.reduce(vals)
        if self.op == "or":
            return np.logical_or.reduce(vals)
        raise GatingError(f"boolean gate {self.id!r}: op {self.op!r}; valid: and, or, not")


Gate = RectangleGate | PolygonGate | BooleanGate


def _deps(g: Gate) -> list[str]:
    deps = [g.parent] if g.parent else []
    if isinstance(g, BooleanGate):
        deps += [o.gate for o in g.operands]
    return deps


def topological_order(gates: Iterable[Gate]) -> list[Gate]:
    """Order gates so parents and boolean operands come first (stable otherwise).

    Raises
    ------
    GatingError
        On duplicate ids, unknown references or cycles.
    """
    glist = list(gates)
    by_id: dict[str, Gate] = {}
    for g in glist:
        if g.id in by_id:
            raise GatingError(f"duplicate gate id {g.id!r}")
        by_id[g.id] = g
    try:
        order = dependency_order({gid: _deps(g) for gid, g in by_id.items()})
    except DependencyCycle as exc:
        raise GatingError(f"gate cycle: {exc}") from None
    except UnknownDependency as exc:
        raise GatingError(
            f"gate {exc.gate!r} refers to unknown gate {exc.dependency!r}; "
            f"known: {', '.join(by_id)}"
        ) from None
    return [by_id[gid] for gid in order]


def evaluate_gates(
    gates: Sequence[Gate], data: Mapping[str, NDArray[Any]], n_events: int | None = None
) -> dict[str, NDArray[np.bool_]]:
    """Full membership (parent AND own geometry) of every gate.

    Parameters
    ----------
    gates
        Resolved gates, any order.
    data
        Channel name -> 1-D array of values on the ``adata.X`` scale (a DataFrame works).
    n_events
        Number of events; inferred from the first channel read when omitted.

    Returns
    -------
    dict
        Gate id -> boolean array, in topological order.

    Raises
    ------
    GatingError
        A gate reads a channel not in ``data``, two gates share an id, the gates form a
        cycle or refer to a gate not given, or a polygon has fewer than 3 vertices.
    """
    ordered = topological_order(gates)
    members: dict[str, NDArray[np.bool_]] = {}
    for g in ordered:
        if isinstance(g, BooleanGate):
            own = g.combine(members)
        else:
            try:
                own = g.contains(data)
            except KeyError as err:
                raise GatingError(f"gate {g.id!r} reads channel {err} not in the data") from err
        if n_events is None:
            n_events = own.shape[0]
        if g.parent is not None:
            own = own & members[g.parent]
        members[g.id] = np.asarray(own, dtype=bool)
    return members


def gate_to_dict(gate: Gate) -> dict[str, Any]:
    """JSON-able dict of a gate (stored in ``uns["nkflow"]["gating"]``)."""
    d = asdict(gate)
    d["kind"] = gate.kind
    return d


def gate_from_dict(d: Mapping[str, Any]) -> Gate:
    """Rebuild a gate from :func:`gate_to_dict` output."""
    kind = d.get("kind")
    if kind == "rectangle":
        dims = tuple(
            Dimension(
                channel=x["channel"],
                min=None if x.get("min") is None else float(x["min"]),
                max=None if x.get("max") is None else float(x["max"]),
                marker=x.get("marker", ""),
            )
            for x in d["dims"]
        )
        return RectangleGate(id=d["id"], parent=d.get("parent"), dims=dims)
    if kind == "polygon":
        return PolygonGate(
            id=d["id"],
            parent=d.get("parent"),
            x_channel=d["x_channel"],
            y_channel=d["y_channel"],
            vertices=tuple((float(x), float(y)) for x, y in d["vertices"]),
            x_marker=d.get("x_marker", ""),
            y_marker=d.get("y_marker", ""),
        )
    if kind == "boolean":
        return BooleanGate(
            id=d["id"],
            parent=d.get("parent"),
            op=d["op"],
            operands=tuple(
                Operand(gate=o["gate"], complement=bool(o.get("complement", False)))
                for o in d["operands"]
            ),
        )
    raise GatingError(f"unknown gate kind {kind!r}; valid: rectangle, polygon, boolean")
