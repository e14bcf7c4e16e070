"""How well a user panel fits the files it is given to: rows that name no channel, unknown markers.

A panel row whose channel is in no file is ignored by :func:`nkflow.io.resolve_markers`,
and a marker name the alias table does not know is kept as written; both are usually
typos (``BV605A`` for ``BV605-A``, ``CD5six`` for ``CD56``). :func:`fit_panel` finds
them, with the file's channel that differs only in case, spaces or punctuation and the
closest canonical marker where there is one. :func:`nkflow.io.read_fcs` warns with
:meth:`PanelFit.message` (:class:`~nkflow.exceptions.PanelWarning`); ``nkflow check``
lists :meth:`PanelFit.lines` over the whole batch, so a panel shared across instruments
is only questioned for channels that no file of the batch has. Nothing here changes
which marker a channel resolves to.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .panel import _CANON_BY_NORM, _TABLE, CANONICAL_MARKERS, _norm, marker_from_text

__all__ = ["PanelFit", "fit_panel"]

#: normalised canonical names and aliases -> canonical name, for suggestions: the alias
#: table marker_from_text reads, without its viability words and dump-only markers
_SUGGEST: dict[str, str] = {
    key: canon for key, canon in _TABLE.items() if key and canon in CANONICAL_MARKERS
} | _CANON_BY_NORM
#: how alike (difflib ratio of normalised names) a canonical marker must be to be suggested
_CUTOFF = 0.6


@dataclass(frozen=True)
class PanelFit:
    """Panel rows that name no channel, and markers the alias table does not know.

    Attributes
    ----------
    panel
        The panel checked, ``channel -> marker`` (markers in canonical form where known).
    unmatched
        Panel channel -> the files' channels that differ from it only in case, spaces or
        punctuation (empty when none does), for every panel channel that is neither a
        ``$PnN`` nor a ``$PnS`` of any file.
    unknown
        Marker -> the closest canonical marker(s) (difflib's ratio on the normalised
        names, then the longer common start; ties joined by ``" or "``; ``""`` when
        none is close), for every
        non-empty panel marker that the alias table does not know.
    """

    panel: dict[str, str]
    unmatched: dict[str, list[str]] = field(default_factory=dict)
    unknown: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.unmatched or self.unknown)

    def _row(self, channel: str) -> str:
        return f"{channel!r} -> {self.panel.get(channel, '') or '(no marker)'}"

    def _near(self, channel: str) -> str:
        near = self.unmatched.get(channel) or []
        return " (did you mean " + " or ".join(repr(c) for c in near) + "?)" if near else ""

    def _marker(self, marker: str) -> str:
        channels = [c for c, m in self.panel.items() if m == marker]
        return f"{marker!r} on {', '.join(repr(c) for c in channels)}"

    def _closest(self, marker: str) -> str:
        closest = self.unknown.get(marker, "")
        return f" (closest known: {closest})" if closest else ""

    def lines(self, scope: str) -> list[str]:
        """One line per unmatched panel row and per unknown marker.

        Parameters
        ----------
        scope
            Where the channels were looked for, e.g. ``"any of the 3 file(s)"``.

        Returns
        -------
        list of str
            Empty when the panel fits.
        """
        rows = [
            f"panel row {self._row(c)} matches no channel in {scope}{self._near(c)}"
            for c in self.unmatched
        ]
        rows += [
            f"panel marker {self._marker(m)} is not in the alias table; kept as written"
            f"{self._closest(m)}"
            for m in self.unknown
        ]
        return rows

    def message(self, scope: str) -> str:
        """All of it in one sentence (``""`` when the panel fits), for a warning.

        Parameters
        ----------
        scope
            Where the channels were looked for, e.g. ``"this file"``.

        Returns
        -------
        str
        """
        parts = []
        if self.unmatched:
            rows = ", ".join(self._row(c) + self._near(c) for c in self.unmatched)
            parts.append(
                f"{len(self.unmatched)} of the panel's {len(self.panel)} row(s) name no "
                f"channel of {scope} and are ignored: {rows}"
            )
        if self.unknown:
            markers = ", ".join(self._marker(m) + self._closest(m) for m in self.unknown)
            parts.append(f"panel marker(s) not in the alias table, kept as written: {markers}")
        return "; ".join(parts)


def _known(marker: str) -> bool:
    """Whether the alias table knows a (canonicalised) panel marker."""
    return bool(marker_from_text(marker)) or _norm(marker) in _TABLE


def _common_start(a: str, b: str) -> int:
    """How many leading characters two strings share."""
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


#: a letter typed for a digit after a digit: "CD1O3" is CD103, "CD1l" CD11 ...
_DIGIT_TYPOS = ((re.compile(r"(?<=\d)o"), "0"), (re.compile(r"(?<=\d)[il]"), "1"))


def _closest(marker: str) -> str:
    """The canonical marker(s) most like ``marker`` (ties joined by " or "; "" if none).

    A letter O, I or l right after a digit is read as the digit it looks like first.
    """
    key = _norm(marker)
    for typo, digit in _DIGIT_TYPOS:
        key = typo.sub(digit, key)
    matcher = difflib.SequenceMatcher(b=key)
    scores: dict[str, tuple[float, int]] = {}
    for alias, canon in _SUGGEST.items():
        matcher.set_seq1(alias)
        if matcher.real_quick_ratio() < _CUTOFF or matcher.quick_ratio() < _CUTOFF:
            continue
        # ties of the ratio go to the longer common start ("CD5six": CD56 before CD25)
        prefix = _common_start(alias, key)
        scores[canon] = max(scores.get(canon, (0.0, 0)), (matcher.ratio(), prefix))
    best = max(scores.values(), default=(0.0, 0))
    if best[0] < _CUTOFF:
        return ""
    return " or ".join(sorted(c for c, s in scores.items() if s == best)[:3])


def fit_panel(
    panel: Mapping[str, str], layouts: Iterable[tuple[Sequence[str], Sequence[str]]]
) -> PanelFit:
    """Check a user panel against the channels of one or more files.

    A panel channel matches a file as :func:`nkflow.io.resolve_markers` matches it: a
    ``$PnN``, or failing that a ``$PnS`` (stripped). With no file given, no channel is
    reported as unmatched (there is nothing to match against).

    Parameters
    ----------
    panel
        ``channel -> marker``, as returned by :func:`nkflow.io.load_panel` (markers
        already in canonical form where the alias table knows them).
    layouts
        ``($PnN, $PnS)`` of each file.

    Returns
    -------
    PanelFit
        What does not fit; falsy when everything does.
    """
    panel = dict(panel)
    names: dict[str, None] = {}
    for pnn, pns in layouts:
        names.update(dict.fromkeys(pnn))
        names.update(dict.fromkeys(s.strip() for s in pns if s.strip()))
    unmatched: dict[str, list[str]] = {}
    if names:
        by_key: dict[str, list[str]] = {}
        for name in names:
            by_key.setdefault(_norm(name), []).append(name)
        for channel in panel:
            if channel not in names:
                key = _norm(channel)
                unmatched[channel] = list(by_key.get(key, [])) if key else []
    unknown = {m: _closest(m) for m in dict.fromkeys(panel.values()) if m.strip() and not _known(m)}
    return PanelFit(panel=panel, unmatched=unmatched, unknown=unknown)
