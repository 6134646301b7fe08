"""vCards (XEP-0054) and vCard avatars in presence (XEP-0153) with real clients."""

from __future__ import annotations

import base64
import hashlib
import xml.etree.ElementTree as ET

import pytest
from slixmpp.exceptions import IqError

from tests.integration.test_presence import befriend
from tests.support.barrier import barrier, queued
from tests.support.client import Client, connect, run
from tests.support.raw import RawStream, stanza_error
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration

V = "{vcard-temp}"
IMAGE = bytes(range(256)) * 8  # stands in for a PNG; the server only hashes it
IMAGE_SHA1 = hashlib.sha1(IMAGE).hexdigest()


def vcard_xml(fn: str, nick: str = "", photo: bytes = b"", extra: str = "") -> str:
    p = ""
    if photo:
        # line-wrapped base64, as XEP-0153 §4.6 allows: whitespace is ignored
        b64 = base64.encodebytes(photo).decode()
        p = f"<PHOTO><TYPE>image/png</TYPE><BINVAL>{b64}</BINVAL></PHOTO>"
    n = f"<NICKNAME>{nick}</NICKNAME>" if nick else ""
    return f"<vCard xmlns='vcard-temp'><FN>{fn}</FN>{n}{p}{extra}</vCard>"


async def vcard_iq(c: Client, type_: str, body: str, to: str | None = None) -> ET.Element:
    iq = c.make_iq(itype=type_, ito=to)
    iq.xml.append(ET.fromstring(body))
    res = await iq.send()
    return res.xml


def test_own_vcard_set_get_and_others_view(server: ServerProcess) -> None:
    (a, _), (b, _) = server.new_user("a"), server.new_user("b")

    async def body() -> None:
        ca = await connect(server, a + "/desk", plugins=("xep_0054",))
        cb = await connect(server, b + "/desk", plugins=("xep_0054",))
        # §3.1: nothing stored yet -> an empty vCard for oneself ...
        got = await ca.plugin["xep_0054"].get_vcard(a)
        assert got.xml.find(V + "vCard") is not None
        assert list(got.xml.find(V + "vCard")) == []
        # ... and item-not-found for someone else (§3.3)
        with pytest.raises(IqError) as exc:
            await cb.plugin["xep_0054"].get_vcard(a)
        assert exc.value.condition == "item-not-found"
        # publish with the client library (no 'to', §3.2)
        card = ca.plugin["xep_0054"].make_vcard()
        card["FN"] = "Alice Example"
        card["NICKNAME"] = "ali"
        card["N"]["GIVEN"] = "Alice"
        card["N"]["FAMILY"] = "Example"
        card["PHOTO"]["TYPE"] = "image/png"
        card["PHOTO"]["BINVAL"] = IMAGE
        await ca.plugin["xep_0054"].publish_vcard(card)
        for viewer in (ca, cb):
            got = await viewer.plugin["xep_0054"].get_vcard(a)
            v = got["vcard_temp"]
            assert v["FN"] == "Alice Example"
            assert got.xml.find(f"{V}vCard/{V}NICKNAME").text == "ali"
            assert v["N"]["FAMILY"] == "Example"
            assert v["PHOTO"]["BINVAL"] == IMAGE
            assert str(got["from"]) == a  # answered on the user's behalf (§3.3)
        # a set replaces the whole vCard (§3.2), also when addressed to one's bare JID
        await vcard_iq(ca, "set", vcard_xml("Alice Again"), to=a)
        got = await cb.plugin["xep_0054"].get_vcard(a)
        assert got["vcard_temp"]["FN"] == "Alice Again"
        assert got.xml.find(f"{V}vCard/{V}NICKNAME") is None
        # nobody else may change it (§3.2 forbidden)
        with pytest.raises(IqError) as exc:
            await vcard_iq(cb, "set", vcard_xml("Mallory"), to=a)
        assert exc.value.condition == "forbidden"
        got = await ca.plugin["xep_0054"].get_vcard(a)
        assert got["vcard_temp"]["FN"] == "Alice Again"
        # a user that does not exist: the server answers for the address (§3.3)
        with pytest.raises(IqError) as exc:
            await ca.plugin["xep_0054"].get_vcard("nobody-here@localhost")
        assert exc.value.condition == "service-unavailable"
        await ca.close()
        await cb.close()

    run(body())


