"""Serializer and element helpers."""

from __future__ import annotations

import pytest

from xmppd import stanza as st
from xmppd.xmlstream import XMLStreamParser


class Collect:
    def __init__(self) -> None:
        self.elements: list[st.Element] = []

    def stream_started(self, attrs: dict[str, str], default_ns: str | None,
                       prefix: str | None) -> None:
        pass

    def element_received(self, el: st.Element) -> None:
        self.elements.append(el)

    def stream_ended(self) -> None:
        pass


def parse(xml: str, ns: str = st.NS_CLIENT) -> st.Element:
    c = Collect()
    p = XMLStreamParser(c)
    p.feed(f"<stream:stream xmlns='{ns}' xmlns:stream='{st.NS_STREAMS}'>{xml}".encode())
    assert len(c.elements) == 1
    return c.elements[0]


def test_roundtrip_with_namespaces_and_escaping() -> None:
    xml = ("<message to='a@b' type='chat'><body>1 &lt; 2 &amp; \"q\"</body>"
           "<x xmlns='urn:x' a='&quot;&lt;'><y/></x></message>")
    el = parse(xml)
    out = st.serialize(el)
    assert out == ('<message to="a@b" type="chat"><body>1 &lt; 2 &amp; "q"</body>'
                   '<x xmlns="urn:x" a="&quot;&lt;"><y/></x></message>')
    assert parse(out).toXml() == el.toXml()


def test_server_stream_namespace_mapping() -> None:
    el = parse("<message><body>hi</body><forwarded xmlns='urn:xmpp:forward:0'>"
               "<message xmlns='jabber:client'><body>inner</body></message></forwarded>"
               "</message>")
    out = st.serialize(el, st.NS_SERVER)
    # The stanza itself is in the stream's namespace; a forwarded stanza keeps jabber:client.
    assert out.startswith("<message><body>hi</body>")
    assert '<message xmlns="jabber:client"><body>inner</body></message>' in out


def test_explicit_namespace_for_websocket_framing() -> None:
    el = parse("<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert st.serialize(el, explicit_ns=True).startswith('<iq xmlns="jabber:client"')


def test_xml_lang_and_foreign_attributes() -> None:
    el = parse("<message xml:lang='de' xmlns:f='urn:f' f:a='1'/>")
    assert st.lang(el) == "de"
    out = st.serialize(el)
    assert 'xml:lang="de"' in out and ':a="1"' in out
    assert st.lang(parse(out)) == "de"


def test_one_prefix_per_attribute_namespace() -> None:
    """Issue 15 A3: two attributes in one foreign namespace declared its prefix twice, a
    duplicate attribute every namespace-aware parser rejects (killing the peer's stream)."""
    el = parse("<message><p xmlns='urn:p' xmlns:o='urn:o' xmlns:t='urn:t'"
               " o:p='1' o:q='2' t:p='3' p='4'/></message>")
    out = st.serialize(el)
    assert out.count('xmlns:ns0="urn:o"') == 1 and out.count('xmlns:ns1="urn:t"') == 1
    back = st.child(parse(out), "p", "urn:p")
    assert back is not None and back.attributes == {
        ("urn:o", "p"): "1", ("urn:o", "q"): "2", ("urn:t", "p"): "3", "p": "4"}


def test_child_rebinding_a_parent_prefix_keeps_each_meaning() -> None:
    el = parse("<message xmlns:a='urn:a' a:x='1'><c xmlns='urn:c' xmlns:b='urn:b' b:x='2'>"
               "<d a:y='3'/></c></message>")
    back = parse(st.serialize(el))
    assert back.attributes[("urn:a", "x")] == "1"
    c = st.child(back, "c", "urn:c")
    assert c is not None and c.attributes == {("urn:b", "x"): "2"}
    d = st.child(c, "d", "urn:c")
    assert d is not None and d.attributes == {("urn:a", "y"): "3"}


@pytest.mark.parametrize("content_ns", [st.NS_CLIENT, st.NS_SERVER])
def test_elements_in_the_xml_namespace_use_the_xml_prefix(content_ns: str) -> None:
    """Namespaces in XML §3: the XML namespace must not be declared as the default."""
    el = parse("<message><xml:a xml:lang='de'><b/><xml:c/></xml:a></message>")
    out = st.serialize(el, content_ns)
    assert "w3.org/XML" not in out
    a = st.child(parse(out, content_ns), "a", st.NS_XML)
    assert a is not None and st.lang(a) == "de"
    # <b/> inherits the stanza's default namespace, not the XML namespace.
    assert st.child(a, "b", st.NS_CLIENT) is not None
    assert st.child(a, "c", st.NS_XML) is not None


def test_namespace_declarations_in_attributes_are_not_written() -> None:
    el = st.make("message")
    el.attributes[(st.NS_XMLNS, "ns0")] = "urn:other"
    el.attributes[("urn:a", "x")] = "1"
    back = parse(st.serialize(el))
    assert back.attributes == {("urn:a", "x"): "1"}


def test_carriage_returns_in_text_survive() -> None:
    el = st.make("message")
    st.add(el, "body", text_="a\r\nb\rc")
    assert st.child_text(parse(st.serialize(el)), "body", st.NS_CLIENT) == "a\r\nb\rc"


def test_no_namespace_child_of_namespaced_parent() -> None:
    el = parse("<message><x xmlns='urn:x'><y xmlns=''><z/></y></x></message>")
    out = st.serialize(el, st.NS_SERVER)
    x = st.child(parse(out, st.NS_SERVER), "x", "urn:x")
    assert x is not None
    y = x.children[0]
    assert isinstance(y, st.Element) and y.uri is None
    assert isinstance(y.children[0], st.Element) and y.children[0].uri is None


def test_helpers() -> None:
    el = parse("<iq type='get' id='7' from='a@b/c' to='b'><q xmlns='urn:q'>t</q></iq>")
    q = st.child(el, "q", "urn:q")
    assert q is not None and st.text(q) == "t"
    assert st.child(el, "q", "urn:other") is None
    r = st.result_for(el)
    assert r.attributes == {"type": "result", "id": "7", "to": "a@b/c", "from": "b"}
    c = st.copy(el)
    st.child(c, "q", "urn:q").children.append("more")  # type: ignore[union-attr]
    assert st.text(q) == "t"


@pytest.mark.parametrize("raw,attr,text", [
    ("plain jid@host/res", "plain jid@host/res", "plain jid@host/res"),
    ("a&b", "a&amp;b", "a&amp;b"),
    ("<x>", "&lt;x&gt;", "&lt;x&gt;"),
    ('say "hi"', "say &quot;hi&quot;", 'say "hi"'),
    ("t\tn\nr\r", "t&#9;n&#10;r&#13;", "t\tn\nr&#13;"),
    ("", "", ""),
])
def test_escaping_only_changes_what_xml_requires(raw: str, attr: str, text: str) -> None:
    assert st.escape_attr(raw) == attr
    assert st.escape_text(raw) == text
