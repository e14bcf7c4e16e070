"""End-to-end pipeline on a tiny simulated batch: outputs, failures, resume, determinism."""

from __future__ import annotations

import hashlib
import html
import importlib
import json
import re
import shutil
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

import nkflow
from nkflow.config import RunConfig, load_config, replace_values
from nkflow.exceptions import (
    ChannelNotFoundError,
    MetadataError,
    NkflowWarning,
    OutputExistsError,
)
from nkflow.io import nkflow_uns
from nkflow.parallel import SampleExecutor
from nkflow.pipeline import default_out_dir, run
from nkflow.pipeline.outdir import GATING_FIGURE, LEGACY_GATING_FIGURE, OutputFolder, product_record
from nkflow.pipeline.steps import ANALYSED_ROLES
from nkflow.report.figures import decode_data_uri, figure_format, figure_png

TABLES = ["populations", "thresholds", "clusters", "scores", "flags", "qc", "status"]


@pytest.mark.parametrize("name", TABLES)
def test_every_table_written_as_csv_and_parquet(tiny_run, name: str) -> None:
    out = tiny_run.out_dir / "tables"
    csv = pd.read_csv(out / f"{name}.csv", comment="#")
    parquet = pd.read_parquet(out / f"{name}.parquet")
    assert len(csv) == len(parquet) == len(tiny_run.tables[name])


def test_every_csv_table_has_its_header_even_when_empty(tiny_run) -> None:
    """A script reading ``tables/*.csv`` never meets a file without columns: the tiny
    batch has one timepoint, so ``comparisons`` is empty (it was a bare newline)."""
    written = sorted((tiny_run.out_dir / "tables").glob("*.csv"))
    assert "comparisons.csv" in {p.name for p in written}
    for path in written:
        table = pd.read_csv(path, comment="#")
        assert len(table.columns) > 1, path.name
    comparisons = pd.read_csv(tiny_run.out_dir / "tables" / "comparisons.csv")
    assert comparisons.empty and {"population", "n_pairs", "p_adj"} <= set(comparisons.columns)


def test_run_outputs(tiny_run, fast_config: RunConfig) -> None:
    out = tiny_run.out_dir
    for rel in ("report.html", "provenance.json", "config.toml", ".nkflow"):
        assert (out / rel).is_file(), rel
    assert load_config(out / "config.toml") == fast_config
    status = tiny_run.status
    analysed = status[status["role"].isin(["unstim", "stim", "positive_control"])]
    assert set(analysed["status"]) <= {"ok", "qc-failed"}
    assert not tiny_run.populations.empty
    nk = tiny_run.populations[tiny_run.populations["population"] == "NK"]
    assert (nk["count"] > 100).all()
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "hypothesis" in html


def test_an_fmo_row_carries_the_spread_of_its_widest_sample(tiny_run) -> None:
    """An FMO cut-off is listed once for its tissue and batch; its two shares are those of
    the sample, among those it was applied to, whose share its interval moves most (each
    sample's own record, read back from its work container)."""
    from nkflow.pipeline.outdir import NK_EVENTS_FILE
    from nkflow.pipeline.sample import read_kept_events

    key = ["tissue", "batch", "gate", "marker", "control_file"]
    spreads: dict[tuple[str, ...], list[float]] = {}
    for work in sorted((tiny_run.out_dir / "work").glob(f"*/{NK_EVENTS_FILE}")):
        for t in nkflow_uns(read_kept_events(work.parent))["thresholds"]:
            if not t.get("sample_id") and t.get("evidence") == "fmo":
                spread = abs(t["percent_above_at_ci_low"] - t["percent_above_at_ci_high"])
                spreads.setdefault(tuple(str(t[k]) for k in key), []).append(spread)
    table = tiny_run.tables["thresholds"]
    fmo = table[(table["sample_id"].fillna("") == "") & (table["evidence"] == "fmo")]
    assert len(fmo) >= 4 and len(spreads) == len(fmo)  # AREG and CD69 of blood and liver
    for _, row in fmo.iterrows():
        widest = max(spreads[tuple(str(row[k]) for k in key)])
        got = abs(row["percent_above_at_ci_low"] - row["percent_above_at_ci_high"])
        assert got == pytest.approx(widest, abs=1e-9), row["marker"]


def test_provenance_hashes_every_input_file(tiny_run, tiny_batch: Path) -> None:
    """inputs_sha256 holds the SHA-256 of each file of the sheet, as the bytes on disk."""
    provenance = json.loads((tiny_run.out_dir / "provenance.json").read_text(encoding="utf-8"))
    meta = pd.read_csv(tiny_batch / "metadata.csv")
    expected = {
        str(name): hashlib.sha256((tiny_batch / str(name)).read_bytes()).hexdigest()
        for name in meta["file"]
    }
    assert provenance["inputs_sha256"] == expected


