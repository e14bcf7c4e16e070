"""Acquisition quality control: margin (saturated) events and unstable Time stretches.

:func:`qc_margins` flags events at a channel's ceiling (and scatter piled at its
floor); :func:`qc_time` (in :mod:`nkflow.pp.timeqc`) removes unstable stretches of the
acquisition; :func:`qc` runs both and records what each removed, per file. Its two
halves, :func:`qc_events` (what to remove) and :func:`apply_qc` (record and remove), let
a caller that reads a file twice (the pipeline's batch-pool and sample passes) run QC once.
Every step costs time linear in events x channels (a file declaring 100,000
parameters is as cheap per value as one with 20).
"""

from __future__ import annotations

import copy
import inspect
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from anndata import AnnData

from nkflow._events import subset_events
from nkflow.exceptions import ChannelNotFoundError, ConfigError
from nkflow.io.records import nkflow_record, set_record
from nkflow.pp.timeqc import _kinds, _label, qc_time

__all__ = ["apply_qc", "qc", "qc_events", "qc_margins", "qc_time"]

log = logging.getLogger(__name__)


def _linear_raw(adata: AnnData, cols: list[int]) -> np.ndarray:
    """Raw (uncompensated, untransformed) float32 values of ``cols``, rebuilt if needed."""
    if "compensated" in adata.layers:
        src = np.asarray(adata.layers["compensated"])
    elif nkflow_record(adata, "transform") is not None:
        raise ConfigError(f"{_label(adata)}: margins need linear data; run qc before transform")
    else:
        src = np.asarray(adata.X)
    x = np.take(src, cols, axis=1).astype(np.float32, copy=False)
    comp = nkflow_record(adata, "compensation") or {}
    if "compensated" in adata.layers and comp.get("channels") and comp.get("matrix"):
        # raw = compensated @ S, only for the compensated channels among ``cols``
        col_of = {str(c): j for j, c in enumerate(adata.var_names)}
        pos = {j: i for i, j in enumerate(cols)}
        chans = [col_of[c] for c in comp["channels"]]
        need = [k for k, j in enumerate(chans) if j in pos]
        if need:
            spill = np.asarray(comp["matrix"], dtype=np.float64)[:, need]
            raw = np.take(src, chans, axis=1).astype(np.float64) @ spill
            for i, k in enumerate(need):
                x[:, pos[chans[k]]] = raw[:, i]
    return x


def _ceilings(adata: AnnData, cols: list[int]) -> np.ndarray:
    """Largest value each channel can hold: ``$PnR - 1`` decoded like the events.

    Log-amplified channels (``$PnE = f1,f2``, f1 > 0) hold ``f2 * 10^(f1 (R-1)/R)``;
    linear ones ``(R - 1) / $PnG``. NaN when the range is unknown.
    """
    fcs = nkflow_record(adata, "fcs") or {}
    kw = {str(k).upper(): v for k, v in (fcs.get("keywords") or {}).items()}
    if "range" in adata.var.columns:
        ranges = adata.var["range"].to_numpy(dtype=np.float64)
    else:
        ranges = np.full(adata.n_vars, np.nan)
    out = np.full(len(cols), np.nan)
    for i, j in enumerate(cols):
        r = ranges[j]
        if not (np.isfinite(r) and r > 0):
            continue
        try:
            f1, f2 = (float(v) for v in str(kw.get(f"$P{j + 1}E", "0,0")).split(",")[:2])
        except ValueError:
            f1, f2 = 0.0, 0.0
        try:
            gain = float(kw.get(f"$P{j + 1}G", 1.0)) or 1.0
        except ValueError:
            gain = 1.0
        if f1 > 0:
            out[i] = (f2 if f2 > 0 else 1.0) * 10.0 ** (f1 * (r - 1) / r)
        else:
            out[i] = (r - 1) / gain
    return out


