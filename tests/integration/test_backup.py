"""`xmppd backup`, `restore`, `export` and `import` against the real server process, on every
backend: what users had before (password, roster, vCard, offline messages, archive) is
there after a restore into a fresh database; SQLite is backed up while clients chat; bad
backups are refused clearly and change nothing."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import start_server
from tests.integration import test_muc_support as muc
from tests.integration.test_mam import MAM, mam_query
from tests.interop.scenario import befriend_and_chat
from tests.support import backends
from tests.support.ca import CertAuthority
from tests.support.client import connect, run
from tests.support.pie import SAMPLE
from tests.support.raw import C, RawStream
from tests.support.server import ROOT, ServerProcess

pytestmark = pytest.mark.integration
DELAY = "{urn:xmpp:delay}delay"


ROOM = "backedup@conference.localhost"
INFO = "http://jabber.org/protocol/disco#info"


async def fill(server: ServerProcess, a: str, b: str, c: str) -> None:
    """Real clients make real data: friends, chat (archived), a vCard, messages to a user
    who is offline, and a persistent room with a member, a subject and discussion."""
    ca = await connect(server, a + "/x", plugins=("xep_0054", *muc.PLUGINS))
    muc.messages(ca)  # every message, from now on (room subjects have no body)
    cb = await connect(server, b + "/x")
    await befriend_and_chat(ca, a, cb, b)
    card = ca.plugin["xep_0054"].make_vcard()
    card["FN"] = "Alice Backup"
    await ca.plugin["xep_0054"].publish_vcard(card)
    for i in range(3):
        ca.send_message(mto=c, mbody=f"while you were out {i}", mtype="chat")
    await muc.create(ca, ROOM, "Owner", {"persistentroom": "1", "roomname": "Kept",
                                         "membersonly": "1"})
    await muc.admin_set(ca, ROOM, f"<item affiliation='member' jid='{c}' nick='Cee'/>")
    ca.send_raw(f"<message to='{ROOM}' type='groupchat'><subject>Kept topic</subject>"
                "</message>")
    for n in range(3):
        ca.send_raw(f"<message to='{ROOM}' type='groupchat'><body>said {n}</body></message>")
    await ca.get_roster()  # an IQ round trip: the messages before it were handled
    await ca.close()
    await cb.close()


async def check(server: ServerProcess, a: str, apw: str, b: str, bpw: str, c: str,
                cpw: str) -> None:
    """The same users, with their old passwords, find what they had."""
    ca = await connect(server, a + "/y", apw, plugins=("xep_0054",))
    roster = await ca.get_roster()
    assert roster["roster"]["items"][b]["subscription"] == "both"
    card = await ca.plugin["xep_0054"].get_vcard(a)
    assert card["vcard_temp"]["FN"] == "Alice Backup"
    cc = await connect(server, c + "/y", cpw, plugins=muc.PLUGINS)
    muc.messages(cc)
    got = [await cc.next_message(where=lambda m: m["body"].startswith("while"))
           for _ in range(3)]
    assert [m["body"] for m in got] == [f"while you were out {i}" for i in range(3)]
    assert all(m.xml.find(DELAY) is not None for m in got)
    raw = await RawStream.open(server.c2s_port)
    await raw.login(str(server.ca.ca_file), b.split("@")[0], bpw, resource="mam")
    results, _ = await mam_query(raw, rsm="<max>100</max>")
    bodies = [r.findtext(f"{{urn:xmpp:forward:0}}forwarded/{C}message/{C}body")
              for r in results]
    assert [x for x in bodies if x and x.startswith("o")] == [f"o{i}" for i in range(20)]
    raw.close()
    # the room: configuration, the member's reserved nick, the history from its archive
    info = await muc.iq(cc, "get", ROOM, f"<query xmlns='{INFO}'/>")
    ident = info.find(f".//{{{INFO}}}identity")
    assert ident is not None and ident.get("name") == "Kept"
    assert {"muc_persistent", "muc_membersonly"} <= {
        f.get("var") for f in info.iter(f"{{{INFO}}}feature")}
    cc.send_raw(muc.join_stanza(ROOM, "Cee"))  # §7.2: presence, history, then the subject
    pres = await cc.next_presence(10, lambda p: p["from"].bare == ROOM
                                  and 110 in muc.codes(p))
    assert muc.item(pres)["affiliation"] == "member"
    history = []
    while True:
        m = await muc.next_message(cc, where=lambda m: m["from"].bare == ROOM)
        if m.xml.find(C + "subject") is not None:
            assert m.xml.findtext(C + "subject") == "Kept topic"
            break
        history.append(m["body"])
    assert history == [f"said {n}" for n in range(3)]
    cd = await connect(server, b + "/z", bpw, plugins=muc.PLUGINS)
    muc.messages(cd)
    assert muc.error_condition(await muc.join(cd, ROOM, "Bee")) == (
        "auth", "registration-required")  # members only: b is not one
    for cl in (ca, cc, cd):
        await cl.close()


def test_backup_then_restore_into_a_fresh_database(server: ServerProcess, backend: str,
                                                   ca: CertAuthority, tmp_path: Path) -> None:
    (a, apw), (b, bpw), (c, cpw) = (server.new_user(p) for p in ("a", "b", "c"))
    run(fill(server, a, b, c), timeout=120)
    backup, exported = tmp_path / "backup", tmp_path / "export.xml"
    r = server.cli("backup", str(backup))  # the server is running
    assert r.returncode == 0, r.stderr
    kind = "SQLite snapshot" if backend == "sqlite" else "XEP-0227 export"
    assert kind in r.stdout
    assert backup.stat().st_mode & 0o077 == 0  # private: it holds everyone's data
    r = server.cli("export", str(exported))
    assert r.returncode == 0, r.stderr
    with backends.database(backend, tmp_path / "new") as url:
        (tmp_path / "new").mkdir(exist_ok=True)
        srv2 = ServerProcess(tmp_path / "new", url, ca)
        r = srv2.cli("restore", str(backup))
        assert r.returncode == 0, r.stdout + r.stderr
        # the export holds the same data as the backup: importing it changes nothing
        r = srv2.cli("import", str(exported))
        assert r.returncode == 0, r.stderr
        summary = r.stdout.strip().splitlines()[-1]
        assert summary.startswith("imported: accounts: 0 written, 3 unchanged"), summary
        assert all(part.split(": ")[1].startswith("0 written")
                   for part in summary[len("imported: "):].split("; ")), summary
        srv2.start()
        try:
            run(check(srv2, a, apw, b, bpw, c, cpw), timeout=120)
        finally:
            code = srv2.stop()
            assert not srv2.tracebacks() and code == 0, srv2.log()[-3000:]


@pytest.fixture
def sqlite_server(ca: CertAuthority, tmp_path: Path) -> Iterator[ServerProcess]:
    yield from start_server(tmp_path / "live", "sqlite", ca)


def test_sqlite_backup_while_clients_chat(sqlite_server: ServerProcess, ca: CertAuthority,
                                          tmp_path: Path) -> None:
    server = sqlite_server
    (a, apw), (b, bpw) = server.new_user("a"), server.new_user("b")
    backup = tmp_path / "live.sqlite"

    async def body() -> None:
        ca_ = await connect(server, a + "/x")
        cb = await connect(server, b + "/x")
        await befriend_and_chat(ca_, a, cb, b)
        stop = asyncio.Event()

        async def chatter() -> None:
            i = 0
            while not stop.is_set():
                ca_.send_message(mto=b, mbody=f"live {i}", mtype="chat")
                i += 1
                await asyncio.sleep(0.002)

        task = asyncio.create_task(chatter())
        await cb.next_message(where=lambda m: m["body"].startswith("live"))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "xmppd", "backup", str(backup), "-c",
            str(server.config_path), cwd=ROOT, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        _out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        await cb.next_message(where=lambda m: m["body"].startswith("live"))  # still flowing
        stop.set()
        await task
        await ca_.get_roster()  # the session lived through the backup: an IQ round trip
        await ca_.close()
        await cb.close()

    run(body(), timeout=120)
    con = sqlite3.connect(backup)
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert con.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # one file
    in_backup = con.execute("SELECT count(*) FROM archive WHERE username = ? AND "
                            "stanza LIKE '%live %'", (b.split("@")[0],)).fetchone()[0]
    con.close()
    assert in_backup > 0
    srv2 = ServerProcess(tmp_path / "restored", f"sqlite:///{tmp_path}/restored/db.sqlite",
                         ca)
    r = srv2.cli("restore", str(backup))
    assert r.returncode == 0, r.stderr
    srv2.start()
    try:
        async def after() -> None:
            cl = await connect(srv2, a + "/again", apw)
            roster = await cl.get_roster()
            assert roster["roster"]["items"][b]["subscription"] == "both"
            await cl.close()
            raw = await RawStream.open(srv2.c2s_port)
            await raw.login(str(ca.ca_file), b.split("@")[0], bpw, resource="mam")
            # The server caps a page at 250 (plugins.mam.max_page): page through (RSM §2.2).
            results: list[ET.Element] = []
            after = ""
            for n in range(100):
                page, fin = await mam_query(raw, rsm=f"<max>250</max>{after}", qid=f"p{n}")
                results += page
                done = fin.find(f"{{{MAM}}}fin")
                if not page or (done is not None and done.get("complete") == "true"):
                    break
                after = f"<after>{page[-1].get('id')}</after>"
            live = [r for r in results if (r.findtext(
                f"{{urn:xmpp:forward:0}}forwarded/{C}message/{C}body") or "").startswith(
                "live")]
            assert len(live) == in_backup
            raw.close()

        run(after(), timeout=60)
    finally:
        assert srv2.stop() == 0 and not srv2.tracebacks()


def _export(server: ServerProcess) -> str:
    r = server.cli("export")
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_bad_backups_are_refused_and_change_nothing(ca: CertAuthority, tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "s", f"sqlite:///{tmp_path}/s/db.sqlite", ca)
    (tmp_path / "s").mkdir(exist_ok=True)
    srv.add_user("keep@localhost", "pw")
    good = tmp_path / "good.sqlite"
    assert srv.cli("backup", str(good)).returncode == 0
    xml = tmp_path / "good.xml"
    assert srv.cli("export", str(xml)).returncode == 0
    before = _export(srv)
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    (tmp_path / "garbage").write_bytes(b"\x00\x01 not a backup")
    (tmp_path / "cut.sqlite").write_bytes(good.read_bytes()[:6000])
    text = xml.read_text()
    (tmp_path / "cut.xml").write_text(text[:len(text) // 2])
    (tmp_path / "dtd.xml").write_text(
        "<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'aaaa'>]>"
        "<server-data xmlns='urn:xmpp:pie:0'>&a;</server-data>")
    cases = [
        (["restore", str(good)], "already holds data; restoring would replace it"),
        (["restore", str(tmp_path / "garbage"), "--force"], "is not an xmppd backup"),
        (["restore", str(tmp_path / "missing"), "--force"], "cannot read"),
        (["restore", str(tmp_path / "cut.sqlite"), "--force"], "cut.sqlite is damaged"),
        (["restore", str(other), "--force"], "is a SQLite database but not one of xmppd"),
        (["restore", str(tmp_path / "cut.xml"), "--force"],
         "cut.xml:"),  # FILE:LINE:COLUMN of where it ends
        (["import", str(tmp_path / "dtd.xml")], "a DOCTYPE (DTD, entity declarations) is not"),
        (["backup", str(tmp_path / "no" / "such" / "dir" / "b")], "error: "),
    ]
    for args, message in cases:
        r = srv.cli(*args)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert message in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr
        assert _export(srv) == before, args  # nothing changed
    # and a good one with --force does replace the data
    srv.add_user("other@localhost", "pw")
    assert "other" in _export(srv)
    r = srv.cli("restore", str(good), "--force")
    assert r.returncode == 0, r.stderr
    assert _export(srv) == before
    r = srv.cli("restore", str(xml), "--force")
    assert r.returncode == 0, r.stderr
    assert _export(srv) == before


def test_import_refuses_hosts_this_server_does_not_serve(ca: CertAuthority,
                                                         tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "s", f"sqlite:///{tmp_path}/s/db.sqlite", ca)
    f = tmp_path / "other.xml"
    f.write_text("<server-data xmlns='urn:xmpp:pie:0'>\n<host jid='elsewhere.example'>"
                 "<user name='x'/></host></server-data>")
    r = srv.cli("import", str(f))
    assert r.returncode == 1
    assert f"{f}:2:1: host 'elsewhere.example' is not served by this server" in r.stderr
    assert "nothing was imported" in r.stderr
    r = srv.cli("export")
    root = ET.fromstring(r.stdout)
    assert [h.get("jid") for h in root] == []


def test_a_sqlite_backup_restores_into_another_backend(backend: str, ca: CertAuthority,
                                                       tmp_path: Path) -> None:
    """How to move from SQLite to PostgreSQL or MariaDB: back up, point storage.url at the
    new database, restore (through an export of a scratch copy of the backup)."""
    if backend == "sqlite":
        pytest.skip("SQLite into SQLite is the page copy the other tests restore")
    src = ServerProcess(tmp_path / "src", f"sqlite:///{tmp_path}/src/db.sqlite", ca)
    sample = tmp_path / "sample.xml"
    sample.write_text(SAMPLE)
    assert src.cli("import", str(sample)).returncode == 0
    backup = tmp_path / "src.sqlite"
    assert src.cli("backup", str(backup)).returncode == 0
    with backends.database(backend, tmp_path / "dst") as url:
        (tmp_path / "dst").mkdir(exist_ok=True)
        dst = ServerProcess(tmp_path / "dst", url, ca)
        r = dst.cli("restore", str(backup))
        assert r.returncode == 0, r.stderr
        assert _export(dst) == _export(src)
