"""A mirror cut-off beyond every event is refuted by its own model (and only then)."""

from __future__ import annotations

import numpy as np
import pytest

from nkflow.gating.thresholds import MIRROR_REFUTED_EXPECTED, mirror_refuted

_RNG = np.random.default_rng(7)
_NEGATIVES = _RNG.normal(0.2, 0.05, 5000)


@pytest.mark.parametrize(
    ("values", "cut", "unimodal", "refuted"),
    [
        # a negative peak and the rule's 99.5th-percentile cut: ~25 events above it
        (_NEGATIVES, 0.2 + 2.576 * 0.05, "negative", False),
        # 423C liver: a cut above every one of 5,000 events, ~25 expected above it
        (_NEGATIVES, 0.6, "negative", True),
        # the same cut on too few events to expect any above it: not refuted
        (_NEGATIVES[:1000], 0.6, "negative", False),
        # unimodal positive: the cut below every event
        (_NEGATIVES, -0.5, "positive", True),
        (_NEGATIVES, 0.6, "positive", False),
    ],
    ids=["fits", "beyond-all", "too-few-to-tell", "positive-below-all", "positive-fits"],
)
def test_mirror_refuted(values: np.ndarray, cut: float, unimodal: str, refuted: bool) -> None:
    why = mirror_refuted(values, cut, percentile=99.5, unimodal=unimodal)
    assert bool(why) is refuted
    if refuted:
        assert f"{values.size} events" in why and "not set" in why


def test_the_bar_is_a_one_in_a_thousand_chance() -> None:
    # no event beyond the cut has probability exp(-expected) under the rule's own model
    assert np.exp(-MIRROR_REFUTED_EXPECTED) == pytest.approx(1e-3)
    n = int(np.ceil(MIRROR_REFUTED_EXPECTED / 0.005))  # events the 99.5 rule needs
    flat = np.zeros(n)
    assert mirror_refuted(flat, 1.0) and not mirror_refuted(flat[: n - 2], 1.0)
