"""Cluster figures stay readable as a batch grows: abundance bars and heatmap labels."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from matplotlib import colormaps

from nkflow.pl import cluster as plc
from nkflow.report.figures import figure_png

NAMES = {
    1: "CD56dim CD49a- CD103- CXCR6- CD127- NKG2D+",
    2: "CD56bright CD49a- CD103- CXCR6- CD127- NKG2D+ (more NKp46)",
    3: "CD56bright CD49a+ CD103- CXCR6+ CD127- NKG2D+ (NKp46lo)",
}


def _abundance(n_samples: int) -> pd.DataFrame:
    """An abundance table of ``n_samples`` tubes, its ids deliberately not in sorted order."""
    rows = []
    for s in range(n_samples):
        tissue = "blood" if s % 2 else "liver"  # the sheet's order, not the alphabet's
        sid = f"D{n_samples - s:03d}_{tissue}_pre_unstim"
        for k, name in NAMES.items():
            pct = (50.0, 30.0, 20.0)[k - 1]
            rows.append(
                {
                    "sample_id": sid,
                    "metacluster": str(k),
                    "label": name,
                    "count": int(pct),
                    "percent": pct,
                    "tissue": tissue,
                }
            )
    return pd.DataFrame(rows)


def _ticks(fig) -> list[str]:
    return [t.get_text() for t in fig.axes[0].get_xticklabels()]


@pytest.mark.parametrize("by", ["sample_id", "tissue"])
def test_abundance_bars_keep_the_tables_order(by):
    table = _abundance(6)
    expected = list(dict.fromkeys(table[by]))
    assert expected != sorted(expected)
    assert _ticks(plc.abundance(table, by=by)) == expected


def _extents(fig):
    fig.draw_without_rendering()  # lays the figure out as saving it would
    ax = fig.axes[0]
    labels = [t.get_window_extent() for t in ax.get_xticklabels() if t.get_text()]
    return ax.get_window_extent(), labels, fig.legends[0].get_window_extent()


@pytest.mark.parametrize("n_samples", [5, 20, 60, 300])
def test_abundance_labels_never_overlap_and_legend_is_outside(n_samples):
    fig = plc.abundance(_abundance(n_samples))
    axes, labels, legend = _extents(fig)
    assert all(a.x1 <= b.x0 for a, b in itertools.pairwise(labels))
    assert legend.y1 <= axes.y0  # below the bars, not on them
    assert axes.width >= 0.7 * fig.bbox.width  # the legend does not eat the plot


def test_abundance_width_grows_with_the_samples_up_to_a_cap():
    widths = [plc.abundance(_abundance(n)).get_figwidth() for n in (5, 20, 60, 120, 300)]
    assert widths == sorted(widths)
    assert widths[2] > widths[0] and widths[-1] == widths[-2] <= 16.0
    crowded = plc.abundance(_abundance(300))
    assert len(_ticks(crowded)) < 300 and "one label per" in crowded.axes[0].get_xlabel()
    assert len(_ticks(plc.abundance(_abundance(60)))) == 60


def test_abundance_png_is_deterministic():
    table = _abundance(20)
    assert figure_png(plc.abundance(table)) == figure_png(plc.abundance(table))


def _result(n_train: int | None = 30_912) -> SimpleNamespace:
    medians = pd.DataFrame(
        {"CD56": [1.0, 2.0, 2.1], "CD49a": [0.1, 0.2, 1.4], "n_cells": [28_650, 1884, 378]},
        index=pd.Index([1, 2, 3], name="metacluster"),
    )
    params = {} if n_train is None else {"n_train": n_train, "samples": ["a", "b", "c"]}
    return SimpleNamespace(
        medians=medians, label_markers=["CD56", "CD49a"], labels=NAMES, params=params
    )


@pytest.mark.parametrize(
    ("n_train", "subtitle"),
    [
        (30_912, "training cells (30,912 cells from 3 tubes)"),
        (None, "training cells (30,912 cells), on which"),
    ],
)
def test_heatmap_says_its_counts_are_training_cells(n_train, subtitle):
    fig = plc.heatmap(_result(n_train))
    rows = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert rows[0].endswith("(n=28,650)")
    said = fig.texts[1].get_text().replace("\n", " ")
    assert subtitle in said and "n = the metacluster's training cells" in said


def test_heatmap_numbers_contrast_with_their_cells():
    fig = plc.heatmap(_result())
    ax = fig.axes[0]
    colours = {t.get_text(): t.get_color() for t in ax.texts}
    # column-scaled: CD56 2.10 is the top (yellow) cell, 1.00 the bottom (dark purple)
    assert colours["2.10"] == "black"
    assert colours["1.00"] == "white"


@pytest.mark.parametrize(
    ("rgba", "colour"),
    [
        (colormaps["viridis"](1.0), "black"),
        (colormaps["viridis"](0.0), "white"),
        ((1.0, 1.0, 1.0, 1.0), "black"),
        ((0.0, 0.0, 0.0, 0.0), "black"),  # transparent (NaN) cell on a white figure
    ],
)
def test_text_colour_by_luminance(rgba, colour):
    assert plc._text_colour(np.asarray(rgba)) == colour


def _embedded(n_clusters: int = 3):
    """Three assigned samples and a clustering result with long metacluster names."""
    import anndata as ad

    rng = np.random.default_rng(0)
    var = pd.DataFrame({"marker": ["CD56", "CD49a"]}, index=["FL1-A", "FL2-A"])
    samples = {}
    for s in range(3):
        x = rng.normal(size=(200, 2)).astype(np.float32)
        a = ad.AnnData(X=x, var=var.copy())
        a.obs_names = [f"{s}_{i}" for i in range(200)]
        a.obs["metacluster"] = pd.Categorical([str(1 + i % n_clusters) for i in range(200)])
        samples[f"s{s}"] = a
    result = SimpleNamespace(markers=["CD56", "CD49a"], key_added="metacluster",
                             categories=[str(k) for k in range(1, n_clusters + 1)],
                             labels=NAMES)  # fmt: skip
    return samples, result


@pytest.mark.parametrize("dpi", [70, 100, 150])
def test_embedding_legend_is_inside_the_figure_at_any_dpi(dpi):
    """The legend of long metacluster names was cut off at the right edge (tight_layout ran
    once at 100 dpi; saved at 70 dpi its text no longer fitted)."""
    samples, result = _embedded()
    fig = plc.embedding(samples, result, n_cells=300)
    fig.set_dpi(dpi)
    fig.draw_without_rendering()
    drawn = fig.legends[0] if fig.legends else fig.axes[0].get_legend()
    legend = drawn.get_window_extent()
    assert fig.bbox.x0 <= legend.x0 and legend.x1 <= fig.bbox.x1
    assert fig.axes[0].get_window_extent().x1 <= legend.x0  # beside the plot, not on it
    assert [t.get_text() for t in drawn.get_texts()][2] == f"3: {NAMES[3]}"
