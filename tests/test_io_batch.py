"""Metadata sheets, batches, the batch consistency check and inspect_files."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import nkflow.io as nio
from nkflow.exceptions import BatchConsistencyError, MetadataError
from nkflow.io.pairing import (
    control_origins,
    controls_summary,
    nearest_controls_first,
    pairing_summary,
)

RNG = np.random.default_rng(3)


def _fcs(path: Path, stains: dict[str, str], *, cyt: str = "Aurora", n: int = 50) -> Path:
    channels = ["FSC-A", "SSC-A", *stains, "Time"]
    markers = [None, None, *stains.values(), None]
    data = RNG.uniform(0, 1000, size=(n, len(channels))).astype(np.float32)
    return nio.write_fcs(path, data, channels, markers=markers, keywords={"$CYT": cyt})


PANEL = {"B1-A": "CD56 BV421", "B2-A": "CD16 FITC", "B3-A": "CD69 PE"}


@pytest.fixture
def batch_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "batch"
    folder.mkdir()
    _fcs(folder / "donor1_liver.fcs", PANEL)
    _fcs(folder / "donor2_liver.fcs", PANEL)
    _fcs(folder / "FMO_CD69.fcs", PANEL)
    _fcs(folder / "donor1_unstim.fcs", PANEL)
    return folder


def _sheet(folder: Path, rows: list[str], name: str = "sheet.csv", encoding: str = "utf-8") -> Path:
    path = folder / name
    header = "file,sample_id,donor,tissue,timepoint,stimulation,role,species,batch"
    path.write_bytes(("\n".join([header, *rows]) + "\n").encode(encoding))
    return path


def test_read_metadata_valid(batch_dir: Path) -> None:
    sheet = _sheet(
        batch_dir,
        [
            "donor1_liver.fcs,s1,D1,liver,d0,stim,,human,b1",
            "FMO_CD69.fcs,fmo,D1,liver,d0,,fmo:CD69,human,b1",
            "donor1_unstim.fcs,u1,D1,liver,d0,unstim,unstim,human,b1",
        ],
    )
    table = nio.read_metadata(sheet)
    assert list(table["role"]) == ["sample", "fmo:CD69", "unstim"]
    assert Path(table.loc[0, "path"]) == (batch_dir / "donor1_liver.fcs").resolve()
    assert table.attrs["source"] == str(sheet)


def test_read_metadata_reports_every_problem_at_once(batch_dir: Path) -> None:
    sheet = _sheet(
        batch_dir,
        [
            "donor1_liver.fcs,s1,D1,liver,d0,stim,,human,b1",
            "missing.fcs,s2,D1,liver,d0,,,human,b1",
            "donor2_liver.fcs,s1,D2,liver,d0,,,human,b1",
            "FMO_CD69.fcs,s3,D1,liver,d0,,fmo:NCAM1,human,b1",
            "donor1_unstim.fcs,s4,D1,liver,d0,stimmed,control,dog,b1",
            ",s5,D1,liver,d0,,fmo:XYZ,,b1",
        ],
    )
    with pytest.raises(MetadataError) as info:
        nio.read_metadata(sheet)
    text = str(info.value)
    expected = [
        "'missing.fcs' not found",
        "duplicate sample_id 's1' on rows [2, 4]",
        "did you mean fmo:CD56",
        "stimulation 'stimmed' invalid",
        "unknown role 'control'",
        "species 'dog' invalid",
        "empty file",
        "non-canonical marker 'XYZ'",
    ]
    for needle in expected:
        assert needle in text, needle
    assert len(info.value.problems) == len(expected)


@pytest.mark.parametrize(
    ("stimulation", "species", "expected"),
    [
        ("Unstimulated", "Homo sapiens", ("unstim", "human")),
        ("medium", "H. sapiens", ("unstim", "human")),  # medium alone: the baseline
        ("Non-stimulated", "Mus musculus", ("unstim", "mouse")),
        ("none", "murine", ("unstim", "mouse")),
        ("Stimulated", "mice", ("stim", "mouse")),
        ("IL-15", "Human", ("IL-15", "human")),  # a named condition, as written
    ],
)
def test_sheet_spellings_of_unstim_stim_and_species(
    batch_dir: Path, stimulation: str, species: str, expected: tuple[str, str]
) -> None:
    rows = [f"donor1_liver.fcs,s1,D1,liver,,{stimulation},,{species},"]
    table = nio.read_metadata(_sheet(batch_dir, rows))
    assert (table.loc[0, "stimulation"], table.loc[0, "species"]) == expected
    assert nio.metadata.is_stimulated(table.loc[0]) == (expected[0] != "unstim")


@pytest.mark.parametrize(
    ("role", "guess"),
    [
        ("FMO CD69", "fmo:CD69"),
        ("FMO-IFNg", "fmo:IFN-g"),
        ("SS CD56", "single_stain:CD56"),
        ("Positive control", "positive_control"),
    ],
)
def test_an_unknown_role_names_the_role_it_looks_like(batch_dir: Path, role: str, guess: str):
    with pytest.raises(MetadataError, match=rf"unknown role '{role}' \(did you mean {guess}\?\)"):
        nio.read_metadata(_sheet(batch_dir, [f"donor1_liver.fcs,s1,D1,liver,,,{role},,"]))
    table = nio.read_metadata(_sheet(batch_dir, ["donor1_liver.fcs,s1,D1,liver,,,Unstimulated,,"]))
    assert table.loc[0, "role"] == "unstim"  # the generic roles' other spellings are read


def test_sheet_values_that_differ_only_in_case_are_refused(batch_dir: Path) -> None:
    rows = [
        "donor1_liver.fcs,s1,D1,liver,pre,unstim,unstim,human,b1",
        "donor1_unstim.fcs,s2,D1,Liver,pre,IL-15,stim,human,b1",
        "donor2_liver.fcs,s3,d1,liver ,Pre,IL15,stim,human,b1",  # IL15 beside IL-15
        "FMO_CD69.fcs,s4,D1,liver,pre,unstim,fmo:CD69,human,b1",
    ]
    with pytest.raises(MetadataError) as info:
        nio.read_metadata(_sheet(batch_dir, rows))
    problems = info.value.problems
    assert len(problems) == 4  # donor, tissue, timepoint, stimulation; not batch
    assert "column 'tissue': 'liver' (rows 2, 4, 5) and 'Liver' (row 3)" in problems[1]
    assert all("differ only in case, spaces or punctuation" in p for p in problems)
    rows = [r.replace("Liver", "liver").replace("d1", "D1").replace("Pre", "pre") for r in rows]
    fixed = nio.read_metadata(_sheet(batch_dir, [r.replace("IL15", "IL-15") for r in rows]))
    assert set(fixed["tissue"]) == {"liver"}


def test_sheet_paths_written_on_windows_or_without_extension(tmp_path: Path) -> None:
    (tmp_path / "human").mkdir()
    _fcs(tmp_path / "human" / "D1_liver.fcs", PANEL)
    table = nio.read_metadata(_sheet(tmp_path, ["human\\D1_liver.fcs,s1,D1,liver,,,,,"]))
    assert table.loc[0, "path"] == str((tmp_path / "human" / "D1_liver.fcs").resolve())
    named = nio.read_metadata(_sheet(tmp_path, ["human/D1_liver,s1,D1,liver,,,,,"]))
    assert named.loc[0, "path"] == table.loc[0, "path"]  # the extension left out
    with pytest.raises(MetadataError, match=r"'human\\\\missing.fcs' not found"):
        nio.read_metadata(_sheet(tmp_path, ["human\\missing.fcs,s1,D1,liver,,,,,"]))


def test_a_missing_file_found_elsewhere_says_where(tmp_path: Path, monkeypatch) -> None:
    """Sheet paths are relative to the sheet; one written from the project's root (or
    kept beside its files) is told where the file is."""
    (tmp_path / "data").mkdir()
    (tmp_path / "meta").mkdir()
    _fcs(tmp_path / "data" / "D1_liver.fcs", PANEL)
    sheet = _sheet(tmp_path / "meta", ["data/D1_liver.fcs,s1,D1,liver,,,,,"])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MetadataError, match=r"it is at .*data.D1_liver\.fcs: paths in the sheet "
                       r"are relative to the sheet's folder"):  # fmt: skip
        nio.read_metadata(sheet)


@pytest.mark.parametrize("encoding", ["utf-8-sig", "latin-1", "utf-16"])
def test_sheet_encodings(batch_dir: Path, encoding: str) -> None:
    sheet = _sheet(batch_dir, ["donor1_liver.fcs,s1,Dönor1,liver,,,,,"], encoding=encoding)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = nio.read_metadata(sheet)
    assert table.loc[0, "donor"] == "Dönor1"
    assert list(table.columns[:2]) == ["file", "sample_id"]


def test_unreadable_sheets(tmp_path: Path) -> None:
    binary = tmp_path / "sheet.csv"
    binary.write_bytes(b"file,sample_id\x00\x01\x02\n")
    with pytest.raises(MetadataError, match="NUL"):
        nio.read_metadata(binary)
    nocols = tmp_path / "nocols.csv"
    nocols.write_text("name,id\na,b\n")
    with pytest.raises(MetadataError, match="missing required column"):
        nio.read_metadata(nocols)
    with pytest.raises(MetadataError, match="does not exist"):  # not "cannot read the sheet"
        nio.read_metadata(tmp_path / "nothing.csv")
    for name, magic in (("sheet.xlsx", b"PK\x03\x04"), ("sheet.xls", b"\xd0\xcf\x11\xe0")):
        (tmp_path / name).write_bytes(magic + b"\x14\x00\x06\x00workbook")
        with pytest.raises(MetadataError, match=r"spreadsheet workbook .* save it .*CSV UTF-8"):
            nio.read_metadata(tmp_path / name)


@pytest.mark.parametrize("name", ["FMO_CD69.fcs", "FMO_CD69.FCS", "FMO_CD69.dat"])
def test_one_fcs_file_is_a_batch_of_one(batch_dir: Path, name: str) -> None:
    """``nkflow check file.fcs``: read as its folder would read it, not as a sheet."""
    path = batch_dir / name
    if name != "FMO_CD69.fcs":  # another extension: told by the file's first bytes
        (batch_dir / "FMO_CD69.fcs").rename(path)
    table = nio.read_batch(path).metadata
    assert list(table["sample_id"]) == ["FMO_CD69"] and list(table["role"]) == ["fmo:CD69"]
    assert table.loc[0, "path"] == str(path.resolve())
    again = nio.metadata_from_files([path, path])  # the same name twice: told apart
    assert list(again["sample_id"]) == ["FMO_CD69", "FMO_CD69_2"]
    with pytest.raises(MetadataError, match="no such file"):
        nio.metadata_from_files([batch_dir / "missing.fcs"])


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["samples.xlsx", "notes.txt"], "it holds samples.xlsx;"),  # a workbook: named
        (["layout.csv"], "it holds layout.csv;"),
        (["notes.txt"], ""),  # nothing that looks like a sheet
        (["metadata.csv"], None),  # the folder's own sheet is read: nothing to say
    ],
)
def test_a_folder_run_names_a_sheet_it_did_not_read(
    batch_dir: Path, extra: list[str], named: str | None
) -> None:
    from nkflow.io.folder import folder_sheet_hint

    for name in extra:
        text = "file,sample_id\ndonor1_liver.fcs,s1\n" if name == "metadata.csv" else "x"
        (batch_dir / name).write_text(text)
    hint = folder_sheet_hint(nio.read_batch(batch_dir).metadata)
    if named:
        assert hint.startswith("sheet: none read: without a metadata.csv") and named in hint
    else:
        assert hint == ""


def test_fcs_files_beside_the_sheets_that_it_does_not_list_are_named(batch_dir: Path) -> None:
    """A tube (or an FMO) left out of the sheet is not analysed: the plan names it."""
    from nkflow.io.folder import unlisted_files_summary

    rows = ["donor1_liver.fcs,s1,D1,liver,,,,,", "donor2_liver.fcs,s2,D2,liver,,,,,"]
    text = unlisted_files_summary(nio.read_metadata(_sheet(batch_dir, rows)))
    assert text.startswith("sheet: 2 FCS file(s) beside the sheet's files are not in it")
    assert "FMO_CD69.fcs, donor1_unstim.fcs" in text
    rows += ["FMO_CD69.fcs,f,D1,liver,,,fmo:CD69,,", "donor1_unstim.fcs,u,D1,liver,,,,,"]
    assert unlisted_files_summary(nio.read_metadata(_sheet(batch_dir, rows))) == ""
    assert unlisted_files_summary(nio.read_batch(batch_dir).metadata) == ""  # a folder run


def test_a_sheet_of_symlinks_is_read_in_its_own_folder(batch_dir: Path, tmp_path: Path) -> None:
    """Links to files of a shared folder: the plan named the 2 other files there as left
    out of this sheet, and failures printed the links' targets."""
    from nkflow.io.folder import unlisted_files_summary

    mine = tmp_path / "mine"
    mine.mkdir()
    for name in ("donor1_liver.fcs", "donor2_liver.fcs"):
        (mine / name).symlink_to(batch_dir / name)
    rows = ["donor1_liver.fcs,s1,D1,liver,,,,,", "donor2_liver.fcs,s2,D2,liver,,,,,"]
    meta = nio.read_metadata(_sheet(mine, rows))
    assert list(meta["path"]) == [str(mine / "donor1_liver.fcs"), str(mine / "donor2_liver.fcs")]
    assert unlisted_files_summary(meta) == ""
    folder_run = nio.read_batch(mine).metadata
    assert set(folder_run["path"]) == set(meta["path"])


