"""``nkflow gate``: gate files with one template, GatingML file or FlowJo workspace."""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import pp
from ..config import RunConfig
from ..exceptions import ConfigError, GatingError, GatingTemplateError, NkflowError
from ..gating.membership import NOT_SET_DTYPE, is_set
from ..gating.xml_kind import template_format
from ..io import metadata_from_files, read_batch
from ..io.pairing import PAIR_KEY
from ..io.records import nkflow_record, nkflow_uns
from ..io.write import safe_name, write_table
from ..parallel import SampleExecutor
from ..pp.compensate import check_matrix_setting
from .outdir import OutputFolder
from .plan import plan_batch
from .results import Results
from .sample import SampleTask, load_sample, own_warnings
from .state import STATUS_COLUMNS, RunState, failure_code, status_row
from .steps import is_stimulated, sample_waves
from .tables import batch_thresholds_table

__all__ = ["external_template_note", "gate_files"]


def gate_files(
    inputs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    config: RunConfig | None = None,
    events: bool = False,
    force: bool = False,
) -> Results:
    """Gate files with one template and write ``populations.csv`` (``nkflow gate``).

    Parameters
    ----------
    inputs
        FCS files, or one folder / metadata sheet.
    out_dir
        Output folder.
    config
        Run configuration; ``config.gating.template`` is the template (a name, a
        GatingML 2.0 file or a FlowJo ``.wsp``).
    events
        Also write per-event membership (``membership/<sample_id>.parquet``).
    force
        Replace files of an existing output folder.

    Returns
    -------
    Results
        With the ``populations``, ``thresholds`` and ``status`` tables.
    """
    cfg = config or RunConfig()
    template = cfg.gating.template
    # by content, before the output folder: a FlowJo 9 / FACSDiva XML is a bad template
    kind = template_format(template)
    check_matrix_setting(cfg.compensation.matrix)  # once, not once per file
    out = OutputFolder(out_dir, resumable=False)  # nkflow gate has no --resume
    extra = [Path(template)] if Path(template).is_file() else []
    created = not Path(out_dir).exists()
    out.prepare(force=force, inputs=[*inputs, *extra])
    try:
        return _gate_into(out, [Path(p) for p in inputs], cfg, events, kind)
    except (ConfigError, GatingTemplateError):
        if created:  # refused before any table was written: leave no folder behind
            out.release()
            out.remove_if_empty()
        raise
    finally:
        out.release()


def external_template_note(config: RunConfig, kind: str) -> str:
    """What a GatingML file or FlowJo workspace leaves unused of the configuration.

    Such a document carries its own compensation and transforms, and its gates are drawn
    where the document puts them: the settings for nkflow templates do not apply.

    Parameters
    ----------
    config
        The run configuration.
    kind
        :func:`~nkflow.gating.xml_kind.template_format` of the template.

    Returns
    -------
    str
        One sentence naming the settings that differ from their defaults and are not
        applied; empty for an nkflow template or when every such setting is the default.
    """
    if kind == "template":
        return ""
    default = RunConfig()
    unused = [
        f"{name} = {value!r}"
        for name, value, usual in (
            ("compensation", config.compensation.matrix, default.compensation.matrix),
            ("transform", config.transform.method, default.transform.method),
            ("bootstrap", config.gating.bootstrap, default.gating.bootstrap),
            ("overrides", config.gating.overrides, default.gating.overrides),
        )
        if value != usual
    ]
    if not unused:
        return ""
    what = "FlowJo workspace" if kind == "workspace" else "GatingML file"
    return (
        f"the {what}'s own compensation and transforms are used and its gates are fixed: "
        f"{', '.join(unused)} (settings for nkflow templates) do not apply"
    )