def _margin_mask(
    adata: AnnData,
    channels: Sequence[str] | None,
    kinds: Sequence[str],
    lower_kinds: Sequence[str],
    upper: bool,
    lower: bool,
    min_pile_fraction: float,
    max_channel_fraction: float,
) -> tuple[np.ndarray, dict[str, int], list[str], list[str], list[str]]:
    names = [str(c) for c in adata.var_names]
    all_kinds = _kinds(adata)
    if channels is None:
        cols = [j for j, k in enumerate(all_kinds) if k in kinds or k in lower_kinds]
        up_sel = np.array([all_kinds[j] in kinds for j in cols], dtype=bool)
        low_sel = np.array([all_kinds[j] in lower_kinds for j in cols], dtype=bool)
    else:
        col_of = {c: j for j, c in enumerate(names)}
        missing = [c for c in channels if c not in col_of]
        if missing:
            raise ChannelNotFoundError(", ".join(missing), names, source=_label(adata))
        cols = [col_of[c] for c in channels]
        up_sel = low_sel = np.ones(len(cols), dtype=bool)
    chans = [names[j] for j in cols]
    n = adata.n_obs
    if not chans or n == 0:
        return np.zeros(n, dtype=bool), dict.fromkeys(chans, 0), chans, [], []
    x = _linear_raw(adata, cols)
    flags = np.zeros(x.shape, dtype=bool)
    no_ceiling: list[str] = []
    if upper:
        ceil = _ceilings(adata, cols)
        top = x.max(axis=0).astype(np.float64)
        # a channel whose data exceed the decoded $PnR has no hard ceiling (e.g. CyTOF)
        beyond = np.isfinite(ceil) & (top > ceil * (1 + 1e-3))
        no_ceiling = [c for c, b, u in zip(chans, beyond, up_sel, strict=True) if b and u]
        use = up_sel & np.isfinite(ceil) & ~beyond
        thr = np.where(use, ceil * (1 - 1e-6), np.inf)  # rebuilt raw values may round
        flags |= x >= thr.astype(np.float32)
    if lower and low_sel.any():
        lows = np.flatnonzero(low_sel)  # only these can pile at their floor (scatter)
        xl = x[:, lows]
        at_min = xl <= xl.min(axis=0)
        pile = np.count_nonzero(at_min, axis=0) >= max(2.0, min_pile_fraction * n)
        flags[:, lows] |= at_min & pile
    counts = np.count_nonzero(flags, axis=0)  # as flags.sum(axis=0), without the int cast
    implausible = counts > max_channel_fraction * n
    if implausible.any():
        flags[:, implausible] = False
    per = dict(zip(chans, (int(v) for v in counts), strict=True))
    skipped = [c for c, b in zip(chans, implausible, strict=True) if b]
    return flags.any(axis=1), per, chans, no_ceiling, skipped


def qc_margins(
    adata: AnnData,
    *,
    channels: Sequence[str] | None = None,
    kinds: Sequence[str] = ("scatter", "fluorescence"),
    lower_kinds: Sequence[str] = ("scatter",),
    upper: bool = True,
    lower: bool = True,
    min_pile_fraction: float = 0.001,
    max_channel_fraction: float = 0.2,
    key_added: str | None = "qc_margin_pass",
) -> dict[str, Any]:
    """Flag saturated (margin) events.

    Upper margin: the raw value reaches the channel's ceiling, ``$PnR - 1`` decoded
    like the events (``$PnE`` anti-log, ``$PnG`` gain). Channels whose data exceed
    that ceiling (mass cytometry, where ``$PnR`` is no limit) are skipped and listed.
    Lower margin: the value equals the channel's minimum while at least
    ``min_pile_fraction`` of the events pile up there; by default only on scatter,
    because a pile at the bottom of a fluorescence channel (log amplifiers, zero
    counts in mass cytometry) holds ordinary negative cells. Works on raw linear
    data; after compensation the raw values are rebuilt from the recorded matrix.

    Parameters
    ----------
    adata
        Sample container (linear ``X``).
    channels
        Channels to check (both margins); default the channels of ``kinds`` (upper)
        and ``lower_kinds`` (lower).
    kinds
        ``var["kind"]`` values checked for the upper margin when ``channels`` is None.
    lower_kinds
        ``var["kind"]`` values checked for the lower margin when ``channels`` is None.
    upper, lower
        Check the upper / lower margin.
    min_pile_fraction
        Fraction of events that must sit at the minimum for it to count as a margin.
    max_channel_fraction
        A channel flagging more than this fraction of the events is not removing
        margin artefacts (e.g. a width channel piled at 0, a log FSC at its floor):
        it is left out, listed in ``params["implausible"]`` and logged as a warning.
    key_added
        Bool obs column written (True = passes); None writes nothing.

    Returns
    -------
    dict
        ``passed`` (bool array), ``removed`` (events failing), ``per_channel`` counts
        (before the ``max_channel_fraction`` rule) and ``params`` (including
        ``no_ceiling``: channels skipped for the upper margin, and ``implausible``).
    """
    bad, per, chans, no_ceiling, implausible = _margin_mask(
        adata, channels, kinds, lower_kinds, upper, lower, min_pile_fraction, max_channel_fraction
    )
    if implausible:
        log.warning(
            "%s: margin check left out %s: they flag more than %.0f%% of the events",
            _label(adata),
            {c: per[c] for c in implausible},
            100 * max_channel_fraction,
        )
    if no_ceiling:
        log.info("%s: no upper margin on %s (data exceed $PnR)", _label(adata), no_ceiling)
    if key_added is not None:
        adata.obs[key_added] = ~bad
    return {
        "passed": ~bad,
        "removed": int(bad.sum()),
        "per_channel": per,
        "params": {
            "channels": chans,
            "kinds": list(kinds),
            "lower_kinds": list(lower_kinds),
            "upper": bool(upper),
            "lower": bool(lower),
            "min_pile_fraction": float(min_pile_fraction),
            "max_channel_fraction": float(max_channel_fraction),
            "no_ceiling": no_ceiling,
            "implausible": implausible,
        },
    }


