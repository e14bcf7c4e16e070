"""End-to-end batch benchmark: ``nkflow.run`` with 1 and 2 workers (and Dask), issue 8.

Usage (from the repository root)::

    /work/venv/bin/python benchmarks/bench_pipeline.py [--events 200000] [--workers 1,2]
        [--dask] [--peers 4] [--peer-pipeline] [--rss-1m 0] [--against DIR]

Generates once (cached in ``benchmarks/_data/``, gitignored) a simulated human batch of 48
FCS files (3 donors x blood/liver/lung x pre/post x unstim/stim = 36 tubes, plus 12 FMO
tubes: CD69, CD103, AREG, IFN-g per tissue), ``--events`` events each, 16 fluorescence
channels. Then, in the same invocation, each configuration runs ``nkflow.run`` in a fresh
child process (so its peak-memory counters are its own) on the whole batch, report
included:

* ``--workers 1,2``: local process pools of that size (1 = in process, its per-event numpy
  work on every core, nkflow's default); ``1t`` = in process with ``NKFLOW_NUM_THREADS=1``
  (one core: the baseline of the process-scaling ratio);
* ``--dask``: a ``dask.distributed.LocalCluster`` of two single-threaded worker processes,
  passed as ``execution.scheduler``.

Printed per configuration: wall time per stage (from the run's progress callback), total
wall and CPU time, events/s, the peak RSS of the main process and of the largest worker
(``getrusage``: the workers' own counters for Dask, ``RUSAGE_CHILDREN`` for the pool, the
fork server reaped first),
and whether every CSV table is byte-identical to the first configuration's. Then the
throughput ratio of 2 workers over 1 worker on one core (``1t``, else ``1``; target >= 1.6x)
and the 60 s target.

``--peers N`` times read + compensate + logicle on the first N files of the batch: nkflow
vs flowkit (``Sample`` + ``apply_compensation`` + ``LogicleTransform``) vs a raw numpy read
of the DATA segment (functions of ``bench_preprocess.py``), and prints the ratios.

``--peer-pipeline`` measures issue 18's two end-to-end targets against the nkflow run of
this invocation (the 2-worker run when ``--workers`` has ``2``, else the last one;
functions in ``peer_pipeline.py``):

* the batch's own read + compensate + transform: every file through ``read_fcs`` +
  ``pp.compensate`` + ``pp.transform`` as the pipeline's ``load_sample`` does (QC left out),
  one after the other in one process, and the raw numpy read of every DATA segment. Printed:
  run wall / serial sum (target <= 10x) and run wall / (serial sum / 2 workers), the
  stricter reading;
* the equivalent flowkit + flowsom pipeline, in fresh child processes: per file
  ``flowkit.Sample`` + spillover compensation + logicle, the gating hierarchy as GatingML
  (the gates nkflow resolved for that sample, exported from its ``nk.h5ad``; an FMO tube
  gets those of a resting sample of its tissue) applied by ``Session.analyze_samples``,
  then FlowSOM (``flowsom``, 10x10, nkflow's metacluster count and per-sample cap, nkflow's
  clustering markers) fitted on the unstimulated tubes' NK events pooled and every tube
  mapped. Run serially and with the per-file part on a 2-process pool (flowkit's own
  ``use_mp`` takes ``cpu_count - 1`` processes, one on 2 cores, and one gating strategy per
  Session). Printed: wall, CPU, per-stage times, peak RSS, peer wall / nkflow run wall
  (target >= 10x) and whether the peer's NK events (those nkflow's QC kept) are nkflow's NK
  events on every analysed file, and equal the populations table's NK count. The peer does
  less than nkflow: no QC, no threshold search, no bootstrap CIs, no FMO/batch-pool
  statistics, no scoring, figures, tables or report.

``--against DIR`` runs every configuration a second time with another checkout of
nkflow first on ``PYTHONPATH`` (e.g. an ``git archive`` of the commit before a change),
alternating the two so both see the same machine load, and prints both timings per
stage and whether every CSV table is byte-identical between the two codes (issue 18:
speedups must not change any output). ``--pairs N`` runs N such pairs and swaps which
code goes first from one pair to the next: on the shared VM the second run of a pair was
1-3 s slower than the first whichever code it was, so one pair favours the code run first.

``--rss-1m K`` (default 0: skipped) simulates K files of 1,000,000 events (2 donors x
blood x pre/post x unstim/stim per 8) and runs them with 2 workers, printing the peak RSS
of the largest worker: the per-worker memory bound of issue 8 (under 2 GB).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "_data"
OUT = HERE / "_out"
STAGES = ("controls", "pooling", "samples", "clustering", "scoring")


def make_batch(n_events: int) -> Path:
    """Write (or reuse) the 48-file batch; returns its folder."""
    from nkflow.datasets import make_design, simulate_batch

    folder = DATA / f"pipeline_48x{n_events}_v1"
    if (folder / "metadata.csv").is_file():
        return folder
    design = make_design(
        "human",
        donors=("D1", "D2", "D3"),
        tissues=("blood", "liver", "lung"),
        timepoints=("pre", "post"),
        n_events=n_events,
        fmo_markers=("CD69", "CD103", "AREG", "IFN-g"),
        positive_control=False,
    )
    t0 = time.perf_counter()
    simulate_batch(folder, design=design, random_state=0)
    print(f"simulated {len(design.tubes)} files x {n_events} events into {folder} "
          f"in {time.perf_counter() - t0:.1f} s")  # fmt: skip
    return folder


def make_big_batch(n_files: int, n_events: int = 1_000_000) -> Path:
    """Files of 1M events for the per-worker memory bound (unstim/stim tubes, no FMO)."""
    from nkflow.datasets import make_design, simulate_batch

    folder = DATA / f"pipeline_{n_files}x{n_events}_v1"
    if (folder / "metadata.csv").is_file():
        return folder
    donors = tuple(f"D{i + 1}" for i in range(max(1, -(-n_files // 4))))
    design = make_design("human", donors=donors, tissues=("blood",), n_events=n_events,
                         fmo_markers=(), positive_control=False, clog=False)  # fmt: skip
    t0 = time.perf_counter()
    simulate_batch(folder, design=design, random_state=0)
    print(f"simulated {len(design.tubes)} files x {n_events} events into {folder} "
          f"in {time.perf_counter() - t0:.1f} s")  # fmt: skip
    return folder


def _batch_events(folder: Path) -> int:
    """Events in the batch, from each file's ``$TOT`` keyword."""
    total = 0
    for path in sorted(folder.glob("*.fcs")):
        with open(path, "rb") as fh:
            head = fh.read(58)
            t0, t1 = int(head[10:18]), int(head[18:26])
            fh.seek(t0)
            text = fh.read(t1 - t0 + 1).decode("latin-1")
        parts = text[1:].split(text[0])
        kw = {parts[i].upper(): parts[i + 1] for i in range(0, len(parts) - 1, 2)}
        total += int(kw["$TOT"])
    return total


