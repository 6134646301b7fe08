"""``xmppd export``: the database (everything, some hosts, or some users) as a XEP-0227
file, written as it is read: rows are fetched a page at a time and each element is written
and forgotten, so memory does not grow with the archive.

Everything is read in one transaction the caller opened with a consistent snapshot
(repeatable read), so a running server's writes during the export are either wholly in it
or not at all. The output is deterministic (ordered by keys), which is what lets an
export -> import -> export round trip compare equal.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import IO

from sqlalchemy import Connection, select

from storage.schema import accounts, kv
from xmppd.pie import accounts as pie_accounts
from xmppd.pie import messages, pep, rooms, roster, userdata
from xmppd.pie.model import PIE, PIE_MAM, PUBSUB, PUBSUB_OWNER
from xmppd.pie.xml import Writer
from xmppd.stanza import make

# Every table, and where its data goes in an export: a new table has to be added here,
# with a decision (tests/unit/test_pie_forms.py checks the list against the schema), because
# on PostgreSQL and MariaDB `xmppd backup` is an export.
TABLES: dict[str, str] = {
    "accounts": "<user/>", "credentials": "<scram-credentials/>",
    "roster_items": "jabber:iq:roster <query/>", "roster_versions": "its 'ver'",
    "roster_pending": "<presence type='subscribe'/>", "vcards": "vcard-temp <vCard/>",
    "directory": "not written: rebuilt from the vCard on import",
    "kv": "jabber:iq:private <query/>, <kv/> and kept unknown elements",
    "blocklist": "urn:xmpp:blocking <blocklist/>",
    "pubsub_nodes": "pubsub#owner <configure/>", "pubsub_items": "pubsub <items/>",
    "offline_messages": "<offline-messages/>", "archive": "urn:xmpp:pie:0#mam <archive/>",
    "muc_rooms": "<room/>", "muc_affiliations": "muc#admin <item/> in <room/>",
    "uploads": "not written: HTTP upload bookkeeping (the files are in data_dir)",
    "fast_tokens": "not written: XEP-0484 tokens are per-device login secrets; a client whose "
                   "token is unknown falls back to its password (XEP-0484 §4)",
    "push_registrations": "not written: XEP-0357 registrations name this server's app "
                          "servers; clients enable push again at their next login",
}


def _hosts(conn: Connection) -> list[str]:
    found = {r.host for r in conn.execute(select(accounts.c.host).distinct())}
    found |= {r.host for r in conn.execute(select(kv.c.host).distinct().where(
        kv.c.username == "", kv.c.host != ""))}
    found |= set(rooms.room_hosts(conn))
    return sorted(found)


def export(conn: Connection, out: IO[str], hosts: Collection[str] = (),
           users: Collection[tuple[str, str]] = ()) -> int:
    """Write the export; returns the number of users written. ``users`` (host, name) limits
    it to those accounts (and nothing host-wide); ``hosts`` to those hosts."""
    w = Writer(out)
    out.write("<?xml version='1.0' encoding='UTF-8'?>\n")
    w.open("server-data", ns=PIE)
    count = 0
    wanted_users = set(users)
    for host in _hosts(conn):
        if hosts and host not in hosts:
            continue
        if wanted_users and host not in {h for h, _ in wanted_users}:
            continue
        w.open("host", {"jid": host})
        last = ""
        while True:
            page = conn.execute(select(accounts.c.username, accounts.c.created,
                                       accounts.c.disabled, accounts.c.last_login).where(
                accounts.c.host == host, accounts.c.username > last
            ).order_by(accounts.c.username).limit(500)).all()
            for row in page:
                if not wanted_users or (host, row.username) in wanted_users:
                    _user(conn, w, host, row.username, int(row.created), bool(row.disabled),
                          None if row.last_login is None else int(row.last_login))
                    count += 1
            if len(page) < 500:
                break
            last = page[-1].username
        if not wanted_users:
            _rooms(conn, w, host)
            for el in userdata.export_user(conn, host, ""):
                w.element(el)
        w.close("host")
    w.close("server-data")
    return count


def _user(conn: Connection, w: Writer, host: str, name: str, created: int, disabled: bool,
          last_login: int | None) -> None:
    attrs, creds = pie_accounts.export_user(conn, host, name, created, disabled, last_login)
    w.open("user", attrs)
    for el in creds:
        w.element(el)
    for el in roster.export_user(conn, host, name):
        w.element(el)
    for el in userdata.export_user(conn, host, name):
        w.element(el)
    nodes = pep.export_nodes(conn, host, name)
    if nodes:
        owner = make("pubsub", PUBSUB_OWNER)
        owner.children.extend(conf for _node, _id, conf in nodes)
        w.element(owner)
        items = [(node, pep.export_items(conn, node_id)) for node, node_id, _c in nodes]
        if any(found for _n, found in items):
            w.open("pubsub", ns=PUBSUB)
            for node, found in items:
                if found:
                    w.open("items", {"node": node})
                    for el in found:
                        w.element(el)
                    w.close("items")
            w.close("pubsub")
    if messages.has_rows(conn, host, name, offline=True):
        w.open("offline-messages")
        for el in messages.offline_export(conn, host, name):
            w.element(el)
        w.close("offline-messages")
    _archive(conn, w, host, name)
    w.close("user")


def _archive(conn: Connection, w: Writer, host: str, name: str) -> None:
    if messages.has_rows(conn, host, name, offline=False):
        w.open("archive", ns=PIE_MAM)
        for el in messages.archive_export(conn, host, name):
            w.element(el)
        w.close("archive")


def _rooms(conn: Connection, w: Writer, host: str) -> None:
    for attrs, kids in rooms.export_rooms(conn, host):
        w.open("room", attrs, ns=rooms.XMPPD)
        for el in kids:
            w.element(el)
        _archive(conn, w, host, attrs["name"])
        w.close("room")
