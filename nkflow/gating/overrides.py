"""Manual threshold overrides: the FlowJo habit of moving a gate by hand, kept honest.

An overrides file is TOML, data like a template, read and validated here::

    # nkflow threshold overrides
    set_by = "A. Analyst"          # who set them (an entry may name its own set_by)

    [[threshold]]
    gate = "NK"                    # the gate whose events the threshold is set on
    marker = "CD69"                #   (the thresholds table's gate and marker columns)
    value = 0.52                   # transformed scale (the table's value column), or
    # value_linear = 1200.0        # the instrument's linear units (value_linear)
    batch = "B1"                   # scope, each optional: batch, tissue, sample_id
    tissue = "liver"
    reason = "FMO tube clogged; cut where the FMO of batch B0 put it"

A manual threshold wins over every computed one for the samples in its scope (the most
specific entry first: sample, then tissue, then batch). The thresholds table shows it with
``rule = manual``, ``evidence = manual``, the file as ``control_file`` and the reason and
who set it in ``note``. Polygon (scatter) gates cannot be overridden here.
"""

from __future__ import annotations

import hashlib
import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import GatingTemplateError
from ..pp.transform import arcsinh, logicle

__all__ = [
    "Overrides",
    "load_overrides",
    "manual_value",
    "override_rank",
    "overrides_toml",
]

_KEYS = {"gate", "marker", "value", "value_linear", "batch", "tissue", "sample_id", "reason",
         "set_by"}  # fmt: skip
_SCOPE = ("batch", "tissue", "sample_id")


class Overrides:
    """A validated overrides file: its records and the SHA-256 of its bytes."""

    def __init__(self, path: str, records: list[dict[str, Any]], sha256: str) -> None:
        self.path = path
        self.records = records
        self.sha256 = sha256

    def __len__(self) -> int:
        return len(self.records)


def _err(path: str | Path, where: str, msg: str) -> GatingTemplateError:
    return GatingTemplateError(f"{path}: {where}: {msg}")


