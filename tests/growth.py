"""How a cost grows with input size, measured so that a busy machine cannot fake it.

The suite does not time speed (``benchmarks/`` does); it only guards against cost that
grows faster than linearly, which turned minutes-long files into hours before (issues 13
and 18). Such a guard must not fail because the machine was busy: it counts this
process's CPU time (not wall time, which includes other processes' turns), keeps the best
of several runs, holds the cyclic garbage collector off while timing (its full passes cost
more as the heap grows, a growth of the test's making), and fits the exponent over a
16-fold range of sizes, where one slow point moves it little and linear (1) stays far from
quadratic (2).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Sequence

import numpy as np


def cpu_seconds(run: Callable[[], object], repeats: int = 3) -> float:
    """Best CPU time of ``run()`` over ``repeats`` calls, the garbage collector held off."""
    best = np.inf
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeats):
            start = time.process_time()
            run()
            best = min(best, time.process_time() - start)
    finally:
        if enabled:
            gc.enable()
    return best


def growth_exponent(
    make_run: Callable[[int], Callable[[], object]], sizes: Sequence[int], repeats: int = 3
) -> float:
    """Exponent ``k`` of ``cost ~ size**k``: the log-log slope of :func:`cpu_seconds`.

    ``make_run(size)`` prepares the input outside the timing and returns the call to time.
    The smallest size is run once first as a warm-up (imports, caches).
    """
    make_run(min(sizes))()
    costs = [cpu_seconds(make_run(size), repeats) for size in sizes]
    return float(np.polyfit(np.log(sizes), np.log(costs), 1)[0])
