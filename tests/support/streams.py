"""Stream transcripts in process: the real C2SSession over a recording transport, with a
``task.Clock``, in-memory SQLite and inline storage (tests/support/inproc.py's server).

For behaviour that depends on time passing (stream management's resumption timeout,
keepalive pings, the handshake timeout, rate limits, expiry) a test advances the clock
instead of waiting: XML in, XML out, in milliseconds and without races.

    srv = StreamServer(["ping"], {"ping": {"interval": 60.0, "timeout": 10.0}})
    c = srv.login("alice")
    srv.clock.advance(60)
    [ping] = c.read()
"""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.python.failure import Failure

import xmppd.accounts
from tests.fuzz.world import (
    PASSWORD,
    RecordingTransport,
    _Certs,
    _InlineThreads,
    bind,
    c2s_header,
    plain_auth,
)
from tests.support.inproc import resolve
from xmppd.accounts import derive
from xmppd.c2s import C2SSession
from xmppd.config import from_dict
from xmppd.plugin import load_plugins
from xmppd.server import XmppServer

DOMAIN = "localhost"
C = "{jabber:client}"
STREAM_END = "__stream_end__"
T = TypeVar("T")


class StreamServer:
    """One in-process server on a Clock that starts at a plausible 'now'."""

    def __init__(self, plugins: list[str], options: dict[str, Any] | None = None,
                 users: tuple[str, ...] = ("alice", "bob"),
                 extra: dict[str, Any] | None = None) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        data: dict[str, Any] = {
            "hosts": {DOMAIN: {}},
            "storage": {"url": "sqlite://"},
            "listeners": [],
            "tls": {"require_c2s": True},
            "auth": {"iteration_count": 4096},
            "plugins": {"enabled": plugins, **(options or {})},
        }
        for key, value in (extra or {}).items():  # more configuration, tables merged
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        cfg = from_dict(data)
        # A PLAIN login checks PBKDF2 in a thread: here inline (the fuzzer does the same).
        self._threads = xmppd.accounts.threads
        xmppd.accounts.threads = _InlineThreads  # type: ignore[assignment]
        server = self.server = XmppServer(cfg, self.clock)
        server.db.migrate()  # never started: storage calls run inline
        server.certs = _Certs()  # type: ignore[assignment]
        for domain, host in server.hosts.items():
            resolve(load_plugins(host, cfg.enabled_plugins(domain)))
        creds = derive(PASSWORD, 4096)
        for user in users:
            done(server.storage.accounts.create(DOMAIN, user, creds))
        self._ips = itertools.count(1)

    def close(self) -> None:
        xmppd.accounts.threads = self._threads

    def connect(self) -> StreamClient:
        """A new TCP connection with direct TLS (XEP-0368), before the stream header."""
        n = next(self._ips)
        transport = RecordingTransport(f"10.0.{n >> 8}.{n & 255}")
        session = C2SSession(self.server, direct_tls=True)
        session.makeConnection(transport)
        return StreamClient(session, transport)

    def authenticated(self, user: str) -> StreamClient:
        """Connected and authenticated, stream restarted, not bound yet."""
        c = self.connect()
        c.feed(c2s_header(), plain_auth(user), c2s_header())
        c.read()  # features, <success/>, features again
        return c

    def login(self, user: str, resource: str = "r", presence: bool = True) -> StreamClient:
        """Authenticated and bound (and available, unless ``presence`` is False)."""
        c = self.authenticated(user)
        c.feed(bind(resource))
        [res] = c.read()
        assert res.get("type") == "result", ET.tostring(res)
        c.jid = f"{user}@{DOMAIN}/{resource}"
        if presence:
            c.send("<presence/>")
            c.read()
        return c


class StreamClient:
    """The client end of one stream: ``send`` XML, ``read`` the top-level elements the
    server wrote since the last read (``__stream_end__`` for </stream:stream>)."""

    def __init__(self, session: C2SSession, transport: RecordingTransport) -> None:
        self.session = session
        self.transport = transport
        self.jid = ""
        self._seen = 0
        self._new_parser()

    def _new_parser(self) -> None:
        self._parser = ET.XMLPullParser(events=("start", "end"))
        self._depth = 0

    def feed(self, *chunks: bytes) -> None:
        for chunk in chunks:
            self.session.dataReceived(chunk)

    def send(self, xml: str) -> None:
        self.feed(xml.encode())

    def read(self) -> list[ET.Element]:
        out: list[ET.Element] = []
        for data in self.transport.writes[self._seen:]:
            if data.lstrip().startswith(b"<?xml") or b"<stream:stream" in data:
                self._new_parser()  # a new stream header (after SASL)
            self._parser.feed(data)
            for event, el in self._parser.read_events():
                if event == "start":
                    self._depth += 1
                else:
                    self._depth -= 1
                    if self._depth == 1:
                        out.append(el)
                    elif self._depth == 0:
                        out.append(ET.Element(STREAM_END))
        self._seen = len(self.transport.writes)
        return out

    def drop(self) -> None:
        """The TCP connection dies without a closing tag."""
        self.session.connectionLost(Failure(ConnectionLost()))

    @property
    def closed_by_server(self) -> bool:
        return self.transport.lost or self.transport.aborted

    def close(self) -> None:
        """A clean close: </stream:stream>, then the connection ends."""
        if not self.session.closed:
            self.send("</stream:stream>")
            self.session.connectionLost(Failure(ConnectionDone()))


def done(d: Deferred[T]) -> T:
    """The result of a Deferred that (with inline storage) has already fired."""
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "did not complete synchronously"
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return out[0]  # type: ignore[no-any-return]


def stream_error(elements: list[ET.Element]) -> str | None:
    """The condition of the first stream error among ``elements``."""
    for el in elements:
        if el.tag == "{http://etherx.jabber.org/streams}error":
            for c in el:
                if c.tag.startswith("{urn:ietf:params:xml:ns:xmpp-streams}") and not \
                        c.tag.endswith("}text"):
                    return c.tag.split("}")[1]
    return None
