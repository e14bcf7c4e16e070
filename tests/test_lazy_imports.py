"""Lazy sub-packages (issue 18): what ``import nkflow`` and ``nkflow --help`` load, and that
every public name still resolves to the object its module defines.

Start-up cost is asserted as *which modules are loaded* in a fresh interpreter, never as wall
time (benchmarks/bench_import.py measures the time).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import pytest

from nkflow._lazy import attach

REPO = Path(__file__).resolve().parents[1]

PACKAGES = [
    "nkflow",
    "nkflow.datasets",
    "nkflow.gating",
    "nkflow.io",
    "nkflow.models",
    "nkflow.pipeline",
    "nkflow.pl",
    "nkflow.pp",
    "nkflow.report",
    "nkflow.tl",
]
# loaded by no start-up path: heavy, and not needed to parse arguments or to list the API
HEAVY = ["anndata", "dask", "flowkit", "matplotlib", "numpy", "pandas", "scipy", "sklearn"]


def _python(code: str) -> str:
    """Run ``code`` in a fresh interpreter on this checkout; its stdout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _heavy_loaded(code: str) -> list[str]:
    out = _python(
        f"{code}\nimport json, sys\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))"
    )
    return json.loads(out.splitlines()[-1])


def test_import_nkflow_loads_no_heavy_dependency() -> None:
    assert _heavy_loaded("import nkflow") == []


def test_nkflow_help_loads_no_heavy_dependency() -> None:
    code = (
        "from nkflow.cli import main\n"
        "try:\n    main(['--help'])\n"
        "except SystemExit as exc:\n    assert exc.code == 0, exc.code"
    )
    assert _heavy_loaded(code) == []


def test_run_starts_its_workers_before_any_heavy_import() -> None:
    """``run`` starts the workers first: its module loads none of what they import."""
    assert _heavy_loaded("import nkflow as nk\nnk.run") == []


def test_gating_and_run_load_no_matplotlib_until_a_figure_is_drawn() -> None:
    """A run's main process gets its figures as bytes from the workers."""
    code = ("import nkflow as nk\nnk.gating.gate\nnk.run\nimport nkflow.pipeline.stages\n"
            "from nkflow.report import write_report")  # fmt: skip
    loaded = _heavy_loaded(code)
    assert "matplotlib" not in loaded
    assert "matplotlib" in _heavy_loaded("import nkflow as nk\nnk.pl.gate_grid")


def test_a_worker_loads_no_scipy_signal() -> None:
    """The density rules find peaks themselves (nkflow.gating.peaks): scipy.signal cost
    every worker ~0.14 s of start-up for one function."""
    out = _python("import sys, nkflow.pipeline.sample\nprint('scipy.signal' in sys.modules)")
    assert out.splitlines()[-1] == "False"


def _type_checking_imports(package: str) -> dict[str, str]:
    """Public name -> defining module, from the package's ``if TYPE_CHECKING:`` block."""
    module = importlib.import_module(package)
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    found = {}
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom), ast.unparse(imp)
                base = importlib.util.resolve_name("." * imp.level + (imp.module or ""), package)
                for alias in imp.names:
                    if imp.module is None:  # from . import submodule
                        found[alias.name] = f"{base}.{alias.name}"
                    else:
                        found[alias.name] = base
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_resolves_to_its_modules_object(package: str) -> None:
    module = importlib.import_module(package)
    assert module.__all__, package
    for name in module.__all__:
        assert name in dir(module), f"{package}.{name} missing from dir()"
        assert getattr(module, name) is not None, f"{package}.{name}"
    # what type checkers see (the TYPE_CHECKING imports) is what the lazy loader returns
    for name, origin in _type_checking_imports(package).items():
        assert name in module.__all__ or origin.rsplit(".", 1)[-1] == name, f"{package}.{name}"
        expected = importlib.import_module(origin)
        if origin != f"{package}.{name}":  # a name, not a submodule
            expected = getattr(expected, name)
        assert getattr(module, name) is expected, f"{package}.{name} is not {origin}.{name}"


def _public_kinds(submodules_first: bool) -> dict[str, str]:
    """``{package.name: 'module' | 'object'}`` for every public name, in a fresh process."""
    code = f"""
import importlib, json, pkgutil, types
import nkflow
if {submodules_first!r}:  # import every module first, as a test or a user might
    for info in pkgutil.walk_packages(nkflow.__path__, "nkflow."):
        importlib.import_module(info.name)
kinds = {{}}
for package in {PACKAGES!r}:
    module = importlib.import_module(package)
    for name in module.__all__:
        value = getattr(module, name)
        kinds[package + "." + name] = "module" if isinstance(value, types.ModuleType) else "object"
print(json.dumps(kinds))
"""
    return json.loads(_python(code).splitlines()[-1])


@pytest.mark.slow
def test_importing_a_submodule_first_never_hides_a_public_name() -> None:
    """nkflow.tl.cluster is a function although nkflow/tl/cluster.py exists: whatever order
    modules are imported in, every public name is the same kind of object."""
    names_first, modules_first = _public_kinds(False), _public_kinds(True)
    assert modules_first == names_first
    assert names_first["nkflow.tl.cluster"] == names_first["nkflow.pp.qc"] == "object"
    assert names_first["nkflow.pipeline.run"] == "object"
    assert names_first["nkflow.pl.gating"] == "module"


def test_unknown_names_raise_attribute_error() -> None:
    import nkflow as nk

    assert not hasattr(nk, "no_such_name")
    assert not hasattr(nk.io, "no_such_name")
    with pytest.raises(AttributeError, match=r"nkflow\.gating.*no_such_name"):
        nk.gating.no_such_name  # noqa: B018


def test_attach_refuses_a_lazy_name_equal_to_its_module() -> None:
    with pytest.raises(ValueError, match="eagerly"):
        attach("nkflow.pp", {"qc": ["qc", "qc_margins"]})


def test_lazy_value_is_cached_in_the_package_namespace() -> None:
    import nkflow.models as models

    som = models.SOM
    assert vars(models)["SOM"] is som
    assert isinstance(importlib.import_module("nkflow.models.som"), types.ModuleType)


def test_hatch_reads_the_version_from_a_module_that_imports_nothing() -> None:
    import nkflow

    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    path = REPO / config["tool"]["hatch"]["version"]["path"]
    text = path.read_text(encoding="utf-8")
    # hatchling's default version pattern, applied the way its regex source applies it
    found = re.findall(r"(?im)^(?:__version__|VERSION) *= *(['\"])v?(.+?)\1", text)
    assert [version for _, version in found] == [nkflow.__version__]
    assert not re.search(r"(?m)^(?:import|from) ", text), f"{path} must import nothing"
