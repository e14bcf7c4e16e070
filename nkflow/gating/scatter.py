"""Adaptive scatter gates that follow each sample's density (polygons in linear scatter units).

- ``debris``: everything right of the FSC-A density valley between debris and cells (a
  unimodal FSC falls back to the lower mirror bound of the cell peak).
- ``singlets``: the band ``median +- k * MAD`` of the FSC-H / FSC-A ratio, drawn as a wedge
  through the origin in FSC-A x FSC-H (doublets have a larger area for their height).
- ``lymphocytes``: a Gaussian mixture on (FSC-A, SSC-A); the lymphocyte component is the one
  with the lowest SSC among components holding at least ``min_weight`` of the events, merged
  with every component whose mean lies within ``merge_radius`` of it (T, B and NK cells differ
  a little in size); the gate is the merged ellipse at Mahalanobis ``radius`` (64 vertices).

- ``upper_cluster``: a two-component Gaussian mixture in two markers (e.g. CD56 x NKp46
  within NK); the gate is the region where the component with the higher ``x`` mean has
  the higher posterior (the quadratic discriminant boundary, traced as a polygon). Splits a
  small population that overlaps a big one better than a 1-D cut (CD56bright are also
  NKp46-bright), and needs no CD16, which PMA sheds. With ``params.split = "valley"`` the
  upper cluster is instead the highest peak of ``x``, cut at the density valley below it,
  and checked against ``y`` (``y_side``): see :func:`upper_peak_polygon`. That is the rule
  for CD56 x CD16 (mass cytometry), where a 2-component mixture splits CD16- from CD16+
  and the CD56- cells of a CD7-anchored NK gate instead of CD56bright from CD56dim.

- ``cytof_singlets``: mass cytometry has no scatter; singlets are the events whose event
  length is at most ``median + k_length MAD`` and whose DNA intercalator signal lies within
  ``median +- k_dna MAD`` (doublets: two cells' DNA, a longer ion cloud).

Each returns the polygon vertices and its scalar parameters (:class:`Param`), which the
engine records as :class:`~nkflow.gating.thresholds.Threshold` rows; bootstrap intervals
come deferred (:mod:`nkflow.gating.intervals`): ``param.interval.result()`` computes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import pairwise
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from ..exceptions import GatingError
from .density import (
    Redraw,
    bandwidth_bins,
    bootstrap_thresholds,
    grid_quantiles,
    histogram_grid,
    smoothed,
)
from .intervals import NO_INTERVAL, Deferred, deferred_interval
from .peaks import Peaks, local_maxima
from .redraws import median_band_redraws
from .thresholds import density_fit

__all__ = [
    "cytof_singlet_polygon",
    "debris_polygon",
    "lymphocyte_polygon",
    "singlet_band",
    "singlet_polygon",
    "upper_cluster_polygon",
    "upper_peak_polygon",
]

Vertices = tuple[tuple[float, float], ...]


class Param(NamedTuple):
    """A scalar parameter of a scatter gate, with its (deferred) confidence interval.

    ``axis`` is ``"x"`` or ``"y"`` for a parameter on one of the gate's axes (a cut-off or
    centre, in that axis's units: its threshold row names that channel, so its linear
    value is converted with that channel's transform), ``""`` for one of both axes or none
    (a ratio, a weight, a fraction).
    """

    name: str
    value: float
    interval: Deferred[tuple[float, float]]
    n_events: int
    axis: str = ""


def _span(v: NDArray[np.float64]) -> tuple[float, float]:
    lo, hi = float(np.min(v)), float(np.max(v))
    pad = 0.05 * (hi - lo) + 1.0
    return lo - pad, hi + pad


def debris_polygon(
    x: NDArray[Any],
    y: NDArray[Any],
    params: Mapping[str, Any],
    *,
    n_boot: int,
    random_state: int | np.random.Generator | None,
) -> tuple[Vertices, list[Param]]:
    """Polygon right of the FSC-A valley between debris and cells."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    if x.size < 20:
        raise GatingError(f"debris gate needs at least 20 events, got {x.size}")
    fit = density_fit(
        "valley",
        x,
        unimodal="positive",
        between="below_main",
        min_prominence=float(params.get("min_prominence", 0.05)),
        n_boot=n_boot,
        random_state=random_state,
    )
    x0, x1 = _span(x)
    y0, y1 = _span(y)
    verts = ((max(fit.value, x0), y0), (x1, y0), (x1, y1), (max(fit.value, x0), y1))
    if not fit.value < x0:
        return verts, [Param(f"FSC valley ({fit.rule_used})", fit.value, fit.interval,
                             fit.n_events, "x")]  # fmt: skip
    # the rule's cut lies below every event: no debris to cut, all kept; its interval
    # (about that cut, below the data) would not hold the edge the gate starts at
    name = f"FSC valley ({fit.rule_used} below every event: none cut)"
    return verts, [Param(name, x0, NO_INTERVAL, fit.n_events, "x")]


