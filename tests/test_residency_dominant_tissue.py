"""A tissue where ~90% of NK are CD69+ and resident, with no FMO (issue 15, done-when).

Per-sample rules took the dominant positive peak for the negative one; the batch-pooled
valley (blood and ileum of the same batch) tells which peak is negative. trNK is scored
against the simulator's per-event truth, within the gated NK events nkflow keeps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nkflow.datasets import make_design, simulate_batch, truth_membership
from nkflow.pipeline import run


def _f1(called: np.ndarray, truth: np.ndarray) -> float:
    both = called.sum() + truth.sum()
    return float(2 * (called & truth).sum() / both) if both else float("nan")


@pytest.fixture(scope="module")
def ileum_run(tmp_path_factory: pytest.TempPathFactory, fast_config):
    folder = tmp_path_factory.mktemp("ileum") / "batch"
    design = make_design(
        "human", donors=("D1", "D2"), tissues=("blood", "ileum"), timepoints=("pre",),
        n_events=15_000, fmo_markers=(), positive_control=False, clog=False, nk_enrichment=2.0,
    )  # fmt: skip
    simulate_batch(folder, design=design, random_state=1)
    return folder, run(folder, folder.parent / "out", config=fast_config)


@pytest.mark.slow
@pytest.mark.parametrize("donor", ["D1", "D2"])
def test_dominant_resident_tissue_gates_trnk_against_truth(ileum_run, donor: str) -> None:
    folder, res = ileum_run
    sid = f"{donor}_ileum_pre_unstim"
    events = res.kept_events(sid)
    truth = truth_membership(pd.read_parquet(Path(folder) / "truth" / f"{sid}.parquet")["label"],
                             "human")  # fmt: skip
    rows = events.obs_names.astype(int)
    nk = truth["NK"].to_numpy()[rows]
    assert truth["trNK"].to_numpy()[rows][nk].mean() > 0.85  # the tissue is mostly resident
    assert _f1(events.obs["trNK"].to_numpy(bool), truth["trNK"].to_numpy()[rows]) >= 0.95
    cd69 = res.thresholds.query("marker == 'CD69' and sample_id == @sid")
    assert set(cd69["evidence"]) == {"batch_pool"}
