"""Figure galleries of the report, and the ids that let a listed sample link to its plot.

:func:`gallery` lays figures out as thumbnails that enlarge on click (pure CSS);
:func:`sample_anchors` gives each per-sample gating plot an id from its sample id, so the
overview's tables and lists (:func:`sample_link`) can point at it. :func:`gating_gallery`
lays the per-sample gating plots out by tissue (:func:`gating_groups`), control tubes in a
group of their own, under headings that count the tubes, with a list of the groups to jump
to. The groups are never collapsed: a link into a closed ``<details>`` does not open it in
every browser, and the report runs no script to open it (its policy forbids scripts).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..io.metadata import SAMPLE_ROLES
from .figures import FigureItem, data_uri, image_size
from .tables import esc

__all__ = [
    "GalleryGroup",
    "gallery",
    "gating_gallery",
    "gating_groups",
    "is_control_role",
    "sample_anchors",
    "sample_link",
]

_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_.-]+")
#: statuses of a tube the analysis lacks (it has no gating plot)
_FAILED = ("failed", "parse-failed", "qc-failed")
#: the id of the list of groups, and the prefix of each group's id (no sample anchor
#: starts with it: those start with ``gating-``)
GROUPS_ID = "plots"
#: the heading of the group of control tubes
CONTROLS = "Controls"
_NO_TISSUE = "(tissue not given)"


def _unique_ids(names: Sequence[str], prefix: str) -> list[str]:
    """``<prefix>-<safe name>`` per name, clashes numbered ``-2``, ``-3`` ... in order."""
    used: set[str] = set()
    out = []
    for name in names:
        base = f"{prefix}-{_UNSAFE_ID.sub('-', name).strip('-') or 'sample'}"
        anchor, n = base, 1
        while anchor.lower() in used:
            n += 1
            anchor = f"{base}-{n}"
        used.add(anchor.lower())
        out.append(anchor)
    return out


def sample_anchors(items: Sequence[FigureItem], prefix: str = "gating") -> dict[str, str]:
    """An element id per figure, from its caption (a sample id): ``gating-<safe id>``.

    Characters other than letters, digits, ``_``, ``.`` and ``-`` become ``-``; ids that
    would clash (``a b`` and ``a-b``) get ``-2``, ``-3`` ... in figure order.

    Parameters
    ----------
    items
        The figures (each ``caption`` a sample id).
    prefix
        The ids' prefix (keeps them apart from the sections' ids).

    Returns
    -------
    dict
        ``figure name -> id``.
    """
    anchors = _unique_ids([item.caption for item in items], prefix)
    return {item.name: anchor for item, anchor in zip(items, anchors, strict=True)}


def sample_link(sample_id: Any, anchors: Mapping[str, str] | None) -> str:
    """A sample id as escaped HTML, linked to its gating plot when it has one."""
    sid = str(sample_id)
    anchor = (anchors or {}).get(sid)
    return f'<a href="#{esc(anchor)}">{esc(sid)}</a>' if anchor else esc(sid)


def gallery(
    items: Sequence[FigureItem],
    *,
    wide: bool = False,
    captions: Mapping[str, str] | None = None,
    counter: list[int],
    ids: Mapping[str, str] | None = None,
    badges: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """Figures as a grid of thumbnails that enlarge on click (pure CSS).

    Parameters
    ----------
    items
        Encoded figures.
    wide
        One figure per row, shown at full width.
    captions
        Extra caption text per figure name (escaped).
    counter
        A one-element list used to number figures across the page.
    ids
        Element id per figure name (:func:`sample_anchors`); default ``fig-<number>``.
    badges
        Short marks per figure name shown under its caption (escaped): what was
        flagged on it.

    Returns
    -------
    str
        HTML.
    """
    if not items:
        return ""
    captions = captions or {}
    out = [f'<div class="gallery{" wide" if wide else ""}">']
    for item in items:
        counter[0] += 1
        width, height = image_size(item.data)
        size = f' width="{width}" height="{height}"' if width and height else ""
        extra = captions.get(item.name, "")
        cap = f"<b>{esc(item.caption)}</b>" + (f"<br>{esc(extra)}" if extra else "")
        marks = (badges or {}).get(item.name, ())
        if marks:
            cap += "<br>" + "".join(f'<span class="mark">{esc(m)}</span>' for m in marks)
        anchor = (ids or {}).get(item.name) or f"fig-{counter[0]}"
        out.append(
            f'<figure id="{esc(anchor)}"><label class="zoom" title="Click to enlarge">'
            f'<input type="checkbox" aria-label="Enlarge figure {counter[0]}">'
            f'<img src="{data_uri(item.data)}" alt="{esc(item.name)}"{size}>'
            f"</label><figcaption>Figure {counter[0]}. {cap}</figcaption></figure>"
        )
    out.append("</div>")
    return "".join(out)


def is_control_role(role: Any) -> bool:
    """Whether a sheet role names a control tube, not a sample.

    Controls: FMO, single stain, unstained, positive control; samples: ``sample``,
    ``unstim``, ``stim`` or no role.
    """
    text = "" if role is None or (isinstance(role, float) and role != role) else str(role)
    return text.strip().lower() not in SAMPLE_ROLES  # anything else is a control tube


def _role_mark(role: str) -> str:
    """``fmo:CD69`` -> ``FMO CD69``; ``positive_control`` -> ``positive control``."""
    kind, _, marker = role.partition(":")
    kind = {"fmo": "FMO"}.get(kind.lower(), kind.replace("_", " "))
    return f"{kind} {marker}".strip()


@dataclass(frozen=True)
class GalleryGroup:
    """One group of the gating gallery: one tissue's sample tubes, or the control tubes.

    Attributes
    ----------
    title
        The tissue, or :data:`CONTROLS`.
    anchor
        The group's element id (``plots-<title>``).
    items
        Its gating plots: by donor, then timepoint, in the sheet's order of each.
    tubes
        Its tubes in the batch (the status table's rows, else the plotted ones).
    failed
        ``(sample id, status)`` of its tubes the analysis lacks: they have no plot.
    unplotted
        ``(sample id, why)`` of its other tubes without a plot (an FMO tube sets the
        batch's thresholds and is not gated on its own; a skipped tube was not run).
    flagged
        Its plotted tubes that carry a flag.
    """

    title: str
    anchor: str
    items: tuple[FigureItem, ...]
    tubes: int
    failed: tuple[tuple[str, str], ...] = ()
    unplotted: tuple[tuple[str, str], ...] = ()
    flagged: int = 0


def _sheet(metadata: pd.DataFrame | None) -> pd.DataFrame | None:
    """The sheet indexed by sample id (first row of each), or None without one."""
    if metadata is None or metadata.empty or "sample_id" not in metadata.columns:
        return None
    meta = metadata.drop_duplicates("sample_id")
    return meta.set_index(meta["sample_id"].astype(str))


def _text(value: Any) -> str:
    return "" if value is None or str(value) in ("nan", "None", "<NA>") else str(value).strip()


def _ranks(meta: pd.DataFrame, col: str, first: Sequence[Any] = ()) -> dict[str, int]:
    """Each value of a sheet column by its first appearance (``first`` before the rest)."""
    seen = [_text(v) for v in meta[col]] if col in meta.columns else []
    given = [str(v) for v in first if str(v) in seen]
    return {v: i for i, v in enumerate(dict.fromkeys([*given, *seen]))}


def gating_groups(
    items: Sequence[FigureItem],
    metadata: pd.DataFrame | None,
    status: pd.DataFrame | None = None,
    flags: Mapping[str, Sequence[str]] | None = None,
) -> list[GalleryGroup]:
    """The gating plots grouped by tissue, control tubes in a group of their own.

    Parameters
    ----------
    items
        The gating figures (each ``caption`` a sample id).
    metadata
        The metadata sheet (``sample_id``, ``tissue``; ``role``, ``donor``, ``timepoint``
        when present, and ``attrs["timepoint_order"]``, the run's order of timepoints).
    status
        The run's status table (``sample_id``, ``status``): counts each group's tubes,
        and names those that failed or have no plot.
    flags
        ``sample id -> flags`` of the plotted tubes (counted per group).

    Returns
    -------
    list of GalleryGroup
        Tissues in the sheet's order, then tubes the sheet gives no tissue, then the
        controls; within a group, plots by donor then timepoint (each in the sheet's
        order; ties keep the figures' order). Empty when the sheet has no ``tissue``
        column: there is nothing to group by.
    """
    meta = _sheet(metadata)
    if meta is None or "tissue" not in meta.columns:
        return []
    flags = flags or {}
    states: dict[str, str] = {}
    roles: dict[str, str] = {}
    if status is not None and not status.empty and "sample_id" in status.columns:
        for row in status.to_dict("records"):
            sid = _text(row["sample_id"])
            if sid:
                states[sid], roles[sid] = _text(row.get("status")), _text(row.get("role"))

    def cell(sid: str, col: str) -> str:
        return _text(meta.at[sid, col]) if sid in meta.index and col in meta.columns else ""

    def role_of(sid: str) -> str:
        return cell(sid, "role") or roles.get(sid, "")

    # (kind, tissue): a tissue's samples, samples of no tissue, then the controls (a
    # tissue named like a group's title is still a tissue)
    def group_of(sid: str) -> tuple[int, str]:
        if is_control_role(role_of(sid)):
            return (2, "")
        return (0, cell(sid, "tissue")) if cell(sid, "tissue") else (1, "")

    tissue_rank = _ranks(meta, "tissue")
    donor_rank = _ranks(meta, "donor")
    time_rank = _ranks(meta, "timepoint", metadata.attrs.get("timepoint_order") or ())
    last = len(meta)

    def order(item: FigureItem) -> tuple[int, int, int]:
        sid = item.caption
        # controls: by tissue first (their group mixes the tissues)
        tissue = tissue_rank.get(cell(sid, "tissue"), last) if group_of(sid)[0] == 2 else 0
        return (tissue, donor_rank.get(cell(sid, "donor"), last),
                time_rank.get(cell(sid, "timepoint"), last))  # fmt: skip

    members: dict[tuple[int, str], list[str]] = {}
    for sid in dict.fromkeys([*states, *(item.caption for item in items)]):
        members.setdefault(group_of(sid), []).append(sid)
    keys = sorted(members, key=lambda k: (k[0], tissue_rank.get(k[1], last)))
    titles = [tissue or (_NO_TISSUE, CONTROLS)[kind - 1] for kind, tissue in keys]
    plotted = {item.caption for item in items}
    groups = []
    for key, title, anchor in zip(keys, titles, _unique_ids(titles, GROUPS_ID), strict=True):
        shown = sorted((item for item in items if group_of(item.caption) == key), key=order)
        failed = tuple((s, states[s]) for s in members[key] if states.get(s) in _FAILED)
        rest = [s for s in members[key] if s not in plotted and states.get(s) not in _FAILED]
        why = ["FMO" if role_of(s).lower().startswith("fmo:") and states[s] == "ok"
               else states[s] for s in rest]  # fmt: skip
        groups.append(
            GalleryGroup(
                title=title,
                anchor=anchor,
                items=tuple(shown),
                tubes=len(members[key]),
                failed=failed,
                unplotted=tuple(zip(rest, why, strict=True)),
                flagged=sum(1 for item in shown if flags.get(item.caption)),
            )
        )
    return groups


def _captions(items: Sequence[FigureItem], meta: pd.DataFrame | None) -> dict[str, str]:
    """``tissue · timepoint · stimulation`` per plot; a control's role first (``FMO CD69 · ..``)."""
    if meta is None:
        return {}
    out = {}
    for item in items:
        if item.caption not in meta.index:
            continue
        row = meta.loc[item.caption]
        role = _text(row["role"]) if "role" in meta.columns else ""
        bits = [_role_mark(role)] if is_control_role(role) else []
        bits += [_text(row[c]) for c in ("tissue", "timepoint", "stimulation") if c in meta]
        out[item.name] = " · ".join(b for b in bits if b)
    return out


def _count_text(group: GalleryGroup) -> str:
    """``10 tubes: 9 plotted, 1 flagged, 1 failed`` (what the group holds)."""
    text = f"{group.tubes} tube{'s' if group.tubes != 1 else ''}: {len(group.items)} plotted"
    for n, what in ((group.flagged, "flagged"), (len(group.failed), "failed"),
                    (len(group.unplotted), "without a plot")):  # fmt: skip
        text += f", {n} {what}" if n else ""
    return text


def _unplotted_note(group: GalleryGroup) -> str:
    """The group's tubes without a plot, named, with why (failed ones link to the list)."""
    notes = []
    if group.failed:
        names = ", ".join(f"{esc(s)} ({esc(st)})" for s, st in group.failed)
        notes.append(
            f'Failed, so not plotted: {names}; the <a href="#overview">batch overview</a> '
            "gives each reason."
        )
    fmo = [s for s, why in group.unplotted if why == "FMO"]
    if fmo:
        notes.append(
            f"{esc(', '.join(fmo))}: FMO tube{'s' if len(fmo) > 1 else ''}, which set the "
            "thresholds above and are not gated on their own."
        )
    other = [(s, why) for s, why in group.unplotted if why != "FMO"]
    if other:
        notes.append("Not plotted: " + ", ".join(f"{esc(s)} ({esc(w or 'no plot')})"
                                                   for s, w in other) + ".")  # fmt: skip
    return "".join(f'<p class="hint">{n}</p>' for n in notes)


def gating_gallery(
    items: Sequence[FigureItem],
    *,
    metadata: pd.DataFrame | None,
    counter: list[int],
    ids: Mapping[str, str] | None = None,
    status: pd.DataFrame | None = None,
    flags: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """The per-sample gating plots, one per row, grouped by tissue (:func:`gating_groups`).

    Each group opens with a heading that names the tissue and counts its tubes (plotted,
    flagged, failed, without a plot), and a list of the groups precedes them when there
    is more than one. Nothing is collapsed, so a link to a plot (``ids``) always lands on
    it, in any browser, with or without scripts; the sticky navigation bar does not hide
    its top (the stylesheet's ``scroll-margin-top``).

    Parameters
    ----------
    items
        The gating figures (each ``caption`` a sample id).
    metadata
        The metadata sheet (tissue, role, donor, timepoint; captions). Without a
        ``tissue`` column the plots stay one gallery, in the figures' order.
    counter
        A one-element list used to number figures across the page.
    ids
        Element id per figure name (:func:`sample_anchors`).
    status
        The run's status table (counts each group's tubes; names the failed ones).
    flags
        ``sample id -> flags`` (short text) shown under a plot and counted per group.

    Returns
    -------
    str
        HTML.
    """
    meta = _sheet(metadata)
    flags = flags or {}
    badges = {item.name: flags[item.caption] for item in items if flags.get(item.caption)}
    captions = _captions(items, meta)

    def show(figures: Sequence[FigureItem]) -> str:
        return gallery(figures, wide=True, captions=captions, counter=counter, ids=ids,
                       badges=badges)  # fmt: skip

    groups = gating_groups(items, metadata, status, flags)
    if not groups:
        return show(items)
    out = []
    if len(groups) > 1:
        links = "".join(
            f'<li><a href="#{g.anchor}">{esc(g.title)}</a> {esc(_count_text(g))}</li>'
            for g in groups
        )
        out.append(f'<ul class="groups" id="{GROUPS_ID}">{links}</ul>')
    up = f' <a class="up" href="#{GROUPS_ID}">all groups</a>' if len(groups) > 1 else ""
    for g in groups:
        body = show(g.items) or '<p class="empty">No plot in this group.</p>'
        out.append(
            f'<div class="ggroup" id="{g.anchor}"><h4>{esc(g.title)} '
            f'<span class="count">{esc(_count_text(g))}</span>{up}</h4>'
            f"{_unplotted_note(g)}{body}</div>"
        )
    return "".join(out)
