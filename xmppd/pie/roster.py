"""Rosters and pending subscription requests in XEP-0227 files ("Rosters").

The roster is the ``<query xmlns='jabber:iq:roster'/>`` a client would get (RFC 6121
§2.1.2): items with 'subscription' (none/to/from/both), 'ask' (RFC 6121 §2.1.2.2, a pending
outbound request), 'approved' (§2.1.2.1, a pre-approval), 'name' and groups. A pending
inbound request (§3.1.3: kept until the user answers) is the ``<presence
type='subscribe'/>`` the contact sent, as a child of ``<user/>``, which is how Prosody and
ejabberd write them (Prosody 0.12 without a namespace declaration, so the presence is in
``urn:xmpp:pie:0``; it is read as the jabber:client stanza it stands for).

Import merges: items of the file are added or replace the user's item for that contact;
others are kept. The roster version (§2.6) moves on once per user if anything changed, and
not at all if nothing did (a second import of the same file changes nothing).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Final

from sqlalchemy import Connection, insert, select, update
from twisted.words.xish.domish import Element

from storage.roster import CONTACT, roster_items, roster_pending, roster_versions
from xmppd import stanza as st
from xmppd.pie.accounts import UserCtx
from xmppd.pie.model import CLIENT, ROSTER, PieError, Report, Where
from xmppd.pie.xml import attr, jid
from xmppd.xmlparser import parse_fragment

SUBSCRIPTIONS: Final = ("none", "to", "from", "both")
MAX_GROUP: Final = 1024  # characters of a group name (RFC 6121 §2.1.2.4 leaves it open)


def roster_unit(conn: Connection, ctx: UserCtx, el: Element, where: Where,
                report: Report) -> None:
    ver = attr(el, "ver") or attr(el, "version")
    if ver is not None and ver.isdigit():
        ctx.roster_ver = max(ctx.roster_ver or 0, int(ver))
    own = f"{ctx.name}@{ctx.host}"
    for item in st.element_children(el):
        if item.name != "item" or item.uri != ROSTER:
            report.note(where, f"roster of {own}: <{item.name} xmlns='{item.uri}'/> ignored")
            continue
        contact = str(jid(attr(item, "jid"), where, f"roster item of {own}", limit=CONTACT))
        sub = attr(item, "subscription") or "none"
        if sub not in SUBSCRIPTIONS:
            raise PieError(where, f"roster item {contact} of {own}: subscription {sub!r} "
                           f"is not one of {', '.join(SUBSCRIPTIONS)}")
        ask = attr(item, "ask")
        if ask not in (None, "subscribe"):
            raise PieError(where, f"roster item {contact} of {own}: ask={ask!r}")
        groups: list[str] = []
        for g in st.element_children(item):
            if g.name == "group" and g.uri == ROSTER:
                name = st.text(g)
                if len(name) > MAX_GROUP:
                    raise PieError(where, f"roster item {contact}: group name too long")
                if name and name not in groups:
                    groups.append(name)
            else:
                report.note(where, f"roster item {contact} of {own}: <{g.name}/> ignored")
        values = {"name": attr(item, "name") or None, "subscription": sub,
                  "ask": ask == "subscribe",
                  "approved": attr(item, "approved") in ("true", "1"),
                  "groups": json.dumps(sorted(groups))}
        ctx.roster_changed |= _put(conn, ctx, contact, values, report)


def _put(conn: Connection, ctx: UserCtx, contact: str, values: Mapping[str, object],
         report: Report) -> bool:
    where = (roster_items.c.host == ctx.host, roster_items.c.username == ctx.name,
             roster_items.c.contact == contact)
    row = conn.execute(select(roster_items).where(*where)).first()
    if row is None:
        conn.execute(insert(roster_items).values(host=ctx.host, username=ctx.name,
                                                 contact=contact, **values))
        changed = True
    else:
        current = {"name": row.name, "subscription": row.subscription, "ask": bool(row.ask),
                   "approved": bool(row.approved),
                   "groups": json.dumps(sorted(json.loads(row.groups)))}
        changed = current != values
        if changed:
            conn.execute(update(roster_items).where(*where).values(**values))
    report.count("roster items", changed)
    return changed


def bump_version(conn: Connection, ctx: UserCtx) -> None:
    """§2.6: a changed roster gets a new version, at least the one the file had."""
    if not ctx.roster_changed:
        return
    where = (roster_versions.c.host == ctx.host, roster_versions.c.username == ctx.name)
    row = conn.execute(select(roster_versions.c.version).where(*where)).first()
    version = max(ctx.roster_ver or 0, (int(row.version) if row else 0) + 1)
    if row is None:
        conn.execute(insert(roster_versions).values(host=ctx.host, username=ctx.name,
                                                    version=version))
    else:
        conn.execute(update(roster_versions).where(*where).values(version=version))


def pending_unit(conn: Connection, ctx: UserCtx, el: Element, where: Where,
                 report: Report) -> None:
    """A pending inbound request: stored as the stanza, re-delivered at the next login."""
    if el.getAttribute("type") != "subscribe":
        raise PieError(where, f"<presence/> under user {ctx.name} must be a pending request "
                       f"(type='subscribe'), not type={el.getAttribute('type')!r}")
    contact = jid(el.getAttribute("from"), where, "pending subscription request",
                  limit=CONTACT).bare
    _to_client(el)
    el.attributes["from"] = contact.bare_str
    el.attributes["to"] = f"{ctx.name}@{ctx.host}"
    xml = st.serialize(el)
    key = (roster_pending.c.host == ctx.host, roster_pending.c.username == ctx.name,
           roster_pending.c.contact == contact.bare_str)
    row = conn.execute(select(roster_pending.c.stanza).where(*key)).first()
    if row is None:
        conn.execute(insert(roster_pending).values(
            host=ctx.host, username=ctx.name, contact=contact.bare_str, stanza=xml,
            created=int(time.time())))
    elif row.stanza != xml:
        conn.execute(update(roster_pending).where(*key).values(stanza=xml))
    report.count("pending requests", row is None or row.stanza != xml)


def _to_client(el: Element) -> None:
    """Put a stanza written in the file's namespace into jabber:client, with the chain of
    its children in that namespace (<status/>, <priority/>)."""
    if el.uri != CLIENT:
        ns = el.uri
        el.uri = el.defaultUri = CLIENT
        for c in st.element_children(el):
            if c.uri == ns:
                _to_client(c)


def export_user(conn: Connection, host: str, name: str) -> list[Element]:
    ver = conn.execute(select(roster_versions.c.version).where(
        roster_versions.c.host == host, roster_versions.c.username == name)).first()
    rows = conn.execute(select(roster_items).where(
        roster_items.c.host == host, roster_items.c.username == name
    ).order_by(roster_items.c.contact)).all()
    out: list[Element] = []
    if rows or ver:
        q = st.make("query", ROSTER, {"ver": str(ver.version)} if ver else None)
        for r in rows:
            item = st.add(q, "item", ROSTER, attrs={"jid": r.contact,
                                                   "subscription": r.subscription})
            if r.name:
                item.attributes["name"] = r.name
            if r.ask:
                item.attributes["ask"] = "subscribe"
            if r.approved:
                item.attributes["approved"] = "true"
            for g in sorted(json.loads(r.groups)):
                st.add(item, "group", ROSTER, g)
        out.append(q)
    for p in conn.execute(select(roster_pending.c.stanza).where(
            roster_pending.c.host == host, roster_pending.c.username == name
    ).order_by(roster_pending.c.created, roster_pending.c.contact)):
        el = parse_fragment(p.stanza)
        el.uri = el.defaultUri = CLIENT
        out.append(el)
    return out
