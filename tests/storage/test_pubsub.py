"""The PEP node and item store (XEP-0163) on every backend."""

from __future__ import annotations

from storage.facade import Storage
from storage.pubsub import ITEM, NODE
from storage.sql import Database
from tests.storage.test_contract import CREDS, db, done

__all__ = ["db"]

H, U = "localhost", "juliet"


def test_nodes_create_config_delete(db: Database) -> None:
    s = Storage(db).pubsub
    assert done(s.nodes(H, U)) == []
    assert done(s.create_node(H, U, "urn:xmpp:avatar:metadata", '{"a": 1}')) is True
    assert done(s.create_node(H, U, "urn:xmpp:avatar:metadata", "{}")) is False
    assert done(s.create_node(H, U, "N" * NODE, "{}")) is True  # the longest NodeID fits
    assert done(s.create_node(H, "romeo", "urn:xmpp:avatar:metadata", "{}")) is True
    nodes = done(s.nodes(H, U))
    assert [n.node for n in nodes] == ["urn:xmpp:avatar:metadata", "N" * NODE]
    assert nodes[0].config == '{"a": 1}' and nodes[0].created > 0
    assert done(s.set_config(H, U, "urn:xmpp:avatar:metadata", '{"b": 2}')) == []
    assert done(s.set_config(H, U, "nope", "{}")) is None
    assert done(s.nodes(H, U))[0].config == '{"b": 2}'
    assert done(s.delete_node(H, U, "N" * NODE)) is True
    assert done(s.delete_node(H, U, "N" * NODE)) is False
    assert [n.node for n in done(s.nodes(H, U))] == ["urn:xmpp:avatar:metadata"]
    # JIDs are case-sensitive once prepared; NodeIDs are compared exactly
    assert done(s.create_node(H, U, "URN:XMPP:AVATAR:METADATA", "{}")) is True


def test_publish_overwrite_order_and_trim(db: Database) -> None:
    s = Storage(db).pubsub
    done(s.create_node(H, U, "n", "{}"))
    assert done(s.publish(H, U, "missing", "1", "<a/>", None, 10)) is None
    for i in range(4):
        assert done(s.publish(H, U, "n", f"i{i}", f"<x>{i}</x>", f"{U}@{H}/r", 10)) == []
    assert [i.item_id for i in done(s.items(H, U, "n"))] == ["i0", "i1", "i2", "i3"]
    # republishing an ItemID overwrites it and makes it the newest (XEP-0060 §7.1.2)
    assert done(s.publish(H, U, "n", "i1", "<x>new</x>", None, 10)) == []
    got = done(s.items(H, U, "n"))
    assert [i.item_id for i in got] == ["i0", "i2", "i3", "i1"]
    assert got[-1].payload == "<x>new</x>" and got[-1].publisher is None
    assert got[0].publisher == f"{U}@{H}/r" and got[0].published > 0
    assert [i.item_id for i in done(s.items(H, U, "n", last=2))] == ["i3", "i1"]
    assert [i.item_id for i in done(s.items(H, U, "n", ids=["i3", "zz"]))] == ["i3"]
    assert done(s.item_ids(H, U, "n")) == ["i0", "i2", "i3", "i1"]
    # a publish beyond max_items evicts the oldest (first in, first out)
    assert done(s.publish(H, U, "n", "i4", "<x>4</x>", None, 3)) == ["i0", "i2"]
    assert done(s.item_ids(H, U, "n")) == ["i3", "i1", "i4"]
    # lowering max_items with the configuration trims at once
    assert done(s.set_config(H, U, "n", "{}", 1)) == ["i3", "i1"]
    assert done(s.item_ids(H, U, "n")) == ["i4"]
    long_id = "i" * ITEM
    assert done(s.publish(H, U, "n", long_id, "<x/>", None, 5)) == []
    assert done(s.retract(H, U, "n", long_id)) is True
    assert done(s.retract(H, U, "n", long_id)) is False
    assert done(s.retract(H, U, "missing", "i4")) is False


def test_last_items_purge_and_big_payloads(db: Database) -> None:
    s = Storage(db).pubsub
    for node in ("a", "b", "c"):
        done(s.create_node(H, U, node, "{}"))
    done(s.create_node(H, "romeo", "a", "{}"))
    done(s.publish(H, U, "a", "1", "<a>1</a>", None, 10))
    done(s.publish(H, U, "a", "2", "<a>2</a>", None, 10))
    done(s.publish(H, U, "b", "x", "<b/>", None, 10))
    done(s.publish(H, "romeo", "a", "9", "<a>romeo</a>", None, 10))
    last = done(s.last_items(H, U, ["a", "b", "c"]))
    assert sorted(last) == ["a", "b"]
    assert last["a"].item_id == "2" and last["b"].payload == "<b/>"
    assert done(s.last_items(H, U, ["b"])).keys() == {"b"}
    assert done(s.last_items(H, U, [])) == {}
    big = "<data xmlns='urn:xmpp:avatar:data'>" + "A" * 200_000 + "</data>"  # > 64 KiB TEXT
    done(s.publish(H, U, "c", "big", big, None, 1))
    assert done(s.items(H, U, "c"))[0].payload == big
    assert done(s.purge(H, U, "a")) == 2
    assert done(s.items(H, U, "a")) == []
    assert done(s.items(H, "romeo", "a"))[0].payload == "<a>romeo</a>"


def test_account_deletion_removes_nodes_and_items(db: Database) -> None:
    st = Storage(db)
    done(st.accounts.create(H, U, CREDS))
    done(st.pubsub.create_node(H, U, "n", "{}"))
    done(st.pubsub.publish(H, U, "n", "1", "<a/>", None, 1))
    done(st.pubsub.create_node(H, "romeo", "n", "{}"))
    done(st.pubsub.publish(H, "romeo", "n", "1", "<a/>", None, 1))
    assert done(st.accounts.delete(H, U))
    assert done(st.pubsub.nodes(H, U)) == []
    assert done(st.pubsub.items(H, U, "n")) == []
    assert len(done(st.pubsub.items(H, "romeo", "n"))) == 1
    # the same NodeID can be created again from scratch
    assert done(st.pubsub.create_node(H, U, "n", "{}")) is True
    assert done(st.pubsub.items(H, U, "n")) == []
