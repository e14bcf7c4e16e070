"""The stages of a batch run, once :func:`nkflow.pipeline.run` has started its workers.

:func:`prepare_batch` checks the sheet, the batch and the output folder before any work;
:func:`run_prepared` then runs the stages in ARCHITECTURE.md's order (FMO controls, batch
pool, samples, clustering, scoring, report) on the run's executor and writes the report,
the configuration and, last, the provenance. This module imports most of nkflow and its
dependencies (pandas, anndata, scipy, scikit-learn), so ``run`` imports it only after the
worker processes have started importing the same.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import platform
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import pandas as pd

from .._dates import date_order
from .._version import __version__
from ..config import RunConfig, config_to_dict, config_to_toml
from ..io.metadata import name_words
from ..io.pairing import is_resting
from ..io.panel_labels import format_unread
from ..io.write import file_sha256, write_table, write_text_atomic
from ..parallel import SampleExecutor
from ..pp.compensate import check_matrix_setting
from ..tl.score import score, scoring_config_for
from .figures import cluster_abundance, cluster_heatmap, population_figures, score_figures
from .outdir import GATING_FIGURE, LABELS_FILE, LEGACY_GATING_FIGURE
from .plan import BatchPlan, plan_batch
from .pooled import batch_stage, check_batch_overrides
from .results import Results
from .sample import read_kept_events
from .state import ProgressCallback, RunState
from .steps import cluster_batch, reading_order, template_hashes
from .tables import POPULATION_COLUMNS, order_columns

__all__ = ["prepare_batch", "run_prepared", "timepoint_order"]

logger = logging.getLogger("nkflow.pipeline.run")

DEPENDENCIES = ("flowkit", "flowio", "numpy", "pandas", "scipy", "scikit-learn", "anndata",
                "matplotlib", "pyarrow")  # fmt: skip


def _input_hashes(meta: pd.DataFrame) -> dict[str, str]:
    """SHA-256 of every input file of the sheet that exists and can be read, by ``file``.

    The files are read in the order the stages read them (:func:`reading_order`): hashed
    by a thread while the workers start and work, each file then reaches the page cache
    a little before a worker opens it, which overlaps the reads with computing when the
    files come from a cold disk or a network share. The result keeps the sheet's order.
    """
    found = {}
    for i in reading_order(meta):
        row = meta.loc[i]
        if Path(row["path"]).is_file():
            try:
                found[i] = (str(row["file"]), file_sha256(row["path"]))
            except OSError:  # unreadable (permissions): its own reading fails and says why
                continue
    return dict(found[i] for i in meta.index if i in found)


def _provenance(run: RunState, templates: dict[str, str], inputs: dict[str, str]) -> dict[str, Any]:
    versions = {"nkflow": __version__, "python": platform.python_version()}
    for dist in DEPENDENCIES:
        try:
            versions[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    # per analysed file: the technology read from it and the compensation/transform it got
    preprocessing = {
        str(run.row(sid)["file"]): {
            "technology": (summary.get("technology") or {}).get("kind", ""),
            "evidence": (summary.get("technology") or {}).get("evidence", []),
            "compensation": (summary.get("compensation") or {}).get("source", ""),
            "compensation_reason": (summary.get("compensation") or {}).get("reason", ""),
            "transform": (summary.get("transform") or {}).get("kind", ""),
            # the parameters of the first transformed channel (T/W/M/A, or the cofactor)
            "transform_params": next(
                iter(((summary.get("transform") or {}).get("params") or {}).values()), {}
            ),
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


def prepare_batch(
    input_path: str | Path,
    out: Path,
    config: RunConfig,
    *,
    force: bool,
    resume: bool,
    on_progress: ProgressCallback | None,
    on_plan: Callable[[BatchPlan], None] | None,
    executor: SampleExecutor | None = None,
) -> tuple[RunState, pd.DataFrame]:
    """Check the sheet, the batch and its panel, then prepare and lock the output folder.

    Parameters are those of :func:`nkflow.pipeline.run`, and the run's ``executor``,
    connected to its Dask scheduler (when it has one) before the output folder is made.
    Raises :func:`~nkflow.pipeline.run`'s errors before any work.

    Returns
    -------
    tuple of RunState and pandas.DataFrame
        The run's state (its folder locked: :meth:`OutputFolder.release` it) and the
        batch's consistency table.
    """
    check_matrix_setting(config.compensation.matrix)  # once, not once per sample
    state = RunState(input_path, out, config, on_progress)
    state.folder.refuse_existing(force=force, resume=resume)  # at once, not after the plan
    consistency = state.check_consistency()
    state.use_plan(plan_batch(state.meta, config))  # no NK anchor in the panel: stop here
    state.plan.notes += [f"panel: {note}" for note in state.panel_notes]
    if state.unread_labels:  # said with the plan, so a -q run's provenance keeps it too
        state.plan.notes.append(
            "labels not read as markers, left out of the analysis: "
            f"{format_unread(state.unread_labels)}; "
            "name their markers in a panel file (channel,marker) to use them"
        )
    logger.info("gating plan:\n%s", state.plan.to_text())
    if on_plan is not None:
        on_plan(state.plan)
    check_batch_overrides(state)  # a typo in the overrides file stops the run here
    if executor is not None:  # an unreachable scheduler stops the run with nothing written
        executor.connect()
    state.folder.prepare(
        force=force, resume=resume, inputs=state.inputs(), samples=state.meta["sample_id"]
    )
    return state, consistency


def run_prepared(
    state: RunState,
    cfg: RunConfig,
    resume: bool,
    consistency: pd.DataFrame,
    executor: SampleExecutor,
) -> Results:
    """The stages of :func:`nkflow.pipeline.run` once the output folder is prepared and locked."""
    out = state.folder.root
    state.skip_controls()
    tables: dict[str, pd.DataFrame] = {}
    clustering = None
    clustering_skipped: list[str] = []  # why, when the batch has too few cells
    caveats = ""
    scoring_definitions: dict[str, Any] | None = None
    # the inputs are hashed by a thread of this process, which otherwise mostly waits for
    # the workers (hashlib and file reads release the GIL), not after the last sample
    hashing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nkflow-sha256")
    input_hashes = hashing.submit(_input_hashes, state.meta.copy())
    hashing.shutdown(wait=False)
    state.input_hashes = input_hashes.result  # a --resume's fingerprints use them
    state.executor = executor
    thresholds = batch_stage(state, state.thresholds())  # + batch pool, manual overrides
    state.run_samples(thresholds, resume)
    ok = state.ok_samples()
    counts = state.gather("counts")
    populations = order_columns(state.gather("populations"), POPULATION_COLUMNS)
    scoring = cfg.scoring.enabled and not counts.empty
    configured_order: Any = ()
    if scoring:  # the timepoint order of the scores and of the population figures
        analysed = state.meta[state.meta["sample_id"].astype(str).isin(ok)]
        definitions = scoring_config_for(analysed, cfg.scoring.definitions or None)
        configured_order = definitions.timepoint_order
    order = timepoint_order(state.meta, configured_order)
    state.meta.attrs["timepoint_order"] = order
    from ..report.html import POPULATION_FIGURES

    # the report's batch figures are drawn on a free core while this process goes on, each
    # on its own as soon as its inputs exist
    shown_meta = _report_metadata(state)
    pending = {
        name: executor.submit(population_figures, name, (populations, shown_meta, name))
        for name in POPULATION_FIGURES
    }
    if cfg.clustering.enabled and ok:
        state.progress("clustering", 0, 1)

        def draw_heatmap(result: Any) -> None:  # before the samples are mapped
            pending["clusters_heatmap"] = executor.submit(
                cluster_heatmap, "cluster heatmap", result
            )

        clusters = _cluster_stage(
            state, cfg, ok, executor, on_fitted=draw_heatmap, skipped=clustering_skipped
        )
        if clusters is not None:
            clustering = clusters.result
            tables["clusters"] = clusters.abundance
            tables["cluster_medians"] = clusters.medians
            counts = pd.concat([counts, clusters.counts], ignore_index=True)
            pending["clusters_abundance"] = executor.submit(
                cluster_abundance, "cluster abundance", clusters.abundance
            )
        state.progress("clustering", 1, 1)

    if scoring:
        state.progress("scoring", 0, 1)
        counts = counts[counts["sample_id"].astype(str).isin(ok)]
        # the whole sheet: a tube that failed still makes its pair key ambiguous, as for
        # the cut-offs the run borrowed (RunState.ambiguous_keys) and `nkflow check`
        result = score(counts, state.meta, config=definitions, unavailable=_unavailable(state))
        names = _population_labels(clustering)
        tables["scores"] = result.scores.assign(
            label=result.scores["population"].map(names).fillna(result.scores["population"])
        )
        tables["flags"] = result.flags.assign(
            label=result.flags["population"].map(names).fillna(result.flags["population"])
        )
        tables["controls"] = result.controls
        tables["bright_dim"] = result.bright_dim
        tables["comparisons"] = _comparisons(result.scores, order, result.config.min_events)
        caveats = result.caveats
        scoring_definitions = dataclasses.asdict(result.config)
        pending["repair"] = executor.submit(score_figures, "repair figures", result)
        state.progress("scoring", 1, 1)
    tables["populations"] = populations
    tables["thresholds"] = state.thresholds_table(thresholds)
    tables["counts"] = counts
    tables["qc"] = state.qc_table()
    tables["status"] = state.status_table()
    tables["consistency"] = consistency
    from ..report import write_report, write_tables

    state.progress("report", 0, 1)  # the tables, the last figures, report.html
    write_tables(out, tables)  # while the last figures are drawn
    drawn = {part: job.outcome() for part, job in pending.items()}
    # every task is done: the workers exit (~0.5 s each) while the report is written;
    # run() waits for them at the end
    executor.close_in_background()

    figures = _drawn_figures(drawn, ("clusters_heatmap", "clusters_abundance", "repair"))
    for sid in ok:
        # the figure the sample's result.json lists (a stale file from an earlier run is not)
        listed = state.summaries[sid].get("products") or {}
        for name in (GATING_FIGURE, LEGACY_GATING_FIGURE):
            figure = state.folder.sample_dir(sid) / name
            if name in listed and figure.is_file():
                figures[f"gating_{sid}"] = figure.read_bytes()
                break

    figures.update(_drawn_figures(drawn, POPULATION_FIGURES))  # after the gating figures

    templates = template_hashes(sorted(set(state.plan.template_of.values())))
    provenance = _provenance(state, templates, input_hashes.result())
    provenance["gating_plan"] = state.plan.to_dict()
    # the notes printed with the plan (files the sheet leaves out, files with identical
    # content ...): the report shows them, and provenance.json keeps them for a -q run
    provenance["batch_notes"] = list(state.plan.notes)
    if state.unread_labels:  # the Methods name the labelled channels left out
        provenance["unread_labels"] = list(state.unread_labels)
    if clustering_skipped:
        provenance["clustering_skipped"] = clustering_skipped[0]
    if clustering is not None:  # what the fit used: the methods text names it
        provenance["clustering"] = _clustering_record(clustering)
    # the workers the run used (the setting 0 means one per core of this machine)
    provenance["execution"] = {"workers": executor.workers, "scheduler": executor.scheduler}
    if state.plan.species_of:  # files the sheet gave no species: the panel's
        provenance["species_from_panel"] = {
            str(state.row(sid)["file"]): species for sid, species in state.plan.species_of.items()
        }
    if cfg.gating.overrides:
        provenance["overrides_sha256"] = {cfg.gating.overrides: file_sha256(cfg.gating.overrides)}
    if scoring_definitions is not None:
        provenance["scoring"] = scoring_definitions
    report = write_report(
        out,
        tables=tables,
        tables_written=True,
        metadata=_report_metadata(state),
        figures=figures,
        config=cfg,
        provenance=provenance,
        caveats=caveats,
    )
    write_text_atomic(out / "config.toml", config_to_toml(cfg), root=out)
    state.progress("report", 1, 1)
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
        notes=[f"clustering skipped: {why}" for why in clustering_skipped]
        + [f"clustering: {note}" for note in _sizing(clustering)],
    )


def _cluster_stage(
    state: RunState,
    cfg: RunConfig,
    ok: list[str],
    executor: SampleExecutor,
    on_fitted: Callable[[Any], None] | None = None,
    skipped: list[str] | None = None,
) -> Any:
    """Cluster the kept (NK) events of the samples that succeeded; map them on the workers.

    Metaclusters must not split by stimulation: the SOM trains on the unstimulated tubes,
    on markers stimulation does not move, and every tube (stimulated ones included) is
    mapped. ``on_fitted`` gets the clustering before the mapping; ``skipped`` the reason
    when there is none. Returns :class:`~nkflow.pipeline.steps.BatchClusters` or None.
    """
    dirs = {sid: str(state.folder.sample_dir(sid)) for sid in ok}
    loaders = {sid: functools.partial(read_kept_events, dirs[sid]) for sid in ok}
    resting = {sid for sid in ok if is_resting(state.row(sid))}
    return cluster_batch(
        loaders,
        cfg,
        on_assigned=functools.partial(_save_labels, str(state.folder.root), dirs),
        fit_on=resting or None,
        executor=executor,
        on_fitted=on_fitted,
        skipped=skipped,
    )


def _save_labels(out_root: str, dirs: dict[str, str], sid: str, adata: Any) -> None:
    """A sample's metacluster labels, next to its other products (picklable for workers)."""
    labels = pd.DataFrame({"metacluster": adata.obs["metacluster"].astype(str)})
    stem = Path(dirs[sid]) / Path(LABELS_FILE).stem
    write_table(labels, stem, formats=("parquet",), root=out_root)


