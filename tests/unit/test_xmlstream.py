"""The hardened parser and stream mechanics, without sockets (StringTransport)."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher

from xmppd import stanza as st
from xmppd.errors import StreamError
from xmppd.xmlstream import OrderedXmlStream, XmlStream, XMLStreamParser

HEADER = (b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          b"xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")


class Sink:
    def __init__(self) -> None:
        self.header: dict[str, str] | None = None
        self.ns: tuple[str | None, str | None] = (None, None)
        self.elements: list[st.Element] = []
        self.ended = False

    def stream_started(self, attrs: dict[str, str], default_ns: str | None,
                       prefix: str | None) -> None:
        self.header, self.ns = attrs, (default_ns, prefix)

    def element_received(self, el: st.Element) -> None:
        self.elements.append(el)

    def stream_ended(self) -> None:
        self.ended = True


def test_header_stanzas_and_end_in_small_chunks() -> None:
    sink = Sink()
    p = XMLStreamParser(sink)
    data = HEADER + b"<message to='a@b'><body>h\xc3\xa9</body></message> \n<iq/></stream:stream>"
    for i in range(len(data)):
        p.feed(data[i:i + 1])
    assert sink.header == {"to": "localhost", "version": "1.0"}
    assert sink.ns == (st.NS_CLIENT, "stream")
    assert [e.name for e in sink.elements] == ["message", "iq"]
    assert st.child_text(sink.elements[0], "body", st.NS_CLIENT) == "hé"
    assert sink.ended


def test_parsed_stanzas_and_released_parsers_are_freed_without_the_cyclic_collector() -> None:
    """No reference cycles on the per-stanza path: parsed trees have no parent links and a
    released parser no longer holds its own bound methods through expat."""
    gc.disable()
    try:
        sink = Sink()
        p = XMLStreamParser(sink)
        p.feed(HEADER + b"<message><body>x</body><x xmlns='u'><y>z</y></x></message> ")
        el = weakref.ref(sink.elements.pop())
        assert el() is None
        p.release()
        p.feed(b"text at stream level is ignored once released<iq/>")
        assert sink.elements == []
        parser = weakref.ref(p)
        del p
        assert parser() is None
    finally:
        gc.enable()


@pytest.mark.parametrize("data,condition", [
    (HEADER + b"<a></b>", "not-well-formed"),
    (b"<!DOCTYPE x><stream/>", "restricted-xml"),
    (HEADER + b"<!-- c -->", "restricted-xml"),
    (HEADER + b"<?pi x?>", "restricted-xml"),
    (HEADER + b"text", "bad-format"),
    (HEADER + b"<p:x/>", "bad-namespace-prefix"),
    (b"<?xml version='1.0' encoding='latin-1'?><stream/>", "unsupported-encoding"),
    (HEADER + b"<a>" * 60, "policy-violation"),
    (HEADER + b"\xff\xfe", "not-well-formed"),
])
def test_violations(data: bytes, condition: str) -> None:
    with pytest.raises(StreamError) as exc:
        XMLStreamParser(Sink()).feed(data)
    assert exc.value.condition == condition


def test_byte_budget_counts_across_chunks() -> None:
    p = XMLStreamParser(Sink(), max_stanza_bytes=1000)
    p.feed(HEADER + b"<message><body>")
    p.feed(b"x" * 900)
    with pytest.raises(StreamError) as exc:
        p.feed(b"x" * 200)
    assert exc.value.condition == "policy-violation"


def test_budget_resets_per_stanza() -> None:
    sink = Sink()
    p = XMLStreamParser(sink, max_stanza_bytes=1000)
    p.feed(HEADER)
    for _ in range(20):
        p.feed(b"<message><body>" + b"y" * 800 + b"</body></message>")
    assert len(sink.elements) == 20


class Echo(XmlStream):
    def __init__(self) -> None:
        super().__init__(Clock())
        self.got: list[st.Element] = []
        self.closed_reason: object = None

    def stream_started(self, attrs: dict[str, str], default_ns: str | None,
                       prefix: str | None) -> None:
        self.send_header({"from": "localhost", "id": "abc", "version": "1.0"})

    def element_received(self, el: st.Element) -> None:
        self.got.append(el)


def connect() -> tuple[Echo, StringTransport]:
    proto, transport = Echo(), StringTransport()
    proto.makeConnection(transport)
    return proto, transport


def test_stream_error_sends_header_error_and_close() -> None:
    proto, transport = connect()
    proto.dataReceived(b"<not-a-stream/>")
    out = transport.value().decode()
    assert out.startswith("<?xml version='1.0'?><stream:stream")
    assert "<stream:error><invalid-namespace xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in out
    assert out.endswith("</stream:stream>")
    # The connection goes after a short linger that reads and drops the peer's input (so the
    # peer's kernel does not get a reset that could destroy the error before it is read).
    assert not transport.disconnecting
    proto.dataReceived(b"<more what='ever'>")  # ignored
    proto.clock.advance(proto.error_linger)  # type: ignore[attr-defined]
    assert transport.disconnecting


def test_header_attributes_are_escaped() -> None:
    """c2s echoes the client's xml:lang in its header (RFC 6120 §4.7.4) and the WebSocket
    <open/> (RFC 7395 §3.4); a quote in it made the header not well-formed."""
    import xml.parsers.expat

    from xmppd.websocket import WebSocketC2S

    value = "e'n&\"<"
    langs: list[str] = []
    for header in (Echo().header_xml({"from": "localhost", "xml:lang": value}),
                   WebSocketC2S.header_xml(None, {"xml:lang": value}),  # type: ignore[arg-type]
                   ):
        p = xml.parsers.expat.ParserCreate(namespace_separator=" ")
        p.StartElementHandler = lambda name, attrs: langs.append(
            attrs["http://www.w3.org/XML/1998/namespace lang"])
        p.Parse(header.encode(), False)
    assert langs == [value, value]


def test_peer_close_is_answered() -> None:
    proto, transport = connect()
    proto.dataReceived(HEADER + b"<presence/>")
    assert [e.name for e in proto.got] == ["presence"]
    proto.dataReceived(b"</stream:stream>")
    assert transport.value().decode().endswith("</stream:stream>")
    assert transport.disconnecting


def test_our_close_waits_then_aborts() -> None:
    proto, transport = connect()
    proto.dataReceived(HEADER)
    proto.close_stream()
    assert transport.value().decode().endswith("</stream:stream>")
    assert not transport.disconnecting
    proto.clock.advance(proto.close_timeout + 1)  # type: ignore[attr-defined]
    assert transport.disconnecting


def test_a_limit_broken_while_we_wait_for_the_peers_close_drops_the_connection() -> None:
    """After our closing tag no stream error can be sent (RFC 6120 §4.4); found by the fuzzer:
    a peer that overran the stanza budget then was still read, and its bytes kept."""
    proto, transport = connect()
    proto.dataReceived(HEADER)
    proto.close_stream()
    sent = transport.value()
    proto.dataReceived(b"<presence big='" + b"A" * (proto.parser.max_stanza_bytes + 10))
    assert transport.disconnecting
    assert proto.parser is None  # nothing more is read or held
    assert transport.value() == sent  # nothing after our closing tag


class FakeServer:
    def __init__(self) -> None:
        self.tracked: list[Deferred[Any]] = []

    def track(self, d: Deferred[Any]) -> None:
        self.tracked.append(d)


class Ordered(OrderedXmlStream):
    """Handles <a/> synchronously, <w/> by waiting on the Deferreds in ``waits``, and <x/>
    by raising before its first await."""

    def __init__(self) -> None:
        super().__init__(Clock())
        self.server = FakeServer()  # type: ignore[assignment]
        self.waits: list[Deferred[Any]] = []
        self.seen: list[str] = []

    def stream_started(self, attrs: dict[str, str], default_ns: str | None,
                       prefix: str | None) -> None:
        self.send_header({"from": "localhost", "id": "abc", "version": "1.0"})

    def handle(self, el: st.Element) -> Deferred[Any] | None:
        return self.coro(self._handle(el))

    async def _handle(self, el: st.Element) -> str:
        if el.name == "x":
            raise ValueError("boom")
        if el.name == "w":
            got = await self.waits[0]
            self.seen.append(f"w got {got}")
            try:
                await self.waits[1]
            except KeyError as exc:
                self.seen.append(f"w caught {exc.args[0]}")
            return "done"
        self.seen.append(el.name)
        return el.name


def test_handlers_that_never_wait_run_to_the_end_at_once() -> None:
    proto = Ordered()
    proto.makeConnection(StringTransport())
    proto.dataReceived(HEADER + b"<a/><a/>")
    assert proto.seen == ["a", "a"] and proto.server.tracked == []  # type: ignore[attr-defined]


def test_a_handler_that_waits_holds_back_the_next_and_gets_results_and_failures() -> None:
    proto = Ordered()
    proto.makeConnection(StringTransport())
    proto.waits = [Deferred(), Deferred()]
    proto.dataReceived(HEADER + b"<w/><a/>")
    assert proto.seen == []  # <a/> waits for <w/>
    (tracked,) = proto.server.tracked  # type: ignore[attr-defined]
    proto.waits[0].callback(7)
    assert proto.seen == ["w got 7"]
    proto.waits[1].errback(KeyError("nope"))  # raised at the coroutine's await
    assert proto.seen == ["w got 7", "w caught nope", "a"]
    assert tracked.called


def test_a_handler_that_raises_at_once_is_logged_and_the_stream_goes_on() -> None:
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        proto = Ordered()
        proto.makeConnection(StringTransport())
        proto.dataReceived(HEADER + b"<x/><a/>")
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert proto.seen == ["a"]
    failures = [e["log_failure"] for e in events if "log_failure" in e]
    assert [f.value.args for f in failures] == [("boom",)]
