"""BOSH <body/> wrappers: request bodies in, response bodies out (XEP-0124 §6).

A request body is untrusted XML, so it goes through the same restricted, bounded parser as a
TCP stream (xmppd/xmlparser.py: no DTDs, comments or PIs, a byte and depth budget), fed
after a synthetic stream header so that the <body/> is parsed like one top-level element.
"""

from __future__ import annotations

from typing import Final

from twisted.words.xish.domish import Element

from xmppd import stanza as st
from xmppd.errors import StreamError
from xmppd.xmlparser import XMLStreamParser

NS_HTTPBIND: Final = "http://jabber.org/protocol/httpbind"
NS_XBOSH: Final = "urn:xmpp:xbosh"
VERSION: Final = (1, 11)  # the XEP-0124 version implemented (its 'ver' attribute, §7.2)
MAX_RID: Final = 2 ** 53 - 1  # XEP-0124 §14.1
# Bytes a request body may have beyond the stream's stanza budget: the <body/> wrapper and
# its attributes. A body is held to the per-stanza budget as a whole, like a WebSocket
# message (RFC 6120 §13.12; pre- and post-authentication).
BODY_SLACK: Final = 4096
CONTENT_TYPE: Final = "text/xml; charset=utf-8"  # §7.1, unless the client's 'content'

# No default namespace: a <body/> that does not declare httpbind is not one.
_WRAP: Final = f"<stream:stream xmlns:stream='{st.NS_STREAMS}'>".encode()


class BadBody(Exception):
    """The request is not a BOSH <body/>: answered with bad-request (§17.2)."""


class _Sink:
    def __init__(self) -> None:
        self.elements: list[Element] = []

    def stream_started(self, attrs: dict[str, str], default_ns: str | None,
                       prefix: str | None) -> None:
        pass

    def element_received(self, el: Element) -> None:
        self.elements.append(el)

    def stream_ended(self) -> None:
        raise StreamError("not-well-formed", "unexpected end of the wrapper")


def parse_body(data: bytes, budget: int) -> Element:
    """The <body/> element of one request (§6): exactly one, complete, restricted XML of
    at most ``budget`` bytes, without character data of its own."""
    data = data.strip()
    if data.startswith(b"<?xml"):
        end = data.find(b"?>")
        data = data[end + 2:].lstrip() if end >= 0 else data
    sink = _Sink()
    parser = XMLStreamParser(sink, budget)
    try:
        parser.feed(_WRAP)
        parser.feed(data)
        if len(sink.elements) != 1 or parser.depth != 1 or parser.pending:
            raise BadBody("the request must be one complete <body/> element")
    except StreamError as err:
        raise BadBody(err.text or err.condition) from None
    finally:
        parser.release()
    body = sink.elements[0]
    if body.uri != NS_HTTPBIND or body.name != "body":
        raise BadBody(f"expected <body xmlns='{NS_HTTPBIND}'/>")
    for c in body.children:
        if isinstance(c, str) and c.strip():
            # §6: the wrapper MUST NOT contain character data (whitespace is layout).
            raise BadBody("character data in <body/>")
    return body


def payloads(body: Element) -> list[Element]:
    """The elements a request carries. Stanzas without a namespace of their own inherit the
    wrapper's; XEP-0206 §2 (note) treats those as jabber:client, as older clients send."""
    out = []
    for c in body.children:
        if isinstance(c, Element):
            if c.uri == NS_HTTPBIND and c.name in st.STANZA_NAMES:
                st.to_client_namespace(c, NS_HTTPBIND)
            out.append(c)
    return out


def attribute(body: Element, name: str, ns: str | None = None) -> str | None:
    """An attribute of the wrapper (``ns`` for xml:lang or the xmpp: ones)."""
    value = body.attributes.get(name if ns is None else (ns, name))
    return value if isinstance(value, str) else None


def integer(value: str | None, maximum: int) -> int | None:
    """A non-negative decimal attribute value, or None when absent; ValueError otherwise."""
    if value is None:
        return None
    value = value.strip()
    if not value.isascii() or not value.isdigit() or len(value) > 20:
        raise ValueError(value)
    number = int(value)
    if number > maximum:
        raise ValueError(value)
    return number


def response(attrs: dict[str, str] | None = None, payload: bytes = b"") -> bytes:
    """A response <body/> (§8). Attributes named ``xmpp:*`` are XEP-0206's; a body with
    payloads declares the stream prefix (XEP-0206 §2: features and errors use it)."""
    parts = [f"<body xmlns='{NS_HTTPBIND}'"]
    xmpp = False
    for k, v in (attrs or {}).items():
        xmpp = xmpp or k.startswith("xmpp:")
        parts.append(f' {k}="{st.escape_attr(v)}"')
    if xmpp:
        parts.append(f" xmlns:xmpp='{NS_XBOSH}'")
    if not payload:
        parts.append("/>")
        return "".join(parts).encode()
    parts.append(f" xmlns:stream='{st.NS_STREAMS}'>")
    return "".join(parts).encode() + payload + b"</body>"


def terminate(condition: str | None = None, payload: bytes = b"") -> bytes:
    """A terminal binding condition (§17.2), or the acknowledgement of a terminate (§13)."""
    attrs = {"type": "terminate"}
    if condition is not None:
        attrs["condition"] = condition
    return response(attrs, payload)


def see_other_uri(uri: str) -> bytes:
    """§17.2: the client should POST to ``uri`` instead (https when TLS is required)."""
    return response({"type": "terminate", "condition": "see-other-uri"},
                    f"<uri>{st.escape_text(uri)}</uri>".encode())


def recoverable() -> bytes:
    """§17.3: the request is answered elsewhere; the client repeats what it lacks."""
    return response({"type": "error"})
