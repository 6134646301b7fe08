"""Bookmarks kept in step across their three homes:

* private XML storage, ``<storage xmlns='storage:bookmarks'/>`` (XEP-0049 + XEP-0048 1.0),
* the PEP node ``storage:bookmarks`` with that same element as item 'current' (XEP-0048 1.1,
  XEP-0223; converted to and from private XML as XEP-0411 requires),
* the PEP node ``urn:xmpp:bookmarks:1``, one item per room, ItemID = room JID (XEP-0402),
  unified with both (the ``#compat`` and ``#compat-pep`` features of XEP-0402 §5.3).

A change to any of them is written to the other two: a private XML set or a publish to the
legacy node updates the XEP-0402 items one by one (publishing changed rooms, retracting
removed ones, leaving unchanged ones alone: §5.3.2 "SHOULD NOT send notifications for
unchanged items") and republishes the legacy item (XEP-0411 §3: its subscribers are
notified); a change to the XEP-0402 node rewrites the private XML element and the legacy
item. URL bookmarks exist only in XEP-0048; they are kept in private XML and the legacy
node across XEP-0402 changes. Removing or purging the legacy node is not propagated (its
one item is the whole list; deleting it is not a statement about the bookmarks).

Nodes created here get the private defaults of config.PRIVATE_DEFAULTS (XEP-0223: access
model whitelist, items persisted; the XEP-0402 node as XEP-0402 §3.2 asks clients to create
it, max_items max and no last item on presence; the legacy node keeps the last item on
presence, which is how XEP-0048 1.1 clients learn their bookmarks). A node found with
another access model is left alone (XEP-0411 §5: "the user is the only one who has access").

Bookmarks stored only in private XML before PEP existed are converted the first time the
user's session binds or any bookmark node is used (XEP-0411 §4).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.defer import DeferredLock
from twisted.words.xish.domish import Element

from plugins.pep import ns
from plugins.pep.service import NODE_CHANGED, Change
from plugins.private import PRIVATE_STORED, Private, PrivateEvent
from xmppd import hooks as H
from xmppd import stanza as st
from xmppd.errors import StanzaError
from xmppd.jid import JID, JIDError
from xmppd.logs import Logger

if TYPE_CHECKING:
    from plugins.pep import Pep

SOURCE = "bookmarks"
NODES = (ns.BOOKMARKS, ns.LEGACY_BOOKMARKS)
log = Logger(namespace="xmppd.plugins.pep.bookmarks")


def _true(value: str | None) -> bool:
    return value in ("1", "true")


def from_legacy(storage: Element) -> dict[str, Element]:
    """XEP-0048 <conference/>s as XEP-0402 items: room JID -> <conference/>. Unknown
    children go into <extensions/> (XEP-0402 §3); conferences without a valid JID are
    skipped."""
    out: dict[str, Element] = {}
    for conf in st.children(storage, "conference", ns.LEGACY_BOOKMARKS):
        try:
            room = JID.parse(conf.getAttribute("jid", ""))
        except JIDError:
            continue
        if room.resource or not conf.getAttribute("jid"):
            continue
        new = st.make("conference", ns.BOOKMARKS)
        if conf.getAttribute("name"):
            new.attributes["name"] = conf.attributes["name"]
        if _true(conf.getAttribute("autojoin")):
            new.attributes["autojoin"] = "true"
        extensions: list[Element] = []
        for child in st.element_children(conf):
            if child.uri == ns.LEGACY_BOOKMARKS and child.name in ("nick", "password"):
                st.add(new, child.name, ns.BOOKMARKS, st.text(child))
            elif child.uri != ns.LEGACY_BOOKMARKS:
                extensions.append(child)
        if extensions:
            ext = st.add(new, "extensions", ns.BOOKMARKS)
            for child in extensions:
                st.append(ext, st.copy(child))
        out[str(room)] = new
    return out


def to_legacy(room: str, conf: Element) -> Element:
    """One XEP-0402 item as a XEP-0048 <conference/>."""
    old = st.make("conference", ns.LEGACY_BOOKMARKS, {"jid": room})
    if conf.getAttribute("name"):
        old.attributes["name"] = conf.attributes["name"]
    old.attributes["autojoin"] = "true" if _true(conf.getAttribute("autojoin")) else "false"
    for name in ("nick", "password"):
        child = st.child(conf, name, ns.BOOKMARKS)
        if child is not None:
            st.add(old, name, ns.LEGACY_BOOKMARKS, st.text(child))
    ext = st.child(conf, "extensions", ns.BOOKMARKS)
    for child in st.element_children(ext) if ext is not None else ():
        st.append(old, st.copy(child))
    return old


def summary(conf: Element) -> tuple[str, bool, str, str, str]:
    """What makes two XEP-0402 conferences the same bookmark."""
    ext = st.child(conf, "extensions", ns.BOOKMARKS)
    return (conf.getAttribute("name", ""), _true(conf.getAttribute("autojoin")),
            st.child_text(conf, "nick", ns.BOOKMARKS) or "",
            st.child_text(conf, "password", ns.BOOKMARKS) or "",
            "".join(st.serialize(c) for c in st.element_children(ext)) if ext is not None
            else "")


class BookmarksBridge:
    def __init__(self, pep: Pep, private: Private) -> None:
        self.pep = pep
        self.private = private
        self.locks: dict[str, DeferredLock] = {}
        self.checked: set[str] = set()  # users whose old private bookmarks were looked at

    def setup(self) -> None:
        self.pep.host.on(NODE_CHANGED, self.node_changed)
        self.pep.host.on(PRIVATE_STORED, self.private_set)

    def _lock(self, user: JID) -> DeferredLock:
        return self.locks.setdefault(user.bare_str, DeferredLock())

    def evict(self, ev: H.SessionEvent) -> None:
        jid = ev.session.jid
        if jid is not None and not self.pep.host.sessions_of(jid.bare):
            self.checked.discard(jid.bare_str)
            lock = self.locks.get(jid.bare_str)
            if lock is not None and not lock.locked:
                del self.locks[jid.bare_str]

    def forget(self, user: JID) -> None:
        self.checked.discard(user.bare_str)

    async def ensure(self, user: JID, node: str = ns.BOOKMARKS) -> None:
        """XEP-0411 §4: bookmarks only in private XML are copied to PEP before first use."""
        if node not in NODES or user.bare_str in self.checked:
            return
        self.checked.add(user.bare_str)
        nodes = await self.pep.service.nodes(user)
        if any(n in nodes for n in NODES):
            return
        stored = await self.private.load(user, "storage", ns.LEGACY_BOOKMARKS)
        if stored is not None and st.element_children(stored):
            async with self._lock(user):
                await self._from_legacy(user, stored, legacy_pep=True)

    # -- hook handlers ---------------------------------------------------------------------------
    async def private_set(self, ev: PrivateEvent) -> None:
        user, el = ev.user, ev.element
        if el.name != "storage" or el.uri != ns.LEGACY_BOOKMARKS:
            return
        self.checked.add(user.bare_str)
        async with self._lock(user):
            await self._from_legacy(user, el, legacy_pep=True)

    async def node_changed(self, change: Change) -> None:
        if change.node == ns.BOOKMARKS:
            await self.items_changed(change)
        elif change.node == ns.LEGACY_BOOKMARKS:
            await self.legacy_changed(change)

    async def legacy_changed(self, change: Change) -> None:
        item = change.item
        if change.source == SOURCE or change.kind != "publish" or item is None:
            return
        if item.payload is None or item.payload.name != "storage" or \
                item.payload.uri != ns.LEGACY_BOOKMARKS:
            return
        async with self._lock(change.owner):
            await self._guard(self.private.store(change.owner, item.payload))
            await self._from_legacy(change.owner, item.payload, legacy_pep=False)

    async def items_changed(self, change: Change) -> None:
        if change.source == SOURCE:
            return
        user = change.owner
        async with self._lock(user):
            record = await self.pep.service.node(user, ns.BOOKMARKS)
            items = [] if record is None else await self.pep.service.items(user, record)
            storage = st.make("storage", ns.LEGACY_BOOKMARKS)
            for item in items:
                if item.payload is not None and item.payload.name == "conference" and \
                        item.payload.uri == ns.BOOKMARKS:
                    st.append(storage, to_legacy(item.item_id, item.payload))
            old = await self.private.load(user, "storage", ns.LEGACY_BOOKMARKS)
            for url in st.children(old, "url", ns.LEGACY_BOOKMARKS) if old is not None else ():
                st.append(storage, st.copy(url))
            await self._guard(self.private.store(user, storage))
            await self._guard(self._publish_legacy(user, storage))

    # -- conversions -----------------------------------------------------------------------------
    async def _from_legacy(self, user: JID, storage: Element, legacy_pep: bool) -> None:
        await self._guard(self._sync_items(user, from_legacy(storage)))
        if legacy_pep:
            await self._guard(self._publish_legacy(user, storage))

    async def _sync_items(self, user: JID, wanted: dict[str, Element]) -> None:
        service = self.pep.service
        record = await service.node(user, ns.BOOKMARKS)
        if record is not None and record.config.access_model != "whitelist":
            log.info("{user}: {node} is not private; not converted", user=user.bare_str,
                     node=ns.BOOKMARKS)
            return
        current = {} if record is None else {
            i.item_id: i.payload for i in await service.items(user, record)}
        for room, conf in wanted.items():
            now = current.get(room)
            if now is None or summary(now) != summary(conf):
                await service.publish(user, ns.BOOKMARKS, conf, room, source=SOURCE)
        for room in current.keys() - wanted.keys():
            if record is not None:
                await service.retract(user, record, room, notify=True, source=SOURCE)

    async def _publish_legacy(self, user: JID, storage: Element) -> None:
        record = await self.pep.service.node(user, ns.LEGACY_BOOKMARKS)
        if record is not None and record.config.access_model != "whitelist":
            log.info("{user}: {node} is not private; not converted", user=user.bare_str,
                     node=ns.LEGACY_BOOKMARKS)
            return
        await self.pep.service.publish(user, ns.LEGACY_BOOKMARKS, st.copy(storage), "current",
                                       source=SOURCE)

    async def _guard(self, work: object) -> None:
        """A failed conversion (a quota, an oversized list) must not fail the request that
        caused it, which has succeeded already; it is logged."""
        try:
            await work  # type: ignore[misc]
        except StanzaError as exc:
            log.info("bookmarks conversion failed: {exc}", exc=exc)
