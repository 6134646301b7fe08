"""Personal eventing (XEP-0163) with real clients: avatars between subscribed users,
+notify filtering, OMEMO-style open nodes, max_items=max, the last item on login, the
vCard and bookmarks conversions, and the errors of bad requests."""

from __future__ import annotations

import base64
import hashlib
import xml.etree.ElementTree as ET

import pytest
from slixmpp.exceptions import IqError
from slixmpp.stanza import Message
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from tests.integration.test_presence import befriend
from tests.support.barrier import barrier, queued
from tests.support.client import Client, connect, run
from tests.support.raw import RawStream, stanza_error
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration

PUBSUB = "http://jabber.org/protocol/pubsub"
EVENT = PUBSUB + "#event"
ERRORS = PUBSUB + "#errors"
DATA = "urn:xmpp:avatar:data"
META = "urn:xmpp:avatar:metadata"
NICK = "http://jabber.org/protocol/nick"
BM = "urn:xmpp:bookmarks:1"
READY = "urn:test:ready"
IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 16
SHA1 = hashlib.sha1(IMAGE).hexdigest()
B64 = base64.b64encode(IMAGE).decode()
PLUGINS = ("xep_0060", "xep_0115", "xep_0163")


async def pep_client(server: ServerProcess, jid: str, interests: tuple[str, ...] = (),
                     plugins: tuple[str, ...] = ()) -> Client:
    """Log in, advertise ``+notify`` for ``interests`` (XEP-0115 caps) and only then send
    initial presence, so the first presence already carries them."""
    c = await connect(server, jid, plugins=(*PLUGINS, *plugins), presence=False)
    # slixmpp's "message" event is for messages with a body; notifications have none
    c.register_handler(Callback("pep events", MatchXPath(
        f"{{jabber:client}}message/{{{EVENT}}}event"), c.messages.put_nowait))
    for ns in interests:
        c.plugin["xep_0030"].add_feature(f"{ns}+notify")
    await c.plugin["xep_0115"].update_caps(broadcast=False)
    c.send_presence()
    return c


def options(**fields: str) -> str:
    body = "".join(f"<field var='pubsub#{k}'><value>{v}</value></field>" for k, v in
                   fields.items())
    return (f"<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' "
            f"type='hidden'><value>{PUBSUB}#publish-options</value></field>{body}</x>"
            "</publish-options>")


async def iq(c: Client, type_: str, inner: str, to: str | None = None) -> ET.Element:
    stanza = c.make_iq(itype=type_, ito=to)
    stanza.xml.append(ET.fromstring(inner))
    return (await stanza.send()).xml


async def publish(c: Client, node: str, payload: str, item_id: str | None = None,
                  opts: str = "") -> ET.Element:
    attr = f" id='{item_id}'" if item_id else ""
    return await iq(c, "set", f"<pubsub xmlns='{PUBSUB}'><publish node='{node}'><item{attr}>"
                              f"{payload}</item></publish>{opts}</pubsub>")


async def items(c: Client, owner: str | None, node: str, extra: str = "", inner: str = ""
                ) -> list[ET.Element]:
    res = await iq(c, "get", f"<pubsub xmlns='{PUBSUB}'><items node='{node}'{extra}>{inner}"
                             "</items></pubsub>", to=owner)
    found = res.find(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}items")
    assert found is not None
    return found.findall(f"{{{PUBSUB}}}item")


def event_items(msg: Message, node: str) -> ET.Element | None:
    found = msg.xml.find(f"{{{EVENT}}}event/{{{EVENT}}}items")
    return found if found is not None and found.get("node") == node else None


async def notified(c: Client, node: str, timeout: float = 10.0) -> ET.Element:
    msg = await c.next_message(timeout, where=lambda m: event_items(m, node) is not None)
    found = event_items(msg, node)
    assert found is not None
    return found


async def nothing_for(c: Client, node: str) -> None:
    """No notification for ``node`` reached ``c``: the service sends them while it handles
    the publish, before answering it, so a barrier on ``c`` after that answer suffices."""
    await barrier(c)
    assert not [m for m in queued(c.messages) if event_items(m, node) is not None]


async def ready(owner: Client, *subscribers: Client) -> None:
    """Publish to READY until every subscriber got it: the server has then processed their
    presence and capabilities (it asks clients for them asynchronously)."""
    for sub in subscribers:
        for attempt in range(50):
            await publish(owner, READY, f"<r xmlns='urn:test'>{attempt}</r>", "r")
            try:
                await notified(sub, READY, 0.2)
                break
            except TimeoutError:
                continue
        else:
            raise AssertionError("subscriber never notified")


