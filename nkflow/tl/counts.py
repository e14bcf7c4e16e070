"""Stage 1 of repair scoring: per-sample event counts (one small table per sample).

Scoring works on counts, not events, so a batch never has to be in memory: call
:func:`count_positive` on each sample as it is gated, keep the few hundred rows it returns,
concatenate them and pass them to :func:`nkflow.tl.score`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from .._containers import require_one_sample
from ..exceptions import (
    BatchConsistencyError,
    ChannelNotFoundError,
    ConfigError,
    GatingError,
    LowEventCountWarning,
    MissingControlWarning,
    PanelError,
)
from ..gating.membership import is_set, member_mask
from ..gating.thresholds import fmo_threshold as gating_fmo_threshold
from ..io.fcs import sample_info, var_markers
from ..io.records import nkflow_record, restore_records
from ._score_config import ScoringConfig

__all__ = ["COUNT_COLUMNS", "CUT_END_COLUMNS", "count_positive", "fmo_threshold"]

logger = logging.getLogger(__name__)

#: count columns produced by :func:`count_positive`, in order
COUNT_COLUMNS = (
    "n_events",
    "n_areg",
    "n_ifng",
    "n_nkg2d",
    "n_cd107a",
    "n_areg_only",  # AREG+ IFN-g-
    "n_ifng_only",  # AREG- IFN-g+
    "n_areg_ifng",  # AREG+ IFN-g+
    "n_trnk",
)
_MARKER_KEYS = ("areg", "ifng", "nkg2d", "cd107a")
#: AREG+ events if the AREG cut-off sat at either end of its own interval (``ci_low``,
#: ``ci_high`` of its threshold record): how far the cut-off's place moves the count.
#: Optional in scoring (a counts table without them scores as before).
CUT_END_COLUMNS = ("n_areg_at_ci_low", "n_areg_at_ci_high")


def _channel(adata: AnnData, marker: str) -> str | None:
    hits = adata.var_names[var_markers(adata).to_numpy() == marker]
    if len(hits) > 1:
        raise PanelError(
            f"{_where(adata)}: marker {marker!r} is on several channels {list(hits)}; "
            "fix the panel alias table so each marker has one channel"
        )
    return str(hits[0]) if len(hits) else None


def _where(adata: AnnData) -> str:
    sample = sample_info(adata)
    return str(sample.get("path") or sample.get("sample_id") or "AnnData")


def _values(adata: AnnData, channel: str, layer: str | None) -> np.ndarray:
    col = adata.var_names.get_loc(channel)
    data = adata.X if layer is None else adata.layers[layer]
    column = data[:, col]
    if sparse.issparse(column):
        column = column.toarray()
    return np.asarray(column, dtype=np.float64).ravel()


def _threshold_table(thresholds: Any, adata: AnnData) -> pd.DataFrame:
    if thresholds is None:
        thresholds = nkflow_record(adata, "thresholds") or []
    table = (
        thresholds.copy()
        if isinstance(thresholds, pd.DataFrame)
        else pd.DataFrame(list(thresholds))
    )
    for col in ("marker", "value"):
        if len(table) and col not in table.columns:
            raise GatingError(
                f"{_where(adata)}: thresholds lack column {col!r}; have {list(table.columns)}"
            )
    for col in ("sample_id", "tissue", "batch", "rule", "control_file", "channel", "gate"):
        if col not in table.columns:
            table[col] = ""
    if not len(table):
        table = pd.DataFrame(
            columns=[
                "marker",
                "value",
                "sample_id",
                "tissue",
                "batch",
                "rule",
                "control_file",
                "channel",
                "gate",
            ]
        )
    for col in (
        "sample_id",
        "tissue",
        "batch",
        "rule",
        "control_file",
        "channel",
        "marker",
        "gate",
    ):
        table[col] = table[col].fillna("").astype(str)
    return table


class _ThresholdPicker:
    """The most specific threshold row per marker, from one table's columns read once.

    Comparing the string columns as arrays costs a fraction of filtering the DataFrame
    once per marker and level; the row returned and the errors raised are the same.
    """

    def __init__(self, table: pd.DataFrame) -> None:
        self._table = table
        self._cols = {
            c: table[c].to_numpy() for c in ("marker", "sample_id", "tissue", "batch", "gate")
        }

    def pick(
        self,
        marker: str,
        sample_id: str,
        tissue: str,
        batch: str,
        where: str,
        gate: str | None = None,
    ) -> dict[str, Any] | None:
        """Most specific row: the sample's own, then tissue+batch, batch, tissue, any.

        Rows set on ``gate`` (the ``gate`` column of the gating module's table) win over
        rows set on other parent gates at the same level.
        """
        cols = self._cols
        rows = np.flatnonzero(cols["marker"] == marker)
        if not rows.size:
            return None
        sid, tis, bat = (cols[c][rows] for c in ("sample_id", "tissue", "batch"))
        shared = sid == ""
        levels = [
            sid == sample_id,
            shared & (tis == tissue) & (bat == batch),
            shared & (tis == "") & (bat == batch),
            shared & (tis == tissue) & (bat == ""),
            shared & (tis == "") & (bat == ""),
        ]
        for mask in levels:
            hit = rows[mask]
            if not hit.size:
                continue
            values = self._values(hit)
            on_gate = hit[cols["gate"][hit] == gate] if gate is not None else hit[:0]
            if len(values) > 1 and on_gate.size:
                hit = on_gate
                values = self._values(hit)
            if len(values) > 1:
                raise BatchConsistencyError(
                    f"{where}: {len(values)} different {marker} thresholds {sorted(values)} "
                    f"apply to sample {sample_id!r} (tissue {tissue!r}, batch {batch!r}); "
                    "keep one per marker, tissue and batch"
                )
            return self._table.iloc[int(hit[0])].to_dict()
        return None

    def _values(self, rows: np.ndarray) -> np.ndarray:
        return self._table["value"].iloc[rows].astype(float).unique()


def _populations(
    adata: AnnData, populations: Sequence[str] | None, cluster_key: str | None, qc_key: str
) -> dict[str, np.ndarray | None]:
    """Population -> bool membership; ``None`` for a gate not set (its counts are NA)."""
    obs = adata.obs
    gated = [c for c in obs.columns if c != qc_key and pd.api.types.is_bool_dtype(obs[c])]
    out: dict[str, np.ndarray | None] = {
        name: member_mask(obs[name]) if is_set(obs[name]) else None for name in gated
    }
    if cluster_key and cluster_key in obs.columns:
        labels = obs[cluster_key].astype("category")
        codes = labels.cat.codes.to_numpy()
        for code, cat in enumerate(labels.cat.categories):
            out[f"{cluster_key}:{cat}"] = codes == code
    if not out:  # counting nothing would be an empty table that looks like a result
        raise GatingError(
            f"{_where(adata)}: no gated population or cluster to count: run nk.gating.gate first"
        )
    if populations is None:
        return out
    missing = [p for p in populations if p not in out]
    if missing:  # the error the other tools give for a population asked for by name
        raise ChannelNotFoundError(
            ", ".join(map(str, missing)), list(out), source=_where(adata), what="population"
        )
    return {p: out[p] for p in populations}


def _sample_codes(column: pd.Series) -> tuple[np.ndarray, Sequence[str]]:
    """Integer codes of the events' sample ids and the ids, in order of first appearance.

    ``pd.factorize`` of the ids as strings; a categorical column of string ids (as the
    pipeline writes it) is coded from its category codes, without making a string per
    event.
    """
    if isinstance(column.dtype, pd.CategoricalDtype):
        categories = column.cat.categories
        codes = column.cat.codes.to_numpy()
        if all(isinstance(c, str) for c in categories) and not (codes < 0).any():
            codes, used = pd.factorize(codes)
            return codes, [categories[k] for k in used]
    return pd.factorize(column.astype(str))


def count_positive(
    adata: AnnData,
    thresholds: pd.DataFrame | Iterable[Mapping[str, Any]] | None = None,
    *,
    populations: Sequence[str] | None = None,
    cluster_key: str | None = "metacluster",
    markers: Mapping[str, str] | None = None,
    residency_population: str = "trNK",
    threshold_gate: str | None = "NK",
    layer: str | None = None,
    qc_key: str = "qc_pass",
) -> pd.DataFrame:
    """Count events and marker-positive events per population, for one gated sample.

    Parameters
    ----------
    adata
        One sample (container per docs/contracts.md). ``obs`` holds one bool column per gated
        population and optionally the categorical ``cluster_key``; events with
        ``obs[qc_key] == False`` are left out when that column exists. A container of
        several samples (``obs["sample_id"]`` with more than one value, such as
        ``Results.to_anndata()``) is refused: its ``uns`` holds no sample's tissue and
        thresholds. Count each sample's own container (``Results.kept_events``).
    thresholds
        Positivity cut-offs on the scale of ``X`` (or ``layer``): a table or list of records
        with ``marker``, ``value`` and, for provenance, ``rule``, ``control_file``,
        ``tissue``, ``batch`` (and optionally ``sample_id``). For each marker the most
        specific row applies: the sample's own, then its tissue and batch, its batch, its
        tissue, then rows with none. ``None`` uses ``adata.uns["nkflow"]["thresholds"]``.
        An event is positive when its value is strictly above the cut-off.
    populations
        Population names to count (bool obs columns or ``"<cluster_key>:<category>"``);
        ``None`` counts every bool obs column and every cluster.
    cluster_key
        Categorical obs column whose categories are counted as populations
        (``"metacluster:3"``); ignored when absent.
    markers
        Canonical marker names for the keys ``areg``, ``ifng``, ``nkg2d`` and ``cd107a``
        (defaults: AREG, IFN-g, NKG2D, CD107a); found through ``var["marker"]`` (the
        ``var_names`` of a container without that column).
    residency_population
        Bool obs column counted inside every population as ``n_trnk`` (residency context;
        ``<NA>`` when that gate was not set).
    threshold_gate
        When a marker has cut-offs set on several parent gates (a ``gate`` column), use the
        one set on this gate (the FMO is read in the NK gate by default).
    layer
        Read intensities from this layer instead of ``X``.
    qc_key
        Bool obs column of events passing QC.

    Returns
    -------
    pandas.DataFrame
        One row per sample and population: ``sample_id``, ``population``, ``tissue``,
        ``batch``, the counts in :data:`COUNT_COLUMNS` (nullable integers; ``<NA>`` when the
        marker is not in the panel or has no threshold, and every count of a gate that was
        not set (``<NA>`` in its obs column, :mod:`nkflow.gating.membership`), never a
        silent zero), :data:`CUT_END_COLUMNS` (AREG+ events if the AREG cut-off sat at the
        ``ci_low`` / ``ci_high`` of its record; ``<NA>`` when it has no interval: bootstrap
        0, a manual or fixed cut-off, or an open bound), the cut-offs
        used (``threshold_<key>``, the AREG cut-off's interval ``threshold_areg_ci_low`` /
        ``_high``, plus ``areg_rule`` and ``areg_control_file``), and
        ``areg_channel``, the channel AREG was read on (``""``: the panel has no AREG).

    Raises
    ------
    ConfigError
        ``adata`` holds several samples.
    GatingError
        The container holds no gated population or cluster (gate it first).
    ChannelNotFoundError
        A population of ``populations`` is not in the container (as ``nk.tl.cluster`` and
        ``Results.export_fcs`` say it); the message lists those it holds.
    """
    require_one_sample(
        adata,
        "count_positive",
        "; it counts one sample with the tissue and thresholds in its uns['nkflow']: call it "
        "per sample on res.kept_events(sid) of nk.run's Results (res.tables['counts'] "
        "already holds these counts)",
    )
    restore_records(adata)  # a file read by plain anndata.read_h5ad: its records come back
    marker_names = dict(ScoringConfig().markers if markers is None else markers)
    picker = _ThresholdPicker(_threshold_table(thresholds, adata))
    info = sample_info(adata)
    where = _where(adata)
    keep = (
        adata.obs[qc_key].to_numpy(dtype=bool, copy=True)
        if qc_key in adata.obs.columns
        else np.ones(adata.n_obs, dtype=bool)
    )
    pops = _populations(adata, populations, cluster_key, qc_key)
    # samples as integer codes: comparing 200,000 strings per sample costs more than counting
    if "sample_id" in adata.obs.columns:
        sample_codes, sample_names = _sample_codes(adata.obs["sample_id"])
    else:
        sample_codes = np.zeros(adata.n_obs, dtype=np.intp)
        sample_names = pd.Index([str(info.get("sample_id", ""))])
    trnk = (
        member_mask(adata.obs[residency_population])
        if residency_population in adata.obs.columns and is_set(adata.obs[residency_population])
        else None  # not in the panel, or not set: n_trnk is NA
    )
    channels = {key: _channel(adata, marker_names[key]) for key in _MARKER_KEYS}
    rows: list[dict[str, Any]] = []
    for code, sid in enumerate(sample_names):
        in_sample = keep & (sample_codes == code)
        tissue = str(info.get("tissue", "") or "")
        batch = str(info.get("batch", "") or "")
        positive: dict[str, np.ndarray | None] = {}
        indicators_at_ends: dict[str, np.ndarray | None] = dict.fromkeys(CUT_END_COLUMNS)
        provenance: dict[str, dict[str, Any] | None] = {}
        for key in _MARKER_KEYS:
            marker, channel = marker_names[key], channels[key]
            hit = picker.pick(marker, sid, tissue, batch, where, threshold_gate)
            provenance[key] = hit
            if channel is None or hit is None:
                why = "not in the panel" if channel is None else "has no threshold (no FMO?)"
                logger.info("%s: marker %s %s; its counts are NA", where, marker, why)
                if key == "areg" and channel is not None:
                    warnings.warn(
                        f"{where}: no AREG threshold for tissue {tissue!r}, batch {batch!r}; "
                        "AREG counts are NA and nothing can be flagged",
                        MissingControlWarning,
                        stacklevel=2,
                    )
                positive[key] = None
            else:
                values = _values(adata, channel, layer)
                positive[key] = values > float(hit["value"])
                if key == "areg":
                    indicators_at_ends = _above_interval_ends(values, hit)
        indicators: dict[str, np.ndarray | None] = {
            "n_events": np.ones(adata.n_obs, dtype=bool),
            "n_areg": positive["areg"],
            "n_ifng": positive["ifng"],
            "n_nkg2d": positive["nkg2d"],
            "n_cd107a": positive["cd107a"],
            "n_trnk": trnk,
            **indicators_at_ends,
        }
        a, g = positive["areg"], positive["ifng"]
        both = a is not None and g is not None
        indicators["n_areg_only"] = a & ~g if both else None
        indicators["n_ifng_only"] = ~a & g if both else None
        indicators["n_areg_ifng"] = a & g if both else None
        for name, member in pops.items():
            # a gate not set measured nothing: all its counts are NA, not 0
            sel = member & in_sample if member is not None else None
            row: dict[str, Any] = {
                "sample_id": str(sid),
                "population": name,
                "tissue": tissue,
                "batch": batch,
            }
            for col in (*COUNT_COLUMNS, *CUT_END_COLUMNS):
                ind = indicators[col]
                # ``ind & sel`` counts the same events as ``ind[sel]`` without gathering them
                row[col] = pd.NA if ind is None or sel is None else int(np.count_nonzero(ind & sel))
            for key in _MARKER_KEYS:
                hit = provenance[key]
                row[f"threshold_{key}"] = np.nan if hit is None else float(hit["value"])
            hit = provenance["areg"]
            for end in ("ci_low", "ci_high"):  # the interval CUT_END_COLUMNS were counted at
                row[f"threshold_areg_{end}"] = np.nan if hit is None else _number(hit.get(end))
            row["areg_rule"] = "" if hit is None else str(hit.get("rule", ""))
            row["areg_control_file"] = "" if hit is None else str(hit.get("control_file", ""))
            row["areg_channel"] = channels["areg"] or ""  # "": the panel has no AREG
            rows.append(row)
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    for col in (*COUNT_COLUMNS, *CUT_END_COLUMNS):
        out[col] = out[col].astype("Int64")
    return out


def _above_interval_ends(
    values: np.ndarray, hit: Mapping[str, Any]
) -> dict[str, np.ndarray | None]:
    """AREG+ indicators if the cut-off sat at ``ci_low`` / ``ci_high`` of its record.

    The same strict ``>`` as ``n_areg``; ``None`` (counts NA) for a cut-off without an
    interval (no ``ci_low``/``ci_high``, or NaN: bootstrap 0, a manual or fixed cut-off),
    and for an open bound (``-inf``/``inf``: too few FMO events for the order statistic):
    it puts the end nowhere, and counting every event or none there would fail any flag
    at that end whatever its size. A flag is then not checked at that end, not fragile.
    """
    ends = [_number(hit.get("ci_low")), _number(hit.get("ci_high"))]
    if any(np.isnan(e) for e in ends):
        return dict.fromkeys(CUT_END_COLUMNS)
    return {
        col: values > end if np.isfinite(end) else None
        for col, end in zip(CUT_END_COLUMNS, ends, strict=True)
    }


def _number(value: Any) -> float:
    """``value`` as a float; NaN for a missing or non-numeric one."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def fmo_threshold(
    fmo_adata: AnnData,
    marker: str,
    *,
    population: str | None = "NK",
    percentile: float = 99.5,
    confidence: float = 0.95,
    layer: str | None = None,
    qc_key: str = "qc_pass",
) -> dict[str, Any]:
    """Positivity cut-off from an FMO tube: a percentile of the marker inside a gate.

    For scoring used on its own; in a pipeline the gating module computes thresholds.

    Parameters
    ----------
    fmo_adata
        The FMO control lacking ``marker``'s stain (same tissue and batch as the samples).
    marker
        Canonical marker, found through ``var["marker"]`` (or ``var_names``).
    population
        Bool obs column of the parent gate (the same gate the samples are scored in);
        ``None`` uses every event passing QC.
    percentile
        Percentile of the FMO distribution used as the cut-off (99.5 by default).
    confidence
        Coverage of the distribution-free (order-statistic) interval of that percentile.
    layer
        Read intensities from this layer instead of ``X``.
    qc_key
        Bool obs column of events passing QC.

    Returns
    -------
    dict
        One threshold record per docs/contracts.md: ``sample_id``, ``tissue``, ``batch``,
        ``marker``, ``channel``, ``value``, ``ci_low``, ``ci_high``, ``rule``,
        ``control_file``, ``n_events``.

    Raises
    ------
    ConfigError
        ``percentile`` is not in (0, 100), or ``fmo_adata`` holds several samples
        (``obs["sample_id"]`` with more than one value: pooled tubes).
    ChannelNotFoundError
        The FMO tube has no channel for ``marker``.
    GatingError
        The FMO tube has no obs column ``population``, or no events in it (after QC).
    """
    require_one_sample(
        fmo_adata,
        "fmo_threshold",
        "; an FMO cut-off is read from one FMO tube: call it per tube (several tubes of one "
        "FMO are pooled by nk.run, which records their replicates)",
    )
    where = _where(fmo_adata)
    if not 0.0 < percentile < 100.0:
        raise ConfigError(f"{where}: percentile {percentile!r}; valid: 0 < percentile < 100")
    channel = _channel(fmo_adata, marker)
    if channel is None:
        have = sorted({m for m in var_markers(fmo_adata) if m})
        raise ChannelNotFoundError(marker, have, source=where)
    keep = (  # a copy: pandas may hand out the column's own array, and it is and-ed below
        fmo_adata.obs[qc_key].to_numpy(dtype=bool, copy=True)
        if qc_key in fmo_adata.obs.columns
        else np.ones(fmo_adata.n_obs, dtype=bool)
    )
    if population is not None:
        if population not in fmo_adata.obs.columns:
            gates = [
                c for c in fmo_adata.obs.columns if pd.api.types.is_bool_dtype(fmo_adata.obs[c])
            ]
            raise GatingError(
                f"{where}: FMO has no gate {population!r}; available: {', '.join(gates) or 'none'}"
            )
        if not is_set(fmo_adata.obs[population]):
            raise GatingError(
                f"{where}: the FMO's gate {population!r} was not set (too few events for its "
                "cut-off, or below such a gate): no cut-off can be read from it"
            )
        keep &= member_mask(fmo_adata.obs[population])
    values = _values(fmo_adata, channel, layer)[keep]
    n = values.size
    if n == 0:
        raise GatingError(f"{where}: no {population or 'QC-passing'} events in the FMO tube")
    q = percentile / 100.0
    if n * (1.0 - q) < 10:
        warnings.warn(
            f"{where}: only {n} {population or ''} events in the FMO; the {percentile:g}th "
            f"percentile rests on fewer than 10 events above it",
            LowEventCountWarning,
            stacklevel=2,
        )
    value, ci_low, ci_high, _, _ = gating_fmo_threshold(
        values, percentile=percentile, confidence=confidence
    )
    info = sample_info(fmo_adata)
    return {
        "sample_id": "",
        "tissue": str(info.get("tissue", "") or ""),
        "batch": str(info.get("batch", "") or ""),
        "marker": marker,
        "channel": channel,
        "value": value,
        "ci_low": ci_low,
        "ci_high": ci_high,
        "rule": f"fmo_percentile:{percentile:g}",
        "control_file": str(info.get("path", "") or ""),
        "n_events": int(n),
    }
