"""Whether an AREG flag holds across its FMO cut-off's own interval.

An AREG net compares the stimulated and the unstimulated tube counted at one FMO cut-off, a
percentile of the FMO tube with an exact order-statistic interval (``ci_low``, ``ci_high``
of its threshold record). On a rare readout (AREG+ at 1-2 %) moving the cut-off within that
interval can move the net by more than ``min_net``, so a flag can rest on the cut-off's
exact place. :func:`nkflow.tl.count_positive` counts AREG+ events at both ends of the
interval (:data:`~nkflow.tl.counts.CUT_END_COLUMNS`); here the flag's own AREG rules
(interval lower bound > 0, ``AREG_net >= min_net``, AREG+ events >= ``min_areg_events``)
are evaluated again at each end, the same end in both tubes (one cut-off is applied to
both), against the same unstimulated partner. Nothing is tuned: the interval is the
cut-off's own, and the rules are the flag's.

A flag that does not hold at both ends stays a flag: the rule set before the data is the
point estimate. It is labelled fragile (note ``CUTOFF_FRAGILE`` and a sentence in its
message) so that a reader weighs it; nothing is unflagged silently. The positive control is
not evaluated again here: it is its own rule, read on its own gate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ._score_config import ScoringConfig
from ._score_messages import shown
from ._score_parts import _areg_rules
from .counts import CUT_END_COLUMNS

__all__ = [
    "SENSITIVITY_COLUMNS",
    "cutoff_sensitivity",
    "fragile",
    "fragile_counts",
    "fragile_sentence",
    "fragile_words",
]

#: the cut-off's two ends, as the column names say them, and how the message says them
_ENDS = {"cut_ci_low": "low", "cut_ci_high": "high"}
#: the flag's rules that move with the cut-off (events in the gate do not)
_MOVING_RULES = ("AREG_EVENTS_BELOW_MIN", "CI_LOWER_NOT_ABOVE_ZERO", "NET_BELOW_MIN")
#: the report's short words for them (the flag's message gives the numbers)
_RULE_WORDS = {
    "AREG_EVENTS_BELOW_MIN": "too few AREG+ events",
    "CI_LOWER_NOT_ABOVE_ZERO": "net interval reaches 0",
    "NET_BELOW_MIN": "net below the minimum",
}

#: columns :func:`cutoff_sensitivity` returns, in order (the scores and flags carry them)
SENSITIVITY_COLUMNS = (
    "areg_cutoff_ci_low",
    "areg_cutoff_ci_high",
    "areg_net_at_cut_ci_low",
    "areg_net_ci_low_at_cut_ci_low",
    "n_areg_stim_at_cut_ci_low",
    "failed_rules_at_cut_ci_low",
    "areg_net_at_cut_ci_high",
    "areg_net_ci_low_at_cut_ci_high",
    "n_areg_stim_at_cut_ci_high",
    "failed_rules_at_cut_ci_high",
    "holds_across_cutoff_interval",
)


def _end_counts(pairs: pd.DataFrame, column: str) -> pd.DataFrame:
    """``pairs`` with ``n_areg_stim``/``_unstim`` as counted at one end of the interval."""
    return pd.DataFrame(
        {
            "n_events_stim": pairs["n_events_stim"].to_numpy(float),
            "n_events_unstim": pairs["n_events_unstim"].to_numpy(float),
            "n_areg_stim": pairs[f"{column}_stim"].to_numpy(float),
            "n_areg_unstim": pairs[f"{column}_unstim"].to_numpy(float),
        }
    )


def _mapped(sample_ids: pd.Series, counts: pd.DataFrame, column: str) -> np.ndarray:
    """A stimulated tube's value of a per-tube ``counts`` column (NaN where absent)."""
    if column not in counts.columns:
        return np.full(len(sample_ids), np.nan)
    first = counts.drop_duplicates("sample_id").set_index("sample_id")[column]
    return pd.to_numeric(sample_ids.map(first), errors="coerce").to_numpy(float)


