"""The batch overview surfaces what a reviewer of a 62-tube batch had to dig for: failed
files (red, listed first), a tube whose QC loss is unusual for the batch, every threshold
that disagrees with its sample's own valley, sample ids linked to their gating plots, the
FMO tubes in the event cards, and the batch named in the page title. The gating plots are
grouped by tissue (controls apart) under headings that count the tubes, and every link
still lands on its plot."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from test_report import build_inputs

from nkflow.report.figures import FigureItem
from nkflow.report.gallery import gating_groups, is_control_role, sample_anchors
from nkflow.report.html import batch_label, render_html
from nkflow.report.qc_outliers import unusual_removal
from nkflow.report.sections import overview_section

SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'


def _qc(removed: dict[str, int], n_in: int = 1000, role: str = "unstim") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sample_id": list(removed),
            "role": role,
            "n_in": n_in,
            "n_out": [n_in - r for r in removed.values()],
            "summary": [f"QC removed {r}" for r in removed.values()],
        }
    )


def _status(ids: list[str], statuses: list[str] | None = None) -> pd.DataFrame:
    statuses = statuses or ["ok"] * len(ids)
    return pd.DataFrame(
        {
            "sample_id": ids,
            "file": [f"{i}.fcs" for i in ids],
            "role": "unstim",
            "status": statuses,
            "reason_code": ["OK" if s == "ok" else "X" for s in statuses],
            "message": "",
        }
    )


@pytest.mark.parametrize(
    ("removed", "flagged"),
    [
        ({"a": 3, "b": 2, "c": 4, "d": 135}, {"d"}),  # 13.5% beside ~0.3%
        ({"a": 3, "b": 2, "c": 4, "d": 40}, set()),  # 4%: under the 5% floor
        ({"a": 80, "b": 90, "c": 70, "d": 200}, set()),  # 20% but < 3x a median of 8.5%
        ({"a": 0, "d": 500}, set()),  # two tubes: a tube is half its own median
    ],
)
def test_unusual_qc_loss_rule(removed: dict[str, int], flagged: set[str]) -> None:
    qc = _qc(removed)
    assert set(qc.loc[unusual_removal(qc), "sample_id"]) == flagged


def test_unusual_tube_is_highlighted_named_and_first_in_the_qc_list() -> None:
    removed = {"a": 3, "b": 2, "c": 4, "d": 135}
    html = overview_section({"status": _status(list(removed)), "qc": _qc(removed)}, None, [], [0])
    assert html.count('class="num unusual"') == 1  # d's kept % in the Files table
    assert "1 tube(s) lost an unusual share" in html and "<b>d</b>: 13.5% removed" in html
    assert "more than 5%" in html and "3× the batch median" in html  # the rule, stated
    qc_list = html[html.index("What QC removed") :]
    order = re.findall(r"<li><b>(\w)</b>: QC removed", qc_list)
    assert order == ["d", "c", "a", "b"]  # largest share first, not sheet order


def test_failed_rows_are_red_and_listed_first() -> None:
    status = _status(["a", "b", "c", "d"], ["ok", "skipped", "failed", "parse-failed"])
    html = overview_section({"status": status}, None, [], [0])
    table = html[html.index("Files and samples") :]
    assert 'class="st-failed"' in table and 'class="st-parse-failed"' in table
    assert re.findall(r"<tr><td>(\w)</td>", table) == ["c", "d", "a", "b"]


def test_sample_ids_link_to_their_gating_plot() -> None:
    items = [
        FigureItem(name=f"gating_{sid}", section="gating", caption=sid, data=SVG)
        for sid in ("D1 blood<pre>", "D1-blood-pre-", "ok_1")
    ]
    ids = sample_anchors(items)
    assert list(ids.values()) == ["gating-D1-blood-pre", "gating-D1-blood-pre-2", "gating-ok_1"]
    status = _status(["ok_1", "bad"], ["ok", "failed"])
    html = render_html(
        tables={"status": status, "qc": _qc({"ok_1": 1})},
        metadata=None,
        figures={i.name: SVG for i in items},
        config={},
        provenance={},
        caveats="",
        population_plots=False,
    )
    assert '<figure id="gating-ok_1">' in html and 'id="gating-D1-blood-pre-2"' in html
    assert '<td><a href="#gating-ok_1">ok_1</a></td>' in html  # the Files table
    assert '<a href="#gating-bad"' not in html  # no plot, no link


def test_every_disagreeing_threshold_is_shown_even_past_the_table_limit() -> None:
    n = 950
    thresholds = pd.DataFrame(
        {
            "sample_id": [f"s{i:03d}" for i in range(n)],
            "gate": "NK",
            "marker": "CD103",
            "value": 0.43,
            "disagrees": [i in (5, 700, 949) for i in range(n)],
            "note": [f"own valley {i}" for i in range(n)],
        }
    )
    html = render_html(
        tables={"thresholds": thresholds},
        metadata=None,
        figures={},
        config={},
        provenance={},
        caveats="",
        population_plots=False,
    )
    assert "3 threshold(s) disagree with the sample's own cut-off" in html
    for sid in ("s005", "s700", "s949"):
        assert html.count(f">{sid}<") == 2  # in the small table and in the long one
        assert f"own valley {sid[1:].lstrip('0')}" in html
    small = html[html.index("threshold(s) disagree") :]
    small = small[: small.index("</table>")]
    assert small.count("<th>note</th>") == 1  # the table's columns hold it already


@pytest.mark.parametrize(
    ("batches", "provenance", "label"),
    [
        (["H60", "H60"], {}, "batch H60"),
        (["B1", "B2", "B1"], {}, "batches B1, B2"),
        (["B1", "B2", "B3", "B4", "B5"], {}, "batches B1, B2, B3 +2 more"),
        (["", ""], {"input": "/data/run_7/metadata.csv"}, "run_7/metadata.csv"),
        (["", ""], {"input": "/work/main/sample_data"}, "sample_data"),
        (["", ""], {}, ""),
    ],
)
def test_the_title_names_the_batch(batches: list[str], provenance: dict, label: str) -> None:
    meta = pd.DataFrame({"sample_id": [f"s{i}" for i in range(len(batches))], "batch": batches})
    assert batch_label(meta, provenance) == label
    html = render_html(
        tables={},
        metadata=meta,
        figures={},
        config={},
        provenance=provenance,
        caveats="",
        population_plots=False,
    )
    title = f"nkflow batch report · {label}" if label else "nkflow batch report"
    assert f"<title>{title}</title>" in html and f"<h1>{title}</h1>" in html


def test_an_explicit_title_is_kept() -> None:
    meta = pd.DataFrame({"sample_id": ["a"], "batch": ["H60"]})
    html = render_html(tables={}, metadata=meta, figures={}, config={}, provenance={},
                       caveats="", title="My run", population_plots=False)  # fmt: skip
    assert "<title>My run</title>" in html


def test_event_cards_count_the_tubes_the_qc_list_counts() -> None:
    qc = pd.concat([_qc({"a": 10, "b": 0}), _qc({"fmo": 13}, n_in=5000, role="fmo:CD69")])
    status = _status(["a", "b", "fmo"]).assign(n_events=[1000, 1000, 5000])
    html = overview_section({"status": status, "qc": qc}, None, [], [0])
    assert '<div class="v">7,000</div><div class="k">events read (2 analysed + 1 FMO tubes)' in html
    assert '<div class="v">6,977</div><div class="k">events after QC (same tubes)' in html


# --- the gating gallery grouped by tissue -------------------------------------------------


def _sheet() -> pd.DataFrame:
    """Liver listed before blood; D2 before D1; a post tube before a pre one (the run's
    order says pre first); an FMO tube, a positive control, a failed and a skipped tube."""
    rows = [
        ("D2_liver_post", "D2", "liver", "post", "stim"),
        ("D2_liver_pre", "D2", "liver", "pre", "stim"),
        ("D1_blood_pre", "D1", "blood", "pre", "stim"),
        ("D1_liver_pre", "D1", "liver", "pre", "unstim"),
        ("D2_blood_pre", "D2", "blood", "pre", "stim"),
        ("liver_FMO_CD69", "D1", "liver", "pre", "fmo:CD69"),
        ("PC_ILC", "D1", "blood", "pre", "positive_control"),
        ("D1_liver_post", "D1", "liver", "post", "stim"),
        ("D3_blood_pre", "D3", "blood", "pre", "unstained"),
    ]
    meta = pd.DataFrame(rows, columns=["sample_id", "donor", "tissue", "timepoint", "role"])
    meta["stimulation"] = "stim"
    meta["file"] = meta["sample_id"] + ".fcs"
    meta.attrs["timepoint_order"] = ["pre", "post"]
    return meta


def _gallery_status(meta: pd.DataFrame) -> pd.DataFrame:
    status = _status(list(meta["sample_id"]))
    status["role"] = meta["role"].to_numpy()
    status.loc[status["sample_id"] == "D1_liver_post", "status"] = "qc-failed"
    status.loc[status["sample_id"] == "D3_blood_pre", "status"] = "skipped"
    return status


def _plots(meta: pd.DataFrame) -> dict[str, bytes]:
    """A plot for every tube that has one (not the FMO, failed or skipped tube), in an
    order unlike the sheet's."""
    lacking = {"liver_FMO_CD69", "D1_liver_post", "D3_blood_pre"}
    return {f"gating_{s}": SVG for s in sorted(meta["sample_id"]) if s not in lacking}


