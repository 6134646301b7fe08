"""The restricted, bounded parser of one XML stream (RFC 6120 §11, §13.12).

expat does the parsing; a guard in front of it decides what expat is given, for three
reasons expat alone does not cover:

* **Time.** expat 2.5 (the one CPython 3.11 bundles) keeps a token it has not seen the end
  of and scans it again from its start on every later ``Parse()`` call. A peer that sends
  ``<message x='`` and then megabytes in small pieces made the server's work quadratic in
  the token's size before any limit applied. The guard hands expat only complete markup: a
  start or end tag is held in the guard's own buffer until its ``>`` (outside quoted
  values) arrives, an entity or character reference until its ``;``. Each byte is looked at
  once by the guard and once by expat.
* **Memory.** The bytes of the current top-level element are counted whether expat has seen
  them or not (what the guard holds included), at every depth, so a stanza or a single
  start tag is refused as it grows past the limit, not once it is complete.
* **Restricted XML.** Comments, processing instructions and DTD declarations (§11.1) are
  refused with ``<restricted-xml/>`` as soon as they start, instead of after expat buffered
  them whole (it reports a comment only at its end).

Character data and CDATA sections go to expat as they come: expat reports them piece by
piece without rescanning (measured), and they are counted like everything else.
"""

from __future__ import annotations

from typing import Final, Protocol
from xml.parsers import expat

from twisted.words.xish.domish import Element

from xmppd import stanza as st
from xmppd.errors import StreamError

_SEP: Final = "\x1f"
_STREAM_QNAME: Final = st.NS_STREAMS + _SEP + "stream"
# expat callback -> XMLStreamParser method; one table so release() unhooks every one set.
_HANDLERS: Final = {
    "StartElementHandler": "_start", "EndElementHandler": "_end",
    "CharacterDataHandler": "_chars", "StartNamespaceDeclHandler": "_ns_decl",
    "XmlDeclHandler": "_xml_decl", "ExternalEntityRefHandler": "_restricted_ext",
    **dict.fromkeys(("StartDoctypeDeclHandler", "CommentHandler",
                     "ProcessingInstructionHandler", "EntityDeclHandler", "ElementDeclHandler",
                     "AttlistDeclHandler", "NotationDeclHandler", "UnparsedEntityDeclHandler"),
                    "_restricted"),
}
_ERR = expat.errors.codes
_BAD_PREFIX: Final = _ERR[expat.errors.XML_ERROR_UNBOUND_PREFIX]
_INVALID_TOKEN: Final = _ERR[expat.errors.XML_ERROR_INVALID_TOKEN]
# RFC 6120 §11.1: entity references other than the five predefined ones, DTD-related and
# misplaced XML declarations / PIs are restricted XML, not merely ill-formed.
_RESTRICTED_ERRORS: Final = frozenset(_ERR[getattr(expat.errors, name)] for name in (
    "XML_ERROR_UNDEFINED_ENTITY", "XML_ERROR_RECURSIVE_ENTITY_REF", "XML_ERROR_ASYNC_ENTITY",
    "XML_ERROR_BINARY_ENTITY_REF", "XML_ERROR_ATTRIBUTE_EXTERNAL_ENTITY_REF",
    "XML_ERROR_PARAM_ENTITY_REF", "XML_ERROR_MISPLACED_XML_PI",
    "XML_ERROR_EXTERNAL_ENTITY_HANDLING", "XML_ERROR_NOT_STANDALONE",
    "XML_ERROR_ENTITY_DECLARED_IN_PE"))

HEADER_LIMIT: Final = 8192  # bytes before the stream header is complete
MAX_REFERENCE: Final = 32  # longest "&...;" accepted ("&#x10FFFF;" is 10 bytes)
MAX_ATTRIBUTES: Final = 128  # per element, namespace declarations included

