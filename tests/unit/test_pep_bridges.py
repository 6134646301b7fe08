"""The conversions, in process: XEP-0084 avatars <-> vCard PHOTO (XEP-0398) and XEP-0402
bookmarks <-> storage:bookmarks in private XML and PEP (XEP-0411, XEP-0402 §5.3)."""

from __future__ import annotations

import base64
import hashlib

from plugins.pep.bookmarks import from_legacy, summary, to_legacy
from plugins.private import Private
from plugins.vcard import VCard
from tests.support.inproc import FakeSession, resolve
from tests.unit.test_pep_service import (
    EVENT,
    PUBSUB,
    World,
    error_of,
    events,
    field,
    item_ids,
    items_query,
    publish,
)
from xmppd import stanza as st
from xmppd.jid import JID
from xmppd.xmlparser import parse_fragment

DATA = "urn:xmpp:avatar:data"
META = "urn:xmpp:avatar:metadata"
BM = "urn:xmpp:bookmarks:1"
LEGACY = "storage:bookmarks"
PRIVATE = "jabber:iq:private"
VCARD = "vcard-temp"
IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
SHA1 = hashlib.sha1(IMAGE).hexdigest()
B64 = base64.b64encode(IMAGE).decode()


def vcard_get(w: World, s: FakeSession, to: str | None = None) -> st.Element:
    reply = w.iq(s, f"<iq type='get'><vCard xmlns='{VCARD}'/></iq>", to=to)
    assert reply["type"] == "result", st.serialize(reply)
    card = st.child(reply, "vCard", VCARD)
    assert card is not None
    return card


def test_pep_avatar_becomes_the_vcard_photo() -> None:
    w = World()
    a = w.user("alice")
    desk = w.online(a + "/desk", notify=[META])
    w.iq(desk, f"<iq type='set'><vCard xmlns='{VCARD}'><FN>Alice</FN></vCard></iq>")
    w.iq(desk, publish(DATA, f"<data xmlns='{DATA}'>{B64}</data>", SHA1))
    reply = w.iq(desk, publish(META, f"<metadata xmlns='{META}'><info id='{SHA1}' "
                                     f"bytes='{len(IMAGE)}' type='image/png'/>"
                                     f"<info id='ext' url='https://x/a.png' bytes='1' "
                                     f"type='image/png'/></metadata>", SHA1))
    assert reply["type"] == "result"
    card = vcard_get(w, desk)
    assert st.child_text(card, "FN", VCARD) == "Alice"  # the rest of the vCard is kept
    photo = st.child(card, "PHOTO", VCARD)
    assert photo is not None
    assert st.child_text(photo, "TYPE", VCARD) == "image/png"
    assert base64.b64decode(st.child_text(photo, "BINVAL", VCARD) or "") == IMAGE
    # the XEP-0153 hash advertised in presence follows
    vcard = w.host.plugin("vcard")
    assert isinstance(vcard, VCard)
    assert resolve(vcard.photo_of(JID.parse(a))) == SHA1
    # an empty <metadata/> disables the avatar: the photo goes
    w.iq(desk, publish(META, f"<metadata xmlns='{META}'/>", "none"))
    assert st.child(vcard_get(w, desk), "PHOTO", VCARD) is None


def test_mismatching_avatar_data_is_not_converted() -> None:
    w = World()
    a = w.user("alice")
    desk = w.online(a + "/desk")
    w.iq(desk, publish(DATA, f"<data xmlns='{DATA}'>{B64}</data>", "0" * 40))
    w.iq(desk, publish(META, f"<metadata xmlns='{META}'><info id='{'0' * 40}' bytes='3' "
                             "type='image/png'/></metadata>", "0" * 40))
    assert st.child(vcard_get(w, desk), "PHOTO", VCARD) is None  # §3.1: SHA-1 must match


