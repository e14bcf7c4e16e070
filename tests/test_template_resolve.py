"""Templates resolved against panels: kept, substituted and skipped gates, stated up front."""

from __future__ import annotations

import json

import pytest

from nkflow.config import RunConfig, replace_values
from nkflow.exceptions import GatingTemplateError
from nkflow.gating import (
    infer_species,
    list_templates,
    load_template,
    panel_technology,
    resolve_template,
)
from nkflow.gating.panel_view import species_markers
from nkflow.gating.template import template_dir
from nkflow.io.panel import marker_from_text
from nkflow.pipeline.steps import choose_template

SCATTER = {"FSC-A": "", "FSC-H": "", "SSC-A": ""}
#: the panel human_blood was written for (channel -> marker)
BLOOD = {**SCATTER, "BUV395-A": "CD45", "BV510-A": "LD_CD14_CD19", "BV650-A": "CD3",
         "BUV737-A": "CD56", "FITC-A": "CD16", "APC-A": "NKp46", "BV786-A": "CD69",
         "PE-A": "CD49a", "PE-Cy7-A": "CD103", "BV605-A": "CXCR6", "BV711-A": "CD62L",
         "PE-CF594-A": "AREG", "AF700-A": "IFN-g", "BB700-A": "CD107a",
         "BUV805-A": "CD127", "BUV563-A": "NKG2D"}  # fmt: skip
#: a CyTOF panel as CytoNorm's files name it (isotope channels, DNA, event length, Pt195)
CYTOF = {"Time": "", "Event_length": "", "In115Di": "CD45", "Pr141Di": "CD7",
         "Nd142Di": "CD19", "Ho165Di": "CD16", "Er170Di": "CD3", "Lu175Di": "CD14",
         "Yb176Di": "CD56", "Ir191Di": "", "Ir193Di": "", "Pt195Di": ""}  # fmt: skip
#: FlowJo-exported T-cell panel without scatter (FlowAtlas)
TCELL = {"FJComp-355 379_28-A": "CD3", "FJComp-355 560_40-A": "CD8",
         "FJComp-355 670_30-A": "CD4", "FJComp-355 740_35-A": "CD69",
         "FJComp-355 820_60-A": "CD45", "FJComp-405 450_50-A": "CD103"}  # fmt: skip


def test_the_panel_a_template_was_written_for_keeps_every_gate():
    res = resolve_template("human_blood", BLOOD)
    assert res.technology == "flow"
    assert not res.substitutions and not res.skipped and not res.unreportable
    assert res.kept == [g.id for g in res.template.gates]
    assert [g.id for g in res.template.gates] == [
        g.id for g in resolve_template(res.template, BLOOD).template.gates
    ]


def test_without_cd56_the_nk_anchor_moves_to_nkp46_and_says_so():
    panel = {k: v for k, v in BLOOD.items() if v != "CD56"}
    res = resolve_template("human_blood", panel)
    nk = res.template.gate("NK")
    assert nk.dims[0].marker == "NKp46" and nk.dims[0].on is None
    assert res.template.anchor == "NKp46"
    sub = {s["gate"]: s for s in res.substitutions}
    assert "CD56" in sub["NK"]["template"] and "NKp46" in sub["NK"]["applied"]
    assert "panel lacks CD56" in sub["NK"]["reason"]
    assert {"CD56bright", "CD56dim", "NKT-like"} <= set(res.unreportable)
    text = res.to_text()
    assert "NK: CD56+ -> NKp46+" in text and "not reportable" in text


def test_cytof_panel_gets_dna_event_length_and_cisplatin_gates():
    res = resolve_template("human_blood", CYTOF)
    assert res.technology == "cytof"
    tpl = res.template
    assert tpl.gate("Cells").dims[0].marker == "Ir191Di"
    assert (tpl.gate("Singlets").x, tpl.gate("Singlets").y) == ("Event_length", "Ir191Di")
    assert [d.marker for d in tpl.gate("Live").dims] == ["Pt195Di", "CD45"]
    assert tpl.gate("Lymphocytes").dims[0].marker == "CD14"
    # CD56bright: no NKp46, so the CD56 x CD16 mixture
    assert tpl.gate("CD56bright").y == "CD16"
    assert {"NK", "CD56bright", "CD56dim", "NK_CD16+"} <= set(tpl.populations)


