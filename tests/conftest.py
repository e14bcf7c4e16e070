"""Shared pytest fixtures: paths anchored to this file, never to the working directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: ../shared/external beside the checkout; NKFLOW_EXTERNAL points elsewhere (a git worktree
#: outside the project folder)
EXTERNAL = Path(os.environ.get("NKFLOW_EXTERNAL") or REPO.parent / "shared" / "external")
SAMPLE_DATA = REPO / "sample_data"
FCS_SUFFIXES = (".fcs", ".lmd")
#: 68983.fcs (FlowSOM's example file) channels the FlowSOM vignette clusters on
#: (colsToUse = c(9, 12, 14:18)), the marker set the clustering tests compare with flowsom on
FLOWSOM_VIGNETTE_CHANNELS = [
    "Pacific Blue-A",  # CD8
    "APC-A",  # TCRgd
    "APC-Cy7-A",  # TCRb
    "PE-A",  # NK1.1
    "PE-Texas Red-A",  # CD4
    "PE-Cy5-A",  # CD19
    "PE-Cy7-A",  # CD3
]


def _is_fcs(path: Path) -> bool:
    """Every file named like FCS, and every file that starts like one (.B08, .001 ...)."""
    if path.suffix.lower() in FCS_SUFFIXES:
        return True
    with open(path, "rb") as fh:
        return fh.read(3) == b"FCS"


#: Every FCS/LMD file of ../shared/external, relative to it (empty when it is absent).
EXTERNAL_FCS_FILES = (
    sorted(str(p.relative_to(EXTERNAL)) for p in EXTERNAL.rglob("*") if p.is_file() and _is_fcs(p))
    if EXTERNAL.is_dir()
    else []
)


@pytest.fixture(autouse=True)
def _restore_logging():
    """The CLI configures logging for its process; in-process CLI tests must not leak it
    (a leaked ERROR level on the ``nkflow`` logger hides warnings from ``caplog``)."""
    import logging

    saved = {
        name: (logging.getLogger(name).level, list(logging.getLogger(name).handlers))
        for name in ("nkflow", "py.warnings")
    }
    yield
    logging.captureWarnings(False)
    for name, (level, handlers) in saved.items():
        logging.getLogger(name).setLevel(level)
        logging.getLogger(name).handlers[:] = handlers


@pytest.fixture(scope="session")
def external() -> Path:
    """The folder of real public FCS files (skips when it is not beside the checkout)."""
    if not EXTERNAL.is_dir():
        pytest.skip(f"external test data not found at {EXTERNAL}")
    return EXTERNAL


@pytest.fixture(scope="session")
def sample_data() -> Path:
    """The committed sample batch."""
    return SAMPLE_DATA


@pytest.fixture(scope="session")
def gated_liver(sample_data: Path):
    """``(container, populations table)``: a sample-data liver tube read, compensated,
    transformed and gated with ``human_tissue`` (no bootstrap). Do not modify it."""
    import warnings

    import nkflow as nk

    adata = nk.read_fcs(sample_data / "human" / "D1_liver_pre_unstim.fcs")
    nk.pp.compensate(adata)
    nk.pp.transform(adata)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = nk.gating.gate(adata, "human_tissue", n_boot=0)
    return adata, table


@pytest.fixture(scope="session")
def tiny_batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small simulated human batch: one donor, blood + liver, pre only, unstim + stim,
    AREG and CD69 FMOs per tissue, a positive control and a clogged file."""
    from nkflow.datasets import make_design, simulate_batch

    folder = tmp_path_factory.mktemp("tiny_batch")
    design = make_design(
        "human",
        donors=("D1",),
        tissues=("blood", "liver"),
        timepoints=("pre",),
        n_events=12_000,
        fmo_events=6_000,
        nk_enrichment=3.0,
        fmo_markers=("AREG", "CD69"),
    )
    simulate_batch(folder, design=design, random_state=3)
    return folder


@pytest.fixture(scope="session")
def fast_config():
    """A run configuration that keeps tests quick (few bootstrap draws, small SOM)."""
    from nkflow.config import RunConfig, replace_values

    return replace_values(
        RunConfig(),
        {
            "gating.bootstrap": 20,
            "clustering.xdim": 5,
            "clustering.ydim": 5,
            "clustering.n_metaclusters": 5,
            "clustering.per_sample_cap": 3000,
        },
    )


@pytest.fixture(scope="session")
def tiny_run(tiny_batch: Path, fast_config, tmp_path_factory: pytest.TempPathFactory):
    """A clean pipeline run of ``tiny_batch`` (the reference for resume and determinism)."""
    from nkflow.pipeline import run

    return run(tiny_batch, tmp_path_factory.mktemp("runs") / "out", config=fast_config)


@pytest.fixture
def container():
    """A 50-event container with two scatter channels (FSC-H, SSC-H) for XML gate tests."""
    import anndata as ad
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 100, size=(50, 2)).astype(np.float32)
    var = pd.DataFrame(
        {"marker": ["", ""], "pns": ["", ""], "kind": "scatter", "range": 1024.0, "transform": ""},
        index=["FSC-H", "SSC-H"],
    )
    return ad.AnnData(X=x, var=var, uns={"nkflow": {"sample": {"sample_id": "s1"}}})


