"""The report's SVG gate grid (issue 18): the same panels as the matplotlib grid, cheaply.

Golden truth: ``np.histogram2d`` for the embedded densities, matplotlib's own viridis
colouring for their pixels, the resolved gates for the outlines, the populations table for
the titles.
"""

from __future__ import annotations

import base64
import copy
import io
import re
import xml.etree.ElementTree as ET

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from matplotlib import colormaps
from matplotlib.colors import Normalize
from PIL import Image

import nkflow as nk
from nkflow.exceptions import GatingError
from nkflow.gating.gates import PolygonGate, RectangleGate, gate_from_dict
from nkflow.io import nkflow_uns
from nkflow.pl.gating import gate_grid
from nkflow.pl.gating_panels import gate_panels
from nkflow.report.figures import data_uri, decode_data_uri, figure_format, svg_size
from nkflow.report.gating_svg import gating_svg, panels_svg

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE_MARKER = "<script>alert(\"x\")</script> & 'CD56'"


@pytest.fixture(scope="module")
def gated(gated_liver):
    return gated_liver


@pytest.fixture(scope="module")
def svg(gated) -> bytes:
    return gating_svg(gated[0])


def _panels(svg: bytes) -> dict[str, ET.Element]:
    root = ET.fromstring(svg)
    return {g.get("data-gate"): g for g in root.iter(f"{SVG}g") if g.get("class") == "panel"}


def _texts(group: ET.Element) -> list[str]:
    return [t.text or "" for t in group.iter(f"{SVG}text")]


def _frame(group: ET.Element) -> tuple[float, float, float, float]:
    rect = next(group.iter(f"{SVG}rect"))
    return tuple(float(rect.get(k)) for k in ("x", "y", "width", "height"))  # type: ignore[return-value]


def _parent_events(adata, g, channel: str) -> np.ndarray:
    parent = np.asarray(adata.obs[g.parent], bool) if g.parent else np.ones(adata.n_obs, bool)
    return np.asarray(adata[:, channel].X, float).ravel()[parent]


def _resolved(adata) -> dict:
    return {
        p["name"]: gate_from_dict(p["gate"]) for p in nkflow_uns(adata)["gating"]["populations"]
    }


def test_svg_is_one_well_formed_document_with_a_panel_per_geometric_gate(gated, svg) -> None:
    adata, _ = gated
    assert figure_format(svg) == "svg"
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    geometric = [
        n for n, g in _resolved(adata).items() if isinstance(g, PolygonGate | RectangleGate)
    ]
    assert list(_panels(svg)) == geometric
    # four panels a row, as gate_grid
    width, height = svg_size(svg)
    assert (width, height) == (int(root.get("width")), int(root.get("height")))
    assert width == 4 * 260 and height == -(-len(geometric) // 4) * 230
    assert not list(root.iter(f"{SVG}script")) and b"<script" not in svg


def test_embedded_density_counts_equal_histogram2d(gated, svg) -> None:
    """Transparent exactly where np.histogram2d counts no event; elsewhere matplotlib's own
    viridis colour of the count (pcolormesh's linear norm over the non-empty bins)."""
    adata, _ = gated
    gates = _resolved(adata)
    densities = 0
    for name, group in _panels(svg).items():
        image = next(group.iter(f"{SVG}image"), None)
        if image is None:
            continue
        g = gates[name]
        xc, yc = (g.x_channel, g.y_channel) if isinstance(g, PolygonGate) else (
            g.dims[0].channel, g.dims[1].channel)  # fmt: skip
        h, _, _ = np.histogram2d(_parent_events(adata, g, xc), _parent_events(adata, g, yc), 96)
        href = image.get("href")
        assert href.startswith("data:image/png;base64,")
        pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(href.split(",", 1)[1]))))
        assert pixels.shape == (96, 96, 4)
        shown = h.T[::-1]  # image rows: highest y bin first
        assert np.array_equal(pixels[..., 3] == 0, shown == 0), name
        masked = np.ma.masked_less(shown, 1)
        expected = colormaps["viridis"](Normalize()(masked), bytes=True)
        filled = shown >= 1
        assert np.array_equal(pixels[filled], expected[filled]), name
        densities += 1
    assert densities >= 4


def test_gate_outlines_are_the_resolved_gates(gated, svg) -> None:
    adata, _ = gated
    gates = _resolved(adata)
    panels = {p.gate: p for p in gate_panels(adata)}
    checked = {"polygon": 0, "rectangle": 0, "threshold": 0}
    for name, group in _panels(svg).items():
        g, panel = gates[name], panels[name]
        left, top, w, h = _frame(group)

        def px(v: float, panel=panel, left=left, w=w) -> float:
            return left + (v - panel.x.lo) / (panel.x.hi - panel.x.lo) * w

        def py(v: float, panel=panel, top=top, h=h) -> float:
            return top + h - (v - panel.y.lo) / (panel.y.hi - panel.y.lo) * h

        outline = [e for e in group if e.get("class") == "gate"]
        if isinstance(g, PolygonGate):
            points = np.array(
                [[float(v) for v in p.split(",")] for p in outline[0].get("points").split()]
            )
            expected = np.array([[px(a), py(b)] for a, b in g.vertices])
            assert np.allclose(points, expected, atol=0.051), name
            checked["polygon"] += 1
        elif len(g.dims) == 1:
            lines = sorted(float(re.match(r"M(\S+) ", e.get("d")).group(1)) for e in outline)
            bounds = sorted(px(v) for v in (g.dims[0].min, g.dims[0].max) if v is not None)
            assert np.allclose(lines, bounds, atol=0.051), name
            checked["threshold"] += 1
        else:
            points = np.array(
                [[float(v) for v in p.split(",")] for p in outline[0].get("points").split()]
            )
            (x0, x1), (y0, y1) = ((d.min, d.max) for d in g.dims[:2])
            for v in (x0, x1):
                if v is not None:
                    assert np.isclose(points[:, 0], px(v), atol=0.051).sum() == 2, name
            for v in (y0, y1):
                if v is not None:
                    assert np.isclose(points[:, 1], py(v), atol=0.051).sum() == 2, name
            checked["rectangle"] += 1
    assert all(checked.values()), checked


