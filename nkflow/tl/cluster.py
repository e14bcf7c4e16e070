"""Cluster gated cells of a whole batch: SOM + consensus metaclustering, then label.

Training uses a pooled subsample with a per-sample cap (so one large file does not dominate);
afterwards every cell of every sample is mapped, one sample at a time
(:meth:`ClusteringResult.assign`), so a batch never has to fit in memory.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from nkflow._seeds import sample_seed
from nkflow.exceptions import ChannelNotFoundError, ClusterSizeWarning, ConfigError, NkflowWarning
from nkflow.gating.membership import member_mask
from nkflow.io.channels import channel_kind
from nkflow.io.fcs import channel_for, sample_id, sample_info
from nkflow.io.metadata import is_stimulated
from nkflow.io.records import set_record
from nkflow.models import SOM, ConsensusMetaclustering, metacluster_nodes
from nkflow.tl._cluster_size import cluster_size, refusal
from nkflow.tl._marker_columns import in_marker_order
from nkflow.tl._samples import iter_samples, require_comparable
from nkflow.tl.annotate import (
    FUNCTION_MARKERS,
    metacluster_medians,
    name_metaclusters,
    resolve_thresholds,
    subset_calls,
)

from ..io.fcs import var_markers

__all__ = [
    "STIMULATION_LABILE_MARKERS",
    "ClusteringResult",
    "cluster",
    "default_markers",
    "iter_samples",
]

logger = logging.getLogger(__name__)

#: Markers that define the gated lineage (constant within NK cells), not NK phenotype:
#: the lineage gates' markers, and the markers a panel carries to exclude other cells (BIOLOGY.md
#: section 1): T cells (CD4, CD5, TCRgd, TCRb, TCRab, FoxP3), B and plasma cells (B220, CD21,
#: CD22, CD23, CD138), myeloid and dendritic cells, granulocytes, mast cells and progenitors
#: (CD15, CD33, CD64, CD66, CD66b, CD123, CD1a, CD1c, CD141, CD209, CD303, CD34, F4/80,
#: Ly6G, Gr-1, Siglec-F, FceRIa), red cells and platelets (CD235ab, Ter119, CD41), and the
#: congenic CD45.1/CD45.2. Clustering NK cells on them would split lineage-negative cells by
#: noise. Phenotype markers of NK and ILC subsets stay: CD8 (human NK carry CD8a in subsets),
#: CD61 (mouse ILC1), HLA-DR and MHCII (activated NK; the HLA-DR- gate is optional),
#: CD11b, CD11c, Ly6C, CD2, CD7, and the receptors, checkpoints and transcription factors.
LINEAGE_MARKERS = (
    "CD45", "CD45.1", "CD45.2", "CD3", "CD3e", "CD4", "CD5", "TCRgd", "TCRb", "TCRab",
    "FoxP3", "CD14", "CD19", "CD20", "B220", "CD21", "CD22", "CD23", "CD138", "CD15",
    "CD33", "CD64", "CD66", "CD66b", "CD123", "CD1a", "CD1c", "CD141", "CD209", "CD303",
    "CD34", "F4-80", "Ly6G", "Gr-1", "Siglec-F", "FceRIa", "CD235ab", "Ter119", "CD41",
)  # fmt: skip
#: Phenotype markers stimulation moves (BIOLOGY.md section 4: PMA/ADAM17 sheds CD16 and CD62L,
#: CD69 rises within hours). Left out of the default clustering markers, by the library and
#: by ``nk.run`` alike, so that stimulated and unstimulated tubes clustered (or mapped)
#: together do not split into metaclusters by stimulation.
STIMULATION_LABILE_MARKERS = ("CD69", "CD62L", "CD16")


def _viability_or_dump(marker: str) -> bool:
    """A viability dye or dump channel: nothing to cluster phenotypes on."""
    return marker == "Viability" or marker.startswith(("LD_", "Dump"))


def default_markers(
    adatas: Mapping[str, ad.AnnData] | Sequence[ad.AnnData] | ad.AnnData,
    *,
    include_function: bool = False,
    include_stimulation_labile: bool | None = None,
    exclude: Iterable[str] = LINEAGE_MARKERS,
) -> list[str]:
    """Phenotype markers shared by every sample of the batch, in panel order.

    Scatter and time channels, viability and dump channels (``Viability``, ``LD_*``,
    ``Dump*``), the lineage markers used to gate the population (``exclude``), unless
    ``include_function`` the function read-outs (AREG, IFN-g, CD107a) and, when a sample
    is stimulated (or ``include_stimulation_labile=False``), the markers stimulation moves
    (:data:`STIMULATION_LABILE_MARKERS`: CD69, CD62L, CD16) are left out.

    Parameters
    ----------
    adatas
        Samples (see :func:`iter_samples`).
    include_function
        Keep AREG, IFN-g and CD107a.
    include_stimulation_labile
        Keep CD69, CD62L and CD16. ``None``: keep them when no sample is stimulated (its
        metadata, :func:`nkflow.io.metadata.is_stimulated`), as ``nk.run`` does: stimulation sheds
        CD16 and CD62L and raises CD69, so clustering stimulated and unstimulated tubes on
        them splits metaclusters by stimulation, while in resting tubes CD16 tells CD56dim
        from CD56bright NK.
    exclude
        Further canonical markers to leave out.

    Returns
    -------
    list of str
        Canonical marker names.

    Raises
    ------
    ConfigError
        No phenotype marker is shared by every sample.

    Warns
    -----
    NkflowWarning
        When markers are left out because some samples lack them (panels differ), naming
        them and the samples without them.
    """
    pairs = list(iter_samples(adatas))
    skip = set(exclude)
    if not include_function:
        skip |= set(FUNCTION_MARKERS)
    if include_stimulation_labile is None:
        include_stimulation_labile = not any(is_stimulated(sample_info(a)) for _, a in pairs)
    if not include_stimulation_labile:
        skip |= set(STIMULATION_LABILE_MARKERS)
    common: list[str] | None = None
    names_of: dict[str, list[str]] = {}
    for sid, adata in pairs:
        var = adata.var
        kind = (
            var["kind"].astype(str)
            if "kind" in var
            else pd.Series([channel_kind(str(c)) for c in var.index], index=var.index)
        )
        names = [
            str(m)
            for m, k in zip(var_markers(adata), kind, strict=True)
            if m and k == "fluorescence" and not _viability_or_dump(m) and m not in skip
        ]
        names_of[sid] = names
        common = names if common is None else [m for m in common if m in names]
    everywhere = set(common or ())
    lacking = {  # marker -> the samples without it
        m: [sid for sid, names in names_of.items() if m not in names]
        for m in dict.fromkeys(m for names in names_of.values() for m in names)
        if m not in everywhere
    }
    if lacking and common:
        warnings.warn(
            f"cluster: {len(lacking)} marker(s) left out, not in every sample: "
            + "; ".join(
                f"{m} (not in {', '.join(s[:3])}{' ...' if len(s) > 3 else ''})"
                for m, s in lacking.items()
            )
            + f"; clustering on the {len(common)} shared: {', '.join(common)}",
            NkflowWarning,
            stacklevel=3,
        )
    if not common:
        raise ConfigError(
            "cluster: no phenotype markers are shared by all samples; pass markers=[...]"
        )
    return common


def _columns(adata: ad.AnnData, markers: Sequence[str]) -> np.ndarray:
    names = [channel_for(adata, m) for m in markers]
    return adata.var_names.get_indexer(names)


def _population_mask(adata: ad.AnnData, population: str | None, sample_id: str) -> np.ndarray:
    if population is None:
        return np.ones(adata.n_obs, dtype=bool)
    if population not in adata.obs:
        have = [c for c in adata.obs.columns if pd.api.types.is_bool_dtype(adata.obs[c])]
        raise ChannelNotFoundError(population, have, source=sample_id, what="population")
    return member_mask(adata.obs[population])  # a gate not set (<NA>) holds no cells


def _dense(adata: ad.AnnData, rows: np.ndarray | slice, cols: np.ndarray) -> np.ndarray:
    x = adata.X[rows][:, cols]
    x = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
    return np.ascontiguousarray(x, dtype=np.float32)


def _check_metaclusters(n_metaclusters: Any, xdim: Any, ydim: Any) -> None:
    """Refuse more metaclusters than SOM nodes (they merge nodes), before any work."""
    if n_metaclusters is None or not all(isinstance(v, Integral) for v in (xdim, ydim)):
        return  # the SOM names a bad grid size itself
    if not isinstance(n_metaclusters, Integral) or n_metaclusters < 1:
        raise ConfigError(
            f"cluster: n_metaclusters={n_metaclusters!r}; expected an integer >= 1 or None"
        )
    if n_metaclusters > xdim * ydim:
        raise ConfigError(
            f"cluster: n_metaclusters={n_metaclusters} exceeds the {xdim} x {ydim} = "
            f"{xdim * ydim} SOM nodes it merges; lower n_metaclusters or enlarge xdim/ydim"
        )


@dataclass
class ClusteringResult:
    """A fitted batch clustering: model, markers, per-metacluster medians and names.

    Attributes
    ----------
    som
        The fitted :class:`~nkflow.models.SOM`.
    metaclustering
        The fitted :class:`~nkflow.models.ConsensusMetaclustering` over the SOM nodes.
    markers
        Canonical markers the SOM was trained on (column order of its codes).
    label_markers
        Markers used to name metaclusters (training markers plus function read-outs).
    node_metacluster
        Metacluster (1-based) of each SOM node.
    medians
        Metacluster x marker medians of the training subsample (transformed scale).
    labels
        ``{metacluster: readable name}``.
    thresholds
        ``{marker: {"value", "rule", "source"}}`` used for the names.
    population
        The gated population clustered (obs column), or ``None`` for all cells.
    key_added
        obs column written by :meth:`assign`.
    params
        Parameters of the run (JSON-able), stored in ``uns["nkflow"]["clustering"]``.
    """

    som: SOM
    metaclustering: ConsensusMetaclustering
    markers: list[str]
    label_markers: list[str]
    node_metacluster: np.ndarray
    medians: pd.DataFrame
    labels: dict[int, str]
    thresholds: dict[str, dict[str, Any]]
    population: str | None
    key_added: str = "metacluster"
    params: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        names = "; ".join(f"{k}: {v}" for k, v in sorted(self.labels.items()))
        if len(names) > 200:
            names = names[:197] + "..."
        return (
            f"<ClusteringResult: {len(self.labels)} metaclusters of {self.population or 'all'} "
            f"cells, SOM {self.som.xdim}x{self.som.ydim} on {len(self.markers)} markers "
            f"({', '.join(self.markers)}); {names}>"
        )

    @property
    def categories(self) -> list[str]:
        """Metacluster ids as strings (``"1"``, ``"2"``, ...), the obs categories."""
        return [str(k) for k in sorted(self.labels)]

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Metacluster (1-based) of each row of ``X`` (columns in ``markers`` order).

        Like a scikit-learn estimator's ``predict`` this takes an array, not an AnnData:
        every row is mapped, whatever its population. To label a sample's cells, call
        :meth:`assign` on its AnnData (it picks the ``markers`` columns and the
        population's cells).

        Parameters
        ----------
        X
            ``(n_cells, len(markers))`` transformed intensities, columns in ``markers``
            order (a DataFrame's are taken by name).

        Returns
        -------
        numpy.ndarray
            ``(n_cells,)`` int metacluster ids.

        Raises
        ------
        ConfigError
            ``X`` is an AnnData (scikit-learn would copy it cell by cell for minutes), or
            its number of columns is not ``len(markers)``, or a DataFrame lacks a marker.
        """
        X = in_marker_order(X, self.markers, "ClusteringResult.predict")
        if isinstance(X, ad.AnnData):
            raise ConfigError(
                f"ClusteringResult.predict: got an AnnData ({X.n_obs} x {X.n_vars}); pass "
                f"an array of the {len(self.markers)} clustered markers in result.markers "
                f"order ({', '.join(self.markers)}), or call result.assign(adata) to label "
                "a sample's cells"
            )
        n_cols = np.shape(X)[1] if np.ndim(X) == 2 else None
        if n_cols is not None and n_cols != len(self.markers):
            raise ConfigError(
                f"ClusteringResult.predict: X has {n_cols} columns; expected "
                f"{len(self.markers)}, the clustered markers in order: {', '.join(self.markers)}"
            )
        return self.node_metacluster[self.som.predict(X)]

    def assign(self, adata: ad.AnnData, *, key_added: str | None = None) -> ad.AnnData:
        """Map every cell of one sample and write its labels.

        Writes ``obs[key_added]`` (categorical metacluster id; missing outside the
        population), ``obs[key_added + "_label"]`` (categorical readable name),
        ``obs["som_node"]`` (nullable Int64 node index) and
        ``uns["nkflow"]["clustering"]``.

        Parameters
        ----------
        adata
            One sample, transformed, with the population column.
        key_added
            obs column for the metacluster; defaults to the one used at fit time.

        Returns
        -------
        anndata.AnnData
            The same container (modified in place).
        """
        key = key_added or self.key_added
        sid = sample_id(adata, default="sample")
        mask = _population_mask(adata, self.population, sid)
        cols = _columns(adata, self.markers)
        node = np.full(adata.n_obs, -1, dtype=np.int64)
        idx = np.flatnonzero(mask)
        chunk = 262_144
        for start in range(0, idx.size, chunk):
            rows = idx[start : start + chunk]
            node[rows] = self.som.predict(_dense(adata, rows, cols))
        meta = np.where(node >= 0, self.node_metacluster[np.maximum(node, 0)], -1)
        cats = self.categories
        codes = np.where(meta >= 0, meta - 1, -1)
        adata.obs[key] = pd.Categorical.from_codes(codes, categories=cats)
        names = [self.labels[int(c)] for c in cats]
        adata.obs[f"{key}_label"] = pd.Categorical.from_codes(codes, categories=names)
        adata.obs["som_node"] = pd.array(np.where(node >= 0, node, None), dtype="Int64")
        set_record(adata, "clustering", {**self.params, "key_added": key})
        return adata


