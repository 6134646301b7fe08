"""An in-process server for the fuzzer: every real protocol class, no sockets, no threads.

One ``World`` is one XmppServer (in-memory SQLite, every plugin that runs without a
network, ``task.Clock``) plus a federation manager whose outbound connections fail at once.
``World.run(case)`` opens one connection of the case's kind over a recording transport,
brings it to the case's starting state (pre-TLS, pre-auth, bound, s2s authenticated ...),
feeds the fuzzed bytes (TCP reads, or WebSocket messages one per frame), lets the clock run
out the connection's timers, and returns what the server wrote.
"""

from __future__ import annotations

import base64
import functools
import itertools
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.python.failure import Failure

import xmppd.accounts
from federation import manager as fed_manager
from federation.inbound import S2SInStream
from federation.outbound import ConnectFailure
from federation.verify import ChainResult, PeerCertificate
from storage.credentials import Credentials
from xmppd.accounts import derive
from xmppd.c2s import C2SSession
from xmppd.config import from_dict
from xmppd.plugin import load_plugins
from xmppd.server import XmppServer
from xmppd.websocket import WebSocketC2S

DOMAIN = "localhost"
OTHER_DOMAIN = "example.net"  # a second served host
REMOTE = "remote.example"  # the federated peer an s2s case speaks for
USERS = ("alice", "bob", "carol")
PASSWORD = "pw"
ITERATIONS = 4096  # the lowest the server accepts; PLAIN logins recompute it

PLUGINS = ["disco", "ping", "version", "time", "roster", "presence", "offline", "mam",
           "carbons", "smacks", "csi", "hints", "vcard", "search", "register", "blocking",
           "private", "last", "caps", "muc", "extdisco", "pep"]

# Where a case starts. The prefix that reaches the state is sent by the harness, not fuzzed.
MODES = (
    "c2s-plain",   # TCP before STARTTLS (the fake transport "upgrades" on <proceed/>)
    "c2s-tls",     # direct TLS, before SASL
    "c2s-bound",   # authenticated with SASL PLAIN and bound to a resource
    "ws",          # WebSocket (wss), before <open/>
    "ws-bound",    # WebSocket, authenticated and bound
    "s2s",         # inbound server stream before TLS
    "s2s-tls",     # inbound server stream after TLS, before SASL EXTERNAL / dialback
    "s2s-auth",    # inbound server stream authenticated (dialback) for REMOTE
)

STREAM_HEADER = ("<?xml version='1.0'?><stream:stream xmlns='{ns}' "
                 "xmlns:stream='http://etherx.jabber.org/streams' to='{to}' {extra}"
                 "version='1.0'>")


def c2s_header(to: str = DOMAIN) -> bytes:
    return STREAM_HEADER.format(ns="jabber:client", to=to, extra="").encode()


def s2s_header(to: str = DOMAIN, frm: str = REMOTE) -> bytes:
    return STREAM_HEADER.format(ns="jabber:server", to=to,
                                extra=f"from='{frm}' xmlns:db='jabber:server:dialback' "
                                ).encode()


WS_OPEN = f"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='{DOMAIN}' version='1.0'/>"


def plain_auth(user: str = USERS[0]) -> bytes:
    token = base64.b64encode(f"\0{user}\0{PASSWORD}".encode()).decode()
    return (f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}"
            "</auth>").encode()


