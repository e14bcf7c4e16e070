"""Logicle and arcsinh transforms: array functions and the container step.

``logicle`` equals flowkit's ``LogicleTransform`` (flowutils, Moore's reference code):
to double precision for float64 input, and to float32 resolution for float32 input
through a table look-up that needs no search (see :mod:`nkflow.pp._logicle`).

``transform(adata)`` (``method="auto"``) takes the method from the technology
:func:`nkflow.io.read_fcs` recorded (:mod:`nkflow.io.technology`): arcsinh with cofactor 5
for mass cytometry, logicle for conventional and spectral flow.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from anndata import AnnData

from nkflow._threads import run_row_ranges
from nkflow.exceptions import ChannelNotFoundError, ConfigError, NkflowWarning
from nkflow.io.fcs import channel_for
from nkflow.io.records import (
    decoded_at,
    nkflow_record,
    restore_records,
    set_record,
)
from nkflow.io.technology import technology_of
from nkflow.pp import _logicle
from nkflow.pp.compensate import _column_runs

__all__ = [
    "arcsinh",
    "arcsinh_inverse",
    "estimate_logicle_w",
    "from_linear",
    "logicle",
    "logicle_inverse",
    "to_linear",
    "transform",
]

log = logging.getLogger(__name__)

#: Rows processed at a time: blocks stay in the CPU cache between numpy passes (4096
#: rows x 16 channels of the logicle path's temporaries are ~1.5 MB; 2048 rows cost
#: 36 -> 42 ms per 1M x 16 on 2 threads, as the per-call overhead doubles).
CHUNK_ROWS = 4096

_METHODS = ("logicle", "arcsinh")
_CHOICES = ("auto", *_METHODS)
_LOGICLE_KEYS = ("T", "W", "M", "A")
LogicleKey = tuple[float, float, float, float]


def logicle(
    values: np.ndarray | Sequence[float],
    *,
    T: float = 262144.0,
    W: float = 0.5,
    M: float = 4.5,
    A: float = 0.0,
) -> np.ndarray:
    """Logicle transform (Parks, Roederer & Moore 2006) of data values.

    Parameters
    ----------
    values
        Linear data values, any shape. float32 input takes the fast table path and
        returns float32; anything else is solved in float64 to double precision.
    T
        Top of the data scale (maps to 1.0).
    W
        Width of the linear region, in decades (0 <= W <= M/2).
    M
        Number of decades of the full scale.
    A
        Additional negative decades (-W <= A <= M - 2W).

    Returns
    -------
    numpy.ndarray
        Scale values (1.0 at ``T``, ``W/(M+A)`` + ``A/(M+A)`` at zero), same shape.

    Raises
    ------
    ConfigError
        When the parameters violate the constraints above.
    """
    p = _logicle.logicle_params(T, W, M, A)
    arr = np.asarray(values)
    if arr.dtype == np.float32:
        out = np.empty(arr.shape, dtype=np.float32)
        flat_in = arr.reshape(-1)
        flat_out = out.reshape(-1)
        step = CHUNK_ROWS * 16
        for start in range(0, flat_in.size, step):
            _logicle.scale_float32(p, flat_in[start : start + step], flat_out[start : start + step])
        return out
    v = arr.astype(np.float64)
    start = np.empty(v.shape, dtype=np.float32)
    _logicle.scale_float32(p, v.astype(np.float32).reshape(-1), start.reshape(-1))
    return _logicle.scale_exact(p, v, start=start)


def logicle_inverse(
    values: np.ndarray | Sequence[float],
    *,
    T: float = 262144.0,
    W: float = 0.5,
    M: float = 4.5,
    A: float = 0.0,
) -> np.ndarray:
    """Inverse logicle: scale values back to linear data values.

    Parameters
    ----------
    values
        Logicle scale values, any shape.
    T, W, M, A
        The parameters used by :func:`logicle`.

    Returns
    -------
    numpy.ndarray
        Linear data values; float32 for float32 input, else float64.
    """
    p = _logicle.logicle_params(T, W, M, A)
    arr = np.asarray(values)
    out = _logicle.inverse(p, arr)
    return out.astype(np.float32) if arr.dtype == np.float32 else out


def to_linear(
    values: np.ndarray | Sequence[float], channel: str, record: Mapping[str, Any]
) -> np.ndarray | None:
    """Values on a channel's transformed scale back in the instrument's linear units.

    Parameters
    ----------
    values
        Transformed values (a threshold, its interval, a median).
    channel
        The ``$PnN`` channel they belong to.
    record
        The container's transform record, ``uns["nkflow"]["transform"]`` (also kept in
        a pipeline sample's ``result.json``).

    Returns
    -------
    numpy.ndarray or None
        Linear values (float64), or ``None`` when the record has no parameters for the
        channel (it was not transformed, e.g. scatter: its values are already linear).
    """
    return _recorded(values, channel, record, inverse=True)


def from_linear(
    values: np.ndarray | Sequence[float], channel: str, record: Mapping[str, Any]
) -> np.ndarray | None:
    """Linear values on a channel's transformed scale (the inverse of :func:`to_linear`).

    Used to place axis ticks at linear decades (``10^2``, ``10^3`` ...) on plots of
    transformed data.

    Parameters
    ----------
    values
        Values in the instrument's linear units (compensated, as the transform saw them).
    channel
        The ``$PnN`` channel they belong to.
    record
        The container's transform record, ``uns["nkflow"]["transform"]`` (also kept in
        a pipeline sample's ``result.json``): ``kind`` (logicle or arcsinh) and the
        channel's ``params``.

    Returns
    -------
    numpy.ndarray or None
        Transformed values (float64), or ``None`` when the record has no parameters for
        the channel (it was not transformed, e.g. scatter: its values stay linear).
    """
    return _recorded(values, channel, record, inverse=False)


def _recorded(
    values: np.ndarray | Sequence[float], channel: str, record: Mapping[str, Any], *, inverse: bool
) -> np.ndarray | None:
    """The channel's recorded transform (or its inverse) applied to ``values``, as float64."""
    # as stored, as read back from an .h5ad, or plain: only the channel's part decoded
    params = decoded_at(record, "params", channel)
    if not params:
        return None
    arr = np.asarray(values, dtype=np.float64)
    if decoded_at(record, "kind") == "arcsinh":
        fn = arcsinh_inverse if inverse else arcsinh
        return fn(arr, cofactor=float(params["cofactor"]))
    fn = logicle_inverse if inverse else logicle
    return fn(arr, **{k: float(params[k]) for k in _LOGICLE_KEYS})


