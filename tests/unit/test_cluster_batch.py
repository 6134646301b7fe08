"""Hand-overs between cluster nodes: merging a fan-out keeps every recipient's order."""

from __future__ import annotations

from cluster.node import _addressed, _merge_sends
from xmppd.xmlparser import parse_fragment


def send(xml: str, *targets: str) -> dict[str, object]:
    return {"op": "send", "xml": xml, "r": [[t, None] for t in targets], "hops": 0}


def test_consecutive_copies_of_one_stanza_travel_once() -> None:
    msgs = [send("<m1/>", "a"), send("<m1/>", "b"), send("<m1/>", "c"), send("<m2/>", "a")]
    merged = _merge_sends(msgs)
    assert [(m["xml"], [r[0] for r in m["r"]]) for m in merged] == [  # type: ignore[union-attr]
        ("<m1/>", ["a", "b", "c"]), ("<m2/>", ["a"])]
    assert msgs[0]["r"] == [["a", None]]  # the queued messages themselves are left alone


def test_copies_separated_by_another_stanza_are_not_merged() -> None:
    """b gets m2 then m1: merging the two m1 would give b m1 first."""
    msgs = [send("<m1/>", "a"), send("<m2/>", "b"), send("<m1/>", "b"),
            {"op": "close", "to": "a"}, send("<m1/>", "c")]
    assert [m.get("xml") for m in _merge_sends(msgs)] == [
        "<m1/>", "<m2/>", "<m1/>", None, "<m1/>"]


def test_each_recipient_gets_its_own_top_element() -> None:
    parsed = parse_fragment("<message from='r@muc/n' type='groupchat'><body>hi</body></message>")
    one, two = _addressed(parsed, "a@x/1"), _addressed(parsed, "b@x")
    assert (one["to"], two["to"]) == ("a@x/1", "b@x")
    assert "to" not in parsed.attributes
    one.addElement("extra")
    assert len(two.children) == len(parsed.children) == 1
