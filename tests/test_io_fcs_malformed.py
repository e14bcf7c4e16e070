"""Hostile and broken FCS input, generated from a small valid file: only NkflowError escapes."""

from __future__ import annotations

import re
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nkflow.io as nio
from nkflow.exceptions import FCSQuirkWarning, FCSReadError

CHANNELS = [
    ("FSC-A", ""),
    ("SSC-A", ""),
    ("FL1-A", "CD56 PE"),
    ("FL2-A", "CD16 FITC"),
    ("Time", ""),
]
RNG = np.random.default_rng(7)
EVENTS = np.round(RNG.uniform(0, 1000, size=(40, len(CHANNELS))), 2).astype(np.float32)


def build_fcs(
    data: np.ndarray = EVENTS,
    *,
    channels: list[tuple[str, str]] = CHANNELS,
    datatype: str = "F",
    bits: int | None = None,
    byteord: str = "1,2,3,4",
    delim: str = "/",
    version: str = "FCS3.1",
    extra: dict[str, str] | None = None,
    drop: tuple[str, ...] = (),
    tot: int | None = None,
    header_data: tuple[str, str] | None = None,
    data_bytes: bytes | None = None,
    override: dict[str, str] | None = None,
) -> bytes:
    """A complete FCS file as bytes; every knob breaks one thing.

    ``override`` replaces keywords after the DATA offsets are filled in (it can break
    ``$BEGINDATA``/``$ENDDATA`` too); its values must not change length between the two
    passes that place DATA.
    """
    order = "<" if byteord.startswith("1") else ">"
    bits = bits or (64 if datatype == "D" else 32)
    if data_bytes is None:
        if datatype == "F":
            data_bytes = data.astype(order + "f4").tobytes()
        elif datatype == "D":
            data_bytes = data.astype(order + "f8").tobytes()
        else:
            data_bytes = data.astype(order + f"u{bits // 8}").tobytes()
    kw: dict[str, str] = {
        "$BYTEORD": byteord,
        "$DATATYPE": datatype,
        "$MODE": "L",
        "$NEXTDATA": "0",
        "$PAR": str(len(channels)),
        "$TOT": str(len(data) if tot is None else tot),
        "$CYT": "TestCyt",
        "$DATE": "24-NOV-2026",
        "$TIMESTEP": "0.1",
    }
    for i, (name, stain) in enumerate(channels, start=1):
        kw[f"$P{i}N"] = name
        if stain:
            kw[f"$P{i}S"] = stain
        kw[f"$P{i}B"] = str(bits)
        kw[f"$P{i}E"] = "0,0"
        kw[f"$P{i}R"] = "1024"
    kw.update(extra or {})
    for key in drop:
        kw.pop(key, None)

    def text_for(begin: int, end: int) -> bytes:
        full = {**kw, "$BEGINDATA": f"{begin:010d}", "$ENDDATA": f"{end:010d}"}
        if version == "FCS2.0":
            full.pop("$BEGINDATA")
            full.pop("$ENDDATA")
        full.update(override or {})
        esc = {k: v.replace(delim, delim * 2) for k, v in full.items()}
        body = delim.join(f"{k}{delim}{v}" for k, v in esc.items())
        return (delim + body + delim).encode("utf-8")

    text = text_for(0, 0)
    begin = 58 + len(text)
    end = begin + len(data_bytes) - 1
    text = text_for(begin, end)
    assert 58 + len(text) == begin
    hb, he = header_data if header_data is not None else (str(begin), str(end))
    header = f"{version:<6}    {58:>8}{57 + len(text):>8}{hb:>8}{he:>8}{0:>8}{0:>8}"
    return header.encode("latin-1") + text + data_bytes


