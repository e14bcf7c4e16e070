"""Report wording: counts that agree between sections, and words that fit the batch."""

from __future__ import annotations

import pandas as pd
import pytest

from nkflow.config import RunConfig
from nkflow.report import methods_text
from nkflow.report.html import render_html
from nkflow.report.sections import samples_table
from nkflow.tl.caveats import caveats_text


def _qc() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sample_id": ["a", "b", "fmo1"],
            "role": ["", "", "fmo:AREG"],
            "n_in": [1000, 1000, 2000],
            "n_out": [990, 970, 2000],
        }
    )


def test_methods_qc_counts_name_their_tubes_and_agree_with_the_overview():
    """Methods said "Across the batch" for the analysed tubes alone (2.00% here) while the
    overview card counts the FMO tubes too (1.00%)."""
    text = methods_text(RunConfig(), {}, {"qc": _qc()})
    assert "Across the batch" not in text
    assert "Across the 2 analysed tube(s) 40 of 2,000 events (2.00%) were removed" in text
    assert "With the 1 FMO tube(s) read for their cut-offs, 40 of 4,000 events (1.00%)" in text


@pytest.mark.parametrize(("species", "says_cd16"), [("mouse", False), ("human", True)])
def test_the_rendered_caveats_follow_the_sheets_species(species, says_cd16):
    """The report's caveats box for a mouse batch carried 'sheds CD16 and CD62L'."""
    meta = pd.DataFrame({"sample_id": ["a"], "species": [species]})
    html = render_html(
        tables={}, metadata=meta, figures={}, config=RunConfig(), provenance={},
        caveats=caveats_text(), population_plots=False,
    )  # fmt: skip
    assert ("sheds CD16 and CD62L" in html) == says_cd16


def test_the_files_table_shows_kept_percent_beside_status():
    """The lead says kept % is highlighted, but the column sat off-screen at 1280 px."""
    status = pd.DataFrame({"sample_id": ["a", "b"], "file": ["a.fcs", "b.fcs"],
                           "status": ["ok", "ok"], "reason_code": ["", ""]})  # fmt: skip
    cols = list(samples_table(status, _qc(), None).columns)
    assert cols.index("kept_%") == cols.index("status") + 1


def test_the_responders_meaning_sits_under_its_row():
    """The long meaning column pushed the responders' numbers off a 1280 px screen."""
    from nkflow.report.findings import _meaning_under_rows

    table = pd.DataFrame({"population": ["NK", "CD56bright"], "RI": [0.1, 0.2],
                          "meaning in this context": ["long <reading>", ""]})  # fmt: skip
    html = _meaning_under_rows(table, source="tables/flags.csv")
    assert "<th>meaning in this context</th>" not in html
    assert html.count('<tr class="meaning"><td colspan="2">long &lt;reading&gt;</td></tr>') == 1
    assert html.index("NK</td>") < html.index("long &lt;") < html.index("CD56bright</td>")
