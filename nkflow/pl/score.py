"""Repair-profile figure: the separate parts of the score side by side, never summed.

Panels share the population axis: AREG_net with its interval (filled marker = flagged
AREG-responsive, half filled = flagged but fragile: failing the rules at an end of its AREG FMO
cut-off's interval), polarisation index RI, the clearance axis (CD107a_net with interval)
and context (%NKG2D+ when the panel gates NKG2D, and % in the trNK gate, both from the
unstimulated tube). One figure per stimulation condition (:func:`repair_profiles`):
conditions are never mixed in one panel. The short caveat (reported in human NK, not mouse;
context decides) is printed under the figure, and a mouse figure is titled exploratory.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.textpath import TextPath

from ..exceptions import ConfigError
from ..tl._score_sensitivity import fragile as is_fragile
from ..tl.caveats import SHORT_CAVEAT
from ..tl.score import RULES
from ._figure import new_figure

__all__ = ["repair_profile", "repair_profiles"]

_MAX_SAMPLES = 10
# rule codes that say why no AREG_net was computed, most specific first
_AREG_MISSING = ("AREG_NOT_IN_PANEL", "NO_AREG_THRESHOLD", "UNSTIM_AMBIGUOUS", "NO_UNSTIM")
# characters per line of a panel's note (panel widths 3 : 2 : 3 : 2)
_NOTE_WIDTH = (34, 24, 34, 24)
_COLOURS = (
    "#1b6ca8",
    "#d1495b",
    "#2e933c",
    "#edae49",
    "#6a4c93",
    "#00798c",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
)


def _plain(text: object) -> str:
    return str(text).replace("$", r"\$")


def _score_cuts(result: Any) -> tuple[float | None, float]:
    """``(min_net, ri_cut)`` of a ScoreResult, of a run's Results, or the defaults."""
    config = getattr(result, "config", None)
    if hasattr(config, "min_net"):  # a ScoreResult: its ScoringConfig
        return config.min_net, config.ri_cut
    recorded = getattr(result, "scoring_definitions", None) or {}  # a run's Results
    min_net = recorded.get("min_net")
    ri_cut = recorded.get("ri_cut")
    return (
        None if min_net is None else float(min_net),
        0.5 if ri_cut is None else float(ri_cut),
    )


def _measured(s: pd.DataFrame, column: str) -> bool:
    return column in s.columns and bool(np.isfinite(s[column].to_numpy(float)).any())


def _failed_everywhere(result: Any, s: pd.DataFrame) -> set[str]:
    """The rule codes every shown row failed, from the result's ``flags`` (when it has them)."""
    flags = getattr(result, "flags", None)
    if not isinstance(flags, pd.DataFrame) or "failed_rules" not in flags.columns or s.empty:
        return set()
    keys = [k for k in ("sample_id", "population", "condition") if k in s and k in flags]
    rows = flags.merge(s[keys].drop_duplicates(), on=keys)["failed_rules"]
    failed = [set(str(r).split(";")) for r in rows]
    return set.intersection(*failed) if failed else set()


def _empty_notes(result: Any, s: pd.DataFrame, has_context: bool) -> list[str | None]:
    """Why each panel has nothing to draw (None: it has), in the score rules' words."""
    common = _failed_everywhere(result, s)
    areg_why = next(
        (RULES[c] for c in _AREG_MISSING if c in common), "AREG+ events were not counted"
    )
    if not _measured(s, "areg_net"):
        ri_why = f"it needs AREG_net ({areg_why})"
    elif not _measured(s, "ifng_net"):
        ri_why = "it needs IFN-g, not measured in these tubes"
    else:
        ri_why = "no AREG+ or IFN-g+ events"
    notes = (
        None if _measured(s, "areg_net") else f"No AREG_net: {areg_why}",
        None if _measured(s, "ri") else f"No RI: {ri_why}",
        None if _measured(s, "cd107a_net") else "No CD107a_net: CD107a was not measured",
        None
        if has_context or _measured(s, "residency_fraction")
        else "No % trNK: trNK is not gated in the unstimulated tubes",
    )
    return [None if n is None else textwrap.fill(n, width) for n, width in
            zip(notes, _NOTE_WIDTH, strict=True)]  # fmt: skip


def _legend(fig: Figure, handles: list[Line2D], top: float) -> float:
    """The tubes' legend right of the panels, below their titles; the panels' right edge.

    Its width is measured from the labels, so a long sample id neither runs out of the
    figure nor over the last panel.
    """
    size = 7.0
    widest = max(TextPath((0, 0), h.get_label(), size=size).get_extents().width for h in handles)
    # the marker (2 em), the paddings beside it, inside and outside the frame (4 em)
    width_in = (max(widest, 4 * size) + 6.0 * size) / 72.0
    fig_w = fig.get_figwidth()
    fig.legend(handles=handles, loc="upper right", bbox_to_anchor=(1 - 0.05 / fig_w, top),
               fontsize=size, title="stim tube", title_fontsize=size)  # fmt: skip
    return 1 - (width_in + 0.35) / fig_w  # and room for a last title wider than its panel


