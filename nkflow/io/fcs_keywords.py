"""Interpretation of FCS TEXT keywords: channel layout, names and the DATA location.

Split from :mod:`nkflow.io.fcs_text` (which reads the bytes); everything here works on the
keyword dictionary and the HEADER offsets and reports quirks through a :class:`Context`.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

from ..exceptions import FCSQuirkWarning, FCSReadError

__all__ = [
    "Context",
    "channel_layout",
    "int_keyword",
    "parse_byteorder",
    "resolve_data",
    "usable_names",
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


def int_keyword(kw: dict[str, str], key: str, ctx: Context, *, required: bool = True) -> int:
    """A non-negative integer keyword (0 when absent and not required)."""
    value = kw.get(key)
    if value is None or value == "":
        if required:
            raise ctx.fail(f"required keyword {key} is missing")
        return 0
    try:
        number = float(value)
    except ValueError:
        raise ctx.fail(f"keyword {key} has non-numeric value {value[:40]!r}") from None
    if not math.isfinite(number) or number != int(number) or number < 0:
        raise ctx.fail(f"keyword {key} has invalid value {value[:40]!r}")
    return int(number)


def _float(value: str | None, default: float) -> float | None:
    if value is None or value.strip() == "":
        return default
    try:
        out = float(value)
    except ValueError:
        return None
    return out if math.isfinite(out) else None


def parse_byteorder(value: str, ctx: Context) -> str:
    """``$BYTEORD`` -> numpy byte-order character (``"<"`` or ``">"``)."""
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if parts and all(p.isdigit() for p in parts):
        nums = [int(p) for p in parts]
        if nums == sorted(nums) and nums[0] == 1:
            return "<"
        if nums == sorted(nums, reverse=True) and nums[-1] == 1:
            return ">"
    raise ctx.fail(f"unsupported $BYTEORD {value!r}; valid: 1,2,3,4 (little) or 4,3,2,1 (big)")


def channel_layout(kw: dict[str, str], n_par: int, ctx: Context) -> dict[str, list]:
    """Per-channel $PnN/$PnS/$PnB/storage bits/$PnR/$PnE/$PnG, with quirks named."""
    pnn: list[str] = []
    pns: list[str] = []
    pnb: list[int] = []
    storage: list[int] = []
    odd: list[str] = []
    uncommon: set[int] = set()
    float_log: list[str] = []
    bad_width: list[str] = []
    pnr: list[float] = []
    pne: list[tuple[float, float]] = []
    png: list[float] = []
    datatype = kw["$DATATYPE"].upper()
    for i in range(1, n_par + 1):
        pnn.append(kw.get(f"$P{i}N", ""))
        pns.append(kw.get(f"$P{i}S", ""))
        # Bit width.
        b_raw = kw.get(f"$P{i}B", "")
        if datatype in ("F", "D"):
            width = 32 if datatype == "F" else 64
            if b_raw.strip() not in ("", str(width)):
                bad_width.append(f"$P{i}B={b_raw.strip()}")
        else:
            if not b_raw.strip().isdigit():
                raise ctx.fail(f"$P{i}B is {b_raw!r}; integer data needs a bit width per channel")
            width = int(b_raw)
            if width == 0 or width > 64:
                raise ctx.fail(f"$P{i}B={width} is not supported; valid: 1 to 64 bits")
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
        rng = _float(r_raw, 0.0)
        if rng is None:
            raise ctx.fail(f"$P{i}R has non-numeric value {r_raw[:40]!r}")
        pnr.append(rng)
        # Amplification (decades, log0).
        e_raw = kw.get(f"$P{i}E", "")
        amp = (0.0, 0.0)
        if e_raw.strip():
            bits = e_raw.split(",")
            vals = [_float(b, 0.0) for b in bits]
            if len(bits) != 2 or any(v is None for v in vals):
                ctx.quirk(f"$P{i}E={e_raw!r} is malformed; channel treated as linear")
            else:
                decades, log0 = float(vals[0]), float(vals[1])  # type: ignore[arg-type]
                if decades < 0 or log0 < 0:
                    ctx.quirk(f"$P{i}E={e_raw!r} is negative; channel treated as linear")
                elif decades > 0 and datatype in ("F", "D"):
                    float_log.append(f"$P{i}E={e_raw}")
                else:
                    if decades > 0 and log0 == 0:
                        log0 = 1.0
                    amp = (decades, log0)
        pne.append(amp)
        g = _float(kw.get(f"$P{i}G"), 1.0)
        if g is None:
            ctx.quirk(f"$P{i}G={kw.get(f'$P{i}G')!r} is not a number; gain 1 used")
            g = 1.0
        png.append(g)
    if bad_width:
        ctx.quirk(
            f"{', '.join(bad_width[:3])}{' ...' if len(bad_width) > 3 else ''} disagree with "
            f"$DATATYPE {datatype}; used {32 if datatype == 'F' else 64} bits"
        )
    if float_log:
        ctx.quirk(
            f"log amplification on {datatype} (floating-point) data ignored "
            f"({', '.join(float_log[:3])}{' ...' if len(float_log) > 3 else ''}): FCS 3.1 "
            "requires $PnE 0,0 for float data, whose values are already linear"
        )
    if uncommon:
        bits = ", ".join(f"{w}-bit" for w in sorted(uncommon))
        ctx.quirk(f"{bits} integers (uncommon width); assembled byte by byte")
    if odd:
        ctx.quirk(
            f"bit widths not a whole number of bytes ({', '.join(odd[:4])}"
            f"{' ...' if len(odd) > 4 else ''}); read as values in 8/16/32-bit words, "
            "masked with $PnR"
        )
    return {"pnn": pnn, "pns": pns, "pnb": pnb, "storage_bits": storage, "pnr": pnr,
            "pne": pne, "png": png}  # fmt: skip


def usable_names(pnn: list[str], pns: list[str], ctx: Context) -> list[str]:
    """Strip names, replace empty ones (quirk), refuse duplicates."""
    names = [n.strip() for n in pnn]
    fixed = []
    for i, name in enumerate(names):
        if not name:
            alt = pns[i].strip()
            names[i] = alt if alt and alt not in names else f"P{i + 1}"
            fixed.append(f"$P{i + 1}N -> {names[i]!r}")
    if fixed:
        ctx.quirk("empty channel names replaced: " + ", ".join(fixed))
    seen: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        seen.setdefault(name, []).append(i + 1)
    dups = {k: v for k, v in seen.items() if len(v) > 1}
    if dups:
        listing = "; ".join(f"{k!r} at " + ", ".join(f"$P{n}N" for n in v) for k, v in dups.items())
        raise ctx.fail(f"duplicate channel names ($PnN): {listing}")
    return names


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
                ctx.quirk(f"{discrepancy}; used {(start, end)}, which matches $TOT x event size")
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
