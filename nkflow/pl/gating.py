"""Gating plots: the parent population as a density plot with the resolved gate drawn."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Polygon, Rectangle
from matplotlib.ticker import MaxNLocator

from ..exceptions import GatingError
from ..gating.gates import BooleanGate, PolygonGate, gate_from_dict
from ..pp.transform import from_linear

__all__ = ["gate_grid", "gate_plot"]

# A fixed title height spares matplotlib measuring every axis to place each title (about
# half of the drawing time of a sample's gate grid).
_TITLE_Y = 1.02
_MAX_TICKS = 4
# linear decades for the ticks of a transformed axis, labelled as FlowJo does
# (in order of preference: a decade too close to one already placed is left out)
_DECADES = (0.0, 1e2, 1e3, 1e4, 1e5, 1e6, -1e3, -1e4, 1e1, -1e2)
_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def _decade_label(value: float) -> str:
    if value == 0:
        return "0"
    exponent = round(math.log10(abs(value)))
    return ("-" if value < 0 else "") + "10" + str(exponent).translate(_SUPERSCRIPT)


def _decade_ticks(adata: Any, channel: str, lo: float, hi: float) -> tuple[list, list] | None:
    """Tick positions and labels at linear decades for a transformed channel, or None."""
    record = adata.uns.get("nkflow", {}).get("transform") or {}
    pos = from_linear(_DECADES, channel, record)
    if pos is None:
        return None
    gap = 0.06 * (hi - lo)
    keep: list[tuple[float, str]] = []
    for p, v in zip(pos, _DECADES, strict=True):
        if np.isfinite(p) and lo <= p <= hi and all(abs(p - q) >= gap for q, _ in keep):
            keep.append((float(p), _decade_label(v)))
    if len(keep) < 2:
        return None
    keep.sort()
    return [p for p, _ in keep], [label for _, label in keep]


def _axis_ticks(ax: Axes, adata: Any, xc: str, yc: str | None) -> None:
    """Decade ticks in linear units on transformed axes; a few plain ticks elsewhere."""
    for channel, axis, limits in ((xc, ax.xaxis, ax.get_xlim()), (yc, ax.yaxis, ax.get_ylim())):
        ticks = _decade_ticks(adata, channel, *sorted(limits)) if channel else None
        if ticks is None:
            axis.set_major_locator(MaxNLocator(_MAX_TICKS))
        else:
            axis.set_ticks(ticks[0], ticks[1])


def _gates(adata: Any) -> dict[str, Any]:
    g = adata.uns.get("nkflow", {}).get("gating")
    if not g:
        raise GatingError("the sample is not gated: run nkflow.gating.gate first")
    return {p["name"]: gate_from_dict(p["gate"]) for p in g["populations"]}


def _col(adata: Any, channel: str) -> np.ndarray:
    i = list(adata.var_names).index(channel)
    x = adata.X[:, i]
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x, float).ravel()


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


def _hist2d(ax: Axes, x: np.ndarray, y: np.ndarray, bins: int) -> None:
    """``ax.hist2d(x, y, bins=bins, cmin=1, cmap="viridis")``, the same picture, faster."""
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        ax.hist2d(x, y, bins=bins, cmin=1, cmap="viridis")  # numpy names the problem
        return
    xedges, ix = _bin_index(x, bins)
    yedges, iy = _bin_index(y, bins)
    h = np.bincount(ix * bins + iy, minlength=bins * bins).reshape(bins, bins).astype(float)
    h[h < 1] = np.nan
    ax.pcolormesh(xedges, yedges, h.T, cmap="viridis")


def _draw(adata: Any, gate: Any, ax: Axes, gates: dict[str, Any], bins: int) -> None:
    parent = np.asarray(adata.obs[gate.parent], bool) if gate.parent else np.ones(adata.n_obs, bool)
    title = f"{gate.id}  (in {gate.parent or 'all events'})"
    if isinstance(gate, BooleanGate):
        ax.axis("off")
        ops = f" {gate.op.upper()} ".join(("NOT " if o.complement else "") + o.gate
                                          for o in gate.operands)  # fmt: skip
        ax.text(0.5, 0.5, f"{gate.id} =\n{ops}", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title, fontsize=9, y=_TITLE_Y)
        return
    if isinstance(gate, PolygonGate):
        xc, yc = gate.x_channel, gate.y_channel
    else:
        xc = gate.dims[0].channel
        yc = gate.dims[1].channel if len(gate.dims) > 1 else None
    x = _col(adata, xc)[parent]
    inside = int(np.asarray(adata.obs[gate.id], bool).sum()) if gate.id in adata.obs else 0
    pct = 100.0 * inside / max(1, int(parent.sum()))
    if yc is None:
        counts, edges = np.histogram(x, bins=bins)
        ax.stairs(counts, edges, fill=True, color="0.5")
        d = gate.dims[0]
        for v in (d.min, d.max):
            if v is not None:
                ax.axvline(v, color="crimson")
        ax.set_xlabel(_label(adata, xc))
        ax.set_ylabel("events")
    else:
        y = _col(adata, yc)[parent]
        if x.size:
            _hist2d(ax, x, y, bins)
        if isinstance(gate, PolygonGate):
            ax.add_patch(Polygon(gate.vertices, closed=True, fill=False, color="crimson", lw=1.5))
        else:
            (x0, x1), (y0, y1) = ((d.min, d.max) for d in gate.dims[:2])
            lo_x = x0 if x0 is not None else (x.min() if x.size else 0.0)
            hi_x = x1 if x1 is not None else (x.max() if x.size else 1.0)
            lo_y = y0 if y0 is not None else (y.min() if y.size else 0.0)
            hi_y = y1 if y1 is not None else (y.max() if y.size else 1.0)
            ax.add_patch(Rectangle((lo_x, lo_y), hi_x - lo_x, hi_y - lo_y, fill=False,
                                   color="crimson", lw=1.5))  # fmt: skip
        ax.set_xlabel(_label(adata, xc))
        ax.set_ylabel(_label(adata, yc))
    ax.set_title(f"{title}: {inside} ({pct:.1f}%)", fontsize=9, y=_TITLE_Y)
    # transformed axes read in linear decades as in FlowJo; few ticks otherwise (each tick
    # is two lines and two texts for matplotlib to lay out and draw)
    _axis_ticks(ax, adata, xc, yc)


def gate_plot(adata: Any, gate_id: str, *, bins: int = 128, ax: Axes | None = None) -> Figure:
    """Density plot of a gate's parent population with the gate drawn.

    Parameters
    ----------
    adata
        A sample gated by :func:`nkflow.gating.gate`.
    gate_id
        Population name (gate id).
    bins
        Histogram bins per axis.
    ax
        Draw into this axes instead of a new figure.

    Returns
    -------
    Figure
    """
    gates = _gates(adata)
    if gate_id not in gates:
        raise GatingError(f"no gate {gate_id!r}; gates: {', '.join(gates)}")
    if ax is None:
        fig = Figure(figsize=(4.0, 3.6), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.get_figure()
    _draw(adata, gates[gate_id], ax, gates, bins)
    return fig  # type: ignore[return-value]


def gate_grid(
    adata: Any, *, gates: list[str] | None = None, ncols: int = 4, bins: int = 96
) -> Figure:
    """All gates of one sample (or those named in ``gates``) on one figure.

    Returns
    -------
    Figure
    """
    allg = _gates(adata)
    names = [g for g in (gates or list(allg)) if not isinstance(allg[g], BooleanGate)]
    if not names:
        raise GatingError("no geometric gates to draw")
    nrows = math.ceil(len(names) / ncols)
    fig = Figure(figsize=(3.4 * min(ncols, len(names)), 3.0 * nrows))
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.07, top=0.95, wspace=0.45, hspace=0.55)
    # axes only where a gate goes: an empty cell would cost an axes and its ticks, unseen
    grid = fig.add_gridspec(nrows, min(ncols, len(names)))
    for i, name in enumerate(names):
        _draw(adata, allg[name], fig.add_subplot(grid[divmod(i, ncols)]), allg, bins)
    return fig
