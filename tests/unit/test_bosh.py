"""BOSH (XEP-0124/XEP-0206) in process: the timing rules on a task.Clock (wait, inactivity,
pause, out-of-order rids), what happens to stanzas a session never delivered (XEP-0206 §7),
and the body parser. The flows over real HTTP are in tests/integration/test_bosh.py."""

from __future__ import annotations

import base64
import io
import xml.etree.ElementTree as ET

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.test.requesthelper import DummyRequest

from tests.support.inproc import FakeSession, add_user, make_server
from xmppd import accounts as accounts_module
from xmppd import stanza as st
from xmppd.bosh import wire
from xmppd.bosh.http import BoshResource
from xmppd.errors import StreamError
from xmppd.jid import JID
from xmppd.server import XmppServer

NS = wire.NS_HTTPBIND
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND = "urn:ietf:params:xml:ns:xmpp-bind"
WAIT, INACTIVITY, PAUSE = 30, 40, 300


class Req(DummyRequest):
    """A POST to /http-bind as twisted.web hands it to the resource."""

    def __init__(self, data: bytes, secure: bool = True) -> None:
        super().__init__([b""], client=IPv4Address("TCP", "10.0.0.7", 40000))
        self.method = b"POST"
        self.content = io.BytesIO(data)
        self.secure = secure
        self.dropped = False

    def isSecure(self) -> bool:  # noqa: N802
        return self.secure

    def loseConnection(self) -> None:  # noqa: N802
        self.dropped = True

    def lose(self) -> None:
        """The client goes away before the answer."""
        self.processingFailed(Failure(ConnectionDone()))

    @property
    def done(self) -> bool:
        return bool(self.finished)

    @property
    def answer(self) -> ET.Element:
        assert self.finished, "not answered"
        return ET.fromstring(b"".join(self.written))


class Client:
    def __init__(self, env: Env) -> None:
        self.env = env
        self.rid = 1000
        self.sid = ""

    def post(self, payload: str = "", rid: int | None = None, **attrs: str) -> Req:
        a: dict[str, str] = {"rid": str(self.rid if rid is None else rid)}
        if rid is None:
            self.rid += 1
        if self.sid:
            a["sid"] = self.sid
        a.update(attrs)
        data = (f"<body xmlns='{NS}' xmlns:xmpp='{wire.NS_XBOSH}'"
                + "".join(f" {k}='{v}'" for k, v in a.items())
                + (f">{payload}</body>" if payload else "/>")).encode()
        req = Req(data)
        self.env.resource.render(req)
        return req

    def create(self, **attrs: str) -> Req:
        req = self.post(**{"to": "localhost", "wait": str(WAIT), "hold": "1", "ver": "1.11",
                           "xmpp:version": "1.0", **attrs})
        self.sid = req.answer.get("sid", "")
        return req

    def login(self, user: str = "alice", resource: str = "web") -> str:
        self.create()
        token = base64.b64encode(f"\0{user}\0pw".encode()).decode()
        assert self.post(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{token}</auth>"
                         ).answer[0].tag == f"{{{SASL}}}success"
        assert self.post(**{"xmpp:restart": "true"}).answer[0].tag.endswith("features")
        req = self.post(f"<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='{BIND}'>"
                        f"<resource>{resource}</resource></bind></iq>")
        return req.answer[0].findtext(f"{{{BIND}}}bind/{{{BIND}}}jid") or ""


class Env:
    def __init__(self, server: XmppServer) -> None:
        self.server = server
        self.clock: Clock = server.clock  # type: ignore[assignment]
        self.resource = BoshResource(server)

    def client(self) -> Client:
        return Client(self)

    def bound(self, jid: str) -> bool:
        return self.server.sessions.get(JID.parse(jid)) is not None


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Env:
    # PBKDF2 runs in a thread in the real server; here, inline, so that logins are immediate.
    monkeypatch.setattr(accounts_module.threads, "deferToThread",
                        lambda f, *a, **kw: succeed(f(*a, **kw)))
    server = make_server(["disco", "ping", "roster", "presence", "offline"], extra={
        "bosh": {"max_wait": WAIT, "inactivity": INACTIVITY, "max_pause": PAUSE,
                 "polling": 2}})
    add_user(server, "alice@localhost")
    add_user(server, "bob@localhost")
    return Env(server)