def test_titles_are_the_populations_table(gated, svg) -> None:
    table = gated[1]
    rows = table.set_index("population")
    for name, group in _panels(svg).items():
        row = rows.loc[name]
        parent = row["parent"] if isinstance(row["parent"], str) and row["parent"] else "all events"
        title = f"{name}  (in {parent}): {int(row['count'])} ({row['percent_of_parent']:.1f}%)"
        assert _texts(group)[-1] == title


def test_axes_are_those_of_the_matplotlib_grid(gated, svg) -> None:
    """Same labels, tick labels and titles in both renderers (one panel definition)."""
    adata, _ = gated
    fig = gate_grid(adata)
    groups = list(_panels(svg).values())
    assert len(fig.axes) == len(groups)
    for ax, group in zip(fig.axes, groups, strict=True):
        texts = _texts(group)
        xlo, xhi = ax.get_xlim()
        shown = [t.get_text() for t, v in zip(ax.get_xticklabels(), ax.get_xticks(), strict=True)
                 if xlo <= v <= xhi]  # fmt: skip
        ylo, yhi = ax.get_ylim()
        shown += [t.get_text() for t, v in zip(ax.get_yticklabels(), ax.get_yticks(), strict=True)
                  if ylo <= v <= yhi]  # fmt: skip
        assert texts[:-3] == shown
        # the same title; matplotlib breaks a long one after the parent, the SVG squeezes it
        title = ax.get_title().replace(":\n", ": ")
        assert texts[-3:] == [ax.get_xlabel(), ax.get_ylabel(), title]
    assert "10³" in _texts(groups[-1])  # transformed axes read in linear decades


def test_identical_input_gives_identical_bytes(gated, svg) -> None:
    assert gating_svg(copy.deepcopy(gated[0])) == svg


def test_hostile_marker_names_stay_text(gated) -> None:
    adata = gated[0].copy()
    channel = nk.io.channel_for(adata, "CD56")
    adata.var["marker"] = adata.var["marker"].astype(str)
    adata.var.loc[channel, "marker"] = HOSTILE_MARKER + "\x01"
    svg = gating_svg(adata)
    root = ET.fromstring(svg)  # still well formed (the control character was replaced)
    assert not list(root.iter(f"{SVG}script")) and b"<script" not in svg
    labels = [t.text for t in root.iter(f"{SVG}text")]
    assert f"{HOSTILE_MARKER}\ufffd ({channel})" in labels
    # in the report the SVG is one attribute value: no quote or bracket survives unencoded
    uri = data_uri(svg)
    assert not set('"<>&') & set(uri)
    assert decode_data_uri(uri) == svg


def test_histogram_and_empty_parent_panels() -> None:
    """A 1-D panel is a grey step path; a density with no parent events draws only the gate."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 2))
    a = ad.AnnData(X=x.astype(np.float32), var=pd.DataFrame({"marker": ["CD3", "CD56"]},
                                                            index=["A", "B"]))  # fmt: skip
    a.obs_names = [str(i) for i in range(500)]
    a.obs["Pos"] = x[:, 0] > 0.5
    a.obs["None"] = False
    a.obs["Box"] = False
    rect = {"kind": "rectangle", "dims": [{"channel": "A", "min": 0.5, "max": None}]}
    box = {"kind": "rectangle", "dims": [{"channel": "A", "min": 0.0, "max": 1.0},
                                         {"channel": "B", "min": 0.0, "max": 1.0}]}  # fmt: skip
    a.uns["nkflow"] = {"gating": {"populations": [
        {"name": "Pos", "gate": {**rect, "id": "Pos", "parent": None}},
        {"name": "None", "gate": {**rect, "id": "None", "parent": "Pos"}},
        {"name": "Box", "gate": {**box, "id": "Box", "parent": "None"}},
    ]}}  # fmt: skip
    panels = gate_panels(a, bins=8)
    counts, _ = np.histogram(x[:, 0], bins=8)
    assert np.array_equal(panels[0].counts, counts)
    assert panels[0].title == f"Pos  (in all events): {int((x[:, 0] > 0.5).sum())} " \
        f"({100 * (x[:, 0] > 0.5).mean():.1f}%)"  # fmt: skip
    assert panels[2].counts is None and panels[2].outline is not None
    groups = _panels(panels_svg(panels))
    path = next(e for e in groups["Pos"] if e.get("fill") == "#808080")
    assert path.get("d").startswith("M") and path.get("d").endswith("Z")
    assert path.get("d").count("L") == 2 * 8 + 1
    assert next(groups["Box"].iter(f"{SVG}image"), None) is None
    assert next(groups["Box"].iter(f"{SVG}polygon")) is not None
    with pytest.raises(GatingError, match="no gate 'nope'"):
        gate_panels(a, gates=["nope"])
