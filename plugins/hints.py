"""XEP-0334 Message Processing Hints, and which messages carry a conversation.

Shared by offline storage, the archive and carbons so that all three classify a message
the same way.
"""

from __future__ import annotations

from twisted.words.xish.domish import Element

from xmppd import stanza as st
from xmppd.plugin import Plugin

NS_HINTS = "urn:xmpp:hints"
NS_CHATSTATES = "http://jabber.org/protocol/chatstates"


class Hints(Plugin):
    name = "hints"
    specs = ("XEP-0334 0.3.0", "XEP-0085 2.1 (server: no offline storage of chat states)")


def hint(stanza: Element, name: str) -> bool:
    """True if the message carries <name xmlns='urn:xmpp:hints'/> (no-store, store ...)."""
    return st.child(stanza, name, NS_HINTS) is not None


def has_body(stanza: Element) -> bool:
    return st.child(stanza, "body", st.NS_CLIENT) is not None


def chat_state_only(stanza: Element) -> bool:
    """XEP-0085 §5.5: a notification with nothing but a chat state (and hints/thread)."""
    kids = st.element_children(stanza)
    has_state = False
    for c in kids:
        if c.uri == NS_CHATSTATES:
            has_state = True
        elif not (c.uri == NS_HINTS or (c.uri == st.NS_CLIENT and c.name == "thread")):
            return False
    return has_state


def message_type(stanza: Element) -> str:
    t = stanza.getAttribute("type", "normal")
    return t if t in ("chat", "normal", "groupchat", "headline", "error") else "normal"
