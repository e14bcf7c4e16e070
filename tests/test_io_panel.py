"""Marker resolution: alias table on real $PnS strings, user panels, conflicts."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import nkflow.io as nio
from nkflow.exceptions import ChannelNotFoundError, NkflowWarning, PanelError

# Free text as written by instruments and analysts -> canonical marker ("" = none).
LABELS = {
    # OMIP-039-style human NK / residency / repair panel
    "CD56 PEDazzle594": "CD56",
    "CD56 BUV737": "CD56",
    "NCAM1 BV605": "CD56",
    "Leu-19 PE": "CD56",
    "N901": "CD56",
    "NKp46 BV421": "NKp46",
    "CD335 PE": "NKp46",
    "NCR1": "NKp46",
    "CD49a AF647": "CD49a",
    "ITGA1": "CD49a",
    "VLA-1 PE": "CD49a",
    "CD103 BV605": "CD103",
    "ITGAE": "CD103",
    "CXCR6 PE-Cy7": "CXCR6",
    "CD186": "CXCR6",
    "CD69 BV650": "CD69",
    "AREG PE": "AREG",
    "amphiregulin APC": "AREG",
    "IFN-g APC": "IFN-g",
    "IFNg": "IFN-g",
    "IFNG": "IFN-g",
    "IFN-γ BV711": "IFN-g",
    "IFN-gamma": "IFN-g",
    "IFN gamma FITC": "IFN-g",
    "CD107a BV786": "CD107a",
    "LAMP1": "CD107a",
    "NKG2D PerCP-eF710": "NKG2D",
    "CD314": "NKG2D",
    "KLRK1": "NKG2D",
    "CD16 BUV496": "CD16",
    "FcgRIII": "CD16",
    "CD62L FITC": "CD62L",
    "SELL": "CD62L",
    "CD127 BV711": "CD127",
    "IL7R": "CD127",
    "CD3 BUV395": "CD3",
    "CD3e": "CD3e",
    "CD45 AF700": "CD45",
    "Zombie aqua CD14 CD19": "LD_CD14_CD19",
    "Live/Dead Aqua CD14/CD19": "LD_CD14_CD19",
    "LD_CD14_CD19": "LD_CD14_CD19",
    "FVS780": "Viability",  # BD's fixable viability stains, the dye's number glued on
    "FVS 510": "Viability",
    # dump / lineage channels: several markers without a viability dye, or so named
    "CD3/CD14/CD19 BV510": "Dump_CD14_CD19_CD3",
    "Lineage (CD3/CD14/CD19/CD20) FITC": "Dump_CD14_CD19_CD20_CD3",
    "Dump CD3": "Dump_CD3",
    "Lineage FITC": "Dump",
    "Lin-FITC": "Dump",
    "Lin": "Dump",
    "FS Lin": "",  # a linear scatter channel (Beckman Coulter), not a lineage channel
    "CD19 F4/80 PE": "Dump_CD19_F4-80",
    "CD3/14/19 BV510": "Dump_CD14_CD19_CD3",  # a number after "CD3/" is a CD marker
    # the clinical panels' one CD16 + CD56 channel (TBNK) is an NK channel, not a dump
    "CD16+56 PE": "CD16_CD56",
    "CD16/CD56": "CD16_CD56",
    "CD56/16 APC": "CD16_CD56",
    "Lineage CD16 CD56": "Dump_CD16_CD56",  # unless it is called a lineage channel
    # mouse
    "LD_CD19_F4-80": "LD_CD19_F4-80",
    "L/D CD19 F4/80 eF780": "LD_CD19_F4-80",
    "NK1.1 PE": "NK1.1",
    "NK1_1": "NK1.1",
    "CD161c": "NK1.1",
    "CD49b DX5 FITC": "CD49b",
    "DX5": "CD49b",
    "ITGA2": "CD49b",
    "Eomes PE-eF610": "Eomes",
    # real files: FlowKit data1, isotope-prefixed CyTOF, flowSOM 68983, DiVa, Cytek
    "FL1-H CD4 FITC": "CD4",
    "FL2-H NK1.1 PE": "NK1.1",  # not HNK-1 (CD57) from the detector's "H" and "NK1"
    "FL1-H CD57 FITC": "CD57",
    "FL2-H HNK-1 PE": "CD57",
    "CD4 FITC": "CD4",
    "173Yb_CD56": "CD56",
    "165Ho_CD16": "CD16",
    "174Yb_HLA-DR": "HLA-DR",
    "198Pt_Dead": "Viability",
    "HLADR": "HLA-DR",
    "CD8a": "CD8",
    "NK1/1": "NK1.1",
    "TCRyd": "TCRgd",
    "l/d": "Viability",
    "viability;7-AAD;695/40@488/A": "Viability",
    "CD3-FITC": "CD3",
    "cd45 VioBlue-A": "CD45",
    "TNFa": "TNF",
    "Ki-67 BV480": "Ki-67",
    "GzmB AF700": "Granzyme-B",
    # fluorochromes, detectors, isotopes and markers the table does not know are no markers
    "PE-Cy7-A": "",
    "FITC-A": "",
    "BV421-A": "",
    "PerCP-Cy5-5-A": "",
    "APC-H7": "",
    "Alexa Fluor 700-A": "",
    "Qdot 605-A": "",
    "PE-Texas Red-A": "",
    "BUV737": "",
    "PEDazzle594": "",
    "Yb176Di": "",
    "195Pt": "",
    "FSC-A": "",
    "Time": "",
    "IFNa": "",  # a marker the table does not know (nkflow.io.unread_labels names it)
    "GFP": "",
    "": "",
    # near names stay apart: CD45 isoforms and congenic alleles, CD66 / CD66b, the TCR
    # chains, PD-1 / PD-L1, Greek letters, T-bet spellings (formerly CD45RA was no marker)
    "CD45RA": "CD45RA",
    "143Nd_CD45RA": "CD45RA",
    "CD45RO BV786": "CD45RO",
    "CD45R/B220 BUV395": "B220",
    "B220;V500;510/50@405/E": "B220",  # FlowKit's index-sort file
    "CD45.1 PE": "CD45.1",
    "CD45.2 FITC": "CD45.2",
    "CD66": "CD66",
    "152Gd_CD66b": "CD66b",
    "TCRb": "TCRb",
    "TCRβ APC": "TCRb",
    "TCR beta": "TCRb",
    "TCRαβ": "TCRab",
    "TCR ab FITC": "TCRab",
    "TCR gd PE": "TCRgd",
    "PD-1": "PD-1",
    "PD1 BV421": "PD-1",
    "CD279": "PD-1",
    "PD-L1 PE": "PD-L1",
    "175Lu_PD-L1": "PD-L1",
    "CD274": "PD-L1",
    "Tbet": "Tbet",
    "T-bet PE-Cy7": "Tbet",
    "TBX21": "Tbet",
    "RORγt PE": "RORgt",
    "IL-2Rβ": "CD122",
    "IL-2Ra": "CD25",  # the alpha chain stays CD25
    "c-Kit BV605": "CD117",
    "CD90.2": "CD90",
    "Thy1.1": "CD90.1",
    "Ly6C": "Ly6C",
    "Ly6G": "Ly6G",
    "Ly6G/C": "Gr-1",
    "Ly49C/I FITC": "Ly49C-I",
    "Ly49H": "Ly49H",
    "KIR2DL2/3 PE": "KIR2DL2-3",
    "CD158a": "KIR2DL1",
    "CD158": "KIR2D",  # the pan-KIR2D name stays
    "FcγRI": "CD64",
    "FcγRIII PE": "CD16",  # not CD64
    "FcεRIα": "FceRIa",
    "CD23;PE-Cy7;780/60@561/A": "CD23",
    "CD235ab_CD61": "Dump_CD235ab_CD61",  # red cells + platelets: a dump channel
    "Foxp3-IgM": "FoxP3",  # FlowAtlas 423C (IgM is no marker of the table)
    "CD57 pure + aIgM BV605": "CD57",
    "DNAM-1 BV711": "DNAM-1",
    "2B4": "2B4",
    "TIM-3 BV650": "TIM-3",
    "LAG3": "LAG-3",
    "CD94 FITC": "CD94",
    "KLRG1": "KLRG1",
    "TIGIT PerCP-eF710": "TIGIT",
    "MHC II": "MHCII",
    "HLA-DR": "HLA-DR",
}


@pytest.mark.parametrize("text", list(LABELS))
def test_marker_from_text(text: str) -> None:
    assert nio.marker_from_text(text) == LABELS[text]


def test_every_canonical_marker_resolves_to_itself() -> None:
    for marker in nio.CANONICAL_MARKERS:
        assert nio.canonical_marker(marker) == marker
        assert nio.marker_from_text(f"{marker} BV421") == marker


def test_species_form_of_cd3() -> None:
    assert nio.marker_from_text("CD3 PE-Cy7", species="mouse") == "CD3e"
    assert nio.marker_from_text("CD3e", species="human") == "CD3"
    assert nio.marker_equivalents("CD3") == {"CD3", "CD3e"}


def test_pnn_fallback_and_area_preference() -> None:
    pnn = ["FSC-A", "CD56", "Am Cyan-A", "Am Cyan-H", "FL2-H"]
    pns = ["", "", "CD69", "CD69", ""]
    assert nio.resolve_markers(pnn, pns) == ["", "CD56", "CD69", "", ""]


def test_two_channels_one_marker_is_panel_error() -> None:
    pnn, pns = ["FL2-H", "FL4-H"], ["CD8 B PE", "CD8 APC"]
    with pytest.raises(PanelError, match=r"CD8 on 'FL2-H' .*'FL4-H'"):
        nio.resolve_markers(pnn, pns)
    assert nio.resolve_markers(pnn, pns, on_conflict="blank") == ["", ""]
    assert nio.resolve_markers(pnn, pns, panel={"FL4-H": "CD8"}) == ["", "CD8"]


@pytest.mark.parametrize("suffix", ["csv", "toml", "bom.csv"])
def test_load_panel_overrides(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"panel.{suffix}"
    if suffix == "toml":
        path.write_text('[channels]\n"FL2-H" = "NCAM1"\n"FL4-H" = ""\n', encoding="utf-8")
    else:
        text = "channel,marker\nFL2-H,NCAM1\nFL4-H,\n"
        path.write_bytes(("\ufeff" if suffix.startswith("bom") else "").encode() + text.encode())
    panel = nio.load_panel(path)
    assert panel == {"FL2-H": "CD56", "FL4-H": ""}
    markers = nio.resolve_markers(
        ["FL2-H", "FL4-H", "FL1-H"], ["CD8 PE", "CD8 APC", "CD56"], panel=path
    )
    # the panel's CD56 wins over the alias table's CD56 on FL1-H
    assert markers == ["CD56", "", ""]


def test_load_panel_errors(tmp_path: Path) -> None:
    bad = tmp_path / "p.csv"
    bad.write_text("chan,mark\nA,B\n")
    with pytest.raises(PanelError, match="channel"):
        nio.load_panel(bad)
    dup = tmp_path / "d.csv"
    dup.write_text("channel,marker\nA,CD3\nA,CD4\n")
    with pytest.raises(PanelError, match="more than once"):
        nio.load_panel(dup)
    with pytest.raises(PanelError, match="cannot read"):
        nio.load_panel(tmp_path / "missing.csv")


def _quiet_read(path: Path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nio.read_fcs(path, **kwargs)


REAL = {
    "flowatlas/data/390C/390C_Lung_029.fcs": {
        "CD3": "FJComp-355 379_28-A",
        "CD69": "FJComp-355 740_35-A",
        "CD103": "FJComp-405 450_50-A",
        "CD127": "FJComp-561 780_60-A",
    },
    "cytonorm/inst/extdata/Gates_PTLG021_Unstim_Control_1.fcs": {
        "CD56": "Yb176Di",
        "CD16": "Ho165Di",
        "CD3": "Er170Di",
        "CD7": "Pr141Di",
        "HLA-DR": "Yb174Di",
        "CD161": "Gd157Di",
    },
    "supercellcyto/inst/extdata/Data23_Panel3_base_R5_Patient15.fcs": {
        "CD56": "Yb173Di",
        "CD16": "Ho165Di",
        "CD3": "Yb170Di",
        "Viability": "Pt198Di",
    },
    "flowsom/inst/extdata/68983.fcs": {
        "NK1.1": "PE-A",
        "CD3e": "PE-Cy7-A",
        "Viability": "AmCyan-A",
        "CD19": "PE-Cy5-A",
    },
}


@pytest.mark.parametrize("rel", list(REAL))
def test_real_files_resolve(external: Path, rel: str) -> None:
    species = "mouse" if "68983" in rel else None
    adata = _quiet_read(external / rel, metadata={"species": species or ""})
    for marker, channel in REAL[rel].items():
        assert nio.channel_for(adata, marker) == channel
    with pytest.raises(ChannelNotFoundError, match="AREG") as info:
        nio.channel_for(adata, "AREG")
    assert next(iter(REAL[rel])) in str(info.value)  # lists what the sample has


def test_required_markers_and_conflicts_in_read_fcs(external: Path) -> None:
    path = external / "flowkit/data/gate_ref/data1.fcs"
    with pytest.warns(NkflowWarning, match="CD8 on"):
        adata = nio.read_fcs(path)
    assert adata.uns["nkflow"]["marker_conflicts"] == {"CD8": ["FL2-H", "FL4-H"]}
    with pytest.raises(PanelError, match="FL2-H"):
        nio.channel_for(adata, "CD8")
    with pytest.raises(PanelError, match="FL4-H"):
        _quiet_read(path, required_markers=["CD8"])
    with pytest.raises(ChannelNotFoundError, match=r"CD56.*CD4 \(FL1-H\)"):
        _quiet_read(path, required_markers=["NCAM1"])
    fixed = _quiet_read(path, panel={"FL4-H": "CD8", "FL2-H": ""}, required_markers=["CD8"])
    assert nio.channel_for(fixed, "CD8") == "FL4-H"
