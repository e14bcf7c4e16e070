"""Benchmark: start-up cost of ``import nkflow`` and ``nkflow --help`` against ``import flowkit``.

Usage (from the repository root)::

    python benchmarks/bench_import.py [--repeats 7] [--top 8]

Each command runs as a whole fresh process (interpreter start-up included), ``--repeats``
times; the best wall time is reported, since on a shared machine every slower run is
noise added to the same work. ``nkflow --help`` runs the console script's two lines
(``from nkflow.cli import main; main()``) so the number does not depend on an install.
The checkout this script sits in is the working directory and first on ``PYTHONPATH``
(``python -c`` puts the working directory first on ``sys.path``).

Targets from issue 18: ``import nkflow`` <= 0.5 s and ``nkflow --help`` <= 0.3 s.
``--top K`` also prints, for each command, the K imports with the largest cumulative
time in one ``python -X importtime`` run: what the remaining cost is made of.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "import flowkit": ["-c", "import flowkit"],
    "import nkflow": ["-c", "import nkflow"],
    "nkflow --help": ["-c", "from nkflow.cli import main; main()", "--help"],
    "import nkflow as nk; nk.read_fcs": ["-c", "import nkflow as nk; nk.read_fcs"],
}
TARGETS = {"import nkflow": 0.5, "nkflow --help": 0.3}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def best_time(args: list[str], repeats: int) -> float:
    """Best wall time (s) of ``python *args`` in ``repeats`` fresh processes."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, *args], cwd=ROOT, env=_env(), check=True, capture_output=True
        )
        times.append(time.perf_counter() - start)
    return min(times)


def top_imports(args: list[str], k: int) -> list[tuple[float, str]]:
    """The ``k`` top-level-most imports with the largest cumulative time (s), one run."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        cwd=ROOT,
        env=_env(),
        check=True,
        capture_output=True,
        text=True,
    )
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.split("|")
        depth = (len(name) - len(name.lstrip()) - 1) // 2  # " " + two spaces per level
        if depth <= 1:  # a module imported by the command itself, or by its first import
            rows.append((int(cumulative) / 1e6, name.strip()))
    return sorted(rows, reverse=True)[:k]


def main() -> None:
    """Time every command and print the times, the ratios to flowkit and the targets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--top", type=int, default=0, metavar="K")
    opts = parser.parse_args()

    print(f"python {sys.version.split()[0]}, best of {opts.repeats} fresh processes, {ROOT}")
    times = {label: best_time(args, opts.repeats) for label, args in COMMANDS.items()}
    flowkit = times["import flowkit"]
    print(f"{'command':<36}{'best s':>8}{'/ flowkit':>11}{'target':>9}")
    for label, seconds in times.items():
        target = TARGETS.get(label)
        verdict = "" if target is None else f"{'<=' if seconds <= target else '>'}{target:.1f}"
        print(f"{label:<36}{seconds:>8.3f}{seconds / flowkit:>11.2f}{verdict:>9}")
    for label, args in COMMANDS.items():
        if opts.top and label != "python -c pass":
            print(f"\n{label}: largest cumulative imports (-X importtime, one run)")
            for seconds, name in top_imports(args, opts.top):
                print(f"  {seconds:7.3f} s  {name}")


if __name__ == "__main__":
    main()
