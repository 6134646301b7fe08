"""XEP-0424 Message Retraction (0.4.2) as an archiving service does it: tombstones.

"To do this, the archiving service MAY replace the retracted message contents with a
'tombstone'" (§4): the entry keeps its archive id, time and envelope; its content (the
<body/> "and any related elements which might leak information about the original
message") is replaced by <retracted id='id of the retraction' stamp='when'/>. The retraction
message itself is archived like any message ("The archiving service therefore MUST store
the retraction message", §5). Used by user archives (this plugin) and room archives
(plugins/muc/moderation.py, which adds XEP-0425's <moderated/>).
"""

from __future__ import annotations

from collections.abc import Iterable

from twisted.words.xish.domish import Element

from xmppd import stanza as st
from xmppd.timeutil import format_datetime

NS = "urn:xmpp:message-retract:1"
# §4: "A service which supports tombstones MUST advertise" this feature.
NS_TOMBSTONE = "urn:xmpp:message-retract:1#tombstone"
NS_SID = "urn:xmpp:sid:0"
NS_OCCUPANT_ID = "urn:xmpp:occupant-id:0"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"
# What a tombstone keeps of the original: identifiers, which leak nothing of its content,
# and let clients match it (XEP-0359 ids, XEP-0421 occupant id: XEP-0425 §4 "for the
# original (retracted) message author in the <message/> element"), and a room archive's
# record of the real JID (shown only to those who may see it, plugins/muc/mam.py).
_KEEP = frozenset(((NS_SID, "stanza-id"), (NS_SID, "origin-id"),
                   (NS_OCCUPANT_ID, "occupant-id"), (NS_MUC_USER, "x")))


def retract_of(message: Element) -> Element | None:
    """The message's <retract xmlns='urn:xmpp:message-retract:1'/>, if it has one."""
    return st.child(message, "retract", NS)


def target_id(message: Element) -> str | None:
    """The id a retraction applies to (§3), or None if the message is no retraction."""
    r = retract_of(message)
    return None if r is None else (r.getAttribute("id") or None)


def is_tombstone(message: Element) -> bool:
    return st.child(message, "retracted", NS) is not None


def tombstone(original: Element, retraction_id: str, stamp: int,
              inside: Iterable[Element] = ()) -> Element:
    """The tombstone of ``original`` (§4): its attributes and identifiers, and a
    <retracted/> whose 'id' is the retraction message's 'id' ("so that clients can match
    the tombstone to the retraction") and whose 'stamp' is when it was retracted."""
    out = st.make("message")
    out.attributes = dict(original.attributes)
    for c in original.children:
        if isinstance(c, Element) and (c.uri, c.name) in _KEEP:
            st.append(out, c)
    retracted = st.add(out, "retracted", NS, attrs={"id": retraction_id,
                                                    "stamp": format_datetime(stamp)})
    for el in inside:
        st.append(retracted, el)
    return out
