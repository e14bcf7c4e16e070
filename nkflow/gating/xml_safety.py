"""Safe reading of GatingML documents and FlowJo workspaces.

GatingML files and FlowJo ``.wsp`` workspaces arrive from other people, so they are input
like any other and are checked before any XML library with dangerous defaults sees them.
flowkit parses with lxml, whose default parser expands internal entities; a hostile file
could use that to exhaust memory ("billion laughs") or, with other settings, to read local
files or URLs (XXE). Other hostile files are merely huge or deep: nesting past libxml2's
256-level limit, a comment of hundreds of MB, millions of empty elements, a chain of a
thousand gates (flowkit evaluates gate trees recursively) or tens of thousands of sibling
gates (flowkit builds its gate tree in time quadratic in the number of gates). nkflow
therefore

1. reads the file's bytes once (with a size cap, :data:`DEFAULT_MAX_XML_BYTES`),
2. streams them through expat in 64 KiB pieces without building a tree, refusing every
   entity declaration, every external reference and any document type declaration that
   names an external DTD or carries an internal subset (a bare ``<!DOCTYPE Workspace>``,
   as FlowJo 9 writes, is harmless and allowed), an encoding it cannot decode, and anything
   beyond the structural limits of :class:`XmlLimits` (nesting depth, element count, size
   of one text, comment or attribute value, number of gates and depth of the gate
   hierarchy), and
3. hands flowkit only the vetted bytes (an in-memory buffer), never the path, so the file
   cannot change between the check and the parse.

The check's memory does not grow with the document: expat holds at most one unfinished
token, and a token longer than :attr:`XmlLimits.max_text` characters is refused while it
is still being read.

A rejected document raises :class:`~nkflow.exceptions.GatingTemplateError` naming the file
and, in words, what was refused. Expat stops at the first entity declaration, so a
billion-laughs document is rejected before anything is expanded.
"""

from __future__ import annotations

import io
import logging
import re
import xml.etree.ElementTree as stdlib_et
from dataclasses import dataclass, field
from pathlib import Path
from xml.parsers import expat

from nkflow.exceptions import GatingTemplateError

__all__ = [
    "DEFAULT_MAX_GATES",
    "DEFAULT_MAX_GATE_DEPTH",
    "DEFAULT_MAX_XML_BYTES",
    "DEFAULT_MAX_XML_DEPTH",
    "DEFAULT_MAX_XML_ELEMENTS",
    "DEFAULT_MAX_XML_TEXT",
    "XmlLimits",
    "check_xml",
    "parse_xml_bytes",
    "parse_xml_safely",
    "read_xml_safely",
    "read_xml_tree_safely",
    "xml_buffer",
]

log = logging.getLogger(__name__)

#: Largest XML document accepted by default (bytes). FlowJo workspaces with hundreds of
#: samples reach tens of MiB; anything far beyond that is refused rather than parsed.
DEFAULT_MAX_XML_BYTES = 256 * 1024 * 1024

#: Deepest element nesting accepted by default. Real workspaces nest about 10-25 levels
#: (FlowJo adds two levels per gate); a FlowJo workspace with :data:`DEFAULT_MAX_GATE_DEPTH`
#: gate levels nests about 140. libxml2 (lxml, used by flowkit) stops at 256 levels, so the
#: default stays well below that.
DEFAULT_MAX_XML_DEPTH = 200

#: Most elements accepted by default. The densest real document measured holds one
#: element per 40 bytes (BD DiVa XML), so this admits about 80 MB of such markup; lxml needs
#: about 120 bytes per element, so flowkit's tree of a document at the limit stays under
#: about 250 MB.
DEFAULT_MAX_XML_ELEMENTS = 2_000_000

