"""The committed sample_data/: regenerates (events to float32 rounding), opens in flowkit
and flowio, holds enough events for gating and scoring, and its truth matches its metadata."""

from __future__ import annotations

import re

import flowio
import flowkit as fk
import numpy as np
import pandas as pd
import pytest

from nkflow.datasets import (
    make_sample_data,
    population_names,
    sample_data_design,
    sample_data_dir,
    simulate_batch,
    truth_membership,
)
from nkflow.datasets.batch import METADATA_COLUMNS
from nkflow.datasets.design import CONTEXT_FIELDS

SPECIES = ("human", "mouse")
# minimum NK events per unstim/stim tube (mouse batch is kept small on purpose)
MIN_NK = {"human": 1500, "mouse": 1100}


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample_data")
    return make_sample_data(out)


def _files(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())


def _fcs_text_and_events(path):
    """The FCS file's TEXT keywords and its event matrix (flowio, an independent reader)."""
    fcs = flowio.FlowData(str(path))
    keywords = dict(fcs.text)
    for offset_key in ("begindata", "enddata", "beginstext", "endstext"):
        keywords.pop(offset_key, None)
    events = np.asarray(fcs.events, dtype=np.float32).reshape(-1, fcs.channel_count)
    return keywords, events


@pytest.mark.parametrize("species", SPECIES)
def test_regeneration_reproduces_committed_files(sample_data, regenerated, species):
    """Sheets, truth and keywords regenerate byte for byte; events to float32 rounding.

    Within one environment the simulator is byte-for-byte deterministic
    (``test_simulate_batch_default_design_is_deterministic``). Across numpy/BLAS builds,
    ``exp``/``log`` and the spillover matrix product may round an intermediate to its
    float32 neighbour. After the spillover sums (values up to 2**18, where a float32 step is
    1/32), that step can land on a small value, so events are compared to two float32
    steps at full scale: far below any gate's resolution.
    """
    committed, fresh = sample_data / species, regenerated / species
    assert _files(fresh) == [p for p in _files(committed) if p.name != "README.md"]
    for rel in _files(fresh):
        if rel.suffix != ".fcs":
            assert (committed / rel).read_bytes() == (fresh / rel).read_bytes(), rel
            continue
        kw_committed, ev_committed = _fcs_text_and_events(committed / rel)
        kw_fresh, ev_fresh = _fcs_text_and_events(fresh / rel)
        assert kw_committed == kw_fresh, rel
        full_scale_step = np.spacing(np.float32(2**18))
        np.testing.assert_allclose(ev_fresh, ev_committed, rtol=1e-6, atol=2 * full_scale_step)


def test_top_level_sheet_points_into_human_batch(sample_data, regenerated):
    top = sample_data / "metadata.csv"
    assert top.read_bytes() == (regenerated / "metadata.csv").read_bytes()
    meta = pd.read_csv(top, keep_default_na=False)
    human = pd.read_csv(sample_data / "human" / "metadata.csv", keep_default_na=False)
    assert list(meta["file"]) == [f"human/{f}" for f in human["file"]]
    assert all((sample_data / f).is_file() for f in meta["file"])


def test_sample_data_dir_finds_committed_batch(sample_data):
    for species in SPECIES:
        assert sample_data_dir(species) == sample_data / species


def test_total_size_under_limit(sample_data):
    size = sum(p.stat().st_size for p in sample_data.rglob("*") if p.is_file())
    assert size < 25 * 2**20


@pytest.mark.parametrize("species", SPECIES)
def test_metadata_sheet_follows_contract(sample_data, species):
    meta = pd.read_csv(sample_data / species / "metadata.csv", keep_default_na=False)
    # the human batch records sample context (tissue kind, glucocorticoid, treatment)
    context = CONTEXT_FIELDS if species == "human" else ()
    assert tuple(meta.columns) == (*METADATA_COLUMNS, *context)
    assert meta["sample_id"].is_unique
    assert set(meta["species"]) == {species}
    # the human batch adds a cytokine condition (IL-15) to the generic stimulation
    assert set(meta["stimulation"]) == (
        {"unstim", "stim", "IL-15"} if context else {"unstim", "stim"}
    )
    if context:
        assert set(meta["tissue_kind"]) == {"blood", "normal tissue"}
        gc = meta.set_index("sample_id")["glucocorticoid"]
        assert gc["D2_blood_post_stim"] == gc["D2_liver_post_stim"] == "yes"
        assert (gc.drop(meta.loc[meta["donor"].eq("D2") & meta["timepoint"].eq("post"),
                                 "sample_id"]) == "no").all()  # fmt: skip
    valid_role = re.compile(r"^(unstim|stim|positive_control|fmo:[A-Za-z0-9-]+)$")
    assert meta["role"].map(lambda r: bool(valid_role.match(r))).all()
    for f in meta["file"]:
        assert (sample_data / species / f).is_file()
    assert len(meta) == len(sample_data_design(species).tubes)


@pytest.mark.parametrize("species", SPECIES)
def test_every_file_opens_in_flowio_and_flowkit(sample_data, species):
    meta = pd.read_csv(sample_data / species / "metadata.csv", keep_default_na=False)
    for f in meta["file"]:
        path = sample_data / species / f
        fd = flowio.FlowData(str(path))
        sample = fk.Sample(str(path))
        events = fd.as_array(preprocess=False)
        np.testing.assert_array_equal(sample.get_events(source="raw")[:, :-1], events[:, :-1])
        assert fd.version == "3.1"
        assert fd.text["fil"] == f
        n = int(fd.text["par"])
        spill = fd.text["spillover"].split(",")
        assert int(spill[0]) == n - 5  # all fluorescence channels, not scatter/Time
        assert fd.text["cyt"] and fd.text["date"] and fd.text["timestep"] == "0.01"
        assert sample.pnn_labels[-1] == "Time" and sample.pnn_labels[:4] == [
            "FSC-A", "FSC-H", "SSC-A", "SSC-H"]  # fmt: skip


