"""XEP-0160 offline storage with XEP-0203 delays; quota; what is and is not stored."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest

from tests.conftest import start_server
from tests.support.barrier import barrier
from tests.support.ca import CertAuthority
from tests.support.client import connect, run
from tests.support.raw import C, RawStream, stanza_error
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def srv(backend: str, ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[ServerProcess]:
    yield from start_server(tmp_path_factory.mktemp(f"off-{backend}"), backend, ca,
                            config={"plugins": {"offline": {"quota": 50}}})


def chats(el: ET.Element) -> bool:
    return el.tag == C + "message" and el.get("type") in ("chat", None) and \
        el.find(C + "body") is not None


def test_offline_delivery_in_order_with_delay_once(srv: ServerProcess) -> None:
    a, _ = srv.new_user("a")
    b, bpw = srv.new_user("b")

    async def body() -> None:
        ca = await connect(srv, a + "/x")
        for i in range(20):
            ca.send_message(mto=b, mbody=f"o{i:02}", mtype="chat")
        ca.send_message(mto=b + "/gone", mbody="to a gone resource", mtype="chat")
        ca.send_message(mto=b, mbody="normal type")
        await barrier(ca)  # all routed to offline storage (a login drains what commits later)
        raw = await RawStream.open(srv.c2s_port)
        await raw.login(str(srv.ca.ca_file), b.split("@")[0], bpw, resource="neg")
        # negative priority: not "available" for offline delivery (XEP-0160 §3)
        await raw.send("<presence><priority>-1</priority></presence>")
        assert not [el for el in await raw.barrier() if chats(el)]
        await raw.send("<presence><priority>1</priority></presence>")
        got = [await raw.read_until(chats) for _ in range(22)]
        assert [g.findtext(C + "body") for g in got] == [f"o{i:02}" for i in range(20)] + [
            "to a gone resource", "normal type"]
        for g in got:
            delay = g.find("{urn:xmpp:delay}delay")
            assert delay is not None and delay.get("from") == "localhost" and delay.get("stamp")
            assert g.get("from") == a + "/x"
        raw.close()
        again = await RawStream.open(srv.c2s_port)
        await again.login(str(srv.ca.ca_file), b.split("@")[0], bpw, resource="again")
        await again.send("<presence/>")
        assert not [el for el in await again.barrier() if chats(el)]  # delivered once, gone
        again.close()
        await ca.close()

    run(body())


def test_quota_and_what_is_not_stored(srv: ServerProcess) -> None:
    a, apw = srv.new_user("a")
    b, _ = srv.new_user("b")

    async def body() -> None:
        raw = await RawStream.open(srv.c2s_port)
        await raw.login(str(srv.ca.ca_file), a.split("@")[0], apw, resource="x")
        await raw.send("<presence/>")
        await raw.send(f"<message to='{b}' type='chat' id='cs'><composing "
                       "xmlns='http://jabber.org/protocol/chatstates'/></message>")
        await raw.send(f"<message to='{b}' type='chat' id='ns'><body>x</body>"
                       "<no-store xmlns='urn:xmpp:hints'/></message>")
        err = await raw.read_until(lambda e: e.get("type") == "error")
        assert err.get("id") == "ns" and stanza_error(err)[1] == "service-unavailable"
        for i in range(51):
            await raw.send(f"<message to='{b}' type='chat' id='q{i}'><body>{i}</body></message>")
        err = await raw.read_until(lambda e: e.get("type") == "error")
        assert err.get("id") == "q50"
        assert stanza_error(err) == ("cancel", "service-unavailable")
        assert "full" in (err.findtext(f"{C}error/{{urn:ietf:params:xml:ns:xmpp-stanzas}}text")
                          or "")
        raw.close()
        cb = await connect(srv, b + "/y")
        got = []
        for _ in range(50):
            m = await cb.next_message(where=lambda m: bool(m["body"]))
            got.append(m["body"])
        assert got == [str(i) for i in range(50)]
        await cb.close()

    run(body())


def test_client_state_indication_holds_presence_not_messages(srv: ServerProcess) -> None:
    a, apw = srv.new_user("a")
    b, _ = srv.new_user("b")

    async def body() -> None:
        raw = await RawStream.open(srv.c2s_port)
        features = await raw.authenticate(str(srv.ca.ca_file), a.split("@")[0], apw)
        assert features.find("{urn:xmpp:csi:0}csi") is not None
        await raw.bind("x")
        cb = await connect(srv, b + "/y")
        # a sees b's presence by directed presence both ways (no roster needed)
        await raw.send(f"<presence to='{b}/y'/>")
        cb.send_presence(pto=a + "/x")
        await raw.read_until(lambda e: e.tag == C + "presence" and e.get("from") == b + "/y")
        await raw.send("<inactive xmlns='urn:xmpp:csi:0'/>")
        # a's stream handles its elements in order: once this ping is answered, <inactive/>
        # is in effect (it could still be queued behind the directed presence above while
        # b's updates, on another connection, were already routed)
        pong = await raw.iq("<ping xmlns='urn:xmpp:ping'/>", id_="csi-sync")
        assert pong.get("type") == "result"
        for show in ("away", "xa", "dnd"):
            cb.send_presence(pto=a + "/x", pshow=show)
        with pytest.raises(TimeoutError):
            await raw.read_until(lambda e: e.tag == C + "presence", timeout=1.0)
        cb.send_message(mto=a + "/x", mbody="urgent", mtype="chat")
        first = await raw.read()
        second = await raw.read()
        # held presence is flushed first (only the newest), then the message, at once
        assert first.tag == C + "presence" and first.findtext(C + "show") == "dnd"
        assert second.tag == C + "message" and second.findtext(C + "body") == "urgent"
        cb.send_presence(pto=a + "/x", pshow="chat")
        with pytest.raises(TimeoutError):
            await raw.read_until(lambda e: e.tag == C + "presence", timeout=0.8)
        await raw.send("<active xmlns='urn:xmpp:csi:0'/>")
        p = await raw.read_until(lambda e: e.tag == C + "presence")
        assert p.findtext(C + "show") == "chat"
        raw.close()
        await cb.close()

    run(body())
