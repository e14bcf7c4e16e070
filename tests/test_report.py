"""Tests of nkflow.report: escaping, self-contained HTML, determinism, tables, methods."""

from __future__ import annotations

import base64
import hashlib
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from nkflow.config import RunConfig, config_to_dict
from nkflow.pl.gating_panels import Axis, Panel
from nkflow.report import (
    KEY_CAVEAT,
    render_html,
    write_report,
    write_tables,
    writer,
)
from nkflow.report.figures import decode_data_uri, figure_format, image_size
from nkflow.report.gating_svg import panels_svg
from nkflow.report.html import POPULATION_FIGURES, population_figures

SVG_NS = "{http://www.w3.org/2000/svg}"
EVIL = '<script>alert("x")</script>'
EVIL_ID = f'D1_liver{EVIL}"><img src=x onerror=alert(1)>'
EVIL_PNS = "CD56 <b onmouseover=alert(2)>bright</b> & $\\frac{a}{"
POPS = ["Lymphocytes", "NK", "CD56bright", "CD56dim", "trNK", "circNK", "ILC"]
PARENT = {
    "Lymphocytes": "Live",
    "NK": "CD3-",
    "CD56bright": "NK",
    "CD56dim": "NK",
    "trNK": "NK",
    "circNK": "NK",
    "ILC": "CD3-",
}
ALLOWED_TAGS = {
    "html",
    "head",
    "meta",
    "title",
    "style",
    "body",
    "header",
    "h1",
    "h2",
    "h3",
    "h4",  # a tissue group of the gating plots
    "p",
    "nav",
    "a",
    "main",
    "section",
    "div",
    "table",
    "caption",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "b",
    "ul",
    "li",
    "code",
    "figure",
    "label",
    "input",
    "img",
    "figcaption",
    "br",
    "span",  # a group's tube counts; a flag under a plot
    "pre",
    "footer",
    "details",
    "summary",
    "ol",
}


def gating_figure(seed: int, title: str) -> Figure:
    rng = np.random.default_rng(seed)
    fig = Figure(figsize=(3, 3))
    ax = fig.subplots()
    xy = rng.normal(size=(400, 2))
    ax.scatter(xy[:, 0], xy[:, 1], s=2, color="0.3")
    ax.add_patch(Rectangle((0.2, -1), 2, 2, fill=False, color="C3"))
    ax.set_title(title.replace("$", r"\$"), fontsize=7)
    return fig


def gating_svg_figure(seed: int, sample: str) -> bytes:
    """A gate grid as the pipeline writes it (SVG): a density and a 1-D gate, hostile text."""
    rng = np.random.default_rng(seed)
    xy = rng.normal(size=(400, 2))
    counts, xe, ye = np.histogram2d(xy[:, 0], xy[:, 1], bins=24)
    hist, he = np.histogram(xy[:, 0], bins=24)
    ticks = (0.0,), ("0",)
    density = Panel(
        "NK", "CD3-", "density", f"NK  (in CD3-): {sample}",
        x=Axis(EVIL_PNS, float(xe[0]), float(xe[-1]), *ticks),
        y=Axis("CD3 (BV650-A)", float(ye[0]), float(ye[-1]), *ticks),
        counts=counts.astype(np.int64), xedges=xe, yedges=ye,
        outline=np.array([[0.2, -1.0], [2.2, -1.0], [2.2, 1.0], [0.2, 1.0]]),
    )  # fmt: skip
    histogram = Panel(
        "CD56bright", "NK", "histogram", f"CD56bright  (in NK): {sample}",
        x=Axis(EVIL_PNS, float(he[0]), float(he[-1]), *ticks),
        y=Axis("events", 0.0, float(hist.max()) * 1.05, *ticks),
        counts=hist, xedges=he, thresholds=(0.5,),
    )  # fmt: skip
    return panels_svg([density, histogram])


