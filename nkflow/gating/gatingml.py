"""GatingML 2.0 interop through flowkit: apply an analyst's file, export nkflow's gates.

:func:`apply_gatingml`
    Evaluates a GatingML 2.0 document on nkflow containers. Each container's linear data are
    turned back into what a cytometer wrote (uncompensated, with the file's ``$SPILLOVER``
    attached), because every GatingML dimension names its own compensation
    (``uncompensated``, ``FCS`` or a matrix in the document) and transformation; flowkit then
    applies exactly those. Membership lands in ``adata.obs`` (one bool column per gate id)
    and a populations table (``docs/contracts.md``) is returned.
:func:`export_gatingml`
    Writes nkflow's resolved gates for one sample (:mod:`nkflow.gating.gates`) as GatingML
    2.0 with the logicle/arcsinh transforms nkflow used, so the gates, drawn on the
    transformed scale, select the same events in FlowKit, FlowJo or Cytobank. Gate ids
    must be XML names, so a population name such as ``cNK_CD27+CD11b-`` becomes the id
    ``cNK_CD27posCD11b-`` and the name is kept in the gate's ``custom_info``
    (``<nkflow population="..."/>``); :func:`apply_gatingml` restores it.

flowkit objects never leave :mod:`nkflow.gating`.
"""

from __future__ import annotations

import hashlib
import io
import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nkflow.exceptions import GatingError, GatingTemplateError, NkflowWarning
from nkflow.gating.gatingml_export import (
    DT_NS,
    GATING_NS,
    _q,
    export_gatingml,
    export_sample_gatingml,
    population_names,
)
from nkflow.gating.preconditions import require_one_sample
from nkflow.gating.stats import population_table
from nkflow.gating.xml_kind import unsupported_document, xml_kind
from nkflow.gating.xml_safety import (
    DEFAULT_MAX_XML_BYTES,
    XmlLimits,
    read_xml_tree_safely,
)
from nkflow.io.fcs import sample_id as container_sample_id
from nkflow.io.records import nkflow_record, nkflow_uns, set_record

__all__ = [
    "GatingMLQuirkWarning",
    "apply_gatingml",
    "export_gatingml",
    "export_sample_gatingml",
    "population_names",
    "validate_gatingml",
]

log = logging.getLogger(__name__)

_RESERVED_OBS = {"sample_id", "qc_pass", "metacluster", "cluster"}


def flowkit_parse_errors(fk: Any) -> tuple[type[BaseException], ...]:
    """What flowkit raises for a document (GatingML or workspace) it cannot parse.

    Besides flowkit's own errors: lxml's (a limit of libxml2 the safety check did not catch,
    e.g. when the caller raised :class:`~nkflow.gating.xml_safety.XmlLimits`), an encoding
    lxml does not know, and recursion or memory exhaustion inside flowkit.
    """
    from lxml import etree

    return (
        ValueError,
        LookupError,
        TypeError,
        AttributeError,
        NotImplementedError,
        RecursionError,
        MemoryError,
        etree.Error,
        fk.exceptions.FlowKitException,
    )


def flowkit_failure(exc: BaseException) -> str:
    """Words for an exception flowkit (or lxml under it) raised, for an error message."""
    if isinstance(exc, RecursionError):
        return "the gate tree is nested too deeply for flowkit's recursive evaluation"
    if isinstance(exc, MemoryError):
        return "flowkit ran out of memory"
    return str(exc) or type(exc).__name__


