"""A one-row-per-file summary of FCS files, for an analyst's first look (``nkflow inspect``)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from ..exceptions import FCSQuirkWarning, NkflowError
from .fcs import parse_spillover
from .fcs_text import read_fcs_metadata
from .panel import conflict_message, resolve_with_conflicts
from .panel_labels import format_unread, unread_labels
from .technology import detect_technology

__all__ = ["INSPECT_COLUMNS", "inspect_files"]

logger = logging.getLogger(__name__)

INSPECT_COLUMNS = (
    "file", "fcs_version", "events", "channels", "markers", "unread_labels", "spillover",
    "instrument", "date", "technology", "datasets", "quirks", "error",
)  # fmt: skip


def _one(path: Path) -> dict[str, object]:
    row: dict[str, object] = dict.fromkeys(INSPECT_COLUMNS, "")
    row.update({"file": str(path), "events": pd.NA, "channels": pd.NA, "datasets": pd.NA})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FCSQuirkWarning)
        try:
            meta = read_fcs_metadata(path)
        except NkflowError as exc:
            row["error"] = getattr(exc, "reason", str(exc))
            return row
        spill = parse_spillover(meta.keywords, meta.pnn, meta.pns, path=str(path))
        markers, clashes = resolve_with_conflicts(meta.pnn, meta.pns)
        shown = ", ".join(f"{m} ({c})" for m, c in zip(markers, meta.pnn, strict=True) if m)
        unread = format_unread(unread_labels(meta.pnn, meta.pns))
        tech = detect_technology(meta.keywords, meta.pnn, meta.pns)
    quirks = list(meta.quirks)
    if clashes:
        quirks.append(conflict_message(clashes, meta.pnn, meta.pns))
    row.update(
        {
            "fcs_version": meta.version,
            "events": meta.n_events,
            "channels": meta.n_channels,
            "markers": shown,
            "unread_labels": unread,
            "spillover": "yes" if spill else "no",
            "technology": tech.kind,
            "instrument": meta.cyt,
            "date": meta.date,
            "datasets": meta.n_datasets,
            "quirks": "; ".join(quirks),
        }
    )
    return row


def inspect_files(paths: Iterable[str | Path]) -> pd.DataFrame:
    """Summarise FCS files without decoding their events; never raises for a bad file.

    Parameters
    ----------
    paths
        Files to look at (folders are reported as errors, not expanded).

    Returns
    -------
    pandas.DataFrame
        Columns ``file, fcs_version, events, channels, markers, unread_labels, spillover,
        instrument, date, technology, datasets, quirks, error``; ``unread_labels`` lists
        the ``'label' (channel)`` pairs whose label names a stain the alias table does not
        read as a marker (:func:`nkflow.io.unread_labels`: those channels carry no marker
        until a panel file names it); ``technology`` is the kind
        :func:`nkflow.io.detect_technology` finds (``raw_spectral`` files need unmixing
        before analysis); ``error`` is ``""`` for readable files and the reason otherwise;
        ``quirks`` lists tolerated deviations and marker conflicts; ``markers``
        lists ``marker (channel)`` pairs.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    rows = [_one(Path(p)) for p in paths]
    table = pd.DataFrame(rows, columns=list(INSPECT_COLUMNS))
    for col in ("events", "channels", "datasets"):
        table[col] = table[col].astype("Int64")
    return table
