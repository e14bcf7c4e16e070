"""Which events lie inside a polygon gate: matplotlib's answer, without its cost.

A polygon gate's membership has to be the one every other tool computes: GatingML's
polygon test is the even-odd crossing rule, and flowkit (as nkflow did before this
module) answers it with matplotlib's ``Path.contains_points``, which runs that rule over
every edge for every event (events x vertices comparisons; a 1M-event, 100-vertex gate
costs ~0.2 s).

:func:`points_in_polygon` computes the same crossing rule, with the same arithmetic, for
each event only on the edges whose height range holds it: events are sorted by y once,
and each edge toggles the contiguous run of events between its end points' heights. A
closed polygon that a horizontal line crosses k times costs k element operations per
event instead of one per vertex. A polygon of a few edges (the debris gate's 4, the
singlet wedge's 3) skips the sort: every event is tested against every edge, the loop
matplotlib runs, in numpy (3 edges: 5x cheaper than sorting a million events; at 16 edges
the two cost the same). The answer is matplotlib's, event for event, either way,
including events on an edge or a vertex (``tests/test_gating_polygon.py`` compares both).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["points_in_polygon"]

#: Up to this many edges every event is tested against every edge (no sort).
DIRECT_MAX_EDGES = 8


def points_in_polygon(x: ArrayLike, y: ArrayLike, vertices: ArrayLike) -> NDArray[np.bool_]:
    """Events inside a polygon by the even-odd rule, exactly as matplotlib decides.

    The rule and its arithmetic are those of matplotlib's ``point_in_path_impl`` (Haines'
    crossings test): an edge from ``(x0, y0)`` to ``(x1, y1)`` counts for the event
    ``(tx, ty)`` when ``(y0 >= ty) != (y1 >= ty)`` and
    ``((y1 - ty) * (x0 - x1) >= (x1 - tx) * (y0 - y1)) == (y1 >= ty)``; the polygon is
    closed from its last vertex back to the first; events with a non-finite coordinate are
    outside.

    Parameters
    ----------
    x, y
        Event coordinates (converted to float64, as matplotlib does).
    vertices
        ``(n, 2)`` polygon vertices, not repeating the first at the end.

    Returns
    -------
    numpy.ndarray of bool
        True for events inside; all False for fewer than 3 vertices.
    """
    tx = np.asarray(x, dtype=np.float64).ravel()
    ty = np.asarray(y, dtype=np.float64).ravel()
    if tx.shape != ty.shape:
        raise ValueError(f"x and y differ in length: {tx.size} and {ty.size}")
    v = np.asarray(vertices, dtype=np.float64).reshape(-1, 2)
    inside = np.zeros(tx.size, dtype=bool)
    if len(v) < 3 or tx.size == 0:
        return inside
    if len(v) <= DIRECT_MAX_EDGES:
        return _crossings_every_edge(tx, ty, v)
    # An edge can only count for an event whose height lies in (lower end, upper end]:
    # outside (min, max] of all vertices every edge has both ends on one side.
    lo, hi = float(v[:, 1].min()), float(v[:, 1].max())
    candidates = np.flatnonzero((ty > lo) & (ty <= hi) & np.isfinite(tx))
    if candidates.size == 0:
        return inside
    order = candidates[np.argsort(ty[candidates])]
    ys, xs = ty[order], tx[order]
    parity = np.zeros(order.size, dtype=bool)
    x0s, y0s = v[:, 0], v[:, 1]
    x1s, y1s = np.roll(x0s, -1), np.roll(y0s, -1)
    # the events of each edge: heights in (min(y0, y1), max(y0, y1)]
    starts = np.searchsorted(ys, np.minimum(y0s, y1s), side="right")
    stops = np.searchsorted(ys, np.maximum(y0s, y1s), side="right")
    for x0, y0, x1, y1, a, b in zip(x0s, y0s, x1s, y1s, starts, stops, strict=True):
        if a >= b:
            continue
        # in this run (y1 >= ty) is the same for every event: True when the edge rises
        upward = bool(y1 > y0)
        t_y, t_x = ys[a:b], xs[a:b]
        crosses = ((y1 - t_y) * (x0 - x1) >= (x1 - t_x) * (y0 - y1)) == upward
        parity[a:b] ^= crosses
    inside[order] = parity
    return inside


def _crossings_every_edge(
    tx: NDArray[np.float64], ty: NDArray[np.float64], v: NDArray[np.float64]
) -> NDArray[np.bool_]:
    """The crossing rule for every event and every edge: matplotlib's loop, in numpy."""
    parity = np.zeros(tx.size, dtype=bool)
    x0s, y0s = v[:, 0], v[:, 1]
    x1s, y1s = np.roll(x0s, -1), np.roll(y0s, -1)
    for x0, y0, x1, y1 in zip(x0s, y0s, x1s, y1s, strict=True):
        below0, below1 = y0 >= ty, y1 >= ty
        crosses = ((y1 - ty) * (x0 - x1) >= (x1 - tx) * (y0 - y1)) == below1
        crosses &= below0 != below1
        parity ^= crosses
    parity &= np.isfinite(tx)
    return parity