def test_vcard_photo_is_published_as_pep_avatar() -> None:
    w = World()
    a, b = w.user("alice"), w.user("bob")
    w.friends(a, b)
    desk = w.online(a + "/desk")
    bob = w.online(b + "/pc", notify=[META])
    reply = w.iq(desk, f"<iq type='set'><vCard xmlns='{VCARD}'><PHOTO><TYPE>image/png</TYPE>"
                       f"<BINVAL>{B64}</BINVAL></PHOTO></vCard></iq>")
    assert reply["type"] == "result"
    [note] = events(bob, META)  # §3.2: the metadata node's subscribers are told
    assert item_ids(note) == [SHA1]
    info = st.child(st.child(st.child(note, "item", EVENT), "metadata", META), "info", META)
    assert info["id"] == SHA1 and info["type"] == "image/png"
    assert info["bytes"] == str(len(IMAGE))
    reply = w.iq(bob, items_query(DATA, inner=f"<item id='{SHA1}'/>"), to=a)
    items = st.child(st.child(reply, "pubsub", PUBSUB), "items", PUBSUB)
    data = st.child(st.child(items, "item", PUBSUB), "data", DATA)
    assert base64.b64decode(st.text(data)) == IMAGE
    # setting the same vCard again publishes nothing new; no echo back into the vCard
    w.iq(desk, f"<iq type='set'><vCard xmlns='{VCARD}'><PHOTO><TYPE>image/png</TYPE>"
               f"<BINVAL>{B64}</BINVAL></PHOTO><FN>A</FN></vCard></iq>")
    assert events(bob) == []


# -- bookmarks ------------------------------------------------------------------------------
LEGACY_XML = (f"<storage xmlns='{LEGACY}'>"
              "<conference jid='room@conference.example.org' name='The Room' autojoin='1'>"
              "<nick>Al</nick><password>pw</password><x xmlns='urn:ext'>e</x></conference>"
              "<conference jid='quiet@conference.example.org'/>"
              "<conference jid='not a jid@@'/>"
              "<url name='Home' url='https://example.org/'/></storage>")


def private_set(w: World, s: FakeSession, inner: str) -> st.Element:
    return w.iq(s, f"<iq type='set'><query xmlns='{PRIVATE}'>{inner}</query></iq>")


def private_get(w: World, s: FakeSession) -> st.Element:
    reply = w.iq(s, f"<iq type='get'><query xmlns='{PRIVATE}'><storage xmlns='{LEGACY}'/>"
                    "</query></iq>")
    storage = st.child(st.child(reply, "query", PRIVATE), "storage", LEGACY)
    assert storage is not None
    return storage


def test_conversion_functions_round_trip() -> None:
    items = from_legacy(parse_fragment(LEGACY_XML))
    assert sorted(items) == ["quiet@conference.example.org", "room@conference.example.org"]
    room = items["room@conference.example.org"]
    assert room["name"] == "The Room" and room["autojoin"] == "true"
    assert st.child_text(room, "nick", BM) == "Al"
    ext = st.child(room, "extensions", BM)
    assert ext is not None and st.child_text(ext, "x", "urn:ext") == "e"
    back = to_legacy("room@conference.example.org", room)
    assert back["jid"] == "room@conference.example.org" and back["autojoin"] == "true"
    again = from_legacy(parse_fragment(f"<storage xmlns='{LEGACY}'>{st.serialize(back)}"
                                       "</storage>"))
    assert summary(again["room@conference.example.org"]) == summary(room)