@pytest.fixture
def summed_channels(tmp_path: Path):
    """A function that rewrites a compensated container as a panel with two markers in one
    channel (a lineage dump, a clinical CD16+56 channel) and reads it back.

    ``make(adata, into, added, label, blank=())``: channel of marker ``into`` holds its
    linear values plus those of ``added`` and is labelled ``label``; ``added`` and every
    marker in ``blank`` lose their labels. Returns the new file read by ``read_fcs``.
    """
    import numpy as np

    from nkflow import io

    def make(adata, into: str, added: str, label: str, blank: tuple[str, ...] = ()):
        names, labels = list(adata.var_names), list(adata.var["pns"])
        target, extra = (names.index(io.channel_for(adata, m)) for m in (into, added))
        events = np.asarray(adata.X, dtype=np.float64)
        events[:, target] += events[:, extra]
        labels[target], labels[extra] = label, ""
        for marker in blank:
            if marker in set(adata.var["marker"]):
                labels[names.index(io.channel_for(adata, marker))] = ""
        path = io.write_fcs(tmp_path / f"{into}_{added}.fcs", events.astype(np.float32), names,
                            markers=labels, ranges=list(adata.var["range"]))  # fmt: skip
        return io.read_fcs(path)

    return make


def as_transformed_export(source: Path, dest: Path) -> Path:
    """Rewrite an FCS file as flowCore writes one after ``compensate()`` + ``transform()``.

    Fluorescence channels become arcsinh(x / 150) (a few units, like flowCore's logicle
    with M = 4.5); the TEXT gains ``TRANSFORMATION = custom`` and ``FLOWCORE_$PnRMAX/MIN``
    (the transformed range there, ``$PnR`` elsewhere); channels, markers, ``$PnR`` and
    the spillover are kept, as flowCore keeps them.
    """
    import warnings

    import numpy as np

    from nkflow import io

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        adata = io.read_fcs(source)
    x = np.asarray(adata.X, dtype=np.float64)
    ranges = [float(r) for r in adata.var["range"]]
    keywords = {"TRANSFORMATION": "custom", "$CYT": "LSRII"}
    for j, kind in enumerate(adata.var["kind"]):
        top = ranges[j]
        if kind == "fluorescence":
            x[:, j] = np.arcsinh(x[:, j] / 150.0)
            top = float(np.arcsinh(ranges[j] / 150.0))
        keywords[f"flowCore_$P{j + 1}Rmax"] = f"{top:g}"
        keywords[f"flowCore_$P{j + 1}Rmin"] = "0"
    spill = adata.uns["nkflow"].get("spillover")
    io.write_fcs(
        dest,
        x.astype(np.float32),
        list(adata.var_names),
        markers=list(adata.var["pns"]),
        keywords=keywords,
        spillover=(spill["channels"], np.asarray(spill["matrix"])) if spill else None,
        ranges=ranges,
    )
    return dest


@pytest.fixture
def transformed_export(tmp_path: Path) -> Path:
    """A 50-event flowCore-style export (compensated, then arcsinh-transformed; SPILL kept)."""
    import numpy as np

    from nkflow import io

    data = np.random.default_rng(0).normal(1000, 300, (50, 4)).astype(np.float32)
    spill = (["FL1-A", "FL2-A"], np.array([[1.0, 0.2], [0.05, 1.0]]))
    raw = io.write_fcs(tmp_path / "raw.fcs", data, ["FSC-A", "FL1-A", "FL2-A", "Time"],
                       markers=[None, "CD56", "CD16", None], spillover=spill)  # fmt: skip
    return as_transformed_export(raw, tmp_path / "flowcore_export.fcs")


def _tcell_template_text(
    marker: str, *, rule: str = "valley", pool: bool = False, bootstrap: int | None = None,
    name: str | None = None, min_events: int = 50, alternatives: tuple[str, ...] = (),
    anchor_gate: bool = True,
) -> str:  # fmt: skip
    """A two-gate T-cell template (CD3+ T, then ``T_<marker>+``) as TOML text."""
    lines = [
        "[template]", f'name = "{name or "t_" + marker}"', 'version = "1"', 'species = "human"',
        'anchor = "CD3"', *(['anchor_gate = "T"'] if anchor_gate else []), "[manifest]",
        f'required_markers = ["CD3", "{marker}"]', f'terminal_populations = ["T_{marker}+"]',
        f"min_events = {min_events}",
    ]  # fmt: skip
    if bootstrap is not None:
        lines += ["[defaults]", f"bootstrap = {bootstrap}"]
    lines += [
        "[[gates]]", 'id = "T"', 'kind = "threshold"', 'marker = "CD3"', 'side = "pos"',
        'rule = "valley"', "[[gates]]", f'id = "T_{marker}+"', 'parent = "T"',
        'kind = "threshold"', f'marker = "{marker}"', 'side = "pos"', f'rule = "{rule}"',
    ]  # fmt: skip
    if pool:
        lines.append("pool = true")
    if alternatives:
        lines.append(
            "alternatives = [" + ", ".join(f'{{ marker = "{m}" }}' for m in alternatives) + "]"
        )
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="session")
def tcell_template():
    """A function writing a two-gate T-cell template (CD3+ T, then ``T_<marker>+``).

    ``make(folder, marker, *, rule="valley", pool=False, bootstrap=None, name=None,
    min_events=50, alternatives=(), anchor_gate=True)`` writes ``<folder>/<name>.toml``
    (the name defaults to ``t_<marker>``) and returns its path. The manifest requires CD3
    and ``marker``.
    """

    def make(folder: Path, marker: str, **options) -> Path:
        text = _tcell_template_text(marker, **options)
        path = Path(folder) / f"{options.get('name') or 't_' + marker}.toml"
        path.write_text(text)
        return path

    return make