def test_gating_plots_are_grouped_by_tissue_then_donor_and_timepoint() -> None:
    meta = _sheet()
    items = [FigureItem(n, "gating", n.removeprefix("gating_"), d) for n, d in _plots(meta).items()]
    groups = gating_groups(items, meta, _gallery_status(meta), {"D2_blood_pre": ["odd"]})
    assert [g.title for g in groups] == ["liver", "blood", "Controls"]  # sheet order, controls last
    shown = {g.title: [i.caption for i in g.items] for g in groups}
    # donors as the sheet lists them (D2 first); timepoints in the run's order (pre first)
    assert shown == {
        "liver": ["D2_liver_pre", "D2_liver_post", "D1_liver_pre"],
        "blood": ["D2_blood_pre", "D1_blood_pre"],
        "Controls": ["PC_ILC"],
    }
    liver, blood, controls = groups
    assert (liver.tubes, liver.failed, liver.unplotted) == (
        4,
        (("D1_liver_post", "qc-failed"),),
        (),
    )
    assert (blood.tubes, blood.flagged, liver.flagged) == (2, 1, 0)
    assert controls.tubes == 3
    assert controls.unplotted == (("liver_FMO_CD69", "FMO"), ("D3_blood_pre", "skipped"))
    assert [g.anchor for g in groups] == ["plots-liver", "plots-blood", "plots-Controls"]