def ping(id_: str) -> str:
    return f"<iq xmlns='jabber:client' type='get' id='{id_}'><ping xmlns='urn:xmpp:ping'/></iq>"


def test_an_empty_request_is_held_for_wait_seconds(env: Env) -> None:
    """§8: no payload for the client: the response waits 'wait' seconds, then goes empty."""
    c = env.client()
    c.login()
    env.clock.advance(5)
    req = c.post()
    env.clock.advance(WAIT - 0.1)
    assert not req.done
    env.clock.advance(0.2)
    assert req.answer.attrib == {} and len(req.answer) == 0


def test_a_held_request_carries_what_arrives(env: Env) -> None:
    """§8: the held request is answered as soon as there is something for the client; a
    burst of one reactor turn goes in one response."""
    c = env.client()
    full = c.login()
    req = c.post()
    bob = FakeSession(env.server, "bob@localhost/x")
    for text in ("one", "two"):
        m = st.make("message", attrs={"to": full, "type": "chat"})
        st.add(m, "body", text_=text)
        bob.stanza(m)
    assert not req.done
    env.clock.advance(0)
    bodies = [m.findtext("{jabber:client}body") for m in req.answer]
    assert bodies == ["one", "two"]


def test_hold_one_releases_the_previous_request(env: Env) -> None:
    c = env.client()
    c.login()
    first = c.post()
    assert not first.done
    second = c.post(ping("p"))
    assert [e.get("id") for e in first.answer] == ["p"]  # the oldest carries it (§8)
    assert not second.done


def test_inactivity_ends_the_session(env: Env) -> None:
    """§10: with no request open for 'inactivity' seconds the session is over, and its
    C2S session with it; a request before that keeps it going."""
    c = env.client()
    full = c.login()
    env.clock.advance(INACTIVITY - 1)
    c.post(ping("p"))  # answered at once: the inactivity period starts again
    env.clock.advance(INACTIVITY - 1)
    env.clock.advance(0)
    assert env.bound(full)
    env.clock.advance(2)
    env.clock.advance(0)
    assert not env.bound(full)
    assert c.post().answer.get("condition") == "item-not-found"


def test_a_pause_stretches_inactivity_once(env: Env) -> None:
    """§10: a pause lengthens the inactivity period until the next request; more than
    'maxpause' is refused."""
    c = env.client()
    full = c.login()
    assert c.post(pause=str(PAUSE)).answer.attrib == {}
    env.clock.advance(PAUSE - 1)
    env.clock.advance(0)
    assert env.bound(full)
    c.post(ping("p"))  # back to the normal period
    env.clock.advance(INACTIVITY + 1)
    env.clock.advance(0)
    assert not env.bound(full)


def test_requests_held_while_a_lower_rid_is_missing(env: Env) -> None:
    """§14.2: a request that overtook a lost one waits for it; if it never comes, the
    session ends after the inactivity period plus 'wait' (the client's own timeout and
    retry come before that)."""
    c = env.client()
    full = c.login()
    late = c.post(ping("second"), rid=c.rid + 1)
    env.clock.advance(WAIT)
    assert not late.done
    first = c.post(ping("first"))
    assert [e.get("id") for e in first.answer] == ["first", "second"]
    c.rid += 1
    env.clock.advance(WAIT)
    assert late.answer.attrib == {}  # it was held in turn, then expired
    gap = c.post(ping("x"), rid=c.rid + 1)
    env.clock.advance(INACTIVITY + WAIT - 1)
    assert not gap.done and env.bound(full)
    env.clock.advance(2)
    assert gap.answer.get("condition") == "item-not-found"
    env.clock.advance(0)
    assert not env.bound(full)


