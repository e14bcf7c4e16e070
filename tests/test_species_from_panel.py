"""A batch without a species in its sheet is the species its panel tells, everywhere.

The plan infers it (NK1.1 -> mouse) to pick the template; the run must then score, flag,
record and describe the files as that species (not the human default), and say once that
the species was inferred.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from nkflow.cli import main
from nkflow.config import RunConfig
from nkflow.datasets import make_design, simulate_batch
from nkflow.io import read_batch
from nkflow.pipeline.plan import plan_batch
from nkflow.pipeline.state import RunState

NOTE = "species: mouse, inferred from the panel ("
FAST = "[gating]\nbootstrap = 10\n[clustering]\nxdim = 3\nydim = 3\nn_metaclusters = 3\n"


@pytest.fixture(scope="module")
def mouse_sheet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A simulated mouse batch (one unstimulated and one stimulated tube) with its sheet."""
    folder = tmp_path_factory.mktemp("mouse_sheet")
    design = make_design(
        "mouse", donors=("M1",), tissues=("spleen",), timepoints=("",), n_events=4_000,
        fmo_markers=(), positive_control=False, clog=False, nk_enrichment=3.0,
    )  # fmt: skip
    simulate_batch(folder, design=design, random_state=2)
    return folder


@pytest.fixture(scope="module")
def mouse_folder(mouse_sheet: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same FCS files in a folder without a sheet: the species must come from the panel."""
    folder = tmp_path_factory.mktemp("mouse_no_sheet")
    for fcs in mouse_sheet.glob("*.fcs"):
        shutil.copy(fcs, folder / fcs.name)
    return folder


def test_the_plan_records_the_species_the_panel_tells(mouse_folder: Path) -> None:
    plan = plan_batch(read_batch(mouse_folder).metadata, RunConfig())
    assert plan.species_of == {"M1_spleen_stim": "mouse", "M1_spleen_unstim": "mouse"}
    assert set(plan.template_of.values()) == {"mouse"}
    notes = [n for n in plan.notes if n.startswith("species:")]
    assert len(notes) == 1 and notes[0].startswith(NOTE) and "NK1.1" in notes[0]
    assert notes[0].endswith(") for 2 file(s) without a species in the sheet")


def test_a_species_from_the_sheet_is_not_inferred(mouse_sheet: Path) -> None:
    plan = plan_batch(read_batch(mouse_sheet).metadata, RunConfig())
    assert plan.species_of == {}
    assert not any(n.startswith("species:") for n in plan.notes)


def test_the_run_state_takes_the_plan_species(mouse_folder: Path, tmp_path: Path) -> None:
    state = RunState(mouse_folder, tmp_path / "out", RunConfig(), None)
    assert set(state.meta["species"]) == {""}
    state.use_plan(plan_batch(state.meta, state.config))
    assert set(state.meta["species"]) == {"mouse"}


def test_check_says_the_inferred_species_once(mouse_folder: Path) -> None:
    result = CliRunner().invoke(main, ["check", str(mouse_folder)])
    assert result.exit_code == 0, result.output
    assert result.output.count(NOTE) == 1


def test_a_run_scores_and_reports_the_panel_species(mouse_folder: Path, tmp_path: Path) -> None:
    config = tmp_path / "fast.toml"
    config.write_text(FAST)
    out = tmp_path / "out"
    args = ["run", str(mouse_folder), "-o", str(out), "--config", str(config)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert result.output.count(NOTE) == 1
    for name in ("scores", "flags"):
        table = pd.read_csv(out / "tables" / f"{name}.csv", comment="#")
        assert not table.empty
        assert set(table["species"]) == {"mouse"}, name
        assert table["exploratory"].all(), name
        assert table["evidence"].str.startswith("exploratory").all(), name
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["scoring"]["species"] == "mouse"
    assert provenance["species_from_panel"] == {
        "M1_spleen_stim.fcs": "mouse",
        "M1_spleen_unstim.fcs": "mouse",
    }
    html = (out / "report.html").read_text()
    methods = re.search(r"Repair profiles used the score definitions from ([^:]+):", html)
    assert methods is not None and methods.group(1).endswith("scoring_mouse.toml")
    # the methods say what the run did: its workers, its (absent) timepoints and batches
    assert provenance["execution"]["workers"] >= 1
    assert "0 local worker" not in html and "timepoint order: ." not in html
    assert "timepoint order: none (the sheet gives no timepoints)" in html
    assert "per batch and tissue from the data" not in html


def test_a_real_mouse_file_without_a_sheet_is_planned_as_mouse(
    external: Path, tmp_path: Path
) -> None:
    source = external / "flowsom" / "inst" / "extdata" / "68983.fcs"
    if not source.is_file():
        pytest.skip(f"{source} not found")
    for name in ("M1_spleen_unstim.fcs", "M1_spleen_IL15.fcs"):
        shutil.copy(source, tmp_path / name)
    plan = plan_batch(read_batch(tmp_path).metadata, RunConfig())
    assert set(plan.species_of.values()) == {"mouse"}
    assert f"{NOTE}NK1.1) for 2 file(s)" in plan.to_text()
