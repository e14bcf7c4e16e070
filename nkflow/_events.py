"""Event subsets of a container whose ``obs_names`` are unique by construction.

AnnData re-checks that ``obs_names`` are unique whenever a container is built or
subset: for a 200,000-event sample that is a hash of every name, twice, about half the
cost of the subset itself. A subset of unique names is unique, so the events kept by QC
or a gate are taken without that check.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import anndata as ad
import numpy as np

__all__ = ["names_known_unique", "subset_events"]


@contextlib.contextmanager
def names_known_unique() -> Iterator[None]:
    """Skip AnnData's uniqueness check of names inside the block (no-op where absent)."""
    settings = getattr(ad, "settings", None)
    if settings is not None and hasattr(settings, "check_uniqueness"):
        with settings.override(check_uniqueness=False):
            yield
    else:
        yield


def subset_events(adata: ad.AnnData, keep: np.ndarray, *, inplace: bool) -> ad.AnnData | None:
    """The events where the boolean ``keep`` is true, in place or as a new container.

    Parameters
    ----------
    adata
        Container whose ``obs_names`` are unique.
    keep
        Boolean mask over the events.
    inplace
        Subset ``adata`` itself and return None; else return the subset (a copy).
    """
    keep = np.asarray(keep, dtype=bool)
    with names_known_unique():
        if inplace:
            adata._inplace_subset_obs(keep)
            return None
        return adata[keep].copy()
