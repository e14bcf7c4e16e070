"""The quickstart notebook runs end to end on the sample data, and shows its figures."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


def test_quickstart_notebook_executes() -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    resources = {"metadata": {"path": str(NOTEBOOK.parent)}}
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources=resources)
    client.execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(str(o.get("text", "")) + str(o.get("data", {})) for o in outputs)
    assert "hypothesis" in text
    # the heatmap shows as an image in a kernel where pyplot was never imported
    (heatmap,) = [c for c in nb.cells if "nk.pl.heatmap" in c.source]
    assert [sorted(o.get("data", {})) for o in heatmap.outputs] == [["image/png", "text/plain"]]
    assert base64.b64decode(heatmap.outputs[0].data["image/png"]).startswith(b"\x89PNG")


def test_figure_shows_once_with_the_inline_backend() -> None:
    """With the inline backend active its Figure formatter draws the figure: one image, and
    nothing in pyplot's registry for it to draw again at the end of the cell.

    (Importing pyplot alone does not activate it: matplotlib resolves the backend, and
    matplotlib_inline registers its formatter, at the first pyplot figure.)
    """
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    cells = [
        "%matplotlib inline\nimport pandas as pd\nimport matplotlib.pyplot as plt\n"
        "import nkflow as nk",
        "pops = pd.DataFrame({'sample_id': ['a', 'b'], 'population': ['NK', 'NK'],\n"
        "    'parent': ['Live', 'Live'], 'count': [10, 30],\n"
        "    'percent_of_parent': [10.0, 30.0], 'low_events': [False, False]})\n"
        "nk.pl.frequencies(pops)",
        "from matplotlib.figure import Figure\n"
        "get_ipython().display_formatter.formatters['image/png'].lookup_by_type(Figure)\n"
        "plt.get_fignums()",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    shown = nb.cells[1].outputs
    assert [sorted(o.get("data", {})) for o in shown] == [["image/png", "text/plain"]]
    assert nb.cells[2].outputs[0].data["text/plain"] == "[]"
