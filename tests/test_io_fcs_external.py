"""read_fcs on every real FCS/LMD file in ../shared/external, checked against flowio and truth."""

from __future__ import annotations

import warnings
from pathlib import Path

import flowio
import numpy as np
import pandas as pd
import pytest
from conftest import EXTERNAL, EXTERNAL_FCS_FILES

import nkflow.io as nio
from nkflow.exceptions import FCSQuirkWarning, FCSReadError

FILES = EXTERNAL_FCS_FILES

# Files that must fail, with a word the reason must contain.
EXPECTED_ERRORS = {
    "fcsparser/fcsparser/tests/data/FlowCytometers/corrupted/corrupted.fcs": "not an FCS file",
    "fcsparser/fcsparser/tests/data/FlowCytometers/cytek-nl-2000/sample_header.fcs": "whole file",
}
# Files whose quirk must be named in an FCSQuirkWarning.
EXPECTED_QUIRKS = {
    "cytoflow/cytoflow/tests/data/instruments/Partec - CyFlow v2.9.fcs": "padded",
    "flowkit/data/multi_dataset_fcs/coulter.lmd": "2 data sets",
    "cytoflow/cytoflow/tests/data/instruments/Beckman Coulter - Cytomics FC500.LMD": "data sets",
    "fcsparser/fcsparser/tests/data/FlowCytometers/fake_large_fcs/fake_large_fcs.fcs": "blank",
    "flowkit/data/noncompliant/data_start_offset_discrepancy_example.fcs": "disagree",
    "flowkit/data/noncompliant/data_stop_offset_discrepancy_example.fcs": "disagree",
    "flowkit/data/test_comp_example.fcs": "off by one",
    "fcsparser/fcsparser/tests/data/FlowCytometers/Cytek_xP5/Cytek_xP5.fcs": "24-bit",
    "flowcal/test/Data003.fcs": "24-bit",
    "cytoflow/cytoflow/tests/data/module_examples/itn_02.fcs": "FCS 3.0 file predates the rule",
    "cytoflow/cytoflow/tests/data/instruments/"
    "System II listmode with extra info in bits D10-D15.LMD": "bits above $PnR set in 6",
    "fcsparser/fcsparser/tests/data/FlowCytometers/fake_bitmask_error/fcs1_cleaned.lmd": (
        "bits above $PnR set in 7"
    ),
}


# Files whose HEADER and TEXT DATA offsets both span $TOT events: flowio takes the TEXT's
# unless told otherwise; nkflow takes the span that follows the TEXT segment.
FLOWIO_HEADER_OFFSETS = {
    "cytoflow/cytoflow/tests/data/instruments/Beckman Coulter - Cyan.fcs",
}