#: Longest single text run, comment, CDATA section, processing instruction or attribute
#: value accepted by default (characters). The largest text in a real workspace measured
#: is 62 KB (FlowJo 9, flowWorkspaceData); even at 4 UTF-8 bytes per character this stays
#: under libxml2's 10,000,000-byte limit for one text node.
DEFAULT_MAX_XML_TEXT = 2 * 1024 * 1024

#: Most gates accepted by default in one gating strategy (a GatingML document, or one
#: sample of a FlowJo workspace). flowkit rebuilds its whole gate graph for every gate it
#: adds and searches the tree for every gate it evaluates, so its cost grows with the
#: square of the number of gates: 1,000 sibling gates take about 4 s of CPU, 2,000 about
#: 14 s, 20,000 would take over 20 minutes. NK-cell strategies have tens of gates.
DEFAULT_MAX_GATES = 1_000

#: Deepest gate hierarchy accepted by default (a gate without a parent is level 1). Real
#: gating hierarchies are under 30 levels; flowkit evaluates gate trees recursively and
#: its cost grows with the square of the depth (128 levels take 0.7 s, 600 levels 10 s,
#: 1,000 levels exhaust Python's recursion limit after 40 s to 3 minutes).
DEFAULT_MAX_GATE_DEPTH = 64

