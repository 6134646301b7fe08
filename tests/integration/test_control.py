"""The control socket and the `xmppd` commands that use it, against the running server and
with it stopped; SIGHUP; restart and shutdown with a delay and a message."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import ssl
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import start_server
from tests.support import adhoc
from tests.support.ca import CertAuthority
from tests.support.client import connect, run, wait_for
from tests.support.raw import NS_SASL, RawStream, q
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration

BOSS = "boss@localhost"


@pytest.fixture(scope="module")
def srv(ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[ServerProcess]:
    yield from start_server(tmp_path_factory.mktemp("control"), "sqlite", ca, config={
        "hosts": {"localhost": {"admins": [BOSS]}},
        "auth": {"account_ban_after": 2, "throttle_after": 100},
    })


def request(path: Path, data: bytes) -> dict[str, object]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(str(path))
    try:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    finally:
        s.close()
    answer: dict[str, object] = json.loads(b"".join(chunks))
    return answer


def test_socket_is_private_and_bad_requests_get_clean_errors(srv: ServerProcess) -> None:
    path = srv.control_socket
    st = path.stat()
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    cases = [
        (b"garbage\n", "bad-request"),
        (b"\xff\xfe\n", "bad-request"),
        (b"[1, 2]\n", "bad-request"),
        (b'{"op": "no-such-op"}\n', "item-not-found"),
        (b'{"op": "stats", "bogus": 1}\n', "bad-request"),
        (b'{"op": "end-user-session", "args": {"nope": "x"}}\n', "bad-request"),
        (b'{"op": "end-user-session", "args": {"accountjids": [{"a": 1}]}}\n', "bad-request"),
        (b'{"op": "end-user-session", "args": {"accountjids": ["bad@@jid"]}}\n', "bad-request"),
        (b'{"op": "end-user-session", "args": {"accountjids": ["a@elsewhere.example"]}}\n',
         "bad-request"),
        (b'{"op": "sessions", "domain": 5}\n', "bad-request"),
        (b'{"op": "get-registered-users-list", "domain": "nope.example"}\n', "bad-request"),
        (b"x" * 70000, "policy-violation"),
        (b'{"op": "stats"}' + b" " * 70000 + b"\n", "policy-violation"),
    ]
    for data, condition in cases:
        answer = request(path, data)
        assert answer["ok"] is False, data[:40]
        err = answer["error"]
        assert isinstance(err, dict) and err["condition"] == condition, (data[:60], err)
        assert "Traceback" not in json.dumps(answer)
    bad_jid = request(path, b'{"op": "end-user-session", "args": {"accountjids": ["bad@@jid"]}}\n')
    assert bad_jid["error"]["field"] == "accountjids"  # type: ignore[index]
    ok = request(path, b'{"op": "stats"}\n')
    assert ok["ok"] is True
    assert not srv.tracebacks()


def test_cli_reaches_the_running_server(srv: ServerProcess) -> None:
    user, _ = srv.new_user("live")
    other, _ = srv.new_user("other")

    async def body() -> None:
        c = await connect(srv, user + "/phone")
        c.send_raw("<inactive xmlns='urn:xmpp:csi:0'/>")
        await c.plugin["xep_0199"].ping("localhost")
        sessions = srv.cli("sessions")
        assert sessions.returncode == 0, sessions.stderr
        line = next(ln for ln in sessions.stdout.splitlines() if user + "/phone" in ln)
        assert "127.0.0.1" in line and "inactive" in line and "available" in line
        assert srv.cli("online-users").stdout.split().count(user) == 1
        count = srv.cli("online-count", "localhost")
        assert count.stdout.strip() == "The number of online users: 1", count.stdout

        r = srv.cli("announce", "Maintenance tonight")
        assert r.returncode == 0 and "sent to" in r.stdout, r.stderr
        c.send_raw("<active xmlns='urn:xmpp:csi:0'/>")
        msg = await c.next_message(where=lambda m: str(m["from"]) == "localhost")
        assert msg["body"] == "Maintenance tonight" and msg["type"] == "headline"

        r = srv.cli("kick", user + "/phone")
        assert r.returncode == 0 and "ended 1 session" in r.stdout, r.stdout + r.stderr
        await asyncio.wait_for(c.gone, 10)
        assert "policy-violation" in c.stream_errors

        d = await connect(srv, other + "/desk")
        r = srv.cli("deluser", other)
        assert r.returncode == 0 and "deleted" in r.stdout, r.stderr
        await asyncio.wait_for(d.gone, 10)  # the live session ended with the account
        assert "not-authorized" in d.stream_errors

        stats = srv.cli("stats")
        assert stats.returncode == 0 and "Uptime" in stats.stdout
        reload = srv.cli("reload")
        assert reload.returncode == 0 and "certificates" in reload.stdout, reload.stderr

    run(body())
    assert srv.cli("users").stdout.split().count(other) == 0
    r = srv.cli("kick", "nobody@@bad")
    assert r.returncode == 1 and "not a valid JID" in r.stderr


async def _plain(srv: ServerProcess, user: str, password: str) -> str:
    raw = await RawStream.open(srv.c2s_port)
    try:
        await raw.open_stream()
        await raw.starttls(str(srv.ca.ca_file))
        await raw.open_stream()
        el = await raw.auth_plain(user, password)
        if el.tag == q(NS_SASL, "success"):
            return "success"
        return next(c.tag.split("}")[1] for c in el if not c.tag.endswith("}text"))
    finally:
        raw.close()


def test_bans_are_listed_and_lifted(srv: ServerProcess) -> None:
    user, pw = srv.new_user("banned")
    local = user.split("@")[0]
    for _ in range(2):
        assert run(_plain(srv, local, "wrong")) == "not-authorized"
    assert run(_plain(srv, local, pw)) == "temporary-auth-failure"
    bans = srv.cli("bans")
    assert bans.returncode == 0 and user in bans.stdout and "account" in bans.stdout
    assert srv.cli("unban", "nothing-banned@localhost").returncode == 1
    r = srv.cli("unban", user)
    assert r.returncode == 0, r.stderr
    assert user not in srv.cli("bans").stdout
    assert run(_plain(srv, local, pw)) == "success"


def test_cli_with_the_server_stopped(srv: ServerProcess) -> None:
    srv.stop()
    try:
        assert not srv.control_socket.exists()  # removed on a clean stop
        r = srv.cli("adduser", "offline@localhost", "--password-stdin", stdin="pw-off\n")
        assert r.returncode == 0 and "created offline@localhost" in r.stdout, r.stderr
        assert "not running" in r.stderr
        r = srv.cli("disable", "offline@localhost")
        assert r.returncode == 0, r.stderr
        r = srv.cli("kick", "offline@localhost")
        assert r.returncode == 3 and "not running" in r.stderr and "kick" in r.stderr
        r = srv.cli("set-motd", "Offline MOTD")
        assert r.returncode == 0, r.stderr
        r = srv.cli("enable", "offline@localhost")
        assert r.returncode == 0, r.stderr
        # A socket left behind by a server that died does not fool the command line.
        leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        leftover.bind(str(srv.control_socket))
        leftover.close()
        r = srv.cli("users")
        assert r.returncode == 0 and "offline@localhost" in r.stdout.split(), r.stderr
    finally:
        srv.start()  # over the stale socket
    srv.passwords["offline@localhost"] = "pw-off"

    async def body() -> None:
        c = await connect(srv, "offline@localhost/x")
        msg = await c.next_message(where=lambda m: str(m["from"]) == "localhost")
        assert msg["body"] == "Offline MOTD"
        await c.close()

    run(body())
    assert srv.cli("delete-motd").returncode == 0


def _served_cert(port: int, ca_file: str) -> bytes:
    ctx = ssl.create_default_context(cafile=ca_file)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        cert = tls.getpeercert(binary_form=True)
        assert cert is not None
        return cert


def test_sighup_reloads_certificate_and_log_level_keeping_clients(srv: ServerProcess) -> None:
    assert srv.proc is not None
    user, _ = srv.new_user("stay")
    ca_file = str(srv.ca.ca_file)
    before = _served_cert(srv.c2s_tls_port, ca_file)

    async def body() -> None:
        c = await connect(srv, user + "/keep")
        srv.ca.issue("localhost", srv.tmp / "certs")  # renewed: new key, same paths
        text = srv.config_path.read_text()
        srv.config_path.write_text(text.replace('level = "info"', 'level = "warn"'))
        assert srv.proc is not None
        srv.proc.send_signal(signal.SIGHUP)
        await wait_for(lambda: _served_cert(srv.c2s_tls_port, ca_file) != before)
        await c.plugin["xep_0199"].ping("localhost")  # the connected client stayed
        mark = len(srv.log())
        d = await connect(srv, user + "/after")
        await d.plugin["xep_0199"].ping("localhost")
        assert "c2s connection from" not in srv.log()[mark:]  # info is no longer logged
        srv.config_path.write_text(text)
        srv.proc.send_signal(signal.SIGHUP)
        await wait_for(lambda: "reloaded: certificates, log.level (info)" in srv.log()[mark:])
        await c.close()
        await d.close()

    run(body())


def test_restart_and_shutdown_with_delay_and_message(ca: CertAuthority, tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path, f"sqlite:///{tmp_path}/db.sqlite", ca,
                        config={"hosts": {"localhost": {"admins": [BOSS]}}})
    srv.add_user(BOSS)
    user, _ = srv.new_user("user")
    srv.start()
    try:
        assert srv.proc is not None
        pid = srv.proc.pid

        async def restart() -> None:
            a = await connect(srv, BOSS + "/console", plugins=adhoc.PLUGINS)
            u = await connect(srv, user + "/x")
            form = adhoc.form_fields(await adhoc.send(a, "restart"))
            options = [o.findtext("{jabber:x:data}value")
                       for o in form["delay"].findall("{jabber:x:data}option")]
            assert form["delay"].get("type") == "list-single"
            assert {"30", "60", "90", "120", "180", "240", "300"} <= set(options)
            assert form["announcement"].get("type") == "text-multi"
            srv.ports_path.unlink()
            done = await adhoc.run(a, "restart", {"delay": "0",
                                                  "announcement": "Back in a moment"})
            assert done["command"]["status"] == "completed"
            msg = await u.next_message(where=lambda m: str(m["from"]) == "localhost")
            assert msg["body"] == "Back in a moment"
            await asyncio.wait_for(u.gone, 15)
            assert "system-shutdown" in u.stream_errors

        run(restart())
        deadline = time.monotonic() + 60
        while not srv.ports_path.exists():  # the same process, run again, reports its ports
            assert srv.proc.poll() is None, srv.log()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        srv.ports = json.loads(srv.ports_path.read_text())
        assert srv.proc.pid == pid and srv.proc.poll() is None

        async def shutdown() -> None:
            u = await connect(srv, user + "/y")
            r = await asyncio.to_thread(srv.cli, "shutdown", "--delay", "0",
                                        "--announcement", "Bye")
            assert r.returncode == 0, r.stderr
            msg = await u.next_message(where=lambda m: str(m["from"]) == "localhost")
            assert msg["body"] == "Bye"
            await asyncio.wait_for(u.gone, 15)

        run(shutdown())
        assert srv.proc.wait(30) == 0
        assert not srv.tracebacks(), srv.tracebacks()
    finally:
        srv.stop()
