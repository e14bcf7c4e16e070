"""Every public callable of nkflow's namespaces has a numpydoc docstring a user can rely on.

For each function or class named in a public namespace's ``__all__``: a one-line summary;
a ``Parameters`` section naming every parameter (a class: its constructor's, except
``self``; a dataclass may name its fields under ``Attributes``); a ``Returns`` section when
the annotated return is not ``None`` (``Yields`` for a generator); and a ``Raises`` section
naming each nkflow error the body raises itself (``raise SomeError(...)`` written in the
function, not in what it calls).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import re
import textwrap
from collections.abc import Callable

import pytest

import nkflow.exceptions

NAMESPACES = [
    "nkflow",
    "nkflow.datasets",
    "nkflow.gating",
    "nkflow.io",
    "nkflow.models",
    "nkflow.pl",
    "nkflow.pp",
    "nkflow.tl",
]
NKFLOW_ERRORS = {
    name
    for name, obj in vars(nkflow.exceptions).items()
    if isinstance(obj, type) and issubclass(obj, nkflow.exceptions.NkflowError)
}
_HEADER = re.compile(r"^(\w[\w ]*)\n-{3,}$", re.MULTILINE)


def _public_callables() -> list[tuple[str, Callable]]:
    found: dict[int, tuple[str, Callable]] = {}
    for namespace in NAMESPACES:
        package = importlib.import_module(namespace)
        for name in package.__all__:
            obj = getattr(package, name)
            if inspect.ismodule(obj) or not callable(obj):
                continue
            found.setdefault(id(obj), (f"{namespace}.{name}", obj))
    return sorted(found.values(), key=lambda item: item[0])


PUBLIC = _public_callables()


def _sections(doc: str) -> dict[str, str]:
    """Numpydoc section name -> its body."""
    marks = list(_HEADER.finditer(doc))
    return {
        m.group(1): doc[m.end() : marks[i + 1].start() if i + 1 < len(marks) else len(doc)]
        for i, m in enumerate(marks)
    }


def _documented_names(section: str) -> set[str]:
    """Names in a Parameters section: its unindented lines, ``a, b : type`` style."""
    names: set[str] = set()
    for line in section.splitlines():
        if line and not line[0].isspace():
            names.update(n.strip().lstrip("*") for n in line.split(" : ")[0].split(","))
    return names


def _own_init(cls: type) -> Callable | None:
    """The constructor a class defines (itself or a non-builtin base), else None."""
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            return None if klass.__module__ == "builtins" else vars(klass)["__init__"]
    return None


def _parameters(obj: Callable) -> list[str]:
    if inspect.isclass(obj):
        init = _own_init(obj)
        if init is None:
            return []
        params = list(inspect.signature(init).parameters)[1:]
    else:
        params = list(inspect.signature(obj).parameters)
    return [p for p in params if p != "self"]


def _returns_something(func: Callable) -> bool:
    annotation = inspect.signature(func).return_annotation
    return annotation not in (None, "None", inspect.Signature.empty)


def _raised_errors(func: Callable) -> set[str]:
    """nkflow errors raised directly in ``func``'s body (not in nested functions)."""
    try:
        source = textwrap.dedent(inspect.getsource(func))
    except (OSError, TypeError):
        return set()
    node = ast.parse(source).body[0]
    raised: set[str] = set()
    stack = list(ast.iter_child_nodes(node))
    while stack:
        child = stack.pop()
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            continue
        if isinstance(child, ast.Raise) and child.exc is not None:
            exc = child.exc.func if isinstance(child.exc, ast.Call) else child.exc
            name = exc.attr if isinstance(exc, ast.Attribute) else getattr(exc, "id", None)
            if name in NKFLOW_ERRORS:
                raised.add(name)
        stack.extend(ast.iter_child_nodes(child))
    return raised


def docstring_problems(obj: Callable) -> list[str]:
    """What the docstring of ``obj`` lacks; empty when it is complete."""
    doc = inspect.getdoc(obj) if obj.__doc__ else None
    if inspect.isclass(obj) and doc and doc == inspect.getdoc(object):
        doc = None
    if not doc:
        return ["no docstring"]
    problems = []
    summary = doc.split("\n\n", 1)[0]
    if "\n" in summary.strip() or not summary.strip():
        problems.append("no one-line summary")
    sections = _sections(doc)
    params = _parameters(obj)
    # a dataclass may list its fields as Attributes (they are its constructor's parameters)
    heading = "Attributes" if dataclasses.is_dataclass(obj) else "Parameters"
    body = sections.get("Parameters", "") + "\n" + sections.get(heading, "")
    if params:
        if "Parameters" not in sections and heading not in sections:
            problems.append(
                f"no Parameters section{' (or Attributes)' * (heading != 'Parameters')}"
            )
        else:
            missing = [p for p in params if p not in _documented_names(body)]
            if missing:
                problems.append(f"Parameters does not name {missing}")
    if not inspect.isclass(obj):
        if inspect.isgeneratorfunction(obj):
            if "Yields" not in sections:
                problems.append("no Yields section")
        elif _returns_something(obj) and "Returns" not in sections:
            problems.append("no Returns section")
    functions = [obj] if not inspect.isclass(obj) else [_own_init(obj)] if _own_init(obj) else []
    for func in functions:
        raised = _raised_errors(func)
        if raised and "Raises" not in sections:
            problems.append(f"no Raises section (raises {sorted(raised)})")
        elif raised:
            unnamed = sorted(e for e in raised if e not in sections["Raises"])
            if unnamed:
                problems.append(f"Raises does not name {unnamed}")
    return problems


@pytest.mark.parametrize("obj", [obj for _, obj in PUBLIC], ids=[name for name, _ in PUBLIC])
def test_public_docstring_is_numpydoc(obj: Callable) -> None:
    assert docstring_problems(obj) == []


if __name__ == "__main__":  # the audit: every public name and what its docstring lacks
    for name, obj in PUBLIC:
        for problem in docstring_problems(obj):
            print(f"{name}: {problem}")
