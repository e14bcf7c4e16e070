"""Apply a gating template to one sample (:func:`gate`) or a whole batch (:func:`gate_batch`).

Where thresholds are computed
-----------------------------
- ``fmo`` thresholds are computed ONCE per tissue and batch by :func:`gate_batch`, from the
  FMO tube (metadata ``role = "fmo:<MARKER>"``) of that tissue and batch, gated with the same
  template down to the same parent gate. Without an FMO tube the sample's own events are
  used with the template's ``fmo_fallback`` rule (default ``valley``, which becomes
  ``mirror`` -- the negative peak's mode + z(99.5 %) robust SDs of its lower half -- when the
  marker is unimodal) and a :class:`MissingControlWarning` is issued; the rule is recorded
  as e.g. ``"valley (fmo fallback)"`` with ``control_file = "fallback:no-fmo"``.
- ``valley`` / ``mirror`` / ``quantile`` thresholds and the scatter gates are computed PER
  SAMPLE (they follow each sample's density; tissue digests differ too much between samples
  for a pooled scatter gate). Each is recorded with its 95% CI, so drift between
  samples and batches stays visible (:func:`~nkflow.gating.drift.compare_thresholds`).
- Thresholds passed in ``thresholds=`` take precedence, matched on (gate, marker) and, when
  the table has them, tissue and batch.

Stimulated tubes (:func:`nkflow.io.metadata.is_stimulated`: ``role == "stim"`` or a named
condition such as ``IL-15`` in ``stimulation``): conditions marked ``stim = "drop"`` (CD16)
are ignored, so subsets rest on CD56/NKp46 only; gates marked ``stim = "skip"`` (CD69, CD62L,
residency) are not called per event, and their rows in the populations table come from the
paired unstimulated tube (``paired_unstim``), with ``phenotype_source`` naming that tube.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from .._frames import concat_rows
from .._relay import warns_at_caller
from ..exceptions import GatingError, MissingControlWarning
from ..io import nkflow_record, restore_records, sample_info, set_record
from ..io.metadata import is_stimulated
from ..io.pairing import (
    PAIR_KEY,
    ambiguous_pair_keys,
    control_origins,
    fmo_replicates,
    is_resting,
    nearest_controls_first,
)
from .channels import resolve_channel
from .cut_spread import applied_batch_cuts, with_batch_spread
from .drift import compare_thresholds
from .engine import GatingRun, _ancestors, _Columns, _run
from .fmo_pool import fmo_uses, pool_fmo_replicates, warn_small_controls
from .gates import gate_to_dict
from .intervals import background_thread
from .membership import obs_columns
from .pooled import batch_pool_thresholds, pool_contribution, pool_targets
from .preconditions import require_transformed, require_whole_sample
from .resolve import ResolvedTemplate, resolve_template
from .stats import population_table
from .template import Template, load_template
from .thresholds import THRESHOLD_COLUMNS, Threshold, fmo_threshold

__all__ = [
    "BORROWED",
    "BatchGatingResult",
    "GatedCopy",
    "GatingRun",
    "applied_template",
    "fmo_thresholds",
    "gate",
    "gate_batch",
    "listed_thresholds",
    "require_transformed",
    "resolve_channel",
]

logger = logging.getLogger(__name__)
#: the rule prefix of a cut-off a stimulated tube took from its unstimulated partner
BORROWED = "unstimulated tube: "


@warns_at_caller
def gate(
    adata: Any,
    template: str | Path | Template | ResolvedTemplate,
    *,
    thresholds: pd.DataFrame | list[Any] | None = None,
    paired_unstim: Any = None,
    random_state: int = 0,
    n_boot: int | None = None,
    fmo_percentile: float | None = None,
    min_events: int | None = None,
    stimulated: bool | None = None,
    copy: bool = False,
) -> pd.DataFrame | GatedCopy:
    """Gate one sample with a template; write membership and provenance into the container.

    Parameters
    ----------
    adata
        One sample (``X`` transformed, ``var["marker"]``, ``uns["nkflow"]["sample"]``).
    template
        Shipped template name, TOML path or a loaded :class:`~nkflow.gating.template.Template`.
    thresholds
        Precomputed thresholds (e.g. the FMO-derived ones of this tissue and batch); a
        thresholds table or a list of :class:`~nkflow.gating.thresholds.Threshold`.
    paired_unstim
        For a stimulated tube: the gated unstimulated tube of the same donor/tissue (AnnData)
        or its populations table; residency rows are copied from it.
    random_state
        Seed for bootstrap CIs and the scatter mixture model.
    n_boot
        Bootstrap resamples per threshold (default: the template's ``bootstrap``).
    fmo_percentile
        Overrides the template's FMO percentile.
    min_events
        Overrides the manifest's minimum event count for the ``low_events`` flag.
    stimulated
        Overrides the tube type read from ``uns["nkflow"]["sample"]``.
    copy
        Gate a copy and leave ``adata`` as it is; then ``table, gated = gate(...,
        copy=True)`` (:class:`GatedCopy`).

    Returns
    -------
    DataFrame or GatedCopy
        The populations table (docs/contracts.md). ``adata.obs`` gains one column per
        population (:mod:`~nkflow.gating.membership`); ``adata.uns["nkflow"]`` gains
        ``gating`` and ``thresholds``. With ``copy=True``: the table and the gated copy.

    Raises
    ------
    GatingError
        The fluorescence channels were never transformed (:func:`require_transformed`),
        or the container holds only the events of one of its gated populations (such as
        ``Results.kept_events``).
    """
    restore_records(adata)  # a file read by plain anndata.read_h5ad: its records come back
    require_transformed(adata)
    require_whole_sample(adata)
    resolved = applied_template(template, adata)
    tpl = resolved.template
    if copy:
        adata = adata.copy()
    # bootstrap intervals run on a second core, when there is one, while the sample is
    # gated and its populations counted (nkflow.gating.intervals)
    with background_thread() as interval_executor:
        run = _run(
            adata,
            tpl,
            thresholds=thresholds,
            random_state=random_state,
            n_boot=n_boot,
            fmo_percentile=fmo_percentile,
            stimulated=stimulated,
            interval_executor=interval_executor,
        )
        # gated again: the previous gates' columns go (counting would mix two hierarchies)
        before = [p["name"] for p in (nkflow_record(adata, "gating") or {}).get("populations", [])]
        adata.obs.drop(columns=[p for p in before if p in adata.obs], inplace=True)
        for name, column in obs_columns(run.parents, run.members, run.unset).items():
            adata.obs[name] = column
        gating = {
            "template": tpl.name,
            "template_path": tpl.path,
            "template_version": tpl.version,
            "template_hash": resolved.source.hash,
            "populations": [
                {"name": g.id, "parent": g.parent, "gate": gate_to_dict(g)} for g in run.gates
            ],
            "skipped": {**resolved.skipped_populations, **run.skipped},
            "unset": dict(run.unset),
            "resolution": resolved.to_dict(),
        }
        set_record(adata, "gating", gating)  # in forms adata.write_h5ad writes (io.records)
        table = population_table(
            adata,
            populations=[g.id for g in run.gates],
            parents=run.parents,
            min_events=tpl.min_events if min_events is None else int(min_events),
        )
        run.resolve_intervals()
    set_record(adata, "thresholds", [t.to_record() for t in run.thresholds])
    if paired_unstim is not None:
        table = _add_unstim_rows(table, paired_unstim, run.skipped, sample_info(adata))
    return GatedCopy(table, adata) if copy else table


class GatedCopy(NamedTuple):
    """What :func:`gate` returns with ``copy=True``: the table and the gated copy.

    A plain pair, so the table stays an ordinary DataFrame (it can be concatenated and
    saved) and the copy is not carried inside it.
    """

    table: pd.DataFrame
    adata: Any


def applied_template(
    template: str | Path | Template | ResolvedTemplate, adata: Any
) -> ResolvedTemplate:
    """The template as applied to this sample's panel.

    A :class:`~nkflow.gating.resolve.ResolvedTemplate` (resolved once for the batch) is used
    as it is; a name, path or :class:`Template` is resolved against ``adata``'s panel.
    """
    if isinstance(template, ResolvedTemplate):
        return template
    tech = sample_info(adata).get("technology") or None
    return resolve_template(template, adata, technology=tech)


def _add_unstim_rows(
    table: pd.DataFrame, unstim: Any, skipped: Mapping[str, str], info: Mapping[str, Any]
) -> pd.DataFrame:
    if isinstance(unstim, pd.DataFrame):
        other = unstim
    else:
        g = nkflow_record(unstim, "gating")
        if not g:
            raise GatingError("paired_unstim is not gated yet; gate the unstimulated tube first")
        other = population_table(
            unstim,
            populations=[p["name"] for p in g["populations"]],
            parents={p["name"]: p["parent"] for p in g["populations"]},
            min_events=0,
            warn=False,
        )
    take = other[other["population"].isin([p for p in skipped if p not in table["population"]])]
    if take.empty:
        return table
    take = take.copy()
    take["phenotype_source"] = take["sample_id"].astype(str)
    take["sample_id"] = str(info.get("sample_id", ""))
    table = table.copy()
    table["phenotype_source"] = table.get("phenotype_source", "")
    # a borrowed row of a gate without a cut-off has NA counts and medians
    return concat_rows([table, take])


def borrow_unstim_thresholds(
    unstim_thresholds: Iterable[Mapping[str, Any]],
    given: Iterable[Mapping[str, Any]] = (),
    *,
    control_file: str = "",
) -> list[dict[str, Any]]:
    """Cut-offs a stimulated tube takes from its unstimulated partner.

    For a marker without an FMO control the unstimulated tube's own cut-off (rule ending
    in ``(fmo fallback)``) is the baseline; the stimulated tube must be cut at the same
    value or a net response (stim - unstim) means nothing (BIOLOGY.md section 4: gates set
    on unstimulated cells or FMOs). Markers already covered by ``given`` (FMO thresholds)
    are not borrowed.

    Parameters
    ----------
    unstim_thresholds
        The unstimulated tube's threshold records (``uns["nkflow"]["thresholds"]``).
    given
        Thresholds the stimulated tube already has (batch-level FMO ones).
    control_file
        The unstimulated tube's file, recorded as the control of each borrowed cut-off.

    Returns
    -------
    list of dict
        Threshold records with ``sample_id`` cleared and rule ``unstimulated tube: <rule>``.
    """
    covered = {(str(t.get("gate", "")), str(t.get("marker"))) for t in given}
    borrowed = []
    for t in unstim_thresholds:
        key = (str(t.get("gate", "")), str(t.get("marker")))
        if "fmo fallback" in str(t.get("rule", "")) and key not in covered:
            borrowed.append({**t, "sample_id": "", "rule": f"{BORROWED}{t['rule']}",
                             "control_file": control_file})  # fmt: skip
    return borrowed


def listed_thresholds(recorded: list[dict[str, Any]], sample_id: str) -> list[dict[str, Any]]:
    """The rows a tube adds to the thresholds table: those it set, those it borrowed.

    A batch-level threshold (FMO, batch pool: ``sample_id`` empty) is listed once for the
    batch, not per tube that applied it. A cut-off borrowed from the unstimulated partner
    (:func:`borrow_unstim_thresholds`) holds for this tube alone: listed under its id.
    ``nkflow run``, ``nkflow gate`` and :func:`gate_batch` alike.
    """
    out = []
    for t in recorded:
        own = str(t.get("sample_id", "") or "") == sample_id
        if own or str(t.get("rule", "")).startswith(BORROWED):
            out.append(t if own else {**t, "sample_id": sample_id})
    return out


@dataclass
class BatchGatingResult:
    """Output of :func:`gate_batch`.

    Attributes
    ----------
    populations
        The populations tables of every gated sample, concatenated (docs/contracts.md).
    thresholds
        The thresholds table: FMO thresholds (``sample_id == ""``, with the shares of the
        sample their interval moves most: :func:`~.cut_spread.with_batch_spread`), then
        each sample's (:func:`listed_thresholds`: with the cut-offs borrowed from its partner).
    drift
        :func:`compare_thresholds` of the data-driven thresholds (not ``density`` or
        ``fixed`` rules), per tissue, gate, marker and batch.
    """

    populations: pd.DataFrame
    thresholds: pd.DataFrame
    drift: pd.DataFrame


def fmo_thresholds(
    meta: pd.DataFrame,
    reader: Callable[[str], Any],
    tpl: Template | ResolvedTemplate,
    *,
    random_state: int = 0,
    n_boot: int | None = None,
    fmo_percentile: float | None = None,
    values_out: dict[tuple[str, str, str], tuple[Any, float, int]] | None = None,
) -> list[Threshold]:
    """FMO thresholds of every FMO tube in ``meta`` (``role = "fmo:<MARKER>"``).

    Each FMO tube is read, gated with the template down to the gate(s) on which its marker
    is thresholded (its thresholds computed on the tube itself), and the marker's
    ``fmo_percentile`` in that gate, with its exact order-statistic CI, becomes the threshold of the
    tube's tissue and batch (``sample_id == ""``, ``control_file`` = the tube's file).

    Parameters
    ----------
    meta
        Metadata rows (at least ``file``, ``sample_id``, ``role``, ``tissue``, ``batch``).
    reader
        ``sample_id -> AnnData``.
    tpl
        A loaded template.
    random_state, n_boot, fmo_percentile
        As in :func:`gate`.
    values_out
        When given, each tube's events behind its thresholds are stored in it
        (:data:`nkflow.gating.fmo_pool.FmoValues`), for pooling replicates found later.

    Returns
    -------
    list of Threshold
        Replicate FMO tubes of ``meta`` (:func:`nkflow.io.pairing.fmo_replicates`) give one
        pooled threshold per gate (:func:`~nkflow.gating.fmo_pool.pool_fmo_replicates`).

    Raises
    ------
    GatingError
        An FMO tube was never transformed, or the gate its marker is thresholded on
        cannot be reached in it.
    """
    source = tpl
    tpl = tpl.template if isinstance(tpl, ResolvedTemplate) else load_template(tpl)
    meta = meta.copy()
    for col in ("role", "tissue", "batch"):
        if col not in meta.columns:
            meta[col] = ""
        meta[col] = meta[col].fillna("").astype(str)
    pct = tpl.fmo_percentile if fmo_percentile is None else float(fmo_percentile)
    boots = tpl.bootstrap if n_boot is None else int(n_boot)
    out: list[Threshold] = []
    replicate_of = fmo_replicates(meta)
    values = {} if values_out is None else values_out
    fmo_rows = meta[meta["role"].astype(str).str.startswith("fmo:")]
    for _, row in fmo_rows.iterrows():
        marker = str(row["role"]).split(":", 1)[1]
        if not fmo_uses(tpl, marker):
            logger.info("FMO tube %s (%s) unused by template %s", row["file"], marker, tpl.name)
            continue
        adata = reader(str(row["sample_id"]))
        require_transformed(adata)
        applied = applied_template(source, adata).template
        uses = fmo_uses(applied, marker)
        ons = {d.on or spec.parent for spec, d in uses}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MissingControlWarning)
            run = _run(
                adata,
                applied,
                random_state=random_state,
                n_boot=0,
                stimulated=False,
                warn_missing=False,
                stop_after=_ancestors(applied, {o for o in ons if o}),
            )
        for on in sorted(o for o in ons if o):
            if on not in run.members:
                raise GatingError(
                    f"FMO tube {row['file']}: gate {on!r} could not be reached "
                    f"({run.skipped.get(on, 'not evaluated')})"
                )
            ch = resolve_channel(adata, marker)
            vals = _Columns(adata)[ch][run.members[on]]
            values[(str(row["file"]), on, marker)] = (vals, pct, boots)
            v, lo, hi, _, ne = fmo_threshold(
                vals, percentile=pct, n_boot=boots, random_state=random_state
            )
            out.append(Threshold(
                marker=marker, channel=ch, value=v, ci_low=lo, ci_high=hi, rule=f"fmo p{pct:g}",
                evidence="fmo", control_file=str(row["file"]), n_events=ne, gate=on,
                sample_id="", tissue=str(row.get("tissue", "") or ""),
                batch=str(row.get("batch", "") or ""),
            ))  # fmt: skip
        del adata
    if replicate_of:
        pooled = pool_fmo_replicates([t.to_record() for t in out], values, replicate_of)
        out = [Threshold(**rec) for rec in pooled]  # type: ignore[arg-type]
    warn_small_controls([t.to_record() for t in out], pct)
    return out


@warns_at_caller
def gate_batch(
    metadata: pd.DataFrame,
    samples: Callable[[str], Any] | Mapping[str, Any],
    template: str | Path | Template | ResolvedTemplate,
    *,
    random_state: int = 0,
    n_boot: int | None = None,
    fmo_percentile: float | None = None,
    max_shift: float = 0.1,
    on_sample: Callable[[str, Any, pd.DataFrame], None] | None = None,
    pool: bool = True,
) -> BatchGatingResult:
    """Gate every sample of one or more batches, one sample in memory at a time.

    First the FMO thresholds of each tissue and batch are computed from the FMO tubes
    (``role = "fmo:<MARKER>"``); then each sample is read, gated with them and released.
    Unstimulated tubes are gated before stimulated ones so a stimulated tube gets its
    residency rows from the unstimulated tube of the same donor, tissue, timepoint and batch
    (the first in the sheet of replicates; none when several share the key and no donor
    tells them apart). Of several FMO tubes of one marker in a tissue and batch, a tube is
    cut at the nearest: its own condition's, donor's, timepoint's
    (:func:`~nkflow.io.pairing.nearest_controls_first`): the rules of ``nkflow run``.

    Parameters
    ----------
    metadata
        The metadata sheet (docs/contracts.md) as a DataFrame.
    samples
        ``sample_id -> AnnData`` callable (e.g. read + compensate + transform), or a dict.
    template
        Template name, path or object.
    random_state, n_boot, fmo_percentile
        As in :func:`gate`.
    max_shift
        Drift bound for :func:`~nkflow.gating.drift.compare_thresholds`.
    on_sample
        Called as ``on_sample(sample_id, adata, populations)`` after each sample is gated
        (e.g. to write its membership) before the sample is released.
    pool
        For ``pool = true`` conditions without an FMO tube, read the unstimulated samples
        once more to pool the marker per batch (:mod:`nkflow.gating.pooled`).

    Returns
    -------
    BatchGatingResult
        ``populations``, ``thresholds`` (FMO ones with ``sample_id == ""``, then per sample)
        and ``drift`` (per tissue/gate/marker and batch).
    """
    tpl = template if isinstance(template, ResolvedTemplate) else load_template(template)
    reader = samples if callable(samples) else samples.__getitem__
    meta = metadata.copy()
    for col in ("role", "tissue", "batch", "donor", "timepoint", "stimulation"):
        if col not in meta.columns:
            meta[col] = ""
        meta[col] = meta[col].fillna("").astype(str)
    meta.loc[meta["role"] == "", "role"] = "sample"
    fmo = fmo_thresholds(
        meta,
        reader,
        template if isinstance(template, ResolvedTemplate) else tpl,
        random_state=random_state,
        n_boot=n_boot,
        fmo_percentile=fmo_percentile,
    )
    todo = meta[meta["role"].isin(["sample", "unstim", "stim", "positive_control"])].copy()
    todo["_stim"] = todo.apply(is_stimulated, axis=1).astype(bool) if len(todo) else False
    if pool and pool_targets(tpl.template if isinstance(tpl, ResolvedTemplate) else tpl):
        fmo += _batch_pool(todo, reader, template, tpl, fmo, random_state, n_boot, fmo_percentile)
    fmo_df = pd.DataFrame([t.to_record() for t in fmo], columns=THRESHOLD_COLUMNS)
    todo = todo.sort_values("_stim", kind="stable")
    resting = todo.apply(is_resting, axis=1).to_numpy(dtype=bool) if len(todo) else []
    ambiguous = ambiguous_pair_keys(todo[np.array(resting, dtype=bool)])
    origin_of_file = control_origins(meta)
    unstim_tables: dict[tuple[str, ...], pd.DataFrame] = {}
    unstim_thresholds: dict[tuple[str, ...], tuple[str, list[dict[str, Any]]]] = {}
    tables: list[pd.DataFrame] = []
    thr: list[pd.DataFrame] = [fmo_df]
    applied: list[dict[str, Any]] = []
    pair_cols = list(PAIR_KEY)
    for _, row in todo.iterrows():
        sid = str(row["sample_id"])
        adata = reader(sid)
        key = tuple(str(row[c]) for c in pair_cols)
        sub = fmo_df[(fmo_df["tissue"] == row["tissue"]) & (fmo_df["batch"] == row["batch"])]
        sub = pd.DataFrame(
            nearest_controls_first(sub.to_dict("records"), row, origin_of_file),
            columns=sub.columns,
        )
        paired = unstim_tables.get(key) if row["_stim"] and key not in ambiguous else None
        if paired is not None:
            unstim_file, unstim_own = unstim_thresholds[key]
            borrowed = borrow_unstim_thresholds(
                unstim_own, sub.to_dict("records"), control_file=unstim_file
            )
            sub = pd.concat([sub, pd.DataFrame(borrowed, columns=sub.columns)], ignore_index=True)
        if row["_stim"] and paired is None:
            msg = f"stimulated tube {sid!r}: no unstimulated tube with the same {pair_cols}"
            if key in ambiguous:
                msg = (f"stimulated tube {sid!r}: several unstimulated tubes share its tissue, "
                       "timepoint and batch and no donor tells them apart")  # fmt: skip
            logger.debug(msg)  # shown once, as the warning below
            warnings.warn(msg, MissingControlWarning, stacklevel=2)
        table = gate(
            adata,
            template if isinstance(template, ResolvedTemplate) else tpl,
            thresholds=sub,
            paired_unstim=paired,
            random_state=random_state,
            n_boot=n_boot,
            fmo_percentile=fmo_percentile,
            stimulated=bool(row["_stim"]),
        )
        if is_resting(row) and key not in unstim_tables:  # the first of replicates
            unstim_tables[key] = table
            own = [t for t in nkflow_record(adata, "thresholds") if t.get("sample_id") == sid]
            unstim_thresholds[key] = (str(row["file"]), own)
        tables.append(table)
        recorded = nkflow_record(adata, "thresholds")
        thr.append(pd.DataFrame(listed_thresholds(recorded, sid), columns=THRESHOLD_COLUMNS))
        applied += applied_batch_cuts(recorded, sid)  # the FMO cut-offs as applied here
        if on_sample is not None:
            on_sample(sid, adata, table)
        del adata
    populations = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    # an FMO row with how far its interval moves the samples it was applied to
    thresholds = with_batch_spread(pd.concat(thr, ignore_index=True), applied)
    # a borrowed cut-off is its partner's again: drift is on the values each tube found
    data_driven = ~thresholds["rule"].astype(str).str.startswith(("density", "fixed", BORROWED))
    drift = compare_thresholds(thresholds[data_driven], max_shift=max_shift)
    return BatchGatingResult(populations=populations, thresholds=thresholds, drift=drift)


def _batch_pool(
    todo: pd.DataFrame,
    reader: Callable[[str], Any],
    template: Any,
    tpl: Template | ResolvedTemplate,
    fmo: list[Threshold],
    random_state: int,
    n_boot: int | None,
    fmo_percentile: float | None,
) -> list[Threshold]:
    """Batch-pool thresholds of the unstimulated samples (one extra read of each)."""
    base = tpl.template if isinstance(tpl, ResolvedTemplate) else tpl
    rows = todo[~todo["_stim"] & (todo["role"] != "positive_control")]
    covered = {(t.tissue, t.batch, t.gate, t.marker) for t in fmo}
    targets = pool_targets(base)
    needed = {b for t, b in zip(rows["tissue"], rows["batch"], strict=True)
              for on, m in targets if (t, b, on, m) not in covered}  # fmt: skip
    rows = rows[rows["batch"].isin(needed)]
    contributions, groups = {}, {}
    for _, row in rows.iterrows():
        sid = str(row["sample_id"])
        adata = reader(sid)
        given = [t for t in fmo if (t.tissue, t.batch) == (row["tissue"], row["batch"])]
        applied = applied_template(template if isinstance(template, ResolvedTemplate) else tpl,
                                   adata).template  # fmt: skip
        contributions[sid] = pool_contribution(
            adata, applied, thresholds=given or None, random_state=random_state
        )
        groups[sid] = (str(row["tissue"]), str(row["batch"]))
        del adata
    return batch_pool_thresholds(
        contributions, groups, base, covered=covered, percentile=fmo_percentile,
        n_boot=n_boot, random_state=random_state,
    )  # fmt: skip


_fmo_thresholds = fmo_thresholds  # name used by nkflow.pipeline.steps
