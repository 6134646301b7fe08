"""ComponentManager: the configured external components (XEP-0114) and their listeners.

Every configured component domain is in the router's route table for the server's whole
life, whether or not the component is connected: its ComponentLink is the route target.
Routing it only while connected would hand its stanzas meanwhile to the default route, that
is to federation, which would look the domain up in DNS and might reach a stranger's server.

While a component is connected, stanzas for its domain (and every JID at it) are written to
its stream. While it is not, they are bounced with ``remote-server-timeout`` of type wait:
RFC 6120 §8.3.3.17, "a remote server or service specified as part or all of the JID of the
intended recipient ... was resolved but communications could not be established", which is
what a configured component without its link is, and "wait" tells the sender it may work
later (Prosody answers the same; ``service-unavailable``, §8.3.3.19, would say the service
does not exist; ``remote-server-not-found``, §8.3.3.16, that the name does not resolve).
Nothing is dropped in silence except what RFC 6120 §8.3.1 forbids answering (errors, IQ
results).

A connected component that is a subdomain of a served host is listed in that host's
disco#items (XEP-0030 §4), under its configured ``name`` or, without one, the name of the
identity its own disco#info reports (asked once on connection).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort

from components.stream import ComponentFactory, ComponentStream
from plugins.disco import Disco
from xmppd import hooks as H
from xmppd import stanza as st
from xmppd.config import ConfigError, ListenerConfig
from xmppd.context import ServerContext
from xmppd.errors import StanzaError, StreamError
from xmppd.logs import Logger
from xmppd.tls import listener_tls

if TYPE_CHECKING:
    from xmppd.plugin import Host

log = Logger(namespace="components")

NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
DISCO_TIMEOUT = 10.0  # seconds to wait for a component's disco#info after it connected


class ComponentLink:
    """The route target of one component domain: its stream while connected."""

    def __init__(self, domain: str) -> None:
        self.domain = domain
        self.stream: ComponentStream | None = None

    @property
    def up(self) -> bool:
        """Connected, and not closing (a stream that sent or got its error is done)."""
        s = self.stream
        return s is not None and not (s.closing or s.closed)

    async def receive(self, ev: H.StanzaEvent) -> None:
        stream = self.stream
        if stream is None or not self.up:
            raise StanzaError("remote-server-timeout", text=f"{self.domain} is not connected")
        stream.send_element(ev.stanza)


class ComponentManager:
    def __init__(self, server: ServerContext) -> None:
        self.server = server
        self.config = server.config.components
        self.links = {domain: ComponentLink(domain) for domain in self.config}
        self.streams: set[ComponentStream] = set()  # every connection, authenticated or not

    def register(self) -> None:
        """Put every component domain in the route table (after plugins: their services
        may not share a name with a component)."""
        for domain, link in self.links.items():
            try:
                self.server.router.add_route(domain, link, node_local=True)
            except ValueError:
                raise ConfigError(f"components.{domain}: that domain is already served "
                                  "(a host or a plugin's service)") from None

    def listen(self, lc: ListenerConfig) -> IListeningPort:
        """``component``: plain TCP; ``component_tls``: the same stream inside TLS."""
        reactor = self.server.reactor
        factory = ComponentFactory(self)
        if lc.type == "component_tls":
            assert self.server.certs is not None
            creator = listener_tls(self.server.certs.factory, lc.type)
            port: IListeningPort = reactor.listenSSL(lc.port, factory, creator,
                                                     interface=lc.address)
        else:
            port = reactor.listenTCP(lc.port, factory, interface=lc.address)
        return port

    def connected(self, domain: str) -> bool:
        link = self.links.get(domain)
        return link is not None and link.up

    # -- stream events ----------------------------------------------------------------------------
    def authenticated(self, stream: ComponentStream) -> None:
        link = self.links[stream.host]
        link.stream = stream
        name = self.config[stream.host].name
        for host in self._parents(stream.host):
            self._list(host, stream.host, name)
        if not name and self._parents(stream.host):
            # Not tracked for a clean stop: the answer only improves the listing.
            Deferred.fromCoroutine(self._ask_name(stream))

    def disconnected(self, stream: ComponentStream) -> None:
        link = self.links.get(stream.host)
        if link is None or link.stream is not stream:
            return
        link.stream = None
        for host in self._parents(stream.host):
            disco = host.optional(Disco)
            if disco is not None:
                disco.remove_item(stream.host)
        log.info("component {domain} disconnected", domain=stream.host)

    # -- disco#items ------------------------------------------------------------------------------
    def _parents(self, domain: str) -> list[Host]:
        return [h for d, h in self.server.hosts.items() if domain.endswith("." + d)]

    def _list(self, host: Host, domain: str, name: str) -> None:
        disco = host.optional(Disco)
        if disco is not None:
            disco.remove_item(domain)
            disco.add_item(domain, name)

    async def _ask_name(self, stream: ComponentStream) -> None:
        """The name of the component's first named identity (XEP-0030 §3.1)."""
        host = self._parents(stream.host)[0]
        iq = st.iq("get", "", to=stream.host, from_=host.domain)
        st.add(iq, "query", NS_DISCO_INFO)
        try:
            result = await host.request(iq, DISCO_TIMEOUT)
        except Exception as exc:  # an error reply, a timeout: listed without a name
            log.info("component {domain} did not answer disco#info: {why}",
                     domain=stream.host, why=exc)
            return
        query = st.child(result, "query", NS_DISCO_INFO)
        names = [i.getAttribute("name") for i in st.children(query, "identity", NS_DISCO_INFO)
                 ] if query is not None else []
        name = next((n for n in names if n), "")
        if name and self.links[stream.host].stream is stream:
            for parent in self._parents(stream.host):
                self._list(parent, stream.host, name)

    # -- shutdown ---------------------------------------------------------------------------------
    async def stop(self) -> None:
        """After the clients' streams (their unavailable presence reaches the components),
        every component gets ``<system-shutdown/>`` (RFC 6120 §4.9.3.20)."""
        await self._wait(lambda: not self.server.connections, 2.0)
        for stream in list(self.streams):
            stream.stream_error(StreamError("system-shutdown"))
        await self._wait(lambda: not self.streams, 3.0)
        for stream in list(self.streams):
            stream.abort()

    async def _wait(self, done: Any, seconds: float) -> None:
        clock = self.server.clock
        deadline = clock.seconds() + seconds
        while not done() and clock.seconds() < deadline:
            d: Deferred[None] = Deferred()
            clock.callLater(0.05, d.callback, None)
            await d