#: the fit settings of a clustering the provenance keeps (not its labels or thresholds)
_CLUSTERING_KEYS = (
    "population", "markers", "n_train", "per_sample_cap", "xdim", "ydim", "xdim_requested",
    "ydim_requested", "sizing", "rlen", "alpha",
    "som_init", "n_metaclusters", "n_metaclusters_requested", "linkage", "final_linkage",
    "n_resamples", "resample_fraction", "k_selection", "random_state",
)  # fmt: skip


def _clustering_record(clustering: Any) -> dict[str, Any]:
    """The markers a clustering was trained on and the SOM/consensus settings it used."""
    params = dict(getattr(clustering, "params", {}) or {})
    record = {k: params[k] for k in _CLUSTERING_KEYS if k in params}
    record["markers"] = [str(m) for m in record.get("markers", clustering.markers)]
    record["n_samples"] = len(params.get("samples", ()))
    return json.loads(json.dumps(record, default=str))


def _sizing(clustering: Any) -> list[str]:
    """The settings a clustering lowered to what its cells support, one sentence each."""
    params = getattr(clustering, "params", None) or {}
    return [str(note) for note in params.get("sizing") or ()]


def _population_labels(clustering: Any) -> dict[str, str]:
    """``{"metacluster:3": "CD56bright CD16- CD69+ ..."}`` so tables say what a cluster is."""
    if clustering is None:
        return {}
    return {f"metacluster:{k}": name for k, name in clustering.labels.items()}


