"""The gating plan of a batch: which template each file gets and the hierarchy its panel supports.

Before any sample is processed the batch's panels are read (TEXT segments only, no
events), each analysed file gets its template (the configured one, or by species,
technology and tissue, the species from the sheet or else from the file's own panel,
which the plan records and states: :mod:`nkflow.pipeline.plan_species`), and each
template is resolved once against the panel of the files that use it
(:func:`nkflow.gating.resolve_template`): gates kept, substituted, skipped, and the
populations that can therefore not be reported. Every file is planned on its own: one
that cannot be gated (raw spectral detector data, no species, no NK anchor) fails alone,
whatever its name. A batch none of whose files can be gated, or a pooled batch of two
species, stops here, before anything is written. ``nkflow check`` prints the plan and
``nkflow run`` states it at the top; the report and provenance record it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from ..config import RunConfig
from ..exceptions import (
    BatchConsistencyError,
    GatingTemplateError,
    NkflowError,
    PanelMismatchError,
)
from ..gating.channels import resolve_channel
from ..gating.fmo_pool import fmo_uses
from ..gating.panel_view import PanelView
from ..gating.resolve import ResolvedTemplate, panel_technology, resolve_template
from ..io.fcs_text import read_fcs_metadata
from ..io.pairing import batch_notes, pairing_summary
from ..io.panel import marker_equivalents, resolve_markers
from ..io.technology import Technology, detect_technology, other_technology
from .plan_species import batch_species
from .steps import ANALYSED_ROLES, choose_template

__all__ = ["BatchPlan", "file_panel", "fmo_users", "plan_batch"]


@dataclass
class BatchPlan:
    """Templates per file and their resolution against the batch's panel.

    Attributes
    ----------
    template_of
        ``sample_id -> template name`` for every analysed file and FMO control.
    hierarchy_of
        ``sample_id -> key of resolved``: the template name, or ``"<name> (panel 2)"`` ...
        for files whose panel lacks a marker the first hierarchy needs or carries one of
        its markers on another channel (a batch of two panels gets two hierarchies, each
        resolved against its own files; thresholds set on one panel's controls are not
        applied to the other's).
    resolved
        ``key -> ResolvedTemplate`` (the hierarchy applied).
    reference
        ``key -> file`` whose panel the template was resolved against.
    unreadable
        ``sample_id -> the error`` for files the batch cannot use: a panel that could not
        be read, data of another technology than the rest of the batch (mass cytometry
        among flow files, or the reverse), raw spectral detector data
        (:class:`~nkflow.exceptions.UnmixingRequiredError`) or values already transformed
        (:class:`~nkflow.exceptions.TransformedDataError`), no species the template
        needs, a sheet species the file's own markers contradict (when that species picks
        the template or the scoring), or no NK anchor for the file's template (a
        :class:`~nkflow.exceptions.PanelMismatchError` with what its panel supports as
        ``resolution``). They fail with that error (their status row) and the plan does
        not stop the batch for them while another file can be gated.
    species_of
        ``sample_id -> species`` told by the file's own panel
        (:func:`~nkflow.gating.infer_species`), or by the rest of the batch for a file
        whose panel tells none, for the files whose sheet gives no species: the species
        the run then scores, flags and reports them as (:meth:`RunState.use_plan
        <nkflow.pipeline.state.RunState.use_plan>` writes it into the metadata).
    notes
        What the sheet leaves unsure, one line each: the species inferred from the panel,
        columns under other names, unread sheets and unlisted files, the pairing, FMO tubes
        that do not match the samples (:func:`~nkflow.io.pairing.batch_notes`).
    """

    template_of: dict[str, str] = field(default_factory=dict)
    hierarchy_of: dict[str, str] = field(default_factory=dict)
    resolved: dict[str, ResolvedTemplate] = field(default_factory=dict)
    reference: dict[str, str] = field(default_factory=dict)
    unreadable: dict[str, BaseException] = field(default_factory=dict)
    species_of: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def for_sample(self, sample_id: str) -> ResolvedTemplate | str:
        """The resolved template of a sample (its name when the panel was unreadable)."""
        name = self.template_of.get(sample_id, "")
        return self.resolved.get(self.hierarchy_of.get(sample_id, name), name)

    def hierarchy_key(self, sample_id: str) -> str:
        """The key of a sample's hierarchy (its template name when it has none resolved).

        Batch-level thresholds (FMO, batch pool, overrides) are grouped by it: a control
        sets thresholds only for the files of its own panel.
        """
        return self.hierarchy_of.get(sample_id, self.template_of.get(sample_id, ""))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able record for provenance: each template's resolution and its files."""
        return {
            name: {
                **res.to_dict(),
                "lineage": res.lineage(),  # what each parent of NK holds (the Methods say it)
                "reference_file": self.reference.get(name, ""),
                "samples": sorted(s for s, t in self.hierarchy_of.items() if t == name),
            }
            for name, res in sorted(self.resolved.items())
        }

    def to_text(self) -> str:
        """What will be applied, one block per template, for a terminal or a log."""
        blocks = []
        for name, res in sorted(self.resolved.items()):
            n = sum(1 for t in self.hierarchy_of.values() if t == name)
            which = name[len(res.source.name) :].strip()  # "(panel 2)" for a second panel
            blocks.append(f"{n} file(s){' ' + which if which else ''} -> {res.to_text()}")
        return "\n\n".join([*blocks, *self.notes])