def build_inputs(*, hostile: bool = True) -> dict:
    """A realistic small batch: 4 analysed samples, 2 failures, every table filled."""
    ids = ["D1_liver_pre", "D1_liver_post", "D2_blood_pre", "D2_blood_post"]
    if hostile:
        ids[0] = EVIL_ID
    meta = pd.DataFrame(
        {
            "file": [*(f"{i}.fcs" for i in ids), "broken.fcs", "clogged.fcs"],
            "sample_id": [*ids, "broken", "clogged"],
            "donor": ["D1", "D1", "D2", "D2", "D3", "D3"],
            "tissue": ["liver", "liver", "blood", "blood", "liver", "liver"],
            "timepoint": ["pre", "post", "pre", "post", "pre", "pre"],
            "stimulation": ["stim", "stim", "stim", "stim", "unstim", "stim"],
            "role": ["sample"] * 6,
            "plate": ["P1"] * 6,  # the batch under another name
        }
    )
    if hostile:
        meta.loc[1, "tissue"] = "liver<i>"
    status = pd.DataFrame(
        {
            "sample_id": meta["sample_id"],
            "file": meta["file"],
            "status": ["ok", "ok", "ok", "ok", "parse-failed", "qc-failed"],
            "reason_code": ["", "", "", "", "truncated-data", "qc-too-few-events"],
            "message": [
                "",
                "",
                "",
                "",
                "DATA segment ends at byte 812 but $ENDDATA says 90000" + (EVIL if hostile else ""),
                "QC kept 3% of events (< 50%)",
            ],
            "n_events": [50000, 48000, 61000, 52000, 0, 40000],
        }
    )
    qc = pd.DataFrame(
        {
            "sample_id": [*ids, "clogged"],
            "n_in": [50000, 48000, 61000, 52000, 40000],
            "n_out": [48900, 47100, 60020, 50900, 1200],
            "removed_time": [900, 700, 800, 900, 38000],
            "removed_margin": [200, 200, 180, 200, 800],
        }
    )
    rng = np.random.default_rng(1)
    rows = []
    for s in ids:
        for p in POPS:
            parent_count = int(rng.integers(2000, 20000))
            count = int(parent_count * rng.uniform(0.02, 0.6)) if p != "ILC" else 40
            pct = 100 * count / parent_count
            rows.append(
                {
                    "sample_id": s,
                    "population": p,
                    "parent": PARENT[p],
                    "count": count,
                    "parent_count": parent_count,
                    "percent_of_parent": pct,
                    "ci_low": max(0.0, pct - 1.0),
                    "ci_high": min(100.0, pct + 1.0),
                    "percent_of_nk": pct / 2,
                    "low_events": count < 100,
                    "median_CD56": float(rng.uniform(1, 4)),
                }
            )
    populations = pd.DataFrame(rows)
    thresholds = pd.DataFrame(
        {
            "sample_id": ["", ""],
            "tissue": ["liver", "blood"],
            "batch": ["b1", "b1"],
            "marker": ["AREG", EVIL_PNS if hostile else "CD69"],
            "channel": ["BV421-A", "PE-A"],
            "value": [1.23, 0.98],
            "ci_low": [1.2, 0.95],
            "ci_high": [1.27, 1.01],
            "rule": ["fmo", "valley"],
            "control_file": ["fmo_AREG.fcs", ""],
            "n_events": [12000, 40000],
        }
    )
    scatter = {
        "sample_id": ids[2],
        "tissue": "blood",
        "batch": "b1",
        "marker": "FSC-A",
        "channel": "FSC-A",
        "value": 30000.0,
        "ci_low": 29000.0,
        "ci_high": 31000.0,
        "rule": "density:debris",
        "control_file": "",
        "n_events": 61000,
    }
    thresholds = pd.concat([thresholds, pd.DataFrame([scatter])], ignore_index=True)
    clusters = pd.DataFrame(
        [
            {
                "sample_id": s,
                "metacluster": str(k),
                "label": f"CD56{'bright' if k > 1 else 'dim'}",
                "count": 100 * k,
                "percent": 100 * k / 13,
            }
            for s in ids
            for k in (10, 2, 1)
        ]
    )
    cluster_medians = pd.DataFrame(
        [
            {
                "sample_id": s,
                "metacluster": str(k),
                "label": f"mc{k}",
                "marker": m,
                "median": float(k + j * 0.3 + i * 0.1),
            }
            for i, s in enumerate(ids)
            for k in (10, 2, 1)
            for j, m in enumerate(["CD56", "CD16", "CD49a", "AREG"])
        ]
    )
    # scores/flags as nkflow.tl.score writes them (subset of columns)
    scores = pd.DataFrame(
        {
            "batch": "b1",
            "donor": ["D1", "D1", "D1", "D1"],
            "tissue": "liver",
            "timepoint": ["pre", "post", "pre", "post"],
            "sample_id": ids[:2] * 2,
            "unstim_sample_id": ["u1", "u2", "u1", "u2"],
            "population": ["NK", "NK", "CD56bright", "CD56bright"],
            "areg_net": [2.5, 0.2, 4.1, np.nan],
            "areg_net_ci_low": [0.8, -0.5, 2.0, np.nan],
            "areg_net_ci_high": [4.2, 0.9, 6.3, np.nan],
            "ri": [0.7, 0.4, 0.8, np.nan],
            "ifng_net": [1.0, 3.0, 0.9, np.nan],
            "pct_nkg2d_stim": [60.0, 55.0, 40.0, 42.0],
            "cd107a_net": [3.0, 5.0, 1.0, 2.0],
            "residency_fraction": [0.6, 0.5, 0.8, 0.7],
            "areg_responsive": [True, False, True, False],
            "repair_biased": [True, False, True, False],
            "caveat": "AREG+ NK is a hypothesis",
        }
    )
    flags = scores[
        [
            "batch",
            "donor",
            "tissue",
            "timepoint",
            "sample_id",
            "unstim_sample_id",
            "population",
            "areg_responsive",
            "repair_biased",
        ]
    ].copy()
    flags["rule"] = ["REPAIR_BIASED", "", "REPAIR_BIASED", ""]
    flags["failed_rules"] = ["", "CI_LOWER_NOT_ABOVE_ZERO;NET_BELOW_MIN", "", "EVENTS_BELOW_MIN"]
    flags["message"] = [
        "all rules passed",
        "CI lower bound -0.50 <= 0",
        "all rules passed",
        "events 58/900 < 100" + (EVIL if hostile else ""),
    ]
    flags["areg_net"] = scores["areg_net"]
    flags["areg_net_ci_low"] = scores["areg_net_ci_low"]
    flags["areg_net_ci_high"] = scores["areg_net_ci_high"]
    flags["control_passed"] = pd.array([True, True, True, pd.NA], dtype="boolean")
    flags["caveat"] = "AREG+ NK is a hypothesis"
    controls = pd.DataFrame(
        {
            "batch": ["b1"],
            "control_source": ["positive_control tube"],
            "control_sample_id": ["ilc_ctrl"],
            "net": [5.2],
            "ci_low": [3.1],
            "ci_high": [7.4],
            "passed": [True],
            "failed_rules": [""],
        }
    )
    comparisons = pd.DataFrame(
        {
            "population": ["NK"],
            "tissue": ["liver"],
            "n_pairs": [1],
            "median_difference": [-2.3],
            "p_value": [1.0],
            "p_adjusted": [1.0],
        }
    )
    consistency = pd.DataFrame(
        {
            "file": ["D2_blood_post.fcs"],
            "field": ["$P7S"],
            "value": ["CD16 " + EVIL],
            "reference": ["CD16"],
            "resolution": ["mapped by alias table"],
        }
    )
    assignments = pd.DataFrame(
        {"sample_id": np.repeat(ids, 2000), "metacluster": np.tile(["1", "2", "3", "10"], 2000)}
    )
    figures: dict = {f"gating_{s}": gating_svg_figure(i, s) for i, s in enumerate(ids)}
    heat = Figure(figsize=(4, 2.5))
    heat.subplots().imshow(np.arange(12).reshape(3, 4))
    figures["cluster_heatmap"] = heat
    repair = Figure(figsize=(4, 2.5))
    repair.subplots().bar(["NK", "CD56bright"], [2.5, 4.1])
    figures["repair_profile"] = repair
    if hostile:
        odd = Figure(figsize=(2, 2))
        odd.subplots().plot([0, 1], [0, 1])
        figures[EVIL] = odd
    provenance = {
        "nkflow_version": "0.1.0",
        "versions": {"numpy": "2.0", "pandas": "2.3", "flowkit": "1.3.2"},
        "templates": [{"name": "human_nk", "hash": "ab" * 32}],
        "inputs": {f: hashlib.sha256(f.encode()).hexdigest() for f in meta["file"]},
        "scoring": {
            "min_net": 1.0,
            "min_areg_events": 10,
            "min_events": 100,
            "ri_cut": 0.5,
            "require_positive_control": True,
            "control_population": "ILC",
        },
    }
    caveats = (
        "Read these first.\n1. Anti-AREG clones for flow have little independent\n"
        "validation.\n2. PMA/ionomycin is supraphysiological." + (EVIL if hostile else "")
    )
    return {
        "tables": {
            "status": status,
            "qc": qc,
            "populations": populations,
            "thresholds": thresholds,
            "clusters": clusters,
            "cluster_medians": cluster_medians,
            "scores": scores,
            "flags": flags,
            "controls": controls,
            "comparisons": comparisons,
            "consistency": consistency,
            "cluster_assignments": assignments,
            "counts": populations[["sample_id", "population", "count"]],
        },
        "metadata": meta,
        "figures": figures,
        "config": config_to_dict(RunConfig()),
        "provenance": provenance,
        "caveats": caveats,
    }


class TagCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parse(html: str) -> TagCollector:
    parser = TagCollector()
    parser.feed(html)
    parser.close()
    return parser


@pytest.fixture(scope="module")
def hostile_html() -> str:
    return render_html(**build_inputs(hostile=True))


def test_hostile_strings_stay_text(hostile_html):
    doc = parse(hostile_html)
    tags = {t for t, _ in doc.tags}
    assert tags <= ALLOWED_TAGS, tags - ALLOWED_TAGS
    assert "script" not in tags and "i" not in tags
    for tag, attrs in doc.tags:
        assert not any(k.startswith("on") for k in attrs), (tag, attrs)
        if tag == "img":
            assert attrs["src"].startswith(
                ("data:image/png;base64,", "data:image/svg+xml;charset=utf-8,")
            )
    text = "".join(doc.text)
    # the hostile values are shown, literally, as text
    assert EVIL in text
    assert EVIL_ID in text
    assert EVIL_PNS in text
    assert "liver<i>" in text
    assert "<script>" not in hostile_html.lower()


def test_self_contained_and_images_valid(hostile_html):
    doc = parse(hostile_html)
    imgs = [a for t, a in doc.tags if t == "img"]
    # 4 gating, heatmap, repair, hostile-named, 2 population figures
    assert len(imgs) == 9
    formats = []
    for attrs in imgs:
        image = decode_data_uri(attrs["src"])
        formats.append(figure_format(image))
        assert image_size(image) == (int(attrs["width"]), int(attrs["height"]))
        assert image_size(image)[0] > 50
        if formats[-1] == "svg":  # the gate grids: well formed, no script, hostile text as text
            root = ET.fromstring(image)
            assert not [e for e in root.iter() if e.tag.endswith("script")]
            assert EVIL_PNS in [t.text for t in root.iter(f"{SVG_NS}text")]
            # self-contained too: embedded images only, no URL but the namespace name
            assert all(e.get("href").startswith("data:image/png;base64,")
                       for e in root.iter(f"{SVG_NS}image"))  # fmt: skip
            assert b"http" not in image.replace(b'xmlns="http://www.w3.org/2000/svg"', b"")
    assert formats.count("svg") == 4 and formats.count("png") == 5
    # the page outside the (checked) SVG documents
    page = re.sub(r'src="data:image/svg\+xml[^"]*"', "", hostile_html)
    for tag, attrs in doc.tags:
        for key in ("src", "href"):
            value = attrs.get(key)
            if value is not None:
                assert value.startswith(("data:", "#")), (tag, key, value[:60])
    assert "http://" not in page and "https://" not in page
    assert "@import" not in hostile_html and "url(" not in hostile_html
    csp = [a for t, a in doc.tags if t == "meta" and a.get("http-equiv")]
    assert "script-src" not in csp[0]["content"] and "default-src 'none'" in csp[0]["content"]


