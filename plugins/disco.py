"""XEP-0030 Service Discovery: info and items for the domain and, on their behalf, accounts.

The feature list is built from what the loaded plugins declare, so disco never claims a
feature that is not running.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import cast

from twisted.words.xish.domish import Element

from xmppd import stanza as st
from xmppd.errors import StanzaError
from xmppd.iq import IqRequest
from xmppd.plugin import Plugin

NS_INFO = "http://jabber.org/protocol/disco#info"
NS_ITEMS = "http://jabber.org/protocol/disco#items"

# XEP-0128 form: fixed, or made when asked (None: nothing to add now).
Extension = Element | Callable[[], Element | None]
# (request, node) -> the <query/> answer for a node the handler owns, None for any other.
NodeHandler = Callable[[IqRequest, str], "Awaitable[Element | None] | Element | None"]


class Disco(Plugin):
    name = "disco"
    specs = ("XEP-0030 2.5rc3",)
    features = (NS_INFO, NS_ITEMS)
    account_features = (NS_INFO, NS_ITEMS)
    identities = (("server", "im", "xmppd"),)

    def setup(self) -> None:
        self.host.iq("get", NS_INFO, "query", self.host_info)
        self.host.iq("get", NS_ITEMS, "query", self.host_items)
        self.host.iq("get", NS_INFO, "query", self.account_info, scope="account")
        self.host.iq("get", NS_ITEMS, "query", self.account_items, scope="account")
        self.items: list[tuple[str, str]] = []
        self.extensions: list[Extension] = []
        self.info_nodes: list[Callable[[str], Element | None]] = []
        self.nodes: dict[str, list[NodeHandler]] = {"info": [], "items": []}

    def add_item(self, jid: str, name: str = "") -> None:
        """Advertise a service (conference.<domain>, upload.<domain>) in disco#items."""
        self.items.append((jid, name))

    def remove_item(self, jid: str) -> None:
        """Stop advertising a service (an external component that disconnected)."""
        self.items = [item for item in self.items if item[0] != jid]

    def add_extension(self, form: Extension) -> None:
        """XEP-0128: a data form added to the server's disco#info (e.g. XEP-0157 contacts),
        or a callable making it when asked (configuration that a reload may change)."""
        self.extensions.append(form)

    def remove_extension(self, form: Extension) -> None:
        if form in self.extensions:
            self.extensions.remove(form)

    def add_info_node(self, handler: Callable[[str], Element | None]) -> None:
        """Answer disco#info for nodes of the domain (XEP-0115 "node#ver" caps nodes): the
        handler returns the query element for a node it knows, None for any other."""
        self.info_nodes.append(handler)

    def remove_info_node(self, handler: Callable[[str], Element | None]) -> None:
        if handler in self.info_nodes:
            self.info_nodes.remove(handler)

    def add_node(self, kind: str, handler: NodeHandler) -> None:
        """Answer disco#info (``kind`` "info") or disco#items ("items") for nodes of the
        domain, knowing who asks (XEP-0050 command nodes); the handler may raise
        StanzaError (forbidden)."""
        self.nodes[kind].append(handler)

    def remove_node(self, kind: str, handler: NodeHandler) -> None:
        if handler in self.nodes[kind]:
            self.nodes[kind].remove(handler)

    async def _node(self, kind: str, req: IqRequest, node: str) -> Element | None:
        for handler in self.nodes[kind]:
            answer = handler(req, node)
            found = await cast(Awaitable[Element | None], answer) \
                if inspect.isawaitable(answer) else answer
            if found is not None:
                return found
        return None

    def info(self) -> Element:
        """The server's disco#info query element (also used for XEP-0115 caps)."""
        q = st.make("query", NS_INFO)
        for category, type_, name in self.host.all_identities():
            attrs = {"category": category, "type": type_}
            if name:
                attrs["name"] = name
            st.add(q, "identity", NS_INFO, attrs=attrs)
        for var in self.host.all_features():
            st.add(q, "feature", NS_INFO, attrs={"var": var})
        for ext in self.extensions:
            form = ext if isinstance(ext, Element) else ext()
            if form is not None:
                st.append(q, st.copy(form))
        return q

    async def host_info(self, req: IqRequest) -> Element:
        node = req.payload.getAttribute("node")
        if node:
            for handler in self.info_nodes:
                found = handler(node)
                if found is not None:
                    return found
            found = await self._node("info", req, node)
            if found is not None:
                return found
            raise StanzaError("item-not-found")
        return self.info()

    async def host_items(self, req: IqRequest) -> Element:
        node = req.payload.getAttribute("node")
        if node:
            found = await self._node("items", req, node)
            if found is not None:
                return found
            raise StanzaError("item-not-found")
        q = st.make("query", NS_ITEMS)
        for jid, name in sorted(self.items):
            attrs = {"jid": jid}
            if name:
                attrs["name"] = name
            st.add(q, "item", NS_ITEMS, attrs=attrs)
        return q

    def account_info(self, req: IqRequest) -> Element:
        if req.payload.getAttribute("node"):
            raise StanzaError("item-not-found")
        q = st.make("query", NS_INFO)
        st.add(q, "identity", NS_INFO, attrs={"category": "account", "type": "registered"})
        for var in self.host.all_account_features():
            st.add(q, "feature", NS_INFO, attrs={"var": var})
        return q

    def account_items(self, req: IqRequest) -> Element:
        if req.payload.getAttribute("node"):
            raise StanzaError("item-not-found")
        return st.make("query", NS_ITEMS)
