"""A dominant positive peak judged against the batch's cut-off: its own cut below it.

In tissue the positives of a residency marker can outnumber the negatives fifty to one; the
negatives then have no peak of their own, the valley rule finds none and its mirror takes
the positive peak for the negatives (0 % positive for a true 95-99 %). Given the batch
pool's cut-off, a main peak above it is positive, and the sample's own cut-off is where the
events below that peak become mostly negatives (``reflected positive``). Without a batch
cut-off nothing changes: a mirror's refutation alone does not tell a dominant positive peak
from a negative one with a narrower upper half (last test).

Truth: the simulator's CD69-FMO tube of human ileum (its NK: CD69-negative by construction,
with the tube's spillover spread and autofluorescence) mixed with the NK_*_tr events of a
fully stained tube (CD69+ by construction), at known fractions.
"""

from __future__ import annotations

import numpy as np
import pytest

from nkflow.datasets import simulate_sample
from nkflow.datasets.populations import HUMAN_NK
from nkflow.gating.density import (
    Redraw,
    _Chunk,
    histogram_grid,
    mirror_peak,
    reflected_from_density,
    smoothed,
)
from nkflow.gating.mirror_check import mirror_tail
from nkflow.gating.negative import disagreement, pool_threshold, subsample
from nkflow.gating.template import DimSpec
from nkflow.gating.thresholds import density_fit, valley_threshold
from nkflow.pp.transform import logicle

N_EVENTS = 3000  # a tissue sample's NK


def _cd69(tissue: str, *, fmo: bool, resident_only: bool, n: int, seed: int) -> np.ndarray:
    """Logicle CD69 of the simulated NK (all, or the resident ones) of one tube."""
    sim = simulate_sample("human", tissue, fmo="CD69" if fmo else "", n_events=n,
                          random_state=seed)  # fmt: skip
    col = next(i for i, m in enumerate(sim.markers) if m.split(" ")[0] == "CD69")
    labels = np.asarray(sim.truth["label"].astype(str), dtype=str)
    keep = np.char.endswith(labels, "_tr") if resident_only else np.isin(labels, HUMAN_NK)
    return logicle(sim.compensated()[keep, col])


@pytest.fixture(scope="module")
def sim() -> dict[str, np.ndarray]:
    return {
        "negative": _cd69("ileum", fmo=True, resident_only=False, n=60_000, seed=0),
        "positive": _cd69("ileum", fmo=False, resident_only=True, n=120_000, seed=1),
        "blood": _cd69("blood", fmo=False, resident_only=False, n=60_000, seed=5),
    }