def test_sections_content(hostile_html):
    text = "".join(parse(hostile_html).text)
    assert KEY_CAVEAT in text
    assert "Anti-AREG clones for flow have little independent validation." in text
    for heading in (
        "Batch overview",
        "Gating",
        "Population frequencies",
        "Clusters",
        "Repair profile",
        "Methods",
        "Provenance",
    ):
        assert heading in text
    # failures listed with reasons
    assert "truncated-data" in text and "QC kept 3% of events" in text
    assert "2 file(s) failed" in text
    assert "2 population × tube rows (2 populations) flagged" in text
    assert "fmo_AREG.fcs" in text and "ab" * 32 in text
    # rule codes explained, controls, comparisons and batch consistency shown
    assert "CI_LOWER_NOT_ABOVE_ZERO" in text and "confidence interval of AREG_net" in text
    assert "Positive controls" in text and "ilc_ctrl" in text
    assert "Comparisons" in text and "median_difference" in text
    assert "Batch consistency" in text and "mapped by alias table" in text
    # per-event tables are listed, not rendered
    assert "cluster_assignments: 8,000 rows in tables/cluster_assignments.csv" in text
    assert "Large tables (not shown)" in text
    assert "1 per-sample thresholds (1 sample;" in text and "density:debris" in text
    assert "analysed file(s) came with warnings" not in text
    # how the tubes pair, as nkflow check says it (the broken file is the one unstim tube)
    assert "pairing: 5 stimulated tube(s), 1 with their unstimulated tube; 4 without any" in text
    assert "does not read that look like its own: 'plate' -> 'batch'" in text


