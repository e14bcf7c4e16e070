"""Timepoints written as dates: calendar order when the writing gives one, said in the Methods."""

from __future__ import annotations

import pandas as pd
import pytest

from nkflow.config import RunConfig
from nkflow.pipeline.stages import timepoint_order
from nkflow.report.methods import methods_text


@pytest.mark.parametrize(
    ("sheet_order", "expected"),
    [
        (["11.03.2024", "04.03.2024"], ["04.03.2024", "11.03.2024"]),  # 13 > 12: day first
        (["13/03/2024", "04/03/2024"], ["04/03/2024", "13/03/2024"]),
        (["03/13/2024", "03/04/2024"], ["03/04/2024", "03/13/2024"]),  # month first only
        (["01.02.2025", "20.12.2024"], ["20.12.2024", "01.02.2025"]),  # across the year
        (["05.03.24", "04.03.24"], ["04.03.24", "05.03.24"]),  # both readings agree
        (["2024-04-05", "2024-03-12"], ["2024-03-12", "2024-04-05"]),  # ISO
        (["05.04.2024", "12.03.2024"], ["05.04.2024", "12.03.2024"]),  # ambiguous: the sheet's
        (["31.02.2024", "01.01.2024"], ["31.02.2024", "01.01.2024"]),  # not a date
        (["11.03.2024", "baseline"], ["11.03.2024", "baseline"]),  # a date beside a name
    ],
)
def test_dates_in_calendar_order_when_unambiguous(sheet_order, expected) -> None:
    assert timepoint_order(pd.DataFrame({"timepoint": sheet_order})) == expected


@pytest.mark.parametrize(
    ("sheet_order", "why"),
    [
        (["11.03.2024", "04.03.2024"], "(none configured: dates, in calendar order)"),
        (["05.04.2024", "12.03.2024"], "(none configured: sheet order: the dates read day "
         "first and month first give different orders"),
        (["post", "pre"], "(none configured: the natural order)"),
    ],
)  # fmt: skip
def test_methods_say_how_dates_were_ordered(sheet_order, why) -> None:
    meta = pd.DataFrame({"sample_id": ["a", "b"], "species": "human", "timepoint": sheet_order})
    meta.attrs["timepoint_order"] = timepoint_order(meta)  # as a run sets it
    text = methods_text(RunConfig(), {}, {}, metadata=meta)
    assert f"timepoint order: {', '.join(meta.attrs['timepoint_order'])} {why}" in text


@pytest.mark.parametrize(
    ("timepoints", "said"),
    [
        (["05.04.2024", "12.03.2024"], True),  # 5 Apr after 12 Mar, or 4 May before 3 Dec
        (["11.03.2024", "04.03.2024"], False),  # one order either way
        (["pre", "post"], False),
    ],
)
def test_the_plan_says_when_dates_keep_the_sheets_order(timepoints, said) -> None:
    """Ambiguous dates kept the sheet's order with a note only in the report's Methods;
    `check` and the run's plan said nothing before the first comparison."""
    from nkflow.io.pairing import batch_notes

    meta = pd.DataFrame({"timepoint": timepoints, "sample_id": ["a", "b"], "role": "sample"})
    notes = [n for n in batch_notes(meta) if n.startswith("timepoints:")]
    assert bool(notes) is said
    if said:
        assert "05.04.2024 is every comparison's baseline" in notes[0]
