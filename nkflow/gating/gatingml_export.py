"""GatingML 2.0 export of nkflow's resolved gates (see :mod:`nkflow.gating.gatingml`).

Writes one sample's gates (:mod:`nkflow.gating.gates`, on the ``adata.X`` scale) with the
logicle/arcsinh transforms nkflow used, so FlowKit, FlowJo or Cytobank select the same
events. Gate ids must be XML names; the population name is kept in ``custom_info``.
"""

from __future__ import annotations

import logging
import math
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nkflow.exceptions import GatingError
from nkflow.gating.gates import BooleanGate, PolygonGate, RectangleGate, topological_order
from nkflow.io.fcs import sample_id
from nkflow.io.records import nkflow_uns

__all__ = [
    "export_gatingml",
    "export_sample_gatingml",
    "population_names",
]

log = logging.getLogger(__name__)

GATING_NS = "http://www.isac-net.org/std/Gating-ML/v2.0/gating"
XFORM_NS = "http://www.isac-net.org/std/Gating-ML/v2.0/transformations"
DT_NS = "http://www.isac-net.org/std/Gating-ML/v2.0/datatypes"
_LN10 = math.log(10.0)
#: Decades used to express an arcsinh(x / cofactor) transform as GatingML ``fasinh``.
ASINH_DECADES = 4.5


def _q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def _num(v: float) -> str:
    return repr(float(v))


def _transform_specs(transforms: Mapping[str, Any] | None) -> dict[str, tuple[str, dict, float]]:
    """Channel -> (GatingML transform element, its attributes, nkflow-to-GatingML factor)."""
    if not transforms:
        return {}
    kind = str(transforms.get("kind", "")).lower()
    params = transforms.get("params") or {}
    specs: dict[str, tuple[str, dict, float]] = {}
    for ch, prm in params.items():
        ch_kind = str(prm.get("kind", kind)).lower() if isinstance(prm, Mapping) else kind
        if ch_kind in ("", "linear", "none"):
            continue
        if ch_kind == "logicle":
            attrs = {k: float(prm[k]) for k in ("T", "W", "M", "A")}
            # nkflow logicle values on a 0..1 scale equal GatingML's (scale = 1); a
            # transform stored with a display "scale" (e.g. decades) is divided back.
            factor = 1.0 / float(prm.get("scale", 1.0))
            specs[ch] = ("logicle", attrs, factor)
        elif ch_kind == "arcsinh":
            cof = float(prm["cofactor"])
            m = float(prm.get("M", ASINH_DECADES))
            # asinh(x / c) == fasinh(x, T, M, A=0) * M * ln(10)  with  T = c * sinh(M ln 10)
            attrs = {"T": cof * math.sinh(m * _LN10), "M": m, "A": 0.0}
            specs[ch] = ("fasinh", attrs, 1.0 / (m * _LN10))
        else:
            raise GatingError(
                f"transform {ch_kind!r} of channel {ch!r} cannot be exported; "
                "valid: logicle, arcsinh, linear"
            )
    return specs


