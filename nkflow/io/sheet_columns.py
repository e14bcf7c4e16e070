"""Sheet columns under other names: nkflow's column each common lab header stands for.

A sheet that names its donors ``Patient``, its conditions ``Condition`` or its roles
``Tube`` leaves nkflow's own column empty. :data:`COLUMN_SYNONYMS` lists the headers
that usually mean one of nkflow's columns; :func:`column_renames` names the renames a
sheet would need (used by :func:`nkflow.io.read_metadata` for a missing required column
and by :mod:`nkflow.io.sheet_notes`). Nothing is renamed silently: a column that looks
like another may mean something else.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from .text_safety import escape_text

__all__ = ["COLUMN_SYNONYMS", "column_renames", "filled"]

COLUMN_SYNONYMS = {
    "file": ("filename", "file_name", "fcs", "fcs_file", "fcs_filename", "fcs_file_name",
             "filepath", "file_path", "fcs_path", "path"),
    "sample_id": ("sample", "sample_name", "samplename", "sample_label",
                  "tube", "tube_name", "name", "id"),
    "donor": ("patient", "patient_id", "subject", "subject_id", "participant",
              "participant_id", "individual", "donor_id", "mouse", "mouse_id", "animal",
              "animal_id"),
    "tissue": ("organ", "tissue_type", "sample_type", "compartment", "site", "tissue_site",
               "specimen", "sample_source"),
    "timepoint": ("visit", "day", "time", "treatment_timepoint"),
    "stimulation": ("stim", "stimulus", "stimulant", "condition", "culture_condition",
                    "activation"),
    "role": ("tube_type", "sample_role", "control", "control_type"),
    "species": ("organism",),
    "batch": ("plate", "run", "experiment", "acquisition_batch", "staining_batch",
              "run_date", "acquisition_date"),
    "tissue_kind": ("tumour_status", "tumor_status", "tissue_class", "tumour_normal",
                    "tumor_normal"),
    "glucocorticoid": ("glucocorticoids", "corticosteroid", "corticosteroids", "steroid",
                       "steroids", "dexamethasone"),
    "treatment": ("therapy", "regimen", "treatment_regimen"),
}  # fmt: skip


def filled(table: pd.DataFrame, column: str) -> bool:
    """Whether ``column`` exists and holds a value other than ``""`` (and role ``sample``)."""
    if column not in table.columns:
        return False
    values = table[column].fillna("").astype(str).str.strip()
    return bool((~values.isin(["", "sample"] if column == "role" else [""])).any())


def column_renames(table: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    """``'patient' -> 'donor'`` for each of ``columns`` a filled synonym column may hold.

    Parameters
    ----------
    table
        The sheet, headers as :func:`nkflow.io.metadata.sheet_header` reads them.
    columns
        nkflow columns to look for.

    Returns
    -------
    list of str
        One ``'synonym' -> 'column'`` per column found under another name.
    """
    out = []
    for column in columns:
        found = [s for s in COLUMN_SYNONYMS.get(column, ()) if filled(table, s)]
        if found:
            out.append(f"'{escape_text(found[0])}' -> '{column}'")
    return out
