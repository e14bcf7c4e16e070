"""CD69 on CD3+ T cells of real human tissues (FlowAtlas): the batch pool restores biology.

FlowAtlas (../shared/external/flowatlas, gszep/FlowAtlas.jl) holds FlowJo-compensated
exports of blood (donor 412C), bone marrow (390C), lung, liver and ileum (390C, 423C) with
CD69 and CD103. Per-sample rules read CD69+ ~0 % in files where one positive peak
dominates (the valley rule finds no valley and the mirror takes the positive peak for the
negative one). Treated as one batch with the residency conditions marked ``pool = true``
(the shipped rule, on a CD3+ parent here), the pooled valley is applied per sample.

Biology (BIOLOGY.md 2; the FlowAtlas paper): CD69+ is low in blood, higher in bone marrow,
high in lung, liver and ileum. Donors with several tissues must keep that order.

412C's files carry no $PnS labels. They have exactly the 423C detector set (the same 19
detectors, including 405 585_15 which 390C lacks) and FlowAtlas' data/thresholds.csv lists
412C with the same markers as 423C, so 412C is read with 423C's channel -> marker map.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import EXTERNAL

from nkflow import io, pp
from nkflow.gating import gate, resolve_template
from nkflow.gating.pooled import batch_pool_thresholds, pool_contribution
from nkflow.io import nkflow_uns

FLOWATLAS = EXTERNAL / "flowatlas" / "data"
#: 423C's labels by detector; 412C shares the detector set (module docstring)
PANEL_423C = {"FJComp-355 379_28-A": "CD3", "FJComp-355 560_40-A": "CD8",
              "FJComp-355 740_35-A": "CD69", "FJComp-355 820_60-A": "CD4",
              "FJComp-405 450_50-A": "CD103", "FJComp-405 515_20-A": "HLA-DR",
              "FJComp-405 585_15-A": "CD19"}  # fmt: skip
TISSUE_WORDS = ("Blood", "BM", "Ileum", "Liver", "Lung")


def _tissue(path: Path) -> str:
    return next(w for w in TISSUE_WORDS if w in path.stem).lower().replace("bm", "bone_marrow")


@pytest.fixture(scope="module")
def batch(tmp_path_factory, tcell_template):
    files = sorted(FLOWATLAS.glob("*/*.fcs"))
    if not files:
        pytest.skip(f"FlowAtlas files not found under {FLOWATLAS} (../shared/external)")
    tpl_path = tcell_template(
        tmp_path_factory.mktemp("tpl"), "CD69", rule="fmo", pool=True, bootstrap=50,
        name="tcell_residency",
    )  # fmt: skip
    samples = {}
    for f in files:
        meta = {"tissue": _tissue(f), "batch": "flowatlas", "donor": f.parent.name}
        adata = io.read_fcs(f, panel=PANEL_423C if f.parent.name == "412C" else None,
                            metadata=meta)  # fmt: skip
        pp.compensate(adata)  # FJComp- export: detected, not compensated again
        pp.transform(adata)
        samples[f.stem] = adata
    tpl = {sid: resolve_template(str(tpl_path), a).template for sid, a in samples.items()}
    contributions = {sid: pool_contribution(a, tpl[sid]) for sid, a in samples.items()}
    groups = {sid: (a.uns["nkflow"]["sample"]["tissue"], "flowatlas")
              for sid, a in samples.items()}  # fmt: skip
    pooled = batch_pool_thresholds(contributions, groups, next(iter(tpl.values())))
    out = {}
    for sid, a in samples.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            own = a.copy()
            per = gate(own, str(tpl_path), n_boot=50).set_index("population")
            rows = gate(a, str(tpl_path), thresholds=[t.to_record() for t in pooled],
                        n_boot=50).set_index("population")  # fmt: skip
        cd69 = a[:, io.channel_for(a, "CD69")].X.ravel()[a.obs["T"].to_numpy(bool)]
        th = next(t for t in nkflow_uns(a)["thresholds"] if t["marker"] == "CD69")
        own_th = next(t for t in nkflow_uns(own)["thresholds"] if t["marker"] == "CD69")
        out[sid] = {"donor": groups[sid] and a.uns["nkflow"]["sample"]["donor"],
                    "tissue": groups[sid][0], "before": per.loc["T_CD69+", "percent_of_parent"],
                    "after": rows.loc["T_CD69+", "percent_of_parent"], "cd69": cd69,
                    "threshold": th, "own_threshold": own_th}  # fmt: skip
    return out


def test_pooled_threshold_recorded_with_its_evidence(batch):
    for sid, r in batch.items():
        th = r["threshold"]
        assert th["evidence"] == "batch_pool", (sid, th)
        assert th["rule"] == "valley (batch pool)" and th["sample_id"] == sid
        assert th["control_file"].startswith("batch pool: 8 samples")
        assert th["note"]  # the sample's own valley (or why it has none) is stated


def test_cd69_order_blood_marrow_tissue_in_every_donor(batch):
    blood = [r["after"] for r in batch.values() if r["tissue"] == "blood"]
    assert blood, "no blood file"
    donors = sorted({r["donor"] for r in batch.values()})
    for donor in donors:
        mine = {r["tissue"]: r["after"] for r in batch.values() if r["donor"] == donor}
        tissues = [mine[t] for t in ("lung", "liver", "ileum") if t in mine]
        floor = max(blood + ([mine["bone_marrow"]] if "bone_marrow" in mine else []))
        if "bone_marrow" in mine:
            assert max(blood) < mine["bone_marrow"], (donor, mine)
        assert all(t > floor for t in tissues), (donor, mine, blood)


def test_no_dominant_positive_peak_reads_negative(batch):
    # a file whose CD69 mode lies above the blood's 95th percentile has one dominant
    # positive peak (blood T cells are mostly CD69-): it must not read < 5 % CD69+
    blood = np.concatenate([r["cd69"] for r in batch.values() if r["tissue"] == "blood"])
    ceiling = np.percentile(blood, 95)
    dominant = []
    for sid, r in batch.items():
        hist, edges = np.histogram(r["cd69"], bins=64)
        mode = 0.5 * (edges[np.argmax(hist)] + edges[np.argmax(hist) + 1])
        if mode > ceiling:
            dominant.append(sid)
            assert r["after"] >= 5.0, (sid, r["after"])
    # the per-sample rules failed on at least one such file (what the issue measured)
    assert dominant and min(batch[s]["before"] for s in dominant) < 5.0


def test_no_own_cut_off_reads_a_dominant_positive_peak_as_negative_silently(batch):
    """A per-sample CD69 cut-off above every T cell read 0 % CD69+ (423C liver, 7,147 T
    cells: the mirror took its dominant positive peak for the negatives and cut at 1.51,
    above the highest event, 0.84). Such a cut-off is not set: the population is not
    measured (NA), not 0 %. A per-sample cut-off that reads under 1 % where the batch pool
    reads over 10 % either is not set or says why it may be wrong, where the file is large
    enough to tell (390C ileum's 670 T cells leave ~3 events expected beyond a 99.5 % cut:
    its mirror reads 0.15 % against the pool's 98 %, the README's stated limitation)."""
    for sid, r in batch.items():
        th = r["own_threshold"]
        if np.isnan(th["value"]):
            assert "so the cut-off is not set" in th["note"], (sid, th)
            assert np.isnan(r["before"]), (sid, r["before"])
        elif r["before"] < 1.0 and r["after"] > 10.0 and 0.005 * r["cd69"].size > 7:
            assert th["note"] or th["rule"].startswith("valley"), (sid, r)
    liver = batch["423_Donor_Liver_022"]["own_threshold"]
    assert np.isnan(liver["value"])


def test_a_dominant_positive_sample_states_its_own_cut_below_that_peak(batch):
    """Judged against the batch pool's cut-off, a sample whose main CD69 peak lies above it
    has its own cut-off where the events below that peak become mostly negatives, stated
    in the note and compared with the pool's. Before, the note of 423C liver (7,147 T
    cells, pool 46 % CD69+) and 390C ileum (670, pool 98 %) gave their mirrors: 0.0 % and
    0.1 % positive. The own cut must agree with the pool as well as the batch's own
    valleys do (423C ileum's valley reads 81 % against the pool's 73 %); the FlowAtlas
    authors' hand-set cut-offs (FlowAtlas.jl data/thresholds.csv, not in this folder)
    read 52.7 % and 98.4 %. Blood keeps its mirror (its peak lies below the pool's cut)."""
    own = {}
    for sid, r in batch.items():
        note = r["threshold"]["note"]
        found = re.search(r"([\d.]+) % positive at its own cut", note)
        assert found, (sid, note)
        own[sid] = (note, float(found.group(1)))
    gaps = [abs(pct - batch[s]["after"]) for s, (note, pct) in own.items()
            if note.startswith("own valley")]  # fmt: skip
    reflected = {s for s, (note, _) in own.items() if "(reflected positive)" in note}
    assert reflected == {"423_Donor_Liver_022", "390C_Ileum_028"}, own
    for sid in reflected:
        assert abs(own[sid][1] - batch[sid]["after"]) <= max(gaps), (sid, own[sid], max(gaps))
    assert "own rule: mirror" in own["412C_Blood_025"][0]
