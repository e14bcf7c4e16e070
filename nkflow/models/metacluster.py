"""Consensus metaclustering of SOM nodes (FlowSOM's ConsensusClusterPlus approach).

Monti et al. (Machine Learning 2003) consensus clustering, as FlowSOM runs it through
ConsensusClusterPlus (Wilkerson & Hayes 2010) with ``reps=100, pItem=0.9``, hierarchical
clustering and Euclidean distance:

1. ``n_resamples`` times, draw ``resample_fraction`` of the items (SOM nodes) without
   replacement and cluster them hierarchically (``linkage``), cutting the tree at every
   candidate ``k``;
2. for each ``k``, the consensus ``M_k[i, j]`` is the fraction of resamples holding both
   ``i`` and ``j`` in which they fell in the same cluster;
3. the final partition clusters ``1 - M_k`` hierarchically (``final_linkage``) into ``k``.

Cost: the item distances are computed once, each resample is one scipy ``linkage`` of its
rows plus a cut by pointer doubling (:func:`cut_linkage`), and the co-occurrences are two
indicator-matrix products; 100 resamples of 90 of 100 nodes take ~20 ms of CPU, about what
the SOM costs on a pool of 1-2k cells. ``n_resamples=1, resample_fraction=1`` is a single
hierarchical clustering of the nodes (what the flowsom Python package's
``FlowSOMEstimator.fit_predict`` does).

With ``n_clusters=None`` the number of clusters is chosen from the consensus matrices:

* ``k_selection="delta_area"`` (default, ConsensusClusterPlus): ``A(k)`` is the area under
  the empirical CDF of the consensus values and ``delta(k) = (A(k) - A(k-1)) / A(k-1)``.
  ConsensusClusterPlus leaves the reading of the delta plot to the analyst ("the k after
  which the increase becomes small"); here that elbow is the ``k`` with the largest drop
  ``delta(k) / delta(k+1)`` among the ``k`` whose own increase is at least
  ``delta_threshold``.
* ``k_selection="pac"`` (Senbabaoglu et al., Sci Rep 2014): the proportion of ambiguous
  clustering ``PAC(k)``, the share of item pairs with a consensus strictly between 0.1 and
  0.9; the chosen ``k`` is the largest one within ``pac_tolerance`` of the lowest PAC.

Both curves are kept (``delta_area_``, ``pac_``). Neither rule is reliable when
populations overlap or form continua (SOM nodes tile them, and consistent cuts through a
tile look stable): use them to explore, and fix ``n_clusters`` for analyses.
"""

from __future__ import annotations

import logging
from numbers import Integral, Real

import numpy as np
from scipy.cluster.hierarchy import linkage
from scipy.spatial.distance import pdist, squareform
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.utils.validation import validate_data

from nkflow._seeds import as_random_state
from nkflow.exceptions import ConfigError
from nkflow.models.som import one_blas_thread

__all__ = [
    "ConsensusMetaclustering",
    "cdf_area",
    "cut_linkage",
    "hungarian_f1",
    "metacluster_nodes",
]

logger = logging.getLogger(__name__)

_INNER = ("average", "complete", "single", "ward")
_FINAL = ("average", "complete", "single")
_SELECTIONS = ("pac", "delta_area")


def cdf_area(consensus: np.ndarray) -> float:
    """Area under the empirical CDF of the off-diagonal consensus values.

    Parameters
    ----------
    consensus
        Symmetric ``(n, n)`` consensus matrix with values in [0, 1].

    Returns
    -------
    float
        ``integral_0^1 CDF(x) dx`` (ConsensusClusterPlus approximates it on 100 bins);
        equals one minus the mean consensus.
    """
    iu = np.triu_indices(consensus.shape[0], k=1)
    values = np.clip(consensus[iu], 0.0, 1.0)
    if values.size == 0:
        return 0.0
    uniq, counts = np.unique(values, return_counts=True)
    cdf = np.cumsum(counts) / values.size
    # the CDF is a right-continuous step function on [0, 1]: integrate it exactly
    edges = np.append(uniq, 1.0)
    return float(np.sum(np.diff(edges) * cdf))


