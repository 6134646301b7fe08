"""Service discovery of the virtual pubsub service on an account's bare JID.

* disco#info without a node: what the disco plugin answers for accounts plus the identity
  ``pubsub/pep`` (XEP-0163 §6.1 "MUST return an identity of pubsub/pep on behalf of the
  account"); the pubsub features come from Pep.account_features.
* disco#info with a node: ``pubsub/leaf`` and the XEP-0060 §5.4 meta-data form (§5.3).
* disco#items without a node: the nodes the requester may retrieve items from (§5.2;
  XEP-0163 §6.2 "MUST return ... only those nodes" the contact may access).
* disco#items with a node: the node's ItemIDs as item names (§5.5).

The disco plugin answers account queries itself and knows no identities or nodes there, so
these queries are taken on the account's behalf from STANZA_INBOUND (what that hook is
for: "handled on the user's behalf"), after blocking (priority 1000) has had its say. A node
that does not exist - or that the requester may not see - is left to the disco plugin,
which answers item-not-found, so hidden nodes look exactly like absent ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.words.xish.domish import Element

from plugins.disco import Disco
from plugins.pep import config as cfg
from plugins.pep import ns
from plugins.pep.service import stamp
from xmppd import hooks as H
from xmppd import stanza as st
from xmppd.iq import IqRequest
from xmppd.jid import JID

if TYPE_CHECKING:
    from plugins.pep import Pep


class AccountDisco:
    def __init__(self, pep: Pep) -> None:
        self.pep = pep
        self.host = pep.host

    async def inbound(self, ev: H.StanzaEvent) -> bool:
        s = ev.stanza
        if s.name != "iq" or s.getAttribute("type") != "get" or ev.to.resource or \
                not ev.to.local:
            return False
        children = st.element_children(s)
        if len(children) != 1 or children[0].name != "query" or \
                children[0].uri not in (ns.DISCO_INFO, ns.DISCO_ITEMS):
            return False
        query = children[0]
        owner, viewer = ev.to.bare, ev.from_
        if not await self.host.account_exists(owner):
            return False  # the router answers service-unavailable (RFC 6121 §8.5.1)
        node = query.getAttribute("node")
        if query.uri == ns.DISCO_INFO:
            result = self.info(ev, query) if node is None else await self.node_info(
                owner, viewer, node)
        else:
            result = await self.items(ev, owner, viewer, node)
        if result is None:
            return False
        reply = st.result_for(s)
        if ev.extra.get("implicit_to"):
            reply.attributes["from"] = viewer.bare_str
        st.append(reply, result)
        await self.host.send(reply)
        return True

    def _request(self, ev: H.StanzaEvent, query: Element) -> IqRequest:
        to = None if ev.extra.get("implicit_to") else ev.to
        return IqRequest(ev.stanza, query, ev.from_, to, ev.origin, self.host)

    def info(self, ev: H.StanzaEvent, query: Element) -> Element:
        disco = self.host.require(Disco)
        result = disco.account_info(self._request(ev, query))
        pep = st.make("identity", ns.DISCO_INFO, {"category": "pubsub", "type": "pep"})
        result.children.insert(1, pep)  # after account/registered, before the features
        return result

    async def node_info(self, owner: JID, viewer: JID, node: str) -> Element | None:
        record = await self.pep.service.node(owner, node)
        if record is None or not await self.pep.service.allowed(owner, record.config, viewer):
            return None
        q = st.make("query", ns.DISCO_INFO, {"node": node})
        st.add(q, "identity", ns.DISCO_INFO, attrs={"category": "pubsub", "type": "leaf"})
        st.add(q, "feature", ns.DISCO_INFO, attrs={"var": ns.PUBSUB})
        st.append(q, cfg.meta_data(record.config, owner.bare_str,
                                   stamp(record.created * 1_000_000)))
        return q

    async def items(self, ev: H.StanzaEvent, owner: JID, viewer: JID, node: str | None
                    ) -> Element | None:
        service = self.pep.service
        if node is None:
            disco = self.host.require(Disco)
            result = disco.account_items(self._request(ev, st.make("query", ns.DISCO_ITEMS)))
            for record in (await service.nodes(owner)).values():
                if await service.allowed(owner, record.config, viewer):
                    st.add(result, "item", ns.DISCO_ITEMS,
                           attrs={"jid": owner.bare_str, "node": record.name})
            return result
        found = await service.node(owner, node)
        if found is None or not await service.allowed(owner, found.config, viewer):
            return None
        q = st.make("query", ns.DISCO_ITEMS, {"node": node})
        for item_id in await service.item_ids(owner, found):
            st.add(q, "item", ns.DISCO_ITEMS, attrs={"jid": owner.bare_str, "name": item_id})
        return q