def file_panel(path: str | Path, panel: Any = None, species: str | None = None) -> ad.AnnData:
    """An empty container (no events) with a file's channels, markers and technology.

    Only the HEADER and TEXT are read, so planning a batch costs no event decoding.

    Parameters
    ----------
    path
        The FCS file.
    panel
        Panel file or ``channel -> marker`` mapping (as for :func:`nkflow.read_fcs`).
    species
        ``"human"``, ``"mouse"`` or None, for marker names that differ by species.

    Returns
    -------
    anndata.AnnData
        0 x channels; ``var["marker"]``, ``var["pns"]``; ``uns["nkflow"]["technology"]``.
    """
    meta = read_fcs_metadata(path)
    pns = [str(s or "") for s in meta.pns]
    markers = resolve_markers(meta.pnn, pns, panel=panel, species=species, on_conflict="blank")
    var = pd.DataFrame({"marker": markers, "pns": pns}, index=pd.Index(meta.pnn, dtype=object))
    container = ad.AnnData(X=np.zeros((0, len(meta.pnn)), dtype=np.float32), var=var)
    tech = detect_technology(meta.keywords, meta.pnn, pns)
    container.uns["nkflow"] = {"technology": tech.to_dict(), "sample": {"file": str(path)}}
    return container


def plan_batch(meta: pd.DataFrame, config: RunConfig, *, pooled: bool | None = None) -> BatchPlan:
    """Choose and resolve the templates of a batch before any sample is processed.

    Each file is planned on its own: a file the plan cannot gate (raw spectral detector
    data, values already transformed, no species the template needs, a sheet species its
    markers contradict, no NK anchor for its template) gets its error in
    :attr:`BatchPlan.unreadable` and fails alone, whatever its name, while the rest of the
    batch goes on. The batch stops only when no file can be gated for such reasons, or
    when it mixes species and is to be pooled.

    Parameters
    ----------
    meta
        The batch's metadata (``read_batch(...).metadata``: ``sample_id``, ``path``,
        ``role``, ``species``, ``tissue``, ...).
    config
        The run configuration (``gating.template``, ``panel``).
    pooled
        Whether the batch's cells are pooled after gating (clustering or scoring); default
        ``config.clustering.enabled or config.scoring.enabled``. A pooled batch must be
        of one species; unpooled, each file is gated with its own species' template.

    Returns
    -------
    BatchPlan

    Raises
    ------
    PanelMismatchError
        No file of the batch can be gated: their panels have no NK anchor for their
        template (the message names what the panels have and what would be needed), no
        species the template needs, a sheet species the file's markers contradict, raw
        spectral data, or already transformed data; the message names the files and why,
        one clause per reason (``paths`` lists the files it names).
    BatchConsistencyError
        The batch mixes mouse and human files (from the sheet or their panels) and is
        pooled: the message names the files of each species and what told it.
    GatingTemplateError
        The configured template does not exist or is invalid.
    """
    plan = BatchPlan(notes=batch_notes(meta))
    panels: dict[str, ad.AnnData] = {}
    rows: dict[str, pd.Series] = {}
    refused: dict[str, NkflowError] = {}  # files the plan cannot gate (not unreadable ones)
    roles = meta["role"].astype(str)
    wanted = meta[roles.isin(ANALYSED_ROLES) | roles.str.startswith("fmo:")]
    for _, row in wanted.iterrows():
        sid = str(row["sample_id"])
        species = str(row.get("species", "") or "") or None
        try:
            panels[sid] = file_panel(row["path"], config.panel or None, species)
        except (NkflowError, OSError) as exc:
            plan.unreadable[sid] = exc
            continue
        if (refusal := _refusal(panels[sid], row["path"])) is not None:
            refused[sid] = refusal  # raw detectors, values already transformed
            continue
        rows[sid] = row
    for sid, exc in _other_technology(rows, panels).items():
        plan.unreadable[sid] = exc
        del rows[sid]
    own = {sid: _markers(panels[sid]) for sid in rows}
    auto = config.gating.template == "auto"
    if pooled is None:
        pooled = config.clustering.enabled or config.scoring.enabled
    scored = pooled and config.scoring.enabled  # `nkflow gate` (pooled=False) scores nothing
    of = batch_species({s: _plain(r) for s, r in rows.items()}, own, needed=auto, scored=scored)
    plan.notes += [f"{of.files[sid]}: {why}" for sid, why in of.contradicted.items()]
    if of.mixed:
        if pooled:
            raise BatchConsistencyError(
                f"{of.mix_text()}: clustering pools a batch's cells and scoring applies "
                "one species' definitions, so a run takes one species; run each species as a "
                "batch of its own (or only gate them: nkflow gate, or nkflow run --no-cluster "
                "--no-score)"
            )
        plan.notes.append(f"{of.mix_text()}: each is gated with its species' template")
    refused.update(of.refused)
    told: dict[str, list[str]] = {}  # species inferred -> the markers that told it
    inherited: dict[str, int] = {}  # species taken from the batch -> files
    for sid, row in rows.items():
        if sid in refused:
            continue
        container, plain = panels[sid], _plain(row)
        if sid in of.inferred:  # the sheet gives none: the panel's is the run's species
            plan.species_of[sid] = plain["species"] = species = of.inferred[sid]
            if of.evidence[sid]:
                seen = told.setdefault(species, [])
                seen += [m for m in of.evidence[sid] if m not in seen]
            else:  # its markers tell none: the species the batch's other files agree on
                inherited[species] = inherited.get(species, 0) + 1
            # the markers as the samples will be read (mouse CD3e, human CD3); the file's
            # quirks were said at the first read
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                panels[sid] = container = file_panel(row["path"], config.panel or None, species)
        try:
            name = choose_template(
                plain, config, panel_markers=own[sid], technology=panel_technology(container)
            )
        except GatingTemplateError as exc:  # e.g. a species without a template
            refused[sid] = PanelMismatchError(str(exc))
            continue
        plan.template_of[sid] = name
    plan.notes[:0] = [
        f"species: {species}, inferred from the panel ({', '.join(markers)}) for "
        f"{sum(s == species for s in plan.species_of.values()) - inherited.get(species, 0)} "
        "file(s) without a species in the sheet"
        for species, markers in sorted(told.items())
    ] + [
        f"species: {species}, taken from the batch's other files for {n} file(s) without a "
        "species in the sheet whose markers tell none"
        for species, n in sorted(inherited.items())
    ]
    refused.update(_resolve_hierarchies(plan, rows, panels))
    plan.unreadable.update(refused)
    if plan.unreadable:  # the pairing line names unstimulated tubes listed but failing
        listed, failing = pairing_summary(meta), pairing_summary(meta, plan.unreadable)
        plan.notes = [failing if note == listed else note for note in plan.notes]
    if refused and not plan.resolved:  # no file of the batch can be gated
        raise _nothing_to_gate(refused, meta)
    plan.notes += _unused_fmo_notes(plan, rows)
    return plan