def _reap_fork_server() -> None:
    """Stop and reap this process's fork server, so RUSAGE_CHILDREN counts its workers.

    On Linux nkflow's workers fork from multiprocessing's fork server: they are its
    children, and their CPU time and peak RSS reach this process's RUSAGE_CHILDREN only
    once the server itself is reaped. multiprocessing has no public call for that;
    ``_stop`` (the one its own tests use) closes the server's pipe and waits for it.
    """
    from multiprocessing import forkserver

    stop = getattr(getattr(forkserver, "_forkserver", None), "_stop", None)
    if stop is not None:
        stop()


def _tables_digest(out: Path) -> dict[str, str]:
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((out / "tables").glob("*.csv"))
    }


def _one(mode: str, folder: Path, out: Path, settings: dict | None = None) -> None:
    """Child process: one timed ``nkflow.run``; prints a JSON line."""
    import logging

    import nkflow
    from nkflow.config import RunConfig, replace_values

    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    marks: dict[str, float] = {}
    last = [0.0]

    def progress(stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        marks.setdefault(stage, now)
        last[0] = now

    cluster = client = None
    worker_rss: list[float] = []
    if mode == "dask":
        from distributed import Client, LocalCluster

        t_start = time.perf_counter()
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address=None)  # fmt: skip
        client = Client(cluster)
        values = {"execution.scheduler": cluster.scheduler_address}
    else:
        t_start = time.perf_counter()
        values = {"execution.workers": int(mode.rstrip("t"))}
    cfg = replace_values(RunConfig(), {**(settings or {}), **values})
    t0 = time.perf_counter()
    nkflow.run(folder, out, config=cfg, force=True, on_progress=progress)
    t1 = time.perf_counter()
    if client is not None:
        rss = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        worker_rss = [v / 1024 for v in rss.values()]
        client.close()
        cluster.close()
    _reap_fork_server()
    self_ru = resource.getrusage(resource.RUSAGE_SELF)
    child_ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    seen = [s for s in STAGES if s in marks]
    stages = {}
    for a, b in zip(seen, [*seen[1:], None], strict=True):
        stages[a] = (marks[b] if b else last[0]) - marks[a]
    stages["setup (before controls)"] = (marks[seen[0]] if seen else t1) - t0
    stages["report + write"] = t1 - last[0]
    if not worker_rss and int(mode.rstrip("t")) > 1:
        worker_rss = [child_ru.ru_maxrss / 1024]
    print(json.dumps({
        "mode": mode,
        "wall": t1 - t0,
        "wall_with_cluster_start": t1 - t_start,
        "cpu": self_ru.ru_utime + self_ru.ru_stime + child_ru.ru_utime + child_ru.ru_stime,
        "stages": stages,
        "main_rss_mb": self_ru.ru_maxrss / 1024,
        "worker_rss_mb": max(worker_rss) if worker_rss else None,
        "tables": _tables_digest(out),
    }))  # fmt: skip


