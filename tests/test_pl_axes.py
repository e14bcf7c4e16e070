"""Gating plots read in the instrument's units: decade ticks on transformed axes."""

from __future__ import annotations

import numpy as np
import pytest

import nkflow as nk


@pytest.fixture(scope="module")
def gated(gated_liver):
    return gated_liver[0]


def test_transformed_axis_has_linear_decade_ticks(gated) -> None:
    fig = nk.pl.gate_plot(gated, "NK")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert "0" in labels and "10³" in labels and "10⁴" in labels
    channel = nk.io.channel_for(gated, "NKp46")
    record = gated.uns["nkflow"]["transform"]
    ticks = dict(zip(labels, ax.get_xticks(), strict=True))
    # the tick labelled 10^3 sits where 1000 linear units land on the logicle scale
    expected = nk.pp.from_linear([1000.0], channel, record)[0]
    assert ticks["10³"] == pytest.approx(expected)
    back = nk.pp.to_linear([ticks["10³"]], channel, record)[0]
    assert back == pytest.approx(1000.0, rel=1e-6)


def test_scatter_axis_keeps_plain_ticks(gated) -> None:
    fig = nk.pl.gate_plot(gated, "Cells")
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert not any("10" in label and "⁰" in label for label in labels)
    assert np.all(np.diff(fig.axes[0].get_xticks()) > 0)
