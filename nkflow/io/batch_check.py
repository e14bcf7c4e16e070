"""The result of :func:`nkflow.io.check_batch` and its plain-text report.

:class:`BatchCheck` holds the per-file summary, every difference against the reference
layout and the marker -> channel mapping; :meth:`BatchCheck.to_string` is what ``nkflow
check`` prints, with one column per distinct mapping rather than one per file.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd

from .panel_labels import unread_by_label, unread_items
from .text_safety import escape_frame, escape_text

__all__ = ["DIFFERENCE_COLUMNS", "UNREAD_COLUMNS", "BatchCheck"]

DIFFERENCE_COLUMNS = ("sample_id", "file", "aspect", "item", "value", "reference", "fatal")
UNREAD_COLUMNS = ("sample_id", "file", "channel", "label")
# (aspect, item) of differences that make one file unusable without making the batch so
_FILE_FAILURES = {
    ("unreadable", "file"),
    ("panel", "channels"),
    ("marker", "all markers"),
    ("technology", "file"),
}


@dataclass
class BatchCheck:
    """Result of :func:`check_batch`.

    Attributes
    ----------
    files
        One row per file: sample_id, file, fcs_version, cyt, datatype, events, channels,
        spillover (bool), error (``""`` when readable).
    differences
        Long table ``sample_id, file, aspect, item, value, reference, fatal``; aspects are
        ``unreadable``, ``panel``, ``channel``, ``marker``, ``marker_channel``, ``range``,
        ``fcs_version``, ``cyt``, ``datatype``, ``spillover``. ``panel``/``channels`` (none
        of the user panel's channels is in the file) and ``marker``/``all markers`` (no
        channel carries any marker of the reference) make that file unusable, like
        ``unreadable``; see :attr:`problems`.
    mapping
        Marker (index) x sample_id (columns) -> channel; ``""`` where a file lacks it.
    reference
        The sample_id whose layout the others were compared with: one with the most common
        channel layout, preferring samples over controls and more resolved markers.
    notes
        Non-fatal remarks on the user panel, one line each: rows whose channel is in no
        readable file of the batch (ignored; a file's channel that differs only in case or
        punctuation is named) and marker names the alias table does not know (kept as
        written; the closest canonical marker is named). Empty without a panel.
    unread
        One row per file and channel whose label names a stain the alias table does not
        read as a marker (:func:`nkflow.io.unread_labels`): ``sample_id, file, channel,
        label``. Those channels carry no marker, so gating, clustering and the report leave
        them out until a panel file names them; never fatal.
    """

    files: pd.DataFrame
    differences: pd.DataFrame
    mapping: pd.DataFrame
    reference: str
    notes: list[str] = field(default_factory=list)
    unread: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=UNREAD_COLUMNS))

    @property
    def ok(self) -> bool:
        """True when no difference is fatal."""
        return not bool(self.differences["fatal"].any()) if len(self.differences) else True

    @property
    def failed(self) -> list[str]:
        """Sample ids whose files could not be read."""
        return list(self.files.loc[self.files["error"] != "", "sample_id"])

    def unread_lines(self) -> list[str]:
        """One line per label and channel not read as a marker, with how many files carry it.

        Returns
        -------
        list of str
            ``'CD28 BV605' (BV605-A, all 3 files)``, worded by
            :func:`~nkflow.io.panel_labels.unread_items`; empty when every label is read.
        """
        n_files = len(self.files) - len(self.failed)
        return unread_items(unread_by_label(self.unread), n_files=n_files)

    @property
    def problems(self) -> pd.DataFrame:
        """One row per file that cannot be used as it is: ``sample_id, file, reason``.

        A file is listed when it is unreadable, holds none of the user panel's channels,
        has no channel carrying a marker of the reference (unstained and single-stain
        controls excepted), holds data that cannot be analysed as they are (raw spectral
        detectors, values already transformed), holds data of another technology than
        most files (mass among flow cytometry files, or the reverse), or has a fatal
        difference;
        ``reason`` joins its problems with ``"; "``. Empty when every file is usable.
        """
        reasons: dict[tuple[str, str], list[str]] = {}
        for r in self.differences.itertuples():
            if (r.aspect, r.item) in _FILE_FAILURES:
                text = str(r.value)
            elif r.fatal:
                text = f"{r.aspect} {r.item}: {r.value}"
                text += f" (reference: {r.reference})" if r.reference else ""
            else:
                continue
            reasons.setdefault((str(r.sample_id), str(r.file)), []).append(text)
        rows = [(sid, file, "; ".join(texts)) for (sid, file), texts in reasons.items()]
        return pd.DataFrame(rows, columns=["sample_id", "file", "reason"])

    def to_string(self, *, refused: int = 0, plan_failed: bool = False) -> str:
        """A plain-text report: files, differences, panel notes, unread labels, marker map.

        Names and values from files and sheets are escaped (:func:`escape_text`), so a
        newline or terminal escape in a file name cannot start a line of its own.

        Parameters
        ----------
        refused
            Further files the gating plan cannot use (counted as unusable in the verdict).
        plan_failed
            Whether no gating plan could be made for the batch: the verdict says so and is
            not OK, however well the layouts agree.

        Returns
        -------
        str
            Its first line is the verdict: ``OK``, or what is wrong.
        """
        n_bad = len(self.problems) + refused
        verdict = "NOT RECONCILABLE" if not self.ok else ""
        if n_bad:
            verdict += ("; " if verdict else "") + f"{n_bad} file(s) unusable"
        if plan_failed:
            verdict += ("; " if verdict else "") + "gating plan FAILED"
        verdict = verdict or "OK"
        lines = [
            f"{len(self.files)} file(s); reference layout: "
            f"{escape_text(self.reference) or 'none'}; {verdict}",
            "",
            "Files:",
            escape_frame(self.files).to_string(index=False),
            "",
        ]
        if len(self.differences):
            diffs = self.differences.sort_values("fatal", ascending=False, kind="stable")
            lines += ["Differences:", escape_frame(diffs).to_string(index=False), ""]
        else:
            lines += ["Differences: none", ""]
        if self.notes:
            notes = [f"  - {escape_text(n)}" for n in self.notes]
            lines += ["Panel notes (not fatal):", *notes, ""]
        if unread := self.unread_lines():
            lines += [
                "Labels not read as markers (not fatal; these channels are left out of the "
                "analysis until a panel file names their markers):",
                *(f"  - {escape_text(n)}" for n in unread),
                "",
            ]
        if len(self.mapping):
            lines += _mapping_lines(self.mapping)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_string()


def _mapping_lines(mapping: pd.DataFrame, limit: int = 6) -> list[str]:
    """The marker -> channel table, one column per distinct mapping of the batch's files.

    A batch from one instrument maps every file alike: one column, not one per file (a
    60-file batch would print 60 identical columns). Up to ``limit`` files that all
    differ keep a column each, under their sample ids.
    """
    groups: dict[tuple[str, ...], list[str]] = {}
    for sid in mapping.columns:
        groups.setdefault(tuple(mapping[sid].astype(str)), []).append(str(sid))
    if len(groups) == len(mapping.columns) and len(groups) <= limit and len(groups) > 1:
        return ["Marker -> channel per sample:", escape_frame(mapping).to_string()]
    if len(groups) == 1:
        table = pd.DataFrame({f"all {len(mapping.columns)} file(s)": mapping.iloc[:, 0]})
        return ["Marker -> channel (the same in every file):", escape_frame(table).to_string()]
    names = [chr(ord("A") + i) if i < 26 else f"L{i + 1}" for i in range(len(groups))]
    table = pd.DataFrame(
        {name: list(layout) for name, layout in zip(names, groups, strict=True)},
        index=mapping.index,
    )
    legend = [
        f"  {name}: {len(sids)} file(s): {_preview(escape_text(s) for s in sids)}"
        for name, sids in zip(names, groups.values(), strict=True)
    ]
    return [
        f"Marker -> channel ({len(groups)} different mappings in the batch):",
        escape_frame(table).to_string(),
        *legend,
    ]


def _preview(items: Iterable[str], limit: int = 6) -> str:
    items = list(items)
    more = f", ... ({len(items)} in all)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more
