"""The per-sample unit of work: read -> QC -> compensate -> transform -> gate -> count.

:func:`process_sample` runs in a worker process (or in the main process). It takes a
small picklable :class:`SampleTask`, writes the sample's products into its own work
folder (atomically; ``result.json`` last), and returns the small summary that the
batch steps need. Nothing here holds more than one sample in memory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from .. import pp
from .._events import subset_events
from .._seeds import sample_seed
from .._version import __version__
from ..config import RunConfig
from ..exceptions import NkflowWarning, PanelWarning
from ..gating.apply import fmo_thresholds, gate, listed_thresholds
from ..gating.cut_spread import applied_batch_cuts
from ..gating.membership import member_mask
from ..gating.resolve import ResolvedTemplate
from ..gating.template import load_template
from ..io import read_fcs, sample_id
from ..io.h5ad import h5ad_bytes, json_default, read_h5ad
from ..io.records import nkflow_record, nkflow_uns
from ..io.write import (
    ensure_folder,
    file_sha256,
    write_bytes_atomic,
    write_text_atomic,
)
from ..tl.counts import count_positive
from .outdir import (
    GATING_FIGURE,
    NK_EVENTS_FILE,
    RESULT_FILE,
    product_record,
)

__all__ = [
    "APPLIED_KEY",
    "SUMMARY_SCHEMA",
    "SampleTask",
    "load_sample",
    "own_warnings",
    "pool_sample",
    "process_control",
    "process_sample",
    "read_kept_events",
    "sample_seed",
]

logger = logging.getLogger(__name__)

#: The key of a sample's summary (``result.json``) holding its records of the batch-level
#: cut-offs it applied (:func:`nkflow.gating.cut_spread.applied_batch_cuts`)
APPLIED_KEY = "applied_batch_thresholds"
#: The layout of a sample's summary (``result.json``), part of its fingerprint: bumped
#: whenever a key the batch stages read is added or changes meaning, so a ``--resume``
#: into a folder of an older layout redoes those samples instead of reading half of
#: them (2: :data:`APPLIED_KEY`, which an FMO row's spread is built from; 3: the counts'
#: AREG+ events at the ends of the AREG cut-off's interval, which each flag is checked at;
#: 4: an open end of that interval is not counted)
SUMMARY_SCHEMA = 4


@dataclass
class SampleTask:
    """Everything one worker needs for one sample (picklable, small).

    Attributes
    ----------
    sample_id, path
        The sample and its FCS file.
    row
        The sample's metadata-sheet row.
    config
        The run configuration.
    template
        Gating template name or path, or the batch's resolved template
        (:class:`~nkflow.gating.resolve.ResolvedTemplate`, :mod:`nkflow.pipeline.plan`).
    work_dir
        The sample's work folder (``None``: keep nothing on disk, return the container).
    out_root
        The run's output folder that ``work_dir`` lies in (links below it are refused).
    thresholds
        Batch-level thresholds (FMO-derived) for this sample's tissue and batch.
    paired_unstim
        For a stimulated tube, the populations table of its unstimulated tube.
    figures
        Draw the gating figure.
    keep_population
        The population whose events are kept for clustering.
    qc_outcome
        The file's QC outcome from earlier in the run (the batch-pool pass read the file
        with the same config: the pass flags packed 8 per byte and the record), reused
        instead of running QC again.
    input_sha256
        SHA-256 of the FCS file's content (``""``: :meth:`fingerprint` hashes the file).
        A ``--resume`` passes the digest the run's provenance computes anyway.
    """

    sample_id: str
    path: str
    row: dict[str, Any]
    config: RunConfig
    template: str | ResolvedTemplate
    work_dir: str | None = None
    out_root: str | None = None
    thresholds: list[dict[str, Any]] = field(default_factory=list)
    paired_unstim: list[dict[str, Any]] | None = None
    figures: bool = True
    keep_population: str = "NK"
    qc_outcome: dict[str, Any] | None = None
    input_sha256: str = ""

    def content_sha256(self) -> str:
        """SHA-256 of the FCS file's content (``input_sha256``, else read now; ``""``: no file)."""
        if self.input_sha256:
            return self.input_sha256
        return file_sha256(self.path) if Path(self.path).is_file() else ""

    def fingerprint(self) -> str:
        """Hash of everything the sample's results depend on (used by ``--resume``).

        The file by its content, not its size, time or place: a file replaced by another
        of the same size is redone, a batch folder moved elsewhere is not. Where the work
        ran (``execution.workers``, ``scheduler``) is left out: the results do not depend
        on it. The summary's layout (:data:`SUMMARY_SCHEMA`) is in: a ``result.json``
        written by a build whose summaries lack a key this build reads is redone.
        """
        from ..config import config_to_dict

        blob = json.dumps(
            {
                "sha256": self.content_sha256(),
                "row": {k: v for k, v in self.row.items() if k != "path"},
                "config": _result_settings(config_to_dict(self.config)),
                "template": (
                    self.template.to_dict()
                    if isinstance(self.template, ResolvedTemplate)
                    else self.template
                ),
                "thresholds": self.thresholds,
                "paired_unstim": self.paired_unstim,
                "version": __version__,
                "summary_schema": SUMMARY_SCHEMA,
            },
            sort_keys=True,
            default=json_default,
        )
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _result_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The config a sample's results depend on, for its fingerprint.

    Minus ``gating.overrides`` (its entries reach a sample as thresholds) and the
    execution settings but the seed (the tables are the same on any number of workers).
    """
    gating = {k: v for k, v in config.get("gating", {}).items() if k != "overrides"}
    execution = {k: v for k, v in config.get("execution", {}).items() if k == "random_state"}
    return {**config, "gating": gating, "execution": execution}


def load_sample(task: SampleTask) -> ad.AnnData:
    """Read, QC, compensate and transform one sample as the config says.

    Parameters
    ----------
    task
        The sample's task.

    Returns
    -------
    anndata.AnnData
        The transformed container.
    """
    return _load(task)[0]


def _packed_qc(passed: np.ndarray, record: dict[str, Any]) -> dict[str, Any]:
    """A QC outcome as a small picklable record: the pass flags packed 8 to a byte."""
    return {"n": int(passed.size), "passed": np.packbits(passed), "record": record}


def _unpacked(outcome: dict[str, Any] | None, n_events: int) -> np.ndarray | None:
    if outcome is None or outcome.get("n") != n_events:
        return None
    return np.unpackbits(outcome["passed"], count=n_events).astype(bool)


def _load(task: SampleTask) -> tuple[ad.AnnData, dict[str, Any] | None]:
    """:func:`load_sample`, and the file's QC outcome (None with QC off)."""
    cfg = task.config
    with warnings.catch_warnings():
        # said once for the whole batch, with the plan (BatchCheck.notes), not per file:
        # a panel shared across instruments names channels some files lack
        warnings.simplefilter("ignore", PanelWarning)
        adata = read_fcs(
            task.path,
            sample_id=task.sample_id,
            panel=cfg.panel or None,
            metadata=task.row,
            nonfinite=cfg.qc.nonfinite,
        )
    outcome = None
    if cfg.qc.enabled:
        passed = _unpacked(task.qc_outcome, adata.n_obs)
        if passed is None:
            passed, record = pp.qc_events(adata, time=cfg.qc.time, margins=cfg.qc.margins)
            outcome = _packed_qc(passed, record)
        else:
            outcome, record = task.qc_outcome, task.qc_outcome["record"]
        pp.apply_qc(adata, passed, record, remove=True)
    pp.compensate(adata, matrix=cfg.compensation.matrix)
    t = cfg.transform
    pp.transform(
        adata,
        method=t.method,  # type: ignore[arg-type]  # validated by RunConfig
        cofactor=t.cofactor or None,  # 0: the file's technology decides
        T=t.T,
        W=t.W,
        M=t.M,
        A=t.A,
        estimate_w=t.estimate_w,
    )
    return adata, outcome


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(table.to_json(orient="records", double_precision=15))


