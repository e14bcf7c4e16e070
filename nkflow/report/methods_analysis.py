"""The analysis sentences of the methods paragraph: clustering and repair scoring.

Split from :mod:`nkflow.report.methods` (which keeps reading, preprocessing, QC, gating and
execution). Each sentence states what the run did: the markers the SOM was trained on and
the consensus settings it used (the provenance's ``clustering`` record), and whether scoring
had anything to score (the scores table), and why not.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import pandas as pd

from .._dates import date_order
from ..exceptions import NkflowError
from ..tl._score_messages import CONTROL_INSUFFICIENT
from ..tl._score_sensitivity import fragile_counts

__all__ = [
    "clustering_sentence",
    "control_tube_conditions",
    "nothing_scored_reasons",
    "own_gate_batches",
    "scoring_sentence",
]


def _num(value: Any) -> str:
    """A setting as text: booleans as yes/no, whole floats without ``.0``."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e15 else repr(value)
    return str(value)


def _ordinal(value: Any) -> str:
    """``99.5`` -> ``99.5th``, ``1`` -> ``1st``."""
    text = _num(value)
    if text.endswith("1") and not text.endswith("11"):
        return text + "st"
    if text.endswith("2") and not text.endswith("12"):
        return text + "nd"
    if text.endswith("3") and not text.endswith("13"):
        return text + "rd"
    return text + "th"


def clustering_sentence(
    cl: Mapping[str, Any], provenance: Mapping[str, Any], random_state: Any
) -> str:
    """How the batch was clustered: the markers the SOM was trained on and its settings.

    Parameters
    ----------
    cl
        The ``clustering`` configuration (plain dict).
    provenance
        The provenance record; its ``clustering`` entry (what the fit used: ``markers``,
        ``n_train``, ``rlen``, ``n_resamples``, ``resample_fraction``, linkages, the
        metacluster count reached) is preferred over the configuration, its ``sizing``
        says which settings the cells did not support (each a sentence of its own), and
        ``clustering_skipped`` says why there was none.
    random_state
        The run's seed.

    Returns
    -------
    str
        One or two sentences.
    """
    if cl and not cl.get("enabled", True):
        return "Clustering was switched off. "
    skipped = provenance.get("clustering_skipped")
    if skipped:
        return f"Clustering was not run: {skipped}. "
    fit = provenance.get("clustering") or {}
    get = lambda key, default=None: fit.get(key, cl.get(key, default))  # noqa: E731
    markers = fit.get("markers") or cl.get("markers") or []
    if markers:
        on = f"on {len(markers)} marker(s): {', '.join(map(str, markers))}"
    else:
        on = (
            "on the panel's phenotype markers other than those stimulation moves (CD69, "
            "CD62L, CD16)"
        )
    pooled = f"{int(fit['n_train']):,} cells" if "n_train" in fit else "cells"
    nodes = int(get("xdim", 10)) * int(get("ydim", 10))
    # how thin the map is spread: 332 NK on 100 nodes is 3.3 cells per node
    per_node = (
        f"; {int(fit['n_train']) / nodes:,.1f} training cells per node on average"
        if "n_train" in fit
        else ""
    )
    alpha = fit.get("alpha") or [cl.get("alpha_start", 0.05), cl.get("alpha_end", 0.01)]
    k = get("n_metaclusters", 10)
    asked = fit.get("n_metaclusters_requested")
    k_text = f"k = {_num(k)}" + (
        f" (of {_num(asked)} requested)" if asked is not None and asked != k else ""
    )
    return (
        f'Gated "{get("population", "NK")}" cells were pooled across the batch ({pooled}, '
        f"at most {_num(get('per_sample_cap', 20000))} cells per sample, for training) and "
        f"clustered {on}, with a self-organising map on a "
        f"{_num(get('xdim', 10))}×{_num(get('ydim', 10))} grid ({_num(get('rlen', 10))} "
        f"training passes, learning rate {_num(alpha[0])} to "
        f"{_num(alpha[-1])}, {get('som_init', 'random')} start{per_node}) and consensus "
        "metaclustering "
        f"of its nodes ({_num(get('n_resamples', 100))} resampling rounds, each drawing "
        f"{float(get('resample_fraction', 0.9)):.0%} of the nodes, {get('linkage', 'average')} "
        f"linkage within each round, {get('final_linkage', 'average')} linkage on "
        f"1 − consensus) into {k_text} metaclusters (random_state = {_num(random_state)}), "
        "fitted on the unstimulated tubes so that stimulation cannot create metaclusters of "
        "its own; every cell of every tube (stimulated ones included) was then mapped to its "
        "metacluster sample by sample. "
    ) + "".join(f"{_sentence(note)} " for note in fit.get("sizing") or ())


