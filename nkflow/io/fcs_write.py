"""Write list-mode FCS 3.1 or 3.2 files (little-endian), deterministically and atomically.

The writer produces what a BD FACSDiva or Cytek export looks like to a reader: a
58-byte HEADER with the TEXT and DATA offsets, a TEXT segment with the required
FCS 3.1 keywords (``$BEGINDATA`` ... ``$TOT``, one ``$PnN/$PnS/$PnB/$PnE/$PnR`` block per
parameter), optional ``$SPILLOVER`` in the FCS 3.1 form
``n,name_1,...,name_n,v_11,v_12,...,v_nn`` (row-major, row = fluorochrome, column =
detector), and the DATA segment as event-major values. By default every channel is
float32 (``$DATATYPE F``); ``datatypes=`` stores channels as unsigned integers (``I``,
8/16/32/64 bits) or float64 (``D``).

FCS 3.2 (``version="3.2"``) differs as the 3.2 standard asks: the HEADER says
``FCS3.2``; channels may mix data types, each channel whose type differs from
``$DATATYPE`` carrying ``$PnDATATYPE``; ``$MODE`` (deprecated, list mode only) is not
written; ``$CYT`` is required. Channel descriptions (``$PnTYPE``, ``$PnDET``, ``$PnTAG``,
``$PnANALYTE``, ``$PnFEATURE``) and ``$BEGINDATETIME``/``$ENDDATETIME`` go in
``keywords``.

Nothing depends on the wall clock: ``$DATE``, ``$BTIM`` and ``$ETIM`` are written only when
given in ``keywords``, so the same arguments give byte-identical files.

Reference: Spidlen et al., "Data File Standard for Flow Cytometry, version FCS 3.1",
Cytometry A 2010;77:97-100; ISAC, "Data File Standard for Flow Cytometry, version FCS 3.2"
(2020).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .write import write_bytes_atomic

__all__ = ["format_spillover", "write_fcs"]

logger = logging.getLogger(__name__)

_DELIM = "/"
_HEADER_LEN = 58
_TEXT_START = _HEADER_LEN
_MAX_HEADER_OFFSET = 99_999_999
# Keywords the writer owns; callers may not override them through ``keywords``.
_RESERVED = {
    "$BEGINANALYSIS", "$ENDANALYSIS", "$BEGINDATA", "$ENDDATA", "$BEGINSTEXT", "$ENDSTEXT",
    "$BYTEORD", "$DATATYPE", "$MODE", "$NEXTDATA", "$PAR", "$TOT", "$SPILLOVER",
}  # fmt: skip
# Per-channel keywords that describe the DATA layout: also the writer's.
_RESERVED_PER_CHANNEL = re.compile(r"\$P\d+(B|DATATYPE)")
_VERSIONS = ("3.1", "3.2")
_FLOAT_BITS = {"F": 32, "D": 64}


def format_spillover(channels: Sequence[str], matrix: np.ndarray) -> str:
    """Format a spillover matrix as an FCS 3.1 ``$SPILLOVER`` value.

    Parameters
    ----------
    channels
        The ``$PnN`` names of the detectors, in matrix order.
    matrix
        Square matrix, row = fluorochrome, column = detector; diagonal 1.

    Returns
    -------
    str
        ``"n,name_1,...,name_n,m_11,m_12,...,m_nn"`` with values in ``%.6g``.
    """
    mat = np.asarray(matrix, dtype=float)
    n = len(channels)
    if mat.shape != (n, n):
        raise ValueError(
            f"spillover matrix has shape {mat.shape}; expected ({n}, {n}) for channels "
            f"{list(channels)}"
        )
    values = ",".join(f"{v:.6g}" for v in mat.ravel())
    return f"{n},{','.join(channels)},{values}"


def _escape(text: str) -> str:
    """Double the delimiter inside a keyword or value (FCS 3.1 section 3.2.9)."""
    return text.replace(_DELIM, _DELIM * 2)


def _check_text(kind: str, text: str, path: Path) -> str:
    if text == "":
        raise ValueError(f"{path}: FCS 3.1 forbids an empty {kind}")
    if any(ord(c) < 32 and c not in "\t" for c in text):
        raise ValueError(f"{path}: {kind} {text!r} contains a control character")
    return text


def _text_segment(pairs: list[tuple[str, str]]) -> bytes:
    body = _DELIM + "".join(f"{_escape(k)}{_DELIM}{_escape(v)}{_DELIM}" for k, v in pairs)
    return body.encode("utf-8")


def _header(
    text_start: int, text_end: int, data_start: int, data_end: int, version: str = "3.1"
) -> bytes:
    if data_end > _MAX_HEADER_OFFSET:
        # FCS 3.1 3.2.4: offsets that do not fit eight digits are 0 in the HEADER and
        # are read from $BEGINDATA/$ENDDATA in TEXT instead.
        data_start = data_end = 0
    fields = (text_start, text_end, data_start, data_end, 0, 0)
    head = f"FCS{version}    " + "".join(f"{v:>8d}" for v in fields)
    return head.encode("ascii")


def _per_channel(value, n_par: int, what: str, dest: Path) -> list | None:
    """One value per channel from a scalar or a sequence (None stays None)."""
    if value is None:
        return None
    if isinstance(value, str) or np.isscalar(value):
        return [value] * n_par
    values = list(value)
    if len(values) != n_par:
        raise ValueError(f"{dest}: {len(values)} {what} for {n_par} channels")
    return values


def _layout(
    dest: Path, n_par: int, version: str, datatypes: object, bits: object
) -> tuple[list[str], list[int]]:
    """Per-channel data type (I/F/D) and bit width, checked against the version."""
    if version not in _VERSIONS:
        raise ValueError(f"{dest}: version={version!r}; valid: {', '.join(_VERSIONS)}")
    kinds = [str(k).upper() for k in _per_channel(datatypes, n_par, "data types", dest) or []]
    kinds = kinds or ["F"] * n_par
    wrong = sorted({k for k in kinds if k not in ("I", "F", "D")})
    if wrong:
        raise ValueError(f"{dest}: data types {wrong}; valid: I (unsigned integer), F, D")
    if len(set(kinds)) > 1 and version != "3.2":
        raise ValueError(
            f"{dest}: channels of different data types ({'/'.join(sorted(set(kinds)))}) need "
            "FCS 3.2 ($PnDATATYPE): pass version='3.2'"
        )
    int_bits = [int(b) for b in _per_channel(bits, n_par, "bit widths", dest) or [32] * n_par]
    widths = [_FLOAT_BITS.get(k, b) for k, b in zip(kinds, int_bits, strict=True)]
    bad = sorted(
        {w for k, w in zip(kinds, widths, strict=True) if k == "I" and w not in (8, 16, 32, 64)}
    )
    if bad:
        raise ValueError(f"{dest}: integer bit widths {bad}; valid: 8, 16, 32, 64")
    return kinds, widths


def _format_range(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e19 else f"{value:.10g}"


def _check_integers(
    dest: Path, arr: np.ndarray, names: list[str], kinds: list[str], widths: list[int],
    ranges: list[float],
) -> None:  # fmt: skip
    """Integer channels hold whole numbers that the reader's ``$PnR`` mask keeps intact."""
    for j, (kind, width) in enumerate(zip(kinds, widths, strict=True)):
        if kind != "I":
            continue
        col = arr[:, j].astype(np.float64)
        if col.size and not (np.isfinite(col).all() and (col == np.floor(col)).all()):
            raise ValueError(f"{dest}: channel {names[j]!r} is stored as integers ($PnDATATYPE I) "
                             "but holds non-integer values")  # fmt: skip
        limit = 2.0**width
        rng = ranges[j]
        if 0 < rng < limit:
            limit = float(1 << max(0, int(np.ceil(rng)) - 1).bit_length())
        if col.size and (col.min() < 0 or col.max() >= limit):
            raise ValueError(
                f"{dest}: channel {names[j]!r} has values outside 0..{limit - 1:.0f}, which "
                f"{width}-bit integers with $PnR={_format_range(rng)} cannot hold"
            )


