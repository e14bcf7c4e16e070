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
from collections.abc import Callable
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


def _drawn(what: str, draw: Callable[[], dict[str, Any]]) -> dict[str, bytes]:
    """``draw()``'s figures as PNG bytes; a figure must never fail the run (logged, left out)."""
    try:
        return _png(draw())
    except Exception as exc:
        logger.warning("%s not drawn: %s", what, exc)
        return {}


def population_figures(arg: tuple[pd.DataFrame, pd.DataFrame, str]) -> dict[str, bytes]:
    """Population-frequency figure ``name`` of ``(populations table, metadata sheet, name)``.

    ``name`` is one of :data:`nkflow.report.html.POPULATION_FIGURES`; a run draws each on
    its own worker.
    """
    populations, metadata, name = arg

    def draw() -> dict[str, Any]:
        from ..report.html import population_figures

        return population_figures(populations, metadata, names=(name,))

    return _drawn(f"population figure {name}", draw)


def cluster_heatmap(result: Any) -> dict[str, bytes]:
    """The metacluster heatmap of a ``ClusteringResult`` (its training medians).

    It needs only the fitted clustering, so a run draws it while the samples are mapped.
    """

    def draw() -> dict[str, Any]:
        from ..pl import cluster as plc

        return {"clusters_heatmap": plc.heatmap(result)}

    return _drawn("cluster heatmap", draw)


def cluster_abundance(abundance: pd.DataFrame) -> dict[str, bytes]:
    """The metacluster abundance bars of the abundance table (every mapped sample)."""

    def draw() -> dict[str, Any]:
        from ..pl import cluster as plc

        return {"clusters_abundance": plc.abundance(abundance)}

    return _drawn("cluster abundance figure", draw)


def score_figures(result: Any) -> dict[str, bytes]:
    """One repair-profile figure per stimulation condition of a ``ScoreResult``."""

    def draw() -> dict[str, Any]:
        from ..pl import score as pls

        return pls.repair_profiles(result)

    figures = _drawn("repair profile figure", draw)
    if len(figures) == 1:
        return {"repair_profile": next(iter(figures.values()))}
    return {
        f"repair_condition {cond}: AREG net, polarisation, clearance": fig
        for cond, fig in figures.items()
    }
