"""Benchmark: how soon a batch run's first task ends, workers started early or not.

Usage (from the repository root)::

    python benchmarks/bench_startup.py [--input sample_data] [--repeats 3]

Each run is a fresh process that imports nkflow and runs the whole pipeline on
``--input`` with 2 workers; the time from the process's start to the first finished task
of each stage is read off the progress callback. Two orders, alternated:

* ``early``: as ``nkflow run`` does, a :class:`nkflow.parallel.SampleExecutor` is started
  before ``nkflow.pipeline`` is imported and handed to ``run(executor=...)``, so the
  workers import nkflow while this process does;
* ``run``: ``run()`` makes its own executor, as a notebook's ``nk.run(...)`` does (since
  session 7 it starts the workers after the batch checks; before, at the first wave).

``--orders run`` times only the second, e.g. for an older checkout first on
``PYTHONPATH`` that has no ``SampleExecutor.start``.

Printed per order: the seconds to the first finished task of each stage and to the end
(best and worst of the repeats). The tables are the same either way (the test suite
checks it); this measures only where the workers' start-up goes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGES = ("controls", "pooling", "samples", "clustering")


def _child(order: str, input_path: str, out: str) -> None:
    start = time.perf_counter()
    import logging
    import warnings

    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    from nkflow.config import RunConfig, replace_values

    cfg = replace_values(RunConfig(), {"execution.workers": 2})
    kwargs = {}
    if order == "early":
        from nkflow.parallel import SampleExecutor

        executor = SampleExecutor(workers=2)
        executor.start()
        kwargs["executor"] = executor
    import nkflow.pipeline

    first: dict[str, float] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if done >= 1 and stage not in first:
            first[stage] = time.perf_counter() - start

    nkflow.pipeline.run(input_path, out, config=cfg, force=True, on_progress=progress, **kwargs)
    first["end"] = time.perf_counter() - start
    print(json.dumps(first))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--input", default="sample_data")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--orders", default="early,run", help="comma list: early, run")
    ap.add_argument("--_child", default="", help=argparse.SUPPRESS)
    ap.add_argument("--_out", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child:
        _child(args._child, args.input, args._out)
        return 0
    times: dict[str, list[dict[str, float]]] = {o: [] for o in args.orders.split(",")}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for order in times:
                cmd = [sys.executable, __file__, "--input", args.input, "--_child", order,
                       "--_out", str(Path(tmp) / "out")]  # fmt: skip
                res = subprocess.run(cmd, capture_output=True, text=True, check=True)
                times[order].append(json.loads(res.stdout.strip().splitlines()[-1]))
    for order, runs in times.items():
        cells = []
        for key in (*STAGES, "end"):
            values = [r[key] for r in runs if key in r]
            if values:
                cells.append(f"{key} {min(values):.2f}-{max(values):.2f}")
        print(f"{order:7s} seconds to the first finished task: " + ", ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
