"""Which cytometry technology wrote a file, from its keywords and channel names.

:func:`detect_technology` is a pure function of the TEXT keywords, ``$PnN`` and ``$PnS``.
:func:`nkflow.io.read_fcs` records its result as ``uns["nkflow"]["technology"]`` (a plain
dict, :meth:`Technology.to_dict`); :mod:`nkflow.pp` reads that record
(:func:`technology_of`) to choose compensation and transform defaults instead of guessing
again.

Kinds, tried in this order (the first that has evidence wins):

``transformed_export``
    The stored values are already on a transformed scale: flowCore marks events it
    transformed with ``TRANSFORMATION = custom``, and its ``FLOWCORE_$PnRMAX`` keyword
    then holds the transformed range; one at most 1/100 of ``$PnR`` (4.5 for a logicle
    channel of ``$PnR`` 262144) is a transformed scale whatever ``TRANSFORMATION`` says.
    ``TRANSFORMATION = applied`` alone is not evidence: flowCore writes it on files it
    only read (linear values, ``FLOWCORE_$PnRMAX`` equal to ``$PnR``). nkflow cannot
    know the transform's parameters, so compensation and transform both refuse
    (:class:`~nkflow.exceptions.TransformedDataError`): export the untransformed file.
``mass_cytometry``
    ``$CYT`` names a CyTOF/Helios/Fluidigm/DVS/Standard BioTools instrument, or a channel
    is ``Event_length``, or the Gaussian-discrimination set ``Center``/``Offset``/
    ``Residual`` is present, or at least two ``$PnN`` are metal channels (``Ir191Di``,
    ``(Pt195)Dd``) or at least two ``$PnS`` are isotope-prefixed (``173Yb_CD56``).
    Defaults: no compensation (no optical spillover), arcsinh with cofactor 5.
``raw_spectral``
    Numbered detector channels of a spectral instrument (``V1-A`` .. ``V16-A``, ``B1-A``,
    ``YG1-A``, ``R1-A``, ``UV1-A`` ..., also ``-H``/``-W``) and no other fluorescence
    channel: events that still need unmixing. Recognised when a spectral instrument (Cytek
    Aurora / Northern Lights, SpectroFlo, Sony ID7000/SP6800) wrote at least 8 such
    detectors, or, without instrument keywords, at least 16 with 9 or more on one laser
    (no conventional instrument numbers its detectors that far). Reading works;
    compensation refuses.
``compensated_export``
    Channel names prefixed ``Comp-`` or ``FJComp-``: FlowJo exported compensated events.
    Defaults: no compensation (a spillover keyword carried over is not applied again),
    logicle.
``spectral``
    A spectral instrument's file whose fluorescence channels are not raw detectors
    (unmixed fluorochromes, e.g. a SpectroFlo unmixed export). Defaults: the file's
    spillover when present (post-unmixing correction), else none; logicle.
``flow``
    Everything else: conventional flow cytometry. Defaults: the file's spillover, logicle;
    a file without one is left uncompensated with a warning.

A flowCore export that was compensated but not transformed carries no keyword that says
so (flowCore's ``compensate`` leaves the TEXT as it was): it is classified by its other
evidence, usually ``flow``.

BD FACSDiva writes ``APPLY COMPENSATION = TRUE`` into files whose stored events are not
compensated (the events of such files match FlowKit's compensated truth only after the
``SPILL`` is applied), so that keyword is not evidence of compensated data and is ignored.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nkflow.exceptions import NkflowError, TransformedDataError, UnmixingRequiredError

from .fcs_keywords import number_value
from .records import nkflow_record

__all__ = [
    "KINDS",
    "Technology",
    "detect_technology",
    "other_technology",
    "technology_of",
    "unmixing_reason",
]

#: The technology kinds, with the words a report uses for them.
KINDS: dict[str, str] = {
    "flow": "conventional flow cytometry",
    "spectral": "spectral flow cytometry (unmixed)",
    "raw_spectral": "spectral flow cytometry, raw detector channels (not unmixed)",
    "mass_cytometry": "mass cytometry",
    "compensated_export": "flow cytometry, compensated export",
    "transformed_export": "export of already transformed values",
}

_ELEMENTS = frozenset(
    """H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge
    As Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm
    Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U
    Np Pu Am Cm Bk Cf Es Fm Md No Lr""".split()
)
_METAL_PNN = (
    re.compile(r"^(?P<el>[A-Z][a-z]?)(?P<mass>\d{2,3})D[id]$"),  # Ir191Di, Y89Di
    re.compile(r"^\((?P<el>[A-Z][a-z]?)(?P<mass>\d{2,3})\)D[id]$"),  # (Ir191)Dd
    re.compile(r"^(?P<mass>\d{2,3})(?P<el>[A-Z][a-z]?)D[id]$"),  # 191IrDi
)
_ISOTOPE_PREFIX = re.compile(r"^(?P<mass>\d{2,3})(?P<el>[A-Z][a-z]?)(?:$|[_\-\s.])")  # 173Yb_CD56
_MASS_CYT = re.compile(r"cytof|helios|fluidigm|dvs\s*-?sciences|standard\s*biotools", re.I)
_SPECTRAL_CYT = re.compile(
    r"aurora|northern\s*lights|\bnl-?\d{3,4}\b|id7000|sp6800|spectroflo", re.I
)
_DETECTOR = re.compile(r"^(?P<laser>UV|V|B|YG|Y|G|R)(?P<num>\d{1,2})-[AHW]$", re.I)
_NOT_FLUOR = re.compile(r"^(fsc|ssc|fs\b|ss\b|fs[ -]|ss[ -]|time|event|width|hdr-)", re.I)
_COMP_PREFIX = re.compile(r"^(FJ)?Comp-", re.I)
_SPILL_KEYS = ("$SPILLOVER", "SPILLOVER", "$SPILL", "SPILL")
_SHOWN = 4  # example channels quoted per piece of evidence
_SHRUNK = 100.0  # FLOWCORE_$PnRMAX at most $PnR / 100: values on a transformed scale


@dataclass(frozen=True)
class Technology:
    """A file's technology, the evidence that decided it, and the defaults it implies.

    Attributes
    ----------
    kind
        One of :data:`KINDS`.
    evidence
        The keywords and channel names that decided ``kind``, in words.
    compensation
        Default compensation: ``"file"`` (the file's spillover), ``"none"``, or
        ``"refuse"`` (raw spectral data must be unmixed first; transformed values
        cannot be compensated).
    compensation_reason
        Why, in words (recorded when compensation is not applied).
    transform
        Default transform: ``"logicle"``, ``"arcsinh"`` or ``"refuse"`` (the values are
        already transformed).
    cofactor
        Arcsinh cofactor for this technology (5 for mass cytometry, else 150).
    """

    kind: str
    evidence: tuple[str, ...]
    compensation: str
    compensation_reason: str
    transform: str
    cofactor: float

    @property
    def label(self) -> str:
        """The kind in words."""
        return KINDS.get(self.kind, self.kind)

    def refusal(self, where: str) -> NkflowError | None:
        """The error for a file that cannot be analysed as it is, or None.

        Raw spectral detector data cannot be compensated, and values already transformed
        cannot be compensated or transformed again.

        Parameters
        ----------
        where
            The file (or sample) the message names.

        Returns
        -------
        NkflowError or None
            :class:`~nkflow.exceptions.UnmixingRequiredError` for raw spectral detector
            data, :class:`~nkflow.exceptions.TransformedDataError` for values already
            transformed, None when the file can be compensated and transformed.
        """
        if not self.refused:
            return None
        error = TransformedDataError if self.kind == "transformed_export" else UnmixingRequiredError
        return error(f"{where}: {self.refused}")

    @property
    def refused(self) -> str:
        """Why the file cannot be analysed as it is, with the evidence; ``""`` when it can."""
        if self.compensation != "refuse":
            return ""
        return f"{self.compensation_reason} (evidence: {'; '.join(self.evidence)})"

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form stored in ``uns["nkflow"]["technology"]`` (JSON/h5ad safe)."""
        return {
            "kind": self.kind,
            "label": self.label,
            "evidence": list(self.evidence),
            "defaults": {
                "compensation": self.compensation,
                "compensation_reason": self.compensation_reason,
                "transform": self.transform,
                "cofactor": float(self.cofactor),
            },
        }

    def transform_for(
        self, method: str = "auto", cofactor: float | None = None
    ) -> tuple[str, float]:
        """The transform a file of this technology gets, and its arcsinh cofactor.

        Parameters
        ----------
        method
            ``"auto"`` (this technology's default: arcsinh for mass cytometry, else
            logicle), or the method asked for.
        cofactor
            The cofactor asked for; ``None``: this technology's.

        Returns
        -------
        tuple of (str, float)
            ``(method, cofactor)``.
        """
        if method == "auto":
            method = "arcsinh" if self.transform == "arcsinh" else "logicle"
        return method, self.cofactor if cofactor is None else float(cofactor)

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> Technology:
        """Rebuild from :meth:`to_dict` output (unknown kinds fall back to ``flow``)."""
        kind = str(record.get("kind", "flow"))
        base = _defaults(kind if kind in KINDS else "flow", has_spill=True)
        given = record.get("defaults") or {}
        return cls(
            kind=kind,
            evidence=tuple(str(e) for e in record.get("evidence", ())),
            compensation=str(given.get("compensation", base.compensation)),
            compensation_reason=str(given.get("compensation_reason", base.compensation_reason)),
            transform=str(given.get("transform", base.transform)),
            cofactor=float(given.get("cofactor", base.cofactor)),
        )


def _examples(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown + (f", ... (+{len(names) - _SHOWN} more)" if len(names) > _SHOWN else "")


def _is_metal(name: str) -> bool:
    for pattern in _METAL_PNN:
        m = pattern.match(name.strip())
        if m and m["el"] in _ELEMENTS:
            return True
    return False


def _is_isotope_label(label: str) -> bool:
    m = _ISOTOPE_PREFIX.match(label.strip())
    return bool(m and m["el"] in _ELEMENTS)


def _mass_evidence(kw: Mapping[str, str], pnn: Sequence[str], pns: Sequence[str]) -> list[str]:
    found = []
    cyt = kw.get("$CYT", "").strip()
    if _MASS_CYT.search(cyt):
        found.append(f"$CYT = {cyt!r} (a mass cytometer)")
    low = {n.strip().lower() for n in pnn}
    if "event_length" in low:
        found.append("channel Event_length (CyTOF ion-cloud length)")
    if {"center", "offset", "residual"} <= low:
        found.append("channels Center, Offset, Residual (CyTOF Gaussian discrimination)")
    metals = [n for n in pnn if _is_metal(n)]
    if len(metals) >= 2:
        found.append(f"{len(metals)} metal-isotope channel names ({_examples(metals)})")
    isotopes = [s for s in pns if s and _is_isotope_label(s)]
    if len(isotopes) >= 2:
        found.append(f"{len(isotopes)} isotope-prefixed $PnS ({_examples(isotopes)})")
    return found


def _transformed_evidence(kw: Mapping[str, str], pnn: Sequence[str]) -> list[str]:
    """Keywords that say the stored values are already transformed (flowCore's marks)."""
    found = []
    how = kw.get("TRANSFORMATION", "").strip()
    if how.lower() == "custom":
        found.append(f"TRANSFORMATION = {how!r} (flowCore's mark of events it transformed)")
    shrunk = []
    for i, name in enumerate(pnn, start=1):
        top = number_value(kw.get(f"FLOWCORE_$P{i}RMAX"), math.nan)
        rng = number_value(kw.get(f"$P{i}R"), math.nan)
        if top is not None and rng is not None and rng > 0 and top <= rng / _SHRUNK:
            shrunk.append(f"{name.strip()} {top:g} vs $P{i}R {rng:g}")
    if shrunk:
        found.append(
            f"{len(shrunk)} channel(s) whose flowCore range FLOWCORE_$PnRMAX is at most "
            f"1/{_SHRUNK:g} of $PnR ({_examples(shrunk)})"
        )
    return found


def _spectral_instrument(kw: Mapping[str, str]) -> list[str]:
    found = []
    for key in ("$CYT", "CREATOR", "$CREATOR"):
        value = kw.get(key, "").strip()
        if value and _SPECTRAL_CYT.search(value):
            found.append(f"{key} = {value!r} (a spectral cytometer)")
    return found


def _detectors(pnn: Sequence[str]) -> tuple[list[str], dict[str, int], int]:
    """Detector-style channels, the highest detector number per laser, distinct detectors."""
    hits, per_laser, distinct = [], {}, set()
    for name in pnn:
        m = _DETECTOR.match(name.strip())
        if m:
            hits.append(name)
            laser = m["laser"].upper()
            per_laser[laser] = max(per_laser.get(laser, 0), int(m["num"]))
            distinct.add((laser, int(m["num"])))
    return hits, per_laser, len(distinct)


def _defaults(kind: str, *, has_spill: bool) -> Technology:
    """The defaults of ``kind`` (evidence left empty)."""
    comp, reason, method, cof = "file", "", "logicle", 150.0
    if kind == "mass_cytometry":
        comp, method, cof = "none", "arcsinh", 5.0
        reason = "mass cytometry: metal channels have no optical spillover to compensate"
    elif kind == "compensated_export":
        comp = "none"
        reason = (
            "compensated export: the events were compensated before export "
            "(Comp-/FJComp- channel names); compensating again would be wrong"
        )
    elif kind == "transformed_export":
        comp, method = "refuse", "refuse"
        reason = (
            "the events are already transformed: nkflow cannot know the transform's "
            "parameters to bring them back to a linear scale, so it neither compensates "
            "nor transforms them again; export the untransformed (linear) events instead "
            "(the acquisition file, or write.FCS before flowCore's transform())"
        )
    elif kind == "raw_spectral":
        comp, reason = "refuse", unmixing_reason(())
    elif kind == "spectral" and not has_spill:
        comp = "none"
        reason = "unmixed spectral data without a spillover keyword: nothing to compensate"
    elif kind == "flow" and not has_spill:
        reason = "conventional flow file without a $SPILLOVER/$SPILL/SPILL keyword"
    return Technology(kind, (), comp, reason, method, cof)


def unmixing_reason(evidence: Sequence[str]) -> str:
    """What a file of raw spectral detector channels needs, in words, for its instrument.

    Parameters
    ----------
    evidence
        The evidence :func:`detect_technology` found (the instrument keywords name the
        instrument and so the software that unmixes its files).

    Returns
    -------
    str
        ``"raw spectral detector data (Cytek Aurora/NL): unmix it (e.g. in SpectroFlo)
        and export the unmixed file"``, or the same for a Sony instrument.
    """
    text = " ".join(evidence).lower()
    if "id7000" in text or "sp6800" in text:
        who, tool = "Sony ID7000/SP6800", "the Sony software"
    else:
        who, tool = "Cytek Aurora/NL", "SpectroFlo"
    return (
        f"raw spectral detector data ({who}): unmix it (e.g. in {tool}) and export the unmixed file"
    )


def detect_technology(
    keywords: Mapping[str, str],
    pnn: Sequence[str],
    pns: Sequence[str] | None = None,
) -> Technology:
    """Classify a file's technology from its TEXT keywords, ``$PnN`` and ``$PnS``.

    Parameters
    ----------
    keywords
        TEXT keywords (names in any case).
    pnn
        Channel names.
    pns
        Stain labels (``""`` where absent).

    Returns
    -------
    Technology
        The kind, the evidence that decided it and the implied defaults.

    Examples
    --------
    >>> detect_technology({"$CYT": "Helios"}, ["Time", "Event_length", "Yb173Di"]).kind
    'mass_cytometry'
    >>> detect_technology({}, ["FSC-A", "FJComp-PE-A"]).compensation
    'none'
    """
    kw = {str(k).strip().upper(): str(v) for k, v in keywords.items()}
    names = [str(n) for n in pnn]
    labels = [str(s or "") for s in (pns or [""] * len(names))]
    has_spill = any(kw.get(k, "").strip() for k in _SPILL_KEYS)

    def make(kind: str, evidence: list[str]) -> Technology:
        base = _defaults(kind, has_spill=has_spill)
        return Technology(
            kind,
            tuple(evidence),
            base.compensation,
            unmixing_reason(evidence) if kind == "raw_spectral" else base.compensation_reason,
            base.transform,
            base.cofactor,
        )

    transformed = _transformed_evidence(kw, names)
    if transformed:
        return make("transformed_export", transformed)
    mass = _mass_evidence(kw, names, labels)
    if mass:
        return make("mass_cytometry", mass)

    instrument = _spectral_instrument(kw)
    detectors, per_laser, n_detectors = _detectors(names)
    others = [
        n for n in names if n not in detectors and not _NOT_FLUOR.match(n.strip()) and n.strip()
    ]
    generic_raw = n_detectors >= 16 and max(per_laser.values(), default=0) >= 9
    if not others and ((instrument and n_detectors >= 8) or generic_raw):
        lasers = ", ".join(f"{k}1-{k}{v}" for k, v in sorted(per_laser.items()))
        return make(
            "raw_spectral",
            [
                *instrument,
                f"{n_detectors} numbered detectors ({lasers}) and no unmixed fluorochrome channel",
            ],
        )

    comp = [n for n in names if _COMP_PREFIX.match(n.strip())]
    if comp:
        prefixes = sorted({_COMP_PREFIX.match(n.strip())[0] for n in comp})  # type: ignore[index]
        return make(
            "compensated_export",
            [
                f"{len(comp)} of {len(names)} channel names start with "
                f"{' / '.join(repr(p) for p in prefixes)} ({_examples(comp)})"
            ],
        )

    spill_word = "spillover keyword present" if has_spill else "no spillover keyword"
    if instrument:
        return make(
            "spectral",
            [
                *instrument,
                f"fluorescence channels are not raw detectors ({_examples(others)})",
                spill_word,
            ],
        )
    cyt = kw.get("$CYT", "").strip()
    first = f"$CYT = {cyt!r}" if cyt else "no $CYT keyword"
    return make(
        "flow",
        [
            first,
            "no transformed-export, mass-cytometry, spectral or compensated-export evidence",
            spill_word,
        ],
    )


def technology_of(adata: Any) -> Technology:
    """The technology recorded in ``uns["nkflow"]["technology"]`` (conventional flow if none).

    A container built without :func:`nkflow.io.read_fcs` has no record; it is treated as
    conventional flow (the defaults nkflow had before technologies were told apart), and
    the evidence says so.

    Parameters
    ----------
    adata
        A container.

    Returns
    -------
    Technology
    """
    record = nkflow_record(adata, "technology")
    if isinstance(record, Mapping) and record.get("kind"):
        return Technology.from_dict(record)
    spill = nkflow_record(adata, "spillover")
    base = _defaults("flow", has_spill=bool(spill))
    return Technology(
        "flow",
        ("no technology record in the container; conventional flow assumed",),
        base.compensation,
        base.compensation_reason,
        base.transform,
        base.cofactor,
    )


def other_technology(
    mass: Mapping[str, bool], markers: Mapping[str, Iterable[str]] | None = None
) -> dict[str, str]:
    """Files of another technology than most of a batch (mass vs flow cytometry), and why.

    Flow and mass cytometry data take different transforms, gates and FMO cut-offs, and
    their markers cannot be clustered together, so a file of the other technology is run
    as a batch of its own. Ties go to the technology of the first file, and the refused
    files are told so.

    Parameters
    ----------
    mass
        ``sample_id -> whether the file holds mass cytometry data``, in sheet order.
    markers
        ``sample_id -> the file's marker per channel`` (``""`` where a channel carries
        none). The files with at least one marker name decide the batch's technology (all
        files when None or when none of them is in ``mass``): files without a single
        marker name cannot be gated, and nine such vendor files outvoted the two CyTOF
        files of a batch that could be.

    Returns
    -------
    dict
        ``sample_id -> reason`` for each file of the minority technology.
    """
    voters = None if markers is None else {s for s, names in markers.items() if any(names)}
    voting = {s: m for s, m in mass.items() if voters is None or s in voters} or dict(mass)
    n_mass = sum(voting.values())
    main = n_mass > len(voting) - n_mass or (
        2 * n_mass == len(voting) and bool(voting) and next(iter(voting.values()))
    )
    word = {True: "mass cytometry", False: "flow cytometry"}
    count = n_mass if main else len(voting) - n_mass
    of = f"{count} of {len(voting)}"
    if len(voting) < len(mass):
        of += " with marker names"
    if voting and 2 * n_mass == len(voting):  # a tie: what decided it, how to choose
        of += (
            f"; as many files are {word[not main]}: a tie, decided by the first file "
            f"({next(iter(voting))}, first in the sheet, or by name in a folder); to analyse "
            f"the {word[not main]} files instead, run them as a batch of their own or list one "
            "of them first in a sheet"
        )
    unnamed = "; it has no marker names either: label its channels or give a panel file"
    return {
        sid: f"{word[is_mass]} data in a batch of {word[main]} files ({of}): "
        "transforms, gates, FMO cut-offs and clusters are not shared between them; run it "
        "as a batch of its own" + ("" if sid in voting else unnamed)
        for sid, is_mass in mass.items()
        if is_mass != main
    }
