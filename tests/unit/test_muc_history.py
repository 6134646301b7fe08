"""Discussion history limits (XEP-0045 §7.2.14) and the one-serialization fan-out template."""

from __future__ import annotations

import pytest

from plugins.muc.fanout import Markup, Template
from plugins.muc.history import History, HistoryRequest, parse_request
from xmppd import stanza as st
from xmppd.errors import StanzaError
from xmppd.timeutil import parse_datetime
from xmppd.xmlparser import parse_fragment

ROOM = "coven@chat.example"
S = 1_000_000


def msg(n: int) -> st.Element:
    return parse_fragment(f"<message xmlns='jabber:client' from='{ROOM}/w{n}' type='groupchat'"
                          f" id='m{n}'><body>line {n} &amp; more</body></message>")


def filled(count: int, limit: int = 20) -> History:
    h = History(limit)
    for n in range(count):
        h.add(msg(n), ROOM, (1000 + n * 10) * S)  # one message every 10 seconds
    return h


def bodies(els: list[st.Element]) -> list[str]:
    """The bodies as a client reads them (the payload is pre-serialized)."""
    return [st.child_text(parse_fragment(st.serialize(e)), "body", st.NS_CLIENT) or ""
            for e in els]


def test_history_keeps_the_last_messages_with_delay_from_the_room() -> None:
    h = filled(25, limit=20)
    out = h.select(HistoryRequest(), 2000 * S, "hecate@x/broom")
    assert bodies(out) == [f"line {n} & more" for n in range(5, 25)]
    first = out[0]
    assert first.getAttribute("to") == "hecate@x/broom" and first.getAttribute("id") == "m5"
    delay = parse_fragment(st.serialize(first)).children[-1]
    assert (delay.name, delay.uri) == ("delay", st.NS_DELAY)
    assert delay.getAttribute("from") == ROOM
    assert delay.getAttribute("stamp") == "1970-01-01T00:17:30Z"  # 1050 s


@pytest.mark.parametrize("req,expected", [
    (HistoryRequest(maxstanzas=3), [7, 8, 9]),
    (HistoryRequest(maxstanzas=0), []),
    (HistoryRequest(maxchars=0), []),
    (HistoryRequest(seconds=25), [8, 9]),  # now = 1100 s; messages at 1080 and 1090
    (HistoryRequest(since=1065 * S), [7, 8, 9]),
    (HistoryRequest(since=1065 * S, maxstanzas=2), [8, 9]),  # the smallest of both
    (HistoryRequest(seconds=1000, since=1085 * S), [9]),
])
def test_limits_combine_to_the_smallest_amount(req: HistoryRequest, expected: list[int]) -> None:
    out = filled(10).select(req, 1100 * S, "u@x/r")
    assert bodies(out) == [f"line {n} & more" for n in expected]


def test_maxchars_counts_complete_stanzas_as_sent() -> None:
    h = filled(10)
    to = "someone@example.org/a-resource"
    sizes = [len(st.serialize(e)) for e in h.select(HistoryRequest(), 0, to)]
    assert len(set(sizes)) == 1  # all the same size here
    one = sizes[0]
    for budget, count in ((one * 3, 3), (one * 3 - 1, 2), (one - 1, 0)):
        out = h.select(HistoryRequest(maxchars=budget), 0, to)
        assert len(out) == count
        assert sum(len(st.serialize(e)) for e in out) <= budget


def test_resize_and_disabled_history() -> None:
    h = filled(10)
    h.resize(3)
    assert len(h.select(HistoryRequest(), 0, "u@x/r")) == 3
    h.resize(0)
    h.add(msg(99), ROOM, 0)
    assert h.select(HistoryRequest(), 0, "u@x/r") == []


def test_parse_request() -> None:
    x = parse_fragment("<x xmlns='http://jabber.org/protocol/muc'><history maxchars='65000' "
                       "maxstanzas='20' seconds='180' since='1970-01-01T00:00:00Z'/></x>")
    assert parse_request(x) == HistoryRequest(65000, 20, 180, 0)
    assert parse_request(None) == HistoryRequest()
    assert parse_request(parse_fragment("<x xmlns='http://jabber.org/protocol/muc'/>")) == (
        HistoryRequest())
    assert parse_datetime("2002-10-13T23:58:37Z") > 0


@pytest.mark.parametrize("attrs", ["maxchars='-1'", "maxstanzas='many'", "since='yesterday'",
                                   "seconds='1.5'"])
def test_parse_request_rejects_bad_values(attrs: str) -> None:
    x = parse_fragment(f"<x xmlns='http://jabber.org/protocol/muc'><history {attrs}/></x>")
    with pytest.raises(StanzaError, match="bad-request"):
        parse_request(x)


def test_template_serializes_once_and_matches_a_plain_tree() -> None:
    el = parse_fragment("<message xmlns='jabber:client' from='r@s/n' type='groupchat' id='1'>"
                        "<body>a &lt;b&gt; &amp; c</body><x xmlns='urn:other'><y z='&quot;'/>"
                        "</x></message>")
    tpl = Template(el)
    assert len(tpl.children) == 1 and isinstance(tpl.children[0], Markup)
    for to in ("a@b/c", "d@e"):
        plain = st.shallow_copy(el)
        plain.attributes["to"] = to
        assert st.serialize(tpl.to(to)) == st.serialize(plain)
        assert st.serialize(tpl.to(to), "jabber:server") == st.serialize(plain, "jabber:server")
        assert tpl.size(to) == len(st.serialize(plain))
    kept = Template(el, serialize=False)  # for hooks that read the payload
    assert st.child(kept.to("a@b"), "body", st.NS_CLIENT) is not None
    first, second = tpl.to("a@b"), tpl.to("c@d")
    st.add(first, "extra", "urn:x")
    assert "extra" not in st.serialize(second)  # each recipient has its own children list