def _summary(rec: dict[str, Any], time_run: bool, skipped: str | None) -> str:
    """One true sentence on what QC removed from this file."""
    n_in, n_out = rec["n_in"], rec["n_out"]
    pct = 100.0 * (n_in - n_out) / n_in if n_in else 0.0
    text = f"QC kept {n_out:,} of {n_in:,} events ({pct:.1f}% removed"
    parts = []
    if rec["margins_checked"]:
        parts.append(f"{rec['removed_margin']:,} as margin events")
    if time_run and skipped is None:
        n = len(rec["time_stretches"])
        where = "; ".join(
            f"events {s['first_event']:,}-{s['last_event']:,} ({s['kind']}: "
            f"{', '.join(s['signals']) or 'neighbouring stretches'})"
            for s in rec["time_stretches"][:3]
        )
        more = f" and {n - 3} more" if n > 3 else ""
        if n:
            plural = "es" if n > 1 else ""
            parts.append(
                f"{rec['removed_time']:,} by time QC in {n} unstable stretch{plural}: {where}{more}"
            )
        else:
            parts.append("0 by time QC (no unstable stretch)")
    text += (": " + "; ".join(parts) if parts else "") + ")."
    if time_run and skipped is not None:
        text += f" Time QC was skipped: {skipped}."
    elif not time_run:
        text += " Time QC was off."
    return text


