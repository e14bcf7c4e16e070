"""Report sections: overview, gating, population frequencies, clusters and repair profile.

Each builder takes the tables it needs (any of them may be ``None`` or empty) and returns
an HTML fragment in which every value from the data has been escaped with
:func:`~nkflow.report.tables.esc`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..io.pairing import batch_notes
from ..pl.populations import group_labels, group_order
from ..tl._donors import donor_rows, phenotype_rows
from .figures import FigureItem
from .gallery import gallery, sample_link
from .qc_outliers import (
    RULE_TEXT,
    RULE_WHY,
    batch_median,
    median_text,
    removed_fraction,
    unusual_removal,
)
from .tables import esc, fmt_value, html_table, is_empty, split_qc

__all__ = [
    "clusters_section",
    "gallery",
    "overview_section",
    "populations_section",
]
_STATUSES = ("ok", "qc-failed", "parse-failed", "failed", "skipped")
#: statuses listed first in the Files table (each is a file the analysis lacks)
_FAILURES = ("failed", "parse-failed", "qc-failed")
_META_COLS = ("donor", "tissue", "timepoint", "stimulation", "role", "batch")


def _status_cell(col: str, value: Any, row: pd.Series) -> str:
    if col == "status" and str(value) in _STATUSES:
        return f"st-{value}"
    return ""


def _status_items(rows: pd.DataFrame, anchors: Mapping[str, str] | None = None) -> str:
    items = []
    for _, row in rows.iterrows():
        who = row.get("sample_id", "") or row.get("file", "")
        code = row.get("reason_code", "")
        message = row.get("message", "")
        items.append(
            f"<li><b>{sample_link(who, anchors)}</b> ({esc(row.get('file', ''))}): "
            f"{esc(row.get('status', ''))}"
            + (f" <code>{esc(code)}</code>" if isinstance(code, str) and code else "")
            + (f" — {esc(message)}" if isinstance(message, str) and message else "")
            + "</li>"
        )
    return "".join(items)


def _card(value: Any, label: str, kind: str = "") -> str:
    cls = f"card {kind}".strip()
    return (
        f'<div class="{cls}"><div class="v">{esc(fmt_value(value))}</div>'
        f'<div class="k">{esc(label)}</div></div>'
    )


def _num_sum(table: pd.DataFrame | None, col: str) -> float | None:
    if is_empty(table) or col not in table.columns:
        return None
    values = pd.to_numeric(table[col], errors="coerce")
    return float(values.sum()) if values.notna().any() else None


def samples_table(
    status: pd.DataFrame | None, qc: pd.DataFrame | None, metadata: pd.DataFrame | None
) -> pd.DataFrame:
    """One row per input: metadata, status and QC joined on ``sample_id``."""
    frames = [t for t in (status, metadata) if not is_empty(t) and "sample_id" in t.columns]
    if not frames:
        return pd.DataFrame()
    base = frames[0].copy()
    base["sample_id"] = base["sample_id"].astype(str)
    if len(frames) == 2:
        meta = frames[1].copy()
        meta["sample_id"] = meta["sample_id"].astype(str)
        keep = ["sample_id"] + [
            c for c in _META_COLS if c in meta.columns and c not in base.columns
        ]
        base = base.merge(meta[keep].drop_duplicates("sample_id"), on="sample_id", how="left")
    if not is_empty(qc) and "sample_id" in qc.columns:
        q = qc.copy()
        q["sample_id"] = q["sample_id"].astype(str)
        keep = [
            c
            for c in ("sample_id", "n_in", "n_out", "removed_time", "removed_margin")
            if c in q.columns
        ]
        base = base.merge(
            q[keep].drop_duplicates("sample_id"), on="sample_id", how="left", suffixes=("", "_qc")
        )
        if "n_in" in base.columns and "n_out" in base.columns:
            n_in = pd.to_numeric(base["n_in"], errors="coerce")
            n_out = pd.to_numeric(base["n_out"], errors="coerce")
            with np.errstate(divide="ignore", invalid="ignore"):
                base["kept_%"] = (100.0 * n_out / n_in).where(n_in > 0)
    order = [
        "sample_id",
        "file",
        *_META_COLS,
        "status",
        "kept_%",  # beside status: the lead says it is highlighted, so it must be on screen
        "reason_code",
        "n_events",
        "n_in",
        "n_out",
        "removed_time",
        "removed_margin",
    ]
    cols = [c for c in order if c in base.columns]
    return base[cols]


def _removed_fraction(qc: pd.DataFrame) -> pd.Series:
    return removed_fraction(qc).fillna(0.0)


def _qc_verdict(qc: pd.DataFrame | None, anchors: Mapping[str, str] | None = None) -> str:
    """One true sentence on what QC removed, per file at its worst (not "passed QC")."""
    qc, fmo = split_qc(qc)
    if is_empty(qc) or "n_in" not in qc.columns or "n_out" not in qc.columns:
        return "Every analysed file was read."
    frac = _removed_fraction(qc)
    touched = int((frac > 0).sum())
    controls = ""
    if not is_empty(fmo) and {"n_in", "n_out"} <= set(fmo.columns):
        cf = _removed_fraction(fmo)
        controls = (
            f" QC removed events from {int((cf > 0).sum())} of the {len(fmo)} FMO tube(s) "
            f"read for their cut-offs, at most {100 * cf.max():.1f}%."
        )
    if not touched:
        return "Every analysed file was read; QC removed no events." + controls
    worst = int(frac.to_numpy().argmax())
    sid = sample_link(qc["sample_id"].iloc[worst], anchors) if "sample_id" in qc else "one file"
    return (
        f"Every analysed file was read; QC removed events from {touched} of the {len(qc)} "
        f"analysed tube(s), at most {100 * frac.iloc[worst]:.1f}% ({sid}); per tube below."
        + controls
    )


def _event_cards(status: pd.DataFrame | None, qc: pd.DataFrame | None) -> list[str]:
    """Events read, kept and removed, all three over the tubes QC read (FMO tubes too).

    The label says which tubes: the QC list below has the same ones.
    """
    n_in, n_out = _num_sum(qc, "n_in"), _num_sum(qc, "n_out")
    if n_in is None:  # no QC table: the files' event counts alone
        n_events = _num_sum(status, "n_events")
        return [] if n_events is None else [_card(int(n_events), "events read")]
    fmo = split_qc(qc)[1]
    n_fmo = 0 if fmo is None else len(fmo)
    which = f"{len(qc) - n_fmo} analysed" + (f" + {n_fmo} FMO" if n_fmo else "") + " tubes"
    cards = [_card(int(n_in), f"events read ({which})")]
    if n_in and n_out is not None:
        cards.append(_card(int(n_out), "events after QC (same tubes)"))
        cards.append(_card(f"{100 * (n_in - n_out) / n_in:.2f}%", "removed by QC (same tubes)"))
    return cards


def _unusual_box(qc: pd.DataFrame | None, anchors: Mapping[str, str] | None) -> str:
    """The tubes whose QC loss is unusual for the batch, named with the rule (or "")."""
    if is_empty(qc) or "sample_id" not in qc.columns:
        return ""
    flagged = unusual_removal(qc)
    if not flagged.any():
        return ""
    frac = removed_fraction(qc)
    items = "".join(
        f"<li><b>{sample_link(sid, anchors)}</b>: {100 * f:.1f}% removed</li>"
        for sid, f in sorted(
            zip(qc.loc[flagged, "sample_id"], frac[flagged], strict=True), key=lambda t: -t[1]
        )
    )
    return (
        f'<div class="unusual-box"><b>{int(flagged.sum())} tube(s) lost an unusual share of '
        f"their events to QC</b> ({median_text(batch_median(qc))}):"
        f"<ul>{items}</ul>Flagged when {esc(RULE_TEXT)}: check what QC removed from it "
        "(below) and its gating plot before comparing it with the other tubes.</div>"
    )


def _files_table(
    status: pd.DataFrame | None,
    qc: pd.DataFrame | None,
    metadata: pd.DataFrame | None,
    anchors: Mapping[str, str] | None,
) -> str:
    """The Files table: failed files first, then the sheet's order; unusual QC loss marked."""
    table = samples_table(status, qc, metadata)
    if not is_empty(table) and "status" in table.columns:
        first = (~table["status"].astype(str).isin(_FAILURES)).to_numpy()
        table = table.iloc[np.argsort(first, kind="stable")]
    unusual: set[str] = set()
    if not is_empty(qc) and "sample_id" in qc.columns:
        unusual = set(qc.loc[unusual_removal(qc), "sample_id"].astype(str))

    def cell_class(col: str, value: Any, row: pd.Series) -> str:
        if col == "kept_%" and str(row.get("sample_id", "")) in unusual:
            return "unusual"
        return _status_cell(col, value, row)

    def link(col: str, value: Any, row: pd.Series) -> str:
        anchor = (anchors or {}).get(str(value)) if col == "sample_id" else None
        return f"#{anchor}" if anchor else ""

    lead = (
        '<p class="lead">Failed files first, then the sheet\'s order; a sample id links to '
        'its gating plot. A <b class="unusual">kept %</b> is highlighted when '
        f"{esc(RULE_TEXT)}. {esc(RULE_WHY)}</p>"
    )
    return lead + html_table(
        table,
        cell_class=cell_class,
        links=link,
        source="tables/status.csv",
        labels={
            "kept_%": "kept %",
            "n_in": "events in",
            "n_out": "events after QC",
            "n_events": "events ($TOT)",
        },
        max_rows=max(len(table), 1),  # every file: a failure must never be the hidden row
        empty="No files.",
    )


