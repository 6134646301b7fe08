"""One stanza for many recipients: the payload is built and serialized once per broadcast.

A room message or presence goes to every occupant with the same children and only a
different 'to'. ``Template`` serializes the children once into one ``Markup`` string; each
recipient gets a fresh top element (its own attributes dict) holding that one string, so
writing it to a stream costs the attributes plus a string copy, not a walk of the whole tree
per occupant. (``xmppd.stanza.serialize`` writes a child that is neither text nor an element
verbatim; ``domish.SerializedXML`` cannot be used for this because it is a ``str`` and gets
escaped as text.) The children are serialized as children of a ``jabber:client``
stanza, which is also what a ``jabber:server`` stream needs: payload elements in the stanza
namespace are written without an ``xmlns`` and inherit the stream's default namespace.

Messages that other plugins inspect on delivery keep their element children instead: chat
state notifications (client state indication holds them, XEP-0352) and private messages
(archived by the recipient's server, XEP-0313), see ``Template(..., serialize=False)``.
"""

from __future__ import annotations

from twisted.words.xish.domish import Element

from xmppd import stanza as st


class Markup:
    """Serialized XML standing in for a list of child elements."""

    __slots__ = ("xml",)

    def __init__(self, xml: str) -> None:
        self.xml = xml

    def __str__(self) -> str:
        return self.xml


class Template:
    __slots__ = ("attrs", "children", "name")

    def __init__(self, el: Element, serialize: bool = True) -> None:
        self.name = el.name
        self.attrs = {k: v for k, v in el.attributes.items() if k != "to"}
        kids = [c for c in el.children if isinstance(c, Element)]
        if serialize and kids:
            self.children: list[Element | Markup] = [
                Markup("".join(st.serialize(c) for c in kids))]
        else:
            self.children = list(kids)

    def to(self, jid: str) -> Element:
        """The stanza addressed to one recipient."""
        el = Element((st.NS_CLIENT, self.name), defaultUri=st.NS_CLIENT)
        el.attributes = dict(self.attrs)
        el.attributes["to"] = jid
        el.children = list(self.children)
        return el

    def size(self, to: str) -> int:
        """Characters of the stanza as written to ``to`` (XEP-0045 §7.2.14 maxchars)."""
        return len(st.serialize(self.to(to)))
