"""The alias table: every alias reads as its marker, no two markers share a name, and the
real files' $PnS labels resolve to the markers they name (golden, from the external files)."""

from __future__ import annotations

import warnings
from collections import defaultdict
from pathlib import Path

import pytest

import nkflow.io as nio
from nkflow.io.marker_aliases import ALIASES
from nkflow.io.panel import _DUMP_ONLY, _VIABILITY, _norm

ALL_ALIASES = [(canon, alias) for canon, names in ALIASES.items() for alias in (canon, *names)]


def test_no_two_markers_share_a_normalised_name() -> None:
    owners: dict[str, set[str]] = defaultdict(set)
    for canon, names in {**ALIASES, **_DUMP_ONLY}.items():
        for alias in (canon, *names):
            owners[_norm(alias)].add(canon)
    shared = {key: sorted(c) for key, c in owners.items() if len(c) > 1}
    assert not shared, shared
    assert "" not in owners
    # nor is a marker name a viability word (L/D, PI, Dead ...)
    assert not {_norm(v) for v in _VIABILITY} & set(owners)


@pytest.mark.parametrize(
    "template",
    ["{}", "{} BV421", "150Nd_{}", "{};PE-Cy7;780/60@561/A", "FL2-H {} PE"],
    ids=["alone", "fluorochrome", "isotope", "diva", "detector"],
)
def test_every_alias_reads_as_its_marker(template: str) -> None:
    wrong = {
        template.format(alias): got
        for canon, alias in ALL_ALIASES
        if (got := nio.marker_from_text(template.format(alias))) != canon
    }
    assert not wrong, wrong


def test_every_marker_name_looks_like_a_stain() -> None:
    # the unread-label rule never takes a marker's name for a fluorochrome, detector or
    # isotope word (B220 is no BD detector, 4-1BB no fluorochrome); "I-A/I-E" is spelled
    # in single letters only, which the rule reads as detector suffixes
    from nkflow.io.panel_labels import looks_like_marker

    hidden = [a for _, a in ALL_ALIASES if not looks_like_marker(a) and a != "I-A/I-E"]
    assert not hidden, hidden


# Real $PnS labels the alias table did not read before (their channels had no marker and
# dropped out of clustering, medians and the report without a note), with the marker each
# names; near names of one file stay apart (CD45 / CD45RA, PD-1 / PD-L1, CD66 / CD66b).
CYTONORM = "cytonorm/inst/extdata/Gates_PTLG021_Unstim_Control_1.fcs"
FLOWATLAS = "flowatlas/data/390C/390C_BM_027.fcs"
SUPERCELL = "supercellcyto/inst/extdata/Data23_Panel3_base_R5_Patient15.fcs"
REAL_LABELS = [
    (CYTONORM, "CD45RA", "CD45RA"),
    (CYTONORM, "CD45", "CD45"),
    (CYTONORM, "CD66", "CD66"),
    (CYTONORM, "CD15", "CD15"),
    (CYTONORM, "CD33", "CD33"),
    (CYTONORM, "CD123", "CD123"),
    (CYTONORM, "CCR7", "CCR7"),
    (CYTONORM, "CXCR3", "CXCR3"),
    (CYTONORM, "Tbet", "Tbet"),
    (CYTONORM, "FoxP3", "FoxP3"),
    (CYTONORM, "CCR2", "CCR2"),
    (CYTONORM, "CCR9", "CCR9"),
    (CYTONORM, "CD235ab_CD61", "Dump_CD235ab_CD61"),
    (FLOWATLAS, "PD-1", "PD-1"),
    (FLOWATLAS, "CD45RA", "CD45RA"),
    (FLOWATLAS, "CCR7", "CCR7"),
    (FLOWATLAS, "CXCR3", "CXCR3"),
    (FLOWATLAS, "Foxp3", "FoxP3"),
    (FLOWATLAS, "Helios", "Helios"),
    (FLOWATLAS, "CCR4", "CCR4"),
    (FLOWATLAS, "CCR6", "CCR6"),
    (FLOWATLAS, "CCR10", "CCR10"),
    (FLOWATLAS, "CXCR5", "CXCR5"),
    ("flowatlas/data/423C/423_Donor_Ileum_033.fcs", "Foxp3-IgM", "FoxP3"),
    (SUPERCELL, "167Er_CD38", "CD38"),
    (SUPERCELL, "146Nd_CD64", "CD64"),
    (SUPERCELL, "175Lu_PD-L1", "PD-L1"),
    (SUPERCELL, "169Tm_CD33", "CD33"),
    (SUPERCELL, "152Gd_CD66b", "CD66b"),
    (SUPERCELL, "151Eu_CD123", "CD123"),
    (SUPERCELL, "148Sm_CD34", "CD34"),
    (SUPERCELL, "155Gd_CD1c", "CD1c"),
    (SUPERCELL, "147Sm_CD303", "CD303"),
    (SUPERCELL, "149Sm_CD141", "CD141"),
    (SUPERCELL, "166Er_CD209", "CD209"),
    (SUPERCELL, "150Sm_CD61", "CD61"),
    ("flowsom/inst/extdata/68983.fcs", "TCRb", "TCRb"),
    ("flowsom/inst/extdata/68983.fcs", "TCRyd", "TCRgd"),
    ("flowkit/data/index_sorted/index_sorted_example.fcs", "B220;V500;510/50@405/E", "B220"),
    ("flowkit/data/index_sorted/index_sorted_example.fcs", "CD21;FITC;530/30@488/B", "CD21"),
    ("flowkit/data/index_sorted/index_sorted_example.fcs", "CD23;PE-Cy7;780/60@561/A", "CD23"),
    ("flowkit/data/index_sorted/index_sorted_example.fcs", "CD138;PE;586/15@561/E", "CD138"),
    ("flowworkspacedata/inst/extdata/a2004_O1T2pb05i_A2_A02.fcs", "MHCII", "MHCII"),
    ("flowworkspacedata/inst/extdata/diva/124500.fcs", "CD44", "CD44"),
    ("flowkit/data/test_comp_example.fcs", "CD33", "CD33"),
]


def _metadata(path: Path) -> nio.FCSMetadata:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nio.read_fcs_metadata(path)


@pytest.mark.parametrize(("rel", "label", "marker"), REAL_LABELS)
def test_real_labels_resolve(external: Path, rel: str, label: str, marker: str) -> None:
    meta = _metadata(external / rel)
    assert label in meta.pns  # the label as the file writes it
    channel = meta.pnn[meta.pns.index(label)]
    markers = nio.resolve_markers(meta.pnn, meta.pns)
    assert markers[meta.pnn.index(channel)] == marker
