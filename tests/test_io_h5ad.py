"""Gated containers to ``.h5ad`` and back, with ``uns["nkflow"]`` kept (nkflow.io.h5ad)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import nkflow as nk
from nkflow.io.h5ad import json_default


def test_a_gated_container_round_trips_with_its_records(gated_liver, tmp_path: Path) -> None:
    """``nk.io.write_h5ad`` leaves the container as it was, and ``read_h5ad`` gives back
    the same events, gates and records, which the tools read as before."""
    adata, _ = gated_liver
    before = _records(adata)
    path = nk.io.write_h5ad(adata, tmp_path / "liver.h5ad")
    assert _records(adata) == before
    assert set(adata.uns) == {"nkflow"}
    back = nk.io.read_h5ad(path)
    assert _records(back) == before and set(back.uns) == {"nkflow"}
    np.testing.assert_array_equal(back.X, adata.X)
    np.testing.assert_array_equal(back.layers["compensated"], adata.layers["compensated"])
    pd.testing.assert_frame_equal(back.obs, adata.obs, check_categorical=False)
    assert list(back.var["marker"]) == list(adata.var["marker"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pd.testing.assert_frame_equal(nk.tl.count_positive(back), nk.tl.count_positive(adata))


def _records(adata: ad.AnnData) -> str:
    return json.dumps(nk.io.nkflow_uns(adata), sort_keys=True, default=json_default)


def test_records_a_user_left_as_plain_python_are_written(gated_liver, tmp_path: Path) -> None:
    """A record put in ``uns["nkflow"]`` by hand as lists of dicts (as nkflow itself kept
    them before) is written by ``nk.io.write_h5ad`` in the forms AnnData reads back."""
    adata, _ = gated_liver
    mine = adata.copy()
    plain = nk.io.nkflow_uns(adata)
    mine.uns["nkflow"] = {**plain, "notes": [{"by": "me", "at": None}]}
    back = nk.io.read_h5ad(nk.io.write_h5ad(mine, tmp_path / "mine.h5ad"))
    assert nk.io.nkflow_record(back, "notes") == [{"by": "me", "at": None}]
    assert _records(back) == json.dumps(
        {**plain, "notes": [{"by": "me", "at": None}]}, sort_keys=True, default=json_default
    )


def test_a_view_and_a_plain_anndata_file_are_written_and_read(gated_liver, tmp_path) -> None:
    adata, _ = gated_liver
    view = adata[adata.obs["NK"].to_numpy(bool)]
    back = nk.io.read_h5ad(nk.io.write_h5ad(view, tmp_path / "nk.h5ad"))
    assert back.n_obs == int(adata.obs["NK"].sum()) and back.obs["NK"].all()
    plain = ad.AnnData(np.ones((3, 2), dtype=np.float32), uns={"note": "scanpy"})
    plain.write_h5ad(tmp_path / "plain.h5ad")
    read = nk.io.read_h5ad(tmp_path / "plain.h5ad")
    assert read.uns["note"] == "scanpy" and "nkflow" not in read.uns


def test_an_unwritable_destination_names_the_file(gated_liver, tmp_path: Path) -> None:
    adata, _ = gated_liver
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(nk.exceptions.OutputFolderError, match="file"):
        nk.io.write_h5ad(adata, blocker / "sub" / "x.h5ad")
