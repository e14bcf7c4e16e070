"""Read one FCS data set into nkflow's AnnData container.

``read_fcs`` parses HEADER/TEXT itself (:mod:`nkflow.io.fcs_text`), decodes DATA with
numpy (:mod:`nkflow.io.fcs_data`), resolves markers (:mod:`nkflow.io.panel`) and fills
``var``, ``obs`` and ``uns["nkflow"]`` as docs/contracts.md describes.

Decisions on damaged input (documented here and in the README):

- duplicate non-empty ``$PnN`` -> :class:`FCSReadError` (channel names key compensation and
  gating; guessing which copy is meant is unsafe). Empty ``$PnN`` are replaced by ``$PnS`` or
  ``P<n>`` with an :class:`FCSQuirkWarning`.
- NaN or Inf event values -> :class:`FCSReadError` naming the channels and how many values;
  nkflow never drops events silently, because obs order must match the file (truth tables,
  index sorts).
- ``$TOT`` that differs from the DATA length by at most 1% -> warning, the events present
  are read; larger disagreement -> :class:`FCSReadError`.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from .._events import names_known_unique
from ..exceptions import (
    ChannelNotFoundError,
    ConfigError,
    FCSQuirkWarning,
    FCSReadError,
    NkflowError,
    NkflowWarning,
    PanelError,
    PanelWarning,
)
from .channels import channel_kind, channel_kinds
from .fcs_data import byte_order_looks_swapped, decode_events
from .fcs_keywords import channel_descriptors, unexpected_reason, whole_number
from .fcs_text import MAX_PARAMETERS, read_fcs_metadata
from .panel import (
    PanelLike,
    _as_panel,
    canonical_marker,
    conflict_message,
    marker_equivalents,
    resolve_with_conflicts,
)
from .panel_fit import fit_panel
from .records import nkflow_record, to_native
from .technology import detect_technology

__all__ = [
    "channel_for",
    "channel_kind",
    "parse_spillover",
    "read_fcs",
    "sample_id",
    "sample_info",
    "var_markers",
]

logger = logging.getLogger(__name__)

_SPILL_KEYS = ("$SPILLOVER", "SPILLOVER", "$SPILL", "SPILL")
_SAMPLE_KEYS = ("donor", "tissue", "timepoint", "stimulation", "role", "species", "batch")
_UNEXPECTED = (ValueError, TypeError, IndexError, KeyError, OverflowError, UnicodeError,
               MemoryError, ZeroDivisionError, OSError)  # fmt: skip


def _version() -> str:
    from .._version import __version__

    return __version__


def parse_spillover(
    keywords: Mapping[str, str], pnn: list[str], pns: list[str] | None = None, *, path: str = ""
) -> dict[str, Any] | None:
    """Parse ``$SPILLOVER`` / ``$SPILL`` / ``SPILL`` into ``{channels, matrix}``.

    Channel references are mapped to ``$PnN``: names are matched exactly, then case- and
    space-insensitively, then against ``$PnS``; numeric references are 1-based channel
    numbers.

    Parameters
    ----------
    keywords
        TEXT keywords with upper-cased names.
    pnn, pns
        The file's channel names and stain labels.
    path
        For warning messages.

    Returns
    -------
    dict or None
        ``{"channels": [...], "matrix": [[...]]}`` or None when the file has no usable
        spillover (a warning says why when one was present but unusable).
    """
    key = next((k for k in _SPILL_KEYS if keywords.get(k, "").strip()), None)
    if key is None:
        return None
    raw = keywords[key]
    parts = [p.strip() for p in raw.split(",")]

    def unusable(reason: str) -> None:
        warnings.warn(f"{path}: {key} ignored: {reason}", FCSQuirkWarning, stacklevel=3)

    n = whole_number(parts[0], "channels")
    if isinstance(n, str):
        unusable(f"first value {parts[0][:20]!r} is {n}")
        return None
    if n <= 0:
        return None
    if len(parts) != 1 + n + n * n:
        unusable(f"{len(parts)} values, expected 1 + {n} names + {n * n} coefficients")
        return None
    refs = parts[1 : 1 + n]
    try:
        values = [float(v) for v in parts[1 + n :]]
    except ValueError:
        unusable("a coefficient is not a number")
        return None
    if not all(math.isfinite(v) for v in values):
        unusable("a coefficient is NaN or infinite")
        return None

    def norm(s: str) -> str:
        return s.replace(" ", "").lower()

    by_norm = {norm(name): name for name in pnn}
    by_pns = {norm(s): pnn[i] for i, s in enumerate(pns or []) if s}
    channels: list[str] = []
    for ref in refs:
        if ref in pnn:
            channels.append(ref)
        elif norm(ref) in by_norm:
            channels.append(by_norm[norm(ref)])
        elif ref.isascii() and ref.isdigit() and 1 <= int(ref) <= len(pnn):
            channels.append(pnn[int(ref) - 1])
        elif norm(ref) in by_pns:
            channels.append(by_pns[norm(ref)])
        else:
            unusable(f"channel {ref!r} is not a $PnN of the file")
            return None
    if len(set(channels)) != n:
        unusable("a channel appears twice")
        return None
    matrix = np.asarray(values, dtype=float).reshape(n, n)
    return {"channels": channels, "matrix": matrix.tolist()}


def _nonfinite_summary(bad: np.ndarray, names: list[str]) -> tuple[int, str]:
    """How many values are NaN/Inf (``bad``), and in which channels (at most 10 named)."""
    per_channel = bad.sum(axis=0)
    hit = np.flatnonzero(per_channel)
    listing = ", ".join(f"{names[j]} ({int(per_channel[j])})" for j in hit[:10])
    if len(hit) > 10:
        listing += f" ... ({len(hit)} channels in all)"
    return int(per_channel.sum()), listing


def _check_finite(x: np.ndarray, names: list[str], path: Path, nonfinite: str) -> np.ndarray | None:
    """Return None when every value is finite, else the mask of events to keep."""
    # One SIMD pass: NaN/Inf propagate into the sum; a finite-value overflow only costs the
    # exact check below.
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: reported below
        if np.isfinite(np.add.reduce(x.reshape(-1))):
            return None
    bad = ~np.isfinite(x)
    if not bad.any():
        return None
    total, listing = _nonfinite_summary(bad, names)
    if nonfinite != "drop":
        raise FCSReadError(
            path,
            f"{total} NaN/Inf event value(s) in {listing}; nkflow does not "
            'drop events unless asked: qc.nonfinite = "drop" in a run\'s --config file, '
            "or read_fcs(..., nonfinite='drop')",
        )
    keep = ~bad.any(axis=1)
    if not keep.any():
        raise FCSReadError(path, f"every event has a NaN/Inf value ({listing})")
    warnings.warn(
        f"{path}: dropped {int((~keep).sum())} event(s) with NaN/Inf values in {listing}; "
        "obs_names keep the original event numbers",
        FCSQuirkWarning,
        stacklevel=4,
    )
    return keep


_EVENT_NAMES_CAP = 1 << 21
_event_names_cache: pd.Index = pd.Index([], dtype=object)


def _event_names(ids: np.ndarray) -> pd.Index:
    """``obs_names`` for event numbers ``ids`` ("0", "1", ...).

    Building a million Python strings and checking that they are unique costs far more
    than decoding the events, so the names 0..N-1 are built once (up to 2**21), their
    uniqueness is computed once, and each file gets a slice (pandas carries the cached
    uniqueness over to slices).
    """
    global _event_names_cache
    n = len(ids)
    contiguous = n == 0 or (ids[0] == 0 and ids[-1] == n - 1)
    if not contiguous or n > _EVENT_NAMES_CAP:
        return pd.Index(ids.astype(str).astype(object), dtype=object, copy=False)
    if len(_event_names_cache) < n:
        size = min(_EVENT_NAMES_CAP, max(n, 2 * len(_event_names_cache)))
        names = np.arange(size).astype(str).astype(object)
        cache = pd.Index(names, dtype=object, copy=False)
        _ = cache.is_unique  # computed once, inherited by slices
        _event_names_cache = cache
    names = _event_names_cache[:n]
    # AnnData checks obs_names for missing values; pandas caches that answer per Index
    # object but not through slices. The names are built above, none is missing: seed
    # the cache (a no-op on a pandas without this private cache).
    cache_dict = getattr(names, "_cache", None)
    if isinstance(cache_dict, dict):
        cache_dict["_isnan"] = np.zeros(n, dtype=bool)
    return names


def _sample_info(
    path: Path, sample_id: str | None, metadata: Mapping[str, Any] | pd.Series | None
) -> dict[str, str]:
    info = {"sample_id": "", "path": str(path)}
    info.update({k: "" for k in _SAMPLE_KEYS})
    if metadata is not None:
        for key in ("sample_id", *_SAMPLE_KEYS):
            value = metadata.get(key, "") if hasattr(metadata, "get") else ""
            if value is None or (isinstance(value, float) and math.isnan(value)):
                value = ""
            info[key] = str(value)
    if sample_id is not None:
        info["sample_id"] = str(sample_id)
    if not info["sample_id"]:
        info["sample_id"] = path.stem
    if not info["role"]:
        info["role"] = "sample"
    return info


def _build(
    path: Path,
    *,
    sample_id: str | None,
    panel: PanelLike,
    metadata: Mapping[str, Any] | pd.Series | None,
    dataset: int,
    required_markers: Iterable[str],
    preprocess: bool,
    nonfinite: str,
    max_parameters: int,
) -> ad.AnnData:
    meta = read_fcs_metadata(path, dataset=dataset, max_parameters=max_parameters)
    names = meta.pnn
    info = _sample_info(path, sample_id, metadata)
    species = info.get("species") or None
    user = _as_panel(panel)
    if user and (fit := fit_panel(user, [(names, meta.pns)])):
        warnings.warn(f"{path}: {fit.message('this file')}", PanelWarning, stacklevel=3)
    markers, clashes = resolve_with_conflicts(names, meta.pns, panel=user, species=species)
    required = [canonical_marker(m, species=species) for m in required_markers]
    if clashes:
        message = f"{path}: {conflict_message(clashes, names, meta.pns)}"
        if set(clashes) & set(required):
            raise PanelError(message)
        warnings.warn(message + "; left unresolved", NkflowWarning, stacklevel=3)
    missing = [m for m in required if not marker_equivalents(m) & set(markers)]
    if missing:
        have = [f"{m} ({c})" for m, c in zip(markers, names, strict=True) if m] or names
        raise ChannelNotFoundError(", ".join(missing), have, source=path)
    n_events = int(meta.n_events)
    described = channel_descriptors(meta.keywords, len(names))
    columns = {
        "marker": markers,
        "pns": [s.strip() for s in meta.pns],
        "kind": channel_kinds(names, meta.pns, described.get("type")),
        "range": np.asarray(meta.pnr, dtype=float),
        "transform": [""] * len(names),
    }
    columns.update(described)
    if len(set(meta.datatypes)) > 1:
        columns["datatype"] = list(meta.datatypes)
    var = pd.DataFrame(columns, index=pd.Index(names, dtype=object))
    fcs = {
        "version": meta.version,
        "n_events": n_events,
        "n_channels": int(meta.n_channels),
        "cyt": meta.cyt,
        "date": meta.date,
        "fil": meta.fil,
        "datatype": meta.datatype,
        "dataset": int(meta.dataset),
        "n_datasets": int(meta.n_datasets),
        "quirks": list(meta.quirks),
        "unstained_centers": meta.unstained_centers,
        "keywords": dict(meta.keywords),
    }
    record = {
        "version": _version(),
        "sample": info,
        "fcs": fcs,
        "spillover": parse_spillover(meta.keywords, names, meta.pns, path=str(path)),
        "marker_conflicts": {k: list(v) for k, v in clashes.items()},
        "technology": detect_technology(meta.keywords, names, meta.pns).to_dict(),
    }
    uns = {"nkflow": to_native(record)}  # in forms adata.write_h5ad writes (io.records)
    fcs = uns["nkflow"]["fcs"]  # the stored record, completed once DATA is decoded
    # AnnData validates a million obs_names (holding the GIL) while another thread
    # decodes DATA (numpy's file read and reductions release it): the two overlap.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="nkflow-decode") as pool:
        pending = pool.submit(_decode_checked, meta, preprocess, path, nonfinite)
        # a read-only zero-stride view of the right shape: no memory until X is set
        placeholder = np.broadcast_to(np.float32(0), (n_events, len(names)))
        adata = _anndata(placeholder, _obs(info, np.arange(n_events)), var, uns)
        x, keep = pending.result()
    fcs["quirks"] = list(meta.quirks)  # with those found in DATA (bits above $PnR)
    if keep is None and x.shape == placeholder.shape:
        adata.X = x
        return adata
    event_ids = np.arange(x.shape[0])
    if keep is not None:
        x, event_ids = x[keep], event_ids[keep]
    fcs["n_events"] = int(x.shape[0])
    return _anndata(x, _obs(info, event_ids), var, uns)


def _decode_checked(
    meta: Any, preprocess: bool, path: Path, nonfinite: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """The decoded events and the mask of finite events to keep (None: all)."""
    x = decode_events(meta, preprocess=preprocess)
    try:
        keep = _check_finite(x, meta.pnn, path, nonfinite)
    except FCSReadError:
        _refuse_wrong_byte_order(meta, path, x)
        raise
    if keep is not None:  # dropping events of a file read in the wrong order keeps garbage
        _refuse_wrong_byte_order(meta, path, x)
    return x, keep


def _refuse_wrong_byte_order(meta: Any, path: Path, x: np.ndarray) -> None:
    """Raise FCSReadError when the NaN/Inf values of ``x`` come from a wrong ``$BYTEORD``."""
    if byte_order_looks_swapped(meta):
        total, listing = _nonfinite_summary(~np.isfinite(x), meta.pnn)
        raise FCSReadError(
            path,
            f"{total} NaN/Inf event value(s) in {listing}, yet read in the opposite byte "
            "order every value is a finite number within its $PnR: the file's $BYTEORD "
            f"({meta.keywords.get('$BYTEORD', '?')}) is likely wrong, not its events; correct "
            "the keyword or export the file again (dropping events would keep misread values)",
        )


def _obs(info: dict[str, str], event_ids: np.ndarray) -> pd.DataFrame:
    n = len(event_ids)
    return pd.DataFrame(
        {"sample_id": pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), [info["sample_id"]])},
        index=_event_names(event_ids),
    )


def _anndata(x: np.ndarray, obs: pd.DataFrame, var: pd.DataFrame, uns: dict) -> ad.AnnData:
    """Build the AnnData; names are unique by construction, so skip anndata's re-check.

    Re-hashing a million ``obs_names`` costs several times the DATA decode itself.
    """
    with names_known_unique():
        return ad.AnnData(X=x, obs=obs, var=var, uns=uns)


def read_fcs(
    path: str | Path,
    *,
    sample_id: str | None = None,
    panel: PanelLike = None,
    metadata: Mapping[str, Any] | pd.Series | None = None,
    dataset: int = 0,
    required_markers: Iterable[str] = (),
    preprocess: bool = True,
    nonfinite: str = "raise",
    max_parameters: int = MAX_PARAMETERS,
) -> ad.AnnData:
    """Read one FCS data set into the nkflow container.

    Parameters
    ----------
    path
        FCS 2.0, 3.0, 3.1 or 3.2 file (``.fcs``, ``.lmd``, any name).
    sample_id
        Stored in ``obs["sample_id"]`` and ``uns["nkflow"]["sample"]``; defaults to the
        metadata row's ``sample_id``, then the file stem.
    panel
        A panel file path, a mapping ``channel -> marker`` or None; overrides the alias table
        for the channels it names (see :func:`nkflow.io.load_panel`).
    metadata
        One metadata-sheet row (mapping or Series) copied into ``uns["nkflow"]["sample"]``.
    dataset
        Which data set to read when the file holds several (``$NEXTDATA``).
    required_markers
        Canonical markers the analysis needs; a missing one raises
        :class:`ChannelNotFoundError` listing what the file has.
    preprocess
        Apply ``$PnE``/``$PnG``/``$TIMESTEP`` scaling as FlowKit does (default). ``False``
        keeps the stored channel values.
    nonfinite
        ``"raise"`` (default): NaN/Inf event values raise :class:`FCSReadError`.
        ``"drop"``: events holding them are dropped with a warning; ``obs_names`` keep the
        original event numbers.
    max_parameters
        Refuse (:class:`FCSReadError`) a file whose ``$PAR`` declares more parameters
        than this. The default, :data:`nkflow.io.fcs_text.MAX_PARAMETERS` (5,000), is
        ten times what spectral cytometers write (440+), so only damaged or hostile
        files hit it; everything downstream (QC, compensation, clustering) scales with
        the channel count.

    Returns
    -------
    anndata.AnnData
        ``X`` float32 linear events (not compensated), ``var`` with ``marker``, ``pns``,
        ``kind``, ``range``, ``transform``; ``obs["sample_id"]``; ``uns["nkflow"]`` with
        ``version``, ``sample``, ``fcs``, ``spillover`` and ``technology``
        (:func:`nkflow.io.detect_technology`: kind, evidence, implied defaults). FCS 3.2
        channel descriptions add ``var`` columns ``type`` (``$PnTYPE``: Forward_Scatter,
        Side_Scatter, Raw_Fluorescence, Unmixed_Fluorescence, Mass, Time, ...),
        ``detector`` (``$PnDET``), ``tag`` (``$PnTAG``), ``analyte`` (``$PnANALYTE``) and
        ``feature`` (``$PnFEATURE``: Area, Height, Width), each only when the file has it
        (``""`` for channels without); ``datatype`` (I/F/D) when ``$PnDATATYPE`` mixes
        data types. ``uns["nkflow"]["fcs"]["unstained_centers"]`` is ``$UNSTAINEDCENTERS``
        as ``{channel: value}`` (None when absent).

    Raises
    ------
    FCSReadError
        Anything unreadable: the message names the file and the problem.
    PanelError
        Two channels resolve to one required marker (other conflicts are left unresolved
        with a warning and listed in ``uns["nkflow"]["marker_conflicts"]``).
    ChannelNotFoundError
        A required marker is missing.
    ConfigError
        ``nonfinite`` is neither ``"raise"`` nor ``"drop"``.

    Warns
    -----
    FCSQuirkWarning
        Tolerated deviations from the standard (named).
    PanelWarning
        Once per call, when ``panel`` has rows naming no channel of the file (with the
        file's channel that differs only in case or punctuation, if any) or markers the
        alias table does not know (with the closest canonical marker, if any); such rows
        are ignored and such markers kept as written (:func:`nkflow.io.panel_fit.fit_panel`).
    """
    path = Path(path)
    if nonfinite not in ("raise", "drop"):
        raise ConfigError(f"nonfinite={nonfinite!r}; valid: 'raise', 'drop'")
    try:
        return _build(
            path,
            sample_id=sample_id,
            panel=panel,
            metadata=metadata,
            dataset=dataset,
            required_markers=required_markers,
            preprocess=preprocess,
            nonfinite=nonfinite,
            max_parameters=max_parameters,
        )
    except NkflowError:
        raise
    except MemoryError:
        raise FCSReadError(path, "not enough memory to hold the events") from None
    except _UNEXPECTED as exc:
        logger.debug("unexpected error reading %s", path, exc_info=True)
        raise FCSReadError(path, unexpected_reason(exc, "decoding events")) from None


def sample_info(adata: Any) -> dict[str, Any]:
    """The sample's metadata, ``uns["nkflow"]["sample"]`` (an empty dict when absent).

    Parameters
    ----------
    adata
        A container (docs/contracts.md).

    Returns
    -------
    dict
        A copy: sample_id, path, donor, tissue, timepoint, stimulation, role, ...
    """
    sample = nkflow_record(adata, "sample")
    return sample if isinstance(sample, dict) else {}


def sample_id(adata: Any, *, default: str = "", obs_key: str = "sample_id") -> str:
    """A container's sample id: ``uns["nkflow"]["sample"]``, else ``obs[obs_key]``, else default.

    Parameters
    ----------
    adata
        A container.
    default
        Returned when neither place names the sample.
    obs_key
        obs column holding the sample id (its first value is used).

    Returns
    -------
    str
    """
    sid = sample_info(adata).get("sample_id")
    if sid:
        return str(sid)
    if obs_key in adata.obs.columns and adata.n_obs:
        return str(adata.obs[obs_key].iloc[0])
    return default


def var_markers(adata: ad.AnnData) -> pd.Series:
    """Each channel's marker (index ``var_names``): ``var["marker"]``, else the channel name.

    An AnnData built by another tool has its markers as ``var_names`` (``"CD56"``) and no
    ``marker`` column: the one lookup :func:`channel_for`, the gating and the tools share.

    Parameters
    ----------
    adata
        Any container.

    Returns
    -------
    pandas.Series
        Marker names as strings (``""`` for a channel without one).
    """
    if "marker" in adata.var.columns:
        return adata.var["marker"].astype(str)
    return pd.Series(adata.var_names.astype(str), index=adata.var_names, dtype=object)


def channel_for(adata: ad.AnnData, marker: str) -> str:
    """Return the ``$PnN`` channel carrying a canonical marker.

    Parameters
    ----------
    adata
        A container from :func:`read_fcs` (or any AnnData: without ``var["marker"]`` only
        its ``var_names`` are looked up).
    marker
        Canonical marker name or an alias (``"NCAM1"`` finds ``CD56``). A channel name is
        accepted too and returned unchanged.

    Returns
    -------
    str
        The channel name (a ``var_names`` entry).

    Raises
    ------
    ChannelNotFoundError
        The sample has no such marker; the message lists what it has.
    PanelError
        The marker is on several channels (or was left in ``marker_conflicts`` by
        :func:`read_fcs`); a panel file must name the right one.
    """
    markers = var_markers(adata)
    wanted = canonical_marker(marker)
    same = marker_equivalents(wanted)
    hits = list(adata.var_names[markers.isin(same).to_numpy()])
    if not hits and marker in adata.var_names:
        return str(marker)
    if len(hits) == 1:
        return str(hits[0])
    source = sample_info(adata).get("sample_id")
    conflicts = nkflow_record(adata, "marker_conflicts") or {}
    clash = next((m for m in sorted(same) if m in conflicts), None)
    if len(hits) > 1 or clash is not None:
        chans = hits if len(hits) > 1 else list(conflicts[clash])
        raise PanelError(
            f"{source}: marker {wanted!r} is on several channels: {chans}; "
            "name the right one in a panel file"
        )
    have = [f"{m} ({c})" for c, m in zip(adata.var_names, markers, strict=True) if m]
    raise ChannelNotFoundError(marker, have or list(adata.var_names), source=source)