def _custom_sheet(folder: Path, header: str, rows: list[str]) -> Path:
    path = folder / "custom.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("File,Sample ID,Donor", ["file", "sample_id", "donor"]),
        ("FILE,Sample.ID,Tissue Kind", ["file", "sample_id", "tissue_kind"]),  # R's names
        (" file , sample-id ,Time-point", ["file", "sample_id", "timepoint"]),
        ("FILE,SampleID,Time point", ["file", "sample_id", "timepoint"]),  # no separator
    ],
)
def test_sheet_headers_are_read_case_blind_with_spaces_as_underscores(
    batch_dir: Path, header: str, expected: list[str]
) -> None:
    table = nio.read_metadata(_custom_sheet(batch_dir, header, ["donor1_liver.fcs,s1,blood"]))
    assert list(table.columns[:3]) == expected


@pytest.mark.parametrize(
    ("header", "rename"),
    [
        ("Filename,sample_id", "rename 'filename' -> 'file'"),
        ("FCS file,Sample Name", "rename 'fcs_file' -> 'file', 'sample_name' -> 'sample_id'"),
        ("file,tube", "rename 'tube' -> 'sample_id'"),
    ],
)
def test_a_missing_required_column_names_the_one_to_rename(
    batch_dir: Path, header: str, rename: str
) -> None:
    with pytest.raises(MetadataError, match="missing required column") as info:
        nio.read_metadata(_custom_sheet(batch_dir, header, ["donor1_liver.fcs,s1"]))
    assert info.value.problems[0].endswith(rename)


