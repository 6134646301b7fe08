"""XEP-0313 §4.1.2 'start' and 'end' filters as stream transcripts on a task.Clock: the
archive's timestamps come from the server's clock, so the boundaries are exact without
waiting for whole seconds to pass."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest

from tests.support.streams import C, StreamClient, StreamServer

MAM = "urn:xmpp:mam:2"


@pytest.fixture
def srv() -> Iterator[StreamServer]:
    s = StreamServer(["disco", "roster", "presence", "mam"], users=("a", "b"))
    yield s
    s.close()


def stamp(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def query(c: StreamClient, **filters: str) -> list[str]:
    fields = "".join(f"<field var='{k}'><value>{v}</value></field>" for k, v in filters.items())
    c.send(f"<iq type='set' id='q'><query xmlns='{MAM}' queryid='q'>"
           f"<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
           f"<value>{MAM}</value></field>{fields}</x></query></iq>")
    out = c.read()
    assert out[-1].tag == C + "iq" and out[-1].get("type") == "result", ET.tostring(out[-1])
    return [m.findtext(f"{{{MAM}}}result/{{urn:xmpp:forward:0}}forwarded/{C}message/{C}body")
            or "" for m in out if m.tag == C + "message"]


def test_start_and_end_split_the_archive_at_a_moment(srv: StreamServer) -> None:
    a, b = srv.login("a"), srv.login("b")
    for n in range(3):
        b.send(f"<message to='a@localhost' type='chat'><body>early{n}</body></message>")
    srv.clock.advance(30)
    middle = srv.clock.seconds()
    srv.clock.advance(30)
    for n in range(2):
        a.send(f"<message to='b@localhost' type='chat'><body>late{n}</body></message>")
    a.read()
    assert query(a) == ["early0", "early1", "early2", "late0", "late1"]
    assert query(a, start=stamp(middle)) == ["late0", "late1"]
    assert query(a, end=stamp(middle)) == ["early0", "early1", "early2"]
    assert query(a, start=stamp(middle - 30), end=stamp(middle + 29)) == [
        "early0", "early1", "early2"]  # both ends inclusive
    assert query(a, start=stamp(middle + 31)) == []
