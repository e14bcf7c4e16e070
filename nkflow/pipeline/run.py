"""Orchestration of a batch run (see :mod:`nkflow.pipeline`)."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import platform
from collections.abc import Callable
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import pandas as pd

from .. import __version__
from ..config import RunConfig, config_to_dict, config_to_toml
from ..exceptions import FCSReadError, NkflowError, OutputFolderError
from ..gating.apply import borrow_unstim_thresholds
from ..gating.resolve import ResolvedTemplate
from ..io import check_batch, read_batch
from ..io.write import write_table, write_text_atomic
from ..parallel import SampleExecutor, TaskOutcome
from .outdir import OutputFolder, file_sha256
from .plan import BatchPlan, plan_batch
from .pooled import batch_stage
from .results import Results
from .sample import (
    GATING_FIGURE,
    SampleTask,
    process_control,
    process_sample,
    read_kept_events,
)
from .steps import (
    ANALYSED_ROLES,
    STIMULATION_LABILE_MARKERS,
    cluster_batch,
    is_stimulated,
    template_hashes,
)
from .tables import POPULATION_COLUMNS, THRESHOLD_COLUMNS, add_linear_thresholds, order_columns

__all__ = ["default_out_dir", "run"]

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[str, int, int], None]
PAIR_KEY = ("donor", "tissue", "timepoint", "batch")
QC_FAIL_FRACTION = 0.5
STATUS_COLUMNS = ["sample_id", "file", "role", "status", "reason_code", "message", "n_events",
                  "n_kept"]  # fmt: skip
DEPENDENCIES = ("flowkit", "flowio", "numpy", "pandas", "scipy", "scikit-learn", "anndata",
                "matplotlib", "pyarrow")  # fmt: skip


def default_out_dir(input_path: str | Path) -> Path:
    """Where results go when no output folder is given: ``<input>_nkflow`` beside the input.

    For a folder ``data/batch1`` that is ``data/batch1_nkflow``; for a sheet
    ``data/batch1/metadata.csv`` it is ``data/batch1/metadata_nkflow``.
    """
    p = Path(input_path)
    base = p.resolve()
    stem = base.name if base.is_dir() else base.stem
    return base.parent / f"{stem}_nkflow"


def status_row(row: pd.Series, status: str, code: str, message: str, **extra: Any) -> dict:
    """One row of the status table (one per input file)."""
    return {
        "sample_id": str(row["sample_id"]),
        "file": str(row["file"]),
        "role": str(row.get("role", "")),
        "status": status,
        "reason_code": code,
        "message": message,
        "n_events": extra.get("n_events", pd.NA),
        "n_kept": extra.get("n_kept", pd.NA),
    }


def failure_code(exc: BaseException) -> tuple[str, str]:
    """``(status, reason_code)`` for an exception raised while processing a file."""
    if isinstance(exc, FCSReadError):
        return "parse-failed", "FCS_READ"
    if isinstance(exc, OutputFolderError):
        return "failed", "OUTPUT_WRITE"
    if isinstance(exc, NkflowError):
        return "failed", type(exc).__name__
    return "failed", f"UNEXPECTED_{type(exc).__name__}"


class RunState:
    """State of one run; methods are the steps, in order."""

    def __init__(
        self,
        input_path: str | Path,
        out_dir: str | Path,
        config: RunConfig,
        on_progress: ProgressCallback | None,
    ) -> None:
        self.input_path = Path(input_path)
        self.config = config
        self.folder = OutputFolder(out_dir)
        self.progress = on_progress or (lambda stage, done, total: None)
        meta = read_batch(
            self.input_path,
            panel=config.panel or None,
            neutralise_formulas=config.metadata.neutralise_formulas,
        ).metadata.copy()
        for col in ("donor", "tissue", "timepoint", "stimulation", "role", "species", "batch"):
            if col not in meta.columns:
                meta[col] = ""
            meta[col] = meta[col].fillna("").astype(str)
        meta.loc[meta["role"] == "", "role"] = "sample"
        self.meta = meta.reset_index(drop=True)
        self.status: dict[str, dict] = {}
        self.summaries: dict[str, dict] = {}
        self.executor = SampleExecutor()  # serial unless run() opens a pool
        self.plan = BatchPlan()  # set by run() before any work

    # ------------------------------------------------------------------ helpers
    def row(self, sample_id: str) -> pd.Series:
        return self.meta[self.meta["sample_id"] == sample_id].iloc[0]

    def task(self, sample_id: str, **kwargs: Any) -> SampleTask:
        row = self.row(sample_id)
        plain = {k: (v if not pd.isna(v) else "") for k, v in row.to_dict().items()}
        return SampleTask(
            sample_id=sample_id,
            path=str(row["path"]),
            row=plain,
            config=self.config,
            template=self.plan.for_sample(sample_id),
            keep_population=self.config.clustering.population,
            **kwargs,
        )

    def fail(self, sample_id: str, exc: BaseException, detail: str = "") -> None:
        status, code = failure_code(exc)
        message = str(exc) if isinstance(exc, NkflowError) else f"{type(exc).__name__}: {exc}"
        self.status[sample_id] = status_row(self.row(sample_id), status, code, message)
        # the CLI prints one FAILED line per file; the log says it once more only with -v
        logger.warning("sample %s failed: %s", sample_id, message)
        if detail:
            logger.debug("%s", detail)

    # ------------------------------------------------------------------ steps
    def inputs(self) -> list[Path]:
        """Every input path of the run: the folder or sheet, each file, the panel."""
        paths = [self.input_path, *(Path(p) for p in self.meta["path"].astype(str))]
        if self.config.panel:
            paths.append(Path(self.config.panel))
        return paths

    def check_consistency(self) -> pd.DataFrame:
        """Compare the files of each species (panels differ between species by design)."""
        frames = [
            check_batch(group, panel=self.config.panel or None, raise_on_error=True).differences
            for _, group in self.meta.groupby("species", sort=True)
        ]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def skip_controls(self) -> None:
        for _, row in self.meta.iterrows():
            role = str(row["role"])
            if role.startswith(("single_stain:", "unstained")):
                self.status[str(row["sample_id"])] = status_row(
                    row, "skipped", "CONTROL_NOT_ANALYSED",
                    "compensation/unstained control: not analysed by the pipeline",
                )  # fmt: skip

    def thresholds(self) -> pd.DataFrame:
        fmo = self.meta[self.meta["role"].str.startswith("fmo:")]
        self.progress("controls", 0, len(fmo))
        items = [(str(sid), self.task(str(sid))) for sid in fmo["sample_id"]]
        found: dict[str, list] = {}
        done = 0
        for outcome in self.executor.map(process_control, items):
            done += 1
            if outcome.ok:
                found[outcome.key] = outcome.value
            else:
                self.fail(outcome.key, outcome.error, outcome.detail)
            self.progress("controls", done, len(fmo))
        records = [r for sid, _ in items for r in found.get(sid, [])]
        for sid, _ in items:
            if sid not in self.status:
                self.status[sid] = status_row(
                    self.row(sid), "ok", "CONTROL", "FMO control: thresholds computed"
                )
        return pd.DataFrame.from_records(records)

    def run_samples(self, thresholds: pd.DataFrame, resume: bool) -> None:
        todo = self.meta[self.meta["role"].isin(ANALYSED_ROLES)]
        stim = todo.apply(is_stimulated, axis=1) if len(todo) else pd.Series(dtype=bool)
        waves = [todo[~stim], todo[stim]]
        total = len(todo)
        done = 0
        self.progress("samples", 0, total)
        for wave in waves:
            items = []
            for _, row in wave.iterrows():
                sid = str(row["sample_id"])
                work = self.folder.sample_dir(sid)
                own, paired = self.stim_inputs(row, self.thresholds_for(row, thresholds))
                task = self.task(
                    sid,
                    work_dir=str(work),
                    out_root=str(self.folder.root),
                    thresholds=own,
                    paired_unstim=paired,
                )
                if resume:
                    # reuse a finished sample only if everything it was computed from is
                    # unchanged (its thresholds, its paired unstimulated tube, the config)
                    previous = self.folder.sample_result(sid)
                    if previous is not None and previous.get("fingerprint") == task.fingerprint():
                        self._accept(sid, previous)
                        done += 1
                        continue
                items.append((sid, task))
            for outcome in self.executor.map(process_sample, items):
                self._collect(outcome)
                done += 1
                self.progress("samples", done, total)

    def thresholds_for(self, row: pd.Series, thresholds: pd.DataFrame) -> list[dict]:
        if thresholds.empty:
            return []
        tpl = self.plan.for_sample(str(row["sample_id"]))
        tpl = tpl.source.name if isinstance(tpl, ResolvedTemplate) else tpl
        sel = thresholds[
            (thresholds["tissue"].astype(str) == str(row["tissue"]))
            & (thresholds["batch"].astype(str) == str(row["batch"]))
            & (thresholds["template"] == tpl)
            & thresholds.get("sample_id", pd.Series("", thresholds.index))
            .fillna("")
            .astype(str)
            .isin(["", str(row["sample_id"])])
        ]
        return sel.drop(columns=["template"]).to_dict("records")

    def _paired(self, row: pd.Series) -> tuple[str, dict] | None:
        """The processed unstimulated partner (same donor, tissue, timepoint, batch)."""
        if not is_stimulated(row):
            return None
        key = tuple(str(row[c]) for c in PAIR_KEY)
        for sid, summary in self.summaries.items():
            other = self.row(sid)
            if is_stimulated(other) or str(other["role"]) == "positive_control":
                continue
            if tuple(str(other[c]) for c in PAIR_KEY) == key:
                return sid, summary
        return None

    def stim_inputs(
        self, row: pd.Series, batch_thresholds: list[dict]
    ) -> tuple[list[dict], list[dict] | None]:
        """Thresholds and paired populations for a tube.

        A stimulated tube takes the residency phenotype from its unstimulated partner,
        and, for markers without an FMO control, the partner's own cut-off: stimulated
        and unstimulated tubes must be cut at the same value for a net response to mean
        anything (BIOLOGY.md section 4: gates set on unstimulated cells or FMOs).
        """
        paired = self._paired(row)
        if paired is None:
            return batch_thresholds, None
        sid, summary = paired
        borrowed = borrow_unstim_thresholds(
            summary["thresholds"], batch_thresholds, control_file=str(self.row(sid)["file"])
        )
        return batch_thresholds + borrowed, summary["populations"]

    def _collect(self, outcome: TaskOutcome) -> None:
        if not outcome.ok:
            self.fail(outcome.key, outcome.error, outcome.detail)
            return
        self._accept(outcome.key, outcome.value)

    def _accept(self, sid: str, summary: dict) -> None:
        self.summaries[sid] = summary
        n_events, n_kept = int(summary["n_events"]), int(summary["n_kept"])
        row = self.row(sid)
        if n_events and n_kept < QC_FAIL_FRACTION * n_events:
            self.status[sid] = status_row(
                row, "qc-failed", "QC_REMOVED_MOST",
                f"QC removed {n_events - n_kept} of {n_events} events "
                f"(more than {QC_FAIL_FRACTION:.0%}); excluded from clustering and scoring",
                n_events=n_events, n_kept=n_kept,
            )  # fmt: skip
        else:
            self.status[sid] = status_row(
                row, "ok", "OK", "; ".join(summary.get("warnings", [])[:3]),
                n_events=n_events, n_kept=n_kept,
            )  # fmt: skip

    def ok_samples(self) -> list[str]:
        return [
            str(s) for s in self.meta["sample_id"]
            if self.status.get(str(s), {}).get("status") == "ok" and str(s) in self.summaries
        ]  # fmt: skip

    def gather(self, key: str) -> pd.DataFrame:
        frames = [
            pd.DataFrame.from_records(self.summaries[s][key])
            for s in self.meta["sample_id"].astype(str)
            if s in self.summaries and self.summaries[s][key]
        ]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def thresholds_table(self, batch_level: pd.DataFrame) -> pd.DataFrame:
        """Batch-level and per-sample thresholds, in contract order, with linear units."""
        parts = [batch_level.drop(columns=["template"], errors="ignore"),
                 self.gather("thresholds")]  # fmt: skip
        parts = [t for t in parts if not t.empty]
        if not parts:
            return pd.DataFrame()
        transforms = {
            sid: s["transform"] for sid, s in self.summaries.items() if s.get("transform")
        }
        groups = {
            str(r["sample_id"]): (str(r["tissue"]), str(r["batch"]))
            for _, r in self.meta.iterrows()
        }
        table = add_linear_thresholds(pd.concat(parts, ignore_index=True), transforms, groups)
        return order_columns(table, THRESHOLD_COLUMNS)

    def qc_table(self) -> pd.DataFrame:
        rows = []
        for sid in self.meta["sample_id"].astype(str):
            if sid not in self.summaries:
                continue
            qc = self.summaries[sid].get("qc", {}) or {}
            rows.append(
                {
                    "sample_id": sid,
                    **{k: v for k, v in qc.items() if not isinstance(v, dict | list)},
                }
            )
        return pd.DataFrame(rows)

    def status_table(self) -> pd.DataFrame:
        rows = []
        for _, row in self.meta.iterrows():
            sid = str(row["sample_id"])
            rows.append(self.status.get(sid) or status_row(row, "skipped", "NOT_RUN", "not run"))
        return pd.DataFrame(rows, columns=STATUS_COLUMNS)


def _provenance(run: RunState, templates: dict[str, str]) -> dict[str, Any]:
    versions = {"nkflow": __version__, "python": platform.python_version()}
    for dist in DEPENDENCIES:
        try:
            versions[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    inputs = {
        str(row["file"]): file_sha256(row["path"])
        for _, row in run.meta.iterrows()
        if Path(row["path"]).is_file()
    }
    # per analysed file: the technology read from it and the compensation/transform it got
    preprocessing = {
        str(run.row(sid)["file"]): {
            "technology": (summary.get("technology") or {}).get("kind", ""),
            "evidence": (summary.get("technology") or {}).get("evidence", []),
            "compensation": (summary.get("compensation") or {}).get("source", ""),
            "compensation_reason": (summary.get("compensation") or {}).get("reason", ""),
            "transform": (summary.get("transform") or {}).get("kind", ""),
        }
        for sid, summary in sorted(run.summaries.items())
    }
    return {
        "versions": versions,
        "templates": templates,
        "inputs_sha256": inputs,
        "preprocessing": preprocessing,
        "config": config_to_dict(run.config),
        "input": str(run.input_path),
    }


def run(
    input_path: str | Path,
    out_dir: str | Path | None = None,
    *,
    config: RunConfig | None = None,
    force: bool = False,
    resume: bool = False,
    on_progress: ProgressCallback | None = None,
    on_plan: Callable[[BatchPlan], None] | None = None,
) -> Results:
    """Run the whole pipeline on a batch and write tables, figures and the report.

    Parameters
    ----------
    input_path
        A folder of FCS files (with or without ``metadata.csv``) or a metadata sheet.
    out_dir
        Output folder; default :func:`default_out_dir`. Never overwritten silently.
    config
        Run configuration (:func:`nkflow.config.load_config`); defaults otherwise.
    force
        Replace an existing nkflow output folder.
    resume
        Keep finished samples of an existing output folder and redo only the rest.
    on_progress
        Called as ``on_progress(stage, done, total)``; the CLI draws progress bars.
    on_plan
        Called once with the batch's gating plan (:class:`~nkflow.pipeline.plan.BatchPlan`:
        the hierarchy each template applies to the panel) before any sample is processed.

    Returns
    -------
    Results
        Tables as DataFrames, the report path, and access to the gated events.

    Raises
    ------
    MetadataError, BatchConsistencyError
        Before any work, when the sheet or the batch cannot be used.
    PanelMismatchError
        Before any work, when the batch's panel cannot support the template (no NK
        anchor), or the species is neither in the sheet nor told by the panel.
    OutputExistsError
        When ``out_dir`` exists and neither ``force`` nor ``resume`` is given, or when
        ``force`` would delete an input.
    OutputFolderError
        When the output folder cannot be used or written: another run holds it, it holds
        symbolic links (``resume``), no space, read-only, no permission. A sample whose
        own products cannot be written fails alone (its status row says why).
    """
    cfg = config or RunConfig()
    out = Path(out_dir) if out_dir is not None else default_out_dir(input_path)
    state = RunState(input_path, out, cfg, on_progress)
    consistency = state.check_consistency()
    state.plan = plan_batch(state.meta, cfg)  # no anchor in the panel: stop before any work
    logger.info("gating plan:\n%s", state.plan.to_text())
    if on_plan is not None:
        on_plan(state.plan)
    state.folder.prepare(force=force, resume=resume, inputs=state.inputs())
    try:
        return _run_prepared(state, cfg, resume, consistency)
    finally:
        state.folder.release()


def _run_prepared(
    state: RunState, cfg: RunConfig, resume: bool, consistency: pd.DataFrame
) -> Results:
    """The steps of :func:`run` once the output folder is prepared and locked."""
    out = state.folder.root
    state.skip_controls()
    ex = cfg.execution
    with SampleExecutor(workers=ex.workers, scheduler=ex.scheduler) as executor:
        state.executor = executor
        thresholds = batch_stage(state, state.thresholds())  # + batch pool, manual overrides
        state.run_samples(thresholds, resume)

    ok = state.ok_samples()
    counts = state.gather("counts")
    clustering = None
    tables: dict[str, pd.DataFrame] = {}
    figures: dict[str, Any] = {}
    if cfg.clustering.enabled and ok:
        state.progress("clustering", 0, 1)
        loaders = {
            sid: functools.partial(read_kept_events, state.folder.sample_dir(sid)) for sid in ok
        }

        def save_labels(sid: str, adata: Any) -> None:
            labels = pd.DataFrame({"metacluster": adata.obs["metacluster"].astype(str)})
            write_table(
                labels,
                state.folder.sample_dir(sid) / "metacluster",
                formats=("parquet",),
                root=out,
            )

        # metaclusters must not split by stimulation: train on the unstimulated tubes, on
        # markers stimulation does not move, and map every tube (stimulated ones included)
        resting = {sid for sid in ok if _is_resting(state.row(sid))}
        clusters = cluster_batch(
            loaders,
            cfg,
            on_assigned=save_labels,
            fit_on=resting or None,
            exclude_markers=STIMULATION_LABILE_MARKERS,
        )
        if clusters is not None:
            clustering = clusters.result
            tables["clusters"] = clusters.abundance
            tables["cluster_medians"] = clusters.medians
            counts = pd.concat([counts, clusters.counts], ignore_index=True)
            figures.update(_cluster_figures(clustering, clusters.abundance))
        state.progress("clustering", 1, 1)

    caveats = ""
    scoring_definitions: dict[str, Any] | None = None
    if cfg.scoring.enabled and not counts.empty:
        from ..tl.score import score

        state.progress("scoring", 0, 1)
        analysed = state.meta[state.meta["sample_id"].astype(str).isin(ok)]
        counts = counts[counts["sample_id"].astype(str).isin(ok)]
        result = score(counts, analysed, config=cfg.scoring.definitions or None)
        names = _population_labels(clustering)
        tables["scores"] = result.scores.assign(
            label=result.scores["population"].map(names).fillna(result.scores["population"])
        )
        tables["flags"] = result.flags.assign(
            label=result.flags["population"].map(names).fillna(result.flags["population"])
        )
        tables["controls"] = result.controls
        tables["bright_dim"] = result.bright_dim
        order = timepoint_order(state.meta, result.config.timepoint_order)
        state.meta.attrs["timepoint_order"] = order
        tables["comparisons"] = _comparisons(result.scores, order)
        caveats = result.caveats
        scoring_definitions = dataclasses.asdict(result.config)
        figures.update(_score_figures(result))
        state.progress("scoring", 1, 1)

    tables["populations"] = order_columns(state.gather("populations"), POPULATION_COLUMNS)
    tables["thresholds"] = state.thresholds_table(thresholds)
    tables["counts"] = counts
    tables["qc"] = state.qc_table()
    tables["status"] = state.status_table()
    tables["consistency"] = consistency
    for sid in ok:
        png = state.folder.sample_dir(sid) / GATING_FIGURE
        if png.is_file():
            figures[f"gating_{sid}"] = png.read_bytes()

    templates = template_hashes(sorted(set(state.plan.template_of.values())))
    provenance = _provenance(state, templates)
    provenance["gating_plan"] = state.plan.to_dict()
    if cfg.gating.overrides:
        provenance["overrides_sha256"] = {cfg.gating.overrides: file_sha256(cfg.gating.overrides)}
    if scoring_definitions is not None:
        provenance["scoring"] = scoring_definitions
    from ..report import write_report

    report = write_report(
        out,
        tables=tables,
        metadata=state.meta.drop(columns=["path"], errors="ignore"),
        figures=figures,
        config=cfg,
        provenance=provenance,
        caveats=caveats,
    )
    write_text_atomic(out / "config.toml", config_to_toml(cfg), root=out)
    # provenance last: with report.html it marks the folder as complete
    write_text_atomic(
        out / "provenance.json", json.dumps(provenance, indent=2, sort_keys=True), root=out
    )
    return Results(
        out_dir=out,
        config=cfg,
        metadata=state.meta,
        tables=tables,
        caveats=caveats,
        report_path=report,
        clustering=clustering,
    )


def _population_labels(clustering: Any) -> dict[str, str]:
    """``{"metacluster:3": "CD56bright CD16- CD69+ ..."}`` so tables say what a cluster is."""
    if clustering is None:
        return {}
    return {f"metacluster:{k}": name for k, name in clustering.labels.items()}


def _is_resting(row: pd.Series) -> bool:
    """An unstimulated sample tube (not a stimulated tube, not the positive control)."""
    return not is_stimulated(row) and str(row["role"]) != "positive_control"


def timepoint_order(meta: pd.DataFrame, configured: Any = ()) -> list[str]:
    """Timepoints in the configured order, then the rest in the sheet's order."""
    seen = [str(t) for t in dict.fromkeys(meta.get("timepoint", pd.Series(dtype=str)))]
    seen = [t for t in seen if t]
    first = [str(t) for t in configured if str(t) in seen]
    return first + [t for t in seen if t not in first]


