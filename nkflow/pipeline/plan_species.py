"""The species of each file of a batch: the sheet's, else the one the file's own panel tells.

A sheet species the file's own markers contradict (``human`` beside NK1.1 and no
human-only marker, or the reverse) is not believed: the file fails on its own, since
gated with the other species' template and scored with its evidence (human AREG biology
for mouse NK) its results would be wrong without a word.

:func:`batch_species` is a step of :func:`nkflow.pipeline.plan.plan_batch`. Each file
without a species in the sheet is judged by its own markers
(:func:`~nkflow.gating.infer_species`), never by the batch's markers pooled: a batch may
hold a mouse file and a human one, and pooled they contradict each other. A file whose
markers tell nothing (no named markers, or none of either species) takes the species the
rest of the batch agrees on; when the rest tells none or mixes species, and the template
is chosen by species, that file fails on its own, named for what it is. A batch that
mixes species is described file by file (:meth:`BatchSpecies.mix_text`); whether that
is allowed is the plan's decision (clustering and scoring pool a batch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..exceptions import PanelMismatchError
from ..gating.panel_view import SPECIES_TELLS, species_markers
from .steps import SPECIES_FIX

__all__ = ["BatchSpecies", "batch_species"]

_SHOWN = 3  # files named per species in a message


@dataclass
class BatchSpecies:
    """The species of each file and what told it.

    Attributes
    ----------
    species
        ``sample_id -> species`` for every file whose species is known (sheet or panel).
    inferred
        ``sample_id -> species`` for the files the sheet gives none and the species was
        inferred for (their own panel, or the batch's agreeing files).
    evidence
        ``sample_id -> what told it``: the file's species markers, ``["species column"]``
        for the sheet's, ``[]`` for a species taken from the rest of the batch.
    refused
        ``sample_id -> PanelMismatchError`` for files no species can be given although
        the template is chosen by species, and for files whose sheet species their own
        markers contradict (``human`` beside NK1.1 and DX5 and no human-only marker).
    files
        ``sample_id -> file name``, for messages.
    contradicted
        ``sample_id -> why``: files whose sheet species their markers contradict but that
        are kept (a given template, nothing scored), for a plan note.
    """

    species: dict[str, str] = field(default_factory=dict)
    inferred: dict[str, str] = field(default_factory=dict)
    evidence: dict[str, list[str]] = field(default_factory=dict)
    refused: dict[str, PanelMismatchError] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    contradicted: dict[str, str] = field(default_factory=dict)

    @property
    def mixed(self) -> bool:
        """Whether the batch's files are of more than one species."""
        return len(set(self.species.values())) > 1

    def mix_text(self) -> str:
        """The files of each species and what told it, in one clause.

        E.g. ``this batch mixes mouse (m.fcs: NK1.1) and human (h.fcs: CD56, HLA-DR) files``.
        """
        by_species: dict[str, list[str]] = {}
        for sid, species in self.species.items():
            by_species.setdefault(species, []).append(sid)
        parts = []
        for species, sids in sorted(by_species.items(), key=lambda kv: kv[0] != "mouse"):
            named = [
                f"{self.files[s]}: {', '.join(self.evidence.get(s) or ['as the batch'])}"
                for s in sids[:_SHOWN]
            ]
            more = f"; ... ({len(sids)} files in all)" if len(sids) > _SHOWN else ""
            parts.append(f"{species} ({'; '.join(named)}{more})")
        return f"this batch mixes {' and '.join(parts)} files"


def batch_species(
    rows: Mapping[str, Mapping[str, Any]],
    markers: Mapping[str, Sequence[str]],
    *,
    needed: bool,
    scored: bool = True,
) -> BatchSpecies:
    """Give each file its species: the sheet's, its own panel's, else the batch's.

    Parameters
    ----------
    rows
        ``sample_id -> metadata row`` (``species``, ``file``) of the files to plan.
    markers
        ``sample_id -> the file's own markers and labels`` (canonical names and ``$PnS``).
    needed
        Whether the template is chosen by species (``gating.template = "auto"``): then a
        file no species can be given is refused (:attr:`BatchSpecies.refused`).
    scored
        Whether the run scores the files with their species' evidence. A sheet species
        the file's own markers contradict is refused when the species picks the template
        (``needed``) or the scoring; otherwise it is kept with a note.

    Returns
    -------
    BatchSpecies
    """
    out = BatchSpecies(files={sid: str(row.get("file") or sid) for sid, row in rows.items()})
    told: dict[str, dict[str, list[str]]] = {}
    for sid, row in rows.items():
        sheet = str(row.get("species") or "").strip().lower()
        own = species_markers(markers[sid])
        if sheet:
            other = [species for species, seen in own.items() if seen and species != sheet]
            if other and not own.get(sheet):  # the panel tells the other species only
                why = _contradiction(sheet, other[0], own, needed=needed, scored=scored)
                if needed or scored:
                    out.refused[sid] = PanelMismatchError(why)
                    continue
                out.contradicted[sid] = why
            out.species[sid], out.evidence[sid] = sheet, ["species column"]
            continue
        told[sid] = own
        kinds = [species for species, seen in told[sid].items() if seen]
        if len(kinds) == 1:
            out.species[sid] = out.inferred[sid] = kinds[0]
            out.evidence[sid] = told[sid][kinds[0]]
    known = set(out.species.values())
    for sid, evidence in told.items():
        if sid in out.species:
            continue
        if len(known) == 1 and not all(evidence.values()):  # tells nothing: the batch's
            out.species[sid] = out.inferred[sid] = next(iter(known))
            out.evidence[sid] = []
        elif needed:
            out.refused[sid] = PanelMismatchError(_untold(markers[sid], evidence, known))
    return out


def _contradiction(
    sheet: str, panel: str, told: Mapping[str, list[str]], *, needed: bool, scored: bool
) -> str:
    """Why a file whose sheet species its own markers contradict is not analysed."""
    uses = [f"gated with the {sheet} template"] if needed else []
    uses += [f"scored with {sheet} evidence"] if scored else []
    harm = (
        f"{' and '.join(uses)}, its results would be wrong"
        if uses
        else "its species is kept as the sheet says"
    )
    return (
        f"the sheet says {sheet}, but the file's markers ({', '.join(told[panel])}) are "
        f"{panel}-only and none is {sheet}-only: {harm}; correct the sheet's 'species' "
        "column"
    )


def _untold(markers: Sequence[str], told: Mapping[str, list[str]], known: set[str]) -> str:
    """Why a file cannot be given a species, named for what it is."""
    if all(told.values()):
        return (
            f"no species in the sheet, and the file's markers tell both mouse "
            f"({', '.join(told['mouse'])}) and human ({', '.join(told['human'])}); {SPECIES_FIX}"
        )
    names = list(dict.fromkeys(str(m) for m in markers if str(m).strip()))
    if not names:
        what = "the file's channels carry no marker names, so nothing tells the species"
    else:
        shown = ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "")
        what = f"the file's markers ({shown}) do not tell the species ({SPECIES_TELLS})"
    batch = (
        f", nor can the batch's other files, which mix {' and '.join(sorted(known))}"
        if len(known) > 1
        else ""
    )
    return f"no species in the sheet, and {what}{batch}; {SPECIES_FIX}"
