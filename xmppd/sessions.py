"""Bound sessions and local delivery: RFC 6120 §7 (bind, conflicts) and RFC 6121 §8.5.

The session table maps a bare JID to its resources. It is the seam for clustering: a
Redis-backed registry answers the same questions for sessions bound on other nodes.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from twisted.logger import Logger
from twisted.words.xish.domish import Element

from xmppd import hooks as H
from xmppd import stanza as st
from xmppd.errors import StanzaError, StreamError
from xmppd.jid import JID, JIDError, prepare_resource

if TYPE_CHECKING:
    from xmppd.plugin import Host

log = Logger(namespace="xmppd.sessions")

MAX_RESOURCES = 64
MESSAGE_TYPES = frozenset(("normal", "chat", "groupchat", "headline", "error"))


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
        self.on_replaced: Callable[[Session], None] | None = None

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
        old = resources.get(resource)
        if old is None and len(resources) >= MAX_RESOURCES:
            raise StanzaError("resource-constraint", text="too many resources bound")
        jid = JID(local, domain, resource)
        session.jid = jid
        resources[resource] = session
        if old is not None and old is not session:
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
        resources = self._users.get(jid.bare_str)
        if not resources or resources.get(jid.resource) is not session:
            return False
        del resources[jid.resource]
        if not resources:
            del self._users[jid.bare_str]
        return True

    def replace(self, old: Session, new: Session) -> None:
        """Put ``new`` where ``old`` is bound (a resumed stream takes over, XEP-0198 §5)."""
        jid = old.jid
        assert jid is not None
        resources = self._users.setdefault(jid.bare_str, {})
        resources[jid.resource] = new

    # -- lookups ----------------------------------------------------------------------------
    def get(self, jid: JID) -> Session | None:
        resources = self._users.get(jid.bare_str)
        return None if resources is None else resources.get(jid.resource)

    def resources(self, bare: JID | str) -> list[Session]:
        key = bare if isinstance(bare, str) else bare.bare_str
        resources = self._users.get(key)
        return list(resources.values()) if resources else []

    def available(self, bare: JID | str) -> list[Session]:
        return [s for s in self.resources(bare) if s.available]

    def has_sessions(self, bare: JID | str) -> bool:
        key = bare if isinstance(bare, str) else bare.bare_str
        return key in self._users

    def all(self) -> list[Session]:
        return [s for r in self._users.values() for s in r.values()]

    def count(self) -> int:
        return sum(len(r) for r in self._users.values())

    # -- presence bookkeeping (RFC 6121 §4.2, §4.4.2) ----------------------------------------
    @staticmethod
    def update_presence(session: Session, presence: Element) -> tuple[bool, bool]:
        """Record a broadcast presence; returns (was_available, is_available)."""
        was = session.available
        if presence.getAttribute("type") == "unavailable":
            session.available = False
            session.presence = None
            session.priority = 0
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
        if to.resource:
            target = self.get(to)
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
        if mtype == "headline":
            targets = [s for s in self.resources(to) if s.available and s.priority >= 0]
        else:
            targets = self.top_resources(to)
        if targets:
            for s in targets:
                s.send(stanza)
            await self._delivered(host, ev, targets)
            return
        if mtype == "headline":
            raise StanzaError("service-unavailable")  # not stored offline (XEP-0160 §4)
        if await host.hooks.fire(H.MESSAGE_UNDELIVERED, ev):
            return
        raise StanzaError("service-unavailable", text="recipient is offline")

    async def _delivered(self, host: Host, ev: H.StanzaEvent, targets: list[Session]) -> None:
        if host.hooks.has(H.MESSAGE_DELIVERED):
            ev.extra["sessions"] = targets
            await host.hooks.fire(H.MESSAGE_DELIVERED, ev)

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
