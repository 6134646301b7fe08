"""XEP-0198 resumption on any cluster node ("resume anywhere", issue 19 item 2).

A stream-managed session lives in the memory of the node that holds its connection. When
the connection drops and the client comes back through a load balancer, it may reach
another node. That node (the *claimant*) takes the session over from the *owner*:

1. **Directory.** ``p:sm:<SM-ID>`` in Redis names the node that holds a resumable session
   (written when <enabled resume/> is sent, removed when the session ends). It costs one
   write per enable and one per end, nothing per stanza.
2. **Claim.** The claimant swaps that value for ``moving:<claimant>`` in one script that
   fails if a claim is already under way. Of several concurrent <resume/> with one previd
   (on any nodes, this one included) exactly one gets the claim; the others are answered
   <failed><item-not-found/></failed> (XEP-0198 §5: the session is not there for them).
3. **Hand-over.** The claimant asks the owner over the owner's node channel (``sm-take``).
   The owner waits until the session's written-behind stanzas have committed (so the 'h'
   it reports is true, XEP-0198 §5), then, in one reactor turn: stops its timers, drops the
   session from its tables *without ending it* (no unavailable presence, no offline
   rescue, nobody told it left), exports its serialisable state (JID, presence, priority,
   ``session.data`` - roster requested, directed presences, carbons, CSI and what it holds,
   blocking list requested, push registration, any plugin's JSON value - the SM counters
   and the unacknowledged stanzas), and leaves behind a forwarder: whatever is still sent
   to the old session object (a plugin that holds it, a stanza routed before the others
   learnt the move) goes on to the claimant over the same node channel, *after* the state
   (one publisher, one channel: Redis keeps the order).
4. **Take-over.** The claimant binds the session locally under the same full JID with the
   state it got, registers it (the registry entry names the old token as ``moved``, so the
   other nodes swap their proxy without ending the resource: rooms keep the occupant,
   contacts see no presence change), answers <resumed h/> and sends the unacknowledged
   stanzas again - all in the turn the state arrived, before any forwarded stanza is
   handled, so the client sees them once and in order. The client's 'h' acknowledges
   (XEP-0198 §5); everything after it is sent again.
5. **No answer.** An owner that is gone (nobody listens on its channel) or does not answer
   within ``handover_timeout`` gets the claimant <failed/>. A state that arrives after that
   is not dropped: its unacknowledged messages go to offline storage and the session ends
   as a session whose node is gone would (see ``Handover.late``).

A node killed with its resumable sessions (``Handover.mirror_push``, ``rescue_node``): each
session's unacknowledged queue is copied to Redis as it is sent (``p:smq:<SM-ID>``, indexed
per node in ``p:smn:<node>``); the node that reaps the dead node's resources moves those
stanzas to offline storage before the resources end, so a client that comes back gets
<failed/>, binds again and receives them from there: none lost.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from twisted.internet import defer

from xmppd.jid import JID
from xmppd.logs import Logger

if TYPE_CHECKING:
    from cluster.node import Cluster

log = Logger(namespace="cluster.handover")

Provider = Callable[[str, str, str], Awaitable[dict[str, Any] | None]]
LateHandler = Callable[[dict[str, Any]], Awaitable[None]]
Rescuer = Callable[[str, list[str]], Awaitable[None]]

_SCRIPT_CLAIM = """
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, 7) == 'moving:' then return false end
redis.call('SET', KEYS[1], 'moving:' .. ARGV[1], 'EX', ARGV[2])
return v or ''
"""
_SCRIPT_RELEASE = """
if redis.call('GET', KEYS[1]) == 'moving:' .. ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) end
return 1
"""
# One reactor turn's changes to the queues' copies in one command: for each KEYS[i],
# ARGV[i] is 't<count>' (drop the first count entries) or 'p<stanza>' (append one).
_SCRIPT_MIRROR = """
for i, key in ipairs(KEYS) do
  local v = ARGV[i]
  if string.sub(v, 1, 1) == 't' then
    redis.call('LTRIM', key, tonumber(string.sub(v, 2)), -1)
  else
    redis.call('RPUSH', key, string.sub(v, 2))
  end