def _sentence(text: Any) -> str:
    """A clause as a sentence: capital first letter, full stop."""
    text = str(text).strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


#: Flag criteria (all must hold), in the order they are worded.
_FLAG_RULES = {
    "min_net": "AREG net response (stim − unstim) ≥ {} percentage point{s}",
    "min_areg_events": "≥ {} AREG+ events in the stimulated tube",
    "min_events": "≥ {} events in the population in both tubes",
    "require_fmo_threshold": (
        "the AREG cut-off was set on an FMO control",
        "the AREG cut-off came from an FMO control or, where none was given, a fallback rule "
        "(an FMO was not required)",
    ),
    "require_positive_control": (
        "the batch's positive control responded",
        "a responding positive control was not required",
    ),
    "control_population": "positive-control population {}",
    "control_min_net": "positive-control net response ≥ {} percentage point{s}",
    "control_min_areg_events": "positive control ≥ {} AREG+ events",
    "control_min_events": "positive control ≥ {} events",
    "populations": "the population is one of the flaggable ones ({})",
    "conditions": "the stimulation condition may raise a flag ({}; * = every condition)",
}
#: Other score definitions.
_SCORE_SETTINGS = {
    "ri_cut": "repair-biased = AREG-responsive and polarisation index RI > {}",
    "markers": "markers {}",
    "percentile": "AREG cut-offs computed by scoring at the {} percentile of the FMO",
    "confidence": "interval coverage {}",
    "residency_population": "residency read from the {} gate of the unstimulated tube",
    "residency_in_score": "residency in the ordering score: {}",
    "ranking": "within-batch and -condition ordering score z(AREG_net) + z(RI), gated "
    "populations and metaclusters ranked apart, for ordering only: {}",
    "glucocorticoid_conditions": "glucocorticoid stimulation conditions (pro-tumour "
    "interpretation): {}",
    "inhibitor_conditions": "conditions with an inhibitor of NK AREG, where a flag is "
    "unexpected and says so (TGF-β1 blocks human NK AREG, Wang et al., EMBO J 2023): {}",
    "consistency_bright": "consistency read-out: {} AREG net",
    "consistency_dim": "compared with {} (reported, not a rule)",
    "timepoint_order": "timepoint order: {}",
}
_SKIP_KEYS = ("source", "enabled", "definitions", "species")

#: the clearance axis' read-outs and the scores columns that hold them
_CLEARANCE = (("NKG2D+", "NKG2D", "pct_nkg2d_stim"), ("CD107a net", "CD107a", "cd107a_net"))


def _clearance_text(scores: pd.DataFrame | None) -> str:
    """The clearance axis, saying which of its markers the panel lacks (a mouse panel)."""
    if scores is None or scores.empty:
        return "the clearance axis (NKG2D+, CD107a net) kept separate"
    missing = [
        marker
        for _, marker, col in _CLEARANCE
        if col not in scores.columns
        or not pd.to_numeric(scores[col], errors="coerce").notna().any()
    ]
    if len(missing) == len(_CLEARANCE):
        return "the clearance axis (NKG2D+, CD107a net; not in this panel, so not measured)"
    shown = ", ".join(read for read, marker, _ in _CLEARANCE if marker not in missing)
    lack = f"; {', '.join(missing)} not in this panel" if missing else ""
    return f"the clearance axis ({shown}{lack}) kept separate"


def _definition_text(key: str, value: Any, labels: Mapping[str, str | tuple[str, str]]) -> str:
    if isinstance(value, Mapping):
        value = ", ".join(f"{k}={_num(v)}" for k, v in value.items())
    elif isinstance(value, list | tuple):
        value = ", ".join(map(str, value))
    if isinstance(value, bool) and isinstance(labels.get(key), tuple):
        return labels[key][0 if value else 1]  # a switch reads as what it required
    shown = _ordinal(value) if key == "percentile" else _num(value)
    label = labels.get(key)
    if isinstance(label, tuple):  # a switch given as text: say it with its value
        return f"{label[0]}: {shown}"
    return label.format(shown, s="" if shown == "1" else "s") if label else f"{key} = {shown}"


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
    dated = date_order([t for t in applied if t not in configured])
    why = dated[1] if dated else "the natural order"
    return f"timepoint order: {', '.join(applied)} ({how} {why})"


