"""Federation with Prosody (the packaged Debian one, as .ci/run installs it).

xmppd serves x.example, Prosody serves p.example, both on loopback. Both directions are run twice:
with certificates from a test CA that each side trusts and requires (SASL EXTERNAL,
XEP-0178) and with certificates neither side can verify (Server Dialback, XEP-0220).

How each side finds the other without real DNS: xmppd has
``federation.domains."p.test".connect``; Prosody resolves with libunbound (lua-unbound),
which is pointed (``unbound.forward``) at a tiny DNS server run by this test that answers
``_xmpp-server._tcp.x.example`` with xmppd's s2s port and ``x.example`` with 127.0.0.1.

Prosody refuses to run as root unless ``run_as_root = true``; it runs in the foreground
(``-F``) with its own data dir, pid file and log in a temp dir.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.names import dns

from tests.integration.test_federation import free_port
from tests.support.backends import database
from tests.support.ca import CertAuthority
from tests.support.client import Client, connect, run
from tests.support.server import ServerProcess
from xmppd.tls import generate_self_signed

pytestmark = pytest.mark.integration
X, P = "x.example", "p.example"  # unbound answers NXDOMAIN for .test itself
PROSODY = shutil.which("prosody") or ""
PROSODYCTL = shutil.which("prosodyctl") or ""


def require_prosody() -> None:
    missing = "" if PROSODY and PROSODYCTL else "the prosody binary"
    if not missing and subprocess.run(["dpkg", "-s", "lua-unbound"],
                                      capture_output=True).returncode != 0:
        missing = "lua-unbound (Prosody's resolver, which this test points at its own DNS)"
    if not missing:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{missing} is not installed but CI is set: .ci/run must install it")
    pytest.skip(f"PROSODY INTEROP NOT TESTED: {missing} is missing "
                "(apt-get install prosody lua-unbound)")


class FakeDNS:
    """Answers SRV/A queries for the given names from a thread; NXDOMAIN for the rest."""

    def __init__(self, srv: dict[str, tuple[str, int]], a: dict[str, str]) -> None:
        self.srv, self.a = srv, a
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop:
            try:
                data, addr = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                self.sock.sendto(self._answer(data), addr)
            except Exception:  # a malformed query: no answer, like a real server might
                continue

    def _answer(self, data: bytes) -> bytes:
        query = dns.Message()
        query.fromStr(data)
        reply = dns.Message(id=query.id, answer=1, opCode=query.opCode, recDes=query.recDes,
                            recAv=1, auth=1)
        reply.queries = query.queries
        for q in query.queries:
            name = q.name.name.decode().lower().rstrip(".")
            if q.type == dns.SRV and name in self.srv:
                target, port = self.srv[name]
                reply.answers.append(dns.RRHeader(
                    q.name.name, dns.SRV, ttl=5,
                    payload=dns.Record_SRV(0, 0, port, target, ttl=5)))
            elif q.type == dns.A and name in self.a:
                reply.answers.append(dns.RRHeader(q.name.name, dns.A, ttl=5,
                                                  payload=dns.Record_A(self.a[name], ttl=5)))
            elif name not in self.a and not name.endswith(tuple(self.a)):
                reply.rCode = dns.ENAME
        return reply.toStr()

    def close(self) -> None:
        self.stop = True
        self.thread.join(2)
        self.sock.close()


def lua(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "{ " + ", ".join(lua(x) for x in v) + " }"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"[{lua(k)}] = {lua(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


class Prosody:
    def __init__(self, tmp: Path, crt: Path, key: Path, ca_file: str, secure: bool,
                 dns_port: int) -> None:
        self.tmp = tmp
        self.c2s_port, self.s2s_port = free_port(), free_port()
        (tmp / "data").mkdir(parents=True, exist_ok=True)
        self.log_path = tmp / "prosody.log"
        self.config_path = tmp / "prosody.cfg.lua"
        ssl: dict[str, Any] = {"certificate": str(crt), "key": str(key)}
        if ca_file:
            ssl["cafile"] = ca_file
        settings: dict[str, Any] = {
            "daemonize": False,
            "run_as_root": True,  # mod_posix refuses uid 0 otherwise
            "pidfile": str(tmp / "prosody.pid"),
            "data_path": str(tmp / "data"),
            "interfaces": ["127.0.0.1"],
            "c2s_ports": [self.c2s_port],
            "s2s_ports": [self.s2s_port],
            "c2s_direct_tls_ports": [],
            "s2s_direct_tls_ports": [],
            "http_ports": [],
            "https_ports": [],
            "modules_enabled": ["roster", "saslauth", "tls", "dialback", "disco", "ping",
                                "posix"],
            "authentication": "internal_plain",
            "storage": "internal",
            "c2s_require_encryption": True,
            "s2s_require_encryption": True,
            "s2s_secure_auth": secure,
            "ssl": ssl,
            "unbound": {"resolvconf": False, "hoststxt": False,
                        "forward": f"127.0.0.1@{dns_port}",
                        "options": {"do-not-query-localhost": "no"}},
        }
        lines = [f"-- generated by {__file__}"]
        lines += [f"{k} = {lua(v)}" for k, v in settings.items()]
        lines.append('log = { { levels = { min = "debug" }, to = "file", filename = '
                     f"{lua(str(self.log_path))} }} }}")
        lines.append(f"VirtualHost {lua(P)}")
        lines.append(f"  ssl = {lua(ssl)}")
        self.config_path.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def ctl(self, *args: str) -> None:
        r = subprocess.run([PROSODYCTL, "--config", str(self.config_path), *args],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, (r.stdout, r.stderr)

    def start(self) -> None:
        out = open(self.tmp / "prosody.out", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen([PROSODY, "--config", str(self.config_path), "-F"],
                                     stdout=out, stderr=subprocess.STDOUT)
        out.close()
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prosody exited: {self.output()}")
            try:
                socket.create_connection(("127.0.0.1", self.c2s_port), 0.5).close()
                socket.create_connection(("127.0.0.1", self.s2s_port), 0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"prosody did not listen: {self.output()}") from None
                time.sleep(0.1)

    def output(self) -> str:
        text = ""
        for name in ("prosody.out", "prosody.log"):
            p = self.tmp / name
            if p.exists():
                text += p.read_text(errors="replace")[-4000:]
        return text

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Setup:
    def __init__(self, xmppd: ServerProcess, prosody: Prosody, verified: bool) -> None:
        self.xmppd, self.prosody, self.verified = xmppd, prosody, verified


@pytest.fixture(scope="module", params=["verified", "dialback"])
def setup(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Setup]:
    require_prosody()
    verified = request.param == "verified"
    tmp = tmp_path_factory.mktemp(f"prosody-{request.param}")
    ca = CertAuthority.create(tmp / "ca")  # a CA made for this test
    p_crt, p_key = ca.issue(P, tmp / "pcerts")
    if not verified:
        # Certificates nobody can verify: self-signed, so dialback must carry the day.
        generate_self_signed(P, p_crt, p_key, days=30)
    (tmp / "x").mkdir()
    x_port = free_port()
    dns_server = FakeDNS({f"_xmpp-server._tcp.{X}": (X, x_port)}, {X: "127.0.0.1"})
    prosody = Prosody(tmp / "prosody", p_crt, p_key, str(ca.ca_file) if verified else "",
                      verified, dns_server.port)
    fed: dict[str, Any] = {"require_valid_certificates": verified, "connect_timeout": 10.0,
                           "domains": {P: {"connect": f"127.0.0.1:{prosody.s2s_port}"}}}
    if verified:
        fed["ca_file"] = str(ca.ca_file)
    # Without verification, xmppd's certificate comes from a CA only its own clients trust.
    x_ca = ca if verified else CertAuthority.create(tmp / "x-ca")
    with database("sqlite", tmp / "x") as url:
        xmppd = ServerProcess(tmp / "x", url, x_ca, domains=(X,), config={
            "listeners": [{"type": "c2s", "port": 0, "address": "127.0.0.1"},
                          {"type": "c2s_tls", "port": 0, "address": "127.0.0.1"},
                          {"type": "s2s", "port": x_port, "address": "127.0.0.1"}],
            "federation": fed,
        })
        prosody.start()
        xmppd.start()
        try:
            yield Setup(xmppd, prosody, verified)
        finally:
            prosody.stop()
            dns_server.close()
            code = xmppd.stop()
            problems = xmppd.tracebacks()
            assert not problems, "xmppd logged errors:\n" + "\n".join(problems)
            assert code == 0, xmppd.log()[-3000:]


async def prosody_client(s: Setup, jid: str, password: str, ca_file: str) -> Client:
    c = Client(jid, password, ca_file)
    if not s.verified:
        c.ssl_context.check_hostname = False
        import ssl

        c.ssl_context.verify_mode = ssl.CERT_NONE
    c.connect("127.0.0.1", s.prosody.c2s_port)
    await asyncio.wait_for(c.started, 20)
    c.send_presence()
    return c


async def pushed(c: Client, jid: str, subscription: str, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not c.client_roster.has_jid(jid) or c.client_roster[jid]["subscription"] != (
            subscription):
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"no push of {jid} with subscription={subscription}")
        await asyncio.sleep(0.05)


def test_prosody_federation_both_ways(setup: Setup) -> None:
    s = setup
    xu, _ = s.xmppd.new_user("xena", X)
    s.prosody.ctl("register", "paul", P, "paul-secret")
    pu = f"paul@{P}"

    async def body() -> None:
        cx = await connect(s.xmppd, xu + "/x", timeout=20)
        cp = await prosody_client(s, pu + "/p", "paul-secret", str(s.xmppd.ca.ca_file))
        await cx.get_roster()
        await cp.get_roster()
        # xmppd -> Prosody: subscription request, approval, presence
        cx.send_presence(pto=pu, ptype="subscribe")
        await cp.next_presence(timeout=30, where=lambda p: p["type"] == "subscribe"
                               and p["from"].bare == xu)
        cp.send_presence(pto=xu, ptype="subscribed")
        await pushed(cx, pu, "to")
        await cx.next_presence(timeout=20, where=lambda p: p["from"].bare == pu
                               and p["type"] == "available")
        # Prosody -> xmppd: the reverse
        cp.send_presence(pto=xu, ptype="subscribe")
        await cx.next_presence(timeout=20, where=lambda p: p["type"] == "subscribe"
                               and p["from"].bare == pu)
        cx.send_presence(pto=pu, ptype="subscribed")
        await pushed(cx, pu, "both")
        await pushed(cp, xu, "both")
        await cp.next_presence(timeout=20, where=lambda p: p["from"].bare == xu
                               and p["type"] == "available")
        # messages both ways, in order
        for i in range(20):
            cx.send_message(mto=pu, mbody=f"x{i}", mtype="chat")
            cp.send_message(mto=xu, mbody=f"p{i}", mtype="chat")
        got_p = [(await cp.next_message(timeout=20))["body"] for _ in range(20)]
        got_x = [(await cx.next_message(timeout=20))["body"] for _ in range(20)]
        assert got_p == [f"x{i}" for i in range(20)]
        assert got_x == [f"p{i}" for i in range(20)]
        cp.send_presence(pshow="dnd")
        await cx.next_presence(timeout=20, where=lambda p: p["from"].bare == pu
                               and p["show"] == "dnd")
        await cx.close()
        await cp.close()

    try:
        run(body(), timeout=180)
    except BaseException:
        print("---- prosody log ----\n" + s.prosody.log()[-6000:])
        print("---- xmppd log ----\n" + s.xmppd.log()[-6000:])
        raise
    # How the streams authenticated, as each side saw it:
    xlog, plog = s.xmppd.log(), s.prosody.log()
    if s.verified:
        assert f"authenticated as {P} for {X} (SASL EXTERNAL)" in xlog
        assert f"{X} -> {P} (" in xlog and "authenticated (SASL EXTERNAL)" in xlog
        assert "Accepting SASL EXTERNAL identity" in plog
    else:
        assert f"authenticated as {P} for {X} (dialback)" in xlog
        assert "authenticated (dialback)" in xlog
        assert "SASL EXTERNAL" not in xlog.split("listening for s2s", 1)[1]
