"""A resumed session is the same session (XEP-0198 §5): after a TCP drop and <resume/>, every
piece of per-session state behaves as before, seen from the outside.

XEP-0198 §5 tells a resuming client not to request the roster again, not to resend its
presence and not to re-establish other state, "since this state will have been retained by
the server". Each test builds one piece of that state on a stream-managed raw client, drops
its TCP connection abruptly (RST, no closing tag), resumes on a new connection, and then has
another client act so that the state must show on the resumed stream (a roster push, a
carbon copy, a groupchat message ...) or towards others (presence, directed presence).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import ssl
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator

import pytest
import websockets

from tests.conftest import start_server
from tests.integration.test_cluster import Cluster
from tests.integration.test_cluster import cluster as cluster
from tests.integration.test_muc_support import PLUGINS as MUC_PLUGINS
from tests.integration.test_muc_support import close, create, messages
from tests.integration.test_muc_support import next_message as room_message
from tests.integration.test_presence import befriend
from tests.support.ca import CertAuthority
from tests.support.client import Client, connect, run
from tests.support.raw import NS_SM, C, RawStream, q
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration

ROSTER = "jabber:iq:roster"
BLOCKING = "urn:xmpp:blocking"
CARBONS = "urn:xmpp:carbons:2"
CSI = "urn:xmpp:csi:0"
CAPS = "http://jabber.org/protocol/caps"
DISCO = "http://jabber.org/protocol/disco#info"
PUBSUB = "http://jabber.org/protocol/pubsub"
EVENT = PUBSUB + "#event"
MUC = "http://jabber.org/protocol/muc"
USER = MUC + "#user"
PING = "urn:xmpp:ping"
FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND = "urn:ietf:params:xml:ns:xmpp-bind"

Match = Callable[[ET.Element], bool]


@pytest.fixture(scope="module")
def srv(backend: str, ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[ServerProcess]:
    yield from start_server(tmp_path_factory.mktemp(f"resume-{backend}"), backend, ca, config={
        "plugins": {"smacks": {"resume_timeout": 60.0, "ack_delay": 0.2}}})


@pytest.fixture(scope="module")
def tight(backend: str, ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[ServerProcess]:
    """A server that keeps at most five unacknowledged stanzas per session."""
    yield from start_server(tmp_path_factory.mktemp(f"tight-{backend}"), backend, ca, config={
        "plugins": {"smacks": {"resume_timeout": 60.0, "ack_delay": 0.2, "max_unacked": 5}}})


# -- the resumable client ------------------------------------------------------------------------
async def sm_login(srv: ServerProcess, jid: str, resource: str = "r") -> RawStream:
    """Log in, bind ``resource`` and enable resumable stream management."""
    raw = await RawStream.open(srv.c2s_port)
    await raw.login(str(srv.ca.ca_file), jid.split("@")[0], srv.passwords[jid],
                    resource=resource)
    enabled = await raw.enable_sm(resume=True)
    assert enabled.tag == q(NS_SM, "enabled") and enabled.get("resume") == "true"
    raw.previd = enabled.get("id")  # type: ignore[attr-defined]
    return raw


async def drop_and_resume(srv: ServerProcess, raw: RawStream, witness: Client) -> RawStream:
    """Drop ``raw``'s TCP connection (RST), make sure the server has seen the drop (the
    session is hibernating, not merely about to notice), then resume on a new connection."""
    bare = raw.jid.split("/")[0]
    raw.kill()
    # Over loopback the RST is already queued at the server when the witness's ping leaves,
    # and the server handles readable sockets before it writes the pong (one reactor turn).
    await witness.plugin["xep_0199"].ping("localhost", timeout=10)
    new = await RawStream.open(srv.c2s_port)
    await new.authenticate(str(srv.ca.ca_file), bare.split("@")[0], srv.passwords[bare])
    previd = raw.previd  # type: ignore[attr-defined]
    await new.send(f"<resume xmlns='{NS_SM}' previd='{previd}' h='{raw.h}'/>")
    resumed = await new.read()
    assert resumed.tag == q(NS_SM, "resumed"), ET.tostring(resumed)
    new.sm_enabled, new.h, new.jid = True, raw.h, raw.jid
    new.previd = previd  # type: ignore[attr-defined]
    return new


async def announce(raw: RawStream, inner: str = "") -> list[ET.Element]:
    """Initial presence; the server's copy back to us (RFC 6121 §4.2.2) ends the exchange.
    Returns what arrived before that copy (offline messages may come first)."""
    await raw.send(f"<presence>{inner}</presence>")
    before: list[ET.Element] = []
    while True:
        el = await raw.read()
        if el.tag == C + "presence" and el.get("from") == raw.jid:
            return before
        before.append(el)


async def ping(raw: RawStream) -> list[ET.Element]:
    """A round trip to the server; returns what arrived before the answer (a barrier: what
    the server wrote to this stream earlier comes first)."""
    pid = f"ping{secrets.token_hex(3)}"
    await raw.send(f"<iq type='get' id='{pid}' to='localhost'><ping xmlns='{PING}'/></iq>")
    before: list[ET.Element] = []
    while True:
        el = await raw.read()
        if el.tag == C + "iq" and el.get("id") == pid:
            return before
        before.append(el)


async def sm_barrier(raw: RawStream) -> list[ET.Element]:
    """Like ``ping`` but with an XEP-0198 <r/>: the <a/> is not a stanza, so it does not
    make client state indication flush what it holds."""
    await raw.send(f"<r xmlns='{NS_SM}'/>")
    before: list[ET.Element] = []
    while True:
        el = await raw.read()
        if el.tag == q(NS_SM, "a"):
            return before
        before.append(el)


def roster_push(contact: str, subscription: str) -> Match:
    def match(el: ET.Element) -> bool:
        item = el.find(f"{{{ROSTER}}}query/{{{ROSTER}}}item")
        return (el.tag == C + "iq" and el.get("type") == "set" and item is not None
                and item.get("jid") == contact and item.get("subscription") == subscription)
    return match


def body_is(text: str) -> Match:
    return lambda el: el.tag == C + "message" and el.findtext(C + "body") == text


async def friends(srv: ServerProcess, a: str, b: str) -> None:
    """Make ``a`` and ``b`` mutual subscribers ('both'), with throwaway sessions."""
    ca, cb = await connect(srv, a + "/setup"), await connect(srv, b + "/setup")
    await befriend(ca, cb)
    await close(ca, cb)


# -- the state items -----------------------------------------------------------------------------
def test_roster_pushes_reach_the_resumed_stream(srv: ServerProcess) -> None:
    """RFC 6121 §2.1.6: a resource that requested the roster gets every push; after the
    resumption a mutual subscription still reaches it as 'to', then 'both' (issue 15)."""
    a, _ = srv.new_user("rost")
    b, _ = srv.new_user("rost")

    async def body() -> None:
        cb = await connect(srv, b + "/x")
        await cb.get_roster()
        ra = await sm_login(srv, a)
        await ra.iq(f"<query xmlns='{ROSTER}'/>", id_="roster1")
        await announce(ra)
        await ra.send(f"<presence type='subscribe' to='{b}'/>")
        await ra.read_until(roster_push(b, "none"))  # ask='subscribe'
        await cb.next_presence(where=lambda p: p["type"] == "subscribe")
        ra = await drop_and_resume(srv, ra, cb)
        cb.send_presence(pto=a, ptype="subscribed")
        await ra.read_until(roster_push(b, "to"))
        cb.send_presence(pto=a, ptype="subscribe")
        await ra.read_until(lambda e: e.tag == C + "presence" and e.get("type") == "subscribe")
        await ra.send(f"<presence type='subscribed' to='{b}'/>")
        await ra.read_until(roster_push(b, "both"))
        await cb.close()
        assert await ra.eof()

    run(body())


def test_presence_and_priority_survive(srv: ServerProcess) -> None:
    """RFC 6121 §4 / §8.5.2: the resumed resource is still available with its priority: a
    message to the bare JID goes to it (not to the lower-priority resource), a contact's new
    resource gets its presence from a probe, and contacts never saw it go unavailable."""
    a, _ = srv.new_user("prio")
    c, _ = srv.new_user("prio")

    async def body() -> None:
        await friends(srv, a, c)
        cc = await connect(srv, c + "/desk")
        ra = await sm_login(srv, a)
        await announce(ra, "<priority>5</priority><status>resumable</status>")
        await cc.next_presence(where=lambda p: str(p["from"]) == a + "/r")
        a2 = await connect(srv, a + "/low", priority=1)
        ra = await drop_and_resume(srv, ra, cc)
        cc.send_message(mto=a, mbody="to the bare JID", mtype="chat")
        await ra.read_until(body_is("to the bare JID"))
        cc.send_message(mto=a + "/low", mbody="marker", mtype="chat")
        assert (await a2.next_message())["body"] == "marker"  # nothing came before it
        cc2 = await connect(srv, c + "/phone")  # probes a: the answer is a's kept presence
        p = await cc2.next_presence(where=lambda p: str(p["from"]) == a + "/r")
        assert p["type"] == "available" and p["priority"] == 5 and p["status"] == "resumable"
        seen = []
        while not cc.presences.empty():
            seen.append(cc.presences.get_nowait())
        assert not [p for p in seen if str(p["from"]) == a + "/r"
                    and p["type"] == "unavailable"], seen
        await close(a2, cc, cc2)
        assert await ra.eof()

    run(body())


def test_directed_presence_is_revoked_when_the_resumed_session_ends(
        srv: ServerProcess) -> None:
    """RFC 6121 §4.6.3: whoever got directed presence gets unavailable when the session
    ends; the resumed stream still knows whom it told."""
    a, _ = srv.new_user("dir")
    e, _ = srv.new_user("dir")

    async def body() -> None:
        ce = await connect(srv, e + "/x")
        ra = await sm_login(srv, a)
        await announce(ra)
        await ra.send(f"<presence to='{e}/x'><status>hello stranger</status></presence>")
        await ce.next_presence(where=lambda p: str(p["from"]) == a + "/r"
                               and p["type"] == "available")
        ra = await drop_and_resume(srv, ra, ce)
        assert await ra.eof()  # a clean end of the resumed session
        p = await ce.next_presence(where=lambda p: str(p["from"]) == a + "/r")
        assert p["type"] == "unavailable"
        await ce.close()

    run(body())


def test_carbons_stay_enabled(srv: ServerProcess) -> None:
    """XEP-0280 §3.1: enabling carbons lasts for the session, resumed or not."""
    a, _ = srv.new_user("carb")
    c, _ = srv.new_user("carb")

    async def body() -> None:
        cc = await connect(srv, c + "/x")
        a2 = await connect(srv, a + "/two")
        ra = await sm_login(srv, a)
        enabled = await ra.iq(f"<enable xmlns='{CARBONS}'/>", type_="set", id_="carb1")
        assert enabled.get("type") == "result"
        await announce(ra)
        ra = await drop_and_resume(srv, ra, cc)
        cc.send_message(mto=a + "/two", mbody="for two", mtype="chat")
        received = await ra.read_until(
            lambda e: e.find(f"{{{CARBONS}}}received") is not None)
        assert received.findtext(f".//{C}body") == "for two"
        a2.send_message(mto=c, mbody="from two", mtype="chat")
        sent = await ra.read_until(lambda e: e.find(f"{{{CARBONS}}}sent") is not None)
        assert sent.findtext(f".//{C}body") == "from two"
        await close(a2, cc)
        assert await ra.eof()

    run(body())


def test_inactive_client_state_stays_inactive(srv: ServerProcess) -> None:
    """XEP-0352: a client that said <inactive/> is still inactive after resuming, so a
    contact's presence update is held (plugins/csi.py) until it says <active/>."""
    a, _ = srv.new_user("csi")
    c, _ = srv.new_user("csi")

    async def body() -> None:
        await friends(srv, a, c)
        cc = await connect(srv, c + "/x")
        ra = await sm_login(srv, a)
        await announce(ra)
        await ra.read_until(lambda e: e.tag == C + "presence" and e.get("from") == c + "/x")
        await ra.send(f"<inactive xmlns='{CSI}'/>")
        await ping(ra)  # handled before the drop
        ra = await drop_and_resume(srv, ra, cc)
        cc.send_presence(pshow="away", pstatus="held")
        await cc.plugin["xep_0199"].ping("localhost", timeout=10)  # the update was routed
        early = await sm_barrier(ra)
        assert not [e for e in early if e.tag == C + "presence"], [ET.tostring(e) for e in early]
        await ra.send(f"<active xmlns='{CSI}'/>")
        p = await ra.read_until(lambda e: e.tag == C + "presence"
                                and e.get("from") == c + "/x")
        assert p.findtext(C + "status") == "held"
        await cc.close()
        assert await ra.eof()

    run(body())


