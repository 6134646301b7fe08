"""repair stored XML the old serializer wrote malformed (issue 15 A3)

Revision ID: 0501
Revises: 0001

Until issue 15 A3 was fixed, ``xmppd.stanza.serialize`` wrote two kinds of XML that no
namespace-aware parser accepts (Namespaces in XML 1.0 §3, §6.3):

* an element with several prefixed attributes in one namespace declared its prefix once per
  attribute: ``xmlns:ns0="urn:o" ns0:p="1" xmlns:ns0="urn:o" ns0:q="2"`` (a duplicate
  attribute);
* an element in the XML namespace (``<xml:foo/>`` from a peer) was written with that
  namespace as its default, ``<foo xmlns="http://www.w3.org/XML/1998/namespace">``, which
  must not be declared; its unprefixed descendants inherited it.

Any user could make the server store such a stanza in another user's archive or offline
queue; reading it back then failed (the offline queue stopped draining, MAM queries
failed). This migration finds the rows the server's own parser rejects among those that
contain either form, rewrites them to mean the tree they stood for (repeated identical
prefix declarations dropped, which is exactly what the fixed serializer writes;
XML-namespace elements and their unprefixed descendants given the ``xml`` prefix) and keeps
the rewrite only if it then parses. Rows it cannot repair are left unchanged and
counted in the log. Rows are read in primary-key order, a batch at a time (keyset paging),
so memory stays bounded however large the archive is.

The old writer's output is tokenised exactly by the regular expressions below because it
escapes ``<`` and ``>`` in text and attribute values alike.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import context, op
from twisted.logger import Logger

from xmppd.xmlparser import parse_fragment

revision = "0501"
down_revision = "0001"
branch_labels = ("repair_xml",)
# Not depends_on the branches whose tables it reads: that would replace their heads in
# alembic_version. A table that does not exist yet when this runs (a new database, where the
# branches may come after this one) holds no rows to repair, so it is skipped.
depends_on = None

log = Logger(namespace="storage.migrations.repair_xml")

NS_XML = "http://www.w3.org/XML/1998/namespace"
XML_DEFAULT = f'"{NS_XML}"'
# What a row must contain to be in either bad form (filtered in SQL: only these are read).
PATTERNS = ("%xmlns:ns%", f'%xmlns="{NS_XML}"%')
BATCH = 200  # rows per read; config.attributes["xml_repair_batch"] overrides (tests)

# (table, primary key columns, XML column, extra condition)
TABLES: list[tuple[str, tuple[str, ...], str, tuple[str, tuple[str, ...]] | None]] = [
    ("archive", ("id",), "stanza", None),  # XEP-0313 archives of users and rooms
    ("offline_messages", ("id",), "stanza", None),  # XEP-0160
    ("roster_pending", ("host", "username", "contact"), "stanza", None),  # RFC 6121 §3.1.3
    ("pubsub_items", ("node_id", "item_id"), "payload", None),  # PEP items
    ("vcards", ("host", "username"), "vcard", None),  # XEP-0054
    # XEP-0049 private XML and the last unavailable presence; the other stores hold JSON.
    ("kv", ("host", "username", "store", "key"), "value", ("store", ("private", "presence"))),
]

_TAG = re.compile(r"<(/?)([^\s/>]+)([^>]*?)(/?)>")
_ATTR = re.compile(r"""\s+([^\s=]+)\s*=\s*("[^"]*"|'[^']*')""")


class Unrepairable(Exception):
    pass


def _attributes(body: str) -> list[tuple[str, str]]:
    found = []
    end = 0
    for m in _ATTR.finditer(body):
        if body[end:m.start()].strip():
            raise Unrepairable("unexpected text in a start tag")
        found.append((m.group(1), m.group(2)))
        end = m.end()
    if body[end:].strip():
        raise Unrepairable("unexpected text in a start tag")
    return found


