"""A fast self-organising map with FlowSOM's learning-rate and radius schedules.

FlowSOM (Van Gassen et al., Cytometry A 2015) trains a Kohonen map online: for every
presented cell the best-matching unit (BMU) is found, and every node within a grid radius of
the BMU moves towards the cell by the learning rate ``alpha``. Over ``rlen`` passes the rate
falls linearly from 0.05 to 0.01 and the radius from the 0.67 quantile of the grid's
Chebyshev node distances down to 0 (below 1 only the BMU itself moves).

This implementation keeps those schedules but presents the cells in mini-batches so that
the work is done by BLAS:

* BMUs come from one matrix product per chunk (``|c|^2 - 2 x.c``, argmin over nodes);
* per node, the batch's cells are summed with ``np.bincount`` and the sums spread over the
  grid neighbourhood with the (bubble) neighbourhood matrix;
* a node ``j`` reached ``h_j`` times by the batch moves towards the mean ``m_j`` of those
  cells by ``1 - (1 - alpha)^h_j``: the exact effect of ``h_j`` online updates of size
  ``alpha`` towards a common target, so the learning-rate schedule keeps its meaning.

The schedules advance once per mini-batch, and best-matching units are recomputed once per
mini-batch, so a schedule with too few steps follows the online SOM poorly: with a batch
larger than the input (a gated pool of 1,500 cells against batches of 2,048), ten passes
would be ten updates. Every pass is therefore split into
``max(ceil(n / batch_size), min(min_updates_per_pass, ceil(n / min_batch_size)))``
near-equal batches: at least ``min_updates_per_pass`` (128) updates per pass as long as a
batch keeps ``min_batch_size`` (64) cells, never batches above ``batch_size``. Below
``batch_size * min_updates_per_pass`` cells the schedule depends on the number of cells
only, not on ``batch_size``. (On 68983.fcs, 19k cells, batches of ~1,200 cells gave a mean
F1 0.03 below the online SOM at k = 10 over 30 seeds; batches of 64-150 cells matched it.)

Memory stays at one chunk of distances (``chunk_size x n_nodes``) beyond the data itself.
"""

from __future__ import annotations

import logging
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import ThreadpoolController

from nkflow._seeds import as_random_state
from nkflow.exceptions import ConfigError

__all__ = ["SOM", "bmu_search", "grid_distances"]

logger = logging.getLogger(__name__)

_CONTROLLER: ThreadpoolController | None = None


def one_blas_thread():
    """Context limiting BLAS to one thread (the library scan, ~5 ms, is done once).

    Many small products gain nothing from BLAS threads, and on a busy machine waking them
    (and their spin-waiting) costs more CPU than the products themselves.
    """
    global _CONTROLLER
    if _CONTROLLER is None:
        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")


_INITS = ("random", "pca")
#: Cells x nodes up to which the final mapping also runs on one BLAS thread (~10 ms).
_SINGLE_THREAD_MAPPING = 10_000_000


def _refuse_anndata(X, method: str) -> None:
    """An AnnData is no array: scikit-learn would copy it cell by cell (minutes, GBs)."""
    if hasattr(X, "obs") and hasattr(X, "var") and hasattr(X, "X"):
        raise ConfigError(
            f"SOM.{method}: got an AnnData ({X.n_obs} x {X.n_vars}); pass an array "
            "(n_cells, n_features) of the markers' columns, in the order used to fit"
        )


def grid_distances(xdim: int, ydim: int) -> np.ndarray:
    """Chebyshev distances between the nodes of an ``xdim x ydim`` grid.

    Nodes are numbered row-major over ``(x, y)`` as in FlowSOM (``y`` varies fastest).

    Parameters
    ----------
    xdim, ydim
        Grid width and height.

    Returns
    -------
    numpy.ndarray
        ``(xdim * ydim, xdim * ydim)`` float array.
    """
    gx, gy = np.meshgrid(np.arange(xdim), np.arange(ydim), indexing="ij")
    coords = np.column_stack([gx.ravel(), gy.ravel()]).astype(float)
    return np.abs(coords[:, None, :] - coords[None, :, :]).max(axis=2)


