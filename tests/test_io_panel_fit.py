"""A user panel that does not fit its files is said so, never silently ignored.

Panel rows naming no channel of a file and marker names the alias table does not know:
``read_fcs`` warns (:class:`PanelWarning`), ``check_batch`` / ``nkflow check`` list them as
non-fatal notes, only for rows no file of the batch has. Markers resolve as before.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import nkflow.io as nio
from nkflow.cli import main
from nkflow.exceptions import PanelWarning
from nkflow.io.panel_fit import fit_panel

CHANNELS = ["FSC-A", "BV605-A", "B2-A", "R1-A", "Time"]
STAINS = [None, "CD56 BV605", "CD16 FITC", "CD3 APC", None]


def _fcs(path: Path, channels: list[str] = CHANNELS, stains: list | None = None) -> Path:
    stains = STAINS if stains is None else stains
    data = np.random.default_rng(0).uniform(0, 1000, (20, len(channels))).astype(np.float32)
    return nio.write_fcs(path, data, channels, markers=stains)


@pytest.mark.parametrize(
    ("layouts", "unmatched"),
    [
        ([], {}),  # nothing to match against: no channel is said missing
        ([(["A-A"], ["CD56"])], {"B-A": []}),
        ([(["A-A"], [""]), (["B-A"], [""])], {}),  # each row in some file
        ([(["A-A", "b_a"], [""]), (["B A"], [""])], {"B-A": ["b_a", "B A"]}),  # near misses
    ],
)
def test_fit_panel_unmatched(layouts: list, unmatched: dict[str, list[str]]) -> None:
    fit = fit_panel({"A-A": "CD56", "B-A": "CD16"}, layouts)
    assert fit.unmatched == unmatched
    assert bool(fit) == bool(unmatched)


@pytest.mark.parametrize(
    ("marker", "closest"),
    [
        ("CD5x6", "CD56"),
        ("CD10x", "CD103"),  # a tie of difflib's ratio (CD160 too): the longer common start
        ("CD5six", "CD5"),  # a known marker now (formerly: CD56 or CD57)
        ("Perforn", "Perforin"),
        ("Granzym B", "Granzyme-B"),
        ("CD1O3", "CD103"),  # O for 0 (CD123 and CD137 are as close letter by letter)
        ("CD1l7", "CD117"),  # l for 1
        ("NKp64", "NKp44 or NKp46"),  # a tie of difflib's ratio and of the common start
        ("pSTAT3", ""),  # a marker of its own: nothing close
        ("MAPKAPK2", ""),
    ],
)
def test_fit_panel_unknown_markers(marker: str, closest: str) -> None:
    fit = fit_panel({"A-A": marker, "B-A": "CD56", "C-A": ""}, [(["A-A", "B-A", "C-A"], [])])
    assert fit.unknown == {marker: closest}
    assert not fit.unmatched


@pytest.mark.parametrize(
    "marker", ["PD-1", "PD1", "CD279", "TIGIT", "TIM3", "CD45RA", "CD94", "DNAM-1", "KLRG1"]
)
def test_fit_panel_knows_the_checkpoint_and_nk_receptor_markers(
    tmp_path: Path, marker: str
) -> None:
    # formerly "a marker of its own" the alias table did not know (PD-1, TIGIT)
    path = tmp_path / "panel.csv"
    path.write_text(f"channel,marker\nA-A,{marker}\n")
    panel = nio.load_panel(path)
    assert panel["A-A"] in nio.CANONICAL_MARKERS  # written in canonical form (PD1 -> PD-1)
    fit = fit_panel(panel, [(["A-A"], [])])
    assert fit.unknown == {} and not fit


def _read(path: Path, panel: object) -> tuple[list[str], list[str]]:
    """Markers of the file and the PanelWarning messages of one read."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        adata = nio.read_fcs(path, panel=panel)
    messages = [str(w.message) for w in caught if issubclass(w.category, PanelWarning)]
    return list(adata.var["marker"]), messages


