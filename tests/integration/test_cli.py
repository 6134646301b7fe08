"""The `xmppd` command line, run as a user would run it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.ca import CertAuthority
from tests.support.client import connect, run
from tests.support.server import ROOT, ServerProcess

pytestmark = pytest.mark.integration


def xmppd(*args: str, stdin: str | None = None, cwd: Path = ROOT
          ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "xmppd", *args], input=stdin, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_account_commands_and_login(server: ServerProcess) -> None:
    r = server.cli("adduser", "Cli.User@localhost", "--password-stdin", stdin="s3cret!\n")
    assert r.returncode == 0, r.stderr
    assert "created cli.user@localhost" in r.stdout
    r = server.cli("adduser", "cli.user@localhost", "--password-stdin", stdin="x\n")
    assert r.returncode == 1 and "already exists" in r.stderr
    assert "cli.user@localhost" in server.cli("users").stdout.split()

    async def login(password: str) -> None:
        c = await connect(server, "cli.user@localhost/cli", password=password)
        await c.close()

    run(login("s3cret!"))
    assert server.cli("passwd", "cli.user@localhost", "--password-stdin",
                      stdin="n3w\n").returncode == 0
    run(login("n3w"))
    with pytest.raises(PermissionError):
        run(login("s3cret!"))
    r = server.cli("deluser", "cli.user@localhost")
    assert r.returncode == 0, r.stderr
    assert "cli.user@localhost" not in server.cli("users").stdout.split()
    with pytest.raises(PermissionError):
        run(login("n3w"))
    assert server.cli("deluser", "cli.user@localhost").returncode == 1
    assert server.cli("adduser", "not a jid", "--password-stdin", stdin="x\n").returncode != 0


def test_cert_generate_and_check(tmp_path: Path, ca: CertAuthority) -> None:
    r = xmppd("cert", "generate", "Example.ORG", "--dir", str(tmp_path / "certs"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "certs" / "example.org.crt").exists()
    (tmp_path / "xmppd.toml").write_text(
        '[hosts."example.org"]\n'
        f'cert = "{tmp_path}/certs/example.org.crt"\nkey = "{tmp_path}/certs/example.org.key"\n'
        f'[storage]\nurl = "sqlite:///{tmp_path}/db.sqlite"\n')
    r = xmppd("check", "-c", str(tmp_path / "xmppd.toml"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok: example.org: certificate" in r.stdout and "schema migrated" in r.stdout


@pytest.mark.parametrize("toml,expected", [
    ("bogus = 1\n", "bogus: unknown key"),
    ('[hosts."a.example"]\ncert = "/nonexistent.crt"\nkey = "/nonexistent.key"\n',
     "cannot read certificate"),
    ('[storage]\nurl = "postgresql+psycopg2://nobody@127.0.0.1:1/none"\n', "storage.url"),
    ('[plugins]\nenabled = ["nonexistent_plugin"]\n', "cannot import plugin"),
    ('[plugins.ping]\ninterval = "x"\n', "plugins.ping.interval"),
    ('[hosts."a.example"]\n[tls]\nself_signed = false\n', "no certificate found"),
])
def test_check_names_the_problem(tmp_path: Path, toml: str, expected: str) -> None:
    if "[storage]" not in toml:
        toml += f'[storage]\nurl = "sqlite:///{tmp_path}/db.sqlite"\n'
    (tmp_path / "xmppd.toml").write_text(toml)
    r = xmppd("check", "-c", str(tmp_path / "xmppd.toml"))
    assert r.returncode != 0
    assert expected in r.stderr, r.stdout + r.stderr


def test_check_wrong_name(tmp_path: Path, ca: CertAuthority) -> None:
    other = CertAuthority.create(tmp_path / "ca")
    crt, key = other.issue("other.example", tmp_path)
    (tmp_path / "xmppd.toml").write_text(
        f'[hosts."a.example"]\ncert = "{crt}"\nkey = "{key}"\n'
        f'[storage]\nurl = "sqlite:///{tmp_path}/db.sqlite"\n')
    r = xmppd("check", "-c", str(tmp_path / "xmppd.toml"))
    assert r.returncode == 1 and "no subjectAltName matches a.example" in r.stderr


def test_run_fails_clearly_on_bad_config(tmp_path: Path) -> None:
    (tmp_path / "xmppd.toml").write_text("[tls]\nmin_version = 1\n")
    r = xmppd("run", "-c", str(tmp_path / "xmppd.toml"))
    assert r.returncode == 2
    assert "tls.min_version: must be one of" in r.stderr


def test_version() -> None:
    r = xmppd("--version")
    assert r.returncode == 0 and r.stdout.startswith("xmppd ")


def test_roster_and_invite_commands(server: ServerProcess) -> None:
    a, _ = server.new_user("a")
    b, _ = server.new_user("b")

    async def body() -> None:
        c = await connect(server, a)
        c.send_presence(pto=b, ptype="subscribe")
        await c.get_roster()
        await c.update_roster(b, name="Bee", groups=["Friends"])
        await c.close()

    run(body())
    r = server.cli("roster", a)
    assert r.returncode == 0, r.stderr
    line = next(ln for ln in r.stdout.splitlines() if b in ln)
    assert "none" in line and "ask" in line and "Bee" in line and "Friends" in line
    assert server.cli("roster", "nobody@localhost").returncode == 1
    r = server.cli("invite", "localhost", "--uses", "3")
    assert r.returncode == 0 and "preauth=" in r.stdout
