"""A streaming, restricted reader of XEP-0227 files.

Memory stays bounded whatever the file's size: the containers (``<server-data/>``,
``<host/>``, ``<user/>``, ``<offline-messages/>``, ``<archive/>``, PEP ``<pubsub/>`` and
``<items/>``, rooms) are never built; each element inside one (a roster, a vCard, one
archived message, one PEP item) is built, handed to the handler with where it started, and
dropped. One such element may be at most ``max_unit_bytes`` long.

Restricted XML, as on a stream (RFC 6120 §11.1): a DOCTYPE, and with it any entity
declaration, is refused the moment it starts, so no entity is ever expanded (no "billion
laughs", no external entity read); an undefined entity reference is a well-formedness error.
Comments and processing instructions are skipped.

XInclude (XEP-0227 "Use of XInclude"): an ``<include href/>`` where a host or a user may
appear is replaced by the file it names, resolved against the including file, which must
hold a ``<host/>`` or a ``<user/>`` respectively. Only relative references to files in the
main file's folder (or below it) are followed; 'parse' other than xml and 'xpointer' are
refused (the XEP makes them optional).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final, Protocol
from urllib.parse import unquote, urlsplit
from xml.parsers import expat

from twisted.words.xish.domish import Element

from xmppd.pie.model import (
    PIE,
    PIE_MAM,
    PIE_OLD,
    PUBSUB,
    XI,
    XMPPD,
    PieError,
    Where,
)

Attrs = dict[str | tuple[str, str], str]

_SEP: Final = "\x1f"
CHUNK: Final = 65536
MAX_UNIT_BYTES: Final = 16 * 1024 * 1024  # what a MySQL MEDIUMTEXT column holds
MAX_DEPTH: Final = 64
MAX_INCLUDE_DEPTH: Final = 8

# (container, element) -> the container that element opens. Everything else inside a
# container is a unit, handed over whole. "root" is the document itself.
CONTAINERS: Final[dict[tuple[str, str, str], str]] = {
    ("root", PIE, "server-data"): "server",
    ("server", PIE, "host"): "host",
    ("host", PIE, "user"): "user",
    ("host", XMPPD, "room"): "room",
    ("user", PIE, "offline-messages"): "offline",
    ("user", PIE_MAM, "archive"): "archive",
    ("room", PIE_MAM, "archive"): "archive",
    ("user", PUBSUB, "pubsub"): "pubsub",
    ("pubsub", PUBSUB, "items"): "items",
}
# What an included file must hold, by the container the <include/> stood in.
INCLUDED_ROOT: Final = {"server": "host", "host": "user"}


class Handler(Protocol):
    def open(self, kind: str, attrs: Attrs, where: Where) -> None: ...

    def close(self, kind: str, where: Where) -> None: ...

    def unit(self, kind: str, el: Element, where: Where) -> None:
        """A complete element found directly inside a container of ``kind``."""


def _split(name: str) -> tuple[str | None, str]:
    if _SEP in name:
        uri, local = name.split(_SEP, 1)
        return (PIE if uri == PIE_OLD else uri), local
    return None, name


def _attr_key(name: str) -> str | tuple[str, str]:
    if _SEP not in name:
        return name
    uri, local = name.split(_SEP, 1)
    return (uri, local)


class PieReader:
    """Feeds ``handler`` with the containers and units of one file and its includes."""

    def __init__(self, handler: Handler, max_unit_bytes: int = MAX_UNIT_BYTES) -> None:
        self.handler = handler
        self.max_unit_bytes = max_unit_bytes
        self._active: list[Path] = []
        self._base: Path | None = None

    def read(self, path: Path) -> None:
        path = path.resolve()
        self._base = path.parent
        _File(self, path, "root").run()

    def include(self, href: str, origin: Path, container: str, where: Where) -> None:
        parts = urlsplit(href)
        if not href or parts.scheme or parts.netloc or parts.query or parts.fragment:
            raise PieError(where, f"<include href={href!r}/>: only relative file "
                           "references are followed")
        target = (origin.parent / unquote(parts.path)).resolve()
        assert self._base is not None
        if not target.is_relative_to(self._base):
            raise PieError(where, f"<include href={href!r}/> points outside {self._base}")
        if target in self._active:
            raise PieError(where, f"<include href={href!r}/> includes itself")
        if len(self._active) >= MAX_INCLUDE_DEPTH:
            raise PieError(where, "includes nested too deeply")
        _File(self, target, container).run()


class _File:
    """The parse of one file; ``outer`` is the container its root element goes into."""

    def __init__(self, reader: PieReader, path: Path, outer: str) -> None:
        self.reader = reader
        self.handler = reader.handler
        self.path = path
        self.name = str(path)
        self.outer = outer
        self.containers: list[str] = [outer]
        self.unit: list[Element] = []
        self.unit_where = Where(self.name, 0, 0)
        self.unit_start = 0
        self.text: list[str] = []
        self.skip = 0  # depth inside an <include/> (its fallback is not used)
        self.seen_root = False
        p = self.parser = expat.ParserCreate(namespace_separator=_SEP)
        p.buffer_text = True
        p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        p.StartElementHandler = self._start
        p.EndElementHandler = self._end
        p.CharacterDataHandler = self._chars
        p.StartDoctypeDeclHandler = self._doctype
        p.EntityDeclHandler = self._doctype
        p.ExternalEntityRefHandler = self._external

    def where(self) -> Where:
        p = self.parser
        return Where(self.name, p.CurrentLineNumber, p.CurrentColumnNumber)

    def run(self) -> None:
        try:
            f = self.path.open("rb")
        except OSError as exc:
            raise PieError(None, f"cannot read {self.name}: {exc.strerror or exc}") from None
        self.reader._active.append(self.path)
        try:
            with f:
                while True:
                    try:
                        chunk = f.read(CHUNK)
                    except OSError as exc:
                        raise PieError(self.where(), f"cannot read: {exc}") from None
                    self._feed(chunk, not chunk)
                    if not chunk:
                        break
        finally:
            self.reader._active.pop()
            self.parser.StartElementHandler = None  # drop the cycle parser <-> self
            self.parser.EndElementHandler = None
            self.parser.CharacterDataHandler = None

    def _feed(self, data: bytes, final: bool) -> None:
        try:
            self.parser.Parse(data, final)
        except expat.ExpatError as exc:
            where = Where(self.name, exc.lineno, exc.offset)
            reason = expat.ErrorString(exc.code)
            if not self.seen_root and reason == "no element found":
                raise PieError(where, "empty file: not a XEP-0227 export") from None
            raise PieError(where, f"not well-formed XML ({reason}); the file is damaged or "
                           "was cut short") from None

    def _doctype(self, *_args: object) -> None:
        raise PieError(self.where(), "a DOCTYPE (DTD, entity declarations) is not allowed "
                       "in a XEP-0227 file (restricted XML: entities are never expanded)")

    def _external(self, *_args: object) -> int:
        self._doctype()
        return 0

    # -- expat callbacks ---------------------------------------------------------------------
    def _start(self, name: str, attrs: dict[str, str]) -> None:
        if self.skip:
            self.skip += 1
            return
        uri, local = _split(name)
        if self.unit:
            self._check_unit()
            if len(self.unit) >= MAX_DEPTH:
                raise PieError(self.where(), "elements nested too deeply")
            self._flush_text()
            el = Element((uri, local), defaultUri=uri)
            el.attributes = {_attr_key(k): v for k, v in attrs.items()}
            self.unit[-1].children.append(el)
            self.unit.append(el)
            return
        self._flush_text(inside_container=True)
        parent = self.containers[-1]
        where = self.where()
        if not self.seen_root:
            self.seen_root = True
            self._root(uri, local, where)
        elif uri == XI and local == "include" and parent in INCLUDED_ROOT:
            self.skip = 1
            self._include(attrs, parent, where)
            return
        kind = CONTAINERS.get((parent, uri or "", local))
        if kind is not None:
            self.containers.append(kind)
            self.handler.open(kind, {_attr_key(k): v for k, v in attrs.items()}, where)
            return
        el = Element((uri, local), defaultUri=uri)
        el.attributes = {_attr_key(k): v for k, v in attrs.items()}
        self.unit = [el]
        self.unit_where = where
        self.unit_start = self.parser.CurrentByteIndex

    def _root(self, uri: str | None, local: str, where: Where) -> None:
        expected = {"root": ("server-data", "server"), "server": ("host", "host"),
                    "host": ("user", "user")}[self.outer]
        if uri == PIE and local == expected[0]:
            return
        found = f"<{local} xmlns='{uri or ''}'>"
        if self.outer == "root":
            raise PieError(where, f"not a XEP-0227 file: the root element is {found}, not "
                           f"<server-data xmlns='{PIE}'> (or the 0.x namespace {PIE_OLD})")
        raise PieError(where, f"an included file must hold a <{expected[0]} xmlns='{PIE}'>, "
                       f"not {found}")

    def _include(self, attrs: dict[str, str], container: str, where: Where) -> None:
        parse = attrs.get("parse", "xml")
        if parse != "xml" or "xpointer" in attrs:
            raise PieError(where, "<include/> with parse other than 'xml' or with an "
                           "xpointer is not supported")
        self.reader.include(attrs.get("href", ""), self.path, container, where)

    def _end(self, _name: str) -> None:
        if self.skip:
            self.skip -= 1
            return
        if self.unit:
            self._flush_text()
            el = self.unit.pop()
            if not self.unit:
                self._check_unit()
                self.handler.unit(self.containers[-1], el, self.unit_where)
            return
        self._flush_text(inside_container=True)
        kind = self.containers.pop()
        self.handler.close(kind, self.where())

    def _chars(self, data: str) -> None:
        if self.skip:
            return
        self.text.append(data)
        if self.unit:
            self._check_unit()

    def _flush_text(self, inside_container: bool = False) -> None:
        if not self.text:
            return
        text = "".join(self.text)
        self.text.clear()
        if inside_container:
            if text.strip():
                raise PieError(self.where(), f"unexpected text {text.strip()[:40]!r} in "
                               f"<{self.containers[-1]}> (only elements belong there)")
            return
        self.unit[-1].children.append(text)

    def _check_unit(self) -> None:
        if self.parser.CurrentByteIndex - self.unit_start > self.reader.max_unit_bytes:
            raise PieError(self.unit_where, f"element larger than "
                           f"{self.reader.max_unit_bytes} bytes")
