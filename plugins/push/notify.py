"""What deserves a push notification, and the publish request that carries one (XEP-0357 §7).

XEP-0357 leaves "an event warranting a push notification" to the server. The rules here are
those of Prosody's mod_cloud_notify (``is_important``), the implementation Conversations,
Monal and Siskin are used with: a message with a non-empty body, or an encrypted one whose
body may be missing (OMEMO, XEP-0027, XEP-0373), or a received carbon of such a message
(XEP-0280); never a headline, an error, a sent carbon (the user's own words) or a room's
subject change. One addition: a XEP-0353 call proposal, which has no body but must ring a
phone whose client the operating system has put to sleep.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.words.xish.domish import Element

from plugins.hints import message_type
from storage.push import PushRegistration
from xmppd import stanza as st
from xmppd.forms import Form
from xmppd.xmlparser import parse_fragment

NS_PUSH = "urn:xmpp:push:0"
NS_PUBSUB = "http://jabber.org/protocol/pubsub"
SUMMARY = "urn:xmpp:push:summary"  # XEP-0357 §11.3 FORM_TYPE
PUBLISH_OPTIONS = "http://jabber.org/protocol/pubsub#publish-options"
NS_CARBONS = "urn:xmpp:carbons:2"
NS_FORWARD = "urn:xmpp:forward:0"
NS_JMI = "urn:xmpp:jingle-message:0"
ENCRYPTED = (
    ("encrypted", "eu.siacs.conversations.axolotl"),  # OMEMO as deployed (XEP-0384 0.3)
    ("encrypted", "urn:xmpp:omemo:2"),  # XEP-0384 0.8+
    ("x", "jabber:x:encrypted"),  # XEP-0027
    ("openpgp", "urn:xmpp:openpgp:0"),  # XEP-0373
)


def conversation(stanza: Element) -> Element | None:
    """The message a push would announce (the forwarded one for a received carbon), or None
    if ``stanza`` does not warrant one (see the module docstring)."""
    if stanza.name != "message":
        return None
    for c in st.children(stanza, ns=NS_CARBONS):
        if c.name != "received":
            return None  # a sent carbon: the user wrote it on another device
        fwd = st.child(c, "forwarded", NS_FORWARD)
        inner = st.child(fwd, "message", st.NS_CLIENT) if fwd is not None else None
        if inner is None:
            return None
        stanza = inner
        break
    mtype = message_type(stanza)
    if mtype in ("headline", "error"):
        return None
    if mtype == "groupchat" and st.child(stanza, "subject", st.NS_CLIENT) is not None:
        return None
    if any(st.child(stanza, n, ns) is not None for n, ns in ENCRYPTED):
        return stanza
    if st.child(stanza, "propose", NS_JMI) is not None:
        return stanza
    return stanza if st.child_text(stanza, "body", st.NS_CLIENT) else None


@dataclass(frozen=True, slots=True)
class Summary:
    """The urn:xmpp:push:summary fields (XEP-0357 §11.3); sender and body only if the
    operator allows them (§9: they go through third parties)."""

    count: int
    sender: str | None = None
    body: str | None = None


def notification(domain: str, reg: PushRegistration, summary: Summary) -> Element:
    """The XEP-0357 §7 publish: from the server's own JID (0.3: the address the app server
    lets publish), the summary form in a <notification/> item, and the publish options the
    client gave when enabling, passed back as XEP-0060 §7.1.5 publish-options."""
    iq = st.make("iq", st.NS_CLIENT, {"type": "set", "from": domain, "to": reg.service})
    pubsub = st.add(iq, "pubsub", NS_PUBSUB)
    item = st.add(st.add(pubsub, "publish", NS_PUBSUB, attrs={"node": reg.node}), "item")
    form = Form("submit")
    form.add("FORM_TYPE", "hidden", SUMMARY)
    form.add("message-count", value=str(summary.count))
    if summary.sender is not None:
        form.add("last-message-sender", value=summary.sender)
    if summary.body is not None:
        form.add("last-message-body", value=summary.body)
    st.append(st.add(item, "notification", NS_PUSH), form.to_element())
    if reg.options is not None:
        st.append(st.add(pubsub, "publish-options", NS_PUBSUB), parse_fragment(reg.options))
    return iq
