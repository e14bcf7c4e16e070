"""Data-driven thresholds on the transformed scale, each with a bootstrap confidence interval.

Rules
-----
``valley``
    Density valley between the two most prominent peaks of a smoothed histogram (a fast
    binned Gaussian KDE, Silverman bandwidth). Used for bimodal markers (CD3, CD45, dump,
    CD16, NKp46, CD49b, Eomes). When the data are unimodal (no second peak with at least
    ``min_prominence`` of the main peak's height) it falls back to ``mirror``: the main peak
    is taken as the negative (``unimodal="negative"``) or the positive
    (``unimodal="positive"``) population and the threshold sits ``z`` robust standard
    deviations beyond its mode, measured on the side away from the other population.
    Given a cut-off known to lie above the negatives (``positive_above``: the batch
    pool's), a main peak above it is a positive one, and the threshold is the point below
    it where the events become mostly negatives (``reflected positive``, below).
``gmm``
    Where the posteriors of a two-component 1-D Gaussian mixture are equal (between the two
    means). Less biased than the valley when one population is small and the two overlap
    (CD56bright among NK: the density minimum sits inside the minority population's flank).
    Falls back to ``valley`` when the components are not separated (d' < 1.5).
``fmo``
    The ``percentile`` (default 99.5) of the marker in the FMO control's parent gate.
``mirror``
    The "negative mirror" described above; the documented fallback for a missing FMO
    (``z`` = the normal quantile of the FMO percentile, so 2.576 for 99.5).
``quantile``
    A plain quantile of the parent (``percentile``).
``fixed``
    A literal ``value``.
``reflected positive``
    Only with ``positive_above`` and no valley: the mirror rule's peak lies above that
    cut-off, so it is the positive population (in tissue, CD69+ cells can outnumber the
    negatives fifty to one, leaving the negatives no peak of their own). The peak is taken
    as symmetric about its mode; what lies below it beyond its reflected upper half is the
    negative population, and the threshold is where that makes half the density
    (:func:`nkflow.gating.density.reflected_from_density`).

Confidence intervals: the density rules (valley, gmm, mirror) take ``n_boot`` bootstrap
resamples (``random_state`` seeds a local generator); they are computed on a fine histogram,
so a resample is an exact multinomial redraw of the bin counts (fast for any event count).
Percentile rules (fmo, quantile) need no resampling: their interval is the exact
distribution-free order-statistic interval (:func:`nkflow.stats.quantile_interval`), the
same one :func:`nkflow.tl.fmo_threshold` reports. ``n_boot=0`` skips every interval.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats as _sps

from ..exceptions import GatingError
from ..stats import quantile_interval
from .censored import above_negatives
from .censored import censored_mirror as _censored_mirror
from .censored import zero_spike as _zero_spike
from .density import (
    Redraw,
    bandwidth_bins,
    bootstrap_thresholds,
    gmm_crossing,
    grid_quantiles,
    histogram_grid,
    mirror_from_density,
    mirror_peak,
    reflected_from_density,
    smoothed,
    valley_from_density,
)
from .intervals import NO_INTERVAL, Deferred, deferred_interval
from .mirror_check import warn_refuted_mirror

__all__ = [
    "TABLE_COLUMNS",
    "THRESHOLD_COLUMNS",
    "RuleFit",
    "Threshold",
    "density_fit",
    "fmo_threshold",
    "gmm_threshold",
    "mirror_threshold",
    "quantile_threshold",
    "valley_threshold",
]

logger = logging.getLogger(__name__)

THRESHOLD_COLUMNS = [
    "sample_id", "tissue", "batch", "gate", "marker", "channel", "value", "ci_low", "ci_high",
    "percent_above_at_ci_low", "percent_above_at_ci_high", "rule", "control_file", "n_events",
    "evidence", "disagrees", "note",
]  # fmt: skip

#: The thresholds table as nkflow writes it: the record's columns with the cut-off also in
#: the instrument's linear units (added by the pipeline, which knows each sample's transform)
#: and how it was found next to the rule.
TABLE_COLUMNS = (
    "sample_id", "tissue", "batch", "gate", "marker", "channel", "value", "ci_low", "ci_high",
    "value_linear", "ci_low_linear", "ci_high_linear", "percent_above_at_ci_low",
    "percent_above_at_ci_high", "rule", "evidence", "control_file",
    "n_events", "disagrees", "note",
)  # fmt: skip


@dataclass(frozen=True)
class Threshold:
    """A resolved threshold with its provenance (one row of the thresholds table).

    ``gate`` is the id of the gate whose events the threshold was computed on (so the same
    marker can carry different thresholds in different parents).

    Attributes
    ----------
    marker, channel
        The canonical marker and its ``$PnN`` channel.
    value
        The cut-off on the ``adata.X`` (transformed) scale.
    ci_low, ci_high
        Its confidence interval on the same scale (NaN when none was computed; ``-inf`` /
        ``inf`` for a bound left open: a percentile of too few events, see
        :func:`nkflow.stats.quantile_interval`).
    percent_above_at_ci_low, percent_above_at_ci_high
        Percent of the gate's events at or above the cut-off were it at ``ci_low`` /
        ``ci_high`` (:mod:`nkflow.gating.cut_spread`); NaN where not measured.
    rule
        How it was found, e.g. ``"fmo p99.5"``, ``"valley"``, ``"mirror"``.
    control_file
        The FMO (or other control) file it was computed on; ``""`` for a sample's own.
    n_events
        Events the threshold was computed on.
    gate
        Id of the gate whose events were used (see above).
    sample_id, tissue, batch
        Whose threshold it is; ``sample_id == ""`` for one shared by a tissue and batch.
    evidence
        Where "negative" came from: one of :data:`nkflow.gating.negative.EVIDENCE`.
    disagrees
        The sample's own valley disagrees with a batch threshold it was given.
    note
        Free text: a manual threshold's reason and who set it; for a batch pool, the
        sample's own valley.
    """

    marker: str
    channel: str
    value: float
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    percent_above_at_ci_low: float = float("nan")
    percent_above_at_ci_high: float = float("nan")
    rule: str = ""
    control_file: str = ""
    n_events: int = 0
    gate: str = ""
    sample_id: str = ""
    tissue: str = ""
    batch: str = ""
    evidence: str = ""  # where "negative" came from: see nkflow.gating.negative.EVIDENCE
    disagrees: bool = False  # the sample's own valley disagrees with a batch threshold
    note: str = ""  # manual: reason and who set it; batch pool: the sample's own valley

    def to_record(self) -> dict[str, object]:
        """Dict in :data:`THRESHOLD_COLUMNS` order (JSON-able)."""
        return {c: getattr(self, c) for c in THRESHOLD_COLUMNS}


def _clean(values: ArrayLike) -> NDArray[np.float64]:
    v = np.asarray(values, dtype=np.float64).ravel()
    return v[np.isfinite(v)]


def _z_for(percentile: float) -> float:
    return float(_sps.norm.ppf(percentile / 100.0))


class RuleFit(NamedTuple):
    """A density rule's threshold, with its bootstrap interval still to compute.

    ``interval`` yields ``(ci_low, ci_high)`` (NaN without resamples); see
    :mod:`nkflow.gating.intervals` for why it is deferred.
    """

    value: float
    interval: Deferred[tuple[float, float]]
    rule_used: str
    n_events: int

    def resolved(self) -> tuple[float, float, float, str, int]:
        """``(value, ci_low, ci_high, rule_used, n_events)``, computing the interval."""
        lo, hi = self.interval.result()
        return self.value, lo, hi, self.rule_used, self.n_events


def density_fit(
    rule: str,
    values: ArrayLike,
    *,
    percentile: float = 99.5,
    min_prominence: float = 0.02,
    bw_adjust: float = 1.0,
    unimodal: str = "negative",
    between: str = "top2",
    n_boot: int = 200,
    random_state: int | np.random.Generator | None = 0,
    confidence: float = 0.95,
    positive_above: float | None = None,
) -> RuleFit:
    """The ``valley``, ``gmm`` or ``mirror`` threshold now, its bootstrap interval deferred.

    The computation of :func:`valley_threshold`, :func:`gmm_threshold` and
    :func:`mirror_threshold` (which return this fit resolved); the gating engine uses it to
    compute intervals on a background thread while it gates with the values.

    Parameters
    ----------
    rule
        ``"valley"``, ``"gmm"`` or ``"mirror"``.
    values
        Marker values on the transformed scale.
    percentile
        The mirror rule's percentile (the fallback percentile of valley and gmm).
    min_prominence, bw_adjust, unimodal, between
        As for :func:`valley_threshold` (the mirror rule takes the highest peak and
        ignores ``min_prominence`` and ``between``).
    n_boot, random_state, confidence
        Resamples (0: no interval), their seed and the interval's coverage.
    positive_above
        A cut-off known to lie above the negative population (the batch pool's valley),
        or None. With ``unimodal="negative"`` and no valley, a mirror peak above it is
        taken as the positive population (``reflected positive``, module docstring).

    Returns
    -------
    RuleFit
    """
    if rule not in ("valley", "gmm", "mirror"):
        raise GatingError(f"density rule {rule!r}; valid: valley, gmm, mirror")
    z = _z_for(percentile)
    v = _clean(values)
    if v.size < 10:
        raise GatingError(f"{rule} threshold needs at least 10 events, got {v.size}")
    if unimodal not in ("negative", "positive"):
        raise GatingError(f"unimodal = {unimodal!r}; valid: negative, positive")
    # a cut-off above the negatives can tell a positive main peak only to a rule that
    # would otherwise take it for the negatives
    reference = positive_above if rule != "mirror" and unimodal == "negative" else None
    n0 = _zero_spike(v) if unimodal == "negative" else 0
    if n0:  # zero-inflated (mass cytometry): see nkflow.gating.censored
        v = v[v > v.min()]
    q = grid_quantiles(v)
    counts, centers, width = histogram_grid(v, q)
    sig = bandwidth_bins(v, width, bw_adjust, q)

    def estimate(
        c: NDArray[np.float64], dens: NDArray[np.float64], redraw: Redraw | None = None
    ) -> tuple[float, str]:
        cuts = []
        if rule == "gmm":
            cuts.append((gmm_crossing(c, centers), "gmm"))
        if rule in ("valley", "gmm"):
            peaks = None if redraw is None else redraw.peaks()
            cuts.append(
                (valley_from_density(dens, centers, min_prominence, between, peaks), "valley")
            )
        for t, name in cuts:
            if t is not None and (not n0 or above_negatives(t, c, centers, n0, z)):
                return t, name
        if reference is not None and not n0:
            peak = mirror_peak(dens) if redraw is None else redraw.mirror_peak("negative")
            if centers[peak] > reference:  # the batch says the main peak is positive
                t = reflected_from_density(dens, centers, peak)
                if t is not None:
                    return t, "reflected positive"
        if n0:
            return _censored_mirror(c, centers, n0, z), "mirror (zero-inflated)"
        return mirror_from_density(c, dens, centers, z, unimodal, sig, redraw), "mirror"

    value, used = estimate(counts, smoothed(counts, sig))
    n_events = int(v.size) + n0
    if n_boot <= 0:
        return RuleFit(value, NO_INTERVAL, used, n_events)

    def interval() -> tuple[float, float]:
        boots = bootstrap_thresholds(counts, sig, n_boot, random_state, estimate)
        a = (1.0 - confidence) / 2.0
        lo, hi = (float(x) for x in np.quantile(boots, [a, 1.0 - a]))
        return lo, hi

    return RuleFit(value, deferred_interval(interval, random_state), used, n_events)


def valley_threshold(
    values: ArrayLike,
    *,
    min_prominence: float = 0.02,
    bw_adjust: float = 1.0,
    unimodal: str = "negative",
    fallback_percentile: float = 99.5,
    n_boot: int = 200,
    random_state: int | np.random.Generator | None = 0,
    confidence: float = 0.95,
    between: str = "top2",
    positive_above: float | None = None,
    check_mirror: bool = True,
) -> tuple[float, float, float, str, int]:
    """Density valley between the two most prominent peaks, with a bootstrap CI.

    Parameters
    ----------
    values
        Marker values on the transformed scale (events of the parent gate).
    min_prominence
        A peak counts when its prominence is at least this fraction of the highest density.
    bw_adjust
        Multiplier of Silverman's bandwidth.
    unimodal
        What a single peak is, for the fallback: ``"negative"`` or ``"positive"``.
    fallback_percentile
        The mirror fallback puts the threshold at this percentile of a normal fitted to the
        main peak's outer half.
    n_boot
        Bootstrap resamples (0: no CI).
    random_state
        Seed or generator for the bootstrap.
    confidence
        Coverage of the percentile bootstrap interval.
    between
        ``"top2"``: the two most prominent peaks; ``"first_two"``: the lowest peak and the
        next one (a negative, a dim and a bright peak: cut negative from dim);
        ``"below_main"``: the highest peak and the most prominent peak left of it (debris
        below cells).
    positive_above
        A cut-off known to lie above the negatives (the batch pool's), or None: without a
        valley, a main peak above it is positive and the cut is ``reflected positive``
        (module docstring) instead of its mirror.
    check_mirror
        Warn when the events beyond a mirror fallback's cut-off refute it (``gate()`` unsets it).

    Returns
    -------
    value, ci_low, ci_high, rule_used, n_events
        ``rule_used`` is ``"valley"``, ``"reflected positive"`` or ``"mirror"`` (unimodal
        fallback).

    Raises
    ------
    GatingError
        Fewer than 10 finite values, or ``unimodal`` not ``"negative"``/``"positive"``.

    Warns
    -----
    MissingControlWarning
        Under a tenth of the events its model expects lie beyond a mirror fallback's cut-off:
        the main peak holds positives (FlowAtlas 423C liver CD69 read 0 % positive).
    """
    fit = density_fit(
        "valley",
        values,
        percentile=fallback_percentile,
        min_prominence=min_prominence,
        bw_adjust=bw_adjust,
        unimodal=unimodal,
        between=between,
        n_boot=n_boot,
        random_state=random_state,
        confidence=confidence,
        positive_above=positive_above,
    ).resolved()
    p, side = fallback_percentile, unimodal
    return warn_refuted_mirror(fit, values, percentile=p, unimodal=side) if check_mirror else fit


def gmm_threshold(
    values: ArrayLike,
    *,
    unimodal: str = "negative",
    fallback_percentile: float = 99.5,
    min_prominence: float = 0.02,
    bw_adjust: float = 1.0,
    n_boot: int = 200,
    random_state: int | np.random.Generator | None = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float, str, int]:
    """Equal-posterior threshold of a two-component Gaussian mixture, with a bootstrap CI.

    Falls back to :func:`valley_threshold` (then its mirror) when the mixture does not find
    two separated components.

    Parameters
    ----------
    values
        Marker values on the transformed scale (events of the parent gate).
    unimodal
        What a single peak is, for the mirror fallback: ``"negative"`` or ``"positive"``.
    fallback_percentile
        The mirror fallback puts the threshold at this percentile of a normal fitted to the
        main peak's outer half.
    min_prominence, bw_adjust
        For the valley fallback, as in :func:`valley_threshold`.
    n_boot
        Bootstrap resamples (0: no CI).
    random_state
        Seed or generator for the bootstrap.
    confidence
        Coverage of the percentile bootstrap interval.

    Returns
    -------
    value, ci_low, ci_high, rule_used, n_events
        ``rule_used`` is ``"gmm"``, ``"valley"`` or ``"mirror"``.

    Raises
    ------
    GatingError
        As for :func:`valley_threshold`.

    Warns
    -----
    MissingControlWarning
        As for :func:`valley_threshold`, when the mirror fallback's cut-off is refuted.
    """
    fit = density_fit("gmm", values, percentile=fallback_percentile, bw_adjust=bw_adjust,
                      min_prominence=min_prominence, unimodal=unimodal, n_boot=n_boot,
                      random_state=random_state, confidence=confidence).resolved()  # fmt: skip
    return warn_refuted_mirror(fit, values, percentile=fallback_percentile, unimodal=unimodal)


def mirror_threshold(
    values: ArrayLike,
    *,
    percentile: float = 99.5,
    unimodal: str = "negative",
    bw_adjust: float = 1.0,
    n_boot: int = 200,
    random_state: int | np.random.Generator | None = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float, str, int]:
    """Negative-mirror threshold: mode of the main peak + z(percentile) robust SDs.

    The negative population is assumed symmetric about its mode, so its spread is measured
    on its lower half, where positive cells do not contribute. This is the fallback for a
    missing FMO control.

    Parameters
    ----------
    values
        Marker values on the transformed scale (events of the parent gate).
    percentile
        In (0, 100): the threshold is this percentile of a normal with the peak's mode and
        robust SD (99.5: mode + 2.58 SD).
    unimodal
        ``"negative"``: the main peak is the lowest one (of at least 10 % of the top
        density) and the threshold lies above it; ``"positive"``: the highest one, the
        threshold below it (its spread measured on its upper half).
    bw_adjust
        Multiplier of Silverman's bandwidth.
    n_boot
        Bootstrap resamples (0: no CI).
    random_state
        Seed or generator for the bootstrap.
    confidence
        Coverage of the percentile bootstrap interval.

    Returns
    -------
    value, ci_low, ci_high, rule_used, n_events
        ``rule_used`` is ``"mirror"`` (``"mirror (zero-inflated)"`` when a spike of
        events at the minimum, as in mass cytometry, is set aside).

    Raises
    ------
    GatingError
        Fewer than 10 finite values, or ``unimodal`` not ``"negative"``/``"positive"``.

    Warns
    -----
    MissingControlWarning
        Far fewer events lie beyond the cut-off than expected (see :func:`valley_threshold`):
        refuted (:mod:`nkflow.gating.mirror_check`).
    """
    fit = density_fit("mirror", values, percentile=percentile, bw_adjust=bw_adjust,
                      unimodal=unimodal, n_boot=n_boot, random_state=random_state,
                      confidence=confidence).resolved()  # fmt: skip
    return warn_refuted_mirror(fit, values, percentile=percentile, unimodal=unimodal)


def quantile_threshold(
    values: ArrayLike,
    *,
    percentile: float = 99.5,
    n_boot: int = 200,
    random_state: int | np.random.Generator | None = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float, str, int]:
    """Percentile of ``values`` with its distribution-free (order-statistic) CI.

    Parameters
    ----------
    values
        Marker values on the transformed scale.
    percentile
        In (0, 100).
    n_boot
        0 skips the interval (as for the other rules); any other value gives the exact
        interval of :func:`nkflow.stats.quantile_interval`, which needs no resampling.
    random_state
        Unused (no resampling); accepted so that every rule takes the same arguments.
    confidence
        Coverage of the interval.

    Returns
    -------
    value, ci_low, ci_high, rule_used, n_events
        ``rule_used`` is ``"quantile"``; ``ci_low``/``ci_high`` are NaN when ``n_boot``
        is 0, and ``-inf``/``inf`` where the sample is too small to bound the percentile
        (``ci_high = inf`` below 736 events at the 99.5th).

    Raises
    ------
    GatingError
        No finite values, or ``percentile`` outside (0, 100).
    """
    del random_state  # the interval is exact
    v = _clean(values)
    if v.size == 0:
        raise GatingError("percentile threshold on an empty population")
    if not 0.0 < percentile < 100.0:
        raise GatingError(f"percentile = {percentile!r}; valid: 0 < percentile < 100")
    v.sort()
    lo, hi = quantile_interval(v, percentile / 100.0, confidence=confidence)
    # on a handful of events (the 99.5th of 5 or fewer) the interpolated percentile falls
    # below the order statistic that bounds it from below (the maximum): the value is that
    # bound, so the interval always holds it, with or without the interval reported
    value = float(np.clip(np.percentile(v, percentile), lo, hi))
    if n_boot <= 0:
        lo = hi = float("nan")
    return value, lo, hi, "quantile", int(v.size)


def fmo_threshold(
    values: ArrayLike,
    *,
    percentile: float = 99.5,
    n_boot: int = 200,
    random_state: int | np.random.Generator | None = 0,
    confidence: float = 0.95,
) -> tuple[float, float, float, str, int]:
    """FMO threshold: the ``percentile`` of the marker in the FMO tube's parent gate.

    Same computation as :func:`quantile_threshold` (value and order-statistic interval).

    Parameters
    ----------
    values
        The marker's values on the transformed scale, in the FMO tube's events of the gate
        the marker is thresholded on.
    percentile
        In (0, 100); 99.5 leaves 0.5 % of the FMO events above the threshold.
    n_boot
        0 skips the interval; any other value gives the exact order-statistic interval.
    random_state
        Unused (no resampling); accepted so that every rule takes the same arguments.
    confidence
        Coverage of the interval.

    Returns
    -------
    value, ci_low, ci_high, rule_used, n_events
        ``rule_used`` is ``"fmo"``.

    Raises
    ------
    GatingError
        No finite values, or ``percentile`` outside (0, 100).
    """
    value, lo, hi, _, n = quantile_threshold(
        values,
        percentile=percentile,
        n_boot=n_boot,
        random_state=random_state,
        confidence=confidence,
    )
    return value, lo, hi, "fmo", n