def _payload(arr: np.ndarray, kinds: list[str], widths: list[int]) -> bytes:
    if set(kinds) == {"F"}:
        return np.ascontiguousarray(arr, dtype="<f4").tobytes()
    codes = [
        f"<f{w // 8}" if k in ("F", "D") else f"<u{w // 8}"
        for k, w in zip(kinds, widths, strict=True)
    ]
    rec = np.empty(arr.shape[0], dtype=np.dtype([(f"c{j}", c) for j, c in enumerate(codes)]))
    for j, code in enumerate(codes):
        rec[f"c{j}"] = arr[:, j].astype(code)
    return rec.tobytes()


def write_fcs(
    path: str | Path,
    data: np.ndarray,
    channels: Sequence[str],
    *,
    markers: Sequence[str | None] | None = None,
    keywords: Mapping[str, object] | None = None,
    spillover: tuple[Sequence[str], np.ndarray] | np.ndarray | None = None,
    ranges: Sequence[float] | float | None = None,
    version: str = "3.1",
    datatypes: Sequence[str] | str | None = None,
    bits: Sequence[int] | int | None = None,
) -> Path:
    """Write events to an FCS 3.1 or 3.2 file (little-endian, list mode).

    Parameters
    ----------
    path
        Destination file; written atomically (temporary file, then rename).
    data
        Array of shape (events, channels); stored as float32.
    channels
        ``$PnN`` names, unique, one per column.
    markers
        ``$PnS`` values (free text), one per column; ``None`` or ``""`` leaves ``$PnS`` out.
    keywords
        Extra TEXT keywords, e.g. ``{"$CYT": "FACSymphony A5", "$DATE": "12-MAR-2024"}``.
        Names starting with ``$`` (FCS standard) are upper-cased; others are written as
        given. Keywords the writer owns (offsets, ``$TOT``, ``$PAR``, ``$DATATYPE``,
        ``$SPILLOVER``, ...) cannot be given here; a per-parameter keyword such as
        ``$P3R`` replaces the computed one.
    spillover
        Either ``(detector_names, matrix)`` or a bare square matrix over all
        ``channels``. Written as ``$SPILLOVER``.
    ranges
        ``$PnR`` per channel (or one value for all); default 262144 for float channels,
        ``2**bits`` for integer ones.
    version
        ``"3.1"`` (default) or ``"3.2"``. FlowIO 1.x (and FlowKit, which reads through
        it) needs ``$MODE`` and ignores ``$PnDATATYPE``, so it cannot read 3.2 files;
        write 3.1 for such tools.
    datatypes
        Per channel (or one for all) ``"F"`` (float32, default), ``"D"`` (float64) or
        ``"I"`` (unsigned integer of ``bits``). Mixing them needs ``version="3.2"``:
        ``$DATATYPE`` is the most common type and the other channels get ``$PnDATATYPE``.
    bits
        Bit width of integer channels (8, 16, 32 or 64; per channel or one for all;
        default 32). Ignored for F/D channels (32/64).

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    ValueError
        On a shape mismatch, duplicate or empty channel names, empty keyword values, a
        reserved keyword in ``keywords`` (layout keywords such as ``$PnB`` and
        ``$PnDATATYPE`` included), integer channels holding values their width and
        ``$PnR`` cannot keep, mixed data types without ``version="3.2"``, or an FCS 3.2
        file without ``$CYT``.
    """
    dest = Path(path)
    arr = np.asarray(data)
    if arr.ndim != 2:
        raise ValueError(f"{dest}: data must be 2-D (events, channels); got shape {arr.shape}")
    n_events, n_par = arr.shape
    names = [str(c) for c in channels]
    if len(names) != n_par:
        raise ValueError(f"{dest}: {len(names)} channel names for {n_par} data columns")
    if len(set(names)) != len(names):
        dupes = sorted({c for c in names if names.count(c) > 1})
        raise ValueError(f"{dest}: duplicate channel names {dupes}")
    for name in names:
        _check_text("channel name", name, dest)
    if markers is not None and len(markers) != n_par:
        raise ValueError(f"{dest}: {len(markers)} markers for {n_par} channels")
    kinds, widths = _layout(dest, n_par, version, datatypes, bits)
    if ranges is None:
        rng_values = [262144.0 if k != "I" else 2.0**w for k, w in zip(kinds, widths, strict=True)]
    elif np.isscalar(ranges):
        rng_values = [float(ranges)] * n_par  # type: ignore[arg-type]
    else:
        rng_values = [float(r) for r in ranges]  # type: ignore[union-attr]
        if len(rng_values) != n_par:
            raise ValueError(f"{dest}: {len(rng_values)} ranges for {n_par} channels")

    _check_integers(dest, arr, names, kinds, widths, rng_values)
    main_type = max(("F", "I", "D"), key=kinds.count)
    pairs: list[tuple[str, str]] = [("$BYTEORD", "1,2,3,4"), ("$DATATYPE", main_type)]
    if version == "3.1":  # FCS 3.2 deprecates $MODE (list mode is the only mode)
        pairs.append(("$MODE", "L"))
    pairs += [("$NEXTDATA", "0"), ("$PAR", str(n_par)), ("$TOT", str(n_events))]
    per_param: dict[str, str] = {}
    for i, name in enumerate(names, start=1):
        per_param[f"$P{i}N"] = name
        marker = None if markers is None else markers[i - 1]
        if marker:
            per_param[f"$P{i}S"] = _check_text(f"$P{i}S", str(marker), dest)
        per_param[f"$P{i}B"] = str(widths[i - 1])
        if kinds[i - 1] != main_type:
            per_param[f"$P{i}DATATYPE"] = kinds[i - 1]
        per_param[f"$P{i}E"] = "0,0"
        per_param[f"$P{i}R"] = _format_range(rng_values[i - 1])

    extra: list[tuple[str, str]] = []
    for key, value in (keywords or {}).items():
        key_s = _check_text("keyword", str(key), dest)
        upper = key_s.upper()
        if upper in _RESERVED or _RESERVED_PER_CHANNEL.fullmatch(upper):
            raise ValueError(
                f"{dest}: keyword {key_s!r} is written by the writer and cannot be given; "
                f"reserved: {sorted(_RESERVED)}"
            )
        val_s = _check_text(f"value of {key_s}", str(value), dest)
        if upper in per_param:
            per_param[upper] = val_s
        else:
            extra.append((upper if upper.startswith("$") else key_s, val_s))

    if spillover is not None:
        if isinstance(spillover, tuple):
            sp_names, sp_mat = spillover
        else:
            sp_names, sp_mat = names, spillover
        unknown = [c for c in sp_names if c not in names]
        if unknown:
            raise ValueError(f"{dest}: spillover names {unknown} are not channels; have {names}")
        extra.append(("$SPILLOVER", format_spillover(list(sp_names), np.asarray(sp_mat))))

    if version == "3.2" and not any(k == "$CYT" for k, _ in extra):
        raise ValueError(f"{dest}: FCS 3.2 requires $CYT (the cytometer); pass it in keywords")
    pairs += list(per_param.items()) + extra
    payload = _payload(arr, kinds, widths)
    data_len = len(payload)

    # The TEXT segment holds its own DATA offsets, so iterate until the digits settle.
    begin_data = 0
    for _ in range(10):
        offsets = [
            ("$BEGINANALYSIS", "0"),
            ("$ENDANALYSIS", "0"),
            ("$BEGINSTEXT", "0"),
            ("$ENDSTEXT", "0"),
            ("$BEGINDATA", str(begin_data if data_len else 0)),
            ("$ENDDATA", str(begin_data + data_len - 1 if data_len else 0)),
        ]
        text = _text_segment(offsets + pairs)
        new_begin = _TEXT_START + len(text)
        if new_begin == begin_data:
            break
        begin_data = new_begin
    text_end = _TEXT_START + len(text) - 1
    if data_len:
        head = _header(_TEXT_START, text_end, begin_data, begin_data + data_len - 1, version)
    else:  # no DATA segment: offsets 0, as for any absent segment
        head = _header(_TEXT_START, text_end, 0, 0, version)
    content = head + text + payload
    logger.debug("writing %s: %d events x %d channels", dest, n_events, n_par)
    return write_bytes_atomic(dest, content)
