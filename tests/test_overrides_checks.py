"""Overrides checked before any work: placeholders, duplicates, the batch's gates and scale."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from nkflow.exceptions import GatingTemplateError
from nkflow.gating.overrides import (
    OverrideTarget,
    check_overrides,
    load_overrides,
    overrides_toml,
    scale_range,
)

ENTRY = 'gate = "NK"\nmarker = "CD69"\nvalue = 0.5\nreason = "clogged"\n'


def _file(tmp_path, body: str, set_by: str = "A. Analyst"):
    path = tmp_path / "o.toml"
    path.write_text(f'set_by = "{set_by}"\n' + body)
    return path


@pytest.mark.parametrize(
    ("body", "set_by", "needle"),
    [
        (f"[[threshold]]\n{ENTRY}", "EDIT: your name", "placeholder"),
        (f"[[threshold]]\n{ENTRY.replace('clogged', 'as computed: fmo p99.5')}", "A", "generated"),
        (f'[[threshold]]\n{ENTRY}tissue = "liver"\n' * 2, "A", r"threshold\[1\].*threshold\[0\]"),
    ],
    ids=["placeholder set_by", "generated reason", "duplicate"],
)
def test_unedited_or_repeated_entries_are_refused(tmp_path, body, set_by, needle):
    with pytest.raises(GatingTemplateError, match=needle):
        load_overrides(_file(tmp_path, body, set_by))


LOGICLE = scale_range("logicle", {"T": 262144.0, "W": 0.5, "M": 4.5, "A": 0.0})
TARGETS = [
    OverrideTarget(sid, tissue, "B1", {("NK", "CD69"): LOGICLE, ("Live", "FSC-A"): (-math.inf,
                                                                                  math.inf)})
    for sid, tissue in (("S1", "blood"), ("S2", "liver"))
]  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ('tissue = "livre"', "tissue = 'livre' is not.*valid: blood, liver"),
        ('sample_id = "S3"', "sample_id = 'S3' is not.*valid: S1, S2"),
        ('batch = "B2"', "batch = 'B2'"),
        ('sample_id = "S1"\ntissue = "liver"', "no analysed sample"),
    ],
)
def test_scope_not_in_the_sheet_is_refused(tmp_path, extra, needle):
    overrides = load_overrides(_file(tmp_path, f"[[threshold]]\n{ENTRY}{extra}\n"))
    with pytest.raises(GatingTemplateError, match=needle):
        check_overrides(overrides, TARGETS)


@pytest.mark.parametrize(
    ("entry", "needle"),
    [
        (ENTRY.replace('"NK"', '"NKcells"'), "gate 'NKcells' has no marker threshold.*NK"),
        (ENTRY.replace("CD69", "CD96"), "marker 'CD96' is not thresholded.*valid markers: CD69"),
        (ENTRY.replace("0.5", "1500"), "did you mean value_linear = 1500"),
    ],
    ids=["gate", "marker", "linear as transformed"],
)
def test_threshold_the_template_does_not_set_is_refused(tmp_path, entry, needle):
    overrides = load_overrides(_file(tmp_path, f"[[threshold]]\n{entry}"))
    with pytest.raises(GatingTemplateError, match=needle):
        check_overrides(overrides, TARGETS)


def test_scope_without_a_sheet_column_says_so(tmp_path):
    overrides = load_overrides(_file(tmp_path, f'[[threshold]]\n{ENTRY}tissue = "liver"\n'))
    bare = [OverrideTarget("a", "", "", TARGETS[0].cuts)]  # files gated without a sheet
    with pytest.raises(GatingTemplateError, match="no analysed sample has a tissue"):
        check_overrides(overrides, bare)


def test_valid_entries_pass(tmp_path):
    body = (
        f'[[threshold]]\n{ENTRY}tissue = "liver"\n'
        f'[[threshold]]\n{ENTRY.replace("value = 0.5", "value_linear = 1500.0")}sample_id = "S1"\n'
        '[[threshold]]\ngate = "Live"\nmarker = "FSC-A"\nvalue = 40000\nreason = "r"\n'
    )
    check_overrides(load_overrides(_file(tmp_path, body)), TARGETS)


def test_logicle_scale_range_brackets_the_display():
    lo, hi = LOGICLE
    assert -1.0 < lo < -0.5 and 1.0 < hi < 1.3


def _table():
    common = {"gate": "NK", "marker": "CD69", "batch": "B1", "channel": "BV786-A"}
    rows = [
        {**common, "sample_id": "", "tissue": "blood", "value": 0.4, "value_linear": 600.0,
         "rule": "fmo p99.5", "evidence": "fmo"},
        {**common, "sample_id": "", "tissue": "liver", "value": 0.43, "value_linear": 770.0,
         "rule": "fmo p99.5", "evidence": "fmo", "note": "superseded: not applied"},
    ]  # fmt: skip
    for sid in ("L1", "L2"):  # a tissue-wide entry, applied by both liver samples
        rows.append({**common, "sample_id": sid, "tissue": "liver", "value": 0.5,
                     "value_linear": 1560.0, "rule": "manual", "evidence": "manual",
                     "note": "FMO clogged (set by A. Analyst)"})  # fmt: skip
    rows.append({**common, "marker": "CD16", "sample_id": "L2", "tissue": "liver",
                 "value": 0.62, "value_linear": 5000.0, "rule": "manual",
                 "note": "shoulder (set by B. Other)"})  # fmt: skip
    for sid in ("L1", "L2"):
        rows.append({**common, "gate": "Lymphocytes", "marker": "CD3", "sample_id": sid,
                     "tissue": "liver", "value": 0.5, "rule": "valley"})  # fmt: skip
    return pd.DataFrame(rows)


def test_starting_file_keeps_manual_entries_and_comments_the_computed(tmp_path):
    """Passed back unchanged, the starting file sets what the run set by hand and nothing
    else: before, every computed cut-off came back as a manual one, and the analyst's
    reasons and names were replaced by 'as computed' and the placeholder."""
    text = overrides_toml(_table())
    path = tmp_path / "start.toml"
    path.write_text(text)
    records = load_overrides(path).records
    scopes = sorted((r["marker"], r["tissue"], r["sample_id"], r["note"]) for r in records)
    assert scopes == [
        ("CD16", "liver", "L2", "shoulder (set by B. Other)"),
        ("CD69", "liver", "", "FMO clogged (set by A. Analyst)"),  # one entry for the tissue
    ]
    assert '# reason = "as computed: fmo p99.5, evidence fmo"' in text
    start = text.index("# [[threshold]]")  # the analyst uncomments the computed entries
    body = "\n".join(line[2:] if line.startswith("# ") else line
                     for line in text[start:].splitlines())  # fmt: skip
    path.write_text(text[:start] + body)
    with pytest.raises(GatingTemplateError, match=r"generated|placeholder"):
        load_overrides(path)


def test_computed_row_an_override_replaced_is_marked_superseded():
    from nkflow.gating.overrides import SUPERSEDED
    from nkflow.pipeline.tables import mark_superseded

    fmo = {"gate": "NK", "marker": "CD69", "batch": "B1", "sample_id": "", "template": "t",
           "rule": "fmo p99.5", "control_file": "fmo.fcs", "note": ""}  # fmt: skip
    manual = {**fmo, "tissue": "liver", "rule": "manual", "control_file": "o.toml",
              "note": "x (set by A)"}  # fmt: skip
    batch = pd.DataFrame([{**fmo, "tissue": "blood"}, {**fmo, "tissue": "liver"}, manual])
    notes = mark_superseded(batch)["note"].tolist()
    assert notes[0] == "" and notes[2] == "x (set by A)"
    assert notes[1].startswith(SUPERSEDED) and "o.toml" in notes[1]
    per_sample = batch.iloc[[2]].assign(sample_id="L1")  # the override names a sample
    kept = mark_superseded(pd.concat([batch.iloc[:2], per_sample]))["note"]
    assert kept.iloc[:2].eq("").all()


def test_methods_count_manual_thresholds_apart_and_name_the_file():
    from nkflow.report.methods import _gating_sentence

    table = _table()
    prov = {"overrides_sha256": {"/data/o.toml": "ab" * 32}}
    text = _gating_sentence({}, prov, table)
    assert "3 threshold(s) were set by hand" in text
    assert "/data/o.toml (SHA-256 " + "ab" * 32 + ")" in text
    assert "set by A. Analyst, B. Other" in text
    assert "2 threshold(s) were set per sample from its own events" in text
    assert "1 threshold(s) from FMO controls" in text  # the superseded one is not counted
    assert "control files: " not in text or "o.toml" not in text.split("control files: ")[1]


def test_sample_fingerprint_keys_on_content_not_place(tmp_path):
    from nkflow.config import RunConfig
    from nkflow.pipeline.sample import SampleTask

    def task(folder: str) -> SampleTask:
        path = f"{folder}/a.fcs"
        return SampleTask(sample_id="S1", path=path, row={"sample_id": "S1", "path": path,
                          "file": "a.fcs"}, config=RunConfig(), template="human_blood",
                          input_sha256="f" * 64)  # fmt: skip

    assert task("/old").fingerprint() == task("/moved").fingerprint()
    other = task("/old")
    other.input_sha256 = "e" * 64
    assert other.fingerprint() != task("/old").fingerprint()


def test_value_range_is_unbounded_for_scatter():
    assert np.isinf(TARGETS[0].cuts[("Live", "FSC-A")]).all()
