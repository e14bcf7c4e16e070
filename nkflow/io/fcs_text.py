"""FCS HEADER and TEXT parsing, and resolution of where a data set's DATA segment lies.

Everything here reads only the 58-byte HEADER and the TEXT segment(s), so it is cheap
enough to run over a whole batch before any event is decoded. The result is an
:class:`FCSMetadata`; :mod:`nkflow.io.fcs_data` decodes the DATA segment it points to.

Quirks that mature readers tolerate are accepted with an :class:`FCSQuirkWarning` that
names the quirk; anything that cannot be read raises :class:`FCSReadError` naming the file.

FCS 3.2 (ISAC 2020) is read too: per-channel data types (``$PnDATATYPE``, so integer and
float channels can share one DATA segment), an optional ``$MODE``, ``$BEGINDATETIME`` in
place of ``$DATE``, ``$UNSTAINEDCENTERS``, and the channel descriptions ``$PnTYPE``,
``$PnDET``, ``$PnTAG``, ``$PnANALYTE``, ``$PnFEATURE`` (exposed in ``var`` by
:func:`nkflow.io.read_fcs`).

Reference: Spidlen et al., "Data File Standard for Flow Cytometry, version FCS 3.1",
Cytometry A 2010;77:97-100 (and the FCS 2.0 / 3.0 standards it supersedes); ISAC, "Data
File Standard for Flow Cytometry, version FCS 3.2" (2020).
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ..exceptions import FCSQuirkWarning, FCSReadError
from .fcs_keywords import (
    Context,
    channel_layout,
    check_fcs32,
    int_keyword,
    parse_byteorder,
    parse_unstained_centers,
    resolve_data,
    shown,
    unexpected_reason,
    usable_names,
    whole_number,
)

__all__ = ["MAX_PARAMETERS", "FCSMetadata", "parse_text_segment", "read_fcs_metadata"]

logger = logging.getLogger(__name__)

_HEADER_LEN = 58
_VERSIONS = ("FCS2.0", "FCS3.0", "FCS3.1", "FCS3.2")
_REQUIRED = ("$PAR", "$TOT", "$DATATYPE", "$BYTEORD")
_MAX_DATASETS = 1000
#: Default limit on ``$PAR``. Real files have up to a few hundred parameters (spectral
#: cytometers 440+, mass cytometers ~150); a file declaring more than this is refused
#: before any per-channel work, because everything downstream scales with the channel
#: count. Raise it per call with ``read_fcs(..., max_parameters=...)``.
MAX_PARAMETERS = 5000


@dataclass
class FCSMetadata:
    """What the HEADER and TEXT of one data set say, with the DATA location resolved.

    Attributes
    ----------
    path
        The file.
    version
        ``"2.0"``, ``"3.0"``, ``"3.1"`` or ``"3.2"``.
    dataset, n_datasets
        Which data set this is (0-based) and how many the file chains via ``$NEXTDATA``.
    keywords
        Every TEXT keyword, names stripped and upper-cased (``"$CYT"``, ``"SPILL"``), values
        stripped.
    n_events, n_channels
        Events the DATA segment holds (``$TOT`` unless a tolerated disagreement was
        warned about) and ``$PAR``.
    datatype, byteorder
        ``"I"``, ``"F"`` or ``"D"`` (``$DATATYPE``), or the channels' types joined by
        ``"/"`` (e.g. ``"F/I"``) when FCS 3.2 ``$PnDATATYPE`` mixes them; ``"<"`` or ``">"``.
    datatypes
        Per-channel data type: ``$PnDATATYPE`` (FCS 3.2) where given, else ``$DATATYPE``.
    pnn, pns, pnb, pnr, pne, png
        Per-channel ``$PnN`` (stripped; an empty one becomes ``$PnS`` or ``P<n>`` with a
        quirk warning; duplicates are an error), ``$PnS`` (``""`` if absent), declared bit width,
        range, ``(decades, log0)`` and gain.
    storage_bits
        Bits each value occupies in DATA: ``$PnB``, or the next 8/16/32/64 when ``$PnB`` is
        not a whole number of bytes (Beckman LMD writes ``$PnB=10`` in 16-bit words).
    data_start, data_nbytes
        Absolute byte offset of the DATA segment and the number of bytes to decode.
    quirks
        One line per tolerated quirk (also emitted as warnings).
    unstained_centers
        FCS 3.2 ``$UNSTAINEDCENTERS`` as ``{$PnN: value}``, or None.
    """

    path: Path
    version: str
    dataset: int
    n_datasets: int
    keywords: dict[str, str]
    n_events: int
    n_channels: int
    datatype: str
    byteorder: str
    pnn: list[str]
    pns: list[str]
    pnb: list[int]
    storage_bits: list[int]
    pnr: list[float]
    pne: list[tuple[float, float]]
    png: list[float]
    datatypes: list[str]
    data_start: int
    data_nbytes: int
    quirks: list[str] = field(default_factory=list)
    unstained_centers: dict[str, float] | None = None

    @property
    def cyt(self) -> str:
        """Instrument (``$CYT``), ``""`` if absent."""
        return self.keywords.get("$CYT", "")

    @property
    def date(self) -> str:
        """Acquisition date: ``$DATE``, else the date of FCS 3.2 ``$BEGINDATETIME``.

        ``$BEGINDATETIME`` is ISO 8601, so the date reads ``"2024-03-12"``; ``""`` when
        neither keyword is present.
        """
        date = self.keywords.get("$DATE", "")
        if date:
            return date
        return self.keywords.get("$BEGINDATETIME", "").split("T")[0].strip()

    @property
    def fil(self) -> str:
        """Original file name (``$FIL``), ``""`` if absent."""
        return self.keywords.get("$FIL", "")

    @property
    def event_bytes(self) -> int:
        """Bytes per event in the DATA segment."""
        return sum(self.storage_bits) // 8


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def parse_text_segment(raw: bytes, *, path: str | Path = "<bytes>") -> tuple[dict[str, str], int]:
    """Split a TEXT (or ANALYSIS) segment into keyword/value pairs.

    The first byte is the delimiter; a doubled delimiter inside a keyword or value is a
    literal delimiter. Keyword names are stripped of padding and upper-cased.

    Parameters
    ----------
    raw
        The segment bytes.
    path
        Only used in error messages.

    Returns
    -------
    tuple of (dict, int)
        The keywords and the number of keyword names that carried padding spaces.
    """
    if len(raw) < 2:
        raise FCSReadError(path, f"TEXT segment of {len(raw)} byte(s) is too short for keywords")
    text = _decode(raw)
    delim = text[0]
    if delim.isalnum() or delim in "$ ":
        raise FCSReadError(path, f"TEXT segment starts with {delim!r}, not a delimiter character")
    body = text[1:]
    # Strip trailing padding after the final delimiter (NUL bytes, spaces, newlines).
    stripped = body.rstrip("\x00 \r\n\t")
    if stripped.endswith(delim):
        body = stripped[:-1]
    else:
        body = stripped
    doubled = delim * 2
    sentinel = "\uffff"
    if doubled in body:
        body = body.replace(doubled, sentinel)
    parts = body.split(delim)
    if len(parts) % 2 == 1:
        last = parts.pop()
        if last.strip():
            warnings.warn(
                f"{path}: TEXT segment ends with a keyword without value ({last[:40]!r}); ignored",
                FCSQuirkWarning,
                stacklevel=3,
            )
    keywords: dict[str, str] = {}
    padded = 0
    empty: list[str] = []
    for key_raw, value_raw in zip(parts[0::2], parts[1::2], strict=True):
        if sentinel + "$" in key_raw:
            # An empty value written as a doubled delimiter ("/$P1S//$P1E/0,0/") swallows
            # the next keyword name; give the earlier keyword(s) an empty value.
            *blank, key_raw = key_raw.split(sentinel + "$")
            for i, name in enumerate(blank):
                name = (name if i == 0 else "$" + name).strip().upper()
                if name:
                    keywords.setdefault(name, "")
                    empty.append(name)
            key_raw = "$" + key_raw
        key = key_raw.replace(sentinel, delim)
        value = value_raw.replace(sentinel, delim)
        clean = key.strip().upper()
        if clean != key.upper():
            padded += 1
        if not clean:
            continue
        # The first occurrence wins (primary TEXT before supplemental TEXT).
        keywords.setdefault(clean, value.strip())
    if empty:
        warnings.warn(
            f"{path}: empty value(s) written as a doubled delimiter for {', '.join(empty[:5])}"
            f"{' ...' if len(empty) > 5 else ''}; read as empty",
            FCSQuirkWarning,
            stacklevel=3,
        )
    return keywords, padded


def _header_field(header: bytes, start: int, ctx: Context, name: str) -> int | None:
    raw = header[start : start + 8]
    text = raw.decode("latin-1").strip()
    if not text:
        return None
    number = whole_number(text, "bytes")
    if isinstance(number, str) or not text.isdigit():
        problem = number if isinstance(number, str) else "not a whole number of bytes"
        raise ctx.fail(f"HEADER {name} offset {raw!r} is {problem}")
    return number


def _read_header(fh, offset: int, file_size: int, ctx: Context) -> tuple[str, list]:
    if offset + _HEADER_LEN > file_size and offset:
        raise ctx.fail(f"$NEXTDATA points to byte {offset}, past the end of the file")
    fh.seek(offset)
    header = fh.read(_HEADER_LEN)
    magic = header[:6].decode("latin-1")
    if header and not "FCS".startswith(magic[:3]):  # what it is matters more than its size
        raise ctx.fail(f"not an FCS file (starts with {header[:10]!r}, expected e.g. 'FCS3.1')")
    if len(header) < _HEADER_LEN:
        raise ctx.fail(f"file of {file_size} byte(s) is too short for an FCS HEADER (58 bytes)")
    if magic not in _VERSIONS:
        raise ctx.fail(f"unsupported FCS version {magic!r}; valid: {', '.join(_VERSIONS)}")
    names = ("TEXT start", "TEXT end", "DATA start", "DATA end", "ANALYSIS start", "ANALYSIS end")
    fields = [_header_field(header, 10 + 8 * i, ctx, n) for i, n in enumerate(names)]
    return magic[3:], fields


def _read_text(fh, offset: int, hdr: list, file_size: int, ctx: Context) -> dict[str, str]:
    t_start, t_end = hdr[0], hdr[1]
    if t_start is None or t_end is None or t_start == 0:
        raise ctx.fail("HEADER has no TEXT segment offsets")
    if t_end < t_start:
        raise ctx.fail(f"HEADER TEXT segment ends ({t_end}) before it starts ({t_start})")
    if offset + t_end >= file_size:
        raise ctx.fail(
            f"TEXT segment (bytes {t_start}-{t_end}) runs past the end of the file "
            f"({file_size} bytes)"
        )
    fh.seek(offset + t_start)
    keywords, padded = parse_text_segment(fh.read(t_end - t_start + 1), path=ctx.path)
    if padded:
        ctx.quirk(f"{padded} keyword name(s) padded with spaces (e.g. '   $DATATYPE'); stripped")
    # Supplemental TEXT (FCS 3.x); primary keywords win.
    try:
        s_start = int_keyword(keywords, "$BEGINSTEXT", ctx, required=False)
        s_end = int_keyword(keywords, "$ENDSTEXT", ctx, required=False)
    except FCSReadError as exc:
        ctx.quirk(f"{exc.reason}; supplemental TEXT segment ignored")
        s_start = s_end = 0
    if s_start and s_end > s_start and (s_start, s_end) != (t_start, t_end):
        if offset + s_end < file_size:
            fh.seek(offset + s_start)
            try:
                extra, _ = parse_text_segment(fh.read(s_end - s_start + 1), path=ctx.path)
            except FCSReadError:
                ctx.quirk("supplemental TEXT segment is unreadable; ignored")
                extra = {}
            for key, value in extra.items():
                keywords.setdefault(key, value)
        else:
            ctx.quirk("supplemental TEXT segment lies past the end of the file; ignored")
    return keywords


def _parse_dataset(
    fh, path: Path, offset: int, file_size: int, max_parameters: int
) -> tuple[FCSMetadata, int, Context]:
    ctx = Context(path)
    version, hdr = _read_header(fh, offset, file_size, ctx)
    kw = _read_text(fh, offset, hdr, file_size, ctx)
    missing = [k for k in _REQUIRED if not kw.get(k)]
    if missing:
        raise ctx.fail(f"required keyword(s) missing: {', '.join(missing)}")
    # FCS 3.2 makes $MODE optional (list mode is the only mode left).
    mode = kw.get("$MODE", "L").upper() or "L"
    if mode != "L":
        raise ctx.fail(f"unsupported $MODE {shown(mode)}; only list mode 'L' is supported")
    n_par = int_keyword(kw, "$PAR", ctx, unit="parameters")
    n_tot = int_keyword(kw, "$TOT", ctx, unit="events")
    if n_par == 0:
        raise ctx.fail("$PAR is 0: the file has no channels")
    if n_par > max_parameters:
        raise ctx.fail(
            f"$PAR={n_par} declares more parameters than the limit of {max_parameters} "
            "(real instruments write a few hundred); read it anyway with "
            "read_fcs(..., max_parameters=...)"
        )
    if n_tot == 0:
        raise ctx.fail("$TOT is 0: the file holds no events")
    order = parse_byteorder(kw["$BYTEORD"], ctx)
    chans = channel_layout(kw, n_par, ctx, version)
    chans["pnn"] = usable_names(chans["pnn"], chans["pns"], ctx)
    check_fcs32(kw, version, chans, ctx)
    centers = parse_unstained_centers(kw, chans["pnn"], ctx)
    event_bytes = sum(chans["storage_bits"]) // 8
    data_start, n_events = resolve_data(
        kw, hdr, version, offset, file_size, event_bytes, n_tot, ctx
    )
    next_raw = kw.get("$NEXTDATA", "").strip() or "0"
    nextdata = whole_number(next_raw, "bytes")
    if isinstance(nextdata, str):
        # Only the chain to further data sets is lost: this data set stays readable.
        ctx.quirk(f"keyword $NEXTDATA has value {shown(next_raw)}, {nextdata}; treated as 0")
        nextdata = 0
    kinds = sorted(set(chans["datatypes"]))
    datatype = kinds[0] if len(kinds) == 1 else "/".join(kinds)
    meta = FCSMetadata(
        path=path,
        version=version,
        dataset=0,
        n_datasets=1,
        keywords=kw,
        n_events=n_events,
        n_channels=n_par,
        datatype=datatype,
        byteorder=order,
        data_start=data_start,
        data_nbytes=n_events * event_bytes,
        quirks=ctx.quirks,
        unstained_centers=centers,
        **chans,
    )
    return meta, nextdata, ctx


def _open_checked(path: Path):
    try:
        if path.is_dir():
            raise FCSReadError(path, "is a directory, not an FCS file")
        if not path.exists():
            raise FCSReadError(path, "file does not exist")
        fh = open(path, "rb")
    except (OSError, ValueError) as exc:
        if isinstance(exc, FCSReadError):
            raise
        raise FCSReadError(path, f"cannot open: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        size = os.fstat(fh.fileno()).st_size
    except OSError as exc:
        fh.close()
        raise FCSReadError(path, f"cannot stat: {exc.strerror or exc}") from None
    if size == 0:
        fh.close()
        raise FCSReadError(path, "file is empty (0 bytes)")
    return fh, size


def read_fcs_metadata(
    path: str | Path, *, dataset: int = 0, max_parameters: int = MAX_PARAMETERS
) -> FCSMetadata:
    """Read only the HEADER and TEXT of an FCS file (no events are decoded).

    Cheap enough to run over a whole batch: it is what :func:`nkflow.io.check_batch` and
    :func:`nkflow.io.inspect_files` use. The DATA location is resolved and checked against
    the file size, so truncated files and absurd ``$TOT`` values are caught here.

    Parameters
    ----------
    path
        The FCS file.
    dataset
        Which data set to describe when the file chains several via ``$NEXTDATA``.
    max_parameters
        Refuse a data set whose ``$PAR`` exceeds this (default :data:`MAX_PARAMETERS`).

    Returns
    -------
    FCSMetadata
        Keywords, channels and the resolved DATA location.

    Raises
    ------
    FCSReadError
        The file is not a readable FCS file; the message names the file and the problem.

    Warns
    -----
    FCSQuirkWarning
        For each tolerated deviation from the standard (the quirk is named).
    """
    path = Path(path)
    if dataset < 0:
        raise FCSReadError(path, f"dataset={dataset} is invalid; data sets are numbered from 0")
    fh, size = _open_checked(path)
    chosen: FCSMetadata | None = None
    chosen_warnings: list[warnings.WarningMessage] = []
    extra_quirks: list[str] = []
    offset, index, seen = 0, 0, {0}
    with fh:
        try:
            while True:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", FCSQuirkWarning)
                    try:
                        meta, nextdata, _ = _parse_dataset(fh, path, offset, size, max_parameters)
                    except FCSReadError as exc:
                        if index <= dataset:
                            raise
                        extra_quirks.append(f"data set {index} is unreadable ({exc.reason})")
                        index -= 1
                        break
                if index == dataset:
                    chosen, chosen_warnings = meta, list(caught)
                if nextdata <= 0 or index + 1 >= _MAX_DATASETS:
                    break
                nxt = offset + nextdata
                if nxt in seen or nxt + _HEADER_LEN > size:
                    if chosen is not None:
                        extra_quirks.append(f"$NEXTDATA={nextdata} points nowhere; ignored")
                    break
                seen.add(nxt)
                offset = nxt
                index += 1
        except FCSReadError:
            raise
        except OSError as exc:
            raise FCSReadError(path, f"I/O error while reading: {exc}") from None
        except (ValueError, TypeError, IndexError, KeyError, OverflowError, MemoryError) as exc:
            # Explicit checks above cover known damage; this is the last line of defence.
            logger.debug("unexpected error parsing %s", path, exc_info=True)
            raise FCSReadError(path, unexpected_reason(exc, "parsing HEADER/TEXT")) from None
    if chosen is None:
        raise FCSReadError(
            path, f"dataset={dataset} requested but the file holds {index + 1} data set(s)"
        )
    for w in chosen_warnings:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    chosen.dataset = dataset
    chosen.n_datasets = index + 1
    if chosen.n_datasets > 1:
        extra_quirks.insert(
            0,
            f"file holds {chosen.n_datasets} data sets ($NEXTDATA); read data set {dataset} "
            "(choose another with dataset=)",
        )
    for message in extra_quirks:
        chosen.quirks.append(message)
        warnings.warn(f"{path}: {message}", FCSQuirkWarning, stacklevel=2)
    return chosen
