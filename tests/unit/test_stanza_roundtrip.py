"""Property: whatever tree the server holds, the serializer writes namespace-well-formed XML
that reads back as the same tree (issue 15 A3: a malformed stanza ends the recipient's
stream). Checked with the server's own restricted parser and with an independent one
(xml.sax with namespaces), for c2s, s2s and WebSocket (explicit namespace) output.
"""

from __future__ import annotations

import io
import xml.sax
import xml.sax.handler
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as hs

from plugins.muc.fanout import Template
from xmppd import stanza as st
from xmppd.xmlparser import parse_fragment

NS_FORWARD = "urn:xmpp:forward:0"
NS_CARBONS = "urn:xmpp:carbons:2"
STANZA_NAMES = ("message", "presence", "iq")

# Same local names in several namespaces; prefixes the writer uses itself (ns0) as names.
NAMES = ("a", "b", "p", "body", "ns0", "lang", "x-y.z", "é")
ELEMENT_NS = (st.NS_CLIENT, st.NS_SERVER, "urn:a", "urn:b", NS_FORWARD, None, st.NS_XML)
ATTR_NS = ("urn:a", "urn:b", "urn:o", "urn:t&'\"<>", st.NS_CLIENT, st.NS_XML)

# Characters XML 1.0 allows (§2.2), biased towards those that need escaping or normalise.
_SPECIAL = hs.sampled_from(["&", "<", ">", "]]>", '"', "'", "\r", "\r\n", "\n", "\t", " ",
                            "é", "漢", "😀", "&amp;", "\x7f"])
_ANY_CHAR = hs.characters(exclude_categories=("Cs", "Cc", "Cn"))
TEXT = hs.lists(hs.one_of(_SPECIAL, _ANY_CHAR, hs.just("hi")), max_size=6).map("".join)

Tree = tuple[str | None, str, dict[Any, str], list[Any]]  # (uri, name, attrs, children)


def _attrs() -> hs.SearchStrategy[dict[Any, str]]:
    plain = hs.sampled_from(NAMES)
    prefixed = hs.tuples(hs.sampled_from(ATTR_NS), hs.sampled_from(NAMES))
    return hs.dictionaries(hs.one_of(plain, prefixed), TEXT, max_size=5)


def _element(children: hs.SearchStrategy[list[Any]]) -> hs.SearchStrategy[Tree]:
    return hs.tuples(hs.sampled_from(ELEMENT_NS), hs.sampled_from(NAMES), _attrs(), children)


def _forwarded(inner: hs.SearchStrategy[list[Any]]) -> hs.SearchStrategy[Tree]:
    """XEP-0297 <forwarded/> (optionally in a XEP-0280 <sent/>) holding a jabber:client
    stanza, which must stay jabber:client inside a jabber:server stream too."""
    message = hs.tuples(hs.just(st.NS_CLIENT), hs.sampled_from(STANZA_NAMES), _attrs(),
                        inner)
    stamp: Tree = (st.NS_DELAY, "delay", {"stamp": "2024-01-01T00:00:00Z"}, [])
    delay = hs.just(stamp)
    fwd = hs.tuples(hs.just(NS_FORWARD), hs.just("forwarded"), hs.just({}),
                    hs.lists(hs.one_of(delay, message), min_size=1, max_size=2))
    return hs.one_of(fwd, fwd.map(lambda f: (NS_CARBONS, "sent", {}, [f])))


def _children(inner: hs.SearchStrategy[list[Any]]) -> hs.SearchStrategy[list[Any]]:
    return hs.lists(hs.one_of(TEXT, _element(inner), _forwarded(inner)), max_size=3)


CHILDREN = hs.recursive(hs.lists(TEXT, max_size=1), _children, max_leaves=12)
STANZAS = hs.tuples(hs.just(st.NS_CLIENT), hs.sampled_from(STANZA_NAMES), _attrs(),
                    CHILDREN)
