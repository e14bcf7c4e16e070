"""Experimental designs: which tubes a simulated batch holds and what is planted in them.

A design is donors x tissues x timepoints, each with an unstimulated and a stimulated tube,
plus FMO tubes per tissue, one ILC positive-control tube and (optionally) one tube with an
acquisition clog. AREG is planted by rules ``(donor, tissue, timepoint, label, net %)``;
the last matching rule wins and ``"*"`` matches anything, so whole samples or single
populations can be left at background (null) to test scoring for false flags.

Further stimulation conditions (IL-15, IL-2, IL-12/IL-15/IL-18, PMA/iono, dexamethasone;
:data:`nkflow.datasets.simulate.CONDITIONS`) add one tube per donor, tissue and timepoint,
appended after the positive control so that the tubes of a design without them are
unchanged. Condition rules ``(condition, donor, tissue, timepoint, label, net %)`` are read
after the plain rules (last match wins), so a cytokine condition can plant CD56bright-enriched
AREG (Wang et al., EMBO J 2023). Context rules ``(donor, tissue, timepoint, field, value)``
fill the sheet's optional ``tissue_kind``, ``glucocorticoid`` and ``treatment`` columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..exceptions import ConfigError
from ..io.write import safe_name
from .mass_panel import get_mass_panel
from .panels import get_panel
from .populations import EXTRA_TISSUES, TISSUES
from .simulate import CONDITIONS, is_stimulated_condition

__all__ = [
    "CONTEXT_FIELDS",
    "Design",
    "Tube",
    "default_areg_rules",
    "make_design",
]

FMO_MARKERS = {
    "human": ("CD69", "CD103", "CD49a", "CXCR6", "AREG", "IFN-g"),
    "mouse": ("CD69", "CD103", "CD49a", "AREG", "IFN-g"),
}
# FMOs of functional read-outs are stimulated tubes (the threshold must include the
# spread that stimulation and the other stains bring).
STIM_FMOS = ("AREG", "IFN-g", "CD107a")
#: optional context columns of the metadata sheet a design can fill
CONTEXT_FIELDS = ("tissue_kind", "glucocorticoid", "treatment")


@dataclass(frozen=True)
class Tube:
    """One FCS file of a design.

    Attributes
    ----------
    sample_id
        Unique id; the file is ``<sample_id>.fcs``.
    donor, tissue, timepoint
        Biological sample.
    stimulation
        ``"unstim"`` or a condition of :data:`nkflow.datasets.simulate.CONDITIONS`
        (``"stim"`` is the generic PMA/iono-like one).
    role
        Metadata role (docs/contracts.md): ``unstim``, ``stim``, ``fmo:<MARKER>``,
        ``positive_control``.
    n_events
        Events in the file.
    fmo
        Marker left out of the stain (its channel carries only spread and
        autofluorescence), or ``""``.
    nk_enrichment, ilc_boost
        Composition factors (see :func:`nkflow.datasets.populations.composition`).
    clog
        Whether the acquisition has a clog (flow-rate drop and signal shift).
    tissue_kind, glucocorticoid, treatment
        Sample context written to the sheet (``""`` = not recorded).
    """

    sample_id: str
    donor: str
    tissue: str
    timepoint: str
    stimulation: str
    role: str
    n_events: int
    fmo: str = ""
    nk_enrichment: float = 1.0
    ilc_boost: float = 1.0
    clog: bool = False
    tissue_kind: str = ""
    glucocorticoid: str = ""
    treatment: str = ""


@dataclass(frozen=True)
class Design:
    """A batch: tubes, AREG rules and acquisition details.

    Attributes
    ----------
    species
        ``"human"`` or ``"mouse"``.
    tubes
        Tubes in acquisition order.
    areg_rules
        ``(donor, tissue, timepoint, label, net_percent)`` for every stimulated condition,
        then ``(condition, donor, tissue, timepoint, label, net_percent)`` for one condition;
        last match wins, ``"*"`` is a wildcard. Labels are leaf labels of the species.
    batch
        Batch id written to the metadata sheet.
    date
        ``$DATE`` of the acquisition (``dd-MMM-yyyy``).
    cytometer
        ``$CYT``; ``""`` means the technology's instrument (FACSymphony A5 for flow,
        Helios for mass cytometry).
    extra
        Free-form string fields carried with the design; the simulator does not read them
        (nothing is written from them).
    technology
        ``"flow"`` or ``"mass"`` (human only).
    """

    species: str
    tubes: tuple[Tube, ...]
    areg_rules: tuple[tuple[Any, ...], ...] = ()
    batch: str = "B1"
    date: str = "12-MAR-2024"
    cytometer: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    technology: str = "flow"

    @property
    def markers(self) -> list[str]:
        """Canonical markers of the design's panel (what an FMO may leave out)."""
        if self.technology == "mass":
            return get_mass_panel(self.species).markers
        return get_panel(self.species).markers

    def __post_init__(self) -> None:
        get_panel(self.species)
        if self.technology not in ("flow", "mass"):
            raise ConfigError(f"technology {self.technology!r}; valid: flow, mass")
        ids = [t.sample_id for t in self.tubes]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ConfigError(f"design has duplicate sample ids {dupes}")
        for t in self.tubes:
            if safe_name(t.sample_id) != t.sample_id:
                raise ConfigError(
                    f"sample id {t.sample_id!r} is not a safe file name (letters, digits, "
                    f"'._+-' only); e.g. {safe_name(t.sample_id)!r}"
                )
            known = TISSUES[self.species] + EXTRA_TISSUES[self.species]
            if t.tissue not in known:
                raise ConfigError(
                    f"tube {t.sample_id}: unknown {self.species} tissue {t.tissue!r}; "
                    f"valid: {list(known)}"
                )
            try:
                is_stimulated_condition(t.stimulation)
            except ConfigError as exc:
                raise ConfigError(f"tube {t.sample_id}: {exc}") from None
            if t.fmo and t.fmo not in self.markers:
                raise ConfigError(
                    f"tube {t.sample_id}: FMO marker {t.fmo!r} not in panel; valid: {self.markers}"
                )

    def areg_net(self, tube: Tube) -> dict[str, float]:
        """Planted net AREG percent per leaf label for ``tube`` (missing = 0)."""
        out: dict[str, float] = {}
        plain = [r for r in self.areg_rules if len(r) == 5]
        per_condition = [r[1:] for r in self.areg_rules if len(r) == 6 and r[0] == tube.stimulation]
        for donor, tissue, timepoint, label, value in plain + per_condition:
            if (
                donor in ("*", tube.donor)
                and tissue in ("*", tube.tissue)
                and timepoint in ("*", tube.timepoint)
            ):
                out[label] = float(value)
        return out


