"""nkflow.pp.compensate against flowkit and the published truth arrays."""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from nkflow.exceptions import (
    ChannelNotFoundError,
    ConfigError,
    MissingSpilloverWarning,
    TransformedDataError,
    UnmixingRequiredError,
)
from nkflow.io import detect_technology, read_fcs
from nkflow.pp import compensate, compensate_array, read_spillover_matrix

fk = pytest.importorskip("flowkit")

COMP_FCS = "flowkit/data/test_comp_example.fcs"
COMP_CSV = "flowkit/data/comp_complete_example.csv"
COMPDATA = "flowcore/inst/extdata/compdata"


def _read(path: Path) -> ad.AnnData:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_fcs(path)


def _flowkit_comp(path: Path, matrix) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sample = fk.Sample(str(path), ignore_offset_error=True)
        sample.apply_compensation(matrix)
        return sample.get_events(source="comp")


def _tiny(spill: dict | None = None) -> ad.AnnData:
    rng = np.random.default_rng(0)
    x = rng.normal(1000, 300, (50, 4)).astype(np.float32)
    var = pd.DataFrame(
        {"kind": ["scatter", "fluorescence", "fluorescence", "time"], "range": 262144.0},
        index=["FSC-A", "FL1-A", "FL2-A", "Time"],
    )
    uns = {"nkflow": {"sample": {"sample_id": "tiny", "path": "tiny.fcs"}, "spillover": spill}}
    return ad.AnnData(X=x, var=var, uns=uns)


SPILL = {"channels": ["FL1-A", "FL2-A"], "matrix": [[1.0, 0.2], [0.05, 1.0]]}


def test_user_csv_matches_flowkit(external: Path) -> None:
    """LSRII file, 14-channel FlowJo-exported CSV matrix: equal to flowkit within 1e-6."""
    adata = _read(external / COMP_FCS)
    compensate(adata, matrix=external / COMP_CSV)
    ref = _flowkit_comp(external / COMP_FCS, str(external / COMP_CSV))
    np.testing.assert_allclose(adata.X, ref, rtol=1e-6, atol=1e-6)
    assert adata.X.dtype == np.float32
    np.testing.assert_array_equal(adata.layers["compensated"], adata.X)
    rec = adata.uns["nkflow"]["compensation"]
    assert rec["source"] == f"user:{external / COMP_CSV}"
    assert rec["channels"][0] == "Ax488-A" and len(rec["channels"]) == 14


