"""The real HAProxy (Debian's package) in front of two xmppd nodes, configured by
contrib/haproxy/haproxy.cfg (issue 19, item 1).

The example is rendered for the test: HAProxy frontends cannot listen on port 0 and report
the port, so free ports are found by binding a socket to port 0 and closing it (a port taken
by someone else in between makes HAProxy fail to start, loudly); the nodes' addresses and
ports are the ones they report; checks run every 300 ms instead of 2 s.

The two nodes are independent single-node servers on SQLite holding the same account (what
HAProxy does does not depend on the nodes forming a cluster). Clients connect from
127.0.0.2 (and the attacker from 127.0.0.9), HAProxy from 127.0.0.1: the nodes see the
client addresses only through the PROXY protocol v2 header.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import csv
import http.client
import io
import os
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from tests.conftest import start_server
from tests.support.ca import CertAuthority
from tests.support.client import run
from tests.support.raw import NS_SASL, NS_STREAMS, NS_TLS, RawStream, q, stanza_error
from tests.support.server import ROOT, ServerProcess

pytestmark = pytest.mark.integration
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
EXAMPLE = ROOT / "contrib" / "haproxy" / "haproxy.cfg"
CLIENT = "127.0.0.2"
FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
BIND = "urn:ietf:params:xml:ns:xmpp-bind"
# The example's ports -> the nodes' listener types.
KINDS = {5222: "c2s", 5223: "c2s_tls", 5269: "s2s", 5280: "http", 5281: "https"}

NODE_CONFIG: dict[str, Any] = {
    "listeners": [{"type": kind, "port": 0, "address": "127.0.0.1", "proxy_protocol": True}
                  for kind in KINDS.values()],
    "proxy_protocol": {"trusted": ["127.0.0.1/32"], "timeout": 5.0},
    "auth": {"ban_after": 3, "throttle_after": 100, "max_failures_per_stream": 50},
    "plugins": {"register": {"allow_registration": True, "max_per_ip": 1}},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def render(nodes: dict[str, ServerProcess], fronts: dict[int, int], admin: Path) -> str:
    """contrib/haproxy/haproxy.cfg for this machine: frontends on ``fronts`` (example port ->
    free port), servers at the nodes' reported ports, the admin socket, logs to stdout."""
    text = EXAMPLE.read_text()
    text = re.sub(r"(?m)^(\s*)bind :(\d+)$",
                  lambda m: f"{m[1]}bind 127.0.0.1:{fronts[int(m[2])]}", text)

    def server(m: re.Match[str]) -> str:
        node = nodes[m[1]]
        return (f"server {m[1]} 127.0.0.1:{node.ports[KINDS[int(m[2])]][0]}{m[3]}"
                f"port {node.ports['http'][0]}")

    text, count = re.subn(r"server (node\d) 10\.0\.0\.\d+:(\d+)(.*?)port 5280", server, text)
    assert count == 2 * len(fronts)
    text = re.sub(r"(?m)^(\s*)log /dev/log local0$",
                  rf"\1log stdout format raw local0\n\1stats socket {admin} level admin", text)
    text = text.replace("maxconn 200000", "maxconn 2000").replace("maxconn 50000", "maxconn 500")
    return text.replace("default-server inter 2s", "default-server inter 300ms")