#: timepoint names read as before / after treatment, in their order
_BEFORE = ("screening", "baseline", "pre", "before", "pretreatment", "untreated", "naive")
_AFTER = ("on", "ontreatment", "during", "post", "after", "posttreatment", "eot",
          "endoftreatment", "followup", "progression", "relapse", "recurrence")  # fmt: skip
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
#: 12/03/2024, 12.03.2024: day and month in an order the name does not say
_LOCAL_DATE = re.compile(r"\d+[/.]\d+[/.]\d+")


def timepoint_order(meta: pd.DataFrame, configured: Any = ()) -> list[str]:
    """Timepoints in the configured order, then the rest in their natural order.

    The natural order is the order of the words (``screening``, ``baseline``, ``pre``,
    ``before`` ... then ``on``, ``during``, ``post``, ``after``, ``EOT``, ``follow-up``,
    ``progression``; case, spaces, ``-`` and ``_`` ignored) with numbered timepoints of one
    pattern (``D0``, ``D7``, ``D14``; ``week 4``, ``week 12``; ``C1D1``, ``C2D1``) between
    them, by their numbers in turn; when a timepoint is none of these, the sheet's order.
    A sheet sorted by file name lists ``post`` before ``pre``, and the first timepoint is
    the baseline of every comparison.
    """
    seen = [str(t) for t in dict.fromkeys(meta.get("timepoint", pd.Series(dtype=str)))]
    seen = [t for t in seen if t]
    first = [str(t) for t in configured if str(t) in seen]
    rest = [t for t in seen if t not in first]
    return first + _natural_order(rest)


