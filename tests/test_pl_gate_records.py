"""Gating plots read what the gating record holds: drawable gates, membership-only
populations (GatingML) and gates that were not set."""

from __future__ import annotations

import warnings

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import nkflow as nk
from nkflow.exceptions import GatingError
from nkflow.pl.gating_panels import gate_panels

RECT = {"kind": "rectangle", "dims": [{"channel": "A", "min": 0.5, "max": None}]}


def _container(populations: list[dict], **gating) -> ad.AnnData:
    """200 events on two channels, one bool obs column per recorded population."""
    x = np.random.default_rng(0).normal(size=(200, 2)).astype(np.float32)
    a = ad.AnnData(X=x, var=pd.DataFrame({"marker": ["CD3", "CD56"]}, index=["A", "B"]))
    a.obs_names = [str(i) for i in range(200)]
    for p in populations:
        a.obs[p["name"]] = x[:, 0] > 0.5
    a.uns["nkflow"] = {
        "sample": {"sample_id": "s1"},
        "gating": {"populations": populations, **gating},
    }
    return a


def test_gatingml_membership_only_says_why_it_cannot_be_drawn() -> None:
    """Was ``KeyError: 'gate'``: GatingML population records carry only name and parent."""
    a = _container([{"name": "R1", "parent": ""}, {"name": "R2", "parent": "R1"}],
                   template="analyst.xml")  # fmt: skip
    for draw in (nk.pl.gate_grid, lambda a: nk.pl.gate_plot(a, "R1")):
        with pytest.raises(
            GatingError, match=r"'s1'.*'R1'.*analyst\.xml.*GatingML.*no gate to draw"
        ):
            draw(a)


def test_mixed_record_draws_the_gates_it_has_and_names_the_others() -> None:
    a = _container(
        [{"name": "Pos", "parent": "", "gate": {**RECT, "id": "Pos", "parent": None}},
         {"name": "R1", "parent": "Pos"}], template="analyst.xml",
    )  # fmt: skip
    assert [p.gate for p in gate_panels(a)] == ["Pos"]
    with pytest.raises(GatingError, match=r"'R1'.*no gate to draw"):
        nk.pl.gate_grid(a, gates=["Pos", "R1"])
    with pytest.raises(GatingError, match="no gate 'nope'"):
        nk.pl.gate_grid(a, gates=["nope"])


def test_ungated_container_names_the_sample() -> None:
    a = _container([])
    del a.uns["nkflow"]["gating"]
    with pytest.raises(GatingError, match=r"'s1' is not gated.*apply_flowjo_workspace"):
        nk.pl.gate_grid(a)


def test_real_gatingml_file_raises_a_gating_error(external) -> None:
    ref = external / "flowkit" / "data" / "gate_ref"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = nk.read_fcs(ref / "data1.fcs")
    nk.gating.apply_gatingml(ref / "gml" / "gml_rect1_gate.xml", b)
    with pytest.raises(GatingError, match=r"'Rectangle1'.*gml_rect1_gate\.xml"):
        nk.pl.gate_grid(b)