def _median(v: NDArray[np.float64]) -> float:
    """``float(np.median(v))`` of a 1-D float array, bit for bit, at a quarter of the cost.

    :func:`numpy.median` partitions at up to three positions (the two middle ones and the
    last, to find a NaN); one partition at the upper middle and the maximum of the lower
    half give the same two order statistics. NaN input takes :func:`numpy.median` itself.
    """
    n = v.size
    if n == 0 or np.isnan(v).any():
        return float(np.median(v))
    half = n // 2
    part = np.partition(v, half)
    # the mean of the middle value(s) exactly as numpy.median computes it (-0.0 included)
    mid = [part[half]] if n % 2 else [part[:half].max(), part[half]]
    return float(np.mean(np.array(mid)))


def singlet_band(v: NDArray[np.float64], k_low: float, k_high: float) -> tuple[float, float]:
    """The singlet band of FSC-H/FSC-A ratios ``v``: ``median -+ k MAD`` of their core.

    The core is the ratios above ``median - 3 MAD`` (doublets sit low); its median is the
    singlet mode.
    """
    med = _median(v)
    mad = 1.4826 * _median(np.abs(v - med))
    core = v[(v > med - 3 * mad)]
    med = _median(core)
    mad = 1.4826 * _median(np.abs(core - med))
    return med - k_low * mad, med + k_high * mad


def singlet_polygon(
    a: NDArray[Any],
    h: NDArray[Any],
    params: Mapping[str, Any],
    *,
    n_boot: int,
    random_state: int | np.random.Generator | None,
) -> tuple[Vertices, list[Param]]:
    """Wedge around the singlet FSC-H/FSC-A ratio (``median +- k MAD``)."""
    a = np.asarray(a, float)
    h = np.asarray(h, float)
    ok = (a > 0) & np.isfinite(h)
    if ok.sum() < 20:
        raise GatingError(f"singlet gate needs at least 20 events with FSC-A > 0, got {ok.sum()}")
    r = h[ok] / a[ok]
    k_lo = float(params.get("k_low", 4.0))
    k_hi = float(params.get("k_high", 4.0))
    r_lo, r_hi = singlet_band(r, k_lo, k_hi)
    ci_lo = ci_hi = NO_INTERVAL
    if n_boot > 0:

        def intervals() -> list[tuple[float, float]]:
            rng = np.random.default_rng(random_state)
            sub = r if r.size <= 20_000 else rng.choice(r, 20_000, replace=False)
            draws = (rng.integers(0, sub.size, sub.size) for _ in range(n_boot))
            if np.isfinite(sub).all():  # the same bands, read off each redraw's counts
                boots = median_band_redraws(sub, draws, k_lo, k_hi)
            else:  # an infinite ratio (FSC-A near 0): each redraw through singlet_band
                boots = np.array([singlet_band(sub[d], k_lo, k_hi) for d in draws])
            return [_percentile_interval(boots[:, j]) for j in range(2)]

        both = deferred_interval(intervals, random_state)
        ci_lo, ci_hi = both.item(0), both.item(1)
    x1 = float(np.max(a)) * 1.2 + 1.0
    verts = ((0.0, 0.0), (x1, r_lo * x1), (x1, r_hi * x1))
    n = int(r.size)
    return verts, [
        Param("FSC-H/FSC-A low", r_lo, ci_lo, n),
        Param("FSC-H/FSC-A high", r_hi, ci_hi, n),
    ]


