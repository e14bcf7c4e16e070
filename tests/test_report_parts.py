"""Tests of the report's parts: formatting, escaping, PNG encoding, methods text, plots."""

from __future__ import annotations

import io
import urllib.parse

import numpy as np
import pandas as pd
import pytest
from test_report import EVIL, build_inputs, gating_figure, gating_svg_figure

from nkflow.config import RunConfig, config_to_dict, replace_values
from nkflow.pl import populations as plpop
from nkflow.report import esc, figure_png, figure_section, methods_text
from nkflow.report.figures import (
    _URI_SAFE,
    _percent_encode,
    data_uri,
    decode_data_uri,
    figure_bytes,
    figure_format,
    image_size,
    png_size,
    svg_size,
)
from nkflow.report.tables import fmt_value, parquet_safe


def test_parquet_safe_mixed_object_columns():
    table = pd.DataFrame(
        {"a": ["x", 1, None], "b": [1, 2.5, None], 3: ["u", "v", "w"]}, dtype=object
    )
    safe = parquet_safe(table)
    assert list(safe.columns) == ["a", "b", "3"]
    assert safe["a"].tolist() == ["x", "1", None]
    assert safe["b"].dtype.kind == "f"


def test_figure_png_deterministic_without_software_chunk():
    png1 = figure_png(gating_figure(3, "x"))
    png2 = figure_png(gating_figure(3, "x"))
    assert png1 == png2
    assert b"Software" not in png1 and b"matplotlib" not in png1.lower()
    assert figure_png(png1) == png1
    with pytest.raises(TypeError):
        figure_png(b"GIF89a")


def test_figure_bytes_keeps_png_and_svg_and_rejects_others():
    svg = gating_svg_figure(0, EVIL)
    png = figure_png(gating_figure(0, "x"))
    assert figure_bytes(svg) == svg and figure_format(svg) == "svg"
    assert figure_bytes(png) == png and figure_format(png) == "png"
    assert figure_bytes(gating_figure(0, "x")) == png
    assert svg_size(svg) == image_size(svg) == (520, 230)
    assert image_size(png) == png_size(png) and png_size(png)[0] > 0
    for data in (svg, png):
        assert decode_data_uri(data_uri(data)) == data
    assert svg_size(b'<?xml version="1.0"?>\n<svg width="12.4px" height="7">') == (12, 7)
    assert svg_size(b'<svg viewBox="0 0 1 1">') == (0, 0)
    for bad in (b"GIF89a", b"<html><svg>", b""):
        with pytest.raises(TypeError, match="neither a PNG"):
            figure_bytes(bad)
    with pytest.raises(TypeError, match="SVG bytes"):
        figure_bytes("<svg/>")  # text, not bytes
    with pytest.raises(ValueError, match="not a PNG or SVG data URI"):
        decode_data_uri("data:image/gif;base64,R0lG")


@pytest.mark.parametrize(
    "svg",
    [
        b"",
        bytes(range(256)),
        '<svg width="10" height="5"><text>CD56 µ &amp; "x" <\'y\'></text></svg>'.encode(),
        np.random.default_rng(7).integers(0, 256, 5_000, dtype=np.uint8).tobytes(),
    ],
    ids=["empty", "every_byte", "markup", "random"],
)
def test_svg_percent_encoding_equals_urllib_quote(svg: bytes) -> None:
    """The vectorised encoder writes what urllib.parse.quote writes, and it decodes back."""
    expected = urllib.parse.quote(svg, safe=_URI_SAFE)
    assert _percent_encode(svg) == expected
    assert not set('"&<>') & set(expected)
    assert urllib.parse.unquote_to_bytes(expected) == svg


@pytest.mark.parametrize(
    ("name", "section", "caption"),
    [
        ("gating_S1", "gating", "S1"),
        ("gating:../x", "gating", "../x"),
        (
            "cluster_heatmap",
            "clusters",
            "Median marker expression per metacluster: the median "
            "of the pooled training cells (the table below gives the median over tubes of each "
            "tube's median instead)",
        ),
        ("cluster_umap", "clusters", "umap"),
        ("Repair-profile", "repair", "profile"),
        ("populations", "populations", "populations"),
        ("gatekeeper", "other", "gatekeeper"),
        (EVIL, "other", EVIL),
    ],
)
def test_figure_section(name, section, caption):
    assert figure_section(name) == (section, caption)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (12345, "12,345"),
        (0.012345, "0.0123"),
        (45.678, "45.7"),
        (1234.5, "1,234"),
        (float("nan"), "–"),
        (None, "–"),
        (True, "yes"),
        (np.int64(7), "7"),
        (0.0, "0"),
        (2.5e7, "2.5e+07"),
    ],
)
def test_fmt_value(value, text):
    assert fmt_value(value) == text