def nothing_scored_reasons(
    tables: Mapping[str, pd.DataFrame], metadata: pd.DataFrame | None
) -> list[str]:
    """Why a run's scoring produced no rows (empty when it scored something).

    Parameters
    ----------
    tables
        The run's tables: an absent or empty ``scores`` table with an analysed batch
        means nothing was scored; ``counts`` (its ``areg_channel``) says whether the panel
        has AREG.
    metadata
        The sheet (its ``role`` says whether there were stimulated tubes).

    Returns
    -------
    list of str
        The reasons, worded (``[]`` when scores exist or no run tables are given).
    """
    scores = tables.get("scores")
    if scores is None or not scores.empty:
        return []
    reasons = []
    if metadata is not None and "role" in metadata.columns:
        roles = metadata["role"].fillna("").astype(str).str.strip().str.lower()
        if not (roles == "stim").any():
            reasons.append("the batch has no stimulated tube")
        elif not (roles == "unstim").any():
            reasons.append("no stimulated tube has an unstimulated partner")
    counts = tables.get("counts")
    if counts is not None and "areg_channel" in counts.columns:
        channels = counts["areg_channel"].fillna("").astype(str).str.strip()
        if not (channels != "").any():
            reasons.append("the panel has no AREG channel")
    return reasons or ["no stimulated tube could be paired with an unstimulated one"]


def scoring_sentence(
    sc: Mapping[str, Any],
    provenance: Mapping[str, Any],
    metadata: pd.DataFrame | None,
    tables: Mapping[str, pd.DataFrame] | None = None,
) -> str:
    """The repair-scoring sentences: definitions, flag rules, context; or why none ran.

    Parameters
    ----------
    sc
        The ``scoring`` configuration (plain dict).
    provenance
        The provenance record (its ``scoring`` entry holds the effective definitions).
    metadata
        The sheet (species picks the default definitions; roles explain an empty run).
    tables
        The run's tables; an empty ``scores`` table means scoring had nothing to score.

    Returns
    -------
    str
        Plain text.
    """
    if sc and not sc.get("enabled", True):
        return "Repair scoring was switched off. "
    why = nothing_scored_reasons(tables or {}, metadata)
    if why:
        return (
            f"Repair scoring had nothing to score: {' and '.join(why)}, so no AREG net "
            "response, polarisation index or flag was computed. "
        )
    defs, source = _scoring_definitions(sc, provenance, metadata)
    definitions = source or str(sc.get("definitions") or "") or "the species default"
    text = (
        f"Repair profiles used the score definitions from {definitions}: AREG net response "
        "(stimulated minus unstimulated, Newcombe interval), AREG/IFN-γ polarisation index, "
        f"{_clearance_text((tables or {}).get('scores'))}, and the tissue-resident "
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
    text += _cutoff_check_text((tables or {}).get("flags"))
    text += _unflaggable_text(defs.get("populations"), (tables or {}).get("scores"))
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
            "CD56bright NK more often AREG+ than CD56dim, induced by IL-2/IL-15), so the "
            "CD56bright versus CD56dim AREG "
            "net is reported per tube as a consistency read-out; mouse NK cells have not been "
            "shown to make AREG and mouse AREG scores are labelled exploratory. "
        )
    text += _control_source_text((tables or {}).get("controls"))
    text += (
        "Glucocorticoid exposure was taken from the sheet's glucocorticoid column or, where "
        "that was empty, read from the treatment text (generic steroid names, and regimens "
        "that contain one, such as CHOP, which contains prednisone; a 'no' beside a treatment "
        "naming a steroid was read as unknown, since the sheet says no but the treatment names "
        "one, with a warning), and every flag states it. Rows from tumour or "
        "peri-tumour tissue, glucocorticoid-exposed samples or a glucocorticoid condition "
        "carry the reading of that context (tumour NK make more AREG, in skin tumours; "
        "glucocorticoids induce it through NR3C1; Wei et al., Adv Sci 2025): AREG+ NK may be "
        "pro-tumour and immunosuppressive there, not repair. Where exposure was unknown (a "
        "treatment named without a recorded exposure, or the two records disagree), the flag "
        "says that reading cannot be excluded; where the sheet names neither an exposure nor "
        "a treatment, the flag says 'not recorded'. "
    )
    return text