def _gating_figure(adata: ad.AnnData) -> bytes | None:
    """The sample's gate grid as SVG bytes (drawn without matplotlib figures), or None."""
    try:
        from ..report.gating_svg import gating_svg

        return gating_svg(adata)
    except Exception as exc:  # a figure must never fail a sample
        logger.warning("sample %s: gating figure not drawn (%s)", sample_id(adata), exc)
        return None


def process_control(task: SampleTask) -> dict[str, Any]:
    """FMO thresholds of one FMO tube, as records (the per-control unit of work).

    A picklable function, so the FMO tubes of a batch run on the worker pool like the
    samples; one failing tube fails alone.

    Parameters
    ----------
    task
        The FMO tube's task; ``task.row`` is its metadata row (``role = "fmo:<MARKER>"``).

    Returns
    -------
    dict
        ``records``: one per threshold (docs/contracts.md ``thresholds`` columns) plus
        ``template``, the template's name; ``values``: the tube's events behind each
        (:data:`nkflow.gating.fmo_pool.FmoValues`), for pooling it with its replicates;
        ``qc``: the tube's QC record as the QC table shows it (empty when the tube was not
        read: no gate takes its cut-off from an FMO).
    """
    cfg = task.config
    tpl = (
        task.template
        if isinstance(task.template, ResolvedTemplate)
        else load_template(task.template)
    )
    name = tpl.source.name if isinstance(tpl, ResolvedTemplate) else tpl.name
    meta = pd.DataFrame([{**task.row, "sample_id": task.sample_id}])
    values: dict[tuple[str, str, str], tuple[Any, float, int]] = {}
    qc: dict[str, Any] = {}

    def read(_sid: str) -> ad.AnnData:
        adata = load_sample(task)
        qc.update(nkflow_record(adata, "qc") or {})  # what QC removed from the tube
        return adata

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        found = fmo_thresholds(
            meta,
            read,
            tpl,
            random_state=cfg.execution.random_state,
            n_boot=cfg.gating.bootstrap,
            fmo_percentile=cfg.gating.fmo_percentile,
            values_out=values,
        )
    records = [{**t.to_record(), "template": name} for t in found]
    return {"records": records, "values": values, "qc": qc}


