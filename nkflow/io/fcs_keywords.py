"""Interpretation of FCS TEXT keywords: channel layout, names and the DATA location.

Split from :mod:`nkflow.io.fcs_text` (which reads the bytes); everything here works on the
keyword dictionary and the HEADER offsets and reports quirks through a :class:`Context`.
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

from ..exceptions import FCSQuirkWarning, FCSReadError

__all__ = [
    "CHANNEL_DESCRIPTORS",
    "Context",
    "channel_descriptors",
    "channel_layout",
    "check_fcs32",
    "int_keyword",
    "number_value",
    "parse_byteorder",
    "parse_unstained_centers",
    "resolve_data",
    "shown",
    "unexpected_reason",
    "usable_names",
    "whole_number",
]

_LARGE_FILE_LIMIT = 99_999_999


class Context:
    """Collects quirk messages for one file and emits them as warnings."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.quirks: list[str] = []

    def quirk(self, message: str) -> None:
        """Record a tolerated deviation and warn about it."""
        self.quirks.append(message)
        warnings.warn(f"{self.path}: {message}", FCSQuirkWarning, stacklevel=4)

    def fail(self, reason: str) -> FCSReadError:
        """The error to raise for an unreadable file."""
        return FCSReadError(self.path, reason)


# Offsets and counts beyond 64 bits cannot address anything real.
_MAX_WHOLE = (1 << 63) - 1
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)


def _non_ascii(text: str) -> str:
    bad = next((c for c in text if not c.isascii()), None)
    return "" if bad is None else f" (it contains the non-ASCII character {bad!r})"


def whole_number(text: str, unit: str) -> int | str:
    """Parse a keyword or HEADER value that must be a whole number of ``unit``.

    The one place where FCS counts and offsets (``$PAR``, ``$TOT``, ``$PnB``,
    ``$BEGINDATA``, ``$NEXTDATA``, HEADER offsets ...) become integers. Only ASCII
    decimal numbers are accepted (``"1200"``, ``"+1200"``, ``"1.2E3"``): Python's own
    ``int``/``float`` also accept other scripts' digits, ``"inf"``, ``"nan"`` and
    ``"1_000"``, none of which an FCS writer means.

    Parameters
    ----------
    text
        The value as written (surrounding spaces are ignored).
    unit
        What the number counts (``"bytes"``, ``"events"``, ``"bits"`` ...), for the
        reason.

    Returns
    -------
    int or str
        The number, or a reason in words (``"not a whole number of bytes"``,
        ``"a negative number of events"``, ...) to append to ``"<what> has value
        '...', "``.
    """
    value = text.strip()
    if not _NUMBER.fullmatch(value):
        return f"not a whole number of {unit}{_non_ascii(value)}"
    digits = value.lstrip("+")
    if digits.isdigit():
        if len(digits.lstrip("0")) > 19:
            return f"too large to be a number of {unit} (more than 2**63 - 1)"
        number = int(digits)
    else:
        as_float = float(value)
        if not math.isfinite(as_float):
            return f"too large to be a number of {unit}"
        if as_float != int(as_float):
            return f"not a whole number of {unit}"
        number = int(as_float)
    if number < 0:
        return f"a negative number of {unit}"
    if number > _MAX_WHOLE:
        return f"too large to be a number of {unit} (more than 2**63 - 1)"
    return number


def shown(value: str) -> str:
    """A keyword value for a message: quoted, at most 40 characters."""
    return repr(value[:40] + ("..." if len(value) > 40 else ""))


def int_keyword(
    kw: dict[str, str], key: str, ctx: Context, *, required: bool = True, unit: str = "bytes"
) -> int:
    """A non-negative whole-number keyword (0 when absent and not required).

    Raises :class:`FCSReadError` saying what is wrong, e.g. ``keyword $NEXTDATA has value
    'inf', not a whole number of bytes``.
    """
    value = kw.get(key)
    if value is None or value.strip() == "":
        if required:
            raise ctx.fail(f"required keyword {key} is missing")
        return 0
    number = whole_number(value, unit)
    if isinstance(number, str):
        raise ctx.fail(f"keyword {key} has value {shown(value)}, {number}")
    return number


def unexpected_reason(exc: BaseException, stage: str) -> str:
    """The reason for damage no explicit check caught (a bug to report, not a bare repr)."""
    detail = str(exc)[:80]
    return (
        f"could not be read: an unexpected {type(exc).__name__} while {stage}"
        f"{f' ({detail})' if detail else ''}; nkflow's checks missed this damage, "
        "please report the file"
    )


