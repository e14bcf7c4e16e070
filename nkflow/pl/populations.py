"""Population frequency plots from the long ``populations`` table.

Both functions take the tidy table (``sample_id, population, parent, count,
percent_of_parent, ..., low_events``) and, optionally, the metadata sheet for grouping by
tissue and timepoint. They build figures with :func:`nkflow.pl._figure.new_figure`
(matplotlib Figures outside pyplot's state that show themselves in Jupyter), never save,
and are deterministic (no random jitter).

With a metadata sheet, frequencies count each donor, tissue and timepoint once
(:func:`~nkflow.tl.phenotype_rows`): stimulated tubes take their phenotype from the
unstimulated partner (so their rows are copies) and the positive-control and FMO tubes are
not samples; a donor measured in several batches is one donor, the mean of its batches
(:func:`~nkflow.tl.donor_rows`; the rule lives in :mod:`nkflow.tl._donors`). Groups
follow the sheet's order (timepoints in ``timepoint_order`` or
``metadata.attrs["timepoint_order"]`` when given), not the alphabet.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..tl._donors import donor_rows, phenotype_rows

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "frequencies",
    "frequency_heatmap",
    "group_labels",
    "group_order",
]

_VALUE_LABELS = {
    "percent_of_parent": "% of parent",
    "percent_of_nk": "% of NK",
    "count": "events",
}
_SKIP_DEFAULT = ("Cells", "Singlets", "Live")
_MAX_PANELS = 16


def _plain(text: object) -> str:
    """Text for matplotlib that is never parsed as mathtext (``$`` escaped)."""
    return str(text).replace("$", r"\$")


def group_labels(
    populations: pd.DataFrame,
    metadata: pd.DataFrame | None,
    *,
    groupby: Sequence[str] = ("tissue", "timepoint"),
) -> pd.Series:
    """Group label per row of ``populations`` (e.g. ``"liver · pre"``) from the metadata sheet.

    Parameters
    ----------
    populations
        Long table with a ``sample_id`` column.
    metadata
        The metadata sheet (``sample_id`` and the ``groupby`` columns); ``None`` gives one
        group, ``"all samples"``.
    groupby
        Metadata columns that define a group; missing columns are ignored.

    Returns
    -------
    pandas.Series
        One string per row, aligned with ``populations.index``.
    """
    if metadata is None or metadata.empty or "sample_id" not in metadata.columns:
        return pd.Series("all samples", index=populations.index)
    cols = [c for c in groupby if c in metadata.columns]
    if not cols:
        return pd.Series("all samples", index=populations.index)
    meta = metadata.drop_duplicates("sample_id").set_index(
        metadata.drop_duplicates("sample_id")["sample_id"].astype(str)
    )
    parts = []
    for col in cols:
        mapped = populations["sample_id"].astype(str).map(meta[col])
        parts.append(mapped.fillna("").astype(str).replace("", "(none)"))
    label = parts[0]
    for part in parts[1:]:
        label = label + " · " + part
    return label


def group_order(
    labels: Sequence[str] | pd.Series,
    metadata: pd.DataFrame | None,
    *,
    groupby: Sequence[str] = ("tissue", "timepoint"),
    timepoint_order: Sequence[str] | None = None,
) -> list[str]:
    """Group labels in the sheet's order (timepoints in ``timepoint_order`` when given).

    Parameters
    ----------
    labels
        Labels made by :func:`group_labels`.
    metadata
        The metadata sheet; ``None`` sorts the labels alphabetically.
    groupby
        The columns the labels were made from.
    timepoint_order
        Timepoints first, in this order; ``None`` uses ``metadata.attrs["timepoint_order"]``
        when set, else the sheet's order.

    Returns
    -------
    list of str
        Each distinct label once.
    """
    present = list(dict.fromkeys(str(v) for v in labels))
    cols = [] if metadata is None else [c for c in groupby if c in metadata.columns]
    if not cols:
        return sorted(present)
    if timepoint_order is None:
        timepoint_order = metadata.attrs.get("timepoint_order") or ()
    ranks = {}
    for col in cols:
        values = metadata[col].fillna("").astype(str).replace("", "(none)")
        seen = list(dict.fromkeys(values))
        if col == "timepoint":
            given = [str(t) for t in timepoint_order if str(t) in seen]
            seen = given + [v for v in seen if v not in given]
        ranks[col] = {v: i for i, v in enumerate(seen)}
    keyed = {}
    for label in present:
        parts = label.split(" · ")
        if len(parts) != len(cols):
            keyed[label] = (len(ranks) + 1, label)
            continue
        keyed[label] = tuple(
            ranks[c].get(p, len(ranks[c])) for c, p in zip(cols, parts, strict=True)
        )
    return sorted(present, key=lambda lab: (keyed[lab], lab))


def _populations_shown(table: pd.DataFrame, show: Sequence[str] | None) -> list[str]:
    names = list(dict.fromkeys(table["population"].astype(str)))
    if show is not None:
        wanted = [str(s) for s in show]
        return [n for n in wanted if n in names]
    kept = [n for n in names if n not in _SKIP_DEFAULT]
    return (kept or names)[:_MAX_PANELS]


def _new_figure(**kwargs: Any) -> Figure:
    """A new figure from :func:`nkflow.pl._figure.new_figure`.

    matplotlib is imported here, not with the module: the report uses the table helpers
    above without drawing.
    """
    from ._figure import new_figure

    return new_figure(**kwargs)


def _empty_figure(message: str) -> Figure:
    fig = _new_figure(figsize=(5, 1.2))
    ax = fig.subplots()
    ax.axis("off")
    ax.text(0.5, 0.5, _plain(message), ha="center", va="center", fontsize=11, color="0.4")
    return fig


def frequencies(
    populations: pd.DataFrame,
    metadata: pd.DataFrame | None = None,
    *,
    show: Sequence[str] | None = None,
    value: str = "percent_of_parent",
    groupby: Sequence[str] = ("tissue", "timepoint"),
    ncols: int = 4,
    one_per_unit: bool = True,
    timepoint_order: Sequence[str] | None = None,
) -> Figure:
    """Strip plot of one population statistic per sample, grouped by tissue and timepoint.

    One panel per population; each dot is a donor (the mean of its batches, see
    :func:`~nkflow.tl.donor_rows`; each sample when ``one_per_unit`` is false), the bar is the
    group median. Dots of a population below the minimum event count (``low_events``) are hollow.

    Parameters
    ----------
    populations
        The long populations table.
    metadata
        The metadata sheet, for grouping (see :func:`group_labels`).
    show
        Populations to plot, in order (default: all but Cells/Singlets/Live, at most 16).
    value
        Column to plot (``percent_of_parent``, ``percent_of_nk``, ``count``, ...).
    groupby
        Metadata columns that make the x-axis groups.
    ncols
        Panels per row.
    one_per_unit
        Count each donor, tissue and timepoint once, controls left out, a donor's batches
        averaged (:func:`~nkflow.tl.donor_rows`).
    timepoint_order
        Order of the timepoints (see :func:`group_order`).

    Returns
    -------
    matplotlib.figure.Figure
        The figure (a note when there is nothing to plot).
    """
    if populations is None or populations.empty or value not in populations.columns:
        return _empty_figure("No population frequencies to plot")
    table = (donor_rows(populations, metadata) if one_per_unit else populations).copy()
    table["_group"] = group_labels(table, metadata, groupby=groupby)
    table["_value"] = pd.to_numeric(table[value], errors="coerce")
    names = _populations_shown(table, show)
    if not names:
        return _empty_figure("None of the requested populations are in the table")
    groups = group_order(
        table["_group"], metadata, groupby=groupby, timepoint_order=timepoint_order
    )
    ncols = max(1, min(ncols, len(names)))
    nrows = math.ceil(len(names) / ncols)
    width_per = max(2.4, 0.55 * len(groups) + 1.2)
    fig = _new_figure(figsize=(width_per * ncols, 2.5 * nrows + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    colors = [f"C{i % 10}" for i in range(len(groups))]
    for ax, name in zip(axes, names, strict=False):
        sub = table[table["population"].astype(str) == name]
        for gi, group in enumerate(groups):
            vals = sub.loc[sub["_group"] == group]
            y = vals["_value"].to_numpy(dtype=float)
            low = (
                vals["low_events"].fillna(False).astype(bool).to_numpy()
                if "low_events" in vals.columns
                else np.zeros(len(vals), dtype=bool)
            )
            if len(y) == 0:
                continue
            offsets = np.linspace(-0.18, 0.18, len(y)) if len(y) > 1 else np.zeros(1)
            x = gi + offsets
            if (~low).any():
                ax.scatter(x[~low], y[~low], s=18, color=colors[gi], zorder=3, linewidths=0)
            if low.any():
                ax.scatter(x[low], y[low], s=18, facecolors="none", edgecolors=colors[gi], zorder=3)
            finite = y[np.isfinite(y)]
            if finite.size:
                med = float(np.median(finite))
                ax.hlines(med, gi - 0.3, gi + 0.3, color="0.15", linewidth=1.6, zorder=4)
        ax.set_title(_plain(name), fontsize=10)
        if not np.isfinite(sub["_value"].to_numpy(dtype=float)).any():  # not 0 %: no value
            why = "not set in any sample" if len(sub) else "in no sample"
            ax.text(0.5, 0.5, f"no value:\n{why}", transform=ax.transAxes, ha="center",
                    va="center", fontsize=9, color="0.35")  # fmt: skip
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([_plain(g) for g in groups], rotation=35, ha="right", fontsize=8)
        ax.set_xlim(-0.6, len(groups) - 0.4)
        ax.set_ylabel(_VALUE_LABELS.get(value, _plain(value)), fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
        ax.spines[["top", "right"]].set_visible(False)
        ax.grid(axis="y", color="0.92", zorder=0)
        if value.startswith("percent"):
            ax.set_ylim(bottom=0)
    for ax in axes[len(names) :]:
        ax.axis("off")
    return fig


def frequency_heatmap(
    populations: pd.DataFrame,
    metadata: pd.DataFrame | None = None,
    *,
    show: Sequence[str] | None = None,
    value: str = "percent_of_parent",
    groupby: Sequence[str] = ("tissue", "timepoint"),
    one_per_unit: bool = True,
    timepoint_order: Sequence[str] | None = None,
) -> Figure:
    """Heatmap of one statistic, samples (rows, ordered by group) by populations (columns).

    Cells of populations under the minimum event count are hatched.

    Parameters
    ----------
    populations
        The long populations table.
    metadata
        The metadata sheet; rows are ordered and labelled by its tissue and timepoint.
    show
        Populations (columns), in order; default as in :func:`frequencies`.
    value
        Column to show.
    groupby
        Metadata columns used to order and label the samples.
    one_per_unit
        One row per donor, tissue, timepoint and batch, controls left out
        (:func:`~nkflow.tl.phenotype_rows`): the rows are tubes, so a donor measured in
        several batches has a row for each.
    timepoint_order
        Order of the timepoints (see :func:`group_order`).

    Returns
    -------
    matplotlib.figure.Figure
        The figure (a note when there is nothing to plot).
    """
    if populations is None or populations.empty or value not in populations.columns:
        return _empty_figure("No population frequencies to plot")
    table = (phenotype_rows(populations, metadata) if one_per_unit else populations).copy()
    table["sample_id"] = table["sample_id"].astype(str)
    table["population"] = table["population"].astype(str)
    table["_group"] = group_labels(table, metadata, groupby=groupby)
    table["_value"] = pd.to_numeric(table[value], errors="coerce")
    names = _populations_shown(table, show)
    if not names:
        return _empty_figure("None of the requested populations are in the table")
    rank = {
        g: i
        for i, g in enumerate(
            group_order(table["_group"], metadata, groupby=groupby, timepoint_order=timepoint_order)
        )
    }
    order = table[["sample_id", "_group"]].drop_duplicates("sample_id")
    order = order.assign(_rank=order["_group"].map(rank)).sort_values(
        ["_rank", "sample_id"], kind="mergesort"
    )
    samples = order["sample_id"].tolist()
    grid = table.pivot_table(
        index="sample_id", columns="population", values="_value", aggfunc="first", dropna=False
    ).reindex(index=samples, columns=names)
    low = None
    if "low_events" in table.columns:
        low = (
            table.assign(_low=table["low_events"].fillna(False).astype(bool))
            .pivot_table(index="sample_id", columns="population", values="_low", aggfunc="max")
            .reindex(index=samples, columns=names)
            .astype("boolean")  # reindexing leaves NaN in an object frame
            .fillna(False)
            .astype(bool)
        )
    fig = _new_figure(
        figsize=(1.0 + 0.62 * len(names) + 2.2, 1.2 + 0.28 * len(samples)),
        layout="constrained",
    )
    ax = fig.subplots()
    data = np.ma.masked_invalid(grid.to_numpy(dtype=float))
    vmax = 100.0 if value.startswith("percent") else None
    im = ax.imshow(data, aspect="auto", cmap="viridis", vmin=0, vmax=vmax, interpolation="nearest")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([_plain(n) for n in names], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(samples)))
    groups = dict(zip(order["sample_id"], order["_group"], strict=True))
    ax.set_yticklabels([_plain(f"{s}  ({groups[s]})") for s in samples], fontsize=8)
    if low is not None:
        from matplotlib.patches import Rectangle

        rows, cols = np.nonzero(low.to_numpy())
        for r, c in zip(rows, cols, strict=True):
            ax.add_patch(
                Rectangle(
                    (c - 0.5, r - 0.5),
                    1,
                    1,
                    fill=False,
                    hatch="//",
                    edgecolor=(1.0, 1.0, 1.0, 0.45),
                    linewidth=0,
                )
            )
    cbar = fig.colorbar(im, ax=ax, shrink=0.8)
    cbar.set_label(_VALUE_LABELS.get(value, _plain(value)), fontsize=8)
    cbar.ax.tick_params(labelsize=7)
    return fig