def test_blocklist_pushes_reach_the_resumed_stream(srv: ServerProcess) -> None:
    """XEP-0191 §3.2: a resource that requested the blocklist gets block pushes."""
    a, _ = srv.new_user("blk")

    async def body() -> None:
        a2 = await connect(srv, a + "/two")
        ra = await sm_login(srv, a)
        got = await ra.iq(f"<blocklist xmlns='{BLOCKING}'/>", id_="bl1")
        assert got.get("type") == "result"
        await announce(ra)
        ra = await drop_and_resume(srv, ra, a2)
        block = a2.make_iq_set()
        block.xml.append(ET.fromstring(
            f"<block xmlns='{BLOCKING}'><item jid='spammer@example.org'/></block>"))
        await block.send()
        push = await ra.read_until(lambda e: e.tag == C + "iq" and e.get("type") == "set")
        item = push.find(f"{{{BLOCKING}}}block/{{{BLOCKING}}}item")
        assert item is not None and item.get("jid") == "spammer@example.org"
        await a2.close()
        assert await ra.eof()

    run(body())


def test_resuming_with_an_impossible_count_fails_cleanly(srv: ServerProcess) -> None:
    """XEP-0198 §6: an error about <resume/> is answered with <failed/> on that stream (the
    client must not be left waiting for an answer that never comes), the client may then
    bind a resource on it (§5), and what the old session never got acknowledged reaches
    the new resource from offline storage rather than being lost."""
    a, _ = srv.new_user("badh")
    c, _ = srv.new_user("badh")

    async def body() -> None:
        cc = await connect(srv, c + "/x")
        ra = await sm_login(srv, a)
        await announce(ra)
        cc.send_message(mto=a + "/r", mbody="unacknowledged", mtype="chat")
        await ra.read_until(body_is("unacknowledged"))
        bare = a.split("@")[0]
        ra.kill()
        await cc.plugin["xep_0199"].ping("localhost", timeout=10)
        new = await RawStream.open(srv.c2s_port)
        await new.authenticate(str(srv.ca.ca_file), bare, srv.passwords[a])
        previd = ra.previd  # type: ignore[attr-defined]
        await new.send(f"<resume xmlns='{NS_SM}' previd='{previd}' h='{ra.h + 1000}'/>")
        failed = await new.read()
        assert failed.tag == q(NS_SM, "failed"), ET.tostring(failed)
        assert failed.find(
            "{urn:ietf:params:xml:ns:xmpp-stanzas}undefined-condition") is not None
        assert await new.bind("again")
        early = [e for e in await announce(new) if body_is("unacknowledged")(e)]
        redelivered = early[0] if early else await new.read_until(body_is("unacknowledged"))
        assert redelivered.find("{urn:xmpp:delay}delay") is not None  # from offline storage
        third = await RawStream.open(srv.c2s_port)  # the old session is over
        await third.authenticate(str(srv.ca.ca_file), bare, srv.passwords[a])
        await third.send(f"<resume xmlns='{NS_SM}' previd='{previd}' h='{ra.h}'/>")
        gone = await third.read()
        assert gone.tag == q(NS_SM, "failed")
        assert gone.find("{urn:ietf:params:xml:ns:xmpp-stanzas}item-not-found") is not None
        assert await third.eof()
        await cc.close()
        assert await new.eof()

    run(body())


