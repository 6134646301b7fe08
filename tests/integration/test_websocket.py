"""XMPP over WebSocket (RFC 7395) and XEP-0156 discovery, with a real WebSocket client."""

from __future__ import annotations

import base64
import json
import ssl
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import start_server
from tests.support.ca import CertAuthority
from tests.support.client import connect, run
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration
FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND = "urn:ietf:params:xml:ns:xmpp-bind"
STREAMS = "http://etherx.jabber.org/streams"
C = "{jabber:client}"


@pytest.fixture(scope="module")
def srv(ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from start_server(tmp_path_factory.mktemp("ws"), "sqlite", ca, config={
        "listeners": [{"type": "c2s", "port": 0, "address": "127.0.0.1"},
                      {"type": "https", "port": 0, "address": "127.0.0.1"},
                      {"type": "http", "port": 0, "address": "127.0.0.1"}],
        "web": {"websocket_origins": ["https://allowed.example"]}})


def ctx(srv: ServerProcess) -> ssl.SSLContext:
    c = ssl.create_default_context(cafile=str(srv.ca.ca_file))
    c.check_hostname = False
    return c


class WS:
    def __init__(self, conn: Any) -> None:
        self.conn = conn

    @classmethod
    async def open(cls, srv: ServerProcess, secure: bool = True, **kw: Any) -> WS:
        port = srv.https_port if secure else srv.ports["http"][0]
        url = f"{'wss' if secure else 'ws'}://127.0.0.1:{port}/xmpp-websocket"
        conn = await websockets.connect(url, subprotocols=["xmpp"],
                                        ssl=ctx(srv) if secure else None, **kw)
        assert conn.subprotocol == "xmpp"
        return cls(conn)

    async def send(self, xml: str) -> None:
        await self.conn.send(xml)

    async def recv(self) -> ET.Element:
        return ET.fromstring(await self.conn.recv())

    async def stream(self) -> ET.Element:
        await self.send(f"<open xmlns='{FRAMING}' to='localhost' version='1.0'/>")
        opened = await self.recv()
        assert opened.tag == f"{{{FRAMING}}}open" and opened.get("from") == "localhost"
        assert opened.get("id") and opened.get("version") == "1.0"
        features = await self.recv()
        assert features.tag == f"{{{STREAMS}}}features"
        return features

    async def login(self, jid: str, pw: str, resource: str = "web") -> str:
        features = await self.stream()
        mechs = [m.text for m in features.iter(f"{{{SASL}}}mechanism")]
        assert "PLAIN" in mechs and "SCRAM-SHA-256" in mechs
        assert features.find("{urn:ietf:params:xml:ns:xmpp-tls}starttls") is None
        token = base64.b64encode(f"\0{jid.split('@')[0]}\0{pw}".encode()).decode()
        await self.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{token}</auth>")
        assert (await self.recv()).tag == f"{{{SASL}}}success"
        await self.stream()
        await self.send(f"<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='{BIND}'>"
                        f"<resource>{resource}</resource></bind></iq>")
        res = await self.recv()
        full = res.findtext(f"{{{BIND}}}bind/{{{BIND}}}jid")
        assert full == f"{jid}/{resource}"
        return full

    async def error_and_close(self) -> str:
        err = await self.recv()
        assert err.tag == f"{{{STREAMS}}}error", ET.tostring(err)
        cond = next(c.tag.split("}")[1] for c in err if not c.tag.endswith("}text"))
        assert (await self.recv()).tag == f"{{{FRAMING}}}close"
        with pytest.raises(ConnectionClosed):
            await self.conn.recv()
        return cond


def test_chat_over_websocket_with_a_tcp_user(srv: ServerProcess) -> None:
    a, apw = srv.new_user("web")
    b, _ = srv.new_user("tcp")

    async def body() -> None:
        ws = await WS.open(srv)
        full = await ws.login(a, apw)
        await ws.send("<presence xmlns='jabber:client'/>")
        own = await ws.recv()
        assert own.tag == C + "presence"  # every stanza is its own document, xmlns explicit
        cb = await connect(srv, b + "/tcp")
        cb.send_message(mto=full, mbody="hello browser", mtype="chat")
        msg = await ws.recv()
        assert msg.tag == C + "message" and msg.findtext(C + "body") == "hello browser"
        await ws.send(f"<message xmlns='jabber:client' to='{b}' type='chat'>"
                      "<body>hello terminal</body></message>")
        got = await cb.next_message(where=lambda m: m["type"] == "chat")
        assert got["body"] == "hello terminal" and str(got["from"]) == full
        await ws.send(f"<close xmlns='{FRAMING}'/>")
        assert (await ws.recv()).tag == f"{{{FRAMING}}}close"
        with pytest.raises(ConnectionClosed):
            await ws.conn.recv()
        await cb.close()

    run(body())


@pytest.mark.parametrize("frame,condition", [
    ("<message xmlns='jabber:client'/><message xmlns='jabber:client'/>", "not-well-formed"),
    ("<message xmlns='jabber:client'><body>half", "not-well-formed"),
    ("<!-- a comment -->", "restricted-xml"),
    ("<message xmlns='jabber:client'><body>x</body></message>", "not-authorized"),
])
def test_bad_frames_before_auth(srv: ServerProcess, frame: str, condition: str) -> None:
    async def body() -> None:
        ws = await WS.open(srv)
        await ws.stream()
        await ws.send(frame)
        assert await ws.error_and_close() == condition

    run(body())


@pytest.mark.parametrize("frame", [
    # XEP-0077 is allowed before authentication; before <open/> there is no host to ask
    "<iq xmlns='jabber:client' type='get' id='r'><query xmlns='jabber:iq:register'/></iq>",
    f"<auth xmlns='{SASL}' mechanism='PLAIN'>AGEAYg==</auth>",
])
def test_elements_before_open(srv: ServerProcess, frame: str) -> None:
    """RFC 7395 §3.4: <open/> comes first. An element before it (found by tests/fuzz) made
    the session look up the host of a stream not yet opened: a traceback, no answer."""
    async def body() -> None:
        ws = await WS.open(srv)
        await ws.send(frame)
        opened = await ws.recv()  # the header owed before any stream error (RFC 6120 §4.9.1.1)
        assert opened.tag == f"{{{FRAMING}}}open" and opened.get("from") == "localhost"
        assert await ws.error_and_close() == "not-authorized"

    run(body())


def test_binary_frame_and_frames_after_login(srv: ServerProcess) -> None:
    a, apw = srv.new_user("web")

    async def body() -> None:
        ws = await WS.open(srv)
        await ws.login(a, apw)
        await ws.send(b"<presence xmlns='jabber:client'/>")  # binary frame
        assert await ws.error_and_close() == "bad-format"
        ws = await WS.open(srv)
        await ws.login(a, apw, resource="two")
        await ws.send("<iq xmlns='jabber:client' type='get' id='1'><ping xmlns='urn:xmpp:ping'/>"
                      "</iq><iq xmlns='jabber:client' type='get' id='2'/>")
        assert await ws.error_and_close() == "not-well-formed"

    run(body())


def test_handshake_rules(srv: ServerProcess) -> None:
    async def body() -> None:
        url = f"wss://127.0.0.1:{srv.https_port}/xmpp-websocket"
        with pytest.raises(InvalidStatus) as exc:  # no 'xmpp' subprotocol
            await websockets.connect(url, ssl=ctx(srv))
        assert exc.value.response.status_code == 400
        with pytest.raises(InvalidStatus) as exc:
            await websockets.connect(url, ssl=ctx(srv), subprotocols=["xmpp"],
                                     origin="https://evil.example")
        assert exc.value.response.status_code == 403
        ok = await websockets.connect(url, ssl=ctx(srv), subprotocols=["xmpp"],
                                      origin="https://allowed.example")
        await ok.close()
        # plain ws:// is refused unless a trusted proxy says the client used TLS
        ws = await WS.open(srv, secure=False)
        await ws.send(f"<open xmlns='{FRAMING}' to='localhost' version='1.0'/>")
        assert (await ws.recv()).tag == f"{{{FRAMING}}}open"
        assert await ws.error_and_close() == "policy-violation"
        ws = await WS.open(srv, secure=False,
                           additional_headers={"X-Forwarded-Proto": "https"})
        features = await ws.stream()
        assert features.find(f"{{{SASL}}}mechanisms") is not None
        await ws.conn.close()

    run(body())


def test_host_meta_discovery(srv: ServerProcess) -> None:
    base = f"https://127.0.0.1:{srv.https_port}/.well-known/"
    with urllib.request.urlopen(base + "host-meta", context=ctx(srv)) as r:
        xrd = ET.fromstring(r.read())
        assert r.headers["Access-Control-Allow-Origin"] == "*"
    link = xrd.find("{http://docs.oasis-open.org/ns/xri/xrd-1.0}Link")
    assert link is not None and link.get("rel") == "urn:xmpp:alt-connections:websocket"
    assert link.get("href") == f"wss://127.0.0.1:{srv.https_port}/xmpp-websocket"
    with urllib.request.urlopen(base + "host-meta.json", context=ctx(srv)) as r:
        data = json.loads(r.read())
    assert data["links"][0]["href"] == link.get("href")


def test_large_bodies_are_refused_before_they_are_read(srv: ServerProcess) -> None:
    """Only resources that stream bodies take large ones; elsewhere 413 comes at once."""
    import socket

    for path in ("/", "/xmpp-websocket", "/.well-known/host-meta"):
        raw = socket.create_connection(("127.0.0.1", srv.https_port), timeout=10)
        tls = ctx(srv).wrap_socket(raw, server_hostname="localhost")
        tls.sendall(f"POST {path} HTTP/1.1\r\nHost: localhost\r\n"
                    f"Content-Length: {50 * 1024 * 1024}\r\n\r\n".encode())
        answer = tls.recv(4096).decode()  # no body was sent, yet the answer is here
        assert answer.startswith("HTTP/1.1 413"), answer
        tls.close()
