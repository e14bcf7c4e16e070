"""Technology per file (nkflow.io.technology): one rule per test, then every real file."""

from __future__ import annotations

import fnmatch
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
from conftest import EXTERNAL, EXTERNAL_FCS_FILES

from nkflow.exceptions import FCSReadError, TransformedDataError
from nkflow.io import (
    KINDS,
    Technology,
    detect_technology,
    inspect_files,
    read_fcs,
    read_fcs_metadata,
    technology_of,
)
from nkflow.pp import compensate, transform

AURORA_V = [f"V{i}-A" for i in range(1, 17)]
SCATTER = ["Time", "FSC-A", "SSC-A"]

# (keywords, $PnN, $PnS or None, expected kind); the id says which rule decides
RULES = {
    "mass-cyt-helios": ({"$CYT": "Helios"}, ["Time", "CD3"], None, "mass_cytometry"),
    "mass-cyt-standard-biotools": (
        {"$CYT": "CyTOF XT (Standard BioTools)"},
        ["Time"],
        None,
        "mass_cytometry",
    ),
    "mass-cyt-lowercase-key": ({"$cyt": "cytof2"}, ["Time"], None, "mass_cytometry"),
    "mass-event-length": ({}, ["Time", "Event_length", "CD3"], None, "mass_cytometry"),
    "mass-gaussian-params": (
        {},
        ["Time", "Center", "Offset", "Width", "Residual"],
        None,
        "mass_cytometry",
    ),
    "mass-metal-pnn": ({}, ["Ir191Di", "Ir193Di", "FSC-A"], None, "mass_cytometry"),
    "mass-bracketed-pnn": ({}, ["(Pt195)Di", "(Ir191)Dd"], None, "mass_cytometry"),
    "mass-isotope-pns": ({}, ["Ch1", "Ch2"], ["173Yb_CD56", "89Y_CD45"], "mass_cytometry"),
    "flow-one-metal-name-is-not-enough": ({}, ["FSC-A", "Ir191Di"], None, "flow"),
    "flow-not-an-element": ({}, ["Xx191Di", "Qq193Di"], None, "flow"),
    "flow-accuri-width-time": ({}, ["FSC-A", "FL1-A", "Width", "Time"], None, "flow"),
    "raw-aurora-v1-v16": ({"$CYT": "Aurora"}, SCATTER + AURORA_V, None, "raw_spectral"),
    "raw-spectroflo-creator-a-and-h": (
        {"CREATOR": "SpectroFlo 3.1"},
        SCATTER + [f"B{i}-{s}" for i in range(1, 9) for s in "AH"],
        None,
        "raw_spectral",
    ),
    "raw-no-instrument-many-detectors": (
        {},
        SCATTER + AURORA_V + [f"B{i}-A" for i in range(1, 15)],
        None,
        "raw_spectral",
    ),
    "flow-no-instrument-16-detectors-but-max-8-per-laser": (
        {},
        SCATTER + [f"{laser}{i}-A" for laser in "VBR" for i in range(1, 7)],
        None,
        "flow",
    ),
    "flow-macsquant-detector-names": (
        {"$CYT": "MACSQuant"},
        [*SCATTER, "V1-A", "V2-A", "B1-A", "B2-A", "Y2-A", "R1-A"],
        None,
        "flow",
    ),
    "spectral-aurora-unmixed": (
        {"$CYT": "Aurora", "CREATOR": "SpectroFlo 3.0"},
        [*SCATTER, "BV421-A", "FITC-A", "PE-A", "AF-A"],
        None,
        "spectral",
    ),
    "spectral-detectors-and-unmixed-together": (
        {"$CYT": "Aurora"},
        SCATTER + AURORA_V + ["PE-A"],
        None,
        "spectral",
    ),
    "flow-cytek-dxp-is-not-spectral": (
        {"$CYT": "Cytek xP5", "$INST": "Cytekbio"},
        ["FSC", "SSC", "FL1"],
        None,
        "flow",
    ),
    "export-fjcomp": ({}, ["FSC-A", "FJComp-PE-A", "FJComp-APC-A"], None, "compensated_export"),
    "export-comp": ({"SPILL": "1,PE-A,1"}, ["FSC-A", "Comp-PE-A"], None, "compensated_export"),
    "flow-diva-apply-compensation-is-not-evidence": (
        {"APPLY COMPENSATION": "TRUE", "SPILL": "1,PE-A,1"},
        ["FSC-A", "PE-A"],
        None,
        "flow",
    ),
    "flow-nothing-known": ({}, ["channel_A", "channel_B"], None, "flow"),
    # flowCore: transform() writes TRANSFORMATION=custom and the transformed ranges
    "transformed-flowcore-custom": (
        {"TRANSFORMATION": "custom", "$P2R": "262144", "FLOWCORE_$P2RMAX": "4.5"},
        ["FSC-A", "PE-A"],
        None,
        "transformed_export",
    ),
    "transformed-flowcore-range-alone": (
        {"transformation": "applied", "$P2R": "1024", "flowCore_$P2Rmax": "4"},
        ["FSC-A", "PE-A"],
        None,
        "transformed_export",
    ),
    "transformed-wins-over-mass": (
        {"$CYT": "Helios", "TRANSFORMATION": "custom"},
        ["Time", "Yb173Di", "Ir191Di"],
        None,
        "transformed_export",
    ),
    "transformed-wins-over-fjcomp": (
        {"TRANSFORMATION": "custom"},
        ["FSC-A", "FJComp-PE-A"],
        None,
        "transformed_export",
    ),
    # flowCore writes TRANSFORMATION=applied and FLOWCORE_$PnRMAX = $PnR on files it only read
    "flow-flowcore-applied-is-not-evidence": (
        {"TRANSFORMATION": "applied", "$P2R": "262144", "FLOWCORE_$P2RMAX": "262144"},
        ["FSC-A", "PE-A"],
        None,
        "flow",
    ),
    "export-fjcomp-flowcore-applied": (
        {"TRANSFORMATION": "applied", "$P2R": "262144", "FLOWCORE_$P2RMAX": "262144"},
        ["FSC-A", "FJComp-PE-A"],
        None,
        "compensated_export",
    ),
}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_rule(rule: str) -> None:
    keywords, pnn, pns, kind = RULES[rule]
    tech = detect_technology(keywords, pnn, pns)
    assert tech.kind == kind, tech.evidence
    assert tech.evidence and all(isinstance(e, str) and e for e in tech.evidence)
    assert tech.label == KINDS[kind]