def _check_cofactor(cofactor: float) -> float:
    c = float(cofactor)
    if not (c > 0 and math.isfinite(c)):
        raise ConfigError(f"arcsinh cofactor must be a positive number, got {cofactor!r}")
    return c


def arcsinh(values: np.ndarray | Sequence[float], *, cofactor: float = 150.0) -> np.ndarray:
    """Inverse hyperbolic sine transform ``asinh(x / cofactor)``.

    Parameters
    ----------
    values
        Linear data values, any shape.
    cofactor
        Width of the linear region around zero: 150 is usual for fluorescence flow
        cytometry, 5 for mass cytometry.

    Returns
    -------
    numpy.ndarray
        Transformed values; float32 for float32 input, else float64.
    """
    c = _check_cofactor(cofactor)
    arr = np.asarray(values)
    if arr.dtype == np.float32:
        return np.arcsinh(arr * np.float32(1.0 / c))
    return np.arcsinh(arr.astype(np.float64) / c)


def arcsinh_inverse(values: np.ndarray | Sequence[float], *, cofactor: float = 150.0) -> np.ndarray:
    """Inverse of :func:`arcsinh`: ``cofactor * sinh(y)``.

    Parameters
    ----------
    values
        Transformed values.
    cofactor
        The cofactor used by :func:`arcsinh`.

    Returns
    -------
    numpy.ndarray
        Linear values; float32 for float32 input, else float64.
    """
    c = _check_cofactor(cofactor)
    arr = np.asarray(values)
    if arr.dtype == np.float32:
        return (np.sinh(arr) * np.float32(c)).astype(np.float32)
    return np.sinh(arr.astype(np.float64)) * c


