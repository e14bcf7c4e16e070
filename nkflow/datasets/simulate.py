"""Simulate one tube in linear space: cells, artefacts, spillover, noise, acquisition.

How an event is made (all vectorised):

1. a leaf label is drawn from the tube's composition;
2. stain levels come from the label's marker profile (log-normal positives, no stain on
   negatives), functional read-outs (AREG, IFN-g, CD107a) from the planted rates; the FMO
   marker's stain is removed;
3. doublets are two singlets summed (FSC-H/FSC-A falls off the diagonal);
4. autofluorescence (cell-type and tissue dependent) is added per detector, the stains
   spill into other detectors through the spillover matrix, and each detector gets
   photon noise (variance proportional to its total signal) plus electronic noise. After
   compensation the spilled photons leave their noise behind: spreading error and
   negative values, as on a real instrument;
5. events arrive as a Poisson process (``Time``); a clog slows the flow and dims the
   signal for a stretch of the acquisition.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import ConfigError
from .panels import ELECTRONIC_SD, SCATTER_CHANNELS, VOLTAGES, get_panel
from .populations import (
    HUMAN_NK,
    LYMPHOID,
    MOUSE_NK,
    composition,
    labels_for,
    marker_table,
    scatter_table,
    tissue_profile,
)
from .truth import planted_rates

__all__ = [
    "FUNCTIONAL",
    "TECHNOLOGIES",
    "SimulatedSample",
    "acquisition",
    "draw_stains",
    "functional_rates",
    "simulate_sample",
    "tube_composition",
]

FUNCTIONAL = ("AREG", "IFN-g", "CD107a")
TECHNOLOGIES = ("flow", "mass")
MAX_VALUE = 262143.0
TIMESTEP = 0.01
# (median, sdlog) of a producing cell's stain, linear units.
_FUNCTIONAL_LEVEL = {"AREG": (2600.0, 0.6), "IFN-g": (7000.0, 0.6), "CD107a": (6000.0, 0.6)}
_BACKGROUND = {"AREG": 0.003, "IFN-g": 0.005, "CD107a": 0.01}


@dataclass
class SimulatedSample:
    """One simulated FCS file held in memory.

    Attributes
    ----------
    data
        float32 raw (uncompensated) events, shape (events, channels).
    channels
        ``$PnN`` per column: FSC-A, FSC-H, SSC-A, SSC-H, fluorescence, Time (flow); see
        :mod:`nkflow.datasets.mass` for mass cytometry.
    markers
        ``$PnS`` per column (``""`` for scatter, Time and instrument parameters).
    spillover_channels, spillover
        Detectors and spillover matrix written to ``$SPILLOVER`` and applied.
    keywords
        Extra TEXT keywords (``$CYT``, ``$TIMESTEP``, ...).
    truth
        Per event: ``label`` (categorical), bools ``AREG``, ``IFN-g``, ``CD107a``,
        ``qc_anomaly`` (acquired during a clog).
    planted
        ``population, marker, planted_percent``: expected producer percent per population.
    label_probabilities
        Probability of each leaf label in this tube.
    ranges
        ``$PnR`` per column, or ``None`` for the 18-bit default (262144).
    timestep
        Seconds per unit of the ``Time`` column.
    technology
        ``"flow"`` or ``"mass"``. Mass-cytometry samples have no spillover (empty
        ``spillover_channels``, a 0 x 0 ``spillover``) and hold ion counts.
    """

    data: np.ndarray
    channels: list[str]
    markers: list[str]
    spillover_channels: list[str]
    spillover: np.ndarray
    keywords: dict[str, str]
    truth: pd.DataFrame
    planted: pd.DataFrame
    label_probabilities: pd.Series
    ranges: list[float] | None = None
    timestep: float = TIMESTEP
    technology: str = "flow"

    def compensated(self) -> np.ndarray:
        """Events with the spillover removed (float64), same columns as ``data``."""
        out = self.data.astype(float)
        if not self.spillover_channels:
            return out
        idx = [self.channels.index(c) for c in self.spillover_channels]
        out[:, idx] = out[:, idx] @ np.linalg.inv(self.spillover)
        return out


#: stimulation conditions the simulator knows, with the IFN-g / CD107a response they bring
#: relative to PMA/ionomycin ("stim" is the generic PMA/iono-like stimulation): IL-2 and IL-15
#: alone are weak IFN-g inducers, IL-12/IL-15/IL-18 a strong one, glucocorticoids suppress it
CONDITIONS: dict[str, float] = {
    "stim": 1.0,
    "PMA/iono": 1.0,
    "IL-15": 0.3,
    "IL-2": 0.3,
    "IL-12/IL-15/IL-18": 1.2,
    "dexamethasone": 0.1,
}


def is_stimulated_condition(stimulation: str) -> bool:
    """``False`` for ``"unstim"``, ``True`` for a condition of :data:`CONDITIONS`.

    Raises
    ------
    ConfigError
        For any other name.
    """
    if stimulation == "unstim":
        return False
    if stimulation not in CONDITIONS:
        raise ConfigError(f"stimulation {stimulation!r}; valid: unstim, {', '.join(CONDITIONS)}")
    return True


def functional_rates(
    species: str, stimulation: str, areg_net: dict[str, float] | None = None
) -> dict[str, np.ndarray]:
    """Probability that a cell of each leaf label produces AREG, IFN-g and CD107a.

    Unstimulated tubes keep background rates only. Stimulated tubes (any condition of
    :data:`CONDITIONS`) add the planted AREG net percent per label (``areg_net``), an ILC
    AREG response (the positive control), and IFN-g/CD107a at the rates of healthy-donor NK
    function studies (BIOLOGY.md 3) scaled by the condition's factor. A label without a
    planted AREG rate has the same AREG rate in both tubes.

    Parameters
    ----------
    species
        ``"human"`` or ``"mouse"``.
    stimulation
        ``"unstim"`` or a condition of :data:`CONDITIONS`.
    areg_net
        Planted net AREG percent (0-100) per leaf label; used for stimulated tubes only.

    Returns
    -------
    dict of str to numpy.ndarray
        ``"AREG"``, ``"IFN-g"`` and ``"CD107a"`` -> one probability per leaf label, in the
        order of :func:`labels_for`.

    Raises
    ------
    ConfigError
        ``areg_net`` names a label the species does not have, ``stimulation`` is not a
        known condition, or ``species`` is unknown.
    """
    labels = labels_for(species)
    areg_net = dict(areg_net or {})
    unknown = sorted(set(areg_net) - set(labels))
    if unknown:
        raise ConfigError(f"AREG planted in unknown labels {unknown}; valid: {list(labels)}")
    stimulated = is_stimulated_condition(stimulation)
    lymphoid = np.array([lab in LYMPHOID for lab in labels])
    rates = {m: np.where(lymphoid, _BACKGROUND[m], 0.0) for m in FUNCTIONAL}
    if not stimulated:
        return rates
    factor = CONDITIONS[stimulation]
    nk_labels = set(HUMAN_NK) | set(MOUSE_NK)
    ifng = {"T": 0.10, "ILC": 0.03, "NKT-like": 0.30, "NKT": 0.40}
    cd107 = {"T": 0.03, "NKT-like": 0.10, "NKT": 0.10}
    for i, lab in enumerate(labels):
        if lab in nk_labels:
            bright = "bright" in lab or lab in ("trNK", "DP_CD49a_CD49b")
            ifng_rate, cd107_rate = (0.35, 0.10) if bright else (0.25, 0.20)
        else:
            ifng_rate, cd107_rate = ifng.get(lab, 0.0), cd107.get(lab, 0.0)
        rates["IFN-g"][i] += factor * ifng_rate
        rates["CD107a"][i] += factor * cd107_rate
        net = 25.0 if lab == "ILC" else areg_net.get(lab, 0.0)
        rates["AREG"][i] += net / 100.0
    return rates


def _draw(rng: np.random.Generator, p: np.ndarray, med: np.ndarray, sd: np.ndarray, codes):
    """Stain levels for events with label ``codes`` from per-label profile arrays."""
    shape = (codes.size, p.shape[1])
    f32 = np.float32
    with np.errstate(divide="ignore"):
        log_med = np.log(med).astype(f32)  # -inf where a label carries no stain
    pos = rng.random(shape, dtype=f32) < p.astype(f32)[codes]
    z = rng.standard_normal(shape, dtype=f32)
    z *= sd.astype(f32)[codes]
    z += log_med[codes]
    np.exp(z, out=z)
    z *= pos
    return z


def draw_stains(rng, codes, tables, levels=None):
    """Stain levels and functional truth of singlets with leaf label ``codes``.

    ``tables`` is ``(p, median, sdlog, _, rates, func_cols, res_idx, tr_mask, circ_cd69)``
    (the fourth item is not used here); ``levels`` maps each functional marker to the
    ``(median, sdlog)`` of a producing cell (default: fluorescence units). Shared by the
    flow and the mass-cytometry simulators; the random draws come in a fixed order.
    """
    p, med, sd, _, rates, func_cols, res_idx, tr_mask, circ_cd69 = tables
    levels = _FUNCTIONAL_LEVEL if levels is None else levels
    n = codes.size
    stains = _draw(rng, p, med, sd, codes)
    if circ_cd69 is not None:
        circ_mask, cd69 = circ_cd69
        activated = circ_mask[codes] & (stains[:, cd69] > 0)
        stains[np.ix_(activated, res_idx)] = 0.0
    # every resident NK carries at least one residency integrin/receptor
    if res_idx:
        is_tr = tr_mask[codes]
        none = is_tr & ~(stains[:, res_idx] > 0).any(axis=1)
        first = res_idx[0]
        stains[none, first] = med[codes[none], first] * np.exp(
            sd[codes[none], first] * rng.standard_normal(int(none.sum()))
        )
    func = np.zeros((n, len(FUNCTIONAL)), dtype=bool)
    for k, marker in enumerate(FUNCTIONAL):
        func[:, k] = rng.random(n) < rates[marker][codes]
        col = func_cols[k]
        if col is not None:
            m, s = levels[marker]
            stains[:, col] += func[:, k] * m * np.exp(s * rng.standard_normal(n))
    return stains, func


def _cells(rng, codes, tables, residency, af_scale):
    """Simulate singlets: (stains, fsc_a, fsc_h, ssc_a, ssc_h, af amplitude, functional)."""
    scat = tables[3]
    n = codes.size
    stains, func = draw_stains(rng, codes, tables)
    # cell size: bigger cells scatter more and carry more antigen (surface ~ size^2),
    # which gives real populations their slight diagonal elongation
    size = np.exp(0.1 * rng.standard_normal(n))
    stains *= (size**1.6).astype(stains.dtype)[:, None]
    prm = scat[codes]
    fsc_a = (prm[:, 0] + prm[:, 1] * rng.standard_normal(n)) * size
    fsc_a = np.where(fsc_a < 4000, 4000 + rng.exponential(2500, n), fsc_a)
    ssc_a = prm[:, 2] * np.exp(prm[:, 3] * rng.standard_normal(n)) * size**0.8
    fsc_h = fsc_a * (0.80 + 0.045 * rng.standard_normal(n))
    ssc_h = ssc_a * (0.84 + 0.05 * rng.standard_normal(n))
    af = prm[:, 4] * af_scale * np.exp(0.35 * rng.standard_normal(n))
    return stains, fsc_a, fsc_h, ssc_a, ssc_h, af, func


def acquisition(
    rng: np.random.Generator, n_events: int, rate: float, clog: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Poisson arrivals at ``rate`` events/s; a clog slows the flow and dims the signal.

    Returns the gaps between events (s), the events acquired during the clog and the
    signal scale of each event (1 outside the clog).
    """
    gaps = rng.exponential(1.0 / rate, n_events)
    anomaly = np.zeros(n_events, dtype=bool)
    scale = np.ones(n_events)
    if clog:
        start, stop = int(0.55 * n_events), int(0.68 * n_events)
        anomaly[start:stop] = True
        ramp = np.sin(np.linspace(0.0, np.pi, stop - start))
        gaps[start:stop] *= 1.0 + 5.0 * ramp
        scale[start:stop] = 1.0 - 0.45 * ramp
    return gaps, anomaly, scale


