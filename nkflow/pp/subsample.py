"""Random subsampling of events, per sample and pooled over samples (for clustering)."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import anndata as ad
import numpy as np
from anndata import AnnData

from nkflow.exceptions import BatchConsistencyError, ConfigError
from nkflow.io.fcs import sample_id
from nkflow.io.records import to_native

__all__ = ["pooled_subsample", "subsample"]

log = logging.getLogger(__name__)


def _check_n(n: int, what: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ConfigError(f"{what} must be a non-negative integer, got {n!r}")
    return int(n)


def _pick(n_obs: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``min(n, n_obs)`` events drawn without replacement."""
    if n >= n_obs:
        return np.arange(n_obs)
    return np.sort(rng.choice(n_obs, size=n, replace=False))


def subsample(
    adata: AnnData,
    n: int,
    *,
    random_state: int | np.random.Generator | None = 0,
    copy: bool = True,
) -> AnnData | None:
    """Keep ``n`` events drawn at random without replacement (file order kept).

    Parameters
    ----------
    adata
        Sample container.
    n
        Number of events to keep; all are kept when the sample has fewer.
    random_state
        Seed or Generator; the same seed gives the same events (default 0, as
        scanpy's: a repeated call draws the same events; None draws afresh).
    copy
        Return a subsampled copy (default); else subsample ``adata`` in place and
        return None.

    Returns
    -------
    AnnData or None
        The subsample when ``copy=True``.
    """
    n = _check_n(n, "n")
    rng = np.random.default_rng(random_state)
    idx = _pick(adata.n_obs, n, rng)
    if copy:
        return adata[idx].copy()
    if idx.size < adata.n_obs:
        adata._inplace_subset_obs(idx)
    return None


def pooled_subsample(
    adatas: Iterable[AnnData],
    *,
    per_sample: int = 10_000,
    random_state: int | np.random.Generator | None = 0,
    sample_key: str = "sample_id",
) -> AnnData:
    """Pool up to ``per_sample`` random events from each sample into one container.

    Every sample contributes at most ``per_sample`` events, so large files do not
    dominate a clustering. Deterministic for a given ``random_state``: sample ``i``
    draws from its own child seed, independent of the other samples' sizes.

    Parameters
    ----------
    adatas
        Sample containers with identical ``var_names``.
    per_sample
        Cap on events taken from each sample.
    random_state
        Seed or Generator of the draws (default 0: the same pool every call; None draws
        afresh). Each sample draws from its own child (``SeedSequence.spawn``, or
        ``Generator.spawn``).
    sample_key
        obs column naming each event's sample (filled from
        ``uns["nkflow"]["sample"]["sample_id"]`` or the position when absent).

    Returns
    -------
    AnnData
        Concatenated events (``X`` and shared layers), obs with ``sample_key`` and
        ``event`` (the event's obs name in its sample); ``var`` of the first sample;
        ``uns["nkflow"]["subsample"]`` records the parameters and per-sample counts.

    Raises
    ------
    BatchConsistencyError
        The samples do not share the same channels.
    ConfigError
        No samples, or an invalid ``per_sample``.
    """
    per_sample = _check_n(per_sample, "per_sample")
    items = list(adatas)
    if not items:
        raise ConfigError("pooled_subsample needs at least one sample")
    ref = list(map(str, items[0].var_names))
    if isinstance(random_state, np.random.Generator):
        rngs = random_state.spawn(len(items))
    else:
        rngs = [
            np.random.default_rng(s) for s in np.random.SeedSequence(random_state).spawn(len(items))
        ]
    parts: list[AnnData] = []
    counts: dict[str, int] = {}
    for i, (a, rng) in enumerate(zip(items, rngs, strict=True)):
        sid = sample_id(a, default=str(i), obs_key=sample_key)
        if list(map(str, a.var_names)) != ref:
            raise BatchConsistencyError(
                f"sample {sid!r} has channels {list(a.var_names)}; expected {ref}"
            )
        idx = _pick(a.n_obs, per_sample, rng)
        part = a[idx].copy()
        part.obs = part.obs.copy()
        part.obs["event"] = part.obs_names.astype(str)
        part.obs[sample_key] = sid
        part.obs_names = [f"{sid}:{e}" for e in part.obs["event"]]
        part.uns = {}
        parts.append(part)
        counts[sid] = int(idx.size)
    pooled = ad.concat(parts, join="inner", merge="first")
    pooled.var = items[0].var.copy()
    pooled.obs[sample_key] = pooled.obs[sample_key].astype("category")
    pooled.uns["nkflow"] = to_native(
        {
            "subsample": {
                "per_sample": per_sample,
                "random_state": (
                    "Generator" if isinstance(random_state, np.random.Generator) else random_state
                ),
                "counts": counts,
            }
        }
    )
    log.info("pooled %d events from %d samples", pooled.n_obs, len(items))
    return pooled
