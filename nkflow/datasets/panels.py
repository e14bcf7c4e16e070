"""The simulated instrument: panels (``$PnN``/``$PnS``), spillover, autofluorescence, noise.

Panels are nkflow-H16 (human) and nkflow-M15 (mouse) of BIOLOGY.md 6(a), acquired on a
five-laser BD FACSymphony-like instrument: ``$PnN`` is the detector name the instrument
writes (``"PerCP-Cy5-5-A"``), ``$PnS`` the free text an operator types (``"CD56 BUV737"``,
``"Zombie Aqua CD14 CD19"``), so readers must resolve markers through an alias table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..exceptions import ConfigError

__all__ = [
    "SCATTER_CHANNELS",
    "SPECIES",
    "Channel",
    "Panel",
    "get_panel",
]

SPECIES = ("human", "mouse")
SCATTER_CHANNELS = ("FSC-A", "FSC-H", "SSC-A", "SSC-H")


@dataclass(frozen=True)
class Channel:
    """One fluorescence detector of a panel.

    Attributes
    ----------
    pnn
        Detector name written as ``$PnN``.
    pns
        Free-text stain written as ``$PnS``.
    marker
        Canonical marker name (docs/contracts.md).
    """

    pnn: str
    pns: str
    marker: str


@dataclass(frozen=True)
class Panel:
    """A staining panel on the simulated instrument.

    Attributes
    ----------
    name
        ``"nkflow-H16"`` or ``"nkflow-M15"``.
    species
        ``"human"`` or ``"mouse"``.
    channels
        Fluorescence channels in file order.
    """

    name: str
    species: str
    channels: tuple[Channel, ...]

    @property
    def markers(self) -> list[str]:
        """Canonical markers in channel order."""
        return [c.marker for c in self.channels]

    @property
    def detectors(self) -> list[str]:
        """``$PnN`` of the fluorescence channels in order."""
        return [c.pnn for c in self.channels]

    def index(self, marker: str) -> int:
        """Column of ``marker`` among the fluorescence channels."""
        for i, c in enumerate(self.channels):
            if c.marker == marker:
                return i
        raise ConfigError(f"panel {self.name} has no marker {marker!r}; it has {self.markers}")

    def spillover(self) -> np.ndarray:
        """Spillover matrix (row = fluorochrome, column = detector), diagonal 1."""
        return _spillover_for(self.detectors)

    def autofluorescence(self) -> np.ndarray:
        """Autofluorescence of a resting lymphocyte in each detector (linear units)."""
        return np.array([_AF_SPECTRUM[d] for d in self.detectors], dtype=float)

    def photon_noise(self) -> np.ndarray:
        """Per-detector photon-noise factor ``q``: variance grows as ``q * signal``."""
        return np.array([_PHOTON_Q[d] for d in self.detectors], dtype=float)


HUMAN_H16 = Panel(
    "nkflow-H16",
    "human",
    (
        Channel("BUV395-A", "CD45 BUV395", "CD45"),
        Channel("BUV737-A", "CD56 BUV737", "CD56"),
        Channel("BV421-A", "CD49a BV421", "CD49a"),
        Channel("BV510-A", "Zombie Aqua CD14 CD19", "LD_CD14_CD19"),
        Channel("BV605-A", "CD103 BV605", "CD103"),
        Channel("BV650-A", "CD3 BV650", "CD3"),
        Channel("BV711-A", "CXCR6 BV711", "CXCR6"),
        Channel("BV786-A", "CD69 BV786", "CD69"),
        Channel("FITC-A", "CD16 FITC", "CD16"),
        Channel("PerCP-Cy5-5-A", "CD62L PerCP-Cy5.5", "CD62L"),
        Channel("PE-A", "AREG PE", "AREG"),
        Channel("PE-CF594-A", "CD127 PE-CF594", "CD127"),
        Channel("PE-Cy7-A", "NKG2D PE-Cy7", "NKG2D"),
        Channel("APC-A", "NKp46 APC", "NKp46"),
        Channel("Alexa Fluor 700-A", "IFN-g AF700", "IFN-g"),
        Channel("APC-Cy7-A", "CD107a APC-Cy7", "CD107a"),
    ),
)

MOUSE_M15 = Panel(
    "nkflow-M15",
    "mouse",
    (
        Channel("BUV395-A", "CD45 BUV395", "CD45"),
        Channel("BV421-A", "CD49a BV421", "CD49a"),
        Channel("BV510-A", "Zombie Aqua CD19 F4-80", "LD_CD19_F4-80"),
        Channel("BV605-A", "NK1.1 BV605", "NK1.1"),
        Channel("BV650-A", "CD3e BV650", "CD3e"),
        Channel("BV711-A", "CD27 BV711", "CD27"),
        Channel("BV786-A", "CD11b BV786", "CD11b"),
        Channel("FITC-A", "CD69 FITC", "CD69"),
        Channel("PerCP-Cy5-5-A", "CD103 PerCP-Cy5.5", "CD103"),
        Channel("PE-A", "AREG PE", "AREG"),
        Channel("PE-CF594-A", "Eomes PE-eF610", "Eomes"),
        Channel("PE-Cy7-A", "CD49b PE-Cy7", "CD49b"),
        Channel("APC-A", "NKp46 APC", "NKp46"),
        Channel("Alexa Fluor 700-A", "IFN-g AF700", "IFN-g"),
        Channel("APC-Cy7-A", "CD127 APC-Cy7", "CD127"),
    ),
)

_PANELS = {"human": HUMAN_H16, "mouse": MOUSE_M15}


def get_panel(species: str) -> Panel:
    """Return the reference panel of ``species`` (``"human"`` or ``"mouse"``).

    Parameters
    ----------
    species
        ``"human"`` (nkflow-H16) or ``"mouse"`` (nkflow-M15).

    Returns
    -------
    Panel
        The flow panel the simulator writes: its fluorescence channels in file order, each
        with ``$PnN``, ``$PnS`` and canonical marker.

    Raises
    ------
    ConfigError
        ``species`` is neither ``"human"`` nor ``"mouse"``.
    """
    try:
        return _PANELS[species]
    except KeyError:
        raise ConfigError(f"unknown species {species!r}; valid: {list(SPECIES)}") from None


# Spillover of a fluorochrome (key: its primary detector) into other detectors, as a
# fraction of its primary signal. Orders of magnitude from BIOLOGY.md section 5: most
# values 0-5 %, a few 10-40 % between neighbours on the same laser (PE->PE-CF594,
# BV605->BV650, BV650->BV711, APC->AF700, AF700->APC-Cy7) and tandem cross-talk. On a
# five-laser instrument PE is read off the yellow-green (561 nm) laser, which barely
# excites FITC, so FITC->PE is a few percent instead of the 10-25 % of blue-laser PE.
_MAJOR_SPILL: dict[str, dict[str, float]] = {
    "BUV395-A": {"BV421-A": 0.021, "BV510-A": 0.008},
    "BUV737-A": {"BV711-A": 0.031, "BV786-A": 0.052, "Alexa Fluor 700-A": 0.024,
                 "APC-Cy7-A": 0.011},
    "BV421-A": {"BV510-A": 0.112, "BV605-A": 0.016, "FITC-A": 0.004},
    "BV510-A": {"BV605-A": 0.083, "BV650-A": 0.021, "FITC-A": 0.036, "PE-A": 0.006},
    "BV605-A": {"BV650-A": 0.262, "BV711-A": 0.061, "PE-CF594-A": 0.034, "PE-A": 0.012},
    "BV650-A": {"BV711-A": 0.213, "BV786-A": 0.034, "APC-A": 0.027,
                "PE-CF594-A": 0.009},
    "BV711-A": {"BV786-A": 0.158, "Alexa Fluor 700-A": 0.046, "PerCP-Cy5-5-A": 0.012},
    "BV786-A": {"APC-Cy7-A": 0.027, "BV711-A": 0.018},
    "FITC-A": {"PE-A": 0.015, "PE-CF594-A": 0.008, "PerCP-Cy5-5-A": 0.031},
    "PerCP-Cy5-5-A": {"PE-Cy7-A": 0.092, "Alexa Fluor 700-A": 0.057, "BV711-A": 0.021,
                      "APC-A": 0.014},
    "PE-A": {"PE-CF594-A": 0.276, "PE-Cy7-A": 0.024, "PerCP-Cy5-5-A": 0.038,
             "FITC-A": 0.007},
    "PE-CF594-A": {"PE-Cy7-A": 0.061, "APC-A": 0.019, "PE-A": 0.016,
                   "PerCP-Cy5-5-A": 0.045},
    "PE-Cy7-A": {"APC-Cy7-A": 0.048, "PE-CF594-A": 0.011},
    "APC-A": {"Alexa Fluor 700-A": 0.186, "APC-Cy7-A": 0.033, "PerCP-Cy5-5-A": 0.008},
    "Alexa Fluor 700-A": {"APC-Cy7-A": 0.124, "APC-A": 0.012},
    "APC-Cy7-A": {"Alexa Fluor 700-A": 0.031, "PE-Cy7-A": 0.022},
}  # fmt: skip

# Autofluorescence of a resting lymphocyte per detector (linear units); violet/UV and
# FITC detectors see most of it, red detectors little.
_AF_SPECTRUM = {
    "BUV395-A": 260.0, "BUV737-A": 45.0, "BV421-A": 210.0, "BV510-A": 320.0,
    "BV605-A": 110.0, "BV650-A": 70.0, "BV711-A": 55.0, "BV786-A": 45.0, "FITC-A": 240.0,
    "PerCP-Cy5-5-A": 90.0, "PE-A": 150.0, "PE-CF594-A": 110.0, "PE-Cy7-A": 45.0,
    "APC-A": 30.0, "Alexa Fluor 700-A": 22.0, "APC-Cy7-A": 20.0,
}  # fmt: skip

# Photon statistics: variance of a detector's signal = electronic^2 + q * signal.
_PHOTON_Q = {
    "BUV395-A": 45.0, "BUV737-A": 60.0, "BV421-A": 35.0, "BV510-A": 40.0, "BV605-A": 45.0,
    "BV650-A": 50.0, "BV711-A": 55.0, "BV786-A": 60.0, "FITC-A": 35.0,
    "PerCP-Cy5-5-A": 55.0, "PE-A": 30.0, "PE-CF594-A": 40.0, "PE-Cy7-A": 55.0,
    "APC-A": 45.0, "Alexa Fluor 700-A": 60.0, "APC-Cy7-A": 65.0,
}  # fmt: skip

# Detector voltages written as $PnV (a FACSymphony-like CS&T setting).
VOLTAGES = {
    "FSC-A": 320, "FSC-H": 320, "SSC-A": 265, "SSC-H": 265, "BUV395-A": 455,
    "BUV737-A": 520, "BV421-A": 410, "BV510-A": 430, "BV605-A": 445, "BV650-A": 470,
    "BV711-A": 495, "BV786-A": 540, "FITC-A": 480, "PerCP-Cy5-5-A": 560, "PE-A": 455,
    "PE-CF594-A": 490, "PE-Cy7-A": 545, "APC-A": 505, "Alexa Fluor 700-A": 560,
    "APC-Cy7-A": 580,
}  # fmt: skip

ELECTRONIC_SD = 18.0
SPILL_FLOOR_SEED = 20240312


def _spillover_for(detectors: list[str]) -> np.ndarray:
    n = len(detectors)
    pos = {d: i for i, d in enumerate(detectors)}
    # Small background cross-talk (0-0.6 %) everywhere, fixed for the instrument.
    floor = np.random.default_rng(SPILL_FLOOR_SEED).uniform(0.0, 0.006, size=(16, 16))
    all_dets = list(_AF_SPECTRUM)
    mat = np.eye(n)
    for i, src in enumerate(detectors):
        for j, dst in enumerate(detectors):
            if i != j:
                mat[i, j] = round(floor[all_dets.index(src), all_dets.index(dst)], 4)
        for dst, value in _MAJOR_SPILL.get(src, {}).items():
            if dst in pos:
                mat[i, pos[dst]] = value
    return mat
