"""Bound sessions and local delivery: RFC 6120 §7 (bind, conflicts) and RFC 6121 §8.5.

The session table maps a bare JID to its resources. It is the seam for clustering: with a
cluster (cluster/node.py) the resources bound on other nodes are held here too, as proxies
that forward what is sent to them, so every lookup sees all of a user's resources.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet.defer import Deferred
from twisted.words.xish.domish import Element

from xmppd import hooks as H
from xmppd import stanza as st
from xmppd.errors import StanzaError, StreamError
from xmppd.jid import JID, JIDError, prepare_resource
from xmppd.logs import Logger

if TYPE_CHECKING:
    from xmppd.plugin import Host

log = Logger(namespace="xmppd.sessions")

MAX_RESOURCES = 64
MESSAGE_TYPES = frozenset(("normal", "chat", "groupchat", "headline", "error"))


SHARED_FLAGS: set[str] = set()
"""``session.data`` keys other cluster nodes must see (carbons enabled, roster requested...);
plugins add theirs with Host.share_session_flag(). Values must be JSON-serializable."""


class SessionData(dict[str, Any]):
    """``session.data`` of a local session: reports changes of shared flags (cluster)."""

    __slots__ = ("on_change",)

    def __init__(self) -> None:
        super().__init__()
        self.on_change: Callable[[], None] | None = None

    def __setitem__(self, key: str, value: Any) -> None:
        changed = key in SHARED_FLAGS and self.get(key) != value
        super().__setitem__(key, value)
        if changed and self.on_change is not None:
            self.on_change()

    def pop(self, key: str, *default: Any) -> Any:
        had = key in self
        value = super().pop(key, *default)
        if had and key in SHARED_FLAGS and self.on_change is not None:
            self.on_change()
        return value


class SessionListener(Protocol):
    """Told about this node's resources (the cluster registry)."""

    def bound(self, session: Session) -> None: ...

    def changed(self, session: Session) -> None: ...

    def unbound(self, session: Session) -> None: ...

    async def refresh(self, bare: str) -> bool:
        """Update the view of the user's resources elsewhere (events may update it at the
        same time: look again afterwards in any case); True if this call changed it."""
        ...

    def flushed(self, session: Session) -> Deferred[Any]:
        """Fires when what was said about the session is visible to the other nodes."""
        ...


class Session(Protocol):
    """What the router and plugins may rely on for any session (c2s, s2s, websocket)."""

    kind: str
    host: str
    jid: JID | None
    available: bool
    priority: int
    presence: Element | None
    data: dict[str, Any]
    peer: str

    def send(self, stanza: Element) -> None: ...

    def send_raw(self, data: str) -> None:
        """Write serialized XML that is not a stanza (stream-level nonzas, XEP-0198)."""
        ...

    def close(self, error: StreamError | None = None) -> None: ...


