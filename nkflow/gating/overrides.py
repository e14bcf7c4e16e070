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

:func:`load_overrides` refuses bad TOML, keys and values, duplicate entries (one scope,
gate and marker) and the unedited placeholders of the starting file; a run then checks
the file against its plan before any tube is read (:func:`check_overrides`): the scope
must be the sheet's, the gate and marker a threshold the resolved template sets, and a
``value`` must lie on the transformed scale. :func:`overrides_toml` writes the starting
file: the run's manual entries active, every computed one commented out.
"""

from __future__ import annotations

import hashlib
import math
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import GatingTemplateError
from ..io.records import nkflow_record
from ..pp.transform import arcsinh, logicle

__all__ = [
    "SUPERSEDED",
    "OverrideTarget",
    "Overrides",
    "check_overrides",
    "load_overrides",
    "manual_value",
    "override_rank",
    "overrides_toml",
    "scale_range",
]

_KEYS = {"gate", "marker", "value", "value_linear", "batch", "tissue", "sample_id", "reason",
         "set_by"}  # fmt: skip
_SCOPE = ("batch", "tissue", "sample_id")
#: What ``nkflow thresholds OUT`` writes for an entry not yet edited: refused, so that a
#: starting file passed back unchanged cannot turn every computed cut-off manual.
PLACEHOLDER_SET_BY = "EDIT: your name"
GENERATED_REASON = "as computed:"
#: How a computed batch-level row that a manual override replaced starts its ``note``.
SUPERSEDED = "superseded:"


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
    seen: dict[tuple[str, ...], str] = {}
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
        if who == PLACEHOLDER_SET_BY:
            raise _err(p, where, f"set_by is still the placeholder {who!r}; write who set it")
        if e["reason"].strip().startswith(GENERATED_REASON):
            raise _err(
                p, where, f"reason is still the generated {e['reason'].strip()!r}: write why "
                "you set this cut-off, and delete the entries you do not change",
            )  # fmt: skip
        scope = {k: _text(p, where, k, e.get(k, "")) for k in _SCOPE}
        key = (*(scope[k] for k in _SCOPE), e["gate"], e["marker"])
        if key in seen:
            raise _err(
                p, where, f"same gate {e['gate']!r}, marker {e['marker']!r} and scope "
                f"{_scope_text(scope)} as {seen[key]}; keep one of them",
            )  # fmt: skip
        seen[key] = where
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


def _scope_text(scope: Mapping[str, Any]) -> str:
    parts = [f"{k} {scope[k]!r}" for k in _SCOPE if scope.get(k)]
    return ", ".join(parts) or "the whole batch"


@dataclass(frozen=True)
class OverrideTarget:
    """An analysed sample an override may reach, as planned before any tube is read.

    Attributes
    ----------
    sample_id, tissue, batch
        Its scope as the sheet gives it.
    cuts
        ``(gate, marker) -> (low, high)`` for every threshold its resolved hierarchy sets
        (the thresholds table's ``gate`` and ``marker``; polygon and density gates have
        none), with the range of the marker's scale (:func:`scale_range`; unbounded for
        an untransformed scatter channel): a ``value`` outside it is a linear value given
        as transformed.
    """

    sample_id: str
    tissue: str
    batch: str
    cuts: Mapping[tuple[str, str], tuple[float, float]]


def scale_range(kind: str, params: Mapping[str, float]) -> tuple[float, float]:
    """The transformed image of the linear scale ``[-T, T]``, widened by a tenth each side.

    Parameters
    ----------
    kind
        ``"logicle"`` (``params`` T, W, M, A) or ``"arcsinh"`` (``params`` T, cofactor).
    params
        The transform's parameters.

    Returns
    -------
    tuple of float
        ``(low, high)``: about -0.96 to 1.18 for the default logicle.
    """
    top = float(params.get("T", 262144.0))
    if kind == "arcsinh":
        lo, hi = arcsinh([-top, top], cofactor=float(params["cofactor"]))
    else:
        keys = ("T", "W", "M", "A")
        lo, hi = logicle([-top, top], **{k: float(params[k]) for k in keys})
    margin = 0.1 * (float(hi) - float(lo))
    return float(lo) - margin, float(hi) + margin


def _valid(values: Iterable[str]) -> str:
    shown = sorted({v for v in values if v})
    return ", ".join(shown) if shown else "(none)"


def check_overrides(overrides: Overrides, targets: Iterable[OverrideTarget]) -> None:
    """Refuse overrides that the planned batch would not apply as written.

    Checked for each entry: its ``sample_id``, ``tissue`` and ``batch`` are in the sheet
    and together name an analysed sample; the samples it reaches threshold its gate and
    marker; a transformed ``value`` lies on their transformed scale (a linear number given
    as ``value`` is refused, naming ``value_linear``). Duplicates are refused on reading
    (:func:`load_overrides`).

    Parameters
    ----------
    overrides
        The file, read by :func:`load_overrides`.
    targets
        Every analysed sample of the batch, with its hierarchy's cuts and scale.

    Raises
    ------
    GatingTemplateError
        Naming the file, the entry, the problem and the valid choices.
    """
    targets = list(targets)
    path = overrides.path
    for i, rec in enumerate(overrides.records):
        where = f"threshold[{i}]"
        for key in _SCOPE:
            known = {str(getattr(t, key)) for t in targets}
            if rec[key] and not any(known):
                raise _err(path, where, f"{key} = {rec[key]!r}, but no analysed sample has a "
                           f"{key} (no metadata sheet gives one): leave {key} out of the "
                           "entry, or pass a sheet with that column")  # fmt: skip
            if rec[key] and rec[key] not in known:
                raise _err(path, where, f"{key} = {rec[key]!r} is not an analysed sample's "
                           f"{key} in the sheet; valid: {_valid(known)}")  # fmt: skip
        reach = [t for t in targets if all(not rec[k] or rec[k] == getattr(t, k) for k in _SCOPE)]
        if not reach:
            raise _err(path, where, f"no analysed sample of the sheet has {_scope_text(rec)}")
        cuts = {key for t in reach for key in t.cuts}
        gate, marker = rec["gate"], rec["marker"]
        if (gate, marker) not in cuts:
            on_gate = {m for g, m in cuts if g == gate}
            what = (f"marker {marker!r} is not thresholded on gate {gate!r}; valid markers: "
                    f"{_valid(on_gate)}" if on_gate else
                    f"gate {gate!r} has no marker threshold (scatter and density gates "
                    f"cannot be overridden); valid gates: {_valid(g for g, _ in cuts)}"
                    )  # fmt: skip
            raise _err(path, where, f"{what} (in the template of {_scope_text(rec)})")
        value = rec["value"]
        if math.isfinite(value):
            ranges = [t.cuts[(gate, marker)] for t in reach if (gate, marker) in t.cuts]
            lo, hi = max(r[0] for r in ranges), min(r[1] for r in ranges)
            if not lo <= value <= hi:
                raise _err(
                    path, where, f"value = {value:g} lies outside the transformed scale "
                    f"({lo:.2f} to {hi:.2f}); did you mean value_linear = {value:g}?",
                )  # fmt: skip


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
    transform = nkflow_record(adata, "transform") or {}  # channel keys stored escaped
    params = (transform.get("params") or {}).get(channel)
    if not params:  # channel not transformed (scatter): linear is the scale
        return linear
    if transform.get("kind") == "arcsinh":
        return float(arcsinh([linear], cofactor=float(params["cofactor"]))[0])
    keys = ("T", "W", "M", "A")
    return float(logicle([linear], **{k: float(params[k]) for k in keys})[0])


def _toml_str(text: object) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


_NOTE = re.compile(r"^(?P<reason>.*) \(set by (?P<who>[^()]*)\)$", re.S)


def _blank(v: Any) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def _number(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _entry(r: Mapping[str, Any], scope: Mapping[str, str], why: str, who: str) -> list[str]:
    """One ``[[threshold]]`` entry's lines (not commented)."""
    lines = ["[[threshold]]"]
    lines += [f"{key} = {_toml_str(r.get(key, ''))}" for key in ("gate", "marker")]
    lines.append(f"value = {_number(r.get('value'))!r}")
    linear = _number(r.get("value_linear"))
    if np.isfinite(linear):
        lines.append(f"# value_linear = {linear!r}")
    lines += [f"{key} = {_toml_str(scope[key])}" for key in _SCOPE if scope.get(key)]
    lines.append(f"reason = {_toml_str(why)}")
    if who:
        lines.append(f"set_by = {_toml_str(who)}")
    return lines