def _write(tmp_path: Path, content: bytes, name: str = "x.fcs") -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def _read(path: Path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FCSQuirkWarning)
        return nio.read_fcs(path, **kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"datatype": "D"},
        {"datatype": "I", "bits": 16},
        {"datatype": "I", "bits": 32, "byteord": "4,3,2,1"},
        {"datatype": "I", "bits": 8, "data": np.minimum(EVENTS, 255)},
        {"version": "FCS2.0"},
        {"version": "FCS3.0", "byteord": "4,3,2,1"},
        {"delim": "|"},
        {"delim": "\x0c"},
        {"delim": "*"},
    ],
    ids=["f32", "f64", "u16", "u32-big", "u8", "fcs2", "fcs3-big", "pipe", "formfeed", "star"],
)
def test_valid_variants_roundtrip(tmp_path: Path, kwargs: dict) -> None:
    data = kwargs.pop("data", EVENTS)
    expect = np.floor(data) if kwargs.get("datatype") == "I" else data
    path = _write(tmp_path, build_fcs(data, **kwargs))
    adata = nio.read_fcs(path, preprocess=False)
    np.testing.assert_array_equal(adata.X, expect.astype(np.float32))
    assert list(adata.var["marker"]) == ["", "", "CD56", "CD16", ""]
    assert list(adata.var["kind"]) == ["scatter", "scatter", "fluorescence", "fluorescence", "time"]
    # preprocessing scales Time by $TIMESTEP only
    pre = nio.read_fcs(path).X
    np.testing.assert_allclose(pre[:, 4], expect[:, 4].astype(np.float64) * 0.1, rtol=1e-6)


def test_escaped_delimiter_in_values(tmp_path: Path) -> None:
    path = _write(tmp_path, build_fcs(extra={"$FIL": "a/b//c.fcs", "$P3S": "CD56/NCAM1 PE"}))
    adata = nio.read_fcs(path)
    assert adata.uns["nkflow"]["fcs"]["fil"] == "a/b//c.fcs"
    assert adata.var.loc["FL1-A", "pns"] == "CD56/NCAM1 PE"
    assert adata.var.loc["FL1-A", "marker"] == "CD56"


def test_quirk_empty_value_as_doubled_delimiter() -> None:
    raw = b"/$P1N/FSC-A/$P1S//$P1E/0,0/$FIL/a//b.fcs/"
    with pytest.warns(FCSQuirkWarning, match=r"doubled delimiter for \$P1S"):
        kw, _ = nio.fcs_text.parse_text_segment(raw)
    assert kw == {"$P1N": "FSC-A", "$P1S": "", "$P1E": "0,0", "$FIL": "a/b.fcs"}


def test_container_layout(tmp_path: Path) -> None:
    spill = "2,FL1-A,FL2-A,1,0.1,0.02,1"
    path = _write(tmp_path, build_fcs(extra={"$SPILLOVER": spill}))
    adata = nio.read_fcs(path, sample_id="s1", metadata={"donor": "D1", "tissue": "liver"})
    assert list(adata.obs_names[:3]) == ["0", "1", "2"]
    assert adata.obs["sample_id"].dtype == "category"
    info = adata.uns["nkflow"]
    assert info["sample"]["sample_id"] == "s1"
    assert info["sample"]["donor"] == "D1" and info["sample"]["role"] == "sample"
    assert info["fcs"]["version"] == "3.1" and info["fcs"]["cyt"] == "TestCyt"
    assert info["spillover"] == {"channels": ["FL1-A", "FL2-A"], "matrix": [[1, 0.1], [0.02, 1]]}
    assert list(adata.var.columns) == ["marker", "pns", "kind", "range", "transform"]
    assert nio.channel_for(adata, "NCAM1") == "FL1-A"


def test_spillover_numeric_channel_refs(tmp_path: Path) -> None:
    path = _write(tmp_path, build_fcs(extra={"SPILL": "2,3,4,1,0.5,0,1"}))
    assert nio.read_fcs(path).uns["nkflow"]["spillover"]["channels"] == ["FL1-A", "FL2-A"]


