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
from .fcs_keywords import number_value
from .fcs_text import FCSMetadata

__all__ = ["byte_order_looks_swapped", "decode_events", "time_channel_index"]

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
    """Per channel, the bit mask ``$PnR`` asks for, or None when no bit is to be dropped.

    Only integer channels are masked; float channels (``$PnDATATYPE`` F/D) never are.
    """
    masks: list[int | None] = []
    for bits, rng, kind in zip(meta.storage_bits, meta.pnr, meta.datatypes, strict=True):
        limit = _next_power_of_2(rng)
        masks.append(limit - 1 if kind == "I" and limit < (1 << bits) else None)
    return masks


def _warn_masked_bits(meta: FCSMetadata, highest: dict[int, int], masks: list) -> None:
    """Say once per read that set bits above ``$PnR`` were masked away, naming the channels.

    ``highest`` holds each masked channel's largest stored value before masking. Old
    list-mode writers (Coulter System II, some Navios LMD files) keep other information
    in the bits above the ADC range; masking drops it, as :func:`_masks` says.
    """
    over = [(j, v) for j, v in highest.items() if v > masks[j]]
    if not over:
        return
    shown = ", ".join(
        f"{meta.pnn[j]} up to {v} > $P{j + 1}R {meta.pnr[j]:.12g}" for j, v in over[:3]
    )
    more = f" ... ({len(over)} channels in all)" if len(over) > 3 else ""
    j = over[0][0]
    message = (
        f"bits above $PnR set in {len(over)} integer channel(s) ({shown}{more}); masked "
        f"away, keeping the bits $PnR covers ({int(masks[j]).bit_length()} for "
        f"{meta.pnr[j]:.12g})"
    )
    meta.quirks.append(message)
    warnings.warn(f"{meta.path}: {message}", FCSQuirkWarning, stacklevel=4)


def _field_code(order: str, kind: str, width: int) -> str:
    return order + (f"f{width}" if kind in ("F", "D") else _UINT[width])


