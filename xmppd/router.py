"""The router: the error boundary every stanza passes through (ARCHITECTURE "One message").

It prepares 'to' (RFC 7622; jid-malformed otherwise), fires the sender's outbound hooks,
then picks the target: a served domain (local delivery, RFC 6121 §8.5), a routed domain
(components such as MUC), or the default route (federation). Any StanzaError raised on the
way becomes an error reply here, and any other exception becomes internal-server-error, so a
stanza is delivered, stored, or bounced - never dropped in silence.
"""

from __future__ import annotations

from time import perf_counter
from typing import TYPE_CHECKING, Protocol

from twisted.internet.defer import Deferred
from twisted.words.xish.domish import Element

from xmppd import hooks as H
from xmppd.errors import StanzaError, error_reply, may_reply_with_error
from xmppd.iq import Scope
from xmppd.jid import JID, JIDError
from xmppd.logs import Logger
from xmppd.stats import ROUTE_SAMPLE, Stats

if TYPE_CHECKING:
    from xmppd.plugin import Host
    from xmppd.sessions import Session, SessionManager

log = Logger(namespace="xmppd.router")
_SAMPLE_MASK = ROUTE_SAMPLE - 1


class RouteTarget(Protocol):
    """Anything that accepts stanzas for a domain: MUC service, S2S manager, cluster peer."""

    async def receive(self, ev: H.StanzaEvent) -> None: ...


class Placement(Protocol):
    """What the router needs of a cluster (``cluster/``): component entities (MUC rooms) are
    spread over the nodes, each living on one, and IQ responses find the node that asked."""

    @property
    def node(self) -> str:
        """This node's id."""

    def owner(self, key: str) -> str:
        """The node that holds ``key`` (a bare JID of a component entity)."""

    def forward_route(self, node: str, stanza: Element) -> Deferred[int]:
        """Hand a stanza to another node's router; fires with how many nodes took it (0:
        nobody listens)."""

    async def node_gone(self, node: str) -> None:
        """A node did not take a stanza handed to it: forget it (it crashed or left)."""

    def node_of_iq(self, iq_id: str) -> str | None:
        """The other node whose IQ registry made this id, if any."""