class SessionManager:
    def __init__(self) -> None:
        self._users: dict[str, dict[str, Session]] = {}
        self._remote: dict[str, dict[str, Any]] = {}  # RemoteSession proxies (cluster)
        self.on_replaced: Callable[[Session], None] | None = None
        self.listener: SessionListener | None = None

    # -- binding (RFC 6120 §7) ------------------------------------------------------------
    def bind(self, session: Session, domain: str, local: str, requested: str | None) -> JID:
        """Bind a resource; a conflicting older session is replaced (RFC 6120 §7.7.2.2, policy
        "override": it gets a <conflict/> stream error)."""
        bare = f"{local}@{domain}"
        resources = self._users.setdefault(bare, {})
        if requested:
            try:
                resource = prepare_resource(requested)
            except JIDError:
                raise StanzaError("bad-request", text="invalid resourcepart") from None
        else:
            resource = secrets.token_hex(6)
            while resource in resources:
                resource = secrets.token_hex(6)
        remote = self._remote.get(bare, {})
        old = resources.get(resource) or remote.get(resource)
        if old is None and len(resources) + len(remote) >= MAX_RESOURCES:
            raise StanzaError("resource-constraint", text="too many resources bound")
        jid = JID(local, domain, resource)
        session.jid = jid
        resources[resource] = session
        if self.listener is not None:
            self.listener.bound(session)
        if old is not None and old.kind == "remote":
            log.info("resource conflict for {jid}: replacing the session on {peer}",
                     jid=str(jid), peer=old.peer)
            self.unbind(old)
            old.close(StreamError("conflict", "Replaced by new connection"))
        elif old is not None and old is not session:
            log.info("resource conflict for {jid}: replacing older session", jid=str(jid))
            if self.on_replaced is not None:
                self.on_replaced(old)
            old.close(StreamError("conflict", "Replaced by new connection"))
        return jid

    def unbind(self, session: Session) -> bool:
        """Remove the session; False if it was not (or no longer) the bound one."""
        jid = session.jid
        if jid is None:
            return False
        table = self._remote if session.kind == "remote" else self._users
        resources = table.get(jid.bare_str)
        if not resources or resources.get(jid.resource) is not session:
            return False
        del resources[jid.resource]
        if not resources:
            del table[jid.bare_str]
        if self.listener is not None and table is self._users:
            self.listener.unbound(session)
        return True

    def replace(self, old: Session, new: Session) -> None:
        """Put ``new`` where ``old`` is bound (a resumed stream takes over, XEP-0198 §5)."""
        jid = old.jid
        assert jid is not None
        resources = self._users.setdefault(jid.bare_str, {})
        resources[jid.resource] = new
        listener = self.listener
        if listener is not None and isinstance(new.data, SessionData):
            new.data.on_change = lambda: listener.changed(new)

    def attach(self, session: Session) -> None:
        """Bind ``session`` under its JID as the continuation of a session that another
        cluster node held (cluster/handover.py): that node's proxy goes without a word."""
        jid = session.jid
        assert jid is not None
        resources = self._users.setdefault(jid.bare_str, {})
        old = resources.get(jid.resource)
        resources[jid.resource] = session
        if old is not None and old is not session:  # bound here meanwhile: RFC 6120 §7.7.2.2
            if self.on_replaced is not None:
                self.on_replaced(old)
            old.close(StreamError("conflict", "Replaced by new connection"))
        remote = self._remote.get(jid.bare_str)
        if remote is not None and remote.pop(jid.resource, None) is not None and not remote:
            del self._remote[jid.bare_str]
        if self.listener is not None:
            self.listener.bound(session)

    def drop_local(self, session: Session) -> bool:
        """Forget a local session that continues on another node (no unbind is announced:
        the other node's binding replaced it)."""
        jid = session.jid
        resources = self._users.get(jid.bare_str) if jid is not None else None
        if jid is None or not resources or resources.get(jid.resource) is not session:
            return False
        del resources[jid.resource]
        if not resources:
            del self._users[jid.bare_str]
        return True

    # -- other nodes' resources (cluster) -----------------------------------------------------
    def add_remote(self, proxy: Any) -> None:
        self._remote.setdefault(proxy.jid.bare_str, {})[proxy.jid.resource] = proxy

    def remote(self, jid: JID) -> Any:
        resources = self._remote.get(jid.bare_str)
        return None if resources is None else resources.get(jid.resource)

    def remote_tables(self) -> list[list[Any]]:
        return [list(r.values()) for r in self._remote.values()]

    def remote_of_node(self, node: str) -> list[Any]:
        return [s for r in self._remote.values() for s in r.values() if s.node == node]

    # -- lookups ----------------------------------------------------------------------------
    def get_local(self, jid: JID) -> Session | None:
        resources = self._users.get(jid.bare_str)
        return None if resources is None else resources.get(jid.resource)

    def get(self, jid: JID) -> Session | None:
        """The session bound to a full JID, on this node or (cluster) another."""
        found = self.get_local(jid)
        if found is None and self._remote:
            found = self.remote(jid)
        return found

    async def find(self, jid: JID) -> Session | None:
        """``get``, and if nothing is bound, once more after (cluster) re-reading where the
        user is bound: the resource may have been bound on another node a moment ago, and
        events may update the view while we ask."""
        found = self.get(jid)
        if found is None and self.listener is not None:
            await self.listener.refresh(jid.bare_str)
            found = self.get(jid)
        return found

    def resources(self, bare: JID | str) -> list[Session]:
        """Every bound resource of the account, wherever it is bound."""
        key = bare if isinstance(bare, str) else bare.bare_str
        resources = self._users.get(key)
        found = list(resources.values()) if resources else []
        if self._remote:
            remote = self._remote.get(key)
            if remote:
                found.extend(remote.values())
        return found

    def available(self, bare: JID | str) -> list[Session]:
        return [s for s in self.resources(bare) if s.available]

    def has_sessions(self, bare: JID | str) -> bool:
        key = bare if isinstance(bare, str) else bare.bare_str
        return key in self._users or key in self._remote

    def all(self) -> list[Session]:
        """The sessions bound on this node."""
        return [s for r in self._users.values() for s in r.values()]

    def count(self) -> int:
        return sum(len(r) for r in self._users.values())

    # -- presence bookkeeping (RFC 6121 §4.2, §4.4.2) ----------------------------------------
    def update_presence(self, session: Session, presence: Element) -> tuple[bool, bool]:
        """Record a broadcast presence; returns (was_available, is_available)."""
        was = session.available
        if presence.getAttribute("type") == "unavailable":
            session.available = False
            session.presence = None
            session.priority = 0
            if self.listener is not None:
                self.listener.changed(session)
            return was, False
        prio_text = st.child_text(presence, "priority", st.NS_CLIENT)
        priority = 0
        if prio_text is not None:
            try:
                priority = int(prio_text.strip())
            except ValueError:
                raise StanzaError("bad-request", text="priority must be an integer") from None
            if not -128 <= priority <= 127:
                raise StanzaError("bad-request", text="priority out of range -128..127")
        session.available = True
        session.priority = priority
        session.presence = presence
        if self.listener is not None:
            self.listener.changed(session)
        return was, True

    # -- delivery (RFC 6121 §8.5) ------------------------------------------------------------
    def top_resources(self, bare: JID) -> list[Session]:
        """Available resources with the highest non-negative priority ("most available",
        RFC 6121 §8.5.2.1.1); every one of them receives a message to the bare JID."""
        best: list[Session] = []
        top = -1
        for s in self.resources(bare):
            if not s.available or s.priority < 0:
                continue
            if s.priority > top:
                top, best = s.priority, [s]
            elif s.priority == top:
                best.append(s)
        return best

    async def deliver_message(self, host: Host, ev: H.StanzaEvent) -> None:
        """RFC 6121 §8.5.2 (bare JID) and §8.5.3 (full JID) for <message/>."""
        stanza, to = ev.stanza, ev.to
        mtype = stanza.getAttribute("type", "normal")
        if mtype not in MESSAGE_TYPES:
            mtype = "normal"  # RFC 6121 §5.2.2: unknown types are treated as normal
        if mtype == "error":
            # §8.5.2.1.1 / §8.5.3.2.1: errors to unavailable resources are silently ignored;
            # an error can never be answered with an error (RFC 6120 §8.3.1).
            target = self.get(to) if to.resource else None
            if target is not None:
                target.send(stanza)
            return
        refreshed = False
        if to.resource:
            target = await self.find(to)
            refreshed = self.listener is not None
            if target is not None:
                target.send(stanza)
                await self._delivered(host, ev, [target])
                return
            # §8.5.3.2.1: chat (and, by our policy, normal) fall back to the bare JID so
            # nothing is lost; groupchat/headline to a gone resource get an error.
            if mtype not in ("chat", "normal"):
                raise StanzaError("service-unavailable")
        if mtype == "groupchat":
            raise StanzaError("service-unavailable")  # §8.5.2.1.1
        targets = self._targets(to, mtype)
        if not targets and self.listener is not None and not refreshed:
            await self.listener.refresh(to.bare_str)  # online on another node a moment ago?
            targets = self._targets(to, mtype)
        if targets:
            for s in targets:
                s.send(stanza)
            await self._delivered(host, ev, targets)
            return
        if mtype == "headline":
            raise StanzaError("service-unavailable")  # not stored offline (XEP-0160 §4)
        if await host.fire(H.MESSAGE_UNDELIVERED, ev):
            return
        raise StanzaError("service-unavailable", text="recipient is offline")

    def _targets(self, to: JID, mtype: str) -> list[Session]:
        if mtype == "headline":
            return [s for s in self.resources(to) if s.available and s.priority >= 0]
        return self.top_resources(to)

    async def _delivered(self, host: Host, ev: H.StanzaEvent, targets: list[Session]) -> None:
        if host.has_handlers(H.MESSAGE_DELIVERED):
            ev.extra["sessions"] = targets
            await host.fire(H.MESSAGE_DELIVERED, ev)

    def deliver_presence(self, ev: H.StanzaEvent) -> None:
        """RFC 6121 §8.5.2.1.2 / §8.5.3: presence to all available resources, or the one."""
        if ev.to.resource:
            target = self.get(ev.to)
            if target is not None:
                target.send(ev.stanza)
            return  # §8.5.3.2.2: no matching resource -> silently ignore
        for s in self.resources(ev.to):
            if s.available:
                s.send(ev.stanza)