def test_files_exported_without_scatter_skip_the_scatter_gates_and_keep_the_tree():
    panel = {"FJComp-A": "CD3", "FJComp-B": "CD56", "FJComp-C": "CD16", "FJComp-D": "CD45"}
    res = resolve_template("human_blood", panel)
    skipped = dict(res.skipped)
    for gid in ("Cells", "Singlets", "Lymphocytes"):
        assert "FSC-A" in skipped[gid] and "already gated" in skipped[gid]
    tpl = res.template
    assert tpl.gate("Live").parent is None  # its ancestors were left out
    assert [d.marker for d in tpl.gate("Live").dims] == ["CD45"]  # no viability dye
    assert tpl.gate("CD3-").parent == "Live"
    assert tpl.gate("NK").dims[0].on == "Live"  # was 'Lymphocytes'


def test_a_panel_without_any_nk_anchor_stops_naming_what_is_needed():
    with pytest.raises(GatingTemplateError) as err:
        resolve_template("human_blood", TCELL)
    msg = str(err.value)
    assert "no NK anchor" in msg and "CD56 | NKp46 | CD16_CD56 | CD7" in msg
    assert "CD3, CD8, CD4, CD69, CD45, CD103" in msg
    partial = err.value.resolution  # type: ignore[attr-defined]
    assert "CD3-" in partial.template.populations and "NK" in partial.unreportable
    assert "CD3-" in msg  # the hierarchy it could apply is stated


@pytest.mark.parametrize(
    ("dump", "note"),
    [
        ("Dump_CD14_CD19_CD3", "CD3 -> Dump_CD14_CD19_CD3 (a dump channel that holds CD3)"),
        ("Dump", "taken to hold CD14, CD19, CD3"),  # "Lineage": its markers not named
    ],
)
def test_a_lineage_dump_channel_draws_the_cd3_negative_gate(dump: str, note: str) -> None:
    """NK panels often put CD3 with CD14 and CD19 in one dump channel, and the viability
    dye on its own: Lin- CD56+ NK. The dump draws CD3-; CD3+ NKT-like cells cannot be
    told from B cells or monocytes in it, so they are not reportable."""
    panel = {**BLOOD, "BV510-A": "Viability", "BV650-A": dump}
    res = resolve_template("human_blood", panel)
    assert [d.marker for d in res.template.gate("CD3-").dims] == [dump]
    assert [d.marker for d in res.template.gate("Live").dims] == ["Viability", "CD45"]
    assert "NKT-like" in res.unreportable and "NK" in res.template.populations
    assert note in {s["gate"]: s for s in res.substitutions}["CD3-"]["reason"]


@pytest.mark.parametrize("template", ["human_blood", "human_tissue"])
def test_a_clinical_tbnk_panel_anchors_nk_on_its_cd16_cd56_channel(template: str) -> None:
    """BD Multitest 6-colour TBNK: CD3 FITC, CD16+56 PE, CD45 PerCP-Cy5.5, CD4 PE-Cy7,
    CD19 APC, CD8 APC-Cy7. NK are the CD3- cells positive on the combined channel, cut
    like CD56 (between its negative and first positive peak, on lymphocytes); the
    CD56bright/dim split needs CD56 and CD16 apart, so it is not reportable, and the plan
    says what the channel means."""
    labels = {"FITC-A": "CD3 FITC", "PE-A": "CD16+56 PE",
              "PerCP-Cy5-5-A": "CD45 PerCP-Cy5.5", "PE-Cy7-A": "CD4 PE-Cy7",
              "APC-A": "CD19 APC", "APC-Cy7-A": "CD8 APC-Cy7"}  # fmt: skip
    panel = {**SCATTER, **{ch: marker_from_text(text) for ch, text in labels.items()}}
    assert panel["PE-A"] == "CD16_CD56"
    assert infer_species(panel.values()) == "human"
    res = resolve_template(template, panel)
    nk = res.template.gate("NK")
    assert [(d.marker, d.side, d.on, d.between) for d in nk.dims] == [
        ("CD16_CD56", "pos", "Lymphocytes", "first_two")
    ]
    assert res.template.anchor == "CD16_CD56"
    assert {"CD56bright", "CD56dim", "NK_CD16+"} <= set(res.unreportable)
    reason = {s["gate"]: s for s in res.substitutions}["NK"]["reason"]
    assert "one channel for CD16 and CD56" in reason and "CD56bright and CD56dim" in reason


