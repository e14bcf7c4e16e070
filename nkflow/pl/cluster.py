"""Cluster plots: metacluster median heatmap, abundance per sample/group, 2-D embedding.

All functions build figures with :func:`nkflow.pl._figure.new_figure` (no pyplot state;
they show themselves in Jupyter), return them, and never save.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.textpath import TextPath

from nkflow.exceptions import ConfigError

from ._figure import new_figure
from ._heatmap_layout import (
    COLORBAR_PT,
    COLORBAR_TICK_PT,
    SUBTITLE_PT,
    TICK_PAD_PT,
    TITLE_PT,
    VALUE_PT,
    heatmap_layout,
)

__all__ = ["abundance", "embedding", "heatmap"]

logger = logging.getLogger(__name__)

_GROUPS = ("sample_id", "tissue", "timepoint", "donor", "stimulation")
_METHODS = ("pca", "tsne", "umap")
_LEGEND_PT = 6.0  # the embedding legend's font size


def _plain(text: object) -> str:
    """Text that matplotlib never parses as mathtext."""
    return str(text).replace("$", r"\$")


def _colours(n: int) -> list:
    cmap = colormaps["tab20" if n > 10 else "tab10"]
    return [cmap(i % cmap.N) for i in range(n)]


def heatmap(
    result: Any,
    *,
    markers: Sequence[str] | None = None,
    scale: str = "column",
) -> Figure:
    """Heatmap of metacluster medians (rows: metaclusters with names; columns: markers).

    Each cell is the median of the metacluster's pooled training cells (in a run, the
    subsample of the unstimulated tubes the clustering was fitted and named on), not of
    every tube mapped onto it and not a median of per-tube medians (the report's table of
    ``tables/cluster_medians.csv`` is the latter); the subtitle and the colour bar say so.

    The figure's size and fonts follow the number of markers and metaclusters and the
    lengths of their labels (:func:`nkflow.pl._heatmap_layout.heatmap_layout`): up to
    16 × 20 inches, then the cells and their numbers shrink, and below 5.5 pt the numbers
    are not written (the colour bar's label says so).

    Parameters
    ----------
    result
        A :class:`~nkflow.tl.cluster.ClusteringResult`.
    markers
        Columns to show; default ``result.label_markers``.
    scale
        ``"column"`` rescales each marker to 0-1 across metaclusters (colours compare
        metaclusters); ``"none"`` shows the transformed medians.

    Returns
    -------
    matplotlib.figure.Figure
        The heatmap, with the training-cell count of each metacluster in its row label
        (``n=``) and each median written in its cell, in black or white by the cell's
        colour, when it fits.

    Raises
    ------
    ConfigError
        ``scale`` is neither ``"column"`` nor ``"none"``.
    """
    if scale not in ("column", "none"):
        raise ConfigError(f"heatmap: scale={scale!r} is invalid; choose 'column' or 'none'")
    med = result.medians
    markers = list(markers) if markers is not None else list(result.label_markers)
    values = med[markers].to_numpy(dtype=float)
    shown = values
    if scale == "column":
        lo, hi = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
        shown = (values - lo) / np.where(hi > lo, hi - lo, 1.0)
    n_rows, n_cols = values.shape
    counts = med["n_cells"] if "n_cells" in med else pd.Series(np.nan, index=med.index)
    what = "median of the pooled training cells"
    bar = f"{what}, scaled 0-1 per marker" if scale == "column" else f"{what} (transformed)"
    rows = [
        _plain(f"{k}: {result.labels.get(int(k), '')} ({_count(counts.loc[k])})") for k in med.index
    ]
    columns = [_plain(m) for m in markers]
    best = None
    for decimals in (2, 1):  # one decimal only where two would shrink the numbers
        texts = np.array([[f"{v:.{decimals}f}" for v in row] for row in values], dtype=object)
        trial = heatmap_layout(
            rows,
            columns,
            sorted(set(texts.ravel())),
            title="Median marker expression per metacluster",
            subtitle=_training_note(result, counts),
            colorbar_label=bar,
            omitted="; numbers not written: the cells are too small for them",
        )
        if best is None or (trial.value_pt or 0.0) > (best[0].value_pt or 0.0):
            best = trial, texts
        if best[0].value_pt == VALUE_PT:
            break
    layout, texts = best
    fig = new_figure(figsize=layout.figsize)
    ax = fig.add_axes(layout.heat)
    im = ax.imshow(shown, aspect="auto", cmap="viridis")
    ax.set_xticks(range(n_cols), columns, rotation=90, fontsize=layout.col_pt)
    ax.set_yticks(range(n_rows), layout.row_labels, fontsize=layout.label_pt)
    ax.tick_params(length=0, pad=TICK_PAD_PT)
    if layout.value_pt is not None and values.size:
        rgba = im.cmap(im.norm(shown))
        for i in range(n_rows):
            for j in range(n_cols):
                ax.text(j, i, texts[i, j], ha="center", va="center", fontsize=layout.value_pt,
                        color=_text_colour(rgba[i, j]))  # fmt: skip
    bar_ax = fig.add_axes(layout.colorbar)
    fig.colorbar(im, cax=bar_ax).set_label(layout.colorbar_label, fontsize=COLORBAR_PT)
    bar_ax.tick_params(labelsize=COLORBAR_TICK_PT)
    x, y = layout.title_xy
    fig.text(x, y, layout.title, fontsize=TITLE_PT, ha="left", va="top")
    x, y = layout.subtitle_xy
    fig.text(x, y, layout.subtitle, fontsize=SUBTITLE_PT, ha="left", va="top")
    return fig


def _count(n: object) -> str:
    """``n=28,650`` for a row label; ``n=?`` when the count is unknown."""
    n = pd.to_numeric(n, errors="coerce")
    return "n=?" if pd.isna(n) else f"n={int(n):,}"


def _training_note(result: Any, counts: pd.Series) -> str:
    """The subtitle: which median the cells hold, and whose cells the ``n=`` counts are."""
    params = getattr(result, "params", None) or {}
    n_train = params.get("n_train")
    if n_train is None and counts.notna().any():
        n_train = int(counts.sum())
    tubes = len(params.get("samples") or ())
    where = f" from {tubes} tube{'s' if tubes != 1 else ''}" if tubes else ""
    cells = "" if n_train is None else f" ({int(n_train):,} cells{where})"
    return (
        f"Each cell: the median of the metacluster's pooled training cells{cells}, on which "
        "the metaclusters were fitted and named; not a median of per-tube medians, not every "
        "tube mapped. n = the metacluster's training cells."
    )


def _text_colour(rgba: Sequence[float]) -> str:
    """Black or white, whichever contrasts more with a cell of colour ``rgba``.

    WCAG relative luminance: black text wins above 0.179, where both contrast ratios meet.
    A transparent cell (a NaN median) shows the white background: black.
    """
    if len(rgba) > 3 and rgba[3] == 0:
        return "black"
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgba[:3]]
    luminance = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    return "black" if luminance > 0.179 else "white"


def abundance(
    table: pd.DataFrame,
    *,
    by: str = "sample_id",
    value: str = "percent",
) -> Figure:
    """Stacked bars of metacluster abundance per sample, or mean per tissue/timepoint.

    Bars follow the order of ``table`` (a run's table is in the metadata sheet's order),
    not the alphabet. The figure widens with the number of bars, up to 16 inches (then the
    bars narrow and the labels shrink; below 5 points one bar in ``k`` is labelled); the legend
    sits below the bars.

    Parameters
    ----------
    table
        :func:`nkflow.tl.annotate.abundance_table` output.
    by
        ``"sample_id"`` (one bar per sample) or a sample attribute (``"tissue"``,
        ``"timepoint"``, ``"donor"``, ``"stimulation"``): one bar per group, the mean of the
        samples' percentages.
    value
        ``"percent"`` or ``"count"``.

    Returns
    -------
    matplotlib.figure.Figure
        The bar chart.

    Raises
    ------
    ConfigError
        ``by`` or ``value`` is not one of the choices above.
    """
    if by not in _GROUPS:
        raise ConfigError(f"abundance: by={by!r} is invalid; choose one of {_GROUPS}")
    if value not in ("percent", "count"):
        raise ConfigError(f"abundance: value={value!r} is invalid; choose 'percent' or 'count'")
    if table.empty or by not in table.columns:
        fig = new_figure(figsize=(8, 4.5))
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no clustering results", ha="center", va="center")
        ax.set_axis_off()
        return fig
    df = table.copy()
    df[by] = df[by].fillna("").astype(str).replace("", "(none)")
    df["name"] = df["metacluster"].astype(str) + ": " + df["label"].astype(str)
    agg = "sum" if (value == "count" or by == "sample_id") else "mean"
    wide = df.pivot_table(index=by, columns="name", values=value, aggfunc=agg, fill_value=0.0)
    order = (
        df.drop_duplicates("name")
        .assign(_k=lambda d: pd.to_numeric(d["metacluster"], errors="coerce"))
        .sort_values("_k", kind="mergesort")["name"]
    )
    wide = wide.reindex(index=pd.unique(df[by]), columns=[c for c in order if c in wide.columns])
    bars = [_plain(i) for i in wide.index]
    size = _bar_layout(len(bars), bars, list(wide.columns))
    fig = new_figure(figsize=size.figsize, layout="constrained")
    ax = fig.add_subplot()
    bottom = np.zeros(len(wide))
    for colour, name in zip(_colours(wide.shape[1]), wide.columns, strict=True):
        ax.bar(range(len(wide)), wide[name], bottom=bottom, color=colour, label=_plain(name))
        bottom += wide[name].to_numpy()
    shown = range(0, len(bars), size.label_step)
    ax.set_xticks(list(shown), [bars[i] for i in shown], rotation=90, fontsize=size.fontsize)
    ax.set_xlim(-0.6, len(bars) - 0.4)
    ax.margins(y=0)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_ylabel("% of clustered cells" if value == "percent" else "cells")
    ax.set_xlabel(by if size.label_step == 1 else f"{by} (one label per {size.label_step} bars)")
    fig.legend(loc="outside lower center", ncols=size.legend_cols, fontsize=7, frameon=False)
    title = "Metacluster abundance" + ("" if by == "sample_id" else f" (mean per {by})")
    ax.set_title(f"{title}, {len(bars)} {'samples' if by == 'sample_id' else 'groups'}")
    return fig


@dataclass(frozen=True)
class _BarLayout:
    figsize: tuple[float, float]
    fontsize: float
    label_step: int
    legend_cols: int


_BAR_IN = 0.17  # inches per bar while the figure may still widen
_MAX_WIDTH_IN = 16.0
_MIN_FONT = 5.0


def _bar_layout(n_bars: int, labels: Sequence[str], legend: Sequence[str]) -> _BarLayout:
    """Figure size, tick font and legend columns for ``n_bars`` stacked bars.

    The axes get ``_BAR_IN`` per bar up to ``_MAX_WIDTH_IN`` overall; the vertical tick
    labels take a font that fits the bar pitch (8 pt at most); below ``_MIN_FONT`` only
    every ``k``-th bar is labelled. Heights add room for the longest label and for the
    legend's rows below.
    """
    width = float(np.clip(1.3 + _BAR_IN * n_bars, 7.0, _MAX_WIDTH_IN))
    pitch_pt = 72.0 * (width - 1.3) / max(n_bars, 1)
    fontsize = float(min(8.0, 0.8 * pitch_pt))
    step = 1
    if fontsize < _MIN_FONT:
        step = int(np.ceil(_MIN_FONT / fontsize))
        fontsize = _MIN_FONT
    longest = max((len(t) for t in labels), default=1)
    label_in = 0.6 * fontsize * longest / 72.0
    item_in = 0.6 + 7 * 0.55 * max((len(t) for t in legend), default=1) / 72.0
    cols = int(max(1, min(len(legend), width // item_in)))
    rows = -(-len(legend) // cols)
    height = 3.2 + label_in + 0.3 + rows * 0.17
    return _BarLayout((round(width, 2), round(height, 2)), fontsize, step, cols)


def embedding(
    adatas: Mapping[str, ad.AnnData] | Sequence[ad.AnnData] | ad.AnnData,
    result: Any,
    *,
    method: str = "pca",
    n_cells: int = 5000,
    key: str | None = None,
    random_state: int | None = 0,
) -> Figure:
    """2-D embedding of a subsample of clustered cells, coloured by metacluster.

    Parameters
    ----------
    adatas
        Assigned samples (``obs[key]`` present).
    result
        The :class:`~nkflow.tl.cluster.ClusteringResult` (markers and names).
    method
        ``"pca"``, ``"tsne"`` (scikit-learn) or ``"umap"`` (needs ``umap-learn``; falls back
        to t-SNE with a log message when it is not installed).
    n_cells
        Cells drawn, spread evenly over samples.
    key
        obs column with the metacluster; default ``result.key_added``.
    random_state
        Seed for the subsample and the embedding.

    Returns
    -------
    matplotlib.figure.Figure
        The scatter plot.

    Raises
    ------
    ConfigError
        ``method`` is not one of the choices above.
    """
    from nkflow.io.fcs import channel_for
    from nkflow.tl.cluster import iter_samples

    if method not in _METHODS:
        raise ConfigError(f"embedding: method={method!r} is invalid; choose one of {_METHODS}")
    key = key or result.key_added
    pairs = iter_samples(adatas)
    rng = np.random.default_rng(random_state)
    per = max(1, n_cells // len(pairs))
    xs, labs = [], []
    for _, adata in pairs:
        lab = adata.obs[key]
        idx = np.flatnonzero(lab.notna().to_numpy())
        if idx.size > per:
            idx = np.sort(rng.choice(idx, size=per, replace=False))
        cols = adata.var_names.get_indexer([channel_for(adata, m) for m in result.markers])
        x = adata.X[idx][:, cols]
        xs.append(np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=float))
        labs.append(lab.to_numpy()[idx].astype(str))
    X = np.vstack(xs)
    y = np.concatenate(labs)
    used = method
    if method == "umap":
        try:
            import umap  # type: ignore[import-not-found]

            emb = umap.UMAP(random_state=random_state).fit_transform(X)
        except ImportError:
            logger.info("embedding: umap-learn is not installed; using t-SNE instead")
            used = "tsne"
    if used == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30, max(2, (len(X) - 1) / 3)))
        emb = TSNE(perplexity=perplexity, init="pca", random_state=random_state).fit_transform(X)
    elif used == "pca":
        from sklearn.decomposition import PCA

        emb = PCA(n_components=2, random_state=random_state).fit_transform(X)
    cats = [c for c in result.categories if c in set(y)]
    names = [_plain(f"{cat}: {result.labels.get(int(cat), '')}") for cat in cats]
    # the plot keeps 5 in; the figure widens by the legend (metacluster names run long), whose
    # room constrained layout sets again at every draw, so no dpi cuts it off
    widest = max((TextPath((0, 0), n, size=_LEGEND_PT).get_extents().width for n in names),
                 default=0.0)  # fmt: skip
    fig = new_figure(figsize=(6.0 + widest / 72.0, 5), layout="constrained")
    ax = fig.add_subplot()
    for colour, cat, name in zip(_colours(len(cats)), cats, names, strict=True):
        sel = y == cat
        ax.scatter(emb[sel, 0], emb[sel, 1], s=3, color=colour, label=name, rasterized=True)
    ax.set_xlabel(f"{used.upper()} 1")
    ax.set_ylabel(f"{used.upper()} 2")
    ax.set_title(f"{len(X)} cells, {used.upper()} of {len(result.markers)} markers")
    if names:
        fig.legend(fontsize=_LEGEND_PT, markerscale=3, loc="outside right upper")
    return fig
