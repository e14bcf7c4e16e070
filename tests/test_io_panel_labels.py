"""A labelled channel nkflow cannot read as a marker is named, never dropped in silence.

``nkflow.io.unread_labels`` finds channels whose ``$PnS`` names a stain the alias table
does not know; ``nkflow inspect``, ``nkflow check``, the run's plan notes and provenance,
and its Methods name them. Fluorochromes, detectors, isotopes, scatter, time, DNA, barcode,
bead and reporter labels are no stain and are not listed.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import nkflow.io as nio
from nkflow.cli import main
from nkflow.exceptions import NkflowError
from nkflow.io.panel_labels import format_unread, looks_like_marker, unread_by_label, unread_items

STAINS = [
    "ICAM-1 BV605", "IL-12", "156Gd_CD86", "pStat3", "S6", "p38", "bob", "CD300a PE",
    "NKG7", "Siglec-10 APC",
]  # fmt: skip
NO_STAINS = [
    "PE-Cy7-A", "FITC-A", "Alexa Fluor™ 405-A", "Ax700-A", "Qdot605-A", "PacOrange-A",
    "PE-TR-A", "BUV737", "PEDazzle594", "APC-R700", "BV421", "APC-eF780", "PerCP-Cy5.5",
    "V2-A", "Y2-A", "B710-A", "G780-A", "355-448/59", "405-SSC", "Violet 1", "FL_Green",
    "PE-TxRed YG-A", "FL1 LinA", "195Pt", "Yb176Di", "191Ir_DNA1", "DNA2", "BC1",
    "140Ce_Beads", "beadDist", "Cisplatin", "Event_length", "Center", "Offset", "Residual",
    "Width", "Pulse Width", "Time", "Time (10.24 sec.)", "Computed Time", "Time LSW",
    "FSC-Height", "GFP", "mCherry-A", "GFP/FITC-A", "xxxxxxx", "empty", "",
]  # fmt: skip


@pytest.mark.parametrize("label", STAINS)
def test_a_stain_the_table_does_not_know_is_listed(label: str) -> None:
    assert looks_like_marker(label, "FL1-A")
    assert nio.unread_labels(["FSC-A", "FL1-A"], ["", label]) == {"FL1-A": label}


@pytest.mark.parametrize("label", NO_STAINS)
def test_a_label_naming_no_stain_is_not_listed(label: str) -> None:
    assert not looks_like_marker(label, "FL1-A")
    assert nio.unread_labels(["FL1-A"], [label]) == {}


@pytest.mark.parametrize(
    ("pnn", "pns", "panel", "unread"),
    [
        (["BL1-A"], ["BL1-A"], None, {}),  # the label repeats the channel name
        (["HDR-CE"], ["HDR-CE"], None, {}),
        (["FL1-A"], ["CD56 FITC"], None, {}),  # read as a marker
        (["ICAM-1"], [""], None, {"ICAM-1": "ICAM-1"}),  # no $PnS: read by name
        (["FL1-A"], ["ICAM-1"], {"FL1-A": "ICAM-1"}, {}),  # the panel names it
        (["FL1-A"], ["ICAM-1"], {"ICAM-1": ""}, {}),  # ... or says it carries none
        # a conflict between two channels is reported as such, not here
        (["FL2-H", "FL4-H"], ["CD8 PE", "CD8 APC"], None, {}),
        # the area channel stands for its height and width twins
        (["FITC-A", "FITC-H", "FITC-W"], ["IFNa"] * 3, None, {"FITC-A": "IFNa"}),
        (["FL1-H", "FL2-H"], ["IFNa", "IFNa"], None, {"FL1-H": "IFNa", "FL2-H": "IFNa"}),
    ],
)
def test_unread_labels(pnn, pns, panel, unread) -> None:
    assert nio.unread_labels(pnn, pns, panel=panel) == unread


# Every external file: the labels nkflow cannot read (golden); every other file has none,
# though they hold fluorochrome, detector, filter, isotope, DNA, barcode, bead, reporter and
# filler labels (MoFlo "488-513/26", Attune "BL1-A", G11 "Alexa Fluor™ 405-A", "GFP",
# CytoNorm "BC1" / "DNA1" / "beadDist", peacoqc "B710-A", diva 124500 "xxxxxxx" ...).
PHOSPHO = ["CREB", "STAT5", "p38", "STAT1", "STAT3", "S6", "MAPKAPK2", "IkB", "NFkB", "ERK"]
UNREAD = {
    **{
        f"cytonorm/inst/extdata/Gates_PTLG0{d}_Unstim_Control_{n}.fcs": PHOSPHO
        for d in ("21", "28", "34")
        for n in (1, 2)
    },
    **{
        f"supercellcyto/inst/extdata/Data23_Panel3_base_{s}.fcs": ["154Gd_ICAM-1", "156Gd_CD86"]
        for s in ("NR4_Patient9", "R5_Patient15")
    },
    "flowkit/data/test_comp_example.fcs": ["pStat3", "pp38"],
    "flowworkspacedata/inst/extdata/a2004_O1T2pb05i_A2_A02.fcs": ["IFNa", "IL-12", "IL-6"],
    "flowworkspacedata/inst/extdata/diva/124500.fcs": ["bob"],
}


def _readable(root: Path) -> dict[str, nio.FCSMetadata]:
    metas = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in (".fcs", ".lmd"):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                metas[str(path.relative_to(root))] = nio.read_fcs_metadata(path)
            except NkflowError:  # unreadable files are another test's subject
                continue
    return metas


def test_external_files_unread_labels_golden(external: Path) -> None:
    metas = _readable(external)
    assert set(UNREAD) <= set(metas)
    got = {rel: sorted(nio.unread_labels(m.pnn, m.pns).values()) for rel, m in metas.items()}
    assert {rel: labels for rel, labels in got.items() if labels} == {
        rel: sorted(labels) for rel, labels in UNREAD.items()
    }


def test_inspect_names_the_unread_labels(external: Path) -> None:
    rel = "flowworkspacedata/inst/extdata/a2004_O1T2pb05i_A2_A02.fcs"
    table = nio.inspect_files([external / rel])
    assert table.loc[0, "unread_labels"] == "'IL-12' (Pacific Blue-A), 'IL-6' (APC-CY7-A), " + (
        "'IFNa' (FITC-A)"
    )
    assert "MHCII (PerCP-CY5-5-A)" in table.loc[0, "markers"]
    out = CliRunner().invoke(main, ["inspect", str(external / rel)]).output
    assert "labels not read as markers (name them in a panel file): 'IL-12'" in out


def _batch(folder: Path, labels: list[str], n: int = 2) -> Path:
    """``n`` files of the human sample panel's layout, with the given $PnS labels."""
    from nkflow.datasets import get_panel

    panel = get_panel("human")
    channels = ["FSC-A", "FSC-H", "SSC-A", *[c.pnn for c in panel.channels], "Time"]
    stains = ["", "", "", *labels, ""]
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        data = rng.uniform(1, 1000, (50, len(channels))).astype(np.float32)
        nio.write_fcs(folder / f"s{i}.fcs", data, channels, markers=stains)
    return folder