def test_flag_summary_simple_schema():
    inputs = build_inputs(hostile=False)
    flags = pd.DataFrame(
        {
            "population": ["NK", "ILC"],
            "pair": ["D1 pre", "D1 post"],
            "flag": ["AREG-responsive"] * 2,
            "passed": [False, False],
            "rules": ["ci_low<=0", "min_events"],
            "reason": ["x", "y"],
        }
    )
    inputs["tables"] = {"flags": flags}
    inputs["figures"] = None
    text = "".join(parse(render_html(**inputs)).text)
    assert "No population was flagged." in text
    assert "ci_low<=0" in text


@pytest.mark.parametrize("empty_kind", ["missing", "none", "empty"])
def test_empty_tables_render(empty_kind):
    inputs = build_inputs(hostile=False)
    if empty_kind == "missing":
        tables = {}
    elif empty_kind == "none":
        tables = dict.fromkeys(inputs["tables"])
    else:
        tables = {k: v.iloc[0:0] for k, v in inputs["tables"].items()}
    html = render_html(
        tables=tables, metadata=None, figures=None, config={}, provenance={}, caveats=""
    )
    doc = parse(html)
    assert {t for t, _ in doc.tags} <= ALLOWED_TAGS
    text = "".join(doc.text)
    assert "No population table was produced." in text
    assert "No flags table was produced" in text
    assert KEY_CAVEAT in text
    assert not [t for t, _ in doc.tags if t == "img"]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> Path:
    """The same inputs written twice, to <root>/a and <root>/b."""
    root = tmp_path_factory.mktemp("two_runs")
    for run in ("a", "b"):
        write_report(root / run, **build_inputs(), title="Liver NK <batch 1>")
    return root


def test_write_report_files_and_byte_identical(two_runs):
    a, b = two_runs / "a", two_runs / "b"
    paths = [a / "report.html"]
    files_a = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    for name in (
        "status",
        "qc",
        "populations",
        "thresholds",
        "clusters",
        "cluster_medians",
        "scores",
        "flags",
    ):
        assert f"tables/{name}.csv" in files_a and f"tables/{name}.parquet" in files_a
    images = [f for f in files_a if f.startswith("figures/")]
    assert "figures/populations_heatmap.png" in images
    assert len(images) == 9
    # the gate grids keep their format (SVG), the matplotlib figures are PNG
    svgs = [f for f in images if f.endswith(".svg")]
    assert len(svgs) == 4 and all(f.startswith("figures/gating_") for f in svgs)
    assert "figures/gating_D2_blood_pre.svg" in svgs
    # the hostile figure name became a safe single path component inside figures/
    for f in images:
        assert (a / f).resolve().parent == (a / "figures").resolve()
    assert not [p for p in a.rglob("*") if p.name.startswith(".") and p.suffix == ".tmp"]
    assert paths[0].is_file()
    assert "Liver NK &lt;batch 1&gt;" in paths[0].read_text(encoding="utf-8")


def test_tables_round_trip(two_runs):
    inputs = build_inputs()
    tmp_path = two_runs / "a"
    for name, table in inputs["tables"].items():
        back_pq = pd.read_parquet(tmp_path / "tables" / f"{name}.parquet")
        pd.testing.assert_frame_equal(back_pq, table.reset_index(drop=True), check_dtype=False)
        back_csv = pd.read_csv(
            tmp_path / "tables" / f"{name}.csv", keep_default_na=False, na_values=[""]
        )
        assert list(back_csv.columns) == list(table.columns)
        assert len(back_csv) == len(table)
    pops = pd.read_csv(tmp_path / "tables" / "populations.csv")
    np.testing.assert_allclose(
        pops["percent_of_parent"], inputs["tables"]["populations"]["percent_of_parent"], rtol=1e-9
    )


def test_thumbnail_markup_is_pure_css(hostile_html):
    doc = parse(hostile_html)
    inputs = [a for t, a in doc.tags if t == "input"]
    assert inputs and all(a.get("type") == "checkbox" for a in inputs)
    assert "label.zoom input:checked+img" in hostile_html
    ids = [a["id"] for t, a in doc.tags if "id" in a]
    assert len(ids) == len(set(ids))


