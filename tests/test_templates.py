"""Gating templates: the shipped ones load; edited copies fail with clear messages."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from nkflow.exceptions import GatingTemplateError
from nkflow.gating import (
    gate,
    list_templates,
    load_template,
    template_hash,
    validate_template,
)
from nkflow.gating.template import template_dir

CONTRACT_POPULATIONS = {
    "human": {"Cells", "Singlets", "Live", "Lymphocytes", "CD3-", "NKT-like", "NK", "ILC",
              "CD56bright", "CD56dim", "trNK", "circNK", "CD56bright_trNK",
              "CD56bright_circNK", "CD56dim_trNK", "CD56dim_circNK"},
    "mouse": {"Cells", "Singlets", "Live", "CD3e-", "NKT", "NK", "ILC", "cNK", "trNK",
              "DP_CD49a_CD49b", "cNK_CD27+CD11b-", "cNK_CD27+CD11b+", "cNK_CD27-CD11b+"},
}  # fmt: skip

NAMES = [t["name"] for t in list_templates()]
FIXED = 'rule = "fixed"\nvalue = 3.0'  # a CD56 cut no NK cell passes


def test_four_templates_are_shipped():
    assert set(NAMES) == {"human_blood", "human_tissue", "human_cytof", "mouse"}


@pytest.mark.parametrize("name", NAMES)
def test_shipped_template_loads_with_contract_populations(name):
    tpl = load_template(name)
    assert tpl.name == name
    assert CONTRACT_POPULATIONS[tpl.species] <= set(tpl.populations)
    assert set(tpl.terminal_populations) <= set(tpl.populations)
    assert tpl.min_events > 0 and tpl.required_markers
    index = {t["name"]: t for t in list_templates()}[name]
    assert index["version"] == tpl.version and index["species"] == tpl.species


def test_anchors():
    assert load_template("human_blood").gate("NK").dims[0].marker == "CD56"
    assert load_template("human_tissue").gate("NK").dims[0].marker == "NKp46"
    assert load_template("human_cytof").gate("NK").dims[0].marker == "CD7"
    assert load_template("human_cytof").technology == "cytof"


def test_hash_ignores_comments_and_changes_with_content(tmp_path):
    src = (template_dir() / "mouse.toml").read_text()
    a = tmp_path / "a.toml"
    a.write_text("# a comment\n" + src)
    assert template_hash(a) == template_hash("mouse")
    b = tmp_path / "b.toml"
    b.write_text(src.replace("min_events = 100", "min_events = 50"))
    assert template_hash(b) != template_hash("mouse")


def _edited(tmp_path: Path, old: str, new: str) -> Path:
    src = (template_dir() / "human_blood.toml").read_text()
    assert old in src
    p = tmp_path / "edited.toml"
    p.write_text(src.replace(old, new, 1))
    return p


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('kind = "threshold"\nmarker = "CD3"', 'kind = "trapezoid"\nmarker = "CD3"',
         ["gate 'CD3-'", "'trapezoid'", "polygon", "boolean"]),
        ('marker = "CD3"\nside = "neg"\nrule = "valley"',
         'marker = "CD3"\nside = "neg"\nrule = "otsu"',
         ["gate 'CD3-'", "'otsu'", "valley", "fmo"]),
        ('parent = "Lymphocytes"\nkind = "threshold"', 'parent = "Lymphs"\nkind = "threshold"',
         ["gate 'CD3-'", "'Lymphs'", "Lymphocytes"]),
        ('species = "human"', 'species = "zebrafish"', ["'zebrafish'", "human", "mouse"]),
        ('fmo_percentile = 99.5', 'fmo_percentile = 100.5', ["fmo_percentile", "100.5"]),
        ('side = "neg"', 'side = "negative"', ["'negative'", "pos", "neg"]),
        ('"NKT-like", "ILC",\n]', '"NKT-like", "ILC", "Unicorns",\n]', ["'Unicorns'"]),
        ('{ marker = "NKp46", on = "", between = "top2" },',
         '{ id = "NK2", marker = "NKp46" },', ["gate 'NK' alternatives[0]", "cannot change", "id"]),
        ('{ marker = "CD7", on = "", between = "top2" },', '{ marker = "CD7", on = "Lymphs" },',
         ["gate 'NK'", "'Lymphs'", "Lymphocytes"]),
        ('{ y = "CD16" },', '{ y = "CD16", technology = "imc" },', ["'imc'", "flow", "cytof"]),
        ('anchor = "CD56"', 'anchor = "CD56"\nanchor_gate = "NKs"', ["anchor_gate", "'NKs'"]),
        # NK and NKT-like both cut CD56 on Lymphocytes: a fixed NK cut would have been
        # ignored for the NKT-like gate's valley, which is computed first
        ('marker = "CD56"\nside = "pos"\nrule = "valley"\non = "Lymphocytes"',
         'marker = "CD56"\nside = "pos"\nrule = "fixed"\nvalue = 3.0\non = "Lymphocytes"',
         ["gates 'NKT-like' and 'NK' both cut CD56 on 'Lymphocytes'",
          "rule 'valley' vs 'fixed'", "value None vs 3.0"]),
    ],
)  # fmt: skip
def test_invalid_edits_name_file_gate_value_and_choices(tmp_path, old, new, expected):
    path = _edited(tmp_path, old, new)
    with pytest.raises(GatingTemplateError) as err:
        validate_template(path)
    msg = str(err.value)
    assert str(path) in msg
    for part in expected:
        assert part in msg


@pytest.mark.parametrize(("rule", "nk_count"), [('rule = "valley"', None), (FIXED, 0)])
def test_an_nk_cut_on_its_own_population_applies(tmp_path, gated_liver, rule, nk_count):
    """The NK gate's CD56 cut computed within its parent (``on`` removed) is its own cut:
    edited to ``fixed``, it applies, and the NKT-like gate keeps its valley."""
    old = 'marker = "CD56"\nside = "pos"\nrule = "valley"\non = "Lymphocytes"'
    path = _edited(tmp_path, old, f'marker = "CD56"\nside = "pos"\n{rule}\n#')
    validate_template(path)
    tables = {}
    for name, template in (("shipped", "human_blood"), ("edited", path)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = gate(gated_liver[0].copy(), template, n_boot=0)
        tables[name] = table.set_index("population")["count"]
    if nk_count is not None:
        assert tables["edited"]["NK"] == nk_count  # CD56 above 3.0: nobody
    else:
        assert tables["edited"]["NK"] > 0
    assert tables["edited"]["NKT-like"] == tables["shipped"]["NKT-like"]


def test_cycle_is_rejected(tmp_path):
    old = 'id = "Cells"\nkind = "polygon"'
    path = _edited(tmp_path, old, 'id = "Cells"\nparent = "NK"\nkind = "polygon"')
    with pytest.raises(GatingTemplateError, match="cycle"):
        validate_template(path)


def test_unknown_name_lists_valid_names():
    with pytest.raises(GatingTemplateError, match="human_blood"):
        load_template("no_such_template")


def test_broken_toml(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[template\nname=")
    with pytest.raises(GatingTemplateError, match="not valid TOML"):
        validate_template(p)


@pytest.mark.parametrize(
    ("document", "what", "apply"),
    [
        (
            '<gating:Gating-ML xmlns:gating="http://www.isac-net.org/std/Gating-ML/v2.0/gating"/>',
            "a GatingML 2.0 document",
            "nk.gating.apply_gatingml",
        ),
        (
            '<Workspace version="20.0" flowJoVersion="10.8.1"/>',
            "a FlowJo 10 workspace",
            "nk.gating.apply_flowjo_workspace",
        ),
    ],
    ids=["gatingml", "flowjo10"],
)
def test_a_gating_document_is_not_read_as_toml(tmp_path, document, what, apply):
    # `nkflow run --template gating.wsp` said "not valid TOML: Invalid statement"
    path = tmp_path / "gates.xml"
    path.write_text(document)
    with pytest.raises(GatingTemplateError) as err:
        load_template(path)
    message = str(err.value)
    assert message.startswith(f"{path}: {what}, not an nkflow template")
    assert f"`nkflow gate FILES --template {path} -o OUT`" in message and apply in message
    assert "not valid TOML" not in message


def test_deep_template_hierarchy_is_checked_without_recursion(tmp_path) -> None:
    """A 2,000-deep chain of gates validates (no RecursionError); a cycle is still named."""
    from nkflow.gating.template import validate_template

    head = '[template]\nname = "deep"\nversion = "1"\nspecies = "human"\nanchor = "CD56"\n'
    gates = [
        f'[[gates]]\nid = "G{i}"\n'
        + (f'parent = "G{i - 1}"\n' if i else "")
        + 'kind = "threshold"\nmarker = "CD56"\nside = "pos"\nrule = "fixed"\nvalue = 0.5\n'
        for i in range(2000)
    ]
    deep = tmp_path / "deep.toml"
    deep.write_text(head + "\n".join(gates))
    assert len(validate_template(deep).gates) == 2000
    cyclic = tmp_path / "cyclic.toml"
    cyclic.write_text(
        head + "\n".join(gates[:3]).replace('id = "G0"\n', 'id = "G0"\nparent = "G2"\n')
    )
    with pytest.raises(GatingTemplateError, match="cycle"):
        validate_template(cyclic)


def test_deep_gate_list_orders_without_recursion() -> None:
    """topological_order on a 5,000-deep chain (given leaf first) puts parents first."""
    from nkflow.gating.gates import Dimension, RectangleGate, topological_order

    dims = (Dimension("FL1", 0.0, None),)
    chain = [RectangleGate(f"g{i}", f"g{i - 1}" if i else None, dims) for i in range(5000)]
    ordered = topological_order(reversed(chain))
    assert [g.id for g in ordered] == [g.id for g in chain]
