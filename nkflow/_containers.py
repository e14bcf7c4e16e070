"""The one check that a container holds one sample, shared by the tools that need it."""

from __future__ import annotations

from typing import Any

from .exceptions import ConfigError

__all__ = ["require_one_sample"]


def require_one_sample(adata: Any, caller: str, rest: str) -> None:
    """Refuse a container whose ``obs["sample_id"]`` holds several samples.

    ``anndata.concat`` of samples (or ``Results.to_anndata()``) keeps the first one's
    records in ``uns``: gated, counted or clustered as one, the pooled events would be taken
    for one sample.

    Parameters
    ----------
    adata
        The container.
    caller
        The function refusing it, first in the message.
    rest
        What follows ``"... samples in obs['sample_id']"``: why, and what to do instead.

    Raises
    ------
    ConfigError
        More than one ``sample_id``; nothing was changed.
    """
    if "sample_id" in adata.obs.columns and (n_samples := adata.obs["sample_id"].nunique()) > 1:
        raise ConfigError(
            f"{caller}: the AnnData holds {n_samples} samples in obs['sample_id']{rest}"
        )