def default_areg_rules(species: str) -> tuple[tuple[str, str, str, str, float], ...]:
    """AREG planted by default: responsive tissue trNK, some null samples and populations.

    Human: tissue CD56bright trNK 5 % net after treatment (2 % before), CD56dim 1 % after
    treatment; blood before treatment and donor D2's liver before treatment are null
    (background only). Mouse: liver trNK/ILC1 5 %, DP 2 %, cNK 1 %; spleen null.

    Parameters
    ----------
    species
        ``"human"`` or ``"mouse"``.

    Returns
    -------
    tuple of tuple
        ``(donor, tissue, timepoint, label, net_percent)`` rules as in
        :attr:`Design.areg_rules` (``"*"`` matches anything, last match wins).

    Raises
    ------
    ConfigError
        ``species`` is neither ``"human"`` nor ``"mouse"``.
    """
    if species == "human":
        rules: list[tuple[str, str, str, str, float]] = []
        for tissue in ("liver", "lung", "tumour"):
            rules += [
                ("*", tissue, "post", "NK_CD56bright_tr", 5.0),
                ("*", tissue, "post", "NK_CD56dim_tr", 1.0),
                ("*", tissue, "post", "NK_CD56dim_circ", 1.0),
                ("*", tissue, "pre", "NK_CD56bright_tr", 2.0),
            ]
        rules += [
            ("*", "blood", "post", "NK_CD56dim_circ", 1.0),
            ("*", "blood", "post", "NK_CD56bright_circ", 3.0),
            ("D2", "liver", "pre", "NK_CD56bright_tr", 0.0),
        ]
        return tuple(rules)
    get_panel(species)
    return (
        ("*", "liver", "*", "trNK", 5.0),
        ("*", "liver", "*", "DP_CD49a_CD49b", 2.0),
        ("*", "liver", "*", "cNK_CD27+CD11b+", 1.0),
        ("*", "liver", "*", "cNK_CD27-CD11b+", 1.0),
    )


def _sid(*parts: str) -> str:
    return "_".join(p for p in parts if p)