def _natural_order(timepoints: list[str]) -> list[str]:
    """``timepoints`` by their words and numbers (:func:`timepoint_order`), else as given.

    Dates (``12.03.2024``, ``2024-03-12``) go in calendar order when the sheet's writing
    gives one (:func:`nkflow._dates.date_order`: day first and month first agree, or only
    one is a valid date for them all), else in the sheet's order.
    """
    if dated := date_order(timepoints):
        return dated[0]
    keys: dict[str, tuple[int, tuple[float, ...]]] = {}
    patterns = set()
    for t in timepoints:
        words = name_words(t)
        word, text = "".join(words), " ".join(words)
        numbers = tuple(float(n) for n in _NUMBER.findall(text))
        if word in _BEFORE:
            keys[t] = (0, (_BEFORE.index(word),))
        elif word in _AFTER:
            keys[t] = (2, (_AFTER.index(word),))
        elif _LOCAL_DATE.search(text):
            return timepoints  # a date beside other names: no common scale
        elif numbers:  # D7, week 4, 48h, C2D1 (cycle 2, day 1): by their numbers in turn
            patterns.add(_NUMBER.sub("#", text))
            keys[t] = (1, numbers)
        else:
            return timepoints  # a name of the lab's own: its sheet order
    if len(patterns) > 1:  # D7 beside week 4: no common scale
        return timepoints
    return sorted(timepoints, key=keys.__getitem__)