def tube_composition(
    panel: Any,
    species: str,
    tissue: str,
    *,
    n_events: int,
    fmo: str,
    donor: str,
    nk_enrichment: float,
    ilc_boost: float,
    random_state: int,
) -> np.ndarray:
    """Check a tube's request against its panel; the donor's cell mix in that tissue.

    The donor's shift depends only on species, donor, tissue and seed, so every tube of a
    donor and tissue (flow or mass, any stimulation) has the same composition.
    """
    if n_events < 1:
        raise ConfigError(f"n_events must be >= 1; got {n_events}")
    if fmo and fmo not in panel.markers:
        raise ConfigError(f"FMO marker {fmo!r} not in {panel.name}; valid: {panel.markers}")
    donor_rng = np.random.default_rng(_seed(random_state, f"{species}|{donor}|{tissue}"))
    shift = donor_rng.normal(0.0, [0.25, 0.2, 0.2, 0.2])
    return composition(
        species, tissue, nk_enrichment=nk_enrichment, ilc_boost=ilc_boost, donor_shift=shift
    )


def _seed(random_state: int, key: str) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(random_state) & 0xFFFFFFFF, zlib.crc32(key.encode())])


def simulate_sample(
    species: str = "human",
    tissue: str = "blood",
    *,
    stimulation: str = "unstim",
    n_events: int = 50_000,
    fmo: str = "",
    areg_net: dict[str, float] | None = None,
    donor: str = "D1",
    timepoint: str = "pre",
    nk_enrichment: float = 1.0,
    ilc_boost: float = 1.0,
    clog: bool = False,
    random_state: int = 0,
    technology: str = "flow",
) -> SimulatedSample:
    """Simulate one tube and return its events and truth in memory.

    Parameters
    ----------
    species
        ``"human"`` (panel nkflow-H16; mass cytometry: nkflow-HM18) or ``"mouse"``
        (nkflow-M15, flow only).
    tissue
        Human: blood, liver, lung, tumour; mouse: liver, spleen.
    stimulation
        ``"unstim"`` or a condition of :data:`CONDITIONS` (``"stim"``, ``"IL-15"`` ...):
        sheds CD16/CD62L and raises CD69 (the same phenotype change for every condition),
        induces IFN-g and CD107a scaled by the condition, and the planted AREG.
    n_events
        Events acquired.
    fmo
        Marker whose stain is left out (fluorescence-minus-one), or ``""``.
    areg_net
        Planted net AREG percent per leaf label (stimulated tubes only).
    donor, timepoint
        Identify the biological sample; the same donor and tissue give the same
        composition in every tube.
    nk_enrichment, ilc_boost
        Composition factors (see :func:`nkflow.datasets.populations.composition`).
    clog
        Simulate an acquisition clog.
    random_state
        Seed; the same arguments and seed give identical events.
    technology
        ``"flow"`` (scatter, fluorescence with spillover) or ``"mass"`` (a Helios-like
        CyTOF tube of ion counts: DNA, cisplatin, event length, beads; see
        :func:`nkflow.datasets.mass.simulate_mass`).

    Returns
    -------
    SimulatedSample
        Events, channels, keywords, spillover and truth.

    Raises
    ------
    ConfigError
        An unknown species, tissue, stimulation or ``technology``, ``n_events`` below 1,
        an ``fmo`` marker not in the panel, or AREG planted in an unknown label.
    """
    if technology == "mass":
        from .mass import simulate_mass  # builds on this module's helpers

        return simulate_mass(
            species, tissue, stimulation=stimulation, n_events=n_events, fmo=fmo,
            areg_net=areg_net, donor=donor, timepoint=timepoint,
            nk_enrichment=nk_enrichment, ilc_boost=ilc_boost, clog=clog,
            random_state=random_state,
        )  # fmt: skip
    if technology != "flow":
        raise ConfigError(f"technology {technology!r}; valid: {list(TECHNOLOGIES)}")
    panel = get_panel(species)
    prof = tissue_profile(species, tissue)
    labels = labels_for(species)
    prob = tube_composition(panel, species, tissue, n_events=n_events, fmo=fmo, donor=donor,
                            nk_enrichment=nk_enrichment, ilc_boost=ilc_boost,
                            random_state=random_state)  # fmt: skip
    key = f"{species}|{donor}|{tissue}|{timepoint}|{stimulation}|{fmo}|{ilc_boost}|{clog}"
    rng = np.random.default_rng(_seed(random_state, key))

    stim = is_stimulated_condition(stimulation)
    p, med, sd = marker_table(species, tissue, stimulated=stim)
    rates = functional_rates(species, stimulation, areg_net if stim else None)
    func_cols = [panel.markers.index(m) if m in panel.markers else None for m in FUNCTIONAL]
    res_idx = [panel.index(m) for m in prof.residency] if species == "human" else []
    tr_mask = np.array([lab.endswith("_tr") for lab in labels])
    # a CD69+ circulating NK is activated, not resident: it carries no residency receptor
    circ_cd69 = (
        (np.array([lab.endswith("_circ") for lab in labels]), panel.index("CD69"))
        if res_idx
        else None
    )
    tables = (p, med, sd, scatter_table(species), rates, func_cols, res_idx, tr_mask, circ_cd69)

    codes = rng.choice(len(labels), size=n_events, p=prob)
    stains, fsc_a, fsc_h, ssc_a, ssc_h, af, func = _cells(rng, codes, tables, res_idx, prof.af)

    # doublets: two live-ish singlets stuck together
    dbl = np.flatnonzero(codes == labels.index("doublet"))
    if dbl.size:
        single_p = prob.copy()
        single_p[[labels.index("debris"), labels.index("doublet")]] = 0.0
        single_p /= single_p.sum()
        pair = rng.choice(len(labels), size=2 * dbl.size, p=single_p)
        s2, fa2, fh2, sa2, sh2, af2, fn2 = _cells(rng, pair, tables, res_idx, prof.af)
        a, b = slice(0, dbl.size), slice(dbl.size, None)
        stains[dbl] = s2[a] + s2[b]
        fsc_a[dbl] = fa2[a] + fa2[b]
        fsc_h[dbl] = np.maximum(fh2[a], fh2[b]) * rng.uniform(0.95, 1.45, dbl.size)
        ssc_a[dbl] = sa2[a] + sa2[b]
        ssc_h[dbl] = np.maximum(sh2[a], sh2[b]) * rng.uniform(1.0, 1.3, dbl.size)
        af[dbl] = af2[a] + af2[b]
        func[dbl] = fn2[a] | fn2[b]
        # one in ten is a larger aggregate (3-6 cells): scatter often hits the ceiling,
        # giving the margin events QC must drop
        big = dbl[rng.random(dbl.size) < 0.1]
        k = rng.integers(3, 7, big.size) / 2.0
        stains[big] *= k.astype(stains.dtype)[:, None]
        fsc_a[big] *= k
        ssc_a[big] *= k
        fsc_h[big] *= 1.0 + 0.15 * k
        ssc_h[big] *= 1.0 + 0.2 * k
        af[big] *= k
    if fmo:
        stains[:, panel.index(fmo)] = 0.0

    spill = panel.spillover()
    f32 = np.float32
    signal = stains @ spill.astype(f32)
    signal += af.astype(f32)[:, None] * panel.autofluorescence().astype(f32)[None, :]
    noise = np.maximum(signal, f32(0.0))
    noise *= panel.photon_noise().astype(f32)
    noise += f32(ELECTRONIC_SD**2)
    np.sqrt(noise, out=noise)
    noise *= rng.standard_normal(signal.shape, dtype=f32)
    raw = signal
    raw += noise
    del noise

    gaps, anomaly, scale = acquisition(rng, n_events, 1400.0 if tissue == "blood" else 900.0, clog)
    time = np.cumsum(gaps) / TIMESTEP
    n_fl = raw.shape[1]
    data = np.empty((n_events, n_fl + 5), dtype=f32)
    sscale = 0.6 + 0.4 * scale
    for k, values in enumerate((fsc_a, fsc_h, ssc_a, ssc_h)):
        data[:, k] = values * sscale + 30.0 * rng.standard_normal(n_events)
    data[:, 4 : 4 + n_fl] = raw
    if clog:
        data[:, 4 : 4 + n_fl] *= scale.astype(f32)[:, None]
    data[:, -1] = time
    np.clip(data, None, f32(MAX_VALUE), out=data)
    np.clip(data[:, :4], f32(0.0), None, out=data[:, :4])

    truth = pd.DataFrame(
        {
            "label": pd.Categorical.from_codes(codes, categories=list(labels)),
            "AREG": func[:, 0],
            "IFN-g": func[:, 1],
            "CD107a": func[:, 2],
            "qc_anomaly": anomaly,
        }
    )
    measured = [m for m in FUNCTIONAL if m in panel.markers]
    planted = pd.DataFrame(
        planted_rates(species, prob, {m: rates[m] for m in measured}),
        columns=["population", "marker", "planted_percent"],
    )
    channels = [*SCATTER_CHANNELS, *panel.detectors, "Time"]
    pns = ["" for _ in SCATTER_CHANNELS] + [c.pns for c in panel.channels] + [""]
    keywords = {
        "$CYT": "FACSymphony A5",
        "$TIMESTEP": f"{TIMESTEP}",
        "$COM": f"simulated by nkflow.datasets ({panel.name}); not real data",
        "$SRC": f"{donor} {tissue}",
    }
    for i, ch in enumerate(channels, start=1):
        if ch in VOLTAGES:
            keywords[f"$P{i}V"] = str(VOLTAGES[ch])
        keywords[f"P{i}DISPLAY"] = "LOG" if ch in panel.detectors else "LIN"
    return SimulatedSample(
        data=data,
        channels=channels,
        markers=pns,
        spillover_channels=list(panel.detectors),
        spillover=spill,
        keywords=keywords,
        truth=truth,
        planted=planted,
        label_probabilities=pd.Series(prob, index=list(labels), name="probability"),
    )