def test_unread_columns_that_look_like_nkflow_columns_are_named(batch_dir: Path) -> None:
    header = "file,sample_id,Patient,Condition,Plate,Control,Organ,Notes"
    rows = ["donor1_liver.fcs,s1,P1,IL-15,,FMO,,x", "donor1_unstim.fcs,s2,P1,none,,,,y"]
    table = nio.read_metadata(_custom_sheet(batch_dir, header, rows))
    text = nio.sheet_notes.unread_columns_summary(table)
    assert text.startswith(
        "sheet: column(s) nkflow does not read that look like its own: 'patient' -> 'donor', "
        "'condition' -> 'stimulation', 'control' -> 'role' ("
    )  # empty Plate and Organ columns hold nothing to read; Notes looks like nothing
    named = _custom_sheet(batch_dir, "file,sample_id,donor,Patient", ["donor1_liver.fcs,s1,D1,P1"])
    assert nio.sheet_notes.unread_columns_summary(nio.read_metadata(named)) == ""


@pytest.mark.parametrize(
    ("tube", "named"),
    [("unstim,stim,fmo:CD69", True), ("unstim,,FMO:CD69", True), ("A,B,C", False),
     ("sample,sample,", False)],
)  # fmt: skip
def test_a_column_of_roles_under_another_name_is_named(
    batch_dir: Path, tube: str, named: bool
) -> None:
    """A ``Tube`` column holding nkflow's roles left every tube a sample: FMO tubes were
    gated and scored as donors' samples."""
    files = ["donor1_liver.fcs", "donor1_unstim.fcs", "FMO_CD69.fcs"]
    rows = [f"{f},s{i},{r}" for i, (f, r) in enumerate(zip(files, tube.split(","), strict=True))]
    table = nio.read_metadata(_custom_sheet(batch_dir, "file,sample_id,Tube", rows))
    assert ("'tube' -> 'role'" in nio.sheet_notes.unread_columns_summary(table)) == named