def pool_sample(task: SampleTask) -> dict[str, Any]:
    """One sample's contribution to the batch pools (the per-sample unit of the pool stage).

    The sample is read, gated down to the parent gate of each ``pool = true`` condition
    (with ``task.thresholds``, its batch's FMO thresholds) and a capped, seeded subsample
    of the marker there is returned (:func:`nkflow.gating.pooled.pool_contribution`).

    Returns
    -------
    dict
        ``contributions`` (the pools' records) and ``qc`` (the file's QC outcome, for the
        sample pass to reuse; None with QC off).
    """
    from ..gating.apply import applied_template
    from ..gating.pooled import pool_contribution

    with warnings.catch_warnings():
        # the sample pass reads the file again and says its warnings with the tube's
        # status; here, in a worker, they were printed raw, with nkflow's source lines
        warnings.simplefilter("ignore")
        adata, outcome = _load(task)
    tpl = applied_template(task.template, adata).template
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        contributions = pool_contribution(
            adata,
            tpl,
            thresholds=pd.DataFrame(task.thresholds) if task.thresholds else None,
            random_state=task.config.execution.random_state,
        )
    return {"contributions": contributions, "qc": outcome}


def process_sample(task: SampleTask) -> dict[str, Any]:
    """Process one sample end to end and return its summary.

    Parameters
    ----------
    task
        The sample's task.

    Returns
    -------
    dict
        ``sample_id``, ``technology``, ``qc``, ``compensation`` and ``transform`` (dicts,
        as recorded in ``uns["nkflow"]``), ``populations``, ``thresholds`` and ``counts``
        (lists of records), ``n_events``, ``n_kept`` and the work files written.
    """
    cfg = task.config
    seed = sample_seed(cfg.execution.random_state, task.sample_id)
    # the file's digest before it is read: a file replaced while it is processed then
    # fails to match at the next --resume, never the other way round
    task = replace(task, input_sha256=task.content_sha256())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        adata = load_sample(task)
        paired = pd.DataFrame(task.paired_unstim) if task.paired_unstim is not None else None
        populations = gate(
            adata,
            task.template,
            thresholds=pd.DataFrame(task.thresholds) if task.thresholds else None,
            paired_unstim=paired,
            random_state=seed,
            n_boot=cfg.gating.bootstrap,
            fmo_percentile=cfg.gating.fmo_percentile,
            min_events=cfg.gating.min_events,
        )
        gated = [p["name"] for p in nkflow_record(adata, "gating")["populations"]]
        counts = count_positive(adata, populations=[p for p in gated if p in adata.obs])
    nk = nkflow_uns(adata)
    summary: dict[str, Any] = {
        "sample_id": task.sample_id,
        "fingerprint": task.fingerprint(),
        "file": task.path,
        "input_sha256": task.input_sha256,
        "nkflow_version": __version__,
        "n_events": int(nk.get("fcs", {}).get("n_events", adata.n_obs)),
        "n_kept": int(adata.n_obs),
        "technology": nk.get("technology", {}),
        "qc": nk.get("qc", {}),
        "transform": nk.get("transform", {}),
        "compensation": nk.get("compensation", {}),
        "gating": {k: v for k, v in nk.get("gating", {}).items() if k != "populations"},
        "populations": _records(populations),
        # those it set and those it borrowed; batch-level (FMO) ones are reported once
        "thresholds": listed_thresholds(nk.get("thresholds", []), task.sample_id),
        # and how far their intervals move its shares, for the batch rows (cut_spread)
        APPLIED_KEY: applied_batch_cuts(nk.get("thresholds", []), task.sample_id),
        "counts": _records(counts),
        "warnings": sorted(
            {f"{w.category.__name__}: {w.message}" for w in own_warnings(caught, task.sample_id)}
        ),
    }
    keep = task.keep_population
    if task.work_dir is None:
        summary["adata"] = adata
        return summary
    work = ensure_folder(Path(task.work_dir), task.out_root)
    products: list[str] = []
    if keep in adata.obs.columns:
        subset = subset_events(adata, member_mask(adata.obs[keep]), inplace=False)
        subset.uns = {"nkflow": adata.uns["nkflow"]}  # as one JSON string: quick to write
        data = h5ad_bytes(subset, json_records=True)  # and read, as nk.io.read_h5ad does
        write_bytes_atomic(work / NK_EVENTS_FILE, data, root=task.out_root)
        products.append(NK_EVENTS_FILE)
    if task.figures:
        figure = _gating_figure(adata)
        if figure is not None:
            write_bytes_atomic(work / GATING_FIGURE, figure, root=task.out_root)
            products.append(GATING_FIGURE)
    # result.json comes last and records each product's size and hash, so --resume can
    # tell a complete sample from one whose files were cut short or replaced
    summary["products"] = {name: product_record(work / name) for name in products}
    text = json.dumps(summary, sort_keys=True, default=json_default, allow_nan=True)
    write_text_atomic(work / RESULT_FILE, text, root=task.out_root)
    return json.loads(text)


