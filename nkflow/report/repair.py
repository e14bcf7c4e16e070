"""The repair-profile section: caveats first, then flags with their evidence and reasons.

Accepts the scoring tables of :func:`nkflow.tl.score` (``areg_responsive``,
``repair_biased``, ``failed_rules``, ``message``, ``areg_net``, ``areg_net_ci_low`` ...)
as well as simpler tables (``passed``, ``rules``, ``reason``, ``AREG_net``, ``ci_low``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..tl._score_judged import not_judged
from ..tl._score_messages import CONTROL_INSUFFICIENT, inhibitor_sentence
from ..tl._score_sensitivity import fragile_counts, fragile_words
from ..tl.caveats import BRIGHT_DIM_READOUT, KEY_CAVEAT, MOUSE_BRIGHT_DIM
from .comparisons import comparisons_block
from .figures import FigureItem
from .methods_analysis import control_tube_conditions, own_gate_batches
from .sections import gallery
from .tables import esc, fmt_value, html_table, is_empty

__all__ = ["KEY_CAVEAT", "caveats_block", "comparisons_block", "repair_section"]

_WHO = ("sample_id", "pair", "sample")
_PASSED = ("passed", "areg_responsive", "flagged")
_FLAG_COLUMNS = (
    "sample_id", "pair", "sample", "tissue", "timepoint", "population", "flag", "passed",
    "areg_responsive", "repair_biased", "rules", "failed_rules", "areg_net",
    "areg_net_ci_low", "areg_net_ci_high", "AREG_net", "ci_low", "ci_high", "n_areg_stim",
    "ri", "RI", "control_passed", "reason", "message",
)  # fmt: skip
#: When the flags carry a worded ``message`` (with the numbers), it replaces the number columns.
_FLAG_COLUMNS_WORDED = (
    "sample_id", "pair", "sample", "tissue", "timepoint", "condition", "population", "flag",
    "passed",
    "areg_responsive", "repair_biased", "message", "reason", "notes",
)  # fmt: skip
_NEVER_FLAGGED = "NOT_FLAGGABLE"
_SCORE_COLUMNS = (
    "sample_id", "pair", "sample", "donor", "tissue", "timepoint", "condition", "population",
    "AREG_net", "areg_net", "ci_low", "ci_high", "areg_net_ci_low", "areg_net_ci_high", "RI",
    "ri", "IFN-g_net", "ifng_net", "NKG2D", "pct_nkg2d_stim", "CD107a_net", "cd107a_net",
    "resident_fraction", "residency_fraction", "areg_responsive", "repair_biased",
    "order_rank", "evidence", "interpretation",
)  # fmt: skip
_LABELS = {
    "areg_net": "AREG net (pp)", "AREG_net": "AREG net (pp)", "areg_net_ci_low": "CI low",
    "areg_net_ci_high": "CI high", "ci_low": "CI low", "ci_high": "CI high", "ri": "RI",
    "ifng_net": "IFN-γ net (pp)", "IFN-g_net": "IFN-γ net (pp)", "pct_nkg2d_stim": "NKG2D+ %",
    "NKG2D": "NKG2D+ %", "cd107a_net": "CD107a net (pp)", "CD107a_net": "CD107a net (pp)",
    "residency_fraction": "resident % of population",
    "resident_fraction": "resident % of population",
    "areg_responsive": "AREG-responsive", "repair_biased": "repair-biased",
    "failed_rules": "rules failed", "n_areg_stim": "AREG+ events", "unstim_sample_id": "unstim",
    "control_passed": "positive control ok", "order_rank": "rank",
    "message": "evidence and reason", "evidence": "AREG in NK of this species",
    "interpretation": "context", "bright_net": "CD56bright net (pp)",
    "dim_net": "CD56dim net (pp)",
    "bright_ci_low": "bright CI low", "bright_ci_high": "bright CI high",
    "dim_ci_low": "dim CI low", "dim_ci_high": "dim CI high",
    "difference": "bright − dim", "bright_below_dim": "bright < dim",
}  # fmt: skip
_WRAP = {"message", "reason", "failed_rules", "rules", "interpretation", "evidence", "note"}


_ITEM = re.compile(r"^\s*(\d+)[.)]\s+(.*)$")


def text_blocks(text: str) -> str:
    """Plain text as escaped HTML: numbered lines become a list, blank lines split paragraphs.

    Parameters
    ----------
    text
        Untrusted plain text (for example the scoring caveats).

    Returns
    -------
    str
        HTML.
    """
    out: list[str] = []
    para: list[str] = []
    items: list[str] = []

    def flush_para() -> None:
        if para:
            out.append(f"<p>{esc(' '.join(para))}</p>")
            para.clear()

    def flush_items() -> None:
        if items:
            out.append("<ol>" + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ol>")
            items.clear()

    for line in str(text).replace("\r\n", "\n").split("\n"):
        stripped = line.strip()
        match = _ITEM.match(line)
        if match:
            flush_para()
            items.append(match.group(2).strip())
        elif not stripped:
            flush_para()
            flush_items()
        elif items:
            items[-1] += " " + stripped
        else:
            para.append(stripped)
    flush_para()
    flush_items()
    return "".join(out)


def caveats_block(caveats: str, species: set[str] | None = None) -> str:
    """The prominent caveats box (the key statement always comes first).

    A batch of mouse tubes only reads that it has no CD56bright/CD56dim read-out in place
    of the human expectation (mouse NK carry no CD56).
    """
    if species == {"mouse"}:
        caveats = str(caveats or "").replace(BRIGHT_DIM_READOUT, MOUSE_BRIGHT_DIM)
    return (
        '<div class="caveat" id="caveats"><h3>Caveats: read before interpreting</h3>'
        f'<p class="key">{esc(KEY_CAVEAT)}</p>{text_blocks(caveats or "")}</div>'
    )


def _truthy(series: pd.Series) -> pd.Series:
    return series.map(lambda v: bool(v) if isinstance(v, bool | np.bool_) else False)


def _passed_column(table: pd.DataFrame) -> str | None:
    return next((c for c in _PASSED if c in table.columns), None)


def _cell(col: str, value: Any, row: pd.Series) -> str:
    if col in _WRAP:
        return "wrap"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    return ""


def _percent(value: Any) -> str:
    """A 0-1 fraction as a percentage (``0.0279`` -> ``2.8``), ``–`` when missing."""
    number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
    return "–" if pd.isna(number) else f"{100 * number:.1f}"


def _curated(table: pd.DataFrame, wanted: Sequence[str]) -> list[str]:
    cols = [c for c in wanted if c in table.columns]
    return cols if len(cols) >= 3 else [c for c in table.columns if c != "caveat"]


def _interval(row: pd.Series) -> str:
    net = next((row[c] for c in ("areg_net", "AREG_net") if c in row.index), None)
    lo = next((row[c] for c in ("areg_net_ci_low", "ci_low") if c in row.index), None)
    hi = next((row[c] for c in ("areg_net_ci_high", "ci_high") if c in row.index), None)
    if net is None:
        return ""
    text = f"AREG net {fmt_value(net)} pp"
    if lo is not None and hi is not None:
        text += f" [{fmt_value(lo)}, {fmt_value(hi)}]"
    return text


def _flagged_count(passed: pd.DataFrame) -> str:
    """``"19 population × tube rows (6 populations)"``: a flag is one population in one tube."""
    n = len(passed)
    if "population" not in passed.columns:
        return f"{n} population(s)"
    pops = passed["population"].nunique()
    rows = "row" if n == 1 else "rows"
    return f"{n} population × tube {rows} ({pops} population{'' if pops == 1 else 's'})"


def _context(row: pd.Series) -> str:
    """A flag row's context reading, with the TGF-β note when its condition inhibits AREG."""
    context = row.get("interpretation", "")
    text = context if isinstance(context, str) else ""
    if "INHIBITOR_CONDITION" in str(row.get("notes") or ""):
        text = "; ".join(filter(None, [text, inhibitor_sentence(row.get("condition"))]))
    return text