def overview_section(
    tables: Mapping[str, pd.DataFrame],
    metadata: pd.DataFrame | None,
    figures: Sequence[FigureItem],
    counter: list[int],
    notes: Sequence[str] | None = None,
    anchors: Mapping[str, str] | None = None,
) -> str:
    """Batch overview: key numbers, failures with reasons, per-file table, QC.

    ``notes`` are the batch's notes as the run printed them with its plan (files the sheet
    leaves out, files with identical content, the pairing ...); without them, those
    :func:`~nkflow.io.pairing.batch_notes` finds in ``metadata``. ``anchors``
    (``sample_id -> element id`` of its gating plot) link each sample id listed to its plot.
    """
    status, qc = tables.get("status"), tables.get("qc")
    out = []
    cards = []
    if not is_empty(status) and "status" in status.columns:
        counts = status["status"].astype(str).value_counts()
        cards.append(_card(len(status), "input files"))
        ok = status["status"].astype(str) == "ok"
        if "reason_code" in status.columns:  # FMO tubes only set cut-offs: counted apart
            control = ok & (status["reason_code"].astype(str) == "CONTROL")
        else:
            control = ok & False
        cards.append(_card(int((ok & ~control).sum()), "analysed tubes (ok)", "ok"))
        if control.any():
            cards.append(_card(int(control.sum()), "FMO controls (ok)", "ok"))
        # every status that is neither ok nor skipped is a failure (parse, QC, processing)
        failed = int(sum(n for s, n in counts.items() if s not in ("ok", "skipped")))
        cards.append(_card(failed, "failed", "bad" if failed else ""))
        if counts.get("skipped", 0):
            cards.append(_card(int(counts.get("skipped", 0)), "skipped"))
    elif not is_empty(metadata):
        cards.append(_card(len(metadata), "samples in the sheet"))
    cards += _event_cards(status, qc)
    if cards:
        out.append(f'<div class="cards">{"".join(cards)}</div>')
    else:
        out.append('<p class="empty">No file status or QC table was produced.</p>')
    if not is_empty(status) and "status" in status.columns:
        st = status["status"].astype(str)
        failed = status[~st.isin(["ok", "skipped"])]
        skipped = status[st == "skipped"]
        n_ok = int((st == "ok").sum())
        if len(failed):
            rest = (
                "the rest of the batch was analysed without them"
                if n_ok
                else "no file could be analysed"
            )
            out.append(
                f'<div class="failures"><b>{len(failed)} file(s) failed</b> ({rest}):'
                f"<ul>{_status_items(failed, anchors)}</ul></div>"
            )
        elif n_ok:
            out.append(f'<div class="allgood">{_qc_verdict(qc, anchors)}</div>')
        out.append(_unusual_box(qc, anchors))
        if not is_empty(qc) and "summary" in qc.columns:
            frac = removed_fraction(qc)
            removed = qc[frac > 0].assign(_f=frac[frac > 0])
            removed = removed.sort_values("_f", ascending=False, kind="stable")
            if len(removed):
                items = "".join(
                    f"<li><b>{sample_link(r.sample_id, anchors)}</b>: {esc(r.summary)}</li>"
                    for r in removed.itertuples()
                )
                out.append(
                    f'<details class="legend"><summary>What QC removed, per file '
                    f"({len(removed)}, largest share first)</summary><ul>{items}</ul></details>"
                )
        message = status.get("message", pd.Series("", index=status.index)).fillna("").astype(str)
        code = status.get("reason_code", pd.Series("OK", index=status.index)).astype(str)
        # controls carry an informative message ("FMO control: thresholds computed"), not a
        # warning: only analysed samples whose message is not empty came with warnings
        noted = status[(st == "ok") & (code == "OK") & message.str.strip().ne("")]
        if len(noted):
            out.append(
                f'<details class="legend"><summary>{len(noted)} analysed file(s) came with '
                "warnings (low event counts, fallback thresholds ...)</summary>"
                f"<ul>{_status_items(noted, anchors)}</ul></details>"
            )
        if len(skipped):
            out.append(
                f'<div class="skipped"><b>{len(skipped)} file(s) skipped</b> (not analysed by '
                f"design):<ul>{_status_items(skipped, anchors)}</ul></div>"
            )
    if notes is None and not is_empty(metadata):  # a sheet without the run's notes
        notes = batch_notes(metadata)
    # how the tubes relate, what the sheet leaves out (also printed by nkflow check / run)
    out += [f'<p class="note">{esc(line)}</p>' for line in notes or ()]
    out.append("<h3>Files and samples</h3>")
    out.append(_files_table(status, qc, metadata, anchors))
    consistency = tables.get("consistency")
    if not is_empty(consistency):
        out.append("<h3>Batch consistency</h3>")
        out.append(
            '<p class="lead">Where files of the batch disagree (channels, markers, ranges, '
            "keywords), and how nkflow reconciled them.</p>"
        )
        out.append(html_table(consistency, source="tables/consistency.csv"))
    if figures:
        out.append("<h3>Quality control</h3>")
        out.append(gallery(figures, counter=counter))
    return "".join(out)