def _gate_into(
    out: OutputFolder, paths: list[Path], cfg: RunConfig, events: bool, kind: str
) -> Results:
    """The work of :func:`gate_files` once the output folder is prepared and locked."""
    template = cfg.gating.template
    with tempfile.TemporaryDirectory(prefix="nkflow-gate-") as tmp:
        if len(paths) == 1 and (paths[0].is_dir() or paths[0].suffix.lower() in (".csv", ".tsv")):
            source: Path = paths[0]
        else:
            # FCS files: a sheet like the one a folder gets, written beside nothing the user owns
            source = Path(tmp) / "metadata.csv"
            metadata_from_files(paths).to_csv(source, index=False)
        note = external_template_note(cfg, kind)
        if kind != "template":
            tables, members = _gate_external(source, Path(template), kind, cfg, events, note)
        else:
            tables, members = _gate_template(source, cfg, events)
    for name, table in tables.items():
        write_table(table, out.root / name, formats=("csv",), root=out.root)
    if events:
        for sid, frame in members.items():
            write_table(
                frame,
                out.root / "membership" / safe_name(sid),
                formats=("parquet",),
                root=out.root,
            )
    meta = tables["status"][["sample_id", "file"]]
    return Results(
        out_dir=out.root, config=cfg, metadata=meta, tables=tables, notes=[note] if note else []
    )


