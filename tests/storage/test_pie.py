"""XEP-0227 import and export (xmppd/pie) against every backend: what a file holds lands in
the right rows, export -> import -> export is the identity, a second import changes nothing,
and a file broken anywhere imports nothing."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from storage.archive import archive
from storage.offline import offline_messages
from storage.pubsub import pubsub_items, pubsub_nodes
from storage.rooms import muc_affiliations, muc_rooms
from storage.roster import roster_items, roster_pending, roster_versions
from storage.schema import accounts, credentials, kv
from storage.vcard import vcards
from tests.support import backends
from tests.support.pie import PASSWORD, SAMPLE, dump
from xmppd.accounts import check_password
from xmppd.backup import open_engine, snapshot
from xmppd.pie.exporter import export
from xmppd.pie.importer import Importer
from xmppd.pie.model import PieError, Report
from xmppd.timeutil import parse_datetime

HOSTS = ("localhost",)


@pytest.fixture(params=backends.ALL)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def _engine(backend: str, tmp: Path) -> Iterator[Engine]:
    with backends.database(backend, tmp) as url:
        engine = open_engine(url, write=True)
        try:
            yield engine
        finally:
            engine.dispose()


@pytest.fixture
def engine(backend: str, tmp_path: Path) -> Iterator[Engine]:
    yield from _engine(backend, tmp_path / "a")


@pytest.fixture
def engine2(backend: str, tmp_path: Path) -> Iterator[Engine]:
    yield from _engine(backend, tmp_path / "b")


def load(engine: Engine, tmp: Path, text: str, name: str = "in.xml") -> Report:
    path = tmp / name
    path.write_text(text)
    report = Report()
    with engine.begin() as conn:
        Importer(conn, HOSTS, 4096, report).run(path)
        report.finish()
    return report


def export_text(engine: Engine) -> str:
    out = io.StringIO()
    with snapshot(engine) as conn:
        export(conn, out)
    return out.getvalue()


def test_import_puts_everything_in_place(engine: Engine, tmp_path: Path) -> None:
    report = load(engine, tmp_path, SAMPLE)
    with engine.connect() as c:
        assert [tuple(r) for r in c.execute(select(accounts.c.host, accounts.c.username)
                                            .order_by(accounts.c.username))] == [
            ("localhost", "alice"), ("localhost", "bob")]
        state = {r.username: (r.disabled, r.last_login) for r in c.execute(select(accounts))}
        assert state == {"alice": (0, None),  # an admin's disable-user survives the move
                         "bob": (1, parse_datetime("2024-02-03T04:05:06Z") // 1_000_000)}
        creds = {r.mechanism: r for r in c.execute(select(credentials).where(
            credentials.c.username == "alice"))}
        assert set(creds) == {"SCRAM-SHA-1", "SCRAM-SHA-256"}
        from storage.credentials import Credentials
        for r in creds.values():  # the verifiers carried over: the password still works
            assert check_password(PASSWORD, Credentials(
                r.mechanism, bytes(r.salt), r.iterations, bytes(r.stored_key),
                bytes(r.server_key)))
        bob = [r for r in c.execute(select(credentials).where(credentials.c.username == "bob"))]
        assert {r.mechanism for r in bob} == {"SCRAM-SHA-1", "SCRAM-SHA-256"}
        items = {r.contact: r for r in c.execute(select(roster_items).where(
            roster_items.c.username == "alice"))}
        assert items["bob@localhost"].subscription == "both"
        assert items["bob@localhost"].name == "Bobby"
        assert json.loads(items["bob@localhost"].groups) == ["Friends", "Work"]
        assert items["carol@remote.example"].ask and not items["carol@remote.example"].approved
        assert items["dave@remote.example"].approved
        assert c.execute(select(roster_versions.c.version).where(
            roster_versions.c.username == "alice")).scalar_one() == 7
        pending = c.execute(select(roster_pending)).one()
        assert pending.contact == "eve@remote.example" and "let me in" in pending.stanza
        vc = c.execute(select(vcards)).one()
        assert "Alice Liddell" in vc.vcard and vc.photo is not None
        private = {r.key for r in c.execute(select(kv.c.key).where(kv.c.store == "private"))}
        assert private == {"{storage:bookmarks}storage", "{exodus:prefs}prefs"}
        nodes = {r.node: json.loads(r.config) for r in c.execute(select(pubsub_nodes))}
        assert nodes["urn:xmpp:avatar:metadata"]["access_model"] == "open"
        assert nodes["urn:xmpp:avatar:metadata"]["max_items"] == 5
        assert nodes["urn:xmpp:microblog:0"]["access_model"] == "presence"  # PEP default
        ids = [r.item_id for r in c.execute(select(pubsub_items).order_by(
            pubsub_items.c.node_id, pubsub_items.c.seq))]
        assert ids == ["a1", "a2", "post1"]
        off = c.execute(select(offline_messages).order_by(offline_messages.c.id)).all()
        assert [("while you were out" in r.stanza, "delay" in r.stanza) for r in off] == [
            (True, False), (False, False)]  # the exporting server's own delay is taken off
        assert off[0].created == parse_datetime("2024-01-02T03:04:05Z")
        arch = c.execute(select(archive).order_by(archive.c.id)).all()
        assert [(r.username, r.stanza_id, r.with_jid) for r in arch] == [
            ("alice", "sid-1", "bob@localhost"), ("alice", "sid-2", "bob@localhost"),
            ("lobby", "room-1", "al")]
        assert [r.message_id for r in arch] == ["a", "b", None]  # XEP-0424 finds 1:1 by id
        assert arch[0].created == parse_datetime("2024-01-01T10:00:00.123456Z")
        room = c.execute(select(muc_rooms)).one()
        config = json.loads(room.config)
        assert (room.host, room.name, room.subject, config["name"], config["members_only"],
                config["history_length"]) == ("conference.localhost", "lobby", "Welcome!",
                                              "The Lobby", True, 30)
        affs = {r.jid: (r.affiliation, r.nick, r.reason)
                for r in c.execute(select(muc_affiliations))}
        assert affs == {"alice@localhost": ("owner", None, None),
                        "bob@localhost": ("member", "bobby", None),
                        "troll@remote.example": ("outcast", None, "spam")}
    # the privacy list is not understood: kept, and reported with where it was
    assert any("jabber:iq:privacy" in n and "in.xml:" in n for n in report.notes)


def test_export_import_export_is_the_identity(engine: Engine, engine2: Engine,
                                              tmp_path: Path) -> None:
    load(engine, tmp_path, SAMPLE)
    first = export_text(engine)
    assert "jabber:iq:privacy" in first  # the kept element goes out again
    assert "password=" not in first  # verifiers only, never a password
    load(engine2, tmp_path, first, "first.xml")
    assert export_text(engine2) == first


def test_importing_twice_changes_nothing(engine: Engine, tmp_path: Path) -> None:
    load(engine, tmp_path, SAMPLE)
    with engine.connect() as c:
        before = dump(c)
    again = load(engine, tmp_path, SAMPLE)
    with engine.connect() as c:
        assert dump(c) == before
    assert sum(again.written.values()) == 0, again.written
    assert again.unchanged["archived messages"] == 3


def test_a_broken_file_imports_nothing(engine: Engine, tmp_path: Path) -> None:
    # everything is fine up to the last user, whose roster item is not
    broken = SAMPLE.replace("<item jid='alice@localhost' subscription='both' name='Alice'/>",
                            "<item jid='alice@localhost' subscription='sometimes'/>")
    with engine.connect() as c:
        before = dump(c)
    with pytest.raises(PieError) as err:
        load(engine, tmp_path, broken)
    lines = broken.splitlines()
    bad = next(i for i, s in enumerate(lines) if "sometimes" in s)
    roster_line = bad  # the line before (1-based: bad) opens Bob's roster, where it is
    assert f"in.xml:{roster_line}:7: roster item alice@localhost of bob@localhost: " \
        "subscription 'sometimes'" in str(err.value)
    with engine.connect() as c:
        assert dump(c) == before


def test_filters_take_only_the_named_hosts_or_users(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "in.xml"
    path.write_text(SAMPLE)
    report = Report()
    with engine.begin() as conn:
        Importer(conn, HOSTS, 4096, report, only_users=["bob@localhost"]).run(path)
    with engine.connect() as c:
        assert [r.username for r in c.execute(select(accounts.c.username))] == ["bob"]
        assert c.execute(select(muc_rooms)).first() is None
        assert c.execute(select(kv)).first() is None  # nothing host-wide either
    with engine.begin() as conn:
        Importer(conn, HOSTS, 4096, report, only_hosts=["conference.localhost"]).run(path)
    with engine.connect() as c:
        assert [r.name for r in c.execute(select(muc_rooms.c.name))] == ["lobby"]
        assert c.execute(select(accounts.c.username).where(
            accounts.c.username == "alice")).first() is None


def test_a_large_archive_streams_in_bounded_memory(backend: str, engine: Engine,
                                                   tmp_path: Path) -> None:
    """30000 archived messages (~9 MB of XML) import with a peak of a few MB: one message
    and one page of rows at a time, never the whole <archive/>."""
    if backend != "sqlite":
        pytest.skip("memory is measured once, on SQLite (the driver's buffers differ)")
    import tracemalloc

    path = tmp_path / "big.xml"
    with path.open("w") as f:
        f.write("<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'><user name='big'>"
                "<archive xmlns='urn:xmpp:pie:0#mam'>\n")
        for i in range(30000):
            f.write(f"<result xmlns='urn:xmpp:mam:2' id='id{i}'><forwarded xmlns='urn:xmpp:"
                    "forward:0'><delay xmlns='urn:xmpp:delay' stamp='2024-01-01T00:00:00Z'/>"
                    "<message xmlns='jabber:client' from='big@localhost/a' to='x@localhost' "
                    f"type='chat'><body>{'message body text ' * 10}{i}</body></message>"
                    "</forwarded></result>\n")
        f.write("</archive></user></host></server-data>\n")
    assert path.stat().st_size > 9_000_000
    report = Report()
    tracemalloc.start()
    try:
        with engine.begin() as conn:
            Importer(conn, HOSTS, 4096, report).run(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.written["archived messages"] == 30000
    assert peak < 4_000_000, peak


BROKEN = [
    ("<iter-count>4096</iter-count>", "<iter-count>0</iter-count>",
     "<iter-count/> '0' is not a count"),
    ("mechanism='SCRAM-SHA-256'", "mechanism='PLAIN'", "'PLAIN' is not a SCRAM mechanism"),
    ("mechanism='SCRAM-SHA-256'", "mechanism='SCRAM-SHA-1'", "SCRAM-SHA-1 given twice"),
    ("<stored-key>", "<stored-key>!!", "stored-key is not base64"),
    ("<item jid='bob@localhost' name='Bobby'", "<item jid='bob@@localhost' name='Bobby'",
     "invalid JID 'bob@@localhost'"),
    ("from='eve@remote.example/phone' type='subscribe'",
     "from='eve@remote.example/phone' type='subscribed'", "must be a pending request"),
    ("id='sid-1'", "", "archived message without an id"),
    ("id='sid-1'", "id='" + "x" * 41 + "'", "without an id of 1 to 40 characters"),
    ("stamp='2024-01-01T10:00:01Z'", "stamp='yesterday'", "'yesterday' is not a XEP-0082"),
    ("<item id='post1'>", "<item id='post1'><extra xmlns='urn:x'/>",
     "exactly one payload element is needed, not 2"),
    ("affiliation='member' nick='bobby'", "affiliation='king'", "affiliation 'king'"),
    ("<value>1</value></field>\n        <field var='muc#roomconfig_membersonly'>",
     "<value>0</value></field>\n        <field var='muc#roomconfig_membersonly'>",
     "only persistent rooms"),
    ("<host jid='localhost'>", "<host jid='elsewhere.example'>", "is not served"),
    ("from='lobby@conference.localhost/al'", "from='lobby@conference.localhost/" + "n" * 300
     + "'", "longer than 255 characters"),
]


@pytest.mark.parametrize("old, new, message", BROKEN)
def test_bad_values_are_errors_that_say_where(tmp_path: Path, old: str, new: str,
                                              message: str) -> None:
    assert old in SAMPLE
    text = SAMPLE.replace(old, new, 1)
    for engine in _engine("sqlite", tmp_path):
        with pytest.raises(PieError) as err:
            load(engine, tmp_path, text)
        assert message in str(err.value)
        assert str(err.value).startswith(f"{tmp_path / 'in.xml'}:")
        with engine.connect() as c:
            assert c.execute(select(accounts)).first() is None  # nothing imported
