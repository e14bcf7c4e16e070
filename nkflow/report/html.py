"""Assemble the self-contained HTML batch report.

:func:`render_html` is pure: tables, metadata, figures, configuration and provenance in,
one HTML string out. Nothing is fetched from the network (no scripts, no web fonts, images
as data URIs) and a content-security policy forbids it anyway, so the file opens from a
USB stick and a ``<script>`` in a sample id can never run. The output depends only on the
inputs: no clock is read (a time appears only if the provenance carries one).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..gating.thresholds import TABLE_COLUMNS
from ..io.write import safe_name
from ..tl.caveats import caveats_for_species
from .figures import FigureItem, encode_figures, figure_png
from .findings import findings_section, report_species
from .gallery import gating_gallery, sample_anchors
from .methods import as_plain_dict, methods_text, provenance_templates, provenance_versions
from .qc_outliers import removed_fraction, unusual_removal
from .repair import KEY_CAVEAT, repair_section
from .sections import (
    clusters_section,
    gallery,
    overview_section,
    populations_section,
)
from .style import CSP, CSS
from .tables import definition_list, esc, html_table, is_empty

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "KNOWN_TABLES",
    "POPULATION_FIGURES",
    "batch_label",
    "population_figures",
    "render_html",
]

#: Tables that have their own section; any other table is shown in the appendix.
KNOWN_TABLES = (
    "status", "qc", "consistency", "populations", "thresholds", "clusters", "cluster_medians",
    "scores", "flags", "controls", "comparisons",
)  # fmt: skip
#: Tables with more rows than this are not shown in the appendix, only listed.
APPENDIX_MAX_ROWS = 5000

_TIME_KEYS = ("created", "started", "finished", "timestamp")
_INPUT_KEYS = ("inputs", "inputs_sha256", "input_files")
_PROV_SHOWN = {
    "versions", "dependencies", "nkflow_version", "nkflow", "version", "templates",
    "template", "template_hash", "config", "batch_notes", *_INPUT_KEYS, *_TIME_KEYS,
}  # fmt: skip


#: The report's population-frequency figures, in the report's order.
POPULATION_FIGURES = ("populations_by_tissue_timepoint", "populations_heatmap")


#: why an appendix table can be empty, said in place of a bare "No rows."
APPENDIX_EMPTY = {
    "bright_dim": (
        "No rows. CD56bright vs CD56dim AREG is a human NK read-out (Wang et al., EMBO J 2023): "
        "it needs both subsets gated (CD56 in the panel; mouse NK carry no CD56) and scored in "
        "a stimulated tube."
    ),
}

#: what the thresholds table's columns are on (read beside every thresholds table)
THRESHOLD_COLUMNS_NOTE = (
    "gate: the population the cut-off was set in (its parent), not the population it "
    "defines. value, ci_low, ci_high: on each channel's transformed scale (logicle or arcsinh "
    "for fluorescence and metal channels; scatter channels stay linear; FSC-H/FSC-A and other "
    "ratios are unitless); the *_linear columns give the same cut-off in the instrument's "
    "linear units. percent_above_at_ci_low, percent_above_at_ci_high: percent of the sample's "
    "events in the gate at or above the cut-off, were it at either end of its interval (a "
    "negative gate holds the rest; on a batch-level row, FMO or batch pool, those of the "
    "sample whose share its interval moves most, named in the note); a bootstrap interval's "
    "ends are its outermost redraws and an FMO percentile's its brightest few FMO events, so "
    "read a wide pair with the gating plot. Blank where there is no interval (a fixed or "
    "manual cut-off, bootstrap = 0) and for scatter gates."
)


def population_figures(
    populations: pd.DataFrame | None,
    metadata: pd.DataFrame | None,
    names: Collection[str] = POPULATION_FIGURES,
) -> dict[str, Figure]:
    """The report's population-frequency figures (empty when there is no table).

    Parameters
    ----------
    populations
        The long populations table.
    metadata
        The metadata sheet (groups by tissue and timepoint).
    names
        The figures to draw, of :data:`POPULATION_FIGURES` (a run draws each one on its
        own worker).

    Returns
    -------
    dict
        ``{"populations_by_tissue_timepoint": ..., "populations_heatmap": ...}``, in that
        order, with the figures of ``names``.
    """
    unknown = set(names) - set(POPULATION_FIGURES)
    if unknown:
        raise ValueError(
            f"unknown population figures {sorted(unknown)}; valid: {POPULATION_FIGURES}"
        )
    if is_empty(populations) or "percent_of_parent" not in populations.columns:
        return {}
    from ..pl import populations as pl_populations  # matplotlib: only when drawn here

    draw = {
        "populations_by_tissue_timepoint": pl_populations.frequencies,
        "populations_heatmap": pl_populations.frequency_heatmap,
    }
    return {name: draw[name](populations, metadata) for name in POPULATION_FIGURES if name in names}


def _section(anchor: str, title: str, body: str, lead: str = "") -> str:
    lead_html = f'<p class="lead">{esc(lead)}</p>' if lead else ""
    return f'<section id="{anchor}"><h2>{esc(title)}</h2>{lead_html}{body}</section>'


def _disagreeing(thresholds: pd.DataFrame) -> pd.Series:
    """True for the rows whose cut-off disagrees with the sample's own cut-off."""
    if "disagrees" not in thresholds.columns:
        return pd.Series(False, index=thresholds.index)
    return thresholds["disagrees"].map(_truthy).astype(bool)


