"""XML streams: the stream open/close/error protocol over the restricted parser.

The parser (xmppd/xmlparser.py) enforces RFC 6120 §11 (restricted XML, UTF-8) and the byte
and depth budgets of §13.12; this module frames streams on a transport, sends stream errors
and runs a session's elements strictly in order (§10.1).
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Coroutine, Generator
from typing import Any, Final

from twisted.internet import protocol
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.python.failure import Failure
from twisted.words.xish.domish import Element
from zope.interface import providedBy
from zope.interface.declarations import Provides

from xmppd import stanza as st
from xmppd.context import Clock, ServerContext
from xmppd.errors import StreamError
from xmppd.logs import Logger
from xmppd.xmlparser import StreamSink, XMLStreamParser

__all__ = ["StreamSink", "XMLStreamParser"]


# zope.interface keeps the declaration objects Twisted builds for a TLS layer in a weak-value
# cache. Twisted's startTLS declares on the new TLSMemoryBIOProtocol, one after the other,
# each interface of the TCP transport; every intermediate declaration is dropped at once, so
# after a garbage collection each STARTTLS built them again (C3 orderings included; ~300 us
# per connection measured in isolation, a few % of a login under bench/). Holding them here
# turns every later STARTTLS into cache hits. Bounded: one entry per (TLS class, interface).
_TLS_DECLARATIONS: set[Any] = set()
_TLS_DECLARED: set[tuple[type, type]] = set()


def stream_error_xml(err: StreamError) -> str:
    """``<stream:error>`` in the prefix our headers declare (RFC 6120 §4.9.2)."""
    body = f"<{err.condition} xmlns='{st.NS_STREAM_ERRORS}'/>"
    if err.text:
        body += (f"<text xmlns='{st.NS_STREAM_ERRORS}' xml:lang='en'>"
                 f"{st.escape_text(err.text)}</text>")
    return f"<stream:error>{body}</stream:error>"


def new_stream_id() -> str:
    return secrets.token_urlsafe(12)


class XmlStream(protocol.Protocol):
    """Shared stream mechanics for c2s and s2s: framing, errors and the close handshake.

    Subclasses implement ``stream_started``, ``element_received`` and ``on_closed``.
    """

    log = Logger()
    transport: Any  # a TCP/TLS transport (startTLS, pauseProducing, abortConnection ...)
    content_ns: str = st.NS_CLIENT
    max_stanza_bytes = 262144  # per top-level element once the peer is authenticated
    preauth_stanza_bytes = 16384  # before: peers send only small negotiation elements
    close_timeout = 10.0
    error_linger = 1.0  # seconds input is read and dropped after a stream error, see there

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.parser: XMLStreamParser | None = None
        self.stream_id = ""
        self.header_sent = False
        self.closing = False  # we are closing the stream
        self.close_written = False  # our closing tag is out: nothing more may be written
        self.closed = False
        self._close_timer: IDelayedCall | None = None
        self._unsettled: set[Deferred[Any]] = set()  # write-behinds not yet committed
        self.peer = "?"
        self.peer_host = "?"  # the peer's address (what brute-force limits key on)

    # -- twisted Protocol --------------------------------------------------------------------
    def connectionMade(self) -> None:  # noqa: N802
        addr = self.transport.getPeer() if self.transport else None
        host = getattr(addr, "host", None)
        port = getattr(addr, "port", None)
        self.peer = f"{host}:{port}" if host is not None else str(addr)
        self.peer_host = str(host) if host is not None else self.peer
        # Twisted already coalesces the writes of one reactor turn; Nagle would only hold back
        # the tail of a multi-stanza reply (a MAM page) until the peer's delayed ACK.
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            try:
                set_no_delay(True)
            except OSError:
                pass  # not a TCP socket (UNIX socket, test transport): nothing to tune
        self.reset_parser()

    def start_tls(self, context_factory: Any) -> None:
        """Switch the transport to TLS (RFC 6120 §5.4.3.3: right after ``<proceed/>``)."""
        transport = self.transport
        transport.startTLS(context_factory)
        kinds = (type(transport), type(transport.protocol))
        if kinds not in _TLS_DECLARED:
            _TLS_DECLARED.add(kinds)
            _TLS_DECLARATIONS.add(providedBy(transport))
            _TLS_DECLARATIONS.update(Provides(kinds[1], iface)
                                     for iface in providedBy(transport))

    def reset_parser(self) -> None:
        """Start a new XML document (initial stream and each RFC 6120 §4.3.3 restart)."""
        self.drop_parser()
        self.parser = XMLStreamParser(self, self.stanza_limit())

    def track_write(self, d: Deferred[Any]) -> None:
        """A commit one of this stream's stanzas depends on (Host.write_behind)."""
        if d.called:
            return
        unsettled = self._unsettled
        unsettled.add(d)

        def done(result: object) -> object:
            unsettled.discard(d)
            return result

        d.addBoth(done)

    def settled(self) -> Deferred[None]:
        """Fires once every write tracked so far has committed or failed (acknowledgements
        such as XEP-0198's wait for this: RFC 6120 principle 6 in ARCHITECTURE.md)."""
        if not self._unsettled:
            return succeed(None)
        waiting = DeferredList(list(self._unsettled), consumeErrors=True)
        return waiting.addCallback(lambda _: None)

    def peer_authenticated(self) -> bool:
        """Whether the peer has proven who it is, which earns the larger stanza budget."""
        return False

    def stanza_limit(self) -> int:
        """RFC 6120 §13.12: the byte budget of one top-level element on this stream now."""
        if self.peer_authenticated():
            return self.max_stanza_bytes
        return min(self.preauth_stanza_bytes, self.max_stanza_bytes)

    def stanza_limit_changed(self) -> None:
        """The peer authenticated without a stream restart (dialback): widen the budget of
        the parser that is running."""
        if self.parser is not None:
            self.parser.max_stanza_bytes = self.stanza_limit()

    def drop_parser(self) -> None:
        """Stop parsing this stream's current document (restart, error, end, close)."""
        if self.parser is not None:
            self.parser.release()
            self.parser = None

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if self.closed or self.parser is None:
            return
        try:
            self.parser.feed(data)
        except StreamError as err:
            self.stream_error(err)
        except Exception:
            self.log.failure("internal error processing stream data from {peer}", peer=self.peer)
            self.stream_error(StreamError("internal-server-error"))

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:  # noqa: N802
        self.closed = True
        self.drop_parser()
        if self._close_timer is not None and self._close_timer.active():
            self._close_timer.cancel()
        self._close_timer = None
        self.on_closed(reason)

    # -- hooks for subclasses ---------------------------------------------------------------
    def stream_started(self, attrs: dict[str, str], default_ns: str | None,
                       prefix: str | None) -> None:
        raise NotImplementedError

    def element_received(self, el: Element) -> None:
        raise NotImplementedError

    def on_closed(self, reason: Failure) -> None:
        """The TCP connection is gone (for any reason)."""

    # -- writing -----------------------------------------------------------------------------
    def write(self, data: str) -> None:
        # RFC 6120 §4.4: nothing may follow our closing tag.
        if not self.closed and not self.close_written and self.transport is not None:
            self.transport.write(data.encode("utf-8"))

    def send_element(self, el: Element) -> None:
        self.write(self.stanza_xml(el))

    def send_header(self, attrs: dict[str, str]) -> None:
        """Send our stream header (RFC 6120 §4.7); ``attrs`` values are escaped here."""
        self.header_sent = True
        self.write(self.header_xml(attrs))

    # -- framing: how this transport writes the stream's pieces (RFC 7395 overrides) --------
    def header_xml(self, attrs: dict[str, str]) -> str:
        parts = [f"<?xml version='1.0'?><stream:stream xmlns='{self.content_ns}'"
                 f" xmlns:stream='{st.NS_STREAMS}'"]
        for k, v in attrs.items():
            if v:
                # Double quotes: escape_attr leaves ' alone, and xml:lang is the client's.
                parts.append(f' {k}="{st.escape_attr(v)}"')
        parts.append(">")
        return "".join(parts)

    def features_xml(self, children: list[Element]) -> str:
        return "<stream:features>" + "".join(st.serialize(c) for c in children) + (
            "</stream:features>")

    def error_xml(self, err: StreamError) -> str:
        return stream_error_xml(err)

    def close_xml(self) -> str:
        return "</stream:stream>"

    def stanza_xml(self, el: Element) -> str:
        return st.serialize(el, self.content_ns)

    def default_header_attrs(self) -> dict[str, str]:
        """Header used when an error must be sent before a proper header could be (§4.9.1.2)."""
        return {"version": "1.0"}

    def stream_error(self, err: StreamError) -> None:
        """Send a stream error and close (RFC 6120 §4.9.1.1)."""
        if self.closed:
            return
        if self.closing:
            # Our closing tag is out, so no error can follow it (RFC 6120 §4.4); a peer
            # that breaks a limit while we wait for its own closing tag loses the
            # connection instead, and nothing more of its input is read.
            self.drop_parser()
            if self.transport is not None:
                self.transport.loseConnection()
            return
        self.log.info("stream error {condition} to {peer}: {text}", condition=err.condition,
                      peer=self.peer, text=err.text or "(no text)")
        if not self.header_sent:
            if not self.stream_id:
                self.stream_id = new_stream_id()
            self.send_header({**self.default_header_attrs(), "id": self.stream_id})
        self.write(self.error_xml(err))
        self.close_stream()
        # A stream error is unrecoverable (RFC 6120 §4.9.1.1) and after a parse error we could
        # not even read the peer's closing tag, so the connection is dropped once written.
        # Not at once, though: closing a socket with unread input makes the kernel send a
        # reset, which can destroy the error in the peer's receive buffer before it reads
        # it (a client still sending when it overran a limit never learnt why). What
        # arrives meanwhile is discarded (no parser), and the wait is short and bounded.
        self.drop_parser()
        if self.transport is not None:
            if self.error_linger > 0:
                self.clock.callLater(self.error_linger, self._drop_after_error)
            else:
                self.transport.loseConnection()

    def _drop_after_error(self) -> None:
        if not self.closed and self.transport is not None:
            self.transport.loseConnection()

    def write_close(self) -> None:
        """Mark the stream closing and write our closing tag, the last thing it may carry."""
        self.closing = True
        self.write(self.close_xml())
        self.close_written = True

    def close_stream(self) -> None:
        """Send ``</stream:stream>`` and wait briefly for the peer's (RFC 6120 §4.4)."""
        if self.closed or self.closing:
            return
        self.write_close()
        self._close_timer = self.clock.callLater(self.close_timeout, self.abort)

    def stream_ended(self) -> None:
        """The peer closed its stream: answer with ours if needed, then drop TCP."""
        if not self.closing:
            self.write_close()
        self.drop_parser()
        if self.transport is not None:
            self.transport.loseConnection()

    def abort(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.abortConnection()


MAX_QUEUE: Final = 256  # elements waiting behind a slow one before we stop reading the socket


class OrderedXmlStream(XmlStream):
    """An XmlStream whose top-level elements are handled strictly in order (RFC 6120 §10.1):
    while ``handle`` waits (on storage, a remote server ...) later elements queue up, and
    past MAX_QUEUE the socket stops being read until the queue drains.

    Subclasses set ``server`` and implement ``handle``.
    """

    server: ServerContext

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.last_active = self.clock.seconds()
        self._queue: deque[Element] = deque()
        self._busy = False
        self._paused = False

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.last_active = self.clock.seconds()
        super().dataReceived(data)

    def element_received(self, el: Element) -> None:
        if self._busy:
            self._queue.append(el)
            if len(self._queue) >= MAX_QUEUE and not self._paused and self.transport:
                self._paused = True
                self.transport.pauseProducing()
            return
        self._run(el)

    def _run(self, el: Element) -> None:
        while True:
            d = self.handle(el) if not (self.closing or self.closed) else None
            if d is not None and not d.called:
                self._busy = True
                self.server.track(d)
                d.addBoth(self._resume)
                return
            if not self._queue or self.closed:
                break
            el = self._queue.popleft()
        self._unpause()

    def _resume(self, result: object) -> None:
        if isinstance(result, Failure):
            self.log.failure("error handling element from {peer}", result, peer=self.peer)
        self._busy = False
        if self._queue and not self.closed:
            self._run(self._queue.popleft())
        else:
            self._unpause()

    def _unpause(self) -> None:
        if self._paused and self.transport:
            self._paused = False
            self.transport.resumeProducing()

    def handle(self, el: Element) -> Deferred[Any] | None:
        """Handle one element; a Deferred that has not fired yet holds back the next ones."""
        raise NotImplementedError

    def coro(self, coro: Coroutine[Any, Any, Any]) -> Deferred[Any] | None:
        """Run a coroutine; its Deferred, or None when it already finished synchronously.

        Most stanzas never wait (chat between local users, presence): such a coroutine is
        run to its end right here, without the Deferred and inlineCallbacks frames Twisted's
        ``fromCoroutine`` builds around every one. One that does wait (awaits a Deferred not
        yet fired: storage, a remote server) is handed to ``fromCoroutine`` at that point."""
        try:
            awaited = coro.send(None)
        except StopIteration:
            return None
        except Exception:
            self.log.failure("error handling element from {peer}", peer=self.peer)
            return None
        return Deferred.fromCoroutine(_finish(coro, awaited))


def _finish(coro: Coroutine[Any, Any, Any], awaited: Any) -> Generator[Any, Any, Any]:
    """A generator for Twisted's inlineCallbacks that carries on ``coro`` after it stopped
    at its first ``await`` (yielding ``awaited``, the Deferred it waits for): each result or
    failure inlineCallbacks hands back is passed into ``coro``, as its own awaits would."""
    while True:
        try:
            value = yield awaited
        except Exception as exc:
            try:
                awaited = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
            continue
        try:
            awaited = coro.send(value)
        except StopIteration as stop:
            return stop.value
