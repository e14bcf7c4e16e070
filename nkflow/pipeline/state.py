"""The state of one batch run: metadata, per-sample status and summaries, the steps.

:func:`nkflow.pipeline.run` (its stages: :mod:`nkflow.pipeline.stages`) drives a
:class:`RunState` through its steps (FMO controls, samples in waves, tables);
``nkflow gate`` reuses it for its own loop.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from .._frames import concat_rows
from ..config import RunConfig
from ..exceptions import FCSReadError, NkflowError, OutputFolderError
from ..gating.apply import borrow_unstim_thresholds
from ..gating.fmo_pool import pool_fmo_replicates, warn_small_controls
from ..gating.thresholds import THRESHOLD_COLUMNS
from ..io import check_batch, read_batch
from ..io.pairing import (
    PAIR_KEY,
    ambiguous_pair_keys,
    control_origins,
    fmo_replicates,
    is_resting,
    nearest_controls_first,
)
from ..io.panel_labels import unread_by_label
from ..parallel import SampleExecutor, TaskOutcome
from ..report.qc_outliers import batch_median, unusual_message, unusual_removal
from .outdir import OutputFolder
from .plan import BatchPlan, fmo_users
from .sample import APPLIED_KEY, SampleTask, process_control, process_sample
from .steps import fmo_tubes, is_stimulated, sample_waves
from .tables import batch_thresholds_table

__all__ = [
    "STATUS_COLUMNS",
    "ProgressCallback",
    "RunState",
    "failure_code",
    "status_row",
]

logger = logging.getLogger("nkflow.pipeline.run")

ProgressCallback = Callable[[str, int, int], None]
QC_FAIL_FRACTION = 0.5
STATUS_COLUMNS = ["sample_id", "file", "role", "status", "reason_code", "message", "n_events",
                  "n_kept"]  # fmt: skip


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
        files = {
            Path(str(f)).name: str(p)
            for f, p in zip(self.meta["file"], self.meta["path"], strict=True)
        }
        # a --resume must find the folder's run had the same inputs (resume.py)
        self.folder = OutputFolder(out_dir, batch=(self.input_path, files))
        unstim = sample_waves(self.meta)[0]
        #: pair keys no stimulated tube pairs on: several unstimulated tubes, no donor
        self.ambiguous_keys = ambiguous_pair_keys(unstim[unstim.apply(is_resting, axis=1)])
        self._origin_of_file = control_origins(self.meta)
        self.status: dict[str, dict] = {}
        self.summaries: dict[str, dict] = {}
        self.executor = SampleExecutor()  # serial unless run() opens a pool
        # QC outcomes of files the batch-pool pass read, for the sample pass to reuse
        self.qc_outcomes: dict[str, dict[str, Any]] = {}
        self.control_qc: dict[str, dict[str, Any]] = {}  # FMO tubes' QC records
        self.plan = BatchPlan()  # set by run() before any work
        self.panel_notes: list[str] = []  # set by check_consistency()
        #: labelled channels not read as markers: {label, channel, files} (check_consistency)
        self.unread_labels: list[dict[str, Any]] = []
        #: SHA-256 of the inputs by their ``file`` entry (the provenance's, set by run():
        #: a --resume compares each sample's content with these, not hashing twice)
        self.input_hashes: Callable[[], dict[str, str]] = dict
        #: samples a --resume took from the folder's earlier run, of those analysed
        self.reused, self.analysed = 0, 0

    # ------------------------------------------------------------------ helpers
    def row(self, sample_id: str) -> pd.Series:
        """The metadata row of a sample."""
        return self.meta[self.meta["sample_id"] == sample_id].iloc[0]

    def task(self, sample_id: str, **kwargs: Any) -> SampleTask:
        """The picklable task of a sample: its row, config and planned template."""
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
        """Record a sample's failure as its status row (and log it once, at -v)."""
        status, code = failure_code(exc)
        message = str(exc) if isinstance(exc, NkflowError) else f"{type(exc).__name__}: {exc}"
        self.status[sample_id] = status_row(self.row(sample_id), status, code, message)
        # the CLI prints one FAILED line per file; the log says it once more only with -v
        logger.warning("sample %s failed: %s", sample_id, message)
        if detail:
            logger.debug("%s", detail)

    # ------------------------------------------------------------------ steps
    def use_plan(self, plan: BatchPlan) -> None:
        """Adopt the batch's gating plan, with the species it told for rows that had none.

        A file the sheet gives no species is gated, scored, flagged and reported as the
        species its panel tells (:attr:`BatchPlan.species_of`), never as the human default.
        """
        self.plan = plan
        for sid, species in plan.species_of.items():
            self.meta.loc[self.meta["sample_id"].astype(str) == sid, "species"] = species

    def inputs(self) -> list[Path]:
        """Every input path of the run: the folder or sheet, each file, the panel."""
        paths = [self.input_path, *(Path(p) for p in self.meta["path"].astype(str))]
        if self.config.panel:
            paths.append(Path(self.config.panel))
        return paths

    def check_consistency(self) -> pd.DataFrame:
        """Compare the files of each species (panels differ between species by design).

        The user panel's notes (rows no file has, unknown markers) are kept in
        ``panel_notes`` for the plan, the labelled channels no marker was read from in
        ``unread_labels`` (label, channel, number of files) for the plan and the Methods.
        """
        checks = [
            check_batch(group, panel=self.config.panel or None, raise_on_error=True)
            for _, group in self.meta.groupby("species", sort=True)
        ]
        self.panel_notes = list(dict.fromkeys(n for c in checks for n in c.notes))
        unread = concat_rows([c.unread for c in checks]) if checks else pd.DataFrame()
        self.unread_labels = unread_by_label(unread)
        frames = [c.differences for c in checks]
        return concat_rows(frames) if frames else pd.DataFrame()

    def skip_controls(self) -> None:
        """Status rows for compensation and unstained controls, which are not analysed."""
        for _, row in self.meta.iterrows():
            role = str(row["role"])
            if role.startswith(("single_stain:", "unstained")):
                self.status[str(row["sample_id"])] = status_row(
                    row, "skipped", "CONTROL_NOT_ANALYSED",
                    "compensation/unstained control: not analysed by the pipeline",
                )  # fmt: skip

    def thresholds(self) -> pd.DataFrame:
        """Batch-level FMO thresholds, one worker task per FMO tube, replicates pooled."""
        fmo = fmo_tubes(self.meta)
        self.progress("controls", 0, len(fmo))
        items = []
        for sid in map(str, fmo["sample_id"]):
            if sid in self.plan.unreadable:  # the planner already failed to read it
                self.fail(sid, self.plan.unreadable[sid])
            else:
                items.append((sid, self.task(sid)))
        found: dict[str, list] = {}
        replicate_of = fmo_replicates(self.meta)
        values: dict[tuple[str, str, str], Any] = {}
        done = 0
        for outcome in self.executor.map(process_control, items):
            done += 1
            if outcome.ok:
                found[outcome.key] = outcome.value["records"]
                if outcome.value.get("qc"):
                    self.control_qc[outcome.key] = outcome.value["qc"]
                if str(self.row(outcome.key)["file"]) in replicate_of:  # pooled below
                    values.update(outcome.value["values"])
            else:
                self.fail(outcome.key, outcome.error, outcome.detail)
            self.progress("controls", done, len(fmo))
        # keyed by the tube's hierarchy: a control sets thresholds for its own panel only
        records = [{**r, "template": self.plan.hierarchy_key(sid)}
                   for sid, _ in items for r in found.get(sid, [])]  # fmt: skip
        if replicate_of:
            records = pool_fmo_replicates(records, values, replicate_of)
        with warnings.catch_warnings():  # said once here, and in the tube's status row
            warnings.simplefilter("ignore")
            small = warn_small_controls(records, self.config.gating.fmo_percentile)
        for sid, _ in items:
            for msg in (said := small.get(str(self.row(sid)["file"]), [])):
                logger.warning("%s", msg)
            if sid in self.status:
                continue
            qc = self.control_qc.get(sid) or {}  # the events it was read with, as a sample's
            events = (
                {"n_events": qc["n_in"], "n_kept": qc["n_out"]}
                if {"n_in", "n_out"} <= set(qc)
                else {}
            )
            marker = str(self.row(sid)["role"])[4:]
            resolved = self.plan.resolved.get(self.plan.hierarchy_key(sid))
            if resolved is not None and not fmo_users(resolved, marker):  # the plan says so
                self.status[sid] = status_row(
                    self.row(sid), "ok", "CONTROL_UNUSED",
                    f"FMO control not used: no gate takes its {marker} cut-off from an FMO",
                    **events,
                )  # fmt: skip
            else:
                done_text = "thresholds computed" if found.get(sid) else "no cut-off set"
                self.status[sid] = status_row(self.row(sid), "ok", "CONTROL", "; ".join(
                    [f"FMO control: {done_text}", *said]), **events)  # fmt: skip
        return pd.DataFrame.from_records(records)

    def run_samples(self, thresholds: pd.DataFrame, resume: bool) -> None:
        """Process the analysed tubes: unstimulated ones first, then their stimulated partners."""
        waves = sample_waves(self.meta)
        total = sum(len(wave) for wave in waves)
        done = 0
        self.analysed = total
        self.progress("samples", 0, total)
        for wave in waves:
            items = []
            for _, row in wave.iterrows():
                sid = str(row["sample_id"])
                if sid in self.plan.unreadable:
                    self.fail(sid, self.plan.unreadable[sid])
                    done += 1
                    continue
                work = self.folder.sample_dir(sid)
                own, paired = self.stim_inputs(row, self.thresholds_for(row, thresholds))
                task = self.task(
                    sid,
                    work_dir=str(work),
                    out_root=str(self.folder.root),
                    thresholds=own,
                    paired_unstim=paired,
                    qc_outcome=self.qc_outcomes.pop(sid, None),
                )
                if resume:
                    # reuse a finished sample only if everything it was computed from is
                    # unchanged (the file's content, its thresholds, its paired
                    # unstimulated tube, the config)
                    task.input_sha256 = self.input_hashes().get(str(row["file"]), "")
                    previous = self.folder.sample_result(sid)
                    if previous is not None and previous.get("fingerprint") == task.fingerprint():
                        self._accept(sid, previous)
                        self.reused += 1
                        done += 1
                        continue
                items.append((sid, task))
            for outcome in self.executor.map(process_sample, items):
                self._collect(outcome)
                done += 1
                self.progress("samples", done, total)

    def thresholds_for(self, row: pd.Series, thresholds: pd.DataFrame) -> list[dict]:
        """The batch-level thresholds that apply to one sample (tissue, batch, template).

        Those set on the sample's nearest FMO tubes come first (own condition, donor,
        timepoint: :func:`~nkflow.io.pairing.nearest_controls_first`).
        """
        if thresholds.empty:
            return []
        tpl = self.plan.hierarchy_key(str(row["sample_id"]))
        sel = thresholds[
            (thresholds["tissue"].astype(str) == str(row["tissue"]))
            & (thresholds["batch"].astype(str) == str(row["batch"]))
            & (thresholds["template"] == tpl)
            & thresholds.get("sample_id", pd.Series("", thresholds.index))
            .fillna("")
            .astype(str)
            .isin(["", str(row["sample_id"])])
        ]
        # without the columns only other rows have (an overrides file's value_linear): a
        # sample's thresholds, and so its --resume fingerprint, are the rows that reach it
        records = [
            {k: v for k, v in r.items() if k in THRESHOLD_COLUMNS or not _missing(v)}
            for r in sel.drop(columns=["template"]).to_dict("records")
        ]
        return nearest_controls_first(records, row, self._origin_of_file)

    def _paired(self, row: pd.Series) -> tuple[str, dict] | None:
        """The processed unstimulated partner (same donor, tissue, timepoint, batch).

        None also when several unstimulated tubes of the sheet share the key and no donor
        tells them apart (:func:`~nkflow.io.pairing.ambiguous_pair_keys`).
        """
        if not is_stimulated(row):
            return None
        key = tuple(str(row[c]) for c in PAIR_KEY)
        if key in self.ambiguous_keys:
            return None
        for sid, summary in self.summaries.items():
            other = self.row(sid)
            if not is_resting(other):
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
                # every warning: status.csv carries the per-file reasons (README)
                row, "ok", "OK", "; ".join(summary.get("warnings", [])),
                n_events=n_events, n_kept=n_kept,
            )  # fmt: skip

    def ok_samples(self) -> list[str]:
        """Samples that were analysed and passed QC, in sheet order."""
        return [
            str(s) for s in self.meta["sample_id"]
            if self.status.get(str(s), {}).get("status") == "ok" and str(s) in self.summaries
        ]  # fmt: skip

    def gather(self, key: str) -> pd.DataFrame:
        """One table from every processed sample's summary (``populations``, ``counts``, ...)."""
        frames = [
            pd.DataFrame.from_records(self.summaries[s][key])
            for s in self.meta["sample_id"].astype(str)
            if s in self.summaries and self.summaries[s].get(key)  # absent: an older summary
        ]
        return concat_rows(frames) if frames else pd.DataFrame()

    def thresholds_table(self, batch_level: pd.DataFrame) -> pd.DataFrame:
        """Batch-level and per-sample thresholds, in contract order, with linear units."""
        transforms = {
            sid: s["transform"] for sid, s in self.summaries.items() if s.get("transform")
        }
        applied = self.gather(APPLIED_KEY).to_dict("records")  # batch-level, as applied
        return batch_thresholds_table(
            batch_level, self.gather("thresholds"), transforms, self.sample_groups(), applied
        )

    def sample_groups(self) -> dict[str, tuple[str, str]]:
        """``sample_id -> (tissue, batch)`` of every file of the sheet."""
        return {
            str(r["sample_id"]): (str(r["tissue"]), str(r["batch"]))
            for _, r in self.meta.iterrows()
        }

    def qc_table(self) -> pd.DataFrame:
        """One QC row per processed sample and per FMO tube read, with its ``role``."""
        rows = []
        for _, row in self.meta.iterrows():
            sid = str(row["sample_id"])
            if sid in self.summaries:
                qc = self.summaries[sid].get("qc", {}) or {}
            elif sid in self.control_qc:
                qc = self.control_qc[sid]
            else:
                continue
            rows.append(
                {
                    "sample_id": sid,
                    "role": str(row["role"]),
                    **{k: v for k, v in qc.items() if not isinstance(v, dict | list)},
                }
            )
        return pd.DataFrame(rows)

    def status_table(self) -> pd.DataFrame:
        """One status row per input file, in sheet order.

        A tube that passed but lost an unusual share of its events to QC for this batch
        (:func:`~nkflow.report.qc_outliers.unusual_removal`, known only once every tube
        is read) has that said in its message.
        """
        unusual = self._unusual_qc()
        rows = []
        for _, row in self.meta.iterrows():
            sid = str(row["sample_id"])
            status = self.status.get(sid) or status_row(row, "skipped", "NOT_RUN", "not run")
            if sid in unusual and status["status"] == "ok":
                # said first: it concerns every number of the tube, the rest one gate each
                text = "; ".join(t for t in (unusual[sid], status["message"]) if t)
                status = {**status, "message": text}
            rows.append(status)
        return pd.DataFrame(rows, columns=STATUS_COLUMNS)

    def _unusual_qc(self) -> dict[str, str]:
        """``sample_id -> warning`` of the tubes whose QC loss is unusual for the batch."""
        qc = self.qc_table()
        if qc.empty or not {"n_in", "n_out"} <= set(qc.columns):
            return {}
        flagged = unusual_removal(qc)
        median = batch_median(qc)
        return {
            str(r["sample_id"]): unusual_message(r["n_in"], r["n_out"], median)
            for _, r in qc[flagged].iterrows()
        }


def _missing(value: Any) -> bool:
    """A cell a frame filled in: ``None`` or NaN (not a list or a text)."""
    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))