def bind(resource: str) -> bytes:
    return (f"<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            f"<resource>{resource}</resource></bind></iq>").encode()


class HarnessError(Exception):
    """The harness could not bring a connection to its starting state (not a finding about
    the input: the prefix is fixed)."""


class RecordingTransport:
    """Transport double: records every write separately (a WebSocket message each), and
    'upgrades' to TLS in place (later bytes are taken as the decrypted stream)."""

    disconnecting = False

    def __init__(self, peer_ip: str) -> None:
        self.writes: list[bytes] = []
        self.peer = IPv4Address("TCP", peer_ip, 40000)
        self.tls_starts = 0
        self.lost = False
        self.aborted = False
        self.paused = False
        self.protocol: Any = None

    def write(self, data: bytes) -> None:
        if not isinstance(data, bytes):
            raise TypeError(f"transport.write got {type(data).__name__}")
        self.writes.append(data)

    def writeSequence(self, seq: list[bytes]) -> None:  # noqa: N802
        for d in seq:
            self.write(d)

    def loseConnection(self) -> None:  # noqa: N802
        self.disconnecting = True
        self.lost = True

    def abortConnection(self) -> None:  # noqa: N802
        self.disconnecting = True
        self.aborted = True

    def startTLS(self, ctx: Any) -> None:  # noqa: N802
        self.tls_starts += 1

    def getPeer(self) -> IPv4Address:  # noqa: N802
        return self.peer

    def getHost(self) -> IPv4Address:  # noqa: N802
        return IPv4Address("TCP", "127.0.0.1", 5222)

    def getHandle(self) -> Any:  # noqa: N802
        # No OpenSSL connection behind this transport: channel binding finds nothing to
        # bind to (as behind a TLS-terminating proxy); s2s peer certificates are preset.
        return None

    def pauseProducing(self) -> None:  # noqa: N802
        self.paused = True

    def resumeProducing(self) -> None:  # noqa: N802
        self.paused = False

    def stopProducing(self) -> None:  # noqa: N802
        self.lost = True


class _Certs:
    """Stands in for CertStore: the fake transport never uses a real TLS context."""

    def __init__(self) -> None:
        self.contexts: dict[str, Any] = _AnyKey()


class _AnyKey(dict[str, Any]):
    def __missing__(self, key: str) -> None:
        return None


class _Contexts:
    def server_for(self, host: str) -> None:
        return None


class FuzzS2SManager(fed_manager.S2SManager):
    """Federation whose outbound side never reaches the network: connecting fails at once
    (remote-server-not-found), so stanzas for remote domains bounce as for a dead peer. A
    dialback key starting 'valid'/'invalid' is judged so by the 'Authoritative Server'."""

    async def _open(self, route: fed_manager.Route) -> Any:
        raise ConnectFailure("remote-server-not-found", "fuzz harness: no network")

    def verify_dialback(self, local: str, remote: str, stream_id: str, key: str
                        ) -> defer.Deferred[str]:
        if key.startswith("valid"):
            return defer.succeed("valid")
        if key.startswith("invalid"):
            return defer.succeed("invalid")
        return super().verify_dialback(local, remote, stream_id, key)


class _InlineThreads:
    """Runs 'threaded' work inline. PBKDF2 of a PLAIN login is remembered per (password,
    verifier): the bound states log in on every case, and the check itself is unchanged."""

    @staticmethod
    def deferToThread(f: Callable[..., Any], *args: Any, **kw: Any  # noqa: N802
                      ) -> defer.Deferred[Any]:
        if f is xmppd.accounts.check_password and not kw:
            password, creds = args
            return defer.succeed(_checked(password, creds.mechanism, creds.salt,
                                          creds.iterations, creds.stored_key))
        return defer.maybeDeferred(f, *args, **kw)


@functools.lru_cache(maxsize=256)
def _checked(password: str, mechanism: str, salt: bytes, iterations: int, stored: bytes
             ) -> bool:
    return xmppd.accounts.check_password(password, Credentials(
        mechanism, salt, iterations, stored, b""))


_REMOTE_CERT: list[Any] = []


def _remote_leaf() -> Any:
    """A certificate naming REMOTE, taken as trusted: lets SASL EXTERNAL (XEP-0178) run."""
    if not _REMOTE_CERT:
        from cryptography import x509

        from xmppd.tls import generate_self_signed

        with tempfile.TemporaryDirectory() as tmp:
            crt, key = Path(tmp) / "r.crt", Path(tmp) / "r.key"
            generate_self_signed(REMOTE, crt, key, days=30)
            _REMOTE_CERT.append(x509.load_pem_x509_certificate(crt.read_bytes()))
    return _REMOTE_CERT[0]


@dataclass
class Outcome:
    """What one case did: the transport's writes per stream kind, and the session state."""

    mode: str
    writes: list[bytes]
    prefix_writes: int  # how many of ``writes`` answered the harness's own prefix
    echoable: bytes = b""  # the input: what the server may legitimately echo or archive
    max_pending_bytes: int = 0  # most input held for one unfinished element, stream still open
    elements: int = 0  # top-level elements (or WebSocket messages) the session handled
    bound: str = ""  # the full JID a client stream bound (its stanzas must be for it)
    exceptions: list[str] = field(default_factory=list)
    closed_by_server: bool = False


class World:
    """One in-process server; cases run on it one after another."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_000_000)  # a plausible 'now' for timestamps
        cfg = from_dict({
            "hosts": {DOMAIN: {}, OTHER_DOMAIN: {}},
            "storage": {"url": "sqlite://"},
            "listeners": [],
            "tls": {"require_c2s": True},
            "auth": {"iteration_count": ITERATIONS},
            "federation": {"enabled": True, "dialback_secret": "fuzz-secret"},
            "plugins": {"enabled": PLUGINS},
        })
        # PLAIN checks run PBKDF2 in a thread; here they run inline (xmppd.accounts' own name
        # for the module is replaced, not Twisted's module).
        xmppd.accounts.threads = _InlineThreads  # type: ignore[assignment]
        server = self.server = XmppServer(cfg, self.clock)
        server.db.migrate()  # never started: storage calls run inline (tests/support/inproc)
        server.certs = _Certs()  # type: ignore[assignment]
        s2s = FuzzS2SManager(server)
        s2s.secret = "fuzz-secret"
        s2s._contexts = _Contexts()  # type: ignore[assignment]
        server.s2s = s2s
        server.router.default_route = s2s
        for domain, host in server.hosts.items():
            _resolve(load_plugins(host, cfg.enabled_plugins(domain)))
        self.creds = derive(PASSWORD, ITERATIONS)
        for user in USERS:
            _resolve(server.storage.accounts.create(DOMAIN, user, self.creds))
        self._ips = itertools.count()
        self._resources = itertools.count()
        self.baseline_calls = len(self.clock.getDelayedCalls())

    # -- one case ----------------------------------------------------------------------------
    def run(self, mode: str, chunks: list[bytes]) -> Outcome:
        n = next(self._ips)
        transport = RecordingTransport(f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}")
        proto, feed = self._connect(mode, transport)
        out = Outcome(mode, transport.writes, 0, b"".join(chunks))
        self._prefix(mode, proto, feed, transport)  # HarnessError if the state is not reached
        out.prefix_writes = len(transport.writes)
        progress = _Progress(proto) if not mode.startswith("ws") else None
        fed = boundary = 0
        for chunk in chunks:
            if proto.closed or transport.lost or transport.aborted:
                break
            try:
                feed(chunk)
            except Exception as exc:  # the finding: a callback let an exception escape
                out.exceptions.append(_describe(exc))
            fed += len(chunk)
            if progress is not None:
                # Bytes since the end of the last read that completed an element (or a
                # header): a lower bound of what the parser holds for the element still open.
                if progress.take():
                    boundary = fed
                elif not (proto.closed or transport.lost or transport.aborted
                          or getattr(proto, "parser", True) is None):
                    # (A stream error drops the parser: what comes during the linger
                    # before the close is discarded, not held.)
                    out.max_pending_bytes = max(out.max_pending_bytes, fed - boundary)
        # Let delayed replies (throttled SASL failures, timeouts) and close timers run.
        for step in (0, 1, 1, 2, 4, 8, 16, 32):
            self.clock.advance(step)
        out.elements = progress.count if progress is not None else len(chunks)
        out.bound = getattr(proto, "jid_str", "")
        out.closed_by_server = transport.lost or transport.aborted
        if not proto.closed:
            try:
                proto.connectionLost(Failure(ConnectionDone() if out.closed_by_server
                                             else ConnectionLost()))
            except Exception as exc:
                out.exceptions.append(_describe(exc))
        self.clock.advance(0)
        return out

    def drain(self, seconds: float = 4000.0) -> None:
        """Run every timer the last cases left (hibernated sessions, pings, idle s2s)."""
        for _ in range(int(seconds // 100)):
            self.clock.advance(100)

    def pending_calls(self) -> int:
        return len(self.clock.getDelayedCalls())

    def live_state(self) -> dict[str, int]:
        """Counts that must return to zero once every connection is gone and drained."""
        s2s = self.server.s2s
        return {
            "connections": len(self.server.connections),
            "bound": self.server.sessions.count(),
            "s2s_in": len(s2s.inbound),
            "inflight": len(self.server.inflight),
        }

    # -- set-up per mode ---------------------------------------------------------------------
    def _connect(self, mode: str, transport: RecordingTransport
                 ) -> tuple[Any, Callable[[bytes], None]]:
        server = self.server
        if mode.startswith("ws"):
            ws = WebSocketC2S(server, secure=True)
            ws.makeConnection(transport)
            return ws, ws.frame_received
        if mode.startswith("s2s"):
            s2s = S2SInStream(server.s2s, direct_tls=mode != "s2s")
            # The fake TLS layer has no handshake: preset what it would have told us.
            s2s.peer_cert = PeerCertificate(ChainResult(True, "", _remote_leaf()))
            s2s.makeConnection(transport)
            return s2s, s2s.dataReceived
        c2s = C2SSession(server, direct_tls=mode != "c2s-plain")
        c2s.makeConnection(transport)
        return c2s, c2s.dataReceived

    def _prefix(self, mode: str, proto: Any, feed: Callable[[bytes], None],
                transport: RecordingTransport) -> None:
        if mode in ("c2s-bound", "ws-bound"):
            # Earlier cases may have changed the password or removed the account (XEP-0077).
            accounts = self.server.storage.accounts
            if not _resolve(accounts.set_credentials(DOMAIN, USERS[0], self.creds)):
                _resolve(accounts.create(DOMAIN, USERS[0], self.creds))
            resource = f"fuzz{next(self._resources)}"
            if mode == "c2s-bound":
                steps = [c2s_header(), plain_auth(), c2s_header(), bind(resource)]
            else:
                steps = [WS_OPEN.encode(), plain_auth(), WS_OPEN.encode(), bind(resource)]
            for s in steps:
                feed(s)
            if proto.jid is None:
                raise HarnessError(f"{mode}: not bound after the prefix: {transport.writes!r}")
        elif mode == "s2s-auth":
            feed(s2s_header())
            feed(f"<db:result from='{REMOTE}' to='{DOMAIN}'>valid-key</db:result>".encode())
            if REMOTE not in proto.authenticated:
                raise HarnessError(f"s2s-auth: not authenticated: {transport.writes!r}")


class _Progress:
    """Notes when the session completes a top-level element or a stream header (wraps the
    parser sink's callbacks on the instance; the parser calls them through the session)."""

    def __init__(self, proto: Any) -> None:
        self.done = False
        self.count = 0
        for name in ("element_received", "stream_started"):
            original = getattr(proto, name)
            setattr(proto, name, self._wrap(original))

    def _wrap(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any) -> Any:
            self.done = True
            self.count += 1
            return original(*args)

        return wrapped

    def take(self) -> bool:
        done, self.done = self.done, False
        return done


def _describe(exc: BaseException) -> str:
    import traceback

    return "".join(traceback.format_exception(exc)).strip()


def _resolve(coro: Any) -> Any:
    d = coro if isinstance(coro, defer.Deferred) else defer.Deferred.fromCoroutine(coro)
    out: list[Any] = []
    d.addBoth(out.append)
    if not out:
        raise HarnessError("set-up did not complete synchronously")
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return out[0]
