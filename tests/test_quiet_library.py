"""The library's own steps raise no third-party warnings (pandas, numpy) at the user."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from nkflow._frames import concat_rows
from nkflow.pipeline.tables import batch_thresholds_table


def _parts() -> tuple[pd.DataFrame, pd.DataFrame]:
    batch_level = pd.DataFrame(  # an FMO cut-off: no interval, no sample
        {"sample_id": [""], "marker": ["AREG"], "value": [1.5], "ci_low": [None],
         "ci_high": [None], "disagrees": [None], "n_events": [None]}
    )  # fmt: skip
    per_sample = pd.DataFrame(
        {"sample_id": ["s1", "s2"], "marker": ["CD56", "CD56"], "value": [2.0, 2.1],
         "ci_low": [1.9, 2.0], "ci_high": [2.1, 2.2], "disagrees": [False, True],
         "n_events": [500, 600]}
    )  # fmt: skip
    return batch_level, per_sample


def test_concat_rows_is_pd_concat_without_the_all_na_warning() -> None:
    a, b = _parts()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        expected = pd.concat([a, b], ignore_index=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = concat_rows([a, b])
        pd.testing.assert_frame_equal(got, expected)  # None stays None, NaN stays NaN


def test_thresholds_table_of_batch_and_sample_rows_warns_nothing() -> None:
    """The FMO rows have no interval: pandas warned about the all-NA columns."""
    a, b = _parts()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = batch_thresholds_table(a, b, {}, {})
    assert len(table) == 3 and table["ci_low"].dtype == np.float64


@pytest.mark.parametrize("n", [0, 1])
def test_concat_rows_of_few_frames(n: int) -> None:
    a, _ = _parts()
    frames = [a][:n]
    if not frames:
        with pytest.raises(ValueError):
            concat_rows(frames)
    else:
        pd.testing.assert_frame_equal(concat_rows(frames), a)
