"""nkflow.io: reading FCS files, panels, metadata sheets and batches; writing outputs.

The only place FCS bytes are parsed. ``read_fcs`` returns the AnnData container of
docs/contracts.md; ``read_fcs_metadata`` reads HEADER+TEXT only; ``read_batch`` and
``check_batch`` work on a folder or metadata sheet; ``inspect_files`` summarises files
without ever raising.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import attach

if TYPE_CHECKING:  # at run time each module loads on first use (nkflow._lazy)
    from .batch import Batch, BatchCheck, check_batch, read_batch
    from .fcs import channel_for, channel_kind, parse_spillover, read_fcs, sample_id, sample_info
    from .fcs_text import FCSMetadata, read_fcs_metadata
    from .fcs_write import format_spillover, write_fcs
    from .folder import metadata_from_files, metadata_from_folder
    from .h5ad import read_h5ad, write_h5ad
    from .inspect import inspect_files
    from .metadata import read_metadata
    from .panel import (
        ALIASES,
        CANONICAL_MARKERS,
        canonical_marker,
        load_panel,
        marker_equivalents,
        marker_from_text,
        resolve_markers,
    )
    from .panel_labels import unread_labels
    from .records import nkflow_record, nkflow_uns, restore_records, set_record
    from .technology import KINDS, Technology, detect_technology, technology_of
    from .write import safe_name, write_bytes_atomic, write_table, write_text_atomic

__all__ = [
    "ALIASES",
    "CANONICAL_MARKERS",
    "KINDS",
    "Batch",
    "BatchCheck",
    "FCSMetadata",
    "Technology",
    "canonical_marker",
    "channel_for",
    "channel_kind",
    "check_batch",
    "detect_technology",
    "format_spillover",
    "inspect_files",
    "load_panel",
    "marker_equivalents",
    "marker_from_text",
    "metadata_from_files",
    "metadata_from_folder",
    "nkflow_record",
    "nkflow_uns",
    "parse_spillover",
    "read_batch",
    "read_fcs",
    "read_fcs_metadata",
    "read_h5ad",
    "read_metadata",
    "resolve_markers",
    "restore_records",
    "safe_name",
    "sample_id",
    "sample_info",
    "set_record",
    "technology_of",
    "unread_labels",
    "write_bytes_atomic",
    "write_fcs",
    "write_h5ad",
    "write_table",
    "write_text_atomic",
]

__getattr__, __dir__ = attach(
    __name__,
    {
        "batch": ["Batch", "BatchCheck", "check_batch", "read_batch"],
        "fcs": [
            "channel_for",
            "channel_kind",
            "parse_spillover",
            "read_fcs",
            "sample_id",
            "sample_info",
        ],
        "fcs_text": ["FCSMetadata", "read_fcs_metadata"],
        "fcs_write": ["format_spillover", "write_fcs"],
        "inspect": ["inspect_files"],
        "folder": ["metadata_from_files", "metadata_from_folder"],
        "h5ad": ["read_h5ad", "write_h5ad"],
        "metadata": ["read_metadata"],
        "panel": [
            "ALIASES",
            "CANONICAL_MARKERS",
            "canonical_marker",
            "load_panel",
            "marker_equivalents",
            "marker_from_text",
            "resolve_markers",
        ],
        "panel_labels": ["unread_labels"],
        "records": ["nkflow_record", "nkflow_uns", "restore_records", "set_record"],
        "technology": ["KINDS", "Technology", "detect_technology", "technology_of"],
        "write": ["safe_name", "write_bytes_atomic", "write_table", "write_text_atomic"],
    },
)