def test_file_spill_matches_truth_array(external: Path) -> None:
    """The file's own $SPILL (identity) reproduces flowkit's truth array (Time unscaled there)."""
    truth = np.fromfile(external / "flowkit/data/test_comp_example.npy").reshape(10703, 18)
    adata = _read(external / COMP_FCS)
    compensate(adata, matrix="file")
    assert adata.uns["nkflow"]["compensation"]["source"] == "file"
    np.testing.assert_allclose(adata.X[:, :17], truth[:, :17], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("stain", ["060909.001", "060909.002", "060909.003", "060909.005"])
@pytest.mark.parametrize("ref", ["compref1", "compmatrix"])
def test_flowcore_compdata_matches_flowkit(external: Path, stain: str, ref: str) -> None:
    """flowCore single-stain controls compensated with its reference matrices.

    These FCS 2.0 channels are log-amplified ($PnE): decoded values are not float32
    numbers, so the tolerance adds the float32 rounding of the raw values (the
    container's storage type) carried through ``inv(S)``.
    """
    spill = read_spillover_matrix(external / COMPDATA / ref)
    assert list(spill.columns) == ["FL1-H", "FL2-H", "FL3-H", "FL4-H"]
    path = external / COMPDATA / "data" / stain
    adata = _read(path)
    raw = np.abs(adata.X.astype(np.float64))
    compensate(adata, matrix=spill)
    matrix = fk.Matrix(spill.to_numpy(), list(spill.columns))
    ref_events = _flowkit_comp(path, matrix)
    cols = [list(adata.var_names).index(c) for c in spill.columns]
    carried = np.zeros_like(raw)
    carried[:, cols] = raw[:, cols] @ np.abs(np.linalg.inv(spill.to_numpy()))
    bound = 1e-6 * np.abs(ref_events) + 1e-6 + np.finfo(np.float32).eps * carried
    assert np.all(np.abs(adata.X - ref_events) <= bound)


def test_matrix_file_formats(external: Path, tmp_path: Path) -> None:
    """FlowJo text export (CR line ends, title line), labelled rows and plain CSV agree."""
    flowjo = read_spillover_matrix(external / COMPDATA / "compmatrix")
    assert flowjo.loc["FL1-H", "FL2-H"] == pytest.approx(0.24)
    assert flowjo.loc["FL4-H", "FL3-H"] == pytest.approx(3.23e-3)
    ref1 = read_spillover_matrix(external / COMPDATA / "compref1")
    assert ref1.loc["FL1-H", "FL2-H"] == pytest.approx(0.242022277630705)
    shuffled = ref1.loc[["FL3-H", "FL1-H", "FL4-H", "FL2-H"]]
    shuffled.to_csv(tmp_path / "labelled.csv")
    pd.testing.assert_frame_equal(read_spillover_matrix(tmp_path / "labelled.csv"), ref1)
    ref1.to_csv(tmp_path / "plain.tsv", sep="\t", index=False)
    pd.testing.assert_frame_equal(read_spillover_matrix(tmp_path / "plain.tsv"), ref1)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("FL1-A,FL2-A\n1,0.2\n", "header names 2 channels but there are 1 rows"),
        ("FL1-A,FL2-A\n1,0.2\n0.1,0.9\n", "diagonal must be 1"),
        ("FL1-A,FL2-A\n1,0.2\n0.1\n", "row 2 has 1 values"),
        ("1,2\n3,4\n", "no header row"),
    ],
)
def test_bad_matrix_files(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "m.csv"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        read_spillover_matrix(path)


def test_missing_channels_listed(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("FL1-A,PE-Cy7-A\n1,0.1\n0.2,1\n")
    with pytest.raises(
        ChannelNotFoundError, match=r"PE-Cy7-A.*available: FSC-A, FL1-A, FL2-A, Time"
    ):
        compensate(_tiny(), matrix=path)


def test_flow_file_without_spillover_warns_and_records_reason() -> None:
    """Conventional flow (no technology record: flow assumed) without spillover: warned."""
    adata = _tiny(None)
    raw = adata.X.copy()
    with pytest.warns(MissingSpilloverWarning, match=r"tiny\.fcs: conventional flow file"):
        compensate(adata, matrix="file")
    np.testing.assert_array_equal(adata.X, raw)
    rec = adata.uns["nkflow"]["compensation"]
    assert rec["source"] == "none" and rec["channels"] == [] and "$SPILLOVER" in rec["reason"]


def _with_technology(spill: dict | None, keywords: dict, names: list[str]) -> ad.AnnData:
    adata = _tiny(spill)
    tech = detect_technology(keywords, names)
    adata.uns["nkflow"]["technology"] = tech.to_dict()
    return adata


# (keywords, channel names as the technology saw them, expected reason fragment)
NO_COMP = {
    "mass_cytometry": ({"$CYT": "Helios"}, ["Time", "Event_length", "Yb173Di", "Nd142Di"], "mass"),
    "compensated_export": ({}, ["FSC-A", "Comp-FL1-A", "Comp-FL2-A", "Time"], "compensated"),
    "spectral": ({"$CYT": "Aurora"}, ["FSC-A", "BV421-A", "PE-A", "Time"], "unmixed spectral"),
}


@pytest.mark.parametrize("kind", sorted(NO_COMP))
def test_file_without_spillover_by_technology_no_warning(kind: str) -> None:
    keywords, names, reason = NO_COMP[kind]
    adata = _with_technology(None, keywords, names)
    assert adata.uns["nkflow"]["technology"]["kind"] == kind
    raw = adata.X.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compensate(adata)
    np.testing.assert_array_equal(adata.X, raw)
    rec = adata.uns["nkflow"]["compensation"]
    assert rec["source"] == "none" and reason in rec["reason"]


def test_compensated_export_ignores_carried_over_spillover() -> None:
    """An FJComp- export that kept its $SPILL is not compensated a second time."""
    adata = _with_technology(SPILL, {"SPILL": "2,FL1-A,FL2-A,1,0.2,0.05,1"}, ["FJComp-FL1-A"])
    raw = adata.X.copy()
    compensate(adata)
    np.testing.assert_array_equal(adata.X, raw)
    assert "compensated before export" in adata.uns["nkflow"]["compensation"]["reason"]


@pytest.mark.parametrize("matrix", ["file", "none", "user"])
def test_raw_spectral_refused_whatever_matrix(matrix: str, tmp_path: Path) -> None:
    names = ["Time", "FSC-A", "SSC-A"] + [f"V{i}-A" for i in range(1, 17)]
    adata = _with_technology(None, {"$CYT": "Aurora", "CREATOR": "SpectroFlo 3.0"}, names)
    if matrix == "user":
        matrix = tmp_path / "m.csv"
        matrix.write_text("FL1-A,FL2-A\n1,0.1\n0.2,1\n")
    with pytest.raises(UnmixingRequiredError, match=r"tiny\.fcs: .*unmix.*SpectroFlo"):
        compensate(adata, matrix=matrix)
    assert "compensation" not in adata.uns["nkflow"]


@pytest.mark.parametrize("matrix", ["file", "none", "user"])
def test_transformed_export_refused_whatever_matrix(
    matrix: str, transformed_export: Path, tmp_path: Path
) -> None:
    """flowCore export after compensate() + transform(): its SPILL applied to logicle
    values collapsed every marker (111_Comp_Trans.fcs: all to about 0.11)."""
    adata = _read(transformed_export)
    before = adata.X.copy()
    if matrix == "user":
        matrix = tmp_path / "m.csv"
        matrix.write_text("FL1-A,FL2-A\n1,0.1\n0.2,1\n")
    with pytest.raises(TransformedDataError) as err:
        compensate(adata, matrix=matrix)
    text = str(err.value)
    assert text.startswith(f"{transformed_export}: the events are already transformed")
    assert "TRANSFORMATION = 'custom'" in text and "FL1-A 8.1" in text  # the evidence
    assert "export the untransformed (linear) events" in text
    assert "compensation" not in adata.uns["nkflow"] and "compensated" not in adata.layers
    np.testing.assert_array_equal(adata.X, before)


def test_aurora_raw_file_refused(external: Path) -> None:
    """The Cytek NL-2000 file reads (22 raw detectors B1-B14, R1-R8) but is not compensated."""
    path = external / "cytoflow/cytoflow/tests/data/instruments/Cytek NL-2000.fcs"
    adata = _read(path)
    assert adata.uns["nkflow"]["technology"]["kind"] == "raw_spectral"
    with pytest.raises(UnmixingRequiredError, match=r"NL-2000.*unmix.*SpectroFlo") as err:
        compensate(adata)
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize("bad", ["nonexistent.csv", 3.0])
def test_bad_matrix_option(bad) -> None:
    with pytest.raises(ConfigError, match="matrix"):
        compensate(_tiny(SPILL), matrix=bad)


def test_none_copy_and_twice() -> None:
    adata = _tiny(SPILL)
    raw = adata.X.copy()
    out = compensate(adata, matrix="none", inplace=False)
    np.testing.assert_array_equal(out.X, raw)
    assert out.uns["nkflow"]["compensation"] == {
        "source": "none",
        "channels": [],
        "matrix": [],
        "reason": "compensation switched off (matrix='none')",
    }
    assert "compensation" not in adata.uns["nkflow"] and "compensated" not in adata.layers
    # one short line: the whole record (a 16 x 16 matrix for a real file) was printed
    with pytest.raises(ConfigError, match=r"already compensated \(none\); not applied twice$"):
        compensate(out)


def test_file_matrix_inverts_spillover() -> None:
    """Spilling known true values and compensating gives them back; other columns untouched."""
    adata = _tiny(SPILL)
    truth = adata.X.astype(np.float64)
    s = np.asarray(SPILL["matrix"])
    adata.X[:, 1:3] = (truth[:, 1:3] @ s).astype(np.float32)
    compensate(adata)
    np.testing.assert_allclose(adata.X[:, 1:3], truth[:, 1:3], rtol=1e-5)
    np.testing.assert_array_equal(adata.X[:, [0, 3]], truth[:, [0, 3]].astype(np.float32))
    assert adata.uns["nkflow"]["compensation"]["matrix"] == SPILL["matrix"]


@pytest.mark.parametrize("columns", [None, [2, 0, 3]])
def test_compensate_array(columns) -> None:
    rng = np.random.default_rng(1)
    true = rng.normal(0, 1000, (9000, 4))
    cols = list(range(4)) if columns is None else columns
    s = np.eye(len(cols)) + np.triu(rng.uniform(0, 0.3, (len(cols), len(cols))), 1)
    raw = true.copy()
    raw[:, cols] = true[:, cols] @ s
    np.testing.assert_allclose(compensate_array(raw, s, columns=columns), true, atol=1e-8)


@pytest.mark.parametrize("columns", [[1, 2, 3, 4, 5], [5, 1, 3, 2, 4], [0, 2, 3, 5, 6]])
@pytest.mark.parametrize("inplace", [False, True])
def test_compensate_array_bits_do_not_depend_on_the_other_channels(columns, inplace) -> None:
    """Whole float64 rows (matrix on most channels) and a column copy (matrix on few of
    many channels) give the same bits, and the other channels keep theirs."""
    rng = np.random.default_rng(5)
    x = (rng.lognormal(6, 2, (5000, 7)) * rng.choice([-1.0, 1.0], (5000, 7))).astype(np.float32)
    x[:3] = [[0.0], [-0.0], [np.float32(1e-40)]]  # zeros of both signs, a subnormal
    s = np.eye(5) + np.triu(rng.uniform(0.0, 0.25, (5, 5)), 1)
    wide = np.concatenate([x, rng.normal(0, 50, (5000, 40)).astype(np.float32)], axis=1)
    narrow_in, wide_in = x.copy(), wide.copy()
    narrow = compensate_array(narrow_in, s, columns=columns, out=narrow_in if inplace else None)
    spread = compensate_array(wide_in, s, columns=columns, out=wide_in if inplace else None)
    assert narrow.tobytes() == np.ascontiguousarray(spread[:, :7]).tobytes()
    assert spread[:, 7:].tobytes() == wide[:, 7:].tobytes()
    other = [j for j in range(7) if j not in columns]
    assert narrow[:, other].tobytes() == x[:, other].tobytes()