def test_text_blocks_numbered_lists_and_paragraphs():
    from nkflow.report.repair import text_blocks

    html = text_blocks("Intro line\ncontinues.\n\n1. first\nwraps\n2) second <b>\n\nTail.")
    assert html == (
        "<p>Intro line continues.</p><ol><li>first wraps</li>"
        "<li>second &lt;b&gt;</li></ol><p>Tail.</p>"
    )


def test_esc_controls_and_surrogates():
    assert esc("a\x00b") == "a\ufffdb"
    assert esc("\udcff<") == "?&lt;"
    assert esc("'\"&") == "&#x27;&quot;&amp;"


def test_methods_text_names_every_parameter():
    inputs = build_inputs(hostile=False)
    cfg = config_to_dict(RunConfig())
    text = methods_text(cfg, inputs["provenance"], inputs["tables"])
    for needle in (
        "logicle",
        "T = 262144",
        "W = 0.5",
        "M = 4.5",
        "A = 0",
        "spillover matrix stored in each FCS file",
        "time-based removal",
        "margin (saturated) events: on",
        "human_nk",
        "ab" * 32,
        "99.5th percentile",
        "200 resamples",
        "fewer than 100 events",
        "fmo (1)",
        "valley (1)",
        "fmo_AREG.fcs",
        "10×10",
        "k = 10",
        "random_state = 0",
        "20000 cells per sample",
        "≥ 1 percentage point;",
        "≥ 10 AREG+ events",
        "RI > 0.5",
        "positive-control population ILC",
        "nkflow 0.1.0",
        "flowkit 1.3.2",
        "6 FCS file(s)",
        "1 parse-failed",
    ):
        assert needle in text, needle
    removed = 50000 + 48000 + 61000 + 52000 + 40000 - (48900 + 47100 + 60020 + 50900 + 1200)
    assert f"{removed:,}" in text


@pytest.mark.parametrize("bootstrap", [0, 50])
def test_methods_text_says_whether_thresholds_have_intervals(bootstrap: int) -> None:
    text = methods_text(replace_values(RunConfig(), {"gating.bootstrap": bootstrap}), {}, {})
    if bootstrap:
        assert "bootstrap 95% interval of 50 resamples" in text
        assert "order-statistic 95% interval" in text
        assert "no threshold intervals" not in text
    else:
        assert "no threshold intervals were computed (bootstrap = 0)" in text
        assert "not checked against each sample's own valley" in text
        assert "resamples" not in text and "95% interval of that percentile" not in text


@pytest.mark.parametrize(
    ("setting", "used", "expected"),
    [
        (0, 2, "ran on up to 2 local worker processes (one per core)"),
        (0, 1, "ran in one process (one per core)"),
        (3, 3, "ran on up to 3 local worker processes;"),
        (1, None, "ran in one process;"),
        (0, None, "ran on one local worker process per core"),
    ],
)
def test_methods_text_names_the_workers_the_run_used(setting, used, expected) -> None:
    cfg = replace_values(RunConfig(), {"execution.workers": setting})
    provenance = {} if used is None else {"execution": {"workers": used, "scheduler": ""}}
    text = methods_text(cfg, provenance, {})
    assert expected in text
    assert "0 local worker" not in text


@pytest.mark.parametrize(
    ("applied", "expected"),
    [
        ([], "timepoint order: none (the sheet gives no timepoints)"),
        (["pre", "post"], "timepoint order: pre, post (none configured: the natural order)"),
        (None, "timepoint order: none configured"),
    ],
)
def test_methods_text_states_the_timepoint_order_applied(applied, expected) -> None:
    meta = pd.DataFrame({"sample_id": ["a"], "species": ["human"]})
    if applied is not None:
        meta.attrs["timepoint_order"] = applied
    text = methods_text(RunConfig(), {}, {}, metadata=meta)
    assert expected in text
    assert "timepoint order: ." not in text


