"""The results of a run, as a notebook user meets them.

Tables are pandas DataFrames (``res.populations``, ``res.scores`` ...), the gated NK
events of the whole batch are one AnnData (``res.to_anndata()``), and exports go to
``.h5ad`` for scanpy and to FCS for FlowJo.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from ..config import RunConfig
from ..exceptions import ChannelNotFoundError, NkflowWarning
from ..gating.membership import is_set, member_mask
from ..io import write_fcs
from ..io.h5ad import write_h5ad
from ..io.write import name_digest, safe_name
from .outdir import LABELS_FILE, NK_EVENTS_FILE, OutputFolder
from .sample import read_kept_events

__all__ = ["Results"]


@dataclass
class Results:
    """What :func:`nkflow.run` returns.

    Attributes
    ----------
    out_dir
        The output folder.
    config
        The effective configuration.
    metadata
        The validated metadata sheet.
    tables
        Every tidy table by name (``populations``, ``thresholds``, ``counts``,
        ``clusters``, ``cluster_medians``, ``scores``, ``flags``, ``controls``,
        ``comparisons``, ``bright_dim``, ``qc``, ``status``, ``consistency``).
    caveats
        The caveats printed with every scored output.
    report_path
        ``report.html`` (``None`` if the report was not written).
    clustering
        The fitted clustering (``None`` when clustering was off or had no cells).
    notes
        What the run could not do as configured, one sentence each: clustering skipped
        (with why), or with ``nkflow gate`` and a workspace, the settings that do not
        apply. The CLI prints them; the report says the same.
    """

    out_dir: Path
    config: RunConfig
    metadata: pd.DataFrame
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    caveats: str = ""
    report_path: Path | None = None
    clustering: Any = None
    notes: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        status = self.tables.get("status", pd.DataFrame(columns=["status"]))
        counts = status["status"].value_counts().to_dict() if len(status) else {}
        return f"<nkflow Results: {len(self.metadata)} files {counts}, out={self.out_dir}>"

    def _table(self, name: str) -> pd.DataFrame:
        return self.tables.get(name, pd.DataFrame())

    @property
    def populations(self) -> pd.DataFrame:
        """Gated population counts and percentages per sample."""
        return self._table("populations")

    @property
    def thresholds(self) -> pd.DataFrame:
        """Every threshold with its rule, control file and confidence interval."""
        return self._table("thresholds")

    @property
    def scores(self) -> pd.DataFrame:
        """Repair profiles per stimulated tube and population."""
        return self._table("scores")

    @property
    def scoring_definitions(self) -> dict[str, Any]:
        """The score definitions the run used (``min_net``, ``ri_cut`` ...).

        As recorded in ``provenance.json``; empty when the run scored nothing or the file
        is gone.
        """
        path = Path(self.out_dir) / "provenance.json"
        try:
            recorded = json.loads(path.read_text(encoding="utf-8")).get("scoring")
        except (OSError, ValueError, AttributeError):
            return {}
        return dict(recorded) if isinstance(recorded, dict) else {}

    @property
    def flags(self) -> pd.DataFrame:
        """AREG-responsive / repair-biased flags with the rules that raised or failed them."""
        return self._table("flags")

    @property
    def clusters(self) -> pd.DataFrame:
        """Metacluster abundance per sample."""
        return self._table("clusters")

    @property
    def status(self) -> pd.DataFrame:
        """One row per input file: ok, qc-failed, parse-failed, failed or skipped."""
        return self._table("status")

    @property
    def failures(self) -> list[dict[str, Any]]:
        """Files that failed: ``sample_id``, ``file``, ``status``, ``reason_code``, ``message``.

        ``reason_code`` ``OUTPUT_WRITE`` means the sample was analysed but its products
        could not be written (no space, read-only, permission): the environment, not
        the file, is at fault.
        """
        st = self.status
        if st.empty:
            return []
        bad = st[st["status"].isin(["parse-failed", "failed", "qc-failed"])]
        cols = [c for c in ("sample_id", "file", "status", "reason_code", "message") if c in bad]
        return bad[cols].to_dict("records")

    def kept_events(self, sample_id: str) -> ad.AnnData:
        """The gated NK events of one sample (transformed ``X``, gate and cluster columns).

        ``obs["metacluster"]`` has the clustering's categories in its order (``"1"``,
        ``"2"``, ..., ``"10"``), whichever of them the sample holds.

        Raises
        ------
        ChannelNotFoundError
            The sample kept no events (it failed, or the id is not the run's); the message
            lists the samples that did. It is a ``KeyError``.
        """
        folder = OutputFolder(self.out_dir)
        adata = read_kept_events(folder.sample_dir(sample_id))
        if adata is None:
            status = self.tables.get("status", pd.DataFrame(columns=["sample_id", "status"]))
            ok = status.loc[status["status"] == "ok", "sample_id"].astype(str)
            raise ChannelNotFoundError(
                sample_id, list(ok), source=self.out_dir, what="sample with kept events"
            )
        labels = folder.sample_dir(sample_id) / LABELS_FILE
        if labels.is_file():
            mine = pd.read_parquet(labels)["metacluster"].astype(str).to_numpy()
            if len(mine) == adata.n_obs:
                adata.obs["metacluster"] = pd.Categorical(
                    mine, categories=self._metacluster_categories(mine)
                )
        return adata

    def _metacluster_categories(self, values: np.ndarray) -> list[str]:
        """The clustering's categories (numeric order), then any other value found."""
        known = list(getattr(self.clustering, "categories", None) or [])
        others = sorted(set(values) - set(known), key=lambda v: (not v.isdigit(), len(v), v))
        return known + others

    def to_anndata(self) -> ad.AnnData:
        """The gated NK events of every analysed sample in one AnnData (scanpy-ready).

        ``obs`` carries ``sample_id`` and the metadata columns (donor, tissue, timepoint,
        stimulation, role, species, batch), every sample's gate columns and
        ``metacluster``; ``var`` holds the channels every sample has (samples are joined
        on channel names; the first sample's ``var`` columns).

        A gate column that every sample has stays ``bool``. One that only some samples
        have (a stimulated tube takes residency, CD16, CD62L and CD69 from its
        unstimulated partner, so it has no ``trNK``, ``circNK``, ``NK_CD69+`` ...
        columns) is pandas' nullable ``"boolean"``: ``<NA>`` for the samples where the
        gate was not set (not measured, not negative). It writes to ``.h5ad`` as it is.

        It is for looking at cells across samples (scanpy, plots); the per-sample tools
        :func:`nkflow.tl.count_positive` and :func:`nkflow.tl.abundance_table` refuse it
        (its ``uns`` holds no sample's thresholds): give them :meth:`kept_events`.
        """
        ok = self.status[self.status["status"] == "ok"]["sample_id"].astype(str)
        parts = []
        for sid in ok:
            try:
                parts.append(self.kept_events(sid))
            except ChannelNotFoundError:
                continue
        if not parts:
            return ad.AnnData(np.zeros((0, 0), dtype=np.float32))
        for part in parts:
            part.uns = {}
        joined = ad.concat(parts, join="inner", merge="first", index_unique="-")
        joined.obs = _outer_obs(parts, joined.obs_names)
        meta = self.metadata.set_index("sample_id")
        for col in ("donor", "tissue", "timepoint", "stimulation", "role", "species", "batch"):
            if col in meta.columns:
                joined.obs[col] = pd.Categorical(
                    joined.obs["sample_id"].astype(str).map(meta[col].astype(str))
                )
        joined.uns["nkflow"] = {"out_dir": str(self.out_dir)}
        return joined

    def write_h5ad(self, path: str | Path) -> Path:
        """Write :meth:`to_anndata` to ``.h5ad`` for scanpy / pytometry.

        The file appears whole or not at all (:func:`nkflow.io.write_h5ad`).
        """
        return write_h5ad(self.to_anndata(), path)

    def export_fcs(self, out: str | Path, *, population: str = "NK") -> list[Path]:
        """Write each sample's events of a gated population as FCS 3.1 for FlowJo.

        Values are nkflow's compensated linear values (``$SPILLOVER`` is left out so
        FlowJo does not compensate twice; keyword ``NKFLOW_COMPENSATED`` says so).
        Every sample's gates are checked before the first file is written, and each
        file is written atomically (it appears whole or not at all).

        Parameters
        ----------
        out
            Folder for the files (``<sample_id>_<population>.fcs``; sample ids that
            would share a file name, such as ``D1 liver`` and ``D1_liver``, get a short
            hash of the id after it).
        population
            A gate column of the kept events (``NK`` or any NK subset). Samples without
            it are skipped with one warning: a stimulated tube has no residency, CD16,
            CD62L or CD69 gates (they come from its unstimulated partner), and a gate that
            could not be set (too few events) has no events to export.

        Returns
        -------
        list of Path
            The files written.

        Raises
        ------
        ChannelNotFoundError
            No sample has the population set (nothing is written); the message lists the
            gates the samples have set.
        OutputFolderError
            A file cannot be written (the message names it and why).

        Warns
        -----
        NkflowWarning
            Naming the samples skipped because they lack the population.
        """
        having, lacking, gates, not_set = [], [], set(), False
        for sid in self.status[self.status["status"] == "ok"]["sample_id"].astype(str):
            columns = self._gate_columns(sid)
            if columns is None:
                continue
            gates.update(g for g, was_set in columns.items() if was_set)
            not_set |= columns.get(population) is False
            (having if columns.get(population) else lacking).append(sid)
        if lacking and not having:
            what = "population set in any sample" if not_set else "population"
            raise ChannelNotFoundError(population, sorted(gates), source=self.out_dir, what=what)
        if lacking:
            warnings.warn(
                f"{self.out_dir}: population {population!r} is not gated (or was not set) in "
                f"{len(lacking)} sample(s), no FCS written for them: {', '.join(lacking)}",
                NkflowWarning,
                stacklevel=2,
            )
        folder = Path(out)
        written = []
        stems = [safe_name(sid) for sid in having]
        for sid, stem in zip(having, stems, strict=True):
            adata = self.kept_events(sid)
            sel = adata[member_mask(adata.obs[population])]
            data = sel.layers["compensated"] if "compensated" in sel.layers else sel.X
            if stems.count(stem) > 1:  # "D1 liver" and "D1_liver": one file name
                stem += "-" + name_digest(sid)
            name = f"{stem}_{safe_name(population)}.fcs"
            written.append(
                write_fcs(
                    folder / name,
                    np.asarray(data, dtype=np.float32),
                    list(sel.var_names),
                    markers=[str(m) for m in sel.var.get("pns", sel.var_names)],
                    keywords={"NKFLOW_COMPENSATED": "TRUE", "NKFLOW_POPULATION": population},
                )
            )
        return written

    def _gate_columns(self, sample_id: str) -> dict[str, bool] | None:
        """The gates of a sample's kept events, read without its events: gate -> set.

        Its bool ``obs`` columns; False for a gate that could not be set (``<NA>``: there
        is nothing to export for it).

        ``None`` when the sample kept no events (as :meth:`kept_events` raises).
        """
        import h5py
        from anndata.io import read_elem

        path = OutputFolder(self.out_dir).sample_dir(sample_id) / NK_EVENTS_FILE
        if not path.is_file():
            return None
        with h5py.File(path, "r") as handle:
            obs = read_elem(handle["obs"])
        return {c: is_set(obs[c]) for c in obs.columns if pd.api.types.is_bool_dtype(obs[c])}


def _outer_obs(parts: list[ad.AnnData], names: pd.Index) -> pd.DataFrame:
    """The samples' ``obs`` joined on every column; gates some samples lack are ``<NA>``.

    ``ad.concat(join="inner")`` would keep only the columns every sample has, dropping
    the residency gates of the unstimulated tubes too. Categoricals get the union of
    their categories (AnnData's outer join).
    """
    frames = [ad.AnnData(obs=part.obs) for part in parts]
    obs = ad.concat(frames, join="outer", index_unique="-").obs
    obs.index = names
    for col in obs.columns:
        having = [part.obs[col] for part in parts if col in part.obs.columns]
        if not all(pd.api.types.is_bool_dtype(values) for values in having):
            continue
        # bool where every sample set the gate; <NA> where one lacks it or did not set it
        everywhere = len(having) == len(parts) and all(map(is_set, having))
        obs[col] = obs[col].astype(bool if everywhere else "boolean")
    return obs