def test_avatar_reaches_subscribed_contacts_only(server: ServerProcess) -> None:
    (a, _), (b, _), (c, _) = (server.new_user("a"), server.new_user("b"),
                              server.new_user("c"))

    async def body() -> None:
        ca = await pep_client(server, a + "/desk", (META, READY))
        cb = await pep_client(server, b + "/desk", (META, READY))
        cc = await pep_client(server, c + "/desk", (META, READY))
        await befriend(ca, cb)
        await ready(ca, ca, cb)
        # the account is a PEP service (XEP-0163 §6.1) with publish-options (XEP-0223)
        info = await ca.plugin["xep_0030"].get_info(jid=a)
        assert ("pubsub", "pep", None, None) in info["disco_info"]["identities"]
        assert f"{PUBSUB}#publish-options" in info["disco_info"]["features"]
        await publish(ca, DATA, f"<data xmlns='{DATA}'>{B64}</data>", SHA1)
        await publish(ca, META, f"<metadata xmlns='{META}'><info id='{SHA1}' "
                                f"bytes='{len(IMAGE)}' type='image/png'/></metadata>", SHA1)
        for who in (ca, cb):  # the owner's own resource and the subscribed contact
            got = await notified(who, META)
            [item] = got.findall(f"{{{EVENT}}}item")
            assert item.get("id") == SHA1
            assert item.find(f"{{{META}}}metadata/{{{META}}}info").get("type") == "image/png"
        await nothing_for(cc, META)  # no presence subscription
        # the contact fetches the image; the stranger may not (access model presence)
        [data] = await items(cb, a, DATA, inner=f"<item id='{SHA1}'/>")
        assert base64.b64decode(data.find(f"{{{DATA}}}data").text or "") == IMAGE
        with pytest.raises(IqError) as exc:
            await items(cc, a, DATA)
        assert exc.value.condition == "not-authorized"
        assert exc.value.iq.xml.find(
            f"{{jabber:client}}error/{{{ERRORS}}}presence-subscription-required") is not None
        for x in (ca, cb, cc):
            await x.close()

    run(body())


def test_notify_filtering(server: ServerProcess) -> None:
    (a, _), (b, _) = server.new_user("a"), server.new_user("b")

    async def body() -> None:
        ca = await pep_client(server, a + "/desk", (READY,))
        cb = await pep_client(server, b + "/desk", (READY, NICK))  # no +notify for avatars
        await befriend(ca, cb)
        await ready(ca, cb)
        await publish(ca, META, f"<metadata xmlns='{META}'/>", "none")
        await publish(ca, NICK, f"<nick xmlns='{NICK}'>Alice</nick>", "current")
        got = await notified(cb, NICK)
        assert got.find(f"{{{EVENT}}}item/{{{NICK}}}nick").text == "Alice"
        await nothing_for(cb, META)
        await ca.close()
        await cb.close()

    run(body())


def test_omemo_nodes_open_to_strangers_with_max_items(server: ServerProcess) -> None:
    (a, _), (c, _) = server.new_user("a"), server.new_user("c")
    devices, bundles = "urn:xmpp:omemo:2:devices", "urn:xmpp:omemo:2:bundles"

    async def body() -> None:
        ca = await pep_client(server, a + "/desk")
        cc = await pep_client(server, c + "/desk")
        opts = options(access_model="open", max_items="max")
        await publish(ca, devices, "<devices xmlns='urn:xmpp:omemo:2'><device id='1'/>"
                                   "<device id='2'/><device id='3'/></devices>", "current",
                      options(access_model="open"))
        for device in ("1", "2", "3"):
            await publish(ca, bundles, f"<bundle xmlns='urn:xmpp:omemo:2'><spk id='{device}'>"
                                       "AAAA</spk></bundle>", device, opts)
        # a non-contact reads the device list and every bundle (XEP-0384 needs both open)
        [devlist] = await items(cc, a, devices)
        assert len(devlist.findall("{urn:xmpp:omemo:2}devices/{urn:xmpp:omemo:2}device")) == 3
        got = await items(cc, a, bundles)
        assert [i.get("id") for i in got] == ["1", "2", "3"]  # max_items=max kept them all
        [one] = await items(cc, a, bundles, " max_items='1'")
        assert one.get("id") == "3"
        # the node now holds open/max; the precondition is met on the next publish ...
        await publish(ca, bundles, "<bundle xmlns='urn:xmpp:omemo:2'/>", "4", opts)
        # ... and a conflicting one is refused (XEP-0060 §7.1.5)
        with pytest.raises(IqError) as exc:
            await publish(ca, bundles, "<bundle xmlns='urn:xmpp:omemo:2'/>", "5",
                          options(access_model="presence"))
        assert exc.value.condition == "conflict"
        assert exc.value.iq.xml.find(
            f"{{jabber:client}}error/{{{ERRORS}}}precondition-not-met") is not None
        await ca.close()
        await cc.close()

    run(body())


