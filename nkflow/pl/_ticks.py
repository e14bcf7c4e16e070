"""Axis ticks of the gating panels, always in the instrument's units.

A channel nkflow transformed (logicle, arcsinh) is drawn on the transformed scale but read
in linear units, as in FlowJo: ticks at linear decades (``0``, ``10²``, ``10³`` ...) placed
where they land on the transformed scale. An axis too narrow for two decades (a gated subset
spanning less than a decade, or arcsinh values near zero) gets round linear values instead
(``0, 1, 2`` or ``20, 40, 60``), mapped through the same transform: never the transformed
numbers themselves, which would read as instrument units beside a decade-ticked panel.
Axes that are not transformed (scatter, event counts) get round values of their own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np

from ..pp.transform import from_linear, to_linear

__all__ = ["DECADES", "channel_scale", "instrument_ticks", "nice_ticks"]

Ticks = tuple[list[float], list[str]]
Placed = list[tuple[float, str]]
#: linear values -> the channel's transformed scale, or back
Transform = Callable[[Sequence[float]], np.ndarray]

_MAX_TICKS = 4
_NICE_STEPS = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)  # matplotlib's
# round steps for instrument units read off a transformed axis (no 1.5, 3, 6: 0, 1.5, 3 ...
# read as a scale of their own)
_ROUND_STEPS = (1.0, 2.0, 2.5, 5.0, 10.0)
# the least distance between two ticks, as a share of the axis (closer ones collide), and
# what a label adds to it per character (a digit is about 1/28 of a gate grid panel's width)
_GAP = 0.06
_CHAR = 0.035
#: linear decades for the ticks of a transformed axis, labelled as FlowJo does (in order of
#: preference: a decade too close to one already placed is left out)
DECADES = (0.0, 1e2, 1e3, 1e4, 1e5, 1e6, -1e3, -1e4, 1e1, -1e2)
_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def channel_scale(channel: str, record: Mapping[str, Any]) -> tuple[Transform, Transform] | None:
    """A channel's recorded transform and its inverse, or None when it was not transformed.

    Parameters
    ----------
    channel
        The ``$PnN`` channel.
    record
        The container's transform record, ``uns["nkflow"]["transform"]``.

    Returns
    -------
    tuple of callable or None
        ``(linear -> transformed, transformed -> linear)``.
    """
    if from_linear([0.0], channel, record) is None:
        return None
    return (
        partial(from_linear, channel=channel, record=record),  # type: ignore[return-value]
        partial(to_linear, channel=channel, record=record),  # type: ignore[return-value]
    )


def _decade_label(value: float) -> str:
    if value == 0:
        return "0"
    exponent = round(math.log10(abs(value)))
    return ("-" if value < 0 else "") + "10" + str(exponent).translate(_SUPERSCRIPT)


def _decade_ticks(pos: np.ndarray, lo: float, hi: float) -> Ticks | None:
    """Tick positions and labels at linear decades (``pos``: where they land), or None."""
    gap = _GAP * (hi - lo)
    keep: list[tuple[float, str]] = []
    for p, v in zip(pos, DECADES, strict=True):
        if np.isfinite(p) and lo <= p <= hi and all(abs(p - q) >= gap for q, _ in keep):
            keep.append((float(p), _decade_label(v)))
    if len(keep) < 2:
        return None
    keep.sort()
    return [p for p, _ in keep], [label for _, label in keep]


def _step(
    lo: float, hi: float, steps: Sequence[float], integer: bool, n: int = _MAX_TICKS
) -> float | None:
    """The least round step that puts at most about ``n`` ticks in ``[lo, hi]``."""
    raw = (hi - lo) / n
    if not (np.isfinite(raw) and raw > 0):
        return None
    scale = 10.0 ** math.floor(math.log10(raw))
    if integer:
        scale = max(scale, 1.0)
        steps = [m for m in steps if (m * scale).is_integer()]
    return next(m for m in steps if m * scale >= raw * (1 - 1e-9)) * scale


def _values(lo: float, hi: float, step: float) -> Ticks:
    """The multiples of ``step`` inside ``[lo, hi]`` and their labels."""
    decimals = next(d for d in range(16) if abs(round(step, d) - step) <= 1e-9 * step)
    first = math.ceil(lo / step - 1e-9)
    ticks, labels = [], []
    for k in range(first, first + int((hi - lo) / step) + 2):
        v = k * step
        if v > hi + 1e-9 * step:
            break
        ticks.append(float(v))
        labels.append(f"{v:.{decimals}f}".replace("-", "\u2212") if k else "0")
    return ticks, labels


def nice_ticks(lo: float, hi: float, *, integer: bool = False) -> Ticks:
    """Round ticks inside ``[lo, hi]``, as ``matplotlib.ticker.MaxNLocator(4)`` places them.

    Parameters
    ----------
    lo, hi
        The axis' view limits.
    integer
        Whole numbers only (event counts: no tick at 0.8 events).

    Returns
    -------
    tuple of list
        Tick positions and their labels.
    """
    step = _step(lo, hi, _NICE_STEPS, integer)
    return ([], []) if step is None else _values(lo, hi, step)


def _label(value: float) -> str:
    """A round linear value as a tick label: ``20``, ``0.5``, ``−100``."""
    if value == 0:
        return "0"
    decimals = next(d for d in range(16) if abs(round(value, d) - value) <= 1e-9 * abs(value))
    return f"{value:.{decimals}f}".replace("-", "\u2212")


def _placed(values: Sequence[float], forward: Transform, lo: float, hi: float) -> Placed:
    """``values`` (in order of preference) where they land on the axis, sorted.

    Each is kept only far enough from those kept before it for both labels to be read.
    """
    pos = forward(values)
    keep: Placed = []
    for p, v in zip(pos, values, strict=True):
        label = _label(v)
        if not (np.isfinite(p) and lo <= p <= hi):
            continue
        if all(abs(p - q) >= _room(label, other) * (hi - lo) for q, other in keep):
            keep.append((float(p), label))
    return sorted(keep)


def _room(a: str, b: str) -> float:
    """The least distance between ticks labelled ``a`` and ``b``, as a share of the axis."""
    return max(_GAP, _CHAR * (len(a) + len(b)) / 2 + _GAP / 2)


def _one_two_five(a: float, b: float) -> list[float]:
    """0, then ±1, 5 and 2 times the decades of ``[a, b]`` (largest first)."""
    top = max(abs(a), abs(b))
    if not (np.isfinite(top) and top > 0):
        return [0.0]
    k_top = math.floor(math.log10(top))
    powers = [10.0**k for k in range(k_top, k_top - 4, -1)]
    return [0.0] + [s * m * p for m in (1.0, 5.0, 2.0) for p in powers for s in (1.0, -1.0)]


def _even(placed: Placed) -> bool:
    """Three or more ticks spaced about evenly (the transform is near linear there)."""
    if len(placed) < 3:
        return False
    gaps = np.diff([p for p, _ in placed])
    return float(gaps.max()) <= 2.0 * float(gaps.min())


def _linear_ticks(lo: float, hi: float, forward: Transform, inverse: Transform) -> Ticks:
    """Round linear values of a transformed axis too narrow for two decades.

    Two candidate sets, each thinned so labels do not collide: multiples of one round step
    (``20, 40, 60``: read best where the transform is near linear, as arcsinh near zero)
    and the 1-2-5 series (``20, 50, 100, 200``: where it is logarithmic). The multiples are
    taken when all of them fit, evenly spaced; else the series when it gives three ticks;
    else whichever gives more.
    """
    a, b = (float(v) for v in inverse([lo, hi]))
    step = _step(a, b, _ROUND_STEPS, False, _MAX_TICKS + 1)
    if step is None:
        return [], []
    multiples = _values(a, b, step)[0]
    linear = _placed(multiples, forward, lo, hi)
    series = _placed(_one_two_five(a, b), forward, lo, hi)
    pos = forward(multiples)
    inside = [(float(p), _label(v)) for p, v in zip(pos, multiples, strict=True) if lo <= p <= hi]
    if (_even(linear) and len(linear) == len(inside)) or (
        len(series) < 3 and len(linear) >= len(series)
    ):
        chosen = linear
    else:
        chosen = series
    if len(chosen) < 2:  # a tick too many rather than an axis without a scale
        chosen = inside
    return [p for p, _ in chosen], [t for _, t in chosen]


def instrument_ticks(
    lo: float, hi: float, forward: Transform | None = None, inverse: Transform | None = None
) -> Ticks:
    """Ticks of an axis from ``lo`` to ``hi``, labelled in the instrument's units.

    Parameters
    ----------
    lo, hi
        The axis' view limits (on the transformed scale when the channel is transformed).
    forward, inverse
        The channel's transform (linear -> transformed) and its inverse; ``None`` for an
        axis that is not transformed (its values are the instrument's).

    Returns
    -------
    tuple of list
        Tick positions (in the axis' units) and labels (linear): decades when two fit,
        round linear values otherwise.
    """
    if forward is None or inverse is None:
        return nice_ticks(lo, hi)
    decades = _decade_ticks(forward(DECADES), lo, hi)
    return decades if decades is not None else _linear_ticks(lo, hi, forward, inverse)
