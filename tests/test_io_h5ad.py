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
    """``adata.write_h5ad`` cannot store the lists of records gating leaves in ``uns``;
    ``nk.io.write_h5ad`` does, leaves the container as it was, and ``read_h5ad`` gives
    back the same events, gates and records, which the tools read as before."""
    adata, _ = gated_liver
    before = json.dumps(adata.uns["nkflow"], sort_keys=True, default=json_default)
    path = nk.io.write_h5ad(adata, tmp_path / "liver.h5ad")
    assert json.dumps(adata.uns["nkflow"], sort_keys=True, default=json_default) == before
    assert set(adata.uns) == {"nkflow"}
    back = nk.io.read_h5ad(path)
    assert json.dumps(back.uns["nkflow"], sort_keys=True) == before
    np.testing.assert_array_equal(back.X, adata.X)
    np.testing.assert_array_equal(back.layers["compensated"], adata.layers["compensated"])
    pd.testing.assert_frame_equal(back.obs, adata.obs, check_categorical=False)
    assert list(back.var["marker"]) == list(adata.var["marker"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pd.testing.assert_frame_equal(nk.tl.count_positive(back), nk.tl.count_positive(adata))


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