def number_value(value: str | None, default: float) -> float | None:
    """A finite decimal number (ASCII only), ``default`` when blank, None when unusable."""
    if value is None or value.strip() == "":
        return default
    text = value.strip()
    if not _NUMBER.fullmatch(text):
        return None
    out = float(text)
    return out if math.isfinite(out) else None


def parse_byteorder(value: str, ctx: Context) -> str:
    """``$BYTEORD`` -> numpy byte-order character (``"<"`` or ``">"``)."""
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if parts and all(p.isascii() and p.isdigit() for p in parts):
        nums = [int(p) for p in parts]
        if nums == sorted(nums) and nums[0] == 1:
            return "<"
        if nums == sorted(nums, reverse=True) and nums[-1] == 1:
            return ">"
    raise ctx.fail(f"unsupported $BYTEORD {value!r}; valid: 1,2,3,4 (little) or 4,3,2,1 (big)")


_DATATYPES = "I (integer), F (float32), D (float64)"


def _listing(items: list[str], limit: int = 3) -> str:
    """``a, b, c ...`` for quirk messages (never thousands of entries)."""
    more = f" ... ({len(items)} in all)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def _channel_datatypes(kw: dict[str, str], n_par: int, ctx: Context) -> list[str]:
    """Per-channel data type: FCS 3.2 ``$PnDATATYPE`` where given, else ``$DATATYPE``."""
    default = kw["$DATATYPE"].strip().upper()
    types: list[str] = []
    for i in range(1, n_par + 1):
        own = kw.get(f"$P{i}DATATYPE", "").strip().upper()
        if own:
            if own not in ("I", "F", "D"):
                raise ctx.fail(f"keyword $P{i}DATATYPE has value {shown(own)}; valid: {_DATATYPES}")
            types.append(own)
        elif default in ("I", "F", "D"):
            types.append(default)
        else:
            raise ctx.fail(
                f"unsupported $DATATYPE {shown(kw['$DATATYPE'])} for channel {i} (no "
                f"$P{i}DATATYPE); valid: {_DATATYPES}"
            )
    return types


def _bit_width(kw: dict[str, str], i: int, datatype: str, ctx: Context, bad: list[str]) -> int:
    """``$PnB`` of channel ``i``; float channels are 32/64 bits whatever ``$PnB`` says."""
    b_raw = kw.get(f"$P{i}B", "")
    if datatype in ("F", "D"):
        width = 32 if datatype == "F" else 64
        if b_raw.strip() not in ("", str(width)):
            bad.append(f"$P{i}B={b_raw.strip()[:12]} ({datatype})")
        return width
    if not b_raw.strip():
        raise ctx.fail(f"$P{i}B is missing; integer data needs a bit width per channel")
    width = whole_number(b_raw, "bits")
    if isinstance(width, str):
        raise ctx.fail(f"keyword $P{i}B has value {shown(b_raw)}, {width}")
    if width == 0 or width > 64:
        raise ctx.fail(f"$P{i}B={width} is not supported; valid: 1 to 64 bits")
    return width


