"""Several xmppd nodes sharing one database and one Redis (ARCHITECTURE "Cluster seam").

Each node keeps its own connections. Redis holds, under the configured prefix ``p``:

* ``p:u:<bare JID>`` (hash per user): resource -> JSON state of a bound resource, written by
  the node that holds the connection (node, availability, priority, presence, flags other
  nodes need);
* ``p:nodes`` (sorted set): node id -> the time until which it counts as alive, pushed
  forward by its heartbeat (the nodes' clocks are assumed to agree within a second, NTP);

and carries over pub/sub ``p:events`` (resource state, cache invalidations) and
``p:to:<id>`` (stanzas for one node's sessions, or for it to route).

Other nodes' resources appear in the SessionManager as RemoteSession proxies: routing,
presence, carbons and plugins see every resource of a user (RFC 6121 §8.5 needs them all)
without knowing where they are. A stanza a proxy cannot hand over (node gone, resource gone
meanwhile) is delivered again from the current view, stored offline or bounced; never dropped.

Component domains (MUC) keep their state in memory, so each room lives on one node: the
highest rendezvous hash of (room, node) over the live nodes (ARCHITECTURE "Cluster seam").
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import txredisapi
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure
from twisted.words.xish.domish import Element

from cluster.handover import Handover
from xmppd import hooks as H
from xmppd import stanza as st
from xmppd.context import ServerContext
from xmppd.errors import StanzaError, StreamError
from xmppd.jid import JID
from xmppd.logs import Logger
from xmppd.portable import MOVED
from xmppd.sessions import SHARED_FLAGS, SessionData
from xmppd.xmlparser import parse_fragment

if TYPE_CHECKING:
    from xmppd.sessions import Session

log = Logger(namespace="xmppd.cluster")

MAX_HOPS = 3  # a stanza handed between nodes whose views briefly disagree
BOUND_AT, TOKEN, WRITTEN = "cluster_bound_at", "cluster_token", "cluster_written"
SEQ = "cluster_seq"  # each state written of a session counts up: an older one never wins


class RemoteSession:
    """A resource bound on another node (the Session protocol, forwarding over Redis)."""

    kind = "remote"

    def __init__(self, cluster: Cluster, state: dict[str, Any]) -> None:
        self.cluster = cluster
        self.jid: JID | None = JID.parse(state["jid"])
        self.host = self.jid.domain
        self.node: str = state["node"]
        self.peer = f"node {self.node}"
        self.bound_at: float = state["bound_at"]
        self.token: str = state["token"]
        self.available = False
        self.priority = 0
        self.presence: Element | None = None
        self.data: dict[str, Any] = {}
        self.update(state)

    def update(self, state: dict[str, Any]) -> None:
        self.seq: int = state["seq"]
        self.available = bool(state.get("available"))
        self.priority = int(state.get("priority", 0))
        xml = state.get("presence")
        self.presence = parse_fragment(xml) if xml else None
        self.data = dict(state.get("data") or {})

    def send(self, stanza: Element) -> None:
        self.cluster.forward_to_session(self, stanza, self.cluster.hops)

    def send_raw(self, data: str) -> None:
        self.cluster.to_node(self.node, {"op": "raw", "to": str(self.jid), "data": data})

    def close(self, error: StreamError | None = None, end: str = "") -> None:
        """Close the stream on its node; with ``end`` (a reason) the node ends the session
        first, so it is not kept for resumption (XmppServer.end_sessions)."""
        msg: dict[str, Any] = {"op": "close", "to": str(self.jid)}
        if error is not None:
            msg["condition"], msg["text"] = error.condition, error.text
        if end:
            msg["end"] = end
        self.cluster.to_node(self.node, msg)


def default_node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


# Registry writes are scripts so that a node never overwrites or removes an entry another
# node has taken over (the later bind of the same full JID wins, RFC 6120 §7.7.2.2), and
# each write and its event reach Redis as one step.
_SCRIPT_BIND = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PUBLISH', KEYS[2], ARGV[3])
return 1
"""
_SCRIPT_UPDATE = """
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v or cjson.decode(v).token ~= ARGV[4] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PUBLISH', KEYS[2], ARGV[3])
return 1
"""
_SCRIPT_UNBIND = """
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v and cjson.decode(v).token == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
if ARGV[3] ~= '' then redis.call('PUBLISH', KEYS[2], ARGV[3]) end
return 1
"""