def repair(xml: str) -> str:
    """``xml`` with both bad forms undone (raises Unrepairable if it is not the old writer's
    output or a prefix is bound to two different URIs in one tag)."""
    out: list[str] = []
    pos = 0
    stack: list[tuple[str, bool]] = []
    in_xml_ns = False  # whether unprefixed names here were in the XML namespace
    for m in _TAG.finditer(xml):
        out.append(xml[pos:m.start()])
        pos = m.end()
        close, name, body, empty = m.groups()
        if close:
            if body.strip() or empty or not stack:
                raise Unrepairable("unbalanced end tag")
            written, in_xml_ns = stack.pop()
            out.append(f"</{written}>")
            continue
        attrs = _attributes(body)
        kept: list[tuple[str, str]] = []
        declared: dict[str, str] = {}
        default: str | None = None
        for key, value in attrs:
            if key.startswith("xmlns:"):
                if key in declared:
                    if declared[key] != value:
                        raise Unrepairable(f"{key} bound twice to different URIs")
                    continue  # the repeated declaration
                declared[key] = value
            elif key == "xmlns":
                default = value
            kept.append((key, value))
        inner = in_xml_ns if default is None else default == XML_DEFAULT
        written = name
        if inner and ":" not in name:
            written = "xml:" + name
            kept = [(k, v) for k, v in kept if k != "xmlns"]
        out.append(f"<{written}" + "".join(f" {k}={v}" for k, v in kept) + f"{empty}>")
        if not empty:
            stack.append((written, in_xml_ns))
            in_xml_ns = inner
    if stack:
        raise Unrepairable("unclosed element")
    out.append(xml[pos:])
    return "".join(out)


def _parses(xml: str) -> bool:
    try:
        parse_fragment(xml)
    except Exception:  # whatever the parser objects to: not well-formed for the server
        return False
    return True


def _after(cols: Sequence[Any], values: Sequence[Any]) -> Any:
    """Rows whose key sorts after ``values`` (row-value comparison spelled out, so that it
    works and can use the primary key index on every backend)."""
    cond = cols[-1] > values[-1]
    for col, value in zip(reversed(cols[:-1]), reversed(values[:-1]), strict=True):
        cond = sa.or_(col > value, sa.and_(col == value, cond))
    return sa.and_(cols[0] >= values[0], cond)


def _repair_table(conn: sa.Connection, name: str, key: tuple[str, ...], column: str,
                  where: tuple[str, tuple[str, ...]] | None, batch: int,
                  fix: Callable[[str], str]) -> dict[str, int]:
    names = (*key, column) + ((where[0],) if where is not None else ())
    t = sa.table(name, *(sa.column(c) for c in names))
    cols = [t.c[c] for c in key]
    xml_col = t.c[column]
    base = sa.select(*cols, xml_col).where(sa.or_(*(xml_col.like(p) for p in PATTERNS)))
    if where is not None:
        base = base.where(t.c[where[0]].in_(where[1]))
    base = base.order_by(*cols).limit(batch)
    update = sa.update(t).where(*(c == sa.bindparam(f"k_{c.name}") for c in cols)).values(
        {column: sa.bindparam("v_xml")})
    counts = {"repaired": 0, "well-formed": 0, "unrepairable": 0}
    last: tuple[Any, ...] | None = None
    while True:
        q = base if last is None else base.where(_after(cols, last))
        rows = conn.execute(q).all()
        if not rows:
            return counts
        changes = []
        for row in rows:
            xml = row[-1]
            if _parses(xml):
                counts["well-formed"] += 1
                continue
            try:
                fixed = fix(xml)
            except Unrepairable:
                fixed = xml
            if fixed != xml and _parses(fixed):
                counts["repaired"] += 1
                changes.append({**{f"k_{c}": v for c, v in zip(key, row[:-1], strict=True)},
                                "v_xml": fixed})
            else:
                counts["unrepairable"] += 1
        if changes:
            conn.execute(update, changes)
        last = tuple(rows[-1][:-1])


def upgrade() -> None:
    conn = op.get_bind()
    batch = int(context.config.attributes.get("xml_repair_batch", BATCH))
    inspector = sa.inspect(conn)
    for name, key, column, where in TABLES:
        if not inspector.has_table(name):
            continue
        counts = _repair_table(conn, name, key, column, where, batch, repair)
        event = log.warn if counts["unrepairable"] else log.info
        event("stored XML repair (issue 15 A3), {table}.{column}: repaired {repaired},"
              " already well-formed {wellformed}, malformed and left unchanged"
              " {unrepairable}", table=name, column=column, repaired=counts["repaired"],
              wellformed=counts["well-formed"], unrepairable=counts["unrepairable"])


def downgrade() -> None:
    pass  # the repaired rows are what the fixed serializer writes; nothing to undo