def cut_linkage(merges: np.ndarray, ks: np.ndarray | list[int]) -> np.ndarray:
    """Partitions of a monotone linkage into ``k`` clusters, for every ``k`` in ``ks``.

    The same partitions as :func:`scipy.cluster.hierarchy.cut_tree` (cluster numbers may
    differ): the partition into ``k`` clusters is the forest after the first ``n - k``
    merges, and each item's cluster is its root there, found by pointer doubling.

    Parameters
    ----------
    merges
        ``(n - 1, 4)`` linkage matrix from :func:`scipy.cluster.hierarchy.linkage` with a
        monotone method (single, complete, average, weighted, ward).
    ks
        Numbers of clusters, each in ``1 .. n``.

    Returns
    -------
    numpy.ndarray
        ``(len(ks), n)`` int64 cluster ids (root node ids, not consecutive).
    """
    n = merges.shape[0] + 1
    pairs = merges[:, :2].astype(np.intp)
    rounds = int(np.ceil(np.log2(max(n, 2)))) + 1
    out = np.empty((len(ks), n), dtype=np.int64)
    for j, k in enumerate(ks):
        if not 1 <= k <= n:
            raise ConfigError(f"cut_linkage: k={k} is invalid; expected 1 <= k <= {n}")
        applied = n - int(k)
        parent = np.arange(2 * n - 1)
        parent[pairs[:applied, 0]] = np.arange(n, n + applied)
        parent[pairs[:applied, 1]] = np.arange(n, n + applied)
        for _ in range(rounds):
            parent = parent[parent]
        out[j] = parent[:n]
    return out


