"""The virtual pubsub service of every account (XEP-0163 §2.1): nodes, items, access.

Operations are methods taking the owner's bare JID; the IQ layer (plugins/pep/iq.py) checks
who asks and parses requests, the notifier (notify.py) delivers events, and bridges
(avatars.py, bookmarks.py) handle NODE_CHANGED for the nodes they mirror.

Node configurations of accounts with sessions are cached (every publish and notification
needs them); other accounts are read from storage on each request, like rosters.
Non-persistent nodes (``pubsub#persist_items`` false) keep their last item in memory only,
so XEP-0163 §4.3.4 can still send it to resources that come online.
"""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from twisted.words.xish.domish import Element

from plugins.pep import config as cfg
from plugins.pep import ns
from plugins.pep.config import NodeConfig
from plugins.pep.ns import error
from storage.pubsub import ITEM, NODE, StoredItem
from xmppd import stanza as st
from xmppd.errors import StanzaError
from xmppd.hooks import Hook
from xmppd.jid import JID
from xmppd.usercache import UserCache
from xmppd.xmlparser import parse_fragment

if TYPE_CHECKING:
    from plugins.pep import Pep


@dataclass(slots=True)
class NodeRecord:
    name: str
    config: NodeConfig
    created: int  # unix seconds


@dataclass(frozen=True, slots=True)
class Item:
    item_id: str
    payload: Element | None
    publisher: str | None = None
    published: int = 0  # unix microseconds

    @classmethod
    def stored(cls, s: StoredItem) -> Item:
        return cls(s.item_id, parse_fragment(s.payload), s.publisher, s.published)

    def element(self, ns_: str, payload: bool = True) -> Element:
        el = st.make("item", ns_, {"id": self.item_id})
        if payload and self.payload is not None:
            st.append(el, st.copy(self.payload))
        return el


@dataclass(frozen=True, slots=True)
class Change:
    """What bridges hear about: kind is publish, retract, purge or delete."""

    kind: str
    owner: JID
    node: str
    item: Item | None = None
    source: str | None = None  # the bridge that made the change, None for a client
    ids: tuple[str, ...] = field(default=())


NODE_CHANGED: Hook[Change] = Hook(
    "pep-node-changed",
    "An account's PEP node changed (XEP-0163): an item was published or retracted, the node "
    "purged or deleted; fired after the change is stored, before the request is answered. "
    "Bridges keeping another store in step (avatars, bookmarks) filter on `node` and skip "
    "changes whose `source` is their own. Return False.",
)