def _percentile_interval(boots: NDArray[np.float64]) -> tuple[float, float]:
    """The 95 % percentile-bootstrap interval of one parameter's resampled values."""
    lo, hi = np.quantile(boots, [0.025, 0.975])
    return float(lo), float(hi)


class _Mixture:
    def __init__(self, w: NDArray[np.float64], m: NDArray[np.float64], c: NDArray[np.float64]):
        self.weights_, self.means_, self.covariances_ = w, m, c


def _gmm2d(z: NDArray[np.float64], k: int, n_iter: int = 60) -> _Mixture:
    """Deterministic EM for a k-component 2-D Gaussian mixture (closed-form 2x2 algebra).

    Initialised from k quantile slices of the second axis (SSC), so no random restarts are
    needed and the fit is fast and identical on every machine.
    """
    n = z.shape[0]
    order = np.argsort(z[:, 1], kind="stable")
    resp = np.zeros((n, k))
    for j, part in enumerate(np.array_split(order, k)):
        resp[part, j] = 1.0
    ridge = 1e-6
    for _ in range(n_iter):
        nk = resp.sum(axis=0) + 1e-12
        w = nk / n
        m = (resp.T @ z) / nk[:, None]
        dx = z[None, :, 0] - m[:, 0, None]  # k, n
        dy = z[None, :, 1] - m[:, 1, None]
        rt = resp.T
        cxx = np.einsum("kn,kn->k", rt * dx, dx) / nk + ridge
        cxy = np.einsum("kn,kn->k", rt * dx, dy) / nk
        cyy = np.einsum("kn,kn->k", rt * dy, dy) / nk + ridge
        c = np.stack([np.stack([cxx, cxy], -1), np.stack([cxy, cyy], -1)], 1)
        det = cxx * cyy - cxy**2
        # Mahalanobis distance with the closed-form 2x2 inverse
        maha = cyy[:, None] * dx * dx - 2.0 * cxy[:, None] * dx * dy + cxx[:, None] * dy * dy
        maha /= det[:, None]
        logp = np.log(w)[:, None] - 0.5 * np.log(det)[:, None] - 0.5 * maha
        logp -= logp.max(axis=0, keepdims=True)
        p = np.exp(logp)
        new = (p / p.sum(axis=0, keepdims=True)).T
        if np.abs(new - resp).max() < 1e-4:
            resp = new
            break
        resp = new
    return _Mixture(w, m, c)