def estimate_logicle_w(
    values: np.ndarray | Sequence[float],
    *,
    T: float = 262144.0,
    M: float = 4.5,
    percentile: float = 5.0,
) -> float:
    """Estimate the logicle width ``W`` from the negative data (Parks et al. 2006).

    ``W = (M - log10(T / |r|)) / 2`` where ``r`` is the given low percentile of the
    negative values, so that the negative spread fits in the linear region.

    Parameters
    ----------
    values
        Compensated linear values of one channel.
    T
        Top of scale.
    M
        Decades of the full scale.
    percentile
        Percentile (0-100) of the negative values taken as ``r``.

    Returns
    -------
    float
        ``W`` clipped to ``[0, M/2]``; 0 when there are no negative values.

    Raises
    ------
    ConfigError
        ``percentile`` is not in (0, 100).
    """
    if not 0 < percentile < 100:
        raise ConfigError(f"percentile must lie in (0, 100), got {percentile!r}")
    v = np.asarray(values, dtype=np.float64).ravel()
    neg = v[np.isfinite(v) & (v < 0)]
    if neg.size == 0:
        return 0.0
    r = float(np.percentile(neg, percentile))
    if r >= 0:
        return 0.0
    w = (float(M) - math.log10(float(T) / abs(r))) / 2.0
    return float(min(max(w, 0.0), float(M) / 2.0))


def _default_channels(adata: AnnData) -> list[str]:
    if "kind" in adata.var.columns:
        return [
            str(c)
            for c, k in zip(adata.var_names, adata.var["kind"], strict=True)
            if k == "fluorescence"
        ]
    skip = ("FSC", "SSC", "TIME")
    return [str(c) for c in adata.var_names if not str(c).upper().startswith(skip)]


def _channel_of(adata: AnnData, name: Any, col: Mapping[str, int]) -> str:
    """A channel name as given, else the channel of a marker (``"CD56"`` -> its ``$PnN``)."""
    name = str(name)
    return name if name in col else channel_for(adata, name)


def _file_name(adata: AnnData) -> str:
    """The sample's file when known (errors name it), else its name."""
    return str((nkflow_record(adata, "sample") or {}).get("path") or _sample_name(adata))


def _sample_name(adata: AnnData) -> str:
    sample = nkflow_record(adata, "sample") or {}
    return str(sample.get("sample_id") or sample.get("path") or "<sample>")


def _channel_params(
    method: str,
    channels: list[str],
    src: np.ndarray,
    col: dict[str, int],
    defaults: dict[str, float],
    overrides: Mapping[str, Mapping[str, float]],
    estimate_w: bool,
    percentile: float,
    sample: str,
) -> dict[str, dict[str, float]]:
    allowed = _LOGICLE_KEYS if method == "logicle" else ("cofactor",)
    for ch, over in overrides.items():
        if ch not in col:
            raise ChannelNotFoundError(ch, list(col), source=sample)
        bad = sorted(set(over) - set(allowed))
        if bad:
            raise ConfigError(
                f"{sample}: transform parameter(s) {bad} for channel {ch!r} are not valid "
                f"for {method}; valid: {list(allowed)}"
            )
    params: dict[str, dict[str, float]] = {}
    for ch in channels:
        p = {k: float(defaults[k]) for k in allowed}
        over = dict(overrides.get(ch, {}))
        if method == "logicle" and estimate_w and "W" not in over:
            p["W"] = estimate_logicle_w(
                src[:, col[ch]],
                T=over.get("T", p["T"]),
                M=over.get("M", p["M"]),
                percentile=percentile,
            )
            if p["A"] < -p["W"]:
                p["A"] = -p["W"]
        p.update({k: float(v) for k, v in over.items()})
        if method == "logicle":
            _logicle.logicle_params(p["T"], p["W"], p["M"], p["A"])  # validates
        else:
            _check_cofactor(p["cofactor"])
        params[ch] = p
    return params


def _transform_rows(
    src: np.ndarray,
    out: np.ndarray,
    idx: np.ndarray,
    fn: Callable[[np.ndarray, np.ndarray], None],
    n_threads: int | None,
) -> None:
    """``out[:, idx] = fn(src[:, idx])`` and ``out[:, other] = src[:, other]``, by row chunks."""
    other = _column_runs(np.setdiff1d(np.arange(src.shape[1]), idx))
    span = slice(int(idx[0]), int(idx[0]) + idx.size)
    contiguous = np.array_equal(idx, np.arange(span.start, span.stop))

    def work(lo: int, hi: int) -> None:
        for start in range(lo, hi, CHUNK_ROWS):
            stop = min(hi, start + CHUNK_ROWS)
            for sl in other:
                out[start:stop, sl] = src[start:stop, sl]
            if contiguous:
                fn(src[start:stop, span], out[start:stop, span])
            else:
                res = np.empty((stop - start, idx.size), dtype=np.float32)
                fn(np.take(src[start:stop], idx, axis=1), res)
                out[start:stop, idx] = res

    run_row_ranges(src.shape[0], work, n_threads=n_threads)