def _manual_entries(rows: list[dict[str, Any]]) -> list[list[str]]:
    """The manual rows of a run as entries, with their reason and who set them.

    One entry per tissue and batch when every sample of the group has it with one reason
    and value (a tissue-wide entry stays one entry), else one per sample.
    """
    # a computed row marked superseded: a tissue- or batch-wide entry replaced it
    wide = {tuple(_blank(r.get(k)) for k in ("gate", "marker", "tissue", "batch"))
            for r in rows if _blank(r.get("note")).startswith(SUPERSEDED)}  # fmt: skip
    samples: dict[tuple[str, str], set[str]] = {}
    for r in rows:
        if _blank(r.get("sample_id")):
            samples.setdefault((_blank(r.get("tissue")), _blank(r.get("batch"))), set()).add(
                _blank(r.get("sample_id"))
            )
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for r in rows:
        if _blank(r.get("rule")) == "manual" and np.isfinite(_number(r.get("value"))):
            key = tuple(_blank(r.get(k)) for k in ("gate", "marker", "tissue", "batch", "note"))
            key += (f"{_number(r.get('value')):.6g}",)
            groups.setdefault(key, []).append(r)
    out = []
    for (gate, marker, tissue, batch, note, _), members in groups.items():
        match = _NOTE.match(note)
        why, who = (match["reason"], match["who"]) if match else (note or "manual", "")
        sids = {_blank(r.get("sample_id")) for r in members}
        whole = "" not in sids and (
            (gate, marker, tissue, batch) in wide or sids >= samples.get((tissue, batch), {""})
        )
        if whole or "" in sids:  # every sample of the group, or an entry no sample applied
            scope = {"tissue": tissue, "batch": batch, "sample_id": ""}
            if "" in sids:
                scope = {k: _blank(members[0].get(k)) for k in _SCOPE}
            out.append(_entry(members[0], scope, why, who))
            continue
        for r in sorted(members, key=lambda r: _blank(r.get("sample_id"))):
            scope = {k: _blank(r.get(k)) for k in _SCOPE}
            out.append(_entry(r, scope, why, who))
    return out