def _comparisons(scores: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """The first timepoint against each later one, per condition (and tissue kind, if known)."""
    from ..tl.compare import compare_paired

    if scores.empty or "timepoint" not in scores.columns:
        return pd.DataFrame()
    points = [t for t in order if t in set(scores["timepoint"].astype(str))]
    if len(points) < 2:
        return pd.DataFrame()
    by = ["condition", "population"]
    if "tissue_kind" in scores.columns and (scores["tissue_kind"].astype(str) != "").any():
        by.insert(1, "tissue_kind")
    frames = [compare_paired(scores, before=points[0], after=later, by=by) for later in points[1:]]
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _cluster_figures(result: Any, abundance: pd.DataFrame) -> dict[str, Any]:
    figs: dict[str, Any] = {}
    try:
        from ..pl import cluster as plc

        figs["clusters_heatmap"] = plc.heatmap(result)
        figs["clusters_abundance"] = plc.abundance(abundance)
    except Exception as exc:  # a figure must never fail the run
        logger.warning("cluster figures not drawn: %s", exc)
    return figs


def _score_figures(result: Any) -> dict[str, Any]:
    """One repair-profile figure per stimulation condition (conditions side by side)."""
    try:
        from ..pl import score as pls

        figures = pls.repair_profiles(result)
    except Exception as exc:  # a figure must never fail the run
        logger.warning("repair profile figure not drawn: %s", exc)
        return {}
    if len(figures) == 1:
        return {"repair_profile": next(iter(figures.values()))}
    return {
        f"repair_condition {cond}: AREG net, polarisation, clearance": fig
        for cond, fig in figures.items()
    }