def test_private_xml_bookmarks_appear_in_pep() -> None:
    w = World()
    a = w.user("alice")
    desk = w.online(a + "/desk", notify=[BM, LEGACY])
    assert private_set(w, desk, LEGACY_XML)["type"] == "result"
    notes = events(desk, BM)
    assert sorted(i for n in notes for i in item_ids(n)) == [
        "quiet@conference.example.org", "room@conference.example.org"]
    [legacy] = events(desk, LEGACY)  # XEP-0411 §3: the storage:bookmarks node notifies
    assert item_ids(legacy) == ["current"]
    reply = w.iq(desk, items_query(BM))
    items = st.child(st.child(reply, "pubsub", PUBSUB), "items", PUBSUB)
    assert sorted(item_ids(items)) == ["quiet@conference.example.org",
                                       "room@conference.example.org"]
    # the node is private (XEP-0223) and configured as XEP-0402 asks: a client publishing
    # with those options meets the preconditions
    reply = w.iq(desk, publish(BM, f"<conference xmlns='{BM}' name='New'/>",
                               "new@conference.example.org",
                               field("pubsub#access_model", "whitelist")
                               + field("pubsub#persist_items", "true")
                               + field("pubsub#max_items", "max")
                               + field("pubsub#send_last_published_item", "never")))
    assert reply["type"] == "result"
    # ... and that publish shows in private XML, URLs kept
    storage = private_get(w, desk)
    jids = sorted(c["jid"] for c in st.children(storage, "conference", LEGACY))
    assert jids == ["new@conference.example.org", "quiet@conference.example.org",
                    "room@conference.example.org"]
    assert [u["url"] for u in st.children(storage, "url", LEGACY)] == ["https://example.org/"]
    # changing the private list again: only the changed and removed rooms are notified
    events(desk)
    private_set(w, desk, f"<storage xmlns='{LEGACY}'>"
                "<conference jid='room@conference.example.org' name='The Room' autojoin='1'>"
                "<nick>Al</nick><password>pw</password><x xmlns='urn:ext'>e</x></conference>"
                "<conference jid='quiet@conference.example.org' name='Renamed'/></storage>")
    notes = events(desk, BM)
    published = [i for n in notes for i in item_ids(n)]
    retracted = [r["id"] for n in notes for r in st.children(n, "retract")]
    assert published == ["quiet@conference.example.org"]
    assert retracted == ["new@conference.example.org"]


def test_pep_retract_and_legacy_pep_publish_reach_private_xml() -> None:
    w = World()
    a = w.user("alice")
    desk = w.online(a + "/desk")
    w.iq(desk, publish(BM, f"<conference xmlns='{BM}' autojoin='true'><nick>N</nick>"
                           "</conference>", "one@muc.example.org"))
    w.iq(desk, publish(BM, f"<conference xmlns='{BM}'/>", "two@muc.example.org"))
    assert sorted(c["jid"] for c in st.children(private_get(w, desk), "conference",
                                                LEGACY)) == ["one@muc.example.org",
                                                             "two@muc.example.org"]
    w.iq(desk, f"<iq type='set'><pubsub xmlns='{PUBSUB}'><retract node='{BM}' notify='1'>"
               "<item id='two@muc.example.org'/></retract></pubsub></iq>")
    [conf] = st.children(private_get(w, desk), "conference", LEGACY)
    assert conf["jid"] == "one@muc.example.org" and conf["autojoin"] == "true"
    assert st.child_text(conf, "nick", LEGACY) == "N"
    # a XEP-0048 1.1 client publishes the whole list to the legacy node
    w.iq(desk, publish(LEGACY, f"<storage xmlns='{LEGACY}'><conference "
                               "jid='three@muc.example.org'/></storage>", "current",
                       field("pubsub#access_model", "whitelist")))
    assert [c["jid"] for c in st.children(private_get(w, desk), "conference", LEGACY)] == [
        "three@muc.example.org"]
    reply = w.iq(desk, items_query(BM))
    assert item_ids(st.child(st.child(reply, "pubsub", PUBSUB), "items", PUBSUB)) == [
        "three@muc.example.org"]


def test_old_private_bookmarks_are_converted_on_first_use() -> None:
    w = World()
    a = w.user("alice")
    private = w.host.plugin("private")
    assert isinstance(private, Private)
    resolve(private.store(JID.parse(a), parse_fragment(LEGACY_XML)))
    desk = w.online(a + "/desk")
    reply = w.iq(desk, items_query(BM))
    assert sorted(item_ids(st.child(st.child(reply, "pubsub", PUBSUB), "items", PUBSUB))) == [
        "quiet@conference.example.org", "room@conference.example.org"]


def test_bookmarks_are_private_to_the_owner() -> None:
    w = World()
    a, b = w.user("alice"), w.user("bob")
    w.friends(a, b)
    desk = w.online(a + "/desk")
    bob = w.online(b + "/pc", notify=[BM, LEGACY])
    private_set(w, desk, LEGACY_XML)
    assert events(bob) == []
    assert error_of(w.iq(bob, items_query(BM), to=a)) == ("not-allowed", "closed-node")
    assert error_of(w.iq(bob, items_query(LEGACY), to=a)) == ("not-allowed", "closed-node")