def test_a_hibernating_session_cannot_hoard_past_the_unacknowledged_limit(
        tight: ServerProcess) -> None:
    """max_unacked bounds memory while the session hibernates too: past it the session
    ends (it can no longer be resumed, as a live stream past it is closed) and every
    message it held, and every later one, reaches the user from offline storage, once."""
    srv = tight
    a, _ = srv.new_user("hoard")
    c, _ = srv.new_user("hoard")
    sent = [f"m{i}" for i in range(8)]

    def chat(e: ET.Element) -> bool:
        return e.tag == C + "message" and (e.findtext(C + "body") or "") in sent

    async def body() -> None:
        cc = await connect(srv, c + "/x")
        ra = await sm_login(srv, a)
        await announce(ra)
        await ra.ack()
        bare = a.split("@")[0]
        ra.kill()
        await cc.plugin["xep_0199"].ping("localhost", timeout=10)
        for text in sent:
            cc.send_message(mto=a + "/r", mbody=text, mtype="chat")
        await cc.plugin["xep_0199"].ping("localhost", timeout=10)  # all routed
        new = await RawStream.open(srv.c2s_port)
        await new.authenticate(str(srv.ca.ca_file), bare, srv.passwords[a])
        previd = ra.previd  # type: ignore[attr-defined]
        await new.send(f"<resume xmlns='{NS_SM}' previd='{previd}' h='{ra.h}'/>")
        failed = await new.read()
        assert failed.tag == q(NS_SM, "failed"), ET.tostring(failed)
        await new.bind("again")
        # Offline messages may come before the presence echo (RFC 6121 §4.2.2 leaves the
        # order open), so what announce() read counts too.
        got = [e.findtext(C + "body") for e in await announce(new) if chat(e)]
        while len(got) < len(sent):
            got.append((await new.read_until(chat)).findtext(C + "body"))
        got += [e.findtext(C + "body") for e in await ping(new) if chat(e)]
        assert sorted(got) == sent  # each exactly once
        await cc.close()
        assert await new.eof()

    run(body())