def _resolve_hierarchies(
    plan: BatchPlan, rows: Mapping[str, pd.Series], panels: Mapping[str, ad.AnnData]
) -> dict[str, NkflowError]:
    """Resolve each template once per panel; the files no hierarchy can be resolved for.

    Samples come before FMO tubes: a hierarchy is resolved against a file with every stain.
    A file whose panel has no NK anchor for its template fails alone (the error carries
    what the panel supports as ``resolution``); files of the same panel share that error.
    """
    order = sorted(plan.template_of, key=lambda s: str(rows[s]["role"]).startswith("fmo:"))
    keys_of: dict[str, list[str]] = {}  # template name -> its hierarchies, one per panel
    reference_panel: dict[str, ad.AnnData] = {}  # hierarchy key -> the panel it was resolved on
    failed: dict[tuple[Any, ...], tuple[str, Any]] = {}  # (name, layout) -> reason, resolution
    refused: dict[str, NkflowError] = {}
    for sid in order:
        name, panel = plan.template_of[sid], panels[sid]
        keys = keys_of.setdefault(name, [])
        role = str(rows[sid]["role"])
        fits = [k for k in keys if _fits(plan.resolved[k], reference_panel[k], panel, role)]
        if fits:
            plan.hierarchy_of[sid] = fits[0]
            continue
        path = str(panel.uns["nkflow"]["sample"]["file"])
        layout = (name, tuple(panel.var_names), tuple(panel.var["marker"]))
        if layout not in failed:
            try:
                resolved = resolve_template(name, panel)
            except GatingTemplateError as exc:
                partial = getattr(exc, "resolution", None)
                if partial is None:
                    raise  # the template itself is unusable: a usage error
                # one line for the terminal, without the file (files of this panel share it)
                text = str(exc).split(" What this panel supports")[0].strip()
                failed[layout] = (text.removeprefix(f"{path}: "), partial)
        if layout in failed:
            reason, partial = failed[layout]
            refused[sid] = error = PanelMismatchError(f"{path}: {reason}")
            error.resolution = partial  # what the panel could support travels beside it
            continue
        key = f"{name} (panel {len(keys) + 1})" if keys else name
        plan.resolved[key] = resolved
        keys.append(key)
        plan.hierarchy_of[sid] = key
        plan.reference[key] = str(panel.uns["nkflow"]["sample"]["file"])
        reference_panel[key] = panel
    return refused


