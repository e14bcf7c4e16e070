"""Benchmark: read + compensate + logicle, nkflow vs flowkit vs a raw numpy read.

Usage (from the repository root)::

    python benchmarks/bench_preprocess.py [--events 1000000] [--repeats 5]

Generates (once, cached in ``benchmarks/_data/``, gitignored) a float32 FCS 3.1 file
with FSC-A, FSC-H, SSC-A, 16 fluorescence channels, Time and a ``$SPILLOVER`` over
the 16 fluorescence channels, then times in the same run (minimum of N repeats, page
cache warm):

(a) raw numpy read of the DATA segment (``np.fromfile`` at ``$BEGINDATA``);
(b) ``nkflow.io.read_fcs`` + ``nkflow.pp.compensate`` + ``nkflow.pp.transform`` (logicle);
(c) ``flowkit.Sample(path)`` + ``apply_compensation`` + ``apply_transform`` (logicle)
    + ``get_events("xform")``.

It checks that (b) equals (c) within 1e-6 relative, prints the ratios and the peak
memory of each pipeline (peak of the allocations tracemalloc sees, numpy buffers
included, in a fresh child process). Targets from issue 2: nkflow >= 3x faster than flowkit,
and within 5x of the raw read.

``--open`` instead times opening wide files (issue 18: linear in parameters x events,
1,000 parameters x 10,000 events in < 1 s): ``read_fcs`` of float32 files written by
nkflow with 250 to 2,000 parameters x 10,000 events and 1,000 parameters x 20,000 events
(best of 3, cached in ``benchmarks/_data/``), then the log-log slope of time against
parameters and against events (1 = linear).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE / "_data"
N_FLUO = 16
T, W, M, A = 262144.0, 0.5, 4.5, 0.0


def fluo_names() -> list[str]:
    lasers = {"B": (515, 610, 710), "Y": (586, 610, 670, 710, 780), "R": (670, 730, 780)}
    lasers["V"] = (450, 525, 605, 660, 710)
    return [f"{k}{nm}-A" for k, nms in lasers.items() for nm in nms][:N_FLUO]


def make_file(n_events: int, seed: int = 20240601) -> Path:
    """Write (or reuse) the benchmark FCS file."""
    from nkflow.io import write_fcs

    path = DATA / f"bench_{n_events}ev_{N_FLUO}fl_v1.fcs"
    if path.exists():
        return path
    DATA.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    fluo = fluo_names()
    # populations with different brightness, log-normal spread, unstained noise
    pops = rng.integers(0, 6, n_events)
    centres = rng.uniform(1.0, 4.5, (6, N_FLUO)) * (rng.random((6, N_FLUO)) < 0.4)
    true = np.where(
        centres[pops] > 0, 10 ** (centres[pops] + rng.normal(0, 0.25, (n_events, N_FLUO))), 0.0
    )
    true += rng.normal(0, 60, true.shape)
    spill = np.eye(N_FLUO)
    for i in range(N_FLUO):  # spill into the 3 next detectors, 1-25%
        for j in range(i + 1, min(N_FLUO, i + 4)):
            spill[i, j] = rng.uniform(0.01, 0.25)
        if i > 0:
            spill[i, i - 1] = rng.uniform(0.0, 0.05)
    raw = true @ spill
    fsc = rng.normal(80000, 20000, n_events).clip(100, 262143)
    data = np.column_stack(
        [
            fsc,
            fsc * rng.normal(0.8, 0.05, n_events),
            rng.lognormal(10, 0.6, n_events).clip(10, 262143),
            np.clip(raw, -5000, 262143),
            np.sort(rng.uniform(0, 600, n_events)),
        ]
    ).astype(np.float32)
    channels = ["FSC-A", "FSC-H", "SSC-A", *fluo, "Time"]
    write_fcs(
        path,
        data,
        channels,
        keywords={"$CYT": "nkflow benchmark", "$TIMESTEP": "1"},
        spillover=(fluo, spill),
    )
    return path


def raw_read(path: Path) -> np.ndarray:
    """Events of a list-mode float32 FCS file with plain numpy (the floor)."""
    with open(path, "rb") as fh:
        head = fh.read(58)
        t0, t1 = int(head[10:18]), int(head[18:26])
        fh.seek(t0)
        text = fh.read(t1 - t0 + 1).decode("latin-1")
    delim = text[0]
    parts = text[1:].split(delim)
    kw = {parts[i].upper(): parts[i + 1] for i in range(0, len(parts) - 1, 2)}
    begin = int(kw["$BEGINDATA"])
    n, p = int(kw["$TOT"]), int(kw["$PAR"])
    dtype = "<f4" if kw["$BYTEORD"].strip() == "1,2,3,4" else ">f4"
    return np.fromfile(path, dtype=dtype, count=n * p, offset=begin).reshape(n, p)


def run_nkflow(path: Path):
    from nkflow.io import read_fcs
    from nkflow.pp import compensate, transform

    adata = read_fcs(path)
    compensate(adata, matrix="file")
    transform(adata, method="logicle", T=T, W=W, M=M, A=A)
    return adata


def run_flowkit(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import flowkit as fk

    sample = fk.Sample(str(path))
    sample.apply_compensation(sample.metadata["spillover"])
    sample.apply_transform(fk.transforms.LogicleTransform(T, W, M, A))
    return sample.get_events(source="comp"), sample.get_events(source="xform")


def child_peak(which: str, path: Path) -> int:
    """Peak traced allocation (bytes) of a fresh process running one pipeline once."""
    cmd = [sys.executable, __file__, "--_child", which, "--_path", str(path)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return int(json.loads(res.stdout.strip().splitlines()[-1])["peak"])


def _child(which: str, path: Path) -> None:
    import flowkit  # noqa: F401  (same imports in every child)

    import nkflow.io
    import nkflow.pp  # noqa: F401

    tracemalloc.start()  # numpy reports its buffers to tracemalloc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if which == "raw":
            raw_read(path)
        elif which == "nkflow":
            run_nkflow(path)
        elif which == "flowkit":
            run_flowkit(path)
    print(json.dumps({"peak": tracemalloc.get_traced_memory()[1]}))


def open_wide_files() -> int:
    """Time ``read_fcs`` of wide files; print times and log-log slopes (``--open``)."""
    from nkflow.io import read_fcs
    from nkflow.io.fcs_write import write_fcs

    warnings.simplefilter("ignore")
    shapes = [(250, 10_000), (500, 10_000), (1000, 10_000), (2000, 10_000), (1000, 20_000)]
    times = {}
    for n_par, n_ev in shapes:
        path = DATA / f"wide_{n_par}x{n_ev}.fcs"
        if not path.is_file():
            DATA.mkdir(parents=True, exist_ok=True)
            data = np.random.default_rng(0).uniform(0, 1000, (n_ev, n_par)).astype(np.float32)
            names = [f"C{i}-A" for i in range(n_par)]
            write_fcs(path, data, names, markers=[f"M{i}" for i in range(n_par)])
        read_fcs(path, max_parameters=n_par)  # warm the page cache
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            read_fcs(path, max_parameters=n_par)
            best = min(best, time.perf_counter() - t0)
        times[(n_par, n_ev)] = best
        print(f"read_fcs {n_par:5d} parameters x {n_ev:6d} events  {best * 1e3:8.1f} ms")
    pars = np.array([p for p, e in shapes if e == 10_000], float)
    slope_p = np.polyfit(np.log(pars), np.log([times[(int(p), 10_000)] for p in pars]), 1)[0]
    slope_e = np.log(times[(1000, 20_000)] / times[(1000, 10_000)]) / np.log(2.0)
    print(f"log-log slope in parameters (10k events): {slope_p:.2f}  (1 = linear)")
    print(f"log-log slope in events (1,000 parameters): {slope_e:.2f}")
    ok = times[(1000, 10_000)] < 1.0
    print(f"1,000 parameters x 10,000 events under 1 s: {ok}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=5, help="repeats of raw and nkflow")
    ap.add_argument("--flowkit-repeats", type=int, default=3)
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory children")
    ap.add_argument("--open", action="store_true", help="time opening wide files instead")
    ap.add_argument("--_child", help=argparse.SUPPRESS)
    ap.add_argument("--_path", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child:
        _child(args._child, Path(args._path))
        return 0
    if args.open:
        return open_wide_files()

    import flowkit

    import nkflow
    from nkflow.io import read_fcs
    from nkflow.pp import compensate, transform

    warnings.simplefilter("ignore")
    path = make_file(args.events)
    size = path.stat().st_size
    print(f"file: {path} ({size / 2**20:.1f} MiB), {args.events} events, {N_FLUO} fluorescence")
    print(f"nkflow {nkflow.__version__}, flowkit {flowkit.__version__}, numpy {np.__version__}")
    raw_read(path)  # warm the page cache
    # raw and nkflow alternate in one loop so both see the same machine load
    wall: dict[str, list[float]] = {k: [] for k in ("raw", "read", "comp", "xform", "nkflow")}
    cpu: dict[str, list[float]] = {k: [] for k in ("raw", "nkflow")}
    adata = None
    for _ in range(args.repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        raw_read(path)
        wall["raw"].append(time.perf_counter() - t0)
        cpu["raw"].append(time.process_time() - c0)
        adata = None
        c0, t0 = time.process_time(), time.perf_counter()
        adata = read_fcs(path)
        t1 = time.perf_counter()
        compensate(adata, matrix="file")
        t2 = time.perf_counter()
        transform(adata, method="logicle", T=T, W=W, M=M, A=A)
        t3 = time.perf_counter()
        cpu["nkflow"].append(time.process_time() - c0)
        for key, dt in (("read", t1 - t0), ("comp", t2 - t1), ("xform", t3 - t2)):
            wall[key].append(dt)
        wall["nkflow"].append(t3 - t0)
    t_raw, t_read, t_comp, t_xform, t_nk = (min(wall[k]) for k in wall)
    fk_cpu: list[float] = []
    fk_wall: list[float] = []
    fk_comp = fk_xform = None
    for _ in range(args.flowkit_repeats):
        fk_comp = fk_xform = None
        c0, t0 = time.process_time(), time.perf_counter()
        fk_comp, fk_xform = run_flowkit(path)
        fk_wall.append(time.perf_counter() - t0)
        fk_cpu.append(time.process_time() - c0)
    t_fk = min(fk_wall)

    fluo = (adata.var["kind"] == "fluorescence").to_numpy()
    comp_ok = np.allclose(adata.layers["compensated"], fk_comp, rtol=1e-6, atol=1e-6)
    xf = adata.X[:, fluo].astype(np.float64)
    ref = fk_xform[:, fluo]
    err = np.abs(xf - ref)
    xform_ok = bool(np.all(err <= 1e-6 * np.abs(ref) + 1e-8))
    rel = float(np.max(err / np.maximum(np.abs(ref), 1e-2)))

    print(f"(a) raw numpy read of DATA        {t_raw * 1e3:9.1f} ms")
    print(f"(b) nkflow read+comp+logicle      {t_nk * 1e3:9.1f} ms")
    print(f"      read_fcs                    {t_read * 1e3:9.1f} ms")
    print(f"      compensate                  {t_comp * 1e3:9.1f} ms")
    print(f"      transform (logicle)         {t_xform * 1e3:9.1f} ms")
    print(f"(c) flowkit Sample+comp+logicle   {t_fk * 1e3:9.1f} ms")
    print(f"speed-up nkflow vs flowkit        {t_fk / t_nk:9.2f} x   (target >= 3)")
    print(f"nkflow / raw numpy read           {t_nk / t_raw:9.2f} x   (target <= 5)")
    print(f"nkflow (comp+logicle) / raw read  {(t_comp + t_xform) / t_raw:9.2f} x")
    print(
        f"CPU time (min): raw {min(cpu['raw']) * 1e3:.1f} ms, nkflow "
        f"{min(cpu['nkflow']) * 1e3:.1f} ms, flowkit {min(fk_cpu) * 1e3:.1f} ms"
    )
    print(f"wall times nkflow (ms): {[round(x * 1e3, 1) for x in wall['nkflow']]}")
    print(f"wall times raw (ms):    {[round(x * 1e3, 1) for x in wall['raw']]}")
    print(f"compensated equal to flowkit (rtol 1e-6): {comp_ok}")
    print(f"logicle equal to flowkit (rtol 1e-6, atol 1e-8): {xform_ok}  max rel err {rel:.2e}")
    if not args.no_memory:
        for which in ("raw", "nkflow", "flowkit"):
            peak = child_peak(which, path)
            print(f"peak memory {which:8s} {peak / 2**20:9.1f} MiB (tracemalloc, fresh process)")
    return 0 if (comp_ok and xform_ok) else 1


if __name__ == "__main__":
    sys.exit(main())
