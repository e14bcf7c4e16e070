"""Where the CPU of an ``nkflow run`` goes: one in-process run under cProfile (issue 18).

Usage (from the repository root)::

    NKFLOW_NUM_THREADS=1 python benchmarks/profile_pipeline.py [--events 200000] [--top 25]
        [--stats PATH]

Runs ``nkflow.run`` in this process (``execution.workers = 1``) on the simulated batch of
``bench_pipeline.py`` (48 files, generated once into ``benchmarks/_data/``), report
included, under :mod:`cProfile`. With ``NKFLOW_NUM_THREADS=1`` every step runs on the main
thread, so the profile sees all of it (with more threads, work done on nkflow's helper
threads shows up as waiting). Printed: the run's CPU seconds, the cumulative time of the
pipeline's main steps (nested: a step's time includes the steps it calls, as noted), and
the functions with the most time of their own. ``--stats`` keeps the profile for
``python -m pstats``. Profiling adds overhead (~5-10 % here): compare shares, not seconds,
with ``bench_pipeline.py``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import logging
import pstats
import resource
import tempfile
import warnings
from pathlib import Path

from bench_pipeline import make_batch

# (label, file suffix, function name): cumulative time of these functions, in this order
STEPS = [
    ("whole run", "pipeline/run.py", "run"),
    ("  per-sample work (all stages)", "nkflow/parallel.py", "_call"),
    ("    gating, intervals included", "gating/apply.py", "gate"),
    ("      bootstrap intervals, density rules", "gating/density.py", "bootstrap_thresholds"),
    ("      bootstrap intervals of the singlet band", "gating/redraws.py", "median_band_redraws"),
    ("      scatter gate mixtures", "gating/scatter.py", "_gmm2d"),
    ("      populations table (medians)", "gating/stats.py", "population_table"),
    ("    QC (time and margins)", "pp/qc.py", "qc_events"),
    ("    read FCS", "io/fcs.py", "read_fcs"),
    ("    compensate", "pp/compensate.py", "compensate"),
    ("    transform", "pp/transform.py", "transform"),
    ("    gating figure (SVG)", "report/gating_svg.py", "gating_svg"),
    ("    kept events as h5ad", "io/h5ad.py", "h5ad_bytes"),
    ("  clustering (fit and mapping)", "pipeline/steps.py", "cluster_batch"),
    ("  batch figures (PNG)", "report/figures.py", "figure_png"),
]


def _cumulative(stats: pstats.Stats, suffix: str, name: str) -> float:
    return sum(
        row[3]
        for (path, _line, func), row in stats.stats.items()  # type: ignore[attr-defined]
        if func == name and path.endswith(suffix)
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--stats", type=Path, default=None, help="write the profile here")
    args = ap.parse_args(argv)

    import nkflow
    from nkflow.config import RunConfig, replace_values

    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    folder = make_batch(args.events)
    cfg = replace_values(RunConfig(), {"execution.workers": 1})
    before = resource.getrusage(resource.RUSAGE_SELF)
    profile = cProfile.Profile()
    with tempfile.TemporaryDirectory() as tmp:
        profile.enable()
        nkflow.run(folder, Path(tmp) / "out", config=cfg, force=True)
        profile.disable()
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if args.stats:
        profile.dump_stats(args.stats)
    stats = pstats.Stats(profile)
    total = _cumulative(stats, "pipeline/run.py", "run")
    print(f"batch {folder.name}: {cpu:.1f} CPU-s (process), {total:.1f} s profiled\n")
    print(f"{'step':<52} {'s':>7} {'share':>6}")
    for label, suffix, name in STEPS:
        t = _cumulative(stats, suffix, name)
        print(f"{label:<52} {t:7.2f} {t / total:6.1%}")
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(args.top)
    lines = out.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls"))
    print(f"\nfunctions with the most time of their own (top {args.top}):")
    print("\n".join(lines[start:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
