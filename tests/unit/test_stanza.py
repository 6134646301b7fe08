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
    ("t\tn\nr\r", "t&#9;n&#10;r&#13;", "t\tn\nr\r"),
    ("", "", ""),
])
def test_escaping_only_changes_what_xml_requires(raw: str, attr: str, text: str) -> None:
    assert st.escape_attr(raw) == attr
    assert st.escape_text(raw) == text
