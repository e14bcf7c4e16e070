"""Replicate FMO tubes pooled into one threshold.

Several FMO tubes of one marker for the same tissue, batch, donor, timepoint and condition
(:func:`nkflow.io.pairing.fmo_replicate_key`) are replicates of one control. Their events
in the gate a threshold is set on are pooled and the FMO percentile is taken once, on all
of them, so the cut-off and its order-statistic interval use every replicate event
instead of the first tube's alone.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from ..exceptions import LowEventCountWarning
from ..stats import quantile_bound_min_n
from .template import DimSpec, GateSpec, Template
from .thresholds import fmo_threshold

__all__ = ["FmoValues", "fmo_uses", "pool_fmo_replicates", "warn_small_controls"]

#: ``(control_file, gate, marker) -> (values, percentile, n_boot)``: an FMO tube's events in
#: the gate its threshold was set on, and the settings it was set with
FmoValues = Mapping[tuple[str, str, str], tuple[np.ndarray, float, int]]


def pool_fmo_replicates(
    records: Sequence[dict[str, Any]],
    values: FmoValues,
    replicate_of: Mapping[str, Hashable],
) -> list[dict[str, Any]]:
    """``records`` with the thresholds of replicate FMO tubes replaced by pooled ones.

    Parameters
    ----------
    records
        FMO threshold records (``marker``, ``gate``, ``control_file`` ...; a ``template``
        key, when present, must agree too), one per tube and gate.
    values
        Each tube's events behind its record (:data:`FmoValues`).
    replicate_of
        ``control_file -> replicate key`` for the tubes that have replicates; records of
        other tubes pass unchanged.

    Returns
    -------
    list of dict
        One record per replicate group, gate and marker, where the first tube's record
        stood: the pooled value, interval and event count, ``rule`` ending in
        ``pooled``, ``note`` naming the tubes. Records whose events are missing are left
        as they were.
    """
    groups: dict[tuple[Hashable, ...], list[int]] = {}
    for i, rec in enumerate(records):
        key = replicate_of.get(str(rec.get("control_file", "")))
        if key is not None:
            group = (key, rec.get("template", ""), rec.get("gate", ""), rec.get("marker", ""))
            groups.setdefault(group, []).append(i)
    replaced: dict[int, dict[str, Any] | None] = {}
    for members in groups.values():
        parts = [
            values.get((str(records[i]["control_file"]), records[i]["gate"], records[i]["marker"]))
            for i in members
        ]
        if len(members) < 2 or any(p is None for p in parts):
            continue
        _, percentile, n_boot = parts[0]  # type: ignore[misc]
        pooled = np.concatenate([p[0] for p in parts])  # type: ignore[index]
        value, low, high, _, n = fmo_threshold(pooled, percentile=percentile, n_boot=n_boot)
        first = records[members[0]]
        files = ", ".join(str(records[i]["control_file"]) for i in members)
        replaced[members[0]] = {
            **first,
            "value": value,
            "ci_low": low,
            "ci_high": high,
            "n_events": n,
            "rule": f"{first['rule']} pooled",
            "note": f"{len(members)} replicate FMO tubes pooled: {files}",
        }
        replaced.update({i: None for i in members[1:]})
    out = []
    for i, rec in enumerate(records):
        new = replaced.get(i, rec)
        if new is not None:
            out.append(new)
    return out


def warn_small_controls(
    records: Sequence[Mapping[str, Any]], percentile: float
) -> dict[str, list[str]]:
    """Warn of each FMO cut-off set on too few events for its interval to be bounded.

    Below :func:`nkflow.stats.quantile_bound_min_n` events (736 at the 99.5th percentile)
    the sample maximum lies below the percentile too often for a 95 % bound: the
    threshold's ``ci_high`` is open (``inf``) and the cut-off itself, an interpolation
    between the top events, is a rough one.

    Parameters
    ----------
    records
        FMO threshold records (``control_file``, ``gate``, ``marker``, ``n_events``), after
        replicate pooling (a pool may reach the count its tubes miss alone).
    percentile
        The FMO percentile the cut-offs were set at.

    Returns
    -------
    dict
        ``control_file -> messages`` of the controls warned about (for status rows).
    """
    need = quantile_bound_min_n(percentile / 100.0)
    said: dict[str, list[str]] = {}
    for rec in records:
        n = int(rec.get("n_events", 0) or 0)
        if n < need:
            msg = (
                f"FMO control {rec.get('control_file', '')}: {rec.get('marker', '')} cut-off "
                f"set on only {n} events of {rec.get('gate', '')!r}; its {percentile:g}th "
                f"percentile needs at least {need} to be bounded above at 95 % (ci_high is "
                "open: inf)"
            )
            warnings.warn(msg, LowEventCountWarning, stacklevel=3)
            said.setdefault(str(rec.get("control_file", "")), []).append(msg)
    return said


def fmo_uses(template: Template, marker: str) -> list[tuple[GateSpec, DimSpec]]:
    """The conditions of a template that take their ``marker`` cut-off from an FMO tube.

    Parameters
    ----------
    template
        The hierarchy (as written, or as resolved for a panel).
    marker
        The FMO tube's marker (``role = "fmo:<MARKER>"``).

    Returns
    -------
    list of (GateSpec, DimSpec)
        Each gate and its condition with ``rule = "fmo"`` on ``marker``; empty: a tube of
        this marker sets no cut-off (it is not used).
    """
    return [
        (g, d) for g in template.gates for d in g.dims if d.marker == marker and d.rule == "fmo"
    ]
