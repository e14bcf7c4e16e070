"""Apply a gating template to one sample (:func:`gate`) or a whole batch (:func:`gate_batch`).

Where thresholds are computed
-----------------------------
- ``fmo`` thresholds are computed ONCE per tissue and batch by :func:`gate_batch`, from the
  FMO tube (metadata ``role = "fmo:<MARKER>"``) of that tissue and batch, gated with the same
  template down to the same parent gate. Without an FMO tube the sample's own events are
  used with the template's ``fmo_fallback`` rule (default ``mirror``: the negative peak's
  mode + z(99.5 %) robust SDs) and a :class:`MissingControlWarning` is issued.
- ``valley`` / ``mirror`` / ``quantile`` thresholds and the scatter gates are computed PER
  SAMPLE (they follow each sample's density; tissue digests differ too much between samples
  for a pooled scatter gate). Each is recorded with its bootstrap CI, so drift between
  samples and batches stays visible (:func:`~nkflow.gating.thresholds.compare_thresholds`).
- Thresholds passed in ``thresholds=`` take precedence, matched on (gate, marker) and, when
  the table has them, tissue and batch.

Stimulated tubes (``stimulation == "stim"`` or ``role == "stim"``): conditions marked
``stim = "drop"`` (CD16) are ignored, so subsets rest on CD56/NKp46 only; gates marked
``stim = "skip"`` (CD69, CD62L, residency) are not called per event, and their rows in the
populations table come from the paired unstimulated tube (``paired_unstim``), with
``phenotype_source`` naming that tube.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import (
    ChannelNotFoundError,
    GatingError,
    LowEventCountWarning,
    MissingControlWarning,
)
from .gates import (
    BooleanGate,
    Dimension,
    Gate,
    Operand,
    PolygonGate,
    RectangleGate,
    gate_to_dict,
)
from .scatter import DENSITY
from .stats import population_table
from .template import DimSpec, GateSpec, Template, load_template
from .thresholds import (
    THRESHOLD_COLUMNS,
    Threshold,
    compare_thresholds,
    fmo_threshold,
    gmm_threshold,
    mirror_threshold,
    quantile_threshold,
    valley_threshold,
)

__all__ = ["BatchGatingResult", "GatingRun", "gate", "gate_batch", "resolve_channel"]

logger = logging.getLogger(__name__)


def resolve_channel(adata: Any, name: str) -> str:
    """``$PnN`` channel of a marker or channel name (``var_names`` first, then markers)."""
    if name in adata.var_names:
        return str(name)
    if "marker" in adata.var.columns:
        exact = list(adata.var_names[adata.var["marker"].astype(str) == name])
        if len(exact) == 1:
            return str(exact[0])
    try:
        from ..io import channel_for  # type: ignore[attr-defined]
    except ImportError:
        channel_for = None
    if channel_for is not None:
        return str(channel_for(adata, name))
    if "marker" in adata.var.columns:
        hits = list(adata.var_names[adata.var["marker"].astype(str) == name])
        if len(hits) == 1:
            return str(hits[0])
    sid = _sample_info(adata).get("sample_id")
    have = list(adata.var_names)
    if "marker" in adata.var.columns:
        pairs = zip(adata.var_names, adata.var["marker"], strict=True)
        have = [f"{c} ({m})" if m else c for c, m in pairs]
    raise ChannelNotFoundError(name, have, sid)


def _sample_info(adata: Any) -> dict[str, Any]:
    return dict(adata.uns.get("nkflow", {}).get("sample", {}) or {})


class _Columns(Mapping[str, np.ndarray]):
    """Lazy channel -> column view of ``adata.X`` (dense float64 copies, cached)."""

    def __init__(self, adata: Any) -> None:
        self._adata = adata
        self._pos = {str(c): i for i, c in enumerate(adata.var_names)}
        self._cache: dict[str, np.ndarray] = {}

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._cache:
            col = self._adata.X[:, self._pos[key]]
            col = col.toarray().ravel() if hasattr(col, "toarray") else np.asarray(col).ravel()
            self._cache[key] = col.astype(np.float64)
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
    parents: dict[str, str | None] = field(default_factory=dict)


def _threshold_lookup(table: Any) -> list[dict[str, Any]]:
    if table is None:
        return []
    if isinstance(table, pd.DataFrame):
        return table.to_dict("records")
    return [t.to_record() if isinstance(t, Threshold) else dict(t) for t in table]


def _spec_order(tpl: Template) -> list[GateSpec]:
    by_pop = {p: g for g in tpl.gates for p in g.populations}
    out: list[GateSpec] = []
    seen: set[str] = set()

    def visit(g: GateSpec) -> None:
        if g.id in seen:
            return
        seen.add(g.id)
        deps = [g.parent] if g.parent else []
        deps += [d.on for d in g.dims if d.on]
        deps += [o.lstrip("!") for o in g.operands]
        deps += [o.lstrip("!") for v in g.by_tissue.values() for o in v]
        for d in deps:
            visit(by_pop[d])
        out.append(g)

    for g in tpl.gates:
        visit(g)
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
) -> GatingRun:
    info = _sample_info(adata)
    sid = str(info.get("sample_id", ""))
    tissue = str(info.get("tissue", "") or "")
    batch = str(info.get("batch", "") or "")
    if stimulated is None:
        stimulated = info.get("stimulation") == "stim" or info.get("role") == "stim"
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

    def parent_mask(parent: str | None) -> np.ndarray:
        return np.ones(n, bool) if parent is None else run.members[parent]

    def blank(v: Any) -> str:
        return "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)

    def find_given(on: str, marker: str) -> Threshold | None:
        for r in given:
            if blank(r.get("gate", on)) != on or r.get("marker") != marker:
                continue
            if blank(r.get("tissue")) not in ("", tissue) and tissue:
                continue
            if blank(r.get("batch")) not in ("", batch) and batch:
                continue
            if blank(r.get("sample_id")) not in ("", sid):
                continue
            rec = {"channel": "", **{k: r[k] for k in THRESHOLD_COLUMNS if k in r}}
            for k in ("sample_id", "tissue", "batch", "gate", "rule", "control_file", "channel"):
                rec[k] = blank(rec.get(k))
            rec["n_events"] = int(rec["n_events"]) if blank(rec.get("n_events")) else 0
            return Threshold(**rec)
        return None

    def threshold(dim: DimSpec, on: str | None, gate_id: str) -> Threshold:
        on_key = on or ""
        key = (on_key, dim.marker)
        if key in cache:
            return cache[key]
        ch = resolve_channel(adata, dim.marker)
        hit = find_given(on_key, dim.marker)
        if hit is not None:
            th = Threshold(**{**hit.to_record(), "channel": ch, "gate": on_key})
            cache[key] = th
            run.thresholds.append(th)
            return th
        vals = data[ch][parent_mask(on)]
        rule = dim.rule
        control = ""
        if rule == "fmo":
            rule = tpl.fmo_fallback
            if warn_missing:
                msg = (
                    f"sample {sid!r} (tissue {tissue!r}, batch {batch!r}): no FMO threshold "
                    f"for {dim.marker} on {on_key!r}; fallback rule {rule!r} on the sample"
                )
                logger.warning(msg)
                warnings.warn(msg, MissingControlWarning, stacklevel=3)
            control = "fallback:no-fmo"
        p = dim.percentile if dim.percentile is not None else pct
        if vals.size < 10 and rule != "fixed":
            msg = (
                f"sample {sid!r}: gate {gate_id!r}: only {vals.size} events in {on_key!r} "
                f"to set the {dim.marker} threshold ({rule}); the gate is left empty"
            )
            logger.warning(msg)
            warnings.warn(msg, LowEventCountWarning, stacklevel=3)
            rule = "insufficient events"
            v, lo, hi, used, ne = np.nan, np.nan, np.nan, rule, int(vals.size)
        elif rule == "valley":
            v, lo, hi, used, ne = valley_threshold(
                vals,
                min_prominence=dim.min_prominence,
                bw_adjust=dim.bw_adjust,
                unimodal=dim.unimodal,
                fallback_percentile=p,
                n_boot=n_boot,
                random_state=seed(),
            )
        elif rule == "gmm":
            v, lo, hi, used, ne = gmm_threshold(
                vals,
                min_prominence=dim.min_prominence,
                bw_adjust=dim.bw_adjust,
                unimodal=dim.unimodal,
                fallback_percentile=p,
                n_boot=n_boot,
                random_state=seed(),
            )
        elif rule == "mirror":
            v, lo, hi, used, ne = mirror_threshold(
                vals,
                percentile=p,
                unimodal=dim.unimodal,
                bw_adjust=dim.bw_adjust,
                n_boot=n_boot,
                random_state=seed(),
            )
        elif rule == "quantile":
            v, lo, hi, used, ne = quantile_threshold(
                vals, percentile=p, n_boot=n_boot, random_state=seed()
            )
        elif rule == "fixed":
            v, lo, hi, used, ne = float(dim.value), np.nan, np.nan, "fixed", int(vals.size)
        else:  # pragma: no cover - validated by the template loader
            raise GatingError(f"gate {gate_id!r}: unknown rule {rule!r}")
        th = Threshold(
            marker=dim.marker,
            channel=ch,
            value=float(v),
            ci_low=float(lo),
            ci_high=float(hi),
            rule=used if dim.rule != "fmo" else f"{used} (fmo fallback)",
            control_file=control,
            n_events=int(ne),
            gate=on_key,
            sample_id=sid,
            tissue=tissue,
            batch=batch,
        )
        cache[key] = th
        run.thresholds.append(th)
        return th

    def dim_for(d: DimSpec, th: Threshold, side: str) -> Dimension:
        if side in ("pos", "+"):
            return Dimension(th.channel, min=th.value, max=None, marker=d.marker)
        return Dimension(th.channel, min=None, max=th.value, marker=d.marker)

    def add(g: Gate) -> None:
        own = g.combine(run.members) if isinstance(g, BooleanGate) else g.contains(data)
        run.members[g.id] = own & parent_mask(g.parent)
        run.gates.append(g)
        run.parents[g.id] = g.parent

    for spec in _spec_order(tpl):
        if stop_after is not None and not (set(spec.populations) & stop_after):
            continue
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
                verts, params = DENSITY[spec.method](
                    data[xc][m], data[yc][m], spec.params, n_boot=n_boot, random_state=seed()
                )
                for name, v, lo, hi, ne in params:
                    run.thresholds.append(
                        Threshold(
                            marker=name,
                            channel=f"{xc}|{yc}",
                            value=float(v),
                            ci_low=float(lo),
                            ci_high=float(hi),
                            rule=f"density:{spec.method}",
                            n_events=int(ne),
                            gate=parent or "",
                            sample_id=sid,
                            tissue=tissue,
                            batch=batch,
                        )
                    )
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


def gate(
    adata: Any,
    template: str | Path | Template,
    *,
    thresholds: pd.DataFrame | list[Any] | None = None,
    paired_unstim: Any = None,
    random_state: int = 0,
    n_boot: int | None = None,
    fmo_percentile: float | None = None,
    min_events: int | None = None,
    stimulated: bool | None = None,
    copy: bool = False,
) -> pd.DataFrame:
    """Gate one sample with a template; write membership and provenance into the container.

    Parameters
    ----------
    adata
        One sample (``X`` transformed, ``var["marker"]``, ``uns["nkflow"]["sample"]``).
    template
        Shipped template name, TOML path or a loaded :class:`~nkflow.gating.template.Template`.
    thresholds
        Precomputed thresholds (e.g. the FMO-derived ones of this tissue and batch); a
        thresholds table or a list of :class:`~nkflow.gating.thresholds.Threshold`.
    paired_unstim
        For a stimulated tube: the gated unstimulated tube of the same donor/tissue (AnnData)
        or its populations table; residency rows are copied from it.
    random_state
        Seed for bootstrap CIs and the scatter mixture model.
    n_boot
        Bootstrap resamples per threshold (default: the template's ``bootstrap``).
    fmo_percentile
        Overrides the template's FMO percentile.
    min_events
        Overrides the manifest's minimum event count for the ``low_events`` flag.
    stimulated
        Overrides the tube type read from ``uns["nkflow"]["sample"]``.
    copy
        Work on a copy (returned in ``result.attrs["adata"]``) instead of ``adata``.

    Returns
    -------
    DataFrame
        The populations table (docs/contracts.md). ``adata.obs`` gains one bool column per
        population; ``adata.uns["nkflow"]`` gains ``gating`` and ``thresholds``.
    """
    tpl = load_template(template)
    if copy:
        adata = adata.copy()
    run = _run(
        adata,
        tpl,
        thresholds=thresholds,
        random_state=random_state,
        n_boot=n_boot,
        fmo_percentile=fmo_percentile,
        stimulated=stimulated,
    )
    for g in run.gates:
        adata.obs[g.id] = run.members[g.id]
    uns = adata.uns.setdefault("nkflow", {})
    uns["gating"] = {
        "template": tpl.name,
        "template_path": tpl.path,
        "template_version": tpl.version,
        "template_hash": tpl.hash,
        "populations": [
            {"name": g.id, "parent": g.parent, "gate": gate_to_dict(g)} for g in run.gates
        ],
        "skipped": dict(run.skipped),
    }
    uns["thresholds"] = [t.to_record() for t in run.thresholds]
    table = population_table(
        adata,
        populations=[g.id for g in run.gates],
        parents=run.parents,
        min_events=tpl.min_events if min_events is None else int(min_events),
    )
    if paired_unstim is not None:
        table = _add_unstim_rows(table, paired_unstim, run.skipped, _sample_info(adata))
    if copy:
        table.attrs["adata"] = adata
    return table


def _add_unstim_rows(
    table: pd.DataFrame, unstim: Any, skipped: Mapping[str, str], info: Mapping[str, Any]
) -> pd.DataFrame:
    if isinstance(unstim, pd.DataFrame):
        other = unstim
    else:
        g = unstim.uns.get("nkflow", {}).get("gating")
        if not g:
            raise GatingError("paired_unstim is not gated yet; gate the unstimulated tube first")
        other = population_table(
            unstim,
            populations=[p["name"] for p in g["populations"]],
            parents={p["name"]: p["parent"] for p in g["populations"]},
            min_events=0,
            warn=False,
        )
    take = other[other["population"].isin([p for p in skipped if p not in table["population"]])]
    if take.empty:
        return table
    take = take.copy()
    take["phenotype_source"] = take["sample_id"].astype(str)
    take["sample_id"] = str(info.get("sample_id", ""))
    table = table.copy()
    table["phenotype_source"] = table.get("phenotype_source", "")
    return pd.concat([table, take], ignore_index=True)


@dataclass
class BatchGatingResult:
    """Output of :func:`gate_batch`."""

    populations: pd.DataFrame
    thresholds: pd.DataFrame
    drift: pd.DataFrame


def _fmo_thresholds(
    meta: pd.DataFrame,
    reader: Callable[[str], Any],
    tpl: Template,
    *,
    random_state: int,
    n_boot: int | None,
    fmo_percentile: float | None,
) -> list[Threshold]:
    pct = tpl.fmo_percentile if fmo_percentile is None else float(fmo_percentile)
    boots = tpl.bootstrap if n_boot is None else int(n_boot)
    out: list[Threshold] = []
    fmo_rows = meta[meta["role"].astype(str).str.startswith("fmo:")]
    for _, row in fmo_rows.iterrows():
        marker = str(row["role"]).split(":", 1)[1]
        uses = [
            (spec, d)
            for spec in tpl.gates
            for d in spec.dims
            if d.marker == marker and d.rule == "fmo"
        ]
        if not uses:
            logger.info("FMO tube %s (%s) unused by template %s", row["file"], marker, tpl.name)
            continue
        adata = reader(str(row["sample_id"]))
        ons = {d.on or spec.parent for spec, d in uses}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MissingControlWarning)
            run = _run(
                adata,
                tpl,
                random_state=random_state,
                n_boot=0,
                stimulated=False,
                warn_missing=False,
                stop_after=_ancestors(tpl, {o for o in ons if o}),
            )
        for on in sorted(o for o in ons if o):
            if on not in run.members:
                raise GatingError(
                    f"FMO tube {row['file']}: gate {on!r} could not be reached "
                    f"({run.skipped.get(on, 'not evaluated')})"
                )
            ch = resolve_channel(adata, marker)
            vals = _Columns(adata)[ch][run.members[on]]
            v, lo, hi, _, ne = fmo_threshold(
                vals, percentile=pct, n_boot=boots, random_state=random_state
            )
            out.append(
                Threshold(
                    marker=marker,
                    channel=ch,
                    value=v,
                    ci_low=lo,
                    ci_high=hi,
                    rule=f"fmo p{pct:g}",
                    control_file=str(row["file"]),
                    n_events=ne,
                    gate=on,
                    sample_id="",
                    tissue=str(row.get("tissue", "") or ""),
                    batch=str(row.get("batch", "") or ""),
                )
            )
        del adata
    return out


def gate_batch(
    metadata: pd.DataFrame,
    samples: Callable[[str], Any] | Mapping[str, Any],
    template: str | Path | Template,
    *,
    random_state: int = 0,
    n_boot: int | None = None,
    fmo_percentile: float | None = None,
    max_shift: float = 0.1,
    on_sample: Callable[[str, Any, pd.DataFrame], None] | None = None,
) -> BatchGatingResult:
    """Gate every sample of one or more batches, one sample in memory at a time.

    First the FMO thresholds of each tissue and batch are computed from the FMO tubes
    (``role = "fmo:<MARKER>"``); then each sample is read, gated with them and released.
    Unstimulated tubes are gated before stimulated ones so a stimulated tube gets its
    residency rows from the unstimulated tube of the same donor, tissue, timepoint and batch.

    Parameters
    ----------
    metadata
        The metadata sheet (docs/contracts.md) as a DataFrame.
    samples
        ``sample_id -> AnnData`` callable (e.g. read + compensate + transform), or a dict.
    template
        Template name, path or object.
    random_state, n_boot, fmo_percentile
        As in :func:`gate`.
    max_shift
        Drift bound for :func:`~nkflow.gating.thresholds.compare_thresholds`.
    on_sample
        Called as ``on_sample(sample_id, adata, populations)`` after each sample is gated
        (e.g. to write its membership) before the sample is released.

    Returns
    -------
    BatchGatingResult
        ``populations``, ``thresholds`` (FMO ones with ``sample_id == ""``, then per sample)
        and ``drift`` (per tissue/gate/marker and batch).
    """
    tpl = load_template(template)
    reader = samples if callable(samples) else samples.__getitem__
    meta = metadata.copy()
    for col in ("role", "tissue", "batch", "donor", "timepoint", "stimulation"):
        if col not in meta.columns:
            meta[col] = ""
        meta[col] = meta[col].fillna("").astype(str)
    meta.loc[meta["role"] == "", "role"] = "sample"
    fmo = _fmo_thresholds(
        meta, reader, tpl, random_state=random_state, n_boot=n_boot, fmo_percentile=fmo_percentile
    )
    fmo_df = pd.DataFrame([t.to_record() for t in fmo], columns=THRESHOLD_COLUMNS)
    todo = meta[meta["role"].isin(["sample", "unstim", "stim", "positive_control"])].copy()
    todo["_stim"] = (todo["stimulation"] == "stim") | (todo["role"] == "stim")
    todo = todo.sort_values("_stim", kind="stable")
    unstim_tables: dict[tuple[str, ...], pd.DataFrame] = {}
    tables: list[pd.DataFrame] = []
    thr: list[pd.DataFrame] = [fmo_df]
    pair_cols = ["donor", "tissue", "timepoint", "batch"]
    for _, row in todo.iterrows():
        sid = str(row["sample_id"])
        adata = reader(sid)
        key = tuple(str(row[c]) for c in pair_cols)
        sub = fmo_df[(fmo_df["tissue"] == row["tissue"]) & (fmo_df["batch"] == row["batch"])]
        paired = unstim_tables.get(key) if row["_stim"] else None
        if row["_stim"] and paired is None:
            msg = f"stimulated tube {sid!r}: no unstimulated tube with the same {pair_cols}"
            logger.warning(msg)
            warnings.warn(msg, MissingControlWarning, stacklevel=2)
        table = gate(
            adata,
            tpl,
            thresholds=sub,
            paired_unstim=paired,
            random_state=random_state,
            n_boot=n_boot,
            fmo_percentile=fmo_percentile,
            stimulated=bool(row["_stim"]),
        )
        if not row["_stim"]:
            unstim_tables[key] = table
        tables.append(table)
        per = pd.DataFrame(adata.uns["nkflow"]["thresholds"], columns=THRESHOLD_COLUMNS)
        thr.append(per[per["sample_id"] == sid])
        if on_sample is not None:
            on_sample(sid, adata, table)
        del adata
    populations = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    thresholds = pd.concat(thr, ignore_index=True)
    data_driven = ~thresholds["rule"].astype(str).str.startswith(("density", "fixed"))
    drift = compare_thresholds(thresholds[data_driven], max_shift=max_shift)
    return BatchGatingResult(populations=populations, thresholds=thresholds, drift=drift)
