"""Write a run's report files: tables (CSV + Parquet), figures (PNG, SVG) and report.html.

Every file goes through :mod:`nkflow.io.write` (temporary file, fsync, rename), names from
data pass through :func:`~nkflow.io.write.safe_name` so nothing lands outside the output
folder, and ``report.html`` is written last, so its presence means the rest is complete.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..io.write import (
    ensure_folder,
    safe_name,
    write_bytes_atomic,
    write_table,
    write_text_atomic,
)
from .figures import figure_bytes, figure_format
from .html import population_figures, render_html
from .tables import parquet_safe

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["write_report", "write_tables"]

log = logging.getLogger(__name__)


def _unique(name: str, used: set[str]) -> str:
    candidate, n = name, 1
    while candidate.lower() in used:
        n += 1
        candidate = f"{name}_{n}"
    used.add(candidate.lower())
    return candidate


def write_tables(out_dir: str | Path, tables: Mapping[str, pd.DataFrame | None]) -> None:
    """Write each table as ``tables/<name>.csv`` and ``.parquet`` in ``out_dir``.

    Empty tables are written too, so the set of outputs does not depend on the data;
    ``None`` entries are skipped. :func:`write_report` calls this unless told the caller
    did (a run writes its tables while the last figures are drawn).

    Raises
    ------
    TypeError
        A table is not a DataFrame.
    """
    out = ensure_folder(Path(out_dir))
    used: set[str] = set()
    for name, table in tables.items():
        if table is None:
            continue
        if not isinstance(table, pd.DataFrame):
            raise TypeError(
                f"table {name!r} must be a pandas DataFrame, got {type(table).__name__}"
            )
        stem = _unique(safe_name(name, default="table"), used)
        write_table(parquet_safe(table), out / "tables" / stem, root=out)
        log.debug("wrote table %s (%d rows)", stem, len(table))


def write_report(
    out_dir: str | Path,
    *,
    tables: Mapping[str, pd.DataFrame | None],
    metadata: pd.DataFrame | None,
    figures: Mapping[str, Figure | bytes] | None,
    config: Any,
    provenance: Mapping[str, Any] | None,
    caveats: str,
    title: str | None = None,
    tables_written: bool = False,
) -> Path:
    """Write every table, every figure and the self-contained ``report.html`` to ``out_dir``.

    Parameters
    ----------
    out_dir
        The run's output folder (created if needed).
    tables
        Tables by name; each is written as ``tables/<name>.csv`` and ``.parquet`` (empty
        tables too, so the set of outputs does not depend on the data). ``None`` entries
        are skipped.
    metadata
        The metadata sheet, used for grouping and captions.
    figures
        Figures by name (matplotlib Figures, PNG or SVG bytes), written as
        ``figures/<name>.png`` (or ``.svg`` for SVG bytes); the population-frequency
        figures of :mod:`nkflow.pl.populations` are added unless already present.
    config
        The effective run configuration (dict or ``RunConfig``).
    provenance
        Versions, template and input hashes; timestamps only if the caller wants them in
        the report.
    caveats
        Caveat text for the repair profile.
    title
        Report title (default: "nkflow batch report" and the batch, see
        :func:`~nkflow.report.html.render_html`).
    tables_written
        ``tables`` are already in ``out_dir`` (:func:`write_tables`); only the report
        shows them.

    Returns
    -------
    Path
        The path of ``report.html``.
    """
    out = ensure_folder(Path(out_dir))
    if not tables_written:
        write_tables(out, tables or {})

    figs: dict[str, Figure | bytes] = dict(figures or {})
    if not any(str(k).lower().startswith(("populations", "frequenc")) for k in figs):
        pops = (tables or {}).get("populations")
        figs.update(population_figures(pops if isinstance(pops, pd.DataFrame) else None, metadata))
    images: dict[str, bytes] = {}
    used_fig: set[str] = set()
    for name, fig in figs.items():
        if fig is None:
            continue
        data = figure_bytes(fig)
        images[str(name)] = data
        stem = _unique(safe_name(name, default="figure"), used_fig)
        write_bytes_atomic(out / "figures" / f"{stem}.{figure_format(data)}", data, root=out)
    log.debug("wrote %d figures", len(images))

    text = render_html(
        tables={k: v for k, v in (tables or {}).items() if v is not None},
        metadata=metadata,
        figures=images,
        config=config,
        provenance=provenance,
        caveats=caveats,
        title=title,
        population_plots=False,
    )
    path = write_text_atomic(out / "report.html", text, root=out)
    log.info("report written to %s", path)
    return path