def test_a_tissue_named_like_a_group_and_a_tube_of_no_tissue_keep_their_own_groups() -> None:
    meta = pd.DataFrame(
        {"sample_id": ["x", "y", "c"], "tissue": ["Controls", "", "blood"],
         "role": ["stim", "stim", "fmo:CD69"]}
    )  # fmt: skip
    items = [FigureItem(f"gating_{s}", "gating", s, SVG) for s in ("c", "y", "x")]
    groups = gating_groups(items, meta)
    assert [(g.title, g.anchor, [i.caption for i in g.items]) for g in groups] == [
        ("Controls", "plots-Controls", ["x"]),  # the tissue
        ("(tissue not given)", "plots-tissue-not-given", ["y"]),
        ("Controls", "plots-Controls-2", ["c"]),  # the control tubes
    ]


@pytest.mark.parametrize(
    ("role", "control"),
    [("stim", False), ("unstim", False), ("sample", False), ("", False), (float("nan"), False),
     ("fmo:CD69", True), ("positive_control", True), ("unstained", True),
     ("single_stain:CD3", True)],
)  # fmt: skip
def test_control_roles(role: object, control: bool) -> None:
    assert is_control_role(role) is control


def _links_and_ids(html: str) -> tuple[list[str], list[str]]:
    return re.findall(r'href="#([^"]*)"', html), re.findall(r'\sid="([^"]*)"', html)


def test_grouped_gallery_headings_anchors_and_every_plot() -> None:
    meta = _sheet()
    plots = _plots(meta)
    qc = _qc({s: 3 for s in meta["sample_id"]})
    qc.loc[qc["sample_id"] == "D2_blood_pre", "n_out"] = 800  # 20% removed: unusual
    html = render_html(tables={"status": _gallery_status(meta), "qc": qc}, metadata=meta,
                       figures=plots, config={}, provenance={}, caveats="",
                       population_plots=False)  # fmt: skip
    gating = html[html.index("<h3>Gating per sample") : html.index('<section id="populations"')]
    # a list of the groups, each linked to its heading, which counts its tubes
    assert re.findall(r'<li><a href="#(plots-\w+)">', gating) == [
        "plots-liver", "plots-blood", "plots-Controls"
    ]  # fmt: skip
    assert '<h4>liver <span class="count">4 tubes: 3 plotted, 1 failed</span>' in gating
    assert '<h4>blood <span class="count">2 tubes: 2 plotted, 1 flagged</span>' in gating
    assert '<h4>Controls <span class="count">3 tubes: 1 plotted, 2 without a plot</span>' in gating
    assert "D1_liver_post (qc-failed)" in gating and "liver_FMO_CD69: FMO tube" in gating
    assert "D3_blood_pre (skipped)" in gating
    assert '<span class="mark">unusual QC loss: 20.0% removed</span>' in gating
    assert "positive control · blood · pre · stim" in gating  # a control says what it is
    # every plot is in the report, once, in its group, in group order
    figures = re.findall(r'<figure id="gating-([^"]+)">', gating)
    assert sorted(figures) == sorted(p.removeprefix("gating_") for p in plots)
    assert figures == [
        "D2_liver_pre", "D2_liver_post", "D1_liver_pre", "D2_blood_pre", "D1_blood_pre", "PC_ILC"
    ]  # fmt: skip
    # anchors unique; every link in the report lands on an element
    links, ids = _links_and_ids(html)
    assert len(ids) == len(set(ids))
    assert set(links) <= set(ids) and "gating-D2_blood_pre" in links


