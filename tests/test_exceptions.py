"""The exception hierarchy: built-in bases, messages, and survival across processes."""

from __future__ import annotations

import pickle

import pytest

from nkflow import exceptions as ex

CASES = [
    (ex.FCSReadError("/data/a.fcs", "truncated DATA"), OSError, "/data/a.fcs: truncated DATA"),
    (ex.ChannelNotFoundError("CD56", ["CD3", "CD16"], "s1"), KeyError, "available: CD3, CD16"),
    (
        ex.MetadataError("sheet.csv", ["row 2: duplicate id", "row 3: no file"]),
        ValueError,
        "2 problem(s)",
    ),
    (ex.GatingTemplateError("t.toml: gate 'NK': kind 'hexagon'"), ValueError, "hexagon"),
    (ex.PanelError("two channels claim CD56"), ValueError, "CD56"),
    (ex.BatchConsistencyError("b.fcs lacks CD56"), ValueError, "CD56"),
    (ex.ConfigError("transform.method = 'x'"), ValueError, "transform.method"),
    (ex.OutputExistsError("out exists"), FileExistsError, "out exists"),
    (ex.GatingError("no events"), RuntimeError, "no events"),
    (ex.SchedulerError("Dask scheduler tcp://h:1: refused"), ConnectionError, "tcp://h:1"),
]


@pytest.mark.parametrize(("error", "builtin", "text"), CASES, ids=lambda c: type(c).__name__)
def test_hierarchy_message_and_pickling(error: Exception, builtin: type, text: str) -> None:
    assert isinstance(error, ex.NkflowError)
    assert isinstance(error, builtin)
    assert text in str(error)
    # worker pools and Dask send errors between processes; a failing unpickle breaks the pool
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error)
    assert str(back) == str(error)
