"""Metadata sheets: one row per FCS file, validated as a whole before any work starts.

The sheet format is fixed by docs/contracts.md: required columns ``file`` (relative to the
sheet) and ``sample_id``; optional ``donor``, ``tissue``, ``timepoint``, ``stimulation``
(``unstim``, ``stim``, ``""`` or the name of a stimulation condition such as ``IL-15``,
``IL-2``, ``IL-12/IL-15/IL-18``, ``PMA/iono``, ``dexamethasone``), ``role`` (``sample``,
``unstim``, ``stim``, ``fmo:<MARKER>``, ``positive_control``, ``single_stain:<MARKER>``,
``unstained``), ``species`` (``human`` | ``mouse``) and ``batch``. Headers are read
case-blind, with spaces, ``.`` and ``-`` as ``_`` (``Sample ID`` is ``sample_id``). Extra
columns are kept; :func:`unread_columns_summary` names those that look like an empty
nkflow column (``Patient`` beside no ``donor``).

Optional context columns (:data:`CONTEXT_COLUMNS`), validated only when present:
``tissue_kind`` (``blood``, ``normal tissue``, ``peri-tumour``, ``tumour``; ``tumor``,
``normal``, ``PBMC`` ... are normalised), ``glucocorticoid`` (``yes``, ``no``, ``unknown``)
and ``treatment`` (free text). Repair scoring uses them to say when AREG+ NK may be
pro-tumour rather than repair.

:func:`read_metadata` collects every problem (missing files, duplicate ids, unknown roles,
non-canonical FMO markers, bad stimulation or species values, unreadable encodings, values
a spreadsheet would run as formulas) and raises one :class:`MetadataError` listing them all.

Sheet values reach every CSV table nkflow writes, so a value (in any column, the header
included) that starts with ``=``, ``+``, ``-`` or ``@`` and is not a plain number, or that
contains a control character (tab, CR, LF, other C0/C1), is refused (OWASP CSV injection);
``neutralise_formulas=True`` prefixes such values with ``'`` instead and warns.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from ..exceptions import MetadataError, NkflowWarning
from .panel import CANONICAL_MARKERS, canonical_marker
from .sheet_columns import column_renames
from .sheet_files import FCS_SUFFIXES as FCS_SUFFIXES  # re-exported: folder, batch
from .sheet_files import missing_file_advice, sheet_path
from .sheet_text import decode_sheet, sheet_table
from .text_safety import escape_text, formula_risk, neutralise_formula

__all__ = [
    "CONTEXT_COLUMNS",
    "CONTROL_ROLE_PREFIXES",
    "GLUCOCORTICOID_VALUES",
    "OPTIONAL_COLUMNS",
    "POSITIVE_CONTROL",
    "REQUIRED_COLUMNS",
    "ROLES",
    "SAMPLE_ROLES",
    "TISSUE_KINDS",
    "TISSUE_KIND_ALIASES",
    "is_blood",
    "is_stimulated",
    "name_words",
    "read_metadata",
    "role_of",
    "screen_cells",
    "sheet_header",
]

logger = logging.getLogger(__name__)


def is_stimulated(row: Mapping[str, Any]) -> bool:
    """True for a stimulated tube: ``role == "stim"``, or a named condition in ``stimulation``.

    ``stimulation`` names the condition (``stim``, ``IL-15``, ``PMA/iono`` ...); ``role ==
    "unstim"`` always means unstimulated. The one rule every step (gating, pairing,
    scoring, clustering) uses.
    """
    role = str(row.get("role", "") or "").lower()
    if role in ("stim", "unstim"):
        return role == "stim"
    return str(row.get("stimulation", "") or "").lower() not in ("", "unstim", "nan", "none")


REQUIRED_COLUMNS = ("file", "sample_id")
OPTIONAL_COLUMNS = ("donor", "tissue", "timepoint", "stimulation", "role", "species", "batch")
ROLES = ("sample", "unstim", "stim", "positive_control", "unstained", "fmo:<MARKER>",
         "single_stain:<MARKER>")  # fmt: skip
_SIMPLE_ROLES = {"sample", "unstim", "stim", "positive_control", "unstained"}
#: roles of the sample tubes (not controls); ``""`` (no role given) is a sample
SAMPLE_ROLES = ("", "sample", "unstim", "stim")
#: the role of the batch's positive-control tube: analysed like a sample, but no sample
POSITIVE_CONTROL = "positive_control"
#: how the roles of control tubes begin: FMO, single stain, unstained, positive control
CONTROL_ROLE_PREFIXES = ("fmo:", "single_stain:", "unstained", POSITIVE_CONTROL)
_STIMULATION = ("unstim", "stim", "")
#: optional context columns, validated when the sheet has them (never added when absent)
CONTEXT_COLUMNS = ("tissue_kind", "glucocorticoid", "treatment")
#: nkflow's column names by their letters alone (``timepoint`` for ``Time point``)
_COLUMN_BY_LETTERS = {
    c.replace("_", ""): c for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS, *CONTEXT_COLUMNS)
}
TISSUE_KINDS = ("blood", "normal tissue", "peri-tumour", "tumour")
TISSUE_KIND_ALIASES = {
    "blood": "blood", "pbmc": "blood", "peripheral blood": "blood",
    "normal": "normal tissue", "normal tissue": "normal tissue", "healthy tissue": "normal tissue",
    "peri-tumour": "peri-tumour", "peri-tumor": "peri-tumour", "peritumour": "peri-tumour",
    "peritumor": "peri-tumour", "peri tumour": "peri-tumour", "peri tumor": "peri-tumour",
    "tumour": "tumour", "tumor": "tumour",
}  # fmt: skip
GLUCOCORTICOID_VALUES = ("yes", "no", "unknown")
#: headers that analysts' sheets use for nkflow's columns (after :func:`sheet_header`): a
#: missing required column's error names the one to rename, and
#: :func:`unread_columns_summary` names those that hold what an empty nkflow column would
_BLOOD_NAMES = {"pb", "pbmc", "cbmc", "peripheral blood mononuclear cells", "buffy coat"}


def name_words(value: object) -> list[str]:
    """The words of a sheet value, lower-cased; spaces, ``_`` and ``-`` separate them."""
    return [w for w in re.split(r"[\s_\-]+", str(value).casefold()) if w]


def sheet_header(name: object) -> str:
    """A sheet's column header as nkflow reads it: lower-cased, spaces, ``.`` and ``-`` as ``_``.

    ``Sample ID``, ``sample-id`` and R's ``Sample.ID`` all read as ``sample_id``; a header
    that spells one of nkflow's columns with other separators or none (``Time point``,
    ``SampleID``, ``tissue kind``) reads as that column.
    """
    header = re.sub(r"[\s.\-]+", "_", str(name).strip().lower()).strip("_")
    return _COLUMN_BY_LETTERS.get(header.replace("_", ""), header)


def is_blood(tissue: object) -> bool:
    """Whether a sheet's ``tissue`` names blood: ``blood``, ``PBMC(s)``, ``whole blood`` ...

    Case, spaces, ``_`` and ``-`` are ignored; any name whose last word is ``blood``
    (``peripheral``, ``whole``, ``cord`` blood) counts, and so do PB, PBMC, CBMC, buffy
    coat and peripheral blood mononuclear cells (plurals too). The one rule for the
    template choice and the scoring context.
    """
    words = name_words(tissue)
    if not words:
        return False
    text = " ".join(words)
    plural = text.endswith("s") and text[:-1] in _BLOOD_NAMES - {"pb"}  # PBMCs, not PBS
    return words[-1] == "blood" or text in _BLOOD_NAMES or plural


# a condition named like a variant of "stim"/"unstim" names no stimulus: refused
_STIM_VARIANT = re.compile(r"^(?:un)?stim[a-z]*$")
#: sheet words for the two generic conditions (compared as :func:`name_words`): a tube in
#: medium alone is the unstimulated baseline, not a condition called "medium"
STIMULATION_WORDS = {
    "unstim": ("unstimulated", "non stimulated", "nonstimulated", "non stim", "nonstim",
               "no stim", "nostim", "not stimulated", "none", "medium", "media",
               "medium only", "media only", "medium alone", "vehicle", "resting", "rest"),
    "stim": ("stimulated", "stimulation"),
}  # fmt: skip
_STIM_BY_WORDS = {w: k for k, words in STIMULATION_WORDS.items() for w in words}


def _generic_condition(value: str) -> str | None:
    """``unstim`` / ``stim`` for another spelling of them (:data:`STIMULATION_WORDS`)."""
    return _STIM_BY_WORDS.get(" ".join(name_words(value)))


_SPECIES = ("human", "mouse", "")
#: other ways sheets name the two species
SPECIES_WORDS = {
    "human": ("humans", "homo sapiens", "h sapiens", "h. sapiens"),
    "mouse": ("mice", "murine", "mus musculus", "m musculus", "m. musculus"),
}
_SPECIES_BY_WORDS = {w: k for k, words in SPECIES_WORDS.items() for w in words}


def role_of(value: object) -> str | None:
    """The role a sheet value names, normalised, or None when it names none.

    ``"FMO:CD69"`` -> ``"fmo:CD69"``, ``"Unstimulated"`` -> ``"unstim"``, ``""`` ->
    ``"sample"``; ``"FMO CD69"`` (not nkflow's spelling) -> None.
    """
    problems: list[str] = []
    role = _check_role(str(value).strip(), "", problems)
    return None if problems else role


def _check_role(role: str, where: str, problems: list[str]) -> str:
    """Validate and normalise one role value; return the normalised role."""
    if role == "":
        return "sample"
    low = role.lower()
    if low in _SIMPLE_ROLES:
        return low
    if generic := _generic_condition(role):  # Unstimulated, Stimulated
        return generic
    prefix, sep, marker = role.partition(":")
    if sep and prefix.strip().lower() in ("fmo", "single_stain"):
        marker = marker.strip()
        kind = prefix.strip().lower()
        if marker in CANONICAL_MARKERS:
            return f"{kind}:{marker}"
        suggestion = canonical_marker(marker) if marker else ""
        hint = (
            f" (did you mean {kind}:{suggestion}?)"
            if suggestion in CANONICAL_MARKERS
            else f"; canonical markers: {', '.join(sorted(CANONICAL_MARKERS))}"
        )
        problems.append(f"{where}: role {role!r} names a non-canonical marker {marker!r}{hint}")
        return role
    guess = _role_guess(role)
    hint = f" (did you mean {guess}?)" if guess else ""
    problems.append(f"{where}: unknown role {role!r}{hint}; valid: {', '.join(ROLES)}")
    return role


def _role_guess(role: str) -> str:
    """The role a sheet likely meant (``FMO CD69`` -> ``fmo:CD69``), or ``""``."""
    words = name_words(role)
    kinds = {"fmo": "fmo", "ss": "single_stain", "single stain": "single_stain",
             "singlestain": "single_stain", "comp": "single_stain"}  # fmt: skip
    for n in (2, 1):
        kind = kinds.get(" ".join(words[:n]))
        if kind and len(words) > n:
            marker = canonical_marker(" ".join(words[n:]))
            if marker in CANONICAL_MARKERS:
                return f"{kind}:{marker}"
    joined = " ".join(words)
    if joined in ("pc", "pos ctrl", "positive ctrl", "positive control", "pos control"):
        return "positive_control"
    return ""


def _check_stimulation(row: pd.Series, where: str, problems: list[str]) -> str:
    """Validate one ``stimulation`` value against its role; return it normalised.

    ``unstim`` / ``stim`` / ``""`` are lower-cased, and their other spellings
    (:data:`STIMULATION_WORDS`: ``Unstimulated``, ``medium``, ``none`` ...) read as them; any
    other value names a stimulation condition and is kept as written (``IL-15``), unless it
    is a variant of ``stim`` that names no stimulus (``stimmed``) or contradicts the role.
    """
    value = str(row["stimulation"])
    low = _generic_condition(value) or value.lower()
    if low in _STIMULATION:
        value = low
    elif _STIM_VARIANT.match(low):
        problems.append(
            f"{where}: stimulation {row['stimulation']!r} invalid; valid: 'unstim', 'stim', '' "
            "or the name of a stimulation condition (e.g. IL-15, IL-2, PMA/iono, dexamethasone)"
        )
        return value
    role = str(row["role"]).strip().lower()
    if role == "unstim" and value not in ("unstim", ""):
        problems.append(
            f"{where}: role 'unstim' with stimulation {value!r}: an unstimulated tube names no "
            "condition (use stimulation 'unstim')"
        )
    elif role == "stim" and value == "unstim":
        problems.append(f"{where}: role 'stim' with stimulation 'unstim' contradict each other")
    return value


def _check_context(table: pd.DataFrame, problems: list[str]) -> None:
    """Validate and normalise the optional context columns that the sheet has."""
    for i, row in table.iterrows():
        where = f"row {i}" + (f" (sample_id {row['sample_id']!r})" if row.get("sample_id") else "")
        if "tissue_kind" in table.columns and row["tissue_kind"]:
            text = " ".join(str(row["tissue_kind"]).lower().replace("_", " ").split())
            kind = TISSUE_KIND_ALIASES.get(text)
            if kind is None:
                problems.append(
                    f"{where}: tissue_kind {row['tissue_kind']!r} invalid; valid: "
                    + ", ".join(repr(k) for k in TISSUE_KINDS)
                    + " or empty"
                )
            else:
                table.at[i, "tissue_kind"] = kind
        if "glucocorticoid" in table.columns and row["glucocorticoid"]:
            value = str(row["glucocorticoid"]).lower()
            if value not in GLUCOCORTICOID_VALUES:
                problems.append(
                    f"{where}: glucocorticoid {row['glucocorticoid']!r} invalid; valid: "
                    "'yes', 'no', 'unknown' or empty"
                )
            else:
                table.at[i, "glucocorticoid"] = value


#: the leading zeros of a number (not of its decimals): ``034`` is ``34``, ``D07`` is ``D7``
_LEADING_ZEROS = re.compile(r"(?<![0-9.,])0+(?=[0-9])")


def _spelling_key(value: str) -> str:
    """``value`` without case, spaces, punctuation and leading zeros (``P-034`` -> ``p34``)."""
    return re.sub(r"[^0-9a-z]+", "", _LEADING_ZEROS.sub("", value.casefold())) or value


def _differences(spelt: Mapping[str, object]) -> str:
    """What spellings of one value differ in; leading zeros named with their usual cause."""
    plain = {re.sub(r"[^0-9a-z]+", "", v.casefold()) for v in spelt}
    if len(plain) == 1:
        return "case, spaces or punctuation"
    return (
        "leading zeros, case, spaces or punctuation (a spreadsheet drops the leading zeros "
        "of numbers: format the column as text)"
    )


def _check_spellings(table: pd.DataFrame, problems: list[str]) -> None:
    """Refuse values of a grouping column that differ only in case, spaces, punctuation or zeros.

    Pairing, FMO controls, batch pools and summaries match ``donor``, ``tissue``,
    ``timepoint``, ``batch`` and ``stimulation`` exactly, so ``Liver`` and ``liver`` would
    be two tissues, each without the other's controls, and ``IL-15`` and ``IL15`` two
    conditions; a spreadsheet that read ``034`` as a number left ``34`` beside it.
    """
    for col in ("donor", "tissue", "timepoint", "batch", "stimulation"):
        forms: dict[str, dict[str, list[int]]] = {}
        for i, value in table[col].items():
            if value:
                key = _spelling_key(str(value))
                forms.setdefault(key, {}).setdefault(str(value), []).append(int(str(i)))
        for spelt in forms.values():
            if len(spelt) > 1:
                listed = " and ".join(
                    f"'{escape_text(v)}' (row{'s' if len(r) > 1 else ''} "
                    f"{', '.join(map(str, r[:5]))}{' ...' if len(r) > 5 else ''})"
                    for v, r in spelt.items()
                )
                problems.append(
                    f"column '{col}': {listed} differ only in {_differences(spelt)}, "
                    "and nkflow matches them exactly (pairing, FMO controls, summaries): "
                    "write one spelling"
                )


def _sheet_line(index: object) -> str:
    return f"row {int(str(index)) + 2}"


def screen_cells(
    table: pd.DataFrame,
    source: str | Path,
    problems: list[str],
    *,
    neutralise_formulas: bool = False,
    locate: Callable[[object], str] | None = None,
) -> pd.DataFrame:
    """Refuse (or neutralise) sheet values a spreadsheet would run as formulas.

    Every text cell of every column except ``path`` (nkflow's own absolute path) and every
    column name is checked with :func:`nkflow.io.text_safety.formula_risk`.

    Parameters
    ----------
    table
        The sheet; changed in place when neutralising.
    source
        The sheet or folder, for the warning.
    problems
        Each refused cell is appended as ``"<where>, column '<col>': value '<v>' <reason>"``
        (the value escaped, so it prints on one line).
    neutralise_formulas
        Prefix ``'`` to each risky value instead (OWASP), with one :class:`NkflowWarning`
        listing them.
    locate
        Row index label -> location text (default: ``row <sheet line>``, header = line 1).

    Returns
    -------
    pandas.DataFrame
        ``table``.
    """
    locate = locate or _sheet_line
    found: list[str] = []
    for col in table.columns:
        reason = formula_risk(str(col))
        if reason:
            problems.append(f"header: column name '{escape_text(col)}' {reason}")
    for col in table.columns:
        if col == "path":
            continue
        for i, value in table[col].items():
            if not isinstance(value, str):
                continue
            reason = formula_risk(value)
            if not reason:
                continue
            text = f"{locate(i)}, column '{escape_text(col)}': value '{escape_text(value)}'"
            if neutralise_formulas:
                table.at[i, col] = neutralise_formula(value)
                found.append(text)
            else:
                problems.append(f"{text} {reason}")
    if found:
        warnings.warn(
            f"{source}: {len(found)} value(s) a spreadsheet would run as formulas or that hold "
            f'control characters were prefixed with "\'": ' + "; ".join(found),
            NkflowWarning,
            stacklevel=3,
        )
    return table


def read_metadata(path: str | Path, *, neutralise_formulas: bool = False) -> pd.DataFrame:
    """Read and validate a metadata sheet (CSV).

    Parameters
    ----------
    path
        The sheet. UTF-8 (with or without BOM), UTF-16 with BOM and Windows-1252/Latin-1
        are accepted.
    neutralise_formulas
        Values that start with ``=``, ``+``, ``-``, ``@`` (plain numbers and a lone ``-``
        excepted) or hold control characters are refused by default; with True they are
        prefixed with ``'`` (so spreadsheets show them as text) and a
        :class:`~nkflow.exceptions.NkflowWarning` lists them.

    Returns
    -------
    pandas.DataFrame
        One row per file, all columns as strings (optional ones default to ``""``, ``role``
        to ``"sample"``), plus ``path``: the absolute path of each file. ``attrs["source"]``
        is the sheet path.

    Raises
    ------
    MetadataError
        Listing every problem found (all of them, not just the first).
    """
    path = Path(path)
    problems: list[str] = []
    try:
        raw = path.read_bytes()
    except IsADirectoryError:
        raise MetadataError(path, ["is a directory; use metadata_from_folder"]) from None
    except FileNotFoundError:
        raise MetadataError(path, ["does not exist (no such file or folder)"]) from None
    except OSError as exc:
        raise MetadataError(path, [f"cannot read the sheet: {exc.strerror or exc}"]) from None
    text = decode_sheet(raw, problems)
    table = None if text is None else sheet_table(text, problems, sheet_header)
    if table is None:
        raise MetadataError(path, problems)
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        renames = column_renames(table, missing)
        problems.append(
            f"missing required column(s) {missing}; found {list(table.columns)}; "
            f"required: {list(REQUIRED_COLUMNS)}, optional: {list(OPTIONAL_COLUMNS)}"
            + (f"; rename {', '.join(renames)}" if renames else "")
        )
        raise MetadataError(path, problems)
    table = table.map(lambda v: v.strip() if isinstance(v, str) else v)
    table = table[~(table == "").all(axis=1)]  # the index: each row's line in the file
    if table.empty:
        problems.append("the sheet has no rows")
    for col in OPTIONAL_COLUMNS:
        if col not in table.columns:
            table[col] = ""
    base = path.parent
    paths: list[str] = []
    for i, row in table.iterrows():
        where = f"row {i}"  # its line in the file
        file_value = row["file"]
        sid = row["sample_id"]
        if sid:
            where += f" (sample_id {sid!r})"
        if not sid:
            problems.append(f"{where}: empty sample_id")
        if not file_value:
            problems.append(f"{where}: empty file")
            paths.append("")
        else:
            full = sheet_path(file_value, base)
            paths.append(os.path.abspath(full))  # a symlink keeps its own name and folder
            if not full.exists():
                problems.append(f"{where}: file {file_value!r} not found (looked at {full})"
                                + missing_file_advice(file_value, base))  # fmt: skip
            elif full.is_dir():
                problems.append(f"{where}: file {file_value!r} is a directory")
        table.at[i, "stimulation"] = _check_stimulation(row, where, problems)
        species = _SPECIES_BY_WORDS.get(row["species"].strip().lower(), row["species"].lower())
        if species not in _SPECIES:
            problems.append(
                f"{where}: species {row['species']!r} invalid; valid: 'human', 'mouse', ''"
            )
        else:
            table.at[i, "species"] = species
        table.at[i, "role"] = _check_role(row["role"], where, problems)
    _check_context(table, problems)
    _check_spellings(table, problems)
    screen_cells(
        table, path, problems, neutralise_formulas=neutralise_formulas, locate=lambda i: f"row {i}"
    )
    ids = table["sample_id"]
    for sid in sorted(set(ids[ids.duplicated() & (ids != "")])):
        rows = [int(i) for i in table.index[ids == sid]]
        problems.append(f"duplicate sample_id {sid!r} on rows {rows}")
    resolved = pd.Series(paths, index=table.index, dtype=str)
    for p in sorted(set(resolved[resolved.duplicated() & (resolved != "")])):
        rows = [int(i) for i in resolved.index[resolved == p]]
        problems.append(f"file {p!r} listed on several rows {rows}")
    if problems:
        raise MetadataError(path, problems)
    table["path"] = paths
    table = table.reset_index(drop=True)
    table.attrs["source"] = str(path)
    return table