def _logicle_fn(keys: list[LogicleKey]) -> Callable[[np.ndarray, np.ndarray], None]:
    groups: dict[LogicleKey, list[int]] = {}
    for j, key in enumerate(keys):
        groups.setdefault(key, []).append(j)
    consts = {key: _logicle.logicle_params(*key) for key in groups}
    for const in consts.values():
        _logicle._table(const)  # built once here, not by each row thread at the same time
    if len(groups) == 1:
        only = consts[keys[0]]
        return lambda block, res: _logicle.scale_float32(only, block, res)

    def fn(block: np.ndarray, res: np.ndarray) -> None:
        for key, js in groups.items():
            sub = np.empty((block.shape[0], len(js)), dtype=np.float32)
            _logicle.scale_float32(consts[key], block[:, js], sub)
            res[:, js] = sub

    return fn


def _arcsinh_fn(cofactors: list[float]) -> Callable[[np.ndarray, np.ndarray], None]:
    inv = (1.0 / np.asarray(cofactors, dtype=np.float64)).astype(np.float32)

    def fn(block: np.ndarray, res: np.ndarray) -> None:
        np.multiply(block, inv, out=res)
        np.arcsinh(res, out=res)

    return fn


def _warn_if_uncompensated(adata: AnnData, default: str, sample: str) -> None:
    """Warn when a file that carries a spillover matrix is transformed uncompensated."""
    if (
        default == "file"
        and nkflow_record(adata, "spillover")
        and not nkflow_record(adata, "compensation")
    ):
        warnings.warn(
            f"{sample}: transformed without compensation although the file carries a "
            "spillover matrix; run nk.pp.compensate(adata) first (matrix='none' to leave it "
            "uncompensated on purpose)",
            NkflowWarning,
            stacklevel=3,
        )


