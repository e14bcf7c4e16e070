"""Whether the events refute a mirror cut-off: the main peak taken for the negatives.

The mirror rule (:func:`nkflow.gating.thresholds.mirror_threshold`, and the valley rule's
fallback) models the main peak as the negative population: a normal of which
``100 - percentile`` % (0.5 % for the 99.5th) lies beyond the cut. Positive events only add
to that, so far fewer events beyond the cut than the model expects mean the peak was not a
negative population: its lower half held another one (in tissue, a dominant positive peak
taken for the negatives, its spread widened by the negatives below it), and the cut reads
most positives as negative.

Tail counts are sensitive to the peak's shape, and a true negative peak may be asymmetric
(logicle compresses the upper half of a population straddling zero), so only a large gap
is trusted: :func:`mirror_tail` tells apart

- refuted: fewer than a tenth (:data:`REFUTED_FOLD`) of the expected events beyond the cut,
  P < 0.001 under the model: the cut-off is not set (NA, not 0 %). A negative peak would
  need an upper half ~22 % narrower than its lower half to fall there.
- doubtful: fewer than half (:data:`DOUBT_FOLD`), P < 0.001: the cut-off stands with a
  note and a warning. On FlowAtlas the blood and bone-marrow CD69/CD103 negatives gave
  0.7-1.2 times the expected count; the tissues' dominant CD69+ peaks 0-0.18.

Neither test can see a mirror on a dominant positive peak in a small file (a few events
expected beyond the cut): there only an FMO control or a batch pool sets the cut-off.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats as _sps

from ..exceptions import MissingControlWarning

__all__ = ["DOUBT_FOLD", "REFUTED_FOLD", "SIGNIFICANCE", "MirrorTail", "mirror_refuted",
           "mirror_tail", "warn_doubtful_mirror"]  # fmt: skip

#: refuted when the model expects more than this many times the events beyond the cut
REFUTED_FOLD = 10.0
#: doubtful (a note and a warning) above this many times
DOUBT_FOLD = 2.0
#: ... each only when so few events beyond the cut have a Poisson probability below this
SIGNIFICANCE = 1e-3


class MirrorTail(NamedTuple):
    """Events beyond a mirror cut-off against what the rule's model expects there."""

    beyond: int
    expected: float
    p_value: float  # P(this few or fewer | Poisson(expected))
    n_events: int
    cut: float
    side: str  # "above" or "below"

    def _short_by(self, fold: float) -> bool:
        return self.beyond * fold < self.expected and self.p_value < SIGNIFICANCE

    @property
    def refuted(self) -> bool:
        """Fewer than a tenth of the expected events beyond the cut (P < 0.001)."""
        return self._short_by(REFUTED_FOLD)

    @property
    def doubtful(self) -> bool:
        """Fewer than half of the expected events beyond the cut (P < 0.001)."""
        return self._short_by(DOUBT_FOLD)

    def reason(self) -> str:
        """The counts in words, and what they mean for the cut-off."""
        counts = (
            f"{self.beyond} of {self.n_events} events lie {self.side} the mirror cut-off "
            f"{self.cut:.4g}, where its model of the main peak as the negatives expects about "
            f"{self.expected:.0f} (P < {SIGNIFICANCE:g})"
        )
        if self.refuted:
            return (
                f"{counts}: that peak is not (only) negative events (a dominant positive "
                "population?), so the cut-off is not set; an FMO control or a batch pool sets it"
            )
        return (
            f"{counts}: the main peak may hold positive events (a dominant positive "
            "population reads as negative); check it against an FMO control or a batch pool"
        )


def mirror_tail(
    values: ArrayLike, cut: float, *, percentile: float = 99.5, unimodal: str = "negative"
) -> MirrorTail:
    """Count the events beyond a mirror cut-off against the rule's own expectation.

    Parameters
    ----------
    values
        The events the cut-off was set on (transformed scale).
    cut
        The mirror cut-off.
    percentile
        The rule's percentile.
    unimodal
        ``"negative"``: positives lie above the cut; ``"positive"``: below it.

    Returns
    -------
    MirrorTail
        ``refuted`` and ``doubtful`` say what the counts mean (module docstring).
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    beyond = int(np.count_nonzero(v > cut if unimodal == "negative" else v < cut))
    expected = (v.size - beyond) * (1.0 - percentile / 100.0)
    p_value = float(_sps.poisson.cdf(beyond, expected)) if expected > 0 else 1.0
    side = "above" if unimodal == "negative" else "below"
    return MirrorTail(beyond, expected, p_value, int(v.size), float(cut), side)


def mirror_refuted(
    values: ArrayLike, cut: float, *, percentile: float = 99.5, unimodal: str = "negative"
) -> str:
    """Why the events refute a mirror cut-off, or ``""`` when they do not.

    Parameters
    ----------
    values, cut, percentile, unimodal
        As for :func:`mirror_tail`.

    Returns
    -------
    str
        The reason, naming the counts, or ``""``.
    """
    tail = mirror_tail(values, cut, percentile=percentile, unimodal=unimodal)
    return tail.reason() if tail.refuted else ""


def warn_doubtful_mirror(
    fit: tuple[float, float, float, str, int],
    values: ArrayLike,
    *,
    percentile: float,
    unimodal: str,
    stacklevel: int = 3,
) -> tuple[float, float, float, str, int]:
    """Warn when a threshold function's mirror cut-off is doubted by its events.

    ``gate()`` leaves a refuted mirror cut-off unset; the public threshold functions return
    it as computed (a number a caller's code expects) and say, with the counts, that it
    reads a dominant positive peak as negative.

    Parameters
    ----------
    fit
        ``(value, ci_low, ci_high, rule_used, n_events)`` of a threshold function.
    values, percentile, unimodal
        As for :func:`mirror_tail`.
    stacklevel
        Of the warning: the threshold function's caller by default.

    Returns
    -------
    tuple
        ``fit``, unchanged.

    Warns
    -----
    MissingControlWarning
        The rule used was the mirror and :attr:`MirrorTail.doubtful` holds.
    """
    value, used = fit[0], fit[3]
    if used == "mirror" and np.isfinite(value):
        tail = mirror_tail(values, value, percentile=percentile, unimodal=unimodal)
        if tail.doubtful:
            warnings.warn(tail.reason(), MissingControlWarning, stacklevel=stacklevel)
    return fit
