"""The figure every nkflow plot returns: a matplotlib Figure that shows itself in Jupyter.

nkflow builds figures without pyplot, so they never enter pyplot's registry (no leaked
figures, no memory kept after the caller drops them, nothing drawn twice by
``plt.show()``). IPython's inline backend, though, registers its image formatter for
:class:`matplotlib.figure.Figure` only once it is activated (``%matplotlib inline``, or
matplotlib resolving its backend at the first pyplot figure; importing pyplot is not
enough); until then a bare Figure shows as ``<Figure size ... with N Axes>``.

:class:`Figure` adds ``_repr_png_``, which IPython calls when no formatter is registered
for the type: the figure draws itself through its own canvas (Agg) into PNG bytes. When
the inline backend *is* active its type-registered formatter wins and this method is not
called for PNG; when the inline backend is set to another format (``svg``, ``jpeg``,
``pdf``) this method returns None so the figure is not sent in two formats.
"""

from __future__ import annotations

import io
import sys
from typing import Any

import matplotlib.figure

__all__ = ["Figure", "new_figure"]

#: the mime types IPython's inline backend may register a Figure formatter for
_INLINE_MIMES = ("image/png", "image/svg+xml", "image/jpeg", "application/pdf")


def _inline_backend_active() -> bool:
    """True when a running IPython shell has a formatter registered for matplotlib Figures.

    Only looks: IPython is not imported when it is not already loaded.
    """
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    formatters = getattr(getattr(shell, "display_formatter", None), "formatters", None)
    if not formatters:
        return False
    for mime in _INLINE_MIMES:
        formatter = formatters.get(mime)
        if formatter is None:
            continue
        try:
            formatter.lookup_by_type(matplotlib.figure.Figure)
        except KeyError:
            continue
        return True
    return False


class Figure(matplotlib.figure.Figure):
    """A :class:`matplotlib.figure.Figure` with a PNG representation for Jupyter.

    It draws and saves exactly as its base class (the report's image bytes are the same);
    only IPython's rich display is added. The class keeps the base class's name, so its
    text representation stays ``<Figure size ... with N Axes>``.
    """

    def _repr_png_(self) -> bytes | None:
        """The figure as PNG bytes, as the inline backend would draw it.

        Returns
        -------
        bytes or None
            The PNG file at the figure's dpi with a tight bounding box; None for a figure
            without axes, or when IPython's inline backend shows Figures itself.
        """
        if not self.axes or _inline_backend_active():
            return None
        buf = io.BytesIO()
        self.savefig(
            buf,
            format="png",
            dpi=self.dpi,
            facecolor=self.get_facecolor(),
            edgecolor=self.get_edgecolor(),
            bbox_inches="tight",
        )
        return buf.getvalue()


def new_figure(**kwargs: Any) -> Figure:
    """A new figure for an nkflow plot, outside pyplot's registry.

    Parameters
    ----------
    **kwargs
        Passed to :class:`matplotlib.figure.Figure` (``figsize``, ``layout``, ...).

    Returns
    -------
    Figure
        The empty figure.
    """
    return Figure(**kwargs)