@pytest.mark.parametrize(
    ("kind", "compensation", "method", "cofactor"),
    [
        ("mass_cytometry", "none", "arcsinh", 5.0),
        ("compensated_export", "none", "logicle", 150.0),
        ("raw_spectral", "refuse", "logicle", 150.0),
        ("transformed_export", "refuse", "refuse", 150.0),
        ("spectral", "none", "logicle", 150.0),  # no spillover keyword in the RULES example
        ("flow", "file", "logicle", 150.0),
    ],
)
def test_implied_defaults(kind: str, compensation: str, method: str, cofactor: float) -> None:
    rule = next(r for r in sorted(RULES) if RULES[r][3] == kind and "spillover" not in r)
    tech = detect_technology(*RULES[rule][:3])
    assert (tech.compensation, tech.transform, tech.cofactor) == (compensation, method, cofactor)
    # a reason is given whenever compensation is not the file's own spillover
    assert bool(tech.compensation_reason) == (compensation != "file" or kind == "flow")


def test_flow_reason_depends_on_spillover() -> None:
    with_spill = detect_technology({"$SPILLOVER": "1,FL1-A,1"}, ["FL1-A"])
    without = detect_technology({}, ["FL1-A"])
    assert with_spill.compensation == without.compensation == "file"
    assert with_spill.compensation_reason == ""
    assert "$SPILLOVER" in without.compensation_reason
    assert "spillover keyword present" in with_spill.evidence


def test_spectral_with_spillover_uses_file() -> None:
    tech = detect_technology({"$CYT": "Aurora", "$SPILLOVER": "1,PE-A,1"}, ["FSC-A", "PE-A"])
    assert (tech.kind, tech.compensation) == ("spectral", "file")