class Cluster:
    def __init__(self, server: ServerContext) -> None:
        self.server = server
        cfg = server.config.cluster
        self.node = cfg.node or default_node_id()
        self.prefix = cfg.prefix
        self.heartbeat = cfg.heartbeat
        self.node_timeout = cfg.node_timeout
        self._connect_timeout = cfg.connect_timeout
        url = urlsplit(cfg.redis_url)
        self._redis_host = url.hostname or "127.0.0.1"
        self._redis_port = url.port or 6379
        self._redis_db = int(url.path.strip("/") or 0)
        self._redis_password = url.password
        self.redis: Any = None
        self._sub_factory: Any = None
        self._alive: set[str] = {self.node}
        self._beat: LoopingCall | None = None
        self._pending: set[defer.Deferred[Any]] = set()
        self._outbox: dict[str, tuple[list[dict[str, Any]], list[defer.Deferred[int]]]] = {}
        self._flush_call: Any = None
        self.hops = 0  # > 0 while a stanza that bounced between nodes is delivered again
        self.handover = Handover(self)  # XEP-0198 resumption on another node

    @property
    def alive(self) -> set[str]:
        """The nodes we believe alive (ourselves included). Assign to change it: a change is
        announced with CLUSTER_CHANGED."""
        return set(self._alive)

    @alive.setter
    def alive(self, nodes: set[str]) -> None:
        if nodes == self._alive:
            return
        self._alive = set(nodes)
        for host in self.server.hosts.values():
            self._track(host.fire(H.CLUSTER_CHANGED, None))

    def _node_seen(self, node: str) -> None:
        if node not in self._alive:
            self.alive = self._alive | {node}

    # -- keys ---------------------------------------------------------------------------------
    def user_key(self, bare: str) -> str:
        return f"{self.prefix}:u:{bare}"

    @property
    def events_channel(self) -> str:
        return f"{self.prefix}:events"

    def node_channel(self, node: str) -> str:
        return f"{self.prefix}:to:{node}"

    @property
    def nodes_key(self) -> str:
        return f"{self.prefix}:nodes"

    async def _announce_alive(self) -> None:
        now = self.server.clock.seconds()
        await self.redis.zadd(self.nodes_key, now + self.node_timeout, self.node)

    # -- start / stop -------------------------------------------------------------------------
    async def start(self) -> None:
        # Redis unreachable at start is a clear error, not a node that retries for ever
        # before it listens (issue 19); once running, the connection reconnects by itself.
        connecting = txredisapi.Connection(
            self._redis_host, self._redis_port, dbid=self._redis_db, reconnect=True,
            password=self._redis_password, convertNumbers=False)
        connecting.addTimeout(self._connect_timeout, self.server.reactor)
        try:
            self.redis = await connecting
        except defer.TimeoutError:
            raise RuntimeError(
                f"cluster: Redis at {self._redis_host}:{self._redis_port} did not answer "
                f"within {self._connect_timeout:g} s (cluster.redis_url)") from None
        await self._clear_own_entries(self.redis)
        await self.redis.delete(f"{self.prefix}:reap:{self.node}")  # reapable again
        await self._announce_alive()
        factory = _SubscriberFactory(self)
        factory.password = self._redis_password
        self._sub_factory = factory
        factory.startConnecting(TCP4ClientEndpoint(self.server.reactor, self._redis_host,
                                                   self._redis_port))
        await factory.ready
        await self._load_sessions()
        self._beat = LoopingCall(self._heartbeat)
        self._beat.clock = self.server.reactor  # (the clock, as an IReactorTime)
        self._beat.start(self.heartbeat, now=False)
        log.info("cluster node {node} joined ({n} nodes alive)", node=self.node,
                 n=len(self._alive))

    async def stop(self) -> None:
        """Leave: our entries go, and the others forget our resources at once (the sessions
        have ended here already, so their contacts were told)."""
        if self._beat is not None and self._beat.running:
            self._beat.stop()
        self._flush()
        while self._pending:  # writes that sessions ending during shutdown started
            await defer.DeferredList(list(self._pending), consumeErrors=True)
        redis, self.redis = self.redis, None
        if redis is not None:
            await self._clear_own_entries(redis)
            await redis.zrem(self.nodes_key, self.node)
            await redis.publish(self.events_channel,
                                json.dumps({"op": "left", "node": self.node}))
            await redis.disconnect()
        if self._sub_factory is not None:
            await self._sub_factory.disconnect()

    async def _registry(self, redis: Any) -> dict[str, dict[str, str]]:
        """Every user's entries: user key -> {resource: state JSON}."""
        out: dict[str, dict[str, str]] = {}
        cursor: Any = 0
        while True:
            cursor, keys = await redis.scan(cursor, f"{self.prefix}:u:*", 1000)
            for key in keys:
                out[key] = await redis.hgetall(key)
            if int(cursor) == 0:
                return out

    async def _clear_own_entries(self, redis: Any) -> None:
        """Remove what this node id registered (at start: what a previous run left)."""
        for key, entries in (await self._registry(redis)).items():
            stale = [r for r, v in entries.items() if json.loads(v).get("node") == self.node]
            if stale:
                await redis.hdel(key, stale)

    async def _load_sessions(self) -> set[str]:
        self.alive = self._alive | await self._live_nodes()
        present: set[str] = set()
        for entries in (await self._registry(self.redis)).values():
            for raw in entries.values():
                state = json.loads(raw)
                if state["node"] in self.alive and state["node"] != self.node:
                    self._remote_bound(state)
                    present.add(state["jid"])
        return present

    async def resync(self) -> None:
        """After the pub/sub connection came back: events may have been missed, so the view
        of other nodes' resources is rebuilt from the registry."""
        present = await self._load_sessions()
        for proxies in list(self.server.sessions.remote_tables()):
            for proxy in proxies:
                if str(proxy.jid) not in present:
                    self._remote_unbound(proxy)

    async def refresh(self, bare: str) -> bool:
        """Bring our view of one user's resources up to date from the registry (events may
        still be on their way): asked before a message is stored offline, so a user who has
        just come online on another node gets it now. True if the view changed."""
        if self.left:
            return False
        entries = await self.redis.hgetall(self.user_key(bare))
        sessions = self.server.sessions
        changed = False
        for raw in entries.values():
            state = json.loads(raw)
            if state["node"] == self.node:
                continue
            proxy = sessions.remote(JID.parse(state["jid"]))
            if proxy is None or proxy.token != state["token"] or proxy.seq < state["seq"]:
                self._node_seen(state["node"])
                self._remote_bound(state)
                changed = True
        # Proxies missing from the answer are left alone: their bind event may have overtaken
        # it. A stale proxy costs a hand-over that comes back (redeliver), never a stanza.
        return changed

    async def _live_nodes(self) -> set[str]:
        now = self.server.clock.seconds()
        live: list[str] = await self.redis.zrangebyscore(self.nodes_key, now, "+inf")
        return set(live)

    # -- liveness -----------------------------------------------------------------------------
    async def _heartbeat(self) -> None:
        try:
            await self._announce_alive()
            if self.left:  # stopped while that was on its way
                return
            live = await self._live_nodes() | {self.node}
        except Exception:
            log.failure("cluster heartbeat failed")
            return
        for node in self._alive - live:
            await self.node_gone(node)
        self.alive = self._alive | live

    async def node_gone(self, node: str, left: bool = False) -> None:
        """A node stopped without unbinding (crash, partition). Its resources end here; one node
        (the one that wins the reap lock) runs the full session end for each (presence
        unavailable to contacts, RFC 6121 §4.6), the others just forget them."""
        if node not in self._alive:
            return
        self.alive = self._alive - {node}
        proxies = self.server.sessions.remote_of_node(node)
        reaper = not self.left and bool(await self.redis.set(
            f"{self.prefix}:reap:{node}", self.node, expire=60, only_if_not_exists=True))
        (log.info if left else log.warn)(
            "cluster node {node} {how}; {n} resources it still had ended{by}", node=node,
            how="left" if left else "is gone", n=len(proxies),
            by=" (reaping)" if reaper else "")
        if reaper:
            try:  # before the sessions end: their unacknowledged stanzas (handover.py)
                await self.handover.rescue_node(node)
            except Exception:
                log.failure("rescuing the unacknowledged stanzas of node {node} failed",
                            node=node)
        for local in self.server.sessions.all():
            successor = getattr(local, "successor", None)
            if local.data.get("moved") and getattr(successor, "node", None) == node:
                # handed over to it, and it died before binding it: nothing more comes
                self.server.sessions.drop_local(local)
        for proxy in proxies:
            if reaper:
                self.server.end_session(proxy, "cluster node lost")
            self._remote_unbound(proxy, ended=True)
        if reaper and not self.left:
            for proxy in proxies:
                assert proxy.jid is not None
                await self.redis.eval(_SCRIPT_UNBIND, [self.user_key(proxy.jid.bare_str), ""],
                                      [proxy.jid.resource, proxy.token, ""])
            await self.redis.zrem(self.nodes_key, node)

    # -- this node's sessions -> Redis (SessionManager listener) ------------------------------
    @property
    def left(self) -> bool:
        """Shut down: our entries are gone from Redis, and the other nodes forgot us."""
        return self.redis is None

    def state_of(self, session: Session) -> dict[str, Any]:
        shared = {k: v for k, v in session.data.items() if k in SHARED_FLAGS}
        presence = session.presence
        seq = session.data[SEQ] = session.data.get(SEQ, 0) + 1
        return {"node": self.node, "jid": str(session.jid), "token": session.data[TOKEN],
                "seq": seq,
                "bound_at": session.data[BOUND_AT], "available": session.available,
                "priority": session.priority,
                "presence": st.serialize(presence) if presence is not None else None,
                "data": shared, "moved": session.data.get(MOVED)}

    def bound(self, session: Session) -> None:
        now = self.server.clock.seconds()
        session.data[BOUND_AT] = now
        session.data[TOKEN] = f"{self.node}/{now!r}"
        if isinstance(session.data, SessionData):
            session.data.on_change = lambda: self.changed(session)
        self._write("bind", session)

    def changed(self, session: Session) -> None:
        if session.jid is not None and TOKEN in session.data:
            self._write("update", session)

    def _write(self, op: str, session: Session) -> None:
        if self.left:
            return
        assert session.jid is not None
        state = self.state_of(session)
        raw = json.dumps(state)
        event = f'{{"op": "{op}", "state": {raw}}}'  # the state is encoded once
        keys = [self.user_key(session.jid.bare_str), self.events_channel]
        if op == "bind":
            d = self.redis.eval(_SCRIPT_BIND, keys, [session.jid.resource, raw, event])
        else:
            d = self.redis.eval(_SCRIPT_UPDATE, keys, [session.jid.resource, raw, event,
                                                        state["token"]])
        session.data[WRITTEN] = d
        self._track(d)

    def flushed(self, session: Session) -> defer.Deferred[Any]:
        """Fires once the session's last state write is in Redis (so a node that checks the
        registry after this sees it)."""
        d = session.data.get(WRITTEN)
        if d is None or d.called:
            return defer.succeed(None)
        waiter: defer.Deferred[Any] = defer.Deferred()

        def written(result: object) -> object:
            waiter.callback(None)
            return result

        d.addBoth(written)
        return waiter

    def unbound(self, session: Session) -> None:
        token = session.data.get(TOKEN)
        if session.jid is None or token is None or self.left:
            return
        event = json.dumps({"op": "unbind", "node": self.node, "jid": str(session.jid),
                            "token": token, "moved": session.data.get(MOVED)})
        self._track(self.redis.eval(
            _SCRIPT_UNBIND, [self.user_key(session.jid.bare_str), self.events_channel],
            [session.jid.resource, token, event]))

    def invalidate(self, cache: str, key: str) -> None:
        """Tell the other nodes to drop their copy of a user's cached data."""
        if self.left:
            return
        self._track(self.redis.publish(self.events_channel, json.dumps(
            {"op": "invalidate", "node": self.node, "cache": cache, "key": key})))

    def _track(self, d: Any) -> None:
        if not isinstance(d, defer.Deferred):
            d = defer.Deferred.fromCoroutine(d)
        self._pending.add(d)

        def done(result: object) -> object:
            self._pending.discard(d)
            if isinstance(result, Failure):
                log.failure("cluster operation failed", result)
                return None
            return result

        d.addBoth(done)

    # -- events from other nodes ----------------------------------------------------------------
    def on_event(self, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        if op in ("bind", "update"):
            state = msg["state"]
            if state["node"] != self.node:
                self._node_seen(state["node"])
                self._remote_bound(state)
        elif op == "unbind" and msg["node"] != self.node:
            jid = JID.parse(msg["jid"])
            proxy = self.server.sessions.remote(jid)
            if proxy is not None and proxy.token == msg["token"]:
                self._remote_unbound(proxy)
            local = self.server.sessions.get_local(jid)
            if (local is not None and local.data.get("moved")
                    and local.data.get(TOKEN) == msg.get("moved")):
                self.server.sessions.drop_local(local)  # it moved there, then ended
        elif op == "invalidate" and msg["node"] != self.node:
            self.server.caches.drop(msg["cache"], msg["key"])
        elif op == "left" and msg["node"] != self.node:
            # Whatever it still had bound ended without a word (aborted at shutdown): end
            # those here as for a node that died, so contacts get unavailable presence.
            self._track(self.node_gone(msg["node"], left=True))

    def _remote_bound(self, state: dict[str, Any]) -> None:
        sessions = self.server.sessions
        jid = JID.parse(state["jid"])
        proxy = sessions.remote(jid)
        if proxy is not None and proxy.token == state["token"]:
            if state["seq"] > proxy.seq:  # not an older state than we have (refresh vs event)
                proxy.update(state)
            return
        if proxy is not None and proxy.bound_at > state["bound_at"]:
            return  # an event about an older binding, overtaken already
        local = sessions.get_local(jid)
        moved = state.get("moved")
        moved_proxy = proxy is not None and proxy.token == moved
        moved_local = local is not None and bool(local.data.get("moved")) and (
            local.data.get(TOKEN) == moved)
        if moved and (moved_proxy or moved_local):
            # The session was resumed on that node (cluster/handover.py): the same session
            # goes on there, so the resource is not ended (rooms, contacts see nothing).
            if local is not None:
                sessions.drop_local(local)
            sessions.add_remote(RemoteSession(self, state))
            return
        if local is not None:
            # Bound here and there at once: the later bind wins (RFC 6120 §7.7.2.2).
            mine = local.data.get(BOUND_AT, 0.0)
            if (mine, self.node) > (state["bound_at"], state["node"]):
                return
            self.server.end_session(local, "replaced")
            local.close(StreamError("conflict", "Replaced by new connection"))
        if proxy is not None:
            self._remote_unbound(proxy)
        sessions.add_remote(RemoteSession(self, state))

    def _remote_unbound(self, proxy: RemoteSession, ended: bool = False) -> None:
        if self.server.sessions.unbind(proxy) or ended:
            host = self.server.hosts.get(proxy.host)
            if host is not None:
                self._track(host.fire(H.REMOTE_SESSION_ENDED, H.SessionEvent(proxy)))

    # -- stanzas between nodes -------------------------------------------------------------------
    def to_node(self, node: str, msg: dict[str, Any]) -> defer.Deferred[int]:
        """Queue a message for a node; what a reactor turn queues for one node goes out as
        one PUBLISH (a room's fan-out, a presence broadcast). Fires with the number of nodes
        that got it: 0 means the node is gone."""
        if self.left:
            return defer.succeed(0)
        batch = self._outbox.get(node)
        if batch is None:
            batch = self._outbox[node] = ([], [])
            if self._flush_call is None:
                self._flush_call = self.server.clock.callLater(0, self._flush)
        d: defer.Deferred[int] = defer.Deferred()
        batch[0].append(msg)
        batch[1].append(d)
        return d

    def _flush(self) -> None:
        self._flush_call = None
        outbox, self._outbox = self._outbox, {}
        for node, (msgs, waiters) in outbox.items():
            if self.left:
                published: defer.Deferred[Any] = defer.succeed(0)
            else:
                published = self.redis.publish(self.node_channel(node),
                                               json.dumps(_merge_sends(msgs)))

            def done(result: Any, waiters: list[defer.Deferred[int]] = waiters) -> None:
                count = 0 if isinstance(result, Failure) else int(result)
                if isinstance(result, Failure):
                    log.failure("cluster publish failed", result)
                for w in waiters:
                    w.callback(count)

            published.addBoth(done)
            self._track(published)

    def forward_to_session(self, proxy: RemoteSession, stanza: Element, hops: int = 0) -> None:
        # Serialized without its 'to', so that a fan-out (a room message, a presence
        # broadcast) whose copies differ only there travels and is parsed once (_merge_sends).
        attrs = stanza.attributes
        to = attrs.pop("to", None)
        try:
            xml = st.serialize(stanza)
        finally:
            if to is not None:
                attrs["to"] = to
        target = str(proxy.jid)
        msg = {"op": "send", "xml": xml, "r": [[target, None if to == target else to]],
               "hops": hops}

        def published(receivers: int) -> None:
            if receivers == 0:  # nobody listens on that node's channel: it is gone
                self._track(self._lost_node_rescue(proxy, stanza, hops))

        self.to_node(proxy.node, msg).addCallback(published)

    async def _lost_node_rescue(self, proxy: RemoteSession, stanza: Element, hops: int) -> None:
        await self.node_gone(proxy.node)
        self._remote_unbound(proxy)
        await self.redeliver(stanza, hops + 1)

    def forward_route(self, node: str, stanza: Element) -> defer.Deferred[int]:
        """Hand a stanza (its 'from' already verified) to another node's router."""
        return self.to_node(node, {"op": "route", "xml": st.serialize(stanza)})

    def on_node_messages(self, msgs: list[dict[str, Any]]) -> None:
        for msg in msgs:
            try:
                self._on_node_message(msg)
            except Exception:
                log.failure("bad cluster message {msg}", msg=msg)

    def _on_node_message(self, msg: dict[str, Any]) -> None:
        op = msg.get("op")
        if op == "route":
            # handled here even if our view of the owner differs (no ping-pong)
            self._track(self.server.router.route(parse_fragment(msg["xml"]), None,
                                                 forwarded=True))
            return
        if op == "sm-take":
            self.handover.on_take(msg)
            return
        if op == "sm-state":
            self.handover.on_state(msg)
            return
        if op == "send":
            parsed = parse_fragment(msg["xml"])
            hops = int(msg.get("hops", 0)) + 1
            for full, to in msg["r"]:
                stanza = _addressed(parsed, to or full)
                target = self.server.sessions.get_local(JID.parse(full))
                if target is not None and not target.data.get("ended"):
                    target.send(stanza)
                else:
                    self._track(self.redeliver(stanza, hops))
            return
        target = self.server.sessions.get_local(JID.parse(msg["to"]))
        if target is not None and op == "raw":
            target.send_raw(msg["data"])
        elif target is not None and op == "close":
            cond = msg.get("condition")
            if msg.get("end"):
                self.server.end_session(target, str(msg["end"]))
            target.close(StreamError(cond, msg.get("text")) if cond else None)

    async def redeliver(self, stanza: Element, hops: int) -> None:
        """The resource a stanza was handed to is gone: deliver it from the current view
        (RFC 6121 §8.5.3.2: a message falls back to the bare JID, then offline storage;
        an IQ request is answered service-unavailable; presence is ignored)."""
        router = self.server.router
        if stanza.name == "iq":
            if stanza.getAttribute("type") in ("get", "set"):
                await router.bounce(stanza, StanzaError("service-unavailable"))
            return
        if stanza.name != "message":
            return
        to, frm = JID.parse(stanza.attributes["to"]), JID.parse(stanza.attributes["from"])
        host = self.server.hosts.get(to.domain)
        if host is None:
            return
        ev = H.StanzaEvent(stanza, frm, to if hops < MAX_HOPS else to.bare, None)
        if hops >= MAX_HOPS:  # views still disagree: keep it rather than pass it around
            if await host.fire(H.MESSAGE_UNDELIVERED, ev):
                return
            await router.bounce(stanza, StanzaError("service-unavailable"))
            return
        self.hops = hops  # proxies this delivery hands the stanza to carry the count on
        try:
            d = defer.Deferred.fromCoroutine(self.server.sessions.deliver_message(host, ev))
        finally:
            self.hops = 0
        try:
            await d
        except StanzaError as err:
            await router.bounce(stanza, err)

    def node_of_iq(self, iq_id: str) -> str | None:
        """The live node whose IqRegistry made this id (``xmppd.<node>-<n>``), if another."""
        if not iq_id.startswith("xmppd."):
            return None
        node = iq_id[6:].rsplit("-", 1)[0]
        return node if node != self.node and node in self._alive else None

    # -- component ownership -----------------------------------------------------------------
    def owner(self, key: str) -> str:
        """The live node that holds ``key`` (a room): highest rendezvous hash."""
        return max(self._alive, key=lambda n: hashlib.sha1(f"{n}|{key}".encode()).digest())


def _merge_sends(msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive hand-overs of the same stanza (differing only in 'to') become one with a
    list of recipients; only consecutive ones, so no recipient's stanzas change order."""
    out: list[dict[str, Any]] = []
    for m in msgs:
        last = out[-1] if out else None
        if (last is not None and m["op"] == "send" and last["op"] == "send"
                and last["xml"] == m["xml"] and last["hops"] == m["hops"]):
            if len(last["r"]) == 1:
                last = out[-1] = dict(last, r=list(last["r"]))
            last["r"].extend(m["r"])
        else:
            out.append(m)
    return out


def _addressed(parsed: Element, to: str) -> Element:
    """A copy of ``parsed`` with its own attributes and 'to', sharing the children (they are
    only read from here on, as with a room's fan-out template)."""
    el = st.shallow_copy(parsed)
    el.attributes["to"] = to
    return el


class _Subscriber(txredisapi.SubscriberProtocol):
    def messageReceived(self, pattern: Any, channel: Any, message: Any) -> None:  # noqa: N802
        cluster: Cluster = self.factory.cluster
        try:
            msg = json.loads(message)
            if channel == cluster.events_channel:
                cluster.on_event(msg)
            else:
                cluster.on_node_messages(msg)
        except Exception:
            log.failure("bad cluster message on {channel}", channel=channel)


class _SubscriberFactory(txredisapi.SubscriberFactory):
    """One pub/sub connection; (re)subscribes to this node's channels on every connect."""

    protocol = _Subscriber

    def __init__(self, cluster: Cluster) -> None:
        super().__init__()
        self.cluster = cluster
        self.ready: defer.Deferred[None] = defer.Deferred()

    def _connectionReady(self, conn: Any) -> None:  # noqa: N802
        super()._connectionReady(conn)
        cluster = self.cluster
        d = conn.subscribe([cluster.events_channel, cluster.node_channel(cluster.node)])

        def subscribed(_: object) -> None:
            if not self.ready.called:
                self.ready.callback(None)

        d.addCallback(subscribed)
        if self.ready.called:  # a reconnection: catch up on what we missed
            d.addCallback(lambda _: defer.Deferred.fromCoroutine(cluster.resync()))
            d.addErrback(lambda f: log.failure("cluster resync failed", f))
