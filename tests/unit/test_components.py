"""XEP-0114 component streams in process (StringTransport, task.Clock): the handshake, every
stream error the XEP and RFC 6120 call for, routing both ways, bouncing while disconnected,
disco#items, and the configuration's checks."""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from twisted.internet.testing import StringTransport

from components.manager import ComponentManager
from components.stream import NS_ACCEPT, ComponentStream, handshake_digests
from tests.support.inproc import FakeSession, make_server
from xmppd import stanza as st
from xmppd.config import ConfigError, from_dict
from xmppd.errors import parse_error
from xmppd.server import XmppServer

NS_STREAMS = "http://etherx.jabber.org/streams"
NS_STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"
A = "{" + NS_ACCEPT + "}"
SECRET = "s3cret"
LISTENERS = [{"type": "component", "port": 0}]


class Wire:
    """A component's end of one connection: what it sends, and what the server wrote."""

    def __init__(self, mgr: ComponentManager, ip: str = "192.0.2.7") -> None:
        self.transport = StringTransport(peerAddress=_addr(ip))
        self.stream = ComponentStream(mgr)
        self.stream.makeConnection(self.transport)
        self.parser = ET.XMLPullParser(events=("start", "end"))
        self.depth = 0
        self.header: dict[str, str] = {}
        self.ended = False
        self.after_handshake: list[ET.Element] = []

    def send(self, data: str) -> None:
        self.stream.dataReceived(data.encode())

    def open(self, to: str = "irc.localhost", ns: str = NS_ACCEPT) -> None:
        self.send(f"<stream:stream xmlns='{ns}' xmlns:stream='{NS_STREAMS}' to='{to}'>")

    def read(self) -> list[ET.Element]:
        self.parser.feed(self.transport.value())
        self.transport.clear()
        out = []
        for event, el in self.parser.read_events():
            if event == "start":
                self.depth += 1
                if self.depth == 1:
                    self.header = dict(el.attrib)
            else:
                self.depth -= 1
                if self.depth == 1:
                    out.append(el)
                elif self.depth == 0:
                    self.ended = True
        return out

    def stream_error(self) -> str:
        els = self.read()
        assert self.ended and els and els[-1].tag == f"{{{NS_STREAMS}}}error", els
        self.stream.clock.advance(self.stream.error_linger)  # type: ignore[attr-defined]
        assert self.transport.disconnecting
        return next(c.tag.split("}")[1] for c in els[-1] if not c.tag.endswith("}text"))

    def handshake(self, secret: str = SECRET) -> None:
        digest = hashlib.sha1((self.stream.stream_id + secret).encode()).hexdigest()
        self.send(f"<handshake>{digest}</handshake>")

    def connect(self, to: str = "irc.localhost") -> Wire:
        self.open(to)
        self.read()
        self.handshake(self.stream.manager.config[to].secret)
        els = self.read()
        assert els and els[0].tag == A + "handshake", els
        assert not els[0].text and not list(els[0])
        self.after_handshake = els[1:]  # the disco#info query, for one without a name
        return self


def _addr(ip: str) -> Any:
    from twisted.internet.address import IPv4Address
    return IPv4Address("TCP", ip, 40000)


def setup(**config: Any) -> tuple[XmppServer, ComponentManager]:
    extra = {"components": {"irc.localhost": {"secret": SECRET},
                            "other.localhost": {"secret": "other", "name": "Other"}},
             "listeners": LISTENERS, **config}
    server = make_server(plugins=["disco"], extra=extra)
    mgr = server.components = ComponentManager(server)
    mgr.register()
    return server, mgr


def message(to: str, frm: str, body: str = "hi") -> str:
    return f"<message to='{to}' from='{frm}' type='chat' id='m1'><body>{body}</body></message>"


# -- handshake -----------------------------------------------------------------------------------
def test_handshake_value_is_lowercase_hex_sha1_of_stream_id_and_secret() -> None:
    # XEP-0114 §3 steps 1-4; with XML special characters the escaped form counts too.
    assert handshake_digests("3BF96D32", "pw") == {
        hashlib.sha1(b"3BF96D32pw").hexdigest()}
    assert handshake_digests("id", "a&b") == {hashlib.sha1(b"ida&b").hexdigest(),
                                              hashlib.sha1(b"ida&amp;b").hexdigest()}


