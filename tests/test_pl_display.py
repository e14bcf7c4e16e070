"""nk.pl figures show themselves in Jupyter without pyplot, and stay out of pyplot's registry.

IPython displays an object through a formatter registered for its type (the inline backend
registers one for matplotlib Figures once it is activated) or, failing that, through
its ``_repr_png_``. A fresh :class:`IPython.core.formatters.DisplayFormatter` has no
Figure formatter, as in a kernel where pyplot was never imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt  # its registry must stay empty after any nk.pl call
import pytest
from matplotlib.figure import Figure
from test_score_simulation import simulate_counts
from test_tl_cluster import _run, _sample

import nkflow as nk
from nkflow.tl.annotate import abundance_table
from nkflow.tl.score import score

formatters = pytest.importorskip("IPython.core.formatters")

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

#: one cheap call of every public nk.pl function
DRAW = {
    "gate_plot": lambda f: nk.pl.gate_plot(f["gated"], "NK", bins=32),
    "gate_grid": lambda f: nk.pl.gate_grid(f["gated"], gates=["Cells", "NK"], bins=32),
    "frequencies": lambda f: nk.pl.frequencies(f["populations"]),
    "frequency_heatmap": lambda f: nk.pl.frequency_heatmap(f["populations"]),
    "frequencies_empty": lambda f: nk.pl.frequencies(f["populations"].iloc[0:0]),
    "heatmap": lambda f: nk.pl.heatmap(f["clustering"]),
    "abundance": lambda f: nk.pl.abundance(abundance_table(f["batch"], f["clustering"])),
    "embedding": lambda f: nk.pl.embedding(f["batch"], f["clustering"], n_cells=200),
    "repair_profile": lambda f: nk.pl.repair_profile(f["scores"], sample_id="d0_stim"),
}


@pytest.fixture(scope="module")
def inputs(gated_liver) -> dict:
    """What the plots draw: a gated sample, its populations, a clustering and scores."""
    batch = {
        "blood1": _sample("blood1", 600, [0.1, 0.6, 0.1], "blood", 1),
        "liver1": _sample("liver1", 400, [0.3, 0.2, 0.3], "liver", 2),
    }
    counts, meta, _ = simulate_counts(2, seed=1)
    return {
        "gated": gated_liver[0],
        "populations": gated_liver[1],
        "batch": batch,
        "clustering": _run(batch, per_sample_cap=400),
        "scores": score(counts, meta),
    }


@pytest.mark.parametrize("name", list(DRAW))
def test_figure_has_a_png_repr_and_leaves_pyplot_empty(inputs, name) -> None:
    fig = DRAW[name](inputs)
    assert isinstance(fig, Figure)
    assert plt.get_fignums() == []
    png = fig._repr_png_()
    assert png is not None and png.startswith(PNG_MAGIC)
    data, _ = formatters.DisplayFormatter().format(fig)
    assert data["image/png"].startswith(PNG_MAGIC)
    assert "image/svg+xml" not in data  # one image, not the same figure twice
    assert data["text/plain"].startswith("<Figure size")
    assert plt.get_fignums() == []


class _Shell:
    """Just what ``_repr_png_`` reads of a running IPython shell."""

    def __init__(self, display_formatter: object) -> None:
        self.display_formatter = display_formatter


@pytest.mark.parametrize("mime", ["image/png", "image/svg+xml"])
def test_inline_backend_formatter_shows_the_figure_alone(inputs, monkeypatch, mime) -> None:
    """With the inline backend active its Figure formatter is the only image sent."""
    import IPython

    display = formatters.DisplayFormatter()
    display.formatters[mime].for_type(Figure, lambda fig: "inline")
    monkeypatch.setattr(IPython, "get_ipython", lambda: _Shell(display))
    fig = DRAW["frequencies"](inputs)
    assert fig._repr_png_() is None
    data, _ = display.format(fig)
    assert data[mime] == "inline"
    assert {"image/png", "image/svg+xml"} & set(data) == {mime}


def test_png_repr_in_a_fresh_interpreter_without_pyplot() -> None:
    code = (
        "import sys\n"
        "import pandas as pd\n"
        "from IPython.core.formatters import DisplayFormatter\n"
        "import nkflow as nk\n"
        "pops = pd.DataFrame({'sample_id': ['a', 'b'], 'population': ['NK', 'NK'],\n"
        "    'parent': ['Live', 'Live'], 'count': [10, 30],\n"
        "    'percent_of_parent': [10.0, 30.0], 'low_events': [False, False]})\n"
        "data, _ = DisplayFormatter().format(nk.pl.frequencies(pops))\n"
        "assert data['image/png'].startswith(b'\\x89PNG'), sorted(data)\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH")))),
    }
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
