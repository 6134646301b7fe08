"""The cross-server scenario every interop test runs: a user of ours and a user of the peer
become mutual contacts (RFC 6121 §3), see each other's presence, exchange 20 messages each
way in order, and a presence change travels across."""

from __future__ import annotations

from tests.support.client import Client, pushed


async def befriend_and_chat(ours: Client, our_jid: str, theirs: Client, their_jid: str) -> None:
    await ours.get_roster()
    await theirs.get_roster()
    # ours -> theirs: subscription request, approval, presence
    ours.send_presence(pto=their_jid, ptype="subscribe")
    await theirs.next_presence(timeout=30, where=lambda p: p["type"] == "subscribe"
                               and p["from"].bare == our_jid)
    theirs.send_presence(pto=our_jid, ptype="subscribed")
    await pushed(ours, their_jid, "to")
    await ours.next_presence(timeout=20, where=lambda p: p["from"].bare == their_jid
                             and p["type"] == "available")
    # theirs -> ours: the reverse
    theirs.send_presence(pto=our_jid, ptype="subscribe")
    await ours.next_presence(timeout=20, where=lambda p: p["type"] == "subscribe"
                             and p["from"].bare == their_jid)
    ours.send_presence(pto=their_jid, ptype="subscribed")
    await pushed(ours, their_jid, "both")
    await pushed(theirs, our_jid, "both")
    await theirs.next_presence(timeout=20, where=lambda p: p["from"].bare == our_jid
                               and p["type"] == "available")
    # messages both ways, in order
    for i in range(20):
        ours.send_message(mto=their_jid, mbody=f"o{i}", mtype="chat")
        theirs.send_message(mto=our_jid, mbody=f"t{i}", mtype="chat")
    got_theirs = [(await theirs.next_message(timeout=20))["body"] for _ in range(20)]
    got_ours = [(await ours.next_message(timeout=20))["body"] for _ in range(20)]
    assert got_theirs == [f"o{i}" for i in range(20)]
    assert got_ours == [f"t{i}" for i in range(20)]
    theirs.send_presence(pshow="dnd")
    await ours.next_presence(timeout=20, where=lambda p: p["from"].bare == their_jid
                             and p["show"] == "dnd")
