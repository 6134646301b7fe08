"""XEP-0398 User Avatar to vCard-Based Avatars Conversion, between XEP-0084 (the
``urn:xmpp:avatar:data`` and ``urn:xmpp:avatar:metadata`` nodes) and the XEP-0054 vCard
PHOTO that XEP-0153 advertises.

* PEP to vCard (§3.1, MUST): a publish to the metadata node picks the <info/> without 'url',
  looks its id up in the data node, checks that the SHA-1 of the image is the id (SHOULD)
  and stores the image as the vCard PHOTO, with the info 'type' as TYPE. An empty
  <metadata/> (XEP-0084 §4.5 "avatar disabled") removes the PHOTO.
* vCard to PEP (§3.2, MAY, done): a vCard set with a valid photo publishes the image to the
  data node (ItemID: its SHA-1) and then one <info/> to the metadata node, notifying the
  metadata node's subscribers (§3.2 SHOULD). The type is the vCard's TYPE (or, without one,
  recognised from the image's first bytes; an image of unknown type is not converted).
  A vCard set *without* a photo does not disable the PEP avatar: clients that rewrite the
  vCard without knowing its PHOTO would otherwise erase the user's avatar everywhere.

Changes made here are marked with the source "avatars", so the conversion never echoes.
Nodes the conversion creates get the default configuration (access model presence,
XEP-0084 §7 notes the same default); the vCard itself is readable by anyone (XEP-0398 §6).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import TYPE_CHECKING

from plugins.pep import ns
from plugins.pep.service import NODE_CHANGED, Change
from plugins.vcard import VCARD_STORED, VCard, VCardEvent
from xmppd import stanza as st
from xmppd.errors import StanzaError
from xmppd.logs import Logger

if TYPE_CHECKING:
    from plugins.pep import Pep

SOURCE = "avatars"
VCARD = "vcard-temp"
SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"),
              (b"GIF87a", "image/gif"), (b"GIF89a", "image/gif"))
log = Logger(namespace="xmppd.plugins.pep.avatars")


def sniff(data: bytes) -> str | None:
    for magic, mime in SIGNATURES:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def decode(text: str) -> bytes | None:
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


class AvatarBridge:
    def __init__(self, pep: Pep, vcard: VCard) -> None:
        self.pep = pep
        self.vcard = vcard

    def setup(self) -> None:
        self.pep.host.on(NODE_CHANGED, self.metadata_changed)
        self.pep.host.on(VCARD_STORED, self.vcard_set)

    # -- PEP to vCard (§3.1) -------------------------------------------------------------------
    async def metadata_changed(self, change: Change) -> None:
        if change.node != ns.AVATAR_METADATA or change.source == SOURCE or (
                change.kind != "publish" or change.item is None):
            return
        meta = change.item.payload
        if meta is None or meta.name != "metadata" or meta.uri != ns.AVATAR_METADATA:
            return
        owner = change.owner
        infos = list(st.children(meta, "info", ns.AVATAR_METADATA))
        if not infos:
            await self.vcard.set_photo(owner, None, None)
            return
        info = next((i for i in infos if not i.getAttribute("url")), None)
        item_id = info.getAttribute("id", "").lower() if info is not None else ""
        if info is None or not item_id:
            return
        if await self.vcard.photo_of(owner) == item_id:
            return  # the vCard has this image already (e.g. it came from there)
        record = await self.pep.service.node(owner, ns.AVATAR_DATA)
        found = [] if record is None else await self.pep.service.items(
            owner, record, ids=[info.getAttribute("id", "")])
        data = found[0].payload if found else None
        if data is None or data.name != "data" or data.uri != ns.AVATAR_DATA:
            log.info("avatar {id} of {user} has no data item; vCard unchanged", id=item_id,
                     user=owner.bare_str)
            return
        raw = decode(st.text(data))
        if raw is None or hashlib.sha1(raw).hexdigest() != item_id:
            log.info("avatar data {id} of {user} does not match its id; vCard unchanged",
                     id=item_id, user=owner.bare_str)
            return
        b64 = base64.b64encode(raw).decode("ascii")
        if not await self.vcard.set_photo(owner, info.getAttribute("type"), b64):
            log.info("avatar of {user} too large for the vCard", user=owner.bare_str)

    # -- vCard to PEP (§3.2) -------------------------------------------------------------------
    async def vcard_set(self, ev: VCardEvent) -> None:
        user, vcard = ev.user, ev.vcard
        photo = st.child(vcard, "PHOTO", VCARD)
        binval = st.child(photo, "BINVAL", VCARD) if photo is not None else None
        raw = decode(st.text(binval)) if binval is not None else None
        if not raw:
            return
        sha1 = hashlib.sha1(raw).hexdigest()
        mime = (st.child_text(photo, "TYPE", VCARD) or "").strip() if photo is not None else ""
        mime = mime or sniff(raw) or ""
        if not mime:
            return
        service = self.pep.service
        record = await service.node(user, ns.AVATAR_METADATA)
        if record is not None:
            last = await service.items(user, record, last=1)
            if last and last[0].item_id == sha1:
                return  # already the PEP avatar
        data = st.make("data", ns.AVATAR_DATA)
        data.children.append(base64.b64encode(raw).decode("ascii"))
        meta = st.make("metadata", ns.AVATAR_METADATA)
        st.add(meta, "info", ns.AVATAR_METADATA,
               attrs={"id": sha1, "bytes": str(len(raw)), "type": mime})
        try:
            await service.publish(user, ns.AVATAR_DATA, data, sha1, source=SOURCE)
            await service.publish(user, ns.AVATAR_METADATA, meta, sha1, source=SOURCE)
        except StanzaError as exc:  # e.g. the image exceeds max_item_size
            log.info("vCard photo of {user} not published as avatar: {exc}",
                     user=user.bare_str, exc=exc)