def _truthy(value: Any) -> bool:
    """A ``disagrees`` cell as read back from any table: True, "True", "yes", 1."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "1")
    try:
        return bool(value) and not pd.isna(value)
    except (TypeError, ValueError):  # pd.NA
        return False


def _disagree_table(
    thresholds: pd.DataFrame, cols: Sequence[str], anchors: Mapping[str, str]
) -> str:
    """Every threshold that disagrees with its sample's own cut-off, shown in full."""
    rows = thresholds[_disagreeing(thresholds)]
    if rows.empty:
        return ""

    def link(col: str, value: Any, row: pd.Series) -> str:
        anchor = anchors.get(str(value)) if col == "sample_id" else None
        return f"#{anchor}" if anchor else ""

    # the note gives the own cut-off: last, once, whether or not ``cols`` holds it
    shown = [c for c in cols if c not in ("disagrees", "note")] + ["note"]
    return (
        f"<h3>{len(rows)} threshold(s) disagree with the sample's own cut-off</h3>"
        '<p class="lead">The batch-level cut-off these samples were gated with lies outside the '
        "bootstrap interval of the sample's own cut-off (its density valley or, where its "
        "positives dominate, the cut below their peak; the note names which, with its "
        "interval). Each is one gate of one sample to check on its plot "
        "(the sample id links to it); all are listed here, and first in the tables below.</p>"
        + html_table(
            rows, columns=shown, links=link, max_rows=len(rows), source="tables/thresholds.csv"
        )
    )


def _gating_section(
    tables: Mapping[str, pd.DataFrame],
    metadata: pd.DataFrame | None,
    figures: Sequence[FigureItem],
    counter: list[int],
    ids: Mapping[str, str] | None = None,
) -> str:
    out = ["<h3>Data-driven thresholds</h3>"]
    thresholds = tables.get("thresholds")
    # the cut-off on the transformed scale and in the instrument's linear units, then how
    # it was found (rule, evidence for the negative peak, control)
    cols = [c for c in TABLE_COLUMNS if c != "note"]
    if is_empty(thresholds):
        out.append('<p class="empty">No data-driven thresholds were recorded.</p>')
    else:
        out.append(f'<p class="hint">{THRESHOLD_COLUMNS_NOTE}</p>')
        cols += [c for c in thresholds.columns if c not in cols]
        anchors = {item.caption: ids[item.name] for item in figures if item.name in (ids or {})}
        out.append(_disagree_table(thresholds, cols, anchors))
        # disagreeing rows first (stable): a long table's hidden tail never holds one
        first = (~_disagreeing(thresholds)).to_numpy()
        thresholds = thresholds.iloc[np.argsort(first, kind="stable")]
        per_sample = pd.Series(False, index=thresholds.index)
        if "sample_id" in thresholds.columns:
            per_sample = thresholds["sample_id"].fillna("").astype(str) != ""
        batch_level, sample_level = thresholds[~per_sample], thresholds[per_sample]
        if not batch_level.empty:
            out.append(
                '<p class="lead">Set for the batch, with the rule, the control file and a 95% '
                "interval: an FMO control's cut-off for its tissue and batch; the batch pool's "
                "(rule <code>valley (batch pool)</code>) is one valley over all the batch's "
                "tissues, repeated on the row of each tissue it applies to.</p>"
            )
            out.append(html_table(batch_level, columns=[c for c in cols if c != "sample_id"],
                                  source="tables/thresholds.csv"))  # fmt: skip
        if not sample_level.empty:
            table = html_table(sample_level, columns=cols, source="tables/thresholds.csv")
            n_samples = sample_level["sample_id"].nunique()
            out.append(
                f'<details class="legend"><summary>{len(sample_level):,} per-sample '
                f"thresholds ({n_samples} sample{'' if n_samples == 1 else 's'}; scatter, "
                "viability and fallback gates)"
                f"</summary>{table}</details>"
            )
    out.append("<h3>Gating per sample</h3>")
    if figures:
        out.append(
            '<p class="hint">One sample per row, grouped by tissue; click a plot to fill the '
            "window, click again to close.</p>"
        )
        # one sample per row at full width: the gate grid is legible as shown (click to zoom)
        flags = _gating_flags(tables)
        out.append(gating_gallery(figures, metadata=metadata, counter=counter, ids=ids,
                                  status=tables.get("status"), flags=flags))  # fmt: skip
    else:
        out.append('<p class="empty">No gating plots were produced.</p>')
    return "".join(out)