def _flag_summary(flags: pd.DataFrame) -> str:
    col = _passed_column(flags)
    if col is None:
        return ""
    passed = flags[_truthy(flags[col])]
    who_col = next((c for c in _WHO if c in flags.columns), None)
    if passed.empty:
        return (
            '<div class="flagged none"><b>No population was flagged.</b> The controls and '
            "minima did not support a flag for any population; the rule each population "
            "failed is listed below.</div>"
        )
    items = []
    for _, row in passed.iterrows():
        bits = [f"<b>{esc(row.get('population', ''))}</b>"]
        if who_col:
            where = " · ".join(
                str(row[c]) for c in ("tissue", "timepoint") if c in row.index and str(row[c])
            )
            bits.append(f"{esc(row[who_col])}" + (f" ({esc(where)})" if where else ""))
        condition = row.get("condition", "")
        if isinstance(condition, str) and condition:
            bits.append(f"condition {esc(condition)}")
        rule = row.get("rule", row.get("flag", ""))
        if isinstance(rule, str) and rule:
            bits.append(f"<code>{esc(rule)}</code>")
        interval = _interval(row)
        if interval:
            bits.append(esc(interval))
        if row.get("exploratory") is True or row.get("exploratory") is np.True_:
            bits.append("<b>exploratory (mouse: AREG not shown in mouse NK)</b>")
        if fragile := fragile_words(row):
            bits.append(f"<b>{esc(fragile)}</b>")
        context = _context(row)
        if context:
            bits.append(f'<span class="context"><b>{esc(context)}</b></span>')
        items.append(f"<li>{' — '.join(bits)}</li>")
    return (
        f'<div class="flagged"><b>{_flagged_count(passed)} flagged</b> (the evidence is '
        f"in the table below):<ul>{''.join(items)}</ul></div>"
    )


