"""nkflow.pl: plots. Every function returns a matplotlib Figure and never saves it.

- gating: :func:`gate_plot` (one gate on its parent's density), :func:`gate_grid`;
- populations: :func:`frequencies`, :func:`frequency_heatmap`;
- clusters: :func:`heatmap`, :func:`abundance`, :func:`embedding`;
- scoring: :func:`repair_profile`.
"""

from __future__ import annotations

from . import cluster, gating, populations, score
from .cluster import abundance, embedding, heatmap
from .gating import gate_grid, gate_plot
from .populations import frequencies, frequency_heatmap
from .score import repair_profile

__all__ = [
    "abundance",
    "cluster",
    "embedding",
    "frequencies",
    "frequency_heatmap",
    "gate_grid",
    "gate_plot",
    "gating",
    "heatmap",
    "populations",
    "repair_profile",
    "score",
]
