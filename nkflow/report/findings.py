"""The report's first section: what was found, in the numbers an analyst asks for first.

1. NK composition by tissue and timepoint: CD56bright and tissue-resident (trNK) shares
   of NK, from one phenotype tube per donor, tissue and timepoint (controls left out; a
   donor measured in several batches counts once, the mean of its batches);
2. which NK populations responded: AREG net response with its 95% interval, by
   stimulation condition, with the context's interpretation;
3. what could not be judged, and why (missing controls, too few events, conditions
   not allowed to flag).

The evidence (files, gating, frequencies, clusters, the full repair profile) follows in
the later sections.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from ..tl._donors import donor_means, donor_of, phenotype_rows
from ..tl._score_sensitivity import fragile_counts
from .findings_responses import (
    NOT_JUDGED,
    control_conditions,
    flag_meaning,
    not_judged_table,
    response_statement,
    responses_by_group,
    responses_table,
)
from .findings_summary import changes_block, failures_note, population_labels
from .methods_analysis import nothing_scored_reasons
from .tables import esc, html_table, is_empty

__all__ = [
    "GLOSSARY",
    "MOUSE_GLOSSARY",
    "NOT_JUDGED",
    "control_conditions",
    "findings_section",
    "flag_meaning",
    "glossary",
    "glossary_block",
    "not_judged_table",
    "report_species",
    "response_statement",
    "responses_table",
]

#: NK subsets shown per tissue and timepoint, as ``(population, label)``.
SHARES = (("CD56bright", "CD56bright % of NK"), ("trNK", "trNK % of NK"))

#: short definitions of the abbreviations the report uses, shown at the top of the findings
GLOSSARY = (
    ("FMO", "fluorescence-minus-one control: every stain except one; its events set the "
     "negative boundary (cut-off) of the missing marker"),
    ("pp", "percentage points: the difference of two percentages (e.g. 5% AREG+ stimulated "
     "minus 3% unstimulated = 2 pp)"),
    ("stim / unstim", "the stimulated tube and its unstimulated (medium) partner of the same "
     "donor, tissue, timepoint and batch"),
    ("positive control", "a tube or gate known to make AREG (ILC gate by default); a flag "
     "needs it to respond"),
    ("CD56bright / CD56dim", "the two main human NK subsets; CD56bright NK are more often "
     "AREG+ than CD56dim (Wang 2023)"),
    ("trNK", "tissue-resident NK: CD69+ with a tissue integrin or chemokine receptor "
     "(CD49a, CD103, CXCR6), read from the unstimulated tube"),
    ("circNK", "circulating NK: NK outside the trNK gate"),
    ("ILC", "innate lymphoid cells (CD127+ lineage-negative, non-NK)"),
    ("RI", "polarisation index AREG+IFN-γ− / (AREG+IFN-γ− + AREG−IFN-γ+), 0 to 1"),
    ("repair-biased", "AREG-responsive and RI above the cut-off: a hypothesis to test"),
    ("metacluster", "a cluster of NK cells with a shared marker profile (SOM + consensus)"),
    ("BH", "Benjamini-Hochberg adjustment of p-values (false discovery rate)"),
    ("p_adj", "a p-value after the BH adjustment over the rows that can reach significance"),
    ("p_min", "the smallest p-value a row's number of donor pairs n allows (2/2^n: 0.5 "
     "with 2 donors): such a row cannot reach significance whatever the data"),
    ("Hodges-Lehmann", "estimate of a shift: the median of the pairwise averages of the "
     "per-donor differences (robust to one odd donor)"),
    ("Newcombe", "the confidence interval of a difference of two proportions (stimulated "
     "minus unstimulated % AREG+), built from each tube's Wilson interval"),
    ("Wilson 95% interval", "the confidence interval of one percentage from its event "
     "counts; wide when the population has few events"),
    ("time QC", "acquisition quality control over time: the file is cut into bins of "
     "consecutive events and stretches whose flow rate or signal departs from the rest are "
     "removed"),
    ("unstable stretch", "a run of consecutive events that time QC removed, named by its "
     "event numbers and by what shifted (flow rate, or a channel's signal)"),
    ("z", "how far an unstable stretch departs from the rest of the file, in sampling "
     "errors (z 14.9: 14.9 times the bin-to-bin noise; time QC removes above 6 in one bin "
     "or 3.5 over a run of bins)"),
    ("margin events", "events at a channel's ceiling (saturated; or scatter piled at its "
     "floor): their true value is unknown, so QC removes them"),
    ("valley", "a threshold rule: the cut-off sits at the density minimum between the "
     "negative and the positive peak of the marker in the sample itself"),
    ("mirror", "the valley rule's fallback where the sample shows no valley: the negative "
     "peak's outer half is mirrored into a symmetric model of the negatives, and the "
     "cut-off sits at a high percentile of that model"),
    ("fmo fallback", "said of a threshold (e.g. 'mirror (fmo fallback)'): the gate asks for "
     "an FMO cut-off but the batch has no FMO tube for that marker, tissue and batch, so "
     "the named rule set it on the sample"),
    ("glucocorticoid_source", "where a tube's glucocorticoid exposure was read: 'sheet' (the "
     "glucocorticoid column), 'treatment names dexamethasone' (a steroid named in the "
     "treatment text), 'prednisone (CHOP)' (a regimen that contains a steroid: CHOP "
     "contains prednisone), or both ('sheet; treatment names ...'); 'not recorded' when "
     "the sheet gives neither"),
)  # fmt: skip


#: how a mouse batch defines the terms whose human rule differs (mouse template: NKp46+ NK
#: split by CD49a x CD49b(DX5); BIOLOGY.md section 2, Peng 2013, Daussy 2014)
MOUSE_GLOSSARY = (
    ("trNK", "tissue-resident NK / ILC1 (mouse): CD49a+ CD49b(DX5)− NKp46+ cells (Eomes− "
     "where Eomes is stained)"),
    ("cNK", "conventional NK (mouse): CD49a− CD49b(DX5)+ NKp46+ cells (Eomes+)"),
    ("ILC", "innate lymphoid cells (mouse): Lin− NKp46− CD127+ (ILC2/3), the AREG "
     "positive-control gate"),
)  # fmt: skip
#: terms of human NK only (mouse NK carry no CD56; the mouse template has no circNK gate)
_HUMAN_ONLY = ("CD56bright / CD56dim", "circNK")


def report_species(
    metadata: pd.DataFrame | None, provenance: Mapping[str, object] | None = None
) -> set[str]:
    """The species of a batch's tubes: the sheet's, and the panel's for tubes without one.

    Parameters
    ----------
    metadata
        The sheet (its ``species`` column), or None.
    provenance
        The run's provenance; ``species_from_panel`` maps files without a species in the
        sheet to the species their panel told.

    Returns
    -------
    set of str
        Lower-case species (``{"human"}``, ``{"mouse"}``, both, or empty when unknown).
    """
    found: set[str] = set()
    if metadata is not None and "species" in metadata.columns:
        found |= set(metadata["species"].fillna("").astype(str).str.strip().str.lower())
    panel = (provenance or {}).get("species_from_panel")
    if isinstance(panel, Mapping):
        found |= {str(v).strip().lower() for v in panel.values()}
    return found - {"", "nan"}


def glossary(species: set[str] | None = None) -> list[tuple[str, str]]:
    """The report's terms with the definitions of the batch's species.

    A mouse batch gets the mouse trNK/ILC1 rule (CD49a+ CD49b(DX5)−), cNK and the mouse ILC
    gate, and no CD56 terms; a batch of both species gets both definitions, each labelled.
    Human (also when the species is unknown) keeps :data:`GLOSSARY`.
    """
    kinds = set(species or ()) & {"human", "mouse"}
    if "mouse" not in kinds:
        return list(GLOSSARY)
    mouse = dict(MOUSE_GLOSSARY)
    out: list[tuple[str, str]] = []
    for term, text in GLOSSARY:
        if kinds == {"mouse"}:
            if term not in _HUMAN_ONLY:
                out.append((term, mouse.get(term, text)))
        elif term in mouse:
            out += [(f"{term} (human)", text), (f"{term} (mouse)", mouse[term])]
        else:
            out.append((term, text))
        if term == "trNK":  # cNK next to trNK
            out.append(("cNK" if kinds == {"mouse"} else "cNK (mouse)", mouse["cNK"]))
    return out


def glossary_block(species: set[str] | None = None) -> str:
    """A collapsed list of the report's abbreviations and their meaning.

    Parameters
    ----------
    species
        The batch's species (:func:`report_species`); definitions follow it.

    Returns
    -------
    str
        HTML ``details`` block.
    """
    rows = "".join(
        f"<tr><th>{esc(term)}</th><td>{esc(text)}</td></tr>" for term, text in glossary(species)
    )
    return (
        '<details class="legend"><summary>Terms used in this report</summary>'
        f'<div class="table-wrap"><table class="kv">{rows}</table></div></details>'
    )


def _range(measured: pd.DataFrame, n: int) -> str:
    """One donor measured: value (Wilson interval); several: median (range) of the donors.

    ``measured`` holds the tubes measured, with their donor in ``_unit``. A donor measured
    in several batches is one value, the mean of its batches (one such donor alone: the
    mean and the range of its batches). When fewer donors were measured than the row's
    ``n`` (a gate not set in some tubes), the cell says how many it stands on.
    """
    value = pd.to_numeric(measured["percent_of_parent"], errors="coerce")
    per_donor = donor_means(value, measured["_unit"])
    if len(per_donor) == 1 and len(measured) == 1:
        low, high = measured["ci_low"].iloc[0], measured["ci_high"].iloc[0]
        text, kind = f"{value.iloc[0]:.1f} ({low:.1f}-{high:.1f})", "Wilson 95% interval"
    elif len(per_donor) == 1:
        text = (
            f"{per_donor.iloc[0]:.1f} (mean of {len(measured)} batches, "
            f"{value.min():.1f}-{value.max():.1f})"
        )
        kind = "mean of its batches"
    else:
        text = f"{per_donor.median():.1f} ({per_donor.min():.1f}-{per_donor.max():.1f})"
        kind = "range"
    if len(per_donor) < n:
        text += f"; {len(per_donor)} of {n} donors measured ({kind})"
    return text


def composition_table(populations: pd.DataFrame, metadata: pd.DataFrame) -> pd.DataFrame:
    """CD56bright and trNK shares of NK per tissue and timepoint.

    One donor measured: the value with its Wilson 95% interval; several: the median across
    donors with their range; a share measured in fewer donors than ``n`` (its gate not set
    in some tubes) says how many. ``n`` counts the donors whose tube was analysed: a donor
    measured in several batches (a bridge donor) counts once, its value the mean of its
    batches' tubes; a tube with no donor named counts as a donor of its own
    (``attrs["tubes_without_donor"]`` says how many). A share whose gate could not be set in
    any tube reads ``not set``, as in the gating panels and the populations table.
    """
    if is_empty(populations) or is_empty(metadata) or "sample_id" not in metadata.columns:
        return pd.DataFrame()
    meta = metadata.drop_duplicates("sample_id").copy()
    for col in ("role", "stimulation", "donor", "tissue", "timepoint"):
        meta[col] = meta[col].fillna("").astype(str) if col in meta.columns else ""
    # the frequency summaries' rule: one phenotype tube per donor, tissue, timepoint, batch
    tubes = phenotype_rows(meta, meta)
    unit = donor_of(meta)
    pops = populations[populations["sample_id"].astype(str).isin(tubes["sample_id"].astype(str))]
    pops = pops.assign(_unit=pops["sample_id"].astype(str).map(unit))
    analysed = set(populations["sample_id"].astype(str))
    rows = []
    order = list(dict.fromkeys(zip(tubes["tissue"], tubes["timepoint"], strict=True)))
    # tissues in the sheet's order; timepoints in the run's order (baseline first) if known
    ranked = {t: i for i, t in enumerate(metadata.attrs.get("timepoint_order") or ())}
    tissues = {t: i for i, t in enumerate(dict.fromkeys(t for t, _ in order))}
    order.sort(key=lambda k: (tissues[k[0]], ranked.get(k[1], len(ranked))))
    for tissue, timepoint in order:
        ids = tubes.loc[(tubes["tissue"] == tissue) & (tubes["timepoint"] == timepoint),
                        "sample_id"].astype(str)  # fmt: skip
        ids = ids[ids.isin(analysed)]  # a tube that failed is no donor of the summary
        if ids.empty:
            continue
        n = int(ids.map(unit).nunique())
        row: dict[str, object] = {"tissue": tissue, "timepoint": timepoint, "n": n}
        for population, label in SHARES:
            sub = pops[(pops["population"] == population) & pops["sample_id"].isin(ids)]
            sub = sub[sub["parent"].astype(str) == "NK"] if "parent" in sub else sub
            measured = sub.dropna(subset=["percent_of_parent"])  # NA: the gate was not set
            row[label] = _range(measured, n) if len(measured) else ("not set" if len(sub) else "-")
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    shown = [label for _, label in SHARES if (table[label] != "-").any()]
    if not shown:  # rows of donor counts alone read as an empty finding
        return pd.DataFrame()
    table = table[["tissue", "timepoint", "n", *shown]]
    table.attrs["tubes_without_donor"] = int((tubes["donor"] == "").sum())
    return table


def _cut_text(ri_cut: float | None) -> str:
    cut = pd.to_numeric(pd.Series([ri_cut]), errors="coerce").iloc[0]
    if pd.isna(cut):
        return "the scoring's cut-off (0.5 by default)"
    return f"this run's cut-off, {float(cut):g}"


def _no_composition(species: set[str]) -> str:
    """Why no CD56bright or trNK share of NK could be shown."""
    if species == {"mouse"}:
        bright = "CD56bright is a human NK subset (mouse NK carry no CD56)"
        resident = "trNK (ILC1) needs CD49a and CD49b (DX5) in the panel"
    else:
        bright = "CD56bright needs CD56 (or a CD56 substitute) in the panel"
        resident = "trNK needs CD69 plus a residency marker (CD49a, CD103 or CXCR6)"
        if "mouse" in species:
            resident += " (mouse tubes: CD49a and CD49b (DX5))"
        resident += " in the panel"
    return (
        "No CD56bright or trNK share of NK could be reported for these tubes: "
        f"{bright}, and {resident}; the gating plan in Methods lists the gates this panel "
        "could not report."
    )


def _responses_html(
    flags: pd.DataFrame,
    responses: pd.DataFrame,
    controls: pd.DataFrame | None,
    order: Sequence[str],
    ri_cut: float | None,
    species: set[str],
) -> str:
    """The responses per group, with every responding row in a collapsed table below."""
    n_pops = responses["population"].nunique()
    n_biased = int((responses["repair-biased"] == "yes").sum())
    grouped = responses_by_group(flags, controls, order)
    fragile, _, _ = fragile_counts(flags)
    shaky = (
        f"; {fragile} of them are fragile (they fail the rules at an end of the AREG FMO "
        "cut-off's own interval: see the meaning column and the Repair profile)"
        if fragile
        else ""
    )
    lead = (
        f'<p class="lead">{len(responses)} population × tube row(s) covering {n_pops} '
        f"population(s) met every AREG rule; {n_biased} of them are repair-biased{shaky}. "
        "One row per "
        "condition, tissue, timepoint and population: how many donors responded of those "
        "scored there (a donor whose row lacked a control or events is counted as not "
        "judged), how many of the responders are repair-biased, and their AREG net and RI, "
        "median (range), one donor: its value; a donor measured in several batches counts "
        "once, with the mean of its responding batches. "
        "AREG net in percentage points (pp): % AREG+ in the stimulated tube minus the "
        "unstimulated one. RI (polarisation index): AREG+IFN-γ− / (AREG+IFN-γ− + "
        f"AREG−IFN-γ+), 0 to 1; repair-biased = AREG-responsive and RI above "
        f"{_cut_text(ri_cut)}. {response_statement(species)}</p>"
    )
    detail = (
        f'<details class="legend"><summary>Every responding population × tube row '
        f"({len(responses)}), with its donor, 95% interval and meaning</summary>"
        + _meaning_under_rows(responses, source="tables/flags.csv")
        + "</details>"
    )
    return lead + _meaning_under_rows(grouped, source="tables/flags.csv") + detail


def _meaning_under_rows(table: pd.DataFrame, source: str) -> str:
    """The table with each row's long meaning on a full-width line under it.

    As a column it pushed the numbers off a 1280 px screen.
    """
    col = "meaning in this context"
    if is_empty(table) or col not in table.columns:
        return html_table(table, source=source)
    rest = [c for c in table.columns if c != col]
    head, tbody, body = html_table(table, columns=rest, source=source).partition("<tbody>")
    rows = body.split("</tr>")  # the shown rows, then the table's end
    out = []
    for chunk, meaning in zip(rows[:-1], table[col], strict=False):
        out.append(chunk + "</tr>")
        if isinstance(meaning, str) and meaning:
            out.append(f'<tr class="meaning"><td colspan="{len(rest)}">{esc(meaning)}</td></tr>')
    head = head.replace("<table>", '<table class="with-meaning">', 1)
    return head + tbody + "".join(out) + rows[-1]


def findings_section(
    tables: Mapping[str, pd.DataFrame],
    metadata: pd.DataFrame | None,
    ri_cut: float | None = None,
    species: set[str] | None = None,
) -> str:
    """HTML of the findings: terms, composition, responses, what could not be judged.

    Parameters
    ----------
    tables
        The batch tables by name (``populations``, ``flags``, ``counts`` ...).
    metadata
        The metadata sheet, or None.
    ri_cut
        The RI cut-off the scoring used (provenance ``scoring.ri_cut``); None when the
        run does not record it, and the text then names the default.
    species
        The batch's species (:func:`report_species`: the sheet's, then the panel's); None
        reads the sheet's. The glossary's trNK/ILC definitions follow it.

    Returns
    -------
    str
        The section's HTML.
    """
    if species is None:
        species = report_species(metadata)
    out = [glossary_block(species)]
    out.append(failures_note(tables.get("status"), tables.get("qc")))
    out.append(changes_block(tables.get("comparisons"), population_labels(tables)))
    populations = tables.get("populations")
    comp = (
        composition_table(populations, metadata)
        if populations is not None and metadata is not None
        else pd.DataFrame()
    )
    out.append("<h3>NK composition by tissue and timepoint</h3>")
    out.append(
        '<p class="lead">One unstimulated tube per donor, tissue, timepoint and batch '
        "(stimulated tubes and controls left out); a donor measured in several batches "
        "counts once, with the mean of its batches. n: donors analysed. One donor measured: "
        "value (Wilson 95% interval); several: median across donors (range). A share "
        "measured in fewer donors than n says how many it stands on.</p>"
    )
    unnamed = comp.attrs.get("tubes_without_donor", 0)
    if unnamed:
        out.append(
            f'<p class="note">{unnamed} of these tubes name no donor: each counts as a donor '
            "of its own, and tubes without a tissue or timepoint are counted together. Give "
            "donor, tissue and timepoint in a metadata sheet (stimulated tubes are paired "
            "with their unstimulated tube by them).</p>"
        )
    out.append(html_table(comp, empty=_no_composition(species)))
    flags = tables.get("flags")
    order = (metadata.attrs.get("timepoint_order") if metadata is not None else None) or ()
    responses = (
        responses_table(flags, tables.get("controls"), order)
        if flags is not None
        else pd.DataFrame()
    )
    out.append("<h3>Populations that responded (AREG, by condition)</h3>")
    if is_empty(flags):
        why = nothing_scored_reasons(
            {"scores": pd.DataFrame(), "counts": tables.get("counts")}, metadata
        )
        out.append(f'<p class="empty">No repair scoring was run: {esc(" and ".join(why))}.</p>')
    elif responses.empty:
        out.append(
            '<p class="empty">No NK population met every AREG rule (net response above the '
            "FMO cut-off, interval above zero, enough events, a responding positive control)."
            "</p>"
        )
    else:
        out.append(_responses_html(flags, responses, tables.get("controls"), order, ri_cut,
                                   species))  # fmt: skip
    judged = not_judged_table(flags) if flags is not None else pd.DataFrame()
    if not judged.empty:
        out.append("<h3>What could not be judged</h3>")
        distinct = judged.attrs.get("distinct_rows", 0)
        out.append(
            f'<p class="lead">{distinct} distinct population × tube row(s) could not be judged. '
            "A row can fail several of these rules, so the counts per rule overlap and add up "
            "to more than that.</p>"
        )
        out.append(html_table(judged, source="tables/flags.csv"))
    return "".join(out) or f"<p>{esc('No findings.')}</p>"
