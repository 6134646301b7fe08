"""The day-two files under contrib/ do what they say, run by the real tools against a running
server: the systemd unit passes `systemd-analyze verify`, the logrotate configuration rotates
the log with no line lost and the server writing to the new file, and the certbot deploy hook
puts a renewed certificate in place that new TLS handshakes get while a connected client
stays. Only the install paths (/opt/xmppd, /etc/xmppd, /var/log/xmppd) are replaced by this
test's own."""

from __future__ import annotations

import asyncio
import grp
import os
import shutil
import socket
import ssl
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import start_server
from tests.support.ca import CertAuthority
from tests.support.client import connect, run
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
CONTRIB = ROOT / "contrib"
XMPPD = str(Path(sys.executable).with_name("xmppd"))


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if found is None:
        msg = f"this test needs {name} (apt-get install {name})"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return found


def _installed(text: str, srv: ServerProcess, log_dir: Path | None = None) -> str:
    """The contrib file as installed for ``srv``."""
    text = text.replace("/opt/xmppd/bin/xmppd", XMPPD)
    text = text.replace("/etc/xmppd/xmppd.toml", str(srv.config_path))
    if log_dir is not None:
        text = text.replace("/var/log/xmppd", str(log_dir))
    return text


@pytest.fixture(scope="module")
def srv(ca: CertAuthority, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("contrib-ops")
    live = tmp / "etc-certs"  # where the deploy hook puts certificates
    live.mkdir()
    crt, key = ca.issue("localhost", live)
    (tmp / "log").mkdir()
    yield from start_server(tmp, "sqlite", ca, config={
        "log": {"level": "info", "file": str(tmp / "log" / "xmppd.log")},
        "hosts": {"localhost": {"cert": str(crt), "key": str(key)}}})


def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = _tool("systemd-analyze")
    unit = (CONTRIB / "systemd" / "xmppd.service").read_text()
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit  # what xmppd reloads on
    unit_path = tmp_path / "xmppd.service"
    unit_path.write_text(unit.replace("/opt/xmppd/bin/xmppd", XMPPD))
    r = subprocess.run([analyze, "verify", "--man=no", str(unit_path)],
                       capture_output=True, text=True, timeout=60)
    # Only the unit's own lines count: a container without systemd as PID 1 adds notes
    # about the host's other units.
    ours = [line for line in (r.stdout + r.stderr).splitlines() if "xmppd.service" in line]
    assert r.returncode == 0 and not ours, r.stdout + r.stderr
    start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert start.split("=", 1)[1].split()[1:] == ["run", "-c", "/etc/xmppd/xmppd.toml"]


def _tls_connection_logged(srv: ServerProcess) -> None:
    ctx = ssl.create_default_context(cafile=str(srv.ca.ca_file))
    with socket.create_connection(("127.0.0.1", srv.c2s_tls_port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost"):
        pass


def test_logrotate_rotates_and_the_server_writes_to_the_new_file(srv: ServerProcess,
                                                                tmp_path: Path) -> None:
    logrotate = _tool("logrotate")
    log_dir = srv.tmp / "log"
    conf = _installed((CONTRIB / "logrotate" / "xmppd").read_text(), srv, log_dir)
    me, group = os.getuid(), grp.getgrgid(os.getgid()).gr_name
    user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    conf = conf.replace("create 0640 xmppd xmppd", f"create 0640 {user} {group}")
    (tmp_path / "xmppd").write_text(conf)
    os.chmod(tmp_path / "xmppd", 0o644)
    log = log_dir / "xmppd.log"
    user_jid, _ = srv.new_user("rot")

    async def session() -> None:
        c = await connect(srv, user_jid + "/before")
        await c.plugin["xep_0199"].ping("localhost", timeout=10)
        r = await asyncio.to_thread(
            subprocess.run, [logrotate, "-f", "-s", str(tmp_path / "state"),
                             str(tmp_path / "xmppd")], capture_output=True, text=True,
            timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        await c.plugin["xep_0199"].ping("localhost", timeout=10)  # the session stayed
        await c.close()

    run(session())
    rotated = log_dir / "xmppd.log.1"
    assert rotated.exists() and log.exists(), sorted(p.name for p in log_dir.iterdir())
    assert "c2s connection from" in rotated.read_text()  # what came before the rotation
    assert log.stat().st_uid == me and stat.S_IMODE(log.stat().st_mode) == 0o640
    _tls_connection_logged(srv)
    new = log.read_text()
    assert f"log file ({log})" in new  # the reload opened it again
    assert "c2s connection from" in new  # and the server goes on writing there
    assert "Traceback" not in new + rotated.read_text()


def _served_cert(srv: ServerProcess) -> bytes:
    ctx = ssl.create_default_context(cafile=str(srv.ca.ca_file))
    with socket.create_connection(("127.0.0.1", srv.c2s_tls_port), timeout=10) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        cert = tls.getpeercert(binary_form=True)
        assert cert is not None
        return cert


def test_the_certbot_deploy_hook_installs_a_renewed_certificate(srv: ServerProcess,
                                                               tmp_path: Path) -> None:
    hook = CONTRIB / "certbot" / "xmppd-deploy-hook"
    assert os.access(hook, os.X_OK)
    lineage = tmp_path / "letsencrypt" / "live" / "localhost"  # as certbot lays it out
    lineage.mkdir(parents=True)
    crt, key = srv.ca.issue("localhost", lineage)
    crt.rename(lineage / "fullchain.pem")
    key.rename(lineage / "privkey.pem")
    renewed = ssl.PEM_cert_to_DER_cert((lineage / "fullchain.pem").read_text())
    before = _served_cert(srv)
    assert before != renewed
    user_jid, _ = srv.new_user("tls")
    env = {**os.environ, "RENEWED_LINEAGE": str(lineage),
           "XMPPD_CERT_DIR": str(srv.tmp / "etc-certs"),
           "XMPPD_GROUP": grp.getgrgid(os.getgid()).gr_name,
           "XMPPD_BIN": XMPPD, "XMPPD_CONFIG": str(srv.config_path)}

    async def session() -> None:
        c = await connect(srv, user_jid + "/stays")
        r = await asyncio.to_thread(subprocess.run, [str(hook)], env=env,
                                    capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "certificates" in r.stdout  # xmppd reload's report
        await c.plugin["xep_0199"].ping("localhost", timeout=10)  # still connected
        await c.close()

    run(session())
    assert _served_cert(srv) == renewed
    key_mode = stat.S_IMODE((srv.tmp / "etc-certs" / "localhost.key").stat().st_mode)
    assert key_mode == 0o640
    assert not list((srv.tmp / "etc-certs").glob("*.new.*"))  # written beside, renamed over
