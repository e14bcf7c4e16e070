"""Gating plots: the parent population as a density plot with the resolved gate drawn.

What each plot shows comes from :mod:`nkflow.pl.gating_panels` (shared with the report's
SVG gate grid); this module draws those panels with matplotlib.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Polygon

from ._figure import new_figure
from .gating_panels import Panel, gate_panel, gate_panels

__all__ = ["gate_grid", "gate_plot"]

# A fixed title height spares matplotlib measuring every axis to place each title (about
# half of the drawing time of a sample's gate grid).
_TITLE_Y = 1.02
# a longer title goes on two lines (population and parent, then the count or why it has
# none): at fontsize 9 it would run into the next panel's
_TITLE_CHARS = 34
# the grid's margins in inches: room for a two-line title above and the x axis below
_TOP_IN, _BOTTOM_IN = 0.45, 0.55


def _title(text: str) -> str:
    """The panel title, on two lines when it is long (broken after the parent)."""
    head, sep, tail = text.partition("): ")
    return f"{head}):\n{tail}" if sep and len(text) > _TITLE_CHARS else text


def _draw(panel: Panel, ax: Axes) -> None:
    """Draw one panel: density or histogram, the gate, limits, ticks, labels, title."""
    if panel.kind == "boolean":
        ax.axis("off")
        ax.text(0.5, 0.5, f"{panel.gate} =\n{panel.text}", ha="center", va="center",
                transform=ax.transAxes)  # fmt: skip
        ax.set_title(_title(panel.title), fontsize=9, y=_TITLE_Y)
        return
    assert panel.x is not None and panel.y is not None
    if panel.kind == "histogram":
        ax.stairs(panel.counts, panel.xedges, fill=True, color="0.5")
        for v in panel.thresholds:
            ax.axvline(v, color="crimson")
    else:
        if panel.counts is not None:
            h = panel.counts.astype(float)
            h[h < 1] = np.nan  # empty bins stay white, as hist2d(cmin=1)
            ax.pcolormesh(panel.xedges, panel.yedges, h.T, cmap="viridis")
        ax.add_patch(Polygon(panel.outline, closed=True, fill=False, color="crimson", lw=1.5))
    # transformed axes read in linear decades as in FlowJo; few ticks otherwise (each tick
    # is two lines and two texts for matplotlib to lay out and draw)
    for spec, axis, set_lim in ((panel.x, ax.xaxis, ax.set_xlim), (panel.y, ax.yaxis, ax.set_ylim)):
        set_lim(spec.lo, spec.hi)
        axis.set_ticks(spec.ticks, spec.tick_labels)
    ax.set_xlabel(panel.x.label)
    ax.set_ylabel(panel.y.label)
    ax.set_title(_title(panel.title), fontsize=9, y=_TITLE_Y)


def gate_plot(adata: Any, gate_id: str, *, bins: int = 128, ax: Axes | None = None) -> Figure:
    """Density plot of a gate's parent population with the gate drawn.

    Parameters
    ----------
    adata, gate_id, bins
        The sample, the gate and the bins per axis, as for
        :func:`nkflow.pl.gating_panels.gate_panel` (which computes what is drawn).
    ax
        Draw into this axes instead of a new figure.

    Returns
    -------
    Figure
    """
    panel = gate_panel(adata, gate_id, bins=bins)
    if ax is None:
        fig = new_figure(figsize=(4.0, 3.6), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.get_figure()
    _draw(panel, ax)
    return fig  # type: ignore[return-value]


def gate_grid(
    adata: Any, *, gates: list[str] | None = None, ncols: int = 4, bins: int = 96
) -> Figure:
    """All gates of one sample (or those named in ``gates``) on one figure.

    Boolean gates (no data of their own) are left out.

    Parameters
    ----------
    adata
        A sample gated by :func:`nkflow.gating.gate` (``X`` on the transformed scale).
    gates
        Gate ids to draw, in this order (default: all, in template order).
    ncols
        Panels per row; the figure has as many rows as it needs.
    bins
        Histogram bins per axis of each panel's parent density.

    Returns
    -------
    Figure
        One panel per gate: its parent's events with the gate drawn over them.

    Raises
    ------
    GatingError
        The sample is not gated, a gate in ``gates`` does not exist, or no gate is
        geometric (:func:`nkflow.pl.gating_panels.gate_panels`).
    """
    panels = gate_panels(adata, gates=gates, bins=bins)
    nrows = math.ceil(len(panels) / ncols)
    height = 3.0 * nrows
    fig = new_figure(figsize=(3.4 * min(ncols, len(panels)), height))
    fig.subplots_adjust(left=0.07, right=0.98, bottom=_BOTTOM_IN / height,
                        top=1 - _TOP_IN / height, wspace=0.45, hspace=0.55)  # fmt: skip
    # axes only where a gate goes: an empty cell would cost an axes and its ticks, unseen
    grid = fig.add_gridspec(nrows, min(ncols, len(panels)))
    for i, panel in enumerate(panels):
        _draw(panel, fig.add_subplot(grid[divmod(i, ncols)]))
    return fig
