"""XEP-0065 SOCKS5 Bytestreams proxy against the real server: two slixmpp clients transfer
a file through proxy.localhost with slixmpp's own xep_0065 plugin (discovery, streamhost
query, SOCKS5, activation); bad SOCKS5 input, bad activations and unauthorised users get the
errors XEP-0065 and RFC 1928 name, and change nothing."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import pytest
from slixmpp.exceptions import IqError

from tests.conftest import start_server
from tests.support.ca import CertAuthority
from tests.support.client import Client, connect, run
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration

NS = "http://jabber.org/protocol/bytestreams"
PROXY = "proxy.localhost"
# The acl lists these users only: "outsider" is a local user it leaves out.
USERS = ("disco", "alice", "bob", "ra", "rb")


@pytest.fixture(scope="module")
def srv(ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[ServerProcess]:
    yield from start_server(tmp_path_factory.mktemp("proxy65"), "sqlite", ca, config={
        "listeners": [
            {"type": "c2s", "port": 0, "address": "127.0.0.1"},
            {"type": "c2s_tls", "port": 0, "address": "127.0.0.1"},
            {"type": "https", "port": 0, "address": "127.0.0.1"},
            {"type": "socks5", "port": 0, "address": "127.0.0.1"},
        ],
        "plugins": {"proxy65": {"acl": [f"{u}@localhost" for u in USERS],
                                "handshake_timeout": 20.0}}})


def user(srv: ServerProcess, name: str) -> str:
    jid = f"{name}@localhost"
    srv.add_user(jid)
    return jid


def socks_port(srv: ServerProcess) -> int:
    return srv.ports["socks5"][0]


async def query(c: Client, to: str, type_: str, xml: str) -> ET.Element:
    iq = c.make_iq_get(ito=to) if type_ == "get" else c.make_iq_set(ito=to)
    iq.xml.append(ET.fromstring(xml))
    return (await iq.send()).xml


async def error(c: Client, to: str, type_: str, xml: str) -> str:
    with pytest.raises(IqError) as exc:
        await query(c, to, type_, xml)
    return str(exc.value.iq["error"]["condition"])


def test_discovery_and_streamhost(srv: ServerProcess) -> None:
    jid = user(srv, "disco")

    async def body() -> None:
        c = await connect(srv, jid)
        items = await c.plugin["xep_0030"].get_items(jid="localhost")
        assert PROXY in {i[0] for i in items["disco_items"]["items"]}
        info = await c.plugin["xep_0030"].get_info(jid=PROXY)
        assert ("proxy", "bytestreams") in {i[:2] for i in info["disco_info"]["identities"]}
        assert NS in info["disco_info"]["features"]
        res = await query(c, PROXY, "get", f"<query xmlns='{NS}'/>")
        host = res.find(f"{{{NS}}}query/{{{NS}}}streamhost")
        assert host is not None
        # §4.4: jid, host and port; the listener is bound to 127.0.0.1, so that is the host
        assert host.attrib == {"jid": PROXY, "host": "127.0.0.1", "port": str(socks_port(srv))}
        await c.close()

    run(body())


def test_file_transfer_through_the_proxy(srv: ServerProcess) -> None:
    alice, bob = user(srv, "alice"), user(srv, "bob")
    data = os.urandom(300_000)

    async def body() -> None:
        a = await connect(srv, alice + "/send", plugins=("xep_0065",))
        b = await connect(srv, bob + "/recv", plugins=("xep_0065",))
        b.plugin["xep_0065"].auto_accept = True
        received = bytearray()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_data(chunk: bytes) -> None:
            received.extend(chunk)
            if len(received) >= len(data) and not done.done():
                done.set_result(None)

        b.add_event_handler("socks5_data", on_data)
        proxies = await a.plugin["xep_0065"].discover_proxies()
        assert set(proxies) == {PROXY}
        sock = await a.plugin["xep_0065"].handshake(f"{bob}/recv")
        assert sock is not None, "handshake failed"
        for i in range(0, len(data), 16384):
            await sock.write(data[i:i + 16384])
        await asyncio.wait_for(done, 30)
        assert bytes(received) == data
        sock.transport.close()  # the requester ends the stream: the target's side closes too
        closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        b.add_event_handler("socks5_closed",
                            lambda _e: closed.done() or closed.set_result(None))
        await asyncio.wait_for(closed, 10)
        await a.close()
        await b.close()

    run(body())
    assert "proxy65: stream " in srv.log() and f"{len(data)} bytes)" in srv.log()


class Socks:
    """A raw SOCKS5 client (RFC 1928) for the proxy's listener."""

    def __init__(self, srv: ServerProcess) -> None:
        self.sock = socket.create_connection(("127.0.0.1", socks_port(srv)), timeout=10)

    def recv(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                break
            out += chunk
        return out

    def connect(self, digest: str) -> bytes:
        self.sock.sendall(b"\x05\x01\x00")
        assert self.recv(2) == b"\x05\x00"
        self.sock.sendall(b"\x05\x01\x00\x03\x28" + digest.encode() + b"\x00\x00")
        return self.recv(47)

    def closed(self) -> bool:
        return self.sock.recv(1) == b""


def digest(sid: str, requester: str, target: str) -> str:
    return hashlib.sha1((sid + requester + target).encode()).hexdigest()


def test_activation_errors(srv: ServerProcess) -> None:
    alice, bob = user(srv, "ra"), user(srv, "rb")

    async def body() -> None:
        a = await connect(srv, alice + "/r")
        b = await connect(srv, bob + "/r")

        def activate(sid: str, target: str) -> str:
            return f"<query xmlns='{NS}' sid='{sid}'><activate>{target}</activate></query>"

        # nobody connected with this hash: item-not-found (§4.9)
        assert await error(a, PROXY, "set", activate("s1", bob + "/r")) == "item-not-found"
        one = Socks(srv)
        assert one.connect(digest("s1", alice + "/r", bob + "/r"))[1] == 0
        # only one party connected: not-allowed (§4.9)
        assert await error(a, PROXY, "set", activate("s1", bob + "/r")) == "not-allowed"
        two = Socks(srv)
        assert two.connect(digest("s1", alice + "/r", bob + "/r"))[1] == 0
        # the target (or anyone but the requester) asking: its hash is another one
        assert await error(b, PROXY, "set", activate("s1", alice + "/r")) == "item-not-found"
        assert await error(b, PROXY, "set", activate("s1", bob + "/r")) == "item-not-found"
        # malformed requests
        assert await error(a, PROXY, "set", f"<query xmlns='{NS}'><activate>{bob}/r"
                           "</activate></query>") == "bad-request"
        assert await error(a, PROXY, "set", f"<query xmlns='{NS}' sid='{'x' * 128}'>"
                           f"<activate>{bob}/r</activate></query>") == "bad-request"
        assert await error(a, PROXY, "set", f"<query xmlns='{NS}' sid='s1'/>") == (
            "bad-request")
        assert await error(a, PROXY, "set", activate("s1", "a@@b")) == "jid-malformed"
        # none of that changed anything: the requester activates, bytes flow both ways
        assert (await query(a, PROXY, "set", activate("s1", bob + "/r"))).get("type") == (
            "result")
        one.sock.sendall(b"ping")
        assert two.recv(4) == b"ping"
        two.sock.sendall(b"pong")
        assert one.recv(4) == b"pong"
        # activated once: a second activation finds nothing
        assert await error(a, PROXY, "set", activate("s1", bob + "/r")) == "item-not-found"
        one.sock.close()
        assert two.closed()
        await a.close()
        await b.close()

    run(body())


@pytest.mark.parametrize("request_,code", [
    (b"\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50", 0x08),  # IPv4: address type not supported
    (b"\x05\x02\x00\x03\x28" + b"0" * 40 + b"\x00\x00", 0x07),  # BIND: command not supported
    (b"\x05\x01\x00\x03\x05hello\x00\x00", 0x02),  # not a SHA-1 hash (§4.6 rule 1)
    (b"\x05\x01\x00\x03\x28" + b"0" * 40 + b"\x1f\x90", 0x02),  # port 8080 (rule 2)
])
def test_bad_socks5_requests_are_refused(srv: ServerProcess, request_: bytes,
                                         code: int) -> None:
    """RFC 1928 §6 reply codes, then the connection is closed."""
    s = Socks(srv)
    s.sock.sendall(b"\x05\x01\x00")
    assert s.recv(2) == b"\x05\x00"
    s.sock.sendall(request_)
    assert s.recv(2) == bytes((5, code))
    s.recv(5)
    assert s.closed()


def test_bad_greeting_and_a_third_party(srv: ServerProcess) -> None:
    s = Socks(srv)
    s.sock.sendall(b"\x05\x01\x02")  # username/password only
    assert s.recv(2) == b"\x05\xff" and s.closed()
    s = Socks(srv)
    s.sock.sendall(b"\x16\x03\x01\x00")  # a TLS ClientHello: not SOCKS5, no answer
    assert s.closed()
    h = digest("third", "x@localhost/a", "y@localhost/b")
    one, two, three = Socks(srv), Socks(srv), Socks(srv)
    assert one.connect(h)[1] == 0 and two.connect(h)[1] == 0
    assert three.connect(h)[1] == 0x02 and three.closed()


def test_unauthorised_users_are_refused(srv: ServerProcess) -> None:
    """A user the acl does not list gets forbidden for the streamhost query (§4.4) and for
    activation, even of a stream whose two parties are connected; the stream still waits
    for its real requester. (Remote users without an acl: tests/unit/test_proxy65.py.)"""
    outsider, _ = srv.new_user("outsider")
    target = "rb@localhost"  # the hash needs no account

    async def body() -> None:
        c = await connect(srv, outsider + "/r")
        get = f"<query xmlns='{NS}'/>"
        assert await error(c, PROXY, "get", get) == "forbidden"
        h = digest("o1", outsider + "/r", target + "/r")
        one, two = Socks(srv), Socks(srv)
        assert one.connect(h)[1] == 0 and two.connect(h)[1] == 0
        assert await error(c, PROXY, "set", f"<query xmlns='{NS}' sid='o1'><activate>"
                           f"{target}/r</activate></query>") == "forbidden"
        # not activated: the pair is still waiting, so a third connection for it is refused
        # (once activated, the hash is free again and a newcomer would be accepted)
        three = Socks(srv)
        assert three.connect(h)[1] == 0x02 and three.closed()
        # the disco of the server still lists the proxy for everyone (it is public)
        items = await c.plugin["xep_0030"].get_items(jid="localhost")
        assert PROXY in {i[0] for i in items["disco_items"]["items"]}
        await c.close()

    run(body())
