"""XMPP over BOSH (XEP-0124, XEP-0206) at /http-bind, with a BOSH client over real HTTP."""

from __future__ import annotations

import asyncio
import json
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
from slixmpp.exceptions import IqError

from tests.conftest import start_server
from tests.support.bosh import (
    BIND,
    NS,
    SASL,
    STREAMS,
    XBOSH,
    BoshClient,
    C,
    context,
    http,
    wrapper,
)
from tests.support.ca import CertAuthority
from tests.support.client import connect, run
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def srv(ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from start_server(tmp_path_factory.mktemp("bosh"), "sqlite", ca, config={
        "listeners": [{"type": "c2s", "port": 0, "address": "127.0.0.1"},
                      {"type": "https", "port": 0, "address": "127.0.0.1"},
                      {"type": "http", "port": 0, "address": "127.0.0.1"}],
        "bosh": {"max_wait": 20, "inactivity": 30, "max_pause": 60,
                 "origins": ["https://allowed.example"]}})


def test_chat_over_bosh_with_a_tcp_user(srv: ServerProcess) -> None:
    """Session creation, SASL, restart, bind; messages both ways with a TCP user; a held
    request answered as soon as a message arrives (long polling); terminate."""
    a, apw = srv.new_user("bosh")
    b, _ = srv.new_user("tcp")

    async def body() -> None:
        bosh = BoshClient(srv)
        full = await bosh.login(a, apw)
        created = bosh.created
        assert created["wait"] == "20" and created["hold"] == "1" and created["requests"] == "2"
        assert created["inactivity"] == "30" and created["maxpause"] == "60"
        assert created["ver"] == "1.11" and created["from"] == "localhost"
        assert created[f"{{{XBOSH}}}version"] == "1.0"
        assert created[f"{{{XBOSH}}}restartlogic"] == "true"
        cb = await connect(srv, b + "/tcp")
        # A request held open (nothing to answer it with yet: a directed presence, whose
        # arrival at the TCP user shows that the server has the request), then answered
        # as soon as a message comes.
        poll = asyncio.create_task(bosh.send(f"<presence xmlns='jabber:client' to='{b}/tcp'/>"))
        await cb.next_presence(where=lambda p: str(p["from"]) == full)
        assert not poll.done()
        cb.send_message(mto=full, mbody="hello browser", mtype="chat")
        res = await asyncio.wait_for(poll, 10)
        msg = res.children[0]
        assert msg.tag == C + "message" and msg.findtext(C + "body") == "hello browser"
        # This request is held in turn (hold=1) until the next one comes.
        sent = asyncio.create_task(bosh.send(
            f"<message xmlns='jabber:client' to='{b}' type='chat'>"
            "<body>hello terminal</body></message>"))
        got = await cb.next_message(where=lambda m: m["type"] == "chat")
        assert got["body"] == "hello terminal" and str(got["from"]) == full
        assert not sent.done()
        # §13: a terminate request's payloads are forwarded before the session ends.
        res = await bosh.send(f"<message xmlns='jabber:client' to='{b}' type='chat'>"
                              "<body>bye</body></message>"
                              "<presence xmlns='jabber:client' type='unavailable'/>",
                              type="terminate")
        # XEP-0124 §13: the oldest open request acknowledges the termination, the others
        # get empty bodies.
        assert res.attrs == {} and res.children == []
        res = await asyncio.wait_for(sent, 5)
        assert res.attrs.get("type") == "terminate" and "condition" not in res.attrs
        bye = await cb.next_message(where=lambda m: m["type"] == "chat")
        assert bye["body"] == "bye"
        res = await bosh.send()  # the session is gone
        assert res.condition() == "item-not-found"
        await cb.close()

    run(body())


async def _settled(cb: object) -> None:
    """A protocol barrier for a TCP client: an IQ round trip (everything routed to it
    before has arrived when the answer does)."""
    await cb.plugin["xep_0199"].ping(timeout=10)  # type: ignore[attr-defined]


def test_a_repeated_rid_gets_the_same_response_and_nothing_twice(srv: ServerProcess) -> None:
    """XEP-0124 §14.3: a request sent again (its response was lost) is answered with the
    buffered copy; its payloads are not handled a second time."""
    a, apw = srv.new_user("replay")
    b, _ = srv.new_user("peer")

    async def body() -> None:
        bosh = BoshClient(srv)
        await bosh.login(a, apw)
        cb = await connect(srv, b + "/tcp")
        rid = bosh.next_rid()
        ping = (f"<message xmlns='jabber:client' to='{b}/tcp' type='chat' id='once'>"
                "<body>once</body></message><iq xmlns='jabber:client' type='get' id='p1'>"
                "<ping xmlns='urn:xmpp:ping'/></iq>")
        first = await bosh.send(ping, rid=rid)
        assert [c.get("id") for c in first.children] == ["p1"]
        again = await bosh.send(ping, rid=rid)
        assert again.raw == first.raw
        await _settled(cb)
        got = [await cb.next_message()]
        assert got[0]["id"] == "once"
        assert cb.messages.empty()  # delivered once, not twice
        # ... and the session carries on with the next rid.
        res = await bosh.send("<iq xmlns='jabber:client' type='get' id='p2'>"
                              "<ping xmlns='urn:xmpp:ping'/></iq>")
        assert [c.get("id") for c in res.children] == ["p2"]
        await cb.close()

    run(body())


def test_requests_are_taken_in_rid_order(srv: ServerProcess) -> None:
    """§14.2: a request that overtakes the one before it waits for it."""
    a, apw = srv.new_user("order")
    b, _ = srv.new_user("peer")

    async def body() -> None:
        bosh = BoshClient(srv)
        await bosh.login(a, apw)
        cb = await connect(srv, b + "/tcp")
        r1, r2 = bosh.next_rid(), bosh.next_rid()

        def msg(text: str) -> str:
            return (f"<message xmlns='jabber:client' to='{b}/tcp' type='chat'>"
                    f"<body>{text}</body></message>")

        # Two copies of the later request: whichever arrives second takes over and the
        # other gets a recoverable error (§14.3), which shows that the server holds the
        # request, unprocessed, before the earlier one has come.
        copies = {asyncio.create_task(bosh.send(msg("second"), rid=r2)) for _ in range(2)}
        done, pending = await asyncio.wait(copies, return_when=asyncio.FIRST_COMPLETED)
        assert next(iter(done)).result().attrs == {"type": "error"}
        await _settled(cb)
        assert cb.messages.empty()  # not forwarded before the rid before it
        first = asyncio.create_task(bosh.send(msg("first"), rid=r1))
        got = [(await cb.next_message())["body"], (await cb.next_message())["body"]]
        assert got == ["first", "second"]
        res1 = await asyncio.wait_for(first, 5)  # answered when the second was processed
        assert res1.attrs == {}
        await bosh.send(type="terminate")
        await asyncio.wait_for(pending.pop(), 5)
        await cb.close()

    run(body())


def test_the_same_rid_while_held_takes_over(srv: ServerProcess) -> None:
    """§14.3: a copy of a request still held: the earlier one gets a recoverable error,
    the copy the answer."""
    a, apw = srv.new_user("copy")

    async def body() -> None:
        bosh = BoshClient(srv)
        await bosh.login(a, apw)
        rid = bosh.next_rid()
        copies = {asyncio.create_task(bosh.send(rid=rid)) for _ in range(2)}
        done, pending = await asyncio.wait(copies, return_when=asyncio.FIRST_COMPLETED)
        assert next(iter(done)).result().attrs == {"type": "error"}
        copy = pending.pop()
        pinged = asyncio.create_task(bosh.send("<iq xmlns='jabber:client' type='get' id='p'>"
                                               "<ping xmlns='urn:xmpp:ping'/></iq>"))
        answered = await asyncio.wait_for(copy, 5)  # the oldest request carries the result
        assert [c.get("id") for c in answered.children] == ["p"]
        await bosh.send(type="terminate")
        assert (await asyncio.wait_for(pinged, 5)).attrs == {"type": "terminate"}

    run(body())


@pytest.mark.parametrize("which", ["stale", "beyond-window"])
def test_a_bad_rid_is_refused_and_its_payload_not_delivered(srv: ServerProcess,
                                                             which: str) -> None:
    """§14.2/§14.3: a rid already used (and no longer buffered) or beyond the window:
    item-not-found, the session ends (a terminal condition), and nothing the request
    carried is acted on."""
    a, apw = srv.new_user("rid")
    b, _ = srv.new_user("peer")

    async def body() -> None:
        bosh = BoshClient(srv)
        await bosh.login(a, apw)
        cb = await connect(srv, b + "/tcp")
        for _ in range(3):  # push the login's responses out of the replay buffer
            await bosh.send("<iq xmlns='jabber:client' type='get' id='x'>"
                            "<ping xmlns='urn:xmpp:ping'/></iq>")
        rid = bosh.rid - 4 if which == "stale" else bosh.rid + 2
        res = await bosh.send(f"<message xmlns='jabber:client' to='{b}/tcp' type='chat'>"
                              "<body>must not arrive</body></message>", rid=rid)
        assert res.status == 200 and res.condition() == "item-not-found"
        res = await bosh.send()
        assert res.condition() == "item-not-found"  # the session is gone
        await _settled(cb)
        assert cb.messages.empty()
        await cb.close()

    run(body())


def test_an_unknown_sid_changes_nothing(srv: ServerProcess) -> None:
    """§17.2 (1): a sid that is not a session's (made up, or another server's): item-not-
    found, and the payload is not handled; the real session is unaffected."""
    a, apw = srv.new_user("sid")
    b, _ = srv.new_user("peer")

    async def body() -> None:
        bosh = BoshClient(srv)
        await bosh.login(a, apw)
        cb = await connect(srv, b + "/tcp")
        res = await bosh.send(f"<message xmlns='jabber:client' to='{b}/tcp' type='chat'>"
                              "<body>must not arrive</body></message>",
                              sid=bosh.sid[::-1], rid=bosh.rid)
        assert res.status == 200 and res.condition() == "item-not-found"
        res = await bosh.send("<iq xmlns='jabber:client' type='get' id='p'>"
                              "<ping xmlns='urn:xmpp:ping'/></iq>")  # the same rid: fine
        assert [c.get("id") for c in res.children] == ["p"]
        await _settled(cb)
        assert cb.messages.empty()
        await cb.close()

    run(body())


def test_pause_answers_everything_and_bad_pauses_end_the_session(srv: ServerProcess) -> None:
    """§10: a pause request is answered at once (without payloads), with the request held
    before it; the session goes on afterwards. A pause longer than 'maxpause' breaks the
    rules: policy-violation."""
    a, apw = srv.new_user("pause")

    async def body() -> None:
        bosh = BoshClient(srv)
        await bosh.login(a, apw)
        rid = bosh.next_rid()  # the task takes its rid only when it runs
        held = asyncio.create_task(bosh.send(rid=rid))  # answered with the pause, whatever
        res = await bosh.send(pause="60")               # order the two arrive in
        assert res.attrs == {} and res.children == []
        assert (await asyncio.wait_for(held, 5)).attrs == {}
        res = await bosh.send("<iq xmlns='jabber:client' type='get' id='p'>"
                              "<ping xmlns='urn:xmpp:ping'/></iq>")
        assert [c.get("id") for c in res.children] == ["p"]
        res = await bosh.send(pause="61")
        assert res.condition() == "policy-violation"
        assert (await bosh.send()).condition() == "item-not-found"

    run(body())


def test_empty_requests_too_often_are_a_policy_violation(srv: ServerProcess) -> None:
    """§11/§12: a second empty request while the first is still held, within 'polling'
    seconds: the client polls faster than allowed."""
    a, apw = srv.new_user("poll")

    async def body() -> None:
        bosh = BoshClient(srv)
        await bosh.login(a, apw)
        rid = bosh.next_rid()
        held = asyncio.create_task(bosh.send(rid=rid))  # in whichever order the two
        res = await bosh.send()  # arrive, the later rid is the one that breaks the rule
        assert res.condition() == "policy-violation"
        assert (await asyncio.wait_for(held, 5)).condition() == "other-request"

    run(body())


def test_stream_errors_end_the_session_with_the_error_inside(srv: ServerProcess) -> None:
    """XEP-0206 §6: the C2S's stream errors (here a stanza before authentication, RFC 6120
    §6.4.1... not-authorized) come as remote-stream-error with the <stream:error/>."""
    async def body() -> None:
        bosh = BoshClient(srv)
        await bosh.create()
        res = await bosh.send("<message xmlns='jabber:client' to='x@localhost'>"
                              "<body>x</body></message>")
        assert res.condition() == "remote-stream-error"
        err = res.children[0]
        assert err.tag == f"{{{STREAMS}}}error"
        assert err[0].tag == "{urn:ietf:params:xml:ns:xmpp-streams}not-authorized"
        assert (await bosh.send()).condition() == "item-not-found"

    run(body())


@pytest.mark.parametrize("data,status", [
    (b"not xml", 400),
    (b"<body xmlns='urn:other' rid='1'/>", 400),
    (b"<body xmlns='http://jabber.org/protocol/httpbind' rid='1'><!-- c --></body>", 400),
    (b"<body xmlns='http://jabber.org/protocol/httpbind' rid='1'>text</body>", 400),
    (b"<body xmlns='http://jabber.org/protocol/httpbind' rid='1'><a/>", 400),
    (b"<body xmlns='http://jabber.org/protocol/httpbind' to='localhost'/>", 200),
    (b"<body xmlns='http://jabber.org/protocol/httpbind' rid='-5' to='localhost'/>", 200),
])
def test_bad_bodies_get_bad_request(srv: ServerProcess, data: bytes, status: int) -> None:
    """§6, §17: not a <body/>, restricted XML, character data, no rid: bad-request."""
    res = run(http(srv, data))
    assert res.status == status and res.condition() == "bad-request"


@pytest.mark.parametrize("attrs,condition", [
    ({"to": ""}, "improper-addressing"),
    ({"to": "elsewhere.example"}, "host-unknown"),
    ({"wait": "soon"}, "bad-request"),
    ({"xmpp:version": "0.9"}, "remote-stream-error"),
])
def test_session_creation_errors(srv: ServerProcess, attrs: dict[str, str],
                                 condition: str) -> None:
    """§7.1, §17.2: what a session creation request can get wrong."""
    async def body() -> None:
        bosh = BoshClient(srv)
        to = attrs.pop("to", "localhost")
        res = await bosh.create(to=to, **attrs)
        assert res.status == 200 and res.condition() == condition

    run(body())


def test_legacy_clients_get_http_error_codes(srv: ServerProcess) -> None:
    """§17.1: a client that sent no 'ver' gets the deprecated HTTP codes (404 here)."""
    async def body() -> None:
        bosh = BoshClient(srv)
        res = await http(srv, wrapper({"rid": str(bosh.next_rid()), "to": "localhost",
                                       "wait": "10", "hold": "1", "xmpp:version": "1.0"}))
        assert res.status == 200 and "ver" in res.attrs
        bosh.sid = res.attrs["sid"]
        res = await bosh.send(rid=bosh.rid + 5)
        assert res.status == 404 and res.condition() == "item-not-found"

    run(body())


def test_large_bodies(srv: ServerProcess) -> None:
    """Before authentication a body is held to the small pre-authentication budget, after
    it to the stanza budget (RFC 6120 §13.12), as on TCP; a body beyond the largest budget
    is refused before it is read (413), one without a length too (411)."""
    import socket

    a, apw = srv.new_user("big")
    b, _ = srv.new_user("peer")
    big = "x" * (200 * 1024)

    async def body() -> None:
        pad = "x" * (20 * 1024)
        res = await http(srv, wrapper({"rid": "77", "to": "localhost", "ver": "1.11",
                                       "xmpp:version": "1.0", "pad": pad}))
        assert res.condition() == "policy-violation"
        bosh = BoshClient(srv)
        full = await bosh.login(a, apw)
        cb = await connect(srv, b + "/tcp")
        sent = asyncio.create_task(bosh.send(
            f"<message xmlns='jabber:client' to='{b}/tcp' type='chat' id='big'>"
            f"<body>{big}</body></message>"))
        got = await cb.next_message(where=lambda m: m["id"] == "big")
        assert got["body"] == big
        cb.send_message(mto=full, mbody=big + "y", mtype="chat")
        res = await asyncio.wait_for(sent, 10)
        if not res.children:
            res = await bosh.send()
        assert res.children[0].findtext(C + "body") == big + "y"
        await bosh.send(type="terminate")
        await cb.close()

    run(body())
    for headers in (f"Content-Length: {50 * 1024 * 1024}\r\n", "Transfer-Encoding: chunked\r\n"):
        raw = socket.create_connection(("127.0.0.1", srv.https_port), timeout=10)
        tls = context(srv).wrap_socket(raw, server_hostname="localhost")
        tls.sendall(f"POST /http-bind HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n".encode())
        answer = tls.recv(4096).decode()
        assert answer.startswith(("HTTP/1.1 413", "HTTP/1.1 411")), answer
        tls.close()


def test_plain_http_is_sent_to_https(srv: ServerProcess) -> None:
    """With TLS required, a session is not created over plain HTTP: see-other-uri names
    the https endpoint (§17.2); behind a trusted proxy that says https, it is. A request of
    a secure session over plain HTTP is dropped and the session left alone (§19.1)."""
    a, apw = srv.new_user("plain")

    async def body() -> None:
        res = await http(srv, wrapper({"rid": "5", "to": "localhost", "ver": "1.11",
                                       "xmpp:version": "1.0"}), secure=False)
        assert res.condition() == "see-other-uri"
        assert res.children[0].tag == f"{{{NS}}}uri"
        assert res.children[0].text == f"https://localhost:{srv.https_port}/http-bind"
        res = await http(srv, wrapper({"rid": "5", "to": "localhost", "ver": "1.11",
                                       "xmpp:version": "1.0"}), secure=False,
                         headers={"X-Forwarded-Proto": "https"})
        assert res.attrs.get("sid")
        bosh = BoshClient(srv)
        await bosh.login(a, apw)
        with pytest.raises((ConnectionError, ValueError, IndexError)):
            await http(srv, wrapper({"rid": str(bosh.rid), "sid": bosh.sid}), secure=False)
        res = await bosh.send("<iq xmlns='jabber:client' type='get' id='p'>"
                              "<ping xmlns='urn:xmpp:ping'/></iq>")
        assert [c.get("id") for c in res.children] == ["p"]

    run(body())


def test_cors(srv: ServerProcess) -> None:
    """Browsers on another origin: a preflight and the POST get the CORS headers when the
    origin is configured (bosh.origins), 403 otherwise; same-origin pages need nothing."""
    async def body() -> None:
        ok = {"Origin": "https://allowed.example",
              "Access-Control-Request-Method": "POST",
              "Access-Control-Request-Headers": "content-type"}
        res = await http(srv, b"", method="OPTIONS", headers=ok)
        assert res.status == 200
        assert res.headers["access-control-allow-origin"] == "https://allowed.example"
        assert "POST" in res.headers["access-control-allow-methods"]
        assert res.headers["access-control-allow-headers"] == "content-type"
        res = await http(srv, b"", method="OPTIONS", headers={**ok, "Origin": "https://evil"})
        assert res.status == 403
        data = wrapper({"rid": "9", "to": "localhost", "ver": "1.11", "xmpp:version": "1.0"})
        res = await http(srv, data, headers={"Origin": "https://evil"})
        assert res.status == 403 and res.body is None
        res = await http(srv, data, headers={"Origin": "https://allowed.example"})
        assert res.headers["access-control-allow-origin"] == "https://allowed.example"
        assert res.attrs.get("sid")
        same = f"https://localhost:{srv.https_port}"
        res = await http(srv, data, headers={"Origin": same})
        assert res.attrs.get("sid")

    run(body())


def test_host_meta_lists_bosh(srv: ServerProcess) -> None:
    """XEP-0156 §3: the BOSH endpoint next to the WebSocket one."""
    base = f"https://127.0.0.1:{srv.https_port}/.well-known/"
    with urllib.request.urlopen(base + "host-meta", context=context(srv)) as r:
        xrd = ET.fromstring(r.read())
    links = {link.get("rel"): link.get("href")
             for link in xrd.iter("{http://docs.oasis-open.org/ns/xri/xrd-1.0}Link")}
    assert links["urn:xmpp:alt-connections:xbosh"] == (
        f"https://127.0.0.1:{srv.https_port}/http-bind")
    assert links["urn:xmpp:alt-connections:websocket"] == (
        f"wss://127.0.0.1:{srv.https_port}/xmpp-websocket")
    with urllib.request.urlopen(base + "host-meta.json", context=context(srv)) as r:
        data = json.loads(r.read())
    assert {"rel": "urn:xmpp:alt-connections:xbosh",
            "href": links["urn:xmpp:alt-connections:xbosh"]} in data["links"]
    with urllib.request.urlopen(f"https://127.0.0.1:{srv.https_port}/http-bind",
                                context=context(srv)) as r:
        assert b"BOSH" in r.read()


def test_no_stream_management_over_bosh(srv: ServerProcess) -> None:
    """XEP-0198 is not offered over BOSH (its rids and replays recover lost responses)."""
    a, apw = srv.new_user("sm")

    async def body() -> None:
        bosh = BoshClient(srv)
        await bosh.create()
        token = __import__("base64").b64encode(f"\0{a.split('@')[0]}\0{apw}".encode()).decode()
        await bosh.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{token}</auth>")
        res = await bosh.send(**{"xmpp:restart": "true", "to": "localhost"})
        features = res.children[0]
        assert features.find(f"{{{BIND}}}bind") is not None
        assert features.find("{urn:xmpp:sm:3}sm") is None
        await bosh.send(f"<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='{BIND}'/>"
                        "</iq>")
        res = await bosh.send("<enable xmlns='urn:xmpp:sm:3'/>")
        assert res.children[0].tag == "{urn:xmpp:sm:3}failed"
        assert res.children[0][0].tag.endswith("feature-not-implemented")

    run(body())


@pytest.fixture
def short(ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[ServerProcess]:
    """A server whose BOSH sessions end after 5 s without a request (and that a test stops)."""
    yield from start_server(tmp_path_factory.mktemp("bosh-short"), "sqlite", ca, config={
        "bosh": {"inactivity": 5, "max_wait": 10}})


def test_undelivered_messages_wait_offline_and_shutdown_is_announced(
        short: ServerProcess) -> None:
    """XEP-0206 §7: a message routed to a session that then ends (its client stopped
    polling: XEP-0124 §10 inactivity) was never delivered, so it goes to offline storage and
    reaches the user's next session. And a server that stops answers the requests it holds
    with system-shutdown (§17.2)."""
    srv = short
    a, apw = srv.new_user("gone")
    b, _ = srv.new_user("peer")

    async def body() -> None:
        bosh = BoshClient(srv)
        full = await bosh.login(a, apw)  # ... and then the client sends nothing more
        cb = await connect(srv, b + "/tcp")
        cb.send_message(mto=full, mbody="while you were away", mtype="chat")
        # An IQ request after it waits with it, and comes back service-unavailable when
        # the session ends and hands back what it never delivered, in order: the message
        # is stored by then.
        with pytest.raises(IqError) as exc:
            await cb.plugin["xep_0199"].send_ping(full, timeout=30)
        assert exc.value.condition == "service-unavailable"
        back = await connect(srv, a + "/tcp", plugins=("xep_0203",))  # offline ones come
        got = await back.next_message(where=lambda m: m["type"] == "chat")
        assert got["body"] == "while you were away" and got["delay"]["stamp"]
        await back.close()
        await cb.close()
        # A request held when the server stops gets system-shutdown.
        other = BoshClient(srv)
        await other.login(a, apw, resource="again")
        rid = other.next_rid()
        # Two copies: the one answered with a recoverable error shows that the server holds
        # the other (§14.3).
        copies = {asyncio.create_task(other.send(rid=rid)) for _ in range(2)}
        done, held = await asyncio.wait(copies, return_when=asyncio.FIRST_COMPLETED)
        assert next(iter(done)).result().attrs == {"type": "error"}
        await asyncio.to_thread(srv.stop)
        res = await asyncio.wait_for(held.pop(), 10)
        assert res.condition() == "system-shutdown"

    run(body())
