"""The flowkit + flowsom peer of ``nkflow run``, for ``bench_pipeline.py --peer-pipeline``.

Issue 18's end-to-end targets compare ``nkflow run`` on the 48-file batch with (a) the
batch's own read + compensate + transform time and (b) the equivalent pipeline built from
the Python peers. This module holds both measurements; ``bench_pipeline.py`` calls them
after its nkflow runs, in the same invocation.

(a) :func:`preprocess_cost`: every file of the batch read, compensated with its
    ``$SPILLOVER`` and transformed as the pipeline's ``load_sample`` does, QC left out
    (``nkflow.io.read_fcs`` + ``pp.compensate`` + ``pp.transform``, the run configuration's
    defaults), one file after the other in one process; and the raw numpy read of the
    DATA segments (``bench_preprocess.raw_read``).

(b) The peer pipeline, per file (:func:`peer_file`): ``flowkit.Sample`` + its spillover
    compensation + logicle (the parameters of ``bench_preprocess.py``), then the gating
    hierarchy as GatingML applied by flowkit ``Session.analyze_samples`` (as
    ``bench_gating.py`` does), and the NK events' transformed values on the clustering
    markers. Then :func:`cluster_stage`: FlowSOM (the ``flowsom`` package,
    ``FlowSOMEstimator``, as ``bench_cluster.py`` calls it) fitted on the NK events of the
    unstimulated tubes pooled (at most ``per_sample_cap`` per tube, 10x10 grid, the
    metacluster count of nkflow's default configuration), and every tube's NK events
    mapped to it (nkflow's pass 2).

The gates are the ones nkflow resolved in its run (data-driven thresholds per sample,
from each sample's ``nk.h5ad``), exported with
:func:`nkflow.gating.gatingml_export.export_sample_gatingml`: the membership is comparable
event for event. An FMO tube has no exported gates of its own (nkflow keeps none), so the
peer gates it with the gates of the first unstimulated sample of the same tissue and batch.
The markers are the ones nkflow clustered on (its ``cluster_medians`` table).

The peer does less than nkflow: no QC, no bootstrap confidence intervals, no threshold
search (it is handed nkflow's thresholds), no FMO/batch-pool statistics, no scoring, no
figures, no tables, no report.
"""

from __future__ import annotations

import json
import resource
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from bench_preprocess import A, M, T, W, raw_read

#: the gate whose events the peer clusters and whose membership is checked
NK = "NK"