def _check_options(fn: Any, name: str, options: dict[str, Any] | None) -> None:
    """Refuse an option ``fn`` does not take, naming the ones it does (not a TypeError)."""
    valid = [
        p.name
        for p in list(inspect.signature(fn).parameters.values())[1:]
        if p.name != "mask" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    unknown = sorted(set(options or {}) - set(valid))
    if unknown:
        raise ConfigError(
            f"qc: {name} {unknown} not options of {fn.__name__}; valid: {sorted(valid)}"
        )


def qc_events(
    adata: AnnData,
    *,
    time: bool = True,
    margins: bool = True,
    margin_kwargs: dict[str, Any] | None = None,
    time_kwargs: dict[str, Any] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """What :func:`qc` would do to ``adata``, without changing it.

    Parameters
    ----------
    adata
        Sample container with linear data.
    time, margins, margin_kwargs, time_kwargs
        As in :func:`qc`.

    Returns
    -------
    passed : ndarray of bool
        Events that pass.
    record : dict
        The per-file record :func:`qc` stores (``remove`` is added by :func:`apply_qc`).
    """
    _check_options(qc_margins, "margin_kwargs", margin_kwargs)
    _check_options(qc_time, "time_kwargs", time_kwargs)
    n_in = adata.n_obs
    passed = np.ones(n_in, dtype=bool)
    params: dict[str, Any] = {"time": bool(time), "margins": bool(margins)}
    removed_margin = removed_time = bins_removed = 0
    stretches: list[dict[str, Any]] = []
    skipped = None
    if margins:
        res = qc_margins(adata, **({"key_added": None} | (margin_kwargs or {})))
        passed &= res["passed"]
        removed_margin = res["removed"]
        params["margin"] = res["params"] | {"per_channel": res["per_channel"]}
    if time:
        res = qc_time(adata, mask=passed, **({"key_added": None} | (time_kwargs or {})))
        passed &= res["passed"]
        removed_time = res["removed"]
        bins_removed = res["bins_removed"]
        stretches = res["stretches"]
        skipped = res["skipped"]
        params["time_qc"] = res["params"] | {"bins": res["bins"], "skipped": skipped}
    frac = (lambda k: float(k / n_in)) if n_in else (lambda k: 0.0)
    n_out = int(passed.sum())
    record: dict[str, Any] = {
        "n_in": int(n_in),
        "n_out": n_out,
        "removed_time": int(removed_time),
        "removed_margin": int(removed_margin),
        "removed_fraction": frac(n_in - n_out),
        "removed_time_fraction": frac(removed_time),
        "removed_margin_fraction": frac(removed_margin),
        "bins_removed": int(bins_removed),
        "time_qc": "off" if not time else "skipped" if skipped is not None else "ran",
        "time_qc_skipped": skipped,
        "margins_checked": bool(margins),
        "time_stretches": stretches,
    }
    record["summary"] = _summary(record, bool(time), skipped)
    record["params"] = params
    return passed, record


def apply_qc(
    adata: AnnData,
    passed: np.ndarray,
    record: dict[str, Any],
    *,
    remove: bool = True,
    inplace: bool = True,
) -> AnnData | None:
    """Record a QC outcome from :func:`qc_events` on the same events, as :func:`qc` does.

    Writes ``obs["qc_pass"]`` and ``uns["nkflow"]["qc"]`` (a copy of ``record`` with
    ``params.remove``) and drops the failing events when ``remove``.

    Parameters
    ----------
    adata
        The container the outcome was computed on (same events, same order).
    passed, record
        The outcome.
    remove, inplace
        As in :func:`qc`.

    Returns
    -------
    AnnData or None
        The QC'd container when ``inplace=False``.

    Raises
    ------
    ValueError
        When the outcome does not fit the container's events.
    ConfigError
        QC already removed events from this container (:func:`qc` explains).
    """
    _refuse_second_removal(adata)
    passed = np.asarray(passed, dtype=bool)
    if passed.shape != (adata.n_obs,) or record.get("n_in") != adata.n_obs:
        raise ValueError(
            f"{_label(adata)}: QC outcome for {record.get('n_in')} events "
            f"({passed.size} flags) does not fit {adata.n_obs} events"
        )
    if not inplace:
        adata = adata.copy()
    record = copy.deepcopy(record)
    params = record["params"]  # "remove" goes after "time" and "margins", as qc() records it
    record["params"] = {"time": params["time"], "margins": params["margins"],
                        "remove": bool(remove)} | params  # fmt: skip
    adata.obs["qc_pass"] = passed
    set_record(adata, "qc", record)
    log.info("%s: %s", _label(adata), record["summary"])
    if remove and not passed.all():
        return subset_events(adata, passed, inplace=inplace)
    return None if inplace else adata


def qc(
    adata: AnnData,
    *,
    time: bool = True,
    margins: bool = True,
    remove: bool = True,
    margin_kwargs: dict[str, Any] | None = None,
    time_kwargs: dict[str, Any] | None = None,
    inplace: bool = True,
) -> AnnData | None:
    """Run margin QC, then time QC on the events that pass it.

    Writes bool ``obs["qc_pass"]`` and ``uns["nkflow"]["qc"]``, the per-file record:

    ``n_in``, ``n_out``
        Events before and after QC.
    ``removed_margin``, ``removed_time``
        Events removed as margin events, and by time QC (among those passing margins).
    ``removed_fraction``, ``removed_margin_fraction``, ``removed_time_fraction``
        The same as fractions of ``n_in``.
    ``bins_removed``
        Time bins removed.
    ``time_qc``
        ``"ran"``, ``"skipped"`` or ``"off"``; ``time_qc_skipped`` holds the reason
        (e.g. ``"no Time channel"``) or None.
    ``margins_checked``
        Whether margin QC ran.
    ``time_stretches``
        One dict per removed stretch (see :func:`qc_time`): first/last event,
        events, Time span, kind and the signals out of line.
    ``summary``
        One sentence saying what was removed and why.
    ``params``
        Every setting, per step.

    The two halves are :func:`qc_events` (what to remove) and :func:`apply_qc` (record
    and remove), for callers that reuse one outcome.

    Parameters
    ----------
    adata
        Sample container with linear data (run before ``transform``).
    time, margins
        Which checks to run.
    remove
        Drop failing events (else keep them, flagged in ``qc_pass``).
    margin_kwargs, time_kwargs
        Options passed to :func:`qc_margins` and :func:`qc_time`.
    inplace
        Modify ``adata`` and return None; else return a new container.

    Returns
    -------
    AnnData or None
        The QC'd container when ``inplace=False``.

    Raises
    ------
    ConfigError
        An option of ``margin_kwargs`` / ``time_kwargs`` that :func:`qc_margins` /
        :func:`qc_time` does not take (the message lists those it does). Or QC already
        removed events from this container: a second pass would take the gap
        the first left for a flow-rate drop and remove good events around it.
    """
    _refuse_second_removal(adata)
    passed, record = qc_events(
        adata, time=time, margins=margins, margin_kwargs=margin_kwargs, time_kwargs=time_kwargs
    )
    return apply_qc(adata, passed, record, remove=remove, inplace=inplace)


def _refuse_second_removal(adata: AnnData) -> None:
    """Refuse QC on events QC already removed events from.

    A second pass would read the gap the first left as a flow-rate drop, remove good events
    around it and overwrite the first record.
    """
    done = nkflow_record(adata, "qc") or {}
    if done and (done.get("params") or {}).get("remove", True):
        raise ConfigError(
            f"{_label(adata)}: QC already removed events from this container "
            f"({done.get('n_in')} -> {done.get('n_out')}); not run twice (read the file again "
            "to QC it with other settings, or run QC with remove=False to flag only)"
        )