def _text(path: str | Path, where: str, key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _err(path, where, f"{key} = {value!r}; valid: a string")
    return value


def load_overrides(path: str | Path) -> Overrides:
    """Read and validate an overrides file.

    Parameters
    ----------
    path
        The TOML file (see the module docstring).

    Returns
    -------
    Overrides
        Threshold records (``rule = "manual"``) ready to pass as ``thresholds=`` to
        :func:`nkflow.gating.gate`, and the file's hash.

    Raises
    ------
    GatingTemplateError
        Naming the file, the entry, the bad value and the valid choices.
    """
    p = Path(path)
    try:
        blob = p.read_bytes()
    except OSError as err:
        raise GatingTemplateError(f"{p}: overrides file cannot be read: {err}") from err
    try:
        raw = tomllib.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise GatingTemplateError(f"{p}: not valid TOML: {err}") from err
    unknown = set(raw) - {"set_by", "threshold"}
    if unknown:
        raise _err(p, "top level", f"unknown key(s) {sorted(unknown)}; valid: set_by, threshold")
    default_by = _text(p, "top level", "set_by", raw.get("set_by", ""))
    entries = raw.get("threshold", [])
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
        raise _err(p, "threshold", "valid: [[threshold]] tables")
    records = []
    for i, e in enumerate(entries):
        where = f"threshold[{i}]"
        bad = set(e) - _KEYS
        if bad:
            raise _err(p, where, f"unknown key(s) {sorted(bad)}; valid: {sorted(_KEYS)}")
        for key in ("gate", "marker", "reason"):
            if not _text(p, where, key, e.get(key, "")).strip():
                raise _err(p, where, f"{key} is required (a non-empty string)")
        who = _text(p, where, "set_by", e.get("set_by", default_by)).strip()
        if not who:
            raise _err(p, where, "set_by is required (here or at the top of the file)")
        given = [k for k in ("value", "value_linear") if k in e]
        if len(given) != 1:
            raise _err(p, where, "give exactly one of value (transformed) or value_linear")
        number = e[given[0]]
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise _err(p, where, f"{given[0]} = {number!r}; valid: a number")
        if not math.isfinite(float(number)):
            raise _err(p, where, f"{given[0]} = {number!r}; valid: a finite number")
        scope = {k: _text(p, where, k, e.get(k, "")) for k in _SCOPE}
        records.append(
            {
                **scope,
                "gate": e["gate"],
                "marker": e["marker"],
                "channel": "",
                "value": float(number) if given[0] == "value" else float("nan"),
                "value_linear": float(number) if given[0] == "value_linear" else float("nan"),
                "ci_low": float("nan"),
                "ci_high": float("nan"),
                "rule": "manual",
                "control_file": p.name,
                "n_events": 0,
                "evidence": "manual",
                "disagrees": False,
                "note": f"{e['reason'].strip()} (set by {who})",
            }
        )
    return Overrides(str(p), records, hashlib.sha256(blob).hexdigest())


def override_rank(record: Mapping[str, Any]) -> int:
    """0 for a computed threshold; for a manual one 1 + how specific its scope is."""
    if str(record.get("rule", "")) != "manual":
        return 0

    def has(k: str) -> bool:
        v = record.get(k)
        return isinstance(v, str) and bool(v)

    return 1 + 4 * has("sample_id") + 2 * has("tissue") + has("batch")


def manual_value(record: Mapping[str, Any], channel: str, adata: Any) -> float:
    """A manual threshold on the transformed scale of ``adata`` (converting ``value_linear``)."""
    value = record.get("value")
    if value is not None and np.isfinite(float(value)):
        return float(value)
    linear = float(record["value_linear"])
    transform = (adata.uns.get("nkflow", {}) or {}).get("transform", {}) or {}
    params = (transform.get("params") or {}).get(channel)
    if not params:  # channel not transformed (scatter): linear is the scale
        return linear
    if transform.get("kind") == "arcsinh":
        return float(arcsinh([linear], cofactor=float(params["cofactor"]))[0])
    keys = ("T", "W", "M", "A")
    return float(logicle([linear], **{k: float(params[k]) for k in keys})[0])


def _toml_str(text: object) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def overrides_toml(thresholds: Any, *, set_by: str = "EDIT: your name") -> str:
    """The thresholds of a run as a starting overrides file (``nkflow thresholds OUT``).

    One ``[[threshold]]`` per marker threshold of the table (density/scatter rows are left
    out), scoped as in the table, with the computed value and its rule as the reason. Edit
    the values and reasons, delete the rest, and pass the file with ``--overrides``.
    """
    lines = [
        "# nkflow threshold overrides: the thresholds of this run, as computed.",
        "# Keep the entries you want to set by hand, change value (transformed scale) or",
        "# use value_linear (instrument units) instead, write why in reason, and run with",
        "#   nkflow run INPUT --overrides THIS_FILE --resume",
        f"set_by = {_toml_str(set_by)}",
        "",
    ]
    rows = thresholds.to_dict("records") if hasattr(thresholds, "to_dict") else thresholds
    for r in rows:
        rule = str(r.get("rule", ""))
        value = r.get("value")
        if rule.startswith(("density", "fixed")) or value is None or not np.isfinite(value):
            continue
        lines.append("[[threshold]]")
        for key in ("gate", "marker"):
            lines.append(f"{key} = {_toml_str(r.get(key, ''))}")
        lines.append(f"value = {float(value)!r}")
        linear = r.get("value_linear")
        if linear is not None and np.isfinite(float(linear)):
            lines.append(f"# value_linear = {float(linear)!r}")
        for key in _SCOPE:
            v = r.get(key)
            if isinstance(v, str) and v:
                lines.append(f"{key} = {_toml_str(v)}")
        evidence = r.get("evidence") if isinstance(r.get("evidence"), str) else ""
        why = f"as computed: {rule}" + (f", evidence {evidence}" if evidence else "")
        lines += [f"reason = {_toml_str(why)}", ""]
    return "\n".join(lines)
