"""XmppServer: wires storage, hosts, plugins, router, sessions and listeners; clean stop.

Shutdown (SIGTERM/SIGINT) fires SERVER_STOPPING, closes every stream with
<system-shutdown/> (RFC 6120 §4.9.3.20), waits briefly for peers to close, unloads plugins
(so they can flush) and only then stops the storage thread pool.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twisted.internet import defer
from twisted.internet.interfaces import IListeningPort
from twisted.words.xish.domish import Element

from storage.facade import Storage
from storage.sql import Database
from xmppd import hooks as H
from xmppd import proxyproto
from xmppd import stanza as st
from xmppd.accounts import Accounts, LoginTimes
from xmppd.admin.settings import Settings
from xmppd.authguard import AuthGuard, GuardPolicy
from xmppd.c2s import C2SFactory, C2SSession
from xmppd.config import ListenerConfig, ServerConfig
from xmppd.context import Connection, ServerContext
from xmppd.control import ControlServer
from xmppd.errors import StreamError
from xmppd.jid import JID
from xmppd.logs import Logger
from xmppd.metrics import Metrics
from xmppd.plugin import Host, load_plugins, unload_plugins
from xmppd.reload import ReloadReport
from xmppd.router import Router
from xmppd.sessions import Session, SessionData, SessionManager
from xmppd.stats import Stats
from xmppd.tls import CertStore, listener_tls
from xmppd.usercache import UserCaches
from xmppd.web import WebServer

if TYPE_CHECKING:
    from cluster.node import Cluster  # imported when [cluster] is configured (_cluster_class)

log = Logger(namespace="xmppd.server")


class XmppServer:
    def __init__(self, config: ServerConfig, reactor: Any = None,
                 config_path: str | None = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor
            reactor = default_reactor
        self.config = config
        self.clock = reactor
        self.reactor = reactor
        self.stats = Stats()  # hot-path counters; xmppd/metrics.py exposes them
        self.db = Database(config.storage_url, config.storage.pool_size)
        self.db.timing = self.stats.storage_done
        self.storage = Storage(self.db)
        self.accounts = Accounts(self.storage, config.auth.iteration_count)
        self.sessions = SessionManager()
        self.caches = UserCaches()
        self.cluster: Cluster | None = None
        self.sessions.on_replaced = self._replaced
        self.hosts: dict[str, Host] = {d: Host(self, d) for d in config.hosts}
        self.router = Router(self.hosts, self.sessions, self.stats)
        self.certs: CertStore | None = None
        self.web = WebServer(self)
        self.s2s: Any = None  # federation.manager.S2SManager when federation is enabled
        self.components: Any = None  # components.manager.ComponentManager when configured
        self.connections: set[Connection] = set()  # client streams (C2SSession and kin)
        self.listeners: list[tuple[str, IListeningPort]] = []
        # Protocol factories plugins provide for listener types of theirs (Host.listener_factory)
        self.listener_factories: dict[str, Any] = {}
        self.started_at = self.clock.seconds()
        auth = config.auth
        self.auth_guard = AuthGuard(GuardPolicy(
            ban_after=auth.ban_after, account_ban_after=auth.account_ban_after,
            ban_window=auth.ban_window, ban_time=auth.ban_time,
            max_unauthenticated_per_ip=auth.max_unauthenticated_per_ip,
            exempt_networks=tuple(auth.exempt_networks)), self.clock.seconds)
        self.stopping = False
        self.inflight: set[defer.Deferred[Any]] = set()  # work a clean stop must wait for
        self.metrics = Metrics(self) if config.metrics.enabled else None
        self.config_path = config_path  # what reload() reads again (None: the defaults)
        self.logins = LoginTimes(self.storage, self.clock)
        self._settings: dict[str, Settings] = {}
        self.control: ControlServer | None = None
        self.restart_requested = False  # by an administrator: `xmppd run` runs itself again
        self._stop_call: Any = None

    # -- start / stop ---------------------------------------------------------------------------
    async def start(self) -> None:
        log.info("starting on {reactor}", reactor=type(self.reactor).__name__)
        cluster_class = _cluster_class() if self.config.cluster.redis_url else None
        self.certs = CertStore(self.config)
        self.db.migrate()
        self.db.start(self.reactor)
        if self.config.federation.enabled:
            from federation.manager import S2SManager

            self.s2s = S2SManager(self)
            self.router.default_route = self.s2s
            await self.s2s.start()
        for domain, host in self.hosts.items():
            host.iq("set", st.NS_SESSION, "session", _legacy_session, scope="account")
            await load_plugins(host, self.config.enabled_plugins(domain))
        if self.config.components:
            from components.manager import ComponentManager

            self.components = ComponentManager(self)
            self.components.register()
        if cluster_class is not None:
            await self._join_cluster(cluster_class)
        if self.metrics is not None:
            self.metrics.start()  # after plugins: its path must not shadow one of theirs
        self.control = ControlServer(self)
        self.control.start()
        self._listen()
        for host in self.hosts.values():
            await host.fire(H.SERVER_STARTED, None)

    async def _join_cluster(self, cluster_class: type[Cluster]) -> None:
        cluster = self.cluster = cluster_class(self)
        await cluster.start()
        self.sessions.listener = cluster
        self.caches.announce = cluster.invalidate
        self.router.cluster = cluster
        for host in self.hosts.values():
            host.set_iq_id_prefix(f"xmppd.{cluster.node}")

    def _listen(self) -> None:
        assert self.certs is not None
        for lc in self.config.listeners:
            if lc.type in ("c2s", "c2s_tls"):
                factory = C2SFactory(self, direct_tls=lc.type == "c2s_tls")
                tls = listener_tls(self.certs.factory, lc.type) if lc.type == "c2s_tls" else None
                if lc.reuse_port:
                    port = self._listen_shared(lc, factory, tls)
                else:
                    port = proxyproto.listen(self.reactor, lc.port, lc.address, factory, tls,
                                             proxyproto.policy_for(self.config, lc))
            elif lc.type in ("http", "https"):
                port = self.web.listen(lc)
            elif lc.type in ("s2s", "s2s_tls"):
                if self.s2s is None:
                    raise ValueError(f"listeners: a {lc.type} listener needs "
                                     "federation.enabled = true")
                port = self.s2s.listen(lc)
            elif lc.type in self.listener_factories:  # served by a plugin (socks5: proxy65)
                port = self.reactor.listenTCP(lc.port, self.listener_factories[lc.type],
                                              interface=lc.address)
            elif lc.type == "socks5":
                log.info("no plugin serves {type} listeners: port {port} not opened",
                         type=lc.type, port=lc.port)
                continue
            elif lc.type in ("component", "component_tls"):
                if self.components is None:
                    log.info("no components configured: {type} listener on port {port} "
                             "not opened", type=lc.type, port=lc.port)
                    continue
                port = self.components.listen(lc)
            else:
                raise NotImplementedError(f"listener type {lc.type} is not available yet")
            self.listeners.append((lc.type, port))
            log.info("listening for {type} on {addr}:{port}", type=lc.type, addr=lc.address,
                     port=_port_number(port))

    def _listen_shared(self, lc: ListenerConfig, factory: C2SFactory,
                       tls: Any) -> IListeningPort:
        """A client port shared with the other processes that bind it with SO_REUSEPORT."""
        family = socket.AF_INET6 if ":" in lc.address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((lc.address, lc.port))
            sock.listen(128)
            sock.setblocking(False)
            proto = proxyproto.wrap(factory, proxyproto.policy_for(self.config, lc),
                                    self.reactor, tls)
            port: IListeningPort = self.reactor.adoptStreamPort(sock.fileno(), family, proto)
        finally:
            sock.close()  # the reactor holds its own duplicate of the descriptor
        return port

    def ports(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for kind, port in self.listeners:
            out.setdefault(kind, []).append(_port_number(port))
        return out

    def bound_port(self, kind: str) -> int | None:
        """The first bound port of a listener type (None if there is none yet)."""
        ports = self.ports().get(kind)
        return ports[0] if ports else None

    def write_ports(self, path: str) -> None:
        """Report the bound ports (tests listen on port 0 and read this file)."""
        tmp = Path(path + ".tmp")
        tmp.write_text(json.dumps(self.ports()))
        tmp.replace(path)

    async def stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        log.info("shutting down")
        if self.control is not None:
            self.control.stop()
        for host in self.hosts.values():
            await host.fire(H.SERVER_STOPPING, None)
        if self.metrics is not None:
            self.metrics.stop()
        for _kind, port in self.listeners:
            await defer.maybeDeferred(port.stopListening)
        for conn in list(self.connections):
            conn.close(StreamError("system-shutdown"))
        if self.s2s is not None:
            await self.s2s.stop()
        if self.components is not None:
            await self.components.stop()
        deadline = self.clock.seconds() + 3.0
        while self.connections and self.clock.seconds() < deadline:
            await self._pause(0.05)
        for conn in list(self.connections):
            conn.abort()
        if self.cluster is not None:
            # Once the aborted connections are gone (their sessions ended and said so), leave
            # before plugins go, so stanzas handed back while leaving can be stored offline.
            await self._pause(0.05)
            await self.cluster.stop()
        # Stanzas still being stored and sessions still being wound up (offline storage of
        # unacknowledged messages) finish before storage goes away.
        deadline = self.clock.seconds() + 10.0
        while self.inflight and self.clock.seconds() < deadline:
            await defer.DeferredList(list(self.inflight), consumeErrors=True)
        for host in self.hosts.values():
            await unload_plugins(host)
        await self.logins.flush()
        self.db.stop()
        log.info("stopped")

    def _pause(self, seconds: float) -> defer.Deferred[None]:
        d: defer.Deferred[None] = defer.Deferred()
        self.clock.callLater(seconds, d.callback, None)
        return d

    def schedule_stop(self, seconds: float, announcement: str | None, restart: bool = False,
                      by: str = "") -> None:
        """Shut down (or restart) after ``seconds``, telling every online user now (XEP-0133
        §4.30, §4.31). A later request replaces an earlier one."""
        from xmppd.admin.messages import announce_to
        from xmppd.ops import Context

        what = "restart" if restart else "shut down"
        log.warn("{by} asked to {what} in {s:.0f} s", by=by or "an administrator", what=what,
                 s=seconds)
        if announcement:
            ctx = Context(self.config, self.storage, self.accounts, self)
            self.track(defer.Deferred.fromCoroutine(
                announce_to(ctx, list(self.hosts), announcement)))
        if self._stop_call is not None and self._stop_call.active():
            self._stop_call.cancel()
        self._stop_call = self.clock.callLater(max(0.0, seconds), self._stop_now, restart)

    @property
    def draining(self) -> bool:
        """Shutting down, or a shutdown or restart is scheduled (XEP-0133 §4.30, §4.31): load
        balancers should send new connections elsewhere (/health answers 503)."""
        return self.stopping or (self._stop_call is not None and self._stop_call.active())

    def _stop_now(self, restart: bool) -> None:
        self.restart_requested = restart
        self.reactor.stop()  # the shutdown trigger runs stop()

    def settings(self, domain: str) -> Settings:
        """The host's admin list, message of the day and welcome message."""
        found = self._settings.get(domain)
        if found is None:
            found = self._settings[domain] = Settings(
                self.storage, domain, lambda: self.config,
                self.hosts[domain].user_cache("admin-settings"))
        return found

    async def reload(self) -> ReloadReport:
        """Certificates and what of the configuration can change while running (SIGHUP,
        `xmppd reload`); see xmppd/reload.py."""
        from xmppd.reload import reload

        return await reload(self)

    # -- session lifecycle ------------------------------------------------------------------------
    def session_bound(self, session: Session) -> None:
        host = self.hosts[session.host]
        if session.jid is not None:
            self.logins.record(session.host, session.jid.local)
        defer.Deferred.fromCoroutine(host.fire(H.SESSION_BOUND, H.SessionEvent(session)))

    def session_ended(self, session: Session, clean: bool) -> None:
        """A bound connection closed; hibernate it (XEP-0198) or end it."""
        if session.data.get("ended") or getattr(session, "superseded", False):
            return
        host = self.hosts[session.host]
        if not clean and not self.stopping and host.fire_sync(
                H.SESSION_INTERRUPTED, H.SessionEvent(session, reason="connection lost")):
            return
        self.end_session(session, "closed" if clean else "connection lost")

    def end_session(self, session: Session, reason: str) -> None:
        """Unbind and announce the end of a session exactly once."""
        if session.data.get("ended") or session.data.get("moved"):
            return  # (moved: it goes on on another cluster node, cluster/handover.py)
        session.data["ended"] = True
        self.sessions.unbind(session)
        host = self.hosts[session.host]
        ev = H.SessionEvent(session, reason=reason)
        self.track(defer.Deferred.fromCoroutine(host.fire(H.SESSION_CLOSED, ev)))

    def track(self, d: defer.Deferred[Any]) -> None:
        """Remember unfinished work so that stop() waits for it."""
        if d.called:
            return
        self.inflight.add(d)

        def done(result: object) -> object:
            self.inflight.discard(d)
            return result

        d.addBoth(done)

    def takeover(self, old: C2SSession, new: C2SSession) -> None:
        """A new stream resumes ``old``'s session (XEP-0198 §5); the old TCP is dropped."""
        new.adopt(old)
        self.sessions.replace(old, new)
        if not old.closed:
            old.abort()

    def move_out(self, session: C2SSession, node: str) -> None:
        """The session continues on cluster node ``node`` (cluster/handover.py step 3): not
        ended here; whatever reaches the old object is forwarded there. It stays in the
        session table until ``node``'s binding replaces it (Cluster._remote_bound), so a
        stanza routed here meanwhile is forwarded too."""
        assert self.cluster is not None and session.jid is not None
        session.data["moved"] = True
        if isinstance(session.data, SessionData):
            session.data.on_change = None
        session.superseded = True
        session.successor = self.cluster.handover.forwarder(node, session.jid)
        if not session.closed:
            session.abort()

    def move_in(self, session: C2SSession, state: dict[str, Any]) -> None:
        """Bind ``session`` as the continuation of a session another node held
        (cluster/handover.py step 4), with its exported state."""
        from xmppd.portable import MOVED, import_data, import_presence

        data = SessionData()
        dict.update(data, import_data(state["data"]))
        if state.get("token"):
            dict.__setitem__(data, MOVED, state["token"])
        session.adopt_moved(JID.parse(state["jid"]), bool(state["available"]),
                            int(state["priority"]), import_presence(state), data,
                            state.get("lang"))
        self.sessions.attach(session)
        self.session_bound(session)

    def _replaced(self, old: Session) -> None:
        self.end_session(old, "replaced")

    async def delete_account(self, jid: JID) -> bool:
        host = self.hosts[jid.domain]
        await host.fire(H.ACCOUNT_DELETED, H.AccountEvent(jid.bare))
        found = await self.accounts.delete(jid.domain, jid.local)
        self.end_sessions(jid.bare, StreamError("not-authorized", "account deleted"),
                          "account deleted")
        return found

    def end_sessions(self, jid: JID, error: StreamError, reason: str) -> int:
        """End the session of a full JID, or every session of a bare JID wherever it is
        bound, for good: unbound first (so stream management does not keep it for
        resumption, XEP-0198 §5, and contacts see it go), then the stream is closed with
        ``error`` (RFC 6120 §4.9). Used when an administrator ends sessions and when an
        account is disabled or deleted. Returns how many sessions were ended."""
        if jid.resource:
            found = self.sessions.get(jid)
            targets = [] if found is None else [found]
        else:
            targets = self.sessions.resources(jid)
        for s in targets:
            if s.kind == "remote":
                s.close(error, end=reason)  # type: ignore[call-arg]  # its node ends it
            else:
                self.end_session(s, reason)
                s.close(error)
        return len(targets)

    # -- authentication throttle ------------------------------------------------------------------
    def auth_reply_delay(self, ip: str) -> float:
        """How long to hold back a failure reply: nothing for the first ``throttle_after``
        failures from the address within the ban window, then doubling up to the maximum.
        (Bans, which bound the guess rate, are AuthGuard's.)"""
        over = self.auth_guard.recent_failures(ip) - self.config.auth.throttle_after
        if over <= 0:
            return 0.0
        return float(min(2 ** (over - 1), self.config.auth.throttle_max_delay))


def _cluster_class() -> type[Cluster]:
    """The cluster (cluster/), imported only when configured: a single node does without
    txredisapi and hiredis, which come with the ``cluster`` extra."""
    try:
        from cluster.node import Cluster
    except ModuleNotFoundError as exc:
        if exc.name not in ("txredisapi", "hiredis"):
            raise
        raise RuntimeError(f"cluster.redis_url is set but {exc.name} is not installed: "
                           "pip install 'xmppd[cluster]'") from exc
    return Cluster


def _context(server: XmppServer) -> ServerContext:
    """Not called: mypy checks here that the server provides what streams, federation,
    components and the cluster are typed against (xmppd/context.py)."""
    return server


def _port_number(port: IListeningPort) -> int:
    number: int = port.getHost().port  # type: ignore[attr-defined]
    return number


def _legacy_session(req: Any) -> Element | None:
    """RFC 3921 §3 session establishment, kept as a no-op for old clients (RFC 6121 App. E)."""
    return None