def _columns(meta: FCSMetadata) -> list[np.ndarray]:
    """Every channel's values (masked integers or floats) for layouts that are not uniform.

    Whole-byte widths are read with one structured dtype; odd widths (24, 40 ... bits)
    are assembled from their bytes. Float channels (FCS 3.2 ``$PnDATATYPE`` F/D) may
    sit between integer ones.
    """
    n, order = meta.n_events, meta.byteorder
    widths = [b // 8 for b in meta.storage_bits]
    kinds = meta.datatypes
    if all(w in _UINT for w in widths):
        fields = [
            (f"c{j}", _field_code(order, k, w))
            for j, (k, w) in enumerate(zip(kinds, widths, strict=True))
        ]
        rec = _read_block(meta, np.dtype(fields), n)
        cols = [rec[name] for name, _ in fields]
    else:
        raw = _read_block(meta, np.dtype("u1"), n * meta.event_bytes).reshape(n, meta.event_bytes)
        cols = []
        pos = 0
        for kind, w in zip(kinds, widths, strict=True):
            block = raw[:, pos : pos + w]
            pos += w
            if kind in ("F", "D"):
                cols.append(np.ascontiguousarray(block).view(order + f"f{w}").reshape(n))
                continue
            block = block.astype(np.uint64)
            value = np.zeros(n, dtype=np.uint64)
            byte_order = range(w) if order == ">" else range(w - 1, -1, -1)
            for k in byte_order:
                value = (value << np.uint64(8)) | block[:, k]
            cols.append(value)
    masks = _masks(meta)
    highest = {j: int(cols[j].max()) for j, m in enumerate(masks) if m is not None and n}
    _warn_masked_bits(meta, highest, masks)
    for j, mask in enumerate(masks):
        if mask is not None:
            cols[j] = cols[j] & cols[j].dtype.type(mask)
    return cols


def _decode_raw(meta: FCSMetadata, int_dtype: type = np.float32) -> np.ndarray:
    """Return the (events, channels) matrix before preprocessing (file dtype or float).

    Integer and mixed layouts come back as ``int_dtype`` (float64 when a channel is
    double precision, so no value is rounded twice).
    """
    n, p = meta.n_events, meta.n_channels
    kinds = set(meta.datatypes)
    if kinds in ({"F"}, {"D"}):
        code = "f4" if kinds == {"F"} else "f8"
        flat = _read_block(meta, np.dtype(meta.byteorder + code), n * p)
        return flat.reshape(n, p)
    widths = {b // 8 for b in meta.storage_bits}
    if kinds == {"I"} and len(widths) == 1 and next(iter(widths)) in _UINT:
        code = meta.byteorder + _UINT[next(iter(widths))]
        mat = _read_block(meta, np.dtype(code), n * p).reshape(n, p)
        masks = _masks(meta)
        if any(m is not None for m in masks):
            full = (1 << meta.storage_bits[0]) - 1
            vec = np.array([full if m is None else m for m in masks], dtype=mat.dtype)
            if n:
                top = mat.max(axis=0)
                highest = {j: int(top[j]) for j, m in enumerate(masks) if m is not None}
                _warn_masked_bits(meta, highest, masks)
            mat = mat & vec
        return mat.astype(int_dtype)
    out = np.empty((n, p), dtype=np.float64 if "D" in kinds else int_dtype)
    for j, col in enumerate(_columns(meta)):
        out[:, j] = col
    return out


_CHUNK_VALUES = 1 << 18


def _scale(
    mat: np.ndarray, out: np.ndarray, cols: np.ndarray, params: np.ndarray, meta: FCSMetadata
) -> None:
    """Write scaled ``mat[:, cols]`` into ``out[:, cols]``, vectorised over channels.

    ``params`` holds one row per scaled channel: decades, log0, gain, time step, range.
    Rows are processed in blocks of about 256k values, so the float64 work arrays stay
    in cache however many events and channels the file has: the cost is linear in
    events x scaled channels.
    """
    decades, log0, gain, step, rng = (params[:, k] for k in range(5))
    logs = np.flatnonzero(decades > 0)
    bad = logs[rng[logs] <= 0]
    if bad.size:
        j = int(cols[bad[0]])
        raise FCSReadError(
            meta.path, f"$P{j + 1}E is logarithmic but $P{j + 1}R={meta.pnr[j]:g} is not positive"
        )
    every = len(cols) == mat.shape[1]
    scaled_step = bool((step != 1.0).any())
    rows = max(1, _CHUNK_VALUES // len(cols))
    for lo in range(0, mat.shape[0], rows):
        part = mat[lo : lo + rows] if every else mat[lo : lo + rows, cols]
        block = part.astype(np.float64)
        if scaled_step:
            block *= step
        if logs.size:
            with np.errstate(over="ignore", invalid="ignore"):
                block[:, logs] = 10.0 ** (decades[logs] * block[:, logs] / rng[logs]) * log0[logs]
        block /= gain
        if every:
            out[lo : lo + rows] = block
        else:
            out[lo : lo + rows, cols] = block


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
        parsed = number_value(raw, 1.0)
        timestep = float("nan") if parsed is None else parsed
        if not np.isfinite(timestep):
            warnings.warn(
                f"{meta.path}: $TIMESTEP={raw[:20]!r} is not a number; time not scaled",
                FCSQuirkWarning,
                stacklevel=3,
            )
            timestep = 1.0
    params: list[tuple[float, float, float, float, float]] = []
    cols: list[int] = []
    for j in range(meta.n_channels):
        decades, log0 = meta.pne[j]
        gain = 1.0 if j == time_idx else meta.png[j]
        step = timestep if j == time_idx else 1.0
        has_gain = gain not in (0.0, 1.0)
        if decades > 0 or has_gain or step != 1.0:
            cols.append(j)
            params.append((decades, log0, gain if has_gain else 1.0, step, meta.pnr[j]))
    # Integers wider than 24 bits are not exact in float32: scale them from float64.
    exact = any(meta.datatypes[j] == "I" and meta.storage_bits[j] > 24 for j in cols)
    mat = _decode_raw(meta, np.float64 if exact else np.float32)
    needs_copy = bool(cols) or mat.dtype != np.float32 or not mat.dtype.isnative
    out = mat.astype(np.float32) if needs_copy else mat
    if cols:
        _scale(mat, out, np.asarray(cols), np.asarray(params, dtype=np.float64), meta)
    return out


def byte_order_looks_swapped(meta: FCSMetadata, *, events: int = 10_000) -> bool:
    """Whether float DATA reads as data in the other byte order than ``$BYTEORD``, not its own.

    Floats read in the wrong byte order scatter over every channel as NaN, Inf and values
    dozens of orders of magnitude off. Both must hold on the first ``events`` events:

    - in the declared order, at least 1 % of the values are NaN/Inf or beyond ten times
      their channel's ``$PnR`` (one stray NaN of a good file never is);
    - in the opposite order every value is finite and within ten times its ``$PnR``, and
      at most 1 % of the non-zero ones are below a millionth of it (whole-number floats of
      a good file, swapped, turn into such tiny subnormal numbers).

    Integer layouts have no NaN to tell it by: False.

    Parameters
    ----------
    meta
        From :func:`nkflow.io.read_fcs_metadata`.
    events
        How many events, from the start of DATA, to look at.

    Returns
    -------
    bool
    """
    kinds = set(meta.datatypes)
    if kinds not in ({"F"}, {"D"}) or meta.n_events == 0:
        return False
    code = "f4" if kinds == {"F"} else "f8"
    n, p = min(meta.n_events, events), meta.n_channels
    ranges = np.asarray(meta.pnr, dtype=np.float64)
    ranges = np.where(np.isfinite(ranges) & (ranges > 0), ranges, np.inf)
    declared = np.dtype(meta.byteorder + code)

    def read(dtype: np.dtype) -> np.ndarray:
        return _read_block(meta, dtype, n * p).reshape(n, p).astype(np.float64)

    with np.errstate(invalid="ignore", over="ignore"):
        own = np.abs(read(declared))
        if np.mean(~(own <= 10.0 * ranges)) < 0.01:  # NaN compares False: counted as bad
            return False
        other = np.abs(read(declared.newbyteorder()))
        if not (other <= 10.0 * ranges).all():
            return False
        nonzero = other[other > 0]
        tiny = (nonzero < 1e-6 * np.broadcast_to(ranges, other.shape)[other > 0]).mean()
    return bool(nonzero.size == 0 or tiny <= 0.01)
