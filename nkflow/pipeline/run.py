"""``run(input, out)``: a batch run's entry, which starts its workers first.

Kept light on purpose (the configuration and the executor only): ``run`` starts the
workers' imports (a fork server's on Linux, the spawned workers' elsewhere: about two
seconds of nkflow and its dependencies), and only then imports the stages
(:mod:`nkflow.pipeline.stages`), so that this process's import of the same libraries and
its checks of the batch overlap the workers' start instead of preceding it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import RunConfig
from ..parallel import SampleExecutor

if TYPE_CHECKING:
    from .plan import BatchPlan
    from .results import Results
    from .state import ProgressCallback

__all__ = ["default_out_dir", "run"]

#: The module of the per-sample tasks (``process_sample``): each worker imports it on start.
SAMPLE_TASKS_MODULE = "nkflow.pipeline.sample"


def default_out_dir(input_path: str | Path) -> Path:
    """Where results go when no output folder is given: ``<input>_nkflow`` beside the input.

    For a folder ``data/batch1`` that is ``data/batch1_nkflow``; for a sheet
    ``data/batch1/metadata.csv`` it is ``data/batch1/metadata_nkflow``.
    """
    p = Path(input_path)
    base = p.resolve()
    stem = base.name if base.is_dir() else base.stem
    return base.parent / f"{stem}_nkflow"


def run(
    input_path: str | Path,
    out_dir: str | Path | None = None,
    *,
    config: RunConfig | None = None,
    force: bool = False,
    resume: bool = False,
    on_progress: ProgressCallback | None = None,
    on_plan: Callable[[BatchPlan], None] | None = None,
    command: Sequence[str] | None = None,
) -> Results:
    """Run the whole pipeline on a batch and write tables, figures and the report.

    Parameters
    ----------
    input_path
        A folder of FCS files (with or without ``metadata.csv``) or a metadata sheet.
    out_dir
        Output folder; default :func:`default_out_dir`. Never overwritten silently.
    config
        Run configuration (:func:`nkflow.config.load_config`); defaults otherwise.
    force
        Replace an existing nkflow output folder.
    resume
        Keep finished samples of an existing output folder and redo only the rest.
    on_progress
        Called as ``on_progress(stage, done, total)``; the CLI draws progress bars.
    on_plan
        Called once with the batch's gating plan (:class:`~nkflow.pipeline.plan.BatchPlan`:
        the hierarchy each template applies to the panel) before any sample is processed.
    command
        The command that finishes this run if it is interrupted (the command line's own,
        ending in ``--resume``): recorded in the output folder, so that a command meeting
        the unfinished folder names it (:mod:`nkflow.pipeline.resume`).

    Returns
    -------
    Results
        Tables as DataFrames, the report path, and access to the gated events.

    Raises
    ------
    MetadataError, BatchConsistencyError
        Before any work, when the sheet or the batch cannot be used (e.g. it mixes mouse
        and human files while clustering or scoring, which pool the batch, is on).
    PanelMismatchError
        Before any work, when no file of the batch can be gated: no NK anchor for the
        template, no species in the sheet or the file's panel, a sheet species the
        file's markers contradict, raw spectral data, already transformed data. A
        file that cannot be gated beside others that can fails alone (its status row).
    OutputExistsError
        When ``out_dir`` exists and neither ``force`` nor ``resume`` is given, when
        ``force`` would delete an input, or when ``resume`` meets a folder whose run had
        other inputs (not one file of this run, by name and content).
    OutputFolderError
        When the output folder cannot be used or written: another run holds it, it holds
        symbolic links (``resume``), no space, read-only, no permission. A sample whose
        own products cannot be written fails alone (its status row says why).
    SchedulerError
        Before the output folder is made, when ``config.execution.scheduler`` names a Dask
        scheduler that cannot be reached.
    """
    cfg = config or RunConfig()
    out = Path(out_dir) if out_dir is not None else default_out_dir(input_path)
    executor = SampleExecutor(workers=cfg.execution.workers, scheduler=cfg.execution.scheduler)
    # the workers import nkflow (~2 s) while this process imports the stages and checks the
    # sheet, the batch and the output folder (no-op in process and on Dask)
    executor.start([SAMPLE_TASKS_MODULE])
    with executor.before_tasks():
        from .stages import prepare_batch, run_prepared

        state, consistency = prepare_batch(
            input_path, out, cfg, force=force, resume=resume,
            on_progress=on_progress, on_plan=on_plan, executor=executor,
        )  # fmt: skip
    try:
        from .resume import resume_notes, write_run_record

        files = dict(zip(state.meta["file"], state.meta["path"], strict=True))
        write_run_record(state.folder.root, state.input_path, files, cfg, command)
        results = run_prepared(state, cfg, resume, consistency, executor)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM as the command line raises it
        # stop the workers at once, not after their sample: every write is atomic
        executor.close(wait=False)
        raise
    else:
        if resume:  # how much of the earlier run it reused, which settings differ
            notes = resume_notes(state.folder.previous, cfg, state.reused, state.analysed)
            results.notes[:0] = notes
        return results
    finally:
        executor.close()  # waits for the workers, which exit in the background once the stages end
        state.folder.release()
