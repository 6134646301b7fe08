"""XEP-0424 Message Retraction in one-to-one chats, over real sockets: the retracted message
becomes a tombstone in the archives of both parties, the retraction is delivered and archived,
and a retraction of someone else's message changes no archive."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from slixmpp import JID

from tests.integration.test_muc_mam import query
from tests.integration.test_muc_support import C, iq, messages, next_message
from tests.support.client import Client, connect, run
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration
RETRACT = "urn:xmpp:message-retract:1"
DISCO = "http://jabber.org/protocol/disco#info"


async def archive(c: Client) -> list[ET.Element]:
    """The user's whole archive, oldest first."""
    page, fin = await query(c, c.boundjid.bare)
    assert fin.get("complete") == "true"
    return page


def by_id(entries: list[ET.Element], msg_id: str) -> list[ET.Element]:
    return [e for e in entries if e.get("id") == msg_id]


def tombstone(entry: ET.Element) -> ET.Element | None:
    return entry.find(f"{{{RETRACT}}}retracted")


async def send(sender: Client, to: Client, msg_id: str, inner: str) -> None:
    """A chat message, once delivered (archiving is committed before delivery, for both
    parties)."""
    sender.send_raw(f"<message to='{to.boundjid.bare}' type='chat' id='{msg_id}'>{inner}"
                    "</message>")
    await next_message(to, where=lambda m: m["id"] == msg_id)


def retract(msg_id: str) -> str:
    return f"<retract id='{msg_id}' xmlns='{RETRACT}'/>"


async def users(server: ServerProcess, prefix: str) -> tuple[Client, Client]:
    a = await connect(server, f"{server.new_user(prefix + 'a')[0]}/r", plugins=("xep_0424",))
    b = await connect(server, f"{server.new_user(prefix + 'b')[0]}/r", plugins=("xep_0424",))
    messages(a)  # every message, not only those with a body
    messages(b)
    return a, b


def test_sender_retracts_both_archives_keep_tombstones(server: ServerProcess) -> None:
    async def body() -> None:
        a, b = await users(server, "retr")
        info = await iq(a, "get", a.boundjid.bare, f"<query xmlns='{DISCO}'/>")
        feats = {f.get("var") for f in info.iter(f"{{{DISCO}}}feature")}
        assert {RETRACT, RETRACT + "#tombstone"} <= feats  # XEP-0424 §2, §4 (Example 6)
        await send(a, b, "m1", "<body>meant for someone else</body>")
        await send(a, b, "m2", "<body>kept</body>")
        await send(b, a, "m1", "<body>b's own m1</body>")  # the same id, from the other party
        # slixmpp's XEP-0424 call: fallback body and <store/> hint (§3 Example 3)
        sent = a["xep_0424"].send_retraction(JID(b.boundjid.bare), id="m1")
        got = await next_message(b, where=lambda m: m["id"] == sent["id"])
        assert got["retract"]["id"] == "m1"
        for c in (a, b):
            entries = await archive(c)
            ours, theirs = by_id(entries, "m1")
            assert ours.get("from", "").startswith(a.boundjid.bare + "/")
            assert ours.find(C + "body") is None
            assert "meant for" not in ET.tostring(ours).decode()
            tomb = tombstone(ours)
            assert tomb is not None and tomb.get("id") == sent["id"]  # §4
            assert tomb.get("stamp", "").endswith("Z")
            assert theirs.findtext(C + "body") == "b's own m1" and tombstone(theirs) is None
            assert by_id(entries, "m2")[0].findtext(C + "body") == "kept"
            last = entries[-1]  # the retraction itself is archived (§5)
            assert last.get("id") == sent["id"] and last.find(f"{{{RETRACT}}}retract") is not None
        # a retraction without a fallback body is archived too, and works
        await send(a, b, "m3", "<body>third</body>")
        await send(a, b, "r3", retract("m3"))
        for c in (a, b):
            entries = await archive(c)
            tomb = tombstone(by_id(entries, "m3")[0])
            assert tomb is not None and tomb.get("id") == "r3"
            assert by_id(entries, "r3")  # archived without a body (§5: MUST store)
        await a.close()
        await b.close()

    run(body())


def test_retracting_what_is_not_yours_changes_nothing(server: ServerProcess) -> None:
    """§5: "MUST only be processed when both the original message and the retraction request
    are received from the same bare-JID"; a retraction without an id, or of an unknown id,
    is delivered and archived, and no other entry changes."""
    async def body() -> None:
        a, b = await users(server, "notyours")
        await send(a, b, "m1", "<body>a's words</body>")
        await send(a, b, "m2", "<body>more of a's words</body>")
        before = {c.boundjid.bare: [ET.tostring(e) for e in await archive(c)] for c in (a, b)}
        await send(b, a, "r1", retract("m1") + "<body>fallback</body>")  # b retracts a's
        await send(b, a, "r2", retract("nope"))
        await send(a, b, "r3", f"<retract xmlns='{RETRACT}'/><body>no id</body>")
        await send(a, b, "r4", retract("m2") + "<no-store xmlns='urn:xmpp:hints'/>")
        for c in (a, b):
            entries = await archive(c)
            kept = [ET.tostring(e) for e in entries[:len(before[c.boundjid.bare])]]
            assert kept[0] == before[c.boundjid.bare][0]  # m1 untouched
            assert [e.get("id") for e in entries[2:]] == ["r1", "r2", "r3"]  # r4: no-store
            # ... but a's own retraction (not archived, as asked) still took m2 away
            assert tombstone(by_id(entries, "m2")[0]) is not None
        # another resource of the same account may retract (same bare JID)
        a2 = await connect(server, f"{a.boundjid.bare}/other")
        messages(a2)
        await send(a2, b, "r5", retract("m1"))
        for c in (a, b):
            tomb = tombstone(by_id(await archive(c), "m1")[0])
            assert tomb is not None and tomb.get("id") == "r5"
        for c in (a, b, a2):
            await c.close()

    run(body())
