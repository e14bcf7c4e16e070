"""Readable metacluster names and per-sample tables.

Each metacluster is named from its median marker profile against the batch's gating
thresholds (``uns["nkflow"]["thresholds"]``): ``"CD56bright CD16- CD69+ CD49a+ AREG+"``.

Rules:

* CD56 is called ``bright``/``dim`` from the gated ``CD56bright``/``CD56dim`` obs columns
  (majority of the metacluster's training cells) when the samples carry them; otherwise
  ``+``/``-`` like any marker (the templates split bright from dim by a 2-D mixture, so no
  single CD56 cut tells them apart). A split that was not set (too few NK events: the
  columns are ``<NA>``, :mod:`nkflow.gating.membership`) says nothing: a metacluster is
  named bright or dim only when the split was set for at least half of its cells, and
  then from those cells alone; otherwise CD56 is ``+``/``-``.
* Every other marker is ``+`` when the median is at or above its threshold, ``-`` below.
  A marker with no gating threshold gets one from the density valley of its pooled
  values (rule ``"valley"``); if the distribution has no valley it falls back to the
  pooled median (rule ``"quantile"``) and the call is written ``hi``/``lo`` instead of
  ``+``/``-``, because it is relative, not a positivity; such a marker is named only when
  the metacluster median is at least half a pooled SD away from the pooled median. The log
  says which markers fell back.
* Markers whose call is the same in every metacluster are left out of the names (they do
  not tell the clusters apart); CD56 is always kept.
* Names are made unique by adding, in parentheses, the marker that best separates the
  clashing metaclusters (never one the name already calls, nor a function read-out):
  ``(Xhi)`` when a metacluster's median of X is above X's median over all the batch's
  metaclusters (the median of their medians), ``(Xlo)`` at or below it, so every ``(Xhi)``
  metacluster is above every ``(Xlo)`` one; only markers that put the clashing
  metaclusters on both sides are used. When none does, ``(more X)`` / ``(less X)``
  compare them with each other only: above / at or below the clashing metaclusters'
  median of X. What stays alike gets a ``[n]`` suffix (not ``#n``: ``#`` starts a
  comment for CSV readers).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
from scipy.stats import gaussian_kde

from ..exceptions import ConfigError
from ..io.fcs import channel_for, sample_info
from ..io.panel import marker_equivalents
from ..io.records import nkflow_record
from ._samples import iter_samples

__all__ = [
    "FUNCTION_MARKERS",
    "abundance_table",
    "median_table",
    "metacluster_medians",
    "name_metaclusters",
    "resolve_thresholds",
    "subset_calls",
    "valley_threshold",
]

logger = logging.getLogger(__name__)

#: Function read-outs: not clustered on by default, always used in the names.
FUNCTION_MARKERS = ("AREG", "IFN-g", "CD107a")
_SUBSETS = ("CD56bright", "CD56dim")


def valley_threshold(values: np.ndarray, *, max_points: int = 5000) -> tuple[float, str]:
    """Threshold between the two main modes of a 1-D distribution.

    Parameters
    ----------
    values
        Pooled transformed intensities.
    max_points
        Values used for the kernel density estimate (evenly spaced order statistics).

    Returns
    -------
    tuple
        ``(value, rule)``: the density minimum between the two highest peaks and
        ``"valley"``, or the median and ``"quantile"`` when there is no clear valley.
    """
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size < 20 or np.ptp(v) == 0:
        return (float(np.median(v)) if v.size else 0.0), "quantile"
    if v.size > max_points:
        v = np.sort(v)[np.linspace(0, v.size - 1, max_points).astype(int)]
    lo, hi = np.quantile(v, [0.005, 0.995])
    grid = np.linspace(lo, hi, 256)
    dens = gaussian_kde(v)(grid)
    peaks = [i for i in range(1, 255) if dens[i] >= dens[i - 1] and dens[i] > dens[i + 1]]
    if len(peaks) >= 2:
        top = sorted(sorted(peaks, key=lambda i: dens[i])[-2:])
        a, b = top
        valley = a + int(np.argmin(dens[a : b + 1]))
        smaller = min(dens[a], dens[b])
        if smaller >= 0.05 * dens.max() and dens[valley] < 0.8 * smaller:
            return float(grid[valley]), "valley"
    return float(np.median(v)), "quantile"


def subset_calls(obs: pd.DataFrame) -> pd.DataFrame:
    """The gated CD56bright/CD56dim membership of the cells of ``obs``.

    Parameters
    ----------
    obs
        obs rows of the cells of interest.

    Returns
    -------
    pandas.DataFrame
        Nullable ``boolean`` columns ``CD56bright`` and ``CD56dim``, one row per cell:
        ``<NA>`` where the split was not set (its gate could not be set, or the sample has
        no such gate), so samples with and without the split can be pooled.
    """
    missing = pd.array([pd.NA] * len(obs), dtype="boolean")
    return pd.DataFrame(
        {c: pd.array(obs[c], dtype="boolean") if c in obs.columns else missing for c in _SUBSETS}
    )


def metacluster_medians(
    X: np.ndarray, cell_metacluster: np.ndarray, markers: Sequence[str]
) -> pd.DataFrame:
    """Median of each marker per metacluster.

    Parameters
    ----------
    X
        ``(n_cells, len(markers))`` values.
    cell_metacluster
        Metacluster id of each cell.
    markers
        Column names.

    Returns
    -------
    pandas.DataFrame
        Index: metacluster id (sorted); columns: markers; plus ``n_cells``.
    """
    df = pd.DataFrame(np.asarray(X, dtype=float), columns=list(markers))
    df["metacluster"] = np.asarray(cell_metacluster)
    med = df.groupby("metacluster").median()
    med["n_cells"] = df.groupby("metacluster").size()
    return med


def resolve_thresholds(
    adatas: Iterable[ad.AnnData], markers: Sequence[str], pooled: np.ndarray
) -> dict[str, dict[str, Any]]:
    """One threshold per marker from the samples' gating thresholds, else the data.

    Gating thresholds are pooled over samples by their median (of each sample's median
    when a sample holds several cuts of one marker).

    Parameters
    ----------
    adatas
        Samples whose ``uns["nkflow"]["thresholds"]`` hold ``{marker, value, ...}``.
    markers
        Markers needing a threshold, in the column order of ``pooled``.
    pooled
        ``(n_cells, len(markers))`` pooled values for the fallback rule.

    Returns
    -------
    dict
        ``{marker: {"value": float, "rule": str, "source": "gating" | "data"}}``.
    """
    per_marker: dict[str, list[float]] = {}
    # a cut-off recorded under another name of the marker (a mouse template's CD3e on a
    # file read as CD3) is the marker's own
    named = {alias: m for m in markers for alias in marker_equivalents(m) | {m}}
    for adata in adatas:
        entries = nkflow_record(adata, "thresholds") or []
        sample_vals: dict[str, list[float]] = {}
        for e in entries:
            marker = named.get(str(e.get("marker"))) if isinstance(e, Mapping) else None
            if marker is not None and e.get("value") is not None:
                val = float(e["value"])
                if np.isfinite(val):
                    sample_vals.setdefault(marker, []).append(val)
        for m, vals in sample_vals.items():
            per_marker.setdefault(m, []).append(float(np.median(vals)))
    out: dict[str, dict[str, Any]] = {}
    fallback = []
    for j, m in enumerate(markers):
        if per_marker.get(m):
            out[m] = {
                "value": float(np.median(per_marker[m])),
                "rule": "gating",
                "source": "gating",
            }
        else:
            value, rule = valley_threshold(pooled[:, j])
            col = pooled[:, j]
            spread = float(np.nanstd(col)) if col.size else 0.0
            out[m] = {"value": value, "rule": rule, "source": "data", "spread": spread}
            fallback.append(f"{m} ({rule})")
    if fallback:
        logger.info("metacluster names: no gating threshold for %s; used the data", fallback)
    return out


def _call(marker: str, median: float, thr: Mapping[str, Any]) -> str:
    above = median >= thr["value"]
    if thr["rule"] == "quantile":
        # relative call on a unimodal marker: only when clearly away from the pooled median
        if abs(median - thr["value"]) < 0.5 * float(thr.get("spread", 0.0)):
            return ""
        return f"{marker}{'hi' if above else 'lo'}"
    return f"{marker}{'+' if above else '-'}"


def name_metaclusters(
    medians: pd.DataFrame,
    thresholds: Mapping[str, Mapping[str, Any]],
    *,
    subsets: pd.DataFrame | None = None,
    cell_metacluster: np.ndarray | None = None,
) -> dict[int, str]:
    """Readable, unique names for metaclusters from their median profiles.

    Parameters
    ----------
    medians
        Metacluster x marker medians (:func:`metacluster_medians`).
    thresholds
        ``{marker: {"value", "rule", ...}}`` (:func:`resolve_thresholds`).
    subsets
        Gated ``CD56bright``/``CD56dim`` flags of the cells behind ``medians``
        (:func:`subset_calls`; ``<NA>`` where the split was not set). Only these name a
        metacluster CD56bright or CD56dim (the templates split them by a 2-D mixture, not
        by one CD56 cut), and only when the split was set for at least half of its cells;
        otherwise CD56 is called like any marker (``CD56+``/``CD56-`` against
        ``thresholds["CD56"]``, the NK anchor's cut).
    cell_metacluster
        Metacluster of each row of ``subsets``.

    Returns
    -------
    dict
        ``{metacluster id: name}``.

    Raises
    ------
    ConfigError
        ``medians`` is not wide metacluster x marker medians with integer metacluster ids
        (for example the long per-sample table of :func:`median_table`), or none of its
        columns is a marker of ``thresholds``.
    """
    _check_wide_medians(medians, thresholds)
    markers = [m for m in medians.columns if m != "n_cells" and m in thresholds]
    calls = pd.DataFrame(index=medians.index, columns=markers, dtype=object)
    for m in markers:
        calls[m] = [_call(m, float(v), thresholds[m]) for v in medians[m]]
    if "CD56" in markers:
        cd56 = []
        use_gates = (
            subsets is not None
            and cell_metacluster is not None
            and set(_SUBSETS) <= set(subsets.columns)
        )
        for k in medians.index:
            split = _gated_split(subsets, cell_metacluster, k) if use_gates else None
            if split is None:  # no gated split: one CD56 cut cannot tell bright from dim
                cd56.append(_call("CD56", float(medians.loc[k, "CD56"]), thresholds["CD56"]))
            else:
                cd56.append(split)
        calls["CD56"] = cd56
    keep = [m for m in markers if m == "CD56" or calls[m].nunique() > 1]
    if not keep:
        keep = markers
    names = {int(k): " ".join(c for c in calls.loc[k, keep] if c) for k in medians.index}
    return _make_unique(names, medians[markers])


def _gated_split(subsets: pd.DataFrame, cell_metacluster: Any, k: Any) -> str | None:
    """``"CD56bright"`` / ``"CD56dim"`` by the majority of metacluster ``k``'s gated cells.

    ``None`` when the split was set for fewer than half of its cells (``<NA>``: too few
    events for the gate; such cells are neither bright nor dim), or none of its measured
    cells is in either gate.
    """
    sel = np.asarray(cell_metacluster) == k
    bright = pd.array(subsets["CD56bright"], dtype="boolean")[sel]
    dim = pd.array(subsets["CD56dim"], dtype="boolean")[sel]
    measured = ~(bright.isna() | dim.isna())
    if not sel.any() or 2 * int(measured.sum()) < int(sel.sum()):
        return None
    n_bright = int(bright[measured].sum())
    n_dim = int(dim[measured].sum())
    if n_bright == 0 and n_dim == 0:
        return None
    return "CD56bright" if n_bright > n_dim else "CD56dim"


def _check_wide_medians(medians: Any, thresholds: Mapping[str, Any]) -> None:
    """Refuse what is not metacluster x marker medians (names would be ``' [1]'``, ...)."""
    need = (
        "name_metaclusters needs wide metacluster x marker medians: one row per metacluster "
        "(integer id), one column per marker, e.g. result.medians"
    )
    if not isinstance(medians, pd.DataFrame):
        raise ConfigError(f"{need}; got {type(medians).__name__}")
    cols = [str(c) for c in medians.columns]
    if {"marker", "median"} <= set(cols):
        raise ConfigError(
            f"{need}; got a long table ({len(medians)} rows; columns {', '.join(cols)}), "
            "such as median_table's per-sample medians"
        )
    if not any(c != "n_cells" and c in thresholds for c in medians.columns):
        raise ConfigError(
            f"{need}; none of its columns ({', '.join(cols) or 'none'}) is a marker with a "
            f"threshold ({', '.join(map(str, thresholds)) or 'none'})"
        )
    bad = [k for k in medians.index if not _is_whole(k)]
    if bad:
        raise ConfigError(f"{need}; got row labels that are no metacluster ids: {bad[:5]}")


def _is_whole(value: Any) -> bool:
    try:
        return float(value) == int(value)
    except (TypeError, ValueError):
        return False


def _called_markers(name: str, markers: Iterable[str]) -> list[str]:
    """The markers a metacluster name already calls (``CD127-``, ``CD4hi``, ``CD56bright``)."""
    words = name.split()
    return [m for m in markers
            if any(w == f"{m}{tag}" for w in words for tag in _CALLS)]  # fmt: skip


#: what a metacluster name appends to a marker
_CALLS = ("+", "-", "hi", "lo", "bright", "dim")


def _make_unique(names: dict[int, str], medians: pd.DataFrame) -> dict[int, str]:
    out = dict(names)
    groups: dict[str, list[int]] = {}
    for k, n in names.items():
        groups.setdefault(n, []).append(k)
    for base, ks in groups.items():
        if len(ks) < 2 or medians.shape[1] == 0:
            continue
        # the separating marker must not be one the name already calls: "CD127- (CD127hi)"
        # or "CD4hi (CD4lo)" reads as a contradiction; nor a function read-out: "(AREGhi)"
        # would read as an AREG-producing cluster, a claim only the controls can make
        left_out = [*_called_markers(base, medians.columns),
                    *(m for m in FUNCTION_MARKERS if m in medians.columns)]  # fmt: skip
        # hi/lo against the marker's median over ALL metaclusters, not within the clash:
        # within it, "(CD127hi)" of one clash sat below "(CD127lo)" of another. So every
        # "Xhi" metacluster is above every "Xlo" one. When no marker puts the clashing
        # metaclusters on both sides of it, they are compared with each other, in words
        # that say so: "(more CD127)" / "(less CD127)"
        reference = medians.drop(columns=left_out).median()
        sub = medians.loc[ks].drop(columns=left_out)
        if sub.shape[1] == 0:
            continue  # the "[n]" suffix below tells them apart
        above = sub > reference
        split = [m for m in sub.columns if above[m].any() and not above[m].all()]
        if split:
            marker = str(sub[split].std().idxmax())
            for k in ks:
                out[k] = _joined(base, f"({marker}{'hi' if bool(above.loc[k, marker]) else 'lo'})")
            continue
        marker = str(sub.std().idxmax())
        if not sub[marker].nunique() > 1:
            continue  # alike on every marker: numbered below
        mid = float(sub[marker].median())
        for k in ks:
            out[k] = _joined(
                base, f"({'more' if float(sub.loc[k, marker]) > mid else 'less'} {marker})"
            )
    seen: dict[str, int] = {}
    for k in sorted(out):
        n = out[k]
        seen[n] = seen.get(n, 0) + 1
    counter: dict[str, int] = {}
    for k in sorted(out):
        n = out[k]
        if seen[n] > 1:
            counter[n] = counter.get(n, 0) + 1
            out[k] = _joined(n, f"[{counter[n]}]")  # not "#": CSV readers take it for a comment
    return out


def _joined(base: str, tag: str) -> str:
    """``base`` and ``tag`` with one space between; ``tag`` alone when ``base`` calls nothing."""
    return f"{base} {tag}" if base else tag


def _sample_meta(adata: ad.AnnData) -> dict[str, str]:
    info = sample_info(adata)
    return {k: str(info.get(k, "") or "") for k in ("donor", "tissue", "timepoint", "stimulation")}


def abundance_table(
    adatas: Any, result: Any | None = None, *, key: str = "metacluster"
) -> pd.DataFrame:
    """Per-sample counts and percentages of each metacluster (long format).

    Parameters
    ----------
    adatas
        Samples already assigned (``obs[key]`` present): ``{sample_id: AnnData}``, a list,
        or one AnnData of one sample.
    result
        The :class:`~nkflow.tl.cluster.ClusteringResult` (for names); if ``None``, names
        are read from ``obs[key + "_label"]``.
    key
        obs column with the metacluster id.

    Returns
    -------
    pandas.DataFrame
        sample_id, metacluster, label, count, percent (of the clustered population in the
        sample), n_population, donor, tissue, timepoint, stimulation.

    Raises
    ------
    ConfigError
        One AnnData whose ``obs["sample_id"]`` holds several samples (such as
        ``Results.to_anndata()``): it would be counted as one sample.
    """
    rows = []
    for sid, adata in iter_samples(adatas, what="abundance_table"):
        col = adata.obs[key]
        labels = _labels_for(adata, key, result)
        total = int(col.notna().sum())
        counts = col.value_counts(sort=False)
        meta = _sample_meta(adata)
        for cat in col.cat.categories:
            c = int(counts.get(cat, 0))
            rows.append(
                {
                    "sample_id": sid,
                    "metacluster": str(cat),
                    "label": labels.get(str(cat), ""),
                    "count": c,
                    "percent": 100.0 * c / total if total else np.nan,
                    "n_population": total,
                    **meta,
                }
            )
    return pd.DataFrame(rows)


def _labels_for(adata: ad.AnnData, key: str, result: Any | None) -> dict[str, str]:
    if result is not None:
        return {str(k): v for k, v in result.labels.items()}
    lab_col = f"{key}_label"
    if lab_col in adata.obs:
        ids = adata.obs[key].cat.categories
        names = adata.obs[lab_col].cat.categories
        if len(ids) == len(names):
            return dict(zip(map(str, ids), map(str, names), strict=True))
    return {}


def median_table(
    adatas: Any,
    result: Any,
    *,
    key: str = "metacluster",
    markers: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Per-sample median of each marker in each metacluster (long format).

    Parameters
    ----------
    adatas
        Samples already assigned (``obs[key]`` present).
    result
        The :class:`~nkflow.tl.cluster.ClusteringResult`.
    key
        obs column with the metacluster id.
    markers
        Markers to report; default ``result.label_markers``.

    Returns
    -------
    pandas.DataFrame
        sample_id, metacluster, label, marker, median, n_cells.
    """
    markers = list(markers) if markers is not None else list(result.label_markers)
    labels = {str(k): v for k, v in result.labels.items()}
    frames = []
    for sid, adata in iter_samples(adatas, what="median_table"):
        col = adata.obs[key]
        keep = col.notna().to_numpy()
        cols = adata.var_names.get_indexer([channel_for(adata, m) for m in markers])
        x = adata.X[keep][:, cols]
        x = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
        df = pd.DataFrame(x, columns=markers)
        df["metacluster"] = col[keep].astype(str).to_numpy()
        med = df.groupby("metacluster").median()
        size = df.groupby("metacluster").size()
        long = med.reset_index().melt(id_vars="metacluster", var_name="marker", value_name="median")
        long["n_cells"] = long["metacluster"].map(size).astype(int)
        long.insert(0, "sample_id", sid)
        long.insert(2, "label", long["metacluster"].map(labels).fillna(""))
        frames.append(long)
    cols = ["sample_id", "metacluster", "label", "marker", "median", "n_cells"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)
