"""Personal eventing (XEP-0163) storage: each account's pubsub nodes and their items.

A node row carries the owner (host, username), the NodeID, the node configuration as JSON
(plugins/pep/config.py owns its meaning) and a publication counter. Items are keyed by the
node's surrogate id and the ItemID, so the key stays within MySQL's 3072 bytes whatever the
lengths of owner, NodeID and ItemID; ``seq`` orders them by (re)publication, which is what
"most recent" and first-in-first-out eviction (XEP-0060 §6.5.7, §7.1.2) refer to.

Every publish bumps the node's counter with an UPDATE of the node row, so concurrent
publishers to one node are serialised by that row lock and each item gets its own ``seq``;
rows are never written by an UPDATE-or-INSERT that could take InnoDB gap locks (MySQL).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    Integer,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from storage.schema import HOST, MYSQL, USER, USER_TABLES, BigText, metadata
from storage.sql import Database
from storage.upsert import upsert

NODE = 255  # longest NodeID in characters
ITEM = 255  # longest ItemID in characters
ROWID = BigInteger().with_variant(Integer, "sqlite")

pubsub_nodes = Table(
    "pubsub_nodes",
    metadata,
    Column("id", ROWID, primary_key=True, autoincrement=True),
    Column("host", String(HOST), nullable=False),
    Column("username", String(USER), nullable=False),
    Column("node", String(NODE), nullable=False),
    Column("config", Text, nullable=False),  # JSON, see plugins/pep/config.py
    Column("created", BigInteger, nullable=False),  # unix seconds
    Column("seq", BigInteger, nullable=False),  # publications so far
    Index("ux_pubsub_nodes", "host", "username", "node", unique=True),
    **MYSQL,
)

pubsub_items = Table(
    "pubsub_items",
    metadata,
    Column("node_id", ROWID, primary_key=True),
    Column("item_id", String(ITEM), primary_key=True),
    Column("host", String(HOST), nullable=False),  # the node's owner, for account deletion
    Column("username", String(USER), nullable=False),
    Column("seq", BigInteger, nullable=False),  # the node's counter at (re)publication
    Column("published", BigInteger, nullable=False),  # unix microseconds
    Column("publisher", Text, nullable=True),  # full JID of the publishing entity
    Column("payload", BigText, nullable=False),  # the one payload element, serialized
    Index("ix_pubsub_items_seq", "node_id", "seq"),
    Index("ix_pubsub_items_owner", "host", "username"),
    **MYSQL,
)

USER_TABLES.extend([pubsub_items, pubsub_nodes])


@dataclass(frozen=True, slots=True)
class StoredNode:
    node: str
    config: str  # JSON
    created: int


@dataclass(frozen=True, slots=True)
class StoredItem:
    item_id: str
    payload: str
    publisher: str | None
    published: int  # unix microseconds


def _item(row: object) -> StoredItem:
    return StoredItem(row.item_id, row.payload, row.publisher,  # type: ignore[attr-defined]
                      int(row.published))  # type: ignore[attr-defined]


def _node_id(conn: Connection, host: str, username: str, node: str) -> int | None:
    row = conn.execute(select(pubsub_nodes.c.id).where(
        pubsub_nodes.c.host == host, pubsub_nodes.c.username == username,
        pubsub_nodes.c.node == node)).first()
    return None if row is None else int(row.id)


class PubsubStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- nodes -------------------------------------------------------------------------------
    def nodes(self, host: str, username: str) -> Deferred[list[StoredNode]]:
        """Every node of one account, in creation order."""

        def q(conn: Connection) -> list[StoredNode]:
            rows = conn.execute(select(
                pubsub_nodes.c.node, pubsub_nodes.c.config, pubsub_nodes.c.created).where(
                pubsub_nodes.c.host == host, pubsub_nodes.c.username == username
            ).order_by(pubsub_nodes.c.id))
            return [StoredNode(r.node, r.config, int(r.created)) for r in rows]

        return self.db.read(q)

    def create_node(self, host: str, username: str, node: str, config: str) -> Deferred[bool]:
        """Create a node; False if it exists already (also when a concurrent create won)."""

        def q(conn: Connection) -> bool:
            if _node_id(conn, host, username, node) is not None:
                return False
            conn.execute(insert(pubsub_nodes).values(
                host=host, username=username, node=node, config=config,
                created=int(time.time()), seq=0))
            return True

        def raced(failure: Failure) -> bool:
            failure.trap(IntegrityError)
            return False

        return self.db.write(q).addErrback(raced)

    def set_config(self, host: str, username: str, node: str, config: str,
                   max_items: int | None = None) -> Deferred[list[str] | None]:
        """Store a new configuration and keep at most ``max_items`` items (the most recent);
        returns the ItemIDs removed that way, or None if the node does not exist."""

        def q(conn: Connection) -> list[str] | None:
            n = conn.execute(update(pubsub_nodes).where(
                pubsub_nodes.c.host == host, pubsub_nodes.c.username == username,
                pubsub_nodes.c.node == node).values(config=config)).rowcount
            if not n:
                return None
            node_id = _node_id(conn, host, username, node)
            assert node_id is not None
            return [] if max_items is None else _trim(conn, node_id, max_items)

        return self.db.write(q)

    def delete_node(self, host: str, username: str, node: str) -> Deferred[bool]:
        """Remove the node and its items (XEP-0060 §8.4: items first); False if absent."""

        def q(conn: Connection) -> bool:
            node_id = _node_id(conn, host, username, node)
            if node_id is None:
                return False
            conn.execute(delete(pubsub_items).where(pubsub_items.c.node_id == node_id))
            conn.execute(delete(pubsub_nodes).where(pubsub_nodes.c.id == node_id))
            return True

        return self.db.write(q)

    # -- items -------------------------------------------------------------------------------
    def publish(self, host: str, username: str, node: str, item_id: str, payload: str,
                publisher: str | None, max_items: int) -> Deferred[list[str] | None]:
        """Insert or overwrite an item as the node's newest, then keep the ``max_items`` most
        recent; returns the ItemIDs evicted (oldest first), or None if there is no node."""

        def q(conn: Connection) -> list[str] | None:
            where = (pubsub_nodes.c.host == host, pubsub_nodes.c.username == username,
                     pubsub_nodes.c.node == node)
            if not conn.execute(update(pubsub_nodes).where(*where).values(
                    seq=pubsub_nodes.c.seq + 1)).rowcount:
                return None
            row = conn.execute(select(pubsub_nodes.c.id, pubsub_nodes.c.seq).where(
                *where)).one()
            node_id, seq = int(row.id), int(row.seq)
            values = {"seq": seq, "published": int(time.time() * 1_000_000),
                      "publisher": publisher, "payload": payload}
            upsert(conn, pubsub_items, {"node_id": node_id, "item_id": item_id},
                   {"host": host, "username": username, **values})
            return _trim(conn, node_id, max_items)

        return self.db.write(q)

    def retract(self, host: str, username: str, node: str, item_id: str) -> Deferred[bool]:
        def q(conn: Connection) -> bool:
            node_id = _node_id(conn, host, username, node)
            if node_id is None:
                return False
            return bool(conn.execute(delete(pubsub_items).where(
                pubsub_items.c.node_id == node_id,
                pubsub_items.c.item_id == item_id)).rowcount)

        return self.db.write(q)

    def purge(self, host: str, username: str, node: str) -> Deferred[int]:
        def q(conn: Connection) -> int:
            node_id = _node_id(conn, host, username, node)
            if node_id is None:
                return 0
            return int(conn.execute(delete(pubsub_items).where(
                pubsub_items.c.node_id == node_id)).rowcount)

        return self.db.write(q)

    def items(self, host: str, username: str, node: str, last: int | None = None,
              ids: list[str] | None = None) -> Deferred[list[StoredItem]]:
        """Items oldest first: all, the ``last`` most recent, or those with the given ids."""

        def q(conn: Connection) -> list[StoredItem]:
            node_id = _node_id(conn, host, username, node)
            if node_id is None:
                return []
            stmt = select(pubsub_items).where(pubsub_items.c.node_id == node_id)
            if ids is not None:
                stmt = stmt.where(pubsub_items.c.item_id.in_(ids))
            if last is not None:
                rows = conn.execute(stmt.order_by(pubsub_items.c.seq.desc()).limit(last))
                return [_item(r) for r in reversed(rows.all())]
            return [_item(r) for r in conn.execute(stmt.order_by(pubsub_items.c.seq))]

        return self.db.read(q)

    def item_ids(self, host: str, username: str, node: str) -> Deferred[list[str]]:
        """ItemIDs oldest first (XEP-0060 §5.5 node items discovery) without the payloads."""

        def q(conn: Connection) -> list[str]:
            node_id = _node_id(conn, host, username, node)
            if node_id is None:
                return []
            rows = conn.execute(select(pubsub_items.c.item_id).where(
                pubsub_items.c.node_id == node_id).order_by(pubsub_items.c.seq))
            return [r.item_id for r in rows]

        return self.db.read(q)

    def last_items(self, host: str, username: str, nodes: list[str]
                   ) -> Deferred[dict[str, StoredItem]]:
        """The most recent item of each of the given nodes that has one (XEP-0163 §4.3.4)."""

        def q(conn: Connection) -> dict[str, StoredItem]:
            if not nodes:
                return {}
            newest = select(pubsub_items.c.node_id, func.max(pubsub_items.c.seq).label("top")
                            ).where(pubsub_items.c.host == host,
                                    pubsub_items.c.username == username
                                    ).group_by(pubsub_items.c.node_id).subquery()
            rows = conn.execute(select(pubsub_nodes.c.node, pubsub_items).join(
                newest, newest.c.node_id == pubsub_items.c.node_id).join(
                pubsub_nodes, pubsub_nodes.c.id == pubsub_items.c.node_id).where(
                pubsub_items.c.seq == newest.c.top, pubsub_nodes.c.node.in_(nodes)))
            return {r.node: _item(r) for r in rows}

        return self.db.read(q)


def _trim(conn: Connection, node_id: int, keep: int) -> list[str]:
    """Delete all but the ``keep`` most recent items of a node; the deleted ItemIDs."""
    rows = conn.execute(select(pubsub_items.c.item_id).where(
        pubsub_items.c.node_id == node_id).order_by(pubsub_items.c.seq.desc()).offset(keep))
    gone = [r.item_id for r in rows]
    if gone:
        conn.execute(delete(pubsub_items).where(pubsub_items.c.node_id == node_id,
                                                pubsub_items.c.item_id.in_(gone)))
    return list(reversed(gone))