def transform(
    adata: AnnData,
    *,
    method: Literal["auto", "logicle", "arcsinh"] = "auto",
    channels: Sequence[str] | None = None,
    params: Mapping[str, Mapping[str, float]] | None = None,
    estimate_w: bool = False,
    T: float = 262144.0,
    W: float = 0.5,
    M: float = 4.5,
    A: float = 0.0,
    cofactor: float | None = None,
    percentile: float = 5.0,
    inplace: bool = True,
    n_threads: int | None = None,
) -> AnnData | None:
    """Transform fluorescence channels to the logicle or arcsinh scale.

    Reads ``layers["compensated"]`` when present (else ``X``), writes float32 ``X``
    with the chosen channels transformed and the others linear, sets
    ``var["transform"]`` and records every parameter in
    ``uns["nkflow"]["transform"] = {kind, requested, reason, params: {channel: {...}}}``
    (``requested`` is the ``method`` asked for, ``reason`` why ``kind`` was chosen).

    Parameters
    ----------
    adata
        The sample container.
    method
        ``"auto"`` (default: the recorded technology's transform, arcsinh for mass
        cytometry and logicle otherwise; see :func:`nkflow.io.technology_of`),
        ``"logicle"`` or ``"arcsinh"``.
    channels
        Channels to transform, as ``$PnN`` names or markers (``"CD56"``, looked up as
        :func:`nkflow.io.channel_for` does); default all channels of kind ``fluorescence``.
    params
        Per-channel overrides, e.g. ``{"PE-A": {"W": 0.8}}`` or ``{"Yb173Di": {"cofactor": 5}}``
        (keys are channels or markers, as in ``channels``).
    estimate_w
        Logicle only: estimate ``W`` per channel from its negative data
        (:func:`estimate_logicle_w`) unless given in ``params``.
    T, W, M, A
        Default logicle parameters.
    cofactor
        Default arcsinh cofactor; None (default) takes the recorded technology's: 5 for
        mass cytometry, 150 otherwise.
    percentile
        Percentile of negative data for ``estimate_w``.
    inplace
        Modify ``adata`` and return None; else return a transformed copy.
    n_threads
        Threads sharing the events (default: every core, or the worker's share inside
        :class:`nkflow.parallel.SampleExecutor`; ``NKFLOW_NUM_THREADS`` overrides). The
        result does not depend on it.

    Returns
    -------
    AnnData or None
        The transformed copy when ``inplace=False``.

    Raises
    ------
    ConfigError
        Unknown method, invalid parameters, ``X`` already transformed without a
        ``compensated`` layer to start again from, or the sample already gated (its gates
        and cut-offs are on the scale it has). Nothing is changed.
    ChannelNotFoundError
        A channel in ``channels`` or ``params`` is not in the sample.
    TransformedDataError
        The file's values are already transformed (technology ``transformed_export``),
        whatever ``method`` says: the message names the file, the evidence and what to
        export instead.

    Warns
    -----
    NkflowWarning
        The file carries a spillover matrix, its technology is compensated by default,
        and :func:`~nkflow.pp.compensate` was not run.
    """
    if method not in _CHOICES:
        raise ConfigError(f"unknown transform method {method!r}; valid: {list(_CHOICES)}")
    restore_records(adata)  # a file read by plain anndata.read_h5ad: its records come back
    requested = method
    tech = technology_of(adata)
    refused = tech.refusal(_file_name(adata)) if tech.transform == "refuse" else None
    if refused is not None:
        raise refused
    if nkflow_record(adata, "gating"):  # its gates and cut-offs are on the current scale
        raise ConfigError(
            f"{_sample_name(adata)}: already gated on its transformed values (the gates and "
            "cut-offs in uns['nkflow'] are on that scale); a new transform would leave them "
            "on the old one: transform before gating, or read the file again"
        )
    reason = f"{method} requested" if method != "auto" else ""
    method, chosen = tech.transform_for(method, cofactor)
    reason = reason or f"{tech.label}: {method} by default"
    if cofactor is None and method == "arcsinh":
        reason += f", cofactor {chosen:g} for {tech.label}"
    cofactor = chosen
    sample = _sample_name(adata)
    col = {str(c): i for i, c in enumerate(adata.var_names)}
    chans = (
        _default_channels(adata)
        if channels is None
        else [_channel_of(adata, c, col) for c in channels]
    )
    params = {_channel_of(adata, ch, col): over for ch, over in (params or {}).items()}
    if "compensated" in adata.layers:
        src = adata.layers["compensated"]
    else:
        _warn_if_uncompensated(adata, tech.compensation, sample)
        done = adata.var["transform"] if "transform" in adata.var.columns else None
        if done is not None and done.isin(list(_METHODS)).any():
            raise ConfigError(
                f"{sample}: X is already transformed and there is no layers['compensated'] "
                "to transform from; transform the original data instead"
            )
        src = adata.X
    src = np.asarray(src, dtype=np.float32)
    defaults = {"T": T, "W": W, "M": M, "A": A, "cofactor": cofactor}
    per = _channel_params(method, chans, src, col, defaults, params, estimate_w, percentile, sample)
    if not inplace:
        adata = adata.copy()
    idx = np.array([col[c] for c in chans], dtype=np.intp)
    if idx.size:
        out = np.empty(src.shape, dtype=np.float32)
        if method == "logicle":
            keys = [tuple(per[c][k] for k in _LOGICLE_KEYS) for c in chans]
            fn = _logicle_fn(keys)  # type: ignore[arg-type]
        else:
            fn = _arcsinh_fn([per[c]["cofactor"] for c in chans])
        _transform_rows(src, out, idx, fn, n_threads)
    else:
        out = np.array(src, dtype=np.float32, copy=True)
    adata.X = out
    kinds = ["linear"] * adata.n_vars
    for c in chans:
        kinds[col[c]] = method
    adata.var["transform"] = kinds
    record: dict[str, Any] = {
        "kind": method,
        "requested": requested,
        "reason": reason,
        "params": per,
        "estimate_w": bool(estimate_w),
    }
    if estimate_w:
        record["percentile"] = float(percentile)
    set_record(adata, "transform", record)
    log.info("%s: %s transform of %d channel(s)", sample, method, len(chans))
    return None if inplace else adata