def test_a_dump_channel_without_cd3_does_not_stand_in_and_the_error_says_why() -> None:
    panel = {**BLOOD, "BV510-A": "Viability", "BV650-A": "Dump_CD14_CD19"}
    with pytest.raises(GatingTemplateError) as err:
        resolve_template("human_blood", panel)
    assert "(parent 'CD3-' is not gated: gate 'CD3-' needs CD3)" in str(err.value)


def test_mouse_panel_without_nkp46_anchors_nk_on_nk11():
    panel = {**SCATTER, "V500-A": "Viability", "PE-A": "NK1.1", "PE-Cy7-A": "CD3",
             "PE-Cy5-A": "CD19", "AF700-A": "CD45"}  # fmt: skip
    res = resolve_template("mouse", panel)
    nk = res.template.gate("NK")
    assert [(d.marker, d.side, d.on) for d in nk.dims] == [
        ("NK1.1", "pos", None),
        ("CD3e", "neg", "NK1.1+"),
    ]
    assert [d.marker for d in res.template.gate("Live").dims] == ["Viability", "CD45"]
    assert {"cNK", "trNK", "ILC"} <= set(res.unreportable)
    assert "NKT" in res.template.populations


def test_provenance_record_is_json():
    res = resolve_template("human_tissue", CYTOF)
    rec = json.loads(json.dumps(res.to_dict()))
    assert rec["template"] == "human_tissue" and rec["technology"] == "cytof"
    assert rec["applied_hash"] != rec["template_hash"] == load_template("human_tissue").hash
    assert rec["substitutions"] and rec["skipped"]


@pytest.mark.parametrize("name", [t["name"] for t in list_templates()])
@pytest.mark.parametrize("panel", [BLOOD, CYTOF])
def test_every_shipped_template_resolves_or_names_the_missing_anchor(name, panel):
    try:
        res = resolve_template(name, panel)
    except GatingTemplateError as err:
        # both panels are human (CD56): a mouse template is refused for its species
        expected = "is for mouse, but" if load_template(name).species == "mouse" else "no NK anchor"
        assert expected in str(err)
        return
    assert "NK" in res.template.populations


@pytest.mark.parametrize(
    ("name", "panel", "told"),
    [
        ("mouse", {**SCATTER, "PE-A": "CD56", "PE-Cy7-A": "CD3", "BV510-A": "HLA-DR"}, "CD56"),
        ("human_blood", {**SCATTER, "PE-A": "NK1.1", "PE-Cy7-A": "CD3e"}, "NK1.1"),
    ],
    ids=["mouse-template-human-panel", "human-template-mouse-panel"],
)
def test_a_template_of_the_other_species_is_refused(name, panel, told):
    """A human tube gated with the mouse template was gated and scored as mouse (AREG
    exploratory) without a word."""
    with pytest.raises(GatingTemplateError, match=rf"template {name!r} is for .*\({told}"):
        resolve_template(name, panel)


def test_a_panel_that_cannot_tell_its_species_takes_any_template():
    panel = {**SCATTER, "PE-A": "NK1.1", "APC-A": "CD56", "PE-Cy7-A": "CD3"}
    assert resolve_template("mouse", panel).template.species == "mouse"


