"""PEP nodes and items in XEP-0227 files ("PEP"), in the form Prosody writes: node
configurations as ``<pubsub xmlns='...pubsub#owner'><configure node/>`` with the
``pubsub#node_config`` form, items as ``<pubsub xmlns='...pubsub'><items node/><item
id/>`` with the payload.

Items keep their order: imported ones are appended in file order, each with the node's next
publication counter (storage/pubsub.py), as if published in that order. An item already
stored with the same id and payload is left alone. Node affiliations and subscriptions
(which Prosody may write) are not kept: xmppd's PEP derives them from the owner's presence
subscriptions (XEP-0163 §3), so they are reported as not imported.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Final

from sqlalchemy import Connection, insert, select, update
from twisted.words.xish.domish import Element

from plugins.pep.config import defaults
from storage.pubsub import ITEM, NODE, pubsub_items, pubsub_nodes
from xmppd import stanza as st
from xmppd.pie.forms import node_config, node_form
from xmppd.pie.model import DATA, PUBSUB, PUBSUB_OWNER, XMPPD, PieError, Report, Where
from xmppd.pie.xml import attr, parse_stamp, required, stamp
from xmppd.xmlparser import parse_fragment

PAGE: Final = 500


@dataclass
class Nodes:
    """One user's nodes as the import goes: NodeID -> (row id, publication counter)."""

    host: str
    name: str
    ids: dict[str, list[int]] = field(default_factory=dict)
    current: str = ""  # the node whose <items/> are being read


def _node(conn: Connection, n: Nodes, node: str, where: Where, config: str | None = None,
          created: int | None = None, report: Report | None = None) -> list[int]:
    if len(node) > NODE or not node:
        raise PieError(where, f"PEP node name {node[:40]!r}: 1 to {NODE} characters")
    key = (pubsub_nodes.c.host == n.host, pubsub_nodes.c.username == n.name,
           pubsub_nodes.c.node == node)
    row = conn.execute(select(pubsub_nodes.c.id, pubsub_nodes.c.seq,
                              pubsub_nodes.c.config).where(*key)).first()
    if row is None:
        conn.execute(insert(pubsub_nodes).values(
            host=n.host, username=n.name, node=node,
            config=config if config is not None else defaults(node).to_json(),
            created=created if created is not None else int(time.time()), seq=0))
        row = conn.execute(select(pubsub_nodes.c.id, pubsub_nodes.c.seq,
                                  pubsub_nodes.c.config).where(*key)).one()
        changed = True
    else:
        changed = config is not None and row.config != config
        if changed:
            conn.execute(update(pubsub_nodes).where(*key).values(config=config))
    if report is not None:
        report.count("PEP nodes", changed)
    n.ids[node] = [int(row.id), int(row.seq)]
    return n.ids[node]


def owner_unit(conn: Connection, n: Nodes, el: Element, where: Where, report: Report) -> None:
    for child in st.element_children(el):
        node = attr(child, "node") or ""
        if child.name == "configure" and child.uri == PUBSUB_OWNER:
            form = st.child(child, "x", DATA)
            config = (node_config(form, node, where, report) if form is not None
                      else defaults(node).to_json())
            created = child.attributes.get((XMPPD, "created"))
            _node(conn, n, node, where, config,
                  parse_stamp(created, where, "created") // 1_000_000
                  if isinstance(created, str) else None, report)
        else:
            report.note(where, f"PEP <{child.name}/> of node {node!r} of {n.name}@{n.host} "
                        "not imported (xmppd's PEP follows presence subscriptions)")


def open_items(conn: Connection, n: Nodes, node: str, where: Where) -> None:
    if node not in n.ids:
        _node(conn, n, node, where)
    n.current = node


def item_unit(conn: Connection, n: Nodes, el: Element, where: Where, report: Report) -> None:
    if el.name != "item" or el.uri != PUBSUB:
        raise PieError(where, f"<items/> holds <item xmlns='{PUBSUB}'/> elements, not "
                       f"<{el.name}/>")
    item_id = required(el, "id", where)
    if len(item_id) > ITEM:
        raise PieError(where, f"PEP item id longer than {ITEM} characters")
    payloads = st.element_children(el)
    if len(payloads) != 1:
        raise PieError(where, f"PEP item {item_id} of node {n.current}: exactly one payload "
                       f"element is needed, not {len(payloads)}")
    payload = st.serialize(payloads[0])
    publisher = attr(el, "publisher")
    published_attr = el.attributes.get((XMPPD, "published"))
    published = (parse_stamp(published_attr, where, f"PEP item {item_id}")
                 if isinstance(published_attr, str) else None)
    node_id, seq = n.ids[n.current]
    key = (pubsub_items.c.node_id == node_id, pubsub_items.c.item_id == item_id)
    row = conn.execute(select(pubsub_items.c.payload, pubsub_items.c.publisher,
                              pubsub_items.c.published).where(*key)).first()
    if row is not None and (row.payload, row.publisher) == (payload, publisher) and (
            published is None or published == row.published):
        report.count("PEP items", False)
        return
    seq += 1
    n.ids[n.current][1] = seq
    conn.execute(update(pubsub_nodes).where(pubsub_nodes.c.id == node_id).values(seq=seq))
    values = {"seq": seq, "payload": payload, "publisher": publisher,
              "published": published if published is not None
              else int(time.time() * 1_000_000)}
    if row is None:
        conn.execute(insert(pubsub_items).values(node_id=node_id, item_id=item_id,
                                                 host=n.host, username=n.name, **values))
    else:
        conn.execute(update(pubsub_items).where(*key).values(**values))
    report.count("PEP items", True)


# -- export ----------------------------------------------------------------------------------
def export_nodes(conn: Connection, host: str, name: str) -> list[tuple[str, int, Element]]:
    """(NodeID, row id, <configure/>) of each node, in creation order."""
    out = []
    for r in conn.execute(select(pubsub_nodes).where(
            pubsub_nodes.c.host == host, pubsub_nodes.c.username == name
    ).order_by(pubsub_nodes.c.id)):
        conf = st.make("configure", PUBSUB_OWNER, {"node": r.node})
        conf.attributes[(XMPPD, "created")] = stamp(int(r.created) * 1_000_000)
        st.append(conf, node_form(r.config))
        out.append((r.node, int(r.id), conf))
    return out


def export_items(conn: Connection, node_id: int) -> list[Element]:
    out = []
    last = -1
    while True:
        rows = conn.execute(select(pubsub_items).where(
            pubsub_items.c.node_id == node_id, pubsub_items.c.seq > last
        ).order_by(pubsub_items.c.seq).limit(PAGE)).all()
        for r in rows:
            item = st.make("item", PUBSUB, {"id": r.item_id})
            if r.publisher:
                item.attributes["publisher"] = r.publisher
            item.attributes[(XMPPD, "published")] = stamp(int(r.published))
            st.append(item, parse_fragment(r.payload))
            out.append(item)
        if len(rows) < PAGE:
            return out
        last = rows[-1].seq