CONTENT_NS = hs.sampled_from([st.NS_CLIENT, st.NS_SERVER])
SETTINGS = settings(max_examples=100, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


def build(tree: Tree) -> st.Element:
    uri, name, attrs, kids = tree
    el = st.Element((uri, name), defaultUri=uri)
    el.attributes = {k: v for k, v in attrs.items()}
    for k in kids:
        el.children.append(k if isinstance(k, str) else build(k))
    return el


def canon(el: st.Element, content_ns: str | None = None) -> Tree:
    """Comparable form: attribute keys as (uri, local), adjacent text joined, empty text
    dropped; ``content_ns`` maps jabber:client along the stanza chain as streams do."""
    uri = el.uri
    if uri == st.NS_CLIENT and content_ns is not None:
        uri = content_ns
    else:
        content_ns = None
    attrs = {(k if isinstance(k, tuple) else (None, k)): v for k, v in el.attributes.items()}
    kids: list[Any] = []
    for c in el.children:
        if isinstance(c, str):
            if not c:
                continue
            if kids and isinstance(kids[-1], str):
                kids[-1] += c
            else:
                kids.append(c)
        else:
            kids.append(canon(c, content_ns))
    return (uri, el.name, attrs, kids)


class _SaxTree(xml.sax.handler.ContentHandler):
    def __init__(self) -> None:
        super().__init__()
        self.stack: list[Tree] = [(None, "#doc", {}, [])]

    def startElementNS(self, name: tuple[str | None, str], qname: str | None,  # noqa: N802
                       attrs: Any) -> None:
        node: Tree = (name[0], name[1], dict(attrs.items()), [])
        self.stack[-1][3].append(node)
        self.stack.append(node)

    def endElementNS(self, name: tuple[str | None, str], qname: str | None) -> None:  # noqa: N802
        self.stack.pop()

    def characters(self, content: str) -> None:
        kids = self.stack[-1][3]
        if kids and isinstance(kids[-1], str):
            kids[-1] += content
        else:
            kids.append(content)


def sax_parse(document: str) -> Tree:
    """The document's root as a tree, parsed by xml.sax with namespace processing (strict:
    undeclared prefixes, duplicate attributes and reserved namespaces are errors)."""
    handler = _SaxTree()
    parser = xml.sax.make_parser()
    parser.setFeature(xml.sax.handler.feature_namespaces, True)
    parser.setContentHandler(handler)
    parser.parse(io.BytesIO(document.encode()))
    return handler.stack[0][3][0]


def sax_in_stream(xml_: str, content_ns: str) -> Tree:
    root = sax_parse(f'<root xmlns="{content_ns}">{xml_}</root>')
    return root[3][0]


def check(el: st.Element, out: str, content_ns: str) -> None:
    expected = canon(el, content_ns)
    assert canon(parse_fragment(out, content_ns)) == expected, out
    assert sax_in_stream(out, content_ns) == expected, out


# The reported form (issue 15 A3) and XEP-0297 forwarding across s2s, always run.
REPORTED: Tree = (st.NS_CLIENT, "message", {"to": "b@example.org"}, [
    ("urn:p", "p", {("urn:o", "p"): "1", ("urn:o", "q"): "2", ("urn:t", "p"): "3"}, [])])
FORWARDED: Tree = (st.NS_CLIENT, "message", {}, [(NS_CARBONS, "sent", {}, [
    (NS_FORWARD, "forwarded", {}, [(st.NS_CLIENT, "message", {(st.NS_XML, "lang"): "en"}, [
        (st.NS_CLIENT, "body", {}, ["a\r\n<]]>&"])])])])])


@SETTINGS
@given(STANZAS, CONTENT_NS)
@example(REPORTED, st.NS_CLIENT)
@example(REPORTED, st.NS_SERVER)
@example(FORWARDED, st.NS_SERVER)
def test_stream_output_round_trips(tree: Tree, content_ns: str) -> None:
    el = build(tree)
    check(el, st.serialize(el, content_ns), content_ns)


@SETTINGS
@given(STANZAS)
def test_websocket_output_stands_alone(tree: Tree) -> None:
    """RFC 7395 §3.3.3: each frame is a stanza declaring its namespace; its meaning must not
    depend on what default namespace the reader has in scope."""
    el = build(tree)
    out = st.serialize(el, explicit_ns=True)
    expected = canon(el, st.NS_CLIENT)
    assert sax_parse(out) == expected, out
    assert canon(parse_fragment(out, "urn:unrelated")) == expected, out


@SETTINGS
@example(("jabber:client", "message", {}, [(st.NS_XML, "a", {}, [("jabber:client", "a", {}, [])])]),
         "jabber:server")  # an xml-namespace element's children, written standalone
@given(STANZAS, CONTENT_NS)
def test_room_fanout_template_round_trips(tree: Tree, content_ns: str) -> None:
    """plugins.muc.fanout writes children serialized once, standalone, inside each
    recipient's stanza: that embedding must mean the same as serializing the whole tree."""
    el = build(tree)
    out = st.serialize(Template(el).to("room@muc.example/nick"), content_ns)
    el.attributes["to"] = "room@muc.example/nick"
    el.children = [c for c in el.children if not isinstance(c, str)]  # Template keeps none
    check(el, out, content_ns)