def _flowio_events(path: Path, dataset: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(raw, preprocessed) events from flowio, None where flowio cannot produce them."""
    opts = {"ignore_offset_error": True, "ignore_offset_discrepancy": True}
    if str(path.relative_to(EXTERNAL)) in FLOWIO_HEADER_OFFSETS:
        opts["use_header_offsets"] = True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                fd = flowio.FlowData(str(path), **opts)
            except flowio.exceptions.MultipleDataSetsError:
                fd = flowio.read_multiple_data_sets(str(path), **opts)[dataset]
    except Exception:  # flowio's own failures: nothing to compare with
        return None, None
    if fd.events is None:
        return None, None
    raw = np.asarray(fd.events, dtype=np.float64).reshape(-1, fd.channel_count)
    try:
        pre = fd.as_array(preprocess=True)
    except Exception:
        pre = None
    return raw, pre


def _independent_decode(meta: nio.FCSMetadata, n: int) -> np.ndarray:
    """Slow per-value decode of the first n events (int.from_bytes / struct), masks applied."""
    raw = meta.path.read_bytes()[meta.data_start : meta.data_start + n * meta.event_bytes]
    out = np.zeros((n, meta.n_channels))
    pos = 0
    order = "little" if meta.byteorder == "<" else "big"
    for i in range(n):
        for j, bits in enumerate(meta.storage_bits):
            width = bits // 8
            chunk = raw[pos : pos + width]
            pos += width
            if meta.datatypes[j] == "I":  # per channel: FCS 3.2 may mix I/F/D
                value = int.from_bytes(chunk, order)
                limit = 1 << max(0, int(np.ceil(meta.pnr[j])) - 1).bit_length()
                if limit < (1 << bits):
                    value %= limit
                out[i, j] = value
            else:
                code = ("<" if order == "little" else ">") + ("f4" if width == 4 else "f8")
                out[i, j] = np.frombuffer(chunk, dtype=code)[0]
    return out


@pytest.mark.parametrize("rel", FILES)
def test_external_file(external: Path, rel: str) -> None:
    path = external / rel
    if rel in EXPECTED_ERRORS:
        with pytest.raises(FCSReadError) as info:
            nio.read_fcs(path)
        assert info.value.path == path
        assert str(path) in str(info.value)
        assert EXPECTED_ERRORS[rel] in info.value.reason
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        adata = nio.read_fcs(path)
    quirks = " | ".join(str(w.message) for w in caught if issubclass(w.category, FCSQuirkWarning))
    if rel in EXPECTED_QUIRKS:
        assert EXPECTED_QUIRKS[rel] in quirks
    meta = nio.read_fcs_metadata(path) if not caught else _quiet(nio.read_fcs_metadata, path)
    fcs = adata.uns["nkflow"]["fcs"]
    assert adata.n_obs == int(meta.keywords["$TOT"]) == fcs["n_events"]
    assert adata.n_vars == int(meta.keywords["$PAR"]) == fcs["n_channels"]
    assert adata.X.dtype == np.float32
    assert np.isfinite(adata.X).all()
    assert adata.var_names.is_unique
    assert list(adata.obs_names[:2]) == ["0", "1"][: adata.n_obs]
    assert set(adata.var["kind"]) <= {"scatter", "time", "fluorescence", "other"}
    assert adata.obs["sample_id"].cat.categories.tolist() == [path.stem]

    raw = _quiet(nio.read_fcs, path, preprocess=False).X
    # flowio ignores FCS 3.2 $PnDATATYPE: only the independent decode below can judge
    mixed = len(set(meta.datatypes)) > 1
    ref_raw, ref_pre = (None, None) if mixed else _flowio_events(path, 0)
    if ref_raw is not None:
        np.testing.assert_array_equal(raw, ref_raw.astype(np.float32))
    if "log amplification on" in quirks:
        # flowio anti-logs float data whose $PnE says log (1e38 and inf here); nkflow follows
        # FCS 3.1 and keeps such values linear, so they equal the raw values.
        log_chans = [j for j, (dec, _) in enumerate(_pne(meta)) if dec > 0]
        assert log_chans
        np.testing.assert_array_equal(adata.X[:, log_chans], raw[:, log_chans])
    elif ref_pre is not None:
        np.testing.assert_array_equal(adata.X, ref_pre.astype(np.float32))
    # Independent of flowio (covers 24-bit, 10-bit LMD and files flowio rejects).
    n = min(25, adata.n_obs)
    np.testing.assert_array_equal(raw[:n], _independent_decode(meta, n).astype(np.float32))


def _pne(meta: nio.FCSMetadata) -> list[tuple[float, float]]:
    """$PnE as written in the file (meta.pne holds what nkflow applied)."""
    out = []
    for i in range(1, meta.n_channels + 1):
        parts = meta.keywords.get(f"$P{i}E", "0,0").split(",")
        out.append((float(parts[0]), float(parts[1])) if len(parts) == 2 else (0.0, 0.0))
    return out


def _quiet(func, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return func(*args, **kwargs)


def _version(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(6)


FCS32 = [rel for rel in FILES if _version(EXTERNAL / rel) == b"FCS3.2"]


def test_public_fcs32_files(external: Path) -> None:
    """Every public FCS 3.2 file: read as 3.2, channel descriptions reach var.

    None is in ../shared/external yet (a BD FACSDiscover S8 export - FCS 3.2, 440
    parameters - is the known public example); nkflow's own 3.2 files are covered by
    tests/test_io_fcs32.py.
    """
    if not FCS32:
        pytest.skip("no FCS 3.2 file in ../shared/external")
    for rel in FCS32:
        adata = _quiet(nio.read_fcs, external / rel)
        assert adata.uns["nkflow"]["fcs"]["version"] == "3.2"
        keywords = adata.uns["nkflow"]["fcs"]["keywords"]
        if any(k.endswith("TYPE") and k[2:-4].isdigit() for k in keywords):
            assert "type" in adata.var.columns


def test_every_external_file_is_covered(external: Path) -> None:
    """No file is left out silently: the parametrisation saw them all, expected errors exist."""
    assert len(FILES) >= 60
    for rel in (*EXPECTED_ERRORS, *EXPECTED_QUIRKS):
        assert (external / rel).is_file(), rel


MULTI = (
    "flowkit/data/multi_dataset_fcs/coulter.lmd",
    "cytoflow/cytoflow/tests/data/instruments/Beckman Coulter - Cytomics FC500.LMD",
)


@pytest.mark.parametrize("rel", MULTI)
def test_second_data_set_matches_flowio(external: Path, rel: str) -> None:
    path = external / rel
    adata = _quiet(nio.read_fcs, path, dataset=1)
    assert adata.uns["nkflow"]["fcs"]["dataset"] == 1
    assert adata.uns["nkflow"]["fcs"]["n_datasets"] == 2
    fd = _quiet(flowio.read_multiple_data_sets, str(path), ignore_offset_error=True)[1]
    np.testing.assert_array_equal(adata.X, fd.as_array().astype(np.float32))
    with pytest.raises(FCSReadError, match="2 data set"):
        _quiet(nio.read_fcs, path, dataset=2)


def test_data1_matches_flowio_truth(external: Path) -> None:
    path = external / "flowkit/data/gate_ref/data1.fcs"
    truth = external / "flowio/data/truth"
    raw = _quiet(nio.read_fcs, path, preprocess=False).X
    pre = _quiet(nio.read_fcs, path).X
    np.testing.assert_array_equal(raw, np.load(truth / "data1_original_events.npy").astype("f4"))
    np.testing.assert_allclose(pre, np.load(truth / "data1_preprocessed.npy"), rtol=1e-6)


def test_accuri_matches_truth_and_spillover(external: Path) -> None:
    path = external / "flowio/data/fcs_files/B01 KC-A-W---91-US.fcs"
    adata = nio.read_fcs(path)
    truth = np.load(external / "flowio/data/truth/B01 KC-A-W---91-US_preprocessed_events.npy")
    np.testing.assert_allclose(adata.X, truth, rtol=1e-6)
    spill = adata.uns["nkflow"]["spillover"]
    assert spill["channels"][:4] == ["FL1-A", "FL2-A", "FL3-A", "FL4-A"]
    assert spill["matrix"][0][1] == pytest.approx(0.1203)
    assert np.allclose(np.diag(spill["matrix"]), 1.0)
    assert adata.var.loc["FL1-A", "pns"] == "FITC-A"
    assert adata.var.loc["FL1-A", "marker"] == ""  # a fluorochrome is not a marker


def test_compensated_truth(external: Path) -> None:
    """FlowKit's truth = events compensated with the file's own SPILL (an identity matrix)."""
    data = external / "flowkit/data"
    adata = _quiet(nio.read_fcs, data / "test_comp_example.fcs")
    own = adata.uns["nkflow"]["spillover"]
    spill = pd.read_csv(data / "comp_complete_example.csv")
    assert own["channels"] == list(spill.columns)
    idx = [adata.var_names.get_loc(c) for c in own["channels"]]
    x = adata.X.astype(np.float64)
    comp = x.copy()
    comp[:, idx] = x[:, idx] @ np.linalg.inv(np.asarray(own["matrix"]))
    truth = np.fromfile(data / "test_comp_example.npy", dtype="<f8").reshape(adata.shape)
    time = adata.var_names.get_loc("Time")
    no_time = [i for i in range(adata.n_vars) if i != time]
    np.testing.assert_allclose(comp[:, no_time], truth[:, no_time], rtol=1e-6)
    # the truth was written before FlowKit scaled Time by $TIMESTEP
    step = float(adata.uns["nkflow"]["fcs"]["keywords"]["$TIMESTEP"])
    np.testing.assert_allclose(comp[:, time], truth[:, time] * step, rtol=1e-6)


def test_read_fcs_metadata_is_cheap_and_consistent(external: Path) -> None:
    path = external / "flowworkspacedata/inst/extdata/a2004_O1T2pb05i_A2_A02.fcs"
    meta = nio.read_fcs_metadata(path)
    assert (meta.version, meta.n_events, meta.n_channels) == ("3.0", 45363, 23)
    assert meta.cyt and meta.date
    assert meta.data_nbytes == 45363 * 23 * 4


def test_cyan_events_are_read_from_the_header_offsets(external: Path) -> None:
    """Summit's CyAn file: HEADER DATA (2284-141219) follows the TEXT, $BEGINDATA is 46
    bytes later; both spans hold 5,789 x 24 bytes. Read from $BEGINDATA every channel was
    shifted by one (FS Lin held the pulse width); from the HEADER the event counter
    counts 2, 3, 4 ... and Time MSW steps once per wrap of the 16-bit Time LSW."""
    path = external / "cytoflow/cytoflow/tests/data/instruments/Beckman Coulter - Cyan.fcs"
    adata = _quiet(nio.read_fcs, path)
    x = {c: adata.X[:, j].astype(np.float64) for j, c in enumerate(adata.var_names)}
    np.testing.assert_array_equal(np.diff(x["Event Count"]), 1)
    assert x["Pulse Width"].max() < 512  # its $PnR
    lsw_wraps = int((np.diff(x["TIME"]) < 0).sum())
    assert lsw_wraps == int(np.diff(x["Time MSW"]).sum()) == 18
