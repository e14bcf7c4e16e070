"""Batch-level steps of a run: templates, control thresholds, clustering, scoring.

Each function takes plain tables and per-sample work products and returns tables, so
:func:`nkflow.pipeline.stages.run_prepared` reads as the data flow of ARCHITECTURE.md.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from .._seeds import sample_seed
from ..config import RunConfig
from ..exceptions import ClusterSizeWarning, GatingTemplateError
from ..gating.membership import member_mask
from ..gating.panel_view import SPECIES_TELLS
from ..gating.resolve import infer_species
from ..gating.template import load_template
from ..io.metadata import POSITIVE_CONTROL, SAMPLE_ROLES, is_blood, is_stimulated
from ..parallel import SampleExecutor
from ..tl._cluster_size import refusal
from ..tl.annotate import abundance_table, median_table
from ..tl.cluster import (
    LINEAGE_MARKERS,
    STIMULATION_LABILE_MARKERS,
    ClusteringResult,
    cluster,
    default_markers,
)
from ..tl.counts import count_positive

#: what an analyst does about a file whose species nothing tells
SPECIES_FIX = "add a 'species' column (human | mouse) to a metadata sheet or pass --template"

__all__ = [
    "ANALYSED_ROLES",
    "SPECIES_FIX",
    "STIMULATION_LABILE_MARKERS",
    "BatchClusters",
    "choose_template",
    "cluster_batch",
    "is_stimulated",
]

logger = logging.getLogger(__name__)

#: the tubes a run gates and scores: samples (a read sheet holds no ``""`` role: it reads as
#: ``sample``) and the positive control
ANALYSED_ROLES = (*(r for r in SAMPLE_ROLES if r), POSITIVE_CONTROL)


def fmo_tubes(meta: pd.DataFrame) -> pd.DataFrame:
    """The sheet's FMO tubes (``role = "fmo:<MARKER>"``): the controls stage's tubes."""
    return meta[meta["role"].str.startswith("fmo:")]


def sample_waves(meta: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The analysed tubes in the order they run: unstimulated ones, then stimulated ones.

    A stimulated tube needs its unstimulated partner's results.
    """
    todo = meta[meta["role"].isin(ANALYSED_ROLES)]
    stim = todo.apply(is_stimulated, axis=1) if len(todo) else pd.Series(dtype=bool)
    return todo[~stim], todo[stim]


def reading_order(meta: pd.DataFrame) -> list[Any]:
    """Index labels of the sheet's rows in the order a run reads their files.

    FMO tubes (:func:`fmo_tubes`), then the :func:`sample_waves` (the batch pool reads
    unstimulated tubes of the first), then the rows no stage reads.
    """
    first = [*fmo_tubes(meta).index, *(i for wave in sample_waves(meta) for i in wave.index)]
    taken = set(first)
    return first + [i for i in meta.index if i not in taken]


