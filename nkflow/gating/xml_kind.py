"""What an XML gating document is: GatingML 2.0, a FlowJo 10 workspace, or one nkflow cannot apply.

flowkit applies GatingML 2.0 documents and FlowJo 10 workspaces. Analysts also have FlowJo 9
XML workspaces (``<Workspace flowJoVersion="9.2">``) and BD FACSDiva XML exports
(``<bdfacs>``); both are read by their root element, whatever the file is called, so the
error names what the file is and what to do with it, instead of a schema violation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..exceptions import GatingTemplateError

__all__ = [
    "XmlKind",
    "refuse_gating_document",
    "template_format",
    "unsupported_document",
    "xml_kind",
]

#: What the analyst can do with a document nkflow cannot apply (any interface: CLI, API).
_REMEDY = (
    "nkflow applies GatingML 2.0 files and FlowJo 10 workspaces (.wsp) only: open it in "
    "FlowJo 10 and save the workspace as .wsp (or export its gates as GatingML 2.0), then "
    "give that file as the template"
)


@dataclass(frozen=True)
class XmlKind:
    """What an XML gating document is.

    Attributes
    ----------
    kind
        ``"gatingml"``, ``"flowjo10"``, ``"flowjo9"``, ``"diva"`` or ``"unknown"``.
    version
        The version the document states (FlowJo's, FACSDiva's), or for an unknown
        document its root element's name.
    """

    kind: str
    version: str = ""


def xml_kind(root: Any) -> XmlKind:
    """The kind of an XML gating document, from its root element.

    Parameters
    ----------
    root
        The document's root element (``xml.etree`` or lxml).

    Returns
    -------
    XmlKind
    """
    tag = str(root.tag).rsplit("}", 1)[-1]
    if tag == "Gating-ML":
        return XmlKind("gatingml")
    if tag == "bdfacs":
        return XmlKind("diva", str(root.get("version", "")).removeprefix("Version ").strip())
    if tag == "Workspace":
        flowjo = str(root.get("flowJoVersion", "") or "")
        major = _major(flowjo)
        if major is None:  # FlowJo 10 writes version="20.0", FlowJo 9 "1.6" or "2.0"
            schema = _major(str(root.get("version", "") or ""))
            major = 10 if schema is not None and schema >= 20 else 9
        return XmlKind("flowjo10" if major >= 10 else "flowjo9", flowjo)
    return XmlKind("unknown", tag)


def _major(version: str) -> int | None:
    found = re.match(r"\s*(\d+)", version)
    return int(found.group(1)) if found else None


def unsupported_document(path: str | Path, kind: XmlKind) -> GatingTemplateError:
    """The error for a document nkflow cannot apply, naming what it is and what to do.

    Parameters
    ----------
    path
        The document.
    kind
        Its :func:`xml_kind` (``flowjo9``, ``diva`` or ``unknown``).

    Returns
    -------
    GatingTemplateError
    """
    if kind.kind == "flowjo9":
        what = f"a FlowJo {kind.version or '9 (or older)'} XML workspace"
    elif kind.kind == "diva":
        what = "a BD FACSDiva XML export" + (f" (FACSDiva {kind.version})" if kind.version else "")
    else:
        what = (
            "neither a GatingML 2.0 document nor a FlowJo workspace "
            f"(its root element is <{kind.version}>)"
        )
    return GatingTemplateError(f"{path}: {what}; {_REMEDY}")


def template_format(template: str | Path) -> str:
    """How a template given by name or file is applied.

    Parameters
    ----------
    template
        A shipped template name, a TOML file, a GatingML 2.0 file or a FlowJo 10
        workspace.

    Returns
    -------
    str
        ``"template"`` (an nkflow template: shipped name or TOML), ``"gatingml"`` or
        ``"workspace"``; an XML document is told by its content, not its file name.

    Raises
    ------
    GatingTemplateError
        An XML document nkflow cannot apply (FlowJo 9 workspace, BD FACSDiva export,
        other XML), unsafe XML or a limit exceeded, named with what to do.
    """
    from .xml_safety import read_xml_tree_safely

    path = Path(template)
    if not path.is_file() or path.suffix.lower() == ".toml":
        return "template"
    with path.open("rb") as fh:
        head = fh.read(512).lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head.startswith(b"<"):
        return "template"  # a TOML template under another name: load_template says more
    _, root = read_xml_tree_safely(path)
    kind = xml_kind(root)
    if kind.kind == "gatingml":
        return "gatingml"
    if kind.kind == "flowjo10":
        return "workspace"
    raise unsupported_document(path, kind)


def refuse_gating_document(path: str | Path) -> None:
    """Refuse a GatingML file or FlowJo workspace where an nkflow template is needed.

    A run's template carries rules (density valleys, FMO cut-offs, the AREG read-out) that
    a document of fixed gates does not: such a document is applied on its own instead.

    Parameters
    ----------
    path
        The file given as a template.

    Raises
    ------
    GatingTemplateError
        ``path`` is an XML gating document, named with what to do with it.
    """
    kind = template_format(path)
    if kind == "template":
        return
    what, apply = (
        ("a GatingML 2.0 document", "apply_gatingml")
        if kind == "gatingml"
        else ("a FlowJo 10 workspace", "apply_flowjo_workspace")
    )
    raise GatingTemplateError(
        f"{path}: {what}, not an nkflow template (TOML). A run gates with a template's rules "
        "(density valleys, FMO cut-offs, the AREG read-out), which fixed gates do not carry: "
        f"apply this file with `nkflow gate FILES --template {path} -o OUT` (population counts and "
        f"per-event membership) or nk.gating.{apply}, or give an nkflow template to run"
    )