end
return #KEYS
"""
_SCRIPT_FORGET = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""



# -- the directory and the node-to-node exchange -------------------------------------------------
class Handover:
    """Where each resumable session lives, and the take-over protocol (module docstring)."""

    def __init__(self, cluster: Cluster, timeout: float = 5.0) -> None:
        self.cluster = cluster
        self.timeout = timeout
        self.providers: dict[str, Provider] = {}  # domain -> SM's exporter
        self.late_handlers: dict[str, LateHandler] = {}
        self.rescuers: dict[str, Rescuer] = {}
        self._waiting: dict[str, defer.Deferred[dict[str, Any] | None]] = {}
        # the unacknowledged queues' copies, written once per reactor turn (see mirror)
        self._pushes: dict[str, list[str]] = {}
        self._trims: dict[str, int] = {}
        self._flush_call: Any = None

    @property
    def node(self) -> str:
        return self.cluster.node

    def key(self, rid: str) -> str:
        return f"{self.cluster.prefix}:sm:{rid}"

    def provide(self, domain: str, provider: Provider, late: LateHandler,
                rescue: Rescuer) -> None:
        self.providers[domain] = provider
        self.late_handlers[domain] = late
        self.rescuers[domain] = rescue

    def queue_key(self, rid: str) -> str:
        return f"{self.cluster.prefix}:smq:{rid}"

    def index_key(self, node: str) -> str:
        """Hash of the resumable sessions a node holds: SM-ID -> full JID."""
        return f"{self.cluster.prefix}:smn:{node}"

    # -- directory -----------------------------------------------------------------------------
    def register(self, rid: str, jid: JID | None) -> None:
        """This node holds the session ``rid`` (sent <enabled resume/>, or took it over)."""
        if not self.cluster.left:
            redis = self.cluster.redis
            self.cluster._track(redis.set(self.key(rid), self.node))
            self.cluster._track(redis.hset(self.index_key(self.node), rid, str(jid)))

    def moved_out(self, rid: str) -> None:
        """The session goes to another node (which indexes it): what this turn added to its
        queue's copy goes out first, before the state is published (one connection, so
        Redis has them before the claimant can trim)."""
        if rid in self._pushes or rid in self._trims:
            self._flush()
        if not self.cluster.left:
            self.cluster._track(self.cluster.redis.hdel(self.index_key(self.node), rid))

    def forget(self, rid: str) -> None:
        """The session ended here: unless another node has claimed it meanwhile."""
        self._pushes.pop(rid, None)
        self._trims.pop(rid, None)
        if not self.cluster.left:
            self.cluster._track(self.cluster.redis.hdel(self.index_key(self.node), rid))
            redis = self.cluster.redis
            self.cluster._track(redis.eval(_SCRIPT_FORGET, [self.key(rid)], [self.node]))
            self.cluster._track(redis.delete(self.queue_key(rid)))

    def drop(self, rid: str) -> None:
        """A session handed over and then ended before anyone resumed it (``late``)."""
        if not self.cluster.left:
            self.cluster._track(self.cluster.redis.delete(self.key(rid), self.queue_key(rid)))

    # -- the unacknowledged queue's copy (a node killed with its sessions) ----------------------
    def mirror_push(self, rid: str, xml: str) -> None:
        """A stanza joined the session's unacknowledged queue."""
        self._pushes.setdefault(rid, []).append(xml)
        self._soon()

    def mirror_trim(self, rid: str, count: int) -> None:
        """The client acknowledged the first ``count`` of the queue."""
        pending = self._pushes.get(rid)
        if pending:  # not written yet: those are dropped before they go out
            drop = min(count, len(pending))
            del pending[:drop]
            count -= drop
        if count:
            self._trims[rid] = self._trims.get(rid, 0) + count
            self._soon()

    def _soon(self) -> None:
        if self._flush_call is None:
            self._flush_call = self.cluster.server.clock.callLater(0, self._flush)

    def _flush(self) -> None:
        """One reactor turn's changes to every session's copy, as one script call (a command
        per stanza cost more CPU than the stanza's own routing): trims first (they drop
        entries written in earlier turns), then appends, in order."""
        self._flush_call = None
        trims, pushes = self._trims, self._pushes
        self._trims, self._pushes = {}, {}
        if self.cluster.left or not (trims or pushes):
            return
        keys: list[str] = []
        args: list[str] = []
        for rid, count in trims.items():
            keys.append(self.queue_key(rid))
            args.append(f"t{count}")
        for rid, xmls in pushes.items():
            key = self.queue_key(rid)
            for xml in xmls:
                keys.append(key)
                args.append("p" + xml)
        if keys:
            self.cluster._track(self.cluster.redis.eval(_SCRIPT_MIRROR, keys, args))

    async def rescue_node(self, node: str) -> int:
        """``node`` died (this node reaps it): the unacknowledged stanzas of each resumable
        session it held go to offline storage; the sessions end with the node's other
        resources (Cluster.node_gone), so a later <resume/> fails and the client binds
        again and gets them. Returns how many stanzas were rescued."""
        redis = self.cluster.redis
        held: dict[str, str] = await redis.hgetall(self.index_key(node))
        rescued = 0
        for rid, full in held.items():
            jid = JID.parse(full)
            rescuer = self.rescuers.get(jid.domain)
            if rescuer is None:
                continue  # a domain not served here (yet): left for who serves it
            xmls: list[str] = await redis.lrange(self.queue_key(rid), 0, -1)
            if xmls:
                await rescuer(jid.bare_str, xmls)
                rescued += len(xmls)
            await redis.eval(_SCRIPT_FORGET, [self.key(rid)], [node])
            await redis.delete(self.queue_key(rid))
            await redis.hdel(self.index_key(node), rid)
        if held:
            log.info("node {node} held {n} resumable sessions; {m} unacknowledged stanzas "
                     "went to offline storage", node=node, n=len(held), m=rescued)
        return rescued

    async def claim(self, rid: str) -> str | None:
        """Claim ``rid`` for this node: None if another <resume/> has the claim; else the
        node that held it, or "" if Redis does not know (ended, never written, or Redis
        lost its data - then only a node that holds the session itself can resume it)."""
        if self.cluster.left:
            return ""
        ttl = str(int(self.timeout * 2) + 1)  # a claimant that dies frees it again
        owner = await self.cluster.redis.eval(_SCRIPT_CLAIM, [self.key(rid)], [self.node, ttl])
        return owner if isinstance(owner, str) else None

    def release(self, rid: str, owner: str) -> None:
        """A claim that got nothing: the session (if still there) is ``owner``'s again."""
        if not self.cluster.left:
            self.cluster._track(self.cluster.redis.eval(_SCRIPT_RELEASE, [self.key(rid)],
                                                        [self.node, owner]))

    def end_orphan(self, jid: JID, token: str | None) -> None:
        """End, cluster-wide, a resource whose session was handed to this node and then
        taken by no stream (as Cluster.node_gone ends a dead node's resources)."""
        from cluster.node import _SCRIPT_UNBIND

        cluster = self.cluster
        proxy = cluster.server.sessions.remote(jid)
        if proxy is None or token is None or proxy.token != token or cluster.left:
            return
        cluster.server.end_session(proxy, "resumption failed")
        cluster._remote_unbound(proxy, ended=True)
        event = json.dumps({"op": "unbind", "node": self.node, "jid": str(jid), "token": token,
                            "moved": token})
        cluster._track(cluster.redis.eval(
            _SCRIPT_UNBIND, [cluster.user_key(jid.bare_str), cluster.events_channel],
            [jid.resource, token, event]))

    # -- claimant side -------------------------------------------------------------------------
    async def fetch(self, owner: str, rid: str, jid_domain: str, user: str
                    ) -> dict[str, Any] | None:
        """Ask ``owner`` for the session; its state, or None (gone, refused, no answer)."""
        if owner not in self.cluster.alive:
            return None
        nonce = secrets.token_hex(8)
        d: defer.Deferred[dict[str, Any] | None] = defer.Deferred()
        self._waiting[nonce] = d
        timer = self.cluster.server.clock.callLater(self.timeout, self._give_up, nonce)

        def published(receivers: int) -> None:
            if receivers == 0:
                self._give_up(nonce)

        self.cluster.to_node(owner, {"op": "sm-take", "rid": rid, "domain": jid_domain,
                                     "user": user, "from": self.node,
                                     "nonce": nonce}).addCallback(published)
        try:
            return await d
        finally:
            if timer.active():
                timer.cancel()

    def _give_up(self, nonce: str) -> None:
        d = self._waiting.pop(nonce, None)
        if d is not None:
            d.callback(None)

    def on_state(self, msg: dict[str, Any]) -> None:
        """The owner's answer. Runs the claimant's take-over in this very turn (see step 4)."""
        d = self._waiting.pop(msg["nonce"], None)
        state = msg.get("state")
        if d is not None:
            d.callback(state)
        elif state is not None:  # we gave up waiting; the owner let it go all the same
            handler = self.late_handlers.get(msg.get("domain", ""))
            if handler is not None:
                self.cluster._track(handler(state))

    # -- owner side ----------------------------------------------------------------------------
    def on_take(self, msg: dict[str, Any]) -> None:
        self.cluster._track(self._take(msg))

    async def _take(self, msg: dict[str, Any]) -> None:
        provider = self.providers.get(msg["domain"])
        state = None
        if provider is not None:
            state = await provider(msg["rid"], msg["user"], msg["from"])
        # no await between the export and this: nothing forwarded can overtake the state
        self.cluster.to_node(msg["from"], {"op": "sm-state", "nonce": msg["nonce"],
                                           "domain": msg["domain"], "state": state})

    def forwarder(self, node: str, jid: JID) -> Any:
        """What the old session object forwards to once the session moved to ``node``."""
        from cluster.node import RemoteSession

        return RemoteSession(self.cluster, {"node": node, "jid": str(jid), "token": "moved",
                                            "bound_at": 0.0, "seq": 0})
