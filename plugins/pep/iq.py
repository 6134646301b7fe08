"""The XEP-0060 requests a PEP service answers, addressed to an account's bare JID (or sent
without 'to' by the owner): parsing, who may do what, and the error of each §6-§8 table.

Anyone may retrieve items, subject to the node's access model (§6.5); only the owner may
publish, retract, create (§7, §8.1; XEP-0163 §2.2 "one publisher per node") and use the
pubsub#owner requests (§8.2-§8.9) - anyone else gets ``forbidden``. Requests this service
does not implement get ``feature-not-implemented`` with ``<unsupported feature=.../>``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.words.xish.domish import Element

from plugins.pep import config as cfg
from plugins.pep import ns
from plugins.pep.config import NodeConfig
from plugins.pep.ns import error
from plugins.pep.service import NodeRecord, check_node_name
from xmppd import forms
from xmppd import stanza as st
from xmppd.errors import StanzaError
from xmppd.iq import IqRequest
from xmppd.jid import JID

if TYPE_CHECKING:
    from plugins.pep import Pep

# Requests of XEP-0060 this service does not offer, with the feature each one belongs to.
UNSUPPORTED = {"subscribe": "subscribe", "unsubscribe": "subscribe",
               "options": "subscription-options", "subscriptions": "retrieve-subscriptions"}
OWNER_UNSUPPORTED = {"subscriptions": "manage-subscriptions"}


def _verb(req: IqRequest, namespace: str, extras: dict[str, str]) -> tuple[Element, Element | None]:
    """The one request element of a <pubsub/> and its allowed companion (publish-options
    after publish, configure after create); anything else is a bad request. Children in
    other namespaces are extensions this service does not use (e.g. XEP-0059 result set
    management in §6.5.4: without it, all items are returned, as XEP-0059 §1 allows)."""
    children = [c for c in st.element_children(req.payload) if c.uri == namespace]
    if not children:
        raise StanzaError("bad-request", text="one pubsub request element expected")
    first, rest = children[0], children[1:]
    companion = extras.get(first.name)
    if not rest:
        return first, None
    if len(rest) == 1 and rest[0].name == companion:
        return first, rest[0]
    raise StanzaError("bad-request", text="one pubsub request element expected")


def _own(req: IqRequest) -> JID:
    if not req.is_own_account:
        raise StanzaError("forbidden", text="only the account owner may do that")
    return req.account


def _form(parent: Element) -> forms.Form:
    form = forms.find(parent)
    if form is None:
        raise StanzaError("bad-request", text=f"<{parent.name}/> needs a data form")
    return form


class PubsubIq:
    def __init__(self, pep: Pep) -> None:
        self.pep = pep
        self.service = pep.service

    async def _node(self, owner: JID, el: Element, own: bool = True) -> NodeRecord:
        name = check_node_name(el.getAttribute("node"))
        if own:
            await self.pep.bookmarks.ensure(owner, name)
        record = await self.service.node(owner, name)
        if record is None:
            raise StanzaError("item-not-found", text="no such node")
        return record

    # -- http://jabber.org/protocol/pubsub -----------------------------------------------
    async def get(self, req: IqRequest) -> Element:
        el, _ = _verb(req, ns.PUBSUB, {})
        if el.name == "items":
            return await self.items(req, el)
        if el.name == "affiliations":
            return await self.affiliations(req, el)
        if el.name in UNSUPPORTED:
            raise ns.unsupported(UNSUPPORTED[el.name])
        raise StanzaError("bad-request", text=f"<{el.name}/> is not a pubsub query")

    async def set(self, req: IqRequest) -> Element | None:
        el, extra = _verb(req, ns.PUBSUB, {"publish": "publish-options", "create": "configure",
                                           "subscribe": "options"})
        if el.name == "publish":
            return await self.publish(req, el, extra)
        if el.name == "retract":
            await self.retract(req, el)
            return None
        if el.name == "create":
            await self.create(req, el, extra)
            return None
        if el.name in UNSUPPORTED:
            raise ns.unsupported(UNSUPPORTED[el.name])
        raise StanzaError("bad-request", text=f"<{el.name}/> is not a pubsub request")

    async def items(self, req: IqRequest, el: Element) -> Element:
        """§6.5: all items, the most recent max_items (§6.5.7) or those asked for (§6.5.8)."""
        owner = req.account
        viewer = req.from_
        assert viewer is not None
        last: int | None = None
        raw = el.getAttribute("max_items")
        if raw is not None:
            if not raw.strip().isdigit() or int(raw) < 1:
                raise StanzaError("bad-request", text="max_items must be a positive integer")
            last = int(raw)
        ids: list[str] | None = None
        wanted = list(st.children(el, "item", ns.PUBSUB))
        if wanted:
            ids = [i.getAttribute("id", "") for i in wanted]
            if not all(ids):
                raise error("bad-request", "item-required", text="<item/> without an id")
        record = await self._node(owner, el, req.is_own_account)
        await self.service.check_access(owner, record.config, viewer)
        found = await self.service.items(owner, record, last, ids)
        out = st.make("pubsub", ns.PUBSUB)
        items = st.add(out, "items", ns.PUBSUB, attrs={"node": record.name})
        for item in found:
            st.append(items, item.element(ns.PUBSUB))
        return out

    async def affiliations(self, req: IqRequest, el: Element) -> Element:
        """§5.7: the requester's affiliations here - owner of every node, or none."""
        out = st.make("pubsub", ns.PUBSUB)
        affs = st.add(out, "affiliations", ns.PUBSUB)
        only = el.getAttribute("node")
        if only is not None:
            affs.attributes["node"] = only
        if req.is_own_account:
            for name in await self.service.nodes(req.account):
                if only is None or name == only:
                    st.add(affs, "affiliation", ns.PUBSUB,
                           attrs={"node": name, "affiliation": "owner"})
        return out

    async def publish(self, req: IqRequest, el: Element, options: Element | None) -> Element:
        """§7.1 with the §7.1.3 errors and §7.1.5 publish-options."""
        owner = _own(req)
        name = check_node_name(el.getAttribute("node"))
        if any(c.name != "item" or c.uri != ns.PUBSUB for c in st.element_children(el)):
            raise StanzaError("bad-request", text="<publish/> holds one <item/>")
        items = list(st.children(el, "item", ns.PUBSUB))
        if not items:
            raise error("bad-request", "item-required")  # §7.1.3.7: persistent nodes
        if len(items) > 1:
            raise StanzaError("bad-request", text="one item per publish request")
        payloads = st.element_children(items[0])
        if len(payloads) != 1:
            raise error("bad-request", "invalid-payload",
                        text="an item holds exactly one payload element")  # §7.1.3.6
        wanted = cfg.preconditions(_form(options)) if options is not None else None
        await self.pep.bookmarks.ensure(owner, name)
        item_id = await self.service.publish(owner, name, payloads[0],
                                             items[0].getAttribute("id") or None, wanted,
                                             publisher=req.from_)
        out = st.make("pubsub", ns.PUBSUB)
        pub = st.add(out, "publish", ns.PUBSUB, attrs={"node": name})
        st.add(pub, "item", ns.PUBSUB, attrs={"id": item_id})
        return out

    async def retract(self, req: IqRequest, el: Element) -> None:
        """§7.2 and its §7.2.3 errors."""
        owner = _own(req)
        check_node_name(el.getAttribute("node"))
        items = list(st.children(el, "item", ns.PUBSUB))
        if not items or not items[0].getAttribute("id"):
            raise error("bad-request", "item-required")
        if len(items) > 1:
            raise StanzaError("bad-request", text="one item per retract request")
        raw = el.getAttribute("notify")
        if raw not in (None, "1", "true", "0", "false"):
            raise StanzaError("bad-request", text="notify is a boolean")
        notify = None if raw is None else raw in ("1", "true")
        record = await self._node(owner, el)
        await self.service.retract(owner, record, items[0].attributes["id"], notify)

    async def create(self, req: IqRequest, el: Element, configure: Element | None) -> None:
        """§8.1 (no instant nodes: §8.1.1 nodeid-required), §8.1.3 create-and-configure."""
        owner = _own(req)
        name = el.getAttribute("node")
        if not name:
            raise error("not-acceptable", "nodeid-required")
        check_node_name(name)
        config = cfg.defaults(name)
        if configure is not None:
            if configure.getAttribute("node") is not None:
                raise StanzaError("bad-request", text="<configure/> after <create/> has no node")
            form = forms.find(configure)
            if form is not None:
                config = cfg.apply(config, form)
        await self.pep.bookmarks.ensure(owner, name)
        await self.service.create(owner, name, config)

    # -- http://jabber.org/protocol/pubsub#owner -----------------------------------------
    async def owner_get(self, req: IqRequest) -> Element:
        owner = _own(req)
        el, _ = _verb(req, ns.OWNER, {})
        out = st.make("pubsub", ns.OWNER)
        if el.name == "default":  # §8.3
            st.append(st.add(out, "default", ns.OWNER), cfg.form(NodeConfig()))
            return out
        if el.name in OWNER_UNSUPPORTED:
            raise ns.unsupported(OWNER_UNSUPPORTED[el.name])
        if el.name not in ("configure", "affiliations"):
            raise StanzaError("bad-request", text=f"<{el.name}/> is not an owner query")
        record = await self._node(owner, el)
        if el.name == "configure":  # §8.2.2
            roster = await self.pep.roster.load(owner)
            groups = {g for item in roster.items.values() for g in item.groups}
            conf = st.add(out, "configure", ns.OWNER, attrs={"node": record.name})
            st.append(conf, cfg.form(record.config, "form", groups))
            return out
        affs = st.add(out, "affiliations", ns.OWNER, attrs={"node": record.name})  # §8.9.1
        st.add(affs, "affiliation", ns.OWNER, attrs={"jid": owner.bare_str,
                                                     "affiliation": "owner"})
        return out

    async def owner_set(self, req: IqRequest) -> None:
        owner = _own(req)
        el, _ = _verb(req, ns.OWNER, {})
        if el.name == "affiliations":
            raise ns.unsupported("modify-affiliations")
        if el.name in OWNER_UNSUPPORTED:
            raise ns.unsupported(OWNER_UNSUPPORTED[el.name])
        if el.name not in ("configure", "delete", "purge"):
            raise StanzaError("bad-request", text=f"<{el.name}/> is not an owner request")
        record = await self._node(owner, el)
        if el.name == "delete":  # §8.4
            await self.service.delete(owner, record)
        elif el.name == "purge":  # §8.5
            await self.service.purge(owner, record)
        else:  # §8.2.4
            form = _form(el)
            if form.type == "cancel":
                return None
            await self.service.configure(owner, record, cfg.apply(record.config, form))
        return None
