"""Batches: a metadata sheet plus lazy per-sample reading, and a consistency check.

``read_batch(source)`` takes a folder of FCS files or a metadata sheet and returns a
:class:`Batch`; nothing is decoded until ``Batch.read(sample_id)`` (or iteration).
``check_batch`` compares the HEADER/TEXT of every file (channels, markers, ranges,
``$CYT``, ``$DATATYPE``, FCS version, spillover presence) against the most common layout
and returns every difference plus the marker -> channel mapping nkflow will use per file.
Differences that can be bridged by marker are reported, not fatal; a marker required by
the analysis that a file lacks, or a marker that maps to two channels in one file, raises
:class:`BatchConsistencyError` listing every such problem. Files that cannot be used on
their own (unreadable, none of the panel's channels, no marker of the batch) do not stop
the others; :attr:`BatchCheck.problems` lists them, one row per file.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import anndata as ad
import pandas as pd

from ..exceptions import (
    BatchConsistencyError,
    ChannelNotFoundError,
    FCSQuirkWarning,
    MetadataError,
    NkflowError,
)
from .batch_check import DIFFERENCE_COLUMNS, UNREAD_COLUMNS, BatchCheck, _preview
from .fcs import channel_kind, parse_spillover, read_fcs
from .fcs_text import FCSMetadata, read_fcs_metadata
from .folder import metadata_from_files, metadata_from_folder
from .metadata import FCS_SUFFIXES, OPTIONAL_COLUMNS, SAMPLE_ROLES, read_metadata, screen_cells
from .panel import (
    PanelLike,
    _as_panel,
    canonical_marker,
    marker_equivalents,
    resolve_with_conflicts,
)
from .panel_fit import fit_panel
from .panel_labels import unread_labels
from .technology import Technology, detect_technology, other_technology
from .text_safety import escape_text

__all__ = ["DIFFERENCE_COLUMNS", "Batch", "BatchCheck", "check_batch", "read_batch"]

logger = logging.getLogger(__name__)


def _as_metadata(
    source: str | Path | pd.DataFrame, *, neutralise_formulas: bool = False
) -> pd.DataFrame:
    if isinstance(source, pd.DataFrame):
        table = source.copy()
        if "sample_id" not in table.columns or not {"path", "file"} & set(table.columns):
            raise MetadataError(
                "<DataFrame>", ["a metadata DataFrame needs 'sample_id' and 'path' or 'file'"]
            )
        problems: list[str] = []
        screen_cells(
            table,
            "<DataFrame>",
            problems,
            neutralise_formulas=neutralise_formulas,
            locate=lambda i: f"index '{escape_text(i)}'",
        )
        if problems:
            raise MetadataError("<DataFrame>", problems)
        if "path" not in table.columns:
            table["path"] = [os.path.abspath(f) for f in table["file"]]
        for col in OPTIONAL_COLUMNS:
            if col not in table.columns:
                table[col] = ""
        return table
    source = Path(source)
    if source.is_dir():
        # a folder that carries its own sheet is described by it
        sheet = source / "metadata.csv"
        if sheet.is_file():
            return read_metadata(sheet, neutralise_formulas=neutralise_formulas)
        return metadata_from_folder(source, neutralise_formulas=neutralise_formulas)
    if _is_fcs_file(source):  # one FCS file: a batch of one, as a folder of it would be
        return metadata_from_files([source], neutralise_formulas=neutralise_formulas)
    return read_metadata(source, neutralise_formulas=neutralise_formulas)


def _is_fcs_file(path: Path) -> bool:
    """An FCS file by its name (``.fcs``, ``.lmd``) or its first bytes (``FCS2.0`` ...)."""
    if path.suffix.lower() in FCS_SUFFIXES:
        return True
    try:
        with path.open("rb") as handle:
            return handle.read(3) == b"FCS"
    except OSError:
        return False


class Batch:
    """FCS files of one batch with their metadata; samples are read lazily.

    Parameters
    ----------
    metadata
        A validated sheet (:func:`nkflow.io.read_metadata` or
        :func:`nkflow.io.metadata_from_folder`), with a ``path`` column.
    panel
        Panel file or mapping applied to every file (see :func:`nkflow.io.load_panel`).
    """

    def __init__(self, metadata: pd.DataFrame, *, panel: PanelLike = None) -> None:
        self.metadata = metadata.reset_index(drop=True)
        self.panel = _as_panel(panel)
        self.source = metadata.attrs.get("source", "")
        self._check: BatchCheck | None = None

    def __repr__(self) -> str:
        return f"Batch({len(self)} samples from {self.source or 'a DataFrame'})"

    def __len__(self) -> int:
        return len(self.metadata)

    @property
    def sample_ids(self) -> list[str]:
        """Sample ids in sheet order."""
        return [str(s) for s in self.metadata["sample_id"]]

    def _row(self, sample_id: str) -> pd.Series:
        hits = self.metadata.index[self.metadata["sample_id"].astype(str) == str(sample_id)]
        if len(hits) == 0:
            raise KeyError(
                f"no sample {sample_id!r} in the batch; samples: {', '.join(self.sample_ids)}"
            )
        return self.metadata.loc[hits[0]]

    def path(self, sample_id: str) -> Path:
        """The FCS file of a sample."""
        return Path(self._row(sample_id)["path"])

    def read(self, sample_id: str, **kwargs: object) -> ad.AnnData:
        """Read one sample with its metadata row (keyword arguments go to ``read_fcs``).

        Parameters
        ----------
        sample_id
            A sample id of the sheet.
        **kwargs
            ``dataset``, ``required_markers``, ``preprocess`` for :func:`read_fcs`.

        Returns
        -------
        anndata.AnnData
            The container.
        """
        row = self._row(sample_id)
        kwargs.setdefault("panel", self.panel)
        role = str(row.get("role", "") or "")
        if not role.startswith("fmo:"):
            return read_fcs(row["path"], sample_id=str(sample_id), metadata=row, **kwargs)
        # An FMO tube often leaves its own marker unlabelled; take the channel the rest of
        # the batch uses for it (see check_batch) so thresholds can find it.
        fmo = canonical_marker(role[4:])
        required = list(kwargs.pop("required_markers", ()) or ())
        others = [m for m in required if not marker_equivalents(canonical_marker(m)) & {fmo}]
        adata = read_fcs(
            row["path"], sample_id=str(sample_id), metadata=row, required_markers=others, **kwargs
        )
        if not marker_equivalents(fmo) & set(adata.var["marker"]):
            channel = self._batch_channel(str(sample_id), fmo)
            if channel in adata.var_names and adata.var.loc[channel, "marker"] == "":
                adata.var.loc[channel, "marker"] = fmo
                logger.info("%s: FMO marker %s assigned to %s from the batch", sample_id, fmo,
                            channel)  # fmt: skip
        if len(others) != len(required) and not marker_equivalents(fmo) & set(adata.var["marker"]):
            have = [f"{m} ({c})" for c, m in adata.var["marker"].items() if m]
            raise ChannelNotFoundError(fmo, have, source=row["path"])
        return adata

    def _batch_channel(self, sample_id: str, marker: str) -> str:
        """The channel check_batch maps ``marker`` to in this sample ("" if none)."""
        if self._check is None:
            self._check = self.check(raise_on_error=False)
        mapping = self._check.mapping
        if marker in mapping.index and sample_id in mapping.columns:
            return str(mapping.loc[marker, sample_id])
        return ""

    def __iter__(self) -> Iterator[ad.AnnData]:
        for sid in self.sample_ids:
            yield self.read(sid)

    def iter_samples(
        self, **kwargs: object
    ) -> Iterator[tuple[str, ad.AnnData | None, NkflowError | None]]:
        """Yield ``(sample_id, adata, None)`` or ``(sample_id, None, error)`` per sample.

        A file that fails does not stop the others.
        """
        for sid in self.sample_ids:
            try:
                yield sid, self.read(sid, **kwargs), None
            except NkflowError as exc:
                logger.warning("%s: %s", sid, exc)
                yield sid, None, exc

    def check(
        self, *, required_markers: Iterable[str] = (), raise_on_error: bool = True
    ) -> BatchCheck:
        """Run :func:`check_batch` on this batch."""
        return check_batch(
            self.metadata,
            panel=self.panel,
            required_markers=required_markers,
            raise_on_error=raise_on_error,
        )


def read_batch(
    source: str | Path | pd.DataFrame,
    *,
    panel: PanelLike = None,
    neutralise_formulas: bool = False,
) -> Batch:
    """Open a batch from a folder of FCS files or a metadata sheet.

    The sheet is validated as a whole first (every problem in one
    :class:`MetadataError`); no FCS file is decoded.

    Parameters
    ----------
    source
        A folder (its own ``metadata.csv``, else a sheet built by
        :func:`nkflow.io.metadata_from_folder`), a CSV sheet, one FCS file (a batch of
        one, :func:`nkflow.io.metadata_from_files`), or a metadata DataFrame.
    panel
        Panel file or mapping for every file.
    neutralise_formulas
        Prefix ``'`` to sheet values a spreadsheet would run as formulas instead of
        refusing them (see :func:`nkflow.io.read_metadata`).

    Returns
    -------
    Batch
        Lazy access to the samples.
    """
    return Batch(_as_metadata(source, neutralise_formulas=neutralise_formulas), panel=panel)


def _diff(
    rows: list[dict],
    sid: str,
    file: str,
    aspect: str,
    item: str,
    value: object,
    reference: object,
    fatal: bool = False,
) -> None:
    rows.append(
        {
            "sample_id": sid,
            "file": file,
            "aspect": aspect,
            "item": item,
            "value": str(value),
            "reference": str(reference),
            "fatal": fatal,
        }
    )


def _ranges_are_data(meta: FCSMetadata, ref: FCSMetadata) -> set[str]:
    """Channels whose ``$PnR`` follows the data, so files may differ: not a setting.

    Mass cytometry software writes each channel's largest value as its range, and a time
    channel's range is the acquisition's length; neither is an instrument setting that
    moves a transform between files.
    """
    if _is_mass(meta) and _is_mass(ref):
        return set(meta.pnn)
    return {c for c, s in zip(meta.pnn, meta.pns, strict=True) if channel_kind(c, s) == "time"}


def _technology(meta: FCSMetadata) -> Technology:
    return detect_technology(meta.keywords, meta.pnn, meta.pns)


def _is_mass(meta: FCSMetadata) -> bool:
    return _technology(meta).kind == "mass_cytometry"


def _panel_channels_in(panel: dict[str, str], meta: FCSMetadata) -> bool:
    """Whether any panel channel names a channel of the file ($PnN, else $PnS)."""
    names = set(meta.pnn) | {s.strip() for s in meta.pns if s.strip()}
    return bool(set(panel) & names)


def _panel_notes(panel: dict[str, str] | None, metas: list[FCSMetadata]) -> list[str]:
    """Panel rows that match no channel of any readable file, and unknown marker names.

    Not fatal: a panel shared across instruments names channels some files lack, so a row
    is only listed when no file of the batch has its channel.
    """
    if not panel:
        return []
    scope = "the file" if len(metas) == 1 else f"any of the {len(metas)} files read"
    return fit_panel(panel, [(m.pnn, m.pns) for m in metas]).lines(scope)


def _control_lacks(role: str, marker: str) -> bool:
    """Whether a control of this role may legitimately lack ``marker``."""
    if role == "unstained" or role.startswith("single_stain:"):
        return True
    if role.startswith("fmo:"):
        return bool(marker_equivalents(canonical_marker(role[4:])) & marker_equivalents(marker))
    return False


def check_batch(
    source: str | Path | pd.DataFrame | Batch,
    *,
    panel: PanelLike = None,
    required_markers: Iterable[str] = (),
    raise_on_error: bool = True,
    neutralise_formulas: bool = False,
) -> BatchCheck:
    """Compare the HEADER/TEXT of every file of a batch before any analysis.

    Parameters
    ----------
    source
        Folder, sheet, metadata DataFrame or :class:`Batch`.
    panel
        Panel file or mapping (a Batch's own panel is used when this is None).
    required_markers
        Canonical markers the analysis needs in every file.
    raise_on_error
        Raise :class:`BatchConsistencyError` when a difference is fatal (default); with
        False the result is returned and ``BatchCheck.ok`` is False.
    neutralise_formulas
        As in :func:`read_batch`, when ``source`` is a folder, sheet or DataFrame.

    Returns
    -------
    BatchCheck
        Per-file summary, every difference, the marker -> channel mapping, notes on
        the user panel (rows whose channel no readable file has, with a file's channel
        that differs only in case or punctuation, and marker names the alias table does
        not know) and the labelled channels whose label names a stain the alias table
        does not read as a marker (``unread``); notes and unread labels are never fatal.

    Raises
    ------
    BatchConsistencyError
        A required marker is missing from a file, or a file maps one required marker to two
        channels. Unreadable files (aspect ``unreadable``), files holding none of the
        panel's channels, files with no marker of the reference and files whose data
        cannot be analysed as they are (aspect ``technology``: raw spectral detectors to
        be unmixed, values already transformed; they are not compared with the others)
        are listed in ``BatchCheck.problems`` but do not stop
        the check. Controls may lack markers: an
        ``fmo:<M>`` file may lack ``M`` (the mapping then uses the reference's channel for
        ``M`` when the file has it), ``unstained`` and ``single_stain:`` files may lack any
        marker; these are reported, not fatal.
    """
    if isinstance(source, Batch):
        table = source.metadata
        panel = panel if panel is not None else source.panel
    else:
        table = _as_metadata(source, neutralise_formulas=neutralise_formulas)
    user_panel = _as_panel(panel)
    required = [canonical_marker(m) for m in required_markers]
    metas: dict[str, FCSMetadata] = {}
    markers: dict[str, list[str]] = {}
    file_rows: list[dict] = []
    diffs: list[dict] = []
    unread: list[dict] = []
    for _, row in table.iterrows():
        sid, file = str(row["sample_id"]), str(row["path"])
        info = {"sample_id": sid, "file": file, "fcs_version": "", "cyt": "", "datatype": "",
                "events": pd.NA, "channels": pd.NA, "spillover": False, "error": ""}  # fmt: skip
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FCSQuirkWarning)
                meta = read_fcs_metadata(file)
                spill = parse_spillover(meta.keywords, meta.pnn, meta.pns, path=file)
        except NkflowError as exc:
            info["error"] = getattr(exc, "reason", str(exc))
            _diff(diffs, sid, file, "unreadable", "file", info["error"], "")
            file_rows.append(info)
            continue
        info.update({"fcs_version": meta.version, "cyt": meta.cyt, "datatype": meta.datatype,
                     "events": meta.n_events, "channels": meta.n_channels,
                     "spillover": spill is not None})  # fmt: skip
        file_rows.append(info)
        metas[sid] = meta
        species = str(row.get("species", "") or "") or None
        markers[sid], clashes = resolve_with_conflicts(
            meta.pnn, meta.pns, panel=user_panel, species=species
        )
        for channel, label in unread_labels(meta.pnn, meta.pns, panel=user_panel).items():
            unread.append({"sample_id": sid, "file": file, "channel": channel, "label": label})
        for marker, chans in clashes.items():
            _diff(diffs, sid, file, "panel", marker, f"on several channels: {chans}", "",
                  fatal=marker in required)  # fmt: skip
        if user_panel and not _panel_channels_in(user_panel, meta):
            _diff(diffs, sid, file, "panel", "channels",
                  f"none of the panel's {len(user_panel)} channel(s) is in this file "
                  f"(panel: {_preview(user_panel)}; file: {_preview(meta.pnn)})", "")  # fmt: skip
    notes = _panel_notes(user_panel, list(metas.values()))
    files = pd.DataFrame(file_rows, columns=["sample_id", "file", "fcs_version", "cyt",
                                             "datatype", "events", "channels", "spillover",
                                             "error"])  # fmt: skip
    roles = {str(r["sample_id"]): str(r.get("role", "") or "sample") for _, r in table.iterrows()}
    filled: dict[str, dict[str, str]] = {sid: {} for sid in metas}
    reference = ""
    techs = {sid: _technology(m) for sid, m in metas.items()}  # each file's, read once
    for sid, tech in techs.items():  # raw spectral, already transformed: unusable as they are
        if tech.refused:
            _diff(diffs, sid, str(metas.pop(sid).path), "technology", "file", tech.refused, "")
    mass = {sid: techs[sid].kind == "mass_cytometry" for sid in metas}
    for sid, text in other_technology(mass, markers).items():
        _diff(diffs, sid, str(metas.pop(sid).path), "technology", "file", text, "")
    if metas:
        layouts = Counter(tuple(m.pnn) for m in metas.values())
        common = layouts.most_common(1)[0][0]
        # The reference: the most common channel layout; among those a sample (not a
        # control) with the most resolved markers; then sheet order.
        candidates = [s for s, m in metas.items() if tuple(m.pnn) == common]
        reference = min(
            candidates,
            key=lambda s: (
                roles.get(s, "sample") not in SAMPLE_ROLES,
                -sum(bool(m) for m in markers[s]),
                candidates.index(s),
            ),
        )
        ref = metas[reference]
        ref_markers = dict(zip(markers[reference], ref.pnn, strict=True))
        ref_markers.pop("", None)
        ref_range = dict(zip(ref.pnn, ref.pnr, strict=True))
        ref_spill = bool(files.loc[files["sample_id"] == reference, "spillover"].iloc[0])
        for sid, meta in metas.items():
            file = str(meta.path)
            chans = set(meta.pnn)
            for c in ref.pnn:
                if c not in chans:
                    _diff(diffs, sid, file, "channel", c, "missing", "present")
            for c in meta.pnn:
                if c not in ref_range:
                    _diff(diffs, sid, file, "channel", c, "extra", "absent")
            mk = dict(zip(markers[sid], meta.pnn, strict=True))
            mk.pop("", None)
            role = roles.get(sid, "sample")
            for m, c in ref_markers.items():
                if m not in mk:
                    exempt = _control_lacks(role, m)
                    fatal = bool(marker_equivalents(m) & set(required)) and not exempt
                    value = f"missing (expected for {role})" if exempt else "missing"
                    if exempt and role.startswith("fmo:") and c in chans:
                        filled[sid][m] = c
                        value += f"; mapped to the reference channel {c}"
                    _diff(diffs, sid, file, "marker", m, value, c, fatal=fatal)
                elif mk[m] != c:
                    _diff(diffs, sid, file, "marker_channel", m, mk[m], c)
            if ref_markers and not mk and not role.startswith(("unstained", "single_stain:")):
                _diff(diffs, sid, file, "marker", "all markers",
                      f"no channel carries a marker of the batch (reference {reference} has "
                      f"{_preview(ref_markers)}); label the channels or give a panel",
                      "")  # fmt: skip
            for m, c in mk.items():
                if m not in ref_markers:
                    _diff(diffs, sid, file, "marker", m, f"extra ({c})", "absent")
            for m in required:
                if not marker_equivalents(m) & (set(mk) | set(ref_markers)):
                    exempt = _control_lacks(role, m)
                    _diff(diffs, sid, file, "marker", m, "missing", "required", fatal=not exempt)
            not_settings = _ranges_are_data(meta, ref)
            for c, r in zip(meta.pnn, meta.pnr, strict=True):
                if c in ref_range and r != ref_range[c] and c not in not_settings:
                    _diff(diffs, sid, file, "range", c, f"{r:g}", f"{ref_range[c]:g}")
            for aspect, value, refv in (
                ("fcs_version", meta.version, ref.version),
                ("cyt", meta.cyt, ref.cyt),
                ("datatype", meta.datatype, ref.datatype),
            ):
                if value != refv:
                    _diff(diffs, sid, file, aspect, aspect, value, refv)
            has_spill = bool(files.loc[files["sample_id"] == sid, "spillover"].iloc[0])
            if has_spill != ref_spill:
                _diff(diffs, sid, file, "spillover", "present", has_spill, ref_spill)
    all_markers = sorted({m for sid in metas for m in markers[sid] if m})
    mapping = pd.DataFrame(
        {
            sid: [
                dict(zip(markers[sid], metas[sid].pnn, strict=True)).get(m, "")
                or filled[sid].get(m, "")
                for m in all_markers
            ]
            for sid in metas
        },
        index=pd.Index(all_markers, name="marker"),
        dtype=object,
    )
    differences = pd.DataFrame(diffs, columns=list(DIFFERENCE_COLUMNS))
    result = BatchCheck(
        files=files,
        differences=differences,
        mapping=mapping,
        reference=reference,
        notes=notes,
        unread=pd.DataFrame(unread, columns=list(UNREAD_COLUMNS)),
    )
    if raise_on_error and not result.ok:
        fatal = differences[differences["fatal"]]
        lines = [
            f"{r.sample_id} ({r.file}): {r.aspect} {r.item}: {r.value}"
            + (f" (reference: {r.reference})" if r.reference else "")
            for r in fatal.itertuples()
        ]
        listing = "\n".join(f"  - {x}" for x in lines)
        raise BatchConsistencyError(f"{len(lines)} problem(s) make the batch unusable:\n{listing}")
    return result