def _cutoff_check_text(flags: pd.DataFrame | None) -> str:
    """How each flag was checked across its AREG FMO cut-off's interval, and how many held."""
    text = (
        "Each flag was also checked at both ends of its AREG FMO cut-off's own interval (the "
        "exact order-statistic interval of the FMO percentile): AREG+ events were counted at "
        "either end in the stimulated and the unstimulated tube and the flag's interval, "
        "minimum-net and AREG+ event rules applied again; a flag that failed them at an end "
        "was kept, since the rule at the cut-off itself is the pre-registered one, and "
        "labelled fragile (it rests on the cut-off's exact place)"
    )
    limits = (
        " The positive control and the IFN-γ, NKG2D and CD107a cut-offs (and so the "
        "repair index) were not checked this way. "
    )
    fragile, checked, unchecked = fragile_counts(flags)
    if not checked and not unchecked:
        return text + "." + limits
    if not checked:
        return text + "; no flag here had a cut-off with a closed interval to check." + limits
    said = f"; {fragile} of {checked} flag(s) checked here were fragile"
    if unchecked:
        said += f", {unchecked} could not be checked (no interval, or an open bound)"
    return text + said + "." + limits


def _unflaggable_text(populations: Any, scores: pd.DataFrame | None) -> str:
    """Flaggable populations no stimulated tube had: listed, yet they could not be flagged."""
    if scores is None or scores.empty or "population" not in scores.columns:
        return ""
    listed = [str(p) for p in (populations or ()) if not str(p).endswith(":*")]
    scored = set(scores["population"].astype(str))
    absent = [p for p in listed if p not in scored]
    if not absent:
        return ""
    text = (
        f"Of the flaggable populations, {', '.join(absent)} were not gated in any stimulated "
        "tube, so they could not be flagged"
    )
    if any("trNK" in p or "circNK" in p for p in absent):
        text += (
            " (the templates gate the residency subsets in the unstimulated tube only, because "
            "stimulation raises CD69 and sheds CD16 and CD62L; their residency is reported as "
            "context)"
        )
    return text + ". "


def own_gate_batches(controls: pd.DataFrame | None) -> list[str]:
    """The batches without a positive-control tube, whose tubes' own ILC gate stood in.

    Parameters
    ----------
    controls
        ``tables/controls.csv`` (``batch``, ``control_source``), or None.

    Returns
    -------
    list of str
        Sorted batch names (empty when the table does not say).
    """
    if controls is None or controls.empty or "control_source" not in controls.columns:
        return []
    if "batch" not in controls.columns:
        return []
    own = controls["control_source"].astype(str) == "stimulated tube's own gate"
    return sorted(set(controls.loc[own, "batch"].astype(str)))


def control_tube_conditions(
    controls: pd.DataFrame | None, scored: pd.DataFrame | None
) -> list[tuple[str, str, list[str]]]:
    """Batches whose positive-control tube was run under other conditions than it judged.

    Parameters
    ----------
    controls
        ``tables/controls.csv`` (``batch``, ``condition``, ``control_source``).
    scored
        The scores or flags (``batch``, ``condition``): the conditions each batch scored.

    Returns
    -------
    list of (str, str, list of str)
        ``(batch, control tube condition(s), other conditions it was applied to)``.
    """
    need = {"batch", "condition"}
    if controls is None or controls.empty or scored is None or scored.empty:
        return []
    if not need | {"control_source"} <= set(controls.columns) or not need <= set(scored):
        return []
    tubes = controls[controls["control_source"].astype(str) == "positive_control tube"]
    out = []
    for batch, part in tubes.groupby(tubes["batch"].astype(str), sort=True):
        ran = list(dict.fromkeys(part["condition"].fillna("").astype(str)))
        mine = scored.loc[scored["batch"].astype(str) == batch, "condition"].astype(str)
        others = [c for c in dict.fromkeys(mine) if c not in ran]
        if others:
            out.append((str(batch), ", ".join(ran), others))
    return out


def _control_source_text(controls: pd.DataFrame | None) -> str:
    """Which positive control the batches had: a dedicated tube, or each tube's ILC gate."""
    if controls is None or controls.empty or "control_source" not in controls.columns:
        return ""
    own = own_gate_batches(controls)
    text = ""
    if own:
        text += (
            f"Batch(es) {', '.join(own)} had no dedicated positive-control tube, so each "
            "stimulated tube was judged against its own ILC gate as positive control. "
        )
    if "verdict" in controls.columns:
        short = int((controls["verdict"].astype(str) == "insufficient").sum())
        if short:
            text += (
                f"{short} positive-control evaluation(s) were insufficient, with "
                f"{CONTROL_INSUFFICIENT}; the populations resting on them were not judged. "
            )
    return text