class HAProxy:
    def __init__(self, tmp: Path, nodes: dict[str, ServerProcess]) -> None:
        self.fronts = {port: free_port() for port in KINDS}
        self.admin = tmp / "admin.sock"
        self.config = tmp / "haproxy.cfg"
        self.config.write_text(render(nodes, self.fronts, self.admin))
        self.log_path = tmp / "haproxy.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([HAPROXY, "-db", "-f", str(self.config)],
                                         stdout=log, stderr=subprocess.STDOUT)

    def port(self, kind: str) -> int:
        return self.fronts[next(p for p, k in KINDS.items() if k == kind)]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stats(self) -> dict[tuple[str, str], dict[str, str]]:
        """``show stat`` on the admin socket: (backend, server) -> row."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(self.admin))
            sock.sendall(b"show stat\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        rows = csv.DictReader(io.StringIO(data.decode().lstrip("# ")))
        return {(r["pxname"], r["svname"]): r for r in rows}

    def servers(self, node: str) -> list[dict[str, str]]:
        return [row for (_px, sv), row in self.stats().items() if sv == node]

    def wait(self, what: str, done: Callable[[], bool], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"haproxy exited with {self.proc.returncode}:\n{self.log()}")
            with contextlib.suppress(OSError):
                if done():
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"haproxy: not {what} within {timeout} s:\n{self.log()}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _require() -> None:
    if not os.path.exists(HAPROXY):
        msg = "the HAProxy test needs haproxy (apt-get install haproxy)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture(scope="module")
def nodes(ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[dict[str, ServerProcess]]:
    _require()
    with contextlib.ExitStack() as stack:
        found = {name: stack.enter_context(contextlib.contextmanager(start_server)(
            tmp_path_factory.mktemp(name), "sqlite", ca, config=NODE_CONFIG))
            for name in ("node1", "node2")}
        yield found


@pytest.fixture(scope="module")
def lb(nodes: dict[str, ServerProcess], tmp_path_factory: pytest.TempPathFactory
       ) -> Iterator[HAProxy]:
    proxy = HAProxy(tmp_path_factory.mktemp("haproxy"), nodes)
    try:
        # Every server's check (GET /health on the node's http listener, with a PROXY header)
        # has passed at layer 7.
        proxy.wait("checking every node", lambda: all(
            row["check_status"] == "L7OK" for name in nodes for row in proxy.servers(name)))
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture(scope="module")
def account(nodes: dict[str, ServerProcess]) -> tuple[str, str]:
    """One account on both nodes, same password."""
    jid = "alice@localhost"
    password = nodes["node1"].add_user(jid)
    nodes["node2"].add_user(jid, password)
    return jid, password


def logs(nodes: dict[str, ServerProcess]) -> str:
    return "".join(node.log() for node in nodes.values())


async def closed_silently(raw: RawStream) -> bool:
    """The node closed the connection (or reset it: input was left unread) without a byte."""
    try:
        return await asyncio.wait_for(raw.reader.read(), 10) == b""
    except ConnectionResetError:
        return True
    finally:
        raw.close()


def outcome(el: ET.Element) -> str:
    if el.tag == q(NS_SASL, "success"):
        return "success"
    return next(c.tag.split("}")[1] for c in el if not c.tag.endswith("}text"))


async def starttls_login(lb: HAProxy, ca: CertAuthority, jid: str, pw: str,
                         source: str = CLIENT) -> RawStream:
    raw = await RawStream.open(lb.port("c2s"), source=source)
    await raw.login(str(ca.ca_file), jid.split("@")[0], pw, resource="starttls")
    return raw


def test_login_with_starttls_through_haproxy(lb: HAProxy, nodes: dict[str, ServerProcess],
                                             account: tuple[str, str], ca: CertAuthority
                                             ) -> None:
    jid, pw = account

    async def body() -> None:
        raw = await starttls_login(lb, ca, jid, pw)
        assert raw.jid == f"{jid}/starttls"
        pong = await raw.iq("<ping xmlns='urn:xmpp:ping'/>", to="localhost")
        assert pong.get("type") == "result"
        # The node that holds the session lists the client's address, not HAProxy's.
        listed = [node.cli("sessions").stdout for node in nodes.values()]
        assert sum(f"{jid}/starttls" in out for out in listed) == 1
        row = next(line for out in listed for line in out.splitlines()
                   if f"{jid}/starttls" in line)
        assert CLIENT in row and "127.0.0.1" not in row, row
        raw.close()

    run(body())
    assert re.search(rf"c2s connection from {re.escape(CLIENT)}:\d+\n", logs(nodes))


def test_login_with_direct_tls_through_haproxy(lb: HAProxy, nodes: dict[str, ServerProcess],
                                               account: tuple[str, str], ca: CertAuthority
                                               ) -> None:
    jid, pw = account

    async def body() -> None:
        raw = await RawStream.open(lb.port("c2s_tls"), tls_ca=str(ca.ca_file), source=CLIENT)
        features = await raw.open_stream()
        assert features.find(q(NS_TLS, "starttls")) is None  # TLS already
        assert outcome(await raw.auth_plain(jid.split("@")[0], pw)) == "success"
        await raw.open_stream()
        assert await raw.bind("direct") == f"{jid}/direct"
        raw.close()

    run(body())
    assert re.search(rf"c2s connection from {re.escape(CLIENT)}:\d+ \(direct TLS\)",
                     logs(nodes))


def test_websocket_through_haproxy(lb: HAProxy, nodes: dict[str, ServerProcess],
                                   account: tuple[str, str], ca: CertAuthority) -> None:
    jid, pw = account
    before = logs(nodes).count(f"c2s connection from {CLIENT}:")
    ctx = ssl.create_default_context(cafile=str(ca.ca_file))
    ctx.check_hostname = False

    async def body() -> None:
        url = f"wss://127.0.0.1:{lb.port('https')}/xmpp-websocket"
        async with websockets.connect(url, subprotocols=["xmpp"], ssl=ctx,  # type: ignore[arg-type]
                                      local_addr=(CLIENT, 0)) as conn:
            async def recv() -> ET.Element:
                return ET.fromstring(await conn.recv())

            async def stream() -> None:
                await conn.send(f"<open xmlns='{FRAMING}' to='localhost' version='1.0'/>")
                assert (await recv()).tag == f"{{{FRAMING}}}open"
                assert (await recv()).tag == f"{{{NS_STREAMS}}}features"

            await stream()
            token = base64.b64encode(f"\0{jid.split('@')[0]}\0{pw}".encode()).decode()
            await conn.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{token}</auth>")
            assert (await recv()).tag == q(NS_SASL, "success")
            await stream()
            await conn.send(f"<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='{BIND}'>"
                            "<resource>ws</resource></bind></iq>")
            assert (await recv()).findtext(f"{{{BIND}}}bind/{{{BIND}}}jid") == f"{jid}/ws"
            await conn.send(f"<close xmlns='{FRAMING}'/>")
            assert (await recv()).tag == f"{{{FRAMING}}}close"

    run(body())
    assert logs(nodes).count(f"c2s connection from {CLIENT}:") == before + 1


def test_s2s_through_haproxy(lb: HAProxy, nodes: dict[str, ServerProcess]) -> None:
    async def body() -> None:
        raw = await RawStream.open(lb.port("s2s"), source=CLIENT)
        features = await raw.open_stream(raw=(
            f"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
            f"xmlns:stream='{NS_STREAMS}' to='localhost' from='remote.example' "
            "version='1.0'>"))
        assert features.find(q(NS_TLS, "starttls")) is not None
        raw.close()

    run(body())
    assert re.search(rf"s2s connection from {re.escape(CLIENT)}:\d+", logs(nodes))


def test_health_page(lb: HAProxy, nodes: dict[str, ServerProcess]) -> None:
    """Directly (from an untrusted address, so without a header) and through HAProxy."""
    node = nodes["node1"]
    for host, port, source in (("127.0.0.1", node.ports["http"][0], "127.0.0.4"),
                               ("127.0.0.1", lb.port("http"), CLIENT)):
        conn = http.client.HTTPConnection(host, port, timeout=10, source_address=(source, 0))
        conn.request("GET", "/health")
        resp = conn.getresponse()
        assert (resp.status, resp.read()) == (200, b"ok\n")
        conn.close()


def test_brute_force_bans_the_client_not_haproxy(lb: HAProxy, nodes: dict[str, ServerProcess],
                                                 account: tuple[str, str], ca: CertAuthority
                                                 ) -> None:
    """Failures through HAProxy from one client address ban that address (on the node that
    counted them; bans are per process), and other clients behind the same HAProxy still
    log in."""
    jid, pw = account
    attacker = "127.0.0.9"

    async def attempt(source: str, password: str) -> str:
        raw = await RawStream.open(lb.port("c2s"), source=source)
        try:
            await raw.open_stream()
            await raw.starttls(str(ca.ca_file))
            await raw.open_stream()
            return outcome(await raw.auth_plain(jid.split("@")[0], password))
        finally:
            raw.close()

    async def body() -> None:
        results = []
        for _ in range(10):  # 3 failures on one node ban; connections alternate over two
            results.append(await attempt(attacker, "wrong"))
            if results[-1] == "temporary-auth-failure":
                break
        assert results[-1] == "temporary-auth-failure", results
        for _ in range(2):  # whichever node it lands on
            assert await attempt(CLIENT, pw) == "success"

    run(body())
    bans = [line for line in logs(nodes).splitlines() if "AUTH-BAN" in line]
    assert len(bans) >= 1 and all(f"AUTH-BAN address {attacker} from {attacker}:" in line
                                  for line in bans), bans
    banned = [name for name, node in nodes.items() if attacker in node.cli("bans").stdout]
    assert banned and "127.0.0.1" not in "".join(node.cli("bans").stdout
                                                 for node in nodes.values())


def test_registration_limits_apply_to_the_client(lb: HAProxy, nodes: dict[str, ServerProcess],
                                                ca: CertAuthority) -> None:
    """One in-band registration per address and node (max_per_ip = 1): a client behind
    HAProxy uses up its own allowance, not everybody's."""

    async def register(source: str) -> str:
        raw = await RawStream.open(lb.port("c2s"), source=source)
        await raw.open_stream()
        await raw.starttls(str(ca.ca_file))
        await raw.open_stream()
        name = f"new{secrets.token_hex(4)}"
        res = await raw.iq(f"<query xmlns='jabber:iq:register'><username>{name}</username>"
                           "<password>s3cret</password></query>", type_="set")
        raw.close()
        if res.get("type") == "result":
            return "created"
        return stanza_error(res)[1]

    async def body() -> None:
        # Three attempts over two nodes: at least one node sees the address twice.
        results = [await register("127.0.0.6") for _ in range(3)]
        assert "resource-constraint" in results and "created" in results, results
        assert await register("127.0.0.7") == "created"

    run(body())
    assert re.search(r"registered new\w+@localhost from 127\.0\.0\.6\n", logs(nodes))
    assert re.search(r"registered new\w+@localhost from 127\.0\.0\.7\n", logs(nodes))


