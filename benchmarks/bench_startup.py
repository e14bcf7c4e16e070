"""Benchmark: how soon a batch run's first task of each stage ends after launch.

Usage (from the repository root)::

    python benchmarks/bench_startup.py [--input sample_data] [--repeats 3]

Each run is a fresh process that imports nkflow and runs the whole pipeline on
``--input`` with 2 workers; the time from the process's start to the first finished task
of each stage, and to the end, is read off the progress callback. A worker spends about
two seconds importing nkflow before its first task: this shows where that start-up goes
(``run()`` starts the workers before it imports the stages, so they import while this
process imports the same libraries and checks the batch). Compare with another checkout by
putting it first on ``PYTHONPATH``; the tables are the same either way (the test suite checks it).
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


def _child(input_path: str, out: str) -> None:
    start = time.perf_counter()
    import logging
    import warnings

    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    import nkflow.pipeline
    from nkflow.config import RunConfig, replace_values

    cfg = replace_values(RunConfig(), {"execution.workers": 2})
    first: dict[str, float] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if done >= 1 and stage not in first:
            first[stage] = time.perf_counter() - start

    nkflow.pipeline.run(input_path, out, config=cfg, force=True, on_progress=progress)
    first["end"] = time.perf_counter() - start
    print(json.dumps(first))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--input", default="sample_data")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--_out", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._child:
        _child(args.input, args._out)
        return 0
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            cmd = [sys.executable, __file__, "--input", args.input, "--_child",
                   "--_out", str(Path(tmp) / "out")]  # fmt: skip
            res = subprocess.run(cmd, capture_output=True, text=True, check=True)
            runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
    cells = []
    for key in (*STAGES, "end"):
        values = [r[key] for r in runs if key in r]
        if values:
            cells.append(f"{key} {min(values):.2f}-{max(values):.2f}")
    print("seconds from launch to the first finished task: " + ", ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