# Guard states: where the first byte the guard has not finished with stands.
_TEXT: Final = 0  # character data (or the stream level between elements)
_OPEN: Final = 1  # just after "<": which construct is not known yet
_TAG: Final = 2  # inside a start or end tag (or the XML declaration in the prolog)
_REF: Final = 3  # inside "&...;"
_CDATA: Final = 4  # inside "<![CDATA[ ... ]]>"
_CDATA_OPEN: Final = b"<![CDATA["
_LT, _GT, _AMP, _SEMI = ord("<"), ord(">"), ord("&"), ord(";")
_APOS, _QUOT, _BANG, _QMARK = ord("'"), ord('"'), ord("!"), ord("?")


class StreamSink(Protocol):
    """Receives parse events; any StreamError raised here closes the stream."""

    def stream_started(self, attrs: dict[str, str], default_ns: str | None,
                       prefix: str | None) -> None: ...

    def element_received(self, el: Element) -> None: ...

    def stream_ended(self) -> None: ...


_NAMES: dict[str, str] = {}


def _shared_names() -> dict[str, str]:
    """One name-interning table for every parser instead of a dict per connection; it is
    only a cache, so it is emptied when a peer inventing names makes it grow."""
    if len(_NAMES) > 4096:
        _NAMES.clear()
    return _NAMES


