"""The findings' responses: which NK populations met every AREG rule, and what they mean.

Split from :mod:`nkflow.report.findings`: per row (:func:`responses_table`, one population
in one stimulated tube, with :func:`flag_meaning`), per group (:func:`responses_by_group`:
condition, tissue, timepoint and population, with how many donors responded of those
tested), and the rows that could not be judged (:func:`not_judged_table`).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ..tl._donors import donor_key, donor_means
from ..tl._score_context import exposure_statement
from ..tl._score_judged import NOT_JUDGED, not_judged, reason, unjudged_rules
from ..tl._score_messages import control_words, inhibitor_sentence
from ..tl._score_sensitivity import fragile, fragile_words
from .findings_summary import population_name, population_order
from .tables import is_empty

__all__ = [
    "NOT_JUDGED",
    "control_conditions",
    "flag_meaning",
    "group_meaning",
    "not_judged_table",
    "response_statement",
    "responses_by_group",
    "responses_table",
]


def _fmt_ri(ri: object) -> str:
    value = pd.to_numeric(pd.Series([ri]), errors="coerce").iloc[0]
    return "–" if pd.isna(value) else f"{value:.2f}"


def control_conditions(flags: pd.DataFrame, controls: pd.DataFrame | None) -> pd.Series:
    """The condition(s) each flag row's positive-control tube was stimulated under.

    ``controls.csv`` keeps the control tube's ``condition``; a flags row judged against
    the batch's positive-control tube gets the batch's control-tube conditions (``""``
    when it stood on another control, or the tables do not say).

    Parameters
    ----------
    flags
        Flags rows (``batch``, ``control_source``).
    controls
        ``tables/controls.csv`` (``batch``, ``condition``, ``control_source``), or None.

    Returns
    -------
    pandas.Series
        Comma-separated conditions, indexed like ``flags``.
    """
    out = pd.Series("", index=flags.index, dtype=object)
    need = {"batch", "condition", "control_source"}
    if is_empty(controls) or not need <= set(controls.columns) or "batch" not in flags:
        return out
    tubes = controls[controls["control_source"].astype(str) == "positive_control tube"]
    by_batch = {
        str(b): ", ".join(dict.fromkeys(part["condition"].fillna("").astype(str)))
        for b, part in tubes.groupby("batch", sort=False)
    }
    source = flags.get("control_source", pd.Series("", index=flags.index)).astype(str)
    mapped = flags["batch"].astype(str).map(by_batch).fillna("")
    return mapped.where(source == "positive_control tube", "")


def _control_words(row: pd.Series) -> str:
    """The positive control a flag stood on, and the condition a control tube was run under."""
    if "control_source" not in row.index:  # a table from before the column existed
        return "positive control"
    words = control_words(row.get("control_source"))
    if not words:
        return "no positive control (none was required)"
    if row.get("control_source") != "positive_control tube":
        return f"positive control ({words})"
    ran = str(row.get("control_condition") or "")
    if ran and str(row.get("condition")) not in ran.split(", "):
        words += (
            f", run under condition {ran} and applied to {row.get('condition')} (no control "
            "tube of this condition in the batch)"
        )
    return words


def _exposure(row: pd.Series) -> str:
    """``"no (sheet)"``, ``"not recorded (...)"``: a flags row's glucocorticoid exposure."""
    value, source = (row.get(c) for c in ("glucocorticoid", "glucocorticoid_source"))
    value, source = ("" if pd.isna(v) or str(v).lower() == "nan" else v for v in (value, source))
    stated = exposure_statement(value, source)
    if stated == "not recorded":
        return "not recorded (the sheet names neither an exposure nor a treatment)"
    return stated


def response_statement(species: set[str]) -> str:
    """What a response shows in this batch: AREG+ NK (human), an observation (mouse).

    Parameters
    ----------
    species
        The batch's species (:func:`report_species`).

    Returns
    -------
    str
        One sentence.
    """
    human = "A response proves AREG+ NK in this assay, not repair."
    mouse = (
        "Mouse NK have not been shown to make AREG, so a response is an exploratory "
        "observation in this assay."
    )
    if species == {"mouse"}:
        return mouse
    if "mouse" in species:
        return (
            f"Human rows: {human[0].lower()}{human[1:]} Mouse rows: {mouse[0].lower()}{mouse[1:]}"
        )
    return human


