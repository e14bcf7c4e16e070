"""One value per donor: a donor's tubes are repeated measurements, not more donors.

The rule every per-donor summary follows (the report's frequency plots and tables, its
composition and responses tables):

- the phenotype of a donor, tissue and timepoint is the unstimulated tube's, one per batch,
  controls left out (:func:`phenotype_rows`);
- a donor measured in several batches (a bridge donor re-run in each) counts once, its
  value the mean of its batches, each batch weighing the same whatever its event count
  (:func:`donor_means`, :func:`donor_rows`);
- a tube whose sheet row names no donor is a donor of its own (:func:`donor_key`).

:func:`phenotype_rows` and :func:`donor_rows` are public (``nkflow.tl``): they give the
per-donor table the report's medians stand on, so a user's own statistics over the
``populations`` table count a bridge donor once, as the report does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..io.metadata import CONTROL_ROLE_PREFIXES, is_stimulated
from ..io.pairing import PAIR_KEY, ambiguous_pair_keys

__all__ = ["donor_key", "donor_means", "donor_of", "donor_rows", "phenotype_rows"]

#: what a tube that names no donor stands in for one with: no sheet's donor starts with it
#: (the ASCII unit separator: not NUL, which pandas' string hashing reads as an end)
_OWN = "\x1f"


def donor_key(donor: pd.Series, tube: pd.Series) -> pd.Series:
    """Each row's donor, or a key of its own tube where it names none.

    Parameters
    ----------
    donor
        Donor per row (``""`` or missing where the sheet names none).
    tube
        The row's tube (``sample_id``), aligned with ``donor``.

    Returns
    -------
    pandas.Series
        The donor, else ``tube`` behind a character no sheet holds (so a tube id never
        equals a donor's name).
    """
    named = donor.fillna("").astype(str)
    return named.where(named != "", _OWN + tube.astype(str))


def donor_means(
    values: pd.Series | pd.DataFrame,
    keys: pd.Series | Sequence[pd.Series],
    batch: pd.Series | None = None,
) -> pd.Series | pd.DataFrame:
    """The mean of each donor's batches, each batch weighing the same.

    Parameters
    ----------
    values
        Numeric values, one row per tube (NaN where not measured: left out of the mean).
    keys
        The donor per row (:func:`donor_key`), or the donor first and then the other keys
        a value belongs to (tissue, timepoint, population), aligned with ``values``.
    batch
        The batch per row: tubes of one donor in one batch are averaged first, so a batch
        with replicate tubes weighs no more than another. ``None`` when each row is a
        batch of its own.

    Returns
    -------
    pandas.Series or pandas.DataFrame
        One row per donor (and key), in the order of their first rows.
    """
    keys = [keys] if isinstance(keys, pd.Series) else list(keys)
    if batch is None:
        return values.groupby(keys, sort=False, dropna=False).mean()
    per_batch = values.groupby([*keys, batch], sort=False, dropna=False).mean()
    return per_batch.groupby(level=list(range(len(keys))), sort=False, dropna=False).mean()


def _phenotype_tubes(metadata: pd.DataFrame | None) -> pd.DataFrame | None:
    """The sheet's phenotype tubes (see :func:`phenotype_rows`) with their donor in ``_unit``.

    ``None`` without a sheet (or without ``role``/``stimulation`` columns). ``_unit`` is the
    donor, or the tube's own id (behind a character no sheet holds) where no donor tells
    the tube's donor: such a tube is a donor of its own.
    """
    if (
        metadata is None
        or metadata.empty
        or not {"sample_id", "role", "stimulation"} <= set(metadata.columns)
    ):
        return None
    meta = metadata.drop_duplicates("sample_id").copy()
    role = meta["role"].fillna("").astype(str).str.lower()
    sample = ~role.str.startswith(CONTROL_ROLE_PREFIXES)
    stimulated = meta.apply(is_stimulated, axis=1).astype(bool)
    meta = meta[sample].assign(_stim=stimulated[sample].to_numpy())
    keys = [c for c in PAIR_KEY if c in meta.columns]
    meta["_order"] = range(len(meta))
    if keys:
        meta[keys] = meta[keys].fillna("").astype(str)
        meta = _own_units_without_donor(meta, keys)
        chosen = meta.sort_values(["_stim", "_order"], kind="mergesort").drop_duplicates(keys)
    else:
        chosen = meta[~meta["_stim"]]
    chosen = chosen.sort_values("_order", kind="mergesort")
    donor = chosen["donor"] if "donor" in chosen.columns else pd.Series("", index=chosen.index)
    return chosen.assign(_unit=donor_key(donor, chosen["sample_id"]))


def phenotype_rows(populations: pd.DataFrame, metadata: pd.DataFrame | None) -> pd.DataFrame:
    """Rows of one tube per donor, tissue, timepoint and batch; control tubes left out.

    The unstimulated tube is used (the first in the sheet when there are replicates); a key
    with no unstimulated tube keeps its first stimulated tube. Unstimulated tubes that share
    tissue, timepoint and batch with no donor named may be different donors: each counts
    as one. Without a sheet (or without ``role``/``stimulation`` columns) the table is
    returned unchanged. A donor measured in several batches keeps a tube of each: to count
    it once, use :func:`donor_rows`.

    Parameters
    ----------
    populations
        Long table with a ``sample_id`` column.
    metadata
        The metadata sheet.

    Returns
    -------
    pandas.DataFrame
        The kept rows of ``populations`` (index preserved).
    """
    tubes = _phenotype_tubes(metadata)
    if tubes is None:
        return populations
    keep = set(tubes["sample_id"].astype(str))
    return populations[populations["sample_id"].astype(str).isin(keep)]


def donor_of(metadata: pd.DataFrame | None) -> pd.Series:
    """``{sample_id: donor}`` of the phenotype tubes (:func:`phenotype_rows`).

    A tube whose sheet row names no donor is a donor of its own (its value is then a key
    no sheet's donor can equal). Empty without a sheet.

    Parameters
    ----------
    metadata
        The metadata sheet.

    Returns
    -------
    pandas.Series
        Donor per ``sample_id`` (index), in the sheet's order.
    """
    tubes = _phenotype_tubes(metadata)
    if tubes is None:
        return pd.Series(dtype=object)
    return pd.Series(tubes["_unit"].to_numpy(), index=tubes["sample_id"].astype(str).to_numpy())


def donor_rows(populations: pd.DataFrame, metadata: pd.DataFrame | None) -> pd.DataFrame:
    """One row per donor, tissue, timepoint and population: a donor's batches averaged.

    A donor measured in several batches (a bridge donor re-run in each) has a phenotype tube
    in each (:func:`phenotype_rows`); those are repeated measurements of one donor, not
    independent donors. Its row is the mean of its tubes' values (each batch weighs the
    same, whatever its event count), so a median over the rows is a median over donors and
    ``n`` counts donors. The row keeps the first tube's ``sample_id`` (the sheet's order)
    and other text columns; ``ci_low``/``ci_high`` (one tube's Wilson interval) are missing
    where tubes were averaged; ``low_events`` is true when any averaged tube had too few
    events; ``n_tubes`` says how many tubes the row averages. Without a sheet (or without
    ``role``/``stimulation`` columns) the table comes back unchanged, with ``n_tubes`` 1.

    Parameters
    ----------
    populations
        Long table with ``sample_id`` and ``population`` columns.
    metadata
        The metadata sheet (``donor``, ``tissue``, ``timepoint``, ``batch``).

    Returns
    -------
    pandas.DataFrame
        One row per donor unit and population, in the order of the first tubes' rows.
    """
    rows = phenotype_rows(populations, metadata)
    units = donor_of(metadata)
    if units.empty or rows.empty or "population" not in rows.columns:
        return rows.assign(n_tubes=1)
    tubes = _phenotype_tubes(metadata)
    assert tubes is not None  # units is not empty
    where = tubes.set_index(tubes["sample_id"].astype(str))
    sid = rows["sample_id"].astype(str)
    keys = [sid.map(units).rename("_unit")]
    keys += [
        sid.map(where[c].fillna("").astype(str)).rename(f"_{c}")
        for c in ("tissue", "timepoint")
        if c in where.columns
    ]
    keys.append(rows["population"].astype(str).rename("_population"))
    grouped = rows.groupby(keys, sort=False, dropna=False)
    out = grouped.head(1).copy()
    n = grouped["sample_id"].transform("size")
    out["n_tubes"] = n.loc[out.index].astype(int)
    if (out["n_tubes"] == 1).all():
        return out
    numeric = [
        c
        for c in rows.columns
        if c not in ("low_events", "ci_low", "ci_high")
        and pd.api.types.is_numeric_dtype(rows[c])
        and not pd.api.types.is_bool_dtype(rows[c])
    ]
    means = donor_means(rows[numeric], keys)  # groups in the order of their first rows
    for col in numeric:
        out[col] = means[col].set_axis(out.index)
    averaged = out["n_tubes"] > 1
    for col in ("ci_low", "ci_high"):
        if col in out.columns:
            out[col] = out[col].astype(float).mask(averaged)
    if "low_events" in out.columns:
        low = rows["low_events"].astype("boolean").fillna(False).astype(bool)
        out["low_events"] = low.groupby(keys, sort=False).transform("any").loc[out.index]
    return out


def _own_units_without_donor(meta: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Tubes that no donor tells apart: each unstimulated one is a unit of its own.

    Where several unstimulated tubes share tissue, timepoint and batch without a donor
    (:func:`~nkflow.io.pairing.ambiguous_pair_keys`) they may be different donors: each
    keeps its own row (its sample id stands in for the donor), and the stimulated tubes of
    that key are left out (their phenotype is among those unstimulated tubes).
    """
    ambiguous = ambiguous_pair_keys(meta[~meta["_stim"]])
    if not ambiguous or "donor" not in keys:
        return meta
    full = meta.reindex(columns=list(PAIR_KEY), fill_value="").astype(str).to_numpy()
    shared = np.array([tuple(k) in ambiguous for k in full], dtype=bool)
    stim = meta["_stim"].to_numpy(dtype=bool)
    own_donor = donor_key(pd.Series("", index=meta.index), meta["sample_id"])
    meta = meta.assign(donor=np.where(shared & ~stim, own_donor, meta["donor"]))
    return meta[~(shared & stim)]