def test_header_reply_and_successful_handshake() -> None:
    mgr = setup()[1]
    w = Wire(mgr)
    w.open()
    assert w.read() == []
    assert w.header["from"] == "irc.localhost" and w.header["id"] == w.stream.stream_id
    assert w.stream.stream_id and "version" not in w.header
    w.handshake()
    assert [e.tag for e in w.read()] == [A + "handshake", A + "iq"]
    assert mgr.connected("irc.localhost") and not w.ended


def test_handshake_is_case_insensitive_hex() -> None:
    mgr = setup()[1]
    w = Wire(mgr)
    w.open()
    w.read()
    digest = hashlib.sha1((w.stream.stream_id + SECRET).encode()).hexdigest().upper()
    w.send(f"<handshake>{digest}</handshake>")
    assert w.read()[0].tag == A + "handshake"


@pytest.mark.parametrize("secret", ["wrong", ""])
def test_wrong_secret_is_not_authorized(secret: str) -> None:
    mgr = setup()[1]
    w = Wire(mgr)
    w.open()
    w.read()
    if secret:
        w.handshake(secret)
    else:
        w.send("<handshake/>")
    assert w.stream_error() == "not-authorized"
    assert not mgr.connected("irc.localhost")


def test_other_components_secret_does_not_open_this_one() -> None:
    mgr = setup()[1]
    w = Wire(mgr)
    w.open("irc.localhost")
    w.read()
    w.handshake("other")
    assert w.stream_error() == "not-authorized"


def test_repeated_wrong_handshakes_ban_the_address() -> None:
    server, mgr = setup()
    for _ in range(server.config.auth.ban_after):
        w = Wire(mgr)
        w.open()
        w.read()
        w.handshake("guess")
        assert w.stream_error() == "not-authorized"
    w = Wire(mgr)
    w.open()
    w.read()
    w.handshake()  # the right secret, but from a banned address
    assert w.stream_error() == "not-authorized"
    assert not mgr.connected("irc.localhost")
    Wire(mgr, ip="192.0.2.8").connect()  # another address is not affected


@pytest.mark.parametrize("header,condition", [
    ("<stream:stream xmlns='jabber:client' xmlns:stream='%s' to='irc.localhost'>",
     "invalid-namespace"),
    ("<stream:stream xmlns='jabber:component:accept' xmlns:stream='%s'>",
     "improper-addressing"),
    ("<stream:stream xmlns='jabber:component:accept' xmlns:stream='%s' to='nope.localhost'>",
     "host-unknown"),
    ("<stream:stream xmlns='jabber:component:accept' xmlns:stream='%s' to='localhost'>",
     "host-unknown"),
    ("<stream:stream xmlns='jabber:component:accept' xmlns:stream='%s' to='a b'>",
     "improper-addressing"),
])
def test_header_errors_come_with_a_header(header: str, condition: str) -> None:
    # XEP-0114 §3: opening tag, stream error, closing tag (RFC 6120 §4.9.1.2).
    mgr = setup()[1]
    w = Wire(mgr)
    w.send(header % NS_STREAMS)
    assert w.stream_error() == condition
    assert "id" in w.header


def test_second_connection_for_a_domain_is_a_conflict() -> None:
    mgr = setup()[1]
    first = Wire(mgr).connect()
    w = Wire(mgr)
    w.open()
    assert w.stream_error() == "conflict"
    assert mgr.links["irc.localhost"].stream is first.stream and not first.ended


def test_conflict_also_when_both_passed_the_header() -> None:
    mgr = setup()[1]
    a, b = Wire(mgr), Wire(mgr)
    a.open()
    b.open()
    a.read()
    b.read()
    a.handshake()
    assert a.read()[0].tag == A + "handshake"
    b.handshake()
    assert b.stream_error() == "conflict"
    assert mgr.links["irc.localhost"].stream is a.stream


def test_stanza_before_handshake_is_not_authorized() -> None:
    mgr = setup()[1]
    w = Wire(mgr)
    w.open()
    w.read()
    w.send(message("u@localhost", "x@irc.localhost"))
    assert w.stream_error() == "not-authorized"