class XMLStreamParser:
    """Incremental, restricted parser for one XML stream (recreated on every stream restart).

    ``max_stanza_bytes`` may be changed while parsing (a stream that authenticates gets
    the larger post-authentication limit); it bounds the bytes since the current top-level
    element began."""

    def __init__(self, sink: StreamSink, max_stanza_bytes: int = 262144,
                 max_depth: int = 48) -> None:
        self.sink = sink
        self.max_stanza_bytes = max_stanza_bytes
        self.max_depth = max_depth
        self._parser = self._make_parser()
        self._stack: list[Element] = []
        self._text: list[str] = []  # pieces of a text run that came in several parts
        self._depth = 0
        self._fed = 0  # bytes given to expat
        self._stanza_start = 0  # expat's byte index of the current top-level element
        self._ns_decls: dict[str | None, str] = {}
        # The guard: bytes of an unfinished construct not yet given to expat, and the state
        # of its scan (see the module docstring).
        self._held = bytearray()
        self._mode = _TEXT
        self._scan_at = 0  # where the scan of _held stopped
        self._quote = 0  # the quote byte of an attribute value the scan is inside, or 0
        self._attrs = 0  # quoted values seen in the tag being scanned
        self._in_expat = 0  # leading bytes of _held that expat already has

    def _make_parser(self) -> expat.XMLParserType:
        p = expat.ParserCreate("UTF-8", _SEP, intern=_shared_names())
        p.namespace_prefixes = True
        # Text is joined in _chars anyway; a 1 KiB buffer instead of 8 KiB saves ~3 KiB on
        # every (mostly idle) connection.
        p.buffer_size = 1024
        p.buffer_text = True
        p.ordered_attributes = False
        p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        for attr, method in _HANDLERS.items():
            setattr(p, attr, getattr(self, method))
        return p

    # -- public -------------------------------------------------------------------------
    def release(self) -> None:
        """Unhook the expat callbacks (bound methods of this object): parser and expat object
        otherwise form a reference cycle that only the cyclic collector frees, and a stream
        makes three parsers per login. Measured under the ``login`` benchmark, these cycles
        were most of the objects the collector had to find. Safe from inside a callback:
        expat then ignores the rest of the chunk, which belongs to a document we dropped."""
        p = self._parser
        # Unhooking CharacterDataHandler first flushes expat's text buffer into _chars,
        # which must then neither raise nor build anything.
        self._depth = -1
        for name in _HANDLERS:
            setattr(p, name, None)
        self._stack.clear()
        self._text.clear()
        self._held = bytearray()
        self._in_expat = 0

    @property
    def depth(self) -> int:
        """1 between top-level elements, 2 and more inside one, 0 before the header."""
        return self._depth

    @property
    def pending(self) -> int:
        """Bytes received but not parsed yet (an unfinished tag or reference)."""
        return len(self._held)

    def feed(self, data: bytes) -> None:
        """Parse a chunk; raises StreamError on any violation (RFC 6120 §4.9.3)."""
        if self._held or self._mode != _TEXT:
            data = self._resume(data)
            if not data:
                return
        if self._depth < 0:
            return
        # The short way, for nearly every chunk: expat gets all of it, and afterwards its
        # CurrentByteIndex says whether it kept an unfinished construct back (the index is
        # then where that construct starts). Only then does the guard look at bytes.
        start = self._fed
        self._fed = end = start + len(data)
        try:
            self._parser.Parse(data, False)
        except expat.ExpatError as exc:
            at = self._parser.ErrorByteIndex - start
            if exc.code == _INVALID_TOKEN and b"<!" in data[max(0, at - 2):at + 1]:
                # A DTD declaration inside the stream: restricted XML (RFC 6120 §11.1)
                # before it is ill-formed.
                raise StreamError("restricted-xml") from None
            raise _parse_error(exc) from None
        kept = self._parser.CurrentByteIndex
        if kept != end and self._depth >= 0:
            self._expat_kept(data, kept - start)
        # Before the header too: expat itself keeps a run of non-markup bytes in the prolog
        # ("AAAA..." could still become a name), unbounded, without raising (found by the
        # fuzzer: 281 KB held on a server stream until its negotiation timeout).
        if self._depth != 1 or self._held:
            self._check_budget()

    # -- the guard ----------------------------------------------------------------------------
    def _expat_kept(self, data: bytes, offset: int) -> None:
        """expat stopped short of the end of ``data``: at an unfinished tag, reference,
        comment, PI or CDATA opening (or a few bytes of text: a split UTF-8 sequence, a ']'
        or CR it must see the next byte of, which need nothing here). Scan that construct
        from its start; until it ends, later bytes wait in the guard's buffer."""
        tail = data[max(offset, 0):]
        if not tail or tail[0] not in (_LT, _AMP):
            return
        if self._depth == 0 and self._fed > HEADER_LIMIT:
            # Before scanning: in the prolog expat and the guard may disagree on where a
            # construct ends (an XML declaration without '?>'), and the scan would walk a
            # whole chunk of small tags in Python (fuzzer: 130 ms for 264 KB) only to refuse
            # it for its size afterwards.
            raise StreamError("policy-violation", "stream header too large")
        self._mode = _TEXT
        stop = self._scan(tail, 0, once=False)
        self._held = bytearray(tail[stop:])
        self._in_expat = len(tail) - stop

    def _resume(self, data: bytes) -> bytes:
        """Go on with the held construct; once it is complete, hand it to expat and return
        what followed it in ``data`` (nothing while it is still unfinished)."""
        held = self._held
        held += data
        end = self._scan(held, self._scan_at, once=True)
        if self._mode != _TEXT:
            if end:  # CDATA: all but its last two bytes can go
                self._give(held, end)
            self._check_budget()
            return b""
        self._give(held, end)
        rest = bytes(held)
        self._held = bytearray()
        return rest

    def _give(self, held: bytearray, upto: int) -> None:
        """Hand ``held[:upto]`` to expat (minus what it already has) and drop it."""
        skip = self._in_expat
        if upto > skip:
            self._parse(bytes(held[skip:upto]))
        self._in_expat = max(0, skip - upto)
        del held[:upto]

    def _scan(self, buf: bytes | bytearray, pos: int, once: bool) -> int:
        """Scan ``buf`` from ``pos`` on from the saved state and return how much of it is
        complete. While an unfinished construct remains, the state says what it is and
        ``_scan_at`` where its scan stopped (relative to the returned index). With ``once``
        the scan stops where the construct it started in ends."""
        n = len(buf)
        mode, quote, attrs = self._mode, self._quote, self._attrs
        start = 0  # where the construct being scanned began (when mode is not _TEXT)
        while True:
            if mode == _TEXT:
                if once:
                    break
                lt = buf.find(_LT, pos)
                amp = buf.find(_AMP, pos, n if lt < 0 else lt)
                if amp >= 0:
                    start, mode, pos = amp, _REF, amp + 1
                elif lt < 0:
                    pos = n
                    break
                else:
                    start, mode, pos, attrs, quote = lt, _OPEN, lt + 1, 0, 0
            if mode == _REF:
                semi = buf.find(_SEMI, pos, min(n, start + MAX_REFERENCE))
                if semi < 0:
                    if n - start >= MAX_REFERENCE:
                        raise StreamError("not-well-formed", "reference too long")
                    pos = n
                    break
                mode, pos = _TEXT, semi + 1
                continue
            if mode == _OPEN:
                if pos >= n:
                    break
                kind = buf[pos]
                if kind == _BANG:
                    head = bytes(buf[start:start + len(_CDATA_OPEN)])
                    if head == _CDATA_OPEN:
                        mode, pos = _CDATA, start + len(_CDATA_OPEN)
                        continue
                    if len(head) < len(_CDATA_OPEN) and _CDATA_OPEN.startswith(head):
                        pos = start + 1  # looked at again, from the "!", with more bytes
                        break
                    # RFC 6120 §11.1: comments and DTD declarations are restricted.
                    raise StreamError("restricted-xml", "comments and DTDs are not allowed")
                if kind == _QMARK and self._depth != 0:
                    raise StreamError("restricted-xml",
                                      "processing instructions are not allowed")
                mode = _TAG  # a tag, or the XML declaration in the prolog
            if mode == _TAG:
                if quote:
                    close = buf.find(quote, pos)
                    if close < 0:
                        pos = n
                        break
                    pos, quote = close + 1, 0
                gt = buf.find(_GT, pos)
                end = n if gt < 0 else gt
                q1 = buf.find(_APOS, pos, end)
                q2 = buf.find(_QUOT, pos, end)
                q = q1 if q2 < 0 or 0 <= q1 < q2 else q2
                if q >= 0:
                    attrs += 1
                    if attrs > MAX_ATTRIBUTES:
                        raise StreamError("policy-violation", "too many attributes")
                    quote, pos = buf[q], q + 1
                    continue
                if gt < 0:
                    pos = n
                    break
                mode, pos = _TEXT, gt + 1
                continue
            if mode == _CDATA:
                close = buf.find(b"]]>", pos)
                if close < 0:
                    # Not held: expat reads CDATA piece by piece. Only the last two bytes
                    # wait, so that a "]]>" split across chunks is still seen here.
                    start = pos = max(pos, n - 2)
                    break
                mode, pos = _TEXT, close + 3
                continue
        self._mode, self._quote, self._attrs = mode, quote, attrs
        if mode == _TEXT:
            return pos
        self._scan_at = pos - start
        return start

    def _check_budget(self) -> None:
        """RFC 6120 §13.12: bound what one peer makes us hold, before and after parsing."""
        depth = self._depth
        waiting = len(self._held) - self._in_expat  # received, not yet given to expat
        if depth >= 2:
            if self._fed + waiting - self._stanza_start > self.max_stanza_bytes:
                raise StreamError("policy-violation", "stanza too large")
        elif depth == 1:
            if len(self._held) > self.max_stanza_bytes:
                raise StreamError("policy-violation", "stanza too large")
        elif depth == 0 and self._fed + waiting > HEADER_LIMIT:
            raise StreamError("policy-violation", "stream header too large")

    def _parse(self, data: bytes) -> None:
        self._fed += len(data)
        try:
            self._parser.Parse(data, False)
        except expat.ExpatError as exc:
            raise _parse_error(exc) from None

    # -- expat callbacks -------------------------------------------------------------------
    def _restricted(self, *args: object) -> None:
        raise StreamError("restricted-xml")

    def _restricted_ext(self, *args: object) -> int:
        raise StreamError("restricted-xml")

    def _xml_decl(self, version: str | None, encoding: str | None, standalone: int) -> None:
        if encoding is not None and encoding.lower().replace("-", "") != "utf8":
            raise StreamError("unsupported-encoding")

    def _ns_decl(self, prefix: str | None, uri: str | None) -> None:
        if self._depth == 0:
            self._ns_decls[prefix] = uri or ""

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        depth = self._depth = self._depth + 1
        if depth == 1:
            self._stream_start(name, attrs)
            return
        if depth == 2:
            self._stanza_start = self._parser.CurrentByteIndex
        elif depth > self.max_depth:
            raise StreamError("policy-violation", "elements nested too deeply")
        parts = name.split(_SEP)
        uri: str | None = parts[0] if len(parts) > 1 else None
        el = Element((uri, parts[1] if uri is not None else parts[0]), defaultUri=uri)
        if attrs:
            if len(attrs) > MAX_ATTRIBUTES:
                raise StreamError("policy-violation", "too many attributes")
            el.attributes = {_attr_key(k): v for k, v in attrs.items()}
        stack = self._stack
        if self._text:
            stack[-1].children.append("".join(self._text))
            self._text.clear()
        if stack:
            # No el.parent: a child->parent link makes every stanza with children a
            # reference cycle for the cyclic collector (see xmppd.stanza.add).
            stack[-1].children.append(el)
        stack.append(el)

    def _end(self, name: str) -> None:
        depth = self._depth
        self._depth = depth - 1
        if depth == 1:
            self.sink.stream_ended()
            return
        el = self._stack.pop()
        if self._text:
            el.children.append("".join(self._text))
            self._text.clear()
        if depth == 2:
            if self._parser.CurrentByteIndex - self._stanza_start > self.max_stanza_bytes:
                raise StreamError("policy-violation", "stanza too large")
            self.sink.element_received(el)

    def _chars(self, data: str) -> None:
        if self._depth >= 2:
            kids = self._stack[-1].children
            if self._text:
                self._text.append(data)
            elif kids and isinstance(kids[-1], str):
                # The text run came in pieces (small reads): they are joined when the run
                # ends (_start/_end); adding each to a growing string was quadratic.
                self._text.extend((kids.pop(), data))
            else:
                kids.append(data)
        elif data.strip() and self._depth >= 0:
            # Only whitespace (keepalives) may appear between stanzas.
            raise StreamError("bad-format", "character data at stream level")

    def _stream_start(self, name: str, attrs: dict[str, str]) -> None:
        parts = name.split(_SEP)
        prefix = parts[2] if len(parts) > 2 else None
        if parts[0] + _SEP + (parts[1] if len(parts) > 1 else "") != _STREAM_QNAME:
            # RFC 6120 §4.9.3.10: wrong stream namespace (or a different root element).
            raise StreamError("invalid-namespace")
        clean: dict[str, str] = {}
        for k, v in attrs.items():
            key = _attr_key(k)
            if isinstance(key, tuple):
                if key[0] == st.NS_XML:
                    clean["xml:" + key[1]] = v
            else:
                clean[key] = v
        self.sink.stream_started(clean, self._ns_decls.get(None), prefix)


