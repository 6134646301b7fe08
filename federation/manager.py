"""S2SManager: the router's default route (ARCHITECTURE "federation is the default route").

Stanzas for a remote domain travel on a stream per (local domain, remote domain) pair.
While that stream is being resolved, connected and authenticated they wait in a bounded
queue (``federation.max_queue``) and are flushed in order once it is ready (RFC 6120 §10.1).
If no stream can be had, every queued stanza is bounced to its sender with
``remote-server-not-found`` (the domain does not resolve or refuses us) or
``remote-server-timeout`` (it could not be reached in time) (RFC 6120 §8.3.3.16-17) and
further attempts back off; nothing is dropped in silence. Unused streams are closed after
``federation.idle_timeout``; on shutdown every stream gets ``<system-shutdown/>``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IListeningPort
from twisted.words.xish.domish import Element

from federation import dialback as db
from federation.inbound import S2SInFactory, S2SInStream
from federation.outbound import ConnectFailure, OutFactory, S2SOutStream, Target, resolve
from federation.tlsctx import S2SContexts
from federation.verify import trust_store
from xmppd import hooks as H
from xmppd import proxyproto
from xmppd.config import ListenerConfig
from xmppd.context import ServerContext
from xmppd.errors import StanzaError, StreamError
from xmppd.logs import Logger
from xmppd.tls import listener_tls

log = Logger(namespace="federation.manager")

RETRY_INITIAL = 2.0  # seconds before a failed domain is tried again; doubles per failure
RETRY_MAX = 300.0


@dataclass(eq=False)
class Route:
    """Outbound state for one (local, remote) domain pair."""

    local: str
    remote: str
    queue: deque[Element] = field(default_factory=deque)
    stream: S2SOutStream | None = None
    attempt: S2SOutStream | None = None  # the stream being negotiated
    connecting: bool = False
    retry_at: float = 0.0
    backoff: float = 0.0
    last_error: StanzaError | None = None
    verifies: list[tuple[str, str, Deferred[str]]] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        s = self.stream
        return s is not None and s.writable and self.local in s.authorized


class S2SManager:
    def __init__(self, server: ServerContext) -> None:
        self.server = server
        self.config = server.config.federation
        self.require_tls = self.config.require_tls
        self.routes: dict[tuple[str, str], Route] = {}
        self.inbound: set[S2SInStream] = set()
        self.outbound: set[S2SOutStream] = set()
        self.secret = ""
        self.trust: Any = None
        self._contexts: S2SContexts | None = None
        self.stopping = False
        self._idle_timer: IDelayedCall | None = None

    # -- server API -------------------------------------------------------------------------------
    async def start(self) -> None:
        cfg = self.server.config
        self.secret = db.load_secret(self.config.dialback_secret, cfg.resolve(cfg.data_dir))
        ca = str(cfg.resolve(self.config.ca_file)) if self.config.ca_file else ""
        self.trust = trust_store(ca)
        assert self.server.certs is not None
        self._contexts = S2SContexts(cfg, self.server.certs)
        self._schedule_idle()

    @property
    def contexts(self) -> S2SContexts:
        assert self._contexts is not None, "S2SManager.start() first"
        return self._contexts

    def listen(self, lc: ListenerConfig) -> IListeningPort:
        """``s2s``: STARTTLS on 5269; ``s2s_tls``: direct TLS (XEP-0368) on 5270."""
        tls = listener_tls(self.contexts.factory, lc.type) if lc.type == "s2s_tls" else None
        return proxyproto.listen(self.server.reactor, lc.port, lc.address,
                                 S2SInFactory(self, lc.type == "s2s_tls"), tls,
                                 proxyproto.policy_for(self.server.config, lc))

    async def stop(self) -> None:
        self.stopping = True
        if self._idle_timer is not None and self._idle_timer.active():
            self._idle_timer.cancel()
        # Let closing client sessions send their unavailable presence out first.
        await self._wait(lambda: not self.server.connections, 2.0)
        for stream in [*self.outbound, *self.inbound]:
            stream.stream_error(StreamError("system-shutdown"))
        for route in list(self.routes.values()):
            await self._fail_route(route, StanzaError("remote-server-timeout",
                                                      text="server shutting down"))
        await self._wait(lambda: not (self.outbound or self.inbound), 3.0)
        for stream in [*self.outbound, *self.inbound]:
            stream.abort()

    async def _wait(self, done: Any, seconds: float) -> None:
        deadline = self.server.clock.seconds() + seconds
        while not done() and self.server.clock.seconds() < deadline:
            d: Deferred[None] = Deferred()
            self.server.clock.callLater(0.05, d.callback, None)
            await d

    # -- domains and policy ---------------------------------------------------------------------
    def serves(self, domain: str) -> bool:
        """A domain this server answers for: a host or a routed service (conference.<host>)."""
        return domain in self.server.hosts or domain in self.server.router.routes

    def require_valid_certificates(self, remote: str) -> bool:
        policy = self.config.domains.get(remote)
        if policy is not None and policy.require_valid_certificates is not None:
            return policy.require_valid_certificates
        return self.config.require_valid_certificates

    def _route(self, local: str, remote: str) -> Route:
        route = self.routes.get((local, remote))
        if route is None:
            route = self.routes[(local, remote)] = Route(local, remote)
        return route

    # -- outbound stanzas (RouteTarget) -----------------------------------------------------------
    async def receive(self, ev: H.StanzaEvent) -> None:
        """A stanza for a domain not served here: send it over federation (or raise)."""
        local, remote = ev.from_.domain, ev.to.domain
        if not self.serves(local):
            raise StanzaError("not-allowed", text="not a domain of this server")
        if self.stopping:
            raise StanzaError("remote-server-timeout", text="server shutting down")
        route = self._route(local, remote)
        if route.usable and not route.queue:
            assert route.stream is not None
            route.stream.send_stanza(ev.stanza)
            return
        if not route.connecting and self.server.clock.seconds() < route.retry_at:
            raise route.last_error or StanzaError("remote-server-timeout")
        if len(route.queue) >= self.config.max_queue:
            raise StanzaError("resource-constraint", text=f"too many stanzas queued for {remote}")
        route.queue.append(ev.stanza)
        self._ensure(route)

    def _ensure(self, route: Route) -> None:
        if route.connecting or route.usable:
            return
        route.connecting = True
        d = Deferred.fromCoroutine(self._establish(route))
        self.server.track(d)
        d.addErrback(lambda f: log.failure("federation {local} -> {remote}", f,
                                           local=route.local, remote=route.remote))

    async def _establish(self, route: Route) -> None:
        try:
            stream = await self._piggyback(route) or await self._open(route)
        except ConnectFailure as exc:
            route.connecting = False
            clock = self.server.clock
            route.backoff = min(max(route.backoff * 2, RETRY_INITIAL), RETRY_MAX)
            route.retry_at = clock.seconds() + route.backoff
            log.info("federation {local} -> {remote} failed ({cond}: {text}); next attempt "
                     "in {delay:.0f}s", local=route.local, remote=route.remote,
                     cond=exc.condition, text=exc.text, delay=route.backoff)
            await self._fail_route(route, StanzaError(exc.condition, text=exc.text))
            return
        route.connecting = False
        route.backoff = 0.0
        route.retry_at = 0.0
        route.stream = stream
        self._send_verifies(route)
        self.flush(route)

    async def _fail_route(self, route: Route, err: StanzaError) -> None:
        route.last_error = err
        verifies, route.verifies = route.verifies, []
        for _sid, _key, d in verifies:
            if not d.called:
                d.callback(err.condition)
        queued = list(route.queue)
        route.queue.clear()
        for stanza in queued:
            await self.server.router.bounce(stanza, err)

    def flush(self, route: Route) -> None:
        stream = route.stream
        while route.queue and stream is not None and stream.writable:
            stream.send_stanza(route.queue.popleft())
        if route.queue:
            self._ensure(route)

    async def _piggyback(self, route: Route) -> S2SOutStream | None:
        """Reuse a stream another local domain has to the same remote (XEP-0220 §2.5.1)."""
        if not self.config.dialback:
            return None
        for other in list(self.routes.values()):
            s = other.stream
            if other.remote == route.remote and other is not route and other.usable and (
                    s is not None and s.peer_dialback_errors) and (
                    await s.authorize(route.local) == "valid" and s.writable):
                return s
        return None

    async def _open(self, route: Route) -> S2SOutStream:
        policy = self.config.domains.get(route.remote)
        try:
            targets = await resolve(route.remote, policy.connect if policy else "")
        except ValueError as exc:
            raise ConnectFailure("remote-server-not-found", str(exc)) from None
        if not targets:
            raise ConnectFailure("remote-server-not-found", f"{route.remote} does not resolve")
        clock = self.server.clock
        deadline = clock.seconds() + self.config.connect_timeout
        last: ConnectFailure | None = None
        for target in targets:
            use_external = True
            while clock.seconds() < deadline:
                try:
                    return await self._attempt(route, target, deadline, use_external)
                except ConnectFailure as exc:
                    last = exc
                    if not (exc.external_refused and use_external and self.config.dialback):
                        break
                    use_external = False  # XEP-0178 refused: one more try with dialback
        raise last or ConnectFailure("remote-server-timeout", "no time left to connect")

    async def _attempt(self, route: Route, target: Target, deadline: float,
                       use_external: bool) -> S2SOutStream:
        clock = self.server.clock
        timeout = max(deadline - clock.seconds(), 0.1)
        stream = S2SOutStream(self, route.local, route.remote, target, use_external)
        stream.on_lost = self._stream_lost
        stream.on_dialback_ready = lambda s: self._send_verifies(route)
        route.attempt = stream
        connector = self.server.reactor.connectTCP(target.host, target.port, OutFactory(stream),
                                                   timeout=timeout)
        timer = clock.callLater(timeout, _expire, stream, connector)
        try:
            return await stream.ready
        finally:
            if route.attempt is stream:
                route.attempt = None
            if timer.active():
                timer.cancel()

    def _stream_lost(self, stream: S2SOutStream) -> None:
        for route in self.routes.values():
            if route.stream is stream:
                route.stream = None
                if route.queue:
                    self._ensure(route)

    # -- dialback as Receiving Server (XEP-0220 §2.1.2) -------------------------------------------
    def verify_dialback(self, local: str, remote: str, stream_id: str, key: str
                        ) -> Deferred[str]:
        """Ask ``remote``'s Authoritative Server whether ``key`` is genuine. A fresh inbound
        attempt means the peer is up, so this ignores the retry back-off."""
        route = self._route(local, remote)
        d: Deferred[str] = Deferred()
        route.verifies.append((stream_id, key, d))
        if not self._send_verifies(route) and not route.connecting:
            route.retry_at = 0.0
            self._ensure(route)
        timer = self.server.clock.callLater(self.config.connect_timeout, _timeout_verify, d)
        d.addBoth(_cancel_timer, timer)
        return d

    def _send_verifies(self, route: Route) -> bool:
        """Send queued verification requests over the pair's stream, or over the one being
        negotiated once it may carry dialback: waiting for our own authentication first
        could deadlock two servers that both use dialback."""
        stream = route.stream if route.stream is not None and route.stream.writable else None
        if stream is None and route.attempt is not None and route.attempt.dialback_ready:
            stream = route.attempt
        if stream is None or not stream.writable:
            return False
        verifies, route.verifies = route.verifies, []
        for sid, key, d in verifies:
            if not d.called:
                stream.request_verify(route.local, route.remote, sid, key).chainDeferred(d)
        return True

    def inbound_authenticated(self, remote: str) -> None:
        """The peer just reached us: forget back-off so replies to it go out at once."""
        for route in self.routes.values():
            if route.remote == remote and not route.connecting:
                route.retry_at = 0.0

    # -- idle streams ------------------------------------------------------------------------------
    def _schedule_idle(self) -> None:
        interval = max(min(self.config.idle_timeout / 4, 60.0), 0.5)
        self._idle_timer = self.server.clock.callLater(interval, self._close_idle)

    def _close_idle(self) -> None:
        now = self.server.clock.seconds()
        limit = self.config.idle_timeout
        for stream in [*self.outbound, *self.inbound]:
            busy = any(r.stream is stream and r.queue for r in self.routes.values())
            if stream.writable and not busy and now - stream.last_active > limit:
                log.info("closing idle s2s stream {peer}", peer=stream.peer)
                stream.close_stream()
        self._schedule_idle()


def _expire(stream: S2SOutStream, connector: Any) -> None:
    if stream.transport is None:
        connector.stopConnecting()
    stream.timed_out()


def _timeout_verify(d: Deferred[str]) -> None:
    if not d.called:
        d.callback("remote-server-timeout")


def _cancel_timer(result: object, timer: IDelayedCall) -> object:
    if timer.active():
        timer.cancel()
    return result