def test_a_live_stream_past_the_unacknowledged_limit_ends_its_session(
        tight: ServerProcess) -> None:
    """The same limit on a connected client: <policy-violation/>, and the session ends with
    the stream instead of hibernating with its oversized queue; what it held arrives from
    offline storage at the next login."""
    srv = tight
    a, _ = srv.new_user("flood")
    c, _ = srv.new_user("flood")
    sent = [f"m{i}" for i in range(8)]

    def chat(e: ET.Element) -> bool:
        return e.tag == C + "message" and (e.findtext(C + "body") or "") in sent

    async def body() -> None:
        cc = await connect(srv, c + "/x")
        ra = await sm_login(srv, a)
        await announce(ra)
        await ra.ack()
        for text in sent:
            cc.send_message(mto=a + "/r", mbody=text, mtype="chat")
        assert await ra.stream_error() == "policy-violation"
        new = await RawStream.open(srv.c2s_port)
        await new.authenticate(str(srv.ca.ca_file), a.split("@")[0], srv.passwords[a])
        previd = ra.previd  # type: ignore[attr-defined]
        await new.send(f"<resume xmlns='{NS_SM}' previd='{previd}' h='{ra.h}'/>")
        failed = await new.read()
        assert failed.tag == q(NS_SM, "failed"), ET.tostring(failed)
        await new.bind("again")
        # Offline messages may come before the presence echo (RFC 6121 §4.2.2 leaves the
        # order open), so what announce() read counts too.
        got = [e.findtext(C + "body") for e in await announce(new) if chat(e)]
        while len(got) < len(sent):
            got.append((await new.read_until(chat)).findtext(C + "body"))
        got += [e.findtext(C + "body") for e in await ping(new) if chat(e)]
        assert sorted(got) == sent
        await cc.close()
        assert await new.eof()

    run(body())