@pytest.fixture
def relabelled(tmp_path: Path) -> Path:
    """The human sample panel with CD62L's channel relabelled to a marker nkflow lacks."""
    from nkflow.datasets import get_panel

    labels = [c.pns for c in get_panel("human").channels]
    at = next(i for i, s in enumerate(labels) if s.startswith("CD62L"))
    labels[at] = "ICAM-1 PerCP-Cy5.5"
    return _batch(tmp_path / "batch", labels)


def test_check_lists_unread_labels_and_a_panel_silences_them(relabelled: Path) -> None:
    check = nio.check_batch(relabelled, raise_on_error=False)
    assert check.ok
    assert list(check.unread["label"]) == ["ICAM-1 PerCP-Cy5.5"] * 2
    assert check.unread_lines() == ["'ICAM-1 PerCP-Cy5.5' (PerCP-Cy5-5-A, all 2 files)"]
    text = check.to_string()
    assert "Labels not read as markers (not fatal" in text
    assert "  - 'ICAM-1 PerCP-Cy5.5' (PerCP-Cy5-5-A, all 2 files)" in text
    named = nio.check_batch(relabelled, panel={"PerCP-Cy5-5-A": "ICAM-1"}, raise_on_error=False)
    assert named.unread.empty and "Labels not read" not in named.to_string()
    result = CliRunner().invoke(main, ["check", str(relabelled)])
    assert "'ICAM-1 PerCP-Cy5.5' (PerCP-Cy5-5-A, all 2 files)" in result.output


