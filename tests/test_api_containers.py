"""Containers from other tools: a file read by plain anndata, an AnnData built by hand.

A gated container written by ``nk.io.write_h5ad`` and read by ``anndata.read_h5ad`` (what
scanpy does) carries nkflow's records as arrays and sorted dicts, and a file of an earlier
version as one JSON string, ``uns["nkflow_json"]``; an AnnData built by hand has its
markers as ``var_names`` and no ``var["marker"]``. The tools take them all as they take
nkflow's own containers.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import nkflow as nk
from nkflow.io.h5ad import JSON_KEY, json_default, nkflow_uns
from nkflow.tl.counts import COUNT_COLUMNS


def _counts(adata: ad.AnnData, **kwargs) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nk.tl.count_positive(adata, **kwargs)


def test_a_file_read_by_plain_anndata_counts_as_the_gated_sample(gated_liver, tmp_path: Path):
    """gate -> nk.io.write_h5ad -> anndata.read_h5ad -> count_positive: same counts, and
    no "no AREG threshold for tissue ''" warning (the records are read, not lost)."""
    adata, _ = gated_liver
    path = nk.io.write_h5ad(adata, tmp_path / "liver.h5ad")
    plain = ad.read_h5ad(path)
    assert JSON_KEY not in plain.uns
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        counts = nk.tl.count_positive(plain)
    assert not [w for w in caught if "threshold" in str(w.message)]
    expected = _counts(adata)
    assert counts.set_index("population").loc["NK", "n_areg"] is not pd.NA
    pd.testing.assert_frame_equal(counts, expected)


def _earlier_version_file(adata: ad.AnnData, path: Path) -> Path:
    """The file ``nk.io.write_h5ad`` wrote before the records were stored in h5ad's own
    forms: ``uns["nkflow"]`` as one JSON string, ``uns["nkflow_json"]`` (its code)."""
    record = json.dumps(nkflow_uns(adata), sort_keys=True, default=json_default)
    old = ad.AnnData(
        X=adata.X, obs=adata.obs.copy(), var=adata.var.copy(), layers=dict(adata.layers)
    )
    old.uns[JSON_KEY] = record
    old.strings_to_categoricals()
    old.write_h5ad(path)
    return path


def test_a_file_of_an_earlier_version_still_reads(gated_liver, tmp_path: Path):
    """Read by ``nk.io.read_h5ad`` or by plain ``anndata.read_h5ad`` then any tool: the
    JSON record becomes ``uns["nkflow"]`` again, the counts are the same, and the
    container is then written by AnnData itself."""
    adata, _ = gated_liver
    path = _earlier_version_file(adata, tmp_path / "old.h5ad")
    expected = json.dumps(nkflow_uns(adata), sort_keys=True, default=json_default)
    for back in (nk.io.read_h5ad(path), ad.read_h5ad(path)):
        pd.testing.assert_frame_equal(_counts(back), _counts(adata))
        assert JSON_KEY not in back.uns
        assert json.dumps(nkflow_uns(back), sort_keys=True, default=json_default) == expected
        back.write_h5ad(tmp_path / "again.h5ad")
        again = ad.read_h5ad(tmp_path / "again.h5ad")
        pd.testing.assert_frame_equal(_counts(again), _counts(adata))


def test_nkflow_uns_leaves_a_view_and_a_plain_container_as_they_are(gated_liver, tmp_path):
    adata, _ = gated_liver
    plain = ad.read_h5ad(_earlier_version_file(adata, tmp_path / "old.h5ad"))
    view = plain[:10]
    assert nkflow_uns(view)["sample"] == nkflow_uns(adata)["sample"]
    assert JSON_KEY in plain.uns and "nkflow" not in plain.uns
    other = ad.AnnData(np.zeros((2, 1), dtype=np.float32))
    assert nkflow_uns(other) == {} and "nkflow" not in other.uns
    other.uns[JSON_KEY] = "[1, 2]"
    with pytest.raises(nk.exceptions.ConfigError, match=JSON_KEY):
        nkflow_uns(other)


def _hand_built(adata: ad.AnnData) -> ad.AnnData:
    """The gated sample as another tool would hold it: markers as var_names, no var columns."""
    names = [m or c for c, m in zip(adata.var_names, adata.var["marker"], strict=True)]
    gates = [c for c in adata.obs.columns if adata.obs[c].dtype == bool]
    return ad.AnnData(
        X=np.asarray(adata.X, dtype=np.float64),
        obs=adata.obs[gates].copy(),
        var=pd.DataFrame(index=names),
    )


def test_a_hand_built_anndata_is_looked_up_by_its_var_names(gated_liver):
    """default_markers and count_positive read the markers from var_names, as channel_for
    does, instead of a bare KeyError 'marker' or "no channel or marker 'AREG'; available:
    ..., AREG, ..."."""
    adata, _ = gated_liver
    hand = _hand_built(adata)
    assert nk.tl.default_markers(hand) == nk.tl.default_markers(adata)
    # the hand-built sample has no tissue or id: the same cut-offs, for any sample
    blank = {"sample_id": "", "tissue": "", "batch": ""}
    thresholds = [{**t, **blank} for t in nkflow_uns(adata)["thresholds"]]
    columns = ["population", *COUNT_COLUMNS]
    got = _counts(hand, thresholds=thresholds)[columns]
    want = _counts(adata, thresholds=thresholds)[columns]
    pd.testing.assert_frame_equal(got, want)
    assert want.set_index("population").loc["NK", "n_areg"] > 0


def test_transform_takes_markers_as_the_gating_does(sample_data: Path):
    """channels=["CD56"] on a sample with CD56 transforms its channel (it said "no channel
    or marker 'CD56'"); an absent marker still names what the sample has."""
    adata = nk.read_fcs(sample_data / "human" / "D1_liver_pre_unstim.fcs")
    nk.pp.compensate(adata)
    channel = nk.io.channel_for(adata, "CD56")
    by_marker = nk.pp.transform(
        adata, channels=["CD56"], params={"CD56": {"W": 0.7}}, inplace=False
    )
    by_channel = nk.pp.transform(
        adata, channels=[channel], params={channel: {"W": 0.7}}, inplace=False
    )
    np.testing.assert_array_equal(by_marker.X, by_channel.X)
    assert by_marker.uns["nkflow"]["transform"] == by_channel.uns["nkflow"]["transform"]
    assert list(by_marker.uns["nkflow"]["transform"]["params"]) == [channel]
    with pytest.raises(nk.exceptions.ChannelNotFoundError, match=r"'CD999'.*CD56"):
        nk.pp.transform(adata, channels=["CD999"], inplace=False)