def _gating_flags(tables: Mapping[str, pd.DataFrame]) -> dict[str, list[str]]:
    """What to check on a sample's gating plot: unusual QC loss, a threshold off its valley."""
    flags: dict[str, list[str]] = {}
    qc = tables.get("qc")
    if not is_empty(qc) and "sample_id" in qc.columns:
        unusual = unusual_removal(qc)
        for sid, frac in zip(qc.loc[unusual, "sample_id"], removed_fraction(qc)[unusual],
                             strict=True):  # fmt: skip
            flags.setdefault(str(sid), []).append(f"unusual QC loss: {100 * frac:.1f}% removed")
    thresholds = tables.get("thresholds")
    if not is_empty(thresholds) and "sample_id" in thresholds.columns:
        rows = thresholds[_disagreeing(thresholds)]
        markers = rows["marker"] if "marker" in rows.columns else rows["sample_id"].map(str)
        for sid, marker in zip(rows["sample_id"], markers.fillna(""), strict=True):
            flags.setdefault(str(sid), []).append(f"{marker} threshold off its own cut-off")
    return flags


def _provenance_section(provenance: Mapping[str, Any], config: dict[str, Any]) -> str:
    out = []
    times = [(k, provenance[k]) for k in _TIME_KEYS if k in provenance]
    if times:
        out.append(definition_list(times))
    out.append("<h3>Software versions</h3>")
    out.append(definition_list(provenance_versions(provenance).items()))
    out.append("<h3>Gating templates</h3>")
    out.append(definition_list(provenance_templates(provenance)))
    inputs = next((provenance[k] for k in _INPUT_KEYS if k in provenance), None)
    out.append("<h3>Input files</h3>")
    if isinstance(inputs, Mapping):
        rows = []
        for path, value in inputs.items():
            if isinstance(value, Mapping):
                rows.append({"file": str(path), **{str(k): v for k, v in value.items()}})
            else:
                rows.append({"file": str(path), "sha256": value})
        inputs_df = pd.DataFrame(rows)
    elif isinstance(inputs, list | tuple):
        inputs_df = pd.DataFrame(
            [dict(i) if isinstance(i, Mapping) else {"file": i} for i in inputs]
        )
    else:
        inputs_df = None
    out.append(html_table(inputs_df, empty="No input hashes recorded."))
    rest = {k: v for k, v in provenance.items() if k not in _PROV_SHOWN}
    if rest:
        out.append("<h3>Other provenance</h3>")
        out.append(f"<pre>{esc(json.dumps(rest, indent=2, sort_keys=True, default=str))}</pre>")
    out.append("<h3>Effective configuration</h3>")
    out.append(f"<pre>{esc(json.dumps(config, indent=2, sort_keys=True, default=str))}</pre>")
    return "".join(out)


