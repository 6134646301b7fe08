"""Persistent rooms survive a restart with their configuration, affiliations, subject and
history (from the archive); temporary rooms do not; occupants hear of the shutdown (§14.2,
status 332). Each backend gets its own server, restarted by the test."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest

from tests.conftest import start_server
from tests.integration.test_muc_support import (
    C,
    admin_set,
    close,
    codes,
    create,
    error_condition,
    iq,
    iq_error,
    join,
    new_room,
    next_message,
    user,
)
from tests.support.ca import CertAuthority
from tests.support.client import run
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration
INFO = "http://jabber.org/protocol/disco#info"
ITEMS = "http://jabber.org/protocol/disco#items"
OID = "{urn:xmpp:occupant-id:0}occupant-id"


@pytest.fixture(scope="module")
def srv(backend: str, ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[ServerProcess]:
    yield from start_server(tmp_path_factory.mktemp(f"muc-persist-{backend}"), backend, ca)


def test_persistent_room_survives_restart(srv: ServerProcess) -> None:
    room, temp, gone = new_room("keep"), new_room("temp"), new_room("gone")
    names = {p: srv.new_user(p)[0] for p in ("owner", "member", "banned", "guest")}
    state: dict[str, str] = {}

    async def before() -> None:
        owner = await user(srv, "", jid=names["owner"])
        member = await user(srv, "", jid=names["member"])
        await create(owner, room, "Owner", {
            "persistentroom": "1", "roomname": "Kept", "roomdesc": "Survives",
            "passwordprotectedroom": "1", "roomsecret": "pw", "muc#maxhistoryfetch": "3"})
        await create(owner, temp, "Owner")
        await create(owner, gone, "Owner", {"persistentroom": "1"})
        await iq(owner, "set", gone, "<query xmlns='http://jabber.org/protocol/muc#owner'>"
                                     "<destroy/></query>")  # §10.9: destroyed for good
        await admin_set(owner, room, f"<item affiliation='member' jid='{names['member']}' "
                                     f"nick='Mem'/><item affiliation='outcast' "
                                     f"jid='{names['banned']}'/>")
        owner.send_raw(f"<message to='{room}' type='groupchat'><subject>Kept topic</subject>"
                       "</message>")
        await join(member, room, "Mem", "<password>pw</password>")
        for n in range(5):
            owner.send_raw(f"<message to='{room}' type='groupchat'><body>old {n}</body>"
                           "</message>")
            m = await next_message(member, where=lambda m, n=n: m["body"] == f"old {n}")
            state["oid"] = m.xml.find(OID).get("id")  # type: ignore[union-attr]
        srv.restart()  # SIGTERM: the server tells the occupants first (§14.2)
        p = await member.next_presence(10, lambda p: p["type"] == "unavailable"
                                       and p["from"].bare == room)
        assert codes(p) == [110, 332]
        await close(owner, member)

    async def after() -> None:
        owner = await user(srv, "", jid=names["owner"])
        guest = await user(srv, "", jid=names["guest"])
        banned = await user(srv, "", jid=names["banned"])
        info = await iq(guest, "get", room, f"<query xmlns='{INFO}'/>")
        ident = info.find(f".//{{{INFO}}}identity")
        assert ident is not None and ident.get("name") == "Kept"
        feats = {f.get("var") for f in info.iter(f"{{{INFO}}}feature")}
        assert {"muc_persistent", "muc_passwordprotected"} <= feats
        desc = [f for f in info.iter("{jabber:x:data}field")
                if f.get("var") == "muc#roominfo_description"]
        assert desc and desc[0].findtext("{jabber:x:data}value") == "Survives"
        assert error_condition(await join(banned, room, "B", "<password>pw</password>")) == (
            "auth", "forbidden")
        assert error_condition(await join(guest, room, "Mem", "<password>pw</password>")) == (
            "cancel", "conflict")  # still reserved for the member
        assert error_condition(await join(guest, room, "\uff4dEM", "<password>pw</password>")
                               ) == ("cancel", "conflict")  # and so are its look-alikes
        # history from the archive (the last 3), then the stored subject
        guest.send_raw(f"<presence to='{room}/Guest'><x xmlns='http://jabber.org/protocol/muc'>"
                       "<password>pw</password></x></presence>")
        got: list[ET.Element] = []
        while True:
            m = await next_message(guest, where=lambda m: m["from"].bare == room)
            got.append(m.xml)
            if m.xml.find(C + "subject") is not None:
                break
        assert [m.findtext(C + "body") for m in got[:-1]] == ["old 2", "old 3", "old 4"]
        assert got[-1].findtext(C + "subject") == "Kept topic"
        assert got[0].find("{urn:xmpp:delay}delay") is not None
        assert got[0].find(OID).get("id") == state["oid"]  # type: ignore[union-attr]
        # the temporary room is gone, the persistent one is listed
        items = await iq(guest, "get", "conference.localhost", f"<query xmlns='{ITEMS}'/>")
        jids = {i.get("jid") for i in items.iter(f"{{{ITEMS}}}item")}
        assert room in jids and temp not in jids and gone not in jids
        assert await iq_error(guest, "get", gone, f"<query xmlns='{INFO}'/>") == (
            "cancel", "item-not-found")
        # the owner is still the owner; its occupant id did not change either
        pres = await join(owner, room, "Owner")
        assert pres.xml.find(".//{http://jabber.org/protocol/muc#user}item").get(  # type: ignore[union-attr]
            "affiliation") == "owner"
        await close(owner, guest, banned)

    run(before())
    run(after())