class ConsensusMetaclustering(ClusterMixin, BaseEstimator):
    """Consensus hierarchical clustering, used to merge SOM nodes into metaclusters.

    Parameters
    ----------
    n_clusters
        Number of metaclusters; ``None`` chooses it from the consensus CDF area delta
        between ``min_clusters`` and ``max_clusters``.
    min_clusters, max_clusters
        Range searched when ``n_clusters`` is ``None``.
    n_resamples
        Resampling rounds (ConsensusClusterPlus ``reps``; FlowSOM uses 100).
    resample_fraction
        Fraction of items drawn per round (``pItem``; FlowSOM uses 0.9).
    linkage
        Linkage of the clustering inside each resample (``innerLinkage``).
    final_linkage
        Linkage used on ``1 - consensus`` for the final partition (``finalLinkage``).
    k_selection
        ``"pac"`` or ``"delta_area"``: how ``n_clusters=None`` picks ``k``.
    delta_threshold
        Smallest relative CDF-area increase ``delta(k)`` for ``k`` to be a candidate.
    pac_tolerance
        PAC values within this of the minimum count as equally unambiguous.
    random_state
        Seed or generator for the resampling.

    Attributes
    ----------
    labels_ : numpy.ndarray
        Metacluster (0 .. ``n_clusters_ - 1``) of each item, numbered by first appearance.
    n_clusters_ : int
        Number of metaclusters used.
    consensus_ : numpy.ndarray
        Consensus matrix at ``n_clusters_``.
    ks_ : numpy.ndarray
        Candidate numbers of clusters evaluated.
    cdf_area_ : numpy.ndarray
        ``A(k)`` for each entry of ``ks_``.
    delta_area_ : numpy.ndarray
        Relative increase of ``A(k)`` (``delta(k_min) = A(k_min)``).
    pac_ : numpy.ndarray
        Proportion of ambiguous clustering for each entry of ``ks_``.
    cluster_centers_ : numpy.ndarray
        Mean of the items of each metacluster.
    n_features_in_ : int
        Number of features seen in :meth:`fit`.
    """

    def __init__(
        self,
        n_clusters: int | None = 10,
        *,
        min_clusters: int = 2,
        max_clusters: int = 20,
        n_resamples: int = 100,
        resample_fraction: float = 0.9,
        linkage: str = "average",
        final_linkage: str = "average",
        k_selection: str = "delta_area",
        delta_threshold: float = 0.025,
        pac_tolerance: float = 0.01,
        random_state: int | np.random.Generator | np.random.RandomState | None = None,
    ) -> None:
        self.n_clusters = n_clusters
        self.min_clusters = min_clusters
        self.max_clusters = max_clusters
        self.n_resamples = n_resamples
        self.resample_fraction = resample_fraction
        self.linkage = linkage
        self.final_linkage = final_linkage
        self.k_selection = k_selection
        self.delta_threshold = delta_threshold
        self.pac_tolerance = pac_tolerance
        self.random_state = random_state

    def _check_params(self) -> None:
        def _int(name: str, value: object, low: int) -> None:
            if not isinstance(value, Integral) or isinstance(value, bool) or value < low:
                raise ConfigError(
                    f"ConsensusMetaclustering: {name}={value!r} is invalid; "
                    f"expected an integer >= {low}"
                )

        if self.n_clusters is not None:
            _int("n_clusters", self.n_clusters, 1)
        _int("min_clusters", self.min_clusters, 1)
        _int("max_clusters", self.max_clusters, self.min_clusters)
        _int("n_resamples", self.n_resamples, 1)
        if not isinstance(self.resample_fraction, Real) or not 0 < self.resample_fraction <= 1:
            raise ConfigError(
                "ConsensusMetaclustering: resample_fraction="
                f"{self.resample_fraction!r} is invalid; expected a number in (0, 1]"
            )
        if self.linkage not in _INNER:
            raise ConfigError(
                f"ConsensusMetaclustering: linkage={self.linkage!r} is invalid; "
                f"choose one of {_INNER}"
            )
        if self.final_linkage not in _FINAL:
            raise ConfigError(
                f"ConsensusMetaclustering: final_linkage={self.final_linkage!r} is invalid; "
                f"choose one of {_FINAL}"
            )
        if self.k_selection not in _SELECTIONS:
            raise ConfigError(
                f"ConsensusMetaclustering: k_selection={self.k_selection!r} is invalid; "
                f"choose one of {_SELECTIONS}"
            )
        if not isinstance(self.pac_tolerance, Real) or self.pac_tolerance < 0:
            raise ConfigError(
                "ConsensusMetaclustering: pac_tolerance="
                f"{self.pac_tolerance!r} is invalid; expected a number >= 0"
            )
        if not isinstance(self.delta_threshold, Real) or self.delta_threshold < 0:
            raise ConfigError(
                "ConsensusMetaclustering: delta_threshold="
                f"{self.delta_threshold!r} is invalid; expected a number >= 0"
            )

    def _consensus(self, X: np.ndarray, ks: np.ndarray, rng) -> np.ndarray:
        """Consensus matrices, shape ``(len(ks), n, n)``.

        The item distances are computed once; each resample clusters its rows of that matrix
        and is cut at every ``k`` with :func:`cut_linkage` (scipy's ``cut_tree`` walks the
        tree in Python and cost ~6 ms per cut, most of the fit on small inputs).
        """
        n = X.shape[0]
        m = max(2, round(n * self.resample_fraction))
        m = min(m, n)
        dist = pdist(X, metric="euclidean")  # condensed: pair (i < j) at n*i - i*(i+3)/2 + j - 1
        a, b = np.triu_indices(m, k=1)
        cuts_k = np.minimum(ks, m)
        drawn = np.empty((self.n_resamples, m), dtype=np.int64)
        labels = np.empty((len(ks), self.n_resamples, m), dtype=np.int64)
        for r in range(self.n_resamples):
            idx = np.sort(rng.choice(n, size=m, replace=False))
            drawn[r] = idx
            i, j = idx[a], idx[b]
            sub = dist[n * i - (i * (i + 3)) // 2 + j - 1]
            if sub.max() == 0:  # every drawn item identical: one cluster
                labels[:, r] = 0
            else:
                labels[:, r] = cut_linkage(linkage(sub, method=self.linkage), cuts_k)
        # co-occurrence counts as products of indicator matrices: item x resample for
        # "drawn together", item x (resample, cluster) for "clustered together"
        rows = drawn.ravel()
        col_r = np.repeat(np.arange(self.n_resamples), m)
        drawn_m = np.zeros((n, self.n_resamples))
        drawn_m[rows, col_r] = 1.0
        sampled = drawn_m @ drawn_m.T
        width = 2 * m - 1  # cluster ids are linkage node ids, below 2m - 1
        together = np.empty((len(ks), n, n), dtype=np.float64)
        for j in range(len(ks)):
            _, cols = np.unique(col_r * width + labels[j].ravel(), return_inverse=True)
            member = np.zeros((n, int(cols.max()) + 1))
            member[rows, cols] = 1.0
            together[j] = member @ member.T
        with np.errstate(invalid="ignore", divide="ignore"):
            cons = np.where(sampled > 0, together / np.maximum(sampled, 1.0), 0.0)
        diag = np.arange(n)
        cons[:, diag, diag] = 1.0
        return cons

    def _final(self, consensus: np.ndarray, k: int) -> np.ndarray:
        n = consensus.shape[0]
        if k >= n:
            return np.arange(n)
        if k <= 1:
            return np.zeros(n, dtype=int)
        dist = 1.0 - consensus
        np.fill_diagonal(dist, 0.0)
        dist = np.clip((dist + dist.T) / 2.0, 0.0, None)
        tree = linkage(squareform(dist, checks=False), method=self.final_linkage)
        raw = cut_linkage(tree, [k])[0]
        _, first, inverse = np.unique(raw, return_index=True, return_inverse=True)
        rank = np.empty(len(first), dtype=int)
        rank[np.argsort(first)] = np.arange(len(first))
        return rank[inverse]

    def fit(self, X, y=None) -> ConsensusMetaclustering:
        """Cluster the items (rows of ``X``, e.g. SOM codes).

        Parameters
        ----------
        X
            ``(n_items, n_features)`` array.
        y
            Ignored.

        Returns
        -------
        ConsensusMetaclustering
            The fitted estimator.
        """
        self._check_params()
        X = validate_data(self, X, dtype=np.float64, ensure_min_samples=2, reset=True)
        rng = as_random_state(self.random_state)
        n = X.shape[0]
        if self.n_clusters is None:
            ks = np.arange(self.min_clusters, min(self.max_clusters, n) + 1)
            if ks.size == 0:
                ks = np.array([min(self.min_clusters, n)])
        else:
            ks = np.array([min(self.n_clusters, n)])
        with one_blas_thread():  # many small products: threads only add overhead
            cons = self._consensus(X, ks, rng)
        areas = np.array([cdf_area(c) for c in cons])
        delta = np.empty_like(areas)
        delta[0] = areas[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            delta[1:] = np.where(areas[:-1] > 0, (areas[1:] - areas[:-1]) / areas[:-1], 0.0)
        iu = np.triu_indices(n, k=1)
        pac = np.array([float(((c[iu] > 0.1) & (c[iu] < 0.9)).mean()) for c in cons])
        if self.n_clusters is None and self.k_selection == "delta_area":
            pos = 0
            if len(ks) > 1:
                drop = delta[:-1] / np.maximum(delta[1:], 1e-3)
                drop[delta[:-1] < self.delta_threshold] = -np.inf
                pos = int(np.argmax(drop)) if np.isfinite(drop).any() else 0
        elif self.n_clusters is None:
            pos = int(np.flatnonzero(pac <= pac.min() + self.pac_tolerance).max())
        else:
            pos = 0
        k = int(ks[pos])
        self.ks_ = ks
        self.cdf_area_ = areas
        self.delta_area_ = delta
        self.pac_ = pac
        if self.n_clusters is None:
            logger.debug(
                "consensus k: delta area %s, PAC %s -> k=%d", delta.round(3), pac.round(3), ks[pos]
            )
        self.consensus_ = cons[pos]
        self.labels_ = self._final(cons[pos], k)
        self.n_clusters_ = int(self.labels_.max()) + 1
        self.cluster_centers_ = np.vstack(
            [X[self.labels_ == c].mean(axis=0) for c in range(self.n_clusters_)]
        )
        return self

    def fit_predict(self, X, y=None) -> np.ndarray:
        """Fit and return the metacluster of each item.

        Parameters
        ----------
        X
            ``(n_items, n_features)`` array.
        y
            Ignored.

        Returns
        -------
        numpy.ndarray
            ``(n_items,)`` metacluster labels.
        """
        return self.fit(X).labels_


def metacluster_nodes(
    metaclustering: ConsensusMetaclustering,
    codes: np.ndarray,
    counts: np.ndarray,
    *,
    min_fraction: float = 1e-4,
) -> np.ndarray:
    """Metacluster SOM nodes, leaving (nearly) empty nodes out of the clustering.

    Nodes that won no or almost no training cell sit between populations; clustered with the
    rest they can use up a metacluster of a handful of cells and force two real populations
    together (seen with FlowSOM and with this SOM alike). Nodes holding fewer than
    ``min_fraction`` of the cells are left out of the fit and given the metacluster of the
    nearest occupied node instead. ``min_fraction=0`` keeps every non-empty node.

    Parameters
    ----------
    metaclustering
        An unfitted (or refittable) :class:`ConsensusMetaclustering`; fitted in place.
    codes
        ``(n_nodes, n_features)`` SOM codebook.
    counts
        Training cells per node.
    min_fraction
        Nodes with fewer than ``max(1, min_fraction * counts.sum())`` cells do not vote.

    Returns
    -------
    numpy.ndarray
        ``(n_nodes,)`` metacluster (0-based) of every node.
    """
    codes = np.asarray(codes, dtype=np.float64)
    counts = np.asarray(counts)
    occupied = counts >= max(1.0, min_fraction * float(counts.sum()))
    if occupied.sum() < (metaclustering.n_clusters or 2):
        occupied = counts > 0
    if occupied.sum() < 2:
        occupied = np.ones(len(codes), dtype=bool)
    metaclustering.fit(codes[occupied])
    out = np.empty(len(codes), dtype=int)
    out[occupied] = metaclustering.labels_
    if (~occupied).any():
        occ = codes[occupied]
        d2 = ((codes[~occupied, None, :] - occ[None, :, :]) ** 2).sum(axis=2)
        out[~occupied] = metaclustering.labels_[np.argmin(d2, axis=1)]
    return out


def hungarian_f1(truth: np.ndarray, pred: np.ndarray) -> float:
    """Mean F1 of true populations after one-to-one (Hungarian) matching to clusters.

    The protocol of Weber & Robinson (Cytometry A 2016): every true population is matched
    to at most one cluster so that the summed F1 is largest; unmatched populations score 0;
    the result is the unweighted mean over true populations.

    Parameters
    ----------
    truth
        True label of each cell.
    pred
        Cluster of each cell.

    Returns
    -------
    float
        Mean F1 in [0, 1].
    """
    from scipy.optimize import linear_sum_assignment

    t_ids, t = np.unique(np.asarray(truth), return_inverse=True)
    p_ids, p = np.unique(np.asarray(pred), return_inverse=True)
    table = np.zeros((len(t_ids), len(p_ids)))
    np.add.at(table, (t, p), 1)
    f1 = 2 * table / (table.sum(1)[:, None] + table.sum(0)[None, :])
    rows, cols = linear_sum_assignment(-f1)
    out = np.zeros(len(t_ids))
    out[rows] = f1[rows, cols]
    return float(out.mean())
