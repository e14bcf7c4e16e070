"""Golden truth: gate the committed sample batches and score F1 against the simulator's truth.

Each batch goes through the real path: metadata sheet -> read_fcs -> compensate ->
transform -> gate_batch (FMO thresholds per tissue and batch from the FMO tubes, then one
sample at a time). F1 is scored per file and population against
``sample_data/<species>/truth/<sample_id>.parquet`` through ``truth_membership``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import pytest

from nkflow.gating import gate_batch

SAMPLE_DATA = Path(__file__).resolve().parents[1] / "sample_data"
TEMPLATES = {("human", "blood"): "human_blood", ("human", "liver"): "human_tissue",
             ("mouse", "liver"): "mouse", ("mouse", "spleen"): "mouse"}  # fmt: skip
GATED_ROLES = ("unstim", "stim", "sample", "positive_control")
# Populations scored per species; residency is only called in unstimulated tubes.
SCORED = {
    "human": {"all": ("NK", "CD56bright", "CD56dim"), "unstim": ("trNK", "circNK")},
    "mouse": {"all": ("NK", "cNK", "cNK_CD27+CD11b-", "cNK_CD27+CD11b+", "cNK_CD27-CD11b+"),
              "unstim": ("trNK",)},
}  # fmt: skip
# Every scored population must reach F1 >= 0.95 (issue 4). Blood trNK (~2.8 % of NK) and
# mouse spleen trNK (~2 % of NK, 15-40 events per tube) are the rarest; no exception is left.
MIN_F1: dict[tuple[str, str, str], float] = {}


def _meta(species: str) -> pd.DataFrame:
    path = SAMPLE_DATA / species / "metadata.csv"
    if not path.is_file():
        return pd.DataFrame(columns=["sample_id", "tissue", "role", "stimulation"])
    return pd.read_csv(path, dtype=str).fillna("")


def _cases() -> list[tuple[str, str, str, str]]:
    out = []
    for species in ("human", "mouse"):
        meta = _meta(species)
        for _, r in meta[meta["role"].isin(GATED_ROLES)].iterrows():
            stim = r["stimulation"] == "stim" or r["role"] == "stim"
            pops = SCORED[species]["all"] + (() if stim else SCORED[species]["unstim"])
            out += [(species, r["tissue"], r["sample_id"], p) for p in pops]
    return out


@pytest.fixture(scope="module")
def gated() -> dict[str, dict]:
    io = pytest.importorskip("nkflow.io")
    pp = pytest.importorskip("nkflow.pp")
    truth_mod = pytest.importorskip("nkflow.datasets.truth")
    results: dict[str, dict] = {}
    for species in ("human", "mouse"):
        root = SAMPLE_DATA / species
        meta = _meta(species)
        if meta.empty:
            continue

        def read(sid: str, root: Path = root, meta: pd.DataFrame = meta):
            row = meta[meta["sample_id"] == sid].iloc[0]
            adata = io.read_fcs(root / row["file"], metadata=row)
            pp.compensate(adata)
            pp.transform(adata)
            return adata

        def keep(sid, adata, table, species=species, root=root):
            truth = pd.read_parquet(root / "truth" / f"{sid}.parquet")["label"]
            results[species]["samples"][sid] = {
                "pred": adata.obs.copy(),
                "truth": truth_mod.truth_membership(truth, species),
                "table": table,
            }

        results[species] = {"samples": {}, "thresholds": []}
        for tissue in sorted(set(meta["tissue"]) - {""}):
            sub = meta[meta["tissue"] == tissue]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = gate_batch(sub, read, TEMPLATES[(species, tissue)], n_boot=0,
                                 on_sample=keep)  # fmt: skip
            results[species]["thresholds"].append(res.thresholds)
    return results


@pytest.mark.parametrize(("species", "tissue", "sample_id", "population"), _cases())
def test_golden_f1(gated, species, tissue, sample_id, population):
    if species not in gated:
        pytest.skip(f"no sample_data/{species}")
    s = gated[species]["samples"][sample_id]
    pred = s["pred"][population].to_numpy(bool)
    true = s["truth"][population].to_numpy(bool)
    f1 = 2 * int((pred & true).sum()) / max(1, int(pred.sum() + true.sum()))
    floor = MIN_F1.get((species, tissue, population), 0.95)
    assert f1 >= floor, f"{sample_id} {population}: F1 {f1:.3f} < {floor}"


@pytest.mark.parametrize("species", ["human", "mouse"])
def test_fmo_thresholds_come_from_the_fmo_tubes(gated, species):
    if species not in gated:
        pytest.skip(f"no sample_data/{species}")
    th = pd.concat(gated[species]["thresholds"], ignore_index=True)
    fmo = th[th["sample_id"] == ""]
    meta = _meta(species)
    tubes = meta[meta["role"].str.startswith("fmo:")]
    used = {"CD69", "CD49a", "CD103", "CXCR6", "AREG", "IFN-g"}
    expected = {(r["tissue"], r["role"][4:]) for _, r in tubes.iterrows() if r["role"][4:] in used}
    assert set(zip(fmo["tissue"], fmo["marker"], strict=True)) >= expected
    assert fmo["control_file"].str.endswith(".fcs").all()
    assert (fmo["ci_low"].isna() | (fmo["ci_low"] <= fmo["value"])).all()


def test_stim_tubes_take_residency_from_the_paired_unstim(gated):
    if "human" not in gated:
        pytest.skip("no sample_data/human")
    table = gated["human"]["samples"]["D1_liver_pre_stim"]["table"]
    tr = table[table["population"] == "trNK"].iloc[0]
    assert tr["phenotype_source"] == "D1_liver_pre_unstim"
    assert "trNK" not in gated["human"]["samples"]["D1_liver_pre_stim"]["pred"].columns


def test_missing_fmo_falls_back_to_the_valley_in_tissue():
    """Without FMO tubes a liver tube still separates trNK (clear CD69/CXCR6 valleys)."""
    from nkflow.exceptions import MissingControlWarning
    from nkflow.gating import gate

    io = pytest.importorskip("nkflow.io")
    pp = pytest.importorskip("nkflow.pp")
    truth_mod = pytest.importorskip("nkflow.datasets.truth")
    meta = _meta("human")
    if meta.empty:
        pytest.skip("no sample_data/human")
    row = meta[meta["sample_id"] == "D1_liver_pre_unstim"].iloc[0]
    adata = io.read_fcs(SAMPLE_DATA / "human" / row["file"], metadata=row)
    pp.compensate(adata)
    pp.transform(adata)
    with pytest.warns(MissingControlWarning, match="CD69"):
        gate(adata, "human_tissue", n_boot=0)
    th = pd.DataFrame(adata.uns["nkflow"]["thresholds"])
    cd69 = th[th["marker"] == "CD69"].iloc[0]
    assert cd69["rule"] == "valley (fmo fallback)" and cd69["control_file"] == "fallback:no-fmo"
    labels = pd.read_parquet(SAMPLE_DATA / "human" / "truth" / "D1_liver_pre_unstim.parquet")
    truth = truth_mod.truth_membership(labels["label"], "human")
    pred, true = adata.obs["trNK"].to_numpy(bool), truth["trNK"].to_numpy(bool)
    assert 2 * int((pred & true).sum()) / int(pred.sum() + true.sum()) >= 0.95


@pytest.mark.parametrize(
    ("sample_id", "template"),
    [("D1_blood_pre_unstim", "human_blood"), ("D2_liver_pre_unstim", "human_tissue")],
)
def test_a_tbnk_style_cd16_cd56_channel_gates_nk_against_the_truth(
    summed_channels, sample_id, template
):
    """Clinical panels put CD16 and CD56 in one channel. The committed tube with its CD16
    and CD56 signals summed (compensated, linear) under "CD16+56 PE", and NKp46 and CD7
    unlabelled, gates NK on that channel. Measured with 100k-event simulated tubes (3 tissues
    x 2 donors): F1 0.94-0.99 against the truth, 0.97-0.995 with the channels apart."""
    io = pytest.importorskip("nkflow.io")
    pp = pytest.importorskip("nkflow.pp")
    truth_mod = pytest.importorskip("nkflow.datasets.truth")
    from nkflow.gating import gate

    meta = _meta("human")
    if meta.empty:
        pytest.skip("no sample_data/human")
    row = meta[meta["sample_id"] == sample_id].iloc[0]
    adata = io.read_fcs(SAMPLE_DATA / "human" / row["file"])
    pp.compensate(adata)
    combined = summed_channels(adata, "CD56", "CD16", "CD16+56 PE", blank=("NKp46", "CD7"))
    pp.transform(combined)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gate(combined, template, n_boot=0)
    assert combined.uns["nkflow"]["gating"]["resolution"]["anchor"] == "CD16_CD56"
    labels_true = pd.read_parquet(SAMPLE_DATA / "human" / "truth" / f"{sample_id}.parquet")
    true = truth_mod.truth_membership(labels_true["label"], "human")["NK"].to_numpy(bool)
    pred = combined.obs["NK"].to_numpy(bool)
    f1 = 2 * int((pred & true).sum()) / int(pred.sum() + true.sum())
    assert f1 >= 0.93, f"NK F1 {f1:.3f}"
