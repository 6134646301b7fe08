"""Two xmppd processes federating on loopback: a.test and b.test (RFC 6120 s2s, XEP-0178,
XEP-0220), driven by slixmpp clients of each.

Ports: each server's config needs the other's s2s port (``federation.domains.<d>.connect``),
so the s2s ports are chosen here (free ports below 32768, checked by binding them) rather than
reported afterwards; this also lets a server be restarted on the same port. Client ports
are still port 0 and read from ``--ports-file``.
"""

from __future__ import annotations

import asyncio
import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.backends import database
from tests.support.barrier import barrier_to
from tests.support.ca import CertAuthority
from tests.support.client import Client, connect, pushed, run
from tests.support.raw import NS_TLS, C, RawStream, stanza_error
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration
A, B = "a.test", "b.test"
MAM = "urn:xmpp:mam:2"


def free_port() -> int:
    """A TCP port below 32768 that is free on 127.0.0.1 right now."""
    import random

    for _ in range(200):
        port = random.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def federation_config(peer: str, peer_port: int, *, ca_file: str = "",
                      require_valid: bool = False, extra: dict[str, Any] | None = None,
                      direct_tls: bool = False) -> dict[str, Any]:
    """``direct_tls``: ``peer_port`` is the peer's s2s_tls listener (XEP-0368)."""
    target = f"{'tls://' if direct_tls else ''}127.0.0.1:{peer_port}"
    fed: dict[str, Any] = {
        "require_valid_certificates": require_valid,
        "connect_timeout": 15.0,
        "domains": {peer: {"connect": target}, f"conference.{peer}": {"connect": target}},
    }
    if ca_file:
        fed["ca_file"] = ca_file
    fed.update(extra or {})
    return fed


def make_server(tmp: Path, ca: CertAuthority, domain: str, port: int, peer: str,
                peer_port: int, url: str, tls_port: int = 0, **fed: Any) -> ServerProcess:
    listeners = [
        {"type": "c2s", "port": 0, "address": "127.0.0.1"},
        {"type": "c2s_tls", "port": 0, "address": "127.0.0.1"},
        {"type": "s2s", "port": port, "address": "127.0.0.1"},
    ]
    if tls_port:
        listeners.append({"type": "s2s_tls", "port": tls_port, "address": "127.0.0.1"})
    return ServerProcess(tmp, url, ca, domains=(domain,), config={
        "listeners": listeners, "federation": federation_config(peer, peer_port, **fed)})


class DomainRawStream(RawStream):
    """RawStream whose STARTTLS checks the certificate against its own domain."""

    domain = A

    async def starttls(self, ca_file: str) -> None:
        import ssl

        await self.send(f"<starttls xmlns='{NS_TLS}'/>")
        el = await self.read()
        assert el.tag == f"{{{NS_TLS}}}proceed", el.tag
        ctx = ssl.create_default_context(cafile=ca_file)
        await self.writer.start_tls(ctx, server_hostname=self.domain)


class Pair:
    def __init__(self, a: ServerProcess, b: ServerProcess) -> None:
        self.a, self.b = a, b


def start_pair(tmp: Path, ca: CertAuthority, verified: bool) -> Iterator[Pair]:
    """Two servers; ``verified``: both trust the test CA and insist on valid certificates
    (SASL EXTERNAL both ways) and a.test reaches b.test over direct TLS (XEP-0368);
    otherwise neither can verify the other (dialback) and both use STARTTLS."""
    pa, pb, pb_tls = free_port(), free_port(), free_port()
    opts: dict[str, Any] = {"ca_file": str(ca.ca_file), "require_valid": True} if verified \
        else {}
    (tmp / "a").mkdir(exist_ok=True)
    (tmp / "b").mkdir(exist_ok=True)
    with database("sqlite", tmp / "a") as ua, database("sqlite", tmp / "b") as ub:
        a = make_server(tmp / "a", ca, A, pa, B, pb_tls if verified else pb, ua,
                        direct_tls=verified, **opts)
        b = make_server(tmp / "b", ca, B, pb, A, pa, ub, tls_port=pb_tls, **opts)
        a.start()
        b.start()
        try:
            yield Pair(a, b)
        finally:
            for s in (a, b):
                code = s.stop()
                problems = s.tracebacks()
                assert not problems, "server logged errors:\n" + "\n".join(problems)
                assert code == 0, f"server exited with {code}:\n{s.log()[-3000:]}"