def test_handshake_timeout() -> None:
    server, mgr = setup()
    w = Wire(mgr)
    w.open()
    w.read()
    server.clock.advance(server.config.limits.handshake_timeout + 1)
    assert w.stream_error() == "connection-timeout"


# -- stanzas from the component --------------------------------------------------------------------
@pytest.mark.parametrize("frm", ["x@other.localhost", "x@localhost", "sub.irc.localhost",
                                 "x@sub.irc.localhost"])
def test_from_outside_the_components_domain_is_invalid_from(frm: str) -> None:
    mgr = setup()[1]
    w = Wire(mgr).connect()
    w.send(message("u@localhost", frm))
    assert w.stream_error() == "invalid-from"
    assert not mgr.connected("irc.localhost")


@pytest.mark.parametrize("stanza", [
    "<message to='u@localhost'><body>x</body></message>",
    "<message from='x@irc.localhost'><body>x</body></message>",
    "<message to='u@localhost' from='@irc.localhost'><body>x</body></message>",
])
def test_missing_or_bad_addresses_are_improper_addressing(stanza: str) -> None:
    mgr = setup()[1]
    w = Wire(mgr).connect()
    w.send(stanza)
    assert w.stream_error() == "improper-addressing"


def test_other_elements_are_unsupported() -> None:
    mgr = setup()[1]
    w = Wire(mgr).connect()
    w.send("<handshake>again</handshake>")
    assert w.stream_error() == "unsupported-stanza-type"


def test_routing_both_ways() -> None:
    server, mgr = setup()
    user = FakeSession(server, "u@localhost/r")
    w = Wire(mgr).connect()
    w.send(message("u@localhost/r", "#room%irc@irc.localhost/nick", "from irc"))
    got = user.take()
    assert len(got) == 1 and got[0].uri == st.NS_CLIENT
    assert got[0].getAttribute("from") == "#room%irc@irc.localhost/nick"
    assert st.child_text(got[0], "body", st.NS_CLIENT) == "from irc"

    msg = st.make("message", attrs={"to": "#room%irc@irc.localhost", "type": "groupchat"})
    st.add(msg, "body", text_="to irc")
    user.stanza(msg)
    (out,) = w.read()
    assert out.tag == A + "message" and out.get("from") == "u@localhost/r"
    assert out.findtext(A + "body") == "to irc"


def test_jabber_client_namespace_is_accepted_from_components() -> None:
    server, mgr = setup()
    user = FakeSession(server, "u@localhost/r")
    w = Wire(mgr).connect()
    w.send("<message xmlns='jabber:client' to='u@localhost/r' from='irc.localhost'>"
           "<body>x</body></message>")
    (got,) = user.take()
    assert got.uri == st.NS_CLIENT and st.child_text(got, "body", st.NS_CLIENT) == "x"


def test_malformed_stanza_from_component_is_bounced_to_it() -> None:
    mgr = setup()[1]
    w = Wire(mgr).connect()
    w.send("<iq type='get' to='localhost' from='irc.localhost'/>")  # no id
    (err,) = w.read()
    assert err.get("type") == "error" and err.find(A + "error") is not None
    assert not w.ended


# -- while disconnected ----------------------------------------------------------------------------
def test_stanzas_for_a_disconnected_component_bounce() -> None:
    server, mgr = setup()
    user = FakeSession(server, "u@localhost/r")
    msg = st.make("message", attrs={"to": "x@irc.localhost", "id": "m1"})
    st.add(msg, "body", text_="x")
    user.stanza(msg)
    (err,) = user.take()
    assert parse_error(err) == ("wait", "remote-server-timeout")
    assert err.getAttribute("from") == "x@irc.localhost"

    w = Wire(mgr).connect()
    w.stream.connectionLost()
    iq = st.iq("get", "q1", to="irc.localhost")
    st.add(iq, "query", "http://jabber.org/protocol/disco#info")
    user.stanza(iq)
    (err,) = user.take()
    assert parse_error(err) == ("wait", "remote-server-timeout")

    errmsg = st.make("message", attrs={"to": "x@irc.localhost", "type": "error"})
    user.stanza(errmsg)  # RFC 6120 §8.3.1: an error is never answered with an error
    assert user.take() == []