# ----------------------------------------------------------------- (a) batch preprocess
def preprocess_cost(folder: Path) -> dict[str, Any]:
    """Serial sums over every file: nkflow read / compensate / transform, raw numpy read."""
    from nkflow.config import RunConfig
    from nkflow.io import read_fcs
    from nkflow.pp import compensate, transform

    t = RunConfig().transform
    sums = {"read_fcs": 0.0, "compensate": 0.0, "transform": 0.0, "raw": 0.0}
    files = sorted(folder.glob("*.fcs"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in files:
            t0 = time.perf_counter()
            raw_read(path)
            t1 = time.perf_counter()
            adata = read_fcs(path, sample_id=path.stem)
            t2 = time.perf_counter()
            compensate(adata, matrix=RunConfig().compensation.matrix)
            t3 = time.perf_counter()
            transform(adata, method=t.method, cofactor=t.cofactor or None, T=t.T, W=t.W,
                      M=t.M, A=t.A, estimate_w=t.estimate_w)  # fmt: skip
            t4 = time.perf_counter()
            del adata
            for key, dt in zip(sums, (t2 - t1, t3 - t2, t4 - t3, t1 - t0), strict=True):
                sums[key] += dt
    sums["nkflow"] = sums["read_fcs"] + sums["compensate"] + sums["transform"]
    sums["n_files"] = len(files)
    return sums


# ----------------------------------------------------------------- plan (not timed)
def _run_samples(run_out: Path) -> dict[str, Path]:
    """Sample id -> work folder of a finished nkflow run."""
    found = {}
    for res in sorted((run_out / "work").glob("*/result.json")):
        found[json.loads(res.read_text())["sample_id"]] = res.parent
    return found


def make_plan(folder: Path, run_out: Path, gml_dir: Path) -> tuple[list[dict], dict]:
    """One job per file (its GatingML exported from nkflow's gates) and nkflow's NK sets.

    Returns the jobs and ``{sample_id: sorted int array}`` of nkflow's NK event indices
    (``nk.h5ad`` keeps the file's event numbers as ``obs_names``).
    """
    from nkflow.gating.gatingml_export import export_sample_gatingml
    from nkflow.pipeline.sample import read_kept_events

    gml_dir.mkdir(parents=True, exist_ok=True)
    meta = pd.read_csv(folder / "metadata.csv", dtype=str).fillna("")
    work = _run_samples(run_out)
    markers = list(dict.fromkeys(pd.read_csv(run_out / "tables" / "cluster_medians.csv")["marker"]))
    xml: dict[str, Path] = {}
    nk_sets: dict[str, np.ndarray] = {}
    channels: list[str] = []
    for sid, wdir in work.items():
        adata = read_kept_events(wdir)
        if adata is None:
            continue
        xml[sid] = export_sample_gatingml(adata, gml_dir / f"{sid}.xml")
        nk_sets[sid] = np.sort(adata.obs_names.to_numpy(dtype=np.int64))
        if not channels:
            by_marker = dict(zip(adata.var["marker"].astype(str), adata.var_names, strict=True))
            channels = [str(by_marker[m]) for m in markers]
    jobs = []
    for row in meta.itertuples(index=False):
        sid, role = row.sample_id, row.role
        own = xml.get(sid)
        if own is None:  # FMO tube: the gates of a resting sample of its tissue and batch
            same = (meta["tissue"] == row.tissue) & (meta["batch"] == row.batch)
            peers = meta[same & (meta["role"] == "unstim") & meta["sample_id"].isin(list(xml))]
            own = xml[peers["sample_id"].iloc[0]]
        jobs.append({
            "path": str(folder / row.file),
            "sample_id": sid,
            "xml": str(own),
            "role": role,
            "channels": channels if sid in nk_sets else [],
        })  # fmt: skip
    return jobs, nk_sets


# ----------------------------------------------------------------- (b) the peer pipeline
def _gate_path(strategy: Any, gate_id: str) -> tuple[str, ...]:
    paths = strategy.find_matching_gate_paths(gate_id)
    if len(paths) != 1:
        raise SystemExit(f"GatingML: {len(paths)} gates named {gate_id!r}")
    return tuple(paths[0])


def peer_file(job: dict) -> dict:
    """flowkit on one file: Sample, compensation, logicle, GatingML gating, NK events."""
    import flowkit as fk

    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    sample = fk.Sample(job["path"], sample_id=job["sample_id"])
    t1 = time.perf_counter()
    sample.apply_compensation(sample.metadata["spillover"])
    t2 = time.perf_counter()
    sample.apply_transform(fk.transforms.LogicleTransform(T, W, M, A))
    t3 = time.perf_counter()
    strategy = fk.parse_gating_xml(job["xml"])
    session = fk.Session(gating_strategy=strategy, fcs_samples=[sample])
    session.analyze_samples(sample_id=job["sample_id"], use_mp=False)
    results = session.get_gating_results(job["sample_id"])
    nk = np.asarray(results.get_gate_membership(NK, gate_path=_gate_path(strategy, NK)), bool)
    t4 = time.perf_counter()
    events = None
    if job["channels"]:
        cols = [sample.pnn_labels.index(c) for c in job["channels"]]
        events = sample.get_events(source="xform")[nk][:, cols]
    t5 = time.perf_counter()
    return {
        "sample_id": job["sample_id"],
        "times": {
            "read (Sample)": t1 - t0,
            "compensate": t2 - t1,
            "logicle": t3 - t2,
            "gating (GatingML)": t4 - t3,
            "NK events": t5 - t4,
        },
        "nk": np.flatnonzero(nk).astype(np.int32),
        "events": events,
    }


def cluster_stage(outs: list[dict], jobs: list[dict], cap: int, k: int, seed: int) -> dict:
    """FlowSOM on the unstimulated tubes' NK events pooled, then every tube mapped."""
    from flowsom.models import FlowSOMEstimator

    roles = {j["sample_id"]: j["role"] for j in jobs}
    t0 = time.perf_counter()
    pool = []
    for o in outs:
        x = o["events"]
        if x is None or roles[o["sample_id"]] != "unstim" or len(x) == 0:
            continue
        if len(x) > cap:
            x = x[np.sort(np.random.default_rng(seed).choice(len(x), cap, replace=False))]
        pool.append(x)
    X = np.vstack(pool)
    est = FlowSOMEstimator(xdim=10, ydim=10, rlen=10, n_clusters=k, seed=seed)
    est.fit_predict(X)
    t1 = time.perf_counter()
    n_mapped = 0
    for o in outs:
        if o["events"] is not None and len(o["events"]):
            n_mapped += len(np.asarray(est.predict(o["events"])))
    t2 = time.perf_counter()
    return {"FlowSOM fit (unstim pool)": t1 - t0, "FlowSOM map (every tube)": t2 - t1,
            "pool_cells": len(X), "mapped_cells": n_mapped}  # fmt: skip


def warm_flowsom() -> float:
    """Compile flowsom's numba code outside the clock; returns the seconds it took."""
    from flowsom.models import FlowSOMEstimator

    t0 = time.perf_counter()
    X = np.random.default_rng(0).normal(size=(2000, 8))
    est = FlowSOMEstimator(xdim=5, ydim=5, rlen=10, n_clusters=4, seed=0)
    est.fit_predict(X)
    est.predict(X)
    return time.perf_counter() - t0


def _init_worker() -> None:
    import flowkit  # noqa: F401

    warnings.simplefilter("ignore")


def run_peer(mode: str, jobs: list[dict], cap: int, k: int, seed: int, save: Path) -> dict:
    """The whole peer pipeline in this (fresh) process; ``mode``: ``serial`` or ``pool2``.

    ``pool2`` spreads the per-file part over a 2-process ``spawn`` pool (as nkflow's
    workers are started). NK event indices are saved to ``save`` after the clock stops.
    """
    import logging
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    import flowkit  # noqa: F401
    import flowsom  # noqa: F401

    t_import = time.perf_counter() - t0
    t_warm = warm_flowsom()
    c0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    if mode == "serial":
        outs = [peer_file(j) for j in jobs]
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(2, mp_context=ctx, initializer=_init_worker) as ex:
            outs = list(ex.map(peer_file, jobs))
    t1 = time.perf_counter()
    clus = cluster_stage(outs, jobs, cap, k, seed)
    t2 = time.perf_counter()
    self_ru = resource.getrusage(resource.RUSAGE_SELF)
    child_ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    stages = {key: sum(o["times"][key] for o in outs) for key in outs[0]["times"]}
    np.savez(save, **{o["sample_id"]: o["nk"] for o in outs})
    cpu = (self_ru.ru_utime - c0.ru_utime + self_ru.ru_stime - c0.ru_stime
           + child_ru.ru_utime + child_ru.ru_stime)  # fmt: skip
    return {
        "mode": mode,
        "wall": t2 - t0,
        "per_file_wall": t1 - t0,
        "cluster_wall": t2 - t1,
        "cpu": cpu,
        "import": t_import,
        "flowsom_warmup": t_warm,
        "stages": stages,
        "cluster": clus,
        "main_rss_mb": self_ru.ru_maxrss / 1024,
        "worker_rss_mb": child_ru.ru_maxrss / 1024 if mode != "serial" else None,
    }


# ----------------------------------------------------------------- membership check
def check_membership(jobs: list[dict], run_out: Path, nk_sets: dict, saved: Path) -> dict:
    """Peer NK events (restricted to the events nkflow's QC kept) against nkflow's NK set.

    The peer has no QC, so it gates every event of the file; the QC-kept mask is computed
    here with ``nkflow.pp.qc`` (not timed) only to compare like with like.
    """
    from nkflow.config import RunConfig
    from nkflow.io import read_fcs
    from nkflow.pp import qc

    q = RunConfig().qc
    table = pd.read_csv(run_out / "tables" / "populations.csv")
    counts = table[table["population"] == NK].set_index("sample_id")["count"]
    peer = np.load(saved)
    paths = {j["sample_id"]: j["path"] for j in jobs}
    same_set = same_count = outside_qc = 0
    bad = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for sid, mine in nk_sets.items():
            adata = read_fcs(paths[sid], sample_id=sid)
            qc(adata, time=q.time, margins=q.margins, remove=False)
            kept = adata.obs["qc_pass"].to_numpy(dtype=bool)
            theirs = peer[sid]
            inside = theirs[kept[theirs]]
            outside_qc += len(theirs) - len(inside)
            ok_set = np.array_equal(inside, mine)
            ok_count = len(inside) == int(counts.get(sid, -1))
            same_set += ok_set
            same_count += ok_count
            if not (ok_set and ok_count):
                bad.append(sid)
    return {"n": len(nk_sets), "same_set": same_set, "same_count": same_count,
            "outside_qc": outside_qc, "bad": bad}  # fmt: skip