def channel_layout(
    kw: dict[str, str], n_par: int, ctx: Context, version: str = "3.1"
) -> dict[str, list]:
    """Per-channel $PnN/$PnS/data type/$PnB/storage bits/$PnR/$PnE/$PnG, quirks named.

    Costs one pass over the channels; per-channel quirks are collected and reported in
    one message each, so a file with thousands of channels stays cheap to open.
    ``version`` (``"2.0"`` ... ``"3.2"``) words the quirks after the file's standard.
    """
    datatypes = _channel_datatypes(kw, n_par, ctx)
    pnn: list[str] = []
    pns: list[str] = []
    pnb: list[int] = []
    storage: list[int] = []
    pnr: list[float] = []
    pne: list[tuple[float, float]] = []
    png: list[float] = []
    odd: list[str] = []
    uncommon: set[int] = set()
    float_log: list[str] = []
    bad_width: list[str] = []
    bad_amp: list[str] = []
    neg_amp: list[str] = []
    bad_gain: list[str] = []
    for i, datatype in enumerate(datatypes, start=1):
        pnn.append(kw.get(f"$P{i}N", ""))
        pns.append(kw.get(f"$P{i}S", ""))
        width = _bit_width(kw, i, datatype, ctx, bad_width)
        pnb.append(width)
        if width % 8:
            word = next(w for w in (8, 16, 32, 64) if w >= width)
            odd.append(f"$P{i}B={width}")
            storage.append(word)
        else:
            storage.append(width)
            if width not in (8, 16, 32, 64):
                uncommon.add(width)
        # Range.
        r_raw = kw.get(f"$P{i}R")
        if r_raw is None:
            raise ctx.fail(f"required keyword $P{i}R is missing")
        rng = number_value(r_raw, 0.0)
        if rng is None:
            raise ctx.fail(f"keyword $P{i}R has value {shown(r_raw)}, not a finite number")
        pnr.append(rng)
        # Amplification (decades, log0).
        e_raw = kw.get(f"$P{i}E", "")
        amp = (0.0, 0.0)
        if e_raw.strip():
            parts = e_raw.split(",")
            vals = [number_value(b, 0.0) for b in parts]
            if len(parts) != 2 or any(v is None for v in vals):
                bad_amp.append(f"$P{i}E={shown(e_raw)}")
            else:
                decades, log0 = float(vals[0]), float(vals[1])  # type: ignore[arg-type]
                if decades < 0 or log0 < 0:
                    neg_amp.append(f"$P{i}E={shown(e_raw)}")
                elif decades > 0 and datatype in ("F", "D"):
                    float_log.append(f"$P{i}E={e_raw[:20]}")
                else:
                    if decades > 0 and log0 == 0:
                        log0 = 1.0
                    amp = (decades, log0)
        pne.append(amp)
        g = number_value(kw.get(f"$P{i}G"), 1.0)
        if g is None:
            bad_gain.append(f"$P{i}G={shown(kw.get(f'$P{i}G', ''))}")
            g = 1.0
        png.append(g)
    if bad_amp:
        ctx.quirk(f"{_listing(bad_amp)}: malformed $PnE; channel(s) treated as linear")
    if neg_amp:
        ctx.quirk(f"{_listing(neg_amp)}: negative $PnE; channel(s) treated as linear")
    if bad_gain:
        ctx.quirk(f"{_listing(bad_gain)}: $PnG is not a finite number; gain 1 used")
    if bad_width:
        ctx.quirk(
            f"{_listing(bad_width)} disagree with the channel's floating-point data type; "
            "used 32 bits for F, 64 for D"
        )
    if float_log:
        ctx.quirk(
            f"log amplification on floating-point data ignored ({_listing(float_log)}): "
            + _float_log_rule(version)
        )
    if uncommon:
        bits = ", ".join(f"{w}-bit" for w in sorted(uncommon))
        ctx.quirk(f"{bits} integers (uncommon width); assembled byte by byte")
    if odd:
        ctx.quirk(
            f"bit widths not a whole number of bytes ({_listing(odd, 4)}); read as values "
            "in 8/16/32-bit words, masked with $PnR"
        )
    return {"pnn": pnn, "pns": pns, "datatypes": datatypes, "pnb": pnb,
            "storage_bits": storage, "pnr": pnr, "pne": pne, "png": png}  # fmt: skip


def _float_log_rule(version: str) -> str:
    """Why a log ``$PnE`` on float data is ignored, in the terms of the file's standard.

    FCS 3.1 (and 3.2) say ``$PnE/0,0/`` shall be used for every parameter when
    ``$DATATYPE`` is F or D. FCS 3.0 only asks float parameters for ``$PnB`` 32/64 and
    states no ``$PnE`` rule for them: the rule dates from FCS 3.1.
    """
    if version in ("3.1", "3.2"):
        return (
            f"FCS {version} requires $PnE 0,0 for floating-point data, whose values are "
            "stored linear; read as stored"
        )
    return (
        f"this FCS {version} file predates the rule (FCS 3.1 requires $PnE 0,0 for "
        "floating-point data, stored linear); read as stored"
    )


def usable_names(pnn: list[str], pns: list[str], ctx: Context) -> list[str]:
    """Strip names, replace empty ones (quirk), refuse duplicates (linear in channels)."""
    names = [n.strip() for n in pnn]
    taken = set(names)
    fixed = []
    for i, name in enumerate(names):
        if not name:
            alt = pns[i].strip()
            names[i] = alt if alt and alt not in taken else f"P{i + 1}"
            taken.add(names[i])
            fixed.append(f"$P{i + 1}N -> {names[i]!r}")
    if fixed:
        ctx.quirk("empty channel names replaced: " + _listing(fixed, 10))
    seen: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        seen.setdefault(name, []).append(i + 1)
    dups = [(k, v) for k, v in seen.items() if len(v) > 1]
    if dups:
        listing = "; ".join(
            f"{k[:40]!r} at " + _listing([f"$P{n}N" for n in v], 5) for k, v in dups[:5]
        )
        more = f"; ... ({len(dups)} names in all)" if len(dups) > 5 else ""
        raise ctx.fail(f"duplicate channel names ($PnN): {listing}{more}")
    return names


