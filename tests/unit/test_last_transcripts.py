"""XEP-0012 Last Activity as stream transcripts on a task.Clock: the seconds are exact
(server uptime, §5; since a contact's last logout, §3) without waiting for them to pass."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest

from tests.support.streams import C, StreamClient, StreamServer

LAST = "jabber:iq:last"


@pytest.fixture
def srv() -> Iterator[StreamServer]:
    s = StreamServer(["disco", "roster", "presence", "last"], users=("a", "b", "c"))
    yield s
    s.close()


def last(c: StreamClient, to: str) -> ET.Element:
    c.send(f"<iq type='get' id='last' to='{to}'><query xmlns='{LAST}'/></iq>")
    [res] = [e for e in c.read() if e.tag == C + "iq" and e.get("id") == "last"]
    return res


def seconds(res: ET.Element) -> tuple[int, str | None]:
    assert res.get("type") == "result", ET.tostring(res)
    q = res.find(f"{{{LAST}}}query")
    assert q is not None
    return int(q.get("seconds", "-1")), q.text


def test_uptime_and_seconds_since_a_contacts_logout(srv: StreamServer) -> None:
    srv.clock.advance(42)
    a, b = srv.login("a"), srv.login("b")
    assert seconds(last(a, "localhost")) == (42, None)  # §5: uptime, no text
    # a subscribes to b; b approves
    a.send("<presence to='b@localhost' type='subscribe'/>")
    b.read()
    b.send("<presence to='a@localhost' type='subscribed'/>")
    a.read()
    assert seconds(last(a, "b@localhost")) == (0, None)  # §3: available -> 0
    b.send("<presence type='unavailable'><status>gone fishing</status></presence>")
    b.close()
    srv.clock.advance(125)
    assert seconds(last(a, "b@localhost")) == (125, "gone fishing")
    srv.clock.advance(3600)
    assert seconds(last(a, "b@localhost")) == (3725, "gone fishing")
    # back online: 0 again
    srv.login("b", "y")
    assert seconds(last(a, "b@localhost")) == (0, None)
