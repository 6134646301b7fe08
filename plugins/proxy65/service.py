"""The proxy's XMPP side (XEP-0065 1.7 §4.3, §4.4, §4.9): the route target for
proxy.<domain> answering service discovery, the streamhost query and activation."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from twisted.words.xish.domish import Element

from plugins.disco import NS_INFO, NS_ITEMS
from plugins.ping import NS as NS_PING
from plugins.proxy65.relay import Stream, StreamLimits
from xmppd import hooks as H
from xmppd import stanza as st
from xmppd.errors import StanzaError
from xmppd.jid import JID, JIDError

if TYPE_CHECKING:
    from plugins.proxy65 import Proxy65

NS = "http://jabber.org/protocol/bytestreams"
FEATURES = (NS_INFO, NS_ITEMS, NS, NS_PING)
MAX_SID = 127  # §2: a StreamID "MUST be less than 128 characters in length"


class ProxyService:
    """Receives every stanza for the service domain from the router."""

    def __init__(self, plugin: Proxy65, domain: str) -> None:
        self.plugin = plugin
        self.host = plugin.host
        self.domain = domain

    async def receive(self, ev: H.StanzaEvent) -> None:
        stanza = ev.stanza
        if stanza.name != "iq":
            if stanza.name == "message" and stanza.getAttribute("type") not in (
                    "error", "groupchat"):
                raise StanzaError("service-unavailable")  # RFC 6120 §8.3.1 / §10.5
            return
        itype = stanza.getAttribute("type")
        if itype not in ("get", "set"):
            return
        payload = next((c for c in stanza.children if isinstance(c, Element)), None)
        if payload is None or ev.to.local or ev.to.resource:
            raise StanzaError("service-unavailable")
        key = (itype, payload.uri, payload.name)
        if key == ("get", NS_INFO, "query"):
            result: Element | None = self.disco_info(payload)
        elif key == ("get", NS_ITEMS, "query"):
            if payload.getAttribute("node"):
                raise StanzaError("item-not-found")
            result = st.make("query", NS_ITEMS)
        elif key == ("get", NS_PING, "ping"):
            result = None
        elif key == ("get", NS, "query"):
            result = self.streamhost(ev.from_, payload)
        elif key == ("set", NS, "query"):
            self.activate(ev.from_, payload)
            result = None
        else:
            raise StanzaError("service-unavailable")  # RFC 6120 §8.4
        reply = st.result_for(stanza)
        if result is not None:
            st.append(reply, result)
        await self.host.send(reply)

    def disco_info(self, payload: Element) -> Element:
        """§4.3: identity proxy/bytestreams and the bytestreams feature."""
        if payload.getAttribute("node"):
            raise StanzaError("item-not-found")
        q = st.make("query", NS_INFO)
        st.add(q, "identity", NS_INFO, attrs={"category": "proxy", "type": "bytestreams",
                                              "name": self.plugin.opts.name})
        for var in FEATURES:
            st.add(q, "feature", NS_INFO, attrs={"var": var})
        return q

    def streamhost(self, requester: JID, payload: Element) -> Element:
        """§4.4: where to connect; forbidden for whom the proxy does not serve, not-allowed
        when it cannot act as a streamhost (no listener)."""
        self.plugin.authorise(requester)
        address = self.plugin.address()
        if address is None:
            raise StanzaError("not-allowed", text="the proxy is not listening")
        q = st.make("query", NS)
        sid = payload.getAttribute("sid")
        if sid:
            q["sid"] = sid
        st.add(q, "streamhost", NS, attrs={"jid": self.domain, "host": address[0],
                                           "port": str(address[1])})
        return q

    def activate(self, requester: JID, payload: Element) -> None:
        """§4.9: the requester asks for the stream SHA1(SID + requester + target) to be
        activated. Unknown hash (which includes a request from anyone but the requester):
        item-not-found; only one party connected: not-allowed."""
        self.plugin.authorise(requester)
        sid = payload.getAttribute("sid") or ""
        if not sid or len(sid) > MAX_SID:
            raise StanzaError("bad-request", text="a sid of 1 to 127 characters is required")
        activate = st.child(payload, "activate", NS)
        if activate is None or not st.text(activate).strip():
            raise StanzaError("bad-request", text="<activate/> with the target's JID is "
                              "required")
        try:
            target = JID.parse(st.text(activate).strip())  # §4.6 rule 4: prepared JIDs
        except JIDError as exc:
            raise StanzaError("jid-malformed", text=f"activate: {exc}") from None
        digest = hashlib.sha1(  # XEP-0065 §4.6 rule 1 names SHA-1
            (sid + str(requester) + str(target)).encode("utf-8")).hexdigest()
        relay = self.plugin.relay
        owner = requester.bare_str
        opts = self.plugin.opts
        if opts.max_streams_per_user and sum(
                1 for s in relay.streams if s.owner == owner) >= opts.max_streams_per_user:
            raise StanzaError("resource-constraint", text=f"at most "
                              f"{opts.max_streams_per_user} streams at once")
        found = relay.take(digest)
        if found == "unknown":
            raise StanzaError("item-not-found", text="no connection for this stream (sid, "
                              "requester and target)")
        if found == "alone":
            raise StanzaError("not-allowed", text="both parties must be connected to the "
                              "proxy before activation")
        assert not isinstance(found, str)
        limits = StreamLimits(opts.rate, opts.max_bytes, opts.max_duration)
        Stream(relay, found[0], found[1], limits, owner, f"{sid} {requester} -> {target}")
        self.plugin.log.info("proxy65: stream {sid} from {requester} to {target} activated",
                             sid=sid, requester=str(requester), target=str(target))
