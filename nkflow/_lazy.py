"""Lazy public names for nkflow's packages (PEP 562), so ``import nkflow`` stays cheap.

A package's ``__init__`` lists which submodule defines each public name and calls
:func:`attach`; the first access to a name (``nk.io.read_fcs``, ``from nkflow.io import
read_fcs``) imports that submodule and stores the value in the package namespace, so later
accesses are plain attribute look-ups. The same names are imported under
``typing.TYPE_CHECKING`` for type checkers and editors.

A public name equal to its submodule's name (``nkflow.pp.qc`` the function, defined in
``nkflow/pp/qc.py``) cannot be lazy: whoever imports the submodule first makes Python bind
the package attribute to the module, hiding the function. Such names are imported eagerly;
:func:`attach` refuses them.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping


def attach(
    package: str,
    attributes: Mapping[str, Iterable[str]],
    submodules: Iterable[str] = (),
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of a package with lazy names.

    Parameters
    ----------
    package
        The package's ``__name__``.
    attributes
        Submodule name (relative to the package) -> the public names it defines.
    submodules
        Submodules that are themselves public names (``nkflow.pl.gating``).

    Returns
    -------
    tuple
        ``(__getattr__, __dir__)`` to assign in the package.

    Raises
    ------
    ValueError
        When a lazy name equals its submodule's name (import it eagerly instead).
    """
    origin = {name: module for module, names in attributes.items() for name in names}
    clashes = sorted(name for name, module in origin.items() if name == module)
    if clashes:
        raise ValueError(f"{package}: import {clashes} eagerly, they share their module's name")
    modules = frozenset(submodules)
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> object:
        if name in modules:
            value: object = importlib.import_module(f"{package}.{name}")
        elif name in origin:
            value = getattr(importlib.import_module(f"{package}.{origin[name]}"), name)
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *origin, *modules})

    return __getattr__, __dir__
