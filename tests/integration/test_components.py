"""External components (XEP-0114) against the real server process: components written here
over raw sockets, users with slixmpp. Handshake, routing both ways, several components, a
wrong secret, a spoofed 'from', bouncing while disconnected, disco#items, the TLS listener."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
from slixmpp.exceptions import IqError

from tests.conftest import start_server
from tests.support.ca import CertAuthority
from tests.support.client import connect, run
from tests.support.component import A, RawComponent
from tests.support.raw import RawStream
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration
IRC, GW = "irc.localhost", "gw.localhost"
SECRETS = {IRC: "irc-secret", GW: "gw&<secret>"}  # XML special characters hashed as they are


@pytest.fixture(scope="module")
def srv(ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from start_server(tmp_path_factory.mktemp("components"), "sqlite", ca, config={
        "listeners": [
            {"type": "c2s", "port": 0, "address": "127.0.0.1"},
            {"type": "c2s_tls", "port": 0, "address": "127.0.0.1"},
            {"type": "component", "port": 0},
            {"type": "component_tls", "port": 0},
        ],
        "components": {IRC: {"secret": SECRETS[IRC]},
                       GW: {"secret": SECRETS[GW], "name": "Gateway"}},
    })


def port(srv: ServerProcess, kind: str = "component") -> int:
    return srv.ports[kind][0]


async def component(srv: ServerProcess, domain: str) -> RawComponent:
    return await RawComponent.connect(port(srv), domain, SECRETS[domain])


async def closed(comp: RawComponent) -> None:
    """Close the component's stream and wait until the server has seen it go."""
    await comp.send("</stream:stream>")
    assert await comp.eof(close_first=False)


async def answer_disco(comp: RawComponent, name: str) -> None:
    q = await comp.stanza("iq")
    assert q.get("type") == "get" and q.get("from") == "localhost", ET.tostring(q)
    await comp.send(f"<iq type='result' id='{q.get('id')}' to='{q.get('from')}' "
                    f"from='{q.get('to')}'><query xmlns='http://jabber.org/protocol/disco#info'>"
                    f"<identity category='gateway' type='irc' name='{name}'/></query></iq>")


def test_wrong_secret_and_unknown_domain_are_refused(srv: ServerProcess) -> None:
    async def body() -> None:
        comp = await RawComponent.open(port(srv))
        header = await comp.start(IRC)
        assert header["from"] == IRC and header["id"]
        await comp.send_handshake(SECRETS[GW])  # another component's secret
        assert await comp.stream_error() == "not-authorized"
        assert await comp.eof()

        comp = await RawComponent.open(port(srv))
        await comp.send("<stream:stream xmlns='jabber:component:accept' "
                        "xmlns:stream='http://etherx.jabber.org/streams' to='nope.localhost'>")
        assert await comp.stream_error() == "host-unknown"
        assert comp.header is not None and comp.header.get("id")
        assert await comp.eof()
    run(body())


def test_routing_both_ways_and_iq_round_trip(srv: ServerProcess) -> None:
    jid, _ = srv.new_user("alice")

    async def body() -> None:
        comp = await component(srv, IRC)
        await answer_disco(comp, "IRC")
        alice = await connect(srv, jid)
        try:
            alice.send_message(mto=f"#room%net@{IRC}", mbody="to the component", mtype="chat")
            msg = await comp.stanza("message")
            assert msg.get("to") == f"#room%net@{IRC}"
            assert msg.get("from") == str(alice.boundjid)
            assert msg.findtext(A + "body") == "to the component"

            await comp.send(f"<message from='#room%net@{IRC}/bob' to='{alice.boundjid}' "
                            "type='chat'><body>from the component</body></message>")
            got = await alice.next_message()
            assert got["from"] == f"#room%net@{IRC}/bob" and got["body"] == "from the component"

            # An IQ from a user to the component and the component's answer back.
            pending = asyncio.ensure_future(alice.plugin["xep_0030"].get_info(jid=IRC))
            q = await comp.stanza("iq")
            assert q.get("from") == str(alice.boundjid) and q.get("type") == "get"
            await comp.send(f"<iq type='result' id='{q.get('id')}' from='{IRC}' "
                            f"to='{q.get('from')}'><query xmlns='http://jabber.org/protocol/"
                            "disco#info'><identity category='gateway' type='irc'/>"
                            "</query></iq>")
            info = await pending
            assert ("gateway", "irc", None, None) in info["disco_info"]["identities"]
        finally:
            await alice.close()
            await closed(comp)
    run(body())


def test_two_components_reach_each_other_and_users(srv: ServerProcess) -> None:
    jid, _ = srv.new_user("carol")

    async def body() -> None:
        irc = await component(srv, IRC)
        await answer_disco(irc, "IRC")
        gw = await component(srv, GW)  # named in the configuration: no disco#info query
        carol = await connect(srv, jid)
        try:
            await irc.send(f"<message from='a@{IRC}' to='b@{GW}'><body>hop</body></message>")
            m = await gw.stanza("message")
            assert (m.get("from"), m.findtext(A + "body")) == (f"a@{IRC}", "hop")
            carol.send_message(mto=f"x@{GW}", mbody="to gw")
            carol.send_message(mto=f"x@{IRC}", mbody="to irc")
            assert (await gw.stanza("message")).findtext(A + "body") == "to gw"
            assert (await irc.stanza("message")).findtext(A + "body") == "to irc"
        finally:
            await carol.close()
            await closed(irc)
            await closed(gw)
    run(body())


