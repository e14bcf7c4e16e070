"""How large a clustering the cells and markers of a batch support.

FlowSOM's 10 x 10 map with 10 metaclusters assumes thousands of cells: each SOM node's
profile is a median over the cells it won, and a metacluster is named from the median of
its cells. On a thin batch the same settings make nodes of one or two cells and named
"phenotypes" of a handful (CytoNorm's six CyTOF tubes: 135 NK cells, 1.4 per node, named
metaclusters of 1, 3, 4 and 5 cells). The rule, in numbers an analyst can check:

* at least :data:`MIN_CELLS_PER_NODE` (10) training cells per SOM node on average: the
  median of n cells moves by about 1.25 / sqrt(n) of the population's spread from draw to
  draw, so 10 cells put a node's median within about 0.4 spread, enough to tell nodes one
  spread apart. A larger grid is shrunk, longer side first, never below 3 x 3
  (:data:`MIN_SIDE`; a smaller map has no neighbourhood to organise: every node borders
  every other) and never above the configured one;
* at least :data:`MIN_CELLS_PER_METACLUSTER` (20, two nodes' worth) training cells per
  metacluster on average: the metacluster count is lowered to fit (and never exceeds the
  nodes it merges);
* no clustering below :data:`MIN_CELLS` (90: 10 cells per node on the 3 x 3 map) training
  cells, nor on fewer than :data:`MIN_MARKERS` (3) markers: with one or two markers the
  gating plots already show every phenotype, and metaclusters only cut one marker's range
  into pieces ("(NK1.1hi) [1]", "(NK1.1hi) [2]" on mouse 68983's CD8 and NK1.1).

A batch of many thousand cells (the 10 x 10 default needs 1,000 and 10 metaclusters 200)
is clustered exactly as configured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "MIN_CELLS",
    "MIN_CELLS_PER_METACLUSTER",
    "MIN_CELLS_PER_NODE",
    "MIN_MARKERS",
    "MIN_SIDE",
    "ClusterSize",
    "cluster_size",
    "refusal",
]

#: fewest training cells per SOM node on average (a node's median over 10 cells)
MIN_CELLS_PER_NODE = 10
#: the smallest side the SOM grid is shrunk to
MIN_SIDE = 3
#: fewest training cells per metacluster on average (two nodes' worth)
MIN_CELLS_PER_METACLUSTER = 2 * MIN_CELLS_PER_NODE
#: fewest training cells clustered at all: 10 per node on the 3 x 3 map
MIN_CELLS = MIN_CELLS_PER_NODE * MIN_SIDE * MIN_SIDE
#: fewest clustering markers
MIN_MARKERS = 3


@dataclass(frozen=True)
class ClusterSize:
    """The SOM grid and metacluster bound a clustering uses, and why it differs.

    Attributes
    ----------
    xdim, ydim
        The SOM grid to train (at most the one asked for).
    n_metaclusters
        The metacluster count to make; ``None``: chosen from the data, up to
        ``max_metaclusters``.
    max_metaclusters
        The upper bound of an automatic choice.
    notes
        One sentence per setting lowered, naming the numbers (empty when none was).
    """

    xdim: int
    ydim: int
    n_metaclusters: int | None
    max_metaclusters: int
    notes: tuple[str, ...] = ()


def refusal(n_cells: int, markers: Sequence[str], population: str | None = "NK") -> str:
    """Why ``n_cells`` training cells on ``markers`` are too thin to cluster; ``""`` if not.

    Parameters
    ----------
    n_cells
        Training cells pooled across the batch.
    markers
        The clustering markers.
    population
        The population clustered, for the wording.

    Returns
    -------
    str
        The reason in words (for a report or an error message), or ``""``.
    """
    what = f"{population} " if population else ""
    if n_cells < MIN_CELLS:
        return (
            f"{n_cells:,} {what}training cell(s) in the batch, fewer than the {MIN_CELLS} "
            f"clustering needs ({MIN_CELLS_PER_NODE} per node of the smallest map, "
            f"{MIN_SIDE}×{MIN_SIDE}); the gated populations are the result"
        )
    if len(markers) < MIN_MARKERS:
        names = ", ".join(markers) or "none"
        return (
            f"only {len(markers)} clustering marker(s) ({names}), fewer than the "
            f"{MIN_MARKERS} clustering needs: with one or two markers the gating plots "
            "already show every phenotype, and metaclusters would only cut their range "
            "into pieces"
        )
    return ""


def cluster_size(
    n_cells: int,
    xdim: int,
    ydim: int,
    n_metaclusters: int | None,
    max_metaclusters: int,
    population: str | None = "NK",
) -> ClusterSize:
    """The largest grid and metacluster count ``n_cells`` training cells support.

    The grid keeps at least :data:`MIN_CELLS_PER_NODE` cells per node (shrunk longer side
    first, not below :data:`MIN_SIDE`); the metacluster count at least
    :data:`MIN_CELLS_PER_METACLUSTER` cells per metacluster and at most one per node.
    Settings the cells support are returned as given.

    Parameters
    ----------
    n_cells
        Training cells pooled across the batch (at least :data:`MIN_CELLS`; see
        :func:`refusal`).
    xdim, ydim
        The SOM grid asked for.
    n_metaclusters
        The metacluster count asked for, or ``None`` (chosen from the data).
    max_metaclusters
        The upper bound of the automatic choice.
    population
        The population clustered, for the wording.

    Returns
    -------
    ClusterSize
        What to fit, and a sentence for each setting lowered.
    """
    what = f"{population} " if population else ""
    per_node = n_cells // MIN_CELLS_PER_NODE
    x, y = xdim, ydim
    while x * y > per_node and max(x, y) > MIN_SIDE:
        if x >= y:  # the longer side first; the grid stays near square
            x -= 1
        else:
            y -= 1
    notes = []
    if (x, y) != (xdim, ydim):
        notes.append(
            f"the SOM grid was lowered from {xdim}×{ydim} to {x}×{y}: {n_cells:,} {what}"
            f"training cells give {n_cells / (x * y):.1f} per node, and a node needs at "
            f"least {MIN_CELLS_PER_NODE} on average for its median to be more than noise"
        )
    bound = min(x * y, n_cells // MIN_CELLS_PER_METACLUSTER)
    k = n_metaclusters
    if k is not None and k > bound:
        notes.append(
            f"{bound} metaclusters were made, not the {k} asked for: {n_cells:,} {what}"
            f"training cells support at most one per {MIN_CELLS_PER_METACLUSTER} cells "
            f"(two nodes' worth) and one per node of the {x}×{y} map"
        )
        k = bound
    top = max_metaclusters
    if n_metaclusters is None and top > bound:
        notes.append(
            f"the metacluster count was chosen from 2 to {bound}, not up to "
            f"{max_metaclusters}: {n_cells:,} {what}training cells support at most one per "
            f"{MIN_CELLS_PER_METACLUSTER} cells and one per node of the {x}×{y} map"
        )
        top = bound
    return ClusterSize(xdim=x, ydim=y, n_metaclusters=k, max_metaclusters=top, notes=tuple(notes))
