"""nkflow.tl: tools over the container — clustering, annotation, counting, repair scoring.

- :func:`cluster` trains a FlowSOM-style SOM + consensus metaclustering on a pooled,
  per-sample-capped subsample and maps every cell (:class:`ClusteringResult`).
- :func:`abundance_table`, :func:`median_table`, :func:`name_metaclusters` describe clusters.
- :func:`count_positive` counts marker-positive events per population of one sample.
- :func:`phenotype_rows` and :func:`donor_rows` keep one phenotype tube per donor, tissue,
  timepoint and batch, then one row per donor (its batches averaged): the rows the
  report's per-donor medians stand on.
- :func:`score` turns those counts into repair profiles and flags (:class:`ScoreResult`),
  :func:`compare_paired` and :func:`compare_groups` compare them across samples.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import attach

# cluster and score share their module's name, so they cannot be lazy (nkflow._lazy)
from .cluster import ClusteringResult, cluster, default_markers
from .score import NOTES, RULES, ScoreResult, score

if TYPE_CHECKING:  # at run time each module loads on first use (nkflow._lazy)
    from ._donors import donor_rows, phenotype_rows
    from ._score_config import ScoringConfig, load_scoring_config
    from .annotate import abundance_table, median_table, name_metaclusters
    from .caveats import CAVEATS, caveats_comment, caveats_text
    from .compare import benjamini_hochberg, compare_groups, compare_paired
    from .counts import count_positive, fmo_threshold

__all__ = [
    "CAVEATS",
    "NOTES",
    "RULES",
    "ClusteringResult",
    "ScoreResult",
    "ScoringConfig",
    "abundance_table",
    "benjamini_hochberg",
    "caveats_comment",
    "caveats_text",
    "cluster",
    "compare_groups",
    "compare_paired",
    "count_positive",
    "default_markers",
    "donor_rows",
    "fmo_threshold",
    "load_scoring_config",
    "median_table",
    "name_metaclusters",
    "phenotype_rows",
    "score",
]

__getattr__, __dir__ = attach(
    __name__,
    {
        "_donors": ["donor_rows", "phenotype_rows"],
        "_score_config": ["ScoringConfig", "load_scoring_config"],
        "annotate": ["abundance_table", "median_table", "name_metaclusters"],
        "caveats": ["CAVEATS", "caveats_comment", "caveats_text"],
        "compare": ["benjamini_hochberg", "compare_groups", "compare_paired"],
        "counts": ["count_positive", "fmo_threshold"],
    },
)
