"""Migration 0501 repairs the XML the old serializer stored malformed (issue 15 A3), on every
backend: rows with a repeated prefix declaration or the XML namespace declared as default
parse afterwards and mean what the tree meant; everything else is left as it was."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, Table, insert, select
from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from zope.interface import provider

from storage import migrate
from storage.archive import archive
from storage.offline import offline_messages
from storage.pubsub import pubsub_items
from storage.roster import roster_pending
from storage.schema import kv
from storage.sql import Database
from storage.vcard import vcards
from tests.support import backends
from xmppd import stanza as st
from xmppd.xmlparser import parse_fragment

# What the old serializer wrote (copied from its output) and the trees they stood for.
DUP_BAD = ('<message from="a@localhost/x" to="b@localhost" type="chat" id="1"><body>hi</body>'
           '<p xmlns="urn:p" xmlns:ns0="urn:o" ns0:p="1" xmlns:ns0="urn:o" ns0:q="2"'
           ' xmlns:ns1="urn:t" ns1:r="3"><c xmlns:ns0="urn:o" ns0:p="4" xmlns:ns0="urn:o"'
           ' ns0:q="5"/></p></message>')
DUP_TREE = ("<message from='a@localhost/x' to='b@localhost' type='chat' id='1'><body>hi</body>"
            "<p xmlns='urn:p' xmlns:o='urn:o' xmlns:t='urn:t' o:p='1' o:q='2' t:r='3'>"
            "<c o:p='4' o:q='5'/></p></message>")
XMLNS_BAD = ('<message id="2"><foo xmlns="http://www.w3.org/XML/1998/namespace" xml:lang="en"'
             ' a="1"><bar xmlns="jabber:client"/><baz xmlns="urn:z"><q/></baz><x>t</x></foo>'
             '</message>')
XMLNS_TREE = ("<message id='2'><xml:foo xml:lang='en' a='1'><bar/><baz xmlns='urn:z'><q/>"
              "</baz><xml:x>t</xml:x></xml:foo></message>")
VCARD_BAD = ('<vCard xmlns="vcard-temp"><FN xmlns:ns0="urn:o" ns0:a="1" xmlns:ns0="urn:o"'
             ' ns0:b="2">x</FN></vCard>')
VCARD_TREE = "<vCard xmlns='vcard-temp' xmlns:o='urn:o'><FN o:a='1' o:b='2'>x</FN></vCard>"
# Candidates (they contain "xmlns:ns") that are fine, and malformed rows no rule repairs.
GOOD = st.serialize(parse_fragment(DUP_TREE))
CHAT = '<message to="b@localhost"><body>xmlns:ns0="not markup"</body></message>'
CONFLICT = ('<message><p xmlns:ns0="urn:a" ns0:x="1" xmlns:ns0="urn:b" ns0:y="2"/>'
            '</message>')
TRUNCATED = '<message><p xmlns:ns0="urn:a" ns0:x="1" xmlns:ns0="urn:a" ns0:y="2">'
PLAIN_BROKEN = "<message><body>no candidate</message>"
REPAIRS = {DUP_BAD: DUP_TREE, XMLNS_BAD: XMLNS_TREE, VCARD_BAD: VCARD_TREE}
UNREPAIRABLE = (CONFLICT, TRUNCATED)


def canon(el: st.Element) -> Any:
    return (el.uri, el.name, sorted((str(k), v) for k, v in el.attributes.items()),
            [c if isinstance(c, str) else canon(c) for c in el.children])


def tree(xml: str) -> Any:
    try:
        return canon(parse_fragment(xml))
    except Exception:
        return None


@pytest.fixture(params=backends.ALL)
def before(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A database migrated to every head except 0501, as a deployed server has it."""
    with backends.database(request.param, tmp_path) as url:
        db = Database(url, 2)
        for head in sorted(migrate.heads(db.engine) - {"0501"}):
            migrate.upgrade(db.engine, head)
        assert "0501" not in migrate.current(db.engine)
        yield db.engine
        db.stop()