def test_last_item_when_a_contact_comes_online(server: ServerProcess) -> None:
    (a, _), (b, _) = server.new_user("a"), server.new_user("b")

    async def body() -> None:
        ca = await pep_client(server, a + "/desk")
        cb = await pep_client(server, b + "/desk")
        await befriend(ca, cb)
        await cb.close()
        await publish(ca, NICK, f"<nick xmlns='{NICK}'>Alice</nick>", "current")
        cb = await pep_client(server, b + "/phone", (NICK,))
        msg = await cb.next_message(where=lambda m: event_items(m, NICK) is not None)
        assert str(msg["from"]) == a and msg["type"] == "headline"
        assert event_items(msg, NICK).find(f"{{{EVENT}}}item").get("id") == "current"
        assert msg.xml.find("{urn:xmpp:delay}delay") is not None  # XEP-0163 §4.3.4
        await ca.close()
        await cb.close()

    run(body())


VCARD = "vcard-temp"


def test_vcard_and_avatar_conversion(server: ServerProcess) -> None:
    (a, _), (b, _) = server.new_user("a"), server.new_user("b")

    async def body() -> None:
        ca = await pep_client(server, a + "/desk", (READY,))
        cb = await pep_client(server, b + "/desk", (READY, META))
        await befriend(ca, cb)
        await ready(ca, cb)
        info = await ca.plugin["xep_0030"].get_info(jid=a)
        assert "urn:xmpp:pep-vcard-conversion:0" in info["disco_info"]["features"]
        # XEP-0398 §3.2: a vCard photo becomes the PEP avatar, subscribers are notified
        await iq(ca, "set", f"<vCard xmlns='{VCARD}'><FN>Alice</FN><PHOTO><TYPE>image/png"
                            f"</TYPE><BINVAL>{B64}</BINVAL></PHOTO></vCard>")
        got = await notified(cb, META)
        assert got.find(f"{{{EVENT}}}item").get("id") == SHA1
        [data] = await items(cb, a, DATA)
        assert base64.b64decode(data.find(f"{{{DATA}}}data").text or "") == IMAGE
        # §3.1: a PEP avatar becomes the vCard photo (the rest of the vCard stays)
        other = IMAGE[::-1] + b"\x89PNG"
        other_sha1 = hashlib.sha1(other).hexdigest()
        await publish(ca, DATA, f"<data xmlns='{DATA}'>{base64.b64encode(other).decode()}"
                                "</data>", other_sha1)
        await publish(ca, META, f"<metadata xmlns='{META}'><info id='{other_sha1}' "
                                f"bytes='{len(other)}' type='image/webp'/></metadata>",
                      other_sha1)
        card = (await iq(cb, "get", f"<vCard xmlns='{VCARD}'/>", to=a)).find(
            f"{{{VCARD}}}vCard")
        assert card.find(f"{{{VCARD}}}FN").text == "Alice"
        assert card.find(f"{{{VCARD}}}PHOTO/{{{VCARD}}}TYPE").text == "image/webp"
        binval = card.find(f"{{{VCARD}}}PHOTO/{{{VCARD}}}BINVAL").text or ""
        assert base64.b64decode(binval) == other
        await ca.close()
        await cb.close()

    run(body())


PRIVATE = "jabber:iq:private"