def _thresholds(rows: list[tuple[str, str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["sample_id", "tissue", "batch", "rule"])


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (
            [("s1", "", "", "valley"), ("s2", "", "", "density:debris")],
            "no FMO control or batch pool set a threshold: all 2 threshold(s) were set per "
            "sample from its own events",
        ),
        (
            [("", "", "", "fmo p99.5"), ("s1", "", "", "valley")],
            "1 threshold(s) from FMO controls were set once for the whole run (the sheet gives "
            "no tissue or batch); 1 threshold(s) were set per sample",
        ),
        (
            [("", "liver", "H1", "fmo p99.5"), ("", "blood", "H1", "valley (batch pool)")],
            "1 threshold(s) from FMO controls were set once per tissue and batch (liver/H1); "
            "1 threshold(s) from the batch pool were set once per batch, from the events of all "
            "its tissues pooled (H1: blood).",
        ),
        (  # the pool's one valley is written once per tissue: it was read as per tissue
            [
                ("", "blood", "FA", "valley (batch pool)"),
                ("", "liver", "FA", "valley (batch pool)"),
                ("", "lung", "FA", "valley (batch pool)"),
            ],
            "In this batch 1 threshold(s) from the batch pool were set once per batch, from the "
            "events of all its tissues pooled (FA: blood, liver, lung).",
        ),
        (
            [("", "", "B2", "fmo p99.5"), ("", "", "B1", "fmo p99.5")],
            "were set once per batch (B1, B2)",
        ),
        (  # a stimulated tube's row for its partner's cut-off: not from its own events
            [
                ("", "", "", "fmo p99.5"),
                ("s1", "", "", "valley"),
                ("s2", "", "", "unstimulated tube: quantile (fmo fallback)"),
            ],
            "; 1 threshold(s) were set per sample from its own events and 1 taken by a "
            "stimulated tube from its unstimulated partner.",
        ),
    ],
)
def test_methods_text_says_where_this_batch_set_its_thresholds(rows, expected) -> None:
    text = methods_text(RunConfig(), {}, {"thresholds": _thresholds(rows)})
    assert expected in text
    assert "per batch and tissue from the data" not in text


def test_methods_text_counts_only_the_cut_offs_a_sample_set_itself() -> None:
    """FlowAtlas: '24 set per sample' where 8 CD3 valleys were, the other 16 being the
    pool's cut-offs applied to each sample; CytoNorm: 'all 72' with 6 never set."""
    rows = pd.DataFrame(
        [
            ("", "liver", "FA", "valley (batch pool)", "batch_pool", 0.5),
            ("s1", "liver", "FA", "valley (batch pool)", "batch_pool", 0.5),
            ("s2", "liver", "FA", "valley (batch pool)", "batch_pool", 0.5),
            ("s1", "liver", "FA", "valley", "sample_valley", 0.3),
            ("s2", "liver", "FA", "valley", "sample_valley", 0.31),
            ("s2", "liver", "FA", "density:upper_cluster", "", float("nan")),
        ],
        columns=["sample_id", "tissue", "batch", "rule", "evidence", "value"],
    )
    text = methods_text(RunConfig(), {}, {"thresholds": rows})
    assert "; 2 threshold(s) were set per sample from its own events; 1 could not be set" in text


def test_methods_text_of_a_mouse_run_has_no_cd56_read_out() -> None:
    meta = pd.DataFrame({"sample_id": ["a"], "species": ["mouse"]})
    text = methods_text(RunConfig(), {}, {}, metadata=meta)
    assert "scoring_mouse.toml" in text
    assert "The tubes were scored as mouse" in text
    assert "CD56bright AREG net" not in text and "so the CD56bright versus" not in text
    human = methods_text(RunConfig(), {}, {}, metadata=meta.assign(species="human"))
    assert "consistency read-out: CD56bright AREG net" in human


def test_methods_text_arcsinh_and_user_matrix():

    cfg = replace_values(
        RunConfig(),
        {
            "transform.method": "arcsinh",
            "transform.cofactor": 5,
            "compensation.matrix": "comp/matrix.csv",
            "clustering.enabled": False,
        },
    )
    text = methods_text(cfg, {}, {})
    assert "arcsinh transform with cofactor 5" in text
    assert "comp/matrix.csv" in text
    assert "Clustering was switched off" in text


def test_population_plots_handle_hostile_and_empty():
    inputs = build_inputs()
    pops, meta = inputs["tables"]["populations"], inputs["metadata"]
    for fig in (
        plpop.frequencies(pops, meta),
        plpop.frequency_heatmap(pops, meta),
        plpop.frequencies(pops.iloc[0:0], meta),
        plpop.frequencies(pops, None),
        plpop.frequency_heatmap(pops, meta, show=["nope"]),
    ):
        assert png_size(figure_png(fig))[0] > 0
    labels = plpop.group_labels(pops, meta)
    assert set(labels) == {"liver · pre", "liver<i> · post", "blood · pre", "blood · post"}


