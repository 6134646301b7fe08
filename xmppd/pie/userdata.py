"""vCards, private XML, blocklists, other per-user settings and elements nobody understood,
in XEP-0227 files ("vCards", "Private XML Storage", and xmppd's extension namespace).

Each import writes only what differs from the database, so importing a file twice changes
nothing. A vCard also refreshes the user directory (XEP-0055 search) and the XEP-0153 photo
hash, as a vCard set by the user would.
"""

from __future__ import annotations

import hashlib
import time
from typing import Final

from sqlalchemy import Connection, insert, select
from twisted.words.xish.domish import Element

from plugins.private import storage_key
from plugins.vcard import directory_entry, photo_hash
from storage.blocking import blocklist
from storage.directory import FIELDS, directory, fold
from storage.private import KEY
from storage.private import STORE as PRIVATE_STORE
from storage.schema import kv
from storage.upsert import upsert
from storage.vcard import vcards
from xmppd import stanza as st
from xmppd.errors import StanzaError
from xmppd.pie.model import BLOCKING, PRIVATE, XMPPD, PieError, Report, Where
from xmppd.pie.xml import attr, jid, required
from xmppd.xmlparser import parse_fragment

UNKNOWN_STORE: Final = "pie-unknown"  # elements kept as they were, exported again
STORE_LEN: Final = 64  # the kv table's store column


def vcard_unit(conn: Connection, host: str, name: str, el: Element, where: Where,
               report: Report) -> None:
    xml = st.serialize(el)
    try:
        photo = photo_hash(el)
    except StanzaError:
        photo = None
        report.note(where, f"vCard of {name}@{host}: PHOTO/BINVAL is not base64; kept, "
                    "without an avatar hash")
    row = conn.execute(select(vcards.c.vcard, vcards.c.photo).where(
        vcards.c.host == host, vcards.c.username == name)).first()
    changed = row is None or (row.vcard, row.photo) != (xml, photo)
    if changed:
        upsert(conn, vcards, {"host": host, "username": name},
               {"vcard": xml, "photo": photo, "updated": int(time.time())})
        entry = directory_entry(name, el)
        values: dict[str, str | None] = {}
        for f in FIELDS:
            value = getattr(entry, f)
            values[f] = value
            values[f"{f}_key"] = fold(value) if value else ""
        upsert(conn, directory, {"host": host, "username": name}, values)
    report.count("vCards", changed)


def _kv_put(conn: Connection, host: str, name: str, store: str, key: str, value: str,
            kind: str, report: Report) -> None:
    row = conn.execute(select(kv.c.value).where(
        kv.c.host == host, kv.c.username == name, kv.c.store == store,
        kv.c.key == key)).first()
    changed = row is None or row.value != value
    if changed:
        upsert(conn, kv, {"host": host, "username": name, "store": store, "key": key},
               {"value": value})
    report.count(kind, changed)


def private_unit(conn: Connection, host: str, name: str, el: Element, where: Where,
                 report: Report) -> None:
    """XEP-0049: each child is stored whole under its qualified name."""
    for child in st.element_children(el):
        key = storage_key(child)
        if len(key) > KEY:
            raise PieError(where, f"private XML element {key[:60]}...: namespace and name "
                           f"longer than {KEY} characters")
        _kv_put(conn, host, name, PRIVATE_STORE, key, st.serialize(child),
                "private XML elements", report)


def blocklist_unit(conn: Connection, host: str, name: str, el: Element, where: Where,
                   report: Report) -> None:
    """XEP-0191 ``<blocklist/>``: every JID listed is blocked (others stay as they are)."""
    have = {r.jid for r in conn.execute(select(blocklist.c.jid).where(
        blocklist.c.host == host, blocklist.c.username == name))}
    for item in st.children(el, "item", BLOCKING):
        blocked = str(jid(attr(item, "jid"), where, f"blocklist of {name}@{host}"))
        new = blocked not in have
        if new:
            conn.execute(insert(blocklist).values(host=host, username=name, jid=blocked))
            have.add(blocked)
        report.count("blocked JIDs", new)


def kv_unit(conn: Connection, host: str, name: str, el: Element, where: Where,
            report: Report) -> None:
    store, key = required(el, "store", where), attr(el, "key") or ""
    if len(store) > STORE_LEN or len(key) > KEY:
        raise PieError(where, f"<kv store={store[:40]!r}/>: store or key too long")
    _kv_put(conn, host, name, store, key, st.text(el), "settings", report)


def keep_unknown(conn: Connection, host: str, name: str, el: Element, where: Where,
                 report: Report) -> None:
    """Keep an element xmppd does not understand (exported again as it was) and say so
    (XEP-0227 "File format": notify the operator of what could not be imported)."""
    xml = st.serialize(el)
    key = hashlib.sha1(xml.encode()).hexdigest()
    owner = f"{name}@{host}" if name else host
    report.note(where, f"<{el.name} xmlns='{el.uri or ''}'> of {owner} is not understood by "
                "xmppd: kept as it is (it will be in the next export) but not used")
    _kv_put(conn, host, name, UNKNOWN_STORE, key, xml, "unknown elements kept", report)


def export_user(conn: Connection, host: str, name: str) -> list[Element]:
    """vCard, private XML, blocklist, settings and kept elements of one user (or, with
    ``name`` "", the host's own settings)."""
    out: list[Element] = []
    row = conn.execute(select(vcards.c.vcard).where(
        vcards.c.host == host, vcards.c.username == name)).first()
    if row is not None:
        out.append(parse_fragment(row.vcard))
    rows = conn.execute(select(kv.c.store, kv.c.key, kv.c.value).where(
        kv.c.host == host, kv.c.username == name).order_by(kv.c.store, kv.c.key)).all()
    private = [r for r in rows if r.store == PRIVATE_STORE]
    if private:
        q = st.make("query", PRIVATE)
        for r in private:
            st.append(q, parse_fragment(r.value))
        out.append(q)
    blocked = [r.jid for r in conn.execute(select(blocklist.c.jid).where(
        blocklist.c.host == host, blocklist.c.username == name).order_by(blocklist.c.jid))]
    if blocked:
        b = st.make("blocklist", BLOCKING)
        for j in blocked:
            st.add(b, "item", BLOCKING, attrs={"jid": j})
        out.append(b)
    for r in rows:
        if r.store == UNKNOWN_STORE:
            out.append(parse_fragment(r.value))
        elif r.store != PRIVATE_STORE:
            out.append(st.make("kv", XMPPD, {"store": r.store, "key": r.key}))
            out[-1].children.append(r.value)
    return out