def _appendix(
    tables: Mapping[str, pd.DataFrame], figures: Sequence[FigureItem], counter: list[int]
) -> str:
    out = []
    extra = [name for name in tables if name not in KNOWN_TABLES]
    big = [name for name in extra if len(tables[name]) > APPENDIX_MAX_ROWS]
    for name in extra:
        if name in big:
            continue
        out.append(f"<h3>{esc(name)}</h3>")
        stem = safe_name(name, default="table")
        empty = APPENDIX_EMPTY.get(name, "No rows.")
        out.append(html_table(tables[name], source=f"tables/{stem}.csv", empty=empty))
    if big:
        items = "".join(
            f"<li>{esc(name)}: {len(tables[name]):,} rows in "
            f"tables/{esc(safe_name(name, default='table'))}.csv and .parquet</li>"
            for name in big
        )
        out.append(f"<h3>Large tables (not shown)</h3><ul>{items}</ul>")
    if figures:
        out.append("<h3>Other figures</h3>")
        out.append(gallery(figures, counter=counter))
    return "".join(out)


def render_html(
    *,
    tables: Mapping[str, pd.DataFrame | None],
    metadata: pd.DataFrame | None,
    figures: Mapping[str, Figure | bytes] | None,
    config: Any,
    provenance: Mapping[str, Any] | None,
    caveats: str,
    title: str | None = None,
    population_plots: bool = True,
) -> str:
    """Render the batch report as one self-contained HTML document.

    Parameters
    ----------
    tables
        Result tables by name (``status``, ``qc``, ``populations``, ``thresholds``,
        ``clusters``, ``cluster_medians``, ``scores``, ``flags``; others go to the appendix).
        Any may be missing, ``None`` or empty.
    metadata
        The metadata sheet (``sample_id``, ``donor``, ``tissue``, ``timepoint``, ...).
    figures
        Figures by name; the name's prefix picks the section (see
        :mod:`nkflow.report.figures`). PNG or SVG bytes are accepted in place of a Figure.
    config
        The effective run configuration (dict or ``RunConfig``).
    provenance
        Versions, template hashes, input hashes, optional timestamps; ``batch_notes``
        (a list of lines), when present, are the batch overview's notes in place of
        those found in ``metadata`` (a run's metadata has no file paths).
    caveats
        Caveat text printed with the repair profile (after the fixed key statement).
    title
        Page title; by default "nkflow batch report" and the batch (:func:`batch_label`),
        so reports open side by side can be told apart.
    population_plots
        Add the population-frequency figures made by :mod:`nkflow.pl.populations` unless
        ``figures`` already has figures named ``populations...``.

    Returns
    -------
    str
        The HTML document.
    """
    tabs = {str(k): v for k, v in (tables or {}).items() if isinstance(v, pd.DataFrame)}
    prov = dict(provenance or {})
    cfg = as_plain_dict(config)
    figs: dict[str, Figure | bytes] = dict(figures or {})
    if population_plots and not any(
        str(k).lower().startswith(("populations", "frequenc")) for k in figs
    ):
        made = population_figures(tabs.get("populations"), metadata)
        figs.update({k: figure_png(v) for k, v in made.items()})
    items = encode_figures(figs)
    by_section: dict[str, list[FigureItem]] = {}
    for item in items:
        by_section.setdefault(item.section, []).append(item)
    counter = [0]
    title = title if title is not None else _default_title(metadata, prov)
    gating_ids = sample_anchors(by_section.get("gating", []))
    # sample id -> its gating plot's id: a sample id listed in the overview links to it
    anchors = {item.caption: gating_ids[item.name] for item in by_section.get("gating", [])}

    versions = provenance_versions(prov)
    sub = [f"nkflow {versions['nkflow']}" if "nkflow" in versions else "nkflow"]
    status = tabs.get("status")
    if not is_empty(status):
        sub.append(f"{len(status)} input file(s)")
    when = next((prov[k] for k in _TIME_KEYS if k in prov), None)
    if when is not None:
        sub.append(f"run {when}")

    methods = methods_text(cfg, prov, tabs, metadata=metadata)
    species = report_species(metadata, prov)
    sections = [
        (
            "findings",
            "Findings",
            findings_section(
                tabs,
                metadata,
                ri_cut=(prov.get("scoring") or {}).get("ri_cut"),
                species=species,
            ),
            "What differs between tissues and timepoints, which NK populations responded, and "
            "what could not be judged; the evidence follows.",
        ),
        (
            "overview",
            "Batch overview",
            overview_section(
                tabs, metadata, by_section.get("overview", []), counter, _notes(prov), anchors
            ),
            "Files, events, quality control and failures, with the reason for each failure.",
        ),
        (
            "gating",
            "Gating",
            _gating_section(tabs, metadata, by_section.get("gating", []), counter, gating_ids),
            "Thresholds set from the data (with rule, control file and confidence interval) and "
            "the gating plots of every sample.",
        ),
        (
            "populations",
            "Population frequencies",
            populations_section(tabs, metadata, by_section.get("populations", []), counter),
            "Frequencies by tissue and timepoint; hollow dots are populations with too few events.",
        ),
        (
            "clusters",
            "Clusters",
            clusters_section(
                tabs,
                by_section.get("clusters", []),
                counter,
                skipped=str(prov.get("clustering_skipped", "")),
                sizing=[str(n) for n in (prov.get("clustering") or {}).get("sizing") or ()],
            ),
            "FlowSOM-style metaclusters of gated NK cells pooled across the batch.",
        ),
        (
            "repair",
            "Repair profile",
            repair_section(
                tabs,
                caveats_for_species(caveats, species),  # mouse batches: no human-only biology
                by_section.get("repair", []),
                counter,
                species=species,
            ),
            "AREG response against controls, polarisation, clearance and residency, with the "
            "flags and the rule behind each.",
        ),
        (
            "methods",
            "Methods",
            f'<div class="methods">{_paragraphs_html(methods)}</div>',
            "",
        ),
        ("provenance", "Provenance", _provenance_section(prov, cfg), ""),
    ]
    appendix = _appendix(tabs, by_section.get("other", []), counter)
    if appendix:
        sections.append(("appendix", "Appendix", appendix, "Further tables and figures."))
    nav = "".join(f'<a href="#{a}">{esc(t)}</a>' for a, t, _, _ in sections)
    body = "".join(_section(a, t, b, lead) for a, t, b, lead in sections)
    banner = (
        f'<div class="banner"><b>{esc(KEY_CAVEAT)}</b> See the '
        f'<a href="#caveats">caveats</a> before reading the repair profile.</div>'
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>"
        f'<header class="top"><h1>{esc(title)}</h1><p>{esc(" · ".join(sub))}</p></header>'
        f'<nav class="toc">{nav}</nav><main>{banner}{body}</main>'
        f"<footer>Generated by {esc(sub[0])}. Tables: tables/*.csv and *.parquet beside this "
        "file.</footer></body></html>\n"
    )


