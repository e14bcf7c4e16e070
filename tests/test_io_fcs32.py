"""FCS 3.2: per-channel data types, channel descriptions, 3.2 keywords; reader and writer."""

from __future__ import annotations

import re
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
from test_io_fcs_malformed import build_fcs

import nkflow.io as nio
from nkflow.exceptions import FCSQuirkWarning, FCSReadError
from nkflow.io.fcs_data import _decode_raw
from nkflow.io.fcs_write import write_fcs

NAMES = ["FSC-A", "SSC-A", "B1-A", "B2-A", "Index", "Time"]
KINDS = ["F", "F", "I", "I", "D", "I"]
BITS = [32, 32, 16, 32, 64, 32]
DESCRIBE = {
    "$CYT": "Aurora",
    "$BEGINDATETIME": "2024-03-12T09:00:00+01:00",
    "$ENDDATETIME": "2024-03-12T09:05:10+01:00",
    "$P1TYPE": "Forward_Scatter",
    "$P1FEATURE": "Area",
    "$P2TYPE": "Side_Scatter",
    "$P3TYPE": "Raw_Fluorescence",
    "$P3DET": "B1",
    "$P3FEATURE": "Area",
    "$P4TYPE": "Unmixed_Fluorescence",
    "$P4TAG": "BV421",
    "$P4ANALYTE": "CD56",
    "$P4FEATURE": "Height",
    "$P5TYPE": "Index",
    "$P6TYPE": "Time",
    "$UNSTAINEDCENTERS": "2,B1-A,B2-A,12.5,-3",
    "$CARRIERID": "plate-7",
    "$CARRIERTYPE": "96-well",
    "$LOCATIONID": "B07",
    "$FLOWRATE": "25 uL/min",
}


def _events() -> np.ndarray:
    """Values each channel's type holds exactly, including the extremes of the widths."""
    rng = np.random.default_rng(32)
    n = 50
    data = np.empty((n, len(NAMES)), dtype=np.float64)
    data[:, 0] = rng.uniform(-100, 250_000, n).astype(np.float32)
    data[:, 1] = rng.uniform(0, 250_000, n).astype(np.float32)
    data[:, 2] = rng.integers(0, 2**16, n)
    data[:, 3] = rng.integers(0, 2**32, n)
    data[:, 4] = rng.uniform(-1, 1, n) / 3.0  # float64 digits float32 cannot hold
    data[:, 5] = np.arange(n)
    data[:2, 2] = [0, 2**16 - 1]
    data[:2, 3] = [2**32 - 1, 2**24 + 1]  # not representable in float32
    return data


def _write32(path: Path, data: np.ndarray, **kwargs) -> Path:
    return write_fcs(path, data, NAMES, version="3.2", datatypes=KINDS, bits=BITS,
                     keywords={**DESCRIBE, "$TIMESTEP": "0.01"}, **kwargs)  # fmt: skip


def _quiet_read(path: Path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FCSQuirkWarning)
        return nio.read_fcs(path, **kwargs)


def test_writer_follows_fcs32(tmp_path: Path) -> None:
    raw = _write32(tmp_path / "a.fcs", _events()).read_bytes()
    assert raw[:10] == b"FCS3.2    "
    text_end = int(raw[18:26])
    text = raw[58 : text_end + 1].decode()
    # $DATATYPE is the most common type; the others say their own
    assert "/$DATATYPE/I/" in text and "/$MODE/" not in text
    for i, (kind, bits) in enumerate(zip(KINDS, BITS, strict=True), start=1):
        assert f"/$P{i}B/{bits}/" in text
        assert (f"/$P{i}DATATYPE/{kind}/" in text) == (kind != "I")
    assert "/$P3R/65536/" in text and "/$P4R/4294967296/" in text
    assert "/$P4ANALYTE/CD56/" in text and "/$CYT/Aurora/" in text


def test_mixed_datatypes_round_trip_exactly(tmp_path: Path) -> None:
    data = _events()
    path = _write32(tmp_path / "a.fcs", data)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FCSQuirkWarning)  # a conforming file has no quirk
        meta = nio.read_fcs_metadata(path)
        adata = nio.read_fcs(path, preprocess=False)
    assert meta.version == "3.2" and meta.datatypes == KINDS and meta.datatype == "D/F/I"
    # float64 decode: every stored value comes back bit for bit
    np.testing.assert_array_equal(_decode_raw(meta, np.float64), data)
    # the container is float32: each value rounded once, from the exact value
    np.testing.assert_array_equal(adata.X, data.astype(np.float32))
    scaled = _quiet_read(path).X
    np.testing.assert_allclose(scaled[:, 5], data[:, 5] * 0.01, rtol=1e-6)  # $TIMESTEP