def _strategy(data: bytes, p: Path, root: Any) -> Any:
    """A flowkit ``GatingStrategy`` from vetted GatingML 2.0 bytes (``root``: their root element).

    Private: flowkit objects do not leave :mod:`nkflow.gating`.

    Raises
    ------
    GatingTemplateError
        Not GatingML 2.0 (schema-invalid), a FlowJo workspace or FACSDiva export (named),
        or flowkit failed on it.
    """
    import io

    import flowkit as fk

    kind = xml_kind(root)
    if kind.kind != "gatingml":  # say what it is, not which schema rule it breaks
        if kind.kind == "flowjo10":
            raise GatingTemplateError(
                f"{p}: a FlowJo 10 workspace, not a GatingML 2.0 document; apply it as a "
                "workspace (a .wsp file)"
            )
        raise unsupported_document(p, kind)
    buf = _flowjo_compensation_refs(p, io.BytesIO(data))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fk.parse_gating_xml(buf)
    except flowkit_parse_errors(fk) as exc:
        raise GatingTemplateError(
            f"{p}: not a valid GatingML 2.0 document ({flowkit_failure(exc)}"
            f"{_schema_error(buf)}); nkflow accepts GatingML 2.0 files (schema-valid) and "
            "FlowJo 10 workspaces (.wsp)"
        ) from None


def validate_gatingml(
    path: str | Path,
    *,
    max_bytes: int = DEFAULT_MAX_XML_BYTES,
    xml_limits: XmlLimits | None = None,
) -> list[str]:
    """Check a GatingML 2.0 file (safe XML, schema, gate tree) and list its populations.

    Parameters
    ----------
    path
        The GatingML 2.0 file.
    max_bytes
        Refuse larger files.
    xml_limits
        Structural limits of the XML safety check (nesting, elements, text size, number
        and depth of gates); default :class:`~nkflow.gating.xml_safety.XmlLimits`.

    Returns
    -------
    list of str
        Population names in document order (gate ids; quadrant ids for quadrant gates;
        names recorded by :func:`export_gatingml` where present).

    Raises
    ------
    GatingTemplateError
        Unsafe XML, a limit exceeded, schema violations (the first is named) or an invalid
        gate tree.
    """
    p = Path(path)
    data, doc = read_xml_tree_safely(p, max_bytes=max_bytes, limits=xml_limits)
    strategy = _strategy(data, p, doc)
    renames = population_names(doc)
    quad_gates = {el.get(_q(GATING_NS, "id")) for el in doc.iter(_q(GATING_NS, "QuadrantGate"))}
    known = {gid for gid, _ in strategy.get_gate_ids()}
    ids = [el.get(_q(GATING_NS, "id")) for el in doc.iter()]
    return [renames.get(i, i) for i in ids if i in known and i not in quad_gates]


class GatingMLQuirkWarning(NkflowWarning):
    """A GatingML file departs from the standard in a known, repairable way (named)."""


