"""Polygon membership equals matplotlib's ``Path.contains_points`` event for event.

matplotlib is the golden truth here: GatingML polygon gates are applied with it by flowkit,
and nkflow's memberships are compared with flowkit's on real and simulated files. Every
test runs with both ways nkflow tests events (sorted by height, or against every edge).
"""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.path import Path as MplPath

from nkflow.gating import polygon
from nkflow.gating.polygon import points_in_polygon


@pytest.fixture(autouse=True, params=["sorted events", "every edge"])
def _strategy(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    edges = 0 if request.param == "sorted events" else 10**6
    monkeypatch.setattr(polygon, "DIRECT_MAX_EDGES", edges)


def _matplotlib(x: np.ndarray, y: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    path = MplPath(np.asarray(vertices, float), closed=False)
    return np.asarray(path.contains_points(np.column_stack([x, y])), dtype=bool)


def _star(rng: np.random.Generator, n: int) -> np.ndarray:
    """A concave polygon: random radii around the centre."""
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = rng.uniform(0.3, 1.0, n)
    return np.column_stack([radii * np.cos(angles), radii * np.sin(angles)])


POLYGONS = {
    "triangle": lambda rng: np.array([[0.0, 0.0], [1.0, 0.2], [0.3, 0.9]]),
    "star-40": lambda rng: _star(rng, 40),
    "star-200": lambda rng: _star(rng, 200),
    "self-crossing": lambda rng: rng.uniform(-1, 1, (12, 2)),
    "horizontal edges": lambda rng: np.array(
        [[0.0, 0.0], [2.0, 0.0], [2.0, 1.0], [1.0, 1.0], [1.0, 2.0], [0.0, 2.0]]
    ),
    "closed (first vertex repeated)": lambda rng: np.array(
        [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]]
    ),
}


@pytest.mark.parametrize("name", list(POLYGONS))
def test_random_events_match_matplotlib(name: str) -> None:
    rng = np.random.default_rng(7)
    vertices = POLYGONS[name](rng)
    x, y = rng.uniform(-1.2, 2.2, (2, 20_000))
    expected = _matplotlib(x, y, vertices)
    assert 0 < expected.sum() < expected.size  # the polygon splits the events
    np.testing.assert_array_equal(points_in_polygon(x, y, vertices), expected)


@pytest.mark.parametrize("name", ["triangle", "horizontal edges", "closed (first vertex repeated)"])
def test_events_on_edges_and_vertices_match_matplotlib(name: str) -> None:
    # a grid through the vertices: many events lie exactly on an edge or a vertex,
    # where only the same arithmetic gives the same answer
    vertices = POLYGONS[name](np.random.default_rng(0))
    grid = np.linspace(-0.5, 2.5, 61)  # step 0.05: hits 0, 0.2, 0.3, 0.9, 1 and 2
    x, y = (a.ravel() for a in np.meshgrid(grid, np.r_[grid, 0.2, 0.9]))
    np.testing.assert_array_equal(points_in_polygon(x, y, vertices), _matplotlib(x, y, vertices))


def test_non_finite_events_are_outside() -> None:
    vertices = POLYGONS["triangle"](None)
    x = np.array([0.3, np.nan, 0.3, np.inf, 0.3, -np.inf])
    y = np.array([0.3, 0.3, np.nan, 0.3, np.inf, 0.3])
    np.testing.assert_array_equal(points_in_polygon(x, y, vertices), [1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(points_in_polygon(x, y, vertices), _matplotlib(x, y, vertices))


@pytest.mark.parametrize(
    ("vertices", "n"),
    [(np.zeros((0, 2)), 3), ([[0.0, 0.0], [1.0, 1.0]], 3), ([[0, 0], [1, 0], [0, 1]], 0)],
)
def test_degenerate_input_is_empty(vertices, n: int) -> None:
    out = points_in_polygon(np.full(n, 0.2), np.full(n, 0.2), vertices)
    assert out.shape == (n,) and not out.any()


def test_float32_events_are_compared_in_float64() -> None:
    rng = np.random.default_rng(3)
    vertices = _star(rng, 30)
    x, y = rng.uniform(-1, 1, (2, 5_000)).astype(np.float32)
    np.testing.assert_array_equal(points_in_polygon(x, y, vertices), _matplotlib(x, y, vertices))


def test_lengths_must_agree() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        points_in_polygon(np.zeros(3), np.zeros(4), [[0, 0], [1, 0], [0, 1]])