@pytest.mark.parametrize(
    ("panel", "expected", "absent"),
    [
        ({"NOPE-A": "CD56"}, ["'NOPE-A' -> CD56", "1 of the panel's 1 row(s)"], ["did you mean"]),
        ({"BV605A": "CD56"}, ["'BV605A' -> CD56", "did you mean 'BV605-A'?"], []),
        ({"bv605 a": "CD69"}, ["did you mean 'BV605-A'?"], []),  # case and spaces
        ({"r1a": ""}, ["'r1a' -> (no marker)", "did you mean 'R1-A'?"], []),
        ({"BV605-A": "CD5x6"}, ["'CD5x6' on 'BV605-A'", "closest known: CD56"], ["row(s)"]),
        ({"BV605-A": "Granzym B"}, ["closest known: Granzyme-B"], ["row(s)"]),
        ({"BV605-A": "pSTAT3"}, ["'pSTAT3' on 'BV605-A'"], ["closest known", "row(s)"]),
        (
            {"BV605-A": "CD56", "XX-A": "CD3", "B2-A": "CD16x"},
            ["1 of the panel's 3 row(s)", "'XX-A' -> CD3", "'CD16x' on 'B2-A'"],
            ["'BV605-A' ->"],
        ),
    ],
)
def test_read_fcs_warns_once_naming_what_does_not_fit(
    tmp_path: Path, panel: dict[str, str], expected: list[str], absent: list[str]
) -> None:
    path = _fcs(tmp_path / "a.fcs")
    _, messages = _read(path, panel)
    assert len(messages) == 1, messages
    (message,) = messages
    assert message.startswith(f"{path}: ")
    for text in expected:
        assert text in message, message
    for text in absent:
        assert text not in message, message


@pytest.mark.parametrize(
    ("panel", "markers"),
    [
        ({"NOPE-A": "CD69"}, ["", "CD56", "CD16", "CD3", ""]),  # ignored, as before
        ({"BV605A": "CD69"}, ["", "CD56", "CD16", "CD3", ""]),  # not taken for BV605-A
        ({"BV605-A": "CD5six"}, ["", "CD5six", "CD16", "CD3", ""]),  # kept as written
    ],
)
def test_warning_does_not_change_resolution(
    tmp_path: Path, panel: dict[str, str], markers: list[str]
) -> None:
    assert _read(_fcs(tmp_path / "a.fcs"), panel)[0] == markers


@pytest.mark.parametrize(
    "panel",
    [
        None,
        {},
        {"BV605-A": "CD56", "B2-A": "CD16", "R1-A": "CD3"},
        {"BV605-A": "NCAM1"},  # an alias
        {"CD56 BV605": "CD56"},  # matched on $PnS
        {"FSC-A": "", "Time": ""},  # no marker
        {"BV605-A": "Dump_CD3_CD19", "B2-A": "LD_CD14_CD19", "R1-A": "CD16+56"},
        {"BV605-A": "Viability", "B2-A": "F4/80", "R1-A": "CD3e"},
    ],
)
def test_no_warning_when_the_panel_fits(tmp_path: Path, panel: dict[str, str] | None) -> None:
    path = _fcs(tmp_path / "a.fcs")
    with warnings.catch_warnings():
        warnings.simplefilter("error", PanelWarning)
        nio.read_fcs(path, panel=panel)


@pytest.mark.parametrize("suffix", ["csv", "toml"])
def test_panel_file_warns_too(tmp_path: Path, suffix: str) -> None:
    panel = tmp_path / f"panel.{suffix}"
    if suffix == "csv":
        panel.write_text("channel,marker\nBV605A,CD56\nB2-A,CD5six\n")
    else:
        panel.write_text('[channels]\n"BV605A" = "CD56"\n"B2-A" = "CD5six"\n')
    (message,) = _read(_fcs(tmp_path / "a.fcs"), panel)[1]
    assert "did you mean 'BV605-A'?" in message and "'CD5six' on 'B2-A'" in message


