"""Batch-pool thresholds: one valley per batch for markers whose positives can dominate.

Two steps, so the per-sample part runs on the worker pool like the FMO stage:

1. :func:`pool_contribution` (per sample): gate the sample down to the parent gate of every
   ``pool = true`` condition and keep a capped, seeded subsample of the marker there.
2. :func:`batch_pool_thresholds` (per batch): pool the contributions of the batch's samples
   (sample ids sorted, so the result does not depend on completion order) and take the
   density valley (:func:`nkflow.gating.negative.pool_threshold`); one record per tissue of
   the batch that has no FMO threshold for the marker. The engine applies it to each
   sample and flags samples whose own valley disagrees.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ..exceptions import MissingControlWarning
from ..io.records import nkflow_record
from .channels import resolve_channel
from .engine import _ancestors, _Columns, _run
from .negative import POOL_CAP, pool_seed, pool_threshold, subsample
from .template import DimSpec, Template
from .thresholds import Threshold

__all__ = ["batch_pool_thresholds", "pool_contribution", "pool_targets"]

logger = logging.getLogger(__name__)


def pool_targets(tpl: Template) -> dict[tuple[str, str], DimSpec]:
    """``(gate the threshold is set on, marker) -> condition`` of every ``pool = true`` one."""
    out: dict[tuple[str, str], DimSpec] = {}
    for spec in tpl.gates:
        for d in spec.dims:
            on = d.on or spec.parent
            if d.pool and on:
                out.setdefault((on, d.marker), d)
    return out


def pool_contribution(
    adata: Any,
    tpl: Template,
    *,
    thresholds: Any = None,
    cap: int = POOL_CAP,
    random_state: int = 0,
) -> list[dict[str, Any]]:
    """One sample's share of the batch pools: capped marker values in each parent gate.

    Parameters
    ----------
    adata
        The transformed sample.
    tpl
        The template as applied to the sample's panel.
    thresholds
        Batch-level thresholds (FMO ones) the parent gates may need.
    cap
        At most this many events per gate and marker.
    random_state
        Run seed; each sample and key gets its own seed from it (deterministic).

    Returns
    -------
    list of dict
        ``gate``, ``marker``, ``channel`` and ``values`` (a list of floats) per pool.
    """
    targets = pool_targets(tpl)
    if not targets:
        return []
    sid = str((nkflow_record(adata, "sample") or {}).get("sample_id", ""))
    ons = {on for on, _ in targets}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingControlWarning)
        run = _run(
            adata, tpl, thresholds=thresholds, random_state=random_state, n_boot=0,
            stimulated=False, warn_missing=False, stop_after=_ancestors(tpl, ons),
        )  # fmt: skip
    data = _Columns(adata)
    out = []
    for (on, marker), _dim in sorted(targets.items()):
        if on not in run.members:
            continue
        ch = resolve_channel(adata, marker)
        vals = data[ch][run.members[on]]
        seed = pool_seed(random_state, sid, f"{on}|{marker}")
        out.append({"gate": on, "marker": marker, "channel": ch,
                    "values": subsample(vals, cap, seed).tolist()})  # fmt: skip
    return out


def batch_pool_thresholds(
    contributions: Mapping[str, Iterable[Mapping[str, Any]]],
    groups: Mapping[str, tuple[str, str]],
    tpl: Template,
    *,
    covered: Iterable[tuple[str, str, str, str]] = (),
    percentile: float | None = None,
    n_boot: int | None = None,
    random_state: int = 0,
    min_samples: int = 2,
) -> list[Threshold]:
    """Pooled valley per batch, gate and marker, as one record per tissue of the batch.

    Parameters
    ----------
    contributions
        ``sample_id -> pool_contribution(...)``.
    groups
        ``sample_id -> (tissue, batch)``.
    tpl
        The template (its ``pool = true`` conditions).
    covered
        ``(tissue, batch, gate, marker)`` that already have a control threshold (FMO):
        no pool record is made for them.
    percentile, n_boot
        Defaults: the template's ``fmo_percentile`` and ``bootstrap``.
    random_state
        Seed of the bootstrap.
    min_samples
        A pool needs at least this many samples (one sample is its own valley).

    Returns
    -------
    list of Threshold
        ``rule = "valley (batch pool)"``, ``evidence = "batch_pool"``, ``sample_id = ""``.
    """
    targets = pool_targets(tpl)
    pct = tpl.fmo_percentile if percentile is None else float(percentile)
    boots = tpl.bootstrap if n_boot is None else int(n_boot)
    done = set(covered)
    by_batch: dict[str, list[str]] = {}
    for sid in sorted(contributions):
        by_batch.setdefault(groups[sid][1], []).append(sid)
    out: list[Threshold] = []
    for batch, sids in sorted(by_batch.items()):
        tissues = sorted({groups[s][0] for s in sids})
        for (on, marker), dim in sorted(targets.items()):
            parts, channel = [], ""
            for s in sids:
                for c in contributions[s]:
                    if c["gate"] == on and c["marker"] == marker and len(c["values"]):
                        parts.append(np.asarray(c["values"], dtype=np.float64))
                        channel = channel or str(c["channel"])
            if len(parts) < min_samples:
                continue
            found = pool_threshold(parts, dim, percentile=pct, n_boot=boots,
                                   random_state=random_state)  # fmt: skip
            if found is None:
                logger.info(
                    "batch %r: %s on %r pooled over %d samples has no valley; "
                    "the pool identifies no negative peak", batch, marker, on, len(parts),
                )  # fmt: skip
                continue
            v, lo, hi, n = found
            for tissue in tissues:
                if (tissue, batch, on, marker) in done:
                    continue
                out.append(
                    Threshold(
                        marker=marker, channel=channel, value=float(v), ci_low=float(lo),
                        ci_high=float(hi), rule="valley (batch pool)",
                        control_file=f"batch pool: {len(parts)} samples", n_events=int(n),
                        gate=on, sample_id="", tissue=tissue, batch=batch,
                        evidence="batch_pool",
                    )
                )  # fmt: skip
    return out
