"""Simulate one mass-cytometry (CyTOF/Helios-like) tube: ion counts with per-event truth.

How an event is made (all vectorised):

1. a leaf label is drawn from the tube's composition: the same cells as the flow
   simulator (same donor, same composition) plus EQ normalisation beads (``bead``);
2. expected ion counts per channel come from the label's profile (log-normal on
   positive cells, scaled by cell size; see :mod:`nkflow.datasets.mass_panel`), the
   functional read-outs from the planted rates; the FMO marker's stain is removed;
3. DNA (Ir191/Ir193 intercalator, about 1:2) is constant per nucleated cell; debris
   carries little DNA, beads none; dead cells take up cisplatin (Pt195);
4. doublets are two singlets whose ion clouds merge: twice the DNA, a longer
   ``Event_length`` and a worse Gaussian fit (``Residual``), summed antigen counts;
5. isotope crosstalk (oxide M+16, impurity M+/-1) is added, then every channel gets
   gamma-Poisson background; ion counts are drawn (Poisson) and randomised as the
   Fluidigm software does: a count ``k >= 1`` becomes ``k - U(0, 1)``, a zero stays an
   exact 0. Negative cells therefore read mostly 0 or a value in (0, 1), and nothing is
   negative, as in the real files;
6. events arrive as a Poisson process (``Time`` in milliseconds, about 350 events/s
   from blood); a clog slows the flow and dims the signal for a stretch.

The ``Center``/``Offset``/``Width``/``Residual`` Gaussian parameters are shaped after a
Helios export (Width tracks Event_length, Center the total ion signal, Residual the
goodness of fit, worst for doublets); the real files used for calibration do not carry
them, so their scale is approximate.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .mass_panel import (
    BACKGROUND_SHAPE,
    BEAD_LEVELS,
    GAUSSIAN_CHANNELS,
    HUMAN_MASS_LABELS,
    background_means,
    get_mass_panel,
    mass_marker_table,
)
from .populations import tissue_profile
from .simulate import (
    FUNCTIONAL,
    SimulatedSample,
    _seed,
    acquisition,
    draw_stains,
    functional_rates,
    is_stimulated_condition,
    tube_composition,
)
from .truth import planted_rates

__all__ = ["BEAD_FRACTION", "MASS_CYTOMETER", "MASS_TIMESTEP", "simulate_mass"]

MASS_CYTOMETER = "Helios"
MASS_TIMESTEP = 0.001  # Time is in milliseconds (Helios files carry no $TIMESTEP)
MASS_RANGE = float(2**20)
BEAD_FRACTION = 0.03
EVENT_LENGTH_RANGE = (10, 75)  # the instrument's minimum and maximum event duration
# (median, sdlog) of a producing cell's stain, ion counts.
FUNCTIONAL_COUNTS = {"AREG": (70.0, 0.6), "IFN-g": (180.0, 0.6), "CD107a": (150.0, 0.6)}
# Ir191 counts of a nucleated singlet: CytoNorm's files have a median of 85-95 (p10 45-50,
# p90 130-145), Krieg et al.'s 60-68; Ir193 reads about twice Ir191 (170-190).
DNA_MEDIAN, DNA_SDLOG, IR193_PER_IR191 = 90.0, 0.2, 1.95
# per label: (DNA factor, DNA sdlog, Event_length median, Event_length sdlog)
_PHYSICAL = {
    "debris": (0.07, 1.0, 13.0, 0.3),
    "dead": (0.85, 0.35, 21.0, 0.25),
    "nonleukocyte": (1.35, 0.35, 30.0, 0.22),
    "granulocyte": (1.0, 0.2, 27.0, 0.2),
    "monocyte": (1.0, 0.2, 27.0, 0.2),
    "bead": (0.0, 0.0, 19.0, 0.12),
}
_LYMPHOCYTE = (1.0, 0.2, 24.0, 0.25)


def _physical_table() -> np.ndarray:
    rows = [_PHYSICAL.get(lab, _LYMPHOCYTE) for lab in HUMAN_MASS_LABELS]
    return np.array(rows, dtype=float)


def _singlets(rng, codes, tables, phys):
    """Expected stain counts, DNA, event length and functional truth of singlets."""
    n = codes.size
    stains, func = draw_stains(rng, codes, tables, FUNCTIONAL_COUNTS)
    size = np.exp(0.1 * rng.standard_normal(n))
    stains *= (size**1.6).astype(stains.dtype)[:, None]
    prm = phys[codes]
    dna = DNA_MEDIAN * prm[:, 0] * np.exp(prm[:, 1] * rng.standard_normal(n))
    length = prm[:, 2] * size**1.2 * np.exp(prm[:, 3] * rng.standard_normal(n))
    return stains, dna, length, func


def simulate_mass(
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
) -> SimulatedSample:
    """Simulate one mass-cytometry tube (parameters as :func:`simulate_sample`).

    Returns
    -------
    SimulatedSample
        ``technology="mass"``: ion counts (float32, >= 0) in the Helios column order
        ``Time, Event_length, <mass channels by mass>, Center, Offset, Width, Residual``;
        no spillover; truth labels of :data:`HUMAN_MASS_LABELS`.
    """
    panel = get_mass_panel(species)
    prof = tissue_profile(species, tissue)
    labels = HUMAN_MASS_LABELS
    n_cell_labels = len(labels) - 1
    # the same cell composition as the donor's flow tubes
    cells_p = tube_composition(panel, species, tissue, n_events=n_events, fmo=fmo, donor=donor,
                               nk_enrichment=nk_enrichment, ilc_boost=ilc_boost,
                               random_state=random_state)  # fmt: skip
    prob = np.append(cells_p * (1.0 - BEAD_FRACTION), BEAD_FRACTION)
    key = f"mass|{species}|{donor}|{tissue}|{timepoint}|{stimulation}|{fmo}|{ilc_boost}|{clog}"
    rng = np.random.default_rng(_seed(random_state, key))

    stim = is_stimulated_condition(stimulation)  # any named condition, as in flow mode
    p, med, sd = mass_marker_table(species, tissue, stimulated=stim)
    cell_rates = functional_rates(species, stimulation, areg_net if stim else None)
    rates = {m: np.append(r, 0.0) for m, r in cell_rates.items()}
    func_cols = [panel.column(m) for m in FUNCTIONAL]
    res_idx = [panel.column(m) for m in prof.residency]
    tr_mask = np.array([lab.endswith("_tr") for lab in labels])
    circ_cd69 = (np.array([lab.endswith("_circ") for lab in labels]), panel.column("CD69"))
    tables = (p, med, sd, None, rates, func_cols, res_idx, tr_mask, circ_cd69)
    phys = _physical_table()

    codes = rng.choice(len(labels), size=n_events, p=prob)
    stains, dna, length, func = _singlets(rng, codes, tables, phys)

    # doublets: two cells whose ion clouds merge into one event
    dbl = np.flatnonzero(codes == labels.index("doublet"))
    if dbl.size:
        single_p = prob.copy()
        single_p[[labels.index(x) for x in ("debris", "doublet", "bead")]] = 0.0
        single_p /= single_p.sum()
        pair = rng.choice(len(labels), size=2 * dbl.size, p=single_p)
        s2, d2, l2, f2 = _singlets(rng, pair, tables, phys)
        a, b = slice(0, dbl.size), slice(dbl.size, None)
        stains[dbl] = s2[a] + s2[b]
        dna[dbl] = d2[a] + d2[b]
        long, short = np.maximum(l2[a], l2[b]), np.minimum(l2[a], l2[b])
        length[dbl] = long + short * rng.uniform(0.4, 0.9, dbl.size)
        func[dbl] = f2[a] | f2[b]
        big = dbl[rng.random(dbl.size) < 0.1]  # larger aggregates (3-6 cells)
        k = rng.integers(3, 7, big.size) / 2.0
        stains[big] *= k.astype(stains.dtype)[:, None]
        dna[big] *= k
        length[big] *= 1.0 + 0.3 * k
    if fmo:
        stains[:, panel.column(fmo)] = 0.0

    # normalisation beads: the four EQ metals, no DNA, no antigen
    beads = np.flatnonzero(codes == labels.index("bead"))
    stains[beads] = 0.0
    for pnn, (m, s) in BEAD_LEVELS.items():
        j = panel.column(pnn)
        stains[beads, j] = m * np.exp(s * rng.standard_normal(beads.size))
    ir191 = panel.column("Ir191Di")
    ir193 = panel.column("Ir193Di")
    stains[:, ir191] = dna
    stains[:, ir193] = dna * IR193_PER_IR191 * np.exp(0.04 * rng.standard_normal(n_events))

    # a CyTOF acquires a quarter as many events per second as a flow cytometer
    gaps, anomaly, scale = acquisition(rng, n_events, 350.0 if tissue == "blood" else 250.0, clog)

    expected = stains.astype(float) @ panel.crosstalk()
    expected *= scale[:, None]
    # background: gamma-Poisson, so negative cells give exact zeros and small counts
    bg = background_means(panel)
    expected += rng.gamma(BACKGROUND_SHAPE, 1.0 / BACKGROUND_SHAPE, expected.shape) * bg
    counts = rng.poisson(expected).astype(float)
    total = counts.sum(axis=1)
    # Fluidigm randomisation: k >= 1 -> k - U(0, 1); zero stays zero
    counts -= (counts > 0) * rng.random(counts.shape)

    lo, hi = EVENT_LENGTH_RANGE
    event_length = np.clip(np.rint(length), lo, hi)
    is_dbl = np.zeros(n_events, dtype=bool)
    is_dbl[dbl] = True
    fit = np.where(is_dbl, 4.0, np.where(codes == labels.index("debris"), 2.7, 1.8))
    center = 0.3 * total * np.exp(0.12 * rng.standard_normal(n_events)) + 1.0
    gauss = np.column_stack(
        [
            center,
            3.0 + 0.05 * center * np.exp(0.3 * rng.standard_normal(n_events)),
            0.42 * event_length * np.exp(0.08 * rng.standard_normal(n_events)),
            fit * np.sqrt(center) * np.exp(0.25 * rng.standard_normal(n_events)),
        ]
    )
    time = np.cumsum(gaps) / MASS_TIMESTEP

    data = np.column_stack([time, event_length, counts, gauss]).astype(np.float32)
    truth = pd.DataFrame(
        {
            "label": pd.Categorical.from_codes(codes, categories=list(labels)),
            "AREG": func[:, 0],
            "IFN-g": func[:, 1],
            "CD107a": func[:, 2],
            "qc_anomaly": anomaly,
        }
    )
    planted = pd.DataFrame(
        planted_rates(species, prob[:n_cell_labels],
                      {m: cell_rates[m] for m in FUNCTIONAL}),
        columns=["population", "marker", "planted_percent"],
    )  # fmt: skip
    channels = ["Time", "Event_length", *panel.detectors, *GAUSSIAN_CHANNELS]
    pns = ["", "", *(c.pns for c in panel.channels), *("" for _ in GAUSSIAN_CHANNELS)]
    time_range = max(MASS_RANGE, float(2 ** int(np.ceil(np.log2(float(time[-1]) + 2.0)))))
    keywords = {
        "$CYT": MASS_CYTOMETER,
        "$COM": f"simulated by nkflow.datasets ({panel.name}, mass cytometry); not real data",
        "$SRC": f"{donor} {tissue}",
    }
    return SimulatedSample(
        data=data,
        channels=channels,
        markers=pns,
        spillover_channels=[],
        spillover=np.zeros((0, 0)),
        keywords=keywords,
        truth=truth,
        planted=planted,
        label_probabilities=pd.Series(prob, index=list(labels), name="probability"),
        ranges=[time_range] + [MASS_RANGE] * (len(channels) - 1),
        timestep=MASS_TIMESTEP,
        technology="mass",
    )