def test_only_the_last_responses_are_replayed(env: Env) -> None:
    """§14.3: as many responses as 'requests' are kept; an older rid is item-not-found."""
    c = env.client()
    c.login()
    answers = {}
    for i in range(3):
        rid = c.rid
        answers[rid] = b"".join(c.post(ping(str(i))).written)
    newest = max(answers)
    assert b"".join(c.post(ping("0"), rid=newest).written) == answers[newest]
    assert b"".join(c.post(ping("0"), rid=newest - 1).written) == answers[newest - 1]
    assert c.post(rid=newest - 2).answer.get("condition") == "item-not-found"


def test_a_client_that_went_away_gets_no_payloads(env: Env) -> None:
    """A held request whose HTTP connection is gone is not given payloads: they wait for
    the next request (XEP-0124 §14.3 would otherwise be the only way back to them)."""
    c = env.client()
    full = c.login()
    req = c.post()
    req.lose()
    bob = FakeSession(env.server, "bob@localhost/x")
    m = st.make("message", attrs={"to": full, "type": "chat"})
    st.add(m, "body", text_="kept")
    bob.stanza(m)
    env.clock.advance(0)
    nxt = c.post()  # within 'polling' of the lost one: a reloaded page, not overactivity
    assert [x.findtext("{jabber:client}body") for x in nxt.answer] == ["kept"]


def test_a_client_that_drops_its_requests_does_not_pile_up_output(env: Env) -> None:
    """Past a limit (four stanza budgets) the outbox goes out with a request whose client
    is gone, into the replay buffer, instead of growing with everything for the user."""
    c = env.client()
    full = c.login()
    rid = c.rid
    c.post().lose()
    bob = FakeSession(env.server, "bob@localhost/x")
    big = "x" * (100 * 1024)
    for i in range(11):
        m = st.make("message", attrs={"to": full, "type": "chat", "id": str(i)})
        st.add(m, "body", text_=big)
        bob.stanza(m)
        env.clock.advance(0)
    session = next(iter(env.resource.sessions.values()))
    assert session.outbox_bytes <= session.outbox_limit
    replayed = c.post(rid=rid).answer  # what the lost request carried, sent again
    assert [m.get("id") for m in replayed] == [str(i) for i in range(11)][:len(replayed)]
    assert len(replayed) > 8


def test_a_large_body_before_authentication_is_a_stream_error(env: Env) -> None:
    """RFC 6120 §13.12 as on TCP: before authentication a body gets the small budget."""
    c = env.client()
    c.create()
    pad = "x" * (20 * 1024)
    req = c.post(f"<iq xmlns='jabber:client' type='get' id='x'><query xmlns='x'>{pad}"
                 "</query></iq>")
    assert req.answer.get("condition") == "remote-stream-error"
    assert req.answer[0][0].tag.endswith("policy-violation")


def test_undelivered_stanzas_are_handed_back(env: Env) -> None:
    """XEP-0206 §7: when a session ends with stanzas it never delivered, a message goes to
    offline storage, an IQ request is answered service-unavailable, presence is dropped."""
    c = env.client()
    full = c.login()
    bob = FakeSession(env.server, "bob@localhost/x")
    m = st.make("message", attrs={"to": full, "type": "chat", "id": "m1"})
    st.add(m, "body", text_="for later")
    bob.stanza(m)
    iq = st.make("iq", attrs={"to": full, "type": "get", "id": "q1"})
    st.add(iq, "query", "jabber:iq:version")
    bob.stanza(iq)
    bob.take()
    env.clock.advance(INACTIVITY + 1)
    env.clock.advance(0)
    assert not env.bound(full)
    answers = bob.take()
    assert [(e.name, e.getAttribute("type"), e.getAttribute("id")) for e in answers] == [
        ("iq", "error", "q1")]
    assert st.child(st.child(answers[0], "error", st.NS_CLIENT) or answers[0],
                    "service-unavailable", st.NS_STANZAS) is not None
    counted: list[int] = []
    env.server.storage.offline.count("localhost", "alice").addCallback(counted.append)
    assert counted == [1]