@pytest.mark.parametrize("role", ["", "fmo:CD69"])
def test_files_named_like_controls_in_a_sheet_without_roles_are_named(
    batch_dir: Path, role: str
) -> None:
    rows = ["donor1_liver.fcs,s1,", f"FMO_CD69.fcs,f1,{role}"]
    table = nio.read_metadata(_custom_sheet(batch_dir, "file,sample_id,role", rows))
    text = nio.sheet_notes.unnamed_controls_summary(table)
    if role:
        assert text == ""  # the sheet says what the tube is
    else:
        assert text.startswith(
            "sheet: no role column, so 1 file(s) named like controls are analysed as samples: "
            "'FMO_CD69.fcs' (fmo:CD69)"
        )


@pytest.mark.parametrize("same_ends", [False, True], ids=["a copy", "same ends, other middle"])
def test_files_with_the_same_content_are_named(tmp_path: Path, same_ends: bool) -> None:
    """A tube copied under a second donor's name was analysed as that donor's without a
    word. Files of equal size whose ends agree but whose middles differ are not the same."""
    body = bytes(range(256)) * 2048  # 512 KiB: the ends (64 KiB each) and a middle apart
    (tmp_path / "D1_blood.fcs").write_bytes(body)
    (tmp_path / "D2_blood.fcs").write_bytes(body)
    other = bytearray(body)
    other[len(body) // 2] ^= 1  # one byte in the middle
    (tmp_path / "D3_blood.fcs").write_bytes(bytes(other) if same_ends else body[:-1] + b"x")
    (tmp_path / "short.fcs").write_bytes(body[:100])
    names = ("D1_blood.fcs", "D2_blood.fcs", "D3_blood.fcs", "short.fcs")
    meta = pd.DataFrame({"path": [str(tmp_path / n) for n in names]})
    text = nio.sheet_notes.identical_files_summary(meta)
    assert text.startswith("files: 1 group(s) of files with identical content: "
                           "'D1_blood.fcs' = 'D2_blood.fcs';"), text  # fmt: skip
    assert "D3_blood" not in text
    assert nio.sheet_notes.identical_files_summary(meta.iloc[[0, 2, 3]]) == ""


def test_metadata_from_folder_guesses_roles(batch_dir: Path) -> None:
    (batch_dir / "notes.txt").write_text("x")
    table = nio.metadata_from_folder(batch_dir)
    roles = dict(zip(table["sample_id"], table["role"], strict=True))
    assert roles == {
        "FMO_CD69": "fmo:CD69",
        "donor1_liver": "sample",
        "donor1_unstim": "unstim",
        "donor2_liver": "sample",
    }
    assert table.loc[table["sample_id"] == "donor1_unstim", "stimulation"].item() == "unstim"
    with pytest.raises(MetadataError, match="no"):
        nio.metadata_from_folder(batch_dir.parent / "empty_nowhere")


def test_folder_with_files_only_in_subfolders_says_where_they_are(tmp_path: Path) -> None:
    for donor in ("D2", "D1"):
        (tmp_path / donor).mkdir()
        _fcs(tmp_path / donor / f"{donor}_liver.fcs", PANEL)
    (tmp_path / "D1" / "nested").mkdir()
    _fcs(tmp_path / "D1" / "nested" / "D1_lung.fcs", PANEL)
    with pytest.raises(MetadataError) as err:
        nio.metadata_from_folder(tmp_path)
    message = str(err.value)
    assert "3 in its subfolders D1/ (2), D2/ (1)" in message
    assert "'D1/D1_liver.fcs'" in message  # a sheet's file column, relative to the folder
    # following the message: a sheet in the folder runs the files of every subfolder
    sheet = _sheet(tmp_path, ["D1/D1_liver.fcs,a", "D2/D2_liver.fcs,b", "D1/nested/D1_lung.fcs,c"])
    assert list(nio.read_metadata(sheet)["sample_id"]) == ["a", "b", "c"]


def _tubes(*rows: tuple[str, str, str, str]) -> pd.DataFrame:
    cols = ["sample_id", "donor", "tissue", "role"]
    return pd.DataFrame(rows, columns=cols).assign(timepoint="pre", batch="b1", stimulation="")


@pytest.mark.parametrize(
    ("sheet", "expected"),
    [
        (  # two donors named: each stimulated tube has its one partner
            _tubes(("u1", "D1", "liver", "unstim"), ("s1", "D1", "liver", "stim"),
                   ("u2", "D2", "liver", "unstim"), ("s2", "D2", "liver", "stim"),
                   ("f", "D1", "liver", "fmo:AREG")),
            "pairing: 2 stimulated tube(s), 2 with their unstimulated tube",
        ),
        (  # no donors: the two unstimulated liver tubes may be two donors
            _tubes(("u1", "", "liver", "unstim"), ("s1", "", "liver", "stim"),
                   ("u2", "", "liver", "unstim"), ("s2", "", "blood", "stim")),
            "pairing: 2 stimulated tube(s), 0 with their unstimulated tube; 1 without a sure "
            "one",
        ),
        (_tubes(("s1", "D1", "liver", "stim")), "1 without any"),
        (  # D1's two unstimulated liver tubes (pre and post without a timepoint column?)
            _tubes(("u1", "D1", "liver", "unstim"), ("u2", "D1", "liver", "unstim"),
                   ("s1", "D1", "liver", "stim")),
            "1 with their unstimulated tube (1 of them with several, pooled as replicates",
        ),
        (_tubes(("u1", "D1", "liver", "unstim")), ""),  # nothing stimulated: nothing to say
    ],
)  # fmt: skip
def test_pairing_summary(sheet: pd.DataFrame, expected: str) -> None:
    text = pairing_summary(sheet)
    assert expected in text if expected else text == ""


@pytest.mark.parametrize(
    ("fmo_tissues", "sample_tissues", "expected"),
    [
        (("blood", "liver"), ("blood", "liver"), []),  # one FMO per tissue: nothing to say
        (("", ""), ("", ""), ["AREG (tissue '', batch 'b1'): blood_FMO_AREG.fcs, liver_FMO"]),
        (("liver", "liver"), ("liver", "liver"), []),  # one FMO per donor: each its own
        (("blood", "liver"), ("PBMC", "liver"),  # the sheet names blood two ways
         ["no FMO tube, so the fallback rule, for AREG (tissue 'PBMC', batch 'b1')",
          "no sample tube has: blood_FMO_AREG.fcs"]),
    ],
)  # fmt: skip
def test_controls_summary_names_fmo_tubes_that_do_not_match_one_to_one(
    fmo_tissues, sample_tissues, expected
) -> None:
    # the FMO tubes belong to D1, and to D2 when they share a tissue
    second = "D2" if fmo_tissues == ("liver", "liver") else "D1"
    sheet = _tubes(("f1", "D1", fmo_tissues[0], "fmo:AREG"), ("f2", second, fmo_tissues[1],
                   "fmo:AREG"), ("u1", "D1", sample_tissues[0], "unstim"),
                   ("u2", second, sample_tissues[1], "unstim"))  # fmt: skip
    sheet["file"] = ["x/blood_FMO_AREG.fcs", "x/liver_FMO_AREG.fcs", "u1.fcs", "u2.fcs"]
    text = controls_summary(sheet)
    assert all(e in text for e in expected) and bool(text) == bool(expected)


def test_one_donors_fmo_tubes_at_two_timepoints_are_not_replicates() -> None:
    sheet = _tubes(("f1", "D1", "liver", "fmo:AREG"), ("f2", "D1", "liver", "fmo:AREG"),
                   ("u1", "D1", "liver", "unstim"))  # fmt: skip
    sheet["file"] = ["pre_FMO_AREG.fcs", "post_FMO_AREG.fcs", "u1.fcs"]
    assert (
        "replicate FMO tubes (one marker, tissue, batch, donor, timepoint and condition), "
        "pooled into one cut-off: AREG (tissue 'liver', batch 'b1'): pre_FMO_AREG.fcs, "
        "post_FMO_AREG.fcs" in controls_summary(sheet)
    )
    sheet.loc[1, "timepoint"] = "post"  # each timepoint's tubes cut at their own
    assert controls_summary(sheet) == ""


@pytest.mark.parametrize(
    ("tube", "order"),
    [
        # own donor and timepoint, own donor, then as listed; the pool row last
        ({"donor": "D1", "timepoint": "pre"}, [3, 2, 0, 1]),
        ({"donor": "D1", "timepoint": "post"}, [2, 3, 0, 1]),
        ({"donor": "D2", "timepoint": "post"}, [0, 2, 3, 1]),  # D2's own, then the timepoint's
        ({"donor": "D3"}, [0, 2, 3, 1]),  # none of its own: as listed
        ({"timepoint": "pre"}, [0, 3, 2, 1]),  # no donor: the timepoint's first
        # a stimulated tube: the stimulated FMO first, whoever's it is
        ({"donor": "D1", "timepoint": "pre", "stimulation": "IL-15"}, [4, 3, 2, 0, 1]),
    ],
)
def test_nearest_controls_come_first(tube: dict[str, str], order: list[int]) -> None:
    rows = [
        {"marker": "AREG", "control_file": "d2/FMO_AREG.fcs"},
        {"marker": "CD69", "control_file": ""},  # a batch-pool or fallback row
        {"marker": "AREG", "control_file": "d1_post/FMO_AREG.fcs"},
        {"marker": "AREG", "control_file": "d1_pre/FMO_AREG.fcs"},
    ]
    sheet = pd.DataFrame(
        [("d2/FMO_AREG.fcs", "D2", "pre", "unstim"), ("d1_post/FMO_AREG.fcs", "D1", "post", ""),
         ("d1_pre/FMO_AREG.fcs", "D1", "pre", "unstim")],
        columns=["file", "donor", "timepoint", "stimulation"],
    ).assign(role="fmo:AREG")  # fmt: skip
    if "stimulation" in tube:  # a stimulated FMO of another donor and timepoint
        rows.append({"marker": "AREG", "control_file": "d2_stim/FMO_AREG.fcs"})
        sheet.loc[len(sheet)] = ["d2_stim/FMO_AREG.fcs", "D2", "post", "IL-15", "fmo:AREG"]
    ordered = nearest_controls_first(rows, tube, control_origins(sheet))
    assert ordered == [rows[i] for i in order]


@pytest.mark.parametrize(
    ("name", "role", "stimulation"),
    [
        ("liver_FMO_AREG", "fmo:AREG", ""),
        ("blood_FMO_IFN-g", "fmo:IFN-g", ""),  # a marker with a hyphen
        ("liver_AREG_FMO", "fmo:AREG", ""),  # the marker before FMO
        ("CD69 FMO", "fmo:CD69", ""),
        ("FMO-CD49a_liver", "fmo:CD49a", ""),
        ("FMOAREG_liver", "fmo:AREG", ""),
        ("D1_FMO", "sample", ""),  # no marker named: not a guess
        ("informo_liver", "sample", ""),
        # stimulation conditions named in the file name
        ("D1_blood_pre_IL-15", "stim", "IL-15"),
        ("D1 liver IL2 stim", "stim", "IL-2"),
        ("D1_liver_dex", "stim", "dexamethasone"),
        ("D1_liver_PMA", "stim", "stim"),
        ("D1_liver_unstim", "unstim", "unstim"),
        ("IL2RA_D1_liver", "sample", ""),  # a stain's name, not a cytokine
        ("PC_ILC_stim", "positive_control", "stim"),
        ("ILC positive control", "positive_control", "stim"),
        ("D1_PBMC_unstim", "unstim", "unstim"),  # PBMC is not PC
    ],
)
def test_folder_guesses_fmo_markers_and_conditions(
    tmp_path: Path, name: str, role: str, stimulation: str
) -> None:
    _fcs(tmp_path / f"{name}.fcs", PANEL)
    row = nio.metadata_from_folder(tmp_path).loc[0]
    assert (row["role"], row["stimulation"]) == (role, stimulation)


def test_read_batch_lazy_and_iterable(batch_dir: Path) -> None:
    batch = nio.read_batch(batch_dir)
    assert len(batch) == 4 and batch.sample_ids[0] == "FMO_CD69"
    adata = batch.read("donor1_liver")
    assert adata.uns["nkflow"]["sample"]["sample_id"] == "donor1_liver"
    assert nio.channel_for(adata, "CD56") == "B1-A"
    assert [a.n_obs for a in batch] == [50] * 4
    with pytest.raises(KeyError, match="donor1_liver"):
        batch.read("nope")


def test_batch_failures_do_not_stop_others(batch_dir: Path) -> None:
    (batch_dir / "broken.fcs").write_bytes(b"FCS3.1 garbage")
    batch = nio.read_batch(batch_dir)
    results = list(batch.iter_samples())
    failed = [sid for sid, adata, err in results if err is not None]
    assert failed == ["broken"]
    assert sum(adata is not None for _, adata, _ in results) == 4


def test_check_batch_reports_and_maps(batch_dir: Path) -> None:
    # a file from another instrument with CD56 on another detector and an extra channel
    _fcs(
        batch_dir / "donor3_liver.fcs",
        {"V7-A": "CD56 BUV737", "B2-A": "CD16 FITC", "B3-A": "CD69 PE", "R1-A": "AREG APC"},
        cyt="Fortessa",
    )
    check = nio.check_batch(batch_dir, required_markers=["CD56", "CD69"])
    assert check.ok
    assert check.mapping.loc["CD56", "donor3_liver"] == "V7-A"
    assert check.mapping.loc["CD56", "donor1_liver"] == "B1-A"
    assert check.mapping.loc["AREG", "donor1_liver"] == ""
    diffs = check.differences[check.differences["sample_id"] == "donor3_liver"]
    aspects = set(zip(diffs["aspect"], diffs["item"], strict=True))
    assert {
        ("marker_channel", "CD56"),
        ("cyt", "cyt"),
        ("channel", "V7-A"),
        ("channel", "B1-A"),
    } <= aspects
    assert ("marker", "AREG") in aspects
    assert not diffs["fatal"].any()
    text = check.to_string()
    assert "OK" in text and "V7-A" in text and "marker_channel" in text
    # one column per distinct mapping, not one per file, with the files of each
    assert "Marker -> channel (2 different mappings in the batch):" in text
    assert "  B: 1 file(s): donor3_liver" in text


@pytest.mark.parametrize(
    ("cyt", "channels", "listed"),
    [
        ("Fortessa", ["FSC-A", "B1-A", "Time"], {"B1-A"}),  # a setting: the transform moves
        ("Helios", ["Event_length", "Yb176Di", "Time"], set()),  # CyTOF: each file's maximum
    ],
)
def test_check_batch_lists_range_differences_that_are_settings(
    tmp_path: Path, cyt: str, channels: list[str], listed: set[str]
) -> None:
    markers = [None, "CD56", None]
    for name, top in (("a", 1000.0), ("b", 4000.0)):
        data = RNG.uniform(0, 100, size=(40, 3)).astype(np.float32)
        nio.write_fcs(tmp_path / f"{name}.fcs", data, channels, markers=markers,
                      keywords={"$CYT": cyt}, ranges=[262144.0, top, top])  # fmt: skip
    diffs = nio.check_batch(tmp_path).differences
    assert set(diffs.loc[diffs["aspect"] == "range", "item"]) == listed  # never Time


def test_a_batch_mapped_alike_prints_one_mapping_column(batch_dir: Path) -> None:
    text = nio.check_batch(batch_dir).to_string()
    assert "Marker -> channel (the same in every file):" in text
    assert "all 4 file(s)" in text and "donor2_liver" not in text.split("Marker ->")[1]


def test_check_batch_fmo_may_lack_its_marker(tmp_path: Path) -> None:
    folder = tmp_path / "fmo"
    folder.mkdir()
    _fcs(folder / "s1.fcs", PANEL)
    _fcs(folder / "s2.fcs", PANEL)
    _fcs(folder / "FMO_CD69.fcs", {"B1-A": "CD56 BV421", "B2-A": "CD16 FITC", "B3-A": ""})
    check = nio.check_batch(folder, required_markers=["CD69", "CD56"])
    assert check.ok
    assert check.mapping.loc["CD69", "FMO_CD69"] == "B3-A"
    row = check.differences.query("sample_id == 'FMO_CD69' and item == 'CD69'").iloc[0]
    assert "expected for fmo:CD69" in row["value"] and not row["fatal"]
    # reading the FMO tube through the batch labels its channel for threshold setting
    adata = nio.read_batch(folder).read("FMO_CD69", required_markers=["CD69"])
    assert nio.channel_for(adata, "CD69") == "B3-A"


def test_check_batch_raises_when_required_marker_missing(batch_dir: Path) -> None:
    _fcs(batch_dir / "no_cd69.fcs", {"B1-A": "CD56 BV421", "B2-A": "CD16 FITC"})
    (batch_dir / "zzz_broken.fcs").write_bytes(b"not fcs at all" * 10)
    with pytest.raises(BatchConsistencyError, match=r"no_cd69 .*marker CD69: missing"):
        nio.check_batch(batch_dir, required_markers=["CD69"])
    check = nio.read_batch(batch_dir).check(required_markers=["CD69"], raise_on_error=False)
    assert not check.ok
    assert check.failed == ["zzz_broken"]
    assert "not an FCS file" in check.files.set_index("sample_id").loc["zzz_broken", "error"]


def test_inspect_files_never_raises(batch_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "dir.fcs").mkdir()
    (tmp_path / "bad.fcs").write_bytes(b"\x00" * 100)
    paths = [batch_dir / "donor1_liver.fcs", tmp_path / "dir.fcs", tmp_path / "bad.fcs"]
    table = nio.inspect_files(paths)
    # unread_labels, beside the markers: labels naming a stain no marker was read from
    assert list(table.columns[:9]) == [
        "file", "fcs_version", "events", "channels", "markers", "unread_labels", "spillover",
        "instrument", "date",
    ]  # fmt: skip
    first = table.iloc[0]
    assert (first["fcs_version"], first["events"], first["channels"]) == ("3.1", 50, 6)
    assert "CD56 (B1-A)" in first["markers"] and first["error"] == ""
    assert first["unread_labels"] == ""
    assert "directory" in table.loc[1, "error"]
    assert "not an FCS file" in table.loc[2, "error"]


def test_inspect_external_folder(external: Path) -> None:
    paths = sorted((external / "flowio/data/fcs_files").glob("*.fcs"))
    table = nio.inspect_files(paths)
    assert (table["error"] == "").all()
    accuri = table[table["file"].str.contains("B01")].iloc[0]
    assert accuri["spillover"] == "yes" and accuri["instrument"] == "BD Accuri C6 Plus"
    assert isinstance(table, pd.DataFrame)


@pytest.mark.parametrize(
    ("role", "unusable"),
    [("sample", True), ("fmo:CD69", True), ("unstained", False), ("single_stain:CD56", False)],
)
def test_check_batch_problems_name_unusable_files(
    batch_dir: Path, role: str, unusable: bool
) -> None:
    """Unreadable files and files with no marker of the batch are problems, one row each."""
    _fcs(batch_dir / "bare.fcs", {"V1-A": "", "V2-A": ""})
    (batch_dir / "broken.fcs").write_bytes(b"not fcs at all" * 10)
    files = sorted(p.name for p in batch_dir.glob("*.fcs"))
    rows = [f"{f},{Path(f).stem},D1,liver,d0,,{role if f == 'bare.fcs' else ''},,"
            for f in files]  # fmt: skip
    check = nio.check_batch(_sheet(batch_dir, rows), raise_on_error=False)
    assert check.ok  # no fatal difference: the other files stay usable
    problems = check.problems.set_index("sample_id")
    expected = {"broken", "bare"} if unusable else {"broken"}
    assert set(problems.index) == expected
    assert "not an FCS file" in problems.loc["broken", "reason"]
    if unusable:
        assert "no channel carries a marker of the batch" in problems.loc["bare", "reason"]
    assert "file(s) unusable" in check.to_string().splitlines()[0]


def test_check_batch_file_without_panel_channels(batch_dir: Path) -> None:
    _fcs(batch_dir / "other.fcs", {"FL1-H": "CD56", "FL2-H": "CD16"})
    panel = {"B1-A": "CD56", "B2-A": "CD16", "B3-A": "CD69"}
    check = nio.check_batch(batch_dir, panel=panel, raise_on_error=False)
    (row,) = check.problems.itertuples()
    assert row.sample_id == "other"
    assert row.reason.startswith("none of the panel's 3 channel(s) is in this file")
    # without a panel its labelled channels resolve, so it is usable
    assert nio.check_batch(batch_dir).problems.empty
