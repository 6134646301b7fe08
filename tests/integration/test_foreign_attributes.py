"""Issue 15 A3: a payload with several prefixed attributes in one foreign namespace reaches
its recipient intact, live, from offline storage and from the archive, and the recipient's
stream survives. The serializer used to declare the prefix once per attribute, a duplicate
attribute the recipient's parser rejects (RFC 6120 §4.9.3.13 not-well-formed): any user
could end the stream of any user they could address.

The raw client parses with ElementTree's expat in namespace mode, which rejects such XML.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from tests.support.client import run
from tests.support.raw import C, RawStream
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration
MAM = "urn:xmpp:mam:2"
FORWARD = "urn:xmpp:forward:0"
PING = "<ping xmlns='urn:xmpp:ping'/>"
PAYLOAD = ("<p xmlns='urn:example:payload' xmlns:o='urn:example:o' xmlns:t='urn:example:t'"
           " o:a='1' o:b='2' t:a='3' a='4'>text</p>")
WANTED = {"{urn:example:o}a": "1", "{urn:example:o}b": "2", "{urn:example:t}a": "3", "a": "4"}


def message(to: str, id_: str) -> str:
    return f"<message to='{to}' type='chat' id='{id_}'><body>hi</body>{PAYLOAD}</message>"


def assert_intact(msg: ET.Element) -> None:
    p = msg.find("{urn:example:payload}p")
    assert p is not None, ET.tostring(msg)
    assert dict(p.attrib) == WANTED and p.text == "text"


def with_id(id_: str) -> object:
    return lambda el: el.tag == C + "message" and el.get("id") == id_


async def online(srv: ServerProcess, jid: str, pw: str, resource: str) -> RawStream:
    raw = await RawStream.open(srv.c2s_port)
    await raw.login(str(srv.ca.ca_file), jid.split("@")[0], pw, resource=resource)
    await raw.send("<presence/>")
    return raw


async def still_up(raw: RawStream) -> None:
    """An IQ round trip on the stream: it was not closed by a parse error on either side."""
    pong = await raw.iq(PING, id_="alive")
    assert pong.get("type") == "result", ET.tostring(pong)


async def archived(raw: RawStream, id_: str) -> ET.Element:
    """The one archived copy of message ``id_`` in the user's archive (XEP-0313 §4)."""
    await raw.send(f"<iq type='set' id='mam'><query xmlns='{MAM}' queryid='q'/></iq>")
    found = []
    while True:
        el = await raw.read()
        if el.tag == C + "iq" and el.get("id") == "mam":
            assert el.get("type") == "result", ET.tostring(el)
            break
        fwd = el.find(f"{{{MAM}}}result/{{{FORWARD}}}forwarded/{C}message")
        if fwd is not None and fwd.get("id") == id_:
            found.append(fwd)
    assert len(found) == 1
    return found[0]


def test_live_delivery(server: ServerProcess) -> None:
    a, apw = server.new_user("fa")
    b, bpw = server.new_user("fb")

    async def body() -> None:
        ra = await online(server, a, apw, "x")
        rb = await online(server, b, bpw, "x")
        await ra.send(message(b, "live"))
        assert_intact(await rb.read_until(with_id("live")))
        await still_up(rb)
        await still_up(ra)
        ra.close()
        rb.close()

    run(body())


def test_offline_delivery(server: ServerProcess) -> None:
    a, apw = server.new_user("fa")
    b, bpw = server.new_user("fb")

    async def body() -> None:
        ra = await online(server, a, apw, "x")
        await ra.send(message(b, "stored"))
        # a barrier: a's stanzas are handled in order, the message's storing included
        await still_up(ra)
        rb = await online(server, b, bpw, "x")
        got = await rb.read_until(with_id("stored"))
        assert_intact(got)
        assert got.find("{urn:xmpp:delay}delay") is not None
        await still_up(rb)
        ra.close()
        rb.close()

    run(body())


def test_archived_copies(server: ServerProcess) -> None:
    """Queried by the recipient, who was offline and has sent no presence yet (so the archive's
    copy is the only one it reads), and by the sender."""
    a, apw = server.new_user("fa")
    b, bpw = server.new_user("fb")

    async def body() -> None:
        ra = await online(server, a, apw, "x")
        await ra.send(message(b, "kept"))
        await still_up(ra)
        rb = await RawStream.open(server.c2s_port)  # no presence: offline queue untouched
        await rb.login(str(server.ca.ca_file), b.split("@")[0], bpw, resource="y")
        for raw in (rb, ra):
            assert_intact(await archived(raw, "kept"))
            await still_up(raw)
        ra.close()
        rb.close()

    run(body())
