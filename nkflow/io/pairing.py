"""How the tubes of a metadata sheet relate: stimulated to unstimulated tubes, tubes to FMOs.

A stimulated tube is scored against the unstimulated tube(s) of the same :data:`PAIR_KEY`
(donor, tissue, timepoint, batch); an FMO threshold applies to the tubes of its tissue and
batch. Where the sheet cannot tell tubes apart (no donor, no tissue), these functions say
so, so that no tube is compared with, or cut by, another donor's or tissue's tube.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from .folder import folder_sheet_hint, unlisted_files_summary
from .metadata import SAMPLE_ROLES, is_stimulated  # SAMPLE_ROLES re-exported: tl.score
from .sheet_notes import (
    ambiguous_dates_summary,
    identical_files_summary,
    unnamed_controls_summary,
    unread_columns_summary,
)
from .text_safety import escape_text

__all__ = [
    "PAIR_KEY",
    "SAMPLE_ROLES",
    "ambiguous_pair_keys",
    "batch_notes",
    "control_origins",
    "controls_summary",
    "fmo_replicate_key",
    "fmo_replicates",
    "is_resting",
    "nearest_controls_first",
    "pairing_summary",
]

#: the columns that pair a stimulated tube with its unstimulated tube(s)
PAIR_KEY = ("donor", "tissue", "timepoint", "batch")


def is_resting(row: Mapping[str, Any]) -> bool:
    """An unstimulated sample tube, the baseline a stimulated tube pairs with.

    Not stimulated (:func:`~nkflow.io.metadata.is_stimulated`) and not the positive
    control; the one rule for pairing in ``nkflow run``, ``nkflow gate`` and ``gate_batch``.
    """
    return not is_stimulated(row) and str(row.get("role", "") or "") != "positive_control"


def _text(frame: pd.DataFrame, column: str) -> pd.Series:
    """A column as strings, ``""`` for missing values and for a missing column."""
    if column not in frame.columns:
        return pd.Series("", index=frame.index)
    return frame[column].fillna("").astype(str)


def ambiguous_pair_keys(unstim: pd.DataFrame) -> set[tuple[str, ...]]:
    """Pair keys that several of the unstimulated tubes ``unstim`` share, with no donor.

    Unstimulated tubes of one donor, tissue, timepoint and batch are replicates, pooled as
    one baseline. Without a donor (a folder run without a sheet, or an empty ``donor``
    cell), tubes that agree on tissue, timepoint and batch may come from different
    donors, so none of them can be a stimulated tube's partner, nor stand for a donor's
    phenotype. The keys returned (``PAIR_KEY`` values, as strings) have an empty donor
    and more than one ``sample_id`` among ``unstim``; a missing column counts as empty.
    """
    if unstim.empty or "sample_id" not in unstim.columns:
        return set()
    keys = [_text(unstim, c) for c in PAIR_KEY]
    tubes = unstim["sample_id"].astype(str).groupby(keys, sort=False).nunique()
    return {tuple(k) for k, n in tubes.items() if n > 1 and k[0] == ""}


def pairing_summary(meta: pd.DataFrame, failing: Collection[str] = ()) -> str:
    """One line on how the sheet's stimulated tubes pair with unstimulated ones.

    Counts the stimulated sample tubes (``role`` sample, unstim or stim) with their
    unstimulated tube (same :data:`PAIR_KEY`; how many with replicate tubes, pooled), without
    a sure one (:func:`ambiguous_pair_keys`), with only tubes that fail and without any;
    ``""`` when there is none.

    Parameters
    ----------
    meta
        The sheet (``sample_id``, ``file``, ``role`` and the :data:`PAIR_KEY` columns).
    failing
        ``sample_id`` of the tubes that cannot be analysed (unreadable, another technology,
        no NK anchor ...): a stimulated tube whose unstimulated tubes all fail has no
        baseline, and the line names them; a stimulated tube that fails itself is named
        as failing (not counted as one without an unstimulated tube).

    Returns
    -------
    str
    """
    tubes = meta[_text(meta, "role").str.lower().isin(SAMPLE_ROLES)]
    if tubes.empty:
        return ""
    stimulated = tubes.apply(is_stimulated, axis=1).to_numpy(dtype=bool)
    keys = list(zip(*(_text(tubes, c) for c in PAIR_KEY), strict=True))
    per_key = Counter(k for k, s in zip(keys, stimulated, strict=True) if not s)
    ambiguous = ambiguous_pair_keys(tubes[~stimulated])
    ids, files = _text(tubes, "sample_id"), _text(tubes, "file").map(lambda f: Path(f).name)
    failing = {str(sid) for sid in failing}
    # a stimulated tube that fails itself is named as failing, not counted as unpaired
    fails = ids.isin(failing).to_numpy(dtype=bool)
    own_fail = [escape_text(files[i] or ids[i]) for i in tubes.index[stimulated & fails]]
    stim_keys = [k for k, s, f in zip(keys, stimulated, fails, strict=True) if s and not f]
    if not stim_keys and not own_fail:
        return ""
    failed: dict[tuple[str, ...], list[str]] = {}  # key -> its unstimulated tubes that fail
    for i, k, s in zip(tubes.index, keys, stimulated, strict=True):
        if not s and ids[i] in failing:
            failed.setdefault(k, []).append(escape_text(files[i] or ids[i]))
    # every listed unstimulated tube of the key fails: listed, but no baseline
    lost = {k for k, names in failed.items() if len(names) == per_key[k] and k not in ambiguous}
    unsure = sum(k in ambiguous for k in stim_keys)
    alone = sum(k not in per_key for k in stim_keys)
    broken = [k for k in stim_keys if k in lost]
    pooled = sum(per_key[k] > 1 and k not in ambiguous and k not in lost for k in stim_keys)
    parts = [f"{len(stim_keys) - unsure - alone - len(broken)} with their unstimulated tube"]
    if pooled:
        parts[0] += (
            f" ({pooled} of them with several, pooled as replicates of one donor, tissue, "
            "timepoint and batch: check the timepoint column if they are not)"
        )
    if broken:
        names = ", ".join(dict.fromkeys(n for k in broken for n in failed[k]))
        parts.append(
            f"{len(broken)} whose unstimulated tube in the sheet fails ({names}; why is said "
            "with each file): not scored"
        )
    if unsure:
        parts.append(
            f"{unsure} without a sure one (several unstimulated tubes share their tissue, "
            "timepoint and batch and no donor tells them apart: not scored; name each "
            "tube's donor in a metadata sheet)"
        )
    if alone:
        parts.append(f"{alone} without any (no unstimulated tube of the same donor, tissue, "
                     "timepoint and batch: not scored)")  # fmt: skip
    if own_fail:
        parts.append(f"{len(own_fail)} that fail(s) to be read or analysed "
                     f"({', '.join(own_fail)}; why is said with each file)")  # fmt: skip
    n = len(stim_keys) + len(own_fail)
    return f"pairing: {n} stimulated tube(s), " + "; ".join(parts)


def nearest_controls_first(
    thresholds: list[dict[str, Any]],
    tube: Mapping[str, Any],
    origin_of_file: Mapping[str, Mapping[str, str]],
) -> list[dict[str, Any]]:
    """``thresholds`` with those set on the tube's nearest FMO tubes first, the rest after.

    Of several FMO thresholds of one gate and marker in a tissue and batch the gating
    engine takes the first. Nearest is, in turn: an FMO of the tube's own condition
    (``stimulation``; else one stimulated, or not, like the tube: activated cells carry
    more background, so a stimulated tube cut at a resting FMO would read too many
    AREG+ cells), of its own donor (human tissue differs between donors in
    autofluorescence and spread), of its own timepoint (each visit stained and acquired
    with its own FMO). Within a rank the sheet's order holds; thresholds not set on an
    FMO tube (batch pools, borrowed cut-offs) come last.

    Parameters
    ----------
    thresholds
        Threshold records; an FMO's ``control_file`` is the sheet's ``file`` value.
    tube
        The tube's sheet row (``donor``, ``timepoint``, ``stimulation``, ``role``); ``""``
        matches nothing.
    origin_of_file
        The sheet's ``file`` -> its row's ``donor``, ``timepoint``, ``stimulation`` and
        ``role`` (:func:`control_origins`).
    """
    donor, timepoint = (str(tube.get(c, "") or "") for c in ("donor", "timepoint"))
    condition = str(tube.get("stimulation", "") or "").lower()
    stimulated = is_stimulated(tube)

    def rank(threshold: dict[str, Any]) -> tuple[int, int, int]:
        origin = origin_of_file.get(str(threshold.get("control_file", "") or ""))
        if origin is None:
            return (3, 1, 1)
        same_state = is_stimulated(origin) == stimulated
        same_condition = same_state and (
            not stimulated or str(origin.get("stimulation", "")).lower() == condition
        )
        return (
            0 if same_condition else 1 if same_state else 2,
            0 if donor and origin.get("donor") == donor else 1,
            0 if timepoint and origin.get("timepoint") == timepoint else 1,
        )

    return sorted(thresholds, key=rank)  # stable: the sheet's order within a rank


def control_origins(meta: pd.DataFrame) -> dict[str, dict[str, str]]:
    """The sheet's ``file`` -> its ``donor``, ``timepoint``, ``stimulation`` and ``role``.

    What :func:`nearest_controls_first` compares an FMO tube with a sample tube on.
    """
    columns = ("donor", "timepoint", "stimulation", "role")
    values = zip(*(_text(meta, c) for c in columns), strict=True)
    return {
        file: dict(zip(columns, row, strict=True))
        for file, row in zip(_text(meta, "file"), values, strict=True)
    }


def fmo_replicate_key(row: Mapping[str, Any]) -> tuple[str, ...]:
    """What makes FMO tubes replicates of one control.

    The marker, tissue, batch, donor, timepoint and condition (``""`` for a resting tube;
    the ``stimulation`` name, lower-cased, for a stimulated one). Replicates are pooled
    into one threshold (:func:`nkflow.gating.fmo_pool.pool_fmo_replicates`).
    """
    role = str(row.get("role", "") or "")
    marker = role.split(":", 1)[1] if role.lower().startswith("fmo:") else ""
    condition = str(row.get("stimulation", "") or "").lower() if is_stimulated(row) else ""
    where = (str(row.get(c, "") or "") for c in ("tissue", "batch", "donor", "timepoint"))
    return (marker, *where, condition)


def fmo_replicates(meta: pd.DataFrame, *, named: bool = True) -> dict[str, tuple[str, ...]]:
    """The sheet's FMO ``file`` -> :func:`fmo_replicate_key`, for tubes with replicates.

    Only tubes whose sheet rows name their tissue and donor are replicates (pooled).
    With ``named=False`` the tubes that share a key without naming both are returned
    instead: they may be different donors' or tissues' FMOs (a folder without a sheet),
    so the first in the sheet is used and the others are named.
    """
    rows = meta[_text(meta, "role").str.lower().str.startswith("fmo:")]
    keys = {str(r["file"]): fmo_replicate_key(r) for _, r in rows.iterrows()}
    counts = Counter(keys.values())
    return {f: k for f, k in keys.items() if counts[k] > 1 and bool(k[1] and k[3]) == named}


def controls_summary(meta: pd.DataFrame) -> str:
    """One line on FMO tubes that do not match the sample tubes one to one, or ``""``.

    An FMO threshold applies to the tubes of its exact tissue and batch (the nearest
    first: own condition, donor and timepoint, :func:`nearest_controls_first`). Named:
    replicate FMO tubes of one tissue and donor (:func:`fmo_replicates`: pooled into one
    cut-off), FMO tubes alike without a tissue or donor (the first cuts every tube there:
    without tissues in the sheet a blood FMO would cut liver tubes), tissues and batches
    whose tubes lack an FMO the batch has elsewhere (they get the fallback rule), and FMO
    tubes whose tissue and batch hold no sample tube (``PBMC`` beside ``blood``).
    """
    role, tissue, batch = (_text(meta, c) for c in ("role", "tissue", "batch"))
    file = _text(meta, "file").map(lambda f: Path(f).name)
    groups: dict[tuple[str, str, str], list[str]] = {}  # (marker, tissue, batch): files
    for i in meta.index[role.str.lower().str.startswith("fmo:")]:
        groups.setdefault((role[i].split(":", 1)[1], tissue[i], batch[i]), []).append(file[i])
    replicated: dict[tuple[str, ...], list[str]] = {}
    for sheet_file, key in fmo_replicates(meta).items():
        replicated.setdefault(key, []).append(Path(sheet_file).name)
    unsure: dict[tuple[str, ...], list[str]] = {}
    for sheet_file, key in fmo_replicates(meta, named=False).items():
        unsure.setdefault(key, []).append(Path(sheet_file).name)
    samples = role.str.lower().isin(SAMPLE_ROLES)
    sampled = set(zip(tissue[samples], batch[samples], strict=True))

    def where(t: str, b: str) -> str:
        return f"tissue '{escape_text(t)}', batch '{escape_text(b)}'"

    parts = []
    shared = [
        f"{key[0]} ({where(key[1], key[2])}): " + ", ".join(escape_text(f) for f in files)
        for key, files in replicated.items()
    ]
    if shared:
        parts.append("replicate FMO tubes (one marker, tissue, batch, donor, timepoint and "
                     "condition), pooled into one cut-off: " + "; ".join(shared))  # fmt: skip
    alike = [
        f"{key[0]} ({where(key[1], key[2])}): " + ", ".join(escape_text(f) for f in files)
        for key, files in unsure.items()
    ]
    if alike:
        parts.append("several FMO tubes of one marker that no tissue or donor tells apart, "
                     "and the first in the sheet cuts every tube there: "
                     + "; ".join(alike))  # fmt: skip
    markers = sorted({m for m, _, _ in groups})
    lacking = [
        f"{', '.join(missing)} ({where(t, b)})"
        for t, b in sorted(sampled)
        if (missing := [m for m in markers if (m, t, b) not in groups])
    ]
    if lacking:
        parts.append("no FMO tube, so the fallback rule, for " + "; ".join(lacking))
    unused = [escape_text(f) for (m, t, b), files in groups.items() if (t, b) not in sampled
              for f in files]  # fmt: skip
    if unused:
        parts.append("FMO tubes whose tissue and batch no sample tube has: " + ", ".join(unused))
    if not parts:
        return ""
    return (
        "controls: " + "; ".join(parts) + " (an FMO serves the tubes of exactly its tissue "
        "and batch: name them alike in the metadata sheet)"
    )


def batch_notes(meta: pd.DataFrame) -> list[str]:
    """What a batch's sheet leaves unsure, one line each, before any tube runs.

    Sheet columns under other names and files named like controls in a sheet without
    roles (:mod:`nkflow.io.sheet_notes`), a sheet a folder run did not read and FCS files
    a sheet leaves out (:mod:`nkflow.io.folder`), files with the same content, timepoints
    written as dates in an order the sheet cannot tell, how the
    stimulated tubes pair
    (:func:`pairing_summary`) and FMO tubes that do not match the samples one to one
    (:func:`controls_summary`).
    ``nkflow check`` and ``run`` print them with the plan; the report shows them.
    """
    notes = (unread_columns_summary, unnamed_controls_summary, folder_sheet_hint,
             unlisted_files_summary, identical_files_summary, ambiguous_dates_summary,
             pairing_summary, controls_summary)  # fmt: skip
    return [line for line in (note(meta) for note in notes) if line]