def test_vcard_over_the_size_limit_is_not_acceptable(server: ServerProcess) -> None:
    jid, pw = server.new_user("big")

    async def body() -> None:
        raw = await RawStream.open(server.c2s_port)
        await raw.login(str(server.ca.ca_file), jid.split("@")[0], pw)
        small = vcard_xml("Small", extra="<DESC>" + "x" * 1000 + "</DESC>")
        res = await raw.iq(small, type_="set", id_="v1")
        assert res.get("type") == "result"
        big = vcard_xml("Big", extra="<DESC>" + "x" * 140000 + "</DESC>")  # > 131072 bytes
        res = await raw.iq(big, type_="set", id_="v2")
        assert stanza_error(res) == ("modify", "not-acceptable")
        res = await raw.iq("<vCard xmlns='vcard-temp'/>", id_="v3")
        assert res.find(f"{V}vCard/{V}FN").text == "Small"  # the old one is kept
        # PHOTO data that is not base64 cannot be hashed for XEP-0153
        res = await raw.iq(vcard_xml("x", extra="<PHOTO><BINVAL>**not base64**</BINVAL>"
                                     "</PHOTO>"), type_="set", id_="v4")
        assert stanza_error(res) == ("modify", "bad-request")
        raw.close()

    run(body())


def photo_of(p: object) -> str | None:
    x = p.xml.find("{vcard-temp:x:update}x")  # type: ignore[attr-defined]
    if x is None:
        return None
    photo = x.find("{vcard-temp:x:update}photo")
    return None if photo is None else (photo.text or "")


def test_presence_carries_the_avatar_hash(server: ServerProcess) -> None:
    (a, _), (b, _) = server.new_user("a"), server.new_user("b")

    async def body() -> None:
        ca = await connect(server, a + "/one")
        cb = await connect(server, b + "/one")
        await befriend(ca, cb)
        # no photo stored: nothing is added (an empty <photo/> would mean "no avatar")
        ca.send_presence(pstatus="no avatar yet")
        p = await cb.next_presence(where=lambda p: p["status"] == "no avatar yet")
        assert photo_of(p) is None
        await vcard_iq(ca, "set", vcard_xml("Alice", photo=IMAGE))
        # the server does not broadcast by itself after the upload (XEP-0153 §4.2: the
        # uploading client announces it) ...
        await barrier(ca, cb)
        assert not [p for p in queued(cb.presences) if p["from"].bare == a]
        # ... but presence without the update element now gets the stored hash, for
        # contacts and for the user's other resources (XEP-0153 §4.3)
        ca2 = await connect(server, a + "/two", presence=False)
        ca.send_presence(pstatus="with avatar")
        p = await cb.next_presence(where=lambda p: p["status"] == "with avatar")
        assert photo_of(p) == IMAGE_SHA1
        ca2.send_presence(pstatus="second resource")
        p = await cb.next_presence(where=lambda p: p["status"] == "second resource")
        assert photo_of(p) == IMAGE_SHA1
        p = await ca.next_presence(where=lambda p: p["status"] == "second resource")
        assert photo_of(p) == IMAGE_SHA1
        # a client doing XEP-0153 itself is left alone
        own = ca.make_presence(pstatus="my own")
        own.xml.append(ET.fromstring("<x xmlns='vcard-temp:x:update'><photo/></x>"))
        own.send()
        p = await cb.next_presence(where=lambda p: p["status"] == "my own")
        assert photo_of(p) == ""
        # probes are answered with the stamped presence, updated when the photo changes
        await vcard_iq(ca2, "set", vcard_xml("Alice", photo=IMAGE[::-1]))
        cb2 = await connect(server, b + "/two")
        p = await cb2.next_presence(where=lambda p: p["from"] == ca2.boundjid)
        assert photo_of(p) == hashlib.sha1(IMAGE[::-1]).hexdigest()
        for c in (ca, ca2, cb, cb2):
            await c.close()

    run(body())
