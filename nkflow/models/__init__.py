"""nkflow.models: scikit-learn estimators for clustering cytometry data.

- :class:`SOM`: a self-organising map with FlowSOM's learning-rate and radius schedules,
  trained in BLAS mini-batches.
- :class:`ConsensusMetaclustering`: consensus hierarchical clustering of SOM nodes
  (FlowSOM's ConsensusClusterPlus approach), fixed or automatic number of clusters.
- :func:`metacluster_nodes`: metacluster a SOM's occupied nodes, empty ones follow their
  nearest neighbour.
- :func:`hungarian_f1`: agreement of clusters with labels (one-to-one matching, mean F1).
"""

from typing import TYPE_CHECKING

from .._lazy import attach

if TYPE_CHECKING:  # at run time each module loads on first use (nkflow._lazy)
    from nkflow.models.metacluster import (
        ConsensusMetaclustering,
        cdf_area,
        hungarian_f1,
        metacluster_nodes,
    )
    from nkflow.models.som import SOM, bmu_search, grid_distances

__all__ = [
    "SOM",
    "ConsensusMetaclustering",
    "bmu_search",
    "cdf_area",
    "grid_distances",
    "hungarian_f1",
    "metacluster_nodes",
]

__getattr__, __dir__ = attach(
    __name__,
    {
        "metacluster": ["ConsensusMetaclustering", "cdf_area", "hungarian_f1", "metacluster_nodes"],
        "som": ["SOM", "bmu_search", "grid_distances"],
    },
)