def test_quirk_off_by_one_end_offset(tmp_path: Path) -> None:
    # $ENDDATA points one byte past the last event byte (MACSQuant, FC500 ...)
    path = _write(tmp_path, build_fcs(data_bytes=EVENTS.astype("<f4").tobytes() + b"\x00"))
    with pytest.warns(FCSQuirkWarning, match="off by one"):
        adata = nio.read_fcs(path)
    np.testing.assert_array_equal(adata.X[:, :4], EVENTS[:, :4])


def test_quirk_header_offsets_zero(tmp_path: Path) -> None:
    path = _write(tmp_path, build_fcs(header_data=("0", "0")))
    with pytest.warns(FCSQuirkWarning, match="HEADER DATA offsets are 0"):
        assert nio.read_fcs(path).n_obs == 40


def test_quirk_padded_keyword_names(tmp_path: Path) -> None:
    raw = build_fcs().replace(b"/$DATATYPE/", b"/    $DATATYPE/")
    # keep offsets valid: the TEXT grew by 4 bytes, so rebuild the header
    path = _write(tmp_path, _fix_header(raw))
    with pytest.warns(FCSQuirkWarning, match="padded"):
        assert nio.read_fcs(path).n_obs == 40


def _fix_header(raw: bytes) -> bytes:
    """Recompute HEADER/TEXT offsets after editing the TEXT of a build_fcs file."""
    text_end = raw.index(b"/", raw.rindex(b"$ENDDATA/") + 9)
    n_data = len(EVENTS.astype("<f4").tobytes())
    begin = text_end + 1
    text = raw[58 : text_end + 1]
    text = text.replace(
        text[text.index(b"$BEGINDATA/") : text.index(b"/", text.index(b"$ENDDATA/") + 9)],
        f"$BEGINDATA/{begin:010d}/$ENDDATA/{begin + n_data - 1:010d}".encode(),
    )
    header = f"FCS3.1    {58:>8}{text_end:>8}{begin:>8}{begin + n_data - 1:>8}{0:>8}{0:>8}"
    return header.encode() + text + raw[text_end + 1 :]


def test_quirk_header_offsets_disagree_with_text(tmp_path: Path) -> None:
    path = _write(tmp_path, build_fcs(header_data=("900000", "999999")))
    with pytest.warns(FCSQuirkWarning, match="disagree with"):
        np.testing.assert_array_equal(nio.read_fcs(path).X[:, :4], EVENTS[:, :4])