def bmu_search(
    X: np.ndarray, codes: np.ndarray, *, chunk_size: int = 65536, return_distance: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Index of the nearest code (Euclidean) for every row of ``X``, in chunks.

    Parameters
    ----------
    X
        ``(n, d)`` data.
    codes
        ``(k, d)`` codebook.
    chunk_size
        Rows per matrix product; bounds the temporary ``chunk_size x k`` array.
    return_distance
        Also return the Euclidean distance to the nearest code.

    Returns
    -------
    numpy.ndarray or tuple of numpy.ndarray
        ``(n,)`` int64 node indices (and ``(n,)`` float64 distances).
    """
    dtype = np.float32 if X.dtype == np.float32 else np.float64
    c = np.ascontiguousarray(codes, dtype=dtype)
    c_sq = np.einsum("ij,ij->i", c, c)
    n = X.shape[0]
    out = np.empty(n, dtype=np.int64)
    dist = np.empty(n, dtype=np.float64) if return_distance else None
    for start in range(0, n, chunk_size):
        xb = np.asarray(X[start : start + chunk_size], dtype=dtype)
        d2 = xb @ c.T
        d2 *= -2.0
        d2 += c_sq
        idx = np.argmin(d2, axis=1)
        out[start : start + len(xb)] = idx
        if dist is not None:
            best = d2[np.arange(len(xb)), idx].astype(np.float64)
            best += np.einsum("ij,ij->i", xb, xb)
            dist[start : start + len(xb)] = np.sqrt(np.maximum(best, 0.0))
    if dist is not None:
        return out, dist
    return out


class SOM(ClusterMixin, TransformerMixin, BaseEstimator):
    """Self-organising map with FlowSOM's schedules, trained in BLAS mini-batches.

    Parameters
    ----------
    xdim, ydim
        Grid width and height (``xdim * ydim`` nodes).
    rlen
        Passes over the training data.
    alpha
        Learning rate at the start and at the end of training (linear schedule).
    radius
        Neighbourhood radius (Chebyshev grid units) at the start and end. ``None`` uses
        FlowSOM's default: the 0.67 quantile of all grid distances, down to 0.
    init
        ``"random"`` (FlowSOM: ``xdim * ydim`` random cells) or ``"pca"`` (a grid spanning
        the first two principal components).
    batch_size
        Largest number of cells per mini-batch update. Smaller batches follow the online SOM
        more closely; larger ones are faster.
    min_updates_per_pass
        Each pass makes at least this many mini-batch updates, as long as every batch keeps
        ``min_batch_size`` cells, so small inputs get a finely stepped schedule whatever
        ``batch_size`` is.
    min_batch_size
        Smallest batch the minimum number of updates may split a pass into (bounds the
        cost on small inputs: a pass of ``n`` cells makes at most ``n / min_batch_size``
        updates unless ``batch_size`` is smaller).
    max_samples_per_pass
        If set, each pass presents a fresh random subsample of at most this many cells
        instead of all of them (the whole data set is still mapped at the end).
    chunk_size
        Rows per BMU matrix product when mapping (bounds temporary memory).
    random_state
        Seed or generator for initialisation and presentation order.

    Attributes
    ----------
    codes_ : numpy.ndarray
        ``(n_nodes, n_features)`` node codebook.
    grid_ : numpy.ndarray
        ``(n_nodes, 2)`` grid coordinates of each node.
    labels_ : numpy.ndarray
        Node index of each training cell.
    counts_ : numpy.ndarray
        Training cells mapped to each node.
    n_features_in_ : int
        Number of features seen in :meth:`fit`.

    Notes
    -----
    ``predict`` returns the node index; ``transform`` returns the Euclidean distance from
    each cell to every node (like :class:`sklearn.cluster.KMeans`), so the estimator is a
    proper scikit-learn transformer.
    """

    #: scikit-learn checks a SOM fails by design: ``check_clustering`` wants consecutive
    #: labels (and a high ARI on three blobs), but the labels are node indices and a SOM
    #: over-clusters (empty nodes, many nodes per blob); the metaclustering merges them.
    #: scikit-learn >= 1.6 has no tag for it:
    #: ``check_estimator(SOM(), expected_failed_checks=SOM.expected_failed_checks)``.
    expected_failed_checks: ClassVar[dict[str, str]] = {
        "check_clustering": "labels are SOM node indices: not consecutive, over-clustered",
    }

    def __sklearn_tags__(self) -> Any:
        """scikit-learn's tags (those of its base classes)."""
        return super().__sklearn_tags__()

    def _more_tags(self) -> dict[str, Any]:  # scikit-learn < 1.6 reads xfails from tags
        return {"_xfail_checks": dict(self.expected_failed_checks)}

    def __init__(
        self,
        xdim: int = 10,
        ydim: int = 10,
        *,
        rlen: int = 10,
        alpha: tuple[float, float] = (0.05, 0.01),
        radius: tuple[float, float] | None = None,
        init: str = "random",
        batch_size: int = 2048,
        min_updates_per_pass: int = 128,
        min_batch_size: int = 64,
        max_samples_per_pass: int | None = None,
        chunk_size: int = 65536,
        random_state: int | np.random.Generator | np.random.RandomState | None = None,
    ) -> None:
        self.xdim = xdim
        self.ydim = ydim
        self.rlen = rlen
        self.alpha = alpha
        self.radius = radius
        self.init = init
        self.batch_size = batch_size
        self.min_updates_per_pass = min_updates_per_pass
        self.min_batch_size = min_batch_size
        self.max_samples_per_pass = max_samples_per_pass
        self.chunk_size = chunk_size
        self.random_state = random_state

    # ------------------------------------------------------------------ validation
    def _check_params(self) -> None:
        names = (
            "xdim",
            "ydim",
            "rlen",
            "batch_size",
            "min_updates_per_pass",
            "min_batch_size",
            "chunk_size",
        )
        for name in names:
            value = getattr(self, name)
            if not isinstance(value, Integral) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"SOM: {name}={value!r} is invalid; expected an integer >= 1")
        mspp = self.max_samples_per_pass
        if mspp is not None and (not isinstance(mspp, Integral) or mspp < 1):
            raise ConfigError(
                f"SOM: max_samples_per_pass={mspp!r} is invalid; expected None or an integer >= 1"
            )
        for name in ("alpha", "radius"):
            value = getattr(self, name)
            if value is None and name == "radius":
                continue
            ok = (
                isinstance(value, tuple | list)
                and len(value) == 2
                and all(isinstance(v, Real) and v >= 0 for v in value)
            )
            if not ok:
                raise ConfigError(
                    f"SOM: {name}={value!r} is invalid; expected (start, end) non-negative numbers"
                )
        if self.init not in _INITS:
            raise ConfigError(f"SOM: init={self.init!r} is invalid; choose one of {_INITS}")

    # ------------------------------------------------------------------ fitting
    def _initial_codes(self, X: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
        n_nodes = self.xdim * self.ydim
        if self.init == "random":
            replace = X.shape[0] < n_nodes
            idx = rng.choice(X.shape[0], size=n_nodes, replace=replace)
            return np.array(X[idx], dtype=np.float64)
        sub = X[rng.choice(X.shape[0], size=min(X.shape[0], 50_000), replace=False)]
        sub = np.asarray(sub, dtype=np.float64)
        mean = sub.mean(axis=0)
        centred = sub - mean
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        scale = s / np.sqrt(max(sub.shape[0] - 1, 1))
        comps = np.zeros((2, X.shape[1]))
        for i in range(min(2, vt.shape[0])):
            comps[i] = vt[i] * scale[i]
        gx = np.linspace(-2.0, 2.0, self.xdim) if self.xdim > 1 else np.zeros(1)
        gy = np.linspace(-2.0, 2.0, self.ydim) if self.ydim > 1 else np.zeros(1)
        ax, ay = np.meshgrid(gx, gy, indexing="ij")
        return mean + ax.ravel()[:, None] * comps[0] + ay.ravel()[:, None] * comps[1]

    def _batches_per_pass(self, per_pass: int) -> int:
        """Mini-batch updates per pass: enough for ``batch_size``, at least the minimum."""
        by_size = -(-per_pass // self.batch_size)
        floor = min(self.min_updates_per_pass, -(-per_pass // self.min_batch_size))
        return max(1, min(per_pass, max(by_size, floor)))

    def _train(
        self,
        X: np.ndarray,
        codes: np.ndarray,
        nhbr: np.ndarray,
        rng: np.random.RandomState,
        radii: tuple[float, float],
        alphas: tuple[float, float],
    ) -> np.ndarray:
        """Mini-batch passes with linear radius and learning-rate schedules."""
        n = X.shape[0]
        n_nodes, n_features = codes.shape
        r_start, r_end = radii
        a_start, a_end = alphas
        per_pass = n if self.max_samples_per_pass is None else min(n, self.max_samples_per_pass)
        n_batches = self._batches_per_pass(per_pass)
        bounds = np.linspace(0, per_pass, n_batches + 1).round().astype(np.int64)
        total_steps = n_batches * self.rlen
        work_dtype = np.float32 if X.dtype == np.float32 else np.float64
        # grid distances are whole numbers: the neighbourhood only changes at integer radii
        hoods: dict[int, np.ndarray] = {}
        offsets = np.arange(n_features)
        step = 0
        for _ in range(self.rlen):
            if per_pass == n:
                order = rng.permutation(n)
            else:
                order = rng.choice(n, size=per_pass, replace=False)
            for b in range(n_batches):
                frac = step / max(total_steps - 1, 1)
                radius = r_start + (r_end - r_start) * frac
                alpha = a_start + (a_end - a_start) * frac
                idx = np.sort(order[bounds[b] : bounds[b + 1]])
                xb = np.asarray(X[idx], dtype=work_dtype)
                c = codes.astype(work_dtype)
                d2 = xb @ c.T
                d2 *= -2.0
                d2 += np.einsum("ij,ij->i", c, c)
                bmu = np.argmin(d2, axis=1)
                counts = np.bincount(bmu, minlength=n_nodes).astype(np.float64)
                flat = (bmu[:, None] * n_features + offsets).ravel()
                sums = np.bincount(
                    flat, weights=xb.ravel().astype(np.float64), minlength=n_nodes * n_features
                ).reshape(n_nodes, n_features)
                # FlowSOM: below a radius of 1 only the best-matching unit is updated
                if radius >= 1.0:
                    key = int(np.floor(radius))
                    hood = hoods.get(key)
                    if hood is None:
                        hood = hoods[key] = (nhbr <= key).astype(np.float64)
                    counts = hood @ counts
                    sums = hood @ sums
                # nodes not reached have counts 0, hence rate 0: they do not move
                target = sums / np.maximum(counts, 1.0)[:, None]
                rate = 1.0 - np.power(1.0 - alpha, counts)
                target -= codes
                target *= rate[:, None]
                codes += target
                step += 1
        return codes

    def fit(self, X, y=None) -> SOM:
        """Train the map.

        Parameters
        ----------
        X
            ``(n_cells, n_features)`` array (transformed intensities).
        y
            Ignored.

        Returns
        -------
        SOM
            The fitted estimator.
        """
        self._check_params()
        _refuse_anndata(X, "fit")
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=True)
        rng = as_random_state(self.random_state)
        n, _ = X.shape
        n_nodes = self.xdim * self.ydim
        nhbr = grid_distances(self.xdim, self.ydim)
        if self.radius is None:
            r_start, r_end = float(np.quantile(nhbr, 0.67)), 0.0
        else:
            r_start, r_end = map(float, self.radius)
        a_start, a_end = map(float, self.alpha)

        codes = self._initial_codes(X, rng)
        # many small products: BLAS threads only add synchronisation cost (and, on a shared
        # machine, can make each step wait for a busy core), so train single-threaded
        labels = None
        with one_blas_thread():
            codes = self._train(X, codes, nhbr, rng, (r_start, r_end), (a_start, a_end))
            if n * n_nodes <= _SINGLE_THREAD_MAPPING:
                # waking BLAS threads for a small mapping costs more than it saves
                labels = bmu_search(X, codes, chunk_size=self.chunk_size)
        if labels is None:
            labels = bmu_search(X, codes, chunk_size=self.chunk_size)
        self.codes_ = codes
        gx, gy = np.meshgrid(np.arange(self.xdim), np.arange(self.ydim), indexing="ij")
        self.grid_ = np.column_stack([gx.ravel(), gy.ravel()])
        self.labels_ = labels
        self.counts_ = np.bincount(self.labels_, minlength=n_nodes)
        logger.debug(
            "SOM fitted: %d cells, %d nodes, %d passes, %d empty nodes",
            n,
            n_nodes,
            self.rlen,
            int((self.counts_ == 0).sum()),
        )
        return self

    # ------------------------------------------------------------------ mapping
    def predict(self, X) -> np.ndarray:
        """Node index (0 .. ``xdim * ydim - 1``) of each cell.

        Parameters
        ----------
        X
            ``(n_cells, n_features)`` array.

        Returns
        -------
        numpy.ndarray
            ``(n_cells,)`` int64 node indices.
        """
        _refuse_anndata(X, "predict")
        check_is_fitted(self, "codes_")
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return bmu_search(X, self.codes_, chunk_size=self.chunk_size)

    def predict_with_distance(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Node index and Euclidean distance to that node for each cell.

        Parameters
        ----------
        X
            ``(n_cells, n_features)`` array.

        Returns
        -------
        tuple of numpy.ndarray
            Node indices and distances.
        """
        _refuse_anndata(X, "predict_with_distance")
        check_is_fitted(self, "codes_")
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return bmu_search(X, self.codes_, chunk_size=self.chunk_size, return_distance=True)

    def transform(self, X) -> np.ndarray:
        """Euclidean distance from each cell to every node.

        Parameters
        ----------
        X
            ``(n_cells, n_features)`` array.

        Returns
        -------
        numpy.ndarray
            ``(n_cells, n_nodes)`` distances.
        """
        _refuse_anndata(X, "transform")
        check_is_fitted(self, "codes_")
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        X = np.asarray(X, dtype=np.float64)
        d2 = (
            np.einsum("ij,ij->i", X, X)[:, None]
            - 2.0 * X @ self.codes_.T
            + np.einsum("ij,ij->i", self.codes_, self.codes_)[None, :]
        )
        return np.sqrt(np.maximum(d2, 0.0))

    def fit_predict(self, X, y=None) -> np.ndarray:
        """Fit and return the node index of each training cell.

        Parameters
        ----------
        X
            ``(n_cells, n_features)`` array.
        y
            Ignored.

        Returns
        -------
        numpy.ndarray
            ``(n_cells,)`` node indices.
        """
        return self.fit(X).labels_