@pytest.mark.parametrize("species", SPECIES)
def test_truth_matches_files_and_has_enough_events(sample_data, species):
    folder = sample_data / species
    meta = pd.read_csv(folder / "metadata.csv", keep_default_na=False)
    planted = pd.read_csv(folder / "truth" / "planted.csv")
    assert list(planted.columns) == ["sample_id", "population", "marker", "planted_percent"]
    assert set(planted["sample_id"]) == set(meta["sample_id"])
    assert set(planted["population"]) <= set(population_names(species))
    for row in meta.itertuples():
        truth = pd.read_parquet(folder / "truth" / f"{row.sample_id}.parquet")
        n = int(flowio.FlowData(str(folder / row.file), only_text=True).text["tot"])
        assert len(truth) == n
        assert isinstance(truth["label"].dtype, pd.CategoricalDtype)
        assert truth[["AREG", "IFN-g", "CD107a"]].dtypes.eq(bool).all()
        if row.role in ("unstim", "stim"):
            nk = truth_membership(truth["label"], species)["NK"]
            assert nk.sum() >= MIN_NK[species], row.sample_id
            if species == "human":
                bright = truth_membership(truth["label"], species)["CD56bright"]
                assert bright.sum() >= 100, row.sample_id


def test_planted_areg_populations_have_enough_positives(sample_data):
    folder = sample_data / "human"
    planted = pd.read_csv(folder / "truth" / "planted.csv")
    responsive = planted[
        (planted["marker"] == "AREG")
        & (planted["planted_percent"] >= 1.3)
        & planted["population"].isin(["CD56bright_trNK", "CD56dim_circNK", "ILC"])
        & planted["sample_id"].str.endswith("_stim")
        # ILCs are rare except in the ILC-enriched positive control
        & ((planted["population"] != "ILC") | (planted["sample_id"] == "PC_ILC_stim"))
    ]
    assert len(responsive) >= 8
    for row in responsive.itertuples():
        truth = pd.read_parquet(folder / "truth" / f"{row.sample_id}.parquet")
        member = truth_membership(truth["label"], "human")[row.population]
        assert (member & truth["AREG"]).sum() >= 10, (row.sample_id, row.population)


def test_il15_condition_is_cd56bright_enriched(sample_data):
    planted = pd.read_csv(sample_data / "human" / "truth" / "planted.csv")
    areg = planted[planted["marker"] == "AREG"].set_index(["sample_id", "population"])
    for donor in ("D1", "D2"):
        stim = f"{donor}_blood_pre_IL-15"
        unstim = f"{donor}_blood_pre_unstim"
        net = {
            pop: areg.loc[(stim, pop), "planted_percent"]
            - areg.loc[(unstim, pop), "planted_percent"]
            for pop in ("CD56bright", "CD56dim")
        }
        assert net["CD56bright"] == pytest.approx(6.0, abs=0.5)  # bright_circ 6 %, tr 0
        assert net["CD56dim"] == pytest.approx(1.5, abs=0.1)
        assert net["CD56bright"] > net["CD56dim"]


def test_null_samples_have_background_only(sample_data):
    planted = pd.read_csv(sample_data / "human" / "truth" / "planted.csv")
    areg = planted[planted["marker"] == "AREG"].set_index(["sample_id", "population"])
    for donor in ("D1", "D2"):
        for pop in ("NK", "CD56bright", "CD56dim"):
            stim = areg.loc[(f"{donor}_blood_pre_stim", pop), "planted_percent"]
            unstim = areg.loc[(f"{donor}_blood_pre_unstim", pop), "planted_percent"]
            assert stim == unstim
    assert areg.loc[("D2_liver_pre_stim", "CD56bright_trNK"), "planted_percent"] == 0.3
    assert areg.loc[("D1_liver_pre_stim", "CD56bright_trNK"), "planted_percent"] == 2.3


def test_simulate_batch_default_design_is_deterministic(tmp_path):
    a = simulate_batch(tmp_path / "a", species="mouse", n_events=500, random_state=3)
    b = simulate_batch(tmp_path / "b", species="mouse", n_events=500, random_state=3)
    assert a.name == "metadata.csv"
    files = _files(a.parent)
    assert files == _files(b.parent)
    for rel in files:
        assert (a.parent / rel).read_bytes() == (b.parent / rel).read_bytes()


def test_sample_data_dir_env_override_and_error(tmp_path, monkeypatch):
    from nkflow.datasets import paths
    from nkflow.exceptions import ConfigError

    (tmp_path / "mouse").mkdir()
    (tmp_path / "mouse" / "metadata.csv").write_text("file,sample_id\n")
    monkeypatch.setenv(paths.ENV_VAR, str(tmp_path))
    assert sample_data_dir("mouse") == tmp_path / "mouse"
    with pytest.raises(ConfigError, match="unknown species"):
        sample_data_dir("rat")


def test_an_installed_copy_says_how_to_get_the_sample_data(tmp_path, monkeypatch):
    """A wheel carries no sample files: the error named a site-packages path that never
    exists instead of saying how to write them."""
    from nkflow.datasets import paths
    from nkflow.exceptions import ConfigError

    monkeypatch.delenv(paths.ENV_VAR, raising=False)
    installed = tmp_path / "site-packages" / "nkflow" / "datasets" / "paths.py"
    monkeypatch.setattr(paths, "__file__", str(installed))
    with pytest.raises(ConfigError, match=r"make_sample_data\(folder\) and set NKFLOW_SAMPLE_DATA"):
        sample_data_dir("human")