@pytest.mark.parametrize(
    ("version", "rule", "not_said"),
    [
        (
            "FCS3.0",
            "this FCS 3.0 file predates the rule (FCS 3.1 requires $PnE 0,0",
            "3.0 requires",
        ),
        ("FCS3.1", "FCS 3.1 requires $PnE 0,0 for floating-point data", "predates"),
    ],
)
def test_quirk_float_log_amplification_cites_the_files_standard(
    tmp_path: Path, version: str, rule: str, not_said: str
) -> None:
    # FCS 3.0 states no $PnE rule for float data (only $PnB 32/64); the rule is FCS 3.1's
    path = _write(tmp_path, build_fcs(version=version, extra={"$P3E": "4,0"}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        adata = nio.read_fcs(path)
    said = [str(w.message) for w in caught if "log amplification" in str(w.message)]
    assert len(said) == 1 and rule in said[0] and not_said not in said[0]
    assert "3.1/3.2" not in said[0]
    np.testing.assert_array_equal(adata.X[:, 2], EVENTS[:, 2])  # read as stored


def _masked_bits_said(path: Path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        adata = nio.read_fcs(path)
    return adata, [str(w.message) for w in caught if "bits above $PnR" in str(w.message)]


def test_quirk_bits_above_pnr_are_masked_and_said(tmp_path: Path) -> None:
    # Coulter System II / Navios LMD: other information in the bits above a 10-bit ADC
    values = np.minimum(EVENTS, 1023).astype(np.uint16)
    junk = values.copy()
    junk[::3, 2] |= 0x8400  # FL1-A: bits 10 and 15 set on every third event
    path = _write(tmp_path, build_fcs(junk, datatype="I", bits=16))
    adata, said = _masked_bits_said(path)
    assert len(said) == 1  # once per file, not once per channel or event
    assert "1 integer channel(s) (FL1-A up to" in said[0] and "(10 for 1024)" in said[0]
    np.testing.assert_array_equal(adata.X[:, :4], values[:, :4].astype(np.float32))
    assert said[0].split(": ", 1)[1] in adata.uns["nkflow"]["fcs"]["quirks"]
    clean = _write(tmp_path, build_fcs(values, datatype="I", bits=16), "clean.fcs")
    assert _masked_bits_said(clean)[1] == []


def test_quirk_bits_above_pnr_in_a_mixed_width_layout(tmp_path: Path) -> None:
    values = np.minimum(EVENTS, 1023).astype(np.uint32)
    dtype = np.dtype([(f"c{j}", "<u2" if j < 4 else "<u4") for j in range(5)])
    rec = np.zeros(len(values), dtype=dtype)
    for j in range(5):
        rec[f"c{j}"] = values[:, j]
    rec["c4"] |= 1 << 20  # Time: a counter wider than its $PnR
    raw = build_fcs(values, datatype="I", bits=16, extra={"$P5B": "32"}, data_bytes=rec.tobytes())
    adata, said = _masked_bits_said(_write(tmp_path, raw))
    assert len(said) == 1 and "Time up to" in said[0]
    np.testing.assert_array_equal(adata.X[:, :4], values[:, :4].astype(np.float32))
    np.testing.assert_allclose(adata.X[:, 4], values[:, 4] * 0.1, rtol=1e-6)  # $TIMESTEP


def test_both_data_locations_fit_the_one_after_text_wins(tmp_path: Path) -> None:
    # Summit (CyAn): $BEGINDATA/$ENDDATA 46 bytes past the HEADER's DATA, which follows
    # the TEXT; both hold $TOT events' bytes, only one holds the events
    data = EVENTS.astype("<f4").tobytes()
    begin = int(build_fcs(data_bytes=data + b" " * 8)[26:34])
    end = begin + len(data) - 1
    raw = build_fcs(
        data_bytes=data + b" " * 8,
        header_data=(str(begin), str(end)),
        override={"$BEGINDATA": f"{begin + 8:010d}", "$ENDDATA": f"{end + 8:010d}"},
    )
    path = _write(tmp_path, raw)
    with pytest.warns(FCSQuirkWarning, match=r"used \(\d+, \d+\), .*right after the TEXT"):
        adata = nio.read_fcs(path)
    np.testing.assert_array_equal(adata.X[:, :4], EVENTS[:, :4])


def test_quirk_tot_mild_disagreement(tmp_path: Path) -> None:
    path = _write(tmp_path, build_fcs(tot=41))
    with pytest.warns(FCSQuirkWarning, match=r"\$TOT=41 but the DATA segment holds 40"):
        assert nio.read_fcs(path).n_obs == 40


def test_nan_inf_values(tmp_path: Path) -> None:
    data = EVENTS.copy()
    data[3, 2] = np.nan
    data[7, 3] = np.inf
    path = _write(tmp_path, build_fcs(data))
    with pytest.raises(FCSReadError, match=r"2 NaN/Inf .*FL1-A \(1\), FL2-A \(1\)"):
        nio.read_fcs(path)
    with pytest.warns(FCSQuirkWarning, match="dropped 2 event"):
        adata = nio.read_fcs(path, nonfinite="drop")
    assert adata.n_obs == 38 and "3" not in adata.obs_names and "39" in adata.obs_names


@pytest.mark.parametrize("nonfinite", ["raise", "drop"])
def test_a_wrong_byteord_is_named_not_dropped(tmp_path: Path, nonfinite: str) -> None:
    """A good file whose $BYTEORD says the other order: its floats read as NaN/Inf scattered
    over every channel, and dropping those events would analyse misread values."""
    events = np.random.default_rng(3).uniform(0, 1000, size=(2000, len(CHANNELS)))
    raw = build_fcs(events.astype(np.float32), byteord="4,3,2,1", override={"$BYTEORD": "1,2,3,4"})
    path = _write(tmp_path, raw)
    with pytest.raises(FCSReadError, match=r"NaN/Inf .*opposite byte order.*\$BYTEORD \(1,2,3,4\)"):
        _read(path, nonfinite=nonfinite)
    fixed = _write(tmp_path, build_fcs(events.astype(np.float32), byteord="4,3,2,1"), "ok.fcs")
    assert _read(fixed).n_obs == 2000  # the same events under their own $BYTEORD


@pytest.mark.parametrize("whole_numbers", [False, True], ids=["decimals", "whole-numbers"])
def test_genuine_nan_values_are_not_blamed_on_the_byte_order(
    tmp_path: Path, whole_numbers: bool
) -> None:
    """One NaN in a good file: the usual advice, and ``drop`` drops it. Whole-number floats
    swapped are tiny subnormal numbers, finite and within $PnR: not data either."""
    data = np.random.default_rng(0).uniform(0, 1000, size=(2000, len(CHANNELS)))
    data = (np.round(data) if whole_numbers else np.round(data, 2)).astype(np.float32)
    data[5, 2] = np.nan
    path = _write(tmp_path, build_fcs(data))
    with pytest.raises(FCSReadError, match="NaN/Inf") as err:
        nio.read_fcs(path)
    assert "byte order" not in str(err.value) and 'qc.nonfinite = "drop"' in str(err.value)
    assert _read(path, nonfinite="drop").n_obs == 1999


def test_empty_pnn_replaced(tmp_path: Path) -> None:
    chans = [*CHANNELS[:4], ("", "")]
    # the writer puts "$P5N//" (an empty value as a doubled delimiter): two quirks
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        adata = nio.read_fcs(_write(tmp_path, build_fcs(channels=chans)))
    messages = " | ".join(str(w.message) for w in caught)
    assert "empty channel names" in messages and "doubled delimiter" in messages
    assert adata.var_names[-1] == "P5"


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("$NEXTDATA", "inf", "keyword $NEXTDATA has value 'inf', not a whole number of bytes"),
        ("$NEXTDATA", "-58", "keyword $NEXTDATA has value '-58', a negative number of bytes"),
        ("$BEGINSTEXT", "nan", "keyword $BEGINSTEXT has value 'nan', not a whole number"),
    ],
)
def test_bad_chain_offsets_are_tolerated_in_words(
    tmp_path: Path, key: str, value: str, reason: str
) -> None:
    # Only the link to further data sets / supplemental TEXT is lost: the data set loads.
    path = _write(tmp_path, build_fcs(extra={key: value}))
    with pytest.warns(FCSQuirkWarning, match=re.escape(reason)):
        adata = nio.read_fcs(path)
    np.testing.assert_array_equal(adata.X[:, :4], EVENTS[:, :4])


BAD_CASES = {
    "truncated data": (lambda: build_fcs()[:-17], "truncated"),
    "header offsets past eof": (
        lambda: build_fcs(version="FCS2.0", header_data=("900000", "999999")),
        "past the end",
    ),
    "text past eof": (lambda: build_fcs()[:200], "past the end"),
    "missing $PAR": (lambda: build_fcs(drop=("$PAR",)), "$PAR"),
    "missing $TOT": (lambda: build_fcs(drop=("$TOT",)), "$TOT"),
    "missing $DATATYPE": (lambda: build_fcs(drop=("$DATATYPE",)), "$DATATYPE"),
    "missing $BYTEORD": (lambda: build_fcs(drop=("$BYTEORD",)), "$BYTEORD"),
    "missing $P2R": (lambda: build_fcs(drop=("$P2R",)), "$P2R"),
    "missing $P2B int": (lambda: build_fcs(datatype="I", bits=16, drop=("$P2B",)), "$P2B"),
    "tot disagrees": (lambda: build_fcs(tot=30), "$TOT=30"),
    "tot billions": (lambda: build_fcs(tot=5_000_000_000), "more than the whole file"),
    "datatype ascii": (lambda: build_fcs(extra={"$DATATYPE": "A"}), "unsupported $DATATYPE"),
    "datatype junk": (lambda: build_fcs(extra={"$DATATYPE": "Q"}), "unsupported $DATATYPE"),
    "mode histogram": (lambda: build_fcs(extra={"$MODE": "C"}), "unsupported $MODE"),
    "byteord pdp": (lambda: build_fcs(byteord="3,4,1,2"), "unsupported $BYTEORD"),
    "zero events": (lambda: build_fcs(EVENTS[:0]), "$TOT is 0"),
    "zero channels": (lambda: build_fcs(EVENTS[:, :0], channels=[]), "$PAR is 0"),
    "duplicate pnn": (
        lambda: build_fcs(channels=[*CHANNELS[:3], ("FL1-A", "x"), CHANNELS[4]]),
        "duplicate channel names",
    ),
    "version 1.0": (lambda: b"FCS1.0" + build_fcs()[6:], "unsupported FCS version"),
    "non numeric tot": (
        lambda: build_fcs(extra={"$TOT": "many"}),
        "keyword $TOT has value 'many', not a whole number of events",
    ),
    "superscript digit tot": (
        lambda: build_fcs(extra={"$TOT": "4²"}),
        "keyword $TOT has value '4²', not a whole number of events (it contains the "
        "non-ASCII character '²')",
    ),
    "arabic-indic digits par": (
        lambda: build_fcs(extra={"$PAR": "\u0665"}),
        "keyword $PAR has value '٥', not a whole number of parameters",
    ),
    "negative tot": (lambda: build_fcs(extra={"$TOT": "-40"}), "a negative number of events"),
    "fractional par": (lambda: build_fcs(extra={"$PAR": "4.5"}), "not a whole number"),
    "infinite begindata": (
        lambda: build_fcs(
            override={"$BEGINDATA": "inf", "$ENDDATA": "1e999"}, header_data=("0", "0")
        ),
        "keyword $BEGINDATA has value 'inf', not a whole number of bytes",
    ),
    "nan enddata": (
        lambda: build_fcs(override={"$ENDDATA": "nan"}, header_data=("0", "0")),
        "keyword $ENDDATA has value 'nan', not a whole number of bytes",
    ),
    "huge begindata": (
        lambda: build_fcs(override={"$BEGINDATA": "9" * 30}, header_data=("0", "0")),
        "too large to be a number of bytes",
    ),
    "superscript header offset": (
        lambda: build_fcs(header_data=("²", "999")),
        "HEADER DATA start offset",
    ),
    "superscript bit width": (
        lambda: build_fcs(datatype="I", bits=16, extra={"$P2B": "1⁶"}),
        "keyword $P2B has value '1⁶', not a whole number of bits",
    ),
    "infinite range": (lambda: build_fcs(extra={"$P1R": "inf"}), "keyword $P1R has value 'inf'"),
    "too many parameters": (
        lambda: build_fcs(extra={"$PAR": "100000"}),
        "$PAR=100000 declares more parameters than the limit of 5000",
    ),
    "bad bit width": (lambda: build_fcs(datatype="I", bits=16, extra={"$P1B": "128"}), "$P1B"),
    "non-fcs text": (lambda: b"sample,donor\na,b\n" * 10, "not an FCS file"),
    "empty file": (lambda: b"", "empty"),
    "short non-fcs text": (lambda: b"hello,world\n1,2\n", "not an FCS file (starts with b'hello"),
    "short fcs start": (lambda: b"FCS3.1  ", "8 byte(s) is too short for an FCS HEADER"),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_malformed_input_raises_fcsreaderror(tmp_path: Path, case: str) -> None:
    make, reason = BAD_CASES[case]
    path = _write(tmp_path, make(), name="bad file.fcs")
    with pytest.raises(FCSReadError) as info:
        _read(path)
    assert info.value.path == path
    assert reason in info.value.reason
    # the cheap readers agree and never raise anything else
    with pytest.raises(FCSReadError):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FCSQuirkWarning)
            nio.read_fcs_metadata(path)
    table = nio.inspect_files([path])
    assert table.loc[0, "error"]


def test_directory_named_fcs(tmp_path: Path) -> None:
    folder = tmp_path / "dir.fcs"
    folder.mkdir()
    with pytest.raises(FCSReadError, match="directory"):
        nio.read_fcs(folder)
    with pytest.raises(FCSReadError, match="does not exist"):
        nio.read_fcs(tmp_path / "missing.fcs")
    with pytest.raises(FCSReadError):
        nio.read_fcs_metadata(str(tmp_path / "nul\x00byte.fcs"))
    assert nio.inspect_files([folder, "nul\x00.fcs"])["error"].str.len().gt(0).all()


def test_billions_of_events_do_not_allocate(tmp_path: Path) -> None:
    path = _write(tmp_path, build_fcs(tot=4_000_000_000))
    tracemalloc.start()
    try:
        with pytest.raises(FCSReadError):
            _read(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000


SMALL = build_fcs(EVENTS[:6], datatype="I", bits=16)


def _assert_worded(exc: FCSReadError, path: Path) -> None:
    """A reason in words, naming the file: no bare exception repr, no catch-all."""
    assert exc.path == path
    reason = exc.reason
    assert reason and "unexpected" not in reason, reason
    assert not re.match(r"^\w*(Error|Exception)\b", reason), reason
    assert not re.search(r"\((ValueError|OverflowError|TypeError|IndexError|KeyError)", reason)


def _only_fcs_errors(path: Path) -> None:
    """read_fcs, read_fcs_metadata and inspect_files: load, or a worded FCSReadError."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            adata = nio.read_fcs(path)
        except FCSReadError as exc:
            _assert_worded(exc, path)
        else:
            assert adata.n_obs > 0 and adata.X.dtype == np.float32
        try:
            nio.read_fcs_metadata(path)
        except FCSReadError as exc:
            _assert_worded(exc, path)
        row = nio.inspect_files([path]).iloc[0]
        assert "unexpected" not in row["error"]


@settings(
    max_examples=200,
    deadline=3000,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(SMALL) - 1), st.integers(0, 255)), min_size=1, max_size=8
    ),
    cut=st.one_of(st.none(), st.integers(0, len(SMALL))),
    insert=st.one_of(st.none(), st.tuples(st.integers(0, len(SMALL)), st.binary(max_size=12))),
)
def test_fuzz_only_nkflow_errors_escape(tmp_path: Path, edits, cut, insert) -> None:
    raw = bytearray(SMALL)
    for pos, value in edits:
        raw[pos] = value
    if insert is not None:
        pos, blob = insert
        raw[pos:pos] = blob
    if cut is not None:
        del raw[cut:]
    path = tmp_path / "fuzz.fcs"
    path.write_bytes(bytes(raw))
    _only_fcs_errors(path)


# Structural damage: keywords that place DATA or size it, set to hostile values.
STRUCTURAL_KEYS = [
    "$PAR", "$TOT", "$P1B", "$P3B", "$BEGINDATA", "$ENDDATA", "$NEXTDATA", "$BEGINSTEXT",
    "$ENDSTEXT", "$P2R", "$P2E", "$P4G", "$TIMESTEP", "$DATATYPE", "$BYTEORD", "$SPILLOVER",
    "$P1DATATYPE", "$P5DATATYPE", "$MODE",
]  # fmt: skip
HOSTILE_VALUES = [
    "inf", "-inf", "Infinity", "nan", "NaN", "-1", "-0", "0", "1", "4", "6", "8", "64", "1.5",
    "1e3", "1e999", "9" * 25, "99999999", "100000", "4²", "١٢", "٣", "①", "0x10", "1_0",
    " 7 ", "", "∞", "I", "F", "D", "A", "2,5,abc", "1,2", "4,3,2,1", "2,FL1-A,FL2-A,1,inf,0,1",
]  # fmt: skip
_value = st.one_of(
    st.sampled_from(HOSTILE_VALUES),
    st.integers(-(10**20), 10**20).map(str),
    st.text(max_size=6),
)
_header_value = st.sampled_from([v for v in HOSTILE_VALUES if len(v) <= 8 and v.isascii()])


@settings(
    max_examples=250,
    deadline=3000,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
@given(
    edits=st.lists(st.tuples(st.sampled_from(STRUCTURAL_KEYS), _value), min_size=1, max_size=4),
    header=st.one_of(st.none(), st.tuples(_header_value, _header_value)),
    layout=st.sampled_from(["F", "I16", "I32", "mixed", "many"]),
)
def test_fuzz_structural_keywords(tmp_path: Path, edits, header, layout: str) -> None:
    data, channels = EVENTS[:6], CHANNELS
    kwargs: dict = {"datatype": "I", "bits": 16}
    if layout == "F":
        kwargs = {}
    elif layout == "I32":
        kwargs = {"datatype": "I", "bits": 32}
    elif layout == "mixed":  # FCS 3.2: per-channel data types, 4 bytes each
        kwargs = {"datatype": "I", "bits": 32, "version": "FCS3.2",
                  "extra": {"$P2DATATYPE": "F", "$P4DATATYPE": "F"}}  # fmt: skip
        data = np.floor(data)
    elif layout == "many":  # hundreds of parameters, a few events
        channels = [(f"C{i}", f"S{i}") for i in range(300)]
        data = np.ones((3, 300), dtype=np.float32)
    override = {}
    for key, value in edits:
        override[key] = value
    raw = build_fcs(data, channels=channels, override=override, header_data=header, **kwargs)
    path = tmp_path / "structural.fcs"
    path.write_bytes(raw)
    _only_fcs_errors(path)


def test_plus_and_minus_inf_raise_without_numpy_warning(tmp_path: Path) -> None:
    """inf + -inf in the one-pass check made numpy warn 'invalid value encountered'."""
    data = EVENTS.copy()
    data[3, 2] = np.inf
    data[7, 2] = -np.inf
    path = _write(tmp_path, build_fcs(data))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        # the remedy works on the command line too: a config key, not only the library
        with pytest.raises(FCSReadError, match=r'qc\.nonfinite = "drop".*--config'):
            nio.read_fcs(path)


def test_bad_nonfinite_is_a_config_error(tmp_path: Path) -> None:
    from nkflow.exceptions import ConfigError

    with pytest.raises(ConfigError, match="'raise', 'drop'"):
        nio.read_fcs(_write(tmp_path, build_fcs()), nonfinite="bogus")


def test_run_config_can_drop_nonfinite_events(tmp_path: Path) -> None:
    from nkflow.config import QCConfig, RunConfig, replace_values
    from nkflow.exceptions import ConfigError
    from nkflow.pipeline.sample import SampleTask, load_sample

    data = EVENTS.copy()
    data[3, 2] = np.nan
    path = _write(tmp_path, build_fcs(data))
    with pytest.raises(ConfigError, match=r"qc\.nonfinite"):
        replace_values(RunConfig(), {"qc.nonfinite": "keep"})
    cfg = RunConfig(qc=QCConfig(enabled=False, nonfinite="drop"))
    task = SampleTask("s1", str(path), {}, cfg, "human_tissue")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert load_sample(task).n_obs == 39