def own_warnings(
    caught: list[warnings.WarningMessage], sample: str
) -> list[warnings.WarningMessage]:
    """The warnings of nkflow's own classes, which a tube's status row says.

    Other libraries' warnings (a pandas deprecation, a numpy empty-slice notice) say
    nothing about the data: they go to the debug log. ``nkflow run`` and ``nkflow gate``
    both keep these only.

    Parameters
    ----------
    caught
        The warnings recorded while the tube was processed.
    sample
        The tube's sample id, for the debug log.

    Returns
    -------
    list of warnings.WarningMessage
        Those of :class:`~nkflow.exceptions.NkflowWarning` classes, in order.
    """
    for w in caught:
        if not issubclass(w.category, NkflowWarning):
            logger.debug("%s: %s: %s", sample, w.category.__name__, w.message)
    return [w for w in caught if issubclass(w.category, NkflowWarning)]


def read_kept_events(work_dir: str | Path) -> ad.AnnData | None:
    """The kept population's events of a processed sample, or ``None`` when it has none.

    Parameters
    ----------
    work_dir
        The sample's work folder.

    Returns
    -------
    anndata.AnnData or None
        The container with ``uns["nkflow"]`` restored.
    """
    path = Path(work_dir) / NK_EVENTS_FILE
    if not path.is_file():
        return None
    adata = read_h5ad(path)
    adata.uns.setdefault("nkflow", {})
    return adata
