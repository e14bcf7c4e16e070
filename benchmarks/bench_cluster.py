"""nkflow SOM + consensus metaclustering vs the flowsom package (saeyslab), same settings.

Each (tool, size) run happens in a fresh subprocess so that peak memory (ru_maxrss) is its
own; inside it the data are simulated first, then timed:

* nkflow:  ``SOM(10, 10, rlen=10)`` + ``metacluster_nodes(ConsensusMetaclustering(k))``
* flowsom: ``FlowSOMEstimator(xdim=10, ydim=10, rlen=10, n_clusters=k).fit_predict``
  (numba; JIT-compiled on a small array before the clock starts)

Both get the same float32 matrix (12 markers, 12 simulated populations of very different
size, some differing in one or two markers only) and the same seed. Reported: wall time of
the fit + mapping of every cell, process peak RSS (ru_maxrss) and how far the fit raised
it above the RSS holding the data (no tracemalloc: it slows numpy loops ~10x), F1
(Hungarian one-to-one matching, unweighted mean over true populations) and ARI.

``--simulator`` scores ``nkflow.tl.cluster`` and flowsom (same markers, k=6, seeds 0-2)
on the NK cells of two simulated human tubes against the simulator's truth labels.

``--real`` also scores both on the FlowSOM paper's data (68983.fcs, manual labels, the 7
markers of the FlowSOM vignette, compensated + logicle) over seeds 0-4; those flowsom
numbers are the ones recorded in tests/test_models_som.py.

Usage::

    /work/venv/bin/python benchmarks/bench_cluster.py                 # 100k and 1M
    /work/venv/bin/python benchmarks/bench_cluster.py --big           # + 5M
    /work/venv/bin/python benchmarks/bench_cluster.py --real --simulator --sizes 100000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score

from nkflow.models import hungarian_f1

HERE = Path(__file__).resolve().parent
EXTDATA = HERE.parent.parent / "shared" / "external" / "flowsom" / "inst" / "extdata"
N_MARKERS = 12
N_POPS = 12


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


def run_nkflow(X: np.ndarray, k: int, seed: int) -> np.ndarray:
    from nkflow.models import SOM, ConsensusMetaclustering, metacluster_nodes

    som = SOM(10, 10, rlen=10, random_state=seed).fit(X)
    nodes = metacluster_nodes(
        ConsensusMetaclustering(k, random_state=seed), som.codes_, som.counts_
    )
    return nodes[som.labels_]


def run_flowsom(X: np.ndarray, k: int, seed: int) -> np.ndarray:
    from flowsom.models import FlowSOMEstimator

    est = FlowSOMEstimator(xdim=10, ydim=10, rlen=10, n_clusters=k, seed=seed)
    return np.asarray(est.fit_predict(X))


RUNNERS = {"nkflow": run_nkflow, "flowsom": run_flowsom}


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def child(tool: str, n: int, seed: int) -> dict:
    X, y = simulate(n, seed)
    if tool == "flowsom":  # JIT warm-up outside the clock
        run_flowsom(X[:2000].copy(), N_POPS, seed)
    before = _rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    pred = RUNNERS[tool](X, N_POPS, seed)
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


def load_68983() -> tuple[np.ndarray, np.ndarray]:
    """68983.fcs compensated with its $SPILL, logicle, the FlowSOM vignette's 7 markers."""
    import flowkit as fk
    import pandas as pd

    sample = fk.Sample(str(EXTDATA / "68983.fcs"))
    sample.apply_compensation(sample.metadata["spill"])
    sample.apply_transform(
        fk.transforms.LogicleTransform(param_t=262144, param_w=0.5, param_m=4.5, param_a=0)
    )
    df = sample.as_dataframe(source="xform")
    cols = ["Pacific Blue-A", "APC-A", "APC-Cy7-A", "PE-A", "PE-Texas Red-A", "PE-Cy5-A"]
    cols.append("PE-Cy7-A")  # CD8, TCRgd, TCRb, NK1.1, CD4, CD19, CD3
    X = np.ascontiguousarray(df.loc[:, [c for c in df.columns if c[0] in cols]], dtype=np.float64)
    labels = pd.read_csv(EXTDATA / "gatingResult.csv", header=None)[0].to_numpy()
    return X, labels


def real(seeds=range(5)) -> None:
    X, labels = load_68983()
    keep = labels != "Unlabeled"
    for tool, fn in RUNNERS.items():
        scores = []
        for seed in seeds:
            pred = fn(X, 10, seed)
            scores.append(
                (
                    hungarian_f1(labels[keep], pred[keep]),
                    adjusted_rand_score(labels[keep], pred[keep]),
                )
            )
        f1, ari = np.mean(scores, axis=0)
        per = ", ".join(f"{a:.3f}" for a, _ in scores)
        print(f"68983.fcs {tool:8s} mean F1 {f1:.3f} (seeds: {per})  mean ARI {ari:.3f}")


def simulator(seeds=range(3), k: int = 6) -> None:
    """nkflow.tl.cluster vs flowsom on NK cells of two simulated human tubes (truth labels)."""
    import tempfile
    import warnings

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
    ap.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    ap.add_argument("--big", action="store_true", help="also run 5,000,000 cells")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--real", action="store_true", help="score on 68983.fcs manual labels")
    ap.add_argument("--simulator", action="store_true", help="score on nkflow's simulator truth")
    ap.add_argument("--child", nargs=3, metavar=("TOOL", "N", "SEED"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), int(args.child[2]))))
        return
    if args.real:
        real()
    if args.simulator:
        simulator()
    sizes = list(args.sizes) + ([5_000_000] if args.big else [])
    results = {}
    for n in sizes:
        for tool in RUNNERS:
            out = subprocess.run(
                [sys.executable, __file__, "--child", tool, str(n), str(args.seed)],
                check=True,
                capture_output=True,
                text=True,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            results[tool, n] = r
            print(
                f"{tool:8s} n={n:>9,d}  {r['seconds']:7.2f} s (cpu {r['cpu_seconds']:7.2f} s)  "
                f"peak RSS above data "
                f"{r['fit_extra_mb']:7.1f} MB  maxRSS {r['maxrss_mb']:7.1f} MB "
                f"(data {r['data_mb']:.0f} MB)  F1 {r['f1']:.3f}  ARI {r['ari']:.3f}",
                flush=True,
            )
        a, b = results["nkflow", n], results["flowsom", n]
        print(
            f"   ratio flowsom/nkflow at n={n:,d}: time {b['seconds'] / a['seconds']:.1f}x "
            f"(cpu {b['cpu_seconds'] / a['cpu_seconds']:.1f}x), "
            f"maxRSS {b['maxrss_mb'] / a['maxrss_mb']:.2f}x, peak RSS above data "
            f"{b['fit_extra_mb'] / max(a['fit_extra_mb'], 1e-9):.2f}x; "
            f"F1 {a['f1']:.3f} vs {b['f1']:.3f}",
            flush=True,
        )
    for tool in RUNNERS:
        ts = [(n, results[tool, n]["seconds"]) for n in sizes]
        growth = ", ".join(f"{n:,d}: {t:.2f} s" for n, t in ts)
        print(f"{tool} time growth: {growth}")


if __name__ == "__main__":
    main()
