"""Warnings of a public entry point shown at the user's call, not at nkflow's lines.

Gating warns from deep inside (the engine, the statistics), each ``warnings.warn`` with a
``stacklevel`` that can only reach so far up a call chain that varies; the user then sees
``nkflow/gating/apply.py:178`` instead of their own line. :func:`warns_at_caller` collects
the nkflow warnings of one call and issues them again from the caller's frame, through the
caller's filters (an ``"error"`` filter raises once the call is done).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from .exceptions import NkflowWarning

__all__ = ["warns_at_caller"]

F = TypeVar("F", bound=Callable[..., Any])


def warns_at_caller(fn: F) -> F:
    """Decorate ``fn`` so its :class:`~nkflow.exceptions.NkflowWarning` s name its caller.

    Parameters
    ----------
    fn
        A public function.

    Returns
    -------
    callable
        ``fn`` with the same signature and docstring. Other warnings keep the file and line
        that issued them.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        caught: list[warnings.WarningMessage] = []
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", NkflowWarning)
                return fn(*args, **kwargs)
        finally:
            for w in caught:
                if isinstance(w.message, NkflowWarning):
                    warnings.warn(w.message, stacklevel=2)
                else:
                    warnings.warn_explicit(
                        w.message, w.category, w.filename, w.lineno, source=w.source
                    )

    return wrapper  # type: ignore[return-value]
