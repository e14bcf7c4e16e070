"""The README's Python API block, run as a plain ``.py`` script (no ``__main__`` guard).

``nk.run`` starts a ``spawn`` process pool; a spawned worker used to re-import the
caller's script and run ``nk.run`` again inside itself, so every sample failed with
BrokenProcessPool and Python still exited 0 (issue 17).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _api_block() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Python API") :]
    match = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert match, "README has no python block under '## Python API'"
    return match.group(1)


def test_readme_block_is_guard_free_and_names_the_sample_batch() -> None:
    block = _api_block()
    assert "__main__" not in block
    assert 'nk.run("sample_data/human"' in block


@pytest.mark.slow
def test_readme_api_block_runs_as_a_plain_script(tiny_batch: Path, tmp_path: Path) -> None:
    block = _api_block().replace("sample_data/human", tiny_batch.as_posix())
    check = (
        "\nassert len(res.populations) and res.failures == [], res.failures"
        "\nassert adata.n_obs > 0 and table is not None and len(counts)"
        "\nprint('README-API-OK', len(res.populations))\n"
    )
    script = tmp_path / "analysis.py"
    script.write_text(block + check, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, env=env, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "README-API-OK" in proc.stdout
    assert "BrokenProcessPool" not in proc.stderr
    assert (tmp_path / "results" / "report.html").is_file()
    assert (tmp_path / "nk.h5ad").is_file()