def _population_summary(pops: pd.DataFrame, metadata: pd.DataFrame | None) -> pd.DataFrame:
    table = donor_rows(pops, metadata).copy()
    table["group"] = group_labels(table, metadata)
    table["_v"] = pd.to_numeric(table["percent_of_parent"], errors="coerce")
    rows = []
    populations = list(dict.fromkeys(table["population"].astype(str)))
    groups = group_order(table["group"], metadata)
    for name in populations:
        row: dict[str, Any] = {"population": name}
        sub = table[table["population"].astype(str) == name]
        if "parent" in sub.columns:
            row["parent"] = str(sub["parent"].iloc[0])
        for group in groups:
            here = sub.loc[sub["group"] == group, "_v"]
            vals = here.dropna()
            if len(vals) > 1:
                row[group] = (
                    f"{vals.median():.1f} ({vals.min():.1f}–{vals.max():.1f}), n={len(vals)}"
                )
            elif len(vals):
                row[group] = f"{vals.iloc[0]:.1f}, n=1"
            else:  # gated there but never set (too few events): not 0 %, not absent
                row[group] = "not set" if len(here) else "–"
        rows.append(row)
    return pd.DataFrame(rows)


def populations_section(
    tables: Mapping[str, pd.DataFrame],
    metadata: pd.DataFrame | None,
    figures: Sequence[FigureItem],
    counter: list[int],
) -> str:
    """Population frequencies by tissue and timepoint, and per sample."""
    pops = tables.get("populations")
    out = []
    if figures:
        out.append(gallery(figures, wide=True, counter=counter))
    if is_empty(pops) or not {"sample_id", "population", "percent_of_parent"} <= set(pops.columns):
        out.append('<p class="empty">No population table was produced.</p>')
        return "".join(out)
    out.append("<h3>% of parent by tissue and timepoint</h3>")
    out.append(
        '<p class="lead">Median (range) of the % of parent across donors, '
        "and the number of donors, per group of the metadata sheet (in the sheet's order). "
        "Each donor, tissue and timepoint counts once: stimulated tubes take their phenotype "
        "from the unstimulated partner, a donor measured in several batches is the mean of "
        "its batches, and positive-control and FMO tubes are not samples "
        "(all rows are in tables/populations.csv).</p>"
    )
    out.append(html_table(_population_summary(pops, metadata), source="tables/populations.csv"))
    out.append("<h3>% of parent per sample</h3>")
    table = phenotype_rows(pops, metadata).copy()
    table["sample_id"] = table["sample_id"].astype(str)
    table["population"] = table["population"].astype(str)
    table["_v"] = pd.to_numeric(table["percent_of_parent"], errors="coerce")
    low = (
        table["low_events"].fillna(False).astype(bool)
        if "low_events" in table.columns
        else pd.Series(False, index=table.index)
    )
    table["_cell"] = [
        ("–" if pd.isna(v) else f"{v:.1f}") + (" †" if lo else "")
        for v, lo in zip(table["_v"], low, strict=True)
    ]
    names = list(dict.fromkeys(table["population"]))
    samples = list(dict.fromkeys(table["sample_id"]))
    wide = (
        table.drop_duplicates(["sample_id", "population"])
        .pivot(index="sample_id", columns="population", values="_cell")
        .reindex(index=samples, columns=names)
        .fillna("–")
        .reset_index()
    )

    def low_cell(col: str, value: Any, row: pd.Series) -> str:
        return "low" if isinstance(value, str) and value.endswith("†") else ""

    out.append(html_table(wide, cell_class=low_cell, source="tables/populations.csv"))
    out.append(
        '<p class="note">† fewer events than the minimum for a stable percentage '
        "(low_events); Wilson 95% intervals for every value are in "
        "tables/populations.csv.</p>"
    )
    return "".join(out)