def test_terminate_acknowledged_on_the_oldest_request(env: Env) -> None:
    """§13: the terminate request's payloads are handled, then the oldest open request
    gets the acknowledgement and the others empty bodies."""
    c = env.client()
    full = c.login()
    held = c.post()
    bob = FakeSession(env.server, "bob@localhost/x")
    bob.take()
    last = c.post("<message xmlns='jabber:client' to='bob@localhost/x'><body>bye</body>"
                  "</message>", type="terminate")
    assert held.answer.attrib == {"type": "terminate"}
    assert last.answer.attrib == {} and len(last.answer) == 0
    assert [e.name for e in bob.take()] == ["message"]
    env.clock.advance(0)
    assert not env.bound(full)


def test_terminate_waits_for_payloads_that_take_time(env: Env) -> None:
    """§13: while a terminate request's payloads are being handled (here one that waits),
    the requests before it stay open; the acknowledgement goes to the oldest once done."""
    from twisted.internet.defer import Deferred

    from xmppd import hooks as H

    gate: Deferred[None] = Deferred()

    async def slow(ev: H.NonzaEvent) -> bool:
        if ev.element.uri != "test:slow":
            return False
        await gate
        return True

    env.server.hosts["localhost"].on(H.C2S_NONZA, slow)
    c = env.client()
    c.login()
    held = c.post()
    last = c.post("<slow xmlns='test:slow'/>", type="terminate")
    env.clock.advance(0)
    assert not held.done and not last.done
    gate.callback(None)
    assert held.answer.attrib == {"type": "terminate"}
    assert last.answer.attrib == {}


def test_server_shutdown_is_system_shutdown(env: Env) -> None:
    """§17.2: the stream closed with <system-shutdown/> reaches the client as the binding
    condition of the same name."""
    c = env.client()
    c.login()
    held = c.post()
    for conn in list(env.server.connections):
        conn.close(StreamError("system-shutdown"))
    assert held.answer.get("condition") == "system-shutdown"
    assert held.answer[0].tag == f"{{{st.NS_STREAMS}}}error"


def test_the_terms_are_within_the_configured_limits(env: Env) -> None:
    """§7.2: 'wait' and 'hold' no more than configured (or asked), 'requests' one more
    than 'hold', 'ver' the lower of the two, the client's 'content' as Content-Type."""
    c = env.client()
    req = c.create(wait="600", hold="5", ver="1.6", content="text/html; charset=utf-8")
    got = req.answer.attrib
    assert (got["wait"], got["hold"], got["requests"], got["ver"]) == (str(WAIT), "1", "2",
                                                                       "1.6")
    assert got["inactivity"] == str(INACTIVITY) and got["maxpause"] == str(PAUSE)
    assert req.responseHeaders.getRawHeaders("content-type") == ["text/html; charset=utf-8"]
    assert req.responseHeaders.getRawHeaders("content-security-policy") == [
        "default-src 'none'; sandbox"]
    polling = env.client().create(wait="0").answer.attrib
    assert int(polling["inactivity"]) > INACTIVITY  # §12


