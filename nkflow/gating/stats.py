"""The populations table: counts, % of parent with a Wilson CI, % of NK, medians, flags."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .._order import float_keys
from .._threads import column_rows, thread_map
from ..exceptions import LowEventCountWarning
from ..io.fcs import sample_id
from ..io.records import nkflow_record
from ..stats import wilson_interval
from .membership import member_mask, not_set_gates
from .preconditions import require_whole_sample

__all__ = ["POPULATION_COLUMNS", "population_table"]

logger = logging.getLogger(__name__)

_MEDIAN_MAX = 200_000
_BUCKET_MIN = 20_000  # events from which a histogram bucket beats partitioning the row

POPULATION_COLUMNS = [
    "sample_id",
    "population",
    "parent",
    "count",
    "parent_count",
    "percent_of_parent",
    "ci_low",
    "ci_high",
    "percent_of_nk",
    "low_events",
]


def _columns(x: Any, cols: Sequence[int]) -> tuple[np.ndarray, bool]:
    """Marker-major copy of columns ``cols`` and whether it holds a NaN.

    The copy (markers x events) keeps the data's own float type (no upcast).
    """
    x = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
    dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    return column_rows(x, cols, dtype)


def _bucket_select(sub: np.ndarray, ranks: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Values at sorted positions ``ranks`` of each float32 row (no NaN), and where zero.

    A histogram of the top 16 bits of the values' :func:`~nkflow._order.float_keys` tells
    which bucket holds each rank, and only that bucket's values (a few per cent of the row)
    are partitioned instead of the whole row: the same order statistics. The second array
    flags rows where one of them is zero: a partition of the row may give either sign of
    zero there, and the caller's partition decides it.
    """
    top = (float_keys(sub) >> np.uint32(16)).astype(np.uint16)
    out = np.empty((sub.shape[0], len(ranks)), dtype=sub.dtype)
    for i in range(sub.shape[0]):
        counts = np.bincount(top[i], minlength=1 << 16)
        ends = np.cumsum(counts)
        buckets = np.searchsorted(ends, ranks, side="right")
        for b in np.unique(buckets):
            at = [j for j, bj in enumerate(buckets) if bj == b]
            within = [ranks[j] - int(ends[b] - counts[b]) for j in at]
            members = np.partition(sub[i][top[i] == b], within)
            out[i, at] = members[within]
    return out, (out == 0).any(axis=1)


def _partition_select(sub: np.ndarray, k: int, odd: bool) -> np.ndarray:
    """The middle value(s) of each row of ``sub`` (partitioned in place): rows x 1 or 2."""
    sub.partition(k, axis=1)
    if odd:
        return sub[:, k : k + 1]
    # one partition: the lower middle value is the largest of the k values below the k-th
    return np.column_stack([sub[:, :k].max(axis=1), sub[:, k]])


def _medians(cols: np.ndarray, idx: np.ndarray, has_nan: bool) -> np.ndarray:
    """Per-marker medians of the events ``idx``: ``np.median(X[idx], axis=0)``, faster.

    Partitioning contiguous marker rows in the stored precision selects exactly the same
    middle values as ``np.median`` on a float64 copy; the two middle values of an even
    count are averaged in float64, as ``np.median`` does. Large float32 populations take
    them from one histogram bucket per marker (:func:`_bucket_select`). Columns with NaN
    take ``np.median`` itself (NaN propagates).
    """
    sub = cols[:, idx]
    if has_nan:
        return np.median(sub.astype(np.float64), axis=1)
    k = sub.shape[1] // 2
    odd = bool(sub.shape[1] % 2)
    if sub.dtype == np.float32 and sub.shape[1] >= _BUCKET_MIN:
        picked, zero = _bucket_select(sub, (k,) if odd else (k - 1, k))
        if zero.any():
            picked[zero] = _partition_select(sub[zero], k, odd)
    else:
        picked = _partition_select(sub, k, odd)
    if odd:
        return picked[:, 0].astype(np.float64)
    return (picked[:, 0].astype(np.float64) + picked[:, 1].astype(np.float64)) / 2.0


