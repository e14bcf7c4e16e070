"""Decode an FCS DATA segment into a float32 event matrix, fast.

Uniform layouts (all channels 8/16/32/64-bit integers, or float32/float64) are read with
one ``numpy.fromfile`` call straight into an array of the file's dtype; mixed widths use
a structured dtype; odd byte widths (24-bit, 40-bit ...) are assembled from their bytes.
Integer values are masked to the bits ``$PnR`` allows (next power of two), as the FCS
standard asks and as FlowIO does.

Then the same preprocessing FlowIO/FlowKit apply to "raw" events: log-amplified channels
(``$PnE`` = f1,f2 with f1 > 0) become linear ``f2 * 10 ** (f1 * v / $PnR)``, values are
divided by the gain ``$PnG`` (when not 0 or 1; never for the time channel), and the time
channel is multiplied by ``$TIMESTEP``. The result equals ``flowio.FlowData(...).as_array()``
cast to float32.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..exceptions import FCSQuirkWarning, FCSReadError
from .fcs_text import FCSMetadata

__all__ = ["decode_events", "time_channel_index"]

_UINT = {1: "u1", 2: "u2", 4: "u4", 8: "u8"}


def _next_power_of_2(x: float) -> int:
    n = int(np.ceil(x)) if x > 0 else 0
    if n <= 1:
        return 1
    return 1 << (n - 1).bit_length()


def time_channel_index(pnn: list[str]) -> int | None:
    """Index of the time channel as FlowIO finds it (last ``$PnN`` equal to 'time', any case)."""
    index = None
    for i, name in enumerate(pnn):
        if name.lower() == "time":
            index = i
    return index


def _read_block(meta: FCSMetadata, dtype: np.dtype, count: int) -> np.ndarray:
    try:
        with open(meta.path, "rb") as fh:
            fh.seek(meta.data_start)
            arr = np.fromfile(fh, dtype=dtype, count=count)
    except (OSError, ValueError) as exc:
        raise FCSReadError(meta.path, f"cannot read the DATA segment: {exc}") from None
    if arr.size != count:
        raise FCSReadError(
            meta.path,
            f"DATA segment is truncated: expected {count} values, found {arr.size}",
        )
    return arr


def _masks(meta: FCSMetadata) -> list[int | None]:
    """Per channel, the bit mask ``$PnR`` asks for, or None when no bit is to be dropped."""
    masks: list[int | None] = []
    for bits, rng in zip(meta.storage_bits, meta.pnr, strict=True):
        limit = _next_power_of_2(rng)
        masks.append(limit - 1 if limit < (1 << bits) else None)
    return masks


def _int_matrix(meta: FCSMetadata, dtype: type) -> np.ndarray:
    """Decode integer data of any byte widths, masked, into a float matrix of ``dtype``."""
    n, p, order = meta.n_events, meta.n_channels, meta.byteorder
    widths = [b // 8 for b in meta.storage_bits]
    masks = _masks(meta)
    if all(w in _UINT for w in widths) and len(set(widths)) == 1:
        code = order + _UINT[widths[0]]
        mat = _read_block(meta, np.dtype(code), n * p).reshape(n, p)
        if any(m is not None for m in masks):
            full = (1 << meta.storage_bits[0]) - 1
            vec = np.array([full if m is None else m for m in masks], dtype=mat.dtype)
            mat = mat & vec
        return mat.astype(dtype)
    if all(w in _UINT for w in widths):
        rec_dtype = np.dtype([(f"c{j}", order + _UINT[w]) for j, w in enumerate(widths)])
        rec = _read_block(meta, rec_dtype, n)
        cols = [rec[f"c{j}"] for j in range(p)]
    else:
        raw = _read_block(meta, np.dtype("u1"), n * meta.event_bytes).reshape(n, meta.event_bytes)
        cols = []
        pos = 0
        for w in widths:
            block = raw[:, pos : pos + w].astype(np.uint64)
            pos += w
            value = np.zeros(n, dtype=np.uint64)
            byte_order = range(w) if order == ">" else range(w - 1, -1, -1)
            for k in byte_order:
                value = (value << np.uint64(8)) | block[:, k]
            cols.append(value)
    out = np.empty((n, p), dtype=dtype)
    for j, col in enumerate(cols):
        mask = masks[j]
        out[:, j] = col if mask is None else (col & col.dtype.type(mask))
    return out


def _decode_raw(meta: FCSMetadata, int_dtype: type = np.float32) -> np.ndarray:
    """Return the (events, channels) matrix before preprocessing (file dtype or float32)."""
    n, p = meta.n_events, meta.n_channels
    if meta.datatype in ("F", "D"):
        code = "f4" if meta.datatype == "F" else "f8"
        flat = _read_block(meta, np.dtype(meta.byteorder + code), n * p)
        return flat.reshape(n, p)
    return _int_matrix(meta, int_dtype)


def decode_events(meta: FCSMetadata, *, preprocess: bool = True) -> np.ndarray:
    """Decode the DATA segment described by ``meta`` into a float32 matrix.

    Parameters
    ----------
    meta
        From :func:`nkflow.io.read_fcs_metadata`.
    preprocess
        Apply ``$PnE`` anti-log, ``$PnG`` gain and ``$TIMESTEP`` scaling (FlowKit's "raw"
        events). ``False`` returns the stored channel values.

    Returns
    -------
    numpy.ndarray
        float32, shape (``n_events``, ``n_channels``), C-contiguous.
    """
    if not preprocess:
        return np.ascontiguousarray(_decode_raw(meta), dtype=np.float32)
    time_idx = time_channel_index(meta.pnn)
    timestep = 1.0
    if time_idx is not None:
        raw = meta.keywords.get("$TIMESTEP", "").strip()
        try:
            timestep = float(raw) if raw else 1.0
        except ValueError:
            timestep = float("nan")
        if not np.isfinite(timestep):
            warnings.warn(
                f"{meta.path}: $TIMESTEP={raw[:20]!r} is not a number; time not scaled",
                FCSQuirkWarning,
                stacklevel=3,
            )
            timestep = 1.0
    scale_cols: dict[int, tuple[float, float, float, float]] = {}
    for j in range(meta.n_channels):
        decades, log0 = meta.pne[j]
        gain = 1.0 if j == time_idx else meta.png[j]
        step = timestep if j == time_idx else 1.0
        has_gain = gain not in (0.0, 1.0)
        if decades > 0 or has_gain or step != 1.0:
            scale_cols[j] = (decades, log0, gain if has_gain else 1.0, step)
    # Integers wider than 24 bits are not exact in float32: scale them from float64.
    exact = any(meta.storage_bits[j] > 24 for j in scale_cols) and meta.datatype == "I"
    mat = _decode_raw(meta, np.float64 if exact else np.float32)
    needs_copy = bool(scale_cols) or mat.dtype != np.float32 or not mat.dtype.isnative
    out = mat.astype(np.float32) if needs_copy else mat
    for j, (decades, log0, gain, step) in scale_cols.items():
        col = mat[:, j].astype(np.float64)
        if step != 1.0:
            col = col * step
        if decades > 0:
            rng = meta.pnr[j]
            if rng <= 0:
                raise FCSReadError(
                    meta.path, f"$P{j + 1}E is logarithmic but $P{j + 1}R={rng:g} is not positive"
                )
            with np.errstate(over="ignore"):
                col = 10.0 ** (decades * col / rng) * log0
        if gain != 1.0:
            col = col / gain
        out[:, j] = col
    return out
