"""The simulated mass cytometer: a Helios-like channel layout, isotope crosstalk, profiles.

Channel names follow a Fluidigm/Standard BioTools Helios export: ``$PnN`` is the metal
and mass with a ``Di`` suffix (``"Y89Di"``, ``"Pr141Di"``), ``$PnS`` is ``<mass><element>_
<target>`` (``"89Y_CD45"``); the instrument adds ``Time`` (milliseconds), ``Event_length``
(pushes, 10-75) and the Gaussian discrimination parameters ``Center``, ``Offset``,
``Width``, ``Residual``. There is no scatter and no ``$SPILLOVER``: signals are ion counts,
and the only crosstalk is the small isotope-impurity (M +/- 1) and oxide (M + 16)
contamination, applied to the simulated counts but not written to the file (as on a real
instrument, where it is left uncorrected or corrected with CATALYST from bead controls).

Marker levels are ion counts. The lineage and NK markers shared with the flow panel
nkflow-H16 reuse its per-label profiles (:func:`nkflow.datasets.populations.marker_table`)
scaled to counts, so both technologies describe the same cells; the mass-only channels
(CD7, separate CD14 and CD19, cisplatin) have their own profiles here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..exceptions import ConfigError
from .panels import get_panel
from .populations import HUMAN_LABELS, HUMAN_NK, marker_table

__all__ = [
    "BACKGROUND",
    "GAUSSIAN_CHANNELS",
    "HUMAN_MASS_LABELS",
    "MassChannel",
    "MassPanel",
    "background_means",
    "get_mass_panel",
    "mass_marker_table",
]

#: Leaf labels of a human mass-cytometry tube: the flow labels plus normalisation beads.
HUMAN_MASS_LABELS = (*HUMAN_LABELS, "bead")
GAUSSIAN_CHANNELS = ("Center", "Offset", "Width", "Residual")
#: Flow stain (18-bit linear units) -> median ion counts: puts the panel's positive
#: populations at arcsinh(x/5) 3-6, as in the real CyTOF files (CytoNorm, Krieg et al.).
COUNTS_PER_FLOW_UNIT = 1.0 / 40.0
# (median, sdlog) of the four-element EQ calibration beads per channel, ion counts.
BEAD_LEVELS = {"Ce140Di": (1200.0, 0.2), "Eu151Di": (1500.0, 0.2),
               "Eu153Di": (1600.0, 0.2), "Ho165Di": (2000.0, 0.2)}  # fmt: skip
OXIDE = 0.015  # M + 16 (MO+) as a fraction of the parent signal
IMPURITY = 0.004  # M +/- 1 isotopic impurity of an enriched metal
_MONOISOTOPIC = ("Pr", "Tb", "Ho", "Tm")  # no neighbouring isotopes to carry over


@dataclass(frozen=True)
class MassChannel:
    """One mass channel.

    Attributes
    ----------
    pnn
        ``$PnN`` (``"Pr141Di"``).
    pns
        ``$PnS`` (``"141Pr_CD3"``).
    marker
        Canonical marker (docs/contracts.md), ``"Viability"`` for cisplatin, or ``""``
        for beads and DNA.
    mass
        Isotope mass.
    """

    pnn: str
    pns: str
    marker: str
    mass: int


@dataclass(frozen=True)
class MassPanel:
    """A metal-tagged antibody panel on the simulated mass cytometer.

    Attributes
    ----------
    name
        ``"nkflow-HM18"``.
    species
        ``"human"``.
    channels
        Mass channels in file order (ascending mass).
    """

    name: str
    species: str
    channels: tuple[MassChannel, ...]

    @property
    def detectors(self) -> list[str]:
        """``$PnN`` of the mass channels in order."""
        return [c.pnn for c in self.channels]

    @property
    def markers(self) -> list[str]:
        """Canonical antibody markers (cisplatin, DNA and bead channels excluded)."""
        return [c.marker for c in self.channels if c.marker and c.marker != "Viability"]

    def column(self, key: str) -> int:
        """Column among the mass channels of a marker, ``"Viability"`` or a ``$PnN``."""
        for i, c in enumerate(self.channels):
            if key in (c.marker, c.pnn):
                return i
        raise ConfigError(
            f"mass panel {self.name} has no marker or channel {key!r}; markers: {self.markers}"
        )

    def crosstalk(self) -> np.ndarray:
        """Isotope crosstalk (row = source channel, column = receiving channel), diagonal 1.

        Oxide formation sends :data:`OXIDE` of a lanthanide's signal to M + 16 and
        isotopic impurity :data:`IMPURITY` to M - 1 and M + 1 (not from monoisotopic
        Pr, Tb, Ho, Tm), where a channel exists.
        """
        masses = {c.mass: j for j, c in enumerate(self.channels)}
        mat = np.eye(len(self.channels))
        for i, c in enumerate(self.channels):
            if not 139 <= c.mass <= 176:  # lanthanides only (not Y, Ir, Pt, Bi)
                continue
            spill = [(16, OXIDE)]
            if c.pnn[:2] not in _MONOISOTOPIC:
                spill += [(-1, IMPURITY), (1, IMPURITY)]
            for dm, frac in spill:
                j = masses.get(c.mass + dm)
                if j is not None:
                    mat[i, j] = frac
        return mat


def _ch(mass: int, element: str, target: str, marker: str) -> MassChannel:
    return MassChannel(f"{element}{mass}Di", f"{mass}{element}_{target}", marker, mass)


HUMAN_HM18 = MassPanel(
    "nkflow-HM18",
    "human",
    (
        _ch(89, "Y", "CD45", "CD45"),
        _ch(140, "Ce", "Beads", ""),
        _ch(141, "Pr", "CD3", "CD3"),
        _ch(142, "Nd", "CD19", "CD19"),
        _ch(143, "Nd", "CD127", "CD127"),
        _ch(144, "Nd", "CD69", "CD69"),
        _ch(147, "Sm", "CD7", "CD7"),
        _ch(150, "Nd", "CD49a", "CD49a"),
        _ch(151, "Eu", "CD103", "CD103"),
        _ch(153, "Eu", "CD62L", "CD62L"),
        _ch(156, "Gd", "CXCR6", "CXCR6"),
        _ch(160, "Gd", "CD14", "CD14"),
        _ch(162, "Dy", "NKp46", "NKp46"),
        _ch(164, "Dy", "AREG", "AREG"),
        _ch(165, "Ho", "IFN-g", "IFN-g"),
        _ch(166, "Er", "NKG2D", "NKG2D"),
        _ch(168, "Er", "CD107a", "CD107a"),
        _ch(176, "Yb", "CD56", "CD56"),
        _ch(191, "Ir", "DNA1", ""),
        _ch(193, "Ir", "DNA2", ""),
        _ch(195, "Pt", "Viability", "Viability"),
        _ch(209, "Bi", "CD16", "CD16"),
    ),
)


def get_mass_panel(species: str = "human") -> MassPanel:
    """The mass-cytometry panel of ``species`` (human only: nkflow-HM18).

    Parameters
    ----------
    species
        ``"human"``; ``"mouse"`` is a known species without a mass panel.

    Returns
    -------
    MassPanel
        The simulator's CyTOF panel: metal channels, their markers and masses.

    Raises
    ------
    ConfigError
        ``species`` is unknown or is not ``"human"``.
    """
    get_panel(species)
    if species != "human":
        raise ConfigError(
            f"mass-cytometry simulation has a human panel only; got species {species!r}"
        )
    return HUMAN_HM18


# Mean ion counts of an unstained cell per channel (nonspecific binding, free metal), the
# mean of a gamma-Poisson (negative binomial, shape BACKGROUND_SHAPE). Calibrated on the
# real files: in lineage channels 40-70 % of negative events read exactly 0 and 15-35 %
# read in (0, 1) (CD3, CD14, CD16, CD19, HLA-DR in CytoNorm's and Krieg et al.'s CyTOF
# files), cisplatin on live cells 72-78 % zeros; CD7 and CD56 channels run dirtier.
BACKGROUND = {"CD7": 1.6, "CD56": 1.2, "Viability": 0.35, "Ce140Di": 0.25,
              "Ir191Di": 0.3, "Ir193Di": 0.3}  # fmt: skip
BACKGROUND_DEFAULT = 0.8
BACKGROUND_SHAPE = 1.0

# Mass-only channels: (p, median counts, sdlog) per leaf label.
_NK_CD7 = (1.0, 120.0, 0.45)
_MASS_ONLY: dict[str, dict[str, tuple[float, float, float]]] = {
    "debris": {"CD14": (0.3, 60, 1.0), "CD19": (0.2, 40, 1.0), "Viability": (0.4, 120, 1.0)},
    "dead": {"CD14": (0.3, 100, 0.8), "CD7": (0.3, 50, 0.6), "Viability": (1.0, 450, 0.6)},
    "granulocyte": {"CD14": (0.5, 25, 0.5)},
    "monocyte": {"CD14": (1.0, 300, 0.4)},
    "B": {"CD19": (1.0, 180, 0.35)},
    "T": {"CD7": (0.85, 110, 0.45)},
    "NKT-like": {"CD7": (1.0, 90, 0.45)},
    "ILC": {"CD7": (1.0, 70, 0.4)},
    "other_lin_neg": {"CD7": (0.15, 40, 0.5)},
    **{label: {"CD7": _NK_CD7} for label in HUMAN_NK},
}  # fmt: skip


def mass_marker_table(
    species: str, tissue: str, *, stimulated: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-label profiles over the mass channels, in ion counts (functional excluded).

    Markers shared with the flow panel take the flow profile (tissue CD56 loss,
    stimulation shedding and CD69 included) times :data:`COUNTS_PER_FLOW_UNIT`; CD7,
    CD14, CD19 and cisplatin take the mass-only profiles. Beads, DNA and the bead label
    carry no stain here (they are simulated separately).

    Returns
    -------
    tuple of numpy.ndarray
        ``(p, median, sdlog)``, each of shape (mass labels, mass channels).
    """
    panel = get_mass_panel(species)
    flow = get_panel(species)
    fp, fmed, fsd = marker_table(species, tissue, stimulated=stimulated)
    shape = (len(HUMAN_MASS_LABELS), len(panel.channels))
    p, med, sd = np.zeros(shape), np.zeros(shape), np.full(shape, 0.3)
    n_flow = len(HUMAN_LABELS)
    for j, ch in enumerate(panel.channels):
        if ch.marker in flow.markers:
            k = flow.index(ch.marker)
            p[:n_flow, j] = fp[:, k]
            med[:n_flow, j] = fmed[:, k] * COUNTS_PER_FLOW_UNIT
            sd[:n_flow, j] = fsd[:, k]
    for i, label in enumerate(HUMAN_MASS_LABELS):
        for marker, (pp, mm, ss) in _MASS_ONLY.get(label, {}).items():
            j = panel.column(marker)
            p[i, j], med[i, j], sd[i, j] = pp, mm, ss
    return p, med, sd


def background_means(panel: MassPanel) -> np.ndarray:
    """Mean background ion counts per mass channel."""
    out = []
    for c in panel.channels:
        key = c.marker if c.marker in BACKGROUND else c.pnn
        out.append(BACKGROUND.get(key, BACKGROUND_DEFAULT))
    return np.array(out, dtype=float)