def _nothing_to_gate(refused: Mapping[str, NkflowError], meta: pd.DataFrame) -> NkflowError:
    """The error of a batch none of whose files can be gated: each reason with its files."""
    rows = {str(r["sample_id"]): (str(r["path"]), str(r["file"])) for _, r in meta.iterrows()}
    reasons: dict[str, list[tuple[str, str]]] = {}
    for sid, exc in refused.items():
        path, file = rows.get(sid, (sid, sid))
        text = str(exc)
        text = text[len(path) + 2 :] if text.startswith(f"{path}: ") else text
        reasons.setdefault(text.rstrip("."), []).append((path, file))
    clauses = [
        f"{', '.join(f for _, f in files[:3])}"
        f"{f', ... ({len(files)} files)' if len(files) > 3 else ''}: {why}"
        for why, files in reasons.items()
    ]
    error = PanelMismatchError(
        ("no file of the batch can be gated: " if len(clauses) > 1 else "") + "; ".join(clauses)
    )
    # the files the message names with their reason: nkflow check prints them only there
    error.paths = [p for files in reasons.values() for p, _ in files[:3]]
    error.resolution = next(
        (e.resolution for e in refused.values() if getattr(e, "resolution", None)), None
    )
    return error


def fmo_users(resolved: ResolvedTemplate, marker: str) -> list[str]:
    """The gates of a hierarchy that take their ``marker`` cut-off from an FMO tube."""
    return [g.id for g, _ in fmo_uses(resolved.template, marker)]