def _parse_error(exc: expat.ExpatError) -> StreamError:
    if exc.code == _BAD_PREFIX:
        return StreamError("bad-namespace-prefix")
    if exc.code in _RESTRICTED_ERRORS:
        return StreamError("restricted-xml")
    return StreamError("not-well-formed")


def _attr_key(name: str) -> str | tuple[str, str]:
    if _SEP not in name:
        return name
    parts = name.split(_SEP)
    return (parts[0], parts[1])


class _Collector:
    def __init__(self) -> None:
        self.elements: list[Element] = []

    def stream_started(self, attrs: dict[str, str], default_ns: str | None,
                       prefix: str | None) -> None:
        pass

    def element_received(self, el: Element) -> None:
        self.elements.append(el)

    def stream_ended(self) -> None:
        pass


def parse_fragment(xml: str, content_ns: str = st.NS_CLIENT) -> Element:
    """Parse one serialized stanza (from storage) with the same restricted parser."""
    sink = _Collector()
    parser = XMLStreamParser(sink, max_stanza_bytes=1 << 30)
    try:
        parser.feed(f"<s:stream xmlns='{content_ns}' xmlns:s='{st.NS_STREAMS}'>".encode())
        parser.feed(xml.encode())
    finally:
        parser.release()
    if len(sink.elements) != 1:
        raise ValueError("not exactly one element")
    return sink.elements[0]