def stamp(micros: int) -> str:
    """XEP-0082 DateTime of a publication time."""
    when = datetime.datetime.fromtimestamp(micros / 1_000_000, datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def check_node_name(name: str | None) -> str:
    if not name:
        raise ns.nodeid_required()
    if len(name) > NODE:
        raise StanzaError("not-acceptable", text=f"NodeIDs are limited to {NODE} characters")
    return name


class Service:
    def __init__(self, pep: Pep) -> None:
        self.pep = pep
        self.host = pep.host
        self.store = pep.host.storage.pubsub
        self.cache: UserCache[dict[str, NodeRecord]] = pep.host.user_cache("pep-nodes")
        self.transient: dict[tuple[str, str], Item] = {}

    async def _changed(self, change: Change) -> None:
        await self.host.fire(NODE_CHANGED, change)

    # -- nodes ------------------------------------------------------------------------------
    async def nodes(self, owner: JID) -> dict[str, NodeRecord]:
        key = owner.bare_str
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        rows = await self.store.nodes(owner.domain, owner.local)
        loaded = {r.node: NodeRecord(r.node, NodeConfig.from_json(r.config), r.created)
                  for r in rows}
        cached = self.cache.get(key)  # another load may have finished meanwhile
        if cached is not None:
            return cached
        if self.host.sessions_of(owner):
            self.cache[key] = loaded
        return loaded

    async def node(self, owner: JID, name: str) -> NodeRecord | None:
        return (await self.nodes(owner)).get(name)

    def forget(self, owner: JID) -> None:
        key = owner.bare_str
        self.cache.pop(key, None)
        for k in [k for k in self.transient if k[0] == key]:
            del self.transient[k]

    async def create(self, owner: JID, name: str, config: NodeConfig) -> NodeRecord:
        """XEP-0060 §8.1: conflict if the node exists; at most max_nodes per account."""
        nodes = await self.nodes(owner)
        if name in nodes:
            raise StanzaError("conflict", text="the node exists already")
        if len(nodes) >= self.pep.options.max_nodes:
            raise StanzaError("policy-violation",
                              text=f"at most {self.pep.options.max_nodes} nodes per account")
        if not await self.store.create_node(owner.domain, owner.local, name,
                                            config.to_json()):
            raise StanzaError("conflict", text="the node exists already")
        record = NodeRecord(name, config, int(self.host.clock.seconds()))
        (await self.nodes(owner))[name] = record
        self.cache.changed(owner.bare_str)
        return record

    async def configure(self, owner: JID, record: NodeRecord, config: NodeConfig) -> None:
        """§8.2.4: store, apply a lower max_items at once, tell subscribers if asked to."""
        limit = config.limit(self.pep.options.max_items) if config.persist_items else 0
        gone = await self.store.set_config(owner.domain, owner.local, record.name,
                                           config.to_json(), limit)
        if gone is None:
            raise StanzaError("item-not-found")
        if not config.persist_items:
            self.transient.pop((owner.bare_str, record.name), None)
        record.config = config
        self.cache.changed(owner.bare_str)
        if config.notify_config:  # §8.2.5.3, with the full form (payloads delivered)
            event = st.make("event", ns.EVENT)
            conf = st.add(event, "configuration", ns.EVENT, attrs={"node": record.name})
            if config.deliver_payloads:
                st.append(conf, cfg.form(config, "result"))
            await self.pep.notifier.broadcast(owner, record, event)

    async def delete(self, owner: JID, record: NodeRecord, source: str | None = None) -> None:
        """§8.4: items and node removed, then subscribers told (notify_delete)."""
        recipients = await self.pep.notifier.recipients(owner, record)
        await self.store.delete_node(owner.domain, owner.local, record.name)
        (await self.nodes(owner)).pop(record.name, None)
        self.cache.changed(owner.bare_str)
        self.transient.pop((owner.bare_str, record.name), None)
        if record.config.notify_delete:
            event = st.make("event", ns.EVENT)
            st.add(event, "delete", ns.EVENT, attrs={"node": record.name})
            await self.pep.notifier.send(owner, record, event, recipients)
        await self._changed(Change("delete", owner, record.name, source=source))

    async def purge(self, owner: JID, record: NodeRecord, source: str | None = None) -> None:
        """§8.5: all items removed; one <purge/> notification (not one per item)."""
        if not record.config.persist_items:
            raise ns.unsupported("persistent-items")
        await self.store.purge(owner.domain, owner.local, record.name)
        if record.config.notify_retract:
            event = st.make("event", ns.EVENT)
            st.add(event, "purge", ns.EVENT, attrs={"node": record.name})
            await self.pep.notifier.broadcast(owner, record, event)
        await self._changed(Change("purge", owner, record.name, source=source))

    # -- access (XEP-0060 §4.5, §6.5.9) ------------------------------------------------------
    async def check_access(self, owner: JID, config: NodeConfig, viewer: JID) -> None:
        """Raise the §6.5.9 error (.6 presence, .7 roster, .8 whitelist) if ``viewer`` may not
        retrieve items of the node."""
        if viewer.bare == owner:
            return
        model = config.access_model
        if model == "open":
            return
        if model == "whitelist":
            raise error("not-allowed", "closed-node")  # §6.5.9.8 (the owner alone is on it)
        roster = await self.pep.roster.load(owner)
        if model == "presence":
            if roster.state(viewer.bare_str).subscription not in ("from", "both"):
                raise error("not-authorized", "presence-subscription-required")
            return
        item = roster.items.get(viewer.bare_str)  # model == "roster"
        if item is None or not set(item.groups) & set(config.roster_groups_allowed):
            raise error("not-authorized", "not-in-roster-group")

    async def allowed(self, owner: JID, config: NodeConfig, viewer: JID) -> bool:
        try:
            await self.check_access(owner, config, viewer)
        except StanzaError:
            return False
        return True

    # -- items -------------------------------------------------------------------------------
    async def publish(self, owner: JID, name: str, payload: Element, item_id: str | None,
                      wanted: dict[str, Any] | None = None, publisher: JID | None = None,
                      source: str | None = None) -> str:
        """XEP-0060 §7.1 with auto-create (§7.1.4) and publish-options (§7.1.5): an existing
        node must meet ``wanted``; a new one gets the defaults (config.defaults) changed by
        it. Notifications go out before this returns, so they precede the IQ result."""
        check_node_name(name)
        if item_id is not None and (not item_id or len(item_id) > ITEM):
            raise StanzaError("not-acceptable", text=f"ItemIDs are 1 to {ITEM} characters")
        xml = st.serialize(payload)
        if len(xml.encode()) > self.pep.options.max_item_size:
            raise error("not-acceptable", "payload-too-big")
        record = await self.node(owner, name)
        if record is None:
            config = cfg.defaults(name)
            if wanted:
                config = replace(config, **wanted)
            try:
                record = await self.create(owner, name, config)
            except StanzaError as exc:
                if exc.condition != "conflict":
                    raise
                record = await self.node(owner, name)  # created meanwhile: it must comply
                if record is None:
                    raise
        if wanted:
            cfg.check(record.config, wanted)
        item_id = item_id or uuid.uuid4().hex
        who = str(publisher) if publisher is not None else None
        item = Item(item_id, payload, who, int(self.host.clock.seconds() * 1_000_000))
        evicted: list[str] = []
        if record.config.persist_items:
            gone = await self.store.publish(owner.domain, owner.local, name, item_id, xml,
                                            who, record.config.limit(self.pep.options.max_items))
            if gone is None:
                raise StanzaError("item-not-found", text="the node was deleted meanwhile")
            evicted = gone
        else:
            self.transient[(owner.bare_str, name)] = item
        if record.config.deliver_notifications:
            if evicted and record.config.notify_retract:  # §7.1.2.5 "retract-oldest"
                event = st.make("event", ns.EVENT)
                items = st.add(event, "items", ns.EVENT, attrs={"node": name})
                for old in evicted:
                    st.add(items, "retract", ns.EVENT, attrs={"id": old})
                await self.pep.notifier.broadcast(owner, record, event)
            event = st.make("event", ns.EVENT)
            items = st.add(event, "items", ns.EVENT, attrs={"node": name})
            st.append(items, item.element(ns.EVENT, record.config.deliver_payloads))
            await self.pep.notifier.broadcast(owner, record, event, publisher)
        await self._changed(Change("publish", owner, name, item, source, tuple(evicted)))
        return item_id

    async def retract(self, owner: JID, record: NodeRecord, item_id: str,
                      notify: bool | None = None, source: str | None = None) -> None:
        """§7.2: delete the item; notify if asked to (or, without 'notify', per notify_retract)."""
        if not record.config.persist_items:
            raise ns.unsupported("persistent-items")
        if not await self.store.retract(owner.domain, owner.local, record.name, item_id):
            raise StanzaError("item-not-found")
        if notify if notify is not None else record.config.notify_retract:
            event = st.make("event", ns.EVENT)
            items = st.add(event, "items", ns.EVENT, attrs={"node": record.name})
            st.add(items, "retract", ns.EVENT, attrs={"id": item_id})
            await self.pep.notifier.broadcast(owner, record, event)
        await self._changed(Change("retract", owner, record.name, source=source,
                                   ids=(item_id,)))

    async def items(self, owner: JID, record: NodeRecord, last: int | None = None,
                    ids: list[str] | None = None) -> list[Item]:
        """§6.5: all items, the ``last`` most recent, or those named (oldest first)."""
        if not record.config.persist_items:
            kept = self.transient.get((owner.bare_str, record.name))
            if kept is None or (ids is not None and kept.item_id not in ids):
                return []
            return [kept]
        rows = await self.store.items(owner.domain, owner.local, record.name, last, ids)
        return [Item.stored(r) for r in rows]

    async def item_ids(self, owner: JID, record: NodeRecord) -> list[str]:
        """ItemIDs only, oldest first (XEP-0060 §5.5)."""
        if not record.config.persist_items:
            return [i.item_id for i in await self.items(owner, record)]
        return await self.store.item_ids(owner.domain, owner.local, record.name)

    async def last_items(self, owner: JID, records: list[NodeRecord]) -> dict[str, Item]:
        """XEP-0163 §4.3.4: the last published item of each node that has one."""
        out: dict[str, Item] = {}
        persistent = [r.name for r in records if r.config.persist_items]
        rows = await self.store.last_items(owner.domain, owner.local, persistent)
        for name, row in rows.items():
            out[name] = Item.stored(row)
        for r in records:
            kept = self.transient.get((owner.bare_str, r.name))
            if not r.config.persist_items and kept is not None:
                out[r.name] = kept
        return out