@pytest.fixture(scope="module", params=["verified", "dialback"])
def pair(request: pytest.FixtureRequest, ca: CertAuthority,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    yield from start_pair(tmp_path_factory.mktemp(f"fed-{request.param}"), ca,
                          request.param == "verified")


def auth_method(server: ServerProcess) -> set[str]:
    """How the peer's streams authenticated, from the inbound log lines."""
    out = set()
    for line in server.log().splitlines():
        if "authenticated as" in line and "(" in line:
            out.add(line.rsplit("(", 1)[1].rstrip(")").split(", ALPN ")[0])
    return out


def test_subscription_presence_and_messages_both_ways(pair: Pair) -> None:
    alice, _ = pair.a.new_user("alice", A)
    bob, _ = pair.b.new_user("bob", B)

    async def body() -> None:
        ca = await connect(pair.a, alice + "/desk")
        cb = await connect(pair.b, bob + "/desk")
        await ca.get_roster()
        await cb.get_roster()
        # RFC 6121 §3.1 across servers: request, approval, roster pushes on both sides
        ca.send_presence(pto=bob, ptype="subscribe")
        req = await cb.next_presence(timeout=15, where=lambda p: p["type"] == "subscribe")
        assert str(req["from"]) == alice
        cb.send_presence(pto=alice, ptype="subscribed")
        await pushed(ca, bob, "to")
        await pushed(cb, alice, "from")
        # the approval is followed by bob's current presence (§3.1.5)
        await ca.next_presence(timeout=15, where=lambda p: p["from"] == cb.boundjid
                               and p["type"] == "available")
        cb.send_presence(pto=alice, ptype="subscribe")
        await ca.next_presence(timeout=15, where=lambda p: p["type"] == "subscribe")
        ca.send_presence(pto=bob, ptype="subscribed")
        await pushed(ca, bob, "both")
        await pushed(cb, alice, "both")
        await cb.next_presence(timeout=15, where=lambda p: p["from"] == ca.boundjid
                               and p["type"] == "available")
        # presence changes travel; a new resource probes and learns the remote presence
        cb.send_presence(pshow="away", pstatus="lunch")
        p = await ca.next_presence(timeout=15, where=lambda p: p["from"] == cb.boundjid
                                   and p["show"] == "away")
        assert p["status"] == "lunch"
        ca2 = await connect(pair.a, alice + "/phone")
        p = await ca2.next_presence(timeout=15, where=lambda p: p["from"].bare == bob)
        assert p["show"] == "away"
        # 100 messages each way, in order
        for i in range(100):
            ca.send_message(mto=bob, mbody=f"a{i}", mtype="chat")
            cb.send_message(mto=alice + "/desk", mbody=f"b{i}", mtype="chat")
        got_b = [(await cb.next_message(timeout=20))["body"] for _ in range(100)]
        got_a = [(await ca.next_message(timeout=20, where=lambda m: m["body"].startswith(
            "b")))["body"] for _ in range(100)]
        assert got_b == [f"a{i}" for i in range(100)]
        assert got_a == [f"b{i}" for i in range(100)]
        # IQ round trip to a remote account's server (XEP-0199 ping of the domain)
        assert await ca.plugin["xep_0199"].ping(B, timeout=10) is not None
        # the remote user leaves: unavailable crosses over
        await cb.close()
        await ca.next_presence(timeout=15, where=lambda p: p["from"] == cb.boundjid
                               and p["type"] == "unavailable")
        await ca.close()
        await ca2.close()

    run(body(), timeout=180)
    assert auth_method(pair.a) and auth_method(pair.b)
    verified = "ca_file" in pair.a.config_path.read_text()
    wanted = "SASL EXTERNAL" if verified else "dialback"
    assert auth_method(pair.a) == {wanted} and auth_method(pair.b) == {wanted}
    assert (f"s2s {A} -> {B}: connected to tls://" in pair.a.log()) == verified
    assert f"s2s {B} -> {A}: connected to 127.0.0.1:" in pair.b.log()
    # XEP-0368 §3 rule 9: direct TLS between servers negotiates ALPN xmpp-server, offered by
    # the initiating server and chosen by the s2s_tls listener; STARTTLS carries none.
    out_line = next(x for x in pair.a.log().splitlines() if f"{A} -> {B} (" in x
                    and "authenticated (" in x)
    in_line = next(x for x in pair.b.log().splitlines() if f"authenticated as {A}" in x)
    for line in (out_line, in_line):
        assert line.endswith(", ALPN xmpp-server)") == verified, line
    assert "ALPN" not in next(x for x in pair.a.log().splitlines()
                              if f"authenticated as {B}" in x)


def test_remote_messages_are_archived_and_carbon_copied(pair: Pair) -> None:
    alice, pw = pair.a.new_user("carol", A)
    bob, _ = pair.b.new_user("dave", B)

    async def body() -> None:
        ca = await connect(pair.a, alice + "/one")
        ca2 = await connect(pair.a, alice + "/two", plugins=("xep_0280",))
        await ca2.plugin["xep_0280"].enable()
        sent: asyncio.Queue[str] = asyncio.Queue()
        received: asyncio.Queue[str] = asyncio.Queue()
        ca2.add_event_handler("carbon_sent", lambda m: sent.put_nowait(
            f"{m['carbon_sent']['to'].bare}:{m['carbon_sent']['body']}"))
        ca2.add_event_handler("carbon_received", lambda m: received.put_nowait(
            f"{m['carbon_received']['from'].bare}:{m['carbon_received']['body']}"))
        cb = await connect(pair.b, bob + "/x")
        ca.send_message(mto=bob, mbody="archived and copied", mtype="chat")
        got = await cb.next_message(timeout=15)
        assert got["body"] == "archived and copied" and got["from"] == ca.boundjid
        assert await asyncio.wait_for(sent.get(), 15) == f"{bob}:archived and copied"
        cb.send_message(mto=alice + "/one", mbody="reply from afar", mtype="chat")
        await ca.next_message(timeout=15, where=lambda m: m["body"] == "reply from afar")
        assert await asyncio.wait_for(received.get(), 15) == f"{bob}:reply from afar"
        for c in (ca, ca2, cb):
            await c.close()
        raw = await DomainRawStream.open(pair.a.c2s_port)
        await raw.login(str(pair.a.ca.ca_file), alice.split("@")[0], pw, A)
        await raw.send(f"<iq type='set' id='m1'><query xmlns='{MAM}' queryid='m1'/></iq>")
        bodies = []
        while True:
            el = await raw.read(timeout=15)
            if el.tag == C + "iq":
                break
            m = el.find(f"{{{MAM}}}result/{{urn:xmpp:forward:0}}forwarded/{C}message")
            if m is not None:
                bodies.append((m.get("to", "").split("/")[0], m.findtext(C + "body")))
        assert (bob, "archived and copied") in bodies
        assert (alice, "reply from afar") in bodies
        raw.close()

    run(body(), timeout=120)


def test_prefixed_attributes_keep_the_link_up(pair: Pair) -> None:
    """Issue 15 A3 over s2s: two prefixed attributes in one foreign namespace were written
    with the prefix declared twice, which b.test's parser rejects as not-well-formed,
    ending the federation link (and losing the message)."""
    alice, apw = pair.a.new_user("gina", A)
    bob, bpw = pair.b.new_user("hal", B)
    payload = ("<p xmlns='urn:example:payload' xmlns:o='urn:example:o' xmlns:t='urn:example:t'"
               " o:a='1' o:b='2' t:a='3'/>")

    class BRawStream(DomainRawStream):
        domain = B

    async def body() -> None:
        rb = await BRawStream.open(pair.b.c2s_port)
        await rb.login(str(pair.b.ca.ca_file), bob.split("@")[0], bpw, B, resource="x")
        await rb.send("<presence/>")
        ra = await DomainRawStream.open(pair.a.c2s_port)
        await ra.login(str(pair.a.ca.ca_file), alice.split("@")[0], apw, A, resource="x")
        for id_ in ("first", "second"):
            await ra.send(f"<message to='{bob}' type='chat' id='{id_}'><body>x</body>"
                          f"{payload}</message>")
            got = await rb.read_until(lambda el, id_=id_: el.tag == C + "message"
                                      and el.get("id") == id_, timeout=20)
            p = got.find("{urn:example:payload}p")
            assert p is not None and dict(p.attrib) == {
                "{urn:example:o}a": "1", "{urn:example:o}b": "2", "{urn:example:t}a": "3"}
        # both directions of the link still carry stanzas (XEP-0199 ping of b.test)
        pong = await ra.iq("<ping xmlns='urn:xmpp:ping'/>", to=B, id_="p", timeout=20)
        assert pong.get("type") == "result", ET.tostring(pong)
        assert "not-well-formed" not in pair.a.log() + pair.b.log()
        ra.close()
        rb.close()

    run(body(), timeout=120)


def test_unknown_domain_is_bounced(pair: Pair) -> None:
    alice, pw = pair.a.new_user("erin", A)

    async def body() -> None:
        raw = await DomainRawStream.open(pair.a.c2s_port)
        await raw.login(str(pair.a.ca.ca_file), alice.split("@")[0], pw, A)
        await raw.send("<message to='x@nowhere.invalid' id='u1' type='chat'><body>?</body>"
                       "</message>")
        el = await raw.read_until(lambda e: e.get("id") == "u1", timeout=15)
        assert el.get("type") == "error" and stanza_error(el) == (
            "cancel", "remote-server-not-found")
        raw.close()

    run(body())


def _bounced_or_delivered(sent: set[str], bounced: set[str], delivered: set[str]) -> bool:
    return sent == bounced | delivered


def test_peer_stopping_mid_stream_loses_nothing(ca: CertAuthority, tmp_path: Path) -> None:
    """b.test shuts down while a.test has a stream to it: messages sent meanwhile come back
    as errors (or are delivered once b.test is back), never vanish; then federation
    resumes on its own."""
    gen = start_pair(tmp_path, ca, verified=False)
    pair = next(gen)
    try:
        alice, _ = pair.a.new_user("fay", A)
        bob, _ = pair.b.new_user("gil", B)

        async def phase1() -> None:
            ca_ = await connect(pair.a, alice + "/x")
            cb = await connect(pair.b, bob + "/x")
            ca_.send_message(mto=bob, mbody="before", mtype="chat")
            assert (await cb.next_message(timeout=15))["body"] == "before"
            await cb.close()
            await ca_.close()

        run(phase1())
        assert pair.b.stop() == 0

        async def phase2() -> set[str]:
            ca_ = await connect(pair.a, alice + "/x")
            sent = {f"while-down-{i}" for i in range(5)}
            for i in range(5):
                ca_.send_message(mto=bob, mbody=f"while-down-{i}", mtype="chat")
            bounced: set[str] = set()
            while bounced != sent:
                m = await ca_.next_message(timeout=20, where=lambda m: m["type"] == "error")
                assert m["error"]["condition"] in ("remote-server-timeout",
                                                   "remote-server-not-found")
                bounced.add(m["body"])
            await ca_.close()
            return bounced

        assert run(phase2(), timeout=90) == {f"while-down-{i}" for i in range(5)}
        pair.b.start()

        async def phase3() -> None:
            ca_ = await connect(pair.a, alice + "/x")
            cb = await connect(pair.b, bob + "/x")
            delivered: set[str] = set()
            bounced: set[str] = set()
            sent: set[str] = set()
            deadline = time.monotonic() + 60
            i = 0
            while not delivered:  # keep trying until federation is back (backoff may bounce)
                assert time.monotonic() < deadline, (sent, bounced, delivered)
                body_ = f"after-{i}"
                sent.add(body_)
                ca_.send_message(mto=bob, mbody=body_, mtype="chat")
                try:
                    m = await cb.next_message(timeout=3)
                    delivered.add(m["body"])
                except TimeoutError:
                    pass
                while not ca_.messages.empty():
                    m = ca_.messages.get_nowait()
                    if m["type"] == "error":
                        bounced.add(m["body"])
                i += 1
            # Over the s2s stream now up, in order after every message still queued for it;
            # what bounced earlier was written to ca_ before the answer comes back.
            await barrier_to(ca_, cb)
            while not cb.messages.empty():
                delivered.add(cb.messages.get_nowait()["body"])
            while not ca_.messages.empty():
                m = ca_.messages.get_nowait()
                if m["type"] == "error":
                    bounced.add(m["body"])
            assert _bounced_or_delivered(sent, bounced, delivered), (sent, bounced, delivered)
            await cb.close()
            await ca_.close()

        run(phase3(), timeout=120)
    finally:
        gen.close()


def test_inbound_log_names_peer(pair: Pair) -> None:
    """Stream events are logged with the peer address."""
    user, _ = pair.a.new_user("logger", A)

    async def body() -> None:
        c = await connect(pair.a, user + "/r")
        assert await c.plugin["xep_0199"].ping(B, timeout=20) is not None  # a stream to B
        await c.close()

    run(body())
    assert any("s2s connection from 127.0.0.1:" in line for line in pair.b.log().splitlines())



def test_cross_server_muc_join(pair: Pair) -> None:
    """A b.test user joins a room at conference.a.test (XEP-0045 over s2s: the room's
    domain is a routed subdomain, authenticated on its own or multiplexed, XEP-0220 §2.5)."""
    from tests.integration.test_muc_support import PLUGINS, codes, configure, join_stanza

    owner, _ = pair.a.new_user("owner", A)
    guest, _ = pair.b.new_user("guest", B)
    room = f"fedroom{int(time.time() * 1000) % 100000}@conference.{A}"

    async def enter(c: Client, nick: str) -> Any:
        c.send_raw(join_stanza(room, nick))
        return await c.next_presence(timeout=20, where=lambda p: p["from"].bare == room and (
            p["type"] == "error" or 110 in codes(p)))

    async def body() -> None:
        co = await connect(pair.a, owner + "/r", plugins=PLUGINS)
        cg = await connect(pair.b, guest + "/r", plugins=PLUGINS)
        pres = await enter(co, "Owner")
        assert 201 in codes(pres), pres
        await configure(co, room, {})  # an instant room (§10.1.2)
        pres = await enter(cg, "Guest")
        assert pres["type"] != "error" and 110 in codes(pres), pres
        assert pres["from"] == f"{room}/Guest"
        await co.next_presence(timeout=15, where=lambda p: p["from"] == f"{room}/Guest")
        co.send_message(mto=room, mbody="welcome, far traveller", mtype="groupchat")
        m = await cg.next_message(timeout=15, where=lambda m: m["type"] == "groupchat"
                                  and m["body"] == "welcome, far traveller")
        assert m["from"] == f"{room}/Owner"
        cg.send_message(mto=room, mbody="thanks", mtype="groupchat")
        m = await co.next_message(timeout=15, where=lambda m: m["type"] == "groupchat"
                                  and m["body"] == "thanks")
        assert m["from"] == f"{room}/Guest"
        await cg.close()
        await co.next_presence(timeout=15, where=lambda p: p["from"] == f"{room}/Guest"
                               and p["type"] == "unavailable")
        await co.close()

    run(body(), timeout=120)


def test_check_reports_what_federation_needs(pair: Pair) -> None:
    """``xmppd check``: a certificate peers can verify, or what they will make of it."""
    r = pair.a.cli("check")
    assert r.returncode == 0, r.stdout + r.stderr
    if "ca_file" in pair.a.config_path.read_text():
        assert "ok: federation: DNS records and certificates in place" in r.stdout, r.stdout
    else:
        assert f"warning: {A}: certificate" in r.stdout, r.stdout
        assert "not trusted by the system store" in r.stdout and "dialback" in r.stdout
