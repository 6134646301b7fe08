"""XEP-0049 Private XML Storage, and with it XEP-0048 bookmarks (``<storage
xmlns='storage:bookmarks'/>`` is just one such element).

Each stored element is kept whole in the per-user key-value store (store "private"), keyed
by its qualified name ``{namespace}name``. A get returns the stored element, or the requested
element itself (empty) when nothing was stored, which is what clients expect for "no
bookmarks yet".

Errors (§2.3 "Elements", §3): a query without a child element is ``not-acceptable``; a get
naming more than one namespace is ``bad-request``; the reserved namespaces (``jabber:*``,
``http://jabber.org/*``, ``vcard-temp``) are ``not-acceptable`` (the optional rule of §2.3,
applied); another user's storage is ``forbidden`` (the preferable one of the two §2.3
allows). Per element at most ``max_item_size`` bytes and per user at most ``max_items``
elements (``not-acceptable`` beyond).
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.words.xish.domish import Element

from storage.private import KEY, STORE
from xmppd import stanza as st
from xmppd.errors import StanzaError
from xmppd.hooks import Hook
from xmppd.iq import IqRequest
from xmppd.jid import JID
from xmppd.plugin import Plugin
from xmppd.xmlparser import parse_fragment

NS = "jabber:iq:private"
RESERVED_PREFIXES = ("jabber:", "http://jabber.org/")
RESERVED = ("vcard-temp",)


@dataclass(frozen=True)
class Options:
    max_item_size: int = 131072  # bytes of one stored element (serialized)
    max_items: int = 256  # distinct elements (namespace + name) one user may store


def storage_key(el: Element) -> str:
    """The qualified name an element is stored under (Clark notation)."""
    return f"{{{el.uri or ''}}}{el.name}"


def _check(children: list[Element]) -> None:
    if not children:
        raise StanzaError("not-acceptable", text="name the element to store or retrieve")
    for el in children:
        ns = el.uri or ""
        if ns.startswith(RESERVED_PREFIXES) or ns in RESERVED:
            raise StanzaError("not-acceptable", text=f"namespace {ns!r} is reserved")
        if len(storage_key(el)) > KEY:
            raise StanzaError("not-acceptable", text="namespace and name too long")


@dataclass(slots=True)
class PrivateEvent:
    user: JID
    element: Element


# For other plugins (XEP-0411 keeps PEP bookmarks and storage:bookmarks in step).
PRIVATE_STORED: Hook[PrivateEvent] = Hook(
    "private-stored",
    "A client of `user` stored `element` in its private XML storage (XEP-0049), once per "
    "element of the request, after they were all committed; not fired for Private.store(), "
    "so that a plugin mirroring data here never hears its echo. Return False. A failing "
    "handler (StanzaError included) is logged: the client's request has succeeded.",
)


class Private(Plugin):
    name = "private"
    specs = ("XEP-0049 1.2", "XEP-0048 1.2 (bookmarks in private XML storage)")
    features = (NS,)
    Options = Options
    live_options = True  # read when used: a reload may change them
    hooks = (PRIVATE_STORED,)

    def setup(self) -> None:
        self.host.iq("get", NS, "query", self.get, scope="account")
        self.host.iq("set", NS, "query", self.set, scope="account")

    # -- for other plugins ---------------------------------------------------------------------
    async def load(self, user: JID, name: str, ns: str) -> Element | None:
        """The stored element, or None."""
        xml = await self.host.storage.kv.get(user.domain, user.local, STORE, f"{{{ns}}}{name}")
        return None if xml is None else parse_fragment(xml)

    async def store(self, user: JID, el: Element) -> None:
        """Store ``el`` for ``user`` under the same rules as a client's set (StanzaError)."""
        _check([el])
        xml = self._serialized(el)
        await self._quota(user, {storage_key(el)})
        await self.host.storage.kv.set(user.domain, user.local, STORE, storage_key(el), xml)

    def _serialized(self, el: Element) -> str:
        xml = st.serialize(el)
        if len(xml.encode()) > self.options.max_item_size:
            raise StanzaError("not-acceptable", text=f"<{el.name}/> is larger than "
                              f"{self.options.max_item_size} bytes")
        return xml

    async def _quota(self, user: JID, keys: set[str]) -> None:
        stored = await self.host.storage.private.keys(user.domain, user.local)
        if len(stored | keys) > self.options.max_items:
            raise StanzaError("not-acceptable", text="too many private XML elements")

    # -- IQ handlers -------------------------------------------------------------------------
    async def get(self, req: IqRequest) -> Element:
        if not req.is_own_account:
            raise StanzaError("forbidden")
        children = st.element_children(req.payload)
        _check(children)
        if len({el.uri for el in children}) > 1:
            raise StanzaError("bad-request", text="one namespace per request")
        q = st.make("query", NS)
        for el in children:
            found = await self.load(req.account, el.name, el.uri or "")
            st.append(q, found if found is not None else st.make(el.name, el.uri))
        return q

    async def set(self, req: IqRequest) -> None:
        if not req.is_own_account:
            raise StanzaError("forbidden")
        children = st.element_children(req.payload)
        _check(children)
        user = req.account
        values = {storage_key(el): self._serialized(el) for el in children}
        await self._quota(user, set(values))
        for key, xml in values.items():
            await self.host.storage.kv.set(user.domain, user.local, STORE, key, xml)
        for el in children:
            try:
                await self.host.fire(PRIVATE_STORED, PrivateEvent(user, el))
            except StanzaError:  # stored already: a failing mirror must not make it an error
                self.log.failure("a private-stored handler failed")
        return None
