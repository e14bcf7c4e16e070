"""Huge, deep and undecodable XML is refused with a clear error, fast (issue 13).

Each attack recipe is generated here (small versions: limits are lowered by keyword where
the real attack is hundreds of MB) and must end in a GatingTemplateError that names the
file and says what is wrong, never a traceback from expat, lxml or flowkit, a
RecursionError or minutes of work.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

from nkflow.exceptions import GatingTemplateError
from nkflow.gating.flowjo import flowjo_counts
from nkflow.gating.gatingml import apply_gatingml, validate_gatingml
from nkflow.gating.xml_safety import (
    DEFAULT_MAX_GATE_DEPTH,
    DEFAULT_MAX_GATES,
    DEFAULT_MAX_XML_DEPTH,
    XmlLimits,
    check_xml,
    read_xml_safely,
)

GML_OPEN = (
    '<gating:Gating-ML xmlns:gating="http://www.isac-net.org/std/Gating-ML/v2.0/gating" '
    'xmlns:data-type="http://www.isac-net.org/std/Gating-ML/v2.0/datatypes">'
)
GML_CLOSE = "</gating:Gating-ML>"


def _rect(gid: str, parent: str | None = None, lo: int = 20) -> str:
    par = f' gating:parent_id="{parent}"' if parent else ""
    return (
        f'<gating:RectangleGate gating:id="{gid}"{par}>'
        f'<gating:dimension gating:compensation-ref="uncompensated" gating:min="{lo}">'
        '<data-type:fcs-dimension data-type:name="FSC-H"/></gating:dimension>'
        "</gating:RectangleGate>"
    )


def _and(gid: str, refs: list[str]) -> str:
    body = "".join(f'<gating:gateReference gating:ref="{r}"/>' for r in refs)
    return (
        f'<gating:BooleanGate gating:id="{gid}"><gating:and>{body}</gating:and>'
        "</gating:BooleanGate>"
    )


def gate_chain(n: int) -> bytes:
    """GatingML with ``n`` rectangle gates, each the parent of the next."""
    gates = "".join(_rect(f"G{i}", f"G{i - 1}" if i else None) for i in range(n))
    return (GML_OPEN + gates + GML_CLOSE).encode()


def sibling_gates(n: int) -> bytes:
    """GatingML with ``n`` rectangle gates side by side (no parents)."""
    return (GML_OPEN + "".join(_rect(f"G{i}") for i in range(n)) + GML_CLOSE).encode()


def boolean_chain(n: int) -> bytes:
    """A rectangle gate and ``n - 1`` AND gates, each referring to the one before."""
    gates = _rect("G0") + "".join(_and(f"G{i}", [f"G{i - 1}", "G0"]) for i in range(1, n))
    return (GML_OPEN + gates + GML_CLOSE).encode()


def gate_cycle() -> bytes:
    return (GML_OPEN + _rect("A", "C") + _rect("B", "A") + _rect("C", "B") + GML_CLOSE).encode()


def workspace(depth: int, *, siblings: int = 1) -> bytes:
    """A FlowJo-style workspace: one sample whose populations nest ``depth`` levels deep."""
    leaf = "".join(f'<Population name="S{i}" count="1"/>' for i in range(siblings - 1))
    inner = "".join(f'<Subpopulations><Population name="P{i}" count="{i}">' for i in range(depth))
    close = "</Population></Subpopulations>" * depth
    return (
        '<?xml version="1.0" encoding="UTF-8"?><Workspace version="20.0"><SampleList><Sample>'
        f'<SampleNode name="s1.fcs" count="100"><Subpopulations>{leaf}</Subpopulations>'
        f"{inner}{close}</SampleNode></Sample></SampleList></Workspace>"
    ).encode()


def nested(depth: int) -> bytes:
    return (GML_OPEN + "<x>" * depth + "</x>" * depth + GML_CLOSE).encode()


def declared(encoding: str, codec: str) -> bytes:
    return f'<?xml version="1.0" encoding="{encoding}"?>{GML_OPEN}{GML_CLOSE}'.encode(codec)


def with_comment(n: int) -> bytes:
    return (GML_OPEN + "<!--" + "x" * n + "-->" + _rect("R1") + GML_CLOSE).encode()


#: name -> (document, limits passed by keyword or None for the defaults, phrase expected)
RECIPES: dict[str, tuple[Callable[[], bytes], XmlLimits | None, str]] = {
    "utf-7": (lambda: declared("UTF-7", "utf-7"), None, "encoding 'UTF-7'"),
    "shift_jis": (lambda: declared("Shift_JIS", "shift_jis"), None, "encoding 'Shift_JIS'"),
    "euc-jp": (lambda: declared("EUC-JP", "euc_jp"), None, "encoding 'EUC-JP'"),
    "gb2312": (lambda: declared("GB2312", "gb2312"), None, "encoding 'GB2312'"),
    "big5": (lambda: declared("Big5", "big5"), None, "encoding 'Big5'"),
    "utf-32": (lambda: declared("UTF-32", "utf-32"), None, "encoded as UTF-32"),
    "utf-32-be-no-bom": (lambda: declared("UTF-32", "utf-32-be"), None, "encoded as UTF-32"),
    "unknown-encoding": (lambda: declared("x-no-such", "ascii"), None, "encoding 'x-no-such'"),
    "nesting-300": (lambda: nested(300), None, "nested more than 200 levels deep"),
    "huge-comment": (
        lambda: with_comment(1_000_000),
        XmlLimits(max_text=1_000),
        "still unfinished after",
    ),
    "long-comment": (lambda: with_comment(30_000), XmlLimits(max_text=1_000), "a comment of"),
    "long-text": (
        lambda: (GML_OPEN + "<x>" + "y" * 300_000 + "</x>" + GML_CLOSE).encode(),
        XmlLimits(max_text=1_000),
        "a text run of",
    ),
    "long-attribute": (
        lambda: (GML_OPEN + f'<x a="{"y" * 30_000}"/>' + GML_CLOSE).encode(),
        XmlLimits(max_text=1_000),
        "attribute 'a' of <x>",
    ),
    "long-processing-instruction": (
        lambda: (GML_OPEN + "<?pi " + "y" * 30_000 + "?>" + GML_CLOSE).encode(),
        XmlLimits(max_text=1_000),
        "processing instruction <?pi?>",
    ),
    "many-empty-elements": (
        lambda: (GML_OPEN + "<a/>" * 50_000 + GML_CLOSE).encode(),
        XmlLimits(max_elements=10_000),
        "more than 10000 elements",
    ),
    "gate-chain-1000": (lambda: gate_chain(1_000), None, "65 levels deep in the gate hierarchy"),
    "boolean-chain-100": (lambda: boolean_chain(100), None, "levels deep in the gate hierarchy"),
    "gate-cycle": (gate_cycle, None, "is its own ancestor"),
    "sibling-gates": (lambda: sibling_gates(DEFAULT_MAX_GATES + 1), None, "more than 1000 gates"),
    "workspace-nesting-600": (lambda: workspace(600), None, "nested 65 gates deep"),
    "workspace-gates-per-sample": (
        lambda: workspace(2, siblings=50),
        XmlLimits(max_gates=20),
        "sample node 's1.fcs' holds more than 20 gates",
    ),
}


ENTRY_POINTS = ["read_xml_safely", "validate_gatingml", "apply_gatingml", "flowjo_counts"]


def _enter(entry: str, path: Path, limits: XmlLimits | None, container: ad.AnnData) -> None:
    if entry == "read_xml_safely":
        read_xml_safely(path, limits=limits)
    elif entry == "validate_gatingml":
        validate_gatingml(path, xml_limits=limits)
    elif entry == "apply_gatingml":
        apply_gatingml(path, container, xml_limits=limits)
    else:
        flowjo_counts(path, xml_limits=limits)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_attack_is_refused_fast_with_a_clear_error(
    recipe: str, entry: str, tmp_path: Path, container: ad.AnnData
) -> None:
    build, limits, phrase = RECIPES[recipe]
    path = tmp_path / f"{recipe}.xml"
    path.write_bytes(build())
    start = time.perf_counter()
    with pytest.raises(GatingTemplateError) as err:
        _enter(entry, path, limits, container)
    elapsed = time.perf_counter() - start
    assert str(path) in str(err.value)
    assert phrase in str(err.value)
    assert elapsed < 3.0, f"{recipe} via {entry} took {elapsed:.1f} s to refuse"
    if entry == "apply_gatingml":
        assert "R1" not in container.obs and "G0" not in container.obs  # nothing was gated


@pytest.mark.parametrize(
    ("build", "limits"),
    [
        (lambda: nested(DEFAULT_MAX_XML_DEPTH - 1), None),  # + the root element
        (lambda: gate_chain(DEFAULT_MAX_GATE_DEPTH), None),
        (lambda: sibling_gates(DEFAULT_MAX_GATES), None),
        (lambda: workspace(DEFAULT_MAX_GATE_DEPTH), None),
        (lambda: with_comment(1_000), XmlLimits(max_text=1_000)),
        (lambda: (GML_OPEN + "<a/>" * 9_999 + GML_CLOSE).encode(), XmlLimits(max_elements=10_000)),
    ],
    ids=["depth", "gate-depth", "gates", "workspace-gate-depth", "text", "elements"],
)
def test_documents_at_the_limit_are_accepted(build, limits, tmp_path: Path) -> None:
    path = tmp_path / "at_limit.xml"
    data = build()
    path.write_bytes(data)
    assert read_xml_safely(path, limits=limits) == data


@pytest.mark.filterwarnings("ignore::nkflow.exceptions.LowEventCountWarning")
def test_gate_chain_at_the_limit_is_evaluated(tmp_path: Path, container: ad.AnnData) -> None:
    # the deepest accepted hierarchy still runs through flowkit quickly, with right counts
    path = tmp_path / "chain.xml"
    path.write_bytes(gate_chain(DEFAULT_MAX_GATE_DEPTH))
    start = time.perf_counter()
    table = apply_gatingml(path, container)
    assert time.perf_counter() - start < 10.0
    expected = int((container.X[:, 0] >= 20).sum())  # every gate is FSC-H >= 20
    assert (table["count"] == expected).all()
    assert table.loc[table["population"] == "G1", "parent"].item() == "G0"


def test_deep_workspace_walk_is_iterative(tmp_path: Path) -> None:
    # far past Python's recursion limit when the caller raises the limits
    depth = 1_500
    path = tmp_path / "deep.wsp"
    path.write_bytes(workspace(depth))
    limits = XmlLimits(max_depth=2 * depth + 10, max_gate_depth=depth, max_gates=depth)
    counts = flowjo_counts(path, xml_limits=limits)
    assert list(counts["gate_name"]) == [f"P{i}" for i in range(depth)]
    assert counts["count_flowjo"].tolist() == [float(i) for i in range(depth)]
    assert counts["gate_path"].iloc[-1] == ("root", *[f"P{i}" for i in range(depth - 1)])


def test_flowjo_counts_keep_depth_first_order(tmp_path: Path) -> None:
    path = tmp_path / "tree.wsp"
    path.write_text(
        '<Workspace><SampleList><Sample><SampleNode name="s"><Subpopulations>'
        '<Population name="A" count="5"><Subpopulations><Population name="A1" count="2"/>'
        '</Subpopulations></Population><Population name="B" count="-1"/>'
        "</Subpopulations></SampleNode></Sample></SampleList></Workspace>"
    )
    counts = flowjo_counts(path)
    assert list(counts["gate_name"]) == ["A", "A1", "B"]
    assert list(counts["gate_path"]) == [("root",), ("root", "A"), ("root",)]
    assert counts["count_flowjo"].tolist()[:2] == [5.0, 2.0]
    assert np.isnan(counts["count_flowjo"].iloc[2])  # FlowJo's -1: not computed


def test_lxml_limits_beyond_raised_limits_are_still_clear(
    tmp_path: Path, container: ad.AnnData
) -> None:
    # a caller may raise the check's limits past libxml2's; lxml's refusal is converted
    path = tmp_path / "deep.xml"
    path.write_bytes(nested(300))
    with pytest.raises(GatingTemplateError, match=r"not a valid GatingML 2\.0") as err:
        apply_gatingml(path, container, xml_limits=XmlLimits(max_depth=400))
    assert str(path) in str(err.value)


@pytest.mark.parametrize("exc", [RecursionError, MemoryError])
def test_flowkit_recursion_and_memory_failures_are_clear(
    exc: type[BaseException], tmp_path: Path, container: ad.AnnData, monkeypatch
) -> None:
    import flowkit

    def fail(*args: object, **kwargs: object) -> None:
        raise exc()

    path = tmp_path / "ok.xml"
    path.write_bytes(gate_chain(3))
    monkeypatch.setattr(flowkit, "parse_gating_xml", fail)
    with pytest.raises(GatingTemplateError, match=r"not a valid GatingML 2\.0") as err:
        apply_gatingml(path, container)
    assert str(path) in str(err.value)
    assert ("nested too deeply" if exc is RecursionError else "out of memory") in str(err.value)


@pytest.mark.parametrize("bad", [0, -1, True, 2.5])
def test_limits_must_be_positive_integers(bad: object) -> None:
    with pytest.raises(ValueError, match="max_depth must be a positive integer"):
        XmlLimits(max_depth=bad)  # type: ignore[arg-type]


def test_streaming_check_memory_stays_bounded() -> None:
    # 30 MiB of empty elements: the old check built a tree (about 70 bytes of memory per
    # byte of such markup); the streaming check holds one 64 KiB piece at a time
    element = b'<cell a="' + b"0" * 500 + b'"/>'
    count = (30 << 20) // len(element)
    data = GML_OPEN.encode() + element * count + GML_CLOSE.encode()
    tracemalloc.start()
    try:
        check_xml(data, "memory.xml")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < len(data) / 20, f"peak {peak} bytes for a {len(data)}-byte document"


@pytest.mark.filterwarnings("ignore::nkflow.exceptions.LowEventCountWarning")
@pytest.mark.parametrize(
    ("encoding", "codec"),
    [("UTF-16", "utf-16"), ("ISO-8859-1", "latin-1"), ("windows-1252", "cp1252")],
)
def test_decodable_encodings_still_work(
    encoding: str, codec: str, tmp_path: Path, container: ad.AnnData
) -> None:
    path = tmp_path / "encoded.xml"
    doc = f'<?xml version="1.0" encoding="{encoding}"?>{GML_OPEN}{_rect("R1")}{GML_CLOSE}'
    path.write_bytes(doc.encode(codec))
    table = apply_gatingml(path, container)
    assert table.loc[0, "count"] == int((container.X[:, 0] >= 20).sum())


def test_repeated_gate_ids_count_as_gates(tmp_path: Path) -> None:
    path = tmp_path / "same_id.xml"
    path.write_bytes((GML_OPEN + _rect("G") * (DEFAULT_MAX_GATES + 1) + GML_CLOSE).encode())
    with pytest.raises(GatingTemplateError, match="more than 1000 gates"):
        read_xml_safely(path)


def test_gate_count_is_per_sample_and_group_node(tmp_path: Path) -> None:
    # FlowJo gives every group and sample its own gate tree; flowkit builds them one by one
    nodes = "".join(
        f'<{kind} name="{kind}{i}"><Subpopulations>'
        + '<Population name="P"/>' * 15
        + f"</Subpopulations></{kind}>"
        for kind in ("GroupNode", "SampleNode")
        for i in range(3)
    )
    path = tmp_path / "many_nodes.wsp"
    path.write_text(f"<Workspace>{nodes}</Workspace>")
    read_xml_safely(path, limits=XmlLimits(max_gates=15))
    with pytest.raises(GatingTemplateError, match="group node 'GroupNode0' holds more than 14"):
        read_xml_safely(path, limits=XmlLimits(max_gates=14))
