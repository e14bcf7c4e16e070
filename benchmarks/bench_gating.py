"""Gating speed: nkflow vs flowkit ``Session.analyze_samples`` on the same gates (issue 4).

One simulated human blood sample (default 1,000,000 events) goes through the pipeline's
preprocessing (read, compensate with the file's spillover, logicle). Then, in the same run:

1. ``nkflow.gating.apply.gate(adata, "human_blood")``: the full human hierarchy, including
   computing every data-driven threshold and scatter gate with bootstrap CIs;
2. ``nkflow.gating.gates.evaluate_gates``: applying the resolved gates only (the same work
   flowkit does);
3. the resolved gates exported with :func:`nkflow.gating.gatingml.export_gatingml` and
   applied by flowkit's ``Session.analyze_samples`` (single process) to the same events
   (linear, uncompensated, the file's spillover attached; flowkit compensates and applies
   the logicle transforms itself, as it would for an analyst's GatingML file).

Membership of every population is compared event for event, and the timings and ratios are
printed: the best of ``--ratio-repeats`` runs of each side (one run of each moved by
+-25 % with the shared machine's load). Loading data into flowkit (building its
``Sample``) is not timed.

Before that, the per-sample stages of ``nkflow run`` are timed on the same events (best of
``--repeats``, issue 18): ``gate()`` with and without bootstrap intervals (the difference
is the cost of the intervals), the matplotlib gate grid built for notebooks
(:func:`nkflow.pl.gating.gate_grid`) and the gating figure as the pipeline writes it (the
report's SVG, :func:`nkflow.pipeline.sample._gating_figure`). ``--no-flowkit`` stops after these.

Run::

    /work/venv/bin/python benchmarks/bench_gating.py [--events 1000000] [--seed 0]
        [--repeats 3] [--ratio-repeats 3] [--no-flowkit]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd


def _prepare(n_events: int, seed: int, workdir: Path):
    from nkflow.datasets import simulate_sample, write_sample
    from nkflow.io import read_fcs
    from nkflow.pp import compensate, transform

    sim = simulate_sample("human", "blood", n_events=n_events, random_state=seed)
    path = write_sample(sim, workdir / "bench_blood.fcs")
    adata = read_fcs(path, sample_id="bench_blood")
    compensate(adata)
    transform(adata)
    return adata


def _best(fn, repeats: int) -> tuple[float, object]:
    """Best wall time of ``repeats`` calls of ``fn``, and the last call's result."""
    best, result = float("inf"), None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def stages(adata, template: str, seed: int, repeats: int) -> None:
    """Best-of-``repeats`` wall time of each per-sample stage after preprocessing."""
    from nkflow.gating.apply import gate
    from nkflow.pipeline.sample import _gating_figure
    from nkflow.pl.gating import gate_grid

    t_gate, _ = _best(lambda: gate(adata, template, random_state=seed), repeats)
    t_nob, _ = _best(lambda: gate(adata, template, random_state=seed, n_boot=0), repeats)
    gate(adata, template, random_state=seed)  # the figure shows the default gating
    t_grid, _ = _best(lambda: gate_grid(adata), repeats)
    t_fig, _ = _best(lambda: _gating_figure(adata), repeats)
    print(f"per-sample stages, best of {repeats}:")
    print(f"  gate() with bootstrap CIs:   {t_gate:7.3f} s")
    print(f"  gate() n_boot=0:             {t_nob:7.3f} s  (intervals: {t_gate - t_nob:.3f} s)")
    print(f"  gate_grid (figure built):    {t_grid:7.3f} s")
    print(f"  gating figure (report SVG):  {t_fig:7.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--template", default="human_blood")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-flowkit", action="store_true")
    parser.add_argument(
        "--ratio-repeats",
        type=int,
        default=3,
        help="runs of gate(), evaluate_gates and flowkit each; the best of each is compared",
    )
    args = parser.parse_args()

    from nkflow.gating.apply import gate
    from nkflow.gating.gates import evaluate_gates, gate_from_dict
    from nkflow.gating.gatingml import (
        _strategy,
        export_gatingml,
        flowkit_sample_from_container,
        gating_results_to_members,
    )

    warnings.simplefilter("ignore")
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        adata = _prepare(args.events, args.seed, work)
        t_prep = time.perf_counter() - t0
        print(f"events: {adata.n_obs:,}  channels: {adata.n_vars}  prepare: {t_prep:.2f} s")

        stages(adata, args.template, args.seed, args.repeats)
        if args.no_flowkit:
            return
        reps = max(1, args.ratio_repeats)
        t_full, table = _best(lambda: gate(adata, args.template, random_state=args.seed), reps)
        pops = adata.uns["nkflow"]["gating"]["populations"]
        gates = [gate_from_dict(p["gate"]) for p in pops]
        print(f"populations: {len(gates)}  ({', '.join(g.id for g in gates)})")

        data = pd.DataFrame(adata.X, columns=list(adata.var_names), copy=False)
        t_eval, nk_members = _best(lambda: evaluate_gates(gates, data), reps)

        import flowkit as fk

        xml = export_gatingml(
            gates, adata.uns["nkflow"]["transform"], work / "bench_gates.xml", compensation="FCS"
        )
        strategy = _strategy(Path(xml).read_bytes(), Path(xml))
        sample = flowkit_sample_from_container(adata, "bench_blood")
        session = fk.Session(gating_strategy=strategy, fcs_samples=[sample])
        analyze = partial(session.analyze_samples, sample_id="bench_blood", use_mp=False)
        t_fk, _ = _best(analyze, reps)
        fk_members, _ = gating_results_to_members(session.get_gating_results("bench_blood"), xml)

        from nkflow.gating.gatingml import population_names
        from nkflow.gating.xml_safety import parse_xml_safely

        names = population_names(parse_xml_safely(xml))
        fk_members = {names.get(k, k): v for k, v in fk_members.items()}
        print(f"\n{'population':<22}{'nkflow':>10}{'flowkit':>10}{'differ':>8}")
        total_diff = 0
        for g in gates:
            a = np.asarray(adata.obs[g.id], dtype=bool)
            b = fk_members[g.id]
            if not np.array_equal(a, nk_members[g.id]):
                raise SystemExit(f"{g.id}: evaluate_gates disagrees with gate()")
            d = int((a != b).sum())
            total_diff += d
            print(f"{g.id:<22}{int(a.sum()):>10,}{int(b.sum()):>10,}{d:>8}")
        print(f"\nmembership identical: {total_diff == 0} ({total_diff} event differences)")
        print(f"best of {reps} runs each:")
        print(f"nkflow gate() (thresholds + CIs + apply): {t_full:8.3f} s")
        print(f"nkflow evaluate_gates (apply only):       {t_eval:8.3f} s")
        print(f"flowkit Session.analyze_samples:          {t_fk:8.3f} s")
        print(f"ratio flowkit / nkflow gate():            {t_fk / t_full:8.2f}x")
        print(f"ratio flowkit / nkflow evaluate_gates:    {t_fk / t_eval:8.2f}x")
        print(f"rows in populations table: {len(table)}")


if __name__ == "__main__":
    main()