def export_gatingml(
    resolved_gates: Sequence[RectangleGate | PolygonGate | BooleanGate],
    transforms: Mapping[str, Any] | None,
    path: str | Path,
    *,
    compensation: str | Mapping[str, Any] = "FCS",
) -> Path:
    """Write nkflow's resolved gates of one sample as a GatingML 2.0 document.

    Parameters
    ----------
    resolved_gates
        The sample's gates (:mod:`nkflow.gating.gates`), coordinates on the ``adata.X``
        scale.
    transforms
        ``uns["nkflow"]["transform"]`` of that sample: ``{"kind", "params": {channel:
        {T, W, M, A} | {cofactor}}}``. Channels without parameters (scatter, time) are
        written untransformed.
    path
        Output ``.xml`` file (written atomically).
    compensation
        How the gated fluorescence values were compensated: ``"FCS"`` (the FCS file's
        own ``$SPILLOVER``, default), ``"uncompensated"``, or ``{"channels": [...],
        "matrix": [[...]]}`` (a spillover matrix, written into the document).

    Returns
    -------
    pathlib.Path
        The written file.

    Notes
    -----
    An arcsinh ``asinh(x / c)`` is written as GatingML ``fasinh`` with ``A = 0``,
    ``M = 4.5`` and ``T = c sinh(M ln 10)``, and coordinates divided by ``M ln 10``; the
    logicle parameters are written unchanged. Events lying exactly on a gate boundary may
    fall on either side after the round trip (floating-point rounding of the transform).

    Raises
    ------
    GatingError
        A gate cannot be written as GatingML: a channel transform other than logicle,
        arcsinh or linear, an invalid ``compensation``, a rectangle without a bound, a
        boolean gate whose parent is also its operand (other than in an AND) or a NOT
        without exactly one operand, or a gate type GatingML does not have.
    OutputFolderError
        The file cannot be written.
    """
    from nkflow.io.fcs import channel_kind
    from nkflow.io.write import write_bytes_atomic

    ET.register_namespace("gating", GATING_NS)
    ET.register_namespace("transforms", XFORM_NS)
    ET.register_namespace("data-type", DT_NS)
    root = ET.Element(_q(GATING_NS, "Gating-ML"))
    specs = _transform_specs(transforms)
    gates = topological_order(resolved_gates)
    read = {c for g in gates for c in g.channels}
    for ch in sorted(read & set(specs)):
        tag, attrs, _ = specs[ch]
        t_el = ET.SubElement(root, _q(XFORM_NS, "transformation"), {_q(XFORM_NS, "id"): _xid(ch)})
        ET.SubElement(t_el, _q(XFORM_NS, tag), {_q(XFORM_NS, k): _num(v) for k, v in attrs.items()})
    if isinstance(compensation, Mapping):
        comp_ref = "nkflow_spillover"
        _write_matrix(root, comp_ref, compensation)
    elif compensation in ("FCS", "uncompensated"):
        comp_ref = str(compensation)
    else:
        raise GatingError(
            f"compensation {compensation!r} is not valid; use 'FCS', 'uncompensated' or "
            "a dict with 'channels' and 'matrix'"
        )

    def dim(parent: ET.Element, ch: str, lo: float | None = None, hi: float | None = None) -> float:
        fluor = ch in specs or channel_kind(ch) == "fluorescence"
        attrs = {_q(GATING_NS, "compensation-ref"): comp_ref if fluor else "uncompensated"}
        factor = 1.0
        if ch in specs:
            attrs[_q(GATING_NS, "transformation-ref")] = _xid(ch)
            factor = specs[ch][2]
        if lo is not None:
            attrs[_q(GATING_NS, "min")] = _num(lo * factor)
        if hi is not None:
            attrs[_q(GATING_NS, "max")] = _num(hi * factor)
        d_el = ET.SubElement(parent, _q(GATING_NS, "dimension"), attrs)
        ET.SubElement(d_el, _q(DT_NS, "fcs-dimension"), {_q(DT_NS, "name"): ch})
        return factor

    used = {_xid(ch) for ch in specs}
    ids: dict[str, str] = {}
    for g in gates:
        ids[g.id] = _ncname(g.id, used)
    for g in gates:
        attrs = {_q(GATING_NS, "id"): ids[g.id]}
        if g.parent:
            attrs[_q(GATING_NS, "parent_id")] = ids[g.parent]
        if isinstance(g, RectangleGate):
            el = ET.SubElement(root, _q(GATING_NS, "RectangleGate"), attrs)
            _name_info(el, g.id)
            bounded = [d for d in g.dims if d.min is not None or d.max is not None]
            if not bounded:
                raise GatingError(f"rectangle gate {g.id!r} has no bounded dimension to export")
            for d in bounded:
                dim(el, d.channel, d.min, d.max)
        elif isinstance(g, PolygonGate):
            el = ET.SubElement(root, _q(GATING_NS, "PolygonGate"), attrs)
            _name_info(el, g.id)
            fx = dim(el, g.x_channel)
            fy = dim(el, g.y_channel)
            for x, y in g.vertices:
                v_el = ET.SubElement(el, _q(GATING_NS, "vertex"))
                for val in (x * fx, y * fy):
                    ET.SubElement(
                        v_el, _q(GATING_NS, "coordinate"), {_q(DT_NS, "value"): _num(val)}
                    )
        elif isinstance(g, BooleanGate):
            el = ET.SubElement(root, _q(GATING_NS, "BooleanGate"), attrs)
            _name_info(el, g.id)
            ops = list(g.operands)
            if g.parent and any(o.gate == g.parent for o in ops):
                # flowkit loses the parent link when the parent is also an operand; in an
                # AND the plain parent operand is redundant (parent AND parent AND x).
                if g.op != "and" or any(o.gate == g.parent and o.complement for o in ops):
                    raise GatingError(
                        f"boolean gate {g.id!r}: its parent {g.parent!r} is also an operand of "
                        f"{g.op!r}; GatingML readers cannot represent this, rewrite the gate"
                    )
                ops = [o for o in ops if o.gate != g.parent]
                if not ops:
                    raise GatingError(f"boolean gate {g.id!r} only repeats its parent")
            if g.op == "not" and len(ops) != 1:
                raise GatingError(f"boolean gate {g.id!r}: 'not' takes exactly one operand")
            if g.op in ("and", "or") and len(ops) == 1:
                ops = ops * 2  # GatingML wants two operands; A and A == A
            op_el = ET.SubElement(el, _q(GATING_NS, g.op))
            for o in ops:
                r_attrs = {_q(GATING_NS, "ref"): ids[o.gate]}
                if o.complement:
                    r_attrs[_q(GATING_NS, "use-as-complement")] = "true"
                ET.SubElement(op_el, _q(GATING_NS, "gateReference"), r_attrs)
        else:
            raise GatingError(
                f"gate {getattr(g, 'id', g)!r} of type {type(g).__name__} cannot be exported"
            )
    ET.indent(root)
    data = ET.tostring(root, encoding="UTF-8", xml_declaration=True)
    return write_bytes_atomic(Path(path), data)