def test_evidence_names_the_deciding_channels() -> None:
    tech = detect_technology({}, ["FSC-A"] + [f"FJComp-{c}-A" for c in ("PE", "APC")])
    assert tech.evidence == (
        "2 of 3 channel names start with 'FJComp-' (FJComp-PE-A, FJComp-APC-A)",
    )
    raw = detect_technology({"$CYT": "Aurora"}, SCATTER + AURORA_V + ["B1-A", "B2-A"])
    assert "18 numbered detectors (B1-B2, V1-V16)" in raw.evidence[-1]


def test_record_round_trip_and_technology_of() -> None:
    tech = detect_technology({"$CYT": "Helios"}, ["Time", "Event_length", "Yb173Di"])
    record = tech.to_dict()
    assert record["kind"] == "mass_cytometry" and record["label"] == "mass cytometry"
    assert record["defaults"] == {
        "compensation": "none",
        "compensation_reason": tech.compensation_reason,
        "transform": "arcsinh",
        "cofactor": 5.0,
    }
    assert Technology.from_dict(record) == tech
    adata = ad.AnnData(np.zeros((2, 1), dtype=np.float32), uns={"nkflow": {"technology": record}})
    assert technology_of(adata) == tech
    bare = technology_of(ad.AnnData(np.zeros((2, 1), dtype=np.float32)))
    assert bare.kind == "flow" and "no technology record" in bare.evidence[0]


# ---------------------------------------------------------------- the real files
FILES = EXTERNAL_FCS_FILES

# What each file's keywords and channel names show (inspected with read_fcs_metadata);
# every file not matched here is conventional flow (BD, Beckman, Thermo Attune, Accuri,
# Miltenyi, Cytek xP3/xP5 DxP, Stratedigm, Partec, Sysmex, iCyt; MACSQuant's V2-A/B1-A
# detector names are too few to be spectral).
EXPECTED = [
    # $CYT = DVSSCIENCES-CYTOF, Event_length, 52 metal channels Y89Di .. (6 files)
    ("cytonorm/*", "mass_cytometry"),
    # $CYT = DVSSCIENCES-CYTOF-6.5.358, Bi209Di .., $PnS 209Bi_CD11b .. 173Yb_CD56 (2 files)
    ("supercellcyto/*", "mass_cytometry"),
    # $CYT = Aurora, CREATOR = SpectroFlo 2.2.0, 22 detectors B1-A..B14-A, R1-A..R8-A, $PnS empty
    ("cytoflow/*/Cytek NL-2000.fcs", "raw_spectral"),
    # FlowJo exports: all 19 $PnN start with FJComp-, no SPILL left, FLOWCORE_ ranges < 0
    # (DiVa's APPLY COMPENSATION = TRUE is carried over and is not evidence)
    ("flowatlas/*", "compensated_export"),
    # PeacoQC's flowCore export after compensate() + transform(): TRANSFORMATION = custom,
    # FLOWCORE_$PnRMAX 4.5 on 14 channels of $PnR 262144 (111.fcs beside it is the raw file)
    ("peacoqc/inst/extdata/111_Comp_Trans.fcs", "transformed_export"),
]


def _expected(rel: str) -> str:
    return next((kind for pattern, kind in EXPECTED if fnmatch.fnmatch(rel, pattern)), "flow")