def _mixture(sim: dict[str, np.ndarray], positive: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    k = round(positive * N_EVENTS)
    assert sim["positive"].size >= k and sim["negative"].size >= N_EVENTS - k
    return np.r_[rng.choice(sim["negative"], N_EVENTS - k, replace=False),
                 rng.choice(sim["positive"], k, replace=False)]  # fmt: skip


def _pool(sim: dict[str, np.ndarray], sample: np.ndarray) -> float:
    """The batch pool's cut-off of a blood sample and ``sample``, as the pipeline pools."""
    found = pool_threshold([subsample(sim["blood"], 5000, 1), subsample(sample, 5000, 2)],
                           DimSpec("CD69"), percentile=99.5, n_boot=0, random_state=0)  # fmt: skip
    assert found is not None
    return found[0]


def test_the_cut_is_where_the_negatives_make_half_the_density() -> None:
    """Golden: a unit-height normal peak at 0.6 (sd 0.05) over a normal of 5 % its height
    at 0.2 (sd 0.08): below the peak its reflection is the peak itself, so the cut is where
    the two curves cross, found analytically."""
    x = np.linspace(-0.2, 1.0, 4801)
    pos = np.exp(-0.5 * ((x - 0.6) / 0.05) ** 2)
    neg = 0.05 * np.exp(-0.5 * ((x - 0.2) / 0.08) ** 2)
    dens = pos + neg
    peak = int(np.argmax(dens))
    cut = reflected_from_density(dens, x, peak)
    between = (x > 0.2) & (x < x[peak])
    crossing = x[between][np.argmin(np.abs(np.log(neg[between]) - np.log(pos[between])))]
    assert cut is not None and abs(cut - crossing) <= 2 * (x[1] - x[0])
    # no bin below a peak in the first bin
    assert reflected_from_density(dens[peak:], x[peak:], 0) is None


@pytest.mark.parametrize("positive", [0.5, 0.8, 0.9, 0.95, 0.98, 0.99])
def test_own_cut_against_truth_from_half_to_99_percent_positive(sim, positive: float) -> None:
    """With the batch's cut-off the sample's own rule reads its % positive within 3 points
    from 50 % to 99 % positive (the valley up to 90 %, the reflected cut beyond). Without it
    the mirror reads the dominant positive peak as negative: under 1 % positive."""
    v = _mixture(sim, positive, seed=int(positive * 100))
    ref = _pool(sim, v)
    value, _, _, used, _ = valley_threshold(v, n_boot=0, positive_above=ref)
    assert abs(100 * np.mean(v > value) - 100 * positive) <= 3.0, (used, value)
    alone, _, _, alone_used, _ = valley_threshold(v, n_boot=0)
    if used == "reflected positive":
        assert alone_used == "mirror" and np.mean(v > alone) < 0.01
    else:
        assert (used, value) == (alone_used, alone)  # a valley is not touched


def test_a_main_peak_below_the_batch_cut_changes_nothing(sim) -> None:
    """Blood-like (the main peak negative, 1 % positive, no valley): bit for bit the same
    cut-off and interval with or without the batch's cut-off."""
    v = _mixture(sim, 0.01, seed=2)
    ref = _pool(sim, _mixture(sim, 0.95, seed=3))
    alone = valley_threshold(v, n_boot=50, random_state=4)
    given = valley_threshold(v, n_boot=50, random_state=4, positive_above=ref)
    assert alone[3] == "mirror" and given == alone


def test_positive_above_only_for_rules_that_take_the_main_peak_as_negative(sim) -> None:
    v = _mixture(sim, 0.98, seed=5)
    ref = _pool(sim, v)
    for rule, unimodal in [("mirror", "negative"), ("valley", "positive")]:
        alone = density_fit(rule, v, unimodal=unimodal, n_boot=0)
        given = density_fit(rule, v, unimodal=unimodal, n_boot=0, positive_above=ref)
        assert given.rule_used == alone.rule_used != "reflected positive"
        assert given.value == alone.value


def test_interval_and_disagreement_of_the_reflected_cut(sim) -> None:
    """The bootstrap interval brackets the cut-off, and a batch cut-off outside it that
    moves the % positive by a point or more is flagged, naming the rule."""
    v = _mixture(sim, 0.97, seed=6)
    ref = _pool(sim, v)
    value, lo, hi, used, _ = valley_threshold(v, n_boot=100, random_state=0, positive_above=ref)
    assert used == "reflected positive" and lo <= value <= hi
    flag, note = disagreement((value, lo, hi, used), ref, v)
    assert "reflected positive" in note and "% positive at its own cut" in note
    assert flag is (not lo <= ref <= hi and abs(np.mean(v > value) - np.mean(v > ref)) >= 0.01)
    far = float(np.quantile(v, 0.5))  # a batch cut in the middle of the positives
    assert disagreement((value, lo, hi, used), far, v)[0]


def test_redraws_find_the_same_peak_as_the_rule(sim) -> None:
    v = _mixture(sim, 0.95, seed=7)
    counts, _, _ = histogram_grid(v)
    draws = np.random.default_rng(0).multinomial(int(counts.sum()), counts / counts.sum(), 8)
    chunk = _Chunk(draws.astype(np.float64), 6.0)
    for i in range(8):
        expected = mirror_peak(smoothed(draws[i].astype(np.float64), 6.0))
        assert Redraw(chunk, i).mirror_peak("negative") == expected


def test_without_a_batch_cut_a_refuted_mirror_stays_refused() -> None:
    """The limit: the mirror's own refutation cannot say which way a peak faces. A negative
    population whose upper half is 30 % narrower than its lower half (the logicle
    compression mirror_check allows for, past its 22 % margin) is refuted as FlowAtlas
    423C liver's dominant CD69+ peak is (tests/test_flowatlas_residency.py), and the
    reflected cut would call most of those negatives positive. So without a batch cut-off
    the rule stays the mirror (and the engine leaves the refuted cut-off unset)."""
    neg = np.random.default_rng(11).normal(0.2, 0.05, 20_000)
    narrow = np.where(neg > 0.2, 0.2 + 0.7 * (neg - 0.2), neg)
    fit = density_fit("valley", narrow, n_boot=0)
    assert fit.rule_used == "mirror" and mirror_tail(narrow, fit.value).refuted
    counts, centers, _ = histogram_grid(narrow)
    dens = smoothed(counts, 8.0)
    cut = reflected_from_density(dens, centers, mirror_peak(dens))
    assert cut is not None and np.mean(narrow > cut) > 0.5  # negatives read as positive