def _after_text(
    pairs: list[tuple[int, int]], text_end: int | None, fits: str
) -> tuple[list[tuple[int, int]], str]:
    """Order two DATA locations that both hold ``$TOT`` events; say why the first wins.

    The one that starts right after the primary TEXT segment is taken: a writer that
    shifts one of its two copies (Summit's CyAn files: ``$BEGINDATA`` 46 bytes past the
    HEADER's, which follows the TEXT) leaves the other contiguous. When that does not
    tell them apart, the given order stands.
    """
    right_after = [p for p in pairs if text_end is not None and p[0] == text_end + 1]
    if len(right_after) != 1:
        return pairs, f"{fits} (as does the other)"
    other = [p for p in pairs if p != right_after[0]]
    return right_after + other, f"{fits} and starts right after the TEXT segment"


def resolve_data(
    kw: dict[str, str],
    hdr: list,
    version: str,
    offset: int,
    file_size: int,
    event_bytes: int,
    n_tot: int,
    ctx: Context,
) -> tuple[int, int]:
    """Find the DATA segment; return (absolute start, number of events)."""
    h_start, h_end = hdr[2], hdr[3]
    t_start = int_keyword(kw, "$BEGINDATA", ctx, required=False) if "$BEGINDATA" in kw else None
    t_end = int_keyword(kw, "$ENDDATA", ctx, required=False) if "$ENDDATA" in kw else None
    header_pair = (h_start, h_end) if h_start and h_end else None
    text_pair = (t_start, t_end) if t_start and t_end else None
    if header_pair is None and text_pair is None:
        raise ctx.fail("neither HEADER nor $BEGINDATA/$ENDDATA give the DATA segment location")
    if header_pair is None:
        large = h_start == 0 and h_end == 0 and (t_end or 0) > _LARGE_FILE_LIMIT
        if not large:
            blank = "blank" if h_start is None or h_end is None else "0"
            ctx.quirk(f"HEADER DATA offsets are {blank}; used $BEGINDATA/$ENDDATA")
    candidates = [p for p in (text_pair, header_pair) if p is not None]
    if version == "2.0":
        candidates.reverse()
    if text_pair and header_pair and text_pair != header_pair:
        discrepancy = (
            f"HEADER DATA offsets {header_pair} disagree with $BEGINDATA/$ENDDATA {text_pair}"
        )
    else:
        discrepancy = ""
    candidates = list(dict.fromkeys(candidates))

    expected = n_tot * event_bytes
    fits = "which matches $TOT x event size"
    whole = [(a, b) for a, b in candidates if b - a + 1 == expected and offset + b < file_size]
    if len(whole) == 2:  # both places hold $TOT events: which bytes are they?
        candidates, fits = _after_text(whole, hdr[1], fits)
    fallback: tuple[int, int, str] | None = None
    problems: list[str] = []
    for start, end in candidates:
        if end < start:
            problems.append(f"DATA ends ({end}) before it starts ({start})")
            continue
        abs_start = offset + start
        if abs_start >= file_size:
            problems.append(
                f"DATA starts at byte {abs_start}, past the end of the file ({file_size} bytes)"
            )
            continue
        length = end - start + 1
        if length == expected and abs_start + expected <= file_size:
            if discrepancy:
                ctx.quirk(f"{discrepancy}; used {(start, end)}, {fits}")
            return abs_start, n_tot
        if abs(length - expected) == 1 and abs_start + expected <= file_size:
            if discrepancy:
                ctx.quirk(f"{discrepancy}; used {(start, end)}")
            ctx.quirk(
                f"DATA end offset is off by one ({length} bytes for {expected} bytes of "
                f"$TOT={n_tot} events); read {expected} bytes"
            )
            return abs_start, n_tot
        if abs_start + length > file_size:
            problems.append(
                f"DATA segment (bytes {start}-{end}) runs past the end of the file "
                f"({file_size} bytes): the file is truncated or the offsets are wrong"
            )
            continue
        held = length // event_bytes
        if fallback is None:
            fallback = (abs_start, held, f"{(start, end)}")
        problems.append(
            f"DATA segment (bytes {start}-{end}, {length} bytes) holds {length / event_bytes:g} "
            f"events of {event_bytes} bytes but $TOT={n_tot}"
        )
    if fallback is not None:
        abs_start, held, used = fallback
        mild = held > 0 and abs(held - n_tot) <= max(1, int(0.01 * n_tot))
        if mild:
            if discrepancy:
                ctx.quirk(f"{discrepancy}; used {used}")
            ctx.quirk(
                f"$TOT={n_tot} but the DATA segment holds {held} whole events; read {held} "
                "(difference within 1% of $TOT)"
            )
            return abs_start, held
    if n_tot > 0 and expected > file_size:
        raise ctx.fail(
            f"$TOT={n_tot} events x {event_bytes} bytes = {expected} bytes, more than the "
            f"whole file ({file_size} bytes): truncated file or corrupt $TOT"
        )
    raise ctx.fail("; ".join(dict.fromkeys(problems)) or "cannot locate the DATA segment")


