"""Report wording: counts that agree between sections, and words that fit the batch."""

from __future__ import annotations

import pandas as pd

from nkflow.config import RunConfig
from nkflow.report import methods_text


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