def _metadata(rel: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return read_fcs_metadata(EXTERNAL / rel)
        except FCSReadError as exc:
            pytest.skip(f"unreadable on purpose (test_io_fcs_external covers it): {exc.reason}")


@pytest.mark.parametrize("rel", FILES)
def test_real_file_technology(rel: str) -> None:
    meta = _metadata(rel)
    tech = detect_technology(meta.keywords, meta.pnn, meta.pns)
    assert tech.kind == _expected(rel), tech.evidence


def test_every_expectation_matches_a_file() -> None:
    if not FILES:
        pytest.skip(f"external test data not found at {EXTERNAL}")
    for pattern, _ in EXPECTED:
        assert any(fnmatch.fnmatch(rel, pattern) for rel in FILES), pattern
    # the zoo holds no unmixed spectral export (both Cytek NL files are raw detectors)
    assert sum(fnmatch.fnmatch(r, "cytonorm/*") for r in FILES) == 6


@pytest.mark.parametrize(
    ("rel", "kind"),
    [
        ("supercellcyto/inst/extdata/Data23_Panel3_base_R5_Patient15.fcs", "mass_cytometry"),
        ("cytoflow/cytoflow/tests/data/instruments/Cytek NL-2000.fcs", "raw_spectral"),
        ("flowkit/data/gate_ref/data1.fcs", "flow"),
    ],
)
def test_read_fcs_records_technology(external: Path, rel: str, kind: str, tmp_path: Path) -> None:
    """read_fcs records the plain-dict technology; it survives an h5ad round trip."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = read_fcs(external / rel)
    record = adata.uns["nkflow"]["technology"]
    assert record["kind"] == kind and technology_of(adata).kind == kind
    adata.write_h5ad(tmp_path / "a.h5ad")
    back = ad.read_h5ad(tmp_path / "a.h5ad").uns["nkflow"]["technology"]
    assert back["kind"] == kind and list(back["evidence"]) == record["evidence"]
    assert Technology.from_dict(back) == technology_of(adata)


def test_inspect_shows_technology(external: Path) -> None:
    rels = [
        "cytoflow/cytoflow/tests/data/instruments/Cytek NL-2000.fcs",
        "cytonorm/inst/extdata/Gates_PTLG021_Unstim_Control_1.fcs",
        "flowatlas/data/390C/390C_Lung_029.fcs",
        "flowkit/data/test_comp_example.fcs",
    ]
    table = inspect_files([external / r for r in rels])
    assert table["technology"].tolist() == [_expected(r) for r in rels]
    assert table["error"].tolist() == [""] * len(rels)


def test_pipeline_load_sample_uses_technology_defaults(external: Path) -> None:
    """The run's per-sample step with the default config: a CyTOF pair gets no
    compensation (reason recorded) and arcsinh / 5, without a warning; the raw Aurora file
    is refused with the unmixing message."""
    from nkflow.config import RunConfig
    from nkflow.exceptions import UnmixingRequiredError
    from nkflow.pipeline.sample import SampleTask, load_sample

    def task(rel: str) -> SampleTask:
        return SampleTask("s", str(external / rel), {}, RunConfig(), "human_blood")

    for rel in [f"cytonorm/inst/extdata/Gates_PTLG021_Unstim_Control_{i}.fcs" for i in (1, 2)]:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            adata = load_sample(task(rel))
        nk = adata.uns["nkflow"]
        assert nk["compensation"]["source"] == "none"
        assert nk["compensation"]["reason"].startswith("mass cytometry")
        assert nk["transform"]["kind"] == "arcsinh" and nk["transform"]["requested"] == "auto"
        assert {p["cofactor"] for p in nk["transform"]["params"].values()} == {5.0}
        cd56 = adata.var_names[adata.var["marker"] == "CD56"][0]
        raw = adata.layers["compensated"][:, adata.var_names.get_loc(cd56)]
        np.testing.assert_allclose(adata[:, cd56].X.ravel(), np.arcsinh(raw / 5), rtol=1e-6)
    with pytest.raises(UnmixingRequiredError, match=r"unmix it.*SpectroFlo.*B1-B14, R1-R8"):
        load_sample(task("cytoflow/cytoflow/tests/data/instruments/Cytek NL-2000.fcs"))


def test_sample_summary_carries_technology(sample_data: Path) -> None:
    """process_sample's summary (status/report/provenance input) has the technology record."""
    from nkflow.config import RunConfig, replace_values
    from nkflow.pipeline.sample import SampleTask, process_sample

    path = sorted((sample_data / "human").glob("*_blood_pre_unstim.fcs"))[0]
    cfg = replace_values(RunConfig(), {"gating.bootstrap": 0})
    row = {"tissue": "blood", "species": "human"}
    task = SampleTask("s", str(path), row, cfg, "human_blood", figures=False)
    summary = process_sample(task)
    assert summary["technology"]["kind"] == "flow"  # simulated BD-style file with $SPILLOVER
    assert summary["technology"] == summary["adata"].uns["nkflow"]["technology"]
    assert summary["compensation"]["source"] == "file" and summary["compensation"]["reason"] == ""
    assert summary["transform"]["kind"] == "logicle" and summary["transform"]["requested"] == "auto"


def test_transformed_export_evidence_and_refusal() -> None:
    keywords = {
        "TRANSFORMATION": "custom",
        **{f"$P{i}R": "262144" for i in (1, 2, 3)},
        "FLOWCORE_$P1RMAX": "262144",
        "FLOWCORE_$P2RMAX": "4.5",
        "FLOWCORE_$P3RMAX": "4.5",
    }
    tech = detect_technology(keywords, ["FSC-A", "PE-A", "APC-A"])
    assert tech.evidence[0].startswith("TRANSFORMATION = 'custom'")
    assert "2 channel(s)" in tech.evidence[1] and "PE-A 4.5 vs $P2R 262144" in tech.evidence[1]
    error = tech.refusal("x.fcs")
    assert isinstance(error, TransformedDataError)
    assert str(error).startswith("x.fcs: the events are already transformed")
    assert "export the untransformed (linear) events" in str(error) and "custom" in str(error)
    assert detect_technology({}, ["FSC-A"]).refusal("x.fcs") is None


def test_peacoqc_neighbours(external: Path) -> None:
    """The transformed export is refused; the raw acquisition beside it is plain flow and
    compensates with its own SPILL."""
    folder = external / "peacoqc" / "inst" / "extdata"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        done = read_fcs(folder / "111_Comp_Trans.fcs")
        raw = read_fcs(folder / "111.fcs")
    assert technology_of(done).kind == "transformed_export"
    before = np.asarray(done.X).copy()
    with pytest.raises(TransformedDataError, match=r"111_Comp_Trans\.fcs: .*already transformed"):
        compensate(done)
    with pytest.raises(TransformedDataError, match=r"FLOWCORE_\$PnRMAX.*SSC-A 4\.5"):
        transform(done)
    np.testing.assert_array_equal(done.X, before)  # nothing applied
    assert technology_of(raw).kind == "flow"
    compensate(raw)
    assert raw.uns["nkflow"]["compensation"]["source"] == "file"


@pytest.mark.parametrize("pass_markers", [True, False])
def test_files_without_marker_names_do_not_vote_on_the_batch_technology(pass_markers) -> None:
    """Nine unlabelled vendor files outvoted the two CyTOF files that could be gated."""
    from nkflow.io.technology import other_technology

    mass = {"cytof1": True, "cytof2": True, **{f"flow{i}": False for i in range(9)}}
    markers = {"cytof1": ["CD56", ""], "cytof2": ["", "CD16"]}
    markers |= {f"flow{i}": ["", ""] for i in range(9)}
    odd = other_technology(mass, markers if pass_markers else None)
    if pass_markers:
        assert sorted(odd) == [f"flow{i}" for i in range(9)]
        assert "(2 of 2 with marker names)" in odd["flow0"]
        assert odd["flow0"].endswith("it has no marker names either: label its channels or give "
                                     "a panel file")  # fmt: skip
    else:
        assert sorted(odd) == ["cytof1", "cytof2"] and "(9 of 11)" in odd["cytof1"]


@pytest.mark.parametrize("first", ["flowA", "cytofA"])
def test_a_tie_goes_to_the_first_file_and_says_so(first) -> None:
    """Two CyTOF and two flow files: the first file's technology is kept, and the refused
    files are told it was a tie and how to choose the other half."""
    from nkflow.io.technology import other_technology

    names = ["flowA", "flowB", "cytofA", "cytofB"]
    order = [first, *(n for n in names if n != first)]
    mass = {n: n.startswith("cytof") for n in order}
    odd = other_technology(mass, {n: ["CD56"] for n in order})
    kept = "cytof" if first.startswith("cytof") else "flow"
    assert sorted(odd) == sorted(n for n in names if not n.startswith(kept))
    for why in odd.values():
        assert f"a tie, decided by the first file ({first}, first in the sheet" in why
        assert "list one of them first in a sheet" in why
    lopsided = other_technology({"flowA": False, "flowB": False, "cytofA": True})
    assert "tie" not in lopsided["cytofA"]