def test_bookmarks_between_private_xml_and_pep(server: ServerProcess) -> None:
    a, _ = server.new_user("bm")

    async def body() -> None:
        old = await pep_client(server, a + "/old")  # a XEP-0048 client: private XML only
        new = await pep_client(server, a + "/new", (BM,))  # a XEP-0402 client
        info = await new.plugin["xep_0030"].get_info(jid=a)
        features = info["disco_info"]["features"]
        assert f"{BM}#compat" in features and "urn:xmpp:bookmarks-conversion:0" in features
        await iq(old, "set", f"<query xmlns='{PRIVATE}'><storage xmlns='storage:bookmarks'>"
                             "<conference jid='room@conference.example.org' name='Room' "
                             "autojoin='true'><nick>Al</nick></conference></storage></query>")
        got = await notified(new, BM)  # the new client hears about it
        assert got.find(f"{{{EVENT}}}item").get("id") == "room@conference.example.org"
        [item] = await items(new, None, BM)
        conf = item.find(f"{{{BM}}}conference")
        assert conf.get("name") == "Room" and conf.get("autojoin") == "true"
        assert conf.find(f"{{{BM}}}nick").text == "Al"
        # and the other way round
        await publish(new, BM, f"<conference xmlns='{BM}' name='Other'/>",
                      "other@conference.example.org",
                      options(persist_items="true", max_items="max",
                              send_last_published_item="never", access_model="whitelist"))
        res = await iq(old, "get", f"<query xmlns='{PRIVATE}'><storage "
                                   "xmlns='storage:bookmarks'/></query>")
        confs = res.findall(f"{{{PRIVATE}}}query/{{storage:bookmarks}}storage/"
                            "{storage:bookmarks}conference")
        assert sorted(c.get("jid") for c in confs) == ["other@conference.example.org",
                                                       "room@conference.example.org"]
        await old.close()
        await new.close()

    run(body())


def test_bad_requests(server: ServerProcess) -> None:
    (a, pa), (b, _) = server.new_user("a"), server.new_user("b")

    async def body() -> None:
        raw = await RawStream.open(server.c2s_port)
        await raw.login(str(server.ca.ca_file), a.split("@")[0], pa, resource="r")

        async def ask(type_: str, inner: str, to: str | None = None) -> ET.Element:
            return await raw.iq(f"<pubsub xmlns='{PUBSUB}'>{inner}</pubsub>", type_, to,
                                id_=f"x{id(inner)}")

        def app(el: ET.Element) -> str | None:
            err = el.find("{jabber:client}error")
            found = [c.tag.split("}")[1] for c in err if c.tag.startswith(f"{{{ERRORS}}}")]
            return found[0] if found else None

        # someone else's node: forbidden (XEP-0060 §7.1.3.1)
        res = await ask("set", f"<publish node='{NICK}'><item><nick xmlns='{NICK}'>x</nick>"
                               "</item></publish>", to=b)
        assert stanza_error(res) == ("auth", "forbidden")
        # publish-options that conflict with the node: conflict + precondition-not-met
        res = await ask("set", f"<publish node='{NICK}'><item id='current'><nick xmlns='{NICK}'>"
                               "x</nick></item></publish>")
        assert res.get("type") == "result"
        res = await ask("set", f"<publish node='{NICK}'><item id='current'><nick xmlns='{NICK}'>"
                               f"x</nick></item></publish>{options(access_model='open')}")
        assert stanza_error(res) == ("cancel", "conflict")
        assert app(res) == "precondition-not-met"
        # malformed: the right bad-request conditions
        res = await ask("set", "<publish node='n'><item/></publish>")
        assert stanza_error(res) == ("modify", "bad-request") and app(res) == "invalid-payload"
        res = await ask("set", "<publish node='n'/>")
        assert stanza_error(res) == ("modify", "bad-request") and app(res) == "item-required"
        res = await ask("get", "<items/>")
        assert stanza_error(res) == ("modify", "bad-request") and app(res) == "nodeid-required"
        res = await ask("set", "<retract node='n'/>")
        assert stanza_error(res) == ("modify", "bad-request") and app(res) == "item-required"
        res = await ask("set", "<publish node='n'><item><a xmlns='x'/></item></publish>"
                               "<publish-options><x xmlns='jabber:x:data' type='form'/>"
                               "</publish-options>")
        assert stanza_error(res) == ("modify", "bad-request")
        res = await ask("get", "<items node='never-created'/>")
        assert stanza_error(res) == ("cancel", "item-not-found")
        res = await ask("set", f"<subscribe node='{NICK}' jid='{a}'/>")
        assert stanza_error(res) == ("cancel", "feature-not-implemented")
        assert app(res) == "unsupported"
        raw.close()

    run(body())
