"""Apply a FlowJo 10 workspace (``.wsp``) through flowkit and compare with FlowJo's counts.

FlowJo stores, for every sample and gate, the event count it computed when the workspace
was saved. :func:`apply_flowjo_workspace` re-evaluates the workspace's gates on the FCS
files (with the compensation matrix stored in the workspace, normally the file's own
``$SPILLOVER``, and the workspace's per-channel transforms) and reports nkflow's count
beside FlowJo's, with the difference.

Why the numbers differ slightly
-------------------------------
FlowJo does not test gates on the raw floating-point values. It maps each event to a
display grid (``gateResolution``, typically 256 or 1024 bins per transformed axis), tests
the gate on those binned coordinates, and piles off-scale events at the axis edges before
gating. flowkit (and therefore nkflow) tests the exact geometry on the exact compensated,
transformed values. Events within about one bin of a gate edge or beyond the axis range
can therefore land on different sides: expect differences of a few events, typically well
under 1% of a population; large differences point at a real problem (a different file,
compensation edited after saving, a stale workspace whose counts were never refreshed, or
a gate FlowJo could not evaluate, stored as ``count="-1"``).
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from nkflow.exceptions import FCSReadError, GatingError, GatingTemplateError
from nkflow.gating.gatingml import (
    flowkit_failure,
    flowkit_parse_errors,
    gating_results_to_members,
)
from nkflow.gating.stats import population_table
from nkflow.gating.xml_kind import unsupported_document, xml_kind
from nkflow.gating.xml_safety import (
    DEFAULT_MAX_XML_BYTES,
    XmlLimits,
    read_xml_tree_safely,
)

__all__ = ["COMPARISON_COLUMNS", "WorkspaceResult", "apply_flowjo_workspace", "flowjo_counts"]

log = logging.getLogger(__name__)

COMPARISON_COLUMNS = [
    "sample_id",
    "population",
    "gate_path",
    "parent",
    "count_nkflow",
    "count_flowjo",
    "difference",
    "difference_percent",
]

_NODE_TAGS = {"Population", "NotNode", "OrNode", "AndNode"}


@dataclass(frozen=True)
class WorkspaceResult:
    """What applying a FlowJo workspace gives.

    Attributes
    ----------
    comparison
        One row per sample and gate: ``sample_id, population, gate_path`` (``"/"``-joined
        ancestors), ``parent``, ``count_nkflow``, ``count_flowjo`` (NaN when FlowJo stored
        none), ``difference`` (nkflow - FlowJo) and ``difference_percent`` (of FlowJo's).
    populations
        The populations table of ``docs/contracts.md`` (counts, % of parent with Wilson
        intervals; no marker medians, as the events stay in flowkit's workspace scale).
    membership
        ``sample_id -> DataFrame`` of bool columns, one per population, in file event order.
    n_events
        ``sample_id -> events`` of each gated file.
    """

    comparison: pd.DataFrame
    populations: pd.DataFrame
    membership: dict[str, pd.DataFrame] = field(default_factory=dict)
    n_events: dict[str, int] = field(default_factory=dict)


def _local(tag: object) -> str:
    return str(tag).rsplit("}", 1)[-1]


def _gate_children(node: Any) -> list[Any]:
    """Population, NOT, OR and AND nodes in a node's ``Subpopulations``, in document order."""
    return [
        child
        for sub in node
        if _local(sub.tag) == "Subpopulations"
        for child in sub
        if _local(child.tag) in _NODE_TAGS
    ]


def flowjo_counts(
    wsp_path: str | Path,
    *,
    max_bytes: int = DEFAULT_MAX_XML_BYTES,
    xml_limits: XmlLimits | None = None,
) -> pd.DataFrame:
    """The event counts FlowJo saved in a workspace, per sample and gate.

    Parameters
    ----------
    wsp_path
        FlowJo workspace (parsed with entities and external DTDs refused).
    max_bytes
        Refuse larger files.
    xml_limits
        Structural limits of the XML safety check (nesting, elements, text size, gates per
        sample and gate depth); default :class:`~nkflow.gating.xml_safety.XmlLimits`.

    Returns
    -------
    pandas.DataFrame
        Columns ``sample_id`` (the sample node's name, as flowkit names samples),
        ``gate_path`` (tuple starting with ``"root"``), ``gate_name``, ``count_flowjo``
        (float; NaN where FlowJo stored ``-1``, i.e. not computed).

    Raises
    ------
    GatingTemplateError
        Unsafe XML or a limit of ``xml_limits`` exceeded.
    """
    _, root = read_xml_tree_safely(wsp_path, max_bytes=max_bytes, limits=xml_limits)
    return _counts(root)


def _counts(root: Any) -> pd.DataFrame:
    """:func:`flowjo_counts` of a workspace's element tree, walked without recursion."""
    rows: list[dict[str, object]] = []
    for sample_node in root.iter():
        if _local(sample_node.tag) != "SampleNode":
            continue
        sample_id = sample_node.get("name", "")
        # depth first (a gate, then its subpopulations, then its next sibling), as FlowJo
        # lists them; an explicit stack, so deep hierarchies cannot exhaust the recursion
        stack = [(child, ("root",)) for child in reversed(_gate_children(sample_node))]
        while stack:
            node, path = stack.pop()
            name = node.get("name", "")
            raw = node.get("count")
            try:
                count = float(raw) if raw is not None else np.nan
            except ValueError:
                count = np.nan
            rows.append(
                {
                    "sample_id": sample_id,
                    "gate_path": path,
                    "gate_name": name,
                    "count_flowjo": count if count >= 0 else np.nan,
                }
            )
            stack.extend((child, (*path, name)) for child in reversed(_gate_children(node)))
    return pd.DataFrame(rows, columns=["sample_id", "gate_path", "gate_name", "count_flowjo"])


def _fcs_list(fcs_paths_or_folder: str | Path | Iterable[str | Path]) -> list[str]:
    if isinstance(fcs_paths_or_folder, (str, Path)):
        p = Path(fcs_paths_or_folder)
        if p.is_dir():
            files = sorted(str(f) for f in p.iterdir() if f.suffix.lower() == ".fcs")
        else:
            files = [str(p)]
    else:
        files = [str(f) for f in fcs_paths_or_folder]
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        raise GatingError(f"FCS files not found: {', '.join(missing)}")
    if not files:
        raise GatingError(f"no .fcs files in {fcs_paths_or_folder}")
    return files


def apply_flowjo_workspace(
    wsp_path: str | Path,
    fcs_paths_or_folder: str | Path | Iterable[str | Path],
    *,
    group: str | None = None,
    sample_ids: Mapping[str, str] | None = None,
    min_events: int = 100,
    max_bytes: int = DEFAULT_MAX_XML_BYTES,
    xml_limits: XmlLimits | None = None,
) -> WorkspaceResult:
    """Apply a FlowJo 10 workspace to its FCS files; compare nkflow's counts with FlowJo's.

    Parameters
    ----------
    wsp_path
        FlowJo 10 workspace (``.wsp``). FlowJo 9 XML workspaces are not supported by
        flowkit and raise :class:`~nkflow.exceptions.GatingTemplateError`.
    fcs_paths_or_folder
        The FCS files (or a folder of them); files are matched to the workspace's samples
        by ``$FIL``/file name, as flowkit does. Samples of the workspace without a file
        are skipped (logged).
    group
        Only this sample group of the workspace (default: all samples).
    sample_ids
        ``FCS path -> sample id`` for the tables (as given in ``fcs_paths_or_folder``);
        default, and for a file not in it, the workspace's sample name (its file name).
    min_events
        Populations with fewer events are flagged ``low_events``.
    max_bytes
        Refuse larger XML files.
    xml_limits
        Structural limits of the XML safety check (nesting, elements, text size, gates per
        sample and gate depth); default :class:`~nkflow.gating.xml_safety.XmlLimits`.

    Returns
    -------
    WorkspaceResult
        Comparison table, populations table and per-event membership.

    Raises
    ------
    GatingTemplateError
        Unsafe XML, a limit of ``xml_limits`` exceeded, not a FlowJo 10 workspace (a
        FlowJo 9 XML workspace or a BD FACSDiva export is named as such), or flowkit
        failed on its gate tree (recursion, memory).
    FCSReadError
        flowkit cannot read one of the FCS files (named).
    GatingError
        Missing FCS files or a sample flowkit cannot gate.
    """
    import flowkit as fk
    from flowio.exceptions import FlowIOException

    wsp = Path(wsp_path)
    data, root = read_xml_tree_safely(wsp, max_bytes=max_bytes, limits=xml_limits)
    kind = xml_kind(root)
    if kind.kind == "gatingml":
        raise GatingTemplateError(
            f"{wsp}: a GatingML 2.0 document, not a FlowJo workspace; apply it as GatingML"
        )
    if kind.kind != "flowjo10":  # before any FCS file is read: say what the document is
        raise unsupported_document(wsp, kind)
    counts = _counts(root)
    buf = io.BytesIO(data)
    files = _fcs_list(fcs_paths_or_folder)
    given = {str(Path(k)): str(v) for k, v in (sample_ids or {}).items()}
    rename: dict[str, str] = {}  # flowkit's sample id (the file name) -> the caller's
    n_events: dict[str, int] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        samples = []
        for f in files:
            try:
                samples.append(fk.Sample(f, use_flowjo_labels=True, subsample=0))
            except (FlowIOException, ValueError, KeyError, IndexError, OSError) as exc:
                raise FCSReadError(f, f"flowkit cannot read it ({exc})") from None
            sid = str(samples[-1].id)
            rename[sid] = given.get(str(Path(f)), sid)
            n_events[rename[sid]] = int(samples[-1].event_count)
        try:
            ws = fk.Workspace(buf, fcs_samples=samples)
        except flowkit_parse_errors(fk) as exc:
            raise GatingTemplateError(
                f"{wsp}: cannot be read as a FlowJo 10 workspace ({flowkit_failure(exc)})"
            ) from None
        sample_ids = ws.get_sample_ids(group_name=group)
        if not sample_ids:
            raise GatingError(
                f"{wsp}: none of its samples matched the FCS files given ({', '.join(files)})"
            )
        results = {}
        for sid in sample_ids:
            try:
                ws.analyze_samples(sample_id=sid, use_mp=False)
                results[sid] = ws.get_gating_results(sid)
            except (RecursionError, MemoryError) as exc:
                raise GatingTemplateError(
                    f"{wsp}: gating sample {sid!r} failed: {flowkit_failure(exc)}"
                ) from None
            except (
                LookupError,
                ValueError,
                NotImplementedError,
                fk.exceptions.FlowKitException,
            ) as exc:
                raise GatingError(f"{wsp}: gating sample {sid!r} failed ({exc!r})") from None
    for w in caught:
        log.info("%s: flowkit: %s", wsp, w.message)

    comparison, tables, membership = [], [], {}
    for wsp_sid, res in results.items():
        sid = rename.get(wsp_sid, wsp_sid)
        keys: dict[str, tuple[str, ...]] = {}
        members, parents = gating_results_to_members(res, wsp, keys=keys)
        membership[sid] = pd.DataFrame(members)
        counts_only = ad.AnnData(
            obs=membership[sid].set_axis([str(i) for i in range(len(membership[sid]))]),
            uns={"nkflow": {"sample": {"sample_id": sid}}},
        )
        tables.append(
            population_table(
                counts_only, populations=list(members), parents=parents, min_events=min_events
            )
        )
        fj = counts[counts["sample_id"] == wsp_sid]
        fj_lut = {(*r.gate_path, r.gate_name): r.count_flowjo for r in fj.itertuples()}
        for pop, full in keys.items():
            fj_count = fj_lut.get(full)
            if fj_count is None and len(full) > 2:  # FlowJo lists quadrants without the quad gate
                fj_count = fj_lut.get((*full[:-2], full[-1]))
            comparison.append(
                {
                    "sample_id": sid,
                    "population": pop,
                    "gate_path": "/".join(full[:-1]),
                    "parent": parents[pop] or "",
                    "count_nkflow": int(members[pop].sum()),
                    "count_flowjo": np.nan if fj_count is None else float(fj_count),
                }
            )
    comp = pd.DataFrame(comparison, columns=COMPARISON_COLUMNS[:6])
    comp["difference"] = comp["count_nkflow"] - comp["count_flowjo"]
    with np.errstate(invalid="ignore", divide="ignore"):
        comp["difference_percent"] = np.where(
            comp["count_flowjo"] > 0, 100.0 * comp["difference"] / comp["count_flowjo"], np.nan
        )
    populations = pd.concat(tables, ignore_index=True)
    gated = {sid: n for sid, n in n_events.items() if sid in membership}
    return WorkspaceResult(
        comparison=comp, populations=populations, membership=membership, n_events=gated
    )
