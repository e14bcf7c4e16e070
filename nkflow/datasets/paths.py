"""The committed sample batches: where they are and how to regenerate them exactly."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ..exceptions import ConfigError
from ..io.write import write_text_atomic
from .batch import simulate_batch
from .design import Design, default_areg_rules, make_design
from .panels import get_panel

__all__ = ["SAMPLE_DATA_SEED", "make_sample_data", "sample_data_design", "sample_data_dir"]

SAMPLE_DATA_SEED = 20240312
ENV_VAR = "NKFLOW_SAMPLE_DATA"


def sample_data_design(species: str = "human") -> Design:
    """The design of the committed sample batch of ``species``.

    Human (batch ``H1``): 2 donors x (blood, liver) x (pre, post) x (unstim, stim),
    FMOs for CD69, CD103, CD49a, CXCR6, AREG and IFN-g per tissue, one ILC positive
    control and one tube with a clog, then an IL-15 condition for blood before treatment
    (CD56bright-enriched AREG: CD56bright 6 %, CD56dim 1.5 % net) and sample context:
    blood / normal tissue (liver), no glucocorticoid before treatment, and donor D2
    glucocorticoid-exposed after it (chemotherapy + dexamethasone). Mouse (batch ``M1``):
    2 mice x (liver, spleen) x (unstim, stim), FMOs for CD69, CD103, CD49a, AREG and IFN-g
    per tissue, one ILC positive control. Cells are NK-enriched (partial magnetic
    depletion of non-NK cells) so that small files still hold enough NK events.

    Parameters
    ----------
    species
        ``"human"`` or ``"mouse"``.

    Returns
    -------
    Design
        The design :func:`make_sample_data` simulates (with seed ``SAMPLE_DATA_SEED``).

    Raises
    ------
    ConfigError
        ``species`` is neither ``"human"`` nor ``"mouse"``.
    """
    get_panel(species)
    if species == "human":
        return make_design(
            "human",
            donors=("D1", "D2"),
            tissues=("blood", "liver"),
            timepoints=("pre", "post"),
            n_events=9_000,
            fmo_events=5_000,
            nk_enrichment=3.0,
            batch="H1",
            conditions=("IL-15",),
            condition_tissues=("blood",),
            condition_timepoints=("pre",),
            areg_rules=(
                *default_areg_rules("human"),
                ("IL-15", "*", "blood", "*", "NK_CD56bright_circ", 6.0),
                ("IL-15", "*", "blood", "*", "NK_CD56dim_circ", 1.5),
            ),
            context=(
                ("*", "blood", "*", "tissue_kind", "blood"),
                ("*", "liver", "*", "tissue_kind", "normal tissue"),
                ("*", "*", "*", "glucocorticoid", "no"),
                ("*", "*", "post", "treatment", "chemotherapy"),
                ("D2", "*", "post", "glucocorticoid", "yes"),
                ("D2", "*", "post", "treatment", "chemotherapy + dexamethasone"),
            ),
        )
    return make_design(
        "mouse",
        donors=("M1", "M2"),
        tissues=("liver", "spleen"),
        timepoints=("",),
        n_events=4_000,
        fmo_events=2_000,
        nk_enrichment=8.0,
        clog=False,
        batch="M1",
    )


def make_sample_data(out_dir: str | Path, *, species: tuple[str, ...] = ("human", "mouse")) -> Path:
    """Regenerate ``sample_data/`` (one sub-folder per species).

    Byte for byte on the same numpy/BLAS build; across builds, event values may differ
    by float32 rounding (a few units in the last place), sheets and truth not at all.

    Also writes ``out_dir/metadata.csv``, the human sheet with paths into ``human/``, so
    that ``nkflow run sample_data/`` analyses the human batch.

    Parameters
    ----------
    out_dir
        Destination folder, e.g. the repository's ``sample_data``.
    species
        Which batches to write.

    Returns
    -------
    Path
        ``out_dir``.
    """
    out = Path(out_dir)
    for sp in species:
        sheet = simulate_batch(
            out / sp, design=sample_data_design(sp), random_state=SAMPLE_DATA_SEED
        )
        if sp == "human":
            # a top-level sheet pointing into human/, so `nkflow run sample_data/` runs the
            # human batch (paths in a sheet are relative to the sheet)
            meta = pd.read_csv(sheet, dtype=str, keep_default_na=False)
            meta["file"] = f"{sp}/" + meta["file"]
            write_text_atomic(out / "metadata.csv", meta.to_csv(index=False, lineterminator="\n"))
    return out


def sample_data_dir(species: str = "human") -> Path:
    """Folder of the committed sample batch of ``species`` (holds ``metadata.csv``).

    Looks in ``$NKFLOW_SAMPLE_DATA``, then in the source checkout this package was
    imported from. A wheel does not carry the sample files (23 MB): after ``pip install
    nkflow``, write them with :func:`make_sample_data` and point ``$NKFLOW_SAMPLE_DATA`` at
    the folder, or pass that folder's ``human``/``mouse`` subfolder directly.

    Parameters
    ----------
    species
        ``"human"`` or ``"mouse"``: the subfolder of the sample data.

    Returns
    -------
    Path
        The first ``<location>/<species>`` that holds a ``metadata.csv``.

    Raises
    ------
    ConfigError
        When no copy is found (the locations tried are listed), or ``species`` is neither
        ``"human"`` nor ``"mouse"``.
    """
    get_panel(species)
    here = Path(__file__).resolve()
    candidates = []
    if os.environ.get(ENV_VAR):
        candidates.append(Path(os.environ[ENV_VAR]))
    candidates.append(here.parents[2] / "sample_data")
    for base in candidates:
        folder = base / species
        if (folder / "metadata.csv").is_file():
            return folder
    tried = ", ".join(str(c / species) for c in candidates)
    raise ConfigError(
        f"no {species} sample data found; tried {tried}. An installed nkflow does not carry "
        "the sample files: write them with nkflow.datasets.make_sample_data(folder) and set "
        f"{ENV_VAR}=folder (or use that folder's {species}/ directly)"
    )