class WsSM:
    """A stream-managed RFC 7395 client (what Converse.js is), counting what it handles."""

    def __init__(self, conn: websockets.ClientConnection) -> None:
        self.conn, self.h, self.counting = conn, 0, False

    @classmethod
    async def open(cls, srv: ServerProcess) -> WsSM:
        ctx = ssl.create_default_context(cafile=str(srv.ca.ca_file))
        ctx.check_hostname = False
        conn = await websockets.connect(f"wss://127.0.0.1:{srv.https_port}/xmpp-websocket",
                                        subprotocols=["xmpp"], ssl=ctx)
        return cls(conn)

    async def send(self, xml: str) -> None:
        await self.conn.send(xml)

    async def recv(self) -> ET.Element:
        el = ET.fromstring(await asyncio.wait_for(self.conn.recv(), 10))
        if self.counting and el.tag in (C + "iq", C + "presence", C + "message"):
            self.h += 1
        return el

    async def recv_until(self, match: Match) -> ET.Element:
        while not match(el := await self.recv()):
            pass
        return el

    async def authenticate(self, jid: str, pw: str) -> None:
        for step in range(2):
            await self.send(f"<open xmlns='{FRAMING}' to='localhost' version='1.0'/>")
            await self.recv_until(lambda e: e.tag.endswith("}features"))
            if step == 0:
                token = base64.b64encode(f"\0{jid.split('@')[0]}\0{pw}".encode()).decode()
                await self.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{token}</auth>")
                assert (await self.recv()).tag == f"{{{SASL}}}success"