def make_design(
    species: str = "human",
    *,
    donors: Sequence[str] = ("D1", "D2"),
    tissues: Sequence[str] | None = None,
    timepoints: Sequence[str] = ("pre", "post"),
    n_events: int = 50_000,
    fmo_events: int | None = None,
    fmo_markers: Sequence[str] | None = None,
    positive_control: bool = True,
    clog: bool = True,
    nk_enrichment: float = 1.0,
    areg_rules: Sequence[tuple[Any, ...]] | None = None,
    batch: str = "B1",
    technology: str = "flow",
    conditions: Sequence[str] = (),
    condition_tissues: Sequence[str] | None = None,
    condition_timepoints: Sequence[str] | None = None,
    context: Sequence[tuple[str, str, str, str, str]] = (),
) -> Design:
    """Build a design: donors x tissues x timepoints x (unstim, stim) plus controls.

    Parameters
    ----------
    species
        ``"human"`` or ``"mouse"``.
    donors, tissues, timepoints
        The factors; ``tissues`` defaults to every tissue of the species. A timepoint
        of ``""`` means none.
    n_events
        Events per unstim/stim tube (and per positive control).
    fmo_events
        Events per FMO tube (default ``n_events``).
    fmo_markers
        FMO tubes made per tissue (default CD69, CD103, CD49a, CXCR6 (human), AREG,
        IFN-g); the AREG and IFN-g FMOs are stimulated. Pass ``()`` for none.
    positive_control
        Add one stimulated, ILC-enriched tube (role ``positive_control``).
    clog
        Give the last donor's first stimulated tube an acquisition clog.
    nk_enrichment
        Partial depletion of non-NK cells in every tube (1 = none).
    areg_rules
        AREG rules (default :func:`default_areg_rules`).
    batch
        Batch id.
    technology
        ``"flow"`` or ``"mass"`` (mass cytometry, human only).
    conditions
        Further stimulation conditions (names of
        :data:`nkflow.datasets.simulate.CONDITIONS`, e.g. ``"IL-15"``): one stimulated tube
        per donor, tissue and timepoint each (``<donor>_<tissue>_<timepoint>_<condition>``,
        ``/`` written ``+``), appended after the positive control.
    condition_tissues, condition_timepoints
        Tissues and timepoints that get the further conditions (default: all).
    context
        ``(donor, tissue, timepoint, field, value)`` with ``field`` in
        :data:`CONTEXT_FIELDS`; ``"*"`` matches anything, last match wins. Applies to every
        tube of the matching sample (FMOs and controls too).

    Returns
    -------
    Design
        The design (tubes in acquisition order).

    Raises
    ------
    ConfigError
        An unknown species, ``technology="mass"`` for mouse, ``n_events`` below 1, a
        condition not in :data:`nkflow.datasets.simulate.CONDITIONS` (or ``"stim"``), or a
        ``context`` field not in :data:`CONTEXT_FIELDS`.
    """
    get_panel(species)
    if technology == "mass":
        get_mass_panel(species)
    tissues = tuple(TISSUES[species] if tissues is None else tissues)
    if n_events < 1:
        raise ConfigError(f"n_events must be >= 1; got {n_events}")
    fmo_n = n_events if fmo_events is None else int(fmo_events)
    fmos = FMO_MARKERS[species] if fmo_markers is None else tuple(fmo_markers)
    tubes: list[Tube] = []
    for donor in donors:
        for tissue in tissues:
            for tp in timepoints:
                for stim in ("unstim", "stim"):
                    tubes.append(
                        Tube(_sid(donor, tissue, tp, stim), donor, tissue, tp, stim, stim,
                             int(n_events), nk_enrichment=nk_enrichment)
                    )  # fmt: skip
    for tissue in tissues:
        for marker in fmos:
            stim = "stim" if marker in STIM_FMOS else "unstim"
            tubes.append(
                Tube(_sid(tissue, "FMO", marker), donors[0], tissue, timepoints[0], stim,
                     f"fmo:{marker}", fmo_n, fmo=marker, nk_enrichment=nk_enrichment)
            )  # fmt: skip
    if positive_control:
        tubes.append(
            Tube("PC_ILC_stim", donors[0], tissues[0], timepoints[0], "stim",
                 "positive_control", int(n_events), nk_enrichment=nk_enrichment,
                 ilc_boost=6.0)
        )  # fmt: skip
    if clog:
        target = _sid(donors[-1], tissues[0], timepoints[0], "stim")
        tubes = [replace(t, clog=True) if t.sample_id == target else t for t in tubes]
    extra = tuple(TISSUES[species] if condition_tissues is None else condition_tissues)
    extra_tp = tuple(timepoints if condition_timepoints is None else condition_timepoints)
    for cond in conditions:
        if cond == "stim" or cond not in CONDITIONS:
            raise ConfigError(
                f"condition {cond!r}; valid further conditions: "
                + ", ".join(c for c in CONDITIONS if c != "stim")
            )
        for donor in donors:
            for tissue in (t for t in tissues if t in extra):
                for tp in (t for t in timepoints if t in extra_tp):
                    tubes.append(
                        Tube(_sid(donor, tissue, tp, cond.replace("/", "+")), donor, tissue, tp,
                             cond, "stim", int(n_events), nk_enrichment=nk_enrichment)
                    )  # fmt: skip
    if context:
        tubes = [_with_context(t, context) for t in tubes]
    rules = default_areg_rules(species) if areg_rules is None else tuple(areg_rules)
    return Design(species, tuple(tubes), tuple(rules), batch=batch, technology=technology)


def _with_context(tube: Tube, rules: Sequence[tuple[str, str, str, str, str]]) -> Tube:
    values: dict[str, str] = {}
    for donor, tissue, timepoint, name, value in rules:
        if name not in CONTEXT_FIELDS:
            raise ConfigError(f"context field {name!r}; valid: {', '.join(CONTEXT_FIELDS)}")
        if (
            donor in ("*", tube.donor)
            and tissue in ("*", tube.tissue)
            and timepoint in ("*", tube.timepoint)
        ):
            values[name] = str(value)
    return replace(tube, **values)
