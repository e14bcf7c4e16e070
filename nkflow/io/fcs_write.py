"""Write list-mode FCS 3.1 files (float32, little-endian), deterministically and atomically.

The writer produces what a BD FACSDiva or Cytek export looks like to a reader: a
58-byte HEADER with the TEXT and DATA offsets, a TEXT segment with the required
FCS 3.1 keywords (``$BEGINDATA`` ... ``$TOT``, one ``$PnN/$PnS/$PnB/$PnE/$PnR`` block per
parameter), optional ``$SPILLOVER`` in the FCS 3.1 form
``n,name_1,...,name_n,v_11,v_12,...,v_nn`` (row-major, row = fluorochrome, column =
detector), and the DATA segment as event-major float32 values.

Nothing depends on the wall clock: ``$DATE``, ``$BTIM`` and ``$ETIM`` are written only when
given in ``keywords``, so the same arguments give byte-identical files.

Reference: Spidlen et al., "Data File Standard for Flow Cytometry, version FCS 3.1",
Cytometry A 2010;77:97-100.
"""

from __future__ import annotations

import logging
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


def _header(text_start: int, text_end: int, data_start: int, data_end: int) -> bytes:
    if data_end > _MAX_HEADER_OFFSET:
        # FCS 3.1 3.2.4: offsets that do not fit eight digits are 0 in the HEADER and
        # are read from $BEGINDATA/$ENDDATA in TEXT instead.
        data_start = data_end = 0
    fields = (text_start, text_end, data_start, data_end, 0, 0)
    head = "FCS3.1    " + "".join(f"{v:>8d}" for v in fields)
    return head.encode("ascii")


def write_fcs(
    path: str | Path,
    data: np.ndarray,
    channels: Sequence[str],
    *,
    markers: Sequence[str | None] | None = None,
    keywords: Mapping[str, object] | None = None,
    spillover: tuple[Sequence[str], np.ndarray] | np.ndarray | None = None,
    ranges: Sequence[float] | float | None = None,
) -> Path:
    """Write events to an FCS 3.1 file (``$DATATYPE F``, ``$BYTEORD 1,2,3,4``, ``$MODE L``).

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
        ``$PnR`` per channel (or one value for all); default 262144.

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    ValueError
        On a shape mismatch, duplicate or empty channel names, empty keyword values or a
        reserved keyword in ``keywords``.
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
    if ranges is None:
        rng_values = [262144.0] * n_par
    elif np.isscalar(ranges):
        rng_values = [float(ranges)] * n_par  # type: ignore[arg-type]
    else:
        rng_values = [float(r) for r in ranges]  # type: ignore[union-attr]
        if len(rng_values) != n_par:
            raise ValueError(f"{dest}: {len(rng_values)} ranges for {n_par} channels")

    pairs: list[tuple[str, str]] = [
        ("$BYTEORD", "1,2,3,4"),
        ("$DATATYPE", "F"),
        ("$MODE", "L"),
        ("$NEXTDATA", "0"),
        ("$PAR", str(n_par)),
        ("$TOT", str(n_events)),
    ]
    per_param: dict[str, str] = {}
    for i, name in enumerate(names, start=1):
        per_param[f"$P{i}N"] = name
        marker = None if markers is None else markers[i - 1]
        if marker:
            per_param[f"$P{i}S"] = _check_text(f"$P{i}S", str(marker), dest)
        per_param[f"$P{i}B"] = "32"
        per_param[f"$P{i}E"] = "0,0"
        per_param[f"$P{i}R"] = f"{rng_values[i - 1]:.10g}"

    extra: list[tuple[str, str]] = []
    for key, value in (keywords or {}).items():
        key_s = _check_text("keyword", str(key), dest)
        upper = key_s.upper()
        if upper in _RESERVED:
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

    pairs += list(per_param.items()) + extra
    payload = np.ascontiguousarray(arr, dtype="<f4").tobytes()
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
        head = _header(_TEXT_START, text_end, begin_data, begin_data + data_len - 1)
    else:  # no DATA segment: offsets 0, as for any absent segment
        head = _header(_TEXT_START, text_end, 0, 0)
    content = head + text + payload
    logger.debug("writing %s: %d events x %d channels", dest, n_events, n_par)
    return write_bytes_atomic(dest, content)