def lymphocyte_polygon(
    x: NDArray[Any],
    y: NDArray[Any],
    params: Mapping[str, Any],
    *,
    n_boot: int,
    random_state: int | np.random.Generator | None,
) -> tuple[Vertices, list[Param]]:
    """Ellipse of the lowest-SSC major Gaussian component of (FSC-A, SSC-A)."""
    del n_boot  # the ellipse has no scalar threshold to bootstrap
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    k = int(params.get("n_components", 3))
    radius = float(params.get("radius", 3.5))
    min_weight = float(params.get("min_weight", 0.1))
    merge_radius = float(params.get("merge_radius", 3.0))
    if x.size < 10 * k:
        raise GatingError(f"lymphocyte gate needs at least {10 * k} events, got {x.size}")
    rng = np.random.default_rng(random_state)
    idx = np.arange(x.size) if x.size <= 10_000 else rng.choice(x.size, 10_000, replace=False)
    pts = np.column_stack([x[idx], y[idx]])
    centre = np.median(pts, axis=0)
    scale = np.subtract(*np.quantile(pts, [0.75, 0.25], axis=0)) + 1e-9
    z = (pts - centre) / scale
    gm = _gmm2d(z, k)
    major = np.flatnonzero(gm.weights_ >= min_weight)
    if major.size == 0:
        major = np.array([int(np.argmax(gm.weights_))])
    comp = int(major[np.argmin(gm.means_[major, 1])])
    # lymphocytes can need several components (T, B, NK differ a little in size):
    # merge every component whose mean lies inside the chosen one's ellipse
    inv = np.linalg.inv(gm.covariances_[comp])
    diff = gm.means_ - gm.means_[comp]
    d2 = np.einsum("ij,jk,ik->i", diff, inv, diff)
    group = np.flatnonzero(d2 < merge_radius**2)
    w = gm.weights_[group] / gm.weights_[group].sum()
    m = (w[:, None] * gm.means_[group]).sum(axis=0)
    dm = gm.means_[group] - m
    cov_z = (w[:, None, None] * (gm.covariances_[group] + dm[:, :, None] * dm[:, None, :])).sum(0)
    mean = m * scale + centre
    cov = cov_z * np.outer(scale, scale)
    vals, vecs = np.linalg.eigh(cov)
    theta = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    circle = np.column_stack([np.cos(theta), np.sin(theta)]) * radius
    ell = circle @ (vecs * np.sqrt(np.maximum(vals, 0))).T + mean
    verts = tuple((float(a), float(b)) for a, b in ell)
    n = int(x.size)
    return verts, [
        Param("lymphocyte FSC centre", float(mean[0]), NO_INTERVAL, n, "x"),
        Param("lymphocyte SSC centre", float(mean[1]), NO_INTERVAL, n, "y"),
    ]


