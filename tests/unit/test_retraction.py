"""XEP-0424 tombstones (plugins/mam/retraction.py) and the room history forgetting a
retracted message (plugins/muc/history.py)."""

from __future__ import annotations

from plugins.mam import retraction as rt
from plugins.muc.history import History
from xmppd import stanza as st
from xmppd.xmlparser import parse_fragment

ROOM = "coven@chat.example"
ORIGINAL = (
    "<message xmlns='jabber:client' from='coven@chat.example/hag' type='groupchat' id='m1' "
    "xml:lang='en'><body>secret</body><html xmlns='http://jabber.org/protocol/xhtml-im'>"
    "<body xmlns='http://www.w3.org/1999/xhtml'>secret</body></html>"
    "<reference xmlns='urn:xmpp:reference:0' uri='xmpp:x' type='mention'/>"
    "<stanza-id xmlns='urn:xmpp:sid:0' id='s1' by='coven@chat.example'/>"
    "<origin-id xmlns='urn:xmpp:sid:0' id='o1'/>"
    "<occupant-id xmlns='urn:xmpp:occupant-id:0' id='occ'/>"
    "<x xmlns='http://jabber.org/protocol/muc#user'><item jid='hag@heath/r'/></x></message>")


def test_tombstone_keeps_envelope_and_ids_only() -> None:
    reason = st.make("reason", rt.NS)
    reason.addContent("spam")
    tomb = rt.tombstone(parse_fragment(ORIGINAL), "r1", 1_600_000_000_000_000, [reason])
    text = st.serialize(tomb)
    assert "secret" not in text and "mention" not in text
    assert tomb.attributes == parse_fragment(ORIGINAL).attributes
    kept = [(c.uri, c.name) for c in tomb.children if isinstance(c, st.Element)]
    assert kept == [("urn:xmpp:sid:0", "stanza-id"), ("urn:xmpp:sid:0", "origin-id"),
                    ("urn:xmpp:occupant-id:0", "occupant-id"),
                    ("http://jabber.org/protocol/muc#user", "x"), (rt.NS, "retracted")]
    again = parse_fragment(text)  # what the archive stores reads back the same
    retracted = st.child(again, "retracted", rt.NS)
    assert retracted is not None and rt.is_tombstone(again)
    assert retracted.attributes == {"id": "r1", "stamp": "2020-09-13T12:26:40Z"}
    assert st.child_text(retracted, "reason", rt.NS) == "spam"


def test_retraction_target() -> None:
    def msg(inner: str) -> st.Element:
        return parse_fragment(f"<message xmlns='jabber:client'>{inner}</message>")

    assert rt.target_id(msg(f"<retract xmlns='{rt.NS}' id='x'/>")) == "x"
    assert rt.target_id(msg(f"<retract xmlns='{rt.NS}'/>")) is None
    assert rt.target_id(msg("<retract xmlns='urn:xmpp:message-retract:0' id='x'/>")) is None
    assert rt.target_id(msg("<body>hi</body>")) is None


def test_history_drops_a_retracted_message() -> None:
    h = History(10)
    for n in range(3):
        m = parse_fragment(f"<message xmlns='jabber:client' from='{ROOM}/w' type='groupchat'>"
                           f"<body>{n}</body><stanza-id xmlns='urn:xmpp:sid:0' id='s{n}' "
                           f"by='{ROOM}'/><stanza-id xmlns='urn:xmpp:sid:0' id='forged' "
                           "by='elsewhere'/></message>")
        h.add(m, ROOM, n, "w@heath")
    found = h.find("s1")
    assert found is not None and found.author == "w@heath"
    assert h.find("forged") is None  # only the room's own stanza id names an entry
    assert h.drop("s1") and not h.drop("s1")
    assert [e.sid for e in h.entries] == ["s0", "s2"]