@pytest.mark.parametrize("kind,data", [
    ("c2s", b"PROXY TCP4 203.0.113.9 127.0.0.1 1234 5222\r\n<?xml version='1.0'?>"),
    ("c2s_tls", b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c" + bytes(12)),
    ("https", b"PROXY UNKNOWN\r\nGET /health HTTP/1.1\r\n\r\n"),
])
def test_a_proxy_header_from_an_untrusted_address_is_refused(
        nodes: dict[str, ServerProcess], kind: str, data: bytes) -> None:
    node = nodes["node1"]
    source = "127.0.0.3"

    async def body() -> None:
        raw = await RawStream.open(node.ports[kind][0], source=source)
        await raw.send(data)
        assert await closed_silently(raw)

    run(body())
    refused = [line for line in node.log().splitlines()
               if f"PROXY protocol: refused {source}:" in line and f"the {kind} listener" in line]
    assert len(refused) == 1 and "a PROXY header from an untrusted address" in refused[0]


def test_trusted_address_must_send_the_header(nodes: dict[str, ServerProcess]) -> None:
    """HAProxy's address without a header (a misconfigured balancer, or a local process that
    would otherwise get HAProxy's standing) is closed; a client elsewhere is served."""
    node = nodes["node2"]

    async def body() -> None:
        raw = await RawStream.open(node.c2s_port, source="127.0.0.1")
        await raw.send("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                       f"xmlns:stream='{NS_STREAMS}' to='localhost' version='1.0'>")
        assert await closed_silently(raw)
        direct = await RawStream.open(node.c2s_port, source="127.0.0.5")
        features = await direct.open_stream()
        assert features.find(q(NS_TLS, "starttls")) is not None
        direct.close()

    run(body())
    assert "PROXY protocol: refused 127.0.0.1:" in node.log()
    assert re.search(r"c2s connection from 127\.0\.0\.5:\d+\n", node.log())


def test_a_draining_or_dead_node_is_taken_out(lb: HAProxy, nodes: dict[str, ServerProcess],
                                              account: tuple[str, str], ca: CertAuthority
                                              ) -> None:
    """A scheduled shutdown makes /health answer 503: HAProxy stops sending new clients to
    the node while it still runs; once it is killed, the check fails at the connection."""
    jid, pw = account
    node1, node2 = nodes["node1"], nodes["node2"]
    out = node2.cli("shutdown", "--delay", "300")
    assert out.returncode == 0, out.stderr
    lb.wait("marking node2 down", lambda: all(
        row["status"] == "DOWN" and row["check_status"] == "L7STS"
        and row["check_code"] == "503" for row in lb.servers("node2")))
    assert all(row["status"] == "UP" for row in lb.servers("node1"))
    before = node2.log().count(f"c2s connection from {CLIENT}:")

    async def logins() -> None:
        for i in range(4):
            raw = await starttls_login(lb, ca, jid, pw)
            assert raw.jid == f"{jid}/starttls"
            raw.close()
            del i

    run(logins())
    assert node2.log().count(f"c2s connection from {CLIENT}:") == before
    node2.kill()
    lb.wait("seeing node2 gone", lambda: all(
        row["status"] == "DOWN" and row["check_status"] == "L4CON"
        for row in lb.servers("node2")))
    run(logins())
    assert node1.log().count(f"c2s connection from {CLIENT}:") >= 8