def test_base64_is_standard(hostile_html):
    doc = parse(hostile_html)
    srcs = [a["src"] for t, a in doc.tags if t == "img" and a["src"].startswith("data:image/png")]
    assert srcs
    for src in srcs:
        payload = src.split(",", 1)[1]
        assert base64.b64encode(base64.b64decode(payload)).decode() == payload


def test_write_report_rejects_non_tables(tmp_path: Path):
    with pytest.raises(TypeError, match="populations"):
        write_report(
            tmp_path,
            tables={"populations": [1, 2]},
            metadata=None,
            figures=None,
            config={},
            provenance={},
            caveats="",
        )


HOSTILE_TEXT = st.lists(
    st.sampled_from(
        [
            *"<>\"'&/=;:$\\ \x00\x07\n\tab\u202e\ud800é中",
            "<script>",
            "</td>",
            "<!--",
            "]]>",
            "javascript:",
            "onerror=",
            "<img src=x>",
        ]
    ),
    max_size=10,
).map("".join)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sample_id=HOSTILE_TEXT,
    marker=HOSTILE_TEXT,
    tissue=HOSTILE_TEXT,
    title=HOSTILE_TEXT,
    table_name=HOSTILE_TEXT,
)
def test_any_text_stays_text(sample_id, marker, tissue, title, table_name):
    status = pd.DataFrame(
        {
            "sample_id": [sample_id],
            "file": [sample_id + ".fcs"],
            "status": ["parse-failed"],
            "reason_code": [marker],
            "message": [tissue],
            "n_events": [0],
        }
    )
    meta = pd.DataFrame({"sample_id": [sample_id], "tissue": [tissue], "timepoint": [marker]})
    pops = pd.DataFrame(
        {
            "sample_id": [sample_id],
            "population": [marker],
            "parent": [tissue],
            "count": [5],
            "parent_count": [10],
            "percent_of_parent": [50.0],
            "low_events": [True],
        }
    )
    flags = pd.DataFrame(
        {"population": [marker], "sample_id": [sample_id], "passed": [True], "reason": [tissue]}
    )
    html = render_html(
        tables={
            "status": status,
            "populations": pops,
            "flags": flags,
            table_name or "x": pd.DataFrame({marker or "c": [sample_id]}),
        },
        metadata=meta,
        figures=None,
        config={"panel": marker},
        provenance={"versions": {marker: tissue}, "templates": {sample_id: marker}},
        caveats=tissue,
        title=title,
        population_plots=False,
    )
    html.encode("utf-8")  # always encodable (lone surrogates replaced)
    doc = parse(html)
    assert {t for t, _ in doc.tags} <= ALLOWED_TAGS
    for _, attrs in doc.tags:
        assert not any(k.startswith("on") for k in attrs)
        for key in ("src", "href"):
            if attrs.get(key) is not None:
                assert attrs[key].startswith(("data:image/png;base64,", "#"))
    assert html.count("<section ") == len([t for t, _ in doc.tags if t == "section"])


def test_tables_written_first_give_the_same_report(two_runs, tmp_path: Path, monkeypatch):
    """A run writes its tables while the last figures are drawn, then only the report."""
    inputs = build_inputs()
    write_tables(tmp_path, inputs["tables"])
    written = sorted(p.name for p in (tmp_path / "tables").iterdir())
    monkeypatch.setattr(writer, "write_table", _no_table_write)
    write_report(tmp_path, **inputs, title="Liver NK <batch 1>", tables_written=True)
    a = two_runs / "a"
    for rel in [*(f"tables/{name}" for name in written), "report.html"]:
        assert (tmp_path / rel).read_bytes() == (a / rel).read_bytes(), rel
    assert written == sorted(p.name for p in (a / "tables").iterdir())


def _no_table_write(*args, **kwargs):
    raise AssertionError("write_report wrote a table the caller had written")


def test_population_figures_by_name():
    tables = build_inputs()["tables"]
    both = population_figures(tables["populations"], None)
    assert list(both) == list(POPULATION_FIGURES)
    one = population_figures(tables["populations"], None, names=(POPULATION_FIGURES[1],))
    assert list(one) == [POPULATION_FIGURES[1]]
    with pytest.raises(ValueError, match="populations_pie"):
        population_figures(tables["populations"], None, names=("populations_pie",))