#: FCS 3.2 per-channel descriptions exposed as ``var`` columns: column -> keyword ``$Pn<X>``.
CHANNEL_DESCRIPTORS = {
    "type": "TYPE",
    "detector": "DET",
    "tag": "TAG",
    "analyte": "ANALYTE",
    "feature": "FEATURE",
}
_FEATURES = ("Area", "Height", "Width")


def channel_descriptors(kw: dict[str, str], n_par: int) -> dict[str, list[str]]:
    """The FCS 3.2 ``$PnTYPE/$PnDET/$PnTAG/$PnANALYTE/$PnFEATURE`` the file carries.

    Only keywords present on at least one channel get a column; channels without the
    keyword get ``""``. Values are kept as written (stripped).
    """
    out: dict[str, list[str]] = {}
    for column, suffix in CHANNEL_DESCRIPTORS.items():
        values = [kw.get(f"$P{i}{suffix}", "").strip() for i in range(1, n_par + 1)]
        if any(values):
            out[column] = values
    return out


def check_fcs32(kw: dict[str, str], version: str, chans: dict[str, list], ctx: Context) -> None:
    """Name (as quirks) departures from the FCS 3.2 rules that do not stop reading.

    FCS 3.2 requires ``$CYT``; ``$PnDATATYPE`` does not exist before 3.2 (honoured
    anyway); ``$PnFEATURE`` is one of Area, Height, Width; ``$PnG`` must not be combined
    with logarithmic ``$PnE`` (both are applied, as FlowKit does).
    """
    n_par = len(chans["pnn"])
    if version == "3.2" and not kw.get("$CYT", "").strip():
        ctx.quirk("FCS 3.2 requires $CYT (the cytometer); it is missing")
    own_types = [f"$P{i}DATATYPE" for i in range(1, n_par + 1) if kw.get(f"$P{i}DATATYPE")]
    if own_types and version != "3.2":
        ctx.quirk(
            f"{_listing(own_types)}: per-channel data types are an FCS 3.2 keyword in an "
            f"FCS {version} file; honoured"
        )
    odd_features = [
        f"$P{i}FEATURE={shown(v)}"
        for i in range(1, n_par + 1)
        if (v := kw.get(f"$P{i}FEATURE", "").strip()) and v not in _FEATURES
    ]
    if odd_features:
        ctx.quirk(f"{_listing(odd_features)}: FCS 3.2 $PnFEATURE is one of Area, Height, Width")
    log_gain = [
        f"$P{i + 1}"
        for i, ((decades, _), gain) in enumerate(zip(chans["pne"], chans["png"], strict=True))
        if decades > 0 and gain not in (0.0, 1.0)
    ]
    if log_gain:
        ctx.quirk(
            f"{_listing(log_gain)}: gain ($PnG) on a logarithmic channel ($PnE), which FCS "
            "3.2 forbids; both applied"
        )


def parse_unstained_centers(
    kw: dict[str, str], pnn: list[str], ctx: Context
) -> dict[str, float] | None:
    """FCS 3.2 ``$UNSTAINEDCENTERS`` (``n,name_1..name_n,value_1..value_n``) as a dict.

    None when absent; a quirk names the problem when present but unusable.
    """
    raw = kw.get("$UNSTAINEDCENTERS", "").strip()
    if not raw:
        return None
    parts = [p.strip() for p in raw.split(",")]
    n = whole_number(parts[0], "channels")
    if isinstance(n, str) or n == 0 or len(parts) != 1 + 2 * n:
        ctx.quirk(f"$UNSTAINEDCENTERS={shown(raw)} is not n,names,values; ignored")
        return None
    names, values = parts[1 : 1 + n], [number_value(v, math.nan) for v in parts[1 + n :]]
    known = set(pnn)
    unknown = [name for name in names if name not in known]
    if unknown or any(v is None for v in values):
        why = f"names {unknown[:3]} are not $PnN" if unknown else "a value is not a number"
        ctx.quirk(f"$UNSTAINEDCENTERS ignored: {why}")
        return None
    return {name: float(v) for name, v in zip(names, values, strict=True)}  # type: ignore[arg-type]
