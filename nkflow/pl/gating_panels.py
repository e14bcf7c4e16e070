"""What a gating plot shows, as plain data: one :class:`Panel` per gate.

The single definition of a gating panel (which gates, the parent's events, bins, counts,
the gate's outline or thresholds, title, axis labels, limits and ticks), shared by the
matplotlib plots of :mod:`nkflow.pl.gating` and the SVG grid of
:mod:`nkflow.report.gating_svg`. Nothing here draws, and matplotlib is not imported.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .._containers import require_one_sample
from ..exceptions import GatingError
from ..gating.gates import BooleanGate, PolygonGate, gate_from_dict
from ..gating.membership import is_set, member_mask
from ..io.records import nkflow_record
from ._ticks import Transform, channel_scale, instrument_ticks, nice_ticks

__all__ = ["Axis", "Panel", "gate_panel", "gate_panels", "not_set_reason", "sample_gates"]

# the share of the data range added to a side where nothing pins the limit (matplotlib's)
_MARGIN = 0.05


@dataclass(frozen=True)
class Axis:
    """One axis of a panel: label, view limits and the ticks inside them."""

    label: str
    lo: float
    hi: float
    ticks: tuple[float, ...]
    tick_labels: tuple[str, ...]


@dataclass(frozen=True)
class Panel:
    """Everything one gating plot shows, in data units.

    Attributes
    ----------
    gate, parent
        Gate id and parent population (``None``: all events).
    kind
        ``"density"`` (2-D gate), ``"histogram"`` (1-D gate) or ``"boolean"`` (no data).
    title
        ``"<gate>  (in <parent>): N (x.x%)"``; for a boolean gate its name and parent;
        ``"...: not set"`` for a gate that could not be set (too few events, or below
        such a gate: ``<NA>`` in its obs column, :mod:`nkflow.gating.membership`).
    x, y
        The axes (``None`` for a boolean gate).
    counts
        Density: ``counts[i, j]`` events in x bin ``i`` and y bin ``j`` (as
        ``np.histogram2d``); ``None`` when the parent is empty. Histogram: counts per bin.
    xedges, yedges
        Bin edges (``yedges`` only for a density).
    outline
        Closed outline of a 2-D gate, ``(n, 2)`` vertices (a rectangle's four corners).
    thresholds
        A 1-D gate's bounds, drawn as vertical lines.
    inside, parent_count, percent
        Events in the gate and in its parent; ``100 * inside / parent_count``. ``None``
        (percent NaN) for a gate, or a parent, that was not set: not measured, not 0.
    text
        A boolean gate's definition (``"NK_CD16+ AND NOT trNK"``).
    """

    gate: str
    parent: str | None
    kind: str
    title: str
    x: Axis | None = None
    y: Axis | None = None
    counts: np.ndarray | None = None
    xedges: np.ndarray | None = None
    yedges: np.ndarray | None = None
    outline: np.ndarray | None = None
    thresholds: tuple[float, ...] = ()
    inside: int | None = 0
    parent_count: int | None = 0
    percent: float = 0.0
    text: str = ""


def _sample(adata: Any) -> str:
    from ..io.fcs import sample_id

    return sample_id(adata, default="?")


def _membership_only(adata: Any, record: dict[str, Any], names: list[str]) -> GatingError:
    """The error for populations recorded without a gate to draw (GatingML membership)."""
    source = record.get("template") or "outside nkflow"
    shown = ", ".join(map(repr, names[:8])) + (f" and {len(names) - 8} more" * (len(names) > 8))
    return GatingError(
        f"sample {_sample(adata)!r}: population(s) {shown} were gated by "
        f"{source!r} (GatingML, applied with nkflow.gating.apply_gatingml): only which events "
        "each holds is recorded, not the gate's channels, transforms and vertices, so there "
        "is no gate to draw. Their counts are in the populations table; draw the gates where "
        "they were made (FlowJo, FlowKit), or gate with nkflow.gating.gate to plot them here"
    )


def sample_gates(adata: Any) -> dict[str, Any]:
    """The sample's resolved gates by id, in template order.

    Only gates nkflow set itself (:func:`nkflow.gating.gate`) are recorded with what a plot
    needs; populations from a GatingML file hold membership only and are left out.

    Raises
    ------
    GatingError
        When the sample is not gated, none of its populations has a gate to draw (all
        from a GatingML file), or a gate's record is incomplete.
    ConfigError
        ``adata`` holds several samples (``anndata.concat``): each has its own gates.
    """
    require_one_sample(adata, "the gating plots", "; each has its own gates: plot one at a time")
    g = nkflow_record(adata, "gating")
    if not g:
        raise GatingError(
            f"sample {_sample(adata)!r} is not gated: run nkflow.gating.gate "
            "first (nkflow.gating.apply_flowjo_workspace returns tables and gates no container)"
        )
    try:
        gates = {p["name"]: gate_from_dict(p["gate"]) for p in g["populations"] if p.get("gate")}
    except (KeyError, TypeError, ValueError) as exc:  # e.g. merged by anndata's uns_merge
        raise GatingError(
            f"sample {_sample(adata)!r}: its gating record is incomplete ({exc!r} missing or "
            "malformed), as anndata.concat(..., uns_merge=...) leaves it: gate or plot each "
            "sample on its own container"
        ) from None
    if not gates:
        raise _membership_only(adata, g, [p["name"] for p in g["populations"]])
    return gates


def _known(adata: Any, gates: dict[str, Any], names: list[str]) -> None:
    """Raise for the first name that is no drawable gate, saying why."""
    record = nkflow_record(adata, "gating") or {}
    recorded = {p["name"] for p in record["populations"]}
    membership_only = [n for n in names if n not in gates and n in recorded]
    if membership_only:
        raise _membership_only(adata, record, membership_only)
    missing = [n for n in names if n not in gates]
    if missing:
        raise GatingError(f"no gate {missing[0]!r}; gates: {', '.join(gates)}")


def _axis(
    cols: _Columns, channel: str | None, label: str, lo: float, hi: float, *, counts: bool = False
) -> Axis:
    """Ticks in the instrument's units (:mod:`nkflow.pl._ticks`); whole event counts."""
    scale = cols.scale(channel) if channel else None
    ticks = nice_ticks(lo, hi, integer=True) if counts else instrument_ticks(lo, hi, *scale or ())
    return Axis(label, float(lo), float(hi), tuple(ticks[0]), tuple(ticks[1]))


def _limits(data: tuple[float, float] | None, extra: list[float]) -> tuple[float, float]:
    """View limits as matplotlib autoscales them.

    The data's own range is kept exactly (bin edges pin the limits); a side that a gate
    line extends gets a 5 % margin.
    """
    values = [v for v in extra if np.isfinite(v)]
    lo = min(values + ([data[0]] if data else []), default=0.0)
    hi = max(values + ([data[1]] if data else []), default=1.0)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    delta = _MARGIN * (hi - lo)
    tol = 1e-5 * max(abs(lo), abs(hi), hi - lo)
    lo = data[0] if data and data[0] <= lo + tol else lo - delta
    hi = data[1] if data and data[1] >= hi - tol else hi + delta
    return float(lo), float(hi)


def _label(adata: Any, channel: str) -> str:
    m = str(adata.var["marker"].get(channel, "")) if "marker" in adata.var.columns else ""
    return f"{m} ({channel})" if m else channel


def _bin_index(v: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.histogram2d``'s edges and bin of each value along one axis, without a search.

    The bin is computed from the value as :func:`numpy.histogram` does for equal bins (then
    corrected by one where rounding put it across an edge), so the counts are exactly those
    of ``np.histogram2d`` at a fraction of its cost (which binary-searches every event).
    """
    lo, hi = float(v.min()), float(v.max())
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    idx = ((v - lo) * (bins / (hi - lo))).astype(np.intp)
    np.clip(idx, 0, bins - 1, out=idx)
    idx -= v < edges[idx]
    idx += (v >= edges[idx + 1]) & (idx != bins - 1)
    return edges, idx


def _hist2d(x: np.ndarray, y: np.ndarray, bins: int) -> tuple[np.ndarray, ...]:
    """``np.histogram2d(x, y, bins)`` (counts as int64), the same numbers, faster."""
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        h, xe, ye = np.histogram2d(x, y, bins=bins)  # numpy names the problem
        return h.astype(np.int64), xe, ye
    xedges, ix = _bin_index(x, bins)
    yedges, iy = _bin_index(y, bins)
    h = np.bincount(ix * bins + iy, minlength=bins * bins).reshape(bins, bins)
    return h.astype(np.int64, copy=False), xedges, yedges


class _Columns:
    """Channel values and population masks of one sample, each read once."""

    def __init__(self, adata: Any) -> None:
        self.adata = adata
        self._index = {str(c): i for i, c in enumerate(adata.var_names)}
        self._masks: dict[str | None, np.ndarray] = {}
        self._rows: dict[str | None, np.ndarray] = {}
        self._values: dict[tuple[str, str | None], np.ndarray] = {}
        self._scales: dict[str, tuple[Transform, Transform] | None] = {}

    def scale(self, channel: str) -> tuple[Transform, Transform] | None:
        """The channel's transform and its inverse (None: not transformed, e.g. scatter)."""
        if channel not in self._scales:
            record = nkflow_record(self.adata, "transform") or {}
            self._scales[channel] = channel_scale(channel, record)
        return self._scales[channel]

    def mask(self, name: str | None) -> np.ndarray:
        if name not in self._masks:
            self._masks[name] = (
                member_mask(self.adata.obs[name])  # a gate not set (<NA>): no events
                if name is not None
                else np.ones(self.adata.n_obs, bool)
            )
        return self._masks[name]

    def values(self, channel: str, parent: str | None) -> np.ndarray:
        """The parent's events on one channel, as float64."""
        key = (channel, parent)
        if key not in self._values:
            x = self.adata.X
            j = self._index[channel]
            if hasattr(x, "toarray"):  # sparse: one column, then the parent's rows
                col = np.asarray(x[:, j].toarray()).ravel()[self.mask(parent)]
            elif parent is None:
                col = np.asarray(x)[:, j]
            else:  # a gather of the parent's rows in one column, no column copy
                if parent not in self._rows:
                    self._rows[parent] = np.flatnonzero(self.mask(parent))
                col = np.asarray(x)[self._rows[parent], j]
            self._values[key] = col.astype(float)
        return self._values[key]


def _measured(adata: Any, name: str | None) -> bool:
    """False for a gate that could not be set (``<NA>`` in its obs column)."""
    return name is None or name not in adata.obs or is_set(adata.obs[name])


def _panel(cols: _Columns, gate: Any, bins: int) -> Panel:
    adata = cols.adata
    where = gate.parent or "all events"
    measured = _measured(adata, gate.id)
    if isinstance(gate, BooleanGate):
        ops = f" {gate.op.upper()} ".join(("NOT " if o.complement else "") + o.gate
                                          for o in gate.operands)  # fmt: skip
        title = f"{gate.id}  (in {where})" + ("" if measured else ": not set")
        return Panel(gate.id, gate.parent, "boolean", title, text=ops)
    if isinstance(gate, PolygonGate):
        xc, yc = gate.x_channel, gate.y_channel
    else:
        xc = gate.dims[0].channel
        yc = gate.dims[1].channel if len(gate.dims) > 1 else None
    n_parent = int(cols.mask(gate.parent).sum())
    inside = int(cols.mask(gate.id).sum()) if gate.id in adata.obs else 0
    pct = 100.0 * inside / max(1, n_parent)
    title = f"{gate.id}  (in {where}): {inside} ({pct:.1f}%)"
    common: dict[str, Any] = {"inside": inside, "parent_count": n_parent, "percent": pct}
    if not measured:  # its events are drawn, its count is not measured (not 0)
        parent_count = n_parent if _measured(adata, gate.parent) else None
        common.update(inside=None, percent=float("nan"), parent_count=parent_count)
        title = f"{gate.id}  (in {where}): not set"
    common["title"] = title
    x = cols.values(xc, gate.parent)
    if yc is None:
        counts, edges = np.histogram(x, bins=bins)
        d = gate.dims[0]
        lines = tuple(float(v) for v in (d.min, d.max) if v is not None)
        top = float(counts.max()) if counts.size else 0.0
        ylim = (0.0, top * (1 + _MARGIN)) if top > 0 else (0.0, 1.0)
        return Panel(
            gate.id, gate.parent, "histogram",
            x=_axis(cols, xc, _label(adata, xc), *_limits(None, [edges[0], edges[-1], *lines])),
            y=_axis(cols, None, "events", *ylim, counts=True),
            counts=counts, xedges=edges, thresholds=lines, **common,
        )  # fmt: skip
    y = cols.values(yc, gate.parent)
    counts = xedges = yedges = None
    if x.size:
        counts, xedges, yedges = _hist2d(x, y, bins)
    if isinstance(gate, PolygonGate):
        outline = np.asarray(gate.vertices, float).reshape(-1, 2)
    else:
        (x0, x1), (y0, y1) = ((d.min, d.max) for d in gate.dims[:2])
        lo_x = x0 if x0 is not None else (x.min() if x.size else 0.0)
        hi_x = x1 if x1 is not None else (x.max() if x.size else 1.0)
        lo_y = y0 if y0 is not None else (y.min() if y.size else 0.0)
        hi_y = y1 if y1 is not None else (y.max() if y.size else 1.0)
        outline = np.array([[lo_x, lo_y], [hi_x, lo_y], [hi_x, hi_y], [lo_x, hi_y]], float)
    xdata = (float(xedges[0]), float(xedges[-1])) if xedges is not None else None
    ydata = (float(yedges[0]), float(yedges[-1])) if yedges is not None else None
    return Panel(
        gate.id, gate.parent, "density",
        x=_axis(cols, xc, _label(adata, xc), *_limits(xdata, list(outline[:, 0]))),
        y=_axis(cols, yc, _label(adata, yc), *_limits(ydata, list(outline[:, 1]))),
        counts=counts, xedges=xedges, yedges=yedges, outline=outline, **common,
    )  # fmt: skip


def _channels(gate: Any) -> set[str]:
    if isinstance(gate, PolygonGate):
        return {gate.x_channel, gate.y_channel, f"{gate.x_channel}|{gate.y_channel}"}
    return {d.channel for d in getattr(gate, "dims", ())}


def not_set_reason(adata: Any, gate: Any) -> str | None:
    """Why a gate was not set, in a few words, or None when it was.

    Read from the gating record, ``uns["nkflow"]["gating"]["unset"]`` (the gates whose
    ``count`` the populations table leaves NA), made specific by the gate's threshold row in
    ``uns["nkflow"]["thresholds"]`` (``insufficient events``: too few events to set it). A
    gate whose ``obs`` column holds ``<NA>`` (:mod:`nkflow.gating.membership`) is not set
    either, its reason unrecorded when ``uns`` was not kept.

    Parameters
    ----------
    adata
        A gated sample.
    gate
        One of its gates (:func:`sample_gates`).

    Returns
    -------
    str or None
        ``"too few events (10)"`` (in its parent; ``"(10 in NK)"`` when the cut-off was set
        on another population), ``"parent 'NK' not set"``, ``"no cut-off (mirror)"`` ...;
        ``""`` when only the ``obs`` column tells; None for a gate that was set.
    """
    why = (nkflow_record(adata, "gating", "unset") or {}).get(gate.id)  # once per panel
    if why is None:  # a container whose uns was not kept: its <NA> column says not set
        measured = gate.id not in adata.obs or is_set(adata.obs[gate.id])
        return None if measured else ""
    if not str(why).startswith("no cut-off"):
        return str(why)  # "parent 'X' not set", "operand 'X' not set"
    channels = _channels(gate)
    rows = [  # cut-offs without a value (NaN != NaN) on the gate's channels
        r for r in nkflow_record(adata, "thresholds") or ()
        if r.get("channel") in channels and not r.get("value") == r.get("value")
    ]  # fmt: skip
    # the row set on the gate's parent first (a cut-off set on another population after)
    rows.sort(key=lambda r: (r.get("gate") or "") != (gate.parent or ""))
    for row in rows:
        # "insufficient events" is the rule (maybe "... (fmo fallback)"), or a polygon's name
        if any(str(row.get(k, "")).startswith("insufficient events") for k in ("rule", "marker")):
            on = row.get("gate") or ""  # the population the cut-off was set on
            where = f" in {on}" if on and on != (gate.parent or "") else ""
            return f"too few events ({row.get('n_events', 0)}{where})"
        return f"no cut-off ({row.get('rule') or 'no rule'})"
    return "no cut-off"


def _said_if_not_set(adata: Any, panel: Panel, gate: Any) -> Panel:
    """The panel of a gate that was not set says so and why, not ``0 (0.0%)``."""
    why = not_set_reason(adata, gate)
    if why is None:
        return panel
    where = gate.parent or "all events"
    return replace(panel, title=f"{gate.id}  (in {where}): not set" + (f": {why}" * bool(why)))


def gate_panel(adata: Any, gate_id: str, *, bins: int = 128) -> Panel:
    """The panel of one gate (boolean gates included).

    Parameters
    ----------
    adata
        A sample gated by :func:`nkflow.gating.gate`.
    gate_id
        Population name (gate id).
    bins
        Histogram bins per axis.

    Returns
    -------
    Panel

    Raises
    ------
    GatingError
        When the sample is not gated or has no gate ``gate_id``.
    """
    gates = sample_gates(adata)
    _known(adata, gates, [gate_id])
    return _said_if_not_set(adata, _panel(_Columns(adata), gates[gate_id], bins), gates[gate_id])


def gate_panels(adata: Any, *, gates: list[str] | None = None, bins: int = 96) -> list[Panel]:
    """The panels of a sample's gate grid: every geometric gate (or those in ``gates``).

    Boolean gates have no data to plot and are left out.

    Parameters
    ----------
    adata
        A sample gated by :func:`nkflow.gating.gate`.
    gates
        Gate ids to draw, in this order (default: all, in template order).
    bins
        Histogram bins per axis.

    Returns
    -------
    list of Panel

    Raises
    ------
    GatingError
        When the sample is not gated, a named gate does not exist, or no gate is geometric.
    """
    allg = sample_gates(adata)
    _known(adata, allg, list(gates or ()))
    names = [g for g in (gates or list(allg)) if not isinstance(allg[g], BooleanGate)]
    if not names:
        raise GatingError("no geometric gates to draw")
    cols = _Columns(adata)
    return [_said_if_not_set(adata, _panel(cols, allg[n], bins), allg[n]) for n in names]