def test_a_websocket_client_resumes_with_its_roster_interest(srv: ServerProcess) -> None:
    """The issue's client: Converse.js over WebSocket, cut off and resumed on a new
    WebSocket; the mutual subscription that follows still reaches it as roster pushes."""
    a, _ = srv.new_user("wsr")
    b, _ = srv.new_user("wsr")

    async def body() -> None:
        cb = await connect(srv, b + "/x")
        await cb.get_roster()
        ws = await WsSM.open(srv)
        await ws.authenticate(a, srv.passwords[a])
        await ws.send(f"<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='{BIND}'>"
                      "<resource>web</resource></bind></iq>")
        await ws.recv()
        await ws.send(f"<enable xmlns='{NS_SM}' resume='true'/>")
        enabled = await ws.recv()
        assert enabled.tag == q(NS_SM, "enabled"), ET.tostring(enabled)
        ws.counting = True
        await ws.send(f"<iq xmlns='jabber:client' type='get' id='r1'><query xmlns='{ROSTER}'/>"
                      "</iq>")
        await ws.recv_until(lambda e: e.get("id") == "r1")
        await ws.send("<presence xmlns='jabber:client'/>")
        await ws.send(f"<presence xmlns='jabber:client' type='subscribe' to='{b}'/>")
        await ws.recv_until(roster_push(b, "none"))
        await cb.next_presence(where=lambda p: p["type"] == "subscribe")
        ws.conn.transport.abort()  # the TCP connection under the WebSocket dies
        await cb.plugin["xep_0199"].ping("localhost", timeout=10)
        again = await WsSM.open(srv)
        await again.authenticate(a, srv.passwords[a])
        await again.send(f"<resume xmlns='{NS_SM}' previd='{enabled.get('id')}' h='{ws.h}'/>")
        resumed = await again.recv()
        assert resumed.tag == q(NS_SM, "resumed"), ET.tostring(resumed)
        again.counting, again.h = True, ws.h
        cb.send_presence(pto=a, ptype="subscribed")
        await again.recv_until(roster_push(b, "to"))
        cb.send_presence(pto=a, ptype="subscribe")
        await again.recv_until(lambda e: e.get("type") == "subscribe")
        await again.send(f"<presence xmlns='jabber:client' type='subscribed' to='{b}'/>")
        await again.recv_until(roster_push(b, "both"))
        await again.send(f"<close xmlns='{FRAMING}'/>")
        await again.recv_until(lambda e: e.tag == f"{{{FRAMING}}}close")
        await cb.close()

    run(body())


