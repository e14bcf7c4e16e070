"""A generated methods paragraph naming every parameter of a run.

The text is plain (the HTML layer escapes it) so it can also be pasted into a manuscript.
It reads the run configuration (``nkflow.config.config_to_dict`` output, or the
``RunConfig`` itself), the provenance record and the result tables.

Provenance keys read (all optional): ``nkflow_version`` (or ``versions["nkflow"]``),
``versions`` (package -> version), ``templates`` (list of ``{name, hash}`` or a mapping
name -> hash; ``template``/``template_hash`` also work), ``scoring`` (the effective score
definitions, e.g. ``min_net``, ``min_areg_events``, ``min_events``, ``ri_cut``,
``require_positive_control``, ``control_population``...), ``random_state``, ``execution``
(``workers``: the number of local worker processes the run used).

Every sentence states what the run did, not what it could have done: the worker count
used (not the setting 0), the timepoint order applied (``metadata.attrs
["timepoint_order"]``), where this batch's thresholds came from (the thresholds table).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from ..gating.apply import BORROWED
from ..gating.overrides import SUPERSEDED
from ..io.panel_labels import format_unread
from .methods_analysis import _num, _ordinal, clustering_sentence, scoring_sentence
from .tables import split_qc

__all__ = ["as_plain_dict", "methods_text", "provenance_templates", "provenance_versions"]


def as_plain_dict(config: Any) -> dict[str, Any]:
    """A configuration as nested plain dicts (accepts dicts and dataclasses)."""
    if config is None:
        return {}
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {
            f.name: as_plain_dict_value(getattr(config, f.name)) for f in dataclasses.fields(config)
        }
    if isinstance(config, Mapping):
        return {str(k): as_plain_dict_value(v) for k, v in config.items()}
    return {}


def as_plain_dict_value(value: Any) -> Any:
    """Plain-data form of one configuration value."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return as_plain_dict(value)
    if isinstance(value, Mapping):
        return {str(k): as_plain_dict_value(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [as_plain_dict_value(v) for v in value]
    return value


def provenance_versions(provenance: Mapping[str, Any] | None) -> dict[str, str]:
    """Package versions from a provenance record (``nkflow`` first)."""
    prov = provenance or {}
    versions: dict[str, str] = {}
    raw = prov.get("versions") or prov.get("dependencies") or {}
    nk = prov.get("nkflow_version") or prov.get("nkflow") or prov.get("version")
    if isinstance(raw, Mapping):
        nk = nk or raw.get("nkflow")
    if nk:
        versions["nkflow"] = str(nk)
    if isinstance(raw, Mapping):
        for name, ver in sorted(raw.items(), key=lambda kv: str(kv[0]).lower()):
            if str(name) != "nkflow":
                versions[str(name)] = str(ver)
    return versions


def provenance_templates(provenance: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """``(name, hash)`` of every gating template named in a provenance record."""
    prov = provenance or {}
    out: list[tuple[str, str]] = []
    raw = prov.get("templates")
    if isinstance(raw, Mapping):
        for name, value in raw.items():
            if isinstance(value, Mapping):
                out.append((str(name), str(value.get("hash") or value.get("sha256") or "")))
            else:
                out.append((str(name), str(value)))
    elif isinstance(raw, list | tuple):
        for item in raw:
            if isinstance(item, Mapping):
                name = item.get("name") or item.get("template") or item.get("path") or "?"
                digest = item.get("hash") or item.get("sha256") or item.get("template_hash")
                out.append((str(name), str(digest or "")))
            else:
                out.append((str(item), ""))
    if not out and prov.get("template"):
        out.append((str(prov["template"]), str(prov.get("template_hash") or "")))
    return out


def _sum(table: pd.DataFrame | None, column: str) -> float | None:
    if table is None or table.empty or column not in table.columns:
        return None
    values = pd.to_numeric(table[column], errors="coerce")
    return float(values.sum()) if values.notna().any() else None


def _batch_sentence(tables: Mapping[str, pd.DataFrame]) -> str:
    status = tables.get("status")
    if status is None or status.empty or "status" not in status.columns:
        return ""
    counts = status["status"].astype(str).value_counts()
    parts = [
        f"{int(counts.get(s, 0))} {s}"
        for s in ("ok", "qc-failed", "parse-failed", "skipped")
        if counts.get(s, 0)
    ]
    others = [
        f"{int(n)} {s}"
        for s, n in sorted(counts.items())
        if s not in ("ok", "qc-failed", "parse-failed", "skipped")
    ]
    if "reason_code" in status.columns and parts and parts[0].endswith(" ok"):
        ok = status["status"].astype(str) == "ok"
        control = int((ok & (status["reason_code"].astype(str) == "CONTROL")).sum())
        if control:  # FMO tubes only set cut-offs: said apart from the analysed tubes
            parts[0] += f": {int(ok.sum()) - control} analysed tube(s), {control} FMO control(s)"
    return f"The batch comprised {len(status)} FCS file(s) ({'; '.join(parts + others)}). "


def _transform_sentence(tf: Mapping[str, Any]) -> str:
    method = str(tf.get("method", "logicle"))
    if method == "arcsinh":
        detail = f"arcsinh transform with cofactor {_num(tf.get('cofactor', 150.0))}"
    else:
        detail = (
            f"logicle transform (Parks, Roederer & Moore 2006) with T = {_num(tf.get('T'))}, "
            f"W = {_num(tf.get('W'))}, M = {_num(tf.get('M'))}, A = {_num(tf.get('A'))}"
        )
        if tf.get("estimate_w"):
            detail += " (W estimated per channel from the negative data)"
    return (
        f"Fluorescence channels were transformed with the {detail}; scatter and Time "
        "channels were kept on their linear scale. "
    )


def _compensation_sentence(comp: Mapping[str, Any]) -> str:
    source = str(comp.get("matrix", "file"))
    if source == "file":
        what = "the spillover matrix stored in each FCS file ($SPILLOVER/$SPILL/SPILL keyword)"
    elif source == "none":
        what = "no matrix (compensation was switched off)"
    else:
        what = f"the user-supplied matrix {source}"
    return f"Compensation used {what}. "


_TECHNOLOGY_LABELS = {
    "flow": "conventional flow cytometry",
    "spectral": "spectral flow cytometry (unmixed)",
    "mass_cytometry": "mass cytometry",
    "compensated_export": "exports already compensated by their software",
}


def _preprocessing_sentences(cfg: Mapping[str, Any], prov: Mapping[str, Any]) -> str:
    """Compensation and transform as applied, per technology (provenance), else as configured."""
    applied = prov.get("preprocessing") or {}
    if not applied:
        return _compensation_sentence(cfg.get("compensation", {})) + _transform_sentence(
            cfg.get("transform", {})
        )
    groups: dict[tuple[str, str, str, str, str], int] = {}
    for record in applied.values():
        params = record.get("transform_params") or {}
        key = (
            str(record.get("technology", "")),
            str(record.get("compensation", "")),
            str(record.get("compensation_reason", "")),
            str(record.get("transform", "")),
            json.dumps(params, sort_keys=True),
        )
        groups[key] = groups.get(key, 0) + 1
    sentences = []
    for (tech, comp, reason, kind, params), n in sorted(groups.items()):
        label = _TECHNOLOGY_LABELS.get(tech, tech or "an unrecognised technology")
        if comp == "file":
            how = "compensated with the spillover matrix stored in each file"
        elif comp.startswith("user"):
            how = f"compensated with the user-supplied matrix {comp.split(':', 1)[-1]}"
        else:
            how = f"not compensated ({reason or 'compensation was switched off'})"
        p = json.loads(params)
        if kind == "arcsinh":
            tf = f"arcsinh-transformed with cofactor {_num(p.get('cofactor'))}"
        elif kind == "logicle":
            tf = (
                f"logicle-transformed (Parks, Roederer & Moore 2006; T = {_num(p.get('T'))}, "
                f"W = {_num(p.get('W'))}, M = {_num(p.get('M'))}, A = {_num(p.get('A'))})"
            )
        else:
            tf = "left on their linear scale"
        sentences.append(
            f"{n} analysed file(s) were recognised as {label} from their keywords and channel "
            f"names; they were {how}, and their fluorescence or metal channels {tf}"
        )
    return "; ".join(sentences) + ". Scatter and Time channels kept their linear scale. "


def _time_qc_skips(table: pd.DataFrame | None) -> tuple[int, int, list[str]]:
    """``(skipped, files, reasons)``: files whose time QC was skipped, and why (distinct)."""
    if table is None or table.empty or "time_qc" not in table.columns:
        return 0, 0, []
    skipped = table["time_qc"].fillna("").astype(str) == "skipped"
    why = table.loc[skipped, "time_qc_skipped"] if "time_qc_skipped" in table else pd.Series()
    reasons = list(dict.fromkeys(str(r).split(" (")[0] for r in why.dropna() if str(r)))
    return int(skipped.sum()), len(table), reasons


def _with_fmo_sentence(n_in: float, n_out: float | None, fmo: pd.DataFrame | None) -> str:
    """The overview's totals (analysed and FMO tubes together), so the two agree."""
    f_in, f_out = _sum(fmo, "n_in"), _sum(fmo, "n_out")
    if not f_in or n_out is None or f_out is None:
        return ""
    total, kept = n_in + f_in, n_out + f_out
    return (
        f"With the {len(fmo)} FMO tube(s) read for their cut-offs, {total - kept:,.0f} of "
        f"{total:,.0f} events ({100 * (total - kept) / total:.2f}%) were removed. "
    )


def _qc_sentence(
    qc: Mapping[str, Any], table: pd.DataFrame | None, fmo: pd.DataFrame | None = None
) -> str:
    if qc and not qc.get("enabled", True):
        return "Acquisition quality control was switched off. "
    skipped, files, reasons = _time_qc_skips(table)
    time_on = qc.get("time", True)
    why = f" ({'; '.join(reasons)})" if reasons else ""
    if not time_on:
        state = "off"
    elif skipped and skipped == files:
        state = f"on, but skipped in every file{why}"
    elif skipped:
        state = f"on; skipped in {skipped} of {files} files{why}"
    else:
        state = "on"
    steps = []
    steps.append(
        "time-based removal of unstable acquisition stretches (bins of consecutive events "
        "whose flow rate or signal distribution departs from the rest of the file by more "
        "than 6 sampling errors in one bin, or 3.5 over a run of bins; smooth drift is kept): "
        f"{state}"
    )
    steps.append(
        f"removal of margin (saturated) events: {'on' if qc.get('margins', True) else 'off'}"
    )
    text = "Acquisition quality control: " + "; ".join(steps) + ". "
    n_in, n_out = _sum(table, "n_in"), _sum(table, "n_out")
    if n_in:
        removed = n_in - (n_out or 0)
        text += (
            f"Across the {len(table)} analysed tube(s) {removed:,.0f} of {n_in:,.0f} events "
            f"({100 * removed / n_in:.2f}%) were removed"
        )
        rt, rm = _sum(table, "removed_time"), _sum(table, "removed_margin")
        time_ran = time_on and not (skipped and skipped == files)
        if time_ran and (rt is not None or rm is not None):
            text += f" ({rt or 0:,.0f} by time QC, {rm or 0:,.0f} as margin events)"
        elif rm is not None:
            text += f" ({rm:,.0f} as margin events; no time QC was applied)"
        text += ". " + _with_fmo_sentence(n_in, n_out, fmo)
    return text


def _gating_sentence(
    gating: Mapping[str, Any], provenance: Mapping[str, Any], thresholds: pd.DataFrame | None
) -> str:
    templates = provenance_templates(provenance)
    setting = str(gating.get("template", "auto"))
    if templates:
        named = [f'"{n}" (SHA-256 {h})' if h else f'"{n}"' for n, h in templates]
        joined = named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]
        plural = "template" if len(named) == 1 else "templates"
        text = f"Populations were gated with the {plural} {joined} (template setting: {setting})"
    else:
        text = f'Populations were gated with the template setting "{setting}"'
    text += ". "
    pct = _ordinal(gating.get("fmo_percentile", 99.5))
    boots = gating.get("bootstrap", 200)
    if boots:
        sources = (
            f"from FMO controls at the {pct} percentile of the control (with the exact "
            "order-statistic 95% interval of that percentile), otherwise from density valleys "
            f"(with a bootstrap 95% interval of {_num(boots)} resamples)"
        )
    else:
        sources = (
            f"from FMO controls at the {pct} percentile of the control, otherwise from "
            "density valleys; no threshold intervals were computed (bootstrap = 0), so a batch "
            "threshold was not checked against each sample's own valley"
        )
    text += (
        f"Positivity thresholds were computed from the data: {sources}; an FMO or batch-pool "
        "threshold is set once per tissue and batch, a density or scatter threshold per "
        "sample, and a shift of a threshold between batches above "
        f"{_num(gating.get('max_threshold_drift', 0.1))} transformed units raises a drift "
        "warning. Percent-of-parent values carry Wilson 95% intervals; populations with fewer "
        f"than {_num(gating.get('min_events', 100))} events are flagged as low-event. "
    )
    if boots:
        text += _spread_sentence(thresholds)
    text += _threshold_scope_sentence(thresholds)
    text += _manual_sentence(thresholds, provenance)
    if thresholds is not None and not thresholds.empty and "rule" in thresholds.columns:
        counts = thresholds["rule"].fillna("").astype(str).replace("", "unspecified")
        counts = counts.value_counts().sort_index()
        rules = ", ".join(f"{rule} ({n})" for rule, n in counts.items())
        text += f"Threshold rules used in this batch: {rules}"
        if "control_file" in thresholds.columns:  # an overrides file is no control
            computed = thresholds[thresholds["rule"].astype(str) != "manual"]
            files = sorted({str(f) for f in computed["control_file"].dropna() if str(f)})
            if files:
                text += f"; control files: {', '.join(files)}"
        text += ". "
    return text + _plan_sentence(provenance.get("gating_plan") or {})


def _spread_sentence(thresholds: pd.DataFrame | None) -> str:
    """How a cut-off's interval was read as percentages (where the table has the shares)."""
    cols = ("percent_above_at_ci_low", "percent_above_at_ci_high")
    if thresholds is None or not set(cols) <= set(thresholds.columns):
        return ""
    return (
        "Each interval was also read as percentages: the share of the gate's events at or "
        "above the cut-off were it at either end of its interval (thresholds table). "
    )


def _threshold_scope_sentence(thresholds: pd.DataFrame | None) -> str:
    """Where this batch's thresholds were set: once per tissue and batch, or per sample.

    Batch-level rows (FMO controls, the batch pool, manual overrides) have no
    ``sample_id``; their groups are named as the sheet gives them (a sheet without tissue
    or batch makes one group, the whole run).
    """
    if thresholds is None or thresholds.empty or "sample_id" not in thresholds.columns:
        return ""
    rule = thresholds.get("rule", pd.Series("", thresholds.index)).fillna("").astype(str)
    note = thresholds.get("note", pd.Series("", thresholds.index)).fillna("").astype(str)
    # by hand (_manual_sentence), or a cut-off an override replaced: not set from events
    thresholds = thresholds[(rule != "manual") & ~note.str.startswith(SUPERSEDED)]
    listed = thresholds["sample_id"].fillna("").astype(str) != ""
    borrowed = thresholds.get("rule", pd.Series("", thresholds.index)).astype(str)
    borrowed = listed & borrowed.str.startswith(BORROWED)  # its partner's cut-off
    evidence = thresholds.get("evidence", pd.Series("", thresholds.index)).fillna("")
    copied = listed & (evidence.astype(str) == "batch_pool")  # the pool's, applied per sample
    value = pd.to_numeric(thresholds.get("value", pd.Series(0.0, thresholds.index)),
                          errors="coerce")  # fmt: skip
    unset = listed & ~borrowed & ~copied & value.isna()
    own, shared = listed & ~borrowed & ~copied & ~unset, thresholds[~listed].fillna("")
    per_sample = f"{int(own.sum())} threshold(s) were set per sample from its own events"
    if borrowed.any():
        per_sample += (f" and {int(borrowed.sum())} taken by a stimulated tube from its "
                       "unstimulated partner")  # fmt: skip
    if unset.any():
        per_sample += (f"; {int(unset.sum())} could not be set (too few events, or refuted "
                       "by them: see each sample's note)")  # fmt: skip
    if shared.empty:
        return f"In this batch no FMO control or batch pool set a threshold: all {per_sample}. "
    rules = shared.get("rule", pd.Series("", shared.index)).astype(str)
    pool = rules.str.contains("batch pool")
    parts = []
    if (~pool).any():
        fixed = shared[~pool]
        origin = "FMO controls" if rules[~pool].str.startswith("fmo").any() else "batch-level rules"
        where = _where_set(fixed, ("tissue", "batch"))
        parts.append(f"{len(fixed)} threshold(s) from {origin} were set {where}")
    if pool.any():
        parts.append(_pool_scope(shared[pool]))
    text = "In this batch " + "; ".join(parts)
    return text + (f"; {per_sample}. " if listed.any() else ". ")


def _where_set(rows: pd.DataFrame, columns: Sequence[str]) -> str:
    """``"once per tissue and batch (blood/H1, liver/H1)"`` for batch-level rows."""
    cols = [c for c in columns if (rows.get(c, pd.Series(dtype=str)) != "").any()]
    if not cols:
        return "once for the whole run (the sheet gives no tissue or batch)"
    groups = sorted({"/".join(str(r[c]) for c in cols) for r in rows.to_dict("records")})
    return f"once per {' and '.join(cols)} ({', '.join(groups)})"


def _pool_scope(rows: pd.DataFrame) -> str:
    """The batch pool's thresholds: one valley per batch over all its tissues' events.

    The pool writes its cut-off once per tissue of the batch (the engine looks thresholds
    up by tissue and batch), so its rows are counted per batch, gate and marker.
    """
    keys = [c for c in ("batch", "gate", "marker") if c in rows.columns]
    n = len(rows.drop_duplicates(keys)) if keys else len(rows)
    tissues: dict[str, set[str]] = {}
    for r in rows.to_dict("records"):
        tissues.setdefault(str(r.get("batch", "")), set()).add(str(r.get("tissue", "")))
    named = [
        f"{batch}: {', '.join(sorted(t for t in ts if t))}" if any(ts) else batch
        for batch, ts in sorted(tissues.items())
        if batch or any(ts)
    ]
    return (
        f"{n} threshold(s) from the batch pool were set once per batch, from the events of all "
        "its tissues pooled" + (f" ({'; '.join(named)})" if named else "")
    )


def _manual_sentence(thresholds: pd.DataFrame | None, provenance: Mapping[str, Any]) -> str:
    """How many thresholds were set by hand, from which file (its SHA-256), and by whom."""
    if thresholds is None or thresholds.empty or "rule" not in thresholds.columns:
        return ""
    manual = thresholds[thresholds["rule"].astype(str) == "manual"]
    if manual.empty:
        return ""
    files = provenance.get("overrides_sha256") or {}
    named = "; ".join(f"{path} (SHA-256 {sha})" for path, sha in sorted(files.items()))
    if not named:
        named = ", ".join(sorted({str(f) for f in manual.get("control_file", []) if str(f)}))
    notes = manual.get("note", pd.Series("", manual.index)).fillna("").astype(str)
    who = sorted({w.strip() for w in notes.str.extract(r"\(set by ([^()]*)\)$")[0].dropna()})
    text = (f"{len(manual)} threshold(s) were set by hand (rule manual) from the overrides "
            f"file {named or 'given'}")  # fmt: skip
    return text + (f", set by {', '.join(who)}. " if who else ". ")


def _plan_sentence(plan: Mapping[str, Any]) -> str:
    """How each template was adapted to the batch's panel (substituted, skipped gates)."""
    parts = []
    for name, record in sorted(plan.items()):
        subs = [f"{s['gate']} as {s['applied']}" for s in record.get("substitutions", [])]
        lost = list(record.get("unreportable", []))
        detail = f'Template "{name}" was resolved against the panel of the batch'
        detail += f" ({record.get('technology', '')}; NK anchor {record.get('anchor', '?')})"
        if subs:
            detail += "; substituted: " + "; ".join(subs)
        if lost:
            detail += "; not reportable with this panel: " + ", ".join(lost)
        if said := _lineage_words(record.get("lineage") or []):
            detail += f"; the gates leading to NK hold: {said}"
        parts.append(detail)
    return ". ".join(parts) + ". " if parts else ""


def _lineage_words(lineage: list[Mapping[str, Any]]) -> str:
    """``Live (Pt195Di- & CD45+): cisplatin-negative CD45-bright cells ...`` per described gate.

    A parent's share reads as what its name says unless told otherwise: a mass-cytometry
    "Live" gate that also needs CD45-bright removes granulocytes with the dead cells.
    """
    return "; ".join(
        f"{g['gate']} ({g['applied']}): {g['description']}" for g in lineage if g.get("description")
    )


def _where_sentence(ex: Mapping[str, Any], prov: Mapping[str, Any]) -> str:
    """Where the per-sample steps ran: the worker count the run used, else the setting's."""
    if ex.get("scheduler"):
        return f"on the Dask scheduler {ex['scheduler']}"
    setting = int(ex.get("workers", 1) or 0)
    used = (prov.get("execution") or {}).get("workers")
    if used is None and setting == 0:
        return "on one local worker process per core"
    n = int(used if used is not None else setting)
    per_core = " (one per core)" if setting == 0 else ""
    if n <= 1:
        return f"in one process{per_core}"
    return f"on up to {n} local worker processes{per_core}"


def _unread_clause(unread: Any) -> str:
    """The labelled channels no marker was read from, which the analysis left out."""
    if not unread:
        return ""
    return (
        f"; {len(unread)} labelled channel(s) whose label names no marker the table knows "
        f"were left out of the analysis: {format_unread(unread)}"
    )


def methods_text(
    config: Any,
    provenance: Mapping[str, Any] | None,
    tables: Mapping[str, pd.DataFrame] | None,
    *,
    metadata: pd.DataFrame | None = None,
) -> str:
    """Generate the methods paragraph for a run.

    Parameters
    ----------
    config
        The effective run configuration (``config_to_dict`` output or a ``RunConfig``).
    provenance
        The provenance record (versions, templates and hashes, scoring definitions).
    tables
        The result tables (``status``, ``qc``, ``thresholds`` are summarised).
    metadata
        The metadata sheet; its ``species`` picks the default score definitions when the
        provenance does not carry them.

    Returns
    -------
    str
        Plain text, paragraphs separated by blank lines.
    """
    cfg = as_plain_dict(config)
    prov = provenance or {}
    tabs = dict(tables or {})
    versions = provenance_versions(prov)
    random_state = prov.get("random_state", cfg.get("execution", {}).get("random_state", 0))
    nk = versions.get("nkflow", "unknown version")
    deps = ", ".join(f"{k} {v}" for k, v in versions.items() if k != "nkflow")
    read = (
        f"{_batch_sentence(tabs)}Files were read and analysed with nkflow {nk}"
        + (f" ({deps})" if deps else "")
        + "; channels were resolved to markers through nkflow's alias table"
        + (f" and the panel file {cfg['panel']}" if cfg.get("panel") else "")
        + _unread_clause(prov.get("unread_labels"))
        + ". "
    )
    analysed_qc, fmo_qc = split_qc(tabs.get("qc"))
    p1 = read + _preprocessing_sentences(cfg, prov)
    p1 += _qc_sentence(cfg.get("qc", {}), analysed_qc, fmo_qc)
    p2 = _gating_sentence(cfg.get("gating", {}), prov, tabs.get("thresholds"))
    p3 = clustering_sentence(cfg.get("clustering", {}), prov, random_state)
    p3 += scoring_sentence(cfg.get("scoring", {}), prov, metadata, tabs)
    ex = cfg.get("execution", {})
    if ex:
        p3 += (
            f"Per-sample steps ran {_where_sentence(ex, prov)}; every random step used "
            f"random_state = {_num(random_state)}."
        )
    return "\n\n".join(p.strip() for p in (p1, p2, p3) if p.strip())
