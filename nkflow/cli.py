"""The ``nkflow`` command line: parse arguments, build a config, make one library call.

Exit codes: 0 when every input succeeded, 1 when some inputs failed (each failure is
printed as one line naming the file and the reason; the other inputs go on), 2 for
usage errors (bad options, bad config, unknown template, an output folder that may not
be used), 3 when the environment stops the run (no space left, read-only file system,
no permission, another run holding the output folder, links inside it, a Dask scheduler
that cannot be reached), 130 when interrupted (Ctrl-C) and 143 when stopped by SIGTERM
(``kill``, a scheduler's time limit): ``nkflow run`` names the ``--resume`` command that
finishes it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from ._cli_stop import interrupt_exit_code, resume_command, shown, sigterm_interrupts
from ._console import ProgressBars, ProgressLines, setup_logging
from ._version import __version__
from .exceptions import (
    ConfigError,
    GatingTemplateError,
    NkflowError,
    OutputExistsError,
    OutputFolderError,
    PanelMismatchError,
    SchedulerError,
)
from .io.text_safety import escape_frame, escape_text

EXIT_OK, EXIT_FAILED_INPUTS, EXIT_USAGE, EXIT_ENVIRONMENT = 0, 1, 2, 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports it (143 for SIGTERM)


def _one_line(text: object) -> str:
    r"""Untrusted text (file names, sheet values, messages quoting them) safe on one line.

    Controls, ANSI escapes and bidi overrides print as visible escapes (``\n``,
    ``\x1b``), so a crafted file name can neither split a line nor repaint the terminal;
    an error's list of problems is joined with ``"; "``.
    """
    problems = getattr(text, "problems", None)
    if isinstance(text, Exception) and isinstance(problems, list) and problems:
        return f"{len(problems)} problem(s): " + "; ".join(escape_text(p) for p in problems)
    return escape_text(text)


def _fail_line(path: object, reason: object) -> None:
    shown, text = escape_text(path), _one_line(reason)
    head, sep, rest = text.partition(": ")
    if sep and (head == shown or head.endswith(("/" + shown, "\\" + shown))):
        shown, text = head, rest  # the error names its file already (its full path)
    click.echo(f"nkflow: FAILED {shown}: {text}", err=True)


def _usage_error(message: object) -> None:
    click.echo(f"nkflow: error: {_one_line(message)}", err=True)
    sys.exit(EXIT_USAGE)


def _interrupted(exc: BaseException, finish: str = "") -> None:
    """Ctrl-C or SIGTERM: say how to finish the run and exit 128 + the signal, no traceback."""
    how = f"; finish with `{escape_text(finish)}`" if finish else ""
    click.echo(f"\nnkflow: interrupted{how}", err=True)
    sys.exit(interrupt_exit_code(exc))


def _environment_error(exc: OSError) -> None:
    click.echo(f"nkflow: error: {_one_line(exc)}", err=True)
    sys.exit(EXIT_ENVIRONMENT)


verbose_option = click.option(
    "-v", "--verbose", count=True, help="More log output: -v warnings, -vv info, -vvv debug."
)
quiet_option = click.option("-q", "--quiet", is_flag=True, help="Only errors; no progress bars.")
compensation_option = click.option(
    "--compensation",
    metavar="file|none|PATH",
    help="Spillover: 'file' (each file's own, by its technology), 'none', or a matrix file.",
)
transform_option = click.option(
    "--transform",
    "transform_method",
    type=click.Choice(["auto", "logicle", "arcsinh"]),
    help="Transform: 'auto' (arcsinh/5 for mass cytometry, logicle otherwise), or force one.",
)
workers_option = click.option(
    "--workers", type=click.IntRange(min=0), help="Local worker processes (0 = one per core)."
)
bootstrap_option = click.option(
    "--bootstrap",
    type=click.IntRange(min=0),
    help="Bootstrap redraws for each density threshold's 95% interval (200 unless the config "
    "says otherwise). 0 skips every threshold interval (a batch of 200k-event tubes runs "
    "~25% faster), but batch thresholds are then not checked against each sample's own valley.",
)


overrides_option = click.option(
    "--overrides",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Manual threshold overrides (TOML); see `nkflow thresholds OUT`.",
)


def _compensation_value(value: str | None) -> str | None:
    """``--compensation`` checked: 'file', 'none' or an existing matrix file."""
    if value is None or value in ("file", "none"):
        return value
    if not Path(value).is_file():
        _usage_error(f"--compensation {value!r}: neither 'file', 'none' nor a matrix file")
    return str(Path(value))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nkflow")
def main() -> None:
    """nkflow: NK-cell repair phenotypes from flow cytometry batches."""


@main.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, path_type=Path))
@click.option(
    "-o",
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Output folder (default: INPUT's name + '_nkflow', next to INPUT).",
)
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="Run config TOML.")
@click.option("--template", help="Gating template name or file (default: by species and tissue).")
@click.option("--panel", type=click.Path(path_type=Path), help="Panel file: channel -> marker.")
@workers_option
@click.option("--scheduler", help="Address of a Dask scheduler to run samples on.")
@click.option("--random-state", type=int, help="Seed for every random step.")
@click.option("--no-cluster", is_flag=True, help="Skip clustering.")
@click.option("--no-score", is_flag=True, help="Skip repair scoring.")
@click.option("--force", is_flag=True, help="Replace an existing output folder.")
@click.option("--resume", is_flag=True, help="Redo only samples missing or failed in OUT.")
@overrides_option
@compensation_option
@transform_option
@bootstrap_option
@verbose_option
@quiet_option
def run(
    input_path: Path,
    out: Path | None,
    config_path: Path | None,
    template: str | None,
    panel: Path | None,
    workers: int | None,
    scheduler: str | None,
    random_state: int | None,
    no_cluster: bool,
    no_score: bool,
    force: bool,
    resume: bool,
    overrides: Path | None,
    compensation: str | None,
    transform_method: str | None,
    bootstrap: int | None,
    verbose: int,
    quiet: bool,
) -> None:
    """Run the whole pipeline on a folder of FCS files, a metadata sheet (CSV) or one FCS file."""
    setup_logging(verbose, quiet)
    from .config import load_config, replace_values
    from .pipeline import default_out_dir
    from .pipeline import run as run_pipeline

    if force and resume:
        _usage_error("--force and --resume exclude each other")
    try:
        config = load_config(config_path)
        config = replace_values(
            config,
            {
                "gating.template": template,
                "panel": str(panel) if panel else None,
                "execution.workers": workers,
                "execution.scheduler": scheduler,
                "execution.random_state": random_state,
                "clustering.enabled": False if no_cluster else None,
                "scoring.enabled": False if no_score else None,
                "compensation.matrix": _compensation_value(compensation),
                "transform.method": transform_method,
                "gating.bootstrap": bootstrap,
                "gating.overrides": str(overrides.resolve()) if overrides else None,
            },
        )
    except ConfigError as exc:
        _usage_error(str(exc))
    _validate_panel(config.panel)
    _validate_overrides(config.gating.overrides)
    out_dir = out if out is not None else default_out_dir(input_path)
    # bars redraw with carriage returns: only on a terminal; into a log file, a pipe or a
    # scheduler's output, a plain line per stage and now and then (nothing under -q)
    progress: ProgressBars | ProgressLines | None = None
    if not quiet:
        progress = ProgressBars() if sys.stderr.isatty() else ProgressLines()
    finish = resume_command(click.get_current_context(), out_dir)  # the folder records it
    try:
        with sigterm_interrupts():
            results = run_pipeline(
                input_path,
                out_dir,
                config=config,
                force=force,
                resume=resume,
                on_progress=progress,
                on_plan=None if quiet else _print_plan,
                command=finish,
            )
    except KeyboardInterrupt as exc:  # SIGTERM too (sigterm_interrupts)
        if progress is not None:
            progress.close()
        _interrupted(exc, shown(finish))
    except PanelMismatchError as exc:
        if progress is not None:
            progress.close()
        _fail_line(input_path, exc)
        sys.exit(EXIT_FAILED_INPUTS)
    except (ConfigError, GatingTemplateError, OutputExistsError) as exc:
        _usage_error(str(exc))
    except (OutputFolderError, SchedulerError) as exc:
        _environment_error(exc)
    except NkflowError as exc:
        _fail_line(input_path, exc)
        sys.exit(EXIT_FAILED_INPUTS)
    finally:
        if progress is not None:
            progress.close()
    for failure in results.failures:
        _fail_line(failure["file"], failure["message"])
    if not quiet:
        for note in results.notes:  # e.g. clustering skipped, with why
            click.echo(f"nkflow: note: {_one_line(note)}", err=True)
        click.echo(
            f"nkflow: results in {escape_text(results.out_dir)} "
            f"(report: {escape_text(results.report_path)})",
            err=True,
        )
    sys.exit(_exit_code(results.failures))


def _exit_code(failures: Sequence[dict[str, Any]]) -> int:
    """0, 1 (some inputs failed) or 3 (outputs could not be written: the environment)."""
    if any(f.get("reason_code") == "OUTPUT_WRITE" for f in failures):
        return EXIT_ENVIRONMENT
    return EXIT_FAILED_INPUTS if failures else EXIT_OK


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), help="Also write the table.")
@click.option("--wide", is_flag=True, help="One table row per file (long lines).")
def inspect(files: Sequence[Path], csv_path: Path | None, wide: bool) -> None:
    """Show each FCS file's version, events, channels, markers, spillover, instrument, date.

    By default one short block per file, wrapped to the terminal (at most 100 columns);
    ``--wide`` prints one table row per file, ``--csv F`` writes the table.
    """
    from .io import inspect_files
    from .io.write import write_table

    table = inspect_files(list(files))
    with_errors = table[table["error"].astype(str) != ""]
    readable = table[table["error"].astype(str) == ""]
    if wide:
        click.echo(escape_frame(readable.drop(columns=["error"])).to_string(index=False))
    else:
        for _, row in escape_frame(readable).iterrows():
            click.echo(_inspect_block(row))
    for _, row in with_errors.iterrows():
        _fail_line(row["file"], row["error"])
    if csv_path is not None:
        write_table(table, csv_path.with_suffix(""), formats=("csv",))
    sys.exit(EXIT_FAILED_INPUTS if len(with_errors) else EXIT_OK)


def _inspect_block(row: Any) -> str:
    """One file of ``nkflow inspect``, wrapped to fit the terminal (at most 100 columns)."""
    import shutil
    import textwrap

    width = max(40, min(100, shutil.get_terminal_size((100, 24)).columns))
    head = (
        f"FCS {row['fcs_version']} | {row['events']} events | {row['channels']} channels | "
        f"{row.get('technology', '')} | spillover {row['spillover']} | "
        f"{row['instrument'] or 'instrument ?'} | {row['date'] or 'date ?'}"
    )
    lines = [str(row["file"]), *textwrap.wrap(head, width, initial_indent="  ",
                                             subsequent_indent="    ")]  # fmt: skip
    titles = {"unread_labels": "labels not read as markers (name them in a panel file)"}
    for key in ("markers", "unread_labels", "quirks"):
        if str(row.get(key, "")):
            lines += textwrap.wrap(f"{titles.get(key, key)}: {row[key]}", width,
                                   initial_indent="  ", subsequent_indent="    ",
                                   break_on_hyphens=False)  # fmt: skip
    return "\n".join(lines)


@main.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, path_type=Path))
@click.option("--panel", type=click.Path(path_type=Path), help="Panel file: channel -> marker.")
@click.option("--template", help="Gating template name or file (default: by species and tissue).")
@click.option("--no-cluster", is_flag=True, help="Judge a run without clustering.")
@click.option("--no-score", is_flag=True, help="Judge a run without repair scoring.")
def check(
    input_path: Path, panel: Path | None, template: str | None, no_cluster: bool, no_score: bool
) -> None:
    """Check a batch: files agree on channels, markers and ranges; the gating plan.

    Prints the consistency report (its first line the verdict), then the hierarchy each
    template will apply to the batch's panel (gates kept, substituted, skipped;
    populations that cannot be reported). Exit 1, with one FAILED line per problem, when
    a file is unreadable, holds raw spectral or already transformed data, none of the
    panel's channels or no marker of the batch, cannot be reconciled with the others or
    its panel cannot support its template (no NK anchor, no species), or when no file can
    be gated or the batch mixes species (unless ``--no-cluster --no-score``: a run that
    only gates takes each species with its own template).
    """
    from .pipeline.review import review_batch

    setup_logging(1, False)  # a file's quirks and the sheet's notes, one line each
    try:
        review = review_batch(
            input_path, panel=panel, template=template, cluster=not no_cluster, score=not no_score
        )
    except GatingTemplateError as exc:  # the template itself (the batch's are in the review)
        _usage_error(exc)
    except NkflowError as exc:  # the sheet or folder itself
        _fail_line(input_path, exc)
        sys.exit(EXIT_FAILED_INPUTS)
    click.echo(review.report_text())
    if review.plan is not None:
        click.echo("")
        click.echo(_lines(review.plan.to_text()))
    partial = getattr(review.plan_error, "resolution", None)
    if partial is not None:
        click.echo("\nWhat this panel supports (no NK population can be reported):")
        click.echo(_lines(partial.to_text()))
    failures = review.failures(input_path)
    for where, why in failures:
        _fail_line(where, why)
    sys.exit(EXIT_FAILED_INPUTS if failures else EXIT_OK)


def _validate_panel(path: str) -> None:
    """A panel file that cannot be used is a usage error, found before any work."""
    if not path:
        return
    from .exceptions import PanelError
    from .io.panel import load_panel

    try:
        load_panel(path)
    except PanelError as exc:
        _usage_error(exc)


def _validate_overrides(path: str) -> None:
    """An overrides file that cannot be read or has a bad entry: a usage error.

    Found before any work and before the output folder is touched (the checks against
    the batch follow the plan, also before the folder is touched).
    """
    if not path:
        return
    from .gating.overrides import load_overrides

    try:
        load_overrides(path)
    except GatingTemplateError as exc:
        _usage_error(exc)


def _print_plan(plan: Any) -> None:
    """``nkflow run`` states the gating hierarchy it will apply before any sample runs."""
    click.echo(_lines(plan.to_text()), err=True)


def _lines(text: str) -> str:
    """Multi-line text from the library (a plan), each line escaped on its own."""
    return "\n".join(escape_text(line) for line in text.splitlines())


@main.command()
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
def thresholds(out: Path) -> None:
    """Print the thresholds of a finished run OUT as a starting overrides file.

    The run's manual thresholds are active entries; the computed ones are commented out:
    uncomment and edit only those you change.
    """
    import pandas as pd

    from .gating.overrides import overrides_toml
    from .pipeline.outdir import OutputFolder

    if unfinished := OutputFolder(out).unfinished():  # no tables yet, or another run's
        _usage_error(unfinished)
    table = next((p for p in (out / "tables" / "thresholds.parquet",
                              out / "tables" / "thresholds.csv") if p.is_file()), None)  # fmt: skip
    if table is None:
        _usage_error(f"{out}: no tables/thresholds.csv or .parquet (not an nkflow output folder)")
    frame = (
        pd.read_parquet(table)
        if table.suffix == ".parquet"
        else pd.read_csv(table, dtype={"sample_id": str, "tissue": str, "batch": str})
    )
    click.echo(overrides_toml(frame), nl=False)


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--template", required=True, help="Template name from gating/, GatingML or .wsp.")
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path), help="Output folder.")
@click.option(
    "--events",
    is_flag=True,
    help="Also write per-event membership (one row per event of the file).",
)
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="Run config TOML.")
@click.option("--force", is_flag=True, help="Replace existing output files.")
@overrides_option
@compensation_option
@transform_option
@workers_option
@bootstrap_option
@verbose_option
@quiet_option
def gate(
    inputs: Sequence[Path],
    template: str,
    out: Path,
    events: bool,
    config_path: Path | None,
    force: bool,
    overrides: Path | None,
    compensation: str | None,
    transform_method: str | None,
    workers: int | None,
    bootstrap: int | None,
    verbose: int,
    quiet: bool,
) -> None:
    """Gate FCS files (or a metadata sheet / folder) with a template; write populations.csv."""
    setup_logging(verbose, quiet)
    from .config import load_config, replace_values
    from .pipeline import gate_files

    try:
        config = replace_values(
            load_config(config_path),
            {
                "gating.template": template,
                "compensation.matrix": _compensation_value(compensation),
                "transform.method": transform_method,
                "execution.workers": workers,
                "gating.bootstrap": bootstrap,
                "gating.overrides": str(overrides.resolve()) if overrides else None,
            },
        )
    except ConfigError as exc:
        _usage_error(str(exc))
    _validate_overrides(config.gating.overrides)
    try:
        with sigterm_interrupts():
            result = gate_files(list(inputs), out, config=config, events=events, force=force)
    except KeyboardInterrupt as exc:
        _interrupted(exc)
    except PanelMismatchError as exc:
        _fail_line(", ".join(map(str, inputs)), exc)
        sys.exit(EXIT_FAILED_INPUTS)
    except (ConfigError, GatingTemplateError, OutputExistsError) as exc:
        _usage_error(str(exc))
    except OutputFolderError as exc:
        _environment_error(exc)
    except NkflowError as exc:
        _fail_line(", ".join(map(str, inputs)), exc)
        sys.exit(EXIT_FAILED_INPUTS)
    if not quiet:
        for note in result.notes:  # e.g. options a FlowJo workspace does not use
            click.echo(f"nkflow: note: {_one_line(note)}", err=True)
    for failure in result.failures:
        _fail_line(failure["file"], failure["message"])
    sys.exit(_exit_code(result.failures))


@main.command()
@click.argument("out", type=click.Path(path_type=Path))
@click.option(
    "--species", type=click.Choice(["human", "mouse"]), default="human", show_default=True
)
@click.option("--events", "n_events", type=int, default=None, help="Events per file.")
@click.option("--random-state", type=int, default=0, show_default=True)
def simulate(out: Path, species: str, n_events: int | None, random_state: int) -> None:
    """Write a simulated batch (FCS files, metadata sheet, truth) to OUT."""
    from .datasets import simulate_batch

    kwargs: dict[str, Any] = {"species": species, "random_state": random_state}
    if n_events is not None:
        kwargs["n_events"] = n_events
    try:
        sheet = simulate_batch(out, **kwargs)
    except NkflowError as exc:
        _usage_error(str(exc))
    click.echo(f"nkflow: wrote {escape_text(sheet)}", err=True)


@main.group()
def templates() -> None:
    """List, show and validate gating templates."""


@templates.command("list")
def templates_list() -> None:
    """List the templates shipped in gating/."""
    import pandas as pd

    from .gating.template import list_templates

    click.echo(pd.DataFrame(list_templates()).to_string(index=False))


@templates.command("show")
@click.argument("name")
def templates_show(name: str) -> None:
    """Print a template's text (copy it, edit it, pass its path to --template)."""
    from .gating.template import load_template

    try:
        template = load_template(name)
        click.echo(Path(template.path).read_text(encoding="utf-8"))
    except (GatingTemplateError, OSError) as exc:
        _usage_error(str(exc))


@templates.command("validate")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
def templates_validate(path: Path) -> None:
    """Validate an edited template (TOML) or a GatingML 2.0 file; exit 1 naming the problems.

    A FlowJo workspace is recognised (safe XML); its gates are checked when
    ``nkflow gate`` applies it to its files.
    """
    from .gating.gatingml import validate_gatingml
    from .gating.template import validate_template
    from .gating.xml_kind import template_format

    what = ""
    try:
        kind = template_format(path)  # by content: a GatingML file is not TOML
        if kind == "gatingml":
            what = f" GatingML 2.0 ({len(validate_gatingml(path))} populations)"
        elif kind == "workspace":
            what = " FlowJo workspace (safe XML; its gates are checked by `nkflow gate`)"
        else:
            validate_template(path)
    except GatingTemplateError as exc:
        _fail_line(path, exc)
        sys.exit(EXIT_FAILED_INPUTS)
    click.echo(f"{escape_text(path)}: valid{what}")


if __name__ == "__main__":  # pragma: no cover
    main()