@pytest.mark.parametrize(
    ("markers", "species"),
    [
        (["CD3", "NK1.1", "CD19", "Viability"], "mouse"),
        (["CD3e", "NKp46", "CD49a"], "mouse"),
        (["CD3", "DX5"], "mouse"),
        (["Ly49H FITC", "CD3"], "mouse"),
        (["CD3", "CD56", "CD16"], "human"),
        (["CD3", "HLA-DR", "CD14"], "human"),
        (["CD3", "CD4", "CD8"], None),
        (["NK1.1", "CD56"], None),
        (["CD3/CD19/F4-80 BV510", "CD45"], "mouse"),  # F4/80 in a dump channel
    ],
)
def test_infer_species(markers, species):
    assert infer_species(markers) == species


def test_species_markers_name_the_evidence_once_each():
    told = species_markers(["CD3", "NK1.1 PE", "NK1.1", "CD56", "DX5", "CD4"])
    assert told == {"mouse": ["NK1.1", "CD49b"], "human": ["CD56"]}


@pytest.mark.parametrize(
    ("panel", "tech"),
    [
        (BLOOD, "flow"),
        (CYTOF, "cytof"),
        (TCELL, "flow"),
        ({"V450": "CD3", "B530": "CD56", "R660": "CD16", "Y585": "CD45"}, "flow"),
        ({"Yb176Di": "CD56", "Er170Di": "CD3", "Ho165Di": "CD16"}, "cytof"),
    ],
)
def test_detect_technology(panel, tech):
    assert panel_technology(panel) == tech


@pytest.mark.parametrize(
    ("row", "markers", "tech", "expected"),
    [
        ({"species": "mouse"}, None, None, "mouse"),
        ({"tissue": "liver"}, None, None, "human_tissue"),
        ({}, ["CD3", "NK1.1"], None, "mouse"),
        ({}, ["CD3", "CD56"], "cytof", "human_cytof"),
        ({"species": "human", "technology": "cytof"}, None, None, "human_cytof"),
        # blood however the sheet spells it; anything else is a tissue digest
        *(
            ({"tissue": t}, None, None, "human_blood")
            for t in (
                "Blood",
                "PBMCs",
                "whole_blood",
                "Peripheral blood mononuclear cells",
                "cord blood",
                "PB",
                "buffy coat",
                "",
            )
        ),
        *(
            ({"tissue": t}, None, None, "human_tissue")
            for t in ("bone marrow", "PBS", "blood vessel", "tonsil")
        ),
    ],
)
def test_choose_template_by_species_panel_and_technology(row, markers, tech, expected):
    got = choose_template(row, RunConfig(), panel_markers=markers, technology=tech)
    assert got == expected


def test_choose_template_without_species_or_telling_panel_is_an_error():
    with pytest.raises(GatingTemplateError, match="species"):
        choose_template({"sample_id": "s1"}, RunConfig(), panel_markers=["CD3", "CD4"])


@pytest.mark.parametrize("name", ["human_blood", "mouse"])
def test_shipped_name_wins_over_a_folder_of_that_name(tmp_path, monkeypatch, name):
    (tmp_path / name).mkdir()
    monkeypatch.chdir(tmp_path)
    assert load_template(name).path == str(template_dir() / f"{name}.toml")
    cfg = replace_values(RunConfig(), {"gating.template": "auto"})
    species = "mouse" if name == "mouse" else "human"
    assert load_template(choose_template({"species": species}, cfg)).name == name


def test_a_template_file_path_still_wins(tmp_path, monkeypatch):
    src = (template_dir() / "mouse.toml").read_text()
    (tmp_path / "human_blood").write_text(src)  # a file (not a folder) named like a template
    monkeypatch.chdir(tmp_path)
    assert load_template("human_blood").name == "mouse"
    (tmp_path / "folder.toml").mkdir()
    with pytest.raises(GatingTemplateError, match="is a folder"):
        load_template("folder.toml")