def cluster(
    adatas: Mapping[str, ad.AnnData] | Sequence[ad.AnnData] | ad.AnnData,
    *,
    markers: Sequence[str] | None = None,
    population: str | None = "NK",
    per_sample_cap: int = 20_000,
    xdim: int = 10,
    ydim: int = 10,
    rlen: int = 10,
    alpha: tuple[float, float] = (0.05, 0.01),
    batch_size: int = 2048,
    min_updates_per_pass: int = 128,
    min_batch_size: int = 64,
    som_init: str = "random",
    n_metaclusters: int | None = 10,
    max_metaclusters: int = 20,
    linkage: str = "average",
    final_linkage: str = "average",
    n_resamples: int = 100,
    resample_fraction: float = 0.9,
    k_selection: str = "delta_area",
    include_function: bool = False,
    include_stimulation_labile: bool | None = None,
    random_state: int | np.random.Generator | None = 0,
    key_added: str = "metacluster",
    assign: bool = True,
) -> ClusteringResult:
    """FlowSOM-style clustering of one population across a batch of samples.

    Trains a :class:`~nkflow.models.SOM` on a pooled subsample (at most ``per_sample_cap``
    population cells per sample), merges its nodes with
    :class:`~nkflow.models.ConsensusMetaclustering`, names every metacluster from its
    median profile (:func:`nkflow.tl.annotate.name_metaclusters`) and, unless
    ``assign=False``, maps every cell of every sample.

    Parameters
    ----------
    adatas
        ``{sample_id: AnnData}`` or a list of per-sample AnnData (transformed ``X``, a bool
        obs column per gated population).
    markers
        Canonical markers to cluster on; ``None`` or empty: :func:`default_markers`, which
        leaves out CD69, CD62L and CD16 (moved by stimulation) as ``nk.run`` does.
    population
        Bool obs column selecting the cells to cluster; ``None`` clusters all cells.
    per_sample_cap
        Maximum training cells drawn from each sample.
    xdim, ydim, rlen
        SOM grid (shrunk when the cells are too few for it, see Warns) and passes.
    alpha
        SOM learning rate at the start and end of training (FlowSOM: 0.05 to 0.01).
    batch_size
        Largest SOM mini-batch (cells per update); larger is faster on big pools.
    min_updates_per_pass, min_batch_size
        Smallest number of SOM updates per pass, as long as batches keep ``min_batch_size``
        cells: pools below ``batch_size * min_updates_per_pass`` cells get a schedule that
        does not depend on ``batch_size`` (see :class:`~nkflow.models.SOM`).
    som_init
        SOM codebook start: ``"random"`` cells (FlowSOM) or ``"pca"``.
    n_metaclusters
        Number of metaclusters, at most ``xdim * ydim`` (metaclusters merge SOM nodes);
        ``None`` chooses 2..``max_metaclusters`` from the consensus matrices (see
        ``k_selection``).
    max_metaclusters
        Upper bound of the automatic choice.
    linkage
        Linkage inside the consensus resamples (``"average"`` as FlowSOM, or ``"ward"``).
    final_linkage
        Linkage on ``1 - consensus`` for the final metaclusters.
    n_resamples, resample_fraction
        Consensus resampling rounds and the fraction of SOM nodes drawn in each
        (ConsensusClusterPlus ``reps`` and ``pItem``; FlowSOM: 100 and 0.9).
    k_selection
        How ``n_metaclusters=None`` picks the number: ``"delta_area"`` or ``"pac"``.
    include_function
        Cluster on AREG/IFN-g/CD107a as well (they are always used in the names).
    include_stimulation_labile
        Cluster on CD69, CD62L and CD16 as well (default markers only). ``None``: when no
        sample is stimulated (:func:`default_markers`); stimulation moves these markers,
        and metaclusters of stimulated and resting tubes would split by stimulation.
    random_state
        Seed for subsampling (each sample's draw seeded by its id), SOM and consensus
        resampling; None (or a ``numpy.random.Generator``) draws one from fresh entropy (or
        from the Generator), recorded in ``params``. The fit
        does not depend on the order of the samples: they are stacked in sample-id order.
    key_added
        obs column for the metacluster id.
    assign
        Map every cell of every sample now (else call :meth:`ClusteringResult.assign`
        sample by sample, e.g. while streaming from disk).

    Returns
    -------
    ClusteringResult
        The fitted model with markers, medians and names.

    Raises
    ------
    ConfigError
        ``n_metaclusters`` exceeds the ``xdim * ydim`` SOM nodes (checked before any
        work); the samples differ in species, technology (flow or mass cytometry) or the
        transform of a clustered marker (:func:`nkflow.tl._samples.require_comparable`),
        or share no phenotype marker; fewer than 90 training cells or fewer than 3
        clustering markers (too thin to cluster, :mod:`nkflow.tl._cluster_size`).

    Warns
    -----
    ClusterSizeWarning
        The grid was shrunk to keep 10 training cells per node (not below 3 x 3), or the
        metacluster count lowered to one per 20 cells (:mod:`nkflow.tl._cluster_size`);
        ``params`` keeps what was asked (``*_requested``) and why (``sizing``).

    Notes
    -----
    To stream a batch that does not fit in memory, pass per-sample *subsamples* (for example
    :func:`nkflow.pp.subsample` of each sample's population, read one file at a time) with
    ``assign=False``, then load each full sample again and call
    :meth:`ClusteringResult.assign` on it.
    """
    pairs = iter_samples(adatas)
    if not isinstance(per_sample_cap, Integral) or per_sample_cap < 1:
        raise ConfigError(f"cluster: per_sample_cap={per_sample_cap!r}; expected an integer >= 1")
    _check_metaclusters(n_metaclusters, xdim, ydim)
    xdim_requested, ydim_requested = xdim, ydim
    markers = (
        list(markers)
        if markers  # None or empty (the config's default) means the panel's markers
        else default_markers(
            adatas,
            include_function=include_function,
            include_stimulation_labile=include_stimulation_labile,
        )
    )
    require_comparable(pairs, markers)
    extra = [m for m in FUNCTION_MARKERS if m not in markers]
    label_markers = markers + [
        m for m in extra if all((var_markers(a) == m).any() for _, a in pairs)
    ]
    if random_state is None or isinstance(random_state, np.random.Generator):
        # fresh entropy (or the Generator's), drawn once: the samples' draws derive from it
        random_state = int(np.random.default_rng(random_state).integers(2**31 - 1))
    train, train_lab, subset_rows = [], [], []
    # the training rows in sample-id order and each sample's draw seeded by its id: the
    # fit must not depend on the order the samples come in (a sheet's row order)
    for sid, adata in sorted(pairs, key=lambda pair: pair[0]):
        mask = _population_mask(adata, population, sid)
        idx = np.flatnonzero(mask)
        if idx.size > per_sample_cap:
            draw = np.random.default_rng(sample_seed(random_state, sid))
            idx = np.sort(draw.choice(idx, size=per_sample_cap, replace=False))
        if idx.size == 0:
            logger.warning(
                "cluster: sample %s has no %s cells; skipped in training", sid, population
            )
            continue
        train.append(_dense(adata, idx, _columns(adata, markers)))
        train_lab.append(_dense(adata, idx, _columns(adata, label_markers)))
        subset_rows.append(subset_calls(adata.obs.iloc[idx]))
    if not train:
        raise ConfigError(f"cluster: no {population} cells in any sample; nothing to cluster")
    X = np.vstack(train)
    thin = refusal(X.shape[0], markers, population)
    if thin:
        raise ConfigError(f"cluster: not clustered: {thin}")
    size = cluster_size(X.shape[0], xdim, ydim, n_metaclusters, max_metaclusters, population)
    for note in size.notes:
        warnings.warn(f"cluster: {note}", ClusterSizeWarning, stacklevel=2)
    xdim, ydim = size.xdim, size.ydim
    seed = int(np.random.default_rng(random_state).integers(2**31 - 1))
    som = SOM(
        xdim,
        ydim,
        rlen=rlen,
        alpha=alpha,
        init=som_init,
        batch_size=batch_size,
        min_updates_per_pass=min_updates_per_pass,
        min_batch_size=min_batch_size,
        random_state=seed,
    ).fit(X)
    mc = ConsensusMetaclustering(
        size.n_metaclusters,
        max_clusters=min(size.max_metaclusters, xdim * ydim),
        n_resamples=n_resamples,
        resample_fraction=resample_fraction,
        linkage=linkage,
        final_linkage=final_linkage,
        k_selection=k_selection,
        random_state=seed,
    )
    node_mc = metacluster_nodes(mc, som.codes_, som.counts_) + 1
    cell_mc = node_mc[som.labels_]
    medians = metacluster_medians(np.vstack(train_lab), cell_mc, label_markers)
    thresholds = resolve_thresholds([a for _, a in pairs], label_markers, np.vstack(train_lab))
    subsets = pd.concat(subset_rows, ignore_index=True) if subset_rows else None
    labels = name_metaclusters(medians, thresholds, subsets=subsets, cell_metacluster=cell_mc)
    params = {
        "population": population,
        "markers": markers,
        "label_markers": label_markers,
        "per_sample_cap": per_sample_cap,
        "n_train": int(X.shape[0]),
        "samples": [sid for sid, _ in pairs],
        "xdim": xdim,
        "ydim": ydim,
        "xdim_requested": xdim_requested,
        "ydim_requested": ydim_requested,
        "sizing": list(size.notes),
        "rlen": rlen,
        "alpha": [float(a) for a in alpha],
        "batch_size": batch_size,
        "min_updates_per_pass": min_updates_per_pass,
        "min_batch_size": min_batch_size,
        "som_init": som_init,
        "n_metaclusters": int(mc.n_clusters_),
        "n_metaclusters_requested": n_metaclusters,
        "linkage": linkage,
        "final_linkage": final_linkage,
        "n_resamples": n_resamples,
        "resample_fraction": float(resample_fraction),
        "k_selection": k_selection,
        "random_state": random_state,
        "labels": {str(k): v for k, v in labels.items()},
        "thresholds": thresholds,
    }
    result = ClusteringResult(
        som=som,
        metaclustering=mc,
        markers=markers,
        label_markers=label_markers,
        node_metacluster=node_mc,
        medians=medians,
        labels=labels,
        thresholds=thresholds,
        population=population,
        key_added=key_added,
        params=params,
    )
    logger.info(
        "cluster: %d training cells from %d samples, %d metaclusters",
        X.shape[0],
        len(train),
        mc.n_clusters_,
    )
    if assign:
        for _, adata in pairs:
            result.assign(adata, key_added=key_added)
    return result
