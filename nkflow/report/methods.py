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
from collections.abc import Mapping
from typing import Any

import pandas as pd

from ..exceptions import NkflowError

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


def _num(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e15 else repr(value)
    return str(value)


def _ordinal(value: Any) -> str:
    text = _num(value)
    if text.endswith("1") and not text.endswith("11"):
        return text + "st"
    if text.endswith("2") and not text.endswith("12"):
        return text + "nd"
    if text.endswith("3") and not text.endswith("13"):
        return text + "rd"
    return text + "th"


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
    return f"The batch comprised {len(status)} FCS file(s) ({', '.join(parts + others)}). "


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


def _qc_sentence(qc: Mapping[str, Any], table: pd.DataFrame | None) -> str:
    if qc and not qc.get("enabled", True):
        return "Acquisition quality control was switched off. "
    steps = []
    steps.append(
        "time-based removal of unstable acquisition stretches (bins of consecutive events "
        "whose flow rate or signal distribution departs from the rest of the file by more "
        "than 6 sampling errors in one bin, or 3.5 over a run of bins; smooth drift is kept): "
        f"{'on' if qc.get('time', True) else 'off'}"
    )
    steps.append(
        f"removal of margin (saturated) events: {'on' if qc.get('margins', True) else 'off'}"
    )
    text = "Acquisition quality control: " + "; ".join(steps) + ". "
    n_in, n_out = _sum(table, "n_in"), _sum(table, "n_out")
    if n_in:
        removed = n_in - (n_out or 0)
        text += (
            f"Across the batch {removed:,.0f} of {n_in:,.0f} events "
            f"({100 * removed / n_in:.2f}%) were removed"
        )
        rt, rm = _sum(table, "removed_time"), _sum(table, "removed_margin")
        if rt is not None or rm is not None:
            text += f" ({rt or 0:,.0f} by time QC, {rm or 0:,.0f} as margin events)"
        text += ". "
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
    text += _threshold_scope_sentence(thresholds)
    if thresholds is not None and not thresholds.empty and "rule" in thresholds.columns:
        counts = thresholds["rule"].fillna("").astype(str).replace("", "unspecified")
        counts = counts.value_counts().sort_index()
        rules = ", ".join(f"{rule} ({n})" for rule, n in counts.items())
        text += f"Threshold rules used in this batch: {rules}"
        if "control_file" in thresholds.columns:
            files = sorted({str(f) for f in thresholds["control_file"].dropna() if str(f)})
            if files:
                text += f"; control files: {', '.join(files)}"
        text += ". "
    return text + _plan_sentence(provenance.get("gating_plan") or {})


def _threshold_scope_sentence(thresholds: pd.DataFrame | None) -> str:
    """Where this batch's thresholds were set: once per tissue and batch, or per sample.

    Batch-level rows (FMO controls, the batch pool, manual overrides) have no
    ``sample_id``; their groups are named as the sheet gives them (a sheet without tissue
    or batch makes one group, the whole run).
    """
    if thresholds is None or thresholds.empty or "sample_id" not in thresholds.columns:
        return ""
    own = thresholds["sample_id"].fillna("").astype(str) != ""
    shared = thresholds[~own].fillna("")
    per_sample = f"{int(own.sum())} threshold(s) were set per sample from its own events"
    if shared.empty:
        return f"In this batch no FMO control or batch pool set a threshold: all {per_sample}. "
    rules = shared["rule"].astype(str) if "rule" in shared.columns else pd.Series(dtype=str)
    origins = [name for name, hit in (
        ("FMO controls", rules.str.startswith("fmo").any()),
        ("the batch pool", rules.str.contains("batch pool").any()),
        ("manual overrides", (rules == "manual").any()),
    ) if hit] or ["batch-level rules"]  # fmt: skip
    cols = [c for c in ("tissue", "batch") if (shared.get(c, pd.Series(dtype=str)) != "").any()]
    if cols:
        groups = sorted({"/".join(str(r[c]) for c in cols) for r in shared.to_dict("records")})
        where = f"once per {' and '.join(cols)} ({', '.join(groups)})"
    else:
        where = "once for the whole run (the sheet gives no tissue or batch)"
    text = f"In this batch {len(shared)} threshold(s) from {' and '.join(origins)} were set {where}"
    return text + (f"; {per_sample}. " if own.any() else ". ")


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
        parts.append(detail)
    return ". ".join(parts) + ". " if parts else ""


def _clustering_sentence(cl: Mapping[str, Any], random_state: Any) -> str:
    if cl and not cl.get("enabled", True):
        return "Clustering was switched off. "
    markers = cl.get("markers") or []
    on = (
        f"on {', '.join(map(str, markers))}"
        if markers
        else "on the panel's phenotype markers other than those stimulation moves (CD69, "
        "CD62L, CD16)"
    )
    return (
        f'Gated "{cl.get("population", "NK")}" cells were pooled across the batch (at most '
        f"{_num(cl.get('per_sample_cap', 20000))} cells per sample for training) and clustered "
        f"{on} with a {_num(cl.get('xdim', 10))}×{_num(cl.get('ydim', 10))} self-organising "
        f"map and consensus metaclustering into k = {_num(cl.get('n_metaclusters', 10))} "
        f"metaclusters (random_state = {_num(random_state)}), fitted on the unstimulated "
        "tubes so that stimulation cannot create metaclusters of its own; every cell of every "
        "tube (stimulated ones included) was then mapped to its metacluster sample by sample. "
    )


#: Flag criteria (all must hold), in the order they are worded.
_FLAG_RULES = {
    "min_net": "AREG net response (stim − unstim) ≥ {} percentage points",
    "min_areg_events": "≥ {} AREG+ events in the stimulated tube",
    "min_events": "≥ {} events in the population in both tubes",
    "require_fmo_threshold": "an AREG cut-off from an FMO control required: {}",
    "require_positive_control": "the batch's positive control responded (required: {})",
    "control_population": "positive-control population {}",
    "control_min_net": "positive-control net response ≥ {} percentage points",
    "control_min_areg_events": "positive control ≥ {} AREG+ events",
    "control_min_events": "positive control ≥ {} events",
    "populations": "the population is one of the flaggable ones ({})",
    "conditions": "the stimulation condition may raise a flag ({})",
}
#: Other score definitions.
_SCORE_SETTINGS = {
    "ri_cut": "repair-biased = AREG-responsive and polarisation index RI > {}",
    "markers": "markers {}",
    "percentile": "AREG cut-offs computed by scoring at the {} percentile of the FMO",
    "confidence": "interval coverage {}",
    "residency_population": "residency read from the {} gate of the unstimulated tube",
    "residency_in_score": "residency in the ordering score: {}",
    "ranking": "within-batch and -condition ordering score z(AREG_net) + z(RI), for "
    "ordering only: {}",
    "glucocorticoid_conditions": "glucocorticoid stimulation conditions (pro-tumour "
    "interpretation): {}",
    "consistency_bright": "consistency read-out: {} AREG net",
    "consistency_dim": "compared with {} (reported, not a rule)",
    "timepoint_order": "timepoint order: {}",
}
_SKIP_KEYS = ("source", "enabled", "definitions", "species")


def _definition_text(key: str, value: Any, labels: Mapping[str, str]) -> str:
    if isinstance(value, Mapping):
        value = ", ".join(f"{k}={_num(v)}" for k, v in value.items())
    elif isinstance(value, list | tuple):
        value = ", ".join(map(str, value))
    shown = _ordinal(value) if key == "percentile" else _num(value)
    label = labels.get(key)
    return label.format(shown) if label else f"{key} = {shown}"


def _scoring_definitions(
    sc: Mapping[str, Any], provenance: Mapping[str, Any], metadata: pd.DataFrame | None
) -> tuple[Mapping[str, Any], str]:
    """The effective score definitions: from provenance, else loaded as tl.score would."""
    defs = provenance.get("scoring") if isinstance(provenance, Mapping) else None
    if isinstance(defs, Mapping) and defs:
        return defs, str(defs.get("source") or sc.get("definitions") or "")
    species = "human"
    if metadata is not None and "species" in metadata.columns:
        found = set(metadata["species"].fillna("").astype(str).str.lower()) - {""}
        species = "mouse" if found == {"mouse"} else "human"
    try:
        from ..tl._score_config import load_scoring_config

        loaded = load_scoring_config(str(sc.get("definitions") or "") or species)
    except (ImportError, NkflowError, OSError):
        return {}, ""
    plain = dataclasses.asdict(loaded)
    return plain, str(plain.get("source", ""))


def _timepoint_text(configured: Any, metadata: pd.DataFrame | None) -> str:
    """The timepoint order the run applied (``metadata.attrs``), and whether it was configured."""
    configured = [str(t) for t in configured or ()]
    applied = None if metadata is None else metadata.attrs.get("timepoint_order")
    if applied is None:  # not from a run: the setting alone
        if configured:
            return f"timepoint order: {', '.join(configured)}"
        return "timepoint order: none configured (the sheet's timepoints in their natural order)"
    applied = [str(t) for t in applied]
    if not applied:
        return "timepoint order: none (the sheet gives no timepoints)"
    if configured and applied == configured:
        return f"timepoint order: {', '.join(applied)} (configured)"
    how = f"configured {', '.join(configured)}, then" if configured else "none configured:"
    return f"timepoint order: {', '.join(applied)} ({how} the natural order)"


def _scoring_sentence(
    sc: Mapping[str, Any], provenance: Mapping[str, Any], metadata: pd.DataFrame | None
) -> str:
    if sc and not sc.get("enabled", True):
        return "Repair scoring was switched off. "
    defs, source = _scoring_definitions(sc, provenance, metadata)
    definitions = source or str(sc.get("definitions") or "") or "the species default"
    text = (
        f"Repair profiles used the score definitions from {definitions}: AREG net response "
        "(stimulated minus unstimulated, Newcombe interval), AREG/IFN-γ polarisation index, "
        "the clearance axis (NKG2D+, CD107a net) kept separate, and the tissue-resident "
        "fraction reported as context. A population was flagged AREG-responsive only when "
        "all of these held: the lower bound of the AREG net interval was above 0"
    )
    mouse = str(defs.get("species", "")).lower() == "mouse"
    # mouse NK carry no CD56: the CD56bright vs CD56dim read-out does not exist there
    skip = (*_SKIP_KEYS, "consistency_bright", "consistency_dim") if mouse else _SKIP_KEYS
    keys = [str(k) for k in defs if str(k) not in skip]
    rules = [_definition_text(k, defs[k], _FLAG_RULES) for k in _FLAG_RULES if k in keys]
    others = [
        _timepoint_text(defs[k], metadata)
        if k == "timepoint_order"
        else _definition_text(k, defs[k], _SCORE_SETTINGS)
        for k in keys
        if k not in _FLAG_RULES
    ]
    text += "".join(f"; {r}" for r in rules) + ". "
    if others:
        text += "Other score settings: " + "; ".join(others) + ". "
    text += (
        "Each stimulation condition (the sheet's stimulation value of a stimulated tube) was "
        "scored against the unstimulated tube of the same donor, tissue, timepoint and batch, "
        "and conditions were never pooled. "
    )
    if mouse:
        text += (
            "The tubes were scored as mouse: mouse NK cells have not been shown to make AREG "
            "(human blood NK cells have, Wang et al., EMBO J 2023), so every AREG score is "
            "labelled exploratory, and the CD56bright versus CD56dim read-out does not apply "
            "(mouse NK cells carry no CD56). "
        )
    else:
        text += (
            "Human blood NK cells have been reported to make AREG (Wang et al., EMBO J 2023; "
            "most in CD56bright, induced by IL-2/IL-15), so the CD56bright versus CD56dim AREG "
            "net is reported per tube as a consistency read-out; mouse NK cells have not been "
            "shown to make AREG and mouse AREG scores are labelled exploratory. "
        )
    text += (
        "Rows from tumour or peri-tumour tissue, glucocorticoid-exposed samples "
        "or a glucocorticoid condition carry the interpretation that AREG+ NK may be "
        "pro-tumour and immunosuppressive there (Wei et al., Adv Sci 2025), not repair. "
    )
    return text


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
        + ". "
    )
    p1 = (
        read + _preprocessing_sentences(cfg, prov) + _qc_sentence(cfg.get("qc", {}), tabs.get("qc"))
    )
    p2 = _gating_sentence(cfg.get("gating", {}), prov, tabs.get("thresholds"))
    p3 = _clustering_sentence(cfg.get("clustering", {}), random_state) + _scoring_sentence(
        cfg.get("scoring", {}), prov, metadata
    )
    ex = cfg.get("execution", {})
    if ex:
        p3 += (
            f"Per-sample steps ran {_where_sentence(ex, prov)}; every random step used "
            f"random_state = {_num(random_state)}."
        )
    return "\n\n".join(p.strip() for p in (p1, p2, p3) if p.strip())
