"""Gating plots read in the instrument's units: decade ticks on transformed axes."""

from __future__ import annotations

import itertools

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


# --------------------------------------------------------------------------- narrow axes

_SUPERSCRIPT = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻", "0123456789-")


def _label_value(label: str) -> float:
    """The linear value a tick label names: ``"10³"`` -> 1000, ``"−20"`` -> -20."""
    text = label.replace("\u2212", "-")
    if "10" in text and text != text.translate(_SUPERSCRIPT):  # a decade, 10 to a power
        sign, _, power = text.partition("10")
        return (-1.0 if sign == "-" else 1.0) * 10.0 ** int(power.translate(_SUPERSCRIPT))
    return float(text)


def _assert_instrument_units(panels, record) -> int:
    """Each tick of a transformed axis is labelled with the linear value it sits at."""
    checked = 0
    for panel in panels:
        for axis in (panel.x, panel.y):
            channel = axis.label.rpartition(" (")[2].rstrip(")")  # "CD56 (Yb176Di)", "FSC-A"
            if nk.pp.from_linear([0.0], channel, record) is None:  # scatter, event counts
                continue
            assert len(axis.ticks) >= 2, (panel.gate, axis)
            linear = nk.pp.to_linear(list(axis.ticks), channel, record)
            for label, value in zip(axis.tick_labels, linear, strict=True):
                named = _label_value(label)
                assert value == pytest.approx(named, rel=1e-6, abs=1e-6), (panel.gate, label)
            checked += 1
    return checked


def _narrow(kind: str):
    """A sample gated on one channel whose events span less than a decade (linear 15-90
    on arcsinh/5; 400-3000 on logicle), with a 2-D gate and a histogram of few events."""
    import anndata as ad
    import pandas as pd

    rng = np.random.default_rng(1)
    lo, hi = (15.0, 90.0) if kind == "arcsinh" else (400.0, 3000.0)
    linear = rng.uniform(lo, hi, size=(40, 2))
    params = (
        {"cofactor": 5.0} if kind == "arcsinh" else {"T": 262144.0, "W": 0.5, "M": 4.5, "A": 0.0}
    )
    record = {"kind": kind, "params": {"A": params, "B": params}}
    x = np.column_stack([nk.pp.from_linear(linear[:, j], c, record) for j, c in enumerate("AB")])
    a = ad.AnnData(X=x.astype(np.float32), var=pd.DataFrame({"marker": ["CD56", "CD16"]},
                                                            index=["A", "B"]))  # fmt: skip
    a.obs_names = [str(i) for i in range(40)]
    mid = float(np.median(x[:, 0]))
    a.obs["Pos"] = x[:, 0] > mid
    a.obs["Box"] = x[:, 0] > mid
    dim = {"channel": "A", "min": mid, "max": None}
    a.uns["nkflow"] = {"transform": record, "gating": {"populations": [
        {"name": "Pos", "gate": {"kind": "rectangle", "id": "Pos", "parent": None, "dims": [dim]}},
        {"name": "Box", "gate": {"kind": "rectangle", "id": "Box", "parent": None,
                                 "dims": [dim, {"channel": "B", "min": None, "max": None}]}},
    ]}}  # fmt: skip
    return a


@pytest.mark.parametrize("kind", ["arcsinh", "logicle"])
def test_narrow_transformed_axes_are_ticked_in_instrument_units(kind) -> None:
    """An axis spanning less than two decades was ticked in transformed units (CD16 0.8-3.2
    beside panels ticked 10¹, 10²); now in round linear values placed by the transform."""
    from nkflow.pl.gating_panels import gate_panels

    a = _narrow(kind)
    panels = gate_panels(a)
    assert _assert_instrument_units(panels, a.uns["nkflow"]["transform"]) == 3
    # few events: the histogram's count axis is in whole events, not 0.8, 1.6
    counts = panels[0].y.tick_labels
    assert all(float(t) == int(float(t)) for t in counts), counts
    fig = nk.pl.gate_plot(a, "Box")  # the figure shows these ticks
    shown = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert shown == list(panels[1].x.tick_labels)


_CYTOF = [
    *(f"cytonorm/inst/extdata/Gates_PTLG0{d}_Unstim_Control_{r}.fcs"
      for d in (21, 28, 34) for r in (1, 2)),
    *(f"supercellcyto/inst/extdata/Data23_Panel3_base_{s}.fcs"
      for s in ("NR4_Patient9", "R5_Patient15")),
]  # fmt: skip


@pytest.mark.parametrize("name", _CYTOF)
def test_real_cytof_gate_grids_are_ticked_in_instrument_units(external, name) -> None:
    import warnings

    from nkflow.pl.gating_panels import gate_panels

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = nk.read_fcs(external / name)
        nk.pp.qc(a)
        nk.pp.compensate(a)
        nk.pp.transform(a)
        nk.gating.gate(a, "human_cytof", n_boot=0)
    assert _assert_instrument_units(gate_panels(a), a.uns["nkflow"]["transform"]) > 10
    fig = nk.pl.gate_grid(a)
    fig.draw_without_rendering()
    for ax in fig.axes:  # no two tick labels run into each other
        spans = sorted(
            (t.get_window_extent().x0, t.get_window_extent().x1)
            for t in ax.get_xticklabels()
            if t.get_text()
        )
        assert all(a[1] < b[0] for a, b in itertools.pairwise(spans)), ax.get_title()


@pytest.mark.parametrize("ncols", [4, 1])
def test_grid_titles_and_axis_labels_stay_inside_the_figure(ncols) -> None:
    """A one-row grid cut its titles (top margin 5 % of 3 in) and its x labels."""
    fig = nk.pl.gate_grid(_narrow("arcsinh"), ncols=ncols)
    fig.draw_without_rendering()
    box = fig.bbox
    for ax in fig.axes:
        for text in (ax.title, ax.xaxis.label, *ax.get_xticklabels()):
            if text.get_text():
                extent = text.get_window_extent()
                assert box.y0 <= extent.y0 and extent.y1 <= box.y1, text.get_text()
                assert box.x0 <= extent.x0 and extent.x1 <= box.x1, text.get_text()
