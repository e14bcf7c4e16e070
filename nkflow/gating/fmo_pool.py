"""Replicate FMO tubes pooled into one threshold.

Several FMO tubes of one marker for the same tissue, batch, donor, timepoint and condition
(:func:`nkflow.io.pairing.fmo_replicate_key`) are replicates of one control. Their events
in the gate a threshold is set on are pooled and the FMO percentile is taken once, on all
of them, so the cut-off and its order-statistic interval use every replicate event
instead of the first tube's alone.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from .thresholds import fmo_threshold

__all__ = ["FmoValues", "pool_fmo_replicates"]

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
