"""The batch stage after the FMO stage: batch-pool thresholds and manual overrides.

Pooling is orchestrated like the FMO stage: each sample's contribution (a capped, seeded
subsample of the marker in its parent gate, :func:`~nkflow.pipeline.sample.pool_sample`)
runs on the run's executor, so it parallelises; the valley of the pooled batch is then
computed once (:func:`nkflow.gating.pooled.batch_pool_thresholds`). Only batches where some
tissue lacks an FMO control for a ``pool = true`` marker are read, so a batch with every
control costs nothing more.

Manual overrides (``config.gating.overrides``) are checked against the planned batch
before any tube is read (:func:`check_batch_overrides`), then expanded to every (tissue,
batch, template) group in their scope and put first, so they win wherever they apply.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from ..exceptions import GatingTemplateError
from ..gating.overrides import (
    Overrides,
    OverrideTarget,
    check_overrides,
    load_overrides,
    scale_range,
)
from ..gating.pooled import batch_pool_thresholds, pool_targets
from ..gating.resolve import ResolvedTemplate
from ..gating.template import Template, load_template
from ..io.technology import Technology
from .sample import pool_sample
from .steps import ANALYSED_ROLES, is_stimulated

__all__ = ["batch_stage", "check_batch_overrides", "override_records", "pooled_thresholds"]

logger = logging.getLogger(__name__)


def _template(state: Any, sid: str) -> tuple[str, Template | None]:
    """The key of the sample's hierarchy and its template (``None``: not planned, or not TOML).

    Each panel's hierarchy is its own pool: a marker on another channel has another scale.
    """
    tpl = state.plan.for_sample(sid)
    if isinstance(tpl, ResolvedTemplate):
        return state.plan.hierarchy_key(sid), tpl.template
    try:
        return str(tpl), load_template(tpl) if tpl else None
    except GatingTemplateError:  # GatingML / FlowJo gates: no pool conditions
        return str(tpl), None


def _pool_rows(meta: pd.DataFrame) -> pd.DataFrame:
    """Analysed, unstimulated tubes (stimulation raises CD69: not in the pool)."""
    rows = meta[meta["role"].isin(ANALYSED_ROLES) & (meta["role"] != "positive_control")]
    if rows.empty:
        return rows
    return rows[~rows.apply(is_stimulated, axis=1)]


def pooled_thresholds(state: Any, fmo: pd.DataFrame) -> pd.DataFrame:
    """Batch-pool threshold records (with ``template``) for the run's batches.

    Parameters
    ----------
    state
        The run's :class:`~nkflow.pipeline.state.RunState` (plan, executor, metadata).
    fmo
        The FMO stage's records: markers they cover are not pooled.

    Returns
    -------
    pandas.DataFrame
        One row per tissue, batch, gate and marker pooled.
    """
    rows = _pool_rows(state.meta)
    covered: set[tuple[str, str, str, str]] = set()
    if not fmo.empty:
        covered = {(str(r["tissue"]), str(r["batch"]), str(r["gate"]), str(r["marker"]))
                   for r in fmo.to_dict("records")}  # fmt: skip
    by_template: dict[str, tuple[Template, list[str]]] = {}
    for sid in rows["sample_id"].astype(str):
        name, tpl = _template(state, sid)
        if tpl is not None:
            by_template.setdefault(name, (tpl, []))[1].append(sid)
    cfg = state.config
    groups = {s: (str(state.row(s)["tissue"]), str(state.row(s)["batch"]))
              for _, sids in by_template.values() for s in sids}  # fmt: skip
    pooled: dict[str, tuple[Template, list[str], list[str]]] = {}
    for name, (tpl, sids) in sorted(by_template.items()):
        targets = pool_targets(tpl)
        needed = {groups[s][1] for s in sids
                  for on, m in targets if (*groups[s], on, m) not in covered}  # fmt: skip
        todo = [s for s in sids if groups[s][1] in needed]
        if todo:
            pooled[name] = (tpl, sids, todo)
    if not pooled:
        return pd.DataFrame()
    # every template's samples in one wave: no worker waits for another template's last one
    items = [(s, state.task(s, thresholds=state.thresholds_for(state.row(s), fmo)))
             for _, _, todo in pooled.values() for s in todo]  # fmt: skip
    contributions: dict[str, list[dict[str, Any]]] = {}
    state.progress("pooling", 0, len(items))
    for done, outcome in enumerate(state.executor.map(pool_sample, items), start=1):
        if outcome.ok:
            contributions[outcome.key] = outcome.value["contributions"]
            if outcome.value["qc"] is not None:  # the sample pass reuses it
                state.qc_outcomes[outcome.key] = outcome.value["qc"]
        else:  # the sample fails on its own in the sample stage; the pool goes on
            logger.warning("sample %s left out of the batch pool: %s", outcome.key,
                           outcome.error)  # fmt: skip
        state.progress("pooling", done, len(items))
    records: list[dict[str, Any]] = []
    for name, (tpl, sids, todo) in pooled.items():
        found = batch_pool_thresholds(
            {s: contributions[s] for s in todo if s in contributions},
            {s: groups[s] for s in sids}, tpl, covered=covered,
            percentile=cfg.gating.fmo_percentile, n_boot=cfg.gating.bootstrap,
            random_state=cfg.execution.random_state,
        )  # fmt: skip
        records += [{**t.to_record(), "template": name} for t in found]
    return pd.DataFrame.from_records(records)


_SCATTER = ("FSC", "SSC", "TIME")  # not transformed: a value is in linear units


def _scale(state: Any, tpl: Any) -> tuple[float, float]:
    """The transformed scale's range for the files of a resolved template (its technology)."""
    t = state.config.transform
    cytof = getattr(tpl, "technology", "flow") == "cytof"
    tech = Technology.from_dict({"kind": "mass_cytometry" if cytof else "flow"})
    kind, cofactor = tech.transform_for(t.method, t.cofactor or None)  # 0: the technology's
    return scale_range(kind, {"T": t.T, "W": t.W, "M": t.M, "A": t.A, "cofactor": cofactor})