def repair_profile(
    result: Any,
    *,
    sample_id: str | Sequence[str] | None = None,
    populations: Sequence[str] | None = None,
    flaggable_only: bool = True,
    figsize: tuple[float, float] | None = None,
    condition: str | None = None,
) -> Figure:
    """Plot the repair profile per population: AREG_net, RI, clearance and context.

    Parameters
    ----------
    result
        A :class:`nkflow.tl.ScoreResult`, the :class:`nkflow.Results` of a run, or a
        ``scores`` table. The first two also give the cut-offs drawn (``min_net``,
        ``ri_cut``); a table is drawn with the default RI cut (0.5) and no net cut.
    sample_id
        Stimulated tube(s) to show; ``None`` shows all of them (at most 10), offset
        vertically and coloured by tube.
    populations
        Populations to show, in this order (top to bottom); ``None`` shows every population
        (only flaggable NK populations when ``flaggable_only``).
    flaggable_only
        Leave out populations that can never be flagged (lineage gates, ILC control).
    figsize
        Figure size in inches; grows with the number of populations by default.
    condition
        Stimulation condition to show (``scores["condition"]``); required when the scores
        hold several (each condition is its own read-out).

    Returns
    -------
    matplotlib.figure.Figure
        Four panels sharing the population axis. A panel with nothing to draw says why in
        the score rules' words (the panel has no AREG channel, CD107a not measured, trNK not
        gated); the tubes' legend sits right of the panels, sized to its labels.

    Raises
    ------
    ConfigError
        A condition, sample or population the scores do not hold (the message lists the
        valid ones), several conditions without ``condition=``, or more stimulated tubes
        than one figure shows.
    """
    scores = result.scores if hasattr(result, "scores") else result
    s = scores.copy()
    if "condition" in s.columns:
        conditions = list(dict.fromkeys(s["condition"].astype(str)))
        if condition is not None:
            if condition not in conditions:
                raise ConfigError(
                    f"condition {condition!r} not scored; valid: {', '.join(conditions)}"
                )
            s = s[s["condition"].astype(str) == condition]
        elif len(conditions) > 1:
            raise ConfigError(
                f"{len(conditions)} stimulation conditions ({', '.join(conditions)}); pass "
                "condition= or use repair_profiles() for one figure each"
            )
        else:
            condition = conditions[0] if conditions else None
    if sample_id is not None:
        wanted = [sample_id] if isinstance(sample_id, str) else list(sample_id)
        unknown = sorted(set(wanted) - set(s["sample_id"]))
        if unknown:
            raise ConfigError(
                f"sample_id {unknown} not scored; valid: {', '.join(sorted(set(s['sample_id'])))}"
            )
        s = s[s["sample_id"].isin(wanted)]
    if flaggable_only and "flaggable" in s.columns and populations is None:
        s = s[s["flaggable"].astype(bool)]
    if populations is not None:
        unknown = sorted(set(populations) - set(s["population"]))
        if unknown:
            raise ConfigError(
                f"population(s) {unknown} not in the scores; valid: "
                f"{', '.join(sorted(set(s['population'])))}"
            )
        s = s[s["population"].isin(populations)]
        order = list(populations)
    else:
        order = list(dict.fromkeys(s["population"]))
    samples = list(dict.fromkeys(s["sample_id"]))
    if len(samples) > _MAX_SAMPLES:
        raise ConfigError(
            f"{len(samples)} stimulated tubes; pass sample_id= with at most {_MAX_SAMPLES}"
        )
    n_pop = max(len(order), 1)
    fig = new_figure(figsize=figsize or (13.0, 1.6 + 0.35 * n_pop * max(1, len(samples)) ** 0.5))
    axes = fig.subplots(1, 4, sharey=True, gridspec_kw={"width_ratios": [3, 2, 3, 2]})
    ypos = {p: i for i, p in enumerate(order)}
    height = 0.7
    step = height / max(len(samples), 1)
    # the clearance axis shows NKG2D only when the panel has a cut-off for it
    has_nkg2d = "pct_nkg2d_unstim" in s.columns and bool(
        np.isfinite(s["pct_nkg2d_unstim"].to_numpy(float)).any()
    )
    handles = []
    for j, sid in enumerate(samples):
        part = s[s["sample_id"] == sid]
        colour = _COLOURS[j % len(_COLOURS)]
        y = np.array([ypos[p] for p in part["population"]]) - height / 2 + step * (j + 0.5)
        flagged = part["areg_responsive"].astype(bool).to_numpy()
        fragile = is_fragile(part) & flagged
        net = part["areg_net"].to_numpy(float)
        err = np.vstack([net - part["areg_net_ci_low"], part["areg_net_ci_high"] - net])
        axes[0].errorbar(net, y, xerr=err, fmt="none", ecolor=colour, elinewidth=1.2)
        sturdy = flagged & ~fragile
        axes[0].scatter(net[sturdy], y[sturdy], color=colour, s=36, zorder=3)
        axes[0].scatter(
            net[~flagged], y[~flagged], facecolor="white", edgecolor=colour, s=36, zorder=3
        )
        if fragile.any():  # half filled: flagged at the cut-off, failing at an end of it
            axes[0].plot(net[fragile], y[fragile], ls="", marker="o", ms=6.5, color=colour,
                         fillstyle="left", markerfacecoloralt="white", zorder=3)  # fmt: skip
        axes[1].scatter(part["ri"], y, color=colour, marker="D", s=28)
        cd = part["cd107a_net"].to_numpy(float)
        cerr = np.vstack([cd - part["cd107a_net_ci_low"], part["cd107a_net_ci_high"] - cd])
        axes[2].errorbar(cd, y, xerr=cerr, fmt="s", color=colour, ms=4, elinewidth=1.0)
        if has_nkg2d:
            axes[3].scatter(part["pct_nkg2d_unstim"], y, color=colour, marker="^", s=28)
        axes[3].scatter(
            100.0 * part["residency_fraction"],
            y,
            facecolor="white",
            edgecolor=colour,
            marker="o",
            s=28,
        )
        handles.append(Line2D([], [], color=colour, marker="o", ls="", label=_plain(sid)))
    min_net, ri_cut = _score_cuts(result)
    axes[0].axvline(0.0, color="0.3", lw=0.8)
    if min_net is not None:
        axes[0].axvline(min_net, color="0.5", lw=0.8, ls="--")
    axes[1].axvline(ri_cut, color="0.5", lw=0.8, ls="--")
    axes[1].set_xlim(-0.05, 1.05)
    axes[2].axvline(0.0, color="0.3", lw=0.8)
    axes[3].set_xlim(-5, 105)
    titles = (
        "Trophic: AREG_net (pts, 95% CI)\nfilled = AREG-responsive, half = fragile",
        "Polarisation RI\n(>cut = repair-biased)",
        "Clearance (separate): CD107a_net\n(pts, 95% CI)",
        "Context, unstim tube:\n%NKG2D+ (triangle), % trNK (ring)"
        if has_nkg2d
        else "Context, unstim tube:\n% trNK (ring); NKG2D not gated",
    )
    notes = _empty_notes(result, s, has_nkg2d)
    for ax, title, note in zip(axes, titles, notes, strict=True):
        ax.set_title(title, fontsize=9)
        ax.grid(axis="x", color="0.9", lw=0.6)
        ax.tick_params(labelsize=8)
        if note is not None and order:
            ax.text(0.5, 0.5, _plain(note), transform=ax.transAxes, ha="center", va="center",
                    fontsize=8, color="0.35", bbox={"fc": "white", "ec": "0.8"})  # fmt: skip
    axes[0].set_yticks(range(len(order)), [_plain(p) for p in order])
    axes[0].set_ylim(len(order) - 0.5, -0.5)
    top = 0.78
    right = _legend(fig, handles, top) if len(samples) > 1 else 0.98
    exploratory = "exploratory" in s.columns and bool(s["exploratory"].astype(bool).any())
    head = f"Stimulation condition: {condition}" if condition else "Repair profile"
    if exploratory:
        head += " | EXPLORATORY: AREG has not been shown in mouse NK cells"
    fig.suptitle(_plain(head), fontsize=10, x=0.01, ha="left")
    fig.text(0.01, 0.005, _plain(SHORT_CAVEAT), fontsize=7, style="italic", va="bottom", wrap=True)
    fig.subplots_adjust(left=0.16, right=right, bottom=0.2, top=top, wspace=0.08)
    return fig


def repair_profiles(result: Any, **kwargs: Any) -> dict[str, Figure]:
    """One :func:`repair_profile` figure per stimulation condition, in the scores' order.

    Parameters
    ----------
    result
        A :class:`nkflow.tl.ScoreResult`, the :class:`nkflow.Results` of a run, or a
        ``scores`` table. The first two also give the cut-offs drawn (``min_net``,
        ``ri_cut``); a table is drawn with the default RI cut (0.5) and no net cut.
    **kwargs
        Passed to :func:`repair_profile` (``populations``, ``flaggable_only``, ...).

    Returns
    -------
    dict
        ``{condition: Figure}``.
    """
    scores = result.scores if hasattr(result, "scores") else result
    if "condition" not in scores.columns:
        return {"": repair_profile(result, **kwargs)}
    return {
        str(cond): repair_profile(result, condition=str(cond), **kwargs)
        for cond in dict.fromkeys(scores["condition"].astype(str))
    }
