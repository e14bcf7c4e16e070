"""nkflow.pl: plots. Every function returns a matplotlib Figure and never saves it.

The figures are made outside pyplot (``plt.get_fignums()`` stays empty) and show
themselves in Jupyter even when pyplot was never imported (:mod:`nkflow.pl._figure`).

- gating: :func:`gate_plot` (one gate on its parent's density), :func:`gate_grid`; what
  each gating panel shows is plain data from :mod:`nkflow.pl.gating_panels` (shared with
  the report's SVG gate grid, which draws without matplotlib figures);
- populations: :func:`frequencies`, :func:`frequency_heatmap`;
- clusters: :func:`heatmap`, :func:`abundance`, :func:`embedding`;
- scoring: :func:`repair_profile` (one condition), :func:`repair_profiles` (one each).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import attach

if TYPE_CHECKING:  # at run time each module loads on first use (nkflow._lazy)
    from . import cluster, gating, populations, score
    from .cluster import abundance, embedding, heatmap
    from .gating import gate_grid, gate_plot
    from .populations import frequencies, frequency_heatmap
    from .score import repair_profile, repair_profiles

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
    "repair_profiles",
    "score",
]

__getattr__, __dir__ = attach(
    __name__,
    {
        "cluster": ["abundance", "embedding", "heatmap"],
        "gating": ["gate_grid", "gate_plot"],
        "populations": ["frequencies", "frequency_heatmap"],
        "score": ["repair_profile", "repair_profiles"],
    },
    submodules=["cluster", "gating", "populations", "score"],
)