def caps_ver(identity: tuple[str, str, str], features: list[str]) -> str:
    """XEP-0115 §5.1 verification string (one identity, no forms), SHA-1, base64."""
    s = "/".join((identity[0], identity[1], "", identity[2])) + "<"
    s += "".join(f + "<" for f in sorted(features))
    return base64.b64encode(hashlib.sha1(s.encode()).digest()).decode()


def test_pep_notifications_follow_the_resumed_stream(srv: ServerProcess) -> None:
    """XEP-0163 §4: interests learnt from the resource's caps (+notify) keep bringing
    notifications of a contact's publications after the resumption."""
    a, _ = srv.new_user("pep")
    c, _ = srv.new_user("pep")
    node = f"urn:test:resume:{secrets.token_hex(4)}"
    identity = ("client", "pc", "resume-test")
    features = [DISCO, f"{node}+notify"]
    ver = caps_ver(identity, features)

    def notification(e: ET.Element) -> bool:
        items = e.find(f"{{{EVENT}}}event/{{{EVENT}}}items")
        return e.tag == C + "message" and items is not None and items.get("node") == node

    async def publish(cc: Client, text: str) -> None:
        iq = cc.make_iq_set()
        iq.xml.append(ET.fromstring(
            f"<pubsub xmlns='{PUBSUB}'><publish node='{node}'><item id='current'>"
            f"<t xmlns='urn:test'>{text}</t></item></publish></pubsub>"))
        await iq.send()

    async def body() -> None:
        await friends(srv, a, c)
        cc = await connect(srv, c + "/x", plugins=("xep_0060",))
        ra = await sm_login(srv, a)
        await ra.send(f"<presence><c xmlns='{CAPS}' hash='sha-1' node='urn:test:client' "
                      f"ver='{ver}'/></presence>")
        query = await ra.read_until(lambda e: e.tag == C + "iq" and e.get("type") == "get"
                                    and e.find(f"{{{DISCO}}}query") is not None)
        feats = "".join(f"<feature var='{f}'/>" for f in features)
        await ra.send(
            f"<iq type='result' id='{query.get('id')}' to='{query.get('from')}'>"
            f"<query xmlns='{DISCO}' node='urn:test:client#{ver}'>"
            f"<identity category='{identity[0]}' type='{identity[1]}' name='{identity[2]}'/>"
            f"{feats}</query></iq>")
        await ping(ra)  # the answer has been handled
        await publish(cc, "before")
        await ra.read_until(notification)
        ra = await drop_and_resume(srv, ra, cc)
        await publish(cc, "after")
        ev = await ra.read_until(notification)
        assert ev.findtext(".//{urn:test}t") == "after"
        await cc.close()
        assert await ra.eof()

    run(body())


