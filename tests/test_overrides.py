"""Manual threshold overrides: validation, precedence, linear values, the starting file."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from nkflow.exceptions import GatingTemplateError
from nkflow.gating.overrides import load_overrides, manual_value, overrides_toml

GOOD = """
set_by = "A. Analyst"
[[threshold]]
gate = "NK"
marker = "CD69"
value = 0.5
tissue = "liver"
reason = "FMO tube clogged"
[[threshold]]
gate = "NK"
marker = "CD69"
value_linear = 1000.0
sample_id = "S1"
reason = "bright outlier"
set_by = "B. Other"
"""


def test_load_records_and_hash(tmp_path):
    path = tmp_path / "o.toml"
    path.write_text(GOOD)
    ov = load_overrides(path)
    assert len(ov) == 2 and len(ov.sha256) == 64
    first, second = ov.records
    assert first["rule"] == "manual" and first["evidence"] == "manual"
    assert first["note"] == "FMO tube clogged (set by A. Analyst)"
    assert second["note"].endswith("(set by B. Other)") and np.isnan(second["value"])


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('[[threshold]]\ngate="NK"\nmarker="CD69"\nvalue=1\nset_by="x"', "reason"),
        ('[[threshold]]\ngate="NK"\nmarker="CD69"\nvalue=1\nreason="r"', "set_by"),
        ('set_by="x"\n[[threshold]]\ngate="NK"\nmarker="CD69"\nreason="r"', "exactly one"),
        ('set_by="x"\n[[threshold]]\ngate="NK"\nmarker="CD69"\nvalue="a"\nreason="r"', "number"),
        ('set_by="x"\n[[threshold]]\ngate="NK"\nmarker="CD69"\nvalue=1\nreason="r"\nx=1', "x"),
    ],
)
def test_invalid_files_name_the_problem(tmp_path, text, needle):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(GatingTemplateError, match=needle):
        load_overrides(path)


def test_manual_override_wins_and_is_recorded(tmp_path):
    from nkflow.gating.engine import run_template
    from nkflow.gating.template import load_template

    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(0.2, 0.05, 500), rng.normal(0.8, 0.05, 500)].astype(np.float32)
    adata = ad.AnnData(x[:, None], var=pd.DataFrame({"marker": ["CD69"]}, index=["FITC-A"]))
    adata.uns["nkflow"] = {"sample": {"sample_id": "S1", "tissue": "liver", "batch": "B1"}}
    tpl_path = tmp_path / "t.toml"
    tpl_path.write_text(
        '[template]\nname="t"\nspecies="human"\n[[gates]]\nid="NK"\nkind="threshold"\n'
        'marker="CD69"\nside="pos"\nrule="fixed"\nvalue=-9\n[[gates]]\nid="P"\nparent="NK"\n'
        'kind="threshold"\nmarker="CD69"\nside="pos"\nrule="valley"\n'
    )
    path = tmp_path / "o.toml"
    path.write_text(GOOD.replace('sample_id = "S1"', 'sample_id = "other"'))
    computed = {"gate": "NK", "marker": "CD69", "value": 0.1, "rule": "fmo p99.5"}
    run = run_template(adata, load_template(tpl_path), n_boot=0,
                       thresholds=[computed, *load_overrides(path).records])  # fmt: skip
    th = next(t for t in run.thresholds if t.gate == "NK")
    assert th.rule == "manual" and th.value == 0.5 and th.sample_id == "S1"
    assert "set by A. Analyst" in th.note
    assert run.members["P"].sum() == 500


def test_linear_value_converted_with_the_sample_transform():
    adata = ad.AnnData(np.zeros((1, 1), np.float32))
    adata.uns["nkflow"] = {"transform": {"kind": "arcsinh", "params": {"C": {"cofactor": 150}}}}
    rec = {"value": float("nan"), "value_linear": 1500.0}
    assert manual_value(rec, "C", adata) == pytest.approx(np.arcsinh(10.0))
    assert manual_value(rec, "scatter", adata) == 1500.0


def test_linear_value_found_for_a_channel_whose_key_is_stored_escaped():
    # "FL1/A" is stored as an escaped key (h5ad splits keys at "/"): read through the reader
    from nkflow.io import set_record

    adata = ad.AnnData(np.zeros((1, 1), np.float32))
    set_record(adata, "transform", {"kind": "arcsinh", "params": {"FL1/A": {"cofactor": 150}}})
    assert "FL1/A" not in adata.uns["nkflow"]["transform"]["params"]
    rec = {"value": float("nan"), "value_linear": 1500.0}
    assert manual_value(rec, "FL1/A", adata) == pytest.approx(np.arcsinh(10.0))


def test_starting_file_round_trips(tmp_path):
    table = pd.DataFrame(
        [
            {"gate": "NK", "marker": "CD69", "value": 0.45, "value_linear": 900.0,
             "tissue": "liver", "batch": "B1", "sample_id": np.nan, "rule": "fmo p99.5",
             "evidence": "fmo"},
            {"gate": "", "marker": "FSC-A", "value": 1.0, "rule": "density:debris"},
        ]
    )  # fmt: skip
    path = tmp_path / "start.toml"
    text = overrides_toml(table)  # computed entries commented out: the analyst uncomments
    start = text.index("# [[threshold]]")
    edited = "\n".join(line[2:] if line.startswith("# ") else line
                       for line in text[start:].splitlines())  # fmt: skip
    edited = edited.replace("as computed: ", "checked: ").replace("EDIT: your name", "me")
    path.write_text(edited)
    (rec,) = load_overrides(path).records
    assert (rec["gate"], rec["marker"], rec["value"]) == ("NK", "CD69", 0.45)
    assert (rec["tissue"], rec["batch"], rec["sample_id"]) == ("liver", "B1", "")


@pytest.mark.slow
def test_a_run_records_each_override_once_on_both_scales(tiny_batch, fast_config, tmp_path):
    """An override a sample applied is one row of the thresholds table, with the sample's
    channel and its linear value; an override no gate used (a misspelt gate) stays in the
    table once, with no channel and no linear value. Before, the applied override was
    there twice, once without a channel and with the transformed value as its linear
    value. (A misspelt gate is now refused before the run: test_overrides_cli.)"""
    from nkflow.config import replace_values
    from nkflow.pipeline import run

    meta = pd.read_csv(tiny_batch / "metadata.csv", dtype=str)
    sid = meta.loc[meta["role"] == "unstim", "sample_id"].iloc[0]
    path = tmp_path / "o.toml"
    path.write_text(
        f'set_by = "A. Analyst"\n[[threshold]]\ngate = "Lymphocytes"\nmarker = "CD56"\n'
        f'value = 0.6\nsample_id = "{sid}"\nreason = "by eye"\n'
    )
    config = replace_values(fast_config, {"gating.overrides": str(path)})
    table = run(tiny_batch, tmp_path / "out", config=config).thresholds
    manual = table[table["rule"] == "manual"]
    (applied,) = manual[manual["gate"] == "Lymphocytes"].itertuples()
    assert applied.sample_id == sid and applied.channel != ""
    assert applied.value == 0.6 and applied.value_linear > 100  # logicle 0.6: ~10^2-10^3
    assert len(manual) == 1