def test_hand_packed_mixed_file(tmp_path: Path) -> None:
    """A file packed byte by byte (struct), independent of nkflow's writer."""
    rows = [(1.5, 7, 4_000_000_000, -2.25), (-3.0, 65535, 1, 1e300), (0.0, 0, 0, 5e-324)]
    fmt = ">fHId"  # big-endian float32, uint16, uint32, float64
    data_bytes = b"".join(struct.pack(fmt, *row) for row in rows)
    chans = [("A", ""), ("B", ""), ("C", ""), ("D", "")]
    extra = {"$DATATYPE": "F", "$P2DATATYPE": "I", "$P2B": "16", "$P2R": "65536",
             "$P3DATATYPE": "I", "$P3B": "32", "$P3R": "4294967296", "$P4DATATYPE": "D",
             "$P4B": "64"}  # fmt: skip
    raw = build_fcs(np.zeros((3, 4)), channels=chans, bits=32, byteord="4,3,2,1",
                    version="FCS3.2", data_bytes=data_bytes, extra=extra)  # fmt: skip
    path = tmp_path / "packed.fcs"
    path.write_bytes(raw)
    meta = nio.read_fcs_metadata(path)
    np.testing.assert_array_equal(_decode_raw(meta, np.float64), np.array(rows))


def test_odd_integer_width_beside_floats(tmp_path: Path) -> None:
    # 24-bit integers between float channels: assembled byte by byte
    rows = [(2.5, 0xABCDEF, -1.0), (0.25, 3, 1e10)]
    data_bytes = b"".join(
        struct.pack("<f", a) + b.to_bytes(3, "little") + struct.pack("<d", c) for a, b, c in rows
    )
    extra = {"$P2DATATYPE": "I", "$P2B": "24", "$P2R": "16777216", "$P3DATATYPE": "D",
             "$P3B": "64"}  # fmt: skip
    raw = build_fcs(np.zeros((2, 3)), channels=[("A", ""), ("B", ""), ("C", "")],
                    version="FCS3.2", data_bytes=data_bytes, extra=extra)  # fmt: skip
    path = tmp_path / "odd.fcs"
    path.write_bytes(raw)
    meta = _quiet_meta(path)
    np.testing.assert_array_equal(_decode_raw(meta, np.float64), np.array(rows))


def _quiet_meta(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FCSQuirkWarning)
        return nio.read_fcs_metadata(path)


def test_channel_descriptions_in_var(tmp_path: Path) -> None:
    adata = _quiet_read(_write32(tmp_path / "a.fcs", _events()))
    var = adata.var
    assert list(var["type"]) == [
        "Forward_Scatter", "Side_Scatter", "Raw_Fluorescence", "Unmixed_Fluorescence",
        "Index", "Time",
    ]  # fmt: skip
    assert list(var["detector"]) == ["", "", "B1", "", "", ""]
    assert list(var["tag"]) == ["", "", "", "BV421", "", ""]
    assert list(var["analyte"]) == ["", "", "", "CD56", "", ""]
    assert list(var["feature"]) == ["Area", "", "Area", "Height", "", ""]
    assert list(var["datatype"]) == KINDS
    assert list(var["kind"]) == ["scatter", "scatter", "fluorescence", "fluorescence",
                                 "fluorescence", "time"]  # fmt: skip
    fcs = adata.uns["nkflow"]["fcs"]
    assert fcs["version"] == "3.2" and fcs["date"] == "2024-03-12"
    assert fcs["unstained_centers"] == {"B1-A": 12.5, "B2-A": -3.0}
    for key in ("$CARRIERID", "$CARRIERTYPE", "$LOCATIONID", "$FLOWRATE", "$ENDDATETIME"):
        assert fcs["keywords"][key] == DESCRIBE[key]


def test_pntype_decides_kind_over_the_name(tmp_path: Path) -> None:
    kw = {"$CYT": "X", "$P1TYPE": "Forward_Scatter", "$P2TYPE": "Mass"}
    path = write_fcs(
        tmp_path / "k.fcs", np.ones((3, 3)), ["Ch1", "Ch2", "Ch3"], version="3.2", keywords=kw
    )
    adata = nio.read_fcs(path)
    assert list(adata.var["kind"]) == ["scatter", "fluorescence", "fluorescence"]
    assert list(adata.var["type"]) == ["Forward_Scatter", "Mass", ""]
    assert "datatype" not in adata.var.columns  # one data type: no column


def test_fcs31_container_has_no_new_columns(tmp_path: Path) -> None:
    adata = nio.read_fcs(write_fcs(tmp_path / "p.fcs", np.ones((3, 2)), ["FSC-A", "SSC-A"]))
    assert list(adata.var.columns) == ["marker", "pns", "kind", "range", "transform"]
    assert adata.uns["nkflow"]["fcs"]["unstained_centers"] is None


def test_datatype_a_with_every_channel_typed(tmp_path: Path) -> None:
    # FCS 3.2 mixed layout: $DATATYPE may be anything when each channel has its own
    rows = np.array([[1.0, 2.0], [3.0, 4.0]], dtype="<f4")
    raw = build_fcs(rows, channels=[("A", ""), ("B", "")], version="FCS3.2",
                    extra={"$DATATYPE": "A", "$P1DATATYPE": "F", "$P2DATATYPE": "F"})  # fmt: skip
    path = tmp_path / "a.fcs"
    path.write_bytes(raw)
    np.testing.assert_array_equal(nio.read_fcs(path).X, rows)


