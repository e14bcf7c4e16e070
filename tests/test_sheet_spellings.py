"""Values of one grouping column that a spreadsheet stripped of their leading zeros."""

from __future__ import annotations

from pathlib import Path

import pytest

import nkflow.io as nio
from nkflow.exceptions import MetadataError


def _sheet(folder: Path, column: str, first: str, second: str) -> Path:
    for name in ("a.fcs", "b.fcs"):
        (folder / name).write_bytes(b"")
    sheet = folder / "sheet.csv"
    sheet.write_text(f"file,sample_id,{column}\na.fcs,s1,{first}\nb.fcs,s2,{second}\n")
    return sheet


@pytest.mark.parametrize(
    ("column", "first", "second"),
    [("donor", "034", "34"), ("batch", "1", "01"), ("timepoint", "D07", "D7"),
     ("donor", "P-034", "p34")],
)  # fmt: skip
def test_values_differing_in_leading_zeros_are_refused(
    tmp_path: Path, column: str, first: str, second: str
) -> None:
    with pytest.raises(MetadataError) as err:
        nio.read_metadata(_sheet(tmp_path, column, first, second))
    (problem,) = err.value.problems
    assert problem.startswith(f"column '{column}': '{first}' (row 2) and '{second}' (row 3)")
    assert "leading zeros" in problem


@pytest.mark.parametrize(
    ("column", "first", "second"),
    [("donor", "34", "340"), ("timepoint", "D0", "D10"), ("timepoint", "1.05", "1.5"),
     ("batch", "0", "00a")],
)  # fmt: skip
def test_different_numbers_stay_apart(tmp_path: Path, column: str, first: str, second: str) -> None:
    table = nio.read_metadata(_sheet(tmp_path, column, first, second))
    assert list(table[column]) == [first, second]


def test_a_case_difference_does_not_blame_zeros(tmp_path: Path) -> None:
    with pytest.raises(MetadataError) as err:
        nio.read_metadata(_sheet(tmp_path, "tissue", "Liver", "liver"))
    assert "differ only in case, spaces or punctuation, and" in err.value.problems[0]
