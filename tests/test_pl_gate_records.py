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


def _not_set_sample() -> ad.AnnData:
    """'Pos' set; 'Box' left without a cut-off on 7 events; 'Inner' below it; 'Either' an
    OR of 'Box' (as the engine records them)."""
    box = {"kind": "rectangle", "id": "Box", "parent": "Pos",
           "dims": [{"channel": "B", "min": float("nan"), "max": None}]}  # fmt: skip
    a = _container(
        [{"name": "Pos", "parent": "", "gate": {**RECT, "id": "Pos", "parent": None}},
         {"name": "Box", "parent": "Pos", "gate": box},
         {"name": "Inner", "parent": "Box", "gate": {**RECT, "id": "Inner", "parent": "Box"}},
         {"name": "Either", "parent": "Pos", "gate": {
             "kind": "boolean", "id": "Either", "parent": "Pos", "op": "or",
             "operands": [{"gate": "Box", "complement": False}]}}],
        unset={"Box": "no cut-off (see its threshold row)", "Inner": "parent 'Box' not set",
               "Either": "operand 'Box' not set"},
    )  # fmt: skip
    for name in ("Box", "Inner", "Either"):
        a.obs[name] = False
    a.uns["nkflow"]["thresholds"] = [
        {"marker": "CD3", "channel": "A", "value": 0.5, "rule": "fixed", "gate": "",
         "n_events": 200},
        # a cut-off on the same channel that another population left unset is not Box's
        {"marker": "CD56", "channel": "B", "value": float("nan"), "rule": "mirror",
         "gate": "Other", "n_events": 500},
        {"marker": "CD56", "channel": "B", "value": float("nan"), "rule": "insufficient events",
         "gate": "Pos", "n_events": 7},
    ]  # fmt: skip
    return a


def test_a_gate_not_set_says_so_and_why_as_the_populations_table() -> None:
    """Was "Box  (in Pos): 0 (0.0%)", while the populations table has its count NA."""
    a = _not_set_sample()
    fig = nk.pl.gate_grid(a)
    titles = {ax.get_title().split("  ")[0]: ax.get_title() for ax in fig.axes}
    assert titles["Box"] == "Box  (in Pos):\nnot set: too few events (7)"
    assert titles["Inner"] == "Inner  (in Box):\nnot set: parent 'Box' not set"
    assert titles["Pos"].endswith(f"{int(a.obs['Pos'].sum())} ({100 * a.obs['Pos'].mean():.1f}%)")
    boolean = nk.pl.gate_plot(a, "Either").axes[0].get_title()
    assert boolean.endswith("not set: operand 'Box' not set")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = nk.gating.population_table(a).set_index("population")
    for panel in gate_panels(a):
        assert ("not set" in panel.title) == bool(pd.isna(table.loc[panel.gate, "count"]))


@pytest.mark.parametrize("donor", ["021", "028", "034"])
def test_real_not_set_gates_are_titled_as_the_populations_table(external, donor) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = nk.read_fcs(external / f"cytonorm/inst/extdata/Gates_PTLG{donor}_Unstim_Control_1.fcs")
        nk.pp.qc(a)
        nk.pp.compensate(a)
        nk.pp.transform(a)
        table = nk.gating.gate(a, "human_cytof", n_boot=0).set_index("population")
    panels = gate_panels(a)
    assert any("not set: too few events" in p.title for p in panels)  # CD56bright on ~10 NK
    for panel in panels:
        count = table.loc[panel.gate, "count"]
        assert ("not set" in panel.title) == bool(pd.isna(count)), panel.title
        assert pd.isna(count) or panel.title.endswith(f": {int(count)} ({panel.percent:.1f}%)")


def test_a_not_set_gate_without_its_record_is_told_by_its_na_column() -> None:
    """A container whose uns was not kept: the <NA> obs column still says 'not set'."""
    a = _not_set_sample()
    del a.uns["nkflow"]["gating"]["unset"]
    box = pd.array(np.where(a.obs["Pos"], None, False), dtype="boolean")
    a.obs["Box"] = box
    titles = {p.gate: p.title for p in gate_panels(a)}
    assert titles["Box"] == "Box  (in Pos): not set"
    assert titles["Pos"].startswith("Pos  (in all events): ") and "not set" not in titles["Pos"]


def test_a_merged_gating_record_is_a_gating_error_not_a_key_error() -> None:
    """anndata.concat(..., uns_merge="same") kept a gate record whose differing vertices it
    dropped: gate_grid raised ``KeyError: 'vertices'``."""
    poly = {"kind": "polygon", "id": "Cells", "parent": None, "x": "A", "y": "B"}  # no vertices
    a = _container([{"name": "Cells", "parent": "", "gate": poly}])
    with pytest.raises(GatingError, match=r"'s1': its gating record is incomplete"):
        nk.pl.gate_grid(a)


def test_several_samples_are_refused_before_any_gate_is_read() -> None:
    pooled = ad.concat([_container([]), _container([])], index_unique="-")
    pooled.obs["sample_id"] = ["a"] * 200 + ["b"] * 200
    pooled.uns["nkflow"] = _container([]).uns["nkflow"]
    with pytest.raises(nk.exceptions.ConfigError, match=r"2 samples .*plot one at a time"):
        nk.pl.gate_grid(pooled)