def _unused_fmo_notes(plan: BatchPlan, rows: Mapping[str, pd.Series]) -> list[str]:
    """One line per FMO marker whose tubes no gate of their hierarchy cuts at (not used)."""
    unused: dict[tuple[str, str], list[str]] = {}
    for sid, key in plan.hierarchy_of.items():
        role = str(rows[sid]["role"])
        if role.startswith("fmo:") and not fmo_users(plan.resolved[key], role[4:]):
            unused.setdefault((role[4:], key), []).append(str(rows[sid]["file"]))
    return [
        f"FMO tubes not used: {len(files)} fmo:{marker} tube(s) ({', '.join(files)}): no gate "
        f"of {key} takes its {marker} cut-off from an FMO (its rules set it from the data)"
        for (marker, key), files in sorted(unused.items())
    ]


def _fits(resolved: ResolvedTemplate, reference: ad.AnnData, panel: ad.AnnData, role: str) -> bool:
    """Whether a file's panel carries every marker of a hierarchy on its reference channel.

    The reference is the panel the hierarchy was resolved on. A marker on another channel
    (another fluorochrome or detector) has another scale, so a threshold set on one panel's
    controls would not hold on the other. An FMO tube may lack its own marker (the stain it
    leaves out).
    """
    view = PanelView.of(panel)
    left_out = marker_equivalents(role[4:]) if role.startswith("fmo:") else set()
    tpl = resolved.template
    if any(view.find(m) is None and m not in left_out for m in tpl.required_markers):
        return False
    used = {d.marker for g in tpl.gates for d in g.dims}
    used |= {n for g in tpl.gates if g.kind == "polygon" for n in (g.x, g.y)}
    return all(
        _channel_of(panel, name) == _channel_of(reference, name) for name in sorted(used - left_out)
    )


def _channel_of(panel: ad.AnnData, name: str) -> str | None:
    """The channel carrying a marker or channel name (None when none or several do)."""
    try:
        return resolve_channel(panel, name)
    except NkflowError:
        return None


def _other_technology(
    rows: Mapping[str, pd.Series], panels: Mapping[str, ad.AnnData]
) -> dict[str, BatchConsistencyError]:
    """Files of another technology than most of their species' files, with the error."""
    by_species: dict[str, dict[str, bool]] = {}
    for sid, row in rows.items():
        species = str(row.get("species", "") or "")
        by_species.setdefault(species, {})[sid] = panel_technology(panels[sid]) == "cytof"
    markers = {sid: panels[sid].var["marker"].astype(str) for sid in rows}
    return {
        sid: BatchConsistencyError(f"{rows[sid]['path']}: {why}")
        for mass in by_species.values()
        for sid, why in other_technology(mass, markers).items()
    }


def _plain(row: pd.Series) -> dict[str, Any]:
    return {k: ("" if pd.isna(v) else v) for k, v in row.to_dict().items()}


def _markers(panel: ad.AnnData) -> list[str]:
    """A file's own markers and labels, each once (what can tell its species)."""
    return list(dict.fromkeys(m for m in (*panel.var["marker"], *panel.var["pns"]) if m))


def _refusal(panel: ad.AnnData, path: str) -> NkflowError | None:
    """The error of a file no analysis can use as it is, or None for any other file.

    Raw spectral detector channels (:class:`~nkflow.exceptions.UnmixingRequiredError`)
    or values already transformed (:class:`~nkflow.exceptions.TransformedDataError`).
    """
    return Technology.from_dict(panel.uns["nkflow"]["technology"]).refusal(str(path))