def test_a_restart_is_only_after_sasl_and_empty(env: Env) -> None:
    """XEP-0206 §5: xmpp:restart belongs after SASL success, in an empty body, and comes
    before anything else after it."""
    c = env.client()
    c.create()
    assert c.post(**{"xmpp:restart": "true"}).answer.get("condition") == "bad-request"
    c = env.client()
    c.create()
    token = base64.b64encode(b"\0alice\0pw").decode()
    c.post(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{token}</auth>")
    bind = (f"<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='{BIND}'/></iq>")
    assert c.post(bind).answer.get("condition") == "bad-request"  # no restart first
    c = env.client()
    c.create()
    c.post(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{token}</auth>")
    assert c.post(bind, **{"xmpp:restart": "true"}).answer.get("condition") == "bad-request"


def test_secure_sessions_ignore_plain_requests(env: Env) -> None:
    """§19.1: a request of a session made over TLS that comes over plain HTTP closes that
    connection and nothing else."""
    c = env.client()
    c.login()
    plain = Req(f"<body xmlns='{NS}' sid='{c.sid}' rid='{c.rid}' type='terminate'/>".encode(),
                secure=False)
    env.resource.render(plain)
    assert plain.dropped and not plain.written
    assert [e.get("id") for e in c.post(ping("p")).answer] == ["p"]


def test_bosh_can_be_turned_off() -> None:
    """bosh.enabled = false: no /http-bind, and host-meta does not list it."""
    from xmppd.config import ListenerConfig
    from xmppd.web import HostMeta

    class NoSockets:
        def listenTCP(self, *args: object, **kw: object) -> None:  # noqa: N802
            return None

    for enabled in (True, False):
        server = make_server(["disco"], extra={"bosh": {"enabled": enabled}})
        server.reactor = NoSockets()
        server.web.listen(ListenerConfig(type="http", port=0, address="127.0.0.1"))
        assert ("http-bind" in server.web.paths()) is enabled
        req = DummyRequest([b""])
        req.isSecure = lambda: False  # type: ignore[method-assign]
        xrd = HostMeta(server.web, as_json=False).render_GET(req)
        assert (b"urn:xmpp:alt-connections:xbosh" in xrd) is enabled


@pytest.mark.parametrize("data", [
    b"<body xmlns='http://jabber.org/protocol/httpbind' rid='1'>" + b"x" * 200 + b"</body>",
    b"<!DOCTYPE body><body xmlns='http://jabber.org/protocol/httpbind'/>",
    b"<body xmlns='http://jabber.org/protocol/httpbind'><?pi x?></body>",
    b"<body xmlns='http://jabber.org/protocol/httpbind'>&ent;</body>",
    b"<body xmlns='http://jabber.org/protocol/httpbind'/><body xmlns='http://jabber.org/protocol/httpbind'/>",
    b"",
])
def test_parse_body_refuses(data: bytes) -> None:
    with pytest.raises(wire.BadBody):
        wire.parse_body(data, 150)


def test_parse_body_accepts_and_adopts_stanzas() -> None:
    """An XML declaration is fine; stanzas in the wrapper's namespace are jabber:client
    (XEP-0206 §2, note), their children too; other namespaces are left alone."""
    body = wire.parse_body(
        b"<?xml version='1.0'?>\n<body xmlns='http://jabber.org/protocol/httpbind' rid='3'>"
        b"<message to='a@b'><body>hi</body></message>"
        b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/></body>", 1000)
    msg, auth = wire.payloads(body)
    assert (msg.uri, msg.name) == (st.NS_CLIENT, "message")
    assert st.child_text(msg, "body", st.NS_CLIENT) == "hi"
    assert auth.uri == SASL


def test_response_bodies_are_well_formed() -> None:
    out = wire.response({"sid": "a\"'<&", "xmpp:version": "1.0"}, b"<x xmlns='y'/>")
    el = ET.fromstring(out)
    assert el.get("sid") == "a\"'<&" and el.get(f"{{{wire.NS_XBOSH}}}version") == "1.0"
    assert ET.fromstring(wire.see_other_uri("https://h/x?a=1&b=2"))[0].text == (
        "https://h/x?a=1&b=2")


def test_sessions_are_counted_as_bosh_connections(env: Env) -> None:
    """The connections metric counts BOSH sessions as their own kind, until they end."""
    from tests.unit.test_metrics import scrape, value

    c = env.client()
    c.login()
    assert env.server.metrics is not None
    assert value(scrape(env.server.metrics), "xmppd_connections", kind="bosh") == 1
    assert value(scrape(env.server.metrics), "xmppd_connections", kind="c2s") == 0
    c.post(type="terminate")
    env.clock.advance(0)
    assert value(scrape(env.server.metrics), "xmppd_connections", kind="bosh") == 0