def _natural_keys(values: pd.Series) -> list[int]:
    keys: list[tuple[int, float, str]] = []
    for v in values.astype(str):
        try:
            keys.append((0, float(v), v))
        except ValueError:
            keys.append((1, 0.0, v))
    order = sorted(range(len(keys)), key=keys.__getitem__)
    rank = [0] * len(keys)
    for r, i in enumerate(order):
        rank[i] = r
    return rank


def _heat_style(values: pd.Series):
    v = pd.to_numeric(values, errors="coerce")
    lo, hi = v.min(), v.max()
    span = (hi - lo) if pd.notna(hi) and hi > lo else 1.0

    def style(value: Any) -> str:
        try:
            x = float(value)
        except (TypeError, ValueError):
            return ""
        if not np.isfinite(x) or pd.isna(lo):
            return ""
        t = min(1.0, max(0.0, (x - lo) / span))
        r, g, b = (round(255 + (c - 255) * t) for c in (31, 95, 168))
        ink = "#fff" if t > 0.6 else "#1d2433"
        return f"background:rgb({r},{g},{b});color:{ink}"

    return style


def _median_statistic(medians: pd.DataFrame, figures: Sequence[FigureItem]) -> str:
    """Which median the medians table holds, and how it differs from the heatmap figure's.

    ``tables/cluster_medians.csv`` has one median per tube, metacluster and marker, over
    every cell of the tube mapped there; the table shows their median over tubes. The
    heatmap figure shows the median of the pooled training cells instead.
    """
    n = medians["sample_id"].nunique() if "sample_id" in medians.columns else 1
    what = (
        "Each value is a median of medians: each tube's median over its cells in the "
        "metacluster (every cell mapped onto the clustering, not only training cells), "
        f"then the median of those over the tubes with cells there (of {n} tubes)"
        if n > 1
        else "Each value is the tube's median over its cells in the metacluster (every cell "
        "mapped onto the clustering, not only training cells)"
    )
    what += "; <code>cells</code> counts those cells over all tubes."
    drawn = any(f.name in ("clusters_heatmap", "cluster_heatmap") for f in figures)
    if drawn:
        what += (
            " The heatmap figure above shows another statistic, the median of the pooled "
            "training cells the metaclusters were fitted and named on, so the same "
            "metacluster and marker can read differently there."
        )
    return what