def _comparisons(
    scores: pd.DataFrame, order: list[str], min_events: int | None = None
) -> pd.DataFrame:
    """The first timepoint against each later one, per condition and tissue.

    Each tissue is its own test: within it every donor is one independent pair. The tissue
    kind (tumour, normal ...), when known, is kept beside it. Only the populations the
    scoring may flag (``flaggable``: the ``[flag] populations``, metaclusters included when
    listed) are compared: a change in AREG net of Cells, Live or the ILC positive-control
    gate says nothing about NK cells. Glucocorticoid exposure is counted per row
    (``n_glucocorticoid_before``/``_after``, ``n_glucocorticoid_unknown_*``) and judged
    (``glucocorticoid_confounded``): steroids given with the treatment change between the
    two timepoints, so they cannot stratify the pairs, but a row whose donors' exposure
    changed must say so. A tube with fewer than ``min_events`` events in the population
    (stim or unstim: the scoring's ``EVENTS_BELOW_MIN``) is left out as if missing, and the
    pairs lost that way are counted (``n_pairs_too_few_events``).
    """
    from ..tl.compare import adjust_per_family, compare_paired, paired_columns

    by = ["condition", *(c for c in ("tissue",) if c in scores.columns), "population"]
    if "tissue_kind" in scores.columns and (scores["tissue_kind"].astype(str) != "").any():
        by.insert(1, "tissue_kind")
    exposures = [c for c in ("glucocorticoid",) if c in scores.columns]
    none = pd.DataFrame(columns=paired_columns(by, exposures))  # a table a script can read
    if scores.empty or "timepoint" not in scores.columns:
        return none
    if "flaggable" in scores.columns:
        scores = scores[scores["flaggable"].astype(str).str.lower().isin(("true", "1"))]
    points = [t for t in order if t in set(scores["timepoint"].astype(str))]
    if len(points) < 2:
        return none
    frames = [
        compare_paired(
            scores,
            before=points[0],
            after=later,
            by=by,
            exposures=exposures,
            min_events=min_events,
        )
        for later in points[1:]
    ]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return none
    out = pd.concat(frames, ignore_index=True)
    # one adjustment over the table (README, report): each call adjusted only its own
    # timepoint's rows, so with three timepoints d7 - pre passed at 0.031 where the table's
    # rows gave 0.0625
    out["p_adj"] = adjust_per_family(out)
    return out


def _unavailable(state: RunState) -> dict[str, str]:
    """Why each tube that has no counts has none: its status, reason code and message."""
    status = state.status_table()
    failed = status[status["status"].astype(str) != "ok"]
    return {
        str(r.sample_id): f"{r.status}, {r.reason_code}: {r.message}".rstrip(": ")
        for r in failed.itertuples()
    }


def _report_metadata(state: RunState) -> pd.DataFrame:
    """The sheet as the report shows it (no file paths; ``attrs`` keep the timepoint order)."""
    return state.meta.drop(columns=["path"], errors="ignore")


def _drawn_figures(drawn: dict[str, Any], parts: tuple[str, ...]) -> dict[str, bytes]:
    """PNG bytes of the figure tasks of ``parts`` that ran; a failure is only logged."""
    out: dict[str, bytes] = {}
    for part in parts:
        outcome = drawn.get(part)
        if outcome is not None and outcome.ok:
            out.update(outcome.value)
        elif outcome is not None:  # a figure must never fail the run
            logger.warning("%s figures not drawn: %s", part, outcome.error)
    return out
