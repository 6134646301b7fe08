"""``xmppd import``: a XEP-0227 file (and what it includes) into the database, in one
transaction.

The reader hands over containers and complete elements in file order; this handler writes
each as it comes, so memory stays bounded, and the caller commits only after the last
element: a file broken anywhere imports nothing ("a broken file gets a clear error naming
where"). What is already in the database is matched by natural keys (account, contact,
node and item ids, archive stanza-ids, room and affiliated JID, the offline stanza itself)
and written only if it differs, so importing the same file again changes nothing.

Hosts must be served by this server (XEP-0227 "Hosts": an importer that does not adjust
its hosts SHOULD tell the operator about a mismatch; here it is an error naming the host
and what to configure). Rooms may live on a subdomain of a served host (the MUC service).
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

from sqlalchemy import Connection
from twisted.words.xish.domish import Element

from xmppd.jid import JIDError, prepare_domain
from xmppd.pie import accounts, messages, pep, rooms, roster, userdata
from xmppd.pie.model import (
    BLOCKING,
    CLIENT,
    PIE,
    PRIVATE,
    PUBSUB_OWNER,
    ROSTER,
    SCRAM,
    VCARD,
    XMPPD,
    PieError,
    Report,
    Where,
)
from xmppd.pie.reader import Attrs, PieReader
from xmppd.pie.xml import jid


class Importer:
    def __init__(self, conn: Connection, hosts: Collection[str], iterations: int,
                 report: Report, only_hosts: Collection[str] = (),
                 only_users: Collection[str] = ()) -> None:
        self.conn = conn
        self.hosts = set(hosts)
        self.iterations = iterations
        self.report = report
        self.only_hosts = set(only_hosts)
        self.only_users = set(only_users)
        self.host = ""
        self.skip = 0  # >0: inside a host or user the filters leave out
        self.user: accounts.UserCtx | None = None
        self.queue: messages.Queue | None = None
        self.archive: messages.Archive | None = None
        self.nodes: pep.Nodes | None = None
        self.room: rooms.RoomCtx | None = None

    def run(self, path: Path) -> None:
        PieReader(self).read(path)

    # -- containers ------------------------------------------------------------------------
    def open(self, kind: str, attrs: Attrs, where: Where) -> None:
        if self.skip:
            self.skip += 1
            return
        if kind == "host":
            self._open_host(attrs, where)
        elif kind == "user":
            self._open_user(attrs, where)
        elif kind == "room":
            if self.only_users:  # --user: accounts only, nothing host-wide
                self.skip = 1
                return
            self.room = rooms.open_room(self.host, attrs, where)
        elif kind == "offline":
            u = self._user(where, "<offline-messages/>")
            self.queue = messages.Queue(u.host, u.name)
        elif kind == "archive":
            if self.room is not None:
                rooms.save_room(self.conn, self.room, self.report)
                self.archive = messages.Archive(self.room.host, self.room.name, True)
            else:
                u = self._user(where, "<archive/>")
                self.archive = messages.Archive(u.host, u.name, False)
        elif kind == "pubsub":
            self._nodes(where)
        elif kind == "items":
            node = attrs.get("node") or ""
            pep.open_items(self.conn, self._nodes(where), node, where)

    def _open_host(self, attrs: Attrs, where: Where) -> None:
        raw = attrs.get("jid") or ""
        try:
            host = prepare_domain(raw)
        except JIDError as exc:
            raise PieError(where, f"<host jid={raw!r}/>: not a domain ({exc})") from None
        if self.only_hosts and host not in self.only_hosts:
            self.skip = 1
            return
        served = host in self.hosts or any(host.endswith("." + h) for h in self.hosts)
        if not served:
            raise PieError(where, f"host {host!r} is not served by this server (hosts: "
                           f"{', '.join(sorted(self.hosts))}); add it to [hosts] in the "
                           "configuration first")
        self.host = host

    def _open_user(self, attrs: Attrs, where: Where) -> None:
        if self.host not in self.hosts:
            raise PieError(where, f"users need a host this server serves; {self.host!r} is "
                           "only accepted for rooms (a MUC service)")
        name = attrs.get("name") or ""
        if not name:
            raise PieError(where, "<user/> without its 'name' attribute")
        user = jid(f"{name}@{self.host}", where, f"user {name!r}", bare=True)
        if self.only_users and user.bare_str not in self.only_users:
            self.skip = 1
            return
        self.user = accounts.open_user(self.conn, self.host, user.local, attrs, where,
                                       self.report)

    def close(self, kind: str, where: Where) -> None:
        if self.skip:
            self.skip -= 1
            return
        if kind == "user" and self.user is not None:
            roster.bump_version(self.conn, self.user)
            try:
                warning = accounts.close_user(self.conn, self.user, self.iterations,
                                              self.report)
            except ValueError as exc:
                raise PieError(self.user.where, f"user {self.user.name}: {exc}") from None
            if warning is not None:
                self.report.warn(warning, f"{self.user.name}@{self.user.host}")
            self.user, self.nodes = None, None
        elif kind == "room" and self.room is not None:
            rooms.save_room(self.conn, self.room, self.report)
            self.room = None
        elif kind == "archive" and self.archive is not None:
            messages.flush(self.conn, self.archive, self.report)
            self.archive = None
        elif kind == "offline":
            self.queue = None
        elif kind == "host":
            self.host = ""

    # -- elements --------------------------------------------------------------------------
    def unit(self, kind: str, el: Element, where: Where) -> None:
        if self.skip or (kind == "host" and self.only_users):
            return
        if kind == "user":
            self._user_unit(el, where)
        elif kind == "offline" and self.queue is not None:
            messages.offline_unit(self.conn, self.queue, el, where, self.report)
        elif kind == "archive" and self.archive is not None:
            messages.archive_unit(self.conn, self.archive, el, where, self.report)
        elif kind == "items" and self.nodes is not None:
            pep.item_unit(self.conn, self.nodes, el, where, self.report)
        elif kind == "room" and self.room is not None:
            if not rooms.room_unit(self.room, el, where, self.report):
                userdata.keep_unknown(self.conn, self.host, "", el, where, self.report)
        elif kind == "host" and el.name == "kv" and el.uri == XMPPD:
            userdata.kv_unit(self.conn, self.host, "", el, where, self.report)
        elif kind in ("host", "pubsub"):
            owner = self.user.name if self.user is not None and kind == "pubsub" else ""
            userdata.keep_unknown(self.conn, self.host, owner, el, where, self.report)
        else:
            self.report.note(where, f"<{el.name} xmlns='{el.uri or ''}'> outside any <host/> "
                             "ignored (XEP-0227 puts everything in hosts)")

    def _user_unit(self, el: Element, where: Where) -> None:
        u = self._user(where, f"<{el.name}/>")
        c, h, n, r = self.conn, u.host, u.name, self.report
        key: tuple[Any, str] = (el.uri, el.name)
        if key == (SCRAM, "scram-credentials"):
            accounts.scram_unit(u, el, where, r)
        elif key == (ROSTER, "query"):
            roster.roster_unit(c, u, el, where, r)
        elif key in ((CLIENT, "presence"), (PIE, "presence")):
            roster.pending_unit(c, u, el, where, r)
        elif key == (VCARD, "vCard"):
            userdata.vcard_unit(c, h, n, el, where, r)
        elif key == (PRIVATE, "query"):
            userdata.private_unit(c, h, n, el, where, r)
        elif key == (PUBSUB_OWNER, "pubsub"):
            pep.owner_unit(c, self._nodes(where), el, where, r)
        elif key == (BLOCKING, "blocklist"):
            userdata.blocklist_unit(c, h, n, el, where, r)
        elif key == (XMPPD, "kv"):
            userdata.kv_unit(c, h, n, el, where, r)
        else:
            userdata.keep_unknown(c, h, n, el, where, r)

    def _user(self, where: Where, what: str) -> accounts.UserCtx:
        if self.user is None:
            raise PieError(where, f"{what} outside of a <user/>")
        return self.user

    def _nodes(self, where: Where) -> pep.Nodes:
        u = self._user(where, "<pubsub/>")
        if self.nodes is None:
            self.nodes = pep.Nodes(u.host, u.name)
        return self.nodes