def clusters_section(
    tables: Mapping[str, pd.DataFrame],
    figures: Sequence[FigureItem],
    counter: list[int],
    skipped: str = "",
    sizing: Sequence[str] = (),
) -> str:
    """Cluster heatmap and abundance (figures), median marker table and abundance table.

    ``skipped``: why the run made no clustering (the provenance's ``clustering_skipped``);
    ``sizing``: the settings the batch's cells did not support (its ``clustering.sizing``).
    """
    out = [f'<p class="note">Clustering: {esc(note)}.</p>' for note in sizing]
    if figures:
        out.append(gallery(figures, wide=True, counter=counter))
    medians = tables.get("cluster_medians")
    if not is_empty(medians) and {"metacluster", "marker", "median"} <= set(medians.columns):
        m = medians.copy()
        if "label" not in m.columns:
            m["label"] = ""
        m["metacluster"] = m["metacluster"].astype(str)
        m["label"] = m["label"].fillna("").astype(str)
        m["marker"] = m["marker"].astype(str)
        m["median"] = pd.to_numeric(m["median"], errors="coerce")
        markers = list(dict.fromkeys(m["marker"]))
        wide = m.pivot_table(
            index=["metacluster", "label"], columns="marker", values="median", aggfunc="median"
        )
        wide = wide.reindex(columns=markers).reset_index()
        if "n_cells" in m.columns:  # the cells behind each row's medians, all samples
            cells = m.drop_duplicates(["metacluster", *(["sample_id"] if "sample_id" in m else [])])
            n = pd.to_numeric(cells["n_cells"], errors="coerce").groupby(cells["metacluster"])
            wide.insert(2, "cells", wide["metacluster"].map(n.sum()).astype("Int64"))
        wide = wide.iloc[np.argsort(_natural_keys(wide["metacluster"]), kind="stable")]
        styles = {mk: _heat_style(wide[mk]) for mk in markers}

        def cell_style(col: str, value: Any, row: pd.Series) -> str:
            return styles[col](value) if col in styles else ""

        out.append("<h3>Median marker expression per metacluster</h3>")
        out.append(
            f'<p class="lead">{_median_statistic(m, figures)} Transformed scale'
            + "; shading runs from the lowest to the highest metacluster within each "
            "marker. In the labels, <code>+</code>/<code>-</code> are calls against the "
            "marker's gating cut-off (or a density valley of the clustered cells); "
            "<code>hi</code>/<code>lo</code> only say above or below the clustered cells' "
            "median, for markers with neither: relative, not positivity calls.</p>"
        )
        out.append(html_table(wide, cell_style=cell_style, source="tables/cluster_medians.csv"))
    clusters = tables.get("clusters")
    if not is_empty(clusters) and {"sample_id", "metacluster", "percent"} <= set(clusters.columns):
        c = clusters.copy()
        if "label" not in c.columns:
            c["label"] = ""
        c["sample_id"] = c["sample_id"].astype(str)
        c["metacluster"] = c["metacluster"].astype(str)
        c["label"] = c["label"].fillna("").astype(str)
        c["percent"] = pd.to_numeric(c["percent"], errors="coerce")
        c["column"] = c["metacluster"]
        order = c.drop_duplicates("metacluster")
        order = order.iloc[np.argsort(_natural_keys(order["metacluster"]), kind="stable")]
        samples = list(dict.fromkeys(c["sample_id"]))
        wide = c.pivot_table(index="sample_id", columns="column", values="percent",
                             aggfunc="first")  # fmt: skip
        wide = wide.reindex(index=samples, columns=list(order["column"])).reset_index()
        if "n_population" in c.columns:  # the denominator of each row's percentages
            n = pd.to_numeric(c.drop_duplicates("sample_id").set_index("sample_id")["n_population"],
                              errors="coerce")  # fmt: skip
            wide.insert(1, "clustered cells", wide["sample_id"].map(n).astype("Int64"))
        out.append("<h3>Abundance per sample (% of clustered cells)</h3>")
        out.append(
            '<p class="lead">Columns are metaclusters; their labels are in the table above. '
            "<code>clustered cells</code> is each tube's denominator: a percentage of a few "
            "cells moves by whole cells.</p>"
        )
        out.append(html_table(wide, source="tables/clusters.csv"))
    if len(out) == len(sizing) and skipped:
        out.append(f'<p class="empty">Clustering was skipped: {esc(skipped)}.</p>')
    elif len(out) == len(sizing):
        out.append(
            '<p class="empty">Clustering produced no results (switched off, or no '
            "sample reached this step).</p>"
        )
    return "".join(out)