def flag_meaning(row: pd.Series) -> str:
    """What an AREG-responsive row may mean, honest to BIOLOGY.md section 3.

    Parameters
    ----------
    row
        A flags row (``repair_biased``, ``ri``, ``interpretation``, ``exploratory``,
        ``control_source``, ``notes``).

    Returns
    -------
    str
        Responsive against its controls (naming the positive control: the batch's tube, or
        the tube's own ILC gate when the batch had no control tube); then either
        "repair-biased: a hypothesis to test"
        or why it is not (IFN-γ dominates: RI < 0.5, or RI not measurable); the context's
        pro-tumour reading when the tube is tumour / glucocorticoid-exposed; the
        glucocorticoid exposure whenever the row records it; mouse rows are marked
        exploratory. A flag that does not hold across its AREG FMO cut-off's interval is
        said to be fragile.
    """
    parts = [f"AREG-responsive against its FMO, unstimulated tube and {_control_words(row)}"]
    ri = pd.to_numeric(pd.Series([row.get("ri")]), errors="coerce").iloc[0]
    if str(row.get("repair_biased")).lower() == "true":
        parts.append("repair-biased (AREG over IFN-γ): a hypothesis to test, not proof of repair")
    elif pd.isna(ri):
        parts.append("not repair-biased: polarisation not measurable (no single-positive events)")
    elif ri < 0.5:
        parts.append(f"not repair-biased: IFN-γ dominates (RI {ri:.2f})")
    else:
        parts.append(f"not repair-biased: RI {ri:.2f} not above the repair cut-off")
    if fragile := fragile_words(row):
        parts.append(fragile)
    text = "; ".join(parts)
    if "INHIBITOR_CONDITION" in str(row.get("notes") or ""):
        sentence = inhibitor_sentence(row.get("condition"))
        text += f". {sentence[0].upper()}{sentence[1:]}"
    context = str(row.get("interpretation") or "").strip()
    if context.lower() == "nan":
        context = ""
    if context:
        text += f". {context[0].upper()}{context[1:]}"
    if "glucocorticoid" in row.index and "glucocorticoid exposure" not in context:
        text += f". Glucocorticoid exposure: {_exposure(row)}"
    if str(row.get("exploratory", "")).lower() == "true":
        text = "Exploratory (mouse NK have not been shown to make AREG): " + text
    return text + "."


def _ordered(
    table: pd.DataFrame, populations: pd.Series, timepoint_order: Sequence[str] | None
) -> pd.DataFrame:
    """Rows by condition, tissue, the run's timepoint order, donor, then population.

    Timepoints follow ``timepoint_order`` (the run's, baseline first), unknown ones after
    them by name; gated populations come before metaclusters (by number).
    """
    ranked = {str(t): i for i, t in enumerate(timepoint_order or ())}
    pop_keys = population_order(list(populations))
    cols = [c for c in ("condition", "tissue", "timepoint", "donor") if c in table.columns]
    keys = []
    for i, (_, row) in enumerate(table.iterrows()):
        key: list[object] = []
        for c in cols:
            text = "" if pd.isna(row[c]) else str(row[c])
            key += [ranked.get(text, len(ranked)), text] if c == "timepoint" else [text]
        keys.append((*key, pop_keys[i]))
    return table.iloc[sorted(range(len(table)), key=lambda i: keys[i])]


