"""Scale (issue 8): a batch run on a real Dask LocalCluster equals the serial run, and a
worker lost mid-run does not lose the batch; the executor keeps its workers across waves.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import nkflow
from nkflow.config import RunConfig, replace_values
from nkflow.datasets import make_design, simulate_batch
from nkflow.parallel import SampleExecutor

distributed = pytest.importorskip("distributed")

KILLED = "D2_blood_pre_stim"  # the sample whose first worker dies


def _tables(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "tables").glob("*.csv"))}


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two donors x blood x pre x (unstim, stim) plus CD69 and AREG FMO tubes, 4000 events."""
    folder = tmp_path_factory.mktemp("scale_batch")
    design = make_design(
        "human", donors=("D1", "D2"), tissues=("blood",), timepoints=("pre",), n_events=4000,
        fmo_markers=("CD69", "AREG"), positive_control=False, clog=False,
    )  # fmt: skip
    simulate_batch(folder, design=design, random_state=0)
    return folder


@pytest.fixture(scope="module")
def serial(batch: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("serial") / "out"
    nkflow.run(batch, out, config=replace_values(RunConfig(), {"execution.workers": 1}))
    tables = _tables(out)
    assert {"populations.csv", "thresholds.csv", "counts.csv", "status.csv"} <= set(tables)
    return tables


@pytest.fixture(scope="module")
def cluster():
    import dask

    # one re-run after a lost worker is enough here; the default (3) only costs time
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        with distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as c:
            yield c


def test_local_cluster_run_is_byte_identical_to_serial(
    batch: Path, serial: dict[str, bytes], cluster, tmp_path: Path
) -> None:
    cfg = replace_values(RunConfig(), {"execution.scheduler": cluster.scheduler_address})
    res = nkflow.run(batch, tmp_path / "out", config=cfg)
    assert set(res.tables["status"]["status"]) <= {"ok", "skipped"}
    got = _tables(tmp_path / "out")
    assert got.keys() == serial.keys()
    for name in serial:
        assert got[name] == serial[name], name


def test_process_pool_run_is_byte_identical_to_serial(
    batch: Path, serial: dict[str, bytes], tmp_path: Path
) -> None:
    # the samples, the batch pool and the clustering's pass 2 all run on the two workers
    cfg = replace_values(RunConfig(), {"execution.workers": 2})
    nkflow.run(batch, tmp_path / "out", config=cfg)
    got = _tables(tmp_path / "out")
    assert got.keys() == serial.keys()
    for name in serial:
        assert got[name] == serial[name], name


class _KillFirstAttempt(distributed.WorkerPlugin):
    """Kills the worker (``os._exit``) the first time it starts the named sample's task."""

    def __init__(self, sample: str, flag: str) -> None:
        self.sample = sample
        self.flag = flag

    def transition(self, key, start, finish, **kwargs) -> None:
        if finish == "executing" and self.sample in str(key) and not os.path.exists(self.flag):
            Path(self.flag).write_text("killed")
            os._exit(1)


def test_worker_killed_mid_run_does_not_lose_the_batch(
    batch: Path, serial: dict[str, bytes], cluster, tmp_path: Path
) -> None:
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    flag = tmp_path / "killed.flag"
    with distributed.Client(cluster) as client:
        client.register_plugin(_KillFirstAttempt(KILLED, str(flag)), name="kill-first")
        try:
            cfg = replace_values(RunConfig(), {"execution.scheduler": cluster.scheduler_address})
            res = nkflow.run(batch, tmp_path / "out", config=cfg)
        finally:
            client.unregister_worker_plugin("kill-first")
    assert flag.read_text() == "killed"  # the worker did die mid-run
    status = res.tables["status"].set_index("sample_id")
    assert status.loc[KILLED, "status"] == "ok"
    got = _tables(tmp_path / "out")
    for name in serial:
        assert got[name] == serial[name], name


def _pid(_: object) -> int:
    return os.getpid()


def test_executor_keeps_its_worker_processes_across_waves() -> None:
    items = [(f"s{i}", i) for i in range(6)]
    with SampleExecutor(workers=2) as ex:
        first = {o.value for o in ex.map(_pid, items)}
        second = {o.value for o in ex.map(_pid, items)}
    assert os.getpid() not in first
    assert second <= first and 1 <= len(first) <= 2