def _rule_legend(flags: pd.DataFrame) -> str:
    """The rule codes and data-quality note codes the flags carry, with their meaning."""
    try:
        from ..tl._score_messages import NOTES
        from ..tl.score import RULES
    except ImportError:  # scoring not installed in this build: no legend
        return ""
    meanings = {**RULES, **NOTES}
    codes: set[str] = set()
    for col in ("rule", "failed_rules", "rules", "notes"):
        if col in flags.columns:
            for value in flags[col].dropna().astype(str):
                # a note may name what it concerns: THRESHOLD_MISMATCH:CD107a
                codes.update(c.split(":")[0].strip() for c in value.split(";") if c.strip())
    known = [(c, meanings[c]) for c in sorted(codes) if c in meanings]
    if not known:
        return ""
    rows = "".join(f"<tr><th><code>{esc(c)}</code></th><td>{esc(m)}</td></tr>" for c, m in known)
    return (
        '<details class="legend"><summary>Rule and note codes</summary><div class="table-wrap">'
        f'<table class="kv">{rows}</table></div></details>'
    )


def _flags_block(flags: pd.DataFrame | None) -> str:
    if is_empty(flags):
        return (
            '<p class="empty">No flags table was produced (scoring switched off, or no '
            "stimulated tube with a matching unstimulated tube).</p>"
        )
    out = [_flag_summary(flags)]
    col = _passed_column(flags)
    table = flags
    hidden = 0
    if "failed_rules" in flags.columns:
        never = flags["failed_rules"].fillna("").astype(str).str.contains(_NEVER_FLAGGED)
        hidden = int(never.sum())
        table = flags[~never]
    if col is not None:
        order = np.argsort(~_truthy(table[col]).to_numpy(), kind="stable")
        table = table.iloc[order]

    def row_class(row: pd.Series) -> str:
        if col is None or not isinstance(row[col], bool | np.bool_):
            return ""
        return "pass" if row[col] else "fail"

    out.append(
        html_table(
            table,
            columns=_curated(
                flags, _FLAG_COLUMNS_WORDED if "message" in flags.columns else _FLAG_COLUMNS
            ),
            labels=_LABELS,
            row_class=row_class,
            cell_class=_cell,
            source="tables/flags.csv",
            empty="Every scored population is outside the flaggable set.",
        )
    )
    if hidden:
        out.append(
            f'<p class="note">{hidden:,} row(s) of populations that are never flagged '
            f"(<code>{_NEVER_FLAGGED}</code>: not an NK population of the flag list) are "
            "left out here; they are in tables/flags.csv.</p>"
        )
    out.append(_fragile_note(flags))
    out.append(_rule_legend(flags))
    return "".join(out)