GATING_NS = "http://www.isac-net.org/std/Gating-ML/v2.0/gating"
_GATE_TAGS = {"RectangleGate", "PolygonGate", "EllipsoidGate", "QuadrantGate", "BooleanGate"}
_FLOWJO_NODES = {"Population", "NotNode", "OrNode", "AndNode"}
_CHUNK = 1 << 16
_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([^"']{1,64})["']""")
_UTF32 = (b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00", b"\x00\x00\x00<", b"<\x00\x00\x00")


@dataclass(frozen=True)
class XmlLimits:
    """Structural limits of the XML safety check (all defaults are module constants).

    Attributes
    ----------
    max_depth
        Deepest element nesting (:data:`DEFAULT_MAX_XML_DEPTH`).
    max_elements
        Most elements in the document (:data:`DEFAULT_MAX_XML_ELEMENTS`).
    max_text
        Longest text run, comment, CDATA section, processing instruction or attribute
        value, in characters (:data:`DEFAULT_MAX_XML_TEXT`).
    max_gates
        Most gates in one gating strategy: GatingML gate elements, or FlowJo population
        nodes under one ``SampleNode`` (:data:`DEFAULT_MAX_GATES`).
    max_gate_depth
        Deepest gate hierarchy: the longest chain of GatingML ``parent_id`` and boolean
        ``gateReference`` links, or FlowJo population nesting (:data:`DEFAULT_MAX_GATE_DEPTH`).
    """

    max_depth: int = DEFAULT_MAX_XML_DEPTH
    max_elements: int = DEFAULT_MAX_XML_ELEMENTS
    max_text: int = DEFAULT_MAX_XML_TEXT
    max_gates: int = DEFAULT_MAX_GATES
    max_gate_depth: int = DEFAULT_MAX_GATE_DEPTH

    def __post_init__(self) -> None:
        for name in ("max_depth", "max_elements", "max_text", "max_gates", "max_gate_depth"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"XmlLimits.{name} must be a positive integer, got {value!r}")


class _Refused(Exception):
    """The document breaks a rule; ``unsafe`` marks the XXE/entity/DTD class of refusals."""

    def __init__(self, message: str, *, unsafe: bool = False) -> None:
        super().__init__(message)
        self.unsafe = unsafe


@dataclass
class _Gates:
    """What the stream check learns about gates, for the gate count and depth limits."""

    gatingml: bool = False
    parents: dict[str, list[str]] = field(default_factory=dict)  # gate id -> gates it needs
    count: int = 0  # GatingML gate elements (ids may repeat)
    current: str | None = None  # GatingML gate element being read
    flowjo_level: int = 0  # FlowJo population nodes enclosing the current element
    flowjo_stack: list[bool] = field(default_factory=list)  # per open element: population?
    owner: str = "the workspace"  # FlowJo SampleNode or GroupNode being read
    owner_gates: int = 0


class _StreamCheck:
    """Expat handlers enforcing the safety rules and :class:`XmlLimits`, without a tree."""

    def __init__(self, limits: XmlLimits, builder: stdlib_et.TreeBuilder | None = None) -> None:
        self.limits = limits
        self.builder = builder
        self.depth = 0
        self.elements = 0
        self.text = 0
        self.gates = _Gates()
        p = expat.ParserCreate(namespace_separator="}")
        p.StartDoctypeDeclHandler = self._doctype
        p.EntityDeclHandler = self._entity
        p.UnparsedEntityDeclHandler = self._unparsed_entity
        p.ExternalEntityRefHandler = self._external_ref
        p.StartElementHandler = self._start
        p.EndElementHandler = self._end
        p.CharacterDataHandler = self._chars
        p.CommentHandler = self._comment
        p.ProcessingInstructionHandler = self._pi
        self.parser = p

    # ---------------------------------------------------------------- refused constructs
    @staticmethod
    def _doctype(name: str, sysid: str | None, pubid: str | None, subset: int) -> None:
        if sysid or pubid:
            raise _Refused(
                f"document type declaration <!DOCTYPE {name}> references an external DTD "
                f"(system id {sysid!r}, public id {pubid!r})",
                unsafe=True,
            )
        if subset:
            raise _Refused(
                f"document type declaration <!DOCTYPE {name}> carries an internal DTD subset",
                unsafe=True,
            )

    @staticmethod
    def _entity(name: str, *_: object) -> None:
        raise _Refused(f"entity declaration {name!r}", unsafe=True)

    @staticmethod
    def _unparsed_entity(name: str, *_: object) -> None:
        raise _Refused(f"unparsed entity declaration {name!r}", unsafe=True)

    @staticmethod
    def _external_ref(context: str, base: str, sysid: str, pubid: str) -> bool:
        raise _Refused(f"reference to external entity (system id {sysid!r})", unsafe=True)

    # ---------------------------------------------------------------- size limits
    def _too_long(self, what: str, n: int) -> None:
        if n > self.limits.max_text:
            raise _Refused(
                f"{what} of {n} characters is longer than the limit of "
                f"{self.limits.max_text} characters"
            )

    def _chars(self, data: str) -> None:
        self.text += len(data)
        self._too_long("a text run", self.text)
        if self.builder is not None:
            self.builder.data(data)

    def _comment(self, data: str) -> None:
        self.text = 0
        self._too_long("a comment", len(data))

    def _pi(self, target: str, data: str) -> None:
        self.text = 0
        self._too_long(f"processing instruction <?{target}?>", len(data))

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        self.text = 0
        self.depth += 1
        self.elements += 1
        lim = self.limits
        local = name.rsplit("}", 1)[-1]
        if self.depth > lim.max_depth:
            raise _Refused(
                f"elements are nested more than {lim.max_depth} levels deep (at <{local}>); "
                "GatingML and FlowJo workspaces nest a few dozen levels at most"
            )
        if self.elements > lim.max_elements:
            raise _Refused(f"the document holds more than {lim.max_elements} elements")
        for key, value in attrs.items():
            if len(value) > lim.max_text:
                self._too_long(f"attribute {key.rsplit('}', 1)[-1]!r} of <{local}>", len(value))
        self._gate_start(name, local, attrs)
        if self.builder is not None:
            self.builder.start(_clark(name), {_clark(k): v for k, v in attrs.items()})

    def _end(self, name: str) -> None:
        self.text = 0
        self.depth -= 1
        g = self.gates
        if g.flowjo_stack.pop():
            g.flowjo_level -= 1
        if g.gatingml and self.depth == 1:
            g.current = None
        if self.builder is not None:
            self.builder.end(_clark(name))

    # ---------------------------------------------------------------- gate structure
    def _gate_start(self, name: str, local: str, attrs: dict[str, str]) -> None:
        g, lim = self.gates, self.limits
        if self.depth == 1:
            g.gatingml = name == f"{GATING_NS}}}Gating-ML"
        is_pop = local in _FLOWJO_NODES and "}" not in name
        g.flowjo_stack.append(is_pop)
        if local in ("SampleNode", "GroupNode") and "}" not in name:
            kind = "sample node" if local == "SampleNode" else "group node"
            g.owner, g.owner_gates = f"{kind} {attrs.get('name', '')!r}", 0
        elif is_pop:
            g.flowjo_level += 1
            g.owner_gates += 1
            who = f"population {attrs.get('name', '')!r} of {g.owner}"
            if g.flowjo_level > lim.max_gate_depth:
                raise _Refused(
                    f"{who} is nested {g.flowjo_level} gates deep, deeper than the limit of "
                    f"{lim.max_gate_depth} gate levels (real gating hierarchies are under 30)"
                )
            if g.owner_gates > lim.max_gates:
                raise _Refused(f"{g.owner} holds more than {lim.max_gates} gates; {_GATES_WHY}")
        if not g.gatingml or not name.startswith(f"{GATING_NS}}}"):
            return
        if self.depth == 2 and local in _GATE_TAGS:
            gid = attrs.get(f"{GATING_NS}}}id", f"<unnamed gate {len(g.parents) + 1}>")
            parent = attrs.get(f"{GATING_NS}}}parent_id")
            g.parents.setdefault(gid, []).extend([parent] if parent else [])
            g.current = gid
            g.count += 1
            if g.count > lim.max_gates:
                raise _Refused(f"the document holds more than {lim.max_gates} gates; {_GATES_WHY}")
        elif local == "gateReference" and g.current is not None:
            ref = attrs.get(f"{GATING_NS}}}ref")
            if ref:
                g.parents[g.current].append(ref)

    def finish(self) -> None:
        """Checks that need the whole document: the GatingML gate hierarchy's depth."""
        if self.gates.gatingml:
            _check_gate_depth(self.gates.parents, self.limits.max_gate_depth)


def _clark(name: str) -> str:
    """Expat's ``uri}local`` as ElementTree's ``{uri}local``."""
    return "{" + name if "}" in name else name


_GATES_WHY = (
    "flowkit's cost grows with the square of the number of gates (1,000 gates take "
    "seconds, 20,000 would take over 20 minutes); NK-cell strategies have tens of gates"
)


def _check_gate_depth(needs: dict[str, list[str]], limit: int) -> None:
    """Refuse a GatingML gate hierarchy deeper than ``limit`` or with a cycle (iterative)."""
    level: dict[str, int] = {}
    for start in needs:
        if start in level:
            continue
        stack = [(start, iter(needs[start]))]
        on_path = {start}
        while stack:
            gid, deps = stack[-1]
            dep = next((d for d in deps if d in needs and d not in level), None)
            if dep is not None:
                if dep in on_path:
                    names = [g for g, _ in stack]
                    path = " -> ".join([*names[names.index(dep) :], dep])
                    raise _Refused(f"gate {dep!r} is its own ancestor ({path})")
                stack.append((dep, iter(needs[dep])))
                on_path.add(dep)
                continue
            stack.pop()
            on_path.discard(gid)
            level[gid] = 1 + max((level[d] for d in needs[gid] if d in level), default=0)
            if level[gid] > limit:
                raise _Refused(
                    f"gate {gid!r} sits {level[gid]} levels deep in the gate hierarchy "
                    f"(parent_id and gateReference links), deeper than the limit of {limit} "
                    "gate levels (real gating hierarchies are under 30)"
                )


def _encoding_problem(data: bytes, exc: Exception) -> str:
    m = _ENCODING.match(data[:256])
    name = m.group(1).decode("ascii", "replace") if m else "?"
    return (
        f"the XML declaration names the encoding {name!r}, which the safety check cannot "
        f"decode ({exc}); save the file as UTF-8 (GatingML and FlowJo write UTF-8)"
    )


def check_xml(data: bytes, source: str | Path, *, limits: XmlLimits | None = None) -> None:
    """Stream a document through the safety check without building a tree.

    Parameters
    ----------
    data
        The document's bytes.
    source
        Where they came from (named in error messages).
    limits
        Structural limits (default :class:`XmlLimits`).

    Raises
    ------
    GatingTemplateError
        Not well-formed, an encoding that cannot be decoded, a refused construct (entity
        declaration, external reference, external DTD or internal DTD subset), or a limit
        of ``limits`` exceeded; the message names ``source`` and the problem.
    """
    _vet(data, source, limits or XmlLimits(), None)


def _vet(
    data: bytes, source: str | Path, lim: XmlLimits, builder: stdlib_et.TreeBuilder | None
) -> None:
    if data[:4] in _UTF32:
        raise GatingTemplateError(
            f"{source}: the document is encoded as UTF-32, which the safety check cannot "
            "decode; save the file as UTF-8 (GatingML and FlowJo write UTF-8)"
        )
    check = _StreamCheck(lim, builder)
    parser = check.parser
    view = memoryview(data)
    # A token expat is still buffering when more than this many bytes have been fed past
    # the last event is longer than max_text characters: refused before it grows further.
    # Expat rescans an unfinished token on every feed, so the pieces grow with it (the
    # scanning stays linear in the document's size).
    max_pending = 4 * lim.max_text + _CHUNK
    try:
        start, pending = 0, 0
        while start < len(data):
            piece = view[start : start + max(_CHUNK, pending)]
            parser.Parse(piece, False)
            start += len(piece)
            pending = start - max(parser.CurrentByteIndex, 0)
            if pending > max_pending:
                raise _Refused(
                    f"a single comment, tag, CDATA section or processing instruction is "
                    f"still unfinished after {pending} bytes, longer than the limit of "
                    f"{lim.max_text} characters"
                )
        parser.Parse(b"", True)
        check.finish()
    except _Refused as exc:
        if exc.unsafe:
            log.warning("refused unsafe XML in %s: %s", source, exc)
            raise GatingTemplateError(
                f"{source}: unsafe XML refused: {exc}. GatingML and FlowJo workspaces never "
                "need entity declarations or external DTDs; remove them from the file"
            ) from None
        log.warning("refused XML in %s: %s", source, exc)
        raise GatingTemplateError(f"{source}: XML refused: {exc}") from None
    except expat.ExpatError as exc:
        raise GatingTemplateError(f"{source}: not well-formed XML ({exc})") from None
    except (ValueError, LookupError) as exc:  # pyexpat: multi-byte or unknown encoding
        raise GatingTemplateError(f"{source}: {_encoding_problem(data, exc)}") from None
    except (RecursionError, MemoryError) as exc:  # pragma: no cover - limits prevent these
        raise GatingTemplateError(
            f"{source}: XML too large or too deep to check ({type(exc).__name__})"
        ) from None


def read_xml_safely(
    path: str | Path, *, max_bytes: int = DEFAULT_MAX_XML_BYTES, limits: XmlLimits | None = None
) -> bytes:
    """Read an XML document and check it is safe to hand to any XML parser.

    Parameters
    ----------
    path
        A GatingML 2.0 file or a FlowJo workspace.
    max_bytes
        Refuse files larger than this (default :data:`DEFAULT_MAX_XML_BYTES`).
    limits
        Structural limits of the check (default :class:`XmlLimits`).

    Returns
    -------
    bytes
        The file's content, vetted: well-formed, no entity declarations, no external
        references, no external DTD, within ``limits``.

    Raises
    ------
    GatingTemplateError
        The file is missing, too large, not well-formed XML, in an encoding the check
        cannot decode, uses a refused construct or exceeds a limit.
    """
    p = Path(path)
    data = _read_bytes(p, max_bytes)
    check_xml(data, p, limits=limits)
    return data


def _read_bytes(p: Path, max_bytes: int) -> bytes:
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise GatingTemplateError(f"{p}: cannot read the file ({exc.strerror or exc})") from exc
    if not p.is_file():
        raise GatingTemplateError(f"{p}: not a file (expected a GatingML or FlowJo .wsp file)")
    if size > max_bytes:
        raise GatingTemplateError(
            f"{p}: XML document of {size} bytes is larger than the limit of {max_bytes} bytes"
        )
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise GatingTemplateError(f"{p}: cannot read the file ({exc.strerror or exc})") from exc
    return data


def parse_xml_bytes(
    data: bytes, source: str | Path, *, limits: XmlLimits | None = None
) -> stdlib_et.Element:
    """Check a document as :func:`check_xml` does and build its element tree in one pass.

    Parameters
    ----------
    data
        The document's bytes.
    source
        Where they came from (named in error messages).
    limits
        Structural limits (default :class:`XmlLimits`).

    Returns
    -------
    xml.etree.ElementTree.Element
        The document's root element (comments and processing instructions dropped).

    Raises
    ------
    GatingTemplateError
        As :func:`check_xml`.
    """
    builder = stdlib_et.TreeBuilder()
    _vet(data, source, limits or XmlLimits(), builder)
    return builder.close()


def read_xml_tree_safely(
    path: str | Path, *, max_bytes: int = DEFAULT_MAX_XML_BYTES, limits: XmlLimits | None = None
) -> tuple[bytes, stdlib_et.Element]:
    """Read an XML document, check it and build its element tree, all from one read.

    Parameters
    ----------
    path
        A GatingML 2.0 file or a FlowJo workspace.
    max_bytes
        Refuse files larger than this.
    limits
        Structural limits of the check (default :class:`XmlLimits`).

    Returns
    -------
    bytes
        The vetted content (hand this, as a buffer, to flowkit).
    xml.etree.ElementTree.Element
        The root element of the same content.

    Raises
    ------
    GatingTemplateError
        As :func:`read_xml_safely`.
    """
    p = Path(path)
    data = _read_bytes(p, max_bytes)
    return data, parse_xml_bytes(data, p, limits=limits)


def parse_xml_safely(
    path: str | Path, *, max_bytes: int = DEFAULT_MAX_XML_BYTES, limits: XmlLimits | None = None
) -> stdlib_et.Element:
    """Parse an XML document with entities, external references and DTDs refused.

    Parameters
    ----------
    path
        A GatingML 2.0 file or a FlowJo workspace.
    max_bytes
        Refuse files larger than this.
    limits
        Structural limits of the check (default :class:`XmlLimits`).

    Returns
    -------
    xml.etree.ElementTree.Element
        The document's root element (built only after the streaming check passed).

    Raises
    ------
    GatingTemplateError
        As :func:`read_xml_safely`.
    """
    return read_xml_tree_safely(path, max_bytes=max_bytes, limits=limits)[1]


def xml_buffer(
    path: str | Path, *, max_bytes: int = DEFAULT_MAX_XML_BYTES, limits: XmlLimits | None = None
) -> io.BytesIO:
    """Vetted content of an XML file as an in-memory buffer, for flowkit's parsers.

    Parameters
    ----------
    path
        A GatingML 2.0 file or a FlowJo workspace.
    max_bytes
        Refuse files larger than this.
    limits
        Structural limits of the check (default :class:`XmlLimits`).

    Returns
    -------
    io.BytesIO
        The checked bytes; pass this (never the path) to flowkit.

    Raises
    ------
    GatingTemplateError
        As :func:`read_xml_safely`.
    """
    return io.BytesIO(read_xml_safely(path, max_bytes=max_bytes, limits=limits))