def responses_table(
    flags: pd.DataFrame,
    controls: pd.DataFrame | None = None,
    timepoint_order: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Flagged (AREG-responsive) populations with net response, RI and meaning.

    Parameters
    ----------
    flags
        ``tables/flags.csv``: one row per population and stimulated tube.
    controls
        ``tables/controls.csv``: the condition each positive-control tube was run under.
    timepoint_order
        The run's timepoint order (``metadata.attrs["timepoint_order"]``); rows follow it.

    Returns
    -------
    pandas.DataFrame
        The AREG-responsive rows (empty when none): condition, tissue, timepoint, donor,
        population (``"metacluster 4: <label>"`` for a metacluster), AREG net in
        percentage points with its interval, RI, repair-biased and what the row means in
        its context (:func:`flag_meaning`).
    """
    if is_empty(flags) or "areg_responsive" not in flags.columns:
        return pd.DataFrame()
    hit = flags[flags["areg_responsive"].astype(bool)]
    if hit.empty:
        return pd.DataFrame()
    hit = hit.assign(control_condition=control_conditions(hit, controls))
    blank = pd.Series("", index=hit.index)
    biased = hit.get("repair_biased", pd.Series(False, index=hit.index))
    labels = hit.get("label", pd.Series(None, index=hit.index, dtype=object))
    out = pd.DataFrame(
        {
            "condition": hit.get("condition", blank),
            "tissue": hit.get("tissue", blank),
            "timepoint": hit.get("timepoint", blank),
            "donor": hit.get("donor", blank),
            "population": [
                population_name(p, lab) for p, lab in zip(hit["population"], labels, strict=True)
            ],
            "AREG net (pp, 95% CI)": [
                f"{n:+.1f} ({lo:+.1f} to {hi:+.1f})"
                for n, lo, hi in zip(
                    hit["areg_net"], hit["areg_net_ci_low"], hit["areg_net_ci_high"], strict=True
                )
            ],
            "RI": [_fmt_ri(v) for v in hit.get("ri", blank)],
            "repair-biased": ["yes" if str(v) == "True" else "no" for v in biased],
            "meaning in this context": [flag_meaning(r) for _, r in hit.iterrows()],
        }
    )
    return _ordered(out, hit["population"], timepoint_order)


def _spread(values: pd.Series, fmt: str) -> str:
    """``"+4.2 (+3.5 to +4.9)"``: median (range) of several values, the value of one."""
    values = pd.to_numeric(values, errors="coerce").dropna()
    if values.empty:
        return "–"
    if len(values) == 1:
        return format(values.iloc[0], fmt)
    low, mid, high = (format(v, fmt) for v in (values.min(), values.median(), values.max()))
    return f"{mid} ({low} to {high})"


def _count_of(parts: Sequence[str], total: int, who: Sequence[str] | None = None) -> str:
    """``"2 of 6: ..."`` for each distinct text, most frequent first.

    With ``who`` (the donor of each part), a text counts the donors it was said of: a donor
    whose batches say it twice counts once.
    """
    parts = list(parts)
    if who is not None:
        parts = [text for _, text in dict.fromkeys(zip(who, parts, strict=True))]
    counts = pd.Series(parts, dtype=object).value_counts(sort=True)
    if len(counts) == 1 and counts.iloc[0] == total:
        return str(counts.index[0])
    return "; ".join(f"{n} of {total}: {text}" for text, n in counts.items())


def group_meaning(rows: pd.DataFrame, donors: pd.Series | None = None) -> str:
    """What a group's responding rows mean, without the per-donor numbers.

    Parameters
    ----------
    rows
        The AREG-responsive flags rows of one condition, tissue, timepoint and population
        (``control_condition`` from :func:`control_conditions`).
    donors
        The donor of each row (:func:`~nkflow.tl._donors.donor_key`): a donor measured in
        several batches counts once, repair-biased or saying a reading when any of its
        batches is or does. ``None``: each row is a donor of its own.

    Returns
    -------
    str
        The controls they stood on, how many are repair-biased, each context reading with
        how many donors it concerns (glucocorticoid exposure, tumour, an inhibiting
        condition) and the exposure of the rest, as :func:`flag_meaning` words them.
    """
    who = pd.Series(range(len(rows)), index=rows.index) if donors is None else donors
    n = who.nunique()
    controls = [_control_words(r) for _, r in rows.iterrows()]
    text = f"AREG-responsive against its FMO, unstimulated tube and {_count_of(controls, n, who)}"
    biased = rows.get("repair_biased", pd.Series(False, index=rows.index)).astype(str) == "True"
    if biased.any():
        text += (
            f"; {who[biased].nunique()} of {n} repair-biased (AREG over IFN-γ): a hypothesis "
            "to test, not proof of repair"
        )
    else:
        text += "; none repair-biased"
    shaky = pd.Series(fragile(rows), index=rows.index)
    if shaky.any():
        text += (
            f"; {who[shaky].nunique()} of {n} fragile (failing the rules at an end of the AREG "
            "FMO cut-off's interval)"
        )
    if any("INHIBITOR_CONDITION" in str(v or "") for v in rows.get("notes", [])):
        sentence = inhibitor_sentence(rows["condition"].iloc[0])
        text += f". {sentence[0].upper()}{sentence[1:]}"
    contexts = rows.get("interpretation", pd.Series("", index=rows.index)).fillna("").astype(str)
    contexts = contexts.str.strip().replace("nan", "")
    said = contexts[contexts != ""]
    if len(said):
        text += ". " + _count_of([f"{c[0].upper()}{c[1:]}" for c in said], n, who[said.index])
    if "glucocorticoid" in rows.columns:
        quiet = rows[~contexts.str.contains("glucocorticoid exposure")]
        if len(quiet):
            words = [_exposure(r) for _, r in quiet.iterrows()]
            n_quiet = who[quiet.index].nunique()
            whose = "" if n_quiet == n else f" of the other {n_quiet}"
            text += (
                f". Glucocorticoid exposure{whose}: {_count_of(words, n_quiet, who[quiet.index])}"
            )
    if rows.get("exploratory", pd.Series("", index=rows.index)).astype(str).eq("True").any():
        text = "Exploratory (mouse NK have not been shown to make AREG): " + text
    return text + "."


def responses_by_group(
    flags: pd.DataFrame,
    controls: pd.DataFrame | None = None,
    timepoint_order: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The responses per condition, tissue, timepoint and population, over donors.

    Parameters
    ----------
    flags
        ``tables/flags.csv``.
    controls
        ``tables/controls.csv`` (the condition each positive-control tube was run under).
    timepoint_order
        The run's timepoint order; rows follow it.

    Returns
    -------
    pandas.DataFrame
        One row per group with at least one AREG-responsive donor: ``donors responded``
        (``"5 of 6"``: of the donors scored for that population there, with how many of
        them could not be judged), the responders' AREG net and RI (median and range over
        the donors; one donor: its value), how many of them are repair-biased, and
        :func:`group_meaning`. Every number counts donors (:mod:`nkflow.tl._donors`): a
        donor measured in several batches counts once, responded, not judged or
        repair-biased when any of its batches was, its net and RI the mean of its
        responding batches (each batch weighs the same); a row without a donor is a donor
        of its own. Populations that can never be flagged are left out. Empty when none
        responded.
    """
    need = {"areg_responsive", "population", "areg_net"}
    if is_empty(flags) or not need <= set(flags.columns):
        return pd.DataFrame()
    rules = flags.get("failed_rules", pd.Series("", index=flags.index)).fillna("").astype(str)
    scored = flags[~rules.str.contains("NOT_FLAGGABLE")].copy()
    if not scored["areg_responsive"].astype(bool).any():
        return pd.DataFrame()
    scored["control_condition"] = control_conditions(scored, controls)
    keys = ["condition", "tissue", "timepoint"]
    for col in (*keys, "donor"):
        scored[col] = scored[col].fillna("").astype(str) if col in scored else ""
    # a row without a donor counts as a donor of its own (its tube, else its row)
    own = pd.Series(scored.index.astype(str), index=scored.index)
    own = scored["sample_id"].astype(str) if "sample_id" in scored else own
    scored["_who"] = donor_key(scored["donor"], own)
    rows = []
    for (condition, tissue, timepoint, population), part in scored.groupby(
        [*keys, "population"], sort=False
    ):
        hit = part[part["areg_responsive"].astype(bool)]
        if hit.empty:
            continue
        unjudged = int(part.loc[not_judged(part), "_who"].nunique())
        tested = int(part["_who"].nunique())
        responded = f"{hit['_who'].nunique()} of {tested}"
        if unjudged:
            responded += f" ({unjudged} not judged)"
        label = hit["label"].iloc[0] if "label" in hit else None
        # one value per responding donor: the mean of its responding batches
        who = hit["_who"]
        batch = hit["batch"].fillna("").astype(str) if "batch" in hit else None
        no_ri = pd.Series(float("nan"), index=hit.index)
        net = donor_means(pd.to_numeric(hit["areg_net"], errors="coerce"), who, batch)
        ri = donor_means(pd.to_numeric(hit.get("ri", no_ri), errors="coerce"), who, batch)
        biased = hit.get("repair_biased", pd.Series(False, index=hit.index)).astype(str)
        biased = (biased == "True").groupby(who, sort=False).any()
        rows.append(
            {
                "condition": condition,
                "tissue": tissue,
                "timepoint": timepoint,
                "population": population_name(population, label),
                "_population": population,
                "donors responded": responded,
                "AREG net of responders (pp)": _spread(net, "+.1f"),
                "RI of responders": _spread(ri, ".2f"),
                "repair-biased": f"{int(biased.sum())} of {len(biased)}",
                "meaning in this context": group_meaning(hit, who),
            }
        )
    if not rows:
        return pd.DataFrame()
    table = pd.DataFrame(rows)
    table = _ordered(table, table["_population"], timepoint_order)
    return table.drop(columns="_population").reset_index(drop=True)


def not_judged_table(flags: pd.DataFrame) -> pd.DataFrame:
    """Why scored NK populations could not be judged: rule, its meaning, how many rows.

    A row may fail several rules, so the per-rule counts overlap; ``attrs["distinct_rows"]``
    holds how many distinct rows failed at least one.
    """
    if is_empty(flags) or "failed_rules" not in flags.columns:
        return pd.DataFrame()
    # only populations that could raise a flag (NK subsets named in the scoring config)
    nk = flags[~flags["failed_rules"].fillna("").astype(str).str.contains("NOT_FLAGGABLE")]
    counts: dict[str, int] = {}
    distinct = 0
    for codes in unjudged_rules(nk):
        distinct += bool(codes)
        for code in codes:
            counts[code] = counts.get(code, 0) + 1
    table = pd.DataFrame(
        [
            {"reason": reason(c), "rule": c, "population × tube rows": n}
            for c, n in sorted(counts.items(), key=lambda kv: -kv[1])
        ]
    )
    table.attrs["distinct_rows"] = distinct
    return table
