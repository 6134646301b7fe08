"""XMPP over WebSocket (RFC 7395) and XEP-0156 discovery, with a real WebSocket client."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import ssl
import struct
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from slixmpp import JID
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.conftest import start_server
from tests.support.ca import CertAuthority
from tests.support.client import connect, run
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration
FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND = "urn:ietf:params:xml:ns:xmpp-bind"
SM = "urn:xmpp:sm:3"
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


@pytest.mark.parametrize("secure", [True, False], ids=["wss", "ws"])
def test_a_200_kib_stanza_crosses_a_websocket_both_ways(srv: ServerProcess, secure: bool) -> None:
    """Regression: each message was parsed as a whole synthetic stream, so the 8 KiB budget
    of a stream header applied to it and any frame over 8 KiB (an OMEMO bundle) closed the
    stream. A message is now held to the per-stanza budget, as on TCP (RFC 6120 §13.12)."""
    a, apw = srv.new_user("bigweb")
    b, _ = srv.new_user("bigtcp")
    big = "x" * (200 * 1024)
    headers = {} if secure else {"X-Forwarded-Proto": "https"}

    async def body() -> None:
        ws = await WS.open(srv, secure=secure, additional_headers=headers)
        full = await ws.login(a, apw)
        cb = await connect(srv, b + "/tcp")
        await ws.send(f"<message xmlns='jabber:client' to='{b}/tcp' type='chat' id='big'>"
                      f"<body>{big}</body></message>")
        got = await cb.next_message(where=lambda m: m["id"] == "big")
        assert got["body"] == big
        cb.send_message(mto=full, mbody=big + "y", mtype="chat")
        msg = await ws.recv()
        assert msg.findtext(C + "body") == big + "y"
        await ws.send("<iq xmlns='jabber:client' type='get' id='p'>"
                      "<ping xmlns='urn:xmpp:ping'/></iq>")
        assert (await ws.recv()).get("id") == "p"  # the stream is still up
        await cb.close()
        await ws.conn.close()

    run(body())


def test_websocket_stanza_budgets_before_and_after_auth(srv: ServerProcess) -> None:
    """Before authentication a much smaller budget applies (limits.max_preauth_stanza_size,
    advertised with XEP-0478); after it, the full one, and past it <policy-violation/>."""
    a, apw = srv.new_user("budget")
    limits = "{urn:xmpp:stream-limits:0}"

    async def body() -> None:
        ws = await WS.open(srv)
        features = await ws.stream()
        assert features.findtext(f"{limits}limits/{limits}max-bytes") == "16384"
        await ws.send(f"<iq xmlns='jabber:client' type='get' id='r'>"
                      f"<query xmlns='jabber:iq:register'>{'z' * 20000}</query></iq>")
        assert await ws.error_and_close() == "policy-violation"
        ws = await WS.open(srv)
        await ws.login(a, apw)
        await ws.send(f"<message xmlns='jabber:client' to='{a}'><body>{'q' * 263000}"
                      "</body></message>")
        assert await ws.error_and_close() == "policy-violation"
        # Past the WebSocket message limit too (the frame header announces it): the same
        # stream error and Close frame, not a dropped connection (found by hand: autobahn
        # dropped the TCP connection with nothing said).
        for size in (300 * 1024, 10 * 1024 * 1024):
            ws = await WS.open(srv)
            await ws.login(a, apw, resource=f"big{size}")
            await ws.send(f"<message xmlns='jabber:client' to='{a}'><body>{'q' * size}"
                          "</body></message>")
            assert await ws.error_and_close() == "policy-violation"
        ws = await WS.open(srv)  # and the server goes on
        await ws.login(a, apw, resource="after")

    run(body())


def test_the_client_address_behind_a_proxy_is_the_hop_the_proxy_added(srv: ServerProcess
                                                                       ) -> None:
    """A client may write its own X-Forwarded-For; a trusted proxy appends the address it
    saw. The rightmost untrusted hop is the client (bans and limits key on it), not the
    leftmost, which the client chose."""
    async def body() -> None:
        ws = await WS.open(srv, secure=False, additional_headers={
            "X-Forwarded-Proto": "https", "X-Forwarded-For": "192.0.2.66, 198.51.100.7"})
        await ws.stream()
        await ws.conn.close()

    run(body())
    log = srv.log()
    assert "c2s connection from 198.51.100.7:" in log
    assert "c2s connection from 192.0.2.66" not in log


class RawWS:
    """A WebSocket client on a blocking TLS socket that does only what it is told: no reads
    in the background and no answer to the server's TLS close_notify, so the server's side of
    a closing connection stays open as long as the test needs (as with a slow or vanished
    peer). Call its methods through asyncio.to_thread."""

    def __init__(self, srv: ServerProcess) -> None:
        raw = socket.create_connection(("127.0.0.1", srv.https_port), timeout=30)
        self.sock = ctx(srv).wrap_socket(raw, server_hostname="localhost")
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET /xmpp-websocket HTTP/1.1\r\nHost: 127.0.0.1:{srv.https_port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: xmpp\r\n\r\n".encode())
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            head += self._exact(1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def _exact(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            assert chunk, "connection closed"
            out += chunk
        return out

    def frame(self, opcode: int, payload: bytes) -> None:
        """RFC 6455 §5.2: a final frame, masked as a client's must be."""
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def send(self, xml: str) -> None:
        self.frame(0x1, xml.encode())

    def recv(self) -> tuple[int, bytes]:
        b0, b1 = self._exact(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", self._exact(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self._exact(8))[0]
        return b0 & 0x0F, self._exact(n)

    def recv_xml(self) -> ET.Element:
        opcode, payload = self.recv()
        assert opcode == 0x1, (opcode, payload)
        return ET.fromstring(payload)


def test_stanzas_for_a_websocket_the_client_is_closing_are_kept_for_resumption(
        srv: ServerProcess) -> None:
    """Between the client's Close frame and the end of the TCP connection, the WebSocket
    refuses to send: a stanza routed to the session then (or the stream-management ack
    request timer firing then) must neither raise out of the write - which answered the
    sender with internal-server-error and logged a traceback, seen when a browser tab closed -
    nor be lost: like a TCP stream that is going away, the write is dropped, and the stanza,
    unacknowledged, is sent again when the session is resumed (XEP-0198 §5)."""
    a, apw = srv.new_user("closing")
    b, _ = srv.new_user("sender")

    async def body() -> None:
        raw = await asyncio.to_thread(RawWS, srv)

        def login() -> tuple[str, str]:
            token = base64.b64encode(f"\0{a.split('@')[0]}\0{apw}".encode()).decode()
            for step in (f"<open xmlns='{FRAMING}' to='localhost' version='1.0'/>",
                         f"<auth xmlns='{SASL}' mechanism='PLAIN'>{token}</auth>",
                         f"<open xmlns='{FRAMING}' to='localhost' version='1.0'/>",
                         f"<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='{BIND}'>"
                         "<resource>tab</resource></bind></iq>",
                         f"<enable xmlns='{SM}' resume='true'/>",
                         "<presence xmlns='jabber:client'/>"):
                raw.send(step)
            full = sm_id = ""
            while True:  # until our own presence comes back: one stanza handled (h=1)
                el = raw.recv_xml()
                full = full or el.findtext(f"{{{BIND}}}bind/{{{BIND}}}jid") or ""
                sm_id = sm_id or (el.get("id", "") if el.tag == f"{{{SM}}}enabled" else "")
                if el.tag == C + "presence":
                    return full, sm_id

        full, sm_id = await asyncio.to_thread(login)
        assert full == a + "/tab" and sm_id
        sender = await connect(srv, b + "/desk")
        await asyncio.to_thread(raw.frame, 0x8, struct.pack(">H", 1000))
        opcode, _ = await asyncio.to_thread(raw.recv)
        assert opcode == 0x8  # the server answered our Close: its side is closing now
        sender.send_message(mto=full, mbody="sent while the tab closed", mtype="chat")
        await sender.plugin["xep_0199"].ping(jid=JID("localhost"), timeout=10)  # routed
        assert sender.messages.empty(), [str(m) for m in sender.messages._queue]  # no error
        await asyncio.to_thread(raw.sock.close)

        ws = await WS.open(srv)  # another tab resumes the session
        await ws.stream()
        token = base64.b64encode(f"\0{a.split('@')[0]}\0{apw}".encode()).decode()
        await ws.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{token}</auth>")
        assert (await ws.recv()).tag == f"{{{SASL}}}success"
        await ws.stream()
        await ws.send(f"<resume xmlns='{SM}' previd='{sm_id}' h='1'/>")
        resumed = await ws.recv()
        assert resumed.tag == f"{{{SM}}}resumed", ET.tostring(resumed)
        again = await ws.recv()
        # Sent again in the WebSocket framing: a standalone document declaring
        # jabber:client (RFC 7395 §3.3.3; they were written without it at first).
        assert again.findtext(C + "body") == "sent while the tab closed", ET.tostring(again)
        await sender.close()
        await ws.conn.close()
        assert "Attempt to send on a closed protocol" not in srv.log()

    run(body())