def _fragile_note(flags: pd.DataFrame) -> str:
    """How many flags do not hold across their AREG FMO cut-off's interval, and what that says."""
    fragile, checked, unchecked = fragile_counts(flags)
    if not checked and not unchecked:
        return ""
    text = (
        "Each flag was checked again at both ends of its AREG FMO cut-off's own interval "
        "(AREG+ events counted at the interval's low and high end in both tubes; the flag's "
        f"interval, minimum-net and AREG+ event rules applied at each end): {fragile} of "
        f"{checked} flag(s) checked fail them at an end"
    )
    if unchecked:
        text += (
            f"; {unchecked} could not be checked (a cut-off without an interval, or an open "
            "bound: too few FMO events)"
        )
    text += "."
    if fragile:
        text += (
            " Those stay flagged, since the rule at the cut-off itself is the pre-registered "
            "one, and are labelled <b>fragile</b>: they rest on the cut-off's exact place; "
            "more FMO events or a replicate pair would settle them (note "
            "<code>CUTOFF_FRAGILE</code>; <code>holds_across_cutoff_interval</code>, "
            "<code>areg_net_at_cut_ci_low</code> / <code>_high</code> in tables/flags.csv)."
        )
    return f'<p class="note">{text}</p>'


def _inducers(species: set[str] | None, flags: pd.DataFrame | None) -> str:
    """What the side-by-side table is read with: the species' inducers, TGF-β flags."""
    human = "IL-2 and IL-15 are the reported natural inducers of human NK AREG (Wang 2023)"
    mouse = "no natural inducer of mouse NK AREG is reported (mouse NK have not been shown to "
    mouse += "make AREG)"
    kinds = set(species or ()) & {"human", "mouse"}
    said = mouse if kinds == {"mouse"} else f"{human}; {mouse}" if len(kinds) == 2 else human
    text = f"{said[0].upper()}{said[1:]}. "
    if not is_empty(flags) and "notes" in flags.columns and "condition" in flags.columns:
        hit = flags["notes"].fillna("").astype(str).str.contains("INHIBITOR_CONDITION")
        conditions = list(dict.fromkeys(flags.loc[hit, "condition"].astype(str)))
        if conditions:
            text += (
                f"Flags under {', '.join(conditions)} are unexpected: the condition contains "
                "an inhibitor of NK AREG (TGF-β1 blocks it; Wang et al., EMBO J 2023). "
            )
    return text


def _unjudged(scores: pd.DataFrame, flags: pd.DataFrame | None) -> pd.Series:
    """Score rows whose flags row could not be judged (:func:`~nkflow.tl._score_judged.not_judged`).

    The Findings count the same rows as "could not be judged": a net from a handful of
    cells (0 of 5 AREG+: 0.00), or from too few AREG+ events with an interval still
    reaching above zero (2 of 137: +1.46 pp), is not a measured response or non-response.
    """
    out = pd.Series(False, index=scores.index)
    keys = [c for c in ("sample_id", "population", "condition") if c in scores.columns]
    if is_empty(flags) or "failed_rules" not in flags.columns or "sample_id" not in keys:
        return out
    keys = [c for c in keys if c in flags.columns]
    judged = flags[keys].assign(_no=not_judged(flags).to_numpy())
    judged = judged.drop_duplicates(keys).set_index(keys)["_no"]
    index = pd.MultiIndex.from_frame(scores[keys].astype(object)) if len(keys) > 1 else None
    hit = judged.reindex(index if index is not None else scores[keys[0]])
    out[:] = hit.fillna(False).astype(bool).to_numpy()
    return out


def _side_by_side(
    scores: pd.DataFrame, species: set[str] | None = None, flags: pd.DataFrame | None = None
) -> str:
    """Flaggable populations (rows) by stimulation condition (columns): median AREG net.

    Tubes that could not be judged (:func:`_unjudged`, the Findings' rule) are left out of
    the median and counted apart.
    """
    need = {"condition", "population", "areg_net"}
    if is_empty(scores) or not need <= set(scores.columns):
        return ""
    table = scores
    if "flaggable" in table.columns:
        table = table[_truthy(table["flaggable"])]
    if table.empty:
        return ""
    table = table.assign(_few=_unjudged(table, flags))
    keys = [c for c in ("tissue", "timepoint", "population") if c in table.columns]
    conditions = list(dict.fromkeys(table["condition"].astype(str)))
    rows = []
    for key, part in table.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = dict(zip(keys, key, strict=True))
        for cond in conditions:
            every = part[part["condition"].astype(str) == cond]
            sub = every[~every["_few"]]
            unjudged = int(every["_few"].sum())
            net = pd.to_numeric(sub["areg_net"], errors="coerce").dropna()
            if net.empty:
                row[cond] = f"not judged ({unjudged})" if unjudged else "–"
                continue
            flagged = int(_truthy(sub["areg_responsive"]).sum()) if "areg_responsive" in sub else 0
            row[cond] = (
                f"{net.median():.2f} ({net.min():.2f} to {net.max():.2f}); "
                f"flagged {flagged}/{len(sub)}" + (f" ({unjudged} not judged)" if unjudged else "")
            )
        rows.append(row)
    return (
        "<h3>Stimulation conditions side by side</h3>"
        '<p class="lead">Median (range) AREG net in percentage points (pp) over the '
        "stimulated tubes of each "
        "condition, each against its own unstimulated partner, and how many tubes were "
        "flagged. Tubes that could not be judged, as counted under Findings › What could not "
        "be judged (too few events in the population; too few AREG+ events while the net's "
        "interval still reaches above zero; no unstimulated partner, AREG cut-off or "
        "working positive control), are left out of the median and counted apart, "
        "<i>not judged (n)</i> when no tube is left. "
        f"{esc(_inducers(species, flags))}PMA/ionomycin is supraphysiological; AREG "
        "induced by a glucocorticoid condition may be pro-tumour.</p>"
        + html_table(pd.DataFrame(rows), source="tables/scores.csv")
    )


