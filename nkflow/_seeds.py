"""Seeds of random steps that must not depend on the order samples come in."""

from __future__ import annotations

import zlib

__all__ = ["sample_seed"]


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