@pytest.fixture
def shared_batch(tmp_path: Path) -> Path:
    """Two instruments' files: R1-A only in the first."""
    folder = tmp_path / "batch"
    folder.mkdir()
    _fcs(folder / "a.fcs")
    _fcs(folder / "b.fcs", [*CHANNELS[:3], "Time"], [*STAINS[:3], None])
    return folder


@pytest.mark.parametrize(
    ("panel", "notes"),
    [
        ({"BV605-A": "CD56", "R1-A": "CD3"}, []),  # R1-A in one file of the batch: fits
        (
            {"BV605A": "CD56", "B2-A": "CD16", "R1-A": "CD3"},
            [
                "panel row 'BV605A' -> CD56 matches no channel in any of the 2 files read "
                "(did you mean 'BV605-A'?)"
            ],
        ),
        (
            {"BV605-A": "CD56", "NOPE-A": "CD16"},
            ["panel row 'NOPE-A' -> CD16 matches no channel in any of the 2 files read"],
        ),
        (
            {"BV605-A": "NKp64"},
            [
                "panel marker 'NKp64' on 'BV605-A' is not in the alias table; kept as written "
                "(closest known: NKp44 or NKp46)"
            ],
        ),
    ],
)
def test_check_batch_notes_rows_no_file_has(
    shared_batch: Path, panel: dict[str, str], notes: list[str]
) -> None:
    check = nio.check_batch(shared_batch, panel=panel, raise_on_error=False)
    assert check.notes == notes
    assert check.ok and check.problems.empty  # notes are never fatal
    report = check.to_string()
    assert ("Panel notes (not fatal):" in report) == bool(notes)
    assert all(f"  - {n}" in report for n in notes)


def test_check_batch_without_panel_has_no_notes(shared_batch: Path) -> None:
    assert nio.check_batch(shared_batch, raise_on_error=False).notes == []


def test_cli_check_lists_panel_typos_without_failing(tmp_path: Path) -> None:
    folder = tmp_path / "batch"
    folder.mkdir()
    for name in ("a", "b"):
        _fcs(folder / f"{name}.fcs")
    panel = tmp_path / "panel.csv"
    panel.write_text("channel,marker\nBV605A,CD56\nB2-A,CD16\nR1-A,CD3\nNOPE-A,CD5six\n")
    result = CliRunner().invoke(main, ["check", str(folder), "--panel", str(panel)])
    assert result.exit_code == 0, result.output
    assert "'BV605A' -> CD56 matches no channel" in result.stdout
    assert "(did you mean 'BV605-A'?)" in result.stdout
    assert "'NOPE-A' -> CD5six matches no channel" in result.stdout
    assert "'CD5six' on 'NOPE-A' is not in the alias table" in result.stdout
    assert "B2-A" not in result.stdout.split("Panel notes")[1].split("\n\n")[0]


@pytest.mark.slow
def test_a_run_says_a_panels_stray_row_once_in_the_plan(tiny_batch, fast_config, tmp_path):
    """A run reads its files one at a time; a panel row no file has is said once, with
    the plan, not as a warning on every file's status row."""
    import dataclasses

    from nkflow.pipeline import run

    first = next(tiny_batch.glob("*.fcs"))
    layout = nio.read_fcs(first)
    panel = tmp_path / "panel.csv"
    rows = [f"{c},{m}" for c, m in zip(layout.var_names, layout.var["pns"], strict=True) if m]
    panel.write_text("channel,marker\n" + "\n".join([*rows, "BV999-A,CD56"]) + "\n")
    config = dataclasses.replace(fast_config, panel=str(panel))
    plans = []
    res = run(tiny_batch, tmp_path / "out", config=config, on_plan=plans.append)
    (note,) = [n for n in plans[0].notes if n.startswith("panel:")]
    assert "BV999-A" in note
    assert not res.status["message"].fillna("").str.contains("PanelWarning").any()
