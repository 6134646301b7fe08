"""A real external component: Biboumi, the XMPP-IRC gateway (Debian ``biboumi``), connected
to xmppd's component listener (XEP-0114), in front of a real IRC server (Debian ``ngircd``).

Everything runs on loopback: ngircd on a free port below 32768, xmppd on ports it picks,
Biboumi with a generated config (hostname ``biboumi.localhost``, the component secret, the
listener's port; identd off). An XMPP user (slixmpp) points Biboumi at ngircd with the
gateway's XEP-0050 "configure" command on ``irc.localhost@biboumi.localhost`` (address
127.0.0.1 and ngircd's port instead of the default 6667), joins
``#room%irc.localhost@biboumi.localhost`` where an IRC user (a raw socket speaking IRC) is
already, and a message goes each way. When Biboumi stops, the room's stanzas bounce.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from slixmpp.exceptions import IqError, IqTimeout

from tests.conftest import start_server
from tests.integration.test_federation import free_port
from tests.support.ca import CertAuthority
from tests.support.client import Client, connect, run
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration
BIBOUMI = shutil.which("biboumi") or "/usr/bin/biboumi"
NGIRCD = shutil.which("ngircd") or "/usr/sbin/ngircd"
GATEWAY, IRC_SERVER = "biboumi.localhost", "irc.localhost"
ROOM = f"#room%{IRC_SERVER}@{GATEWAY}"
SECRET = "biboumi component secret"


def require() -> None:
    missing = [name for name, path in (("biboumi", BIBOUMI), ("ngircd", NGIRCD))
               if not os.path.exists(path)]
    if not missing:
        return
    msg = f"BIBOUMI INTEROP NOT TESTED: {' and '.join(missing)} missing (apt-get install " \
          f"{' '.join(missing)})"
    if os.environ.get("CI"):
        pytest.fail(msg + " but CI is set: .ci/run must install them")
    pytest.skip(msg)


class Daemon:
    """A foreground process of this test, its output in a file, stopped by its own pid."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log_path = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def ngircd(tmp: Path, port: int) -> Daemon:
    conf = tmp / "ngircd.conf"
    conf.write_text(f"""[Global]
Name = {IRC_SERVER}
Info = xmppd component test
AdminInfo1 = test
AdminInfo2 = test
AdminEMail = test@localhost
Listen = 127.0.0.1
Ports = {port}
MotdPhrase = "test"
PidFile = {tmp / "ngircd.pid"}
[Limits]
MaxConnectionsIP = 0
[Options]
PAM = no
DNS = no
Ident = no
""")
    daemon = Daemon([NGIRCD, "-n", "-f", str(conf)], tmp / "ngircd.log")
    deadline = time.monotonic() + 20
    while True:  # it reports nothing machine-readable: wait for the port to accept
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return daemon
        except OSError:
            if daemon.proc.poll() is not None or time.monotonic() > deadline:
                daemon.stop()
                raise RuntimeError(f"ngircd did not start:\n{daemon.log()}") from None
            time.sleep(0.05)


def biboumi(tmp: Path, xmpp_port: int) -> Daemon:
    # Keys from biboumi(1): hostname, password, xmpp_server_ip, port, db_name, identd_port
    # (0: no identd; as root it would take port 113), log_file, log_level, policy_directory.
    cfg = tmp / "biboumi.cfg"
    cfg.write_text("\n".join([
        f"hostname={GATEWAY}", f"password={SECRET}", "xmpp_server_ip=127.0.0.1",
        f"port={xmpp_port}", f"db_name={tmp / 'biboumi.sqlite'}", "identd_port=0",
        f"log_file={tmp / 'biboumi.log'}", "log_level=0", f"policy_directory={tmp}",
        "realname_customization=true", ""]))
    return Daemon([BIBOUMI, str(cfg)], tmp / "biboumi.out")


class Irc:
    """An IRC user on a raw socket: registers, answers PING, reads lines."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def login(cls, port: int, nick: str) -> Irc:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        irc = cls(reader, writer)
        await irc.send(f"NICK {nick}", f"USER {nick} 0 * :{nick}")
        await irc.until(lambda words: words[1] == "001")  # RPL_WELCOME (RFC 2812 §5.1)
        return irc

    async def send(self, *lines: str) -> None:
        self.writer.write("".join(line + "\r\n" for line in lines).encode())
        await self.writer.drain()

    async def until(self, pred: Callable[[list[str]], bool], timeout: float = 30.0) -> str:
        """Read lines (answering PINGs) until one whose words match ``pred``."""
        while True:
            raw = await asyncio.wait_for(self.reader.readline(), timeout)
            if not raw:
                raise ConnectionError("the IRC server closed the connection")
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            words = line.split(" ")
            if words[0] == "PING":
                await self.send("PONG " + " ".join(words[1:]))
                continue
            if len(words) > 1 and pred(words):
                return line

    def close(self) -> None:
        self.writer.close()


@pytest.fixture(scope="module")
def world(ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[ServerProcess, int, Daemon, Path]]:
    require()
    tmp = tmp_path_factory.mktemp("biboumi")
    irc_port = free_port()
    irc = ngircd(tmp, irc_port)
    try:
        yield from _with_xmppd(ca, tmp, irc_port)
    finally:
        irc.stop()


def _with_xmppd(ca: CertAuthority, tmp: Path, irc_port: int
                ) -> Iterator[tuple[ServerProcess, int, Daemon, Path]]:
    for srv in start_server(tmp / "xmppd", "sqlite", ca, config={
        "listeners": [{"type": "c2s", "port": 0, "address": "127.0.0.1"},
                      {"type": "c2s_tls", "port": 0, "address": "127.0.0.1"},
                      {"type": "component", "port": 0}],
        "components": {GATEWAY: {"secret": SECRET}},
    }):
        gateway = biboumi(tmp, srv.ports["component"][0])
        try:
            yield srv, irc_port, gateway, tmp
        finally:
            gateway.stop()


async def gateway_up(client: Client, timeout: float = 30.0) -> dict[str, object]:
    """Biboumi's disco#info, once it has connected (until then: remote-server-timeout)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            info = await client.plugin["xep_0030"].get_info(jid=GATEWAY, timeout=10)
            return dict(info["disco_info"])  # type: ignore[no-any-return]
        except IqError as exc:
            assert exc.iq["error"]["condition"] == "remote-server-timeout", exc.iq
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)