_BRIGHT_DIM_COLUMNS = (
    "sample_id", "tissue", "timepoint", "condition", "bright_net", "bright_ci_low",
    "bright_ci_high", "dim_net", "dim_ci_low", "dim_ci_high", "bright_below_dim", "note",
)  # fmt: skip


def _bright_dim_block(table: pd.DataFrame | None) -> str:
    if is_empty(table):
        return ""
    below = int(_truthy(table["bright_below_dim"]).sum()) if "bright_below_dim" in table else 0
    cols = [c for c in _BRIGHT_DIM_COLUMNS if c in table.columns]
    return (
        "<h3>Consistency: CD56bright vs CD56dim AREG</h3>"
        '<p class="lead">Human blood CD56bright NK are more often AREG+ than CD56dim (Wang et '
        "al., EMBO J 2023), so the CD56bright net is expected to be at least the CD56dim net. "
        f"{below} tube(s) show CD56bright below CD56dim beyond both intervals. This is a "
        "read-out to check gates and cut-offs, not a flag rule.</p>"
        + html_table(
            table, columns=cols, labels=_LABELS, cell_class=_cell, source="tables/bright_dim.csv"
        )
    )


def _no_control_tube_note(controls: pd.DataFrame) -> str:
    """Say which batches had no positive-control tube (each tube's own ILC gate stood in)."""
    batches = own_gate_batches(controls)
    if not batches:
        return ""
    return (
        f'<p class="note">Batch(es) {esc(", ".join(batches))} had no dedicated positive-control '
        "tube: each stimulated tube's own ILC gate served as its positive control. ILCs are "
        "rare in blood and in tissue digests, so that gate often holds too few events and "
        "such controls are often insufficient; one AREG+ control tube per batch is "
        "recommended: ILC2 (e.g. stimulated with IL-33) in the ILC gate, or Tregs (e.g. with "
        "IL-18/IL-33), which are CD3+ and so need their own CD3+CD4+CD25+FOXP3+ gate.</p>"
    )


#: what the positive-controls table's columns hold
_CONTROL_COLUMNS = (
    "<code>condition</code>: the condition the control was stimulated under; "
    "<code>n_events</code>: events in the control gate of the control tube; "
    "<code>n_areg</code>: AREG+ events among them; <code>baseline_n_events</code>: events in "
    "the control gate of the unstimulated tube it is judged against "
    "(<code>baseline_sample_id</code>); <code>net</code>, <code>ci_low</code>, "
    "<code>ci_high</code>: its AREG net (pp) and interval; <code>verdict</code>: "
    "<code>passed</code> (responded), <code>failed</code> (had the events and did not "
    "respond), <code>insufficient</code> ({insufficient}), <code>no baseline</code> (no "
    "unstimulated tube to judge it against); <code>failed_rules</code>: the rules behind a "
    "verdict other than passed."
)


