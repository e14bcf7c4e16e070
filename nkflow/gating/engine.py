"""The gating engine: walk a template over one sample, resolving thresholds and gates.

Used by :func:`nkflow.gating.gate` (one sample) and by the batch functions, which stop
early (``stop_after``) to gate FMO tubes down to the parent of the FMO marker.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from .._threads import column_rows
from ..exceptions import (
    ChannelNotFoundError,
    GatingError,
    LowEventCountWarning,
    MissingControlWarning,
    PanelError,
    ThresholdDriftWarning,
)
from ..io.fcs import sample_info
from ..io.metadata import is_stimulated
from .channels import resolve_channel
from .cut_spread import with_cut_spread
from .gates import (
    BooleanGate,
    Dimension,
    Gate,
    Operand,
    PolygonGate,
    RectangleGate,
)
from .intervals import NO_INTERVAL, Deferred
from .mirror_check import mirror_tail
from .negative import disagreement, evidence_of, reference_threshold
from .overrides import manual_value, override_rank
from .scatter import DENSITY, Param
from .template import DimSpec, GateSpec, Template
from .thresholds import (
    THRESHOLD_COLUMNS,
    Threshold,
    density_fit,
    quantile_threshold,
    valley_threshold,
)

__all__ = ["GatingRun", "resolve_channel", "run_template"]

logger = logging.getLogger(__name__)

#: Fewest NK events a density cut-off inside NK (valley, gmm, mirror: a subset split such as
#: CD16+) is set on, as for the CD56bright/dim split: below it the gate is not measured
MIN_NK_SPLIT = 50


class _Columns(Mapping[str, np.ndarray]):
    """Lazy channel -> column view of ``adata.X`` (dense float64 copies, cached)."""

    def __init__(self, adata: Any) -> None:
        self._adata = adata
        self._pos = {str(c): i for i, c in enumerate(adata.var_names)}
        self._cache: dict[str, np.ndarray] = {}

    def prefetch(self, keys: Iterable[str]) -> None:
        """Copy the channels ``keys`` (those not cached yet) in one blocked pass.

        The same float64 columns as one at a time (``column_rows``), at about a third of
        the cost for a template's 15-20 channels.
        """
        todo = [k for k in dict.fromkeys(keys) if k in self._pos and k not in self._cache]
        x = self._adata.X
        if len(todo) < 2 or not isinstance(x, np.ndarray):
            return
        rows, _ = column_rows(x, [self._pos[k] for k in todo], np.float64)
        self._cache.update(zip(todo, rows, strict=True))

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._cache:
            col = self._adata.X[:, self._pos[key]]
            if hasattr(col, "toarray"):
                col = col.toarray()
            # one strided pass into float64 (ravel-then-astype copied the column twice)
            self._cache[key] = np.asarray(col, dtype=np.float64).ravel()
        return self._cache[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._pos)

    def __len__(self) -> int:
        return len(self._pos)


@dataclass
class GatingRun:
    """Everything :func:`gate` resolved for one sample."""

    gates: list[Gate] = field(default_factory=list)
    members: dict[str, np.ndarray] = field(default_factory=dict)
    thresholds: list[Threshold] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    #: Gates drawn but not set (a threshold or polygon without a value: too few events),
    #: and the gates that hang on them: their 0 events mean "not measured", not "none".
    unset: dict[str, str] = field(default_factory=dict)
    parents: dict[str, str | None] = field(default_factory=dict)
    #: Intervals still being computed: position in ``thresholds`` -> ``(ci_low, ci_high)``
    #: and the events the cut-off is applied to (for :func:`with_cut_spread`), or None.
    pending: dict[int, tuple[Deferred[tuple[float, float]], np.ndarray | None]] = field(
        default_factory=dict
    )

    def resolve_intervals(self) -> None:
        """Wait for the deferred intervals and write them (and their spread) into ``thresholds``."""
        for i, (interval, events) in self.pending.items():
            lo, hi = interval.result()
            th = replace(self.thresholds[i], ci_low=float(lo), ci_high=float(hi))
            self.thresholds[i] = with_cut_spread(th, events)
        self.pending.clear()


def _missing_fmo_message(
    sid: str, tissue: str, batch: str, marker: str, on: str, rule: str, used: str, p: float
) -> str:
    """Warn of a marker without an FMO threshold, naming the rule the fit ``used``.

    A valley rule falls back to the mirror on a sample without a valley.
    """
    head = (
        f"sample {sid!r} (tissue {tissue!r}, batch {batch!r}): no FMO threshold "
        f"for {marker} on {on!r}; fallback rule {rule!r} on the sample"
    )
    if used == "insufficient events":
        return head + " (not fitted: too few events, the gate is left empty)"
    if rule == "quantile":
        return head + (
            f" (its top {100 - p:g} % are positive by construction, whatever "
            "the tube: an FMO tube is needed to measure it)"
        )
    if used != rule:
        why = " (the sample shows no valley between two peaks)" if used.startswith("mirror") else ""
        return head + f", which fell back to {used!r}{why}"
    return head


def _threshold_lookup(table: Any) -> list[dict[str, Any]]:
    if table is None:
        return []
    if isinstance(table, pd.DataFrame):
        return table.to_dict("records")
    return [t.to_record() if isinstance(t, Threshold) else dict(t) for t in table]


def _spec_order(tpl: Template) -> list[GateSpec]:
    """Gate specs with every dependency first (template order otherwise).

    Depth-first with an explicit stack, so a deep gate hierarchy cannot exhaust Python's
    recursion limit; the order is the one a recursive post-order visit gives.
    """
    by_pop = {p: g for g in tpl.gates for p in g.populations}
    out: list[GateSpec] = []
    seen: set[str] = set()

    def deps(g: GateSpec) -> Iterator[GateSpec]:
        names = [g.parent] if g.parent else []
        names += [d.on for d in g.dims if d.on]
        names += [d.reference for d in g.dims if d.reference in by_pop]
        names += [o.lstrip("!") for o in g.operands]
        names += [o.lstrip("!") for v in g.by_tissue.values() for o in v]
        return (by_pop[d] for d in names)

    for first in tpl.gates:
        if first.id in seen:
            continue
        seen.add(first.id)
        stack = [(first, deps(first))]
        while stack:
            g, todo = stack[-1]
            nxt = next((d for d in todo if d.id not in seen), None)
            if nxt is None:
                stack.pop()
                out.append(g)
            else:
                seen.add(nxt.id)
                stack.append((nxt, deps(nxt)))
    return out


def _channels_read(adata: Any, specs: list[GateSpec]) -> list[str]:
    """The channels the gate specs read, those the panel has (for one prefetch)."""
    out = []
    for spec in specs:
        names = [spec.x, spec.y] if spec.kind == "polygon" else []
        for name in [*names, *(d.marker for d in spec.dims)]:
            try:
                out.append(resolve_channel(adata, name))
            except (ChannelNotFoundError, PanelError):  # raised where the gate is reached
                continue
    return out


def _ancestors(tpl: Template, targets: set[str]) -> set[str]:
    """The targets and every population they depend on (parents, ``on`` gates, operands)."""
    by_pop = {p: g for g in tpl.gates for p in g.populations}
    out: set[str] = set()
    todo = list(targets)
    while todo:
        p = todo.pop()
        if p in out or p not in by_pop:
            continue
        out.add(p)
        g = by_pop[p]
        todo += [g.parent] if g.parent else []
        todo += [d.on for d in g.dims if d.on]
        todo += [d.reference for d in g.dims if d.reference]
        todo += [o.lstrip("!") for o in g.operands]
    return out


def _run(
    adata: Any,
    tpl: Template,
    *,
    thresholds: Any = None,
    random_state: int = 0,
    n_boot: int | None = None,
    fmo_percentile: float | None = None,
    stimulated: bool | None = None,
    warn_missing: bool = True,
    stop_after: set[str] | None = None,
    interval_executor: Executor | None = None,
) -> GatingRun:
    info = sample_info(adata)
    sid = str(info.get("sample_id", ""))
    tissue = str(info.get("tissue", "") or "")
    batch = str(info.get("batch", "") or "")
    if stimulated is None:
        stimulated = is_stimulated(info)
    n_boot = tpl.bootstrap if n_boot is None else int(n_boot)
    pct = tpl.fmo_percentile if fmo_percentile is None else float(fmo_percentile)
    data = _Columns(adata)
    n = adata.n_obs
    run = GatingRun()
    given = _threshold_lookup(thresholds)
    cache: dict[tuple[str, str], Threshold] = {}
    rng = np.random.default_rng(random_state)

    def seed() -> int:
        return int(rng.integers(2**31 - 1))

    def record(
        th: Threshold, interval: Deferred[tuple[float, float]], events: np.ndarray | None = None
    ) -> Threshold:
        # the value gates on at once; the interval is computed now or, with an executor,
        # on its thread while gating goes on (GatingRun.resolve_intervals collects it);
        # then the share of ``events`` above each of its ends (nkflow.gating.cut_spread)
        if interval_executor is None or interval.ready:
            lo, hi = interval.result()
            th = with_cut_spread(replace(th, ci_low=float(lo), ci_high=float(hi)), events)
        else:
            interval.start(interval_executor)
            run.pending[len(run.thresholds)] = (interval, events)
        run.thresholds.append(th)
        return th

    def parent_mask(parent: str | None) -> np.ndarray:
        return np.ones(n, bool) if parent is None else run.members[parent]

    def blank(v: Any) -> str:
        return "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)

    def find_given(on: str, marker: str, channel: str) -> Threshold | None:
        found: list[tuple[int, dict[str, Any]]] = []
        for r in given:
            if blank(r.get("gate", on)) != on or r.get("marker") != marker:
                continue
            if blank(r.get("tissue")) not in ("", tissue) and tissue:
                continue
            if blank(r.get("batch")) not in ("", batch) and batch:
                continue
            if blank(r.get("sample_id")) not in ("", sid):
                continue
            if blank(r.get("channel")) not in ("", channel):  # set on another panel's scale
                msg = (f"{sid}: {marker} cut-off from {blank(r.get('control_file')) or 'a control'}"
                       f" not applied: it was set on channel {r['channel']}, this sample has "
                       f"{marker} on {channel}")  # fmt: skip
                warnings.warn(msg, MissingControlWarning, stacklevel=4)
                continue
            found.append((override_rank(r), r))
        if not found:
            return None
        # a manual override wins over any computed threshold, the most specific one first
        r = max(found, key=lambda x: x[0])[1] if max(x[0] for x in found) else found[0][1]
        rec = {"channel": "", **{k: r[k] for k in THRESHOLD_COLUMNS if k in r}}
        for k in ("sample_id", "tissue", "batch", "gate", "rule", "control_file", "channel",
                  "evidence", "note"):  # fmt: skip
            rec[k] = blank(rec.get(k))
        rec["n_events"] = int(rec["n_events"]) if blank(rec.get("n_events")) else 0
        rec["disagrees"] = bool(rec.get("disagrees")) if blank(rec.get("disagrees")) else False
        if rec["rule"] == "manual":
            rec["value"] = manual_value(r, channel, adata)
        return Threshold(**rec)

    def in_nk(gate: str) -> bool:  # the NK gate or a population inside it
        while gate and gate != tpl.anchor_gate:
            gate = run.parents.get(gate) or ""
        return bool(gate)

    def threshold(dim: DimSpec, on: str | None, gate_id: str) -> Threshold:
        on_key = on or ""
        key = (on_key, dim.marker)
        if key in cache:
            return cache[key]
        ch = resolve_channel(adata, dim.marker)
        hit = find_given(on_key, dim.marker, ch)
        vals = data[ch][parent_mask(on)]
        if hit is not None:
            th = Threshold(**{**hit.to_record(), "channel": ch, "gate": on_key})
            if th.evidence == "batch_pool":  # applied per sample: compare with its own valley
                th = pooled_for_sample(th, vals, dim)
            elif th.rule == "manual":
                th = replace(th, sample_id=sid, tissue=tissue, batch=batch)
            th = with_cut_spread(th, vals)  # applied to this sample's events
            cache[key] = th
            run.thresholds.append(th)
            return th
        if dim.reference and dim.reference in run.members and vals.size >= 10:
            ref_vals = data[ch][run.members[dim.reference]]
            if ref_vals.size >= 10:
                p = dim.percentile if dim.percentile is not None else pct
                v, lo, hi, ne = reference_threshold(
                    ref_vals, percentile=p, n_boot=n_boot, random_state=seed()
                )
                th = Threshold(
                    marker=dim.marker, channel=ch, value=float(v), ci_low=float(lo),
                    ci_high=float(hi), rule=f"reference p{p:g}", n_events=int(ne),
                    gate=on_key, sample_id=sid, tissue=tissue, batch=batch,
                    control_file="fallback:no-fmo" if dim.rule == "fmo" else "",
                    evidence=f"reference:{dim.reference}",
                )  # fmt: skip
                th = with_cut_spread(th, vals)  # set on the reference, applied to ``on``
                cache[key] = th
                run.thresholds.append(th)
                return th
        rule = dim.rule
        control = ""
        p = dim.percentile if dim.percentile is not None else pct
        fallback = ""  # the fallback rule for a missing FMO, warned of after the fit
        if rule == "fmo":
            rule = dim.fallback or tpl.fmo_fallback
            fallback = rule if warn_missing else ""
            control = "fallback:no-fmo"
        interval = NO_INTERVAL  # computed (or started) by record()
        note = ""
        need = MIN_NK_SPLIT if rule in ("valley", "gmm", "mirror") and in_nk(on_key) else 10
        if vals.size < need and rule != "fixed":
            msg = (
                f"sample {sid!r}: gate {gate_id!r}: only {vals.size} events in {on_key!r} "
                f"to set the {dim.marker} threshold ({rule}, needs {need}); the gate is left "
                "empty (not measured)"
            )
            logger.debug(msg)  # shown once, as the warning below
            warnings.warn(msg, LowEventCountWarning, stacklevel=3)
            rule = "insufficient events"
            v, used, ne = np.nan, rule, int(vals.size)
        elif rule in ("valley", "gmm", "mirror"):
            v, interval, used, ne = density_fit(
                rule,
                vals,
                percentile=p,
                min_prominence=dim.min_prominence,
                bw_adjust=dim.bw_adjust,
                unimodal=dim.unimodal,
                # the gmm rule's valley fallback takes the two top peaks
                between="top2" if rule == "gmm" else dim.between,
                n_boot=n_boot,
                random_state=seed(),
            )
            if (
                used.startswith("mirror")
                and (tail := mirror_tail(vals, v, percentile=p, unimodal=dim.unimodal)).doubtful
            ):  # refuted is doubtful too
                note = tail.reason()
                msg = f"sample {sid!r}: gate {gate_id!r}: {dim.marker} on {on_key!r}: {note}"
                logger.debug(msg)  # said once, as the warning
                warnings.warn(msg, MissingControlWarning, stacklevel=3)
                if tail.refuted:
                    v, interval = np.nan, NO_INTERVAL
        elif rule == "quantile":
            v, lo, hi, used, ne = quantile_threshold(
                vals, percentile=p, n_boot=n_boot, random_state=seed()
            )
            interval = Deferred.known((lo, hi))
        elif rule == "fixed":
            v, used, ne = float(dim.value), "fixed", int(vals.size)
        else:  # pragma: no cover - validated by the template loader
            raise GatingError(f"gate {gate_id!r}: unknown rule {rule!r}")
        if fallback:  # said after the fit, so it names the rule actually used
            warnings.warn(
                _missing_fmo_message(sid, tissue, batch, dim.marker, on_key, fallback, used, p),
                MissingControlWarning,
                stacklevel=3,
            )
        th = Threshold(
            marker=dim.marker,
            channel=ch,
            value=float(v),
            rule=used if dim.rule != "fmo" else f"{used} (fmo fallback)",
            control_file=control,
            n_events=int(ne),
            gate=on_key,
            sample_id=sid,
            tissue=tissue,
            batch=batch,
            evidence=evidence_of(used),
            note=note,
        )
        if dim.pool and used.startswith("mirror") and warn_missing and not note:
            msg = (
                f"sample {sid!r}: {dim.marker} on {on_key!r}: no control, batch pool or "
                f"reference population identifies the negative peak; the mirror rule takes "
                f"the lowest peak as negative (a dominant positive peak would read as negative)"
            )
            logger.debug(msg)  # said once, as the warning; the log keeps it for -vvv
            warnings.warn(msg, MissingControlWarning, stacklevel=3)
        th = record(th, interval, vals)
        cache[key] = th
        return th

    def pooled_for_sample(th: Threshold, vals: np.ndarray, dim: DimSpec) -> Threshold:
        note = "too few events for an own valley"
        flag = False
        if vals.size >= 10:
            p = dim.percentile if dim.percentile is not None else pct
            v, lo, hi, used, _ = valley_threshold(
                vals,
                **dim.valley_options(),
                fallback_percentile=p,
                n_boot=n_boot,
                random_state=seed(),
                positive_above=th.value,  # a main peak above the batch cut is positive
                check_mirror=False,  # the batch's cut is applied; its own is only compared
            )
            flag, note = disagreement((v, lo, hi, used), th.value, vals, side=dim.side)
        if flag:
            msg = (
                f"sample {sid!r}: {th.marker} on {th.gate!r}: batch threshold {th.value:.4g} "
                f"({th.control_file}) disagrees with the sample's {note}"
            )
            logger.debug(msg)  # said once, as the warning
            warnings.warn(msg, ThresholdDriftWarning, stacklevel=3)
        return replace(th, sample_id=sid, tissue=tissue, disagrees=flag, note=note,
                       n_events=int(vals.size))  # fmt: skip

    def dim_for(d: DimSpec, th: Threshold, side: str) -> Dimension:
        if side in ("pos", "+"):
            return Dimension(th.channel, min=th.value, max=None, marker=d.marker)
        return Dimension(th.channel, min=None, max=th.value, marker=d.marker)

    def add(g: Gate) -> None:
        inside = parent_mask(g.parent)
        if isinstance(g, BooleanGate):
            own = g.combine(run.members)
        elif isinstance(g, PolygonGate) and g.parent is not None:
            # a point-in-polygon test costs per event: test the parent's events only
            rows = np.flatnonzero(inside)
            own = np.zeros(n, bool)
            own[rows] = g.contains({c: data[c][rows] for c in g.channels})
        else:
            own = g.contains(data)
        run.members[g.id] = own & inside
        run.gates.append(g)
        run.parents[g.id] = g.parent
        if (why := _unset_reason(g, run.unset)) is not None:
            run.unset[g.id] = why

    specs = [
        spec
        for spec in _spec_order(tpl)
        if stop_after is None or set(spec.populations) & stop_after
    ]
    data.prefetch(_channels_read(adata, specs))
    for spec in specs:
        parent = spec.parent
        if parent is not None and parent not in run.members:
            for p in spec.populations:
                run.skipped[p] = f"parent {parent!r} skipped"
            continue
        if stimulated and spec.stim == "skip":
            for p in spec.populations:
                run.skipped[p] = "stimulated tube: taken from the paired unstimulated tube"
            continue
        try:
            if spec.kind == "polygon":
                xc, yc = resolve_channel(adata, spec.x), resolve_channel(adata, spec.y)
                m = parent_mask(parent)
                try:
                    verts, params = DENSITY[spec.method](
                        data[xc][m], data[yc][m], spec.params, n_boot=n_boot, random_state=seed()
                    )
                except GatingError as err:
                    # too few events (or no structure) to fit: the gate is empty and flagged,
                    # its children are empty too, and the sample goes on
                    msg = (
                        f"sample {sid!r}: gate {spec.id!r} ({spec.method} on {int(m.sum())} "
                        f"events of {parent or 'all events'!r}) left empty: {err}"
                    )
                    logger.debug(msg)  # shown once, as the warning below
                    warnings.warn(msg, LowEventCountWarning, stacklevel=2)
                    nan = float("nan")
                    verts = ((nan, nan),) * 3
                    params = [Param("insufficient events", nan, NO_INTERVAL, int(m.sum()))]
                for prm in params:
                    th = Threshold(
                        marker=prm.name,  # on one axis: that channel, converted with it
                        channel={"x": xc, "y": yc}.get(prm.axis, f"{xc}|{yc}"),
                        value=float(prm.value),
                        rule=f"density:{spec.method}",
                        n_events=int(prm.n_events),
                        gate=parent or "",
                        sample_id=sid,
                        tissue=tissue,
                        batch=batch,
                    )
                    record(th, prm.interval)
                add(PolygonGate(spec.id, parent, xc, yc, verts))
            elif spec.kind in ("threshold", "rectangle"):
                dims = []
                for d in spec.dims:
                    if stimulated and d.stim == "drop":
                        continue
                    th = threshold(d, d.on or parent, spec.id)
                    dims.append(dim_for(d, th, d.side))
                add(RectangleGate(spec.id, parent, tuple(dims)))
            elif spec.kind == "quadrant":
                dx, dy = spec.dims
                tx = threshold(dx, dx.on or parent, spec.id)
                ty = threshold(dy, dy.on or parent, spec.id)
                for name, signs in spec.quadrants.items():
                    add(
                        RectangleGate(
                            name,
                            parent,
                            (dim_for(dx, tx, signs[0]), dim_for(dy, ty, signs[1])),
                        )
                    )
            else:
                ops = spec.by_tissue.get(tissue, spec.operands)
                operands = []
                for o in ops:
                    name = o.lstrip("!")
                    if name in run.members:
                        operands.append(Operand(name, o.startswith("!")))
                    elif spec.op != "or":
                        raise ChannelNotFoundError(name, list(run.members), sid)
                if not operands:
                    raise ChannelNotFoundError(",".join(ops), list(run.members), sid)
                add(BooleanGate(spec.id, parent, spec.op, tuple(operands)))  # type: ignore[arg-type]
        except ChannelNotFoundError as err:
            if not spec.optional:
                raise
            for p in spec.populations:
                run.skipped[p] = f"missing: {err.name}"
            logger.info("sample %r: optional gate %r skipped (%s)", sid, spec.id, err.name)
    return run


def _unset_reason(g: Gate, unset: dict[str, str]) -> str | None:
    """Why a drawn gate measures nothing, or None.

    Its own cut-off has no value, or it hangs on (or combines) a gate that has none.
    """
    if g.parent is not None and g.parent in unset:
        return f"parent {g.parent!r} not set"
    if isinstance(g, BooleanGate):
        missing = [o.gate for o in g.operands if o.gate in unset]
        return f"operand {missing[0]!r} not set" if missing else None
    if isinstance(g, RectangleGate):
        values = [v for d in g.dims for v in (d.min, d.max) if v is not None]
    elif isinstance(g, PolygonGate):
        values = [v for vertex in g.vertices for v in vertex]
    else:
        return None
    # too few events, or a rule the events refuted: the threshold row's rule and note say
    return "no cut-off (see its threshold row)" if np.isnan(values).any() else None


run_template = _run
