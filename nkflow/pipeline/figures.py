"""The report's batch figures, drawn where a core is free and handed over as PNG bytes.

The population, cluster and repair-profile figures are matplotlib figures of the batch's
tables. A run starts each one on the worker pool as soon as its inputs exist
(:meth:`nkflow.parallel.SampleExecutor.submit`), so they are drawn while the main
process clusters, scores and writes tables; each function here is one such task and
returns ``{figure name: PNG bytes}``. A figure never fails the run: a failure is logged
and the figure left out, as before.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

__all__ = [
    "cluster_abundance",
    "cluster_heatmap",
    "population_figures",
    "score_figures",
]

logger = logging.getLogger("nkflow.pipeline.run")


def _png(figures: dict[str, Any]) -> dict[str, bytes]:
    from ..report.figures import figure_png  # matplotlib only where a figure is drawn

    return {name: figure_png(fig) for name, fig in figures.items()}


def population_figures(arg: tuple[pd.DataFrame, pd.DataFrame, str]) -> dict[str, bytes]:
    """Population-frequency figure ``name`` of ``(populations table, metadata sheet, name)``.

    ``name`` is one of :data:`nkflow.report.html.POPULATION_FIGURES`; a run draws each on
    its own worker.
    """
    from ..report.html import population_figures as draw

    populations, metadata, name = arg
    try:
        return _png(draw(populations, metadata, names=(name,)))
    except Exception as exc:  # a figure must never fail the run
        logger.warning("population figure %s not drawn: %s", name, exc)
        return {}


def cluster_heatmap(result: Any) -> dict[str, bytes]:
    """The metacluster heatmap of a ``ClusteringResult`` (its training medians).

    It needs only the fitted clustering, so a run draws it while the samples are mapped.
    """
    try:
        from ..pl import cluster as plc

        return _png({"clusters_heatmap": plc.heatmap(result)})
    except Exception as exc:  # a figure must never fail the run
        logger.warning("cluster heatmap not drawn: %s", exc)
        return {}


def cluster_abundance(abundance: pd.DataFrame) -> dict[str, bytes]:
    """The metacluster abundance bars of the abundance table (every mapped sample)."""
    try:
        from ..pl import cluster as plc

        return _png({"clusters_abundance": plc.abundance(abundance)})
    except Exception as exc:  # a figure must never fail the run
        logger.warning("cluster abundance figure not drawn: %s", exc)
        return {}


def score_figures(result: Any) -> dict[str, bytes]:
    """One repair-profile figure per stimulation condition of a ``ScoreResult``."""
    try:
        from ..pl import score as pls

        figures = _png(pls.repair_profiles(result))
    except Exception as exc:  # a figure must never fail the run
        logger.warning("repair profile figure not drawn: %s", exc)
        return {}
    if len(figures) == 1:
        return {"repair_profile": next(iter(figures.values()))}
    return {
        f"repair_condition {cond}: AREG net, polarisation, clearance": fig
        for cond, fig in figures.items()
    }
