"""A mirror cut-off whose own model overstates the events beyond it: refuted or doubted.

The envelope of the rules (a dominant positive peak N(0.40, 0.08) with 7 % negatives below
it) gave the mirror 0.11 % positive for a true 93 % at 200,000 events, with 214 events
beyond the cut where its model expects 999: "no event beyond" was too weak a test. A large
gap refutes the cut (not set); a smaller one (fewer than half) leaves it with a warning.
"""

from __future__ import annotations

import numpy as np
import pytest

from nkflow.gating.mirror_check import DOUBT_FOLD, REFUTED_FOLD, mirror_refuted, mirror_tail
from nkflow.gating.thresholds import mirror_threshold

_RNG = np.random.default_rng(7)
_NEGATIVES = _RNG.normal(0.2, 0.05, 5000)
_CUT = 0.2 + 2.576 * 0.05  # the rule's 99.5th-percentile cut of _NEGATIVES


def _narrower_above(values: np.ndarray, factor: float) -> np.ndarray:
    upper = values >= 0.2
    return np.r_[values[~upper], 0.2 + factor * (values[upper] - 0.2)]


def _dominant_positive(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n_pos = int(0.93 * n)
    return np.r_[rng.normal(0.18, 0.05, n - n_pos), rng.normal(0.40, 0.08, n_pos)]


@pytest.mark.parametrize(
    ("values", "cut", "unimodal", "verdict"),
    [
        (_NEGATIVES, _CUT, "negative", "fits"),  # ~25 events above it
        (_NEGATIVES, 0.6, "negative", "refuted"),  # 423C liver: above every event
        (_NEGATIVES[:1000], 0.6, "negative", "fits"),  # ~5 expected: cannot tell
        # logicle compresses the upper half of a negative straddling zero: 10 % narrower
        # leaves fewer events beyond the cut, never a refutation
        (_narrower_above(_NEGATIVES, 0.9), _CUT, "negative", "doubtful"),
        (_NEGATIVES, -0.5, "positive", "refuted"),  # the cut below every event
        (_NEGATIVES, 0.6, "positive", "fits"),
    ],
    ids=["fits", "beyond-all", "too-few-to-tell", "asymmetric-negative", "positive-below-all",
         "positive-fits"],
)  # fmt: skip
def test_mirror_verdicts(values: np.ndarray, cut: float, unimodal: str, verdict: str) -> None:
    tail = mirror_tail(values, cut, percentile=99.5, unimodal=unimodal)
    assert tail.refuted is (verdict == "refuted")
    assert tail.doubtful is (verdict in ("refuted", "doubtful"))
    assert bool(mirror_refuted(values, cut, unimodal=unimodal)) is (verdict == "refuted")
    if verdict != "fits":
        assert f"of {values.size} events" in tail.reason()


@pytest.mark.parametrize(("n", "verdict"), [(20_000, "doubtful"), (200_000, "doubtful")])
def test_a_dominant_positive_peak_is_doubted(n: int, verdict: str) -> None:
    values = _dominant_positive(n)
    cut = mirror_threshold(values, n_boot=0)[0]
    tail = mirror_tail(values, cut)
    assert 0 < tail.beyond < 0.01 * n  # reads ~0 % of a true 93 %
    assert tail.doubtful and not tail.refuted
    assert "may hold positive events" in tail.reason()


@pytest.mark.parametrize(
    ("beyond", "refuted", "doubtful"), [(0, True, True), (9, True, True), (20, False, True),
                                        (60, False, False)],
)  # fmt: skip
def test_the_margins(beyond: int, refuted: bool, doubtful: bool) -> None:
    n = 20_000  # ~100 expected beyond a 99.5 cut
    tail = mirror_tail(np.r_[np.zeros(n), np.ones(beyond)], 0.5)
    assert tail.refuted is refuted and tail.doubtful is doubtful
    assert (REFUTED_FOLD, DOUBT_FOLD) == (10.0, 2.0)


def test_the_public_threshold_functions_warn_on_a_doubted_mirror() -> None:
    """valley_threshold on 423C liver's T-cell CD69 returned its mirror 1.51 above every one
    of 7,147 events (0 % positive) without a word; gate() leaves it unset."""
    import warnings

    from nkflow.exceptions import MissingControlWarning
    from nkflow.gating.thresholds import valley_threshold

    dominant = _dominant_positive(20_000)
    for fit in (mirror_threshold, valley_threshold):
        with pytest.warns(MissingControlWarning, match="of 20000 events lie above the mirror"):
            value, *_, used, _n = fit(dominant, n_boot=0)
        assert used == "mirror" and np.isfinite(value)  # returned as computed
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        valley_threshold(dominant, n_boot=0, check_mirror=False)  # the engine's own checks
        mirror_threshold(_NEGATIVES, n_boot=0)  # a negative peak with its tail: no word
