"""Seeds of random steps that must not depend on the order samples come in."""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

__all__ = ["as_random_state", "sample_seed"]


def as_random_state(random_state: Any) -> np.random.RandomState:
    """scikit-learn's ``check_random_state``, also taking a :class:`numpy.random.Generator`.

    Parameters
    ----------
    random_state
        None, an int, a ``RandomState`` or a ``Generator``.

    Returns
    -------
    numpy.random.RandomState
        For a ``Generator``, a ``RandomState`` on its bit generator: draws advance the
        ``Generator``, as they advance a ``RandomState`` passed in. Other values as
        ``sklearn.utils.check_random_state`` gives them (same seeds, same draws).
    """
    if isinstance(random_state, np.random.Generator):
        return np.random.RandomState(random_state.bit_generator)
    from sklearn.utils import check_random_state

    return check_random_state(random_state)


def sample_seed(random_state: int, sample_id: str) -> int:
    """A per-sample seed that depends only on the run seed and the sample id.

    Parameters
    ----------
    random_state
        The run's (or call's) seed.
    sample_id
        The sample's id.

    Returns
    -------
    int
        A seed in ``[0, 2**32)``: the same sample draws the same events whichever samples
        come before it in a sheet or a dict.
    """
    return int((int(random_state) * 1_000_003 + zlib.crc32(sample_id.encode("utf-8"))) % 2**32)