@pytest.mark.parametrize("metadata", [None, pd.DataFrame({"sample_id": ["a", "b"]})])
def test_without_tissues_the_plots_stay_one_gallery(metadata: pd.DataFrame | None) -> None:
    html = render_html(tables={}, metadata=metadata, figures={"gating_b": SVG, "gating_a": SVG},
                       config={}, provenance={}, caveats="", population_plots=False)  # fmt: skip
    assert 'class="groups"' not in html and 'class="ggroup"' not in html
    assert re.findall(r'<figure id="gating-(\w)">', html) == ["b", "a"]  # the figures' order


def test_one_tissue_gets_a_heading_but_no_list_of_groups() -> None:
    meta = pd.DataFrame({"sample_id": ["a", "b"], "tissue": ["blood", "blood"]})
    html = render_html(tables={}, metadata=meta, figures={"gating_a": SVG, "gating_b": SVG},
                       config={}, provenance={}, caveats="", population_plots=False)  # fmt: skip
    assert '<h4>blood <span class="count">2 tubes: 2 plotted</span></h4>' in html
    assert 'class="groups"' not in html and 'href="#plots"' not in html


def test_a_threshold_off_its_valley_flags_the_plot() -> None:
    meta = pd.DataFrame({"sample_id": ["a", "b"], "tissue": ["blood", "liver"]})
    thresholds = pd.DataFrame(
        {"sample_id": ["a", "b"], "gate": "NK", "marker": ["CD103", "CD69"],
         "value": 0.4, "disagrees": ["True", "False"]}
    )  # fmt: skip
    html = render_html(tables={"thresholds": thresholds}, metadata=meta,
                       figures={"gating_a": SVG, "gating_b": SVG}, config={}, provenance={},
                       caveats="", population_plots=False)  # fmt: skip
    assert '<span class="mark">CD103 threshold off its own cut-off</span>' in html
    assert "CD69 threshold off" not in html
    assert '<li><a href="#plots-blood">blood</a> 1 tube: 1 plotted, 1 flagged</li>' in html


def test_every_link_of_a_full_report_lands_on_a_unique_anchor() -> None:
    inputs = build_inputs(hostile=True)
    keys = ("tables", "metadata", "figures", "config", "provenance", "caveats")
    html = render_html(**{k: inputs[k] for k in keys}, population_plots=False)
    links, ids = _links_and_ids(html)
    assert len(ids) == len(set(ids))
    assert set(links) <= set(ids)
    plots = [n for n in inputs["figures"] if n.startswith("gating_")]
    assert html.count('<figure id="gating-') == len(plots) == 4
    # the hostile tissue name is a heading as text, not markup
    assert "<h4>liver&lt;i&gt; " in html and "<h4>liver<i>" not in html


def test_the_batch_level_thresholds_say_the_pool_is_one_valley_over_the_tissues() -> None:
    # "Set once per batch and tissue" headed five identical pool rows of one batch
    thresholds = pd.DataFrame(
        {
            "sample_id": "",
            "tissue": ["blood", "liver"],
            "batch": "FA",
            "gate": "T",
            "marker": "CD69",
            "value": 0.497,
            "rule": "valley (batch pool)",
            "evidence": "batch_pool",
        }
    )
    html = render_html(
        tables={"thresholds": thresholds}, metadata=None, figures={}, config={},
        provenance={}, caveats="", population_plots=False,
    )  # fmt: skip
    assert "Set once per batch and tissue" not in html
    assert "is one valley over all the batch's tissues, repeated on the row of each" in html
