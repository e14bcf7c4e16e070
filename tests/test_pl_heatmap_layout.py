"""The metacluster heatmap stays legible from 5 to 40 markers and 4 to 30 metaclusters.

A CyTOF batch whose alias table resolved 15 clustering markers drew them in a figure sized
for 9: the long row labels took half of it and the numbers ran together
("3.404.954.400.75..."). The figure now grows with its content; these tests lay it out as
saving it would and check the text boxes (fig.canvas.get_renderer()).
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from nkflow.pl import cluster as plc
from nkflow.pl._heatmap_layout import MAX_HEIGHT_IN, MAX_WIDTH_IN, MIN_VALUE_PT, wrap

_SUFFIX = ("+", "-", "hi", "lo")
_TOKENS = ("CD11b", "CD8", "CD11c", "CXCR3", "CD161", "Tbet", "CD16", "CCR9", "CD25", "CCR7",
           "CCR2", "HLA-DR", "CD56", "CD45RA", "CD7")  # fmt: skip


def _result(n_markers: int, n_rows: int) -> SimpleNamespace:
    """Training medians of ``n_markers`` markers with long, CyTOF-like metacluster names."""
    rng = np.random.default_rng(n_markers * 100 + n_rows)
    markers = [f"CD{100 + i}" if i % 3 else f"HLA-D{i}" for i in range(n_markers)]
    medians = pd.DataFrame(
        rng.uniform(-0.5, 5.5, (n_rows, n_markers)).round(3),
        columns=markers,
        index=pd.Index(range(1, n_rows + 1), name="metacluster"),
    )
    medians["n_cells"] = rng.integers(5, 30_000, n_rows)
    # metacluster 1 as long as CytoNorm's (14 calls, ~95 characters), the others shorter
    names = {
        k: " ".join(f"{_TOKENS[(k + j) % 15]}{_SUFFIX[(k + j) % 4]}" for j in range(
            14 if k == 1 else 3 + k % 9)) for k in medians.index
    }  # fmt: skip
    params = {"n_train": int(medians["n_cells"].sum()), "samples": ["a", "b", "c"]}
    return SimpleNamespace(medians=medians, label_markers=markers, labels=names, params=params)


def _boxes(fig):
    FigureCanvasAgg(fig)  # the canvas savefig draws PNGs on
    renderer = fig.canvas.get_renderer()
    fig.draw(renderer)
    return renderer


def _cell(ax, i: int, j: int):
    """The display box of cell (row ``i``, column ``j``)."""
    (x0, y0), (x1, y1) = ax.transData.transform([(j - 0.5, i + 0.5), (j + 0.5, i - 0.5)])
    return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)


SIZES = [(15, 6), (40, 30), (5, 4), (40, 4), (5, 30)]


@pytest.mark.parametrize(("n_markers", "n_rows"), SIZES)
def test_numbers_sit_inside_their_cells_at_a_legible_size(n_markers, n_rows):
    fig = plc.heatmap(_result(n_markers, n_rows))
    renderer = _boxes(fig)
    ax = fig.axes[0]
    texts = ax.texts
    assert len(texts) == n_markers * n_rows
    for k, text in enumerate(texts):
        i, j = divmod(k, n_markers)
        box = text.get_window_extent(renderer)
        x0, y0, x1, y1 = _cell(ax, i, j)
        assert text.get_fontsize() >= MIN_VALUE_PT
        assert x0 < box.x0 and box.x1 < x1, (text.get_text(), i, j)
        assert y0 < box.y0 and box.y1 < y1, (text.get_text(), i, j)
    # a gap of at least a third of a character between neighbours in a row
    for i in range(n_rows):
        row = [texts[i * n_markers + j].get_window_extent(renderer) for j in range(n_markers)]
        gap = texts[0].get_fontsize() / 3 * fig.dpi / 72
        assert all(a.x1 + gap <= b.x0 for a, b in itertools.pairwise(row))


@pytest.mark.parametrize(("n_markers", "n_rows"), SIZES)
def test_labels_titles_and_colour_bar_do_not_overlap(n_markers, n_rows):
    fig = plc.heatmap(_result(n_markers, n_rows))
    renderer = _boxes(fig)
    ax, bar = fig.axes
    figure = fig.bbox
    heat = ax.get_window_extent(renderer)
    rows = [t.get_window_extent(renderer) for t in ax.get_yticklabels()]
    cols = [t.get_window_extent(renderer) for t in ax.get_xticklabels()]
    # rows top to bottom (row 0 on top), columns left to right
    assert all(b.y1 <= a.y0 for a, b in itertools.pairwise(rows))
    assert all(a.x1 <= b.x0 for a, b in itertools.pairwise(cols))
    assert all(r.x0 >= figure.x0 and r.x1 <= heat.x0 for r in rows)
    assert all(c.y0 >= figure.y0 and c.y1 <= heat.y0 for c in cols)
    assert min(t.get_fontsize() for t in ax.get_yticklabels() + ax.get_xticklabels()) >= 5
    title, subtitle = (t.get_window_extent(renderer) for t in fig.texts)
    assert heat.y1 < subtitle.y0 and subtitle.y1 <= title.y0 and title.y1 <= figure.y1
    assert max(title.x1, subtitle.x1) <= figure.x1
    label = bar.yaxis.label.get_window_extent(renderer)
    assert heat.x1 < bar.get_window_extent(renderer).x0 and label.x1 <= figure.x1


def test_the_figure_grows_with_markers_and_metaclusters_up_to_a_cap():
    sizes = {n: plc.heatmap(_result(*n)).get_size_inches() for n in itertools.product(
        (5, 15, 40), (4, 30))}  # fmt: skip
    assert sizes[(5, 4)][0] < sizes[(15, 4)][0] < sizes[(40, 4)][0] <= MAX_WIDTH_IN
    assert sizes[(5, 4)][1] < sizes[(5, 30)][1] <= MAX_HEIGHT_IN
    # 15 markers no longer squeezed into the width of 9 (the CytoNorm regression)
    assert sizes[(15, 4)][0] - sizes[(5, 4)][0] >= 10 * 0.4


def test_numbers_that_cannot_fit_are_left_out_and_the_colour_bar_says_so():
    fig = plc.heatmap(_result(120, 6))
    assert not fig.axes[0].texts
    assert "numbers not written" in fig.axes[1].get_ylabel()
    assert fig.get_size_inches()[0] <= MAX_WIDTH_IN + 1e-9
    assert "not written" not in plc.heatmap(_result(40, 6)).axes[1].get_ylabel()


@pytest.mark.parametrize("scale", ["column", "none"])
def test_title_and_colour_bar_name_the_statistic(scale):
    fig = plc.heatmap(_result(15, 6), scale=scale)
    subtitle = fig.texts[1].get_text().replace("\n", " ")
    assert "median of the metacluster's pooled training cells" in subtitle
    assert "not a median of per-tube medians" in subtitle
    assert "median of the pooled training cells" in fig.axes[1].get_ylabel().replace("\n", " ")


@pytest.mark.parametrize(
    ("label", "lines"),
    [
        ("4: CD56bright CD49a- CD103- CXCR6- NKG2D+ (more CD127) (n=539)",
         ["4: CD56bright CD49a- CD103- CXCR6-", "NKG2D+ (more CD127) (n=539)"]),
        ("cells (30,912 cells), on which", ["cells (30,912 cells), on which"]),
        ("unbalanced (a b", ["unbalanced (a b"]),
    ],
)  # fmt: skip
def test_wrapping_keeps_a_parenthesised_group_on_one_line(label, lines):
    assert wrap(label, 8.0, 2.5).split("\n") == lines
