"""Core server through the front door: slixmpp over STARTTLS and Direct TLS (RFC 6120/6121)."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import start_server
from tests.support.barrier import barrier, drain
from tests.support.ca import CertAuthority
from tests.support.client import Client, connect, run
from tests.support.raw import NS_SASL, NS_TLS, RawStream, q
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"])
@pytest.mark.parametrize("direct_tls", [False, True], ids=["starttls", "directtls"])
def test_login_each_mechanism(server: ServerProcess, mechanism: str, direct_tls: bool) -> None:
    jid, _ = server.new_user()

    async def body() -> None:
        c = await connect(server, jid + "/r1", mechanism=mechanism, direct_tls=direct_tls)
        assert str(c.boundjid) == jid + "/r1"
        assert c.is_connected()
        await c.close()

    run(body())


def test_wrong_password_is_refused(server: ServerProcess) -> None:
    jid, _ = server.new_user()

    async def body() -> None:
        with pytest.raises(PermissionError):
            await connect(server, jid, password="not-the-password")
        # The account still works afterwards: nothing stored was affected.
        c = await connect(server, jid)
        await c.close()

    run(body())


def test_unknown_user_is_refused_like_a_wrong_password(server: ServerProcess) -> None:
    async def body() -> None:
        with pytest.raises(PermissionError):
            await connect(server, "nobody-here@localhost", password="x")

    run(body())


def test_hundred_messages_in_order(server: ServerProcess) -> None:
    a, _ = server.new_user("a")
    b, _ = server.new_user("b")

    async def body() -> None:
        ca = await connect(server, a + "/x")
        cb = await connect(server, b + "/y")
        for i in range(100):
            ca.send_message(mto=b, mbody=f"msg {i}", mtype="chat")
        got = [await cb.next_message(where=lambda m: m["type"] == "chat") for _ in range(100)]
        assert [m["body"] for m in got] == [f"msg {i}" for i in range(100)]
        assert all(str(m["from"]) == a + "/x" for m in got)
        # and back
        for i in range(100):
            cb.send_message(mto=a + "/x", mbody=f"re {i}", mtype="chat")
        back = [await ca.next_message(where=lambda m: m["type"] == "chat") for _ in range(100)]
        assert [m["body"] for m in back] == [f"re {i}" for i in range(100)]
        await ca.close()
        await cb.close()

    run(body())


def test_from_is_stamped_and_cannot_be_spoofed(server: ServerProcess) -> None:
    a, _ = server.new_user("a")
    b, _ = server.new_user("b")
    victim, _ = server.new_user("v")

    async def body() -> None:
        ca = await connect(server, a + "/x")
        cb = await connect(server, b + "/y")
        ca.send_message(mto=b, mbody="no from")
        msg = await cb.next_message()
        assert str(msg["from"]) == a + "/x"
        # Another resource of the same account is overridden with the session's own JID
        # (RFC 6120 §8.1.2.1; Converse.js writes a made-up resource after resuming).
        ca.send_raw(f"<message to='{b}' from='{a}/not-mine' type='chat'><body>own</body>"
                    "</message>")
        msg = await cb.next_message()
        assert msg["body"] == "own" and str(msg["from"]) == a + "/x"
        # Claiming another user's JID costs the stream (RFC 6120 §8.1.2.1 invalid-from).
        ca.send_raw(f"<message to='{b}' from='{victim}/evil' type='chat'><body>spoof</body>"
                    "</message>")
        await asyncio.wait_for(ca.gone, 10)
        assert "invalid-from" in ca.stream_errors
        await barrier(cb)  # the server closed ca instead of routing the spoof
        assert not drain(cb.messages)
        await cb.close()

    run(body())


def test_bare_jid_message_reaches_all_top_priority_resources(server: ServerProcess) -> None:
    a, _ = server.new_user("a")
    b, _ = server.new_user("b")

    async def body() -> None:
        sender = await connect(server, a + "/s")
        hi1 = await connect(server, b + "/hi1", priority=5)
        hi2 = await connect(server, b + "/hi2", priority=5)
        low = await connect(server, b + "/low", priority=1)
        neg = await connect(server, b + "/neg", priority=-1)
        sender.send_message(mto=b, mbody="to the bare JID", mtype="chat")
        for c in (hi1, hi2):
            m = await c.next_message(where=lambda m: m["type"] == "chat")
            assert m["body"] == "to the bare JID"
        await barrier(low, neg)  # routed once hi1 and hi2 had it
        for c in (low, neg):
            assert not [m for m in drain(c.messages) if m["type"] == "chat"]
        # A full JID reaches exactly that resource, even with negative priority.
        sender.send_message(mto=b + "/neg", mbody="direct", mtype="chat")
        m = await neg.next_message(where=lambda m: m["type"] == "chat")
        assert m["body"] == "direct"
        for c in (sender, hi1, hi2, low, neg):
            await c.close()

    run(body())


def test_message_to_unknown_user_or_domain_bounces(server: ServerProcess) -> None:
    a, _ = server.new_user("a")

    async def body() -> None:
        ca = await connect(server, a + "/x")
        for to in ("no-such-user@localhost", "someone@unknown.invalid"):
            ca.send_message(mto=to, mbody="hello?", mtype="chat")
            err = await ca.next_message(where=lambda m: m["type"] == "error")
            assert str(err["from"]).split("/")[0] == to
            assert err["error"]["condition"] in ("service-unavailable",
                                                  "remote-server-not-found")
            assert err["body"] == "hello?"
        await ca.close()

    run(body())


def test_resource_conflict_kicks_older_session(server: ServerProcess) -> None:
    jid, _ = server.new_user()

    async def body() -> None:
        old = await connect(server, jid + "/same")
        new = await connect(server, jid + "/same")
        await asyncio.wait_for(old.gone, 10)
        assert "conflict" in old.stream_errors
        assert str(new.boundjid) == jid + "/same"
        pong = await new.plugin["xep_0199"].send_ping("localhost", timeout=5)
        assert pong is not None
        await new.close()

    run(body())


def test_server_generates_resource_when_none_is_asked(server: ServerProcess) -> None:
    jid, _ = server.new_user()

    async def body() -> None:
        c = await connect(server, jid)
        assert c.boundjid.bare == jid and c.boundjid.resource
        await c.close()

    run(body())


def test_iq_to_unknown_full_jid_and_unknown_namespace(server: ServerProcess) -> None:
    a, _ = server.new_user("a")
    b, _ = server.new_user("b")

    async def body() -> None:
        c = await connect(server, a + "/x")
        iq = c.make_iq_get(queryxmlns="urn:xmpp:ping", ito=b + "/gone")
        from slixmpp.exceptions import IqError

        with pytest.raises(IqError) as exc:
            await iq.send(timeout=5)
        assert exc.value.condition == "service-unavailable"
        iq = c.make_iq_get(queryxmlns="urn:example:nothing", ito="localhost")
        with pytest.raises(IqError) as exc:
            await iq.send(timeout=5)
        assert exc.value.condition == "service-unavailable"
        await c.close()

    run(body())


def test_ping_disco_version_time(server: ServerProcess) -> None:
    jid, _ = server.new_user()

    async def body() -> None:
        c = await connect(server, jid, plugins=("xep_0092", "xep_0202"))
        rtt = await c.plugin["xep_0199"].ping("localhost", timeout=5)
        assert rtt is not None
        info = await c.plugin["xep_0030"].get_info(jid="localhost")
        features = set(info["disco_info"]["features"])
        assert {"urn:xmpp:ping", "jabber:iq:version", "urn:xmpp:time",
                "http://jabber.org/protocol/disco#info"} <= features
        assert ("server", "im", "xmppd", None) in set(info["disco_info"]["identities"]) or any(
            i[0] == "server" and i[1] == "im" for i in info["disco_info"]["identities"])
        ver = await c.plugin["xep_0092"].get_version("localhost")
        assert ver["software_version"]["name"] == "xmppd"
        t = await c.plugin["xep_0202"].get_entity_time("localhost")
        # Read the raw element: slixmpp's get_utc appends a second 'Z' to the XEP-0082 value.
        utc = t.xml.find("{urn:xmpp:time}time/{urn:xmpp:time}utc").text
        assert utc and utc.endswith("Z") and utc[:4].isdigit()
        await c.close()

    run(body())


def test_plain_tcp_login_when_tls_is_optional(tmp_path_factory: pytest.TempPathFactory,
                                              ca: CertAuthority) -> None:
    """With ``[tls] require_c2s = false`` a client may skip STARTTLS (RFC 6120 §5.3.1: the
    offer is then not ``<required/>``); PLAIN is withheld on the clear stream (§13.9.4), and
    after SASL the restarted stream offers binding, never STARTTLS again."""
    gen = start_server(tmp_path_factory.mktemp("plain"), "sqlite", ca,
                       config={"tls": {"require_c2s": False}})
    srv = next(gen)
    try:
        alice, _ = srv.new_user("plain")
        bob, _ = srv.new_user("plain")

        async def body() -> None:
            raw = await RawStream.open(srv.c2s_port)
            features = await raw.open_stream()
            tls = features.find(q(NS_TLS, "starttls"))
            assert tls is not None and tls.find(q(NS_TLS, "required")) is None
            mechs = {m.text for m in features.iter(q(NS_SASL, "mechanism"))}
            assert "SCRAM-SHA-256" in mechs and "PLAIN" not in mechs
            raw.close()

            a = Client(alice, srv.passwords[alice], str(srv.ca.ca_file), mechanism="SCRAM-SHA-256")
            a.enable_starttls = False
            a.enable_plaintext = True
            a.plugin["feature_mechanisms"].unencrypted_scram = True  # slixmpp refuses it by default
            a.connect("127.0.0.1", srv.c2s_port)
            await asyncio.wait_for(a.started, 15)
            assert a.boundjid.resource
            b = await connect(srv, bob)
            a.send_message(mto=bob, mbody="in the clear")
            msg = await b.next_message(where=lambda m: m["body"] == "in the clear")
            assert msg["from"].bare == alice
            await a.close()
            await b.close()

        run(body())
    finally:
        gen.close()
