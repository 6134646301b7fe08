"""XEP-0198 resumption timeout as stream transcripts on a task.Clock (in process, no
waiting): a dropped stream hibernates for ``resume_timeout`` seconds; resumed in time, the
unacknowledged stanzas come again; past it, resumption fails with <item-not-found/> and
they wait in offline storage (XEP-0198 §5, XEP-0160), delivered once. And an XEP-0199
keepalive ping left unanswered across a resumption."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest

from tests.support.streams import C, StreamClient, StreamServer, bind, stream_error

SM = "urn:xmpp:sm:3"
PLUGINS = ["disco", "ping", "roster", "presence", "offline", "mam", "smacks"]


@pytest.fixture
def srv() -> Iterator[StreamServer]:
    s = StreamServer(PLUGINS, {"smacks": {"resume_timeout": 3.0, "ack_delay": 0.2}})
    yield s
    s.close()


def chats(elements: list[ET.Element]) -> list[ET.Element]:
    return [e for e in elements if e.tag == C + "message" and e.findtext(C + "body")]


def bodies(elements: list[ET.Element]) -> list[str]:
    return [e.findtext(C + "body") or "" for e in chats(elements)]


def send_chats(alice: StreamClient, to: str, numbers: range) -> None:
    for i in numbers:
        alice.send(f"<message to='{to}' type='chat' id='m{i}'><body>m{i}</body></message>")


def hibernating(srv: StreamServer) -> tuple[StreamClient, str]:
    """alice sent bob/r m0..m4; bob acknowledged two and dropped; alice sent m5..m9."""
    alice, bob = srv.login("alice"), srv.login("bob")
    bob.send(f"<enable xmlns='{SM}' resume='true'/>")
    [enabled] = bob.read()
    assert enabled.tag == f"{{{SM}}}enabled" and enabled.get("resume") == "true"
    send_chats(alice, "bob@localhost/r", range(5))
    assert bodies(bob.read()) == [f"m{i}" for i in range(5)]
    bob.send(f"<a xmlns='{SM}' h='2'/>")
    bob.drop()
    send_chats(alice, "bob@localhost/r", range(5, 10))
    assert not alice.read()  # taken by the hibernating session, no error
    return alice, enabled.get("id", "")


def test_resumed_in_time_gets_the_unacknowledged_again(srv: StreamServer) -> None:
    _alice, previd = hibernating(srv)
    srv.clock.advance(2.9)
    new = srv.authenticated("bob")
    new.send(f"<resume xmlns='{SM}' previd='{previd}' h='2'/>")
    out = new.read()
    assert out[0].tag == f"{{{SM}}}resumed" and out[0].get("h") == "0"  # none since <enable/>
    assert bodies(out) == [f"m{i}" for i in range(2, 10)]
    srv.clock.advance(10)  # the timeout that was pending is gone with the hibernation
    assert not chats(new.read()) and not new.closed_by_server


def test_no_resume_in_time_means_offline_delivery_once(srv: StreamServer) -> None:
    _alice, previd = hibernating(srv)
    srv.clock.advance(3.1)
    late = srv.authenticated("bob")
    late.send(f"<resume xmlns='{SM}' previd='{previd}' h='2'/>")
    [failed] = late.read()
    assert failed.tag == f"{{{SM}}}failed"
    assert failed.find("{urn:ietf:params:xml:ns:xmpp-stanzas}item-not-found") is not None
    late.feed(bind("again"))
    late.read()
    late.send("<presence/>")
    got = chats(late.read())
    assert bodies(got) == [f"m{i}" for i in range(2, 10)]
    for m in got:  # from offline storage
        delay = m.find("{urn:xmpp:delay}delay")
        assert delay is not None and delay.get("from") == "localhost"
    # once: another login finds the queue empty
    again = srv.login("bob", "third")
    assert not chats(again.read())
    # and the archive has each message once (MAM, XEP-0313)
    again.send("<iq type='set' id='q'><query xmlns='urn:xmpp:mam:2'/></iq>")
    archived = [f.findtext(f"{C}message/{C}body") for f in again.read()
                for f in f.iter("{urn:xmpp:forward:0}forwarded")]
    assert archived == [f"m{i}" for i in range(10)]


def test_a_ping_left_unanswered_across_the_resumption_still_counts() -> None:
    """XEP-0199 §4.2 as plugins/ping.py applies it: the server's ping went to a connection
    that then died; the resumed stream is the same session, so when the ping's timeout
    passes unanswered it ends the resumed stream (connection-timeout), even though later
    pings are answered."""
    srv = StreamServer(["disco", "ping", "roster", "presence", "smacks"], {
        "smacks": {"resume_timeout": 300.0, "ack_delay": 0.2},
        "ping": {"interval": 60.0, "timeout": 10.0}})
    try:
        a = srv.login("alice")
        a.send(f"<enable xmlns='{SM}' resume='true'/>")
        [enabled] = a.read()
        srv.clock.advance(60)
        first = [e for e in a.read() if e.find("{urn:xmpp:ping}ping") is not None]
        assert len(first) == 1
        a.drop()
        srv.clock.advance(1)
        new = srv.authenticated("alice")
        new.send(f"<resume xmlns='{SM}' previd='{enabled.get('id')}' h='0'/>")
        out = new.read()
        assert out[0].tag == f"{{{SM}}}resumed"
        assert [e.get("id") for e in out if e.find("{urn:xmpp:ping}ping") is not None] == [
            first[0].get("id")]  # unacknowledged, so sent again; still not answered
        srv.clock.advance(8.9)  # 9.9 s since the ping
        assert stream_error(new.read()) is None and not new.closed_by_server
        srv.clock.advance(0.2)
        assert stream_error(new.read()) == "connection-timeout"
    finally:
        srv.close()
