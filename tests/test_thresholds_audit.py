"""The thresholds table is the audit trail: every cut-off a tube was cut at, one row each.

A stimulated tube's cut-off borrowed from its unstimulated partner is listed under the
stimulated tube's id (rule ``unstimulated tube: <rule>``, the partner's file as control);
FMO rows say ``evidence = fmo``; every evidence value is documented; and adding an
overrides file to a ``--resume`` redoes only the samples its scope matches.
"""

from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path

import pandas as pd
import pytest

from nkflow.config import RunConfig, replace_values
from nkflow.gating.apply import BORROWED, gate_batch, listed_thresholds
from nkflow.pipeline import gate_files, run

ROOT = Path(__file__).resolve().parents[1]
STIMULATED = ("D1_blood_pre_stim", "D1_liver_pre_stim", "PC_ILC_stim")


def _sheet(batch: Path) -> pd.DataFrame:
    return pd.read_csv(batch / "metadata.csv", dtype=str, keep_default_na=False)


def _partner(sheet: pd.DataFrame, sample_id: str) -> str:
    row = sheet.set_index("sample_id").loc[sample_id]
    same = (sheet["tissue"] == row["tissue"]) & (sheet["role"] == "unstim")
    (file,) = sheet.loc[same, "file"]
    return str(file)


@pytest.mark.parametrize("sample_id", STIMULATED)
def test_run_lists_each_cut_off_a_stimulated_tube_borrowed(
    tiny_batch: Path, tiny_run, sample_id: str
) -> None:
    table = tiny_run.thresholds
    own = table[table["sample_id"].fillna("") == sample_id]
    borrowed = own[own["rule"].str.startswith(BORROWED)]
    assert {"IFN-g", "CD107a"} <= set(borrowed["marker"])  # no FMO tube for them
    partner = _partner(_sheet(tiny_batch), sample_id)
    assert (borrowed["control_file"] == partner).all()
    unstim = table[table["sample_id"].fillna("") == Path(partner).stem].set_index(
        ["gate", "marker"]
    )
    for row in borrowed.itertuples():
        assert row.value == unstim.loc[(row.gate, row.marker), "value"]  # cut alike
        assert row.rule == BORROWED + unstim.loc[(row.gate, row.marker), "rule"]
    counts = tiny_run.tables["counts"].drop_duplicates("sample_id").set_index("sample_id")
    ifng = borrowed[(borrowed["marker"] == "IFN-g") & (borrowed["gate"] == "NK")]
    assert ifng["value"].iloc[0] == pytest.approx(counts.loc[sample_id, "threshold_ifng"])


def test_run_gate_and_gate_batch_list_the_same_borrowed_rows(
    tiny_batch: Path, tiny_run, tmp_path: Path, fast_config: RunConfig
) -> None:
    from nkflow import pp
    from nkflow.io import read_fcs

    def keys(table: pd.DataFrame) -> set[tuple[str, ...]]:
        rows = table[table["rule"].astype(str).str.startswith(BORROWED)]
        return set(rows[["sample_id", "gate", "marker", "rule", "control_file"]]
                   .astype(str).itertuples(index=False, name=None))  # fmt: skip

    cfg = replace_values(fast_config, {"gating.bootstrap": 0})
    sheet = _sheet(tiny_batch).set_index("sample_id", drop=False)

    def reader(sid: str):
        adata = read_fcs(tiny_batch / sheet.loc[sid, "file"], sample_id=sid)
        pp.qc(adata, remove=True)
        pp.compensate(adata)
        pp.transform(adata, method="logicle")
        return adata

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gated = gate_files([tiny_batch], tmp_path / "gate", config=cfg).tables["thresholds"]
        library = gate_batch(sheet.reset_index(drop=True), reader, "human_tissue", n_boot=0)
    expected = keys(tiny_run.thresholds)
    assert {k[0] for k in expected} == set(STIMULATED)
    assert keys(gated) == expected
    # the library's template differs by tissue; its rows name the same tubes and files
    assert {(k[0], k[4]) for k in keys(library.thresholds)} == {(k[0], k[4]) for k in expected}


@pytest.mark.parametrize(
    ("record", "listed"),
    [
        ({"sample_id": "s", "rule": "valley"}, True),  # its own
        ({"sample_id": "", "rule": BORROWED + "quantile (fmo fallback)"}, True),  # borrowed
        ({"sample_id": "", "rule": "fmo p99.5"}, False),  # batch level: listed once
        ({"sample_id": "t", "rule": "valley"}, False),  # another tube's
    ],
)
def test_listed_thresholds(record: dict, listed: bool) -> None:
    rows = listed_thresholds([record], "s")
    assert bool(rows) == listed
    assert all(r["sample_id"] == "s" for r in rows)


def test_fmo_rows_say_their_evidence(tiny_run) -> None:
    table = tiny_run.thresholds
    fmo = table[table["rule"].str.startswith("fmo p")]
    assert len(fmo) and (fmo["evidence"] == "fmo").all()


@pytest.mark.parametrize("document", ["docs/contracts.md", "README.md", "gating/README.md"])
def test_every_evidence_value_written_is_documented(tiny_run, document: str) -> None:
    text = (ROOT / document).read_text(encoding="utf-8")
    values = set(tiny_run.thresholds["evidence"].dropna().astype(str)) - {""}
    assert "sample_quantile" in values  # the tiny batch's function markers without an FMO
    named = {re.sub(r"^reference:.*", "reference:<population>", v) for v in values}
    assert {v for v in named if f"`{v}`" not in text} == set()


@pytest.mark.parametrize(
    ("scope", "redone"),
    [
        ('tissue = "liver"', {"D1_liver_pre_unstim", "D1_liver_pre_stim"}),
        ('sample_id = "D1_liver_pre_stim"', {"D1_liver_pre_stim"}),
    ],
)
def test_adding_an_overrides_file_redoes_only_the_samples_in_its_scope(
    tiny_batch: Path, tiny_run, tmp_path: Path, fast_config: RunConfig, scope: str, redone: set
) -> None:
    """The overrides file's rows brought a column (value_linear) into every sample's
    batch-level thresholds, so every sample's fingerprint changed and all were redone."""
    out = tmp_path / "out"
    shutil.copytree(tiny_run.out_dir, out)
    before = {p.parent.name: p.read_bytes() for p in (out / "work").glob("*/result.json")}
    path = tmp_path / "ov.toml"
    path.write_text(f'set_by = "A. Analyst"\n[[threshold]]\ngate = "NK"\nmarker = "CD69"\n'
                    f'value_linear = 1200.0\n{scope}\nreason = "FMO tube clogged"\n')  # fmt: skip
    config = replace_values(fast_config, {"gating.overrides": str(path)})
    resumed = run(tiny_batch, out, config=config, resume=True)
    after = {p.parent.name: p.read_bytes() for p in (out / "work").glob("*/result.json")}
    changed = {name.rsplit("-", 1)[0] for name in before if before[name] != after[name]}
    assert changed == redone
    manual = resumed.thresholds[resumed.thresholds["rule"] == "manual"]
    assert set(manual["sample_id"]) <= redone and len(manual)