def test_room_occupancy_survives(srv: ServerProcess) -> None:
    """XEP-0045: the resumed resource is still an occupant: it gets the room's messages,
    may speak, and the others never saw it leave."""
    a, _ = srv.new_user("muc")
    room = f"resume{secrets.token_hex(4)}@conference.localhost"

    async def body() -> None:
        owner = await connect(srv, srv.new_user("own")[0] + "/x", plugins=MUC_PLUGINS)
        messages(owner)
        await create(owner, room, "Owner")
        ra = await sm_login(srv, a)
        await announce(ra)
        await ra.send(f"<presence to='{room}/Resumer'><x xmlns='{MUC}'/></presence>")
        await ra.read_until(lambda e: e.tag == C + "presence" and e.get("from") == (
            f"{room}/Resumer") and e.find(f"{{{USER}}}x/{{{USER}}}status[@code='110']")
            is not None)
        await owner.next_presence(where=lambda p: str(p["from"]) == f"{room}/Resumer")
        ra = await drop_and_resume(srv, ra, owner)
        owner.send_message(mto=room, mbody="still there?", mtype="groupchat")
        await ra.read_until(body_is("still there?"))
        await ra.send(f"<message to='{room}' type='groupchat'><body>yes</body></message>")
        await room_message(owner, where=lambda m: m["body"] == "yes")
        seen = []
        while not owner.presences.empty():
            seen.append(owner.presences.get_nowait())
        assert not [p for p in seen if str(p["from"]) == f"{room}/Resumer"
                    and p["type"] == "unavailable"], seen
        await owner.close()
        assert await ra.eof()

    run(body())


def test_other_cluster_nodes_keep_serving_the_resumed_session(cluster: Cluster) -> None:
    """xmppd/cluster.py: the other node's proxy of the resource keeps its shared flags
    (roster requested, carbons) across the resumption, and what the resumed stream changes
    afterwards (priority, then a flag) reaches it as the resumed session's state, not as
    the state of the connection that died."""
    n1, n2 = cluster.n1, cluster.n2
    a, c, w = cluster.new_user("cla"), cluster.new_user("clc"), cluster.new_user("clw")

    async def body() -> None:
        await friends(n1, a, c)
        cc = await connect(n2, c + "/x")
        ra = await sm_login(n1, a)
        await ra.iq(f"<query xmlns='{ROSTER}'/>", id_="roster1")
        await ra.iq(f"<enable xmlns='{CARBONS}'/>", type_="set", id_="carb1")
        await announce(ra, "<priority>1</priority>")
        a2 = await connect(n2, a + "/two", priority=5)
        witness = await connect(n1, w + "/x")
        ra = await drop_and_resume(n1, ra, witness)
        # a roster change made on n2 is pushed to the resumed stream through n2's proxy
        item = a2.make_iq_set()
        item.xml.append(ET.fromstring(
            f"<query xmlns='{ROSTER}'><item jid='someone@example.org' name='S'/></query>"))
        await item.send()
        await ra.read_until(roster_push("someone@example.org", "none"))
        # n2 sends carbons of a message for a/two to the resumed stream
        cc.send_message(mto=a + "/two", mbody="for two", mtype="chat")
        received = await ra.read_until(
            lambda e: e.find(f"{{{CARBONS}}}received") is not None)
        assert received.findtext(f".//{C}body") == "for two"
        # the resumed stream raises its priority above a/two, then changes a shared flag:
        # n2 must route messages for the bare JID to it (RFC 6121 §8.5.2.1.1)
        await ra.send("<presence><priority>10</priority></presence>")
        await ra.iq(f"<blocklist xmlns='{BLOCKING}'/>", id_="bl1")
        for attempt in range(100):
            cc.send_message(mto=a, mbody=f"probe {attempt}", mtype="chat")
            await cc.plugin["xep_0199"].ping("localhost", timeout=10)
            got = await sm_barrier(ra) + await ping(ra)
            if [e for e in got if (e.findtext(C + "body") or "").startswith("probe")]:
                break
        else:
            raise AssertionError("n2 never routed the bare JID to the resumed stream")
        await close(a2, cc, witness)
        assert await ra.eof()

    run(body())
