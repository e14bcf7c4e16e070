"""nkflow.report: the only writer of report files.

- :func:`write_report` writes ``tables/`` (CSV + Parquet), ``figures/`` (PNG; SVG for
  the per-sample gate grids of :mod:`nkflow.report.gating_svg`) and one
  self-contained ``report.html`` into a run's output folder, atomically;
  :func:`write_tables` writes only the tables (a run writes them before its last figures
  are drawn).
- :func:`render_html` renders the report as a string (pure; used by ``write_report``).
- :func:`methods_text` generates the methods paragraph naming every parameter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import attach

if TYPE_CHECKING:  # at run time each module loads on first use (nkflow._lazy)
    from .figures import figure_png, figure_section
    from .html import render_html
    from .methods import methods_text
    from .repair import KEY_CAVEAT
    from .tables import esc
    from .writer import write_report, write_tables

__all__ = [
    "KEY_CAVEAT",
    "esc",
    "figure_png",
    "figure_section",
    "methods_text",
    "render_html",
    "write_report",
    "write_tables",
]

__getattr__, __dir__ = attach(
    __name__,
    {
        "figures": ["figure_png", "figure_section"],
        "html": ["render_html"],
        "methods": ["methods_text"],
        "repair": ["KEY_CAVEAT"],
        "tables": ["esc"],
        "writer": ["write_report", "write_tables"],
    },
)
