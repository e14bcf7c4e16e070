"""Every container nkflow hands over is written by AnnData itself and works when read back.

``adata.write_h5ad`` stopped with "Can't implicitly convert non-string objects to strings"
once a sample was gated: ``uns["nkflow"]`` held lists of dicts. The records are now
stored in forms AnnData writes (:mod:`nkflow.io.records`). Each stage of the pipeline is
written with plain ``adata.write_h5ad`` / ``adata.write_zarr``, read back with plain
``anndata.read_h5ad`` / ``read_zarr``, and the next nkflow tool, which reads those records,
must give on the read-back container what it gives on the original (the golden result).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import nkflow as nk
from nkflow.exceptions import ConfigError
from nkflow.gating.gatingml_export import export_sample_gatingml
from nkflow.io.h5ad import json_default
from nkflow.io.records import from_native, to_native
from nkflow.pl.gating_panels import not_set_reason, sample_gates
from nkflow.tl.annotate import resolve_thresholds

SAMPLE = "human/D1_liver_pre_unstim.fcs"
OTHER = "human/D1_blood_pre_unstim.fcs"  # pooled with SAMPLE
TEMPLATE = "human_tissue"


def _quiet(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


@pytest.fixture(scope="module")
def stages(sample_data: Path) -> dict[str, Any]:
    """The container after each step (a copy each), and the clustering result."""
    adata = nk.io.read_fcs(sample_data / SAMPLE)
    out: dict[str, Any] = {"read_fcs": adata.copy()}
    nk.pp.compensate(adata)
    out["compensate"] = adata.copy()
    nk.pp.transform(adata)
    out["transform"] = adata.copy()
    nk.pp.qc(adata)
    out["qc"] = adata.copy()
    _quiet(nk.gating.gate, adata, TEMPLATE, n_boot=0)
    out["gate"] = adata.copy()
    out["clustering"] = _quiet(
        nk.tl.cluster, [adata], xdim=4, ydim=4, n_metaclusters=4, n_resamples=5, random_state=0
    )
    out["cluster"] = adata.copy()
    other = nk.io.read_fcs(sample_data / OTHER)
    out["pooled_subsample"] = nk.pp.pooled_subsample([out["read_fcs"], other], per_sample=500)
    return out


def _plain_round_trip(adata: ad.AnnData, folder: Path, fmt: str) -> ad.AnnData:
    """``adata`` written and read back by AnnData alone (a copy is written: AnnData turns
    string columns into categoricals in the container it writes)."""
    if fmt == "h5ad":
        adata.copy().write_h5ad(folder / "x.h5ad")
        return ad.read_h5ad(folder / "x.h5ad")
    adata.copy().write_zarr(folder / "x.zarr")
    return ad.read_zarr(folder / "x.zarr")


def _writable(adata: ad.AnnData, folder: Path) -> ad.AnnData:
    """A container a tool returned: AnnData writes it as it is."""
    adata.copy().write_h5ad(folder / "returned.h5ad")
    return adata


def _records(adata: ad.AnnData) -> str:
    return json.dumps(nk.io.nkflow_uns(adata), sort_keys=True, default=json_default)


# --- what each stage's next tool gives; ``tmp`` receives the containers it returns


def _after_read(adata: ad.AnnData, tmp: Path) -> dict[str, Any]:
    comp = _writable(nk.pp.compensate(adata, inplace=False), tmp)
    return {
        "X": np.asarray(comp.X),
        "spillover": nk.pp.spillover_from_adata(adata),
        "technology": nk.io.technology_of(adata),
        "sample": nk.io.sample_info(adata),
        "compensation": nk.io.nkflow_record(comp, "compensation"),
    }


def _after_compensate(adata: ad.AnnData, tmp: Path) -> dict[str, Any]:
    checked = _writable(nk.pp.qc(adata, inplace=False), tmp)
    transformed = _writable(nk.pp.transform(adata, inplace=False), tmp)
    return {
        "qc_pass": checked.obs["qc_pass"],
        "qc": nk.io.nkflow_record(checked, "qc"),
        "X": np.asarray(transformed.X),
        "transform": nk.io.nkflow_record(transformed, "transform"),
        "compensate_again": _refusal(nk.pp.compensate, adata),
    }


def _after_transform(adata: ad.AnnData, tmp: Path) -> dict[str, Any]:
    table, gated = _quiet(nk.gating.gate, adata, TEMPLATE, n_boot=0, copy=True)
    record = nk.io.nkflow_record(adata, "transform")
    channel = nk.io.channel_for(adata, "AREG")
    return {
        "populations": table,
        "obs": _writable(gated, tmp).obs,
        "linear": nk.pp.to_linear([0.2, 0.5], channel, adata.uns["nkflow"]["transform"]),
        "linear_decoded": nk.pp.to_linear([0.2, 0.5], channel, record),
    }


def _after_qc(adata: ad.AnnData, tmp: Path) -> dict[str, Any]:
    return {"qc_again": _refusal(nk.pp.qc, adata), **_after_transform(adata, tmp)}


def _after_gate(adata: ad.AnnData, tmp: Path) -> dict[str, Any]:
    export_sample_gatingml(adata, tmp / "gates.xml")
    thresholds = resolve_thresholds([adata], ["AREG", "CD69", "CD16"], np.zeros((0, 3)))
    regated = _quiet(nk.gating.gate, adata, "human_blood", n_boot=0, copy=True).adata
    return {
        "counts": _quiet(nk.tl.count_positive, adata),
        "populations": nk.gating.population_table(adata),
        "gatingml": (tmp / "gates.xml").read_text(encoding="utf-8"),
        "thresholds": thresholds,
        "regated": list(_writable(regated, tmp).obs.columns),
        "markers": nk.tl.default_markers(adata),
        "not_set": {n: not_set_reason(adata, g) for n, g in sample_gates(adata).items()},
    }


def _after_cluster(adata: ad.AnnData, tmp: Path, result: Any) -> dict[str, Any]:
    assigned = _writable(result.assign(adata.copy(), key_added="again"), tmp)
    return {
        "abundance": nk.tl.abundance_table(adata),
        "counts": _quiet(nk.tl.count_positive, adata),
        "again": assigned.obs["again_label"],
        **_after_gate(adata, tmp),
    }


def _after_pooling(adata: ad.AnnData, tmp: Path) -> dict[str, Any]:
    return {
        "subsample": nk.io.nkflow_record(adata, "subsample"),
        "sample_id": adata.obs["sample_id"],
        "event": adata.obs["event"].astype(str),
    }


def _refusal(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    """The message a step that must not run twice gives."""
    with pytest.raises(ConfigError) as err:
        fn(*args, **kwargs)
    return str(err.value)


NEXT: dict[str, Callable[..., dict[str, Any]]] = {
    "read_fcs": _after_read,
    "compensate": _after_compensate,
    "transform": _after_transform,
    "qc": _after_qc,
    "gate": _after_gate,
    "cluster": _after_cluster,
    "pooled_subsample": _after_pooling,
}


def _assert_same(got: Any, want: Any, where: str = "") -> None:
    if isinstance(want, pd.DataFrame):
        pd.testing.assert_frame_equal(got, want, obj=where)
    elif isinstance(want, pd.Series):
        pd.testing.assert_series_equal(got, want, obj=where)
    elif isinstance(want, np.ndarray):
        np.testing.assert_array_equal(got, want, err_msg=where)
    elif isinstance(want, dict) and isinstance(got, dict):
        assert set(got) == set(want), where
        for key in want:
            _assert_same(got[key], want[key], f"{where}[{key!r}]")
    else:
        dump = lambda x: json.dumps(x, sort_keys=True, default=json_default)  # noqa: E731
        assert dump(got) == dump(want), where


# every stage to h5ad; to zarr (slower: a file per record) those with lists of records
ROUND_TRIPS = [(stage, "h5ad") for stage in NEXT] + [
    (stage, "zarr") for stage in ("gate", "cluster", "pooled_subsample")
]


@pytest.mark.parametrize(("stage", "fmt"), ROUND_TRIPS)
def test_a_container_written_by_anndata_gives_the_next_tool_the_same_results(
    stages, stage: str, fmt: str, tmp_path: Path
) -> None:
    original = stages[stage]
    back = _plain_round_trip(original, tmp_path, fmt)
    assert _records(back) == _records(original)
    _assert_same_columns(back, original)
    args = (stages["clustering"],) if stage == "cluster" else ()
    want = NEXT[stage](original.copy(), tmp_path, *args)
    got = NEXT[stage](back, tmp_path, *args)
    _assert_same(got, want, stage)


def _assert_same_columns(back: ad.AnnData, original: ad.AnnData) -> None:
    """Categoricals, bool gate columns and the nullable ``som_node`` come back as they
    were; AnnData writes a column of strings as a categorical of the same values."""
    for frame in ("obs", "var"):
        want, got = getattr(original, frame), getattr(back, frame)
        assert list(got.columns) == list(want.columns)
        for col in want.columns:
            if want[col].dtype == object:
                assert isinstance(got[col].dtype, pd.CategoricalDtype | np.dtypes.ObjectDType)
                assert got[col].astype(str).tolist() == want[col].astype(str).tolist()
            else:
                assert got[col].dtype == want[col].dtype, (frame, col)
                pd.testing.assert_series_equal(got[col], want[col], check_index=False)
    assert isinstance(back.obs["sample_id"].dtype, pd.CategoricalDtype)
    if "som_node" in original.obs:
        assert str(back.obs["som_node"].dtype) == "Int64"


def test_a_pipeline_runs_containers_are_written_by_anndata(tiny_run, tmp_path: Path) -> None:
    """``Results.kept_events`` (read from the run's ``nk.h5ad``) and ``Results.to_anndata``
    write and read back with AnnData alone; the kept events count as before."""
    sid = str(tiny_run.status.loc[tiny_run.status["status"] == "ok", "sample_id"].iloc[0])
    kept = tiny_run.kept_events(sid)
    back = _plain_round_trip(kept, tmp_path, "h5ad")
    assert _records(back) == _records(kept)
    _assert_same(_quiet(nk.tl.count_positive, back), _quiet(nk.tl.count_positive, kept))
    joined = tiny_run.to_anndata()
    again = _plain_round_trip(joined, tmp_path, "h5ad")
    assert again.obs.dtypes.astype(str).tolist() == joined.obs.dtypes.astype(str).tolist()


AWKWARD = {
    "marker_conflicts": {"CD14/CD19": ["BV510-A", "BV605-A"]},
    "keys": {"": 1, ".": 2, "..": 3, "50%": 4, "a\\b": 5, "[0]": 6, "plain": 7},
    "lists": {
        "mixed": [1, "a", None, True],
        "ragged": [[1.0, 2.0], [3.0]],
        "numbers": [1, 2.5],
        "empty": [],
        "tuples": ((1.0, 2.0), (3.0, 4.0)),
        "none": [None],
        "strings": ["a", "b"],
    },
    "rows": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}],
    "uneven_rows": [{"a": 1}, {"a": None}, {"b": 2}],
    "nested": [{"dims": ({"min": None, "max": 0.5},)}],
    "scalars": {"i": np.int64(3), "f": np.float32(0.5), "b": np.bool_(True), "n": None},
}


@pytest.mark.parametrize("fmt", ["h5ad", "zarr"])
def test_records_of_any_shape_come_back_as_they_were(fmt: str, tmp_path: Path) -> None:
    """Keys h5ad and zarr would split or refuse, lists of mixed items, rows of dicts,
    ``None`` in lists, numpy scalars: stored, written, read back, decoded unchanged
    (tuples as lists, numbers of a list that holds a float as floats)."""
    stored = to_native(AWKWARD)
    adata = ad.AnnData(np.zeros((2, 1), dtype=np.float32), uns={"nkflow": stored})
    back = nk.io.nkflow_uns(_plain_round_trip(adata, tmp_path, fmt))
    expected = json.loads(json.dumps(AWKWARD, default=json_default))
    expected["lists"]["numbers"] = [1.0, 2.5]
    assert back == expected == from_native(stored)
    assert isinstance(stored["rows"], pd.DataFrame)
    assert from_native(back) == back  # decoding is idempotent


def test_a_value_h5ad_cannot_hold_is_refused_with_where_it_is() -> None:
    with pytest.raises(TypeError, match=r"\['gating'\].*set"):
        to_native({"gating": {1, 2}})
    with pytest.raises(TypeError, match="key 1"):
        to_native({"per_channel": {1: 2}})


def test_a_part_of_a_record_is_decoded_alone_stored_or_plain():
    from nkflow.io.records import decoded_at, to_native

    plain = {"kind": "logicle", "params": {"FL1/A": {"T": 262144.0}, "[0]": {"T": 1.0}}}
    stored = to_native(plain)
    for record in (plain, stored):  # escaped keys as stored, a plain record's own keys
        assert decoded_at(record, "params", "FL1/A") == {"T": 262144.0}
        assert decoded_at(record, "params", "[0]") == {"T": 1.0}
        assert decoded_at(record, "kind") == "logicle"
        assert decoded_at(record, "params", "FL2-A") is None
        assert decoded_at(record, "kind", "deeper") is None


def test_restoring_a_json_record_decodes_nothing(tmp_path):
    import anndata as ad

    from nkflow.io.h5ad import JSON_KEY
    from nkflow.io.records import restore_records

    adata = ad.AnnData(np.zeros((2, 1), np.float32))
    adata.uns[JSON_KEY] = '{"sample": {"sample_id": "s1"}, "thresholds": [{"marker": "CD69"}]}'
    restore_records(adata)
    assert JSON_KEY not in adata.uns
    assert adata.uns["nkflow"]["sample"] == {"sample_id": "s1"}
    assert isinstance(adata.uns["nkflow"]["thresholds"], pd.DataFrame)  # stored form
