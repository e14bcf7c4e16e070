"""Normalise the ways a batch can be passed to the tools into ``(sample_id, adata)`` pairs.

Shared by :mod:`nkflow.tl.cluster` and :mod:`nkflow.tl.annotate`, which both accept a dict,
a list or a single AnnData; it lives here so that neither has to import the other.
:func:`require_comparable` refuses samples that cannot be pooled: other species, other
technologies, or markers on other transforms.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import anndata as ad
import pandas as pd

from nkflow._containers import require_one_sample
from nkflow.exceptions import ConfigError
from nkflow.gating.panel_view import infer_species
from nkflow.io.fcs import channel_for, sample_id, sample_info
from nkflow.io.records import nkflow_record

__all__ = ["iter_samples", "require_comparable"]


def iter_samples(
    adatas: Mapping[str, ad.AnnData] | Sequence[ad.AnnData] | ad.AnnData,
    *,
    what: str = "cluster",
) -> list[tuple[str, ad.AnnData]]:
    """Normalise a dict, list or single container into ``(sample_id, adata)`` pairs.

    Parameters
    ----------
    adatas
        ``{sample_id: AnnData}``, a list of AnnData (ids from ``uns["nkflow"]["sample"]``
        or ``obs["sample_id"]``), or one AnnData.

    what
        The caller's name, for messages.

    Returns
    -------
    list of tuple
        ``(sample_id, adata)`` in input order.

    Raises
    ------
    ConfigError
        When no sample is given, two samples share an id, or one AnnData holds several
        samples in ``obs["sample_id"]`` (``Results.to_anndata()``): taken as one sample,
        its cells would be capped, counted and named as one.
    """
    if isinstance(adatas, ad.AnnData):
        require_one_sample(
            adatas,
            what,
            " and would be taken as one; pass one AnnData per sample: {sid: adata[adata.obs["
            "'sample_id'] == sid] for sid in adata.obs['sample_id'].unique()} (nk.run's "
            "Results has per-sample containers: res.kept_events(sid))",
        )
        return [(sample_id(adatas, default="sample_0"), adatas)]
    if isinstance(adatas, Mapping):
        pairs = [(str(k), v) for k, v in adatas.items()]
    else:
        pairs = [(sample_id(a, default=f"sample_{i}"), a) for i, a in enumerate(adatas)]
    if not pairs:
        raise ConfigError(f"{what}: no samples given; expected a dict or list of AnnData")
    ids = [p[0] for p in pairs]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ConfigError(f"{what}: duplicate sample ids {dup}; pass a dict with unique keys")
    return pairs


def _species(adata: ad.AnnData) -> str:
    """The sheet's species, else the one the panel tells (NK1.1 -> mouse, CD56 -> human)."""
    told = str(sample_info(adata).get("species", "") or "").strip().lower()
    if told or "marker" not in adata.var.columns:
        return told
    labels = [*adata.var["marker"].astype(str), *adata.var.get("pns", pd.Series()).astype(str)]
    return infer_species(m for m in labels if m and m != "nan") or ""


def _technology(adata: ad.AnnData) -> str:
    record = nkflow_record(adata, "technology") or {}
    kind = str(record.get("kind", "")) if isinstance(record, Mapping) else ""
    return "mass cytometry" if kind == "mass_cytometry" else ("flow cytometry" if kind else "")


def _transforms(adata: ad.AnnData, markers: Sequence[str]) -> str:
    if "transform" not in adata.var.columns:
        return ""
    kinds = adata.var["transform"].astype(str)
    return ", ".join(sorted({kinds[channel_for(adata, m)] for m in markers} - {"", "nan"}))


def require_comparable(
    pairs: Sequence[tuple[str, ad.AnnData]], markers: Sequence[str], what: str = "cluster"
) -> None:
    """Refuse to pool samples of other species, technologies or transforms.

    Human and mouse NK share few markers and no phenotypes; flow and mass cytometry
    values, and logicle and arcsinh values of one marker, are on different scales, so
    pooled cells would cluster by sample, not by phenotype.

    Parameters
    ----------
    pairs
        ``(sample_id, adata)`` (:func:`iter_samples`).
    markers
        The markers to be pooled (their transform is compared).
    what
        The caller's name, for the message.

    Raises
    ------
    ConfigError
        Naming the samples of each kind.
    """
    aspects = {
        "species": _species,
        "technology": _technology,
        "transform": lambda a: _transforms(a, markers),
    }
    for aspect, of in aspects.items():
        groups: dict[str, list[str]] = {}
        for sid, adata in pairs:
            if value := of(adata):
                groups.setdefault(value, []).append(sid)
        if len(groups) > 1:
            listing = "; ".join(
                f"{value}: {', '.join(sids[:3])}{' ...' if len(sids) > 3 else ''}"
                for value, sids in groups.items()
            )
            raise ConfigError(
                f"{what}: the samples differ in {aspect} ({listing}); their cells cannot be "
                "pooled: pass the samples of one kind at a time"
            )