class Router:
    def __init__(self, hosts: dict[str, Host], sessions: SessionManager,
                 stats: Stats | None = None) -> None:
        self.hosts = hosts
        self.sessions = sessions
        self.stats = stats if stats is not None else Stats()
        self.routes: dict[str, RouteTarget] = {}
        # Routed domains served by this node alone (an external component's link), whose
        # entities are not spread over a cluster's nodes like rooms are.
        self.node_local: set[str] = set()
        self.default_route: RouteTarget | None = None
        self.cluster: Placement | None = None  # set when the node joins a cluster

    def add_route(self, domain: str, target: RouteTarget, node_local: bool = False) -> None:
        if domain in self.hosts or domain in self.routes:
            raise ValueError(f"domain {domain} is already routed")
        self.routes[domain] = target
        if node_local:
            self.node_local.add(domain)

    def remove_route(self, domain: str) -> None:
        self.routes.pop(domain, None)
        self.node_local.discard(domain)

    def route_soon(self, stanza: Element, origin: Session | None) -> Deferred[None]:
        return Deferred.fromCoroutine(self.route(stanza, origin))

    async def route(self, stanza: Element, origin: Session | None,
                    forwarded: bool = False) -> None:
        """Route one stanza whose 'from' is already trustworthy (stamped or verified).
        ``forwarded``: another cluster node sent it here as the owner of its target.

        The routing latency histogram times one stanza in ROUTE_SAMPLE (xmppd/stats.py),
        from here until it was delivered, stored, handed on or bounced."""
        stats = self.stats
        stats.routed += 1
        started = perf_counter() if not stats.routed & _SAMPLE_MASK else 0.0
        try:
            await self._route(stanza, origin, forwarded)
        except StanzaError as err:
            await self.bounce(stanza, err)
        except Exception:
            log.failure("internal error routing {stanza}", stanza=_brief(stanza))
            await self.bounce(stanza, StanzaError("internal-server-error"))
        if started:
            stats.route_latency.observe(perf_counter() - started)

    async def bounce(self, stanza: Element, err: StanzaError) -> None:
        """Send the error reply for ``stanza`` back to its sender (RFC 6120 §8.3)."""
        if not may_reply_with_error(stanza) or not stanza.getAttribute("from"):
            return
        reply = error_reply(stanza, err)
        sender = JID.parse(stanza.attributes["from"])
        original_to = reply.getAttribute("from")
        if not original_to:
            # No 'to' meant "my own account" (RFC 6120 §10.3): answer from the bare JID.
            reply.attributes["from"] = sender.bare_str
        else:
            try:
                JID.parse(original_to)
            except JIDError:
                reply.attributes["from"] = sender.domain  # the 'to' was not a JID at all
        await self._send_error(reply)

    async def _send_error(self, reply: Element) -> None:
        try:
            await self._route(reply, None)
        except StanzaError as err:
            # The reply itself cannot go (its recipient's server is unreachable or in back-off,
            # a queue is full): an error is never answered with an error (RFC 6120 §8.3.1),
            # so it is dropped; a failure of the route, not a defect worth a traceback.
            log.info("error reply {stanza} not delivered: {condition}", stanza=_brief(reply),
                     condition=err.condition)
        except Exception:
            log.failure("could not deliver error reply {stanza}", stanza=_brief(reply))

    async def _route(self, stanza: Element, origin: Session | None,
                     forwarded: bool = False) -> None:
        attrs = stanza.attributes
        from_ = JID.parse(attrs["from"])
        to_attr = attrs.get("to")
        if to_attr is None:
            if stanza.name == "presence":
                if origin is not None and origin.kind == "c2s":
                    await self._presence_broadcast(origin, stanza, from_)
                return
            to = from_.bare  # RFC 6120 §10.3: handled on behalf of the sender's account
            implicit = True
        else:
            try:
                to = JID.parse(to_attr)
            except JIDError:
                raise StanzaError("jid-malformed") from None
            implicit = False
        ev = H.StanzaEvent(stanza, from_, to, origin)
        if implicit:
            ev.extra["implicit_to"] = True
        if origin is not None and origin.kind == "c2s":
            src = self.hosts.get(from_.domain)
            if src is not None and await src.fire(H.STANZA_OUTBOUND, ev):
                return
        host = self.hosts.get(to.domain)
        if host is not None:
            await self.local(host, ev)
            return
        target = self.routes.get(to.domain)
        if target is not None and to.local and self.cluster is not None and not forwarded and (
                to.domain not in self.node_local) and await self._forwarded_to_owner(stanza, to):
            return
        if target is None:
            target = self.default_route
        if target is None:
            raise StanzaError("remote-server-not-found")
        await target.receive(ev)

    async def _forwarded_to_owner(self, stanza: Element, to: JID) -> bool:
        """Cluster: a component entity (a room) lives on one node; hand it there."""
        cluster = self.cluster
        assert cluster is not None
        for _attempt in range(3):
            owner = cluster.owner(to.bare_str)
            if owner == cluster.node:
                return False
            if int(await cluster.forward_route(owner, stanza)):
                return True
            await cluster.node_gone(owner)  # nobody listens on its channel
        return False

    def _response(self, host: Host, stanza: Element) -> None:
        """An IQ result/error for the server: ours, or (cluster) another node's request."""
        if host.iq_response(stanza) or self.cluster is None:
            return
        node = self.cluster.node_of_iq(stanza.getAttribute("id") or "")
        if node is not None:
            self.cluster.forward_route(node, stanza)

    async def _presence_broadcast(self, session: Session, stanza: Element, from_: JID) -> None:
        """RFC 6121 §4.2/§4.4: presence without 'to' is the user's own broadcast. The session's
        availability is recorded here; the presence plugin does the broadcast and probes."""
        ptype = stanza.getAttribute("type")
        if ptype not in (None, "unavailable"):
            if ptype == "error":
                return
            raise StanzaError("bad-request", text=f"presence of type {ptype} needs a 'to'")
        was_available, was_priority = session.available, session.priority
        _, now_available = self.sessions.update_presence(session, stanza)
        host = self.hosts[from_.domain]
        if now_available and not was_available and self.sessions.listener is not None:
            # Cluster: other nodes see the resource available before offline messages are
            # drained, so one stored meanwhile elsewhere is either drained or handed over.
            await self.sessions.listener.flushed(session)
        await host.fire(H.PRESENCE_BROADCAST,
                        H.StanzaEvent(stanza, from_, from_.bare, session))
        if now_available and session.priority >= 0 and (not was_available or was_priority < 0):
            await host.fire(H.SESSION_AVAILABLE, H.SessionEvent(session, stanza))

    # -- local delivery -----------------------------------------------------------------------
    async def local(self, host: Host, ev: H.StanzaEvent) -> None:
        stanza, to = ev.stanza, ev.to
        kind = stanza.name
        if not to.local:
            await self._to_domain(host, ev)
            return
        if kind == "message" and not self.sessions.has_sessions(to) and (
                not await host.account_exists(to)):
            # RFC 6121 §8.5.1, checked before inbound hooks so nothing (e.g. the archive)
            # acts on a message for an account that does not exist.
            raise StanzaError("service-unavailable")
        if await host.fire(H.STANZA_INBOUND, ev):
            return
        if kind == "message":
            await self.sessions.deliver_message(host, ev)
        elif kind == "presence":
            if await host.fire(H.PRESENCE_INBOUND, ev):
                return
            self.sessions.deliver_presence(ev)
        elif kind == "iq":
            await self._iq_to_account(host, ev)

    async def _iq_to_account(self, host: Host, ev: H.StanzaEvent) -> None:
        stanza, to = ev.stanza, ev.to
        itype = stanza.getAttribute("type")
        if to.resource:
            target = await self.sessions.find(to)
            if target is None:
                if itype in ("get", "set"):
                    raise StanzaError("service-unavailable")  # RFC 6121 §8.5.3.2.3
                return
            target.send(stanza)
            return
        if itype in ("result", "error"):
            self._response(host, stanza)  # §8.5.2: never delivered to resources
            return
        if not self.sessions.has_sessions(to) and not await host.account_exists(to):
            raise StanzaError("service-unavailable")  # §8.5.1
        await self.dispatch_iq(host, ev, "account")

    async def _to_domain(self, host: Host, ev: H.StanzaEvent) -> None:
        stanza = ev.stanza
        if stanza.name == "iq":
            itype = stanza.getAttribute("type")
            if itype in ("result", "error"):
                self._response(host, stanza)
                return
            if ev.to.resource:
                raise StanzaError("service-unavailable")
            await self.dispatch_iq(host, ev, "host")
            return
        if await host.fire(H.SERVER_STANZA, ev):
            return
        if stanza.name == "message" and stanza.getAttribute("type") not in ("error", "groupchat"):
            raise StanzaError("service-unavailable")
        # Presence to the server itself, and message errors, need no answer (RFC 6120 §10.4).

    async def dispatch_iq(self, host: Host, ev: H.StanzaEvent, scope: Scope) -> None:
        """Answer an IQ get/set to a served domain or account (RFC 6120 §8.2.3): the host
        runs the handler and builds the result or error (Host.answer_iq), sent from here."""
        to = None if ev.extra.get("implicit_to") else ev.to
        reply = await host.answer_iq(scope, ev.stanza, ev.from_, to, ev.origin)
        if reply.getAttribute("type") == "error":
            await self._send_error(reply)  # as a bounce's: an error is never answered
        else:
            await self._route(reply, None)


def _brief(stanza: Element) -> str:
    a = stanza.attributes
    return (f"<{stanza.name} type={a.get('type')} from={a.get('from')} to={a.get('to')}"
            f" id={a.get('id')}>")
