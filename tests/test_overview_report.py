"""The batch overview surfaces what a reviewer of a 62-tube batch had to dig for: failed
files (red, listed first), a tube whose QC loss is unusual for the batch, every threshold
that disagrees with its sample's own valley, sample ids linked to their gating plots, the
FMO tubes in the event cards, and the batch named in the page title."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from nkflow.report.figures import FigureItem
from nkflow.report.gallery import sample_anchors
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
    assert "3 threshold(s) disagree with the sample's own valley" in html
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
