"""A sheet's file names as the analyst writes them: extension, dots, case, Unicode form."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

import nkflow.io as nio
from nkflow.exceptions import MetadataError

NFD = unicodedata.normalize("NFD", "Müller")
NFC = unicodedata.normalize("NFC", "Müller")


def _sheet(folder: Path, on_disk: str, written: str) -> Path:
    (folder / on_disk).parent.mkdir(parents=True, exist_ok=True)
    (folder / on_disk).write_bytes(b"")
    sheet = folder / "sheet.csv"
    sheet.write_text(f"file,sample_id\n{written},s1\n", encoding="utf-8")
    return sheet


@pytest.mark.parametrize(
    ("on_disk", "written"),
    [
        ("x.FCS", "x.fcs"),  # the extension's case
        ("x.FCS", "x"),
        ("x.fcs", "x.Fcs"),
        ("2024.03.04_D1_unstim.fcs", "2024.03.04_D1_unstim"),  # dots, no extension
        ("D1.day7.LMD", "D1.day7"),
        (f"{NFD}_unstim.fcs", f"{NFC}_unstim.fcs"),  # macOS names, a spreadsheet's text
        (f"{NFC}_unstim.fcs", f"{NFD}_unstim.fcs"),
        (f"Tag {NFD}/a.fcs", f"Tag {NFC}\\a"),  # a folder too, Windows separators
    ],
)
def test_the_same_name_to_the_analyst_is_found(tmp_path: Path, on_disk: str, written: str):
    table = nio.read_metadata(_sheet(tmp_path, on_disk, written))
    assert table["path"][0] == str((tmp_path / on_disk).resolve())
    assert table["file"][0] == written


@pytest.mark.parametrize(
    ("on_disk", "written", "hint"),
    [
        ("P034_Unstim.fcs", "P034_unstim.fcs", "P034_Unstim.fcs"),
        ("D2/P008_unstim.FCS", "d2/p008_unstim.fcs", "D2/P008_unstim.FCS"),
        ("P034_Unstim.fcs", "p034_unstim", "P034_Unstim.fcs"),
    ],
)
def test_a_name_differing_in_letter_case_is_not_taken_but_named(
    tmp_path: Path, on_disk: str, written: str, hint: str
) -> None:
    # on Linux two files may differ only in case: the sheet must say which it means
    with pytest.raises(MetadataError) as err:
        nio.read_metadata(_sheet(tmp_path, on_disk, written))
    (problem,) = err.value.problems
    assert f"file '{written}' not found" in problem
    assert f"did you mean '{hint}'?" in problem


def test_two_files_differing_in_case_keep_their_own_rows(tmp_path: Path) -> None:
    for name in ("a.fcs", "A.fcs"):
        (tmp_path / name).write_bytes(b"")
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("file,sample_id\na.fcs,s1\nA.fcs,s2\n")
    table = nio.read_metadata(sheet)
    assert [Path(p).name for p in table["path"]] == ["a.fcs", "A.fcs"]


def test_a_missing_file_with_no_near_name_gets_no_guess(tmp_path: Path) -> None:
    with pytest.raises(MetadataError) as err:
        nio.read_metadata(_sheet(tmp_path, "other.fcs", "P099.fcs"))
    assert "did you mean" not in err.value.problems[0]
