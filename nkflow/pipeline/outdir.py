"""The output folder: creation, overwrite protection, per-sample work products, status.

Layout of ``OUT``::

    .nkflow               marker: this folder was made by nkflow (``--force`` only
                          replaces folders that carry it)
    config.toml           the effective configuration
    provenance.json       versions, template hashes, input file hashes
    report.html           the batch report
    tables/, figures/     tidy tables (CSV + Parquet) and figures
    work/<sample>/        per-sample products; ``result.json`` is written last, so a
                          sample counts as done only when all its files are complete

Every file is written atomically (temporary file + rename), so a run killed at any
point leaves complete files or none, and ``--resume`` redoes exactly what is missing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from ..exceptions import OutputExistsError
from ..io.write import safe_name, write_text_atomic

__all__ = ["OutputFolder", "file_sha256"]

MARKER = ".nkflow"


class OutputFolder:
    """Paths inside one run's output folder, and its protection rules.

    Parameters
    ----------
    root
        The output folder.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

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

    def prepare(self, *, force: bool = False, resume: bool = False) -> None:
        """Create the folder, refusing to overwrite silently.

        Parameters
        ----------
        force
            Replace an existing nkflow output folder (never a folder nkflow did not make).
        resume
            Keep an existing nkflow output folder and reuse its finished samples.

        Raises
        ------
        OutputExistsError
            When the folder exists and neither option allows using it, or when it was
            not made by nkflow.
        """
        root = self.root
        if root.exists() and not root.is_dir():
            raise OutputExistsError(f"{root}: exists and is not a folder")
        exists = root.is_dir() and any(root.iterdir())
        ours = (root / MARKER).is_file()
        if exists and not ours:
            raise OutputExistsError(
                f"{root}: folder exists and was not made by nkflow; choose another -o/--out"
            )
        if exists and not (force or resume):
            raise OutputExistsError(
                f"{root}: output folder exists; pass --force to replace it or --resume to finish it"
            )
        if exists and force:
            shutil.rmtree(root)
        root.mkdir(parents=True, exist_ok=True)
        write_text_atomic(root / MARKER, "nkflow output folder\n")

    def sample_dir(self, sample_id: str) -> Path:
        """The work folder of one sample (its name is made safe)."""
        digest = hashlib.sha1(str(sample_id).encode("utf-8")).hexdigest()[:8]
        return self.work / f"{safe_name(sample_id)}-{digest}"

    def sample_result(self, sample_id: str) -> dict[str, Any] | None:
        """A finished sample's summary, or ``None`` when it is missing or unreadable."""
        path = self.sample_dir(sample_id) / "result.json"
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None


def file_sha256(path: str | Path, *, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, read in chunks (input files are never modified)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
