"""Normalise the ways a batch can be passed to the tools into ``(sample_id, adata)`` pairs.

Shared by :mod:`nkflow.tl.cluster` and :mod:`nkflow.tl.annotate`, which both accept a dict,
a list or a single AnnData; it lives here so that neither has to import the other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import anndata as ad

from nkflow.exceptions import ConfigError
from nkflow.io.fcs import sample_id

__all__ = ["iter_samples"]


def iter_samples(
    adatas: Mapping[str, ad.AnnData] | Sequence[ad.AnnData] | ad.AnnData,
) -> list[tuple[str, ad.AnnData]]:
    """Normalise a dict, list or single container into ``(sample_id, adata)`` pairs.

    Parameters
    ----------
    adatas
        ``{sample_id: AnnData}``, a list of AnnData (ids from ``uns["nkflow"]["sample"]``
        or ``obs["sample_id"]``), or one AnnData.

    Returns
    -------
    list of tuple
        ``(sample_id, adata)`` in input order.

    Raises
    ------
    ConfigError
        When no sample is given or two samples share an id.
    """
    if isinstance(adatas, ad.AnnData):
        return [(sample_id(adatas, default="sample_0"), adatas)]
    if isinstance(adatas, Mapping):
        pairs = [(str(k), v) for k, v in adatas.items()]
    else:
        pairs = [(sample_id(a, default=f"sample_{i}"), a) for i, a in enumerate(adatas)]
    if not pairs:
        raise ConfigError("cluster: no samples given; expected a dict or list of AnnData")
    ids = [p[0] for p in pairs]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ConfigError(f"cluster: duplicate sample ids {dup}; pass a dict with unique keys")
    return pairs