@pytest.mark.parametrize(
    ("extra", "quirk"),
    [
        ({"$CYT": "  "}, "FCS 3.2 requires $CYT"),
        ({"$P3FEATURE": "Volume"}, "$P3FEATURE='Volume'"),
        ({"$P3E": "4,1", "$P3G": "2", "$P3DATATYPE": "I"}, "gain ($PnG) on a logarithmic"),
    ],
    ids=["no-cyt", "feature", "log-gain"],
)
def test_fcs32_rule_breaks_are_named(tmp_path: Path, extra: dict, quirk: str) -> None:
    data = np.floor(np.random.default_rng(0).uniform(0, 900, (10, 5)))
    path = tmp_path / "q.fcs"
    kwargs = {"datatype": "F"}
    if "$P3DATATYPE" in extra:  # an integer channel among floats, packed by hand
        kwargs = {"datatype": "I", "bits": 32, "extra": {"$P1DATATYPE": "F"}}
        rec = np.zeros(10, dtype=[(f"c{j}", "<f4" if j == 0 else "<u4") for j in range(5)])
        for j in range(5):
            rec[f"c{j}"] = data[:, j]
        kwargs["data_bytes"] = rec.tobytes()
        extra = {**kwargs.pop("extra"), **extra}
    path.write_bytes(build_fcs(data, version="FCS3.2", extra=extra, **kwargs))
    with pytest.warns(FCSQuirkWarning, match=re.escape(quirk)):
        adata = nio.read_fcs(path)
    assert adata.n_obs == 10


def test_pndatatype_in_older_version_is_honoured_with_a_quirk(tmp_path: Path) -> None:
    rec = np.zeros(4, dtype=[("a", "<f4"), ("b", "<u2")])
    rec["a"], rec["b"] = [0.5, 1.5, 2.5, 3.5], [1, 2, 3, 65535]
    raw = build_fcs(np.zeros((4, 2)), channels=[("A", ""), ("B", "")], data_bytes=rec.tobytes(),
                    extra={"$P2DATATYPE": "I", "$P2B": "16", "$P2R": "65536"})  # fmt: skip
    path = tmp_path / "v31.fcs"
    path.write_bytes(raw)
    with pytest.warns(FCSQuirkWarning, match="FCS 3.2 keyword in an FCS 3.1 file"):
        adata = nio.read_fcs(path, preprocess=False)
    np.testing.assert_array_equal(adata.X, np.stack([rec["a"], rec["b"]], axis=1))


def test_bad_pndatatype_is_a_worded_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.fcs"
    path.write_bytes(build_fcs(version="FCS3.2", extra={"$P2DATATYPE": "Q"}))
    with pytest.raises(FCSReadError, match=r"keyword \$P2DATATYPE has value 'Q'; valid: I"):
        nio.read_fcs(path)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"datatypes": ["F", "I"]}, "need FCS 3.2"),
        ({"datatypes": ["F", "I"], "version": "3.2", "keywords": {}}, "requires \\$CYT"),
        ({"datatypes": "I", "bits": 12}, "integer bit widths \\[12\\]"),
        ({"datatypes": "Z"}, "data types \\['Z'\\]"),
        ({"version": "3.3"}, "version='3.3'"),
        ({"datatypes": "I", "bits": 8, "data": [[256.0, 1.0]]}, "outside 0..255"),
        ({"datatypes": "I", "data": [[1.5, 1.0]]}, "non-integer values"),
        ({"datatypes": "I", "data": [[-1.0, 1.0]]}, "outside 0.."),
        ({"datatypes": "I", "ranges": 1024, "data": [[1024.0, 1.0]]}, "outside 0..1023"),
        ({"keywords": {"$P1B": "16"}}, "reserved"),
        ({"keywords": {"$P2DATATYPE": "D"}}, "reserved"),
    ],
)
def test_writer_refuses_what_it_cannot_write_faithfully(tmp_path, kwargs, match) -> None:
    data = np.asarray(kwargs.pop("data", [[1.0, 2.0]]))
    kwargs.setdefault("keywords", {"$CYT": "X"})
    with pytest.raises(ValueError, match=match):
        write_fcs(tmp_path / "x.fcs", data, ["A", "B"], **kwargs)
    assert not (tmp_path / "x.fcs").exists()


def test_uniform_integer_fcs31(tmp_path: Path) -> None:
    # datatypes= also serves FCS 3.1: one type for all channels
    data = np.array([[0, 65535], [7, 9]], dtype=float)
    path = write_fcs(tmp_path / "i.fcs", data, ["A", "B"], datatypes="I", bits=16)
    assert path.read_bytes()[:6] == b"FCS3.1"
    np.testing.assert_array_equal(nio.read_fcs(path, preprocess=False).X, data)