def choose_template(
    row: Mapping[str, Any],
    config: RunConfig,
    *,
    panel_markers: Iterable[str] | None = None,
    technology: str | None = None,
) -> str:
    """The gating template for one sample: the configured one, or by species, technology, tissue.

    ``"auto"`` picks ``mouse`` for mouse samples; for human ones ``human_cytof`` on mass
    cytometry, ``human_blood`` for blood/PBMC and ``human_tissue`` (NKp46-anchored, for
    digests) for any other tissue.

    Parameters
    ----------
    row
        The sample's metadata row (``species``, ``tissue``, ``technology`` where known).
    config
        The run configuration (``gating.template``).
    panel_markers
        The batch's markers. Species comes from the sheet, else from these
        (:func:`nkflow.gating.resolve.infer_species`: NK1.1, DX5, Ly49 -> mouse; CD56, HLA-DR
        ... -> human), else a :class:`GatingTemplateError`. Without them a missing species
        is taken as human (the behaviour before panels were consulted).
    technology
        ``"flow"`` or ``"cytof"``; default the row's ``technology``, else flow.

    Raises
    ------
    GatingTemplateError
        Unknown species, or no species in the sheet and none the panel can tell.
    """
    name = config.gating.template
    if name != "auto":
        return name
    species = str(row.get("species", "") or "").lower()
    if not species:
        if panel_markers is None:
            species = "human"
        else:
            markers = list(panel_markers)
            species = infer_species(markers) or ""
            if not species:
                raise GatingTemplateError(
                    f"sample {row.get('sample_id')!r}: no species in the metadata and the "
                    f"panel ({', '.join(m for m in markers if m) or 'no named markers'}) does "
                    f"not tell ({SPECIES_TELLS}); {SPECIES_FIX}"
                )
    if species == "mouse":
        return "mouse"
    if species != "human":
        raise GatingTemplateError(
            f"sample {row.get('sample_id')!r}: species {species!r} has no default template; "
            "valid: human, mouse (or pass --template)"
        )
    tech = str(technology or row.get("technology", "") or "flow").lower()
    if tech in ("cytof", "mass", "mass cytometry", "imc"):
        return "human_cytof"
    tissue = str(row.get("tissue", "") or "blood")
    return "human_blood" if is_blood(tissue) else "human_tissue"


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
    *,
    fit_on: Collection[str] | None = None,
    exclude_markers: Sequence[str] = (),
    executor: SampleExecutor | None = None,
    on_fitted: Callable[[ClusteringResult], None] | None = None,
    skipped: list[str] | None = None,
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
    fit_on
        Sample ids whose cells train the SOM (e.g. the unstimulated tubes, so that
        stimulation cannot create its own metaclusters); ``None``: every sample. Every
        sample is mapped either way.
    exclude_markers
        Further markers left out of the default marker set (``clustering.markers`` empty);
        :func:`~nkflow.tl.cluster.default_markers` already leaves out the lineage markers
        and those stimulation moves (:data:`STIMULATION_LABILE_MARKERS`).
    executor
        Run pass 2 one sample per task on these workers (then ``kept``'s loaders and
        ``on_assigned`` must be picklable); ``None``: in this process. Tables are the same.
    on_fitted
        Called with the fitted clustering before pass 2 (e.g. to draw its heatmap while
        the samples are mapped); pass 2 does not change it.
    skipped
        Appended with the reason, in words for the report, when no clustering is made:
        no sample has cells, or the batch is too thin to cluster (fewer than 90 training
        cells or 3 clustering markers, :func:`nkflow.tl._cluster_size.refusal`). A grid
        or metacluster count the cells do not support is lowered instead, logged, and
        said in ``result.params["sizing"]`` (:func:`nkflow.tl._cluster_size.cluster_size`).

    Returns
    -------
    BatchClusters or None
        ``None`` when no sample had cells to cluster.
    """
    c = config.clustering
    seed = config.execution.random_state
    training: dict[str, ad.AnnData] = {}
    for sid, load in kept.items():
        if fit_on is not None and sid not in fit_on:
            continue
        adata = load()
        if adata is None or adata.n_obs == 0:
            continue
        if adata.n_obs > c.per_sample_cap:
            rng = np.random.default_rng(sample_seed(seed, sid))
            rows = np.sort(rng.choice(adata.n_obs, size=c.per_sample_cap, replace=False))
            adata = adata[rows].copy()
        training[sid] = adata
    if not training:
        why = (
            f"no sample has {c.population} events (clustering.population: the gated "
            f"population clustered; a template without a {c.population!r} gate, such as a "
            "T-cell template, names its own there)"
        )
        logger.warning("clustering skipped: %s", why)
        if skipped is not None:
            skipped.append(why)
        return None
    n_cells = sum(
        int(member_mask(a.obs[c.population]).sum()) if c.population in a.obs else a.n_obs
        for a in training.values()
    )
    markers = list(c.markers) or None
    if markers is None:
        # the markers stimulation moves only when every tube mapped is resting (training
        # holds the resting ones; the stimulated tubes are mapped onto them after)
        resting_only = fit_on is not None and set(kept) <= set(fit_on)
        markers = default_markers(
            training,
            exclude=(*LINEAGE_MARKERS, *exclude_markers),
            include_stimulation_labile=resting_only,
        )
    why = refusal(n_cells, markers, c.population)  # too thin: the gates are the result
    if why:
        logger.warning("clustering skipped: %s", why)
        if skipped is not None:
            skipped.append(why)
        return None
    with warnings.catch_warnings():  # said once, below, and in the run's notes
        warnings.simplefilter("ignore", ClusterSizeWarning)
        result = cluster(
            training,
            markers=markers,
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
    for note in result.params.get("sizing", ()):
        logger.warning("clustering: %s", note)
    del training
    if on_fitted is not None:
        on_fitted(result)
    pops = [f"metacluster:{k}" for k in result.categories]
    items = [(sid, (sid, load, result, pops, on_assigned)) for sid, load in kept.items()]
    if executor is None:
        mapped = {sid: _map_sample(arg) for sid, arg in items}
    else:  # one sample per task on the run's workers; a failure fails the step as serially
        mapped = {}
        for outcome in executor.map(_map_sample, items):
            if not outcome.ok:
                raise outcome.error  # type: ignore[misc]
            mapped[outcome.key] = outcome.value
    parts = [mapped[sid] for sid in kept if mapped[sid] is not None]  # the samples' order
    counts, abundance, medians = ([p[i] for p in parts] for i in range(3))
    return BatchClusters(
        result=result,
        counts=pd.concat(counts, ignore_index=True),
        abundance=pd.concat(abundance, ignore_index=True),
        medians=pd.concat(medians, ignore_index=True),
    )


def _map_sample(
    arg: tuple[
        str,
        Callable[[], ad.AnnData | None],
        ClusteringResult,
        list[str],
        Callable[[str, ad.AnnData], None] | None,
    ],
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame] | None:
    """Pass 2 for one sample: map its cells, count and summarise them (None: no cells)."""
    sid, load, result, pops, on_assigned = arg
    adata = load()
    if adata is None or adata.n_obs == 0:
        return None
    result.assign(adata)
    counts = count_positive(adata, populations=pops, cluster_key="metacluster")
    abundance = abundance_table({sid: adata}, result)
    medians = median_table({sid: adata}, result)
    if on_assigned is not None:
        on_assigned(sid, adata)
    return counts, abundance, medians


def template_hashes(names: list[str]) -> dict[str, str]:
    """``{template name: content hash}`` for provenance."""
    out = {}
    for name in sorted(set(names)):
        tpl = load_template(name)
        out[tpl.name] = tpl.hash
    return out