def _flowjo_compensation_refs(path: Path, buf: Any) -> Any:
    """Add the ``compensation-ref`` FlowJo's GatingML export leaves out, with a warning.

    Gating-ML 2.0 requires it on every dimension; FlowJo instead names compensated channels
    ``Comp-<channel>``. Such a dimension becomes ``<channel>`` with
    ``compensation-ref="FCS"`` (the file's spillover), any other one ``uncompensated``.
    """
    from lxml import etree

    buf.seek(0)
    try:
        doc = etree.parse(buf, etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.Error:  # flowkit parses it next and its failure is turned into words
        buf.seek(0)
        return buf
    ref, dt_name = _q(GATING_NS, "compensation-ref"), f"{{{DT_NS}}}name"
    fixed: list[str] = []
    for dim in doc.iter(_q(GATING_NS, "dimension")):
        if dim.get(ref) is not None:
            continue
        fcs = next(iter(dim.iter(f"{{{DT_NS}}}fcs-dimension")), None)
        name = fcs.get(dt_name, "") if fcs is not None else ""
        if fcs is not None and name.startswith("Comp-"):
            fcs.set(dt_name, name[len("Comp-") :])
            dim.set(ref, "FCS")
        else:
            dim.set(ref, "uncompensated")
        fixed.append(name)
    buf.seek(0)
    if not fixed:
        return buf
    msg = (
        f"{path}: {len(fixed)} gate dimension(s) without the compensation-ref Gating-ML 2.0 "
        "requires (FlowJo's export); 'Comp-' channels are read as compensated with the FCS "
        "spillover (compensation-ref='FCS'), the others as uncompensated: "
        + ", ".join(sorted(set(fixed)))
    )
    log.debug(msg)  # shown once, as the warning below
    warnings.warn(msg, GatingMLQuirkWarning, stacklevel=3)
    return io.BytesIO(etree.tostring(doc, xml_declaration=True, encoding="UTF-8"))


def _schema_error(buf: Any) -> str:
    """The first Gating-ML 2.0 schema violation of a (vetted) document, for the message."""
    try:
        from flowkit._resources import gml_schema
        from lxml import etree

        buf.seek(0)
        doc = etree.parse(buf, etree.XMLParser(resolve_entities=False, no_network=True))
        if gml_schema.validate(doc):
            return ""
        err = next(iter(gml_schema.error_log), None)
        return f"; schema: line {err.line}: {err.message}" if err is not None else ""
    except (ImportError, ValueError, SyntaxError, RecursionError, MemoryError):  # best effort
        return ""


def _as_containers(adata_or_samples: Any) -> list[tuple[str, Any]]:
    from anndata import AnnData

    if isinstance(adata_or_samples, AnnData):
        items = [adata_or_samples]
    elif isinstance(adata_or_samples, Mapping):
        return [(str(k), v) for k, v in adata_or_samples.items()]
    elif isinstance(adata_or_samples, Sequence) and not isinstance(adata_or_samples, str):
        items = list(adata_or_samples)
    else:
        raise GatingError(
            f"expected an AnnData, a list of AnnData or a dict sample_id -> AnnData, "
            f"got {type(adata_or_samples).__name__}"
        )
    out = []
    for i, a in enumerate(items):
        if not isinstance(a, AnnData):
            raise GatingError(f"item {i} is a {type(a).__name__}, not an AnnData container")
        out.append((container_sample_id(a, default=f"sample_{i}"), a))
    return out


def apply_gatingml(
    path: str | Path,
    adata_or_samples: Any,
    *,
    min_events: int = 100,
    nk_population: str = "NK",
    max_bytes: int = DEFAULT_MAX_XML_BYTES,
    xml_limits: XmlLimits | None = None,
) -> pd.DataFrame:
    """Apply an analyst's GatingML 2.0 file to nkflow containers.

    Parameters
    ----------
    path
        GatingML 2.0 document. Gates name their own compensation (``uncompensated``,
        ``FCS`` = the file's ``$SPILLOVER``, or a ``spectrumMatrix`` id) and transforms.
    adata_or_samples
        One container, a list of containers, or a dict ``sample_id -> container``. Gated in
        place: one bool ``obs`` column per population (named by gate id; quadrant gates give
        one column per quadrant id) and ``uns["nkflow"]["gating"]`` records the file.
    min_events
        Populations with fewer events are flagged ``low_events``.
    nk_population
        Gate id used as the denominator of ``percent_of_nk`` (NaN when absent).
    max_bytes
        Refuse XML files larger than this.
    xml_limits
        Structural limits of the XML safety check (nesting, elements, text size, number
        and depth of gates); default :class:`~nkflow.gating.xml_safety.XmlLimits`.

    Returns
    -------
    pandas.DataFrame
        The populations table (``docs/contracts.md``), one row per sample and population.

    Raises
    ------
    GatingTemplateError
        The file is unsafe, exceeds a limit of ``xml_limits``, or is not GatingML 2.0.
    GatingError
        A container lacks what the gates need (a channel, a matrix).
    """
    p = Path(path)
    data, doc = read_xml_tree_safely(p, max_bytes=max_bytes, limits=xml_limits)
    strategy = _strategy(data, p, doc)
    renames = population_names(doc)
    order = {gid: i for i, gid in enumerate(el.get(_q(GATING_NS, "id")) for el in doc.iter())}
    digest = hashlib.sha256(data).hexdigest()
    tables = []
    containers = list(_as_containers(adata_or_samples))
    for _, adata in containers:  # all before any is changed
        require_one_sample(adata, "apply_gatingml")
    for sample_id, adata in containers:
        members, parents = _gate_one(strategy, adata, sample_id, p)
        members = dict(sorted(members.items(), key=lambda kv: order.get(kv[0], len(order))))
        if renames:
            members = {renames.get(k, k): v for k, v in members.items()}
            parents = {
                renames.get(k, k): (renames.get(v, v) if v else v) for k, v in parents.items()
            }
        clash = sorted(set(members) & _RESERVED_OBS)
        if clash:
            raise GatingTemplateError(
                f"{p}: gate id(s) {clash} would overwrite container columns; rename the gates"
            )
        _set_obs_columns(adata, members)
        gating = {
            "template": str(p),
            "template_hash": digest,
            "populations": [{"name": n, "parent": parents[n] or ""} for n in members],
        }
        set_record(adata, "gating", gating)
        table = population_table(
            adata,
            populations=list(members),
            parents=parents,
            min_events=min_events,
            nk_population=nk_population,
        )
        table["sample_id"] = sample_id
        tables.append(table)
    if not tables:
        raise GatingError(f"{p}: no containers to gate")
    return pd.concat(tables, ignore_index=True)


def _set_obs_columns(adata: Any, columns: Mapping[str, np.ndarray]) -> None:
    """Write bool columns to ``adata.obs`` at once (column by column fragments the frame)."""
    existing = [name for name in columns if name in adata.obs.columns]
    for name in existing:  # keep the position of a column being re-gated
        adata.obs[name] = columns[name]
    new = {name: mask for name, mask in columns.items() if name not in adata.obs.columns}
    if new:
        adata.obs = pd.concat([adata.obs, pd.DataFrame(new, index=adata.obs.index)], axis=1)


def _gate_one(
    strategy: Any, adata: Any, sample_id: str, path: Path
) -> tuple[dict[str, np.ndarray], dict[str, str | None]]:
    import flowkit as fk

    sample = flowkit_sample_from_container(adata, sample_id)
    session = fk.Session(gating_strategy=strategy, fcs_samples=[sample])
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            session.analyze_samples(sample_id=sample.id, use_mp=False)
        for w in caught:
            log.info("%s on %s: flowkit: %s", path, sample_id, w.message)
        results = session.get_gating_results(sample.id)
    except (RecursionError, MemoryError) as exc:
        raise GatingTemplateError(
            f"{path}: gating sample {sample_id!r} failed: {flowkit_failure(exc)}"
        ) from None
    except (LookupError, ValueError, NotImplementedError, fk.exceptions.FlowKitException) as exc:
        raise GatingError(
            f"{path}: gating sample {sample_id!r} failed ({exc!r}); channels in the sample: "
            f"{', '.join(map(str, adata.var_names))}"
        ) from None
    return gating_results_to_members(results, path)


# --------------------------------------------------------------------------- shared helpers


def _linear_uncompensated(adata: Any, sample_id: str) -> np.ndarray:
    """The container's events as the cytometer wrote them (linear, uncompensated), float64."""
    nk = nkflow_uns(adata)
    if "compensated" in adata.layers:
        lin = np.asarray(adata.layers["compensated"], dtype=np.float64)
    elif not (nk.get("transform") or {}).get("kind"):
        lin = np.asarray(adata.X, dtype=np.float64)
    else:
        raise GatingError(
            f"sample {sample_id!r}: X is transformed and layers['compensated'] is missing, "
            "so the linear values GatingML gates start from are not available"
        )
    comp = nk.get("compensation") or {}
    source = str(comp.get("source", "none"))
    if source == "none":
        return lin
    spill = comp if "matrix" in comp else (nk.get("spillover") if source == "file" else None)
    if not spill or not spill.get("matrix"):
        raise GatingError(
            f"sample {sample_id!r}: compensated with {source!r} but the matrix is not stored "
            "in uns['nkflow'] (need compensation['matrix'] or spillover), so the "
            "uncompensated values cannot be recovered"
        )
    channels = [str(c) for c in spill["channels"]]
    names = list(map(str, adata.var_names))
    missing = [c for c in channels if c not in names]
    if missing:
        raise GatingError(f"sample {sample_id!r}: spillover channels {missing} not in the data")
    idx = [names.index(c) for c in channels]
    # compensated = raw @ inv(S)  =>  raw = compensated @ S
    lin = lin.copy()
    lin[:, idx] = lin[:, idx] @ np.asarray(spill["matrix"], dtype=np.float64)
    return lin


def flowkit_sample_from_container(adata: Any, sample_id: str) -> Any:
    """A flowkit ``Sample`` holding the container's linear, uncompensated events.

    The FCS ``$SPILLOVER`` is attached (so GatingML ``compensation-ref="FCS"`` works),
    with ``$PnS`` and ``$PnR`` from ``var``. Built in memory (no temporary file on disk).
    """
    import io as _io
    from array import array

    import flowio
    import flowkit as fk

    raw = _linear_uncompensated(adata, sample_id)
    names = [str(c) for c in adata.var_names]
    pns = [str(v) for v in adata.var["pns"]] if "pns" in adata.var else [""] * len(names)
    meta: dict[str, str] = {}
    if "range" in adata.var:
        for i, r in enumerate(adata.var["range"], start=1):
            if r and np.isfinite(float(r)):
                meta[f"p{i}r"] = str(round(float(r))) if float(r).is_integer() else str(r)
    spill = nkflow_record(adata, "spillover")
    if spill and spill.get("matrix"):
        chans = [str(c) for c in spill["channels"]]
        values = ",".join(repr(float(v)) for v in np.asarray(spill["matrix"], float).ravel())
        meta["spillover"] = f"{len(chans)},{','.join(chans)},{values}"
    buf = _io.BytesIO()
    values = array("f", np.ascontiguousarray(raw, dtype="<f4").tobytes())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flowio.create_fcs(
            buf, values, channel_names=names, opt_channel_names=pns, metadata_dict=meta
        )
        buf.seek(0)
        flow_data = flowio.FlowData(buf)
        return fk.Sample(flow_data, sample_id=sample_id, subsample=0)


def gating_results_to_members(
    results: Any, path: Path, *, keys: dict[str, tuple[str, ...]] | None = None
) -> tuple[dict[str, np.ndarray], dict[str, str | None]]:
    """Population name -> membership and population -> parent from flowkit results.

    Population names are gate names (GatingML ids); a name used under two parents (possible
    in FlowJo workspaces) is qualified by its path, ``"A/B/name"``. When ``keys`` is given
    it receives population -> full gate path (``("root", ..., name)``; a quadrant's path
    includes its quadrant gate).
    """
    report = results.report
    rows = []
    for r in report.itertuples(index=False):
        path_t = tuple(r.gate_path)
        full = (
            (*path_t, r.quadrant_parent, r.gate_name)
            if r.quadrant_parent
            else (*path_t, r.gate_name)
        )
        rows.append((r.gate_name, path_t, full))
    counts = pd.Series([n for n, _, _ in rows]).value_counts()
    display: dict[tuple, str] = {}
    for name, _path_t, full in rows:
        if counts[name] > 1:
            display[full] = "/".join(p for p in full[1:])
        else:
            display[full] = name
    members: dict[str, np.ndarray] = {}
    parents: dict[str, str | None] = {}
    for name, path_t, full in sorted(rows, key=lambda x: len(x[2])):
        pop = display[full]
        try:
            mask = results.get_gate_membership(name, gate_path=path_t)
        except (KeyError, ValueError) as exc:
            raise GatingError(f"{path}: no result for gate {pop!r} ({exc})") from None
        members[pop] = np.asarray(mask, dtype=bool)
        if keys is not None:
            keys[pop] = full
        parents[pop] = None if path_t == ("root",) else display.get(path_t, path_t[-1])
    return members, parents


# --------------------------------------------------------------------------- export