def cutoff_sensitivity(
    pairs: pd.DataFrame,
    counts: pd.DataFrame,
    responsive: Sequence[bool] | np.ndarray,
    cfg: ScoringConfig,
) -> pd.DataFrame:
    """Each scored row's AREG rules at both ends of its AREG cut-off's interval.

    Parameters
    ----------
    pairs
        Stimulated tubes with their pooled unstimulated partner (``n_events_stim``,
        ``n_events_unstim``, ``n_areg_at_ci_low_stim`` / ``_unstim``, ... ; the end
        counts NaN where the cut-off has no interval), one row per scored row.
    counts
        The per-tube counts (``sample_id``, ``threshold_areg_ci_low``/``_high``).
    responsive
        Whether each row is flagged AREG-responsive (every rule passed).
    cfg
        The flag's minima and the confidence of the net's interval.

    Returns
    -------
    pandas.DataFrame
        One row per row of ``pairs``, columns :data:`SENSITIVITY_COLUMNS`: the cut-off's
        ends (the stimulated tube's), per end the AREG net, its interval's lower bound,
        the stimulated tube's AREG+ events and the moving rules that fail there
        (``;``-separated), and ``holds_across_cutoff_interval`` (boolean: True when the
        flag passes its AREG rules at both ends, False when they fail at an end counted;
        ``<NA>`` for a row not flagged, or not checked: a cut-off without an interval, an
        open bound, a count not measured).
    """
    out = pd.DataFrame(index=range(len(pairs)))
    sids = pairs["sample_id"].astype(str).reset_index(drop=True)
    out["areg_cutoff_ci_low"] = _mapped(sids, counts, "threshold_areg_ci_low")
    out["areg_cutoff_ci_high"] = _mapped(sids, counts, "threshold_areg_ci_high")
    known = np.ones(len(pairs), dtype=bool)  # both ends counted
    fails = np.zeros(len(pairs), dtype=bool)  # a rule fails at an end that was counted
    for end, column in zip(_ENDS, CUT_END_COLUMNS, strict=True):
        frame = _end_counts(pairs.reset_index(drop=True), column)
        res = _areg_rules(
            frame,
            min_net=cfg.min_net,
            min_areg=cfg.min_areg_events,
            min_events=cfg.min_events,
            conf=cfg.confidence,
        )
        measured = np.isfinite(frame[["n_areg_stim", "n_areg_unstim"]].to_numpy()).all(axis=1)
        failed = [
            ";".join(r for r in _MOVING_RULES if res[r][i]) if measured[i] else ""
            for i in range(len(frame))
        ]
        out[f"areg_net_at_{end}"] = res["net"]
        out[f"areg_net_ci_low_at_{end}"] = res["lo"]
        out[f"n_areg_stim_at_{end}"] = frame["n_areg_stim"].to_numpy()
        out[f"failed_rules_at_{end}"] = failed
        known &= measured
        fails |= np.array([bool(f) for f in failed], dtype=bool)
    flagged = np.asarray(responsive, dtype=bool)
    # fragile as soon as a counted end fails; holding needs both ends counted
    out["holds_across_cutoff_interval"] = pd.array(
        [
            pd.NA if not f else False if x else True if k else pd.NA
            for f, x, k in zip(flagged, fails, known, strict=True)
        ],
        dtype="boolean",
    )
    return out[list(SENSITIVITY_COLUMNS)]


def _holds(table: pd.DataFrame) -> pd.Series:
    """``holds_across_cutoff_interval`` as lower-case text, whatever its dtype.

    Nullable boolean in memory, text read back from CSV; ``""`` when the column is absent.
    """
    if "holds_across_cutoff_interval" not in table.columns:
        return pd.Series("", index=table.index)
    return table["holds_across_cutoff_interval"].astype(str).str.strip().str.lower()


def fragile(table: pd.DataFrame) -> np.ndarray:
    """Rows whose flag does not hold at an end of its AREG cut-off's interval.

    Parameters
    ----------
    table
        The output of :func:`cutoff_sensitivity`, or scores / flags carrying its
        ``holds_across_cutoff_interval`` (read back from CSV too; none fragile without it).

    Returns
    -------
    numpy.ndarray
        Bool per row.
    """
    return (_holds(table) == "false").to_numpy(dtype=bool)


