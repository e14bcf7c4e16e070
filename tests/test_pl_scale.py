"""Cluster figures stay readable as a batch grows: abundance bars and heatmap labels."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from matplotlib import colormaps

from nkflow.pl import cluster as plc

NAMES = {
    1: "CD56dim CD49a- CD103- CXCR6- CD127- NKG2D+",
    2: "CD56bright CD49a- CD103- CXCR6- CD127- NKG2D+ (more NKp46)",
    3: "CD56bright CD49a+ CD103- CXCR6+ CD127- NKG2D+ (NKp46lo)",
}


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
        (30_912, "training cells (30,912 from 3 tubes)"),
        (None, "training cells (30,912), not every"),
    ],
)
def test_heatmap_says_its_counts_are_training_cells(n_train, subtitle):
    fig = plc.heatmap(_result(n_train))
    rows = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert rows[0].endswith("(n=28,650)")
    assert subtitle in fig.axes[0].get_title()


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
