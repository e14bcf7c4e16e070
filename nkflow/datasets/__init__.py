"""Simulated NK-cell flow cytometry batches with ground truth, and the committed sample data.

- :func:`simulate_sample` simulates one tube in memory (events, keywords, truth), as
  conventional flow cytometry (``technology="flow"``) or mass cytometry (``"mass"``:
  Helios-like ion counts, DNA, cisplatin, event length, beads; human panel nkflow-HM18);
- :func:`simulate_batch` writes FCS 3.1 files, ``metadata.csv`` and ``truth/``;
- :func:`make_design` builds donors x tissues x timepoints x (unstim, stim) + controls;
- :func:`truth_membership` turns leaf labels into gate memberships for scoring gating;
- :func:`sample_data_dir` and :func:`make_sample_data` locate and regenerate
  ``sample_data/``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import attach

if TYPE_CHECKING:  # at run time each module loads on first use (nkflow._lazy)
    from .batch import simulate_batch, write_sample
    from .design import Design, Tube, default_areg_rules, make_design
    from .mass_panel import HUMAN_MASS_LABELS, MassChannel, MassPanel, get_mass_panel
    from .panels import Panel, get_panel
    from .paths import make_sample_data, sample_data_design, sample_data_dir
    from .populations import labels_for
    from .simulate import TECHNOLOGIES, SimulatedSample, functional_rates, simulate_sample
    from .truth import population_leaves, population_names, truth_membership

__all__ = [
    "HUMAN_MASS_LABELS",
    "TECHNOLOGIES",
    "Design",
    "MassChannel",
    "MassPanel",
    "Panel",
    "SimulatedSample",
    "Tube",
    "default_areg_rules",
    "functional_rates",
    "get_mass_panel",
    "get_panel",
    "labels_for",
    "make_design",
    "make_sample_data",
    "population_leaves",
    "population_names",
    "sample_data_design",
    "sample_data_dir",
    "simulate_batch",
    "simulate_sample",
    "truth_membership",
    "write_sample",
]

__getattr__, __dir__ = attach(
    __name__,
    {
        "batch": ["simulate_batch", "write_sample"],
        "design": ["Design", "Tube", "default_areg_rules", "make_design"],
        "mass_panel": ["HUMAN_MASS_LABELS", "MassChannel", "MassPanel", "get_mass_panel"],
        "panels": ["Panel", "get_panel"],
        "paths": ["make_sample_data", "sample_data_design", "sample_data_dir"],
        "populations": ["labels_for"],
        "simulate": ["TECHNOLOGIES", "SimulatedSample", "functional_rates", "simulate_sample"],
        "truth": ["population_leaves", "population_names", "truth_membership"],
    },
)