def fragile_counts(flags: pd.DataFrame | None) -> tuple[int, int, int]:
    """Flags fragile, flags checked and flags not checked at the cut-off's interval ends.

    The one count the report's flag list, the Findings and the Methods say.

    Parameters
    ----------
    flags
        ``tables/flags.csv`` (``areg_responsive``, ``holds_across_cutoff_interval``), read
        back from CSV too.

    Returns
    -------
    tuple of int
        ``(fragile, checked, not_checked)``: of the AREG-responsive rows, those that fail
        the rules at an end, those whose ends were checked (held or failed), and those
        that could not be (no interval, an open bound, a count not measured).
    """
    if flags is None or "holds_across_cutoff_interval" not in flags.columns:
        return 0, 0, 0
    holds = _holds(flags)
    flagged = flags.get("areg_responsive", pd.Series(False, index=flags.index))
    flagged = flagged.astype(str).str.strip().str.lower() == "true"
    checked = int((flagged & holds.isin(["true", "false"])).sum())
    return int((flagged & (holds == "false")).sum()), checked, int(flagged.sum()) - checked


def _cut(value: float) -> str:
    """A cut-off end as text: an open bound (too few FMO events) says so."""
    return f"{value:.3g}" if np.isfinite(value) else "open: too few FMO events to bound it"


def fragile_sentence(row: pd.Series, cfg: ScoringConfig) -> str:
    """What a fragile flag's message adds: at which end which of its rules fails.

    Parameters
    ----------
    row
        One row of :func:`cutoff_sensitivity`.
    cfg
        The flag's minima.

    Returns
    -------
    str
        ``""`` for a flag that holds (or a row not flagged, or no interval); else
        ``"; fragile: the flag rests on the AREG FMO cut-off's exact place: at the low end
        of its interval (0.381) AREG_net 0.45 pp < 1 pp; it stands on the point estimate,
        the pre-registered rule; more FMO events ... or a replicate pair would settle
        it"``.
    """
    holds = row["holds_across_cutoff_interval"]
    if pd.isna(holds) or bool(holds):
        return ""
    parts = []
    for end, word in _ENDS.items():
        failed = [c for c in str(row[f"failed_rules_at_{end}"]).split(";") if c]
        if not failed:
            continue
        said = {
            "NET_BELOW_MIN": f"AREG_net {shown(row[f'areg_net_at_{end}'], '<', cfg.min_net)} "
            f"pp < {cfg.min_net:g} pp",
            "CI_LOWER_NOT_ABOVE_ZERO": "its CI lower bound "
            f"{shown(row[f'areg_net_ci_low_at_{end}'], '<=', 0.0)} <= 0",
            "AREG_EVENTS_BELOW_MIN": f"{row[f'n_areg_stim_at_{end}']:.0f} AREG+ events < "
            f"{cfg.min_areg_events}",
        }
        where = f"at the {word} end of its interval ({_cut(row[f'areg_cutoff_ci_{word}'])})"
        parts.append(f"{where} " + ", ".join(said[c] for c in failed))
    return (
        "; fragile: the flag rests on the AREG FMO cut-off's exact place: "
        + "; ".join(parts)
        + "; it stands on the point estimate, the pre-registered rule; more FMO events "
        "(the interval's upper end is among the FMO's brightest few) or a replicate pair "
        "would settle it"
    )


def fragile_words(row: Mapping[str, Any]) -> str:
    """A flags row's fragile label for the report (``""`` when its flag holds or is no flag).

    Parameters
    ----------
    row
        A flags row (``notes``, ``holds_across_cutoff_interval``, ``areg_net_at_cut_ci_low``
        / ``_high``, ``failed_rules_at_cut_ci_low`` / ``_high``), read back from CSV too.

    Returns
    -------
    str
        ``"fragile: the flag rests on the AREG FMO cut-off's exact place (at the low end of
        its interval: net interval reaches 0, net below the minimum)"``.
    """
    holds = str(row.get("holds_across_cutoff_interval", "")).strip().lower()
    if "CUTOFF_FRAGILE" not in str(row.get("notes") or "") and holds != "false":
        return ""
    ends = []
    for end, word in _ENDS.items():
        failed = [c for c in str(row.get(f"failed_rules_at_{end}") or "").split(";") if c]
        if failed and failed != ["nan"]:
            said = ", ".join(_RULE_WORDS.get(c, c) for c in failed)
            ends.append(f"at the {word} end of its interval: {said}")
    where = f" ({'; '.join(ends)})" if ends else ""
    return f"fragile: the flag rests on the AREG FMO cut-off's exact place{where}"
