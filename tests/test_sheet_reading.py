"""Reading a sheet: a column named twice, Excel's ``sep=`` line, rows numbered by file line."""

from __future__ import annotations

from pathlib import Path

import pytest

import nkflow.io as nio
from nkflow.exceptions import MetadataError


def _write(folder: Path, text: str, files: tuple[str, ...] = ("a.fcs", "b.fcs")) -> Path:
    for name in files:
        (folder / name).write_bytes(b"")
    sheet = folder / "sheet.csv"
    sheet.write_text(text, encoding="utf-8", newline="")
    return sheet


def _problems(sheet: Path) -> list[str]:
    with pytest.raises(MetadataError) as err:
        nio.read_metadata(sheet)
    return err.value.problems


@pytest.mark.parametrize(
    ("header", "first", "second", "column"),
    [
        ("file,sample_id,Donor,donor", "'Donor' (column 3)", "'donor' (column 4)", "donor"),
        ("file,Sample ID,sample_id,donor", "'Sample ID' (column 2)", "'sample_id' (column 3)",
         "sample_id"),
        ("File,file,sample_id,donor", "'File' (column 1)", "'file' (column 2)", "file"),
        ("file,sample_id,donor,donor", "'donor' (column 3)", "'donor' (column 4)", "donor"),
    ],
)  # fmt: skip
def test_a_column_named_twice_is_refused(
    tmp_path: Path, header: str, first: str, second: str, column: str
) -> None:
    # case-blind twins used to crash ("truth value of a Series is ambiguous"); an exact
    # repeat was renamed donor.1 by pandas and silently ignored
    sheet = _write(tmp_path, f"{header}\na.fcs,a.fcs,s1,D1\n")
    (problem,) = _problems(sheet)
    assert "appear twice" in problem
    assert f"{first} and {second} both read as '{column}'" in problem


def test_empty_header_cells_are_not_a_repeat(tmp_path: Path) -> None:
    sheet = _write(tmp_path, "file,sample_id,,\na.fcs,s1,,\n")
    assert list(nio.read_metadata(sheet)["sample_id"]) == ["s1"]


HEADER = "file,sample_id,species"


@pytest.mark.parametrize(
    ("lines", "row"),
    [
        (["a.fcs,s1,human", ",,", ",,", "b.fcs,s2,humn"], 5),  # rows of empty cells
        (["a.fcs,s1,human", "", "b.fcs,s2,humn"], 4),  # an empty line
        (["", "a.fcs,s1,human", "b.fcs,s2,humn"], 4),
        (['a.fcs,"s\n1",human', "b.fcs,s2,humn"], 4),  # a quoted line break
        (["b.fcs,s2,humn"], 2),
    ],
)
def test_rows_are_numbered_by_their_line_in_the_file(
    tmp_path: Path, lines: list[str], row: int
) -> None:
    sheet = _write(tmp_path, "\n".join([HEADER, *lines]) + "\n")
    problems = _problems(sheet)
    assert any(p.startswith(f"row {row} (sample_id 's2'): species 'humn'") for p in problems)


def test_duplicate_rows_are_named_by_file_line(tmp_path: Path) -> None:
    sheet = _write(tmp_path, f"{HEADER}\na.fcs,s1,human\n\nb.fcs,s1,human\n")
    assert "duplicate sample_id 's1' on rows [2, 4]" in _problems(sheet)


@pytest.mark.parametrize("sep_line", ["sep=;", '"sep=;"', "SEP=;"])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_excel_sep_line_names_the_delimiter(tmp_path: Path, sep_line: str, newline: str) -> None:
    rows = [sep_line, "file;sample_id;donor", "a.fcs;s1;034", "b.fcs;s2;035"]
    sheet = _write(tmp_path, newline.join(rows) + newline)
    table = nio.read_metadata(sheet)
    assert list(table["sample_id"]) == ["s1", "s2"]
    assert list(table["donor"]) == ["034", "035"]


def test_rows_after_a_sep_line_count_it(tmp_path: Path) -> None:
    sheet = _write(tmp_path, "sep=,\nfile,sample_id,species\na.fcs,s1,humn\n")
    assert _problems(sheet)[0].startswith("row 3 (sample_id 's1'): species")
