"""The output folder: creation, overwrite protection, locking, per-sample work products.

Layout of ``OUT``::

    .nkflow               marker: this folder was made by nkflow (``--force`` only
                          replaces folders that carry it)
    .nkflow.lock          held (``flock``) by the run working in the folder; holds its PID
    config.toml           the effective configuration
    provenance.json       versions, template hashes, input file hashes
    report.html           the batch report
    tables/, figures/     tidy tables (CSV + Parquet) and figures
    work/<sample>/        per-sample products; ``result.json`` is written last and lists
                          every product with its size and SHA-256, so a sample counts as
                          done only when all its files are there and intact

The whole discipline lives here, and every writer of a run goes through it:

- every file is written atomically (temporary file + rename, :mod:`nkflow.io.write`);
  a run killed at any point leaves complete files or none, and the temporary files it
  left are removed when the next run takes the folder;
- ``--force`` is refused when an input (a file, the input folder, the sheet or what it
  lists) lies inside ``OUT`` or ``OUT`` inside an input folder, so replacing the output
  can never delete data;
- nothing is written through a symbolic link inside ``OUT``: ``--resume`` refuses a
  folder that holds links, and writers refuse a link in the path they write to;
- one run at a time: a second run on the same ``OUT`` stops at once, naming the PID of
  the run that holds the lock;
- ``--resume`` reuses a sample only when its ``result.json`` lists products that are all
  present with the recorded size and hash; otherwise the sample is redone. The batch
  products of the previous run (report, provenance, configuration, tables, figures) are
  removed first, so an interrupted resume never leaves an old report that looks like the
  new one, nor a folder mixing two runs' tables; the work folders of samples no longer in
  the batch go too;
- a run is finished when ``provenance.json`` is there (it is written last): commands that
  read a folder refuse one whose run did not finish (:meth:`OutputFolder.unfinished`).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .. import _lockfile
from ..exceptions import OutputExistsError, OutputFolderError
from ..io.write import (
    TEMP_SUFFIX,
    file_sha256,
    output_error,
    safe_name,
    unique_name,
    write_text_atomic,
)
from .resume import finish_hint, previous_run, refuse_other_inputs

__all__ = ["OutputFolder", "product_record"]

logger = logging.getLogger(__name__)

MARKER = ".nkflow"
LOCK = ".nkflow.lock"
#: Files of a finished run that say "this folder is complete": removed when a resume
#: starts and written again at its end (provenance.json last).
COMPLETION_FILES = ("report.html", "provenance.json", "config.toml")
PROVENANCE = "provenance.json"
#: What the batch steps write into tables/ and figures/: removed when a resume starts
#: (the run writes them all again), so the folder never mixes two runs' products
BATCH_PRODUCTS = {"tables": (".csv", ".parquet"), "figures": (".png", ".svg")}
#: A sample's work folder: its kept events, its summary (written last), its gating figure
#: (``gating.png`` from before the SVG grid; a --resume reuses it) and metacluster labels
NK_EVENTS_FILE = "nk.h5ad"
RESULT_FILE = "result.json"
GATING_FIGURE = "gating.svg"
LEGACY_GATING_FIGURE = "gating.png"
LABELS_FILE = "metacluster.parquet"
SAMPLE_FILES = (NK_EVENTS_FILE, GATING_FIGURE, LEGACY_GATING_FIGURE, RESULT_FILE, LABELS_FILE)
MAX_LISTED = 5


class OutputFolder:
    """Paths inside one run's output folder, and its protection rules.

    Parameters
    ----------
    root
        The output folder.
    resumable
        Whether the command writing it can finish an interrupted run (``nkflow run
        --resume``); messages suggest only the options the command has.
    batch
        The run's input folder or sheet and its files (name -> path): a ``--resume``
        into a folder whose run had other inputs is refused
        (:func:`~nkflow.pipeline.resume.refuse_other_inputs`).

    Notes
    -----
    Use it as a context manager (or call :meth:`release`) so the lock taken by
    :meth:`prepare` is let go when the run ends.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        resumable: bool = True,
        batch: tuple[Path, dict[str, str]] | None = None,
    ) -> None:
        self.root = Path(root)
        self.resumable = resumable
        self.batch = batch
        #: what the folder recorded of its run before a ``--resume`` took it over
        self.previous: dict[str, Any] = {}
        self._lock_fd: int | None = None

    def __enter__(self) -> OutputFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    @property
    def tables(self) -> Path:
        """Folder of tidy tables."""
        return self.root / "tables"

    @property
    def figures(self) -> Path:
        """Folder of figures."""
        return self.root / "figures"

    @property
    def work(self) -> Path:
        """Folder of per-sample work products."""
        return self.root / "work"

    # ------------------------------------------------------------------ preparing
    def prepare(
        self,
        *,
        force: bool = False,
        resume: bool = False,
        inputs: Iterable[str | Path] = (),
        samples: Iterable[str] | None = None,
    ) -> None:
        """Create or take over the folder, refusing to overwrite or lose anything.

        Parameters
        ----------
        force
            Replace an existing nkflow output folder (never a folder nkflow did not make,
            and never one that holds an input or lies inside an input folder).
        resume
            Keep an existing nkflow output folder and reuse its finished samples.
        inputs
            Every input of the run (the input folder or sheet, each data file, panel and
            config files), checked against the folder before ``force`` deletes anything.
        samples
            Every sample id of the batch: with ``resume``, the work folders of other
            samples (left out of the batch since) are removed
            (:meth:`remove_stale_samples`); ``None`` keeps every work folder.

        Raises
        ------
        OutputExistsError
            The folder exists and neither option allows using it, it was not made by
            nkflow, or ``force`` would delete an input.
        OutputFolderError
            Another run holds the folder, it holds symbolic links (``resume``), or it
            cannot be written (no space, read-only, permission).
        """
        root = self.root
        exists = self.refuse_existing(force=force, resume=resume)
        if force:
            self._refuse_inputs_inside(inputs)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise output_error(exc, root, "cannot create the output folder") from exc
        self._lock()
        try:
            if exists and force:
                self._empty()
            elif exists and resume:
                self._clean_for_resume()
                self._remove_batch_products()
                if samples is not None:
                    self.remove_stale_samples(samples)
            write_text_atomic(root / MARKER, "nkflow output folder\n", root=root)
        except OutputFolderError:
            self.release()
            raise
        except OSError as exc:
            self.release()
            raise output_error(exc, root, "cannot prepare") from exc
        except BaseException:
            self.release()
            raise

    def refuse_existing(self, *, force: bool = False, resume: bool = False) -> bool:
        """Refuse a folder :meth:`prepare` would refuse, before any work; nothing is written.

        A run calls it first, so a folder that exists stops the run at once, not after the
        batch was checked and planned.

        Parameters
        ----------
        force, resume
            As in :meth:`prepare`.

        Returns
        -------
        bool
            Whether the folder exists with content.

        Raises
        ------
        OutputExistsError
            As in :meth:`prepare` (except for inputs inside the folder, checked there),
            and for ``resume`` into a folder whose run had other inputs.
        """
        root = self.root
        if root.is_symlink() and not root.exists():
            raise OutputExistsError(f"{root}: is a broken symbolic link; choose another -o/--out")
        if root.exists() and not root.is_dir():
            raise OutputExistsError(f"{root}: exists and is not a folder")
        exists = root.is_dir() and any(p.name != LOCK for p in root.iterdir())
        if exists and not (root / MARKER).is_file():
            raise OutputExistsError(
                f"{root}: folder exists and was not made by nkflow; choose another -o/--out"
            )
        if exists and not (force or resume):
            finish = " or --resume to finish it" if self.resumable else ""
            raise OutputExistsError(
                f"{root}: output folder exists; pass --force to replace it{finish}"
            )
        if exists and resume and not force:
            self.previous = previous_run(root)
            if self.batch is not None:
                refuse_other_inputs(root, self.previous, *self.batch)
        return exists

    def _refuse_inputs_inside(self, inputs: Iterable[str | Path]) -> None:
        out = self.root.resolve()
        for item in inputs:
            path = Path(item).resolve()
            if path == out or path.is_relative_to(out):
                raise OutputExistsError(
                    f"{self.root}: --force would delete an input: {item} is inside the output "
                    "folder; choose another -o/--out"
                )
            if path.is_dir() and out.is_relative_to(path):
                raise OutputExistsError(
                    f"{self.root}: --force refused: the output folder is inside the input "
                    f"folder {item}; choose an -o/--out outside it"
                )

    def _lock(self) -> None:
        path = self.root / LOCK
        try:
            # O_NOFOLLOW and O_CLOEXEC are POSIX (Windows has neither)
            flags = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | flags, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise OutputFolderError(
                    f"{path}: is a symbolic link; nkflow never writes through links"
                ) from exc
            raise output_error(exc, path, "cannot create the lock file") from exc
        try:
            _lockfile.lock(fd)
        except OSError as exc:
            holder = _lockfile.read_head(fd).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise OutputFolderError(
                f"{self.root}: another nkflow run (PID {holder}) is using this output folder; "
                "wait for it to finish or choose another -o/--out",
                errno.EBUSY,
            ) from exc
        _lockfile.write_pid(fd)
        self._lock_fd = fd

    def release(self) -> None:
        """Let go of the folder's lock (the lock file stays; it is harmless)."""
        if self._lock_fd is not None:
            try:
                _lockfile.unlock(self._lock_fd)
            finally:
                os.close(self._lock_fd)
                self._lock_fd = None

    def remove_if_empty(self) -> None:
        """Remove the folder when it holds nothing but nkflow's marker and lock files.

        For a run refused after :meth:`prepare` made the folder and before it wrote
        anything (a usage error found once the batch is planned): a stub would make the
        corrected run ask for ``--force``. Call :meth:`release` first.
        """
        if not self.root.is_dir() or self.root.is_symlink():
            return
        names = {entry.name for entry in self.root.iterdir()}
        if names <= {MARKER, LOCK}:
            shutil.rmtree(self.root)

    def _empty(self) -> None:
        """Remove everything but the lock file, never following a link."""
        for entry in self.root.iterdir():
            if entry.name == LOCK:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()

    def _clean_for_resume(self) -> None:
        """One walk: refuse links inside the folder, else remove killed runs' temporaries."""
        links: list[str] = []
        stale: list[Path] = []
        for folder, dirs, files in os.walk(self.root, followlinks=False):
            for name in dirs + files:
                path = Path(folder) / name
                if path.is_symlink():
                    links.append(str(path))
                elif name in files and name.startswith(".") and name.endswith(TEMP_SUFFIX):
                    stale.append(path)
        if links:
            shown = ", ".join(links[:MAX_LISTED])
            more = f" and {len(links) - MAX_LISTED} more" if len(links) > MAX_LISTED else ""
            raise OutputFolderError(
                f"{self.root}: --resume refused: the output folder holds symbolic links "
                f"({shown}{more}); nkflow never writes through links; remove them or use --force"
            )
        for path in stale:
            path.unlink(missing_ok=True)
            logger.info("removed a temporary file left by a killed run: %s", path.name)

    def _remove_batch_products(self) -> None:
        """The previous run's completion files first, then its tables and figures."""
        for name in COMPLETION_FILES:
            (self.root / name).unlink(missing_ok=True)
        for folder, suffixes in BATCH_PRODUCTS.items():
            path = self.root / folder
            if not path.is_dir() or path.is_symlink():
                continue
            for entry in path.iterdir():
                if entry.suffix in suffixes and entry.is_file() and not entry.is_symlink():
                    entry.unlink()

    def unfinished(self) -> str:
        """Why the folder's run did not finish, or ``""`` when it did.

        A folder nkflow made (``.nkflow``) is finished once ``provenance.json``, written
        last, is there; a run that was killed, or is still going, has none.

        Returns
        -------
        str
            One sentence naming the folder and how to finish it; empty when finished
            (or when the folder is not one nkflow made).
        """
        if not (self.root / MARKER).is_file() or (self.root / PROVENANCE).is_file():
            return ""
        # the run's own command (or input and settings), as the folder recorded it: a bare
        # `--resume` would redo every sample under the default settings
        finish = f"; {finish_hint(self.root)}" if self.resumable else ""
        return f"{self.root}: the run writing this folder did not finish (no {PROVENANCE}){finish}"

    def remove_stale_samples(self, sample_ids: Iterable[str]) -> list[str]:
        """Remove the work folders of samples no longer in the batch (``--resume``).

        Only a folder directly in ``work/`` that holds nothing but what a sample's work
        writes (:data:`SAMPLE_FILES` and nkflow's temporary files) is removed; any other
        is left, with a log line.

        Parameters
        ----------
        sample_ids
            Every sample id of the batch (their folders stay, done or not).

        Returns
        -------
        list of str
            The names of the folders removed.
        """
        if not self.work.is_dir() or self.work.is_symlink():
            return []
        keep = {self.sample_dir(str(sid)).name for sid in sample_ids}
        removed = []
        for entry in sorted(self.work.iterdir()):
            if entry.name in keep or entry.is_symlink() or not entry.is_dir():
                continue
            files = list(entry.iterdir())
            if all(_sample_file(f) for f in files):
                shutil.rmtree(entry)
                removed.append(entry.name)
                logger.info("removed the work folder of a sample no longer in the batch: %s",
                            entry.name)  # fmt: skip
            else:
                logger.info("left %s: it holds files nkflow did not write", entry)
        return removed

    # ------------------------------------------------------------------ samples
    def sample_dir(self, sample_id: str) -> Path:
        """The work folder of one sample (its name is made safe)."""
        return self.work / unique_name(sample_id)

    def sample_result(self, sample_id: str) -> dict[str, Any] | None:
        """A finished sample's summary, or ``None`` when it must be redone.

        ``None`` when ``result.json`` is missing or unreadable, or when any product it
        lists is missing, has another size or another SHA-256 (a truncated or replaced
        file), or lies behind a link.
        """
        folder = self.sample_dir(sample_id)
        path = folder / "result.json"
        try:
            if folder.is_symlink() or path.is_symlink():
                return None
            summary = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        products = summary.get("products") if isinstance(summary, dict) else None
        if not isinstance(products, dict):
            return None
        for name, expected in products.items():
            if product_record(folder / safe_name(name)) != expected:
                logger.info("sample %s: %s is missing or changed; redoing it", sample_id, name)
                return None
        return summary


def _sample_file(path: Path) -> bool:
    """Whether ``path`` is a file a sample's work writes (a product or a temporary file)."""
    if path.is_symlink() or not path.is_file():
        return False
    name = path.name
    return name in SAMPLE_FILES or (name.startswith(".") and name.endswith(TEMP_SUFFIX))


def product_record(path: str | Path) -> dict[str, Any] | None:
    """``{"size": bytes, "sha256": hex}`` of a product file, or ``None`` if unusable."""
    p = Path(path)
    try:
        if p.is_symlink() or not p.is_file():
            return None
        return {"size": p.stat().st_size, "sha256": file_sha256(p)}
    except OSError:
        return None
