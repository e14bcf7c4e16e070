"""Batch-level steps of a run: templates, control thresholds, clustering, scoring.

Each function takes plain tables and per-sample work products and returns tables, so
:func:`nkflow.pipeline.run` reads as the data flow of ARCHITECTURE.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from ..config import RunConfig
from ..exceptions import GatingTemplateError
from ..gating.template import load_template
from ..tl.annotate import abundance_table, median_table
from ..tl.cluster import ClusteringResult, cluster
from ..tl.counts import count_positive
from .sample import sample_seed

__all__ = [
    "ANALYSED_ROLES",
    "BatchClusters",
    "choose_template",
    "cluster_batch",
    "is_stimulated",
]

logger = logging.getLogger(__name__)

ANALYSED_ROLES = ("sample", "unstim", "stim", "positive_control")


def choose_template(row: Mapping[str, Any], config: RunConfig) -> str:
    """The gating template for one sample: the configured one, or by species and tissue.

    ``"auto"`` picks ``mouse`` for mouse samples, ``human_blood`` for human blood/PBMC
    and ``human_tissue`` (NKp46-anchored, for digests) for any other human tissue.
    """
    name = config.gating.template
    if name != "auto":
        return name
    species = str(row.get("species", "") or "human").lower()
    if species == "mouse":
        return "mouse"
    if species not in ("human", ""):
        raise GatingTemplateError(
            f"sample {row.get('sample_id')!r}: species {species!r} has no default template; "
            "valid: human, mouse (or pass --template)"
        )
    tissue = str(row.get("tissue", "") or "blood").lower()
    return "human_blood" if tissue in ("blood", "pbmc", "peripheral blood") else "human_tissue"


def is_stimulated(row: Mapping[str, Any]) -> bool:
    """True for a stimulated tube (``stimulation == "stim"`` or ``role == "stim"``)."""
    return str(row.get("stimulation", "")) == "stim" or str(row.get("role", "")) == "stim"


@dataclass
class BatchClusters:
    """What :func:`cluster_batch` returns.

    Attributes
    ----------
    result
        The fitted clustering.
    counts
        Per-sample metacluster counts for scoring (``count_positive`` rows).
    abundance
        Per-sample metacluster abundance.
    medians
        Per-sample metacluster median expression (long format).
    """

    result: ClusteringResult
    counts: pd.DataFrame
    abundance: pd.DataFrame
    medians: pd.DataFrame


def cluster_batch(
    kept: Mapping[str, Callable[[], ad.AnnData | None]],
    config: RunConfig,
    on_assigned: Callable[[str, ad.AnnData], None] | None = None,
) -> BatchClusters | None:
    """Cluster the kept population of every sample, streaming one sample at a time.

    Pass 1 draws at most ``per_sample_cap`` cells from each sample (seeded per sample)
    and fits the SOM and the metaclustering on the pooled draw; pass 2 maps every cell
    of each sample, counts positives per metacluster and summarises it, then releases it.
    Memory is the pooled training set plus one sample.

    Parameters
    ----------
    kept
        ``{sample_id: loader}``; each loader returns the sample's kept (NK) events.
    config
        The run configuration.
    on_assigned
        Called with each sample after its cells were mapped (e.g. to save the labels).

    Returns
    -------
    BatchClusters or None
        ``None`` when no sample had cells to cluster.
    """
    c = config.clustering
    seed = config.execution.random_state
    training: dict[str, ad.AnnData] = {}
    for sid, load in kept.items():
        adata = load()
        if adata is None or adata.n_obs == 0:
            continue
        if adata.n_obs > c.per_sample_cap:
            rng = np.random.default_rng(sample_seed(seed, sid))
            rows = np.sort(rng.choice(adata.n_obs, size=c.per_sample_cap, replace=False))
            adata = adata[rows].copy()
        training[sid] = adata
    if not training:
        logger.warning("clustering skipped: no sample has %s events", c.population)
        return None
    result = cluster(
        training,
        markers=list(c.markers) or None,
        population=c.population,
        per_sample_cap=c.per_sample_cap,
        xdim=c.xdim,
        ydim=c.ydim,
        rlen=c.rlen,
        alpha=(c.alpha_start, c.alpha_end),
        batch_size=c.batch_size,
        min_updates_per_pass=c.min_updates_per_pass,
        min_batch_size=c.min_batch_size,
        som_init=c.som_init,
        n_metaclusters=c.n_metaclusters,
        linkage=c.linkage,
        final_linkage=c.final_linkage,
        n_resamples=c.n_resamples,
        resample_fraction=c.resample_fraction,
        random_state=seed,
        assign=False,
    )
    del training
    pops = [f"metacluster:{k}" for k in result.categories]
    counts, abundance, medians = [], [], []
    for sid, load in kept.items():
        adata = load()
        if adata is None or adata.n_obs == 0:
            continue
        result.assign(adata)
        counts.append(count_positive(adata, populations=pops, cluster_key="metacluster"))
        abundance.append(abundance_table({sid: adata}, result))
        medians.append(median_table({sid: adata}, result))
        if on_assigned is not None:
            on_assigned(sid, adata)
    return BatchClusters(
        result=result,
        counts=pd.concat(counts, ignore_index=True),
        abundance=pd.concat(abundance, ignore_index=True),
        medians=pd.concat(medians, ignore_index=True),
    )


def template_hashes(names: list[str]) -> dict[str, str]:
    """``{template name: content hash}`` for provenance."""
    out = {}
    for name in sorted(set(names)):
        tpl = load_template(name)
        out[tpl.name] = tpl.hash
    return out