def batch_label(metadata: pd.DataFrame | None, provenance: Mapping[str, Any]) -> str:
    """What tells this batch from another: the sheet's batch ids, else the input's name.

    Parameters
    ----------
    metadata
        The metadata sheet (its ``batch`` column).
    provenance
        The run's provenance (its ``input``: the sheet or folder the run read).

    Returns
    -------
    str
        ``"batch H60"``, ``"batches B1, B2, B3 +2 more"``, ``"sample_data"``,
        ``"run_7/metadata.csv"`` or ``""``.
    """
    if not is_empty(metadata) and "batch" in metadata.columns:
        ids = [b for b in dict.fromkeys(metadata["batch"].dropna().astype(str).str.strip()) if b]
        if ids:
            more = f" +{len(ids) - 3} more" if len(ids) > 3 else ""
            return ("batch " if len(ids) == 1 else "batches ") + ", ".join(ids[:3]) + more
    text = str(provenance.get("input") or "").replace("\\", "/").rstrip("/")
    if not text:
        return ""
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if not parts:
        return ""
    # a sheet's own name says little ("metadata.csv"): with the folder it sits in
    return "/".join(parts[-2:]) if "." in parts[-1] and len(parts) > 1 else parts[-1]


def _default_title(metadata: pd.DataFrame | None, provenance: Mapping[str, Any]) -> str:
    label = batch_label(metadata, provenance)
    return f"nkflow batch report · {label}" if label else "nkflow batch report"


def _notes(provenance: Mapping[str, Any]) -> list[str] | None:
    """The run's batch notes (its plan's, as printed), or None when the provenance has none."""
    notes = provenance.get("batch_notes")
    if not isinstance(notes, list | tuple):
        return None
    return [str(line) for line in notes]


def _paragraphs_html(text: str) -> str:
    return "".join(f"<p>{esc(p.strip())}</p>" for p in text.split("\n\n") if p.strip())
