"""XEP-0054 vcard-temp (get/set one's own vCard, get another user's) and XEP-0153 vCard-based
avatars (the photo hash in presence); every vCard set also refreshes the user directory that
XEP-0055 search reads (storage/directory.py).

XEP-0153 and re-broadcasting. When a vCard set changes the photo, the server does *not* send
presence on the user's behalf: XEP-0153 §4.2 rule 1 makes the uploading client announce the
new hash ("a client MUST advertise an image if it has just uploaded the vCard with a new
avatar image"), and a broadcast the user's client never sent would contradict RFC 6121 §4.2
(presence broadcast is the client's act) and could race the client's own announcement with
a different payload. What the server does is keep the stored hash authoritative: a client
that sends available presence without ``<x xmlns='vcard-temp:x:update'/>`` gets it added
with the stored hash (so contacts and the user's other resources see the avatar, §4.3 rule
1), and such stamped presences kept for probe answers are updated in place when the photo
changes, so the next probe answer carries the new hash.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from twisted.words.xish.domish import Element

from storage.directory import DirectoryEntry
from xmppd import hooks as H
from xmppd import stanza as st
from xmppd.errors import StanzaError
from xmppd.hooks import Hook
from xmppd.iq import IqRequest
from xmppd.jid import JID
from xmppd.plugin import Plugin
from xmppd.xmlparser import parse_fragment

NS = "vcard-temp"
NS_UPDATE = "vcard-temp:x:update"
STAMPED = "vcard_stamped"  # session.data key: we added the update element to its presence


@dataclass(frozen=True)
class Options:
    max_size: int = 131072  # bytes of a serialized vCard; larger sets get <not-acceptable/>


def photo_hash(vcard: Element) -> str | None:
    """XEP-0153 §3.1: hex SHA-1 of the decoded PHOTO/BINVAL data (whitespace ignored, §4.6
    rule 5); None without a photo. Data that is not base64 is a bad request."""
    photo = st.child(vcard, "PHOTO", NS)
    binval = None if photo is None else st.child(photo, "BINVAL", NS)
    data = "".join(st.text(binval).split())
    if not data:
        return None
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise StanzaError("bad-request", text="PHOTO/BINVAL is not base64") from None
    return hashlib.sha1(raw).hexdigest()


def _field(el: Element, *path: str) -> str | None:
    for name in path:
        found = st.child(el, name, NS)
        if found is None:
            return None
        el = found
    value = " ".join(st.text(el).split())
    return value or None


def directory_entry(username: str, vcard: Element) -> DirectoryEntry:
    """The searchable fields of a vCard (XEP-0055 directory): FN, NICKNAME, N/GIVEN,
    N/FAMILY and the first EMAIL (its USERID, XEP-0054 §6, or its text for old clients)."""
    email = None
    for e in st.children(vcard, "EMAIL", NS):
        email = _field(e, "USERID") or _field(e)
        if email:
            break
    return DirectoryEntry(username, fn=_field(vcard, "FN"), nick=_field(vcard, "NICKNAME"),
                          given=_field(vcard, "N", "GIVEN"),
                          family=_field(vcard, "N", "FAMILY"), email=email)


def update_element(photo: str) -> Element:
    x = st.make("x", NS_UPDATE)
    st.add(x, "photo", NS_UPDATE, photo)
    return x


@dataclass(slots=True)
class VCardEvent:
    user: JID
    vcard: Element


# For XEP-0398 (plugins/pep mirrors avatars between PEP and the vCard).
VCARD_STORED: Hook[VCardEvent] = Hook(
    "vcard-stored",
    "A user set their vCard (XEP-0054 §3.2) and it has been stored; not fired for "
    "VCard.set_photo(), so that a plugin mirroring a photo here never hears its echo. Return "
    "False. A failing handler (StanzaError included) is logged: the set has succeeded.",
)


class VCard(Plugin):
    name = "vcard"
    specs = ("XEP-0054 1.2 (vcard-temp; feeds the user directory)",
             "XEP-0153 1.1 (stored avatar hash added to presence)")
    features = (NS,)
    account_features = (NS,)  # XEP-0054 §4: the server answers for its accounts
    Options = Options
    live_options = True  # read when used: a reload may change them
    hooks = (VCARD_STORED,)

    def setup(self) -> None:
        self.photos: dict[str, str | None] = {}  # bare JID -> photo hash, users with sessions
        self.host.iq("get", NS, "vCard", self.get, scope="account")
        self.host.iq("set", NS, "vCard", self.set, scope="account")
        # Before the presence plugin (priority 0) broadcasts the stanza.
        self.host.on(H.PRESENCE_BROADCAST, self.stamp, priority=10)
        self.host.on(H.SESSION_CLOSED, self.evict)
        self.host.on(H.ACCOUNT_DELETED, self.forget)

    # -- XEP-0054 ----------------------------------------------------------------------------
    async def get(self, req: IqRequest) -> Element:
        """§3.1 (own vCard: an empty one if none was stored) and §3.3 (another user's:
        item-not-found if none; a non-existent user was refused by the router already)."""
        user = req.account
        stored = await self.host.storage.vcard.get(user.domain, user.local)
        if stored is None:
            if req.is_own_account:
                return st.make("vCard", NS)
            raise StanzaError("item-not-found")
        return parse_fragment(stored.xml)

    async def set(self, req: IqRequest) -> None:
        """§3.2: replace the whole vCard; only the user may (forbidden otherwise)."""
        if not req.is_own_account:
            raise StanzaError("forbidden")
        user = req.account
        vcard = req.payload
        xml = st.serialize(vcard)
        if len(xml.encode()) > self.options.max_size:
            raise StanzaError("not-acceptable",
                              text=f"vCard larger than {self.options.max_size} bytes")
        await self._store(user, vcard, xml)
        try:
            await self.host.fire(VCARD_STORED, VCardEvent(user, vcard))
        except StanzaError:  # the vCard is stored: a failing mirror must not make it an error
            self.log.failure("a vcard-stored handler failed")
        return None

    async def _store(self, user: JID, vcard: Element, xml: str) -> None:
        photo = photo_hash(vcard)
        await self.host.storage.vcard.put(user.domain, user.local, xml, photo)
        await self.host.storage.directory.put(user.domain, directory_entry(user.local, vcard))
        key = user.bare_str
        if key in self.photos and self.photos[key] != photo:
            self.restamp(user, photo)
        if key in self.photos or self.host.sessions_of(user):
            self.photos[key] = photo

    # -- for XEP-0398 (plugins/pep mirrors avatars between PEP and the vCard) -----------------
    async def set_photo(self, user: JID, mime: str | None, binval: str | None) -> bool:
        """Replace the PHOTO of the user's stored vCard (None: remove it) on the server's
        behalf, hash and presence stamps included; VCARD_STORED does not fire. False (nothing
        stored) if the vCard would exceed max_size."""
        stored = await self.host.storage.vcard.get(user.domain, user.local)
        vcard = parse_fragment(stored.xml) if stored is not None else st.make("vCard", NS)
        vcard.children = [c for c in vcard.children if not (
            isinstance(c, Element) and c.name == "PHOTO" and c.uri == NS)]
        if binval is not None:
            photo = st.add(vcard, "PHOTO", NS)
            if mime:
                st.add(photo, "TYPE", NS, mime)
            st.add(photo, "BINVAL", NS, binval)
        xml = st.serialize(vcard)
        if len(xml.encode()) > self.options.max_size:
            return False
        await self._store(user, vcard, xml)
        return True

    # -- XEP-0153 ----------------------------------------------------------------------------
    async def photo_of(self, user: JID) -> str | None:
        key = user.bare_str
        if key in self.photos:
            return self.photos[key]
        photo = await self.host.storage.vcard.photo(user.domain, user.local)
        if key not in self.photos and self.host.sessions_of(user):
            self.photos[key] = photo
        return self.photos.get(key, photo)

    async def stamp(self, ev: H.StanzaEvent) -> bool:
        """§4.1: available presence without the update element gets the stored hash. With no
        stored photo nothing is added: an empty <photo/> would tell contacts "no avatar" and
        could hide an avatar the client publishes another way (XEP-0084)."""
        session, presence = ev.origin, ev.stanza
        if session is None or presence.getAttribute("type") is not None:
            return False
        if st.child(presence, "x", NS_UPDATE) is not None:
            session.data[STAMPED] = False
            return False
        photo = await self.photo_of(ev.from_.bare)
        session.data[STAMPED] = photo is not None
        if photo is not None:
            st.append(presence, update_element(photo))  # the session keeps this same stanza
        return False

    def restamp(self, user: JID, photo: str | None) -> None:
        """Put the new hash into presences we stamped, kept for probe answers (RFC 6121
        §4.3.2); nothing is sent now (see the module docstring)."""
        for session in self.host.sessions_of(user):
            presence = session.presence
            if not session.data.get(STAMPED) or presence is None:
                continue
            kept = [c for c in presence.children
                    if not (isinstance(c, Element) and c.name == "x" and c.uri == NS_UPDATE)]
            presence.children = kept  # a new list: copies already sent keep theirs
            if photo is None:
                session.data[STAMPED] = False
            else:
                st.append(presence, update_element(photo))

    def evict(self, ev: H.SessionEvent) -> None:
        jid = ev.session.jid
        if jid is not None and not self.host.sessions_of(jid.bare):
            self.photos.pop(jid.bare_str, None)

    def forget(self, ev: H.AccountEvent) -> None:
        self.photos.pop(ev.jid.bare_str, None)