def test_reconnect_after_disconnect() -> None:
    mgr = setup()[1]
    w = Wire(mgr).connect()
    w.stream.connectionLost()
    assert not mgr.connected("irc.localhost")
    Wire(mgr).connect()
    assert mgr.connected("irc.localhost")


# -- disco#items ---------------------------------------------------------------------------
def _items(server: XmppServer) -> list[tuple[str, str]]:
    return sorted(server.hosts["localhost"].plugin("disco").items)  # type: ignore[union-attr]


def test_disco_items_list_connected_components_with_their_names() -> None:
    server, mgr = setup()
    assert _items(server) == []
    other = Wire(mgr).connect("other.localhost")
    assert _items(server) == [("other.localhost", "Other")]  # the configured name
    irc = Wire(mgr).connect()
    # Without a configured name the server asks the component's own disco#info.
    (query,) = irc.after_handshake
    assert query.tag == A + "iq" and query.get("to") == "irc.localhost"
    assert query.get("from") == "localhost"
    assert ("irc.localhost", "") in _items(server)
    irc.send(f"<iq type='result' id='{query.get('id')}' from='irc.localhost' to='localhost'>"
             "<query xmlns='http://jabber.org/protocol/disco#info'>"
             "<identity category='conference' type='irc' name='IRC gateway'/></query></iq>")
    assert _items(server) == [("irc.localhost", "IRC gateway"), ("other.localhost", "Other")]
    other.stream.connectionLost()
    assert _items(server) == [("irc.localhost", "IRC gateway")]


# -- configuration -------------------------------------------------------------------------
@pytest.mark.parametrize("raw,message", [
    ({"components": {"localhost": {"secret": "x"}}}, "components.localhost: already a host"),
    ({"components": {"irc.localhost": {"secret": ""}}}, "components.irc.localhost.secret"),
    ({"components": {"irc.localhost": {}}}, "components.irc.localhost.secret: required"),
    ({"components": {"bad domain": {"secret": "x"}}}, "components.bad domain: not a valid"),
    ({"components": {"irc.localhost": {"secret": "x", "port": 1}}},
     "components.irc.localhost.port: unknown key"),
])
def test_config_errors_name_the_key(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        from_dict({"listeners": LISTENERS, **raw})
    assert str(exc.value).startswith(message), str(exc.value)


def test_components_need_a_component_listener() -> None:
    with pytest.raises(ConfigError, match="no listener"):
        from_dict({"components": {"irc.localhost": {"secret": "x"}}})


def test_component_listener_is_loopback_by_default() -> None:
    cfg = from_dict({"listeners": [{"type": "component", "port": 5347},
                                   {"type": "c2s", "port": 5222}]})
    assert [lc.address for lc in cfg.listeners] == ["127.0.0.1", "0.0.0.0"]


def test_component_domain_taken_by_a_plugin_is_a_config_error() -> None:
    server = make_server(plugins=["disco", "muc"], extra={
        "components": {"conference.localhost": {"secret": "x"}}, "listeners": LISTENERS})
    with pytest.raises(ConfigError, match=r"components\.conference\.localhost"):
        ComponentManager(server).register()


# -- cluster -------------------------------------------------------------------------------------
class OtherNodeOwnsEverything:
    """A cluster view in which every routed entity (a room) belongs to another node."""

    node = "here"

    def __init__(self) -> None:
        self.forwarded: list[str] = []

    def owner(self, bare: str) -> str:
        return "elsewhere"

    def forward_route(self, node: str, stanza: st.Element) -> Any:
        from twisted.internet.defer import succeed
        self.forwarded.append(stanza.getAttribute("to"))
        return succeed(1)

    async def node_gone(self, node: str) -> None:
        raise AssertionError("no node is gone")

    def node_of_iq(self, iq_id: str) -> str | None:
        return None


def test_component_jids_stay_on_the_node_the_component_is_connected_to() -> None:
    # Rooms are spread over a cluster's nodes; a component's link exists on one node only.
    server, mgr = setup()
    cluster = OtherNodeOwnsEverything()
    server.router.cluster = cluster
    user = FakeSession(server, "u@localhost/r")
    w = Wire(mgr).connect()
    user.stanza(st.make("message", attrs={"to": "#room%irc@irc.localhost", "id": "c1"}))
    (out,) = w.read()
    assert out.get("to") == "#room%irc@irc.localhost" and cluster.forwarded == []
