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


def test_library_input_errors_are_nkflow_types_naming_the_file(tmp_path) -> None:
    """h5py, pandas and a bare ValueError reached the user without nkflow's type or path."""
    import pandas as pd

    import nkflow as nk

    not_h5 = tmp_path / "x.csv"
    not_h5.write_text("a,b\n1,2\n")
    with pytest.raises(ex.FCSReadError, match=r"x\.csv: not a readable \.h5ad") as err:
        nk.io.read_h5ad(not_h5)
    assert isinstance(err.value, OSError)
    with pytest.raises(ex.FCSReadError, match=r"nope\.h5ad: no such file"):
        nk.io.read_h5ad(tmp_path / "nope.h5ad")
    with pytest.raises(ex.MetadataError, match=r"nope\.csv.*\n.*does not exist"):
        nk.tl.score(pd.DataFrame(), tmp_path / "nope.csv")
    with pytest.raises(ex.MetadataError, match=r"nope_dir.*\n.*does not exist"):
        nk.run(tmp_path / "nope_dir", tmp_path / "out")
    assert not (tmp_path / "out").exists()