def overrides_toml(thresholds: Any) -> str:
    """The thresholds of a run as a starting overrides file (``nkflow thresholds OUT``).

    The run's manual thresholds come first, as active entries with their reason and who
    set them (an entry that reached every sample of a tissue and batch stays one entry),
    so the file passed back with ``--overrides`` gives the same cut-offs. Every computed
    marker threshold follows commented out (density and fixed rows are left out), scoped
    as in the table: uncomment the ones to set by hand, change the value, write why in
    ``reason`` and who in ``set_by``; only uncommented entries apply.

    Parameters
    ----------
    thresholds
        A run's thresholds table (``tables/thresholds.csv``) or its records.

    Returns
    -------
    str
        TOML text: ``set_by`` (a placeholder the loader refuses), then the entries.
    """
    rows = thresholds.to_dict("records") if hasattr(thresholds, "to_dict") else list(thresholds)
    manual = _manual_entries(rows)
    lines = [
        "# nkflow threshold overrides, written from a finished run.",
        "# Active entries (not commented) are the run's manual thresholds, as set.",
        "# The computed thresholds follow commented out: uncomment an entry to set it by",
        "# hand, change value (transformed scale) or give value_linear (instrument units)",
        "# instead, write why in reason and who in set_by, and run with",
        "#   nkflow run INPUT -o OUT --overrides THIS_FILE --resume",
        "# An entry whose reason still starts with 'as computed:' or whose set_by is the",
        f"# placeholder {PLACEHOLDER_SET_BY!r} is refused: delete what you do not change.",
        "",
    ]
    for entry in manual:
        lines += [*entry, ""]
    for r in rows:
        rule = _blank(r.get("rule"))
        if rule == "manual" or rule.startswith(("density", "fixed")):
            continue
        if not np.isfinite(_number(r.get("value"))):
            continue
        evidence = _blank(r.get("evidence"))
        why = f"{GENERATED_REASON} {rule}" + (f", evidence {evidence}" if evidence else "")
        scope = {k: _blank(r.get(k)) for k in _SCOPE}
        entry = _entry(r, scope, why, PLACEHOLDER_SET_BY)
        lines += [f"# {line}" for line in entry] + [""]
    return "\n".join(lines)
