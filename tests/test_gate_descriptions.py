"""What a parent gate holds, said on the panel's channels (the Methods repeat it).

A PI read the human_cytof "Live" gate as viability ("Live 39.8 % of Singlets" on the
CytoNorm files), but of the ~60 % it removes only 0-4 in 1,000 events are cisplatin+: the
rest are CD45-dim CD66+ CD15+ granulocytes. The gate keeps its id; its description says
that it is cisplatin- AND CD45-bright, and is shown only while the applied gate still does
what it says (not when the panel lacks CD45, nor for an alternative written differently).
"""

from __future__ import annotations

from nkflow.gating import resolve_template
from nkflow.pipeline.plan import BatchPlan
from nkflow.report.methods import methods_text

#: a CyTOF panel as CytoNorm's files name it (isotope channels, DNA, event length, Pt195)
CYTOF = {"Time": "", "Event_length": "", "In115Di": "CD45", "Pr141Di": "CD7",
         "Nd142Di": "CD19", "Ho165Di": "CD16", "Er170Di": "CD3", "Lu175Di": "CD14",
         "Yb176Di": "CD56", "Ir191Di": "", "Ir193Di": "", "Pt195Di": ""}  # fmt: skip


def _lineage(panel: dict[str, str]) -> dict[str, dict[str, str]]:
    return {g["gate"]: g for g in resolve_template("human_cytof", panel).lineage()}


def test_the_cytof_live_gate_says_it_removes_cd45_dim_cells_on_the_files_channels():
    res = resolve_template("human_cytof", CYTOF)
    lineage = res.lineage()
    assert [g["gate"] for g in lineage] == [
        "Cells", "Singlets", "Live", "Lymphocytes", "CD3-", "CD56+_or_CD16+", "NK",
    ]  # fmt: skip
    live = {g["gate"]: g for g in lineage}["Live"]
    assert live["applied"] == "Pt195Di- & CD45+"  # the file's cisplatin channel
    assert "CD45-bright" in live["description"] and "granulocytes" in live["description"]
    assert "not the viable fraction" in live["description"]
    assert res.template.gate("Live").id == "Live"  # the id others refer to is kept


def test_a_live_gate_drawn_without_cd45_loses_the_words_about_cd45():
    live = _lineage({k: v for k, v in CYTOF.items() if v != "CD45"})["Live"]
    assert live["applied"] == "Pt195Di-" and live["description"] == ""


def test_an_alternative_without_a_description_of_its_own_says_nothing():
    nk = _lineage({k: v for k, v in CYTOF.items() if v != "CD7"})["NK"]
    assert "CD7" not in nk["applied"] and nk["description"] == ""


def test_the_methods_say_what_the_gates_leading_to_nk_hold():
    plan = BatchPlan(resolved={"human_cytof": resolve_template("human_cytof", CYTOF)})
    text = methods_text({}, {"gating_plan": plan.to_dict()}, {})
    assert (
        "Live (Pt195Di- & CD45+): cisplatin-negative CD45-bright cells: dead cells and, "
        "with them, CD45-dim cells (granulocytes among them) are removed" in text
    )
