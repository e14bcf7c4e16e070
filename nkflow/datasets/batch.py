"""Write a simulated batch: FCS files, the metadata sheet and per-event truth."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pandas as pd

from ..exceptions import ConfigError
from ..io.fcs_write import write_fcs
from ..io.write import write_bytes_atomic, write_text_atomic
from .design import CONTEXT_FIELDS, Design, Tube, make_design
from .simulate import SimulatedSample, simulate_sample

__all__ = ["METADATA_COLUMNS", "simulate_batch", "simulate_tube", "write_sample"]

logger = logging.getLogger(__name__)

METADATA_COLUMNS = (
    "file", "sample_id", "donor", "tissue", "timepoint", "stimulation", "role", "species",
    "batch",
)  # fmt: skip
_START_SECONDS = 9 * 3600  # first tube acquired at 09:00:00
_TUBE_GAP = 150  # seconds between acquisitions


def _hms(seconds: float) -> str:
    s = int(seconds) % 86400
    return f"{s // 3600:02d}:{(s % 3600) // 60:02d}:{s % 60:02d}"


def simulate_tube(design: Design, tube: Tube, *, random_state: int = 0) -> SimulatedSample:
    """Simulate one tube of ``design`` (planted AREG from the design's rules)."""
    return simulate_sample(
        design.species,
        tube.tissue,
        stimulation=tube.stimulation,
        n_events=tube.n_events,
        fmo=tube.fmo,
        areg_net=design.areg_net(tube),
        donor=tube.donor,
        timepoint=tube.timepoint,
        nk_enrichment=tube.nk_enrichment,
        ilc_boost=tube.ilc_boost,
        clog=tube.clog,
        random_state=random_state,
        technology=design.technology,
    )


def write_sample(
    sample: SimulatedSample, path: str | Path, *, keywords: dict[str, str] | None = None
) -> Path:
    """Write a simulated sample as FCS 3.1 (raw events, ``$SPILLOVER`` attached if any).

    Parameters
    ----------
    sample
        From :func:`nkflow.datasets.simulate_sample`.
    path
        Destination ``.fcs`` file.
    keywords
        Extra keywords (``$DATE``, ``$BTIM``, ...) added to the sample's own.

    Returns
    -------
    Path
        The file written.
    """
    dest = Path(path)
    kw = {**sample.keywords, "$FIL": dest.name, **(keywords or {})}
    return write_fcs(
        dest,
        sample.data,
        sample.channels,
        markers=sample.markers,
        keywords=kw,
        spillover=(
            (sample.spillover_channels, sample.spillover) if sample.spillover_channels else None
        ),
        ranges=sample.ranges,
    )


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False, engine="pyarrow", compression="zstd")
    return buf.getvalue()


def simulate_batch(
    out_dir: str | Path,
    *,
    species: str = "human",
    design: Design | None = None,
    n_events: int = 50_000,
    random_state: int = 0,
    technology: str | None = None,
) -> Path:
    """Simulate a batch and write it to ``out_dir``.

    Writes ``<sample_id>.fcs`` per tube, ``metadata.csv`` (docs/contracts.md columns),
    ``truth/<sample_id>.parquet`` (per-event label and functional truth) and
    ``truth/planted.csv``. The same arguments give byte-identical files.

    Parameters
    ----------
    out_dir
        Destination folder (created).
    species
        ``"human"`` or ``"mouse"``; ignored when ``design`` is given.
    design
        Tubes and planted AREG; default :func:`nkflow.datasets.make_design` with
        ``n_events`` per tube.
    n_events
        Events per tube of the default design.
    random_state
        Seed.
    technology
        ``"flow"`` (default) or ``"mass"`` (Helios-like CyTOF files, human only). With a
        ``design``, ``None`` takes the design's technology; a different value is an error.

    Returns
    -------
    Path
        The metadata sheet written.

    Raises
    ------
    ConfigError
        ``technology`` differs from the ``design``'s, or the design asks for something the
        species' panel does not have (unknown species, tissue or FMO marker).
    """
    out = Path(out_dir)
    if design is None:
        design = make_design(species, n_events=n_events, technology=technology or "flow")
    elif technology is not None and technology != design.technology:
        raise ConfigError(
            f"technology {technology!r} differs from the design's {design.technology!r}; "
            f"build the design with make_design(..., technology={technology!r})"
        )
    rows = []
    planted = []
    clock = float(_START_SECONDS)
    for tube in design.tubes:
        sample = simulate_tube(design, tube, random_state=random_state)
        time = sample.data[-1, sample.channels.index("Time")] if len(sample.data) else 0.0
        duration = float(time) * sample.timestep
        fname = f"{tube.sample_id}.fcs"
        write_sample(
            sample,
            out / fname,
            keywords={
                "$DATE": design.date,
                "$CYT": design.cytometer or sample.keywords["$CYT"],
                "$BTIM": _hms(clock),
                "$ETIM": _hms(clock + duration),
                "TUBE NAME": tube.sample_id,
                "EXPERIMENT NAME": f"nkflow simulated batch {design.batch}",
            },
        )
        clock += duration + _TUBE_GAP
        write_bytes_atomic(out / "truth" / f"{tube.sample_id}.parquet",
                           _parquet_bytes(sample.truth))  # fmt: skip
        planted.append(sample.planted.assign(sample_id=tube.sample_id))
        rows.append(
            {
                "file": fname,
                "sample_id": tube.sample_id,
                "donor": tube.donor,
                "tissue": tube.tissue,
                "timepoint": tube.timepoint,
                "stimulation": tube.stimulation,
                "role": tube.role,
                "species": design.species,
                "batch": design.batch,
                **{name: getattr(tube, name) for name in CONTEXT_FIELDS},
            }
        )
        logger.info("simulated %s (%d events)", fname, tube.n_events)
    table = pd.concat(planted, ignore_index=True)[
        ["sample_id", "population", "marker", "planted_percent"]
    ]
    write_text_atomic(
        out / "truth" / "planted.csv",
        table.to_csv(index=False, lineterminator="\n", float_format="%.6g"),
    )
    # the optional context columns only when the design records any context
    has_context = any(getattr(t, n) for t in design.tubes for n in CONTEXT_FIELDS)
    columns = [*METADATA_COLUMNS, *(CONTEXT_FIELDS if has_context else ())]
    meta = pd.DataFrame(rows, columns=columns)
    return write_text_atomic(out / "metadata.csv", meta.to_csv(index=False, lineterminator="\n"))