def _override_targets(state: Any) -> list[OverrideTarget]:
    """Every analysed sample of the planned batch with the cuts its hierarchy sets."""
    targets = []
    for _, row in state.meta[state.meta["role"].isin(ANALYSED_ROLES)].iterrows():
        sid = str(row["sample_id"])
        resolved = state.plan.for_sample(sid)
        _, tpl = _template(state, sid)
        scale = _scale(state, resolved)
        cuts: dict[tuple[str, str], tuple[float, float]] = {}
        for g in tpl.gates if tpl is not None else ():
            for d in g.dims:
                unbounded = d.marker.upper().startswith(_SCATTER)
                rng = (-float("inf"), float("inf")) if unbounded else scale
                cuts.setdefault((d.on or g.parent or "", d.marker), rng)
        targets.append(OverrideTarget(sid, str(row["tissue"]), str(row["batch"]), cuts))
    return targets


def check_batch_overrides(state: Any) -> Overrides | None:
    """Read the run's overrides file and check it against the planned batch.

    Parameters
    ----------
    state
        The run's :class:`~nkflow.pipeline.state.RunState`, its plan made.

    Returns
    -------
    Overrides or None
        The file (``None`` when the run has none).

    Raises
    ------
    GatingTemplateError
        An entry the batch would not apply as written (:func:`check_overrides`).
    """
    path = state.config.gating.overrides
    if not path:
        return None
    overrides = load_overrides(path)
    check_overrides(overrides, _override_targets(state))
    return overrides


def override_records(state: Any) -> pd.DataFrame:
    """The overrides file's entries, one per (tissue, batch, template) group in scope.

    Parameters
    ----------
    state
        The run's :class:`~nkflow.pipeline.state.RunState`, its plan made.

    Returns
    -------
    pandas.DataFrame
        Threshold records (``rule = manual``), empty when the run has no overrides file.
    """
    overrides = check_batch_overrides(state)
    if overrides is None:
        return pd.DataFrame()
    path = overrides.path
    groups = set()
    for _, row in state.meta[state.meta["role"].isin(ANALYSED_ROLES)].iterrows():
        sid = str(row["sample_id"])
        groups.add((sid, str(row["tissue"]), str(row["batch"]), _template(state, sid)[0]))
    out = []
    for rec in overrides.records:
        seen = set()
        for sid, tissue, batch, name in sorted(groups):
            if any(rec[k] and rec[k] != v for k, v in
                   (("sample_id", sid), ("tissue", tissue), ("batch", batch))):  # fmt: skip
                continue
            if (tissue, batch, name) not in seen:
                seen.add((tissue, batch, name))
                out.append({**rec, "tissue": tissue, "batch": batch, "template": name})
    if overrides.records and not out:
        logger.warning("%s: no entry applies to a sample of this batch", path)
    return pd.DataFrame.from_records(out)


def batch_stage(state: Any, fmo: pd.DataFrame) -> pd.DataFrame:
    """FMO thresholds plus batch-pool ones, with manual overrides first (they win)."""
    parts = [override_records(state), fmo, pooled_thresholds(state, fmo)]
    parts = [p for p in parts if not p.empty]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