def _controls_block(controls: pd.DataFrame, scored: pd.DataFrame | None) -> str:
    """The positive controls: what a flag needs of them, the conditions, the table."""
    out = [
        '<p class="lead">A flag needs the batch\'s positive control (ILC gate) to respond, '
        "net of the unstimulated tube. An <code>insufficient</code> control had "
        f"{esc(CONTROL_INSUFFICIENT)}; no flag stands on it. "
        + _CONTROL_COLUMNS.format(insufficient=esc(CONTROL_INSUFFICIENT))
        + "</p>"
    ]
    for batch, ran, others in control_tube_conditions(controls, scored):
        out.append(
            f'<p class="note">Batch {esc(batch)}: the positive-control tube was run under '
            f"condition {esc(ran)} only and is applied to the batch's other condition(s) "
            f"({esc(', '.join(others))}): it shows that the AREG stain works in the batch, "
            "not that those conditions reach the control cells.</p>"
        )
    out.append(_no_control_tube_note(controls))
    shown = controls.drop(columns=["passed"]) if "verdict" in controls.columns else controls
    out.append(html_table(shown, labels=_LABELS, cell_class=_cell, source="tables/controls.csv"))
    return "".join(out)


def _scores_shown(scores: pd.DataFrame, flags: pd.DataFrame | None) -> pd.DataFrame:
    """The scores with each context said once and the TGF-β note of flagged rows."""
    if "interpretation" not in scores.columns:
        return scores
    out = scores.copy()
    keys = ["sample_id", "population"]
    notes = pd.Series("", index=out.index)
    if not is_empty(flags) and {*keys, "notes"} <= set(flags.columns) and set(keys) <= set(out):
        by_key = flags.drop_duplicates(keys).set_index(keys)["notes"].fillna("").astype(str)
        index = pd.MultiIndex.from_frame(out[keys].astype(object))
        notes = pd.Series(by_key.reindex(index).fillna("").to_numpy(), index=out.index)
    out["interpretation"] = [
        _context(pd.Series({"interpretation": str(c) if pd.notna(c) else "", "notes": n,
                            "condition": cond}))
        for c, n, cond in zip(
            out["interpretation"], notes, out.get("condition", notes), strict=True
        )
    ]  # fmt: skip
    return out


def repair_section(
    tables: Mapping[str, pd.DataFrame],
    caveats: str,
    figures: Sequence[FigureItem],
    counter: list[int],
    species: set[str] | None = None,
) -> str:
    """Repair profile: caveats, figures, flags with reasons, controls, scores, comparisons.

    ``species`` (:func:`~nkflow.report.findings.report_species`) makes the caveats and the
    conditions' lead say only what holds for the batch's species.
    """
    out = [caveats_block(caveats, species)]
    if figures:
        out.append(gallery(figures, wide=True, counter=counter))
    flags = tables.get("flags")
    out.append("<h3>Flags</h3>")
    out.append(_flags_block(flags))
    controls = tables.get("controls")
    scores = tables.get("scores")
    if not is_empty(controls):
        out.append("<h3>Positive controls</h3>")
        out.append(_controls_block(controls, scores if scores is not None else flags))
    out.append(_side_by_side(scores, species, flags))
    out.append(_bright_dim_block(tables.get("bright_dim")))
    out.append("<h3>Repair profile per population</h3>")
    if is_empty(scores):
        out.append('<p class="empty">No scores table was produced.</p>')
    else:
        out.append(
            '<p class="lead">AREG net: % AREG+ in the stimulated minus % AREG+ in the '
            "unstimulated tube, in percentage points (pp), with its confidence interval; IFN-γ "
            "and CD107a nets likewise; RI: polarisation AREG+IFN-γ− / (AREG+IFN-γ− + "
            "AREG−IFN-γ+), 0 to 1; NKG2D and CD107a: the clearance axis, kept separate; "
            "resident %: share of the population in the tissue-resident (trNK) gate of the "
            "unstimulated tube, context only, not part of the score; rank: order of the "
            "population within its batch and condition by z(AREG net) + z(RI), 1 first, for "
            "sorting only (not a test). Populations that can be flagged come first; every "
            "column is in tables/scores.csv (resident fraction there as 0-1).</p>"
        )
        if "flaggable" in scores.columns:
            order = np.argsort(~_truthy(scores["flaggable"]).to_numpy(), kind="stable")
            scores = scores.iloc[order]
        out.append(
            html_table(
                _scores_shown(scores, flags),
                columns=_curated(scores, _SCORE_COLUMNS),
                labels=_LABELS,
                cell_class=_cell,
                formatters={c: _percent for c in ("residency_fraction", "resident_fraction")},
                source="tables/scores.csv",
            )
        )
    out.append(comparisons_block(tables.get("comparisons")))
    return "".join(out)
