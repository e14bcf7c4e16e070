"""The code's shape the team keeps (ARCHITECTURE.md): ruff clean, modules under 600 lines,
imports one way (nothing below ``pipeline/`` imports it; ``tl.cluster`` names its
metaclusters with ``tl.annotate``, which does not import it back)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "nkflow"
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_LINES = 600


def _ruff() -> list[str]:
    found = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if found is None:
        pytest.skip("ruff is not installed (it comes with the 'test' extra)")
    return [found]


@pytest.mark.parametrize(
    "args", [["check", "."], ["format", "--check", "."]], ids=["lint", "format"]
)
def test_ruff_is_clean(args: list[str]) -> None:
    done = subprocess.run([*_ruff(), *args], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_module_is_under_600_lines() -> None:
    long = {str(p.relative_to(REPO)): n for p in MODULES
            if (n := len(p.read_text(encoding="utf-8").splitlines())) >= MAX_LINES}  # fmt: skip
    assert not long, long


def _imported(path: Path) -> set[str]:
    """Absolute names of the nkflow modules ``path`` imports (relative imports resolved)."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                stem = node.module or ""
            names.add(stem)
            names.update(f"{stem}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return {n for n in names if n == "nkflow" or n.startswith("nkflow.")}


@pytest.mark.parametrize(
    "path", [p for p in MODULES if "pipeline" not in p.relative_to(PACKAGE).parts[:1]
             and p.parent != PACKAGE],
    ids=lambda p: str(p.relative_to(PACKAGE)),
)  # fmt: skip
def test_nothing_below_pipeline_imports_it(path: Path) -> None:
    assert not any(n.startswith("nkflow.pipeline") for n in _imported(path))


def test_annotate_does_not_import_cluster_back() -> None:
    assert not any(
        n.startswith("nkflow.tl.cluster") for n in _imported(PACKAGE / "tl" / "annotate.py")
    )