def test_check_without_unread_labels_says_nothing(tmp_path: Path) -> None:
    from nkflow.datasets import get_panel

    folder = _batch(tmp_path / "b", [c.pns for c in get_panel("human").channels])
    check = nio.check_batch(folder, raise_on_error=False)
    assert check.unread.empty and check.unread_lines() == []
    assert "Labels not read" not in check.to_string()


def test_a_run_names_the_unread_labels_in_its_plan(relabelled: Path, tmp_path: Path) -> None:
    from nkflow.config import RunConfig
    from nkflow.pipeline.stages import prepare_batch

    state, _ = prepare_batch(
        relabelled, tmp_path / "out", RunConfig(), force=False, resume=False,
        on_progress=None, on_plan=None,
    )  # fmt: skip
    try:
        assert state.unread_labels == [
            {"label": "ICAM-1 PerCP-Cy5.5", "channel": "PerCP-Cy5-5-A", "files": 2}
        ]
        (note,) = [n for n in state.plan.notes if n.startswith("labels not read as markers")]
        assert "'ICAM-1 PerCP-Cy5.5' (PerCP-Cy5-5-A)" in note and "panel file" in note
    finally:
        state.folder.release()


@pytest.mark.parametrize(
    ("unread", "expected"),
    [
        (None, None),
        (
            [{"label": "ICAM-1 PE", "channel": "PE-A", "files": 3}],
            "1 labelled channel(s) whose label names no marker the table knows were left "
            "out of the analysis: 'ICAM-1 PE' (PE-A)",
        ),
    ],
)
def test_methods_say_which_labelled_channels_were_left_out(unread, expected) -> None:
    from nkflow.config import RunConfig
    from nkflow.report.methods import methods_text

    provenance = {"unread_labels": unread} if unread else {}
    text = methods_text(RunConfig(), provenance, {})
    if expected is None:
        assert "left out of the analysis" not in text
    else:
        assert expected in text


@pytest.mark.parametrize(
    ("unread", "n_files", "expected"),
    [
        ({"FL2-A": "CD86 PE", "FL4-A": "IL-12"}, None, ["'CD86 PE' (FL2-A)", "'IL-12' (FL4-A)"]),
        ([{"label": "CD86 PE", "channel": "FL2-A", "files": 3}], None, ["'CD86 PE' (FL2-A)"]),
        ([{"label": "CD86 PE", "channel": "FL2-A", "files": 3}], 3,
         ["'CD86 PE' (FL2-A, all 3 files)"]),
        ([{"label": "CD86 PE", "channel": "FL2-A", "files": 1}], 3,
         ["'CD86 PE' (FL2-A, 1 of 3 file(s))"]),
        ([{"label": "CD86 PE", "channel": "FL2-A", "files": 1}], 1,
         ["'CD86 PE' (FL2-A, 1 of 1 file(s))"]),
    ],
)  # fmt: skip
def test_one_wording_of_the_unread_labels(unread, n_files, expected) -> None:
    """inspect, check, the plan and the Methods named them in three wordings."""
    assert unread_items(unread, n_files=n_files) == expected
    assert format_unread(unread, n_files=n_files) == ", ".join(expected)


def test_unread_rows_are_tallied_per_label_and_channel() -> None:
    rows = pd.DataFrame(
        {"sample_id": ["a", "b", "b"], "file": "", "channel": ["FL2-A", "FL2-A", "FL4-A"],
         "label": ["CD86 PE", "CD86 PE", "IL-12"]}
    )  # fmt: skip
    assert unread_by_label(rows) == [
        {"label": "CD86 PE", "channel": "FL2-A", "files": 2},
        {"label": "IL-12", "channel": "FL4-A", "files": 1},
    ]
    assert unread_by_label(rows.iloc[:0]) == unread_by_label(None) == []