def export_sample_gatingml(adata: Any, path: str | Path) -> Path:
    """Export the gates :func:`nkflow.gating.gate` resolved for one gated container.

    Reads the gates from ``uns["nkflow"]["gating"]["populations"][*]["gate"]``, the
    transforms from ``uns["nkflow"]["transform"]`` and the compensation from
    ``uns["nkflow"]["compensation"]`` (file -> ``"FCS"``, user matrix -> written into the
    document, none -> ``"uncompensated"``), then calls :func:`export_gatingml`.

    Parameters
    ----------
    adata
        A container gated by :func:`nkflow.gating.gate`.
    path
        Output ``.xml`` file.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    GatingError
        The container holds no resolved gates (it was never gated), or a gate cannot be
        written as GatingML (see :func:`export_gatingml`).
    """
    from nkflow.gating.gates import gate_from_dict

    nk = nkflow_uns(adata)
    pops = (nk.get("gating") or {}).get("populations") or []
    gates = [gate_from_dict(p["gate"]) for p in pops if p.get("gate")]
    if not gates:
        raise GatingError(
            f"sample {sample_id(adata, default='?')!r} has no resolved gates in "
            "uns['nkflow']['gating']; run nkflow.gating.gate first"
        )
    comp = nk.get("compensation") or {}
    source = str(comp.get("source", "none"))
    compensation: str | Mapping[str, Any]
    if source == "file":
        compensation = "FCS"
    elif source == "none" or not comp.get("matrix"):
        compensation = "uncompensated"
    else:
        compensation = {"channels": comp["channels"], "matrix": comp["matrix"]}
    return export_gatingml(gates, nk.get("transform"), path, compensation=compensation)


def _ncname(name: str, used: set[str]) -> str:
    """A valid, unique ``xs:ID`` for a population name (``+`` -> ``pos``, others -> ``_``)."""
    out = "".join(
        c if (c.isascii() and c.isalnum()) or c in "-_." else ("pos" if c == "+" else "_")
        for c in name
    )
    if not out or not (out[0].isalpha() or out[0] == "_"):
        out = "_" + out
    base, k = out, 2
    while out in used:
        out, k = f"{base}_{k}", k + 1
    used.add(out)
    return out


def _name_info(el: ET.Element, population: str) -> None:
    """Record the nkflow population name (ids must be XML names; names need not be)."""
    info = ET.SubElement(el, _q(DT_NS, "custom_info"))
    ET.SubElement(info, "nkflow", {"population": population})


def population_names(root: ET.Element) -> dict[str, str]:
    """Gate id -> nkflow population name recorded by :func:`export_gatingml`."""
    names: dict[str, str] = {}
    for el in root:
        gid = el.get(_q(GATING_NS, "id"))
        if not gid:
            continue
        for info in el.findall(_q(DT_NS, "custom_info")):
            for rec in info.iter("nkflow"):
                if rec.get("population"):
                    names[gid] = rec.get("population", gid)
    return names


def _xid(channel: str) -> str:
    return "xform_" + "".join(c if c.isalnum() or c in "-_." else "_" for c in channel)


def _write_matrix(root: ET.Element, ref: str, comp: Mapping[str, Any]) -> None:
    channels = [str(c) for c in comp.get("channels", [])]
    matrix = np.asarray(comp.get("matrix", []), dtype=float)
    if not channels or matrix.shape != (len(channels), len(channels)):
        raise GatingError(
            f"compensation matrix must be square with one row per channel; got "
            f"{len(channels)} channels and shape {matrix.shape}"
        )
    m_el = ET.SubElement(root, _q(XFORM_NS, "spectrumMatrix"), {_q(XFORM_NS, "id"): ref})
    for tag in ("fluorochromes", "detectors"):
        f_el = ET.SubElement(m_el, _q(XFORM_NS, tag))
        for ch in channels:
            ET.SubElement(f_el, _q(DT_NS, "fcs-dimension"), {_q(DT_NS, "name"): ch})
    for row in matrix:
        s_el = ET.SubElement(m_el, _q(XFORM_NS, "spectrum"))
        for v in row:
            ET.SubElement(s_el, _q(XFORM_NS, "coefficient"), {_q(XFORM_NS, "value"): _num(v)})