def _gate_external(
    source: Any, template: Path, kind: str, cfg: RunConfig, events: bool, note: str
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """Gate with a FlowJo workspace or a GatingML file; per-event membership if ``events``.

    Every table names a file by the sheet's ``sample_id`` (the file name without ``.fcs``
    when FCS files are given), as with an nkflow template. ``note`` (the settings the
    document does not take) goes into each file's status row.
    """
    from ..gating.flowjo import apply_flowjo_workspace
    from ..gating.gatingml import apply_gatingml, validate_gatingml
    from ..io import read_fcs

    batch = read_batch(
        source,
        panel=cfg.panel or None,
        neutralise_formulas=cfg.metadata.neutralise_formulas,
    )
    meta = batch.metadata
    status, members, tables = [], {}, {}
    if kind == "workspace":
        ids = {str(r["path"]): str(r["sample_id"]) for _, r in meta.iterrows()}
        result = apply_flowjo_workspace(template, list(ids), sample_ids=ids)
        tables["populations"] = result.populations
        tables["flowjo_comparison"] = result.comparison
        if events:
            members = {
                sid: event_membership(frame, list(frame.columns), len(frame))
                for sid, frame in result.membership.items()
            }
        for _, row in meta.iterrows():
            sid = str(row["sample_id"])
            if sid in result.n_events:
                status.append(status_row(row, "ok", "OK", note, n_events=result.n_events[sid]))
            else:
                missing = GatingError(f"{template}: the workspace has no sample for this file")
                status.append(status_row(row, *failure_code(missing), str(missing)))
    else:
        validate_gatingml(template)  # a bad document is the template's fault, not a file's
        frames = []
        for _, row in meta.iterrows():
            sid = str(row["sample_id"])
            try:
                adata = read_fcs(
                    row["path"], sample_id=sid, panel=cfg.panel or None,
                    nonfinite=cfg.qc.nonfinite,
                )  # fmt: skip
                if nkflow_record(adata, "spillover") is not None:
                    pp.compensate(adata)
                frames.append(apply_gatingml(template, {sid: adata}))
            except NkflowError as exc:
                code = failure_code(exc)
                status.append(status_row(row, code[0], code[1], str(exc)))
                continue
            if events:
                gates = [c for c in adata.obs.columns if adata.obs[c].dtype == bool]
                n_file = int(nkflow_record(adata, "fcs")["n_events"])
                members[sid] = event_membership(adata.obs, gates, n_file)
            status.append(status_row(row, "ok", "OK", note, n_events=adata.n_obs))
        tables["populations"] = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    tables["status"] = pd.DataFrame(status, columns=STATUS_COLUMNS)
    return tables, members


def event_membership(obs: pd.DataFrame, gates: Sequence[str], n_events: int) -> pd.DataFrame:
    """One row per event of the file, in the file's order, whatever QC removed.

    Parameters
    ----------
    obs
        The gated events' ``obs``; its index holds each event's number in the file
        (``read_fcs`` numbers them 0, 1, ...; QC and non-finite drops keep the numbers).
    gates
        The bool membership columns to write.
    n_events
        Number of events in the file (``$TOT`` of the data set read).

    Returns
    -------
    pandas.DataFrame
        ``event`` (0-based number in the file), ``qc_pass`` (False for events QC or a
        non-finite value removed before gating) and one bool column per gate (False where
        ``qc_pass`` is False; a gate named ``event`` or ``qc_pass`` becomes ``event (gate)``
        or ``qc_pass (gate)``). A gate that could not be set is nullable ``boolean``,
        ``<NA>`` where it would decide (:mod:`nkflow.gating.membership`; null in the
        parquet file). Row ``i`` is event ``i``: a join by position with the file's
        events is right (rows of the gated events alone shifted after the first removal).
    """
    kept = np.asarray(obs.index, dtype=str).astype(np.int64)
    if kept.size and (kept.min() < 0 or kept.max() >= n_events):
        raise GatingError(f"event numbers run past the file's {n_events} events")
    out = pd.DataFrame({"event": np.arange(n_events, dtype=np.int64)})
    passed = np.zeros(n_events, dtype=bool)
    passed[kept] = True
    out["qc_pass"] = passed
    for gate in gates:
        if is_set(obs[gate]):
            column = np.zeros(n_events, dtype=bool)
            column[kept] = obs[gate].to_numpy(dtype=bool)
        else:  # a gate not set: <NA> where it would decide, as in obs
            column = pd.array(np.zeros(n_events, dtype=bool), dtype=NOT_SET_DTYPE)
            column[kept] = obs[gate].array
        name = gate
        while name in out.columns:  # a gate called "event" or "qc_pass" (a workspace's)
            name = f"{name} (gate)"
        out[name] = column
    return out


def _gate_template(
    source: Any, cfg: RunConfig, events: bool
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """Gate with a template on the workers; per-event membership only if ``events``.

    200,000 events x 30 gates are ~6 MB a tube, which would otherwise be sent to this
    process and held for the whole batch without being written.
    """
    from .pooled import batch_stage, check_batch_overrides

    state = RunState(source, Path("."), cfg, None)
    frames, own_cuts, members, transforms = [], [], {}, {}
    applied: list[dict[str, Any]] = []  # the batch-level cut-offs as each tube applied them
    unstim_tables: dict[tuple[str, ...], pd.DataFrame] = {}
    unstim_cuts: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    with SampleExecutor(workers=cfg.execution.workers, scheduler=cfg.execution.scheduler) as ex:
        if len(state.meta) > 1:  # the workers import nkflow (~2 s) while the plan is made
            ex.start([__name__])
        with ex.before_tasks():
            state.use_plan(plan_batch(state.meta, cfg, pooled=False))  # each file on its own
        check_batch_overrides(state)  # a typo in the overrides file stops before any tube
        state.executor = ex  # FMO tubes, the batch pool and the samples run on its workers
        thresholds = batch_stage(state, state.thresholds())  # + batch pool, manual overrides
        # unstimulated tubes first: a stimulated tube takes its partner's table and cut-offs
        for stimulated, wave in zip((False, True), sample_waves(state.meta), strict=True):
            rows = [(str(r["sample_id"]), tuple(str(r[c]) for c in PAIR_KEY), r)
                    for _, r in wave.iterrows()]  # fmt: skip
            jobs = []
            for sid, key, row in rows:
                if sid in state.plan.unreadable:  # unreadable panel, or lacks what it needs
                    continue
                own = state.thresholds_for(row, thresholds)
                jobs.append((sid, _GateJob(
                    task=state.task(sid),
                    thresholds=own + unstim_cuts.get(key, []) if stimulated else own,
                    paired_unstim=unstim_tables.get(key) if stimulated else None,
                    control_file=str(row["file"]),
                    events=events,
                )))  # fmt: skip
            outcomes = {o.key: o for o in ex.map(_gate_one, jobs)}
            for sid, key, row in rows:  # the sheet's order, whichever ended first
                if sid in state.plan.unreadable:
                    state.fail(sid, state.plan.unreadable[sid])
                    continue
                outcome = outcomes[sid]
                if not outcome.ok:
                    if not isinstance(outcome.error, NkflowError):
                        raise outcome.error  # type: ignore[misc]
                    state.fail(sid, outcome.error)
                    continue
                gated = outcome.value
                for category, message in gated.warnings:
                    warnings.warn(message, category, stacklevel=2)
                if not stimulated and key not in state.ambiguous_keys:  # a sure partner
                    unstim_tables[key], unstim_cuts[key] = gated.table, gated.cuts
                frames.append(gated.table)
                own_cuts.append(pd.DataFrame(gated.thresholds))
                applied += gated.applied
                transforms[sid] = gated.transform
                if gated.members is not None:
                    members[sid] = gated.members
                said = sorted({f"{category.__name__}: {text}" for category, text in gated.warnings})
                # as nkflow run's status rows: the first warnings, so the table says why
                state.status[sid] = status_row(
                    row, "ok", "OK", "; ".join(said[:3]), n_events=gated.n_events
                )
    own = [t for t in own_cuts if not t.empty]
    per_sample = pd.concat(own, ignore_index=True) if own else pd.DataFrame()
    tables = {
        "populations": pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(),
        # as nkflow run's: a batch-level (FMO, pool) threshold once, not once per sample
        "thresholds": batch_thresholds_table(
            thresholds, per_sample, transforms, state.sample_groups(), applied
        ),
        "status": state.status_table(),
    }
    return tables, members


@dataclass
class _GateJob:
    """One tube of ``nkflow gate`` (picklable for the workers)."""

    task: SampleTask
    thresholds: list[dict[str, Any]]
    paired_unstim: pd.DataFrame | None
    control_file: str
    events: bool = False  # return the per-event membership


@dataclass
class _Gated:
    """What :func:`_gate_one` returns for a tube."""

    table: pd.DataFrame
    thresholds: list[dict[str, Any]]
    applied: list[dict[str, Any]]  # its records of the batch-level cut-offs (cut_spread)
    members: pd.DataFrame | None
    n_events: int
    cuts: list[dict[str, Any]]
    transform: dict[str, Any]
    warnings: list[tuple[type[Warning], str]]


def _gate_one(job: _GateJob) -> _Gated:
    """Read, QC, compensate, transform and gate one tube; its warnings come back with it."""
    from ..gating.apply import borrow_unstim_thresholds, gate, listed_thresholds
    from ..gating.cut_spread import applied_batch_cuts

    cfg, sid = job.task.config, job.task.sample_id
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        adata = load_sample(job.task)
        table = gate(
            adata,
            job.task.template,
            thresholds=pd.DataFrame(job.thresholds) if job.thresholds else None,
            paired_unstim=job.paired_unstim,
            random_state=cfg.execution.random_state,
            n_boot=cfg.gating.bootstrap,
            fmo_percentile=cfg.gating.fmo_percentile,
            min_events=cfg.gating.min_events,
        )
    nk = nkflow_uns(adata)  # decoded once for all read below
    cuts = []  # an unstimulated tube's cut-offs, for its stimulated partner
    if not is_stimulated(job.task.row):
        mine = [t for t in nk.get("thresholds", []) if t.get("sample_id") == sid]
        cuts = borrow_unstim_thresholds(mine, job.thresholds, control_file=job.control_file)
    pops = [p["name"] for p in nk["gating"]["populations"]]
    return _Gated(
        table=table,
        thresholds=listed_thresholds(nk.get("thresholds", []), sid),
        applied=applied_batch_cuts(nk.get("thresholds", []), sid),
        members=(
            event_membership(adata.obs, pops, int(nk["fcs"]["n_events"])) if job.events else None
        ),
        n_events=int(adata.n_obs),
        cuts=cuts,
        transform=dict(nk.get("transform", {})),
        warnings=[(w.category, str(w.message)) for w in own_warnings(caught, sid)],
    )