def test_results_container_and_exports(tiny_run, tmp_path: Path) -> None:
    adata = tiny_run.to_anndata()
    assert adata.n_obs > 0
    assert {"sample_id", "tissue", "metacluster"} <= set(adata.obs.columns)
    assert adata.obs["NK"].all()
    h5ad = tiny_run.write_h5ad(tmp_path / "nk.h5ad")
    assert h5ad.stat().st_size > 0
    files = tiny_run.export_fcs(tmp_path / "fcs", population="CD56bright")
    assert files
    back = nkflow.io.read_fcs(files[0])
    assert back.n_obs > 0


def test_to_anndata_keeps_gates_only_some_samples_have(tiny_run, tmp_path: Path) -> None:
    """A stimulated tube has no residency gates (they come from its unstimulated partner);
    the inner join dropped trNK for every sample. Now: NA where not measured, kept where
    it was, and the file written by write_h5ad reads back the same."""
    adata = tiny_run.to_anndata()
    stim = adata.obs["stimulation"].astype(str).to_numpy() == "stim"
    unstim = adata.obs["stimulation"].astype(str).to_numpy() == "unstim"
    assert stim.any() and unstim.any()
    assert adata.obs["trNK"].dtype == "boolean"
    assert adata.obs["trNK"][stim].isna().all()
    assert adata.obs["NK"].dtype == bool  # a gate every sample has stays plain bool
    for sid in adata.obs["sample_id"][unstim].unique():
        mine = adata.obs.loc[adata.obs["sample_id"] == sid, "trNK"]
        own = tiny_run.kept_events(str(sid)).obs["trNK"]
        np.testing.assert_array_equal(mine.to_numpy(dtype=bool), own.to_numpy())
    shared = set.intersection(
        *(set(tiny_run.kept_events(str(s)).var_names) for s in adata.obs["sample_id"].unique())
    )
    assert set(adata.var_names) == shared
    back = ad.read_h5ad(tiny_run.write_h5ad(tmp_path / "nk.h5ad"))
    pd.testing.assert_series_equal(back.obs["trNK"], adata.obs["trNK"])


def test_export_fcs_skips_samples_without_the_population(tiny_run, tmp_path: Path) -> None:
    """Stimulated tubes have no trNK gate: exporting it raised KeyError at the first one,
    after earlier samples' files were written. Now they are skipped with one warning."""
    kept = set(tiny_run.to_anndata().obs["sample_id"].astype(str))  # FMO tubes keep none
    lacking = [s for s in kept if "trNK" not in tiny_run.kept_events(s).obs.columns]
    assert lacking and len(lacking) < len(kept)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        files = tiny_run.export_fcs(tmp_path / "fcs", population="trNK")
    mine = [w for w in caught if issubclass(w.category, NkflowWarning)]
    assert len(mine) == 1
    assert all(sid in str(mine[0].message) for sid in lacking)
    assert sorted(p.name for p in (tmp_path / "fcs").iterdir()) == sorted(f.name for f in files)
    assert len(files) == len(kept) - len(lacking)
    for path in files:
        back = nkflow.io.read_fcs(path)
        assert back.uns["nkflow"]["fcs"]["keywords"]["NKFLOW_POPULATION"] == "trNK"


def test_export_fcs_keeps_sample_ids_that_share_a_file_name_apart(
    tiny_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """'D1 liver' and 'D1_liver' are one file name: the second sample's file overwrote the
    first's. Every sample is made to collide here; each still gets its own file."""
    import nkflow.pipeline.results as results

    monkeypatch.setattr(results, "safe_name", lambda name, **_: "same")
    files = tiny_run.export_fcs(tmp_path / "fcs", population="NK")
    assert len(files) > 1 and len({f.name for f in files}) == len(files)
    assert all(f.name.startswith("same-") for f in files)


def test_export_fcs_of_a_population_no_sample_has_writes_nothing(tiny_run, tmp_path: Path) -> None:
    with pytest.raises(ChannelNotFoundError, match=r"no population 'CD57\+'; available: .*trNK"):
        tiny_run.export_fcs(tmp_path / "fcs", population="CD57+")
    assert not (tmp_path / "fcs").exists()


def test_existing_output_is_never_overwritten_silently(
    tiny_batch: Path, tiny_run, fast_config: RunConfig
) -> None:
    with pytest.raises(OutputExistsError, match="--force"):
        run(tiny_batch, tiny_run.out_dir, config=fast_config)


def test_foreign_folder_is_never_replaced(
    tiny_batch: Path, tmp_path: Path, fast_config: RunConfig
) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(OutputExistsError, match="not made by nkflow"):
        run(tiny_batch, tmp_path, config=fast_config, force=True)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((folder / "tables").glob("*.csv"))
    }