ROWS: list[tuple[Table, str, list[str]]] = [
    # table, XML column, values (several of each, so that small batches page through them)
    (archive, "stanza", [DUP_BAD, GOOD, XMLNS_BAD, CONFLICT, CHAT, DUP_BAD, TRUNCATED,
                         PLAIN_BROKEN, XMLNS_BAD]),
    (offline_messages, "stanza", [GOOD, DUP_BAD, TRUNCATED, XMLNS_BAD, DUP_BAD]),
    (roster_pending, "stanza", [DUP_BAD, CHAT, CONFLICT]),
    (pubsub_items, "payload", [VCARD_BAD, GOOD, VCARD_BAD]),
    (vcards, "vcard", [VCARD_BAD, VCARD_BAD, CONFLICT]),
    (kv, "value", [VCARD_BAD, DUP_BAD, GOOD, TRUNCATED]),
]


def _insert(engine: Engine) -> None:
    with engine.begin() as conn:
        for table, column, values in ROWS:
            for i, xml in enumerate(values):
                # keys repeat their leading parts, so paging compares the later columns
                host, user = f"h{i % 2}.example", f"u{i // 2}"
                rows: dict[Table, dict[str, Any]] = {
                    archive: {"host": host, "username": user, "stanza_id": f"s{i}",
                              "with_jid": "b@localhost", "created": i},
                    offline_messages: {"host": host, "username": user, "created": i},
                    roster_pending: {"host": host, "username": user,
                                     "contact": f"c{i}@localhost", "created": i},
                    pubsub_items: {"node_id": 1 + i % 2, "item_id": f"item{i}", "host": host,
                                   "username": user, "seq": i, "published": i},
                    vcards: {"host": host, "username": user, "updated": i},
                    kv: {"host": host, "username": user, "store": "private",
                         "key": f"{{urn:k}}k{i}"},
                }
                conn.execute(insert(table).values(**rows[table], **{column: xml}))
        # JSON stores are not XML: even a row that looks like the bad form stays.
        conn.execute(insert(kv).values(host="h0.example", username="u0", store="mam",
                                       key="prefs", value=DUP_BAD))


def _read(engine: Engine, table: Table, column: str) -> list[str]:
    with engine.connect() as conn:
        return [r[0] for r in conn.execute(select(table.c[column]).where(
            *([kv.c.store == "private"] if table is kv else [])).order_by(
            *table.primary_key.columns))]


def test_migration_repairs_bad_rows_and_leaves_the_rest(before: Engine) -> None:
    _insert(before)
    expected_before = {t.name: sorted(_read(before, t, c)) for t, c, _ in ROWS}
    events: list[dict[str, Any]] = []

    @provider(ILogObserver)
    def observer(event: dict[str, Any]) -> None:
        events.append(event)

    globalLogPublisher.addObserver(observer)
    try:
        cfg = migrate._config(before)
        cfg.attributes["xml_repair_batch"] = 2
        command.upgrade(cfg, "heads")
    finally:
        globalLogPublisher.removeObserver(observer)
    assert migrate.current(before) == migrate.heads(before)

    for table, column, values in ROWS:
        after = _read(before, table, column)
        assert len(after) == len(values) == len(expected_before[table.name])
        repaired = 0
        for old in expected_before[table.name]:
            if old in REPAIRS:
                want = tree(REPAIRS[old])
                match = [a for a in after if a != old and tree(a) == want]
                assert match, (table.name, old, after)
                after.remove(match[0])
                repaired += 1
            else:
                after.remove(old)  # unchanged: good, not a candidate, or unrepairable
        assert after == []
        report = [formatEvent(e) for e in events
                  if e.get("log_namespace") == "storage.migrations.repair_xml"
                  and e.get("table") == table.name]
        unrepairable = sum(v in UNREPAIRABLE for v in values)
        wellformed = sum(v in (GOOD, CHAT) for v in values)
        assert report == [
            f"stored XML repair (issue 15 A3), {table.name}.{column}: repaired {repaired},"
            f" already well-formed {wellformed}, malformed and left unchanged {unrepairable}"]
    # The old writer's exact-same tree comes out as the fixed writer writes it.
    assert GOOD in _read(before, archive, "stanza")
    with before.connect() as conn:
        assert conn.execute(select(kv.c.value).where(kv.c.store == "mam")).scalar() == DUP_BAD
        rows = [r[0] for r in conn.execute(select(archive.c.stanza).where(
            archive.c.stanza_id.in_(["s0", "s5"])))]
    assert rows == [GOOD, GOOD]
