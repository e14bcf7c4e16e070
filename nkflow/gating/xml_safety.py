"""Safe reading of GatingML documents and FlowJo workspaces.

GatingML files and FlowJo ``.wsp`` workspaces arrive from other people, so they are input
like any other and are checked before any XML library with dangerous defaults sees them.
flowkit parses with lxml, whose default parser expands internal entities; a hostile file
could use that to exhaust memory ("billion laughs") or, with other settings, to read local
files or URLs (XXE). nkflow therefore

1. reads the file's bytes once (with a size cap),
2. parses them with :mod:`defusedxml` (expat), refusing every entity declaration, every
   external reference and any document type declaration that names an external DTD or
   carries an internal subset (a bare ``<!DOCTYPE Workspace>``, as FlowJo 9 writes, is
   harmless and allowed), and
3. hands flowkit only the vetted bytes (an in-memory buffer), never the path, so the file
   cannot change between the check and the parse.

A rejected document raises :class:`~nkflow.exceptions.GatingTemplateError` naming the file
and the construct that was refused. Expat stops at the first entity declaration, so a
billion-laughs document is rejected before anything is expanded.
"""

from __future__ import annotations

import io
import logging
import xml.etree.ElementTree as stdlib_et
from pathlib import Path

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from nkflow.exceptions import GatingTemplateError

__all__ = ["DEFAULT_MAX_XML_BYTES", "parse_xml_safely", "read_xml_safely", "xml_buffer"]

log = logging.getLogger(__name__)

#: Largest XML document accepted by default (bytes). FlowJo workspaces with hundreds of
#: samples reach tens of MiB; anything far beyond that is refused rather than parsed.
DEFAULT_MAX_XML_BYTES = 256 * 1024 * 1024


class _DoctypeRefused(DefusedXmlException):
    """A document type declaration with an external DTD or an internal subset."""

    def __init__(self, name: str, sysid: str | None, pubid: str | None, subset: bool) -> None:
        super().__init__()
        self.name = name
        self.sysid = sysid
        self.pubid = pubid
        self.subset = subset

    def __str__(self) -> str:
        if self.sysid or self.pubid:
            return (
                f"document type declaration <!DOCTYPE {self.name}> references an external DTD "
                f"(system id {self.sysid!r}, public id {self.pubid!r})"
            )
        return f"document type declaration <!DOCTYPE {self.name}> carries an internal DTD subset"


class _StrictParser(DefusedXMLParser):
    """defusedxml's parser, additionally refusing external DTDs and internal DTD subsets."""

    def __init__(self) -> None:
        super().__init__(forbid_dtd=False, forbid_entities=True, forbid_external=True)
        self.parser.StartDoctypeDeclHandler = self._refuse_doctype

    @staticmethod
    def _refuse_doctype(
        name: str, sysid: str | None, pubid: str | None, has_internal_subset: int
    ) -> None:
        if sysid or pubid or has_internal_subset:
            raise _DoctypeRefused(name, sysid, pubid, bool(has_internal_subset))


def read_xml_safely(path: str | Path, *, max_bytes: int = DEFAULT_MAX_XML_BYTES) -> bytes:
    """Read an XML document and check it is safe to hand to any XML parser.

    Parameters
    ----------
    path
        A GatingML 2.0 file or a FlowJo workspace.
    max_bytes
        Refuse files larger than this (default :data:`DEFAULT_MAX_XML_BYTES`).

    Returns
    -------
    bytes
        The file's content, vetted: well-formed, no entity declarations, no external
        references, no external DTD.

    Raises
    ------
    GatingTemplateError
        The file is missing, too large, not well-formed XML, or uses a refused construct.
    """
    p = Path(path)
    data = _read_bytes(p, max_bytes)
    _check(data, p)
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


def _check(data: bytes, source: Path) -> stdlib_et.Element:
    parser = _StrictParser()
    try:
        parser.feed(data)
        return parser.close()
    except DefusedXmlException as exc:
        log.warning("refused unsafe XML in %s: %s", source, exc)
        raise GatingTemplateError(
            f"{source}: unsafe XML refused: {exc}. GatingML and FlowJo workspaces never need "
            "entity declarations or external DTDs; remove them from the file"
        ) from None
    except stdlib_et.ParseError as exc:
        raise GatingTemplateError(f"{source}: not well-formed XML ({exc})") from None


def parse_xml_safely(
    path: str | Path, *, max_bytes: int = DEFAULT_MAX_XML_BYTES
) -> stdlib_et.Element:
    """Parse an XML document with entities, external references and DTDs refused.

    Parameters
    ----------
    path
        A GatingML 2.0 file or a FlowJo workspace.
    max_bytes
        Refuse files larger than this.

    Returns
    -------
    xml.etree.ElementTree.Element
        The document's root element.

    Raises
    ------
    GatingTemplateError
        As :func:`read_xml_safely`.
    """
    p = Path(path)
    return _check(_read_bytes(p, max_bytes), p)


def xml_buffer(path: str | Path, *, max_bytes: int = DEFAULT_MAX_XML_BYTES) -> io.BytesIO:
    """Vetted content of an XML file as an in-memory buffer, for flowkit's parsers.

    Parameters
    ----------
    path
        A GatingML 2.0 file or a FlowJo workspace.
    max_bytes
        Refuse files larger than this.

    Returns
    -------
    io.BytesIO
        The checked bytes; pass this (never the path) to flowkit.

    Raises
    ------
    GatingTemplateError
        As :func:`read_xml_safely`.
    """
    return io.BytesIO(read_xml_safely(path, max_bytes=max_bytes))