def measure(
    mode: str, folder: Path, out: Path, code: str = "", settings: dict | None = None
) -> dict:
    """One child-process run; ``code``: a checkout put first on ``PYTHONPATH``;
    ``settings``: configuration values (``{"gating.bootstrap": 0}``)."""
    cmd = [sys.executable, __file__, "--_one", mode, "--_input", str(folder), "--_out", str(out),
           "--_set", json.dumps(settings or {})]  # fmt: skip
    env = {**os.environ, "NKFLOW_NUM_THREADS": "1"} if mode.endswith("t") else dict(os.environ)
    if code:
        env["PYTHONPATH"] = os.pathsep.join([code, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    # each run starts in its own checkout: Python 3.11's fork server ignores the parent's
    # sys.path and puts its working directory first, so a run started in this checkout
    # gave the other code's workers this checkout's nkflow
    root = code or str(HERE.parent)
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=root)
    if res.returncode != 0:
        sys.stderr.write(res.stderr[-4000:])
        raise SystemExit(f"run {mode!r} failed (exit {res.returncode})")
    return json.loads(res.stdout.strip().splitlines()[-1])


def peers(folder: Path, n_files: int, repeats: int = 2) -> None:
    """Read + compensate + logicle per file: nkflow vs flowkit vs raw numpy read."""
    sys.path.insert(0, str(HERE))
    from bench_preprocess import raw_read, run_flowkit, run_nkflow

    warnings.simplefilter("ignore")
    files = sorted(folder.glob("*.fcs"))[:n_files]
    tot = {"raw": 0.0, "nkflow": 0.0, "flowkit": 0.0}
    for path in files:
        for name, fn in (("raw", raw_read), ("nkflow", run_nkflow), ("flowkit", run_flowkit)):
            best = float("inf")
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn(path)
                best = min(best, time.perf_counter() - t0)
            tot[name] += best
    n = len(files)
    print(f"\nread + compensate + logicle, mean of {n} files (best of {repeats} each):")
    for name, v in tot.items():
        print(f"  {name:8s} {1000 * v / n:8.1f} ms/file")
    print(f"  flowkit / nkflow = {tot['flowkit'] / tot['nkflow']:.1f}x; "
          f"nkflow / raw read = {tot['nkflow'] / tot['raw']:.1f}x")  # fmt: skip


def peer_pipeline(folder: Path, results: list[dict]) -> None:
    """Issue 18's end-to-end ratios: the batch's own preprocessing, and the flowkit +
    flowsom pipeline on the gates the nkflow run resolved (``peer_pipeline.py``)."""
    sys.path.insert(0, str(HERE))
    import flowkit
    import flowsom
    from peer_pipeline import check_membership, make_plan, preprocess_cost

    from nkflow.config import RunConfig

    by = {r["mode"]: r for r in results}
    ref = by.get("2", results[-1])
    run_out = OUT / f"pipeline_{ref['mode']}"
    label = f"nkflow run ({ref['mode']} worker(s))"
    work = OUT / "peer_pipeline"
    jobs, nk_sets = make_plan(folder, run_out, work / "gatingml")
    cfg = RunConfig()
    plan = {"jobs": jobs, "cap": cfg.clustering.per_sample_cap,
            "k": cfg.clustering.n_metaclusters, "seed": cfg.execution.random_state}  # fmt: skip
    (work / "plan.json").write_text(json.dumps(plan))

    cost = preprocess_cost(folder)
    n, wall = cost["n_files"], ref["wall"]
    threads = os.environ.get("NKFLOW_NUM_THREADS", "every core")
    print(f"\nbatch read + compensate + transform, {n} files one after the other in one "
          f"process (as load_sample, QC left out; NKFLOW_NUM_THREADS: {threads}):")  # fmt: skip
    for key in ("read_fcs", "compensate", "transform", "nkflow", "raw"):
        name = {"nkflow": "nkflow total", "raw": "raw numpy read"}.get(key, f"  {key}")
        print(f"  {name:22s} {cost[key]:7.2f} s")
    print(f"  {label} wall {wall:.1f} s / serial sum {cost['nkflow']:.2f} s = "
          f"{wall / cost['nkflow']:.1f}x (target <= 10x; denominator: the serial sum)")  # fmt: skip
    per_worker = cost["nkflow"] / 2
    print(f"  {label} wall / (serial sum / 2 workers = {per_worker:.2f} s) = "
          f"{wall / per_worker:.1f}x (the stricter reading: the preprocessing spread "
          "over the run's 2 workers)")  # fmt: skip
    print(f"  {label} wall / raw numpy read sum {cost['raw']:.2f} s = {wall / cost['raw']:.1f}x")

    print(f"\npeer pipeline: flowkit {flowkit.__version__} + flowsom "
          f"{getattr(flowsom, '__version__', '?')} on the {n} files; it does LESS than nkflow: "
          "no QC, no threshold search (it is handed nkflow's resolved gates as GatingML), no "
          "bootstrap CIs, no FMO/batch-pool statistics, no scoring, no figures, no tables, "
          "no report")  # fmt: skip
    peer = {}
    for mode in ("serial", "pool2"):
        cmd = [sys.executable, __file__, "--_peer", mode, "--_out", str(work)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            sys.stderr.write(res.stderr[-4000:])
            raise SystemExit(f"peer pipeline {mode!r} failed (exit {res.returncode})")
        peer[mode] = json.loads(res.stdout.strip().splitlines()[-1])
    for mode, p in peer.items():
        what = {"serial": "serial, one process",
                "pool2": "per-file part on a 2-process spawn pool"}[mode]  # fmt: skip
        wrss = f", largest worker {p['worker_rss_mb']:.0f} MB" if p["worker_rss_mb"] else ""
        print(f"  {what}: wall {p['wall']:.1f} s (cpu {p['cpu']:.1f} s); per-file part "
              f"{p['per_file_wall']:.1f} s, clustering {p['cluster_wall']:.1f} s; peak RSS "
              f"main {p['main_rss_mb']:.0f} MB{wrss}")  # fmt: skip
        print("    per-file stages, summed over files (worker time when pooled):")
        for stage, v in p["stages"].items():
            print(f"      {stage:26s} {v:6.1f} s")
        c = p["cluster"]
        for stage in ("FlowSOM fit (unstim pool)", "FlowSOM map (every tube)"):
            print(f"      {stage:26s} {c[stage]:6.1f} s")
        print(f"    (FlowSOM on {c['pool_cells']:,} pooled NK cells, 10x10, {plan['k']} "
              f"metaclusters; {c['mapped_cells']:,} cells mapped; not timed: imports "
              f"{p['import']:.1f} s, flowsom numba warm-up "
              f"{p['flowsom_warmup']:.1f} s)")  # fmt: skip
    from bench_preprocess import raw_read
    from flowkit._utils.gating_utils import _estimate_cpu_count_for_workload

    size = _batch_events(folder) * raw_read(Path(jobs[0]["path"])).shape[1]
    procs = _estimate_cpu_count_for_workload(n, size)
    print(f"  flowkit's own multiprocessing (Session.analyze_samples(use_mp=True)) would use "
          f"{procs} process(es) here (flowkit takes cpu_count - 1 = {os.cpu_count() - 1}); it "
          "also needs one gating strategy for every sample of a Session, and the gates differ "
          "per sample, so the 2-process pool over files above is the 2-core peer")  # fmt: skip
    for mode, p in peer.items():
        print(f"  peer ({mode}) wall {p['wall']:.1f} s / {label} wall {wall:.1f} s = "
              f"{p['wall'] / wall:.2f}x (target >= 10x)")  # fmt: skip
    chk = check_membership(jobs, run_out, nk_sets, work / "nk_serial.npz")
    chk2 = check_membership(jobs, run_out, nk_sets, work / "nk_pool2.npz")
    print(f"  NK membership, peer events nkflow's QC kept vs nkflow's NK events, on the "
          f"{chk['n']} analysed files (FMO tubes: no NK table in nkflow): identical sets "
          f"{chk['same_set']}/{chk['n']}, count equal to populations.csv "
          f"{chk['same_count']}/{chk['n']} (pool run: {chk2['same_set']}/{chk2['n']}); the "
          f"peer gated {chk['outside_qc']:,} more NK events that nkflow's QC removed"
          + (f"; differing: {', '.join(chk['bad'])}" if chk["bad"] else ""))  # fmt: skip


def _report(results: list[dict], n_events: int, n_files: int) -> None:
    print(f"\nbatch: {n_files} files, {n_events:,} events")
    ref = results[0]["tables"]
    for r in results:
        label = {"dask": "dask 2 workers", "1t": "1 worker, 1 thread"}.get(
            r["mode"], f"{r['mode']} worker(s)"
        )
        same = "identical" if r["tables"] == ref else "DIFFERENT"
        wrss = f"{r['worker_rss_mb']:.0f} MB" if r["worker_rss_mb"] else "-"
        print(f"\n{label}: wall {r['wall']:.1f} s (cpu {r['cpu']:.1f} s), "
              f"{n_events / r['wall'] / 1e6:.2f} M events/s, peak RSS main "
              f"{r['main_rss_mb']:.0f} MB, largest worker {wrss}; "
              f"{len(r['tables'])} CSV tables {same} to the first run")  # fmt: skip
        if r["mode"] == "dask":
            print(f"  (with LocalCluster start/stop: {r['wall_with_cluster_start']:.1f} s)")
        for stage, v in r["stages"].items():
            print(f"  {stage:26s} {v:6.1f} s")
    by = {r["mode"]: r for r in results}
    base = "1t" if "1t" in by else "1"
    base_label = "1 worker on 1 core" if base == "1t" else "1 worker"
    if base in by and "2" in by:
        ratio = by[base]["wall"] / by["2"]["wall"]
        print(f"\nthroughput 2 workers / {base_label} = {ratio:.2f}x (target >= 1.6x)")
        print(f"2 workers end to end {by['2']['wall']:.1f} s (target < 60 s)")
    if "1" in by and "2" in by and base != "1":
        threads_ratio = by["1"]["wall"] / by["2"]["wall"]
        print(f"throughput 2 workers / 1 worker (threads) = {threads_ratio:.2f}x")
    if "dask" in by and base in by:
        dask_ratio = by[base]["wall"] / by["dask"]["wall"]
        print(f"throughput dask(2) / {base_label} = {dask_ratio:.2f}x")


def _compare(pairs: list[tuple[dict, dict, bool]], code: str) -> None:
    """This checkout against ``code``: every pair, then the medians per configuration."""
    print(f"\nagainst {code} (other -> this checkout):")
    for r, o, other_first in pairs:
        same = "identical" if r["tables"] == o["tables"] else "DIFFERENT"
        first = "other" if other_first else "this"
        print(f"  {r['mode']} ({first} first): wall {o['wall']:.1f} -> {r['wall']:.1f} s, "
              f"cpu {o['cpu']:.1f} -> {r['cpu']:.1f} s; {len(r['tables'])} CSV tables "
              f"{same}")  # fmt: skip
        for stage, v in r["stages"].items():
            print(f"    {stage:26s} {o['stages'].get(stage, float('nan')):6.1f} -> {v:6.1f} s")
    for mode in dict.fromkeys(r["mode"] for r, _, _ in pairs):
        mine = [(r["wall"], r["cpu"]) for r, _, _ in pairs if r["mode"] == mode]
        theirs = [(o["wall"], o["cpu"]) for r, o, _ in pairs if r["mode"] == mode]
        if len(mine) > 1:
            ow, oc = (statistics.median(v) for v in zip(*theirs, strict=True))
            mw, mc = (statistics.median(v) for v in zip(*mine, strict=True))
            print(f"  {mode}: median of {len(mine)} pairs, wall {ow:.1f} -> {mw:.1f} s, "
                  f"cpu {oc:.1f} -> {mc:.1f} s")  # fmt: skip


def _setting(text: str) -> tuple[str, object]:
    """``"gating.bootstrap=0"`` -> ``("gating.bootstrap", 0)`` (JSON values, else text)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise SystemExit(f"--set {text!r}: expected KEY=VALUE")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--workers", default="1t,1,2", help="comma list: 1t, 1, 2, ...")
    ap.add_argument("--dask", action="store_true")
    ap.add_argument("--peers", type=int, default=4)
    ap.add_argument("--rss-1m", type=int, default=0)
    ap.add_argument("--against", default="", help="another nkflow checkout to compare with")
    ap.add_argument(
        "--pairs", type=int, default=1, help="--against: runs per code, taking turns going first"
    )
    ap.add_argument(
        "--peer-pipeline",
        action="store_true",
        help="issue 18: batch preprocessing cost and the flowkit + flowsom pipeline",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a configuration value for every nkflow run, e.g. gating.bootstrap=0 (repeatable)",
    )
    ap.add_argument("--_one", default="")
    ap.add_argument("--_set", default="{}")
    ap.add_argument("--_peer", default="")
    ap.add_argument("--_input", default="")
    ap.add_argument("--_out", default="")
    args = ap.parse_args(argv)
    if args._peer:
        sys.path.insert(0, str(HERE))
        from peer_pipeline import run_peer

        work = Path(args._out)
        plan = json.loads((work / "plan.json").read_text())
        print(json.dumps(run_peer(args._peer, plan["jobs"], plan["cap"], plan["k"],
                                  plan["seed"], work / f"nk_{args._peer}.npz")))  # fmt: skip
        return 0
    if args._one:
        _one(args._one, Path(args._input), Path(args._out), json.loads(args._set))
        return 0
    settings = dict(_setting(text) for text in args.set)
    folder = make_batch(args.events)
    n_events = _batch_events(folder)
    n_files = len(list(folder.glob("*.fcs")))
    results = []
    modes = [m.strip() for m in args.workers.split(",") if m.strip()]
    if args.dask:
        modes.append("dask")
    pairs: list[tuple[dict, dict, bool]] = []
    for mode in modes:
        if not args.against:
            results.append(measure(mode, folder, OUT / f"pipeline_{mode}", settings=settings))
            print(f"{mode}: {results[-1]['wall']:.1f} s", flush=True)
            continue
        for number in range(max(1, args.pairs)):
            other_first = number % 2 == 0
            runs = {}
            for which in ("other", "this") if other_first else ("this", "other"):
                code, name = (args.against, "_against") if which == "other" else ("", "")
                runs[which] = measure(mode, folder, OUT / f"pipeline_{mode}{name}", code,
                                      settings)  # fmt: skip
                print(f"{mode} ({code or 'this checkout'}): {runs[which]['wall']:.1f} s",
                      flush=True)  # fmt: skip
            pairs.append((runs["this"], runs["other"], other_first))
        mine = [r for r, _, _ in pairs if r["mode"] == mode]
        results.append(sorted(mine, key=lambda r: r["wall"])[(len(mine) - 1) // 2])  # median
    if results:
        _report(results, n_events, n_files)
    if pairs:
        _compare(pairs, args.against)
    if args.peers:
        peers(folder, args.peers)
    if args.peer_pipeline:
        if not results:
            raise SystemExit("--peer-pipeline needs an nkflow run (--workers 2) to compare with")
        peer_pipeline(folder, results)
    if args.rss_1m:
        big = make_big_batch(args.rss_1m)
        r = measure("2", big, OUT / "pipeline_1m")
        print(f"\n{args.rss_1m} files x 1M events, 2 workers: wall {r['wall']:.1f} s, "
              f"peak RSS largest worker {r['worker_rss_mb']:.0f} MB, main "
              f"{r['main_rss_mb']:.0f} MB (target < 2048 MB per worker)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
