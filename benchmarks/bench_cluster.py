"""nkflow SOM + consensus metaclustering vs the flowsom package (saeyslab), same settings.

Both tools get the same matrix, grid (``--grid``, default 10x10), ``rlen=10``, number of
metaclusters ``k`` and seed; the only difference is the clustering:

* nkflow:  ``SOM(xdim, ydim, rlen=10)`` + ``metacluster_nodes(ConsensusMetaclustering(k))``
  (all other parameters at their defaults: batches of at most 2048 cells, at least 128
  updates per pass while batches keep 64 cells,
  100 consensus resamples of 90% of the nodes, average linkage);
* flowsom: ``FlowSOMEstimator(xdim, ydim, rlen=10, n_clusters=k).fit_predict`` (numba;
  JIT-compiled on a small array before any clock starts).

Accuracy follows Weber & Robinson (Cytometry A 2016): cluster all cells, score the labelled
ones, match every true population to at most one cluster (Hungarian, best summed F1),
unweighted mean F1 over populations. Per seed the two tools run back to back so that both
see the same machine load; reported are the mean and SD of the mean F1 over seeds, the
median wall time per fit (fit + mapping of every cell) and the ratios nkflow/flowsom.

Sections:

``--real``
    68983.fcs (FlowSOM paper, mouse, 19,225 cells) with its per-event manual labels
    (gatingResult.csv; "Unlabeled" cells are clustered, not scored), preprocessed as the
    FlowSOM vignette does: compensated with the file's $SPILL, logicle (T 262144, W 0.5,
    M 4.5, A 0, flowCore's defaults), scaled to mean 0 / SD 1. Marker sets: the vignette's
    7, every stained fluorescence channel (10), and those without GFP and live/dead (8);
    k = 6, 10, 20.
``--small``
    Small pools (1-2k cells): the NK cells of a simulated human liver tube (mass cytometry
    and flow; nkflow's simulator, truth labels, the default phenotype markers), k = 4
    (the number of NK truth populations) and 6, and 1,500 cells of the 12-population
    simulation below, k = 12.
``--large``
    The 12-population simulation (12 markers, sizes 0.5%-30%, some populations differing
    in one marker) at 1M cells, k = 12, over ``--seeds`` seeds.
``--sizes``
    Time and peak memory, one fresh subprocess per (tool, size) so that ru_maxrss is its
    own; default 10k, 100k and 1M cells of the 12-population simulation (``--big``: 5M).
``--simulator``
    ``nkflow.tl.cluster`` against flowsom on the NK cells of two simulated human tubes,
    k = 6, seeds 0-2 (the reference of tests/test_tl_cluster.py).

Usage::

    /work/venv/bin/python benchmarks/bench_cluster.py --real --small --seeds 10
    /work/venv/bin/python benchmarks/bench_cluster.py --large --seeds 10
    /work/venv/bin/python benchmarks/bench_cluster.py --sizes 10000 100000 1000000 --big
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score

from nkflow.models import hungarian_f1

HERE = Path(__file__).resolve().parent
EXTDATA = HERE.parent.parent / "shared" / "external" / "flowsom" / "inst" / "extdata"
N_MARKERS = 12
N_POPS = 12
RLEN = 10

#: 68983.fcs channels per marker set (FlowSOM vignette: colsToUse = c(9, 12, 14:18)).
MARKER_SETS_68983 = {
    "vignette (7)": [
        "Pacific Blue-A",  # CD8
        "APC-A",  # TCRgd
        "APC-Cy7-A",  # TCRb
        "PE-A",  # NK1.1
        "PE-Texas Red-A",  # CD4
        "PE-Cy5-A",  # CD19
        "PE-Cy7-A",  # CD3
    ],
    "all stained (10)": [
        "FITC-A",  # GFP
        "Pacific Blue-A",
        "AmCyan-A",  # live/dead
        "APC-A",
        "Alexa Fluor 700-A",  # CD45
        "APC-Cy7-A",
        "PE-A",
        "PE-Texas Red-A",
        "PE-Cy5-A",
        "PE-Cy7-A",
    ],
    "lineage (8)": [
        "Pacific Blue-A",
        "APC-A",
        "Alexa Fluor 700-A",
        "APC-Cy7-A",
        "PE-A",
        "PE-Texas Red-A",
        "PE-Cy5-A",
        "PE-Cy7-A",
    ],
}


def simulate(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """12 populations on 12 markers: hierarchical profiles, sizes 0.5%-30%, in float32."""
    rng = np.random.default_rng(1000 + seed)
    base = rng.choice([0.0, 2.5], size=(4, N_MARKERS))  # 4 lineages
    centers = []
    for pop in range(N_POPS):
        c = base[pop % 4].copy()
        flip = rng.choice(N_MARKERS, size=1 + pop // 4, replace=False)  # subsets differ in 1-3
        c[flip] = np.where(c[flip] > 0, 0.4, 2.0)
        centers.append(c)
    centers = np.array(centers)
    sizes = rng.dirichlet(np.full(N_POPS, 0.8))
    sizes = np.maximum(sizes, 0.005)
    sizes /= sizes.sum()
    y = rng.choice(N_POPS, size=n, p=sizes).astype(np.int32)
    sd = rng.uniform(0.25, 0.45, size=(N_POPS, N_MARKERS)).astype(np.float32)
    X = np.empty((n, N_MARKERS), dtype=np.float32)
    step = 1_000_000
    for s in range(0, n, step):
        yy = y[s : s + step]
        X[s : s + step] = centers[yy] + sd[yy] * rng.standard_normal((len(yy), N_MARKERS))
    return X, y


def run_nkflow(X: np.ndarray, k: int, seed: int, grid: int = 10) -> np.ndarray:
    from nkflow.models import SOM, ConsensusMetaclustering, metacluster_nodes

    som = SOM(grid, grid, rlen=RLEN, random_state=seed).fit(X)
    nodes = metacluster_nodes(
        ConsensusMetaclustering(k, random_state=seed), som.codes_, som.counts_
    )
    return nodes[som.labels_]


def run_flowsom(X: np.ndarray, k: int, seed: int, grid: int = 10) -> np.ndarray:
    from flowsom.models import FlowSOMEstimator

    est = FlowSOMEstimator(xdim=grid, ydim=grid, rlen=RLEN, n_clusters=k, seed=seed)
    return np.asarray(est.fit_predict(X))


RUNNERS: dict[str, Callable[..., np.ndarray]] = {"nkflow": run_nkflow, "flowsom": run_flowsom}


def warm_up() -> None:
    """JIT-compile flowsom (and touch nkflow's code paths) outside every clock."""
    X, _ = simulate(2000, 0)
    for fn in RUNNERS.values():
        fn(X, 4, 0, 5)


# ------------------------------------------------------------------ data sets
def load_68983(channels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """68983.fcs as the FlowSOM vignette prepares it: $SPILL, logicle, scaled; labels."""
    import pandas as pd

    import nkflow.pp as pp
    from nkflow.io.fcs import read_fcs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = read_fcs(EXTDATA / "68983.fcs")
    pp.compensate(adata)  # the file's $SPILL, in place
    cols = adata.var_names.get_indexer(list(channels))
    X = pp.logicle(np.asarray(adata.X)[:, cols], T=262144.0, W=0.5, M=4.5, A=0.0)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    labels = pd.read_csv(EXTDATA / "gatingResult.csv", header=None)[0].to_numpy(dtype=str)
    return np.ascontiguousarray(X, dtype=np.float32), labels


def simulated_nk_pool(technology: str, n_events: int = 15_000, seed: int = 1):
    """NK cells of one simulated human liver tube: transformed matrix, truth, markers."""
    import pandas as pd

    import nkflow.pp as pp
    from nkflow.datasets import simulate_sample, write_sample
    from nkflow.io.fcs import channel_for, read_fcs
    from nkflow.tl.cluster import default_markers

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sim = simulate_sample(
            "human", "liver", n_events=n_events, random_state=seed, technology=technology
        )
        adata = read_fcs(write_sample(sim, Path(tmp) / "pool.fcs"))
        if technology == "flow":
            pp.compensate(adata)
        pp.transform(adata)  # the technology's default (arcsinh 5 for mass, logicle)
    labels = sim.truth["label"].astype(str).to_numpy()
    nk = pd.Series(labels).str.startswith("NK_").to_numpy()
    markers = default_markers(adata)
    cols = adata.var_names.get_indexer([channel_for(adata, m) for m in markers])
    X = np.ascontiguousarray(np.asarray(adata.X)[nk][:, cols], dtype=np.float32)
    return X, labels[nk], markers


# ------------------------------------------------------------------ comparison
def compare(
    name: str,
    X: np.ndarray,
    labels: np.ndarray,
    k: int,
    seeds: Sequence[int],
    grid: int,
    scored: np.ndarray | None = None,
) -> dict:
    """Both tools on the same matrix, seed by seed; mean F1, SD, median time, ratios."""
    keep = np.ones(len(labels), dtype=bool) if scored is None else scored
    out: dict = {"set": name, "k": k, "grid": grid, "n": int(X.shape[0]), "d": int(X.shape[1])}
    f1: dict[str, list[float]] = {t: [] for t in RUNNERS}
    secs: dict[str, list[float]] = {t: [] for t in RUNNERS}
    for seed in seeds:
        for tool, fn in RUNNERS.items():
            t0 = time.perf_counter()
            pred = fn(X, k, seed, grid)
            secs[tool].append(time.perf_counter() - t0)
            f1[tool].append(hungarian_f1(labels[keep], pred[keep]))
    for tool in RUNNERS:
        out[tool] = {
            "f1_mean": float(np.mean(f1[tool])),
            "f1_sd": float(np.std(f1[tool], ddof=1)) if len(seeds) > 1 else 0.0,
            "f1_per_seed": [round(v, 4) for v in f1[tool]],
            "seconds_median": float(np.median(secs[tool])),
        }
    a, b = out["nkflow"], out["flowsom"]
    out["f1_difference"] = a["f1_mean"] - b["f1_mean"]
    out["time_ratio"] = a["seconds_median"] / b["seconds_median"]
    print(
        f"{name:26s} n={out['n']:>7,d} d={out['d']:2d} k={k:2d} {grid}x{grid}  "
        f"F1 nkflow {a['f1_mean']:.3f} +- {a['f1_sd']:.3f}  flowsom {b['f1_mean']:.3f} +- "
        f"{b['f1_sd']:.3f}  (nkflow - flowsom {out['f1_difference']:+.3f})  "
        f"time {a['seconds_median']:.3f} s vs {b['seconds_median']:.3f} s "
        f"(nkflow/flowsom {out['time_ratio']:.2f}x)",
        flush=True,
    )
    return out


def real(seeds: Sequence[int], grid: int, ks: Sequence[int] = (6, 10, 20)) -> list[dict]:
    rows = []
    for set_name, channels in MARKER_SETS_68983.items():
        X, labels = load_68983(channels)
        scored = labels != "Unlabeled"
        for k in ks:
            rows.append(compare(f"68983 {set_name}", X, labels, k, seeds, grid, scored))
    return rows


def small(seeds: Sequence[int], grid: int) -> list[dict]:
    rows = []
    for tech in ("mass", "flow"):
        X, labels, _ = simulated_nk_pool(tech)
        for k in (4, 6):
            rows.append(compare(f"simulated NK liver {tech}", X, labels, k, seeds, grid))
    X, y = simulate(1500, 0)
    rows.append(compare("12 populations 1.5k", X, y, N_POPS, seeds, grid))
    return rows


def large(seeds: Sequence[int], grid: int, n: int = 1_000_000) -> list[dict]:
    X, y = simulate(n, 0)
    return [compare(f"12 populations {n // 1000}k", X, y, N_POPS, seeds, grid)]


# ------------------------------------------------------------------ time and memory
def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def child(tool: str, n: int, seed: int, grid: int) -> dict:
    X, y = simulate(n, seed)
    warm_up()
    before = _rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    pred = RUNNERS[tool](X, N_POPS, seed, grid)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "tool": tool,
        "n": n,
        "seed": seed,
        "seconds": wall,
        "cpu_seconds": cpu,
        "fit_extra_mb": max(peak - before, 0.0),
        "maxrss_mb": peak,
        "data_mb": X.nbytes / 2**20,
        "f1": hungarian_f1(y, pred),
        "ari": float(adjusted_rand_score(y, pred)),
    }


def sizes(ns: Sequence[int], seed: int, grid: int) -> list[dict]:
    rows = []
    for n in ns:
        results = {}
        for tool in RUNNERS:
            out = subprocess.run(
                [sys.executable, __file__, "--child", tool, str(n), str(seed), str(grid)],
                check=True,
                capture_output=True,
                text=True,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            results[tool] = r
            rows.append(r)
            print(
                f"{tool:8s} n={n:>9,d}  {r['seconds']:7.2f} s (cpu {r['cpu_seconds']:7.2f} s)  "
                f"peak RSS above data {r['fit_extra_mb']:7.1f} MB  maxRSS "
                f"{r['maxrss_mb']:7.1f} MB (data {r['data_mb']:.0f} MB)  F1 {r['f1']:.3f}  "
                f"ARI {r['ari']:.3f}",
                flush=True,
            )
        a, b = results["nkflow"], results["flowsom"]
        print(
            f"   n={n:,d}: time nkflow/flowsom {a['seconds'] / b['seconds']:.2f}x "
            f"(cpu {a['cpu_seconds'] / b['cpu_seconds']:.2f}x), maxRSS "
            f"{a['maxrss_mb'] / b['maxrss_mb']:.2f}x; F1 {a['f1']:.3f} vs {b['f1']:.3f}",
            flush=True,
        )
    return rows


def simulator(seeds: Sequence[int] = range(3), k: int = 6) -> None:
    """nkflow.tl.cluster vs flowsom on NK cells of two simulated human tubes (truth labels)."""
    import pandas as pd

    import nkflow.pp as pp
    from nkflow.datasets.batch import write_sample
    from nkflow.datasets.simulate import simulate_sample
    from nkflow.io.fcs import channel_for, read_fcs
    from nkflow.tl.cluster import cluster

    adatas, truth = {}, {}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, tissue in enumerate(["blood", "liver"]):
            sim = simulate_sample("human", tissue, n_events=30_000, random_state=i)
            adata = read_fcs(write_sample(sim, f"{tmp}/s{i}.fcs"))
            pp.compensate(adata)  # in place
            pp.transform(adata)
            labels = sim.truth["label"].astype(str).to_numpy()
            nk = pd.Series(labels).str.startswith("NK_").to_numpy()
            adata.obs["NK"] = nk
            adatas[f"s{i}"], truth[f"s{i}"] = adata, labels[nk]
    y = np.concatenate(list(truth.values()))
    scores: dict[str, list[float]] = {"nkflow": [], "flowsom": []}
    for seed in seeds:
        res = cluster(adatas, n_metaclusters=k, per_sample_cap=10**7, random_state=seed)
        pred = np.concatenate(
            [
                a.obs["metacluster"].to_numpy()[a.obs["NK"].to_numpy()].astype(str)
                for a in adatas.values()
            ]
        )
        scores["nkflow"].append(hungarian_f1(y, pred))
        X = np.vstack(
            [
                a.X[a.obs["NK"].to_numpy()][
                    :, a.var_names.get_indexer([channel_for(a, m) for m in res.markers])
                ]
                for a in adatas.values()
            ]
        ).astype(np.float64)
        scores["flowsom"].append(hungarian_f1(y, run_flowsom(X, k, seed)))
    for tool, f1 in scores.items():
        per = ", ".join(f"{v:.3f}" for v in f1)
        print(f"simulator NK (k={k}) {tool:8s} mean F1 {np.mean(f1):.3f} (seeds: {per})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--real", action="store_true", help="68983.fcs, 3 marker sets, k 6/10/20")
    ap.add_argument("--small", action="store_true", help="1-2k-cell simulated pools")
    ap.add_argument("--large", action="store_true", help="F1 over seeds on 1M simulated cells")
    ap.add_argument("--sizes", type=int, nargs="*", default=None, help="time/memory per size")
    ap.add_argument("--big", action="store_true", help="add 5,000,000 cells to --sizes")
    ap.add_argument("--simulator", action="store_true", help="tl.cluster on simulated NK")
    ap.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 for F1 (default 10)")
    ap.add_argument("--grid", type=int, default=10, help="SOM grid side (default 10)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the --sizes runs")
    ap.add_argument("--json", type=Path, help="also write every result row here")
    ap.add_argument(
        "--child", nargs=4, metavar=("TOOL", "N", "SEED", "GRID"), help=argparse.SUPPRESS
    )
    args = ap.parse_args()
    if args.child:
        tool, n, seed, grid = args.child
        print(json.dumps(child(tool, int(n), int(seed), int(grid))))
        return
    seeds = range(args.seeds)
    rows: list[dict] = []
    if args.real or args.small or args.large:
        warm_up()
    if args.real:
        rows += real(seeds, args.grid)
    if args.small:
        rows += small(seeds, args.grid)
    if args.large:
        rows += large(seeds, args.grid)
    if args.simulator:
        simulator()
    ns = list(args.sizes or []) + ([5_000_000] if args.big else [])
    if args.sizes is None and not (args.real or args.small or args.large or args.simulator):
        ns = [10_000, 100_000, 1_000_000] + ([5_000_000] if args.big else [])
    if ns:
        rows += sizes(ns, args.seed, args.grid)
    scored = [r for r in rows if "f1_difference" in r]
    if scored:
        worst = min(scored, key=lambda r: r["f1_difference"])
        slowest = max(scored, key=lambda r: r["time_ratio"])
        print(
            f"summary over {len(scored)} comparisons: nkflow mean F1 >= flowsom's in "
            f"{sum(r['f1_difference'] >= 0 for r in scored)}; worst difference "
            f"{worst['f1_difference']:+.3f} ({worst['set']}, k={worst['k']}); nkflow faster in "
            f"{sum(r['time_ratio'] <= 1 for r in scored)}; largest time ratio "
            f"{slowest['time_ratio']:.2f}x ({slowest['set']}, k={slowest['k']})"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
