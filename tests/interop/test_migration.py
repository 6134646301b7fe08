"""Migrating to xmppd from Prosody 0.12 and ejabberd 23.01 (the packaged Debian ones) through
their own XEP-0227 exports.

Each test fills the old server with real data through real clients (friends with a name and
a group, a pending subscription request, a vCard, a private XML bookmark, messages to a user
who is offline), exports it with the server's own tool, imports the files with ``xmppd
import``, and logs in to xmppd with the old passwords through slixmpp to find it all there.
A second import of the same files writes nothing.

* Prosody: ``prosody-migrator`` from its internal storage to its ``xep0227`` store. That
  store writes into Prosody's global data directory, which the migrator does not let its
  config change, so the test runs the packaged migrator script with that one constant
  pointed at a temp dir (and ``--root``, since the tests run as root). Prosody 0.12's
  XEP-0227 store has no handler for offline messages (its migrator fails on the "offline"
  store), so they cannot come across that way; with mod_mam they are in the recipient's
  archive, which does, and that is what is checked. Prosody keeps SCRAM-SHA-1 verifiers
  only, so its users log in to xmppd with SCRAM-SHA-1.
* ejabberd: ``ejabberdctl export_piefxis DIR`` against the running node (a main file that
  XIncludes one file per host), once with the default plaintext password storage and once
  with SCRAM-SHA-256 (whose values 23.01 writes base64-encoded twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from slixmpp.xmlstream import ET as SET

from tests.integration.test_federation import DomainRawStream, free_port
from tests.integration.test_mam import mam_query
from tests.interop.test_ejabberd import Ejabberd, require_ejabberd
from tests.interop.test_prosody import PROSODY, PROSODYCTL, Prosody, lua
from tests.support.backends import database
from tests.support.ca import CertAuthority
from tests.support.client import Client, connect, pushed, run
from tests.support.raw import C
from tests.support.server import ServerProcess

pytestmark = pytest.mark.integration
P, E = "p.example", "e.test"
MIGRATOR = shutil.which("prosody-migrator") or ""
LUA = shutil.which("lua5.4") or ""
BOOKMARK = ("<storage xmlns='storage:bookmarks'><conference jid='lobby@conference.old' "
            "name='Lobby' autojoin='true'><nick>al</nick></conference></storage>")


def require_prosody_migrator() -> None:
    if PROSODY and PROSODYCTL and MIGRATOR and LUA:
        return
    if os.environ.get("CI"):
        pytest.fail("prosody (with prosody-migrator and lua5.4) is not installed but CI is "
                    "set: .ci/run must install it")
    pytest.skip("PROSODY MIGRATION NOT TESTED: prosody, prosody-migrator or lua5.4 missing "
                "(apt-get install prosody)")


# -- filling an old server with real data -------------------------------------------------------
async def old_client(jid: str, password: str, port: int, ca_file: str) -> Client:
    c = Client(jid, password, ca_file, plugins=("xep_0054", "xep_0049"))
    c.connect("127.0.0.1", port)
    await asyncio.wait_for(c.started, 20)
    c.send_presence()
    return c


async def fill(domain: str, port: int, ca_file: str) -> None:
    alice, bob, carol = (f"{u}@{domain}" for u in ("alice", "bob", "carol"))
    ca = await old_client(alice, "alice-pw", port, ca_file)
    cb = await old_client(bob, "bob-pw", port, ca_file)
    await ca.get_roster()
    await cb.get_roster()
    ca.update_roster(bob, name="Bobby", groups=["Friends"])
    ca.send_presence(pto=bob, ptype="subscribe")
    await cb.next_presence(timeout=20, where=lambda p: p["type"] == "subscribe")
    cb.send_presence(pto=alice, ptype="subscribed")
    cb.send_presence(pto=alice, ptype="subscribe")
    await ca.next_presence(timeout=20, where=lambda p: p["type"] == "subscribe")
    ca.send_presence(pto=bob, ptype="subscribed")
    await pushed(ca, bob, "both")
    await pushed(cb, alice, "both")
    card = ca.plugin["xep_0054"].make_vcard()
    card["FN"] = "Alice Liddell"
    await ca.plugin["xep_0054"].publish_vcard(card)
    await ca.plugin["xep_0049"].store(SET.fromstring(BOOKMARK))
    await ca.close()
    # a request to alice while she is offline stays pending (RFC 6121 §3.1.3)
    cc = await old_client(carol, "carol-pw", port, ca_file)
    cc.send_presence(pto=alice, ptype="subscribe")
    await cc.get_roster()
    await cc.close()
    # messages to bob while he is offline
    await cb.close()
    ca = await old_client(alice, "alice-pw", port, ca_file)
    ca.send_message(mto=bob, mbody="offline one", mtype="chat")
    ca.send_message(mto=bob, mbody="offline two", mtype="chat")
    await ca.get_roster()  # an IQ round trip: the messages before it were routed
    await ca.close()


# -- checking xmppd after the import -----------------------------------------------------------
async def check_alice(xmppd: ServerProcess, domain: str, mechanism: str | None) -> None:
    alice, bob, carol = (f"{u}@{domain}" for u in ("alice", "bob", "carol"))
    c = await connect(xmppd, alice + "/new", "alice-pw", mechanism=mechanism,
                      plugins=("xep_0054", "xep_0049", "xep_0048"))
    roster = (await c.get_roster())["roster"]["items"]
    assert roster[bob]["subscription"] == "both"
    assert roster[bob]["name"] == "Bobby" and roster[bob]["groups"] == ["Friends"]
    # the pending request is delivered again at login
    req = await c.next_presence(timeout=20, where=lambda p: p["type"] == "subscribe")
    assert req["from"].bare == carol
    card = await c.plugin["xep_0054"].get_vcard(alice)
    assert card["vcard_temp"]["FN"] == "Alice Liddell"
    private = await c.plugin["xep_0049"].retrieve("bookmarks")
    conf = private.xml.find("{jabber:iq:private}query/{storage:bookmarks}storage/"
                            "{storage:bookmarks}conference")
    assert conf is not None and conf.get("jid") == "lobby@conference.old"
    await c.close()


async def archive_bodies(xmppd: ServerProcess, user: str, password: str) -> list[str]:
    raw = await DomainRawStream.open(xmppd.c2s_port)
    raw.domain = user.split("@")[1]  # the name its certificate is checked against
    await raw.login(str(xmppd.ca.ca_file), user.split("@")[0], password,
                    domain=raw.domain, resource="mam")
    results, _ = await mam_query(raw, rsm="<max>100</max>")
    raw.close()
    return [r.findtext(f"{{urn:xmpp:forward:0}}forwarded/{C}message/{C}body") or ""
            for r in results]


def import_twice(xmppd: ServerProcess, files: list[Path]) -> str:
    r = xmppd.cli("import", *map(str, files))
    assert r.returncode == 0, r.stdout + r.stderr
    print(f"xmppd import {' '.join(f.name for f in files)}:\n{r.stdout}")
    again = xmppd.cli("import", *map(str, files))
    assert again.returncode == 0, again.stderr
    summary = again.stdout.strip().splitlines()[-1][len("imported: "):]
    assert all(p.split(": ")[1].startswith("0 written") for p in summary.split("; ")), summary
    return r.stdout


@contextlib.contextmanager
def xmppd_for(tmp: Path, domain: str, ca: CertAuthority) -> Iterator[ServerProcess]:
    (tmp / "x").mkdir()
    with database("sqlite", tmp / "x") as url:
        srv = ServerProcess(tmp / "x", url, ca, domains=(domain,))
        try:
            yield srv
        finally:
            code = srv.stop()
        assert not srv.tracebacks() and code == 0, srv.log()[-3000:]


# -- Prosody ----------------------------------------------------------------------------------
class OldProsody(Prosody):
    """The packaged Prosody with the modules whose data migrates, on its own ports/dirs."""

    def __init__(self, tmp: Path, crt: Path, key: Path) -> None:
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.c2s_port, self.s2s_port = free_port(), free_port()
        (tmp / "data").mkdir(exist_ok=True)
        self.log_path = tmp / "prosody.log"
        self.config_path = tmp / "prosody.cfg.lua"
        settings: dict[str, Any] = {
            "daemonize": False, "run_as_root": True, "pidfile": str(tmp / "prosody.pid"),
            "data_path": str(tmp / "data"), "interfaces": ["127.0.0.1"],
            "c2s_ports": [self.c2s_port], "s2s_ports": [self.s2s_port],
            "c2s_direct_tls_ports": [], "s2s_direct_tls_ports": [], "http_ports": [],
            "https_ports": [],
            "modules_enabled": ["roster", "saslauth", "tls", "disco", "ping", "posix",
                                "vcard", "private", "pep", "offline", "mam"],
            "authentication": "internal_hashed", "storage": "internal",
            "c2s_require_encryption": True,
            "ssl": {"certificate": str(crt), "key": str(key)},
        }
        lines = [f"{k} = {lua(v)}" for k, v in settings.items()]
        lines.append('log = { { levels = { min = "info" }, to = "file", filename = '
                     f"{lua(str(self.log_path))} }} }}")
        lines.append(f"VirtualHost {lua(P)}")
        self.config_path.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def migrate(self, out: Path) -> list[Path]:
        """prosody-migrator: internal storage -> XEP-0227 files (one per user) in ``out``."""
        out.mkdir()
        stores = ["accounts", "roster", "vcard", "private", "pep-pubsub", "archive-archive"]
        cfg = self.tmp / "migrator.cfg.lua"
        cfg.write_text(
            f"input {{ hosts = {{ [{lua(P)}] = {lua(stores)} }}; type = \"internal\"; "
            f"path = {lua(str(self.tmp / 'data'))}; }}\n"
            f"output {{ type = \"xep0227\"; path = {lua(str(out))}; }}\n")
        script = Path(MIGRATOR).read_text()
        marker = "CFG_DATADIR='/var/lib/prosody';"
        assert marker in script, "prosody-migrator changed: its data dir is set elsewhere"
        patched = self.tmp / "prosody-migrator"
        patched.write_text(script.replace(marker, f"CFG_DATADIR={lua(str(out))};"))
        r = subprocess.run([LUA, str(patched), "--root", "--config", str(cfg), "input",
                            "output"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        return sorted(out.glob("*.xml"))


@pytest.fixture
def prosody(tmp_path: Path, ca: CertAuthority) -> Iterator[OldProsody]:
    require_prosody_migrator()
    crt, key = ca.issue(P, tmp_path / "pcerts")
    old = OldProsody(tmp_path / "prosody", crt, key)
    yield old
    old.stop()


def test_migrate_from_prosody(prosody: OldProsody, ca: CertAuthority, tmp_path: Path) -> None:
    for user in ("alice", "bob", "carol"):
        prosody.ctl("register", user, P, f"{user}-pw")
    prosody.start()
    try:
        run(fill(P, prosody.c2s_port, str(ca.ca_file)), timeout=120)
    except BaseException:
        print(prosody.output())
        raise
    prosody.stop()
    files = prosody.migrate(tmp_path / "export")
    assert [f.name for f in files] == [f"{u}@{P}.xml" for u in ("alice", "bob", "carol")]
    root = ET.parse(files[0]).getroot()
    assert root.tag == "{urn:xmpp:pie:0}server-data"
    with xmppd_for(tmp_path, P, ca) as xmppd:
        out = import_twice(xmppd, files)
        assert "only have SCRAM-SHA-1 verifiers" in out  # what Prosody had
        xmppd.start()

        async def check() -> None:
            await check_alice(xmppd, P, "SCRAM-SHA-1")
            bodies = await archive_bodies(xmppd, f"bob@{P}", "bob-pw")
            assert [b for b in bodies if b.startswith("offline")] == ["offline one",
                                                                      "offline two"]
            cb = await connect(xmppd, f"bob@{P}/new", "bob-pw", mechanism="SCRAM-SHA-1")
            roster = (await cb.get_roster())["roster"]["items"]
            assert roster[f"alice@{P}"]["subscription"] == "both"
            await cb.close()

        run(check(), timeout=120)


# -- ejabberd ---------------------------------------------------------------------------------
class OldEjabberd(Ejabberd):
    def __init__(self, tmp: Path, crt: Path, key: Path, ca_file: str, scram: bool) -> None:
        super().__init__(tmp, crt, key, ca_file, True, 53)
        cfg = json.loads(self.config_path.read_text().split("\n", 1)[1])
        cfg["modules"] = {"mod_roster": {}, "mod_disco": {}, "mod_vcard": {},
                          "mod_offline": {}, "mod_private": {}, "mod_ping": {},
                          "mod_admin_extra": {}}  # get_offline_count
        if scram:
            cfg["auth_password_format"] = "scram"
            cfg["auth_scram_hash"] = "sha256"
        self.config_path.write_text(json.dumps(cfg, indent=2))

    def start(self) -> None:
        """Listening is not enough: commands fail until the application has started (its
        Mnesia tables created), which it logs."""
        super().start()
        deadline = time.monotonic() + 60
        while " is started in the node " not in self.log():
            if time.monotonic() > deadline:
                raise RuntimeError(f"ejabberd did not start: {self.output()}")
            time.sleep(0.1)


@pytest.fixture(params=["plain", "scram"])
def ejabberd(request: pytest.FixtureRequest, tmp_path: Path, ca: CertAuthority
             ) -> Iterator[OldEjabberd]:
    require_ejabberd()
    crt, key = ca.issue(E, tmp_path / "ecerts")
    old = OldEjabberd(tmp_path / "ejabberd", crt, key, str(ca.ca_file),
                      request.param == "scram")
    old.scram = request.param == "scram"  # type: ignore[attr-defined]
    yield old
    old.stop()


def test_migrate_from_ejabberd(ejabberd: OldEjabberd, ca: CertAuthority,
                               tmp_path: Path) -> None:
    scram: bool = ejabberd.scram  # type: ignore[attr-defined]
    ejabberd.start()
    try:
        for user in ("alice", "bob", "carol"):
            ejabberd.ctl("register", user, E, f"{user}-pw")
        run(fill(E, ejabberd.c2s_port, str(ca.ca_file)), timeout=120)
        assert ejabberd.ctl("get_offline_count", "bob", E).strip() == "2"
        out = tmp_path / "export"
        out.mkdir()
        ejabberd.ctl("export_piefxis", str(out))
    except BaseException:
        print(ejabberd.output())
        raise
    ejabberd.stop()
    main = [f for f in out.glob("*.xml") if not f.name.endswith(f"_{E.replace('.', '_')}.xml")]
    assert len(main) == 1, list(out.iterdir())
    text = "".join(f.read_text() for f in out.glob("*.xml"))
    assert ("<scram-credentials" in text) == scram and ("password=" in text) != scram
    with xmppd_for(tmp_path, E, ca) as xmppd:
        report = import_twice(xmppd, main)
        assert ("base64-encoded twice" in report) == scram
        xmppd.start()

        async def check() -> None:
            await check_alice(xmppd, E, "SCRAM-SHA-256" if scram else None)
            cb = await connect(xmppd, f"bob@{E}/new", "bob-pw")
            got = [await cb.next_message(where=lambda m: m["body"].startswith("offline"))
                   for _ in range(2)]
            assert [m["body"] for m in got] == ["offline one", "offline two"]
            for m in got:
                delay = m.xml.find("{urn:xmpp:delay}delay")
                assert delay is not None and delay.get("from") == E
            await cb.close()

        run(check(), timeout=120)