def population_table(
    adata: Any,
    *,
    populations: Sequence[str] | None = None,
    parents: Mapping[str, str | None] | None = None,
    min_events: int = 100,
    nk_population: str = "NK",
    confidence: float = 0.95,
    warn: bool = True,
    unset: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Long-format populations table of a gated sample (docs/contracts.md).

    Parameters
    ----------
    adata
        A gated sample: bool ``obs`` columns per population.
    populations
        Populations to report (default: those recorded in ``uns["nkflow"]["gating"]``).
    parents
        Population -> parent (default: from ``uns["nkflow"]["gating"]``). A root
        population's parent count is the number of events.
    min_events
        Populations with fewer events get ``low_events = True`` and a
        :class:`LowEventCountWarning`.
    nk_population
        Denominator of ``percent_of_nk``; NaN for populations that are not subsets of it
        (and where the sample has no such column).
    confidence
        Coverage of the Wilson interval of ``percent_of_parent``.
    warn
        Issue the low-count warning.
    unset
        Population -> why its gate could not be set (too few events for its cut-off, or
        hanging on such a gate); default: ``uns["nkflow"]["gating"]["unset"]``. A gate
        whose ``obs`` column holds ``<NA>`` (:mod:`~nkflow.gating.membership`) is not set
        either. Their ``count`` and percentages, and the ``parent_count`` of the gates
        below them, are NA: not measured, rather than none found.

    Returns
    -------
    DataFrame
        One row per population: ``sample_id, population, parent, count, parent_count,
        percent_of_parent, ci_low, ci_high`` (percent), ``percent_of_nk, low_events`` and
        ``median_<marker>`` for every fluorescence marker (transformed scale; populations
        over 200,000 events use a fixed-stride subsample of 200,000).

    Raises
    ------
    ConfigError
        ``adata`` holds several samples (``obs["sample_id"]`` with more than one value).
    GatingError
        ``adata`` holds one gated population's events (every event in its NK gate, as
        ``Results.kept_events`` gives): its ancestors would count those events alone and
        read 100 % of their parents.
    """
    require_whole_sample(adata, "population_table")  # one sample, not one population's events
    g = nkflow_record(adata, "gating") or {}
    if populations is None:
        populations = [p["name"] for p in g.get("populations", [])]
    if parents is None:
        parents = {p["name"]: p.get("parent") for p in g.get("populations", [])}
    sid = sample_id(adata)
    n = adata.n_obs
    var = adata.var
    if "marker" in var.columns:
        kind = var["kind"] if "kind" in var.columns else pd.Series("fluorescence", var.index)
        fl = (var["marker"].astype(str) != "") & (kind.astype(str) == "fluorescence")
        cols = [int(i) for i in np.flatnonzero(fl.to_numpy())]
        names = [str(m) for m in var["marker"].to_numpy()[cols]]
    else:
        cols, names = [], []
    Xc, has_nan = _columns(adata.X, cols) if cols else (None, False)
    has_nk = nk_population in adata.obs.columns
    nk_mask = member_mask(adata.obs[nk_population]) if has_nk else None
    nk_count = int(nk_mask.sum()) if nk_mask is not None else 0
    within_nk: list[bool] = []
    rows = []
    median_rows: list[tuple[dict[str, Any], np.ndarray]] = []
    for pop in populations:
        m = member_mask(adata.obs[pop])
        parent = parents.get(pop)
        pm = member_mask(adata.obs[parent]) if parent else np.ones(n, bool)
        count, pcount = int(m.sum()), int(pm.sum())
        within_nk.append(nk_mask is not None and not bool(np.any(m & ~nk_mask)))
        row: dict[str, Any] = {
            "sample_id": sid,
            "population": pop,
            "parent": parent or "",
            "count": count,
            "parent_count": pcount,
        }
        rows.append(row)
        if cols and count:
            idx = np.flatnonzero(m)
            if idx.size > _MEDIAN_MAX:  # fixed-stride subsample: deterministic, SE ~1e-3
                idx = idx[:: int(np.ceil(idx.size / _MEDIAN_MAX))]
            median_rows.append((row, idx))
        else:
            row.update({f"median_{name}": float("nan") for name in names})
    # each population's medians on its own thread where cores are free (numpy partitions
    # without the GIL); every population's numbers are the same on any thread
    medians = thread_map(lambda idx: _medians(Xc, idx, has_nan), [i for _, i in median_rows])
    for (row, _), med in zip(median_rows, medians, strict=True):
        row.update({f"median_{name}": float(v) for name, v in zip(names, med, strict=True)})
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=POPULATION_COLUMNS)
    lo, hi = wilson_interval(df["count"], df["parent_count"], confidence=confidence)
    with np.errstate(invalid="ignore", divide="ignore"):
        df.insert(5, "percent_of_parent", 100.0 * df["count"] / df["parent_count"])
        df.insert(6, "ci_low", 100.0 * lo)
        df.insert(7, "ci_high", 100.0 * hi)
        pnk = 100.0 * df["count"] / nk_count if nk_count else np.full(len(df), np.nan)
        pnk = np.where(within_nk, pnk, np.nan)  # only populations inside NK
    df.insert(8, "percent_of_nk", pnk)
    df.insert(9, "low_events", df["count"] < int(min_events))
    if unset is None:
        unset = g.get("unset") or {}
    # the record, or the <NA> of the obs column (a container whose uns was not kept)
    not_set = {*unset, *not_set_gates(adata.obs, df["population"])}
    if (rows_unset := df["population"].isin(not_set).to_numpy()).any():
        df["count"] = df["count"].astype("Int64").mask(rows_unset)
        # below a gate not set, the parent's count is not measured either
        df["parent_count"] = df["parent_count"].astype("Int64").mask(df["parent"].isin(not_set))
        cols = ["percent_of_parent", "ci_low", "ci_high", "percent_of_nk"]
        cols += [c for c in df.columns if c.startswith("median_")]
        df.loc[rows_unset, cols] = np.nan
        df.loc[rows_unset, "low_events"] = False
    low = df.loc[df["low_events"], "population"].tolist()
    if low and warn:
        msg = (
            f"sample {sid!r}: {len(low)} population(s) under {min_events} events: {', '.join(low)}"
        )
        logger.debug(msg)  # shown once, as the warning below
        warnings.warn(msg, LowEventCountWarning, stacklevel=2)
    return df