def upper_cluster_polygon(
    x: NDArray[Any],
    y: NDArray[Any],
    params: Mapping[str, Any],
    *,
    n_boot: int,
    random_state: int | np.random.Generator | None,
) -> tuple[Vertices, list[Param]]:
    """Region where the higher-``x`` component of a 2-component mixture wins.

    ``params.split = "valley"`` hands over to :func:`upper_peak_polygon`.
    """
    split = str(params.get("split", "mixture"))
    if split == "valley":
        return upper_peak_polygon(x, y, params, n_boot=n_boot, random_state=random_state)
    if split != "mixture":
        raise GatingError(f"upper_cluster split = {split!r}; valid: mixture, valley")
    del n_boot  # the boundary is not a scalar threshold
    from contourpy import contour_generator

    x = np.asarray(x, float)
    y = np.asarray(y, float)
    if x.size < 50:
        raise GatingError(f"upper_cluster gate needs at least 50 events, got {x.size}")
    pts = np.column_stack([x, y])
    if x.size > 20_000:
        rng = np.random.default_rng(random_state)
        pts = pts[rng.choice(x.size, 20_000, replace=False)]
    centre = np.median(pts, axis=0)
    scale = np.subtract(*np.quantile(pts, [0.75, 0.25], axis=0)) + 1e-9
    gm = _gmm2d((pts - centre) / scale, 2)
    hi = int(np.argmax(gm.means_[:, 0]))
    lo = 1 - hi
    (x0, x1), (y0, y1) = _pad(x), _pad(y)
    gx, gy = np.linspace(x0, x1, 160), np.linspace(y0, y1, 160)
    zz = np.stack(np.meshgrid((gx - centre[0]) / scale[0], (gy - centre[1]) / scale[1]), -1)
    inv = np.linalg.inv(gm.covariances_)
    det = np.linalg.det(gm.covariances_)

    def logp(k: int) -> NDArray[np.float64]:
        d = zz - gm.means_[k]
        maha = np.einsum("...i,ij,...j->...", d, inv[k], d)
        return np.log(gm.weights_[k]) - 0.5 * np.log(det[k]) - 0.5 * maha

    field = logp(hi) - logp(lo)
    field[[0, -1], :] = -1.0  # close the contour at the padded border
    field[:, [0, -1]] = -1.0
    lines = contour_generator(gx, gy, field).lines(0.0)
    if not lines:
        raise GatingError("upper_cluster gate: the mixture found no upper population")
    ring = max(lines, key=len)
    step = max(1, len(ring) // 200)
    verts = tuple((float(a), float(b)) for a, b in ring[::step])
    n = int(x.size)
    mean_hi = gm.means_[hi] * scale + centre
    return verts, [
        Param("upper cluster weight", float(gm.weights_[hi]), NO_INTERVAL, n),
        Param("upper cluster x mean", float(mean_hi[0]), NO_INTERVAL, n, "x"),
    ]


def _peak_valleys(
    dens: NDArray[np.float64],
    centers: NDArray[np.float64],
    min_prominence: float,
    local_peaks: Peaks | None = None,
) -> tuple[NDArray[np.intp], list[float]]:
    """Peaks of a smoothed histogram (ascending) and the valley between each neighbour pair.

    ``local_peaks``: every local maximum of ``dens``, when the caller has them.
    """
    top = dens.max()
    if top <= 0:
        return np.array([], dtype=np.intp), []
    if local_peaks is None:
        local_peaks = local_maxima(dens)
    peaks = local_peaks.select(min_prominence * top).positions
    valleys = [float(centers[a + int(np.argmin(dens[a : b + 1]))]) for a, b in pairwise(peaks)]
    return peaks, valleys


def upper_peak_polygon(
    x: NDArray[Any],
    y: NDArray[Any],
    params: Mapping[str, Any],
    *,
    n_boot: int,
    random_state: int | np.random.Generator | None,
) -> tuple[Vertices, list[Param]]:
    """The highest-``x`` cluster: ``x`` above the density valley below its top peak.

    Within NK, CD56 has up to three peaks: CD56- cells (a CD7 or NKp46 anchor admits
    them), CD56dim and CD56bright. CD56bright is the top peak; the cut is the valley
    between it and the next peak down (a smoothed histogram as for the ``valley`` rule,
    peaks of at least ``min_prominence`` (0.02) of the highest). Two peaks can be CD56- and
    CD56dim with no bright peak at all, so the top cluster must differ from the one below
    it on ``y`` as the subset does: ``y_side = "low"`` (CD56bright are CD16-/lo),
    ``"high"`` (NKp46-bright) or ``"any"``; its median ``y`` must lie on that side of the
    median of the cluster below. Without a second peak or with ``y`` on the wrong side
    there is no upper cluster and :class:`GatingError` says so (the engine leaves the gate
    empty and flags it). The gate is the band ``x > cut`` over the whole ``y`` range; the
    cut's CI is the bootstrap interval of the valley (``n_boot`` multinomial redraws).
    """
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 50:
        raise GatingError(f"upper_cluster gate needs at least 50 events, got {x.size}")
    side = str(params.get("y_side", "any"))
    if side not in ("low", "high", "any"):
        raise GatingError(f"upper_cluster y_side = {side!r}; valid: low, high, any")
    prom = float(params.get("min_prominence", 0.02))
    q = grid_quantiles(x)
    counts, centers, width = histogram_grid(x, q)
    sig = bandwidth_bins(x, width, float(params.get("bw_adjust", 1.0)), q)
    peaks, valleys = _peak_valleys(smoothed(counts, sig), centers, prom)
    if peaks.size < 2:
        raise GatingError("upper_cluster gate: x has a single peak, no upper cluster")
    cut = valleys[-1]
    lower = valleys[-2] if len(valleys) > 1 else -np.inf
    upper = x > cut
    below = (x > lower) & ~upper
    my_up, my_below = float(np.median(y[upper])), float(np.median(y[below]))
    if (side == "low" and my_up >= my_below) or (side == "high" and my_up <= my_below):
        raise GatingError(
            f"upper_cluster gate: the top x peak (above {cut:.2f}) is not y-{side} "
            f"(median y {my_up:.2f} vs {my_below:.2f} below it): no distinct upper cluster"
        )
    ci = NO_INTERVAL
    if n_boot > 0:

        def estimate(
            c: NDArray[np.float64], dens: NDArray[np.float64], redraw: Redraw | None = None
        ) -> tuple[float, str]:
            _, v = _peak_valleys(dens, centers, prom, None if redraw is None else redraw.peaks())
            return (v[-1] if v else float("nan")), "valley"

        def interval() -> tuple[float, float]:
            boots = bootstrap_thresholds(counts, sig, n_boot, random_state, estimate)
            if not np.isfinite(boots).any():
                return float("nan"), float("nan")
            lo, hi = np.nanquantile(boots, [0.025, 0.975])
            return float(lo), float(hi)

        ci = deferred_interval(interval, random_state)
    (_, x1), (y0, y1) = _pad(x), _pad(y)
    verts = ((cut, y0), (x1, y0), (x1, y1), (cut, y1))
    n = int(x.size)
    return verts, [
        Param("upper cluster x cut (valley)", float(cut), ci, n, "x"),
        Param("upper cluster fraction", float(upper.mean()), NO_INTERVAL, n),
    ]


def cytof_singlet_polygon(
    x: NDArray[Any],
    y: NDArray[Any],
    params: Mapping[str, Any],
    *,
    n_boot: int,
    random_state: int | np.random.Generator | None,
) -> tuple[Vertices, list[Param]]:
    """Mass-cytometry singlets: a band in event length (``x``) and DNA intercalator (``y``).

    Event length up to ``median + k_length MAD``, DNA within ``median +- k_dna MAD``.
    Doublets carry two cells' DNA and a longer ion cloud; both are right tails, not separate
    peaks, so a robust band is steadier than a density valley on a few thousand events.
    """
    x = np.array(x, dtype=float)  # copies: the deferred interval reads them later
    y = np.array(y, dtype=float)
    if x.size < 20:
        raise GatingError(f"cytof singlet gate needs at least 20 events, got {x.size}")
    k_len = float(params.get("k_length", 4.0))
    k_dna = float(params.get("k_dna", 4.0))

    def band(a: NDArray[np.float64], b: NDArray[np.float64]) -> tuple[float, float, float]:
        ma, mb = float(np.median(a)), float(np.median(b))
        sa = 1.4826 * float(np.median(np.abs(a - ma)))
        sb = 1.4826 * float(np.median(np.abs(b - mb)))
        return ma + k_len * sa, mb - k_dna * sb, mb + k_dna * sb

    est = band(x, y)
    cis = [NO_INTERVAL] * 3
    if n_boot > 0:

        def intervals() -> list[tuple[float, float]]:
            rng = np.random.default_rng(random_state)
            idx = np.arange(x.size) if x.size <= 20_000 else rng.choice(x.size, 20_000, False)
            boots = np.array(
                [band(x[j], y[j]) for j in (rng.choice(idx, idx.size) for _ in range(n_boot))]
            )
            return [_percentile_interval(boots[:, i]) for i in range(3)]

        every = deferred_interval(intervals, random_state)
        cis = [every.item(i) for i in range(3)]
    x_hi, y_lo, y_hi = est
    x0 = _span(x)[0]
    verts = ((x0, y_lo), (x_hi, y_lo), (x_hi, y_hi), (x0, y_hi))
    n = int(x.size)
    names = (("event length high", "x"), ("DNA low", "y"), ("DNA high", "y"))
    return verts, [
        Param(nm, float(v), c, n, axis) for (nm, axis), v, c in zip(names, est, cis, strict=True)
    ]


def _pad(v: NDArray[np.float64]) -> tuple[float, float]:
    lo, hi = float(np.min(v)), float(np.max(v))
    pad = 0.25 * (hi - lo) + 1e-6
    return lo - pad, hi + pad


DENSITY = {
    "debris": debris_polygon,
    "singlets": singlet_polygon,
    "lymphocytes": lymphocyte_polygon,
    "upper_cluster": upper_cluster_polygon,
    "cytof_singlets": cytof_singlet_polygon,
}