async def gateway_down(client: Client) -> None:
    """Until xmppd has seen the stopped gateway's connection close, an IQ may still be
    written to it (and go unanswered): ask until the answer is the bounce."""
    for _ in range(50):
        try:
            await client.plugin["xep_0030"].get_info(jid=GATEWAY, timeout=2)
        except IqError as exc:
            if exc.iq["error"]["condition"] == "remote-server-timeout":
                return
        except IqTimeout:
            pass
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{GATEWAY} still looks connected")


async def point_at_ngircd(client: Client, irc_port: int) -> None:
    """Biboumi's XEP-0050 "configure" command on the IRC server's JID (biboumi(1))."""
    cmd = client.plugin["xep_0050"]
    first = await cmd.send_command(f"{IRC_SERVER}@{GATEWAY}", "configure")
    form = client.plugin["xep_0004"].make_form(ftype="submit")
    form.add_field(var="address", value="127.0.0.1")
    form.add_field(var="ports", ftype="text-multi", value=[str(irc_port)])
    form.add_field(var="tls_ports", ftype="text-multi", value=[])
    done = await cmd.send_command(f"{IRC_SERVER}@{GATEWAY}", "configure",
                                  sessionid=first["command"]["sessionid"], payload=form,
                                  action="complete")
    assert done["command"]["status"] == "completed", done


def test_xmpp_user_and_irc_user_talk_through_biboumi(
        world: tuple[ServerProcess, int, Daemon, Path]) -> None:
    srv, irc_port, gateway, tmp = world
    jid, _ = srv.new_user("alice")

    async def body() -> None:
        bob = await Irc.login(irc_port, "bob")
        alice = await connect(srv, jid, plugins=("xep_0004", "xep_0045", "xep_0050"))
        try:
            info = await gateway_up(alice)
            assert ("conference", "irc", None, "Biboumi XMPP-IRC gateway") in \
                info["identities"]  # type: ignore[operator]
            # The server lists the connected gateway under the name from its disco#info.
            items = await alice.plugin["xep_0030"].get_items(jid="localhost")
            assert (GATEWAY, None, "Biboumi XMPP-IRC gateway") in items["disco_items"]["items"]

            await bob.send("JOIN #room")
            await bob.until(lambda w: w[1] == "366")  # RPL_ENDOFNAMES: bob is in #room

            await point_at_ngircd(alice, irc_port)
            own, _subject, occupants, _history = await alice.plugin["xep_0045"].join_muc_wait(
                ROOM, "alice", maxchars=0, timeout=30)
            assert own["from"] == f"{ROOM}/alice"
            assert f"{ROOM}/bob" in {str(p["from"]) for p in occupants}
            await bob.until(lambda w: w[1] == "JOIN" and w[0].startswith(":alice!"))

            alice.send_message(mto=ROOM, mbody="hello from XMPP", mtype="groupchat")
            line = await bob.until(lambda w: w[1] == "PRIVMSG" and w[2] == "#room")
            assert line.startswith(":alice!") and line.endswith(":hello from XMPP"), line

            await bob.send("PRIVMSG #room :hello from IRC")
            msg = await alice.next_message(where=lambda m: m["body"] == "hello from IRC")
            assert msg["type"] == "groupchat" and msg["from"] == f"{ROOM}/bob"

            # Biboumi stops: stanzas for its domain bounce instead of vanishing.
            gateway.stop()
            await bob.until(lambda w: w[1] == "QUIT" and w[0].startswith(":alice!"))
            await gateway_down(alice)
            alice.send_message(mto=ROOM, mbody="still there?", mtype="groupchat")
            err = await alice.next_message(where=lambda m: m["type"] == "error")
            assert err["from"] == ROOM
            assert (err["error"]["type"], err["error"]["condition"]) == (
                "wait", "remote-server-timeout")
        except BaseException:
            print("biboumi log:\n" + _tail(tmp / "biboumi.log"))
            print("ngircd log:\n" + _tail(tmp / "ngircd.log"))
            raise
        finally:
            bob.close()
            await alice.close()
    run(body(), timeout=120)


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-4000:] if path.exists() else "(none)"
