"""The words of a repair flag: what each rule code means, and each row's message.

:data:`RULES` names the codes a flag row carries (every rule that failed), :data:`NOTES`
the data-quality notes beside them; :func:`message_for` writes a row's message with its
numbers, and :func:`worded` adds the species and context interpretation.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ._score_config import ScoringConfig
from ._score_context import EXPLORATORY_PREFIX, exposure_statement

__all__ = [
    "CONTROL_INSUFFICIENT",
    "CONTROL_WORDS",
    "NOTES",
    "RULES",
    "control_words",
    "inhibitor_sentence",
    "message_for",
    "missing_baseline",
    "shown",
    "worded",
]

#: the one definition of an ``insufficient`` positive control (rule, verdict, report)
CONTROL_INSUFFICIENT = (
    "too few events in its gate (stimulated or unstimulated tube), or too few AREG+ events, "
    "to show a response: not judged, neither passed nor failed"
)

#: rule codes a flag row can carry, with what they mean
RULES: dict[str, str] = {
    "AREG_RESPONSIVE": "all AREG rules passed",
    "REPAIR_BIASED": "AREG-responsive and polarisation index RI above the cut",
    "NO_UNSTIM": "no unstimulated tube with the same donor, tissue, timepoint and batch",
    "UNSTIM_AMBIGUOUS": (
        "several unstimulated tubes share this tube's tissue, timepoint and batch and no "
        "donor tells them apart: name each tube's donor in the metadata sheet"
    ),
    "AREG_NOT_IN_PANEL": "the panel has no AREG channel: AREG was not measured",
    "NO_AREG_THRESHOLD": (
        "no AREG cut-off: no AREG FMO for this tissue and batch, and none could be set "
        "from the tube"
    ),
    "AREG_THRESHOLD_NOT_FMO": "the AREG cut-off was not set on an AREG FMO (fallback rule)",
    "NOT_FLAGGABLE": "not an NK population listed in the config's [flag] populations",
    "CONDITION_NOT_FLAGGABLE": "stimulation condition not in the config's [flag] conditions",
    "EVENTS_BELOW_MIN": (
        "too few events in the population (stim or unstim tube), or its gate could not be "
        "set there (not measured)"
    ),
    "AREG_EVENTS_BELOW_MIN": "too few AREG+ events in the stimulated tube",
    "CI_LOWER_NOT_ABOVE_ZERO": "confidence interval of AREG_net reaches 0 or below",
    "NET_BELOW_MIN": "AREG_net below the configured minimum",
    "POSITIVE_CONTROL_MISSING": (
        "no positive control for this tube (no positive-control tube in the batch, no control "
        "gate in the tube, or no unstimulated baseline for it)"
    ),
    "POSITIVE_CONTROL_INSUFFICIENT": (
        f"the positive control had {CONTROL_INSUFFICIENT}; so the population could not be judged"
    ),
    "POSITIVE_CONTROL_FAILED": (
        "the positive control had the events to show a response and did not respond"
    ),
}

#: data-quality notes (not rules): reported in ``flags["notes"]``
NOTES: dict[str, str] = {
    "UNSTIM_ABOVE_STIM": (
        "AREG+ % is higher in the unstimulated tube than in the stimulated one (interval "
        "entirely below 0): check that the AREG cut-off suits the unstimulated tube, whose "
        "spillover spread can differ from the stimulated FMO's"
    ),
    "THRESHOLD_MISMATCH": (
        "the stimulated and unstimulated tubes were cut at different thresholds for the named "
        "marker(s) (e.g. a per-sample fallback rule instead of an FMO): that marker's net "
        "response compares unlike with unlike"
    ),
    "INHIBITOR_CONDITION": (
        "AREG-responsive in a condition with an inhibitor of NK AREG (TGF-beta1 blocks it; Wang "
        "et al., EMBO J 2023): unexpected, so check the AREG stain, its cut-off and the "
        "culture (TGF-beta dose and activity) before reading the flag"
    ),
    "CUTOFF_FRAGILE": (
        "AREG-responsive at the AREG FMO cut-off, but not at one end of that cut-off's own "
        "interval (thresholds ci_low / ci_high): one of the flag's AREG rules fails there "
        "(flags: failed_rules_at_cut_ci_low / _high). The flag stands on the point estimate, "
        "the pre-registered rule; it rests on the cut-off's exact place, so weigh it as fragile"
    ),
    "BRIGHT_BELOW_DIM": (
        "CD56bright AREG net is below CD56dim beyond both intervals in this tube; human "
        "CD56bright NK are more often AREG+ than CD56dim (Wang 2023), so at least as high a "
        "net is expected: a consistency read-out, not a rule"
    ),
}


_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def shown(value: float, op: str, cut: float, digits: int = 2) -> str:
    """``value`` with enough decimals that the printed comparison with ``cut`` reads true.

    ``shown(0.9988, "<", 1)`` is ``"0.999"``, not ``"1.00"`` (which read "1.00 pp < 1 pp");
    at least ``digits`` decimals, at most 10 (then the plain ``repr``).
    """
    for d in range(digits, 11):
        text = f"{value:.{d}f}"
        if _COMPARE[op](float(text), cut):
            return text
    return repr(float(value))


def missing_baseline(tubes: Sequence[str], why: Mapping[str, str]) -> str:
    """What ``NO_UNSTIM`` says for a stimulated tube, naming the partners that have no counts.

    Parameters
    ----------
    tubes
        The ``sample_id`` of the unstimulated tubes the sheet lists with the tube's donor,
        tissue, timepoint and batch (none of them has counts: they failed or were not run).
    why
        ``sample_id`` -> why a tube has no counts (its status and reason), where known.

    Returns
    -------
    str
        :data:`RULES`' text when the sheet lists no such tube.
    """
    if not tubes:
        return RULES["NO_UNSTIM"]
    named = "; ".join(
        f"{sid!r} failed ({why[sid]})" if why.get(sid) else f"{sid!r} has no counts (not analysed)"
        for sid in tubes
    )
    return (
        "the sheet's unstimulated tube(s) with the same donor, tissue, timepoint and batch "
        f"gave no baseline: {named}"
    )


def message_for(row: Mapping[str, Any], failed: list[str], cfg: ScoringConfig) -> str:
    """A flag row's message: why it is (not) flagged, with its numbers.

    Parameters
    ----------
    row
        One scores row (nets, intervals, counts, positive control, RI).
    failed
        The rule codes that failed (empty: flagged).
    cfg
        The scoring definitions (minima, RI cut).

    Returns
    -------
    str
        A tube without events reads "AREG_net undefined", never "nan".
    """
    no_net = not np.isfinite(row["areg_net"])  # no events in one of the tubes
    net_text = (
        "AREG_net undefined (no events to compare in the stimulated or unstimulated tube)"
        if no_net
        else f"AREG_net {row['areg_net']:.2f} pp (CI {row['areg_net_ci_low']:.2f} to "
        f"{row['areg_net_ci_high']:.2f})"
    )
    areg = row["n_areg_stim"]
    num = (
        f"{net_text}, "
        + (f"{_count(areg)} AREG+ events" if _known(areg) else "AREG+ events not set")
        + f", {_count(row['n_events_stim'])}/{_count(row['n_events_unstim'])} events stim/unstim"
    )
    ctl = _control_text(row, cfg.control_population)
    if not failed:
        ri = row["ri"]
        bias = (
            f"repair-biased (RI {shown(ri, '>', cfg.ri_cut)} > {cfg.ri_cut:g})"
            if row["repair_biased"]
            else f"not repair-biased (RI {shown(ri, '<=', cfg.ri_cut)} <= {cfg.ri_cut:g})"
            if np.isfinite(ri)
            else "RI undefined"
        )
        return (
            f"AREG-responsive: {num}; CI low > 0, net >= {cfg.min_net:g}, AREG+ >= "
            f"{cfg.min_areg_events}, events >= {cfg.min_events}; {ctl}; {bias}"
        )
    detail = {
        "NO_UNSTIM": row.get("unstim_missing") or RULES["NO_UNSTIM"],
        "UNSTIM_AMBIGUOUS": RULES["UNSTIM_AMBIGUOUS"],
        "AREG_NOT_IN_PANEL": RULES["AREG_NOT_IN_PANEL"],
        "NO_AREG_THRESHOLD": RULES["NO_AREG_THRESHOLD"],
        "AREG_THRESHOLD_NOT_FMO": f"AREG cut-off rule {row['areg_rule']!r} is not an FMO",
        "NOT_FLAGGABLE": RULES["NOT_FLAGGABLE"],
        "CONDITION_NOT_FLAGGABLE": f"condition {row['condition']!r} not in "
        f"[flag] conditions {list(cfg.conditions)}",
        "EVENTS_BELOW_MIN": _below(
            "events", (row["n_events_stim"], row["n_events_unstim"]), cfg.min_events
        ),
        "AREG_EVENTS_BELOW_MIN": _below("AREG+ events", (row["n_areg_stim"],), cfg.min_areg_events),
        "CI_LOWER_NOT_ABOVE_ZERO": "no interval without AREG_net"
        if no_net
        else f"CI lower bound {shown(row['areg_net_ci_low'], '<=', 0.0)} <= 0",
        "NET_BELOW_MIN": "AREG_net undefined"
        if no_net
        else f"AREG_net {shown(row['areg_net'], '<', cfg.min_net)} pp < {cfg.min_net:g} pp",
        "POSITIVE_CONTROL_MISSING": RULES["POSITIVE_CONTROL_MISSING"],
        "POSITIVE_CONTROL_INSUFFICIENT": f"{ctl} could not be judged: " + _too_few(row, cfg),
        "POSITIVE_CONTROL_FAILED": f"{ctl} did not respond",
    }
    return "not flagged: " + "; ".join(f"{c}: {detail[c]}" for c in failed) + f" [{num}]"


#: how a control source reads in a message or the report (the codes stay in
#: ``control_source``); ``{population}`` is the control gate
CONTROL_WORDS = {
    "positive_control tube": "the batch's positive-control tube",
    "stimulated tube's own gate": "this stimulated tube's own {population} gate; the batch "
    "has no positive-control tube",
    "user verdict": "a positive-control verdict given for the batch",
}


def control_words(source: object, population: str = "ILC") -> str:
    """How a ``control_source`` code reads (:data:`CONTROL_WORDS`; unknown codes as given).

    Parameters
    ----------
    source
        The ``control_source`` value.
    population
        The positive-control gate, for the tube's own gate.

    Returns
    -------
    str
        The words, ``""`` for an empty or missing source.
    """
    code = str(source or "").strip()
    if code.lower() == "nan":
        return ""
    return CONTROL_WORDS.get(code, code).format(population=population)


def inhibitor_sentence(condition: object) -> str:
    """Why a flag under an AREG-inhibitor condition (TGF-β) is unexpected, in one clause.

    Parameters
    ----------
    condition
        The stimulation condition of the flagged row.

    Returns
    -------
    str
        ``"unexpected under 'IL-15+TGF-b', which contains an inhibitor of NK AREG ..."``.
    """
    return (
        f"unexpected under {str(condition)!r}, which contains an inhibitor of NK AREG "
        "(TGF-β1 blocks it; Wang et al., EMBO J 2023): check the AREG stain, its cut-off and "
        "the culture"
    )


def _too_few(row: Mapping[str, Any], cfg: ScoringConfig) -> str:
    """Why a positive control was not judged: its events, or its AREG+ events, too few."""
    n, base = row.get("control_n_events"), row.get("control_baseline_n_events")
    need = cfg.control_min_events
    if n is None or base is None or not (float(n) >= need and float(base) >= need):
        return f"{_count(n)}/{_count(base)} events stim/unstim in its gate, {need} needed in each"
    return f"fewer than {cfg.control_min_areg_events} AREG+ events in its gate"


def _control_text(row: Mapping[str, Any], population: str = "ILC") -> str:
    """``"positive control (the batch's positive-control tube PC_1): net 25.37 pp ..."``."""
    source = str(row.get("control_source") or "")
    if not source:
        return "no positive control"
    where = control_words(source, population)
    sample = str(row.get("control_sample_id") or "")
    if sample and sample not in where and source != "stimulated tube's own gate":
        where += f" {sample}"
    net = row.get("control_net")
    if net is None or not np.isfinite(net):
        return f"positive control ({where})"
    return f"positive control ({where}): net {net:.2f} pp (CI low {row['control_ci_low']:.2f})"


def _known(*values: Any) -> bool:
    """Whether every event count was measured (none is None or NaN)."""
    return all(v is not None and np.isfinite(float(v)) for v in values)


def _count(value: Any) -> str:
    """An event count for a message; ``"not set"`` for one not measured, never ``"0"``.

    Not measured (NaN): a gate that could not be set there (too few events for its cut-off,
    :mod:`nkflow.gating.membership`), AREG without a cut-off, or a tube without the
    population; "not set", as the gating panels and the populations table say it.
    """
    return f"{float(value):.0f}" if _known(value) else "not set"


def _below(what: str, values: tuple[Any, ...], need: int) -> str:
    """``"events 40/800 < 100"``; with a count not set, ``"events not set/800, 100 needed"``.

    A count not set is not below the minimum, it is missing: the message says what was
    needed instead of comparing it.
    """
    counts = "/".join(_count(v) for v in values)
    if _known(*values):
        return f"{what} {counts} < {need}"
    each = " in each" if len(values) > 1 else ""
    return f"{what} {counts}, {need} needed{each}"


def worded(message: str, row: Mapping[str, Any], flagged: bool) -> str:
    """Prefix mouse rows as exploratory; add the context and the exposure to every flag.

    A flag always states the glucocorticoid exposure (BIOLOGY.md 3(4)): in its context's
    interpretation when the row was exposed or its exposure is unknown, else on its own
    (``glucocorticoid exposure: no (sheet)``, ``... not recorded``). A flag in a condition
    with an AREG inhibitor (``row["inhibitor_condition"]``, TGF-β) says it is unexpected.
    """
    if row["exploratory"]:
        message = EXPLORATORY_PREFIX + message
    if not flagged:
        return message
    context = str(row.get("interpretation") or "")
    if context:
        message += f"; {context}"
    if row.get("inhibitor_condition"):
        message += f"; {inhibitor_sentence(row['condition'])}"
    if "glucocorticoid exposure" not in context:
        stated = exposure_statement(row.get("glucocorticoid"), row.get("glucocorticoid_source"))
        message += f"; glucocorticoid exposure: {stated}"
    return message