def test_spoofed_from_is_invalid_from_and_not_delivered(srv: ServerProcess) -> None:
    jid, _ = srv.new_user("dave")

    async def body() -> None:
        gw = await component(srv, GW)
        dave = await connect(srv, jid)
        try:
            for frm in (f"x@{GW}", "admin@localhost", f"x@sub.{IRC}"):
                irc = await component(srv, IRC)
                await answer_disco(irc, "IRC")
                await irc.send(f"<message from='{frm}' to='{dave.boundjid}'>"
                               "<body>spoof</body></message>")
                assert await irc.stream_error() == "invalid-from"
                assert await irc.eof()
            # The other component's link is untouched, and nothing spoofed arrived: this
            # message from it is the first one Dave gets.
            await gw.send(f"<message from='x@{GW}' to='{dave.boundjid}'><body>real</body>"
                          "</message>")
            got = await dave.next_message()
            assert (got["from"], got["body"]) == (f"x@{GW}", "real")
        finally:
            await dave.close()
            await closed(gw)
    run(body())


def test_bounce_while_disconnected_then_delivery_after_connecting(srv: ServerProcess) -> None:
    jid, _ = srv.new_user("erin")

    async def body() -> None:
        erin = await connect(srv, jid)
        try:
            async def bounced(to: str) -> None:
                erin.send_message(mto=to, mbody="anyone?", mtype="chat")
                err = await erin.next_message(where=lambda m: m["type"] == "error")
                assert err["from"] == to
                assert (err["error"]["type"], err["error"]["condition"]) == (
                    "wait", "remote-server-timeout")

            await bounced(f"x@{IRC}")
            with pytest.raises(IqError) as exc:
                await erin.plugin["xep_0030"].get_info(jid=IRC, timeout=10)
            assert exc.value.iq["error"]["condition"] == "remote-server-timeout"

            irc = await component(srv, IRC)
            await answer_disco(irc, "IRC")
            erin.send_message(mto=f"x@{IRC}", mbody="now?", mtype="chat")
            assert (await irc.stanza("message")).findtext(A + "body") == "now?"

            irc.kill()  # the component dies without closing its stream
            await wait_gone(srv)
            await bounced(f"x@{IRC}")
        finally:
            await erin.close()
    run(body())


async def wait_gone(srv: ServerProcess) -> None:
    """Until the server has seen the killed link go, a new one for IRC is a conflict."""
    for _ in range(200):
        probe = await RawComponent.open(port(srv))
        await probe.start(IRC)
        await probe.send_handshake(SECRETS[IRC])
        if (await probe.read()).tag == A + "handshake":
            await closed(probe)
            return
        probe.close()
        await asyncio.sleep(0.05)
    raise TimeoutError("the killed component's link never went away")


def test_second_connection_is_a_conflict(srv: ServerProcess) -> None:
    async def body() -> None:
        gw = await component(srv, GW)
        try:
            dup = await RawComponent.open(port(srv))
            await dup.send("<stream:stream xmlns='jabber:component:accept' "
                           f"xmlns:stream='http://etherx.jabber.org/streams' to='{GW}'>")
            assert await dup.stream_error() == "conflict"
            # The first link still works: an IQ round trip through it.
            await gw.send(f"<iq type='get' id='p1' from='{GW}' to='localhost'>"
                          "<ping xmlns='urn:xmpp:ping'/></iq>")
            pong = await gw.stanza("iq")
            assert (pong.get("id"), pong.get("type")) == ("p1", "result")
        finally:
            await closed(gw)
    run(body())


def test_disco_items_list_connected_components(srv: ServerProcess) -> None:
    jid, _ = srv.new_user("frank")

    async def body() -> None:
        frank = await connect(srv, jid)
        try:
            async def items() -> set[tuple[str, str | None]]:
                res = await frank.plugin["xep_0030"].get_items(jid="localhost")
                return {(i[0], i[2]) for i in res["disco_items"]["items"]}

            assert not {j for j, _ in await items()} & {IRC, GW}
            irc = await component(srv, IRC)
            await answer_disco(irc, "IRC network")
            gw = await component(srv, GW)
            # The name from IRC's own disco#info arrives after its answer above; a ping
            # through the server orders the two.
            await irc.send(f"<iq type='get' id='b1' from='{IRC}' to='localhost'>"
                           "<ping xmlns='urn:xmpp:ping'/></iq>")
            await irc.stanza("iq")
            assert {(IRC, "IRC network"), (GW, "Gateway")} <= await items()
            await closed(irc)
            assert {j for j, _ in await items()} & {IRC, GW} == {GW}
            await closed(gw)
        finally:
            await frank.close()
    run(body())


def test_component_tls_listener(srv: ServerProcess) -> None:
    async def body() -> None:
        gw = await RawComponent.connect(port(srv, "component_tls"), GW, SECRETS[GW],
                                        tls_ca=str(srv.ca.ca_file))
        await gw.send(f"<iq type='get' id='t1' from='{GW}' to='localhost'>"
                      "<ping xmlns='urn:xmpp:ping'/></iq>")
        assert (await gw.stanza("iq")).get("type") == "result"
        await closed(gw)
    run(body())


def test_plain_client_stream_on_component_port_is_refused(srv: ServerProcess) -> None:
    async def body() -> None:
        raw = await RawStream.open(port(srv))
        await raw.send("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                       "xmlns:stream='http://etherx.jabber.org/streams' to='localhost' "
                       "version='1.0'>")
        assert await raw.stream_error() == "invalid-namespace"
    run(body())
