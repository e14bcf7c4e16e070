"""Channel kinds (nkflow.io.channels): counters, pulse widths and split time words are 'other'."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from test_io_fcs_malformed import build_fcs

import nkflow as nk
from nkflow.io import channel_kind


@pytest.mark.parametrize(
    ("name", "label", "kind"),
    [
        ("FSC-A", "", "scatter"),
        ("SS Log", "SS", "scatter"),
        ("Time", "", "time"),
        ("HDR-T", "", "time"),
        ("Computed Time", "Computed Time", "time"),
        ("TIME", "Time LSW", "other"),  # CyAn: the low 16 bits of the tick counter
        ("Time MSW", "Time MSW", "other"),
        ("TIME2", "Time MSW", "other"),  # MoFlo Astrios
        ("Event Count", "", "other"),
        ("Event", "Event", "other"),  # Attune
        ("Event #", "", "other"),
        ("EventNumber", "", "other"),
        ("Pulse Width", "", "other"),
        ("Event_length", "", "fluorescence"),  # CyTOF: the templates gate on it
        ("FL 1 Log", "FITC", "fluorescence"),
        ("PE-A", "CD56", "fluorescence"),
    ],
)
def test_channel_kind_rules(name: str, label: str, kind: str) -> None:
    assert channel_kind(name, label) == kind


def _cyan_like(tmp_path: Path) -> Path:
    """A CyAn-shaped file: a 16-bit time word that wraps, its high word, a pulse width,
    an event counter and the computed (monotone) time, as Summit writes them."""
    n = 3000
    rng = np.random.default_rng(3)
    ticks = np.cumsum(rng.integers(40, 60, n))  # about 150,000 ticks: wraps twice
    data = np.column_stack(
        [
            ticks % 65536,
            ticks // 65536,
            rng.integers(10, 150, n),  # pulse width
            rng.integers(10_000, 60_000, n),  # FS Lin
            rng.integers(0, 1023, n),  # FL 1 Log
            np.arange(1, n + 1),  # event count
            ticks // 16,  # computed time
        ]
    )
    channels = [
        ("TIME", "Time LSW"),
        ("Time MSW", "Time MSW"),
        ("Pulse Width", "Pulse Width"),
        ("FS Lin", "FS"),
        ("FL 1 Log", "FITC"),
        ("Event Count", "Event Count"),
        ("Computed Time", "Computed Time"),
    ]
    ranges = {f"$P{i}R": "262144" for i in range(1, 8)}
    raw = build_fcs(data, channels=channels, datatype="I", bits=32, extra=ranges)
    path = tmp_path / "cyan_like.fcs"
    path.write_bytes(raw)
    return path


def test_counters_are_neither_transformed_nor_the_time_axis(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", nk.exceptions.FCSQuirkWarning)
        adata = nk.read_fcs(_cyan_like(tmp_path))
    kinds = dict(zip(adata.var_names, adata.var["kind"], strict=True))
    assert kinds == {
        "TIME": "other",
        "Time MSW": "other",
        "Pulse Width": "other",
        "FS Lin": "scatter",
        "FL 1 Log": "fluorescence",
        "Event Count": "other",
        "Computed Time": "time",
    }
    record = nk.pp.qc_time(adata, key_added=None)
    assert record["skipped"] is None
    assert record["params"]["time_channel"] == "Computed Time"
    assert "Event Count" not in record["params"]["channels"]
    nk.pp.compensate(adata, matrix="none")
    nk.pp.transform(adata)
    done = dict(zip(adata.var_names, adata.var["transform"], strict=True))
    assert [c for c, t in done.items() if t == "logicle"] == ["FL 1 Log"]


def test_cyan_file_uses_computed_time(external: Path) -> None:
    path = external / "cytoflow/cytoflow/tests/data/instruments/Beckman Coulter - Cyan.fcs"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", nk.exceptions.FCSQuirkWarning)
        adata = nk.read_fcs(path)
    other = [c for c, k in zip(adata.var_names, adata.var["kind"], strict=True) if k == "other"]
    assert other == ["TIME", "Time MSW", "Pulse Width", "Event Count"]
    record = nk.pp.qc_time(adata, key_added=None)
    assert record["params"]["time_channel"] == "Computed Time"
    t = adata[:, "Computed Time"].X.ravel()
    assert (np.diff(t) >= 0).all()  # monotone, where the Time LSW wraps 18 times