def test_the_qc_sentence_says_what_it_counts():
    """'QC removed events from 33 of 33 file(s)' sat under '57 analysed': the FMO tubes
    were left out of the count without a word. They are QC rows of their own now (role
    ``fmo:``), counted apart from the analysed tubes."""
    from nkflow.report.sections import _qc_verdict

    qc = pd.DataFrame({"sample_id": ["a", "b", "f"], "role": ["unstim", "stim", "fmo:AREG"],
                       "n_in": [1000, 1000, 500], "n_out": [990, 1000, 400]})  # fmt: skip
    text = _qc_verdict(qc)
    assert "from 1 of the 2 analysed tube(s), at most 1.0% (a)" in text
    assert "from 1 of the 1 FMO tube(s) read for their cut-offs, at most 20.0%" in text
    assert "FMO tubes go through the same QC" not in text


def test_the_qc_table_lists_the_fmo_tubes_read_for_their_cut_offs(tiny_run) -> None:
    """An FMO tube's QC (a clog removing a fifth of its events) was in no table."""
    qc = tiny_run.tables["qc"].set_index("sample_id")
    status = tiny_run.status.set_index("sample_id")
    fmo = status.index[status["role"].astype(str).str.startswith("fmo:")]
    assert len(fmo) and set(fmo) <= set(qc.index)
    assert (qc.loc[fmo, "role"].str.startswith("fmo:")).all()
    assert (qc.loc[fmo, "n_in"] >= qc.loc[fmo, "n_out"]).all()


def test_the_cluster_tables_give_the_cells_behind_each_percentage() -> None:
    """A CyTOF batch's abundance row read "37.5" for 3 of 8 cells and a metacluster's
    medians came from a dozen cells, with no count shown: each table now has its n."""
    from nkflow.report.sections import clusters_section

    medians = pd.DataFrame({
        "sample_id": ["a", "a", "b", "b"], "metacluster": [1, 1, 1, 2], "label": "x",
        "marker": ["CD56", "CD16", "CD56", "CD56"], "median": [0.5, 0.2, 0.6, 0.1],
        "n_cells": [3, 3, 5, 8],
    })  # fmt: skip
    clusters = pd.DataFrame({
        "sample_id": ["a", "b", "b"], "metacluster": [1, 1, 2], "count": [3, 5, 8],
        "percent": [100.0, 38.46, 61.54], "n_population": [3, 13, 13],
    })  # fmt: skip
    html = clusters_section({"cluster_medians": medians, "clusters": clusters}, [], [0])
    tables = pd.read_html(io.StringIO(html))
    by_cluster = tables[0].set_index("metacluster")["cells"].to_dict()
    assert by_cluster == {1: 8, 2: 8}  # a's 3 and b's 5 cells in metacluster 1
    assert tables[1].set_index("sample_id")["clustered cells"].to_dict() == {"a": 3, "b": 13}


@pytest.mark.parametrize("drawn", [True, False])
def test_the_medians_table_says_it_is_a_median_of_tube_medians(drawn) -> None:
    """CytoNorm: metacluster 1's CD7 read 3.40 in the heatmap (pooled training cells) and
    3.26 in the table (median of the tubes' medians): each now names its statistic."""
    from nkflow.report.figures import FigureItem
    from nkflow.report.sections import clusters_section

    medians = pd.DataFrame({
        "sample_id": ["a", "b", "c"], "metacluster": 1, "label": "x", "marker": "CD7",
        "median": [3.1, 3.26, 3.5], "n_cells": [1, 3, 5],
    })  # fmt: skip
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"/>'
    heat = [FigureItem("clusters_heatmap", "clusters", "", svg)] if drawn else []
    html = clusters_section({"cluster_medians": medians}, heat, [0])
    assert "a median of medians: each tube's median over its cells" in html
    assert "(of 3 tubes)" in html
    assert ("the median of the pooled training cells" in html) == drawn


@pytest.mark.parametrize(
    ("n_train", "grid", "expected"),
    [(332, (10, 10), "3.3 training cells per node"), (28_650, (10, 10), "286.5 training")],
    ids=["68983-mouse", "sample-data"],
)
def test_methods_say_how_many_cells_each_som_node_had(n_train, grid, expected):
    """68983.fcs gave 332 NK for a 10x10 map: ten metaclusters of 20-71 cells, which the
    Methods did not let a reader see."""
    from nkflow.report.methods_analysis import clustering_sentence

    fit = {"n_train": n_train, "xdim": grid[0], "ydim": grid[1], "markers": ["CD8", "NK1.1"]}
    assert expected in clustering_sentence({}, {"clustering": fit}, 0)