def test_bad_file_fails_alone_and_resume_matches(
    tiny_batch: Path, tiny_run, tmp_path: Path, fast_config: RunConfig
) -> None:
    batch = tmp_path / "batch"
    shutil.copytree(tiny_batch, batch)
    sheet = pd.read_csv(batch / "metadata.csv")
    victim = sheet.loc[sheet["role"] == "unstim", "file"].iloc[0]
    original = (batch / victim).read_bytes()
    (batch / victim).write_bytes(original[: len(original) // 3])
    broken = run(batch, tmp_path / "out", config=fast_config)
    st = broken.status.set_index("file")
    assert st.loc[victim, "status"] == "parse-failed"
    assert victim in st.loc[victim, "message"]
    assert (st.drop(index=victim)["status"] != "parse-failed").all()
    # repair the file, resume: only the failed sample is redone and the tables equal a
    # clean run's tables byte for byte
    (batch / victim).write_bytes(original)
    resumed = run(batch, tmp_path / "out", config=fast_config, resume=True)
    assert (resumed.status["status"] != "parse-failed").all()
    assert _digest(resumed.out_dir) == _digest(tiny_run.out_dir)


def test_qc_runs_once_per_file_and_tables_equal(
    tiny_batch: Path, tiny_run, tmp_path: Path, fast_config: RunConfig, monkeypatch
) -> None:
    """The sample pass reuses the QC outcome of the batch-pool pass: same tables."""
    import collections

    from nkflow import pp
    from nkflow.config import replace_values

    qc_events = pp.qc_events
    calls: collections.Counter[str] = collections.Counter()

    def counted(adata, **kwargs):
        calls[adata.uns["nkflow"]["sample"]["sample_id"]] += 1
        return qc_events(adata, **kwargs)

    monkeypatch.setattr(pp, "qc_events", counted)
    config = replace_values(fast_config, {"execution.workers": 1})  # in process: counted
    result = run(tiny_batch, tmp_path / "out", config=config)
    # every file once, including the unstimulated tubes both the batch pool and the
    # sample pass read (twice without the reuse)
    unstim = result.status.loc[result.status["role"] == "unstim", "sample_id"]
    assert len(unstim) and all(calls[str(s)] == 1 for s in unstim), calls
    assert set(calls.values()) == {1}, calls
    assert _digest(result.out_dir) == _digest(tiny_run.out_dir)


def _recorded_closes(monkeypatch, module: str) -> list[list[bool]]:
    """Replace ``module``'s SampleExecutor; per executor made, the ``wait`` of each close."""
    made: list[list[bool]] = []

    class Recorded(SampleExecutor):
        def __init__(self, **kwargs) -> None:
            super().__init__(**kwargs)
            self.closes: list[bool] = []
            made.append(self.closes)

        def close(self, *, wait: bool = True) -> None:
            self.closes.append(wait)
            super().close(wait=wait)

    monkeypatch.setattr(importlib.import_module(module), "SampleExecutor", Recorded)
    return made


@pytest.mark.parametrize("problem", ["sheet", "output folder"])
def test_run_stopped_before_any_task_stops_its_starting_workers_at_once(
    tiny_batch: Path, tmp_path: Path, fast_config: RunConfig, monkeypatch, problem: str
) -> None:
    """The workers start first (they import while the batch is checked); a sheet or an
    output folder that cannot be used stops the run before any task, and the workers are
    stopped without waiting for their imports."""
    made = _recorded_closes(monkeypatch, "nkflow.pipeline.run")  # the module, not run()
    source, out = tiny_batch, tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("not an nkflow folder")
    if problem == "sheet":
        source = tmp_path / "metadata.csv"
        source.write_text("sample_id,foo\nA,1\n", encoding="utf-8")  # no file column
        out = tmp_path / "new"
    config = replace_values(fast_config, {"execution.workers": 2})
    error = MetadataError if problem == "sheet" else OutputExistsError
    with pytest.raises(error):
        run(source, out, config=config)
    assert made == [[False]]
    assert (tmp_path / "out" / "notes.txt").read_text() == "not an nkflow folder"
    assert not (tmp_path / "new").exists()


def test_workers_start_by_importing_the_module_of_the_sample_tasks() -> None:
    from nkflow.pipeline.run import SAMPLE_TASKS_MODULE
    from nkflow.pipeline.sample import pool_sample, process_sample

    assert SAMPLE_TASKS_MODULE == process_sample.__module__ == pool_sample.__module__


def test_gate_on_workers_writes_what_gate_in_process_writes(
    tiny_batch: Path, tmp_path: Path, fast_config: RunConfig
) -> None:
    """``nkflow gate`` runs its tubes on the workers: the same populations, thresholds
    (stimulated tubes borrowing their partner's cut-offs), status and per-event membership
    as one tube after the other in this process."""
    from nkflow.pipeline import gate_files

    written = {}
    for workers in (1, 2):
        config = replace_values(
            fast_config, {"execution.workers": workers, "gating.template": "human_tissue"}
        )
        res = gate_files([tiny_batch], tmp_path / f"w{workers}", config=config, events=True)
        assert (res.tables["status"]["status"] == "ok").sum() >= 4
        written[workers] = {
            str(f.relative_to(res.out_dir)): f.read_bytes()
            for f in sorted(res.out_dir.rglob("*"))
            if f.suffix in (".csv", ".parquet")
        }
    assert "membership" in " ".join(written[1])
    assert written[2] == written[1]
    thresholds = pd.read_csv(tmp_path / "w2" / "thresholds.csv")
    assert thresholds["control_file"].fillna("").str.contains("unstim").any()  # borrowed
    fmo = thresholds[thresholds["sample_id"].isna() & (thresholds["evidence"] == "fmo")]
    assert len(fmo) and fmo["percent_above_at_ci_low"].notna().all()  # as the tubes applied it
    # without --events the workers send no membership back, and the tables are the same
    res = gate_files([tiny_batch], tmp_path / "no_events", config=config)
    tables = {str(f.relative_to(res.out_dir)): f.read_bytes() for f in res.out_dir.rglob("*.csv")}
    assert tables == {k: v for k, v in written[2].items() if k.endswith(".csv")}
    assert not (res.out_dir / "membership").exists()


def _gate_batch_thresholds(
    folder: Path, sheet: pd.DataFrame, template: str, *, qc: bool = False
) -> dict[str, list]:
    """The thresholds each tube of ``sheet`` was cut at by the library's ``gate_batch``
    (events read as a run reads them with ``qc``)."""
    from nkflow import pp
    from nkflow.gating import gate_batch
    from nkflow.io import read_fcs

    rows = sheet.set_index("sample_id")

    def reader(sid: str):
        adata = read_fcs(folder / rows.loc[sid, "file"], sample_id=sid)
        if qc:
            pp.qc(adata, remove=True)
        pp.compensate(adata)
        pp.transform(adata, method="logicle")
        return adata

    used: dict[str, list] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gate_batch(sheet, reader, template, n_boot=0, pool=False,
                   on_sample=lambda sid, adata, _: used.setdefault(
                       sid, nkflow_uns(adata)["thresholds"]))  # fmt: skip
    return used


@pytest.mark.parametrize(
    ("tubes", "paired"),
    [
        (("D1_blood_pre_unstim", "D1_blood_pre_stim"), True),  # one donor: its one partner
        (("D1_blood_pre_unstim", "D1_liver_pre_unstim", "D1_blood_pre_stim"), False),
    ],
)
def test_a_folder_without_a_sheet_pairs_a_stimulated_tube_only_with_a_sure_partner(
    tiny_batch: Path, tmp_path: Path, fast_config: RunConfig, tubes: tuple[str, ...], paired: bool
) -> None:
    """Without a sheet no donor, tissue or timepoint is known: every tube has the same
    empty key. One unstimulated tube is the stimulated tube's partner; two may be two
    donors, so the stimulated tube borrows no cut-off (run and gate) and gets no baseline
    to be scored against, rather than the first tube found."""
    from nkflow.pipeline import gate_files

    bare = tmp_path / "bare"
    bare.mkdir()
    for name in tubes:
        shutil.copy(tiny_batch / f"{name}.fcs", bare)
    res = run(bare, tmp_path / "run", config=fast_config)
    counts = pd.read_csv(res.out_dir / "tables" / "counts.csv")
    rules = counts.loc[counts["sample_id"] == "D1_blood_pre_stim", "areg_rule"]
    assert rules.str.startswith("unstimulated tube:").all() == paired  # the AREG cut-off
    gated = gate_files([bare], tmp_path / "gate", config=fast_config)
    borrowed = gated.tables["thresholds"]["control_file"].fillna("").str.contains("unstim")
    assert borrowed.any() == paired  # borrowed cut-offs name the partner's file
    from nkflow.io import metadata_from_folder

    used = _gate_batch_thresholds(bare, metadata_from_folder(bare), "human_blood")
    files = {str(t.get("control_file") or "") for t in used["D1_blood_pre_stim"]}
    assert any("unstim" in f for f in files) == paired  # the library API alike
    flags = res.tables["flags"]
    first_rule = flags["failed_rules"].str.split(";").str[0]
    assert (first_rule == "UNSTIM_AMBIGUOUS").all() != paired
    assert (flags["unstim_sample_id"] == "D1_blood_pre_unstim").all() == paired


@pytest.mark.parametrize(
    ("other", "unstim_fmo"),
    [
        ({"donor": "D2"}, "liver_FMO_AREG.fcs"),
        ({"timepoint": "post"}, "liver_FMO_AREG.fcs"),
        # a resting AREG FMO beside the stimulated one: each tube takes its own condition's
        ({"stimulation": "unstim"}, "other_liver_FMO_AREG.fcs"),
    ],
)
def test_each_tube_is_cut_at_its_nearest_fmo_tube(
    tiny_batch: Path,
    tmp_path: Path,
    fast_config: RunConfig,
    other: dict[str, str],
    unstim_fmo: str,
) -> None:
    """With one AREG FMO tube per donor, timepoint or condition in a tissue and batch, a
    tube takes its own donor's, timepoint's or condition's FMO, even when another is listed
    first in the sheet: in ``nkflow run`` and in the library's ``gate_batch`` alike. A
    stimulated tube cut at a resting FMO would read activation background as AREG."""
    batch = tmp_path / "batch"
    shutil.copytree(tiny_batch, batch)
    shutil.copy(batch / "blood_FMO_AREG.fcs", batch / "other_liver_FMO_AREG.fcs")
    sheet = pd.read_csv(batch / "metadata.csv", dtype=str, keep_default_na=False)
    first = sheet[sheet["sample_id"] == "liver_FMO_AREG"].assign(
        file="other_liver_FMO_AREG.fcs", sample_id="other_liver_FMO_AREG", **other
    )
    sheet = pd.concat([first, sheet], ignore_index=True)  # the other FMO first
    sheet.to_csv(batch / "metadata.csv", index=False)
    expected = {"D1_liver_pre_stim": "liver_FMO_AREG.fcs", "D1_liver_pre_unstim": unstim_fmo}
    res = run(batch, tmp_path / "out", config=fast_config)
    counts = pd.read_csv(res.out_dir / "tables" / "counts.csv")
    liver = counts[counts["sample_id"].isin(expected)]
    assert liver.groupby("sample_id")["areg_control_file"].agg(set).to_dict() == {
        sid: {f} for sid, f in expected.items()
    }
    used = _gate_batch_thresholds(batch, sheet[sheet["tissue"] == "liver"], "human_tissue")
    picked = {
        sid: next(t["control_file"] for t in used[sid] if t["marker"] == "AREG") for sid in expected
    }
    assert picked == expected


def test_replicate_fmo_tubes_are_pooled_into_one_cut_off(
    tiny_batch: Path, tmp_path: Path, fast_config: RunConfig
) -> None:
    """Two AREG FMO tubes of one donor, timepoint, condition, tissue and batch are one
    control: their events are pooled and the percentile taken once, in ``nkflow run`` and
    in ``gate_batch`` alike; the plan names them."""
    from nkflow import pp
    from nkflow.gating.apply import fmo_thresholds
    from nkflow.io import read_fcs

    batch = tmp_path / "batch"
    shutil.copytree(tiny_batch, batch)
    shutil.copy(batch / "blood_FMO_AREG.fcs", batch / "liver_FMO_AREG_2.fcs")
    sheet = pd.read_csv(batch / "metadata.csv", dtype=str, keep_default_na=False)
    second = sheet[sheet["sample_id"] == "liver_FMO_AREG"].assign(
        file="liver_FMO_AREG_2.fcs", sample_id="liver_FMO_AREG_2"
    )
    sheet = pd.concat([sheet, second], ignore_index=True)
    sheet.to_csv(batch / "metadata.csv", index=False)
    res = run(batch, tmp_path / "out", config=fast_config)
    th = res.tables["thresholds"]
    fmo = th[(th["marker"] == "AREG") & (th["tissue"] == "liver") & (th["sample_id"] == "")]
    assert len(fmo) == 1 and fmo["rule"].iloc[0].endswith("pooled")
    assert "pooled: liver_FMO_AREG.fcs, liver_FMO_AREG_2.fcs" in fmo["note"].iloc[0].split("; ")[0]

    def reader(sid: str):
        adata = read_fcs(batch / f"{sid}.fcs", sample_id=sid)
        pp.qc(adata, remove=True)  # as a run reads it
        pp.compensate(adata)
        pp.transform(adata)
        return adata

    alone = [  # each tube's own FMO threshold
        t for name in ("liver_FMO_AREG", "liver_FMO_AREG_2")
        for t in fmo_thresholds(sheet[sheet["sample_id"] == name], reader, "human_tissue",
                                n_boot=0)
        if t.marker == "AREG"
    ]  # fmt: skip
    assert len(alone) == 2 and sum(t.n_events for t in alone) == fmo["n_events"].iloc[0]
    counts = pd.read_csv(res.out_dir / "tables" / "counts.csv")
    liver = counts[counts["sample_id"].str.startswith("D1_liver")]
    assert set(liver["areg_rule"]) == {fmo["rule"].iloc[0]}
    # the library: the same pooled cut-off
    used = _gate_batch_thresholds(batch, sheet[sheet["tissue"] == "liver"], "human_tissue",
                                  qc=True)  # fmt: skip
    areg = [next(t["value"] for t in u if t["marker"] == "AREG") for u in used.values()]
    assert areg == pytest.approx([fmo["value"].iloc[0]] * len(areg), abs=1e-6)


def test_gate_stopped_by_its_panel_stops_its_starting_workers_at_once(
    tmp_path: Path, fast_config: RunConfig, monkeypatch
) -> None:
    """Files whose panel has no NK anchor stop ``nkflow gate`` before any tube; the workers
    it started meanwhile are stopped without waiting for their imports."""
    import numpy as np

    from nkflow.exceptions import PanelMismatchError
    from nkflow.io import write_fcs
    from nkflow.pipeline import gate_files

    made = _recorded_closes(monkeypatch, "nkflow.pipeline.gate")
    data = np.random.default_rng(0).uniform(0, 1000, size=(50, 3)).astype(np.float32)
    files = [tmp_path / f"t{i}.fcs" for i in range(2)]
    for path in files:  # CD3 but no CD56: nothing anchors NK
        write_fcs(path, data, ["FSC-A", "R1-A", "Time"], markers=[None, "CD3 APC", None])
    config = replace_values(
        fast_config, {"execution.workers": 2, "gating.template": "human_tissue"}
    )
    with pytest.raises(PanelMismatchError):
        gate_files(files, tmp_path / "out", config=config)
    assert made[0][0] is False


def test_default_out_dir_is_beside_the_input(tmp_path: Path) -> None:
    (tmp_path / "batch1").mkdir()
    assert default_out_dir(tmp_path / "batch1") == tmp_path / "batch1_nkflow"


def _gating_images(report: Path) -> dict[str, str]:
    """``sample_id -> img src`` of the report's gating plots."""
    text = report.read_text(encoding="utf-8")
    return {
        html.unescape(alt)[len("gating_") :]: src
        for src, alt in re.findall(r'<img src="([^"]*)" alt="(gating_[^"]*)"', text)
    }


def test_each_analysed_sample_has_its_svg_gating_figure_in_the_report(tiny_run) -> None:
    status = tiny_run.status
    ok = status.loc[(status["status"] == "ok") & status["role"].isin(ANALYSED_ROLES), "sample_id"]
    folder = OutputFolder(tiny_run.out_dir)
    shown = _gating_images(tiny_run.report_path)
    assert sorted(shown) == sorted(ok)
    for sid in ok:
        work = folder.sample_dir(sid)
        products = json.loads((work / "result.json").read_text(encoding="utf-8"))["products"]
        assert products[GATING_FIGURE] == product_record(work / GATING_FIGURE)
        assert decode_data_uri(shown[sid]) == (work / GATING_FIGURE).read_bytes()
        assert figure_format((work / GATING_FIGURE).read_bytes()) == "svg"


def test_resume_shows_the_gating_figure_each_sample_lists(
    tiny_batch: Path, tiny_run, fast_config: RunConfig, tmp_path: Path
) -> None:
    """A sample finished before the SVG figure keeps its PNG; a file result.json does not
    list (left by another run) is never shown."""
    out = tmp_path / "out"
    shutil.copytree(tiny_run.out_dir, out)
    folder = OutputFolder(out)
    legacy, stray, *rest = sorted(_gating_images(tiny_run.report_path))
    png = figure_png(Figure(figsize=(1, 1)))
    for sid in (legacy, stray):
        work = folder.sample_dir(sid)
        summary = json.loads((work / "result.json").read_text(encoding="utf-8"))
        del summary["products"][GATING_FIGURE]
        if sid == legacy:
            (work / GATING_FIGURE).unlink()
            (work / LEGACY_GATING_FIGURE).write_bytes(png)
            summary["products"][LEGACY_GATING_FIGURE] = product_record(work / LEGACY_GATING_FIGURE)
        (work / "result.json").write_text(json.dumps(summary), encoding="utf-8")
    again = run(tiny_batch, out, config=fast_config, resume=True)
    shown = _gating_images(again.report_path)
    assert decode_data_uri(shown.pop(legacy)) == png
    assert stray not in shown
    assert sorted(shown) == sorted(rest)
    assert all(src.startswith("data:image/svg+xml") for src in shown.values())


def test_input_hashes_read_files_in_stage_order(tmp_path: Path, monkeypatch) -> None:
    """FMO tubes are read first, then unstimulated tubes, then the rest (the stages' order),
    so the hashing thread brings files into the page cache before the workers open them;
    the hashes keep the sheet's order and skip missing files and files it may not read
    (a chmod 000 file stopped the whole batch after its tables were written)."""
    stages = importlib.import_module("nkflow.pipeline.stages")
    sheet = [
        ("a_stim.fcs", "stim", "stim"),
        ("b_unstim.fcs", "unstim", "unstim"),
        ("c_fmo.fcs", "fmo:AREG", "stim"),
        ("d_missing.fcs", "unstim", "unstim"),
        ("e_unstim.fcs", "unstim", "unstim"),
        ("f_fmo.fcs", "fmo:CD69", "unstim"),
    ]
    for name, _, _ in sheet:
        if name != "d_missing.fcs":
            (tmp_path / name).write_bytes(name.encode())
    meta = pd.DataFrame(
        {
            "file": [s[0] for s in sheet],
            "path": [str(tmp_path / s[0]) for s in sheet],
            "role": [s[1] for s in sheet],
            "stimulation": [s[2] for s in sheet],
        }
    )
    read: list[str] = []

    def sha256(path: str) -> str:
        read.append(Path(path).name)
        if Path(path).name == "e_unstim.fcs":  # chmod 000: its own read fails and says why
            raise PermissionError(13, "Permission denied", path)
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()

    monkeypatch.setattr(stages, "file_sha256", sha256)
    hashes = stages._input_hashes(meta)
    assert read == ["c_fmo.fcs", "f_fmo.fcs", "b_unstim.fcs", "e_unstim.fcs", "a_stim.fcs"]
    assert list(hashes) == ["a_stim.fcs", "b_unstim.fcs", "c_fmo.fcs", "f_fmo.fcs"]
    assert hashes["c_fmo.fcs"] == hashlib.sha256(b"c_fmo.fcs").hexdigest()


def test_a_tubes_status_carries_nkflows_warnings_not_other_libraries(
    sample_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pandas deprecation raised while a tube is processed went into its status message
    ("FutureWarning: The behavior of DataFrame concatenation ..."); only nkflow's own
    warnings, which say something about the data, do now."""
    from nkflow.exceptions import LowEventCountWarning
    from nkflow.pipeline import sample as sample_module

    real = sample_module.count_positive

    def noisy(*args, **kwargs):
        warnings.warn("The behavior of DataFrame concatenation ...", FutureWarning, stacklevel=2)
        warnings.warn("sample 's': 12 NK events", LowEventCountWarning, stacklevel=2)
        return real(*args, **kwargs)

    monkeypatch.setattr(sample_module, "count_positive", noisy)
    path = sorted((sample_data / "human").glob("*_blood_pre_unstim.fcs"))[0]
    cfg = replace_values(RunConfig(), {"gating.bootstrap": 0})
    task = sample_module.SampleTask(
        "s", str(path), {"tissue": "blood", "species": "human"}, cfg, "human_blood", figures=False
    )
    said = sample_module.process_sample(task)["warnings"]
    assert "LowEventCountWarning: sample 's': 12 NK events" in said
    assert not [w for w in said if w.startswith("FutureWarning")]


def test_an_fmo_tube_no_gate_uses_is_named_unused(
    tiny_batch: Path, tmp_path: Path, fast_config: RunConfig
) -> None:
    """An FMO tube of a marker every gate cuts from the data (CD56: valleys) read
    "FMO control: thresholds computed" although no threshold cites it; the plan and the
    tube's status row now say it is not used."""
    from nkflow.io import read_batch
    from nkflow.pipeline.plan import plan_batch

    batch = tmp_path / "batch"
    shutil.copytree(tiny_batch, batch)
    sheet = pd.read_csv(batch / "metadata.csv", dtype=str, keep_default_na=False)
    sheet.loc[sheet["sample_id"] == "blood_FMO_CD69", "role"] = "fmo:CD56"
    sheet.to_csv(batch / "metadata.csv", index=False)
    plan = plan_batch(read_batch(batch).metadata, fast_config)
    (note,) = [n for n in plan.notes if n.startswith("FMO tubes not used")]
    assert "fmo:CD56 tube(s) (blood_FMO_CD69.fcs)" in note and "human_blood" in note
    res = run(batch, tmp_path / "out", config=fast_config)
    status = res.status.set_index("sample_id")
    assert status.loc["blood_FMO_CD69", "reason_code"] == "CONTROL_UNUSED"
    assert status.loc["blood_FMO_AREG", "reason_code"] == "CONTROL"  # a used one, as before
    assert "blood_FMO_CD69.fcs" not in set(res.tables["thresholds"]["control_file"].astype(str))


def _result_times(out: Path) -> dict[str, int]:
    """``{work folder: mtime of its result.json}``: which samples a run wrote again."""
    return {p.parent.name: p.stat().st_mtime_ns for p in (out / "work").glob("*/result.json")}


def test_resume_redoes_a_file_replaced_by_one_of_the_same_size_and_only_it(
    tiny_batch: Path, fast_config: RunConfig, tmp_path: Path
) -> None:
    """The fingerprint held the file's size, not its content: a tube overwritten by
    another of the same size kept its old results while provenance.json named the new
    file's SHA-256. The worker count, which the tables do not depend on, made every
    sample be redone."""
    batch, out = tmp_path / "batch", tmp_path / "out"
    shutil.copytree(tiny_batch, batch)
    first = run(batch, out, config=fast_config)  # a copy of the batch: its own output
    victim, other = batch / "D1_blood_pre_stim.fcs", batch / "D1_liver_pre_stim.fcs"
    assert victim.stat().st_size == other.stat().st_size  # stimulated: nothing pairs on it
    shutil.copyfile(other, victim)
    before = _result_times(out)
    workers = replace_values(fast_config, {"execution.workers": 1})  # tiny_run: 0
    again = run(batch, out, config=workers, resume=True)
    redone = {name for name, mtime in _result_times(out).items() if mtime != before[name]}
    work = OutputFolder(out).sample_dir("D1_blood_pre_stim")
    assert redone == {work.name}
    sha = hashlib.sha256(victim.read_bytes()).hexdigest()
    provenance = json.loads((out / "provenance.json").read_text(encoding="utf-8"))
    assert provenance["inputs_sha256"]["D1_blood_pre_stim.fcs"] == sha
    assert json.loads((work / "result.json").read_text(encoding="utf-8"))["input_sha256"] == sha
    pops = again.populations.set_index(["sample_id", "population"])["count"]
    old = first.populations.set_index(["sample_id", "population"])["count"]
    assert not pops.loc["D1_blood_pre_stim"].equals(old.loc["D1_blood_pre_stim"])
    kept = pops.drop(index="D1_blood_pre_stim", level="sample_id")
    assert kept.equals(old.drop(index="D1_blood_pre_stim", level="sample_id"))


def test_resume_keeps_no_figure_or_work_of_a_sample_left_out_of_the_batch(
    tiny_batch: Path, tiny_run, fast_config: RunConfig, tmp_path: Path
) -> None:
    """A resume on a batch with a tube removed left figures/gating_<tube>.svg and its
    work folder behind: figures/ now holds this run's figures only."""
    batch, out = tmp_path / "batch", tmp_path / "out"
    shutil.copytree(tiny_batch, batch)
    shutil.copytree(tiny_run.out_dir, out)
    gone = "D1_liver_pre_stim"
    sheet = pd.read_csv(batch / "metadata.csv", dtype=str, keep_default_na=False)
    sheet[sheet["sample_id"] != gone].to_csv(batch / "metadata.csv", index=False)
    (batch / f"{gone}.fcs").unlink()
    folder = OutputFolder(out)
    assert (out / "figures" / f"gating_{gone}.svg").is_file() and folder.sample_dir(gone).is_dir()
    run(batch, out, config=fast_config, resume=True)
    assert not (out / "figures" / f"gating_{gone}.svg").exists()
    assert not folder.sample_dir(gone).exists()
    kept = sorted(p.name for p in (out / "figures").glob("gating_*.svg"))
    assert kept == sorted(p.name for p in (tiny_run.out_dir / "figures").glob("gating_*.svg")
                          if p.name != f"gating_{gone}.svg")  # fmt: skip
    before = {p.name for p in (tiny_run.out_dir / "work").iterdir()}
    assert {p.name for p in (out / "work").iterdir()} == before - {folder.sample_dir(gone).name}


def test_the_pool_pass_leaves_a_files_warnings_to_the_sample_pass(
    sample_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a worker the pool pass printed a file's read warnings raw, with nkflow's source
    lines (FCSQuirkWarning of itn_02.fcs); the sample pass reads it again and says them."""
    import nkflow.pipeline.sample as sample_module
    from nkflow.config import RunConfig, replace_values
    from nkflow.exceptions import FCSQuirkWarning
    from nkflow.pipeline.sample import SampleTask, pool_sample, process_sample

    real = sample_module.read_fcs

    def read_with_a_quirk(*args, **kwargs):
        warnings.warn("a quirk of this file", FCSQuirkWarning, stacklevel=2)
        return real(*args, **kwargs)

    monkeypatch.setattr(sample_module, "read_fcs", read_with_a_quirk)
    path = sorted((sample_data / "human").glob("*_liver_pre_unstim.fcs"))[0]
    cfg = replace_values(RunConfig(), {"gating.bootstrap": 0})
    row = {"tissue": "liver", "species": "human"}
    task = SampleTask("s", str(path), row, cfg, "human_tissue", figures=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pooled = pool_sample(task)
    assert pooled["contributions"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = process_sample(task)
    assert "a quirk of this file" in " ".join(map(str, summary["warnings"]))
