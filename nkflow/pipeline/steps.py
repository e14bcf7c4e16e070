"""Batch-level steps of a run: templates, control thresholds, clustering, scoring.

Each function takes plain tables and per-sample work products and returns tables, so
:func:`nkflow.pipeline.run` reads as the data flow of ARCHITECTURE.md.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import anndata as ad
import pandas as pd

from ..config import RunConfig
from ..exceptions import GatingTemplateError, NkflowError
from ..gating.apply import fmo_thresholds
from ..gating.template import load_template
from ..tl.cluster import ClusteringResult, cluster
from ..tl.counts import count_positive

__all__ = [
    "ANALYSED_ROLES",
    "choose_template",
    "cluster_batch",
    "control_thresholds",
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


def control_thresholds(
    metadata: pd.DataFrame,
    reader: Callable[[str], ad.AnnData],
    config: RunConfig,
    on_failure: Callable[[str, BaseException], None],
) -> pd.DataFrame:
    """FMO-derived thresholds per tissue and batch, one FMO tube at a time.

    Parameters
    ----------
    metadata
        The metadata sheet.
    reader
        ``sample_id -> AnnData`` (read, QC, compensate, transform).
    config
        The run configuration.
    on_failure
        Called with the sample id and the error of an FMO tube that failed; the others go
        on and tissues without a usable FMO fall back to the template's documented rule.

    Returns
    -------
    pandas.DataFrame
        One row per threshold (docs/contracts.md ``thresholds`` columns).
    """
    fmo = metadata[metadata["role"].astype(str).str.startswith("fmo:")]
    records: list[dict[str, Any]] = []
    for idx, row in fmo.iterrows():
        try:
            tpl = load_template(choose_template(row, config))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                found = fmo_thresholds(
                    metadata.loc[[idx]],
                    reader,
                    tpl,
                    random_state=config.execution.random_state,
                    n_boot=config.gating.bootstrap,
                    fmo_percentile=config.gating.fmo_percentile,
                )
        except NkflowError as exc:
            on_failure(str(row["sample_id"]), exc)
            continue
        for t in found:
            rec = t.to_record()
            rec["template"] = tpl.name
            records.append(rec)
    return pd.DataFrame.from_records(records)


def cluster_batch(
    kept: Mapping[str, ad.AnnData],
    config: RunConfig,
) -> tuple[ClusteringResult | None, pd.DataFrame]:
    """Cluster the kept population of every sample and count positives per metacluster.

    Parameters
    ----------
    kept
        ``{sample_id: AnnData}`` of the kept (NK) events of each sample.
    config
        The run configuration.

    Returns
    -------
    result, counts
        The fitted clustering (``None`` when there was nothing to cluster) and the
        per-sample metacluster counts for scoring.
    """
    c = config.clustering
    usable = {sid: a for sid, a in kept.items() if a.n_obs > 0}
    if not usable:
        logger.warning("clustering skipped: no sample has %s events", c.population)
        return None, pd.DataFrame()
    result = cluster(
        usable,
        markers=list(c.markers) or None,
        population=c.population,
        per_sample_cap=c.per_sample_cap,
        xdim=c.xdim,
        ydim=c.ydim,
        n_metaclusters=c.n_metaclusters,
        random_state=config.execution.random_state,
        assign=True,
    )
    frames = []
    for adata in usable.values():
        pops = [f"metacluster:{k}" for k in result.categories]
        frames.append(count_positive(adata, populations=pops, cluster_key="metacluster"))
    return result, pd.concat(frames, ignore_index=True)


def template_hashes(names: list[str]) -> dict[str, str]:
    """``{template name: content hash}`` for provenance."""
    out = {}
    for name in sorted(set(names)):
        tpl = load_template(name)
        out[tpl.name] = tpl.hash
    return out
