"""XEP-0357: which messages warrant a push, and the shape of the publish (plugins/push)."""

from __future__ import annotations

import pytest

from plugins.push.notify import Summary, conversation, notification
from storage.push import PushRegistration
from xmppd import stanza as st
from xmppd.xmlparser import parse_fragment

CARBON = ("<message xmlns='jabber:client' from='a@x' to='a@x/r'><{kind} xmlns='urn:xmpp:"
          "carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' "
          "from='b@y/r' to='a@x' type='chat'>{inner}</message></forwarded></{kind}></message>")


@pytest.mark.parametrize("xml,pushed", [
    ("<message type='chat'><body>hi</body></message>", True),
    ("<message><body>hi</body></message>", True),  # normal
    ("<message type='groupchat'><body>hi</body></message>", True),
    ("<message type='chat'><body/></message>", False),  # empty body
    ("<message type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>",
     False),
    ("<message type='headline'><body>news</body></message>", False),
    ("<message type='error'><body>x</body></message>", False),
    ("<message type='groupchat'><subject>topic</subject><body>x</body></message>", False),
    ("<message type='chat'><encrypted xmlns='eu.siacs.conversations.axolotl'/></message>", True),
    ("<message type='chat'><encrypted xmlns='urn:xmpp:omemo:2'/></message>", True),
    ("<message><x xmlns='jabber:x:encrypted'>...</x></message>", True),
    ("<message><openpgp xmlns='urn:xmpp:openpgp:0'>...</openpgp></message>", True),
    ("<message><propose xmlns='urn:xmpp:jingle-message:0' id='c'/></message>", True),
    ("<message><received xmlns='urn:xmpp:receipts' id='m'/></message>", False),
    (CARBON.format(kind="received", inner="<body>hi</body>"), True),
    (CARBON.format(kind="received", inner="<gone xmlns='urn:x'/>"), False),
    (CARBON.format(kind="sent", inner="<body>mine</body>"), False),
    ("<presence/>", False),
])
def test_what_warrants_a_push(xml: str, pushed: bool) -> None:
    el = parse_fragment(xml)
    msg = conversation(el)
    assert (msg is not None) == pushed
    if pushed and "carbons" in xml:
        assert msg is not None and msg.getAttribute("from") == "b@y/r"  # the forwarded one


def test_publish_carries_summary_and_options() -> None:
    opts = ("<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>"
            "http://jabber.org/protocol/pubsub#publish-options</value></field>"
            "<field var='secret'><value>s</value></field></x>")
    reg = PushRegistration("push.example", "node1", opts, 1)
    xml = st.serialize(notification("localhost", reg, Summary(3, "b@y/r", "hi")))
    assert xml == (
        "<iq type='set' from='localhost' to='push.example'>"
        "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='node1'><item>"
        "<notification xmlns='urn:xmpp:push:0'><x xmlns='jabber:x:data' type='submit'>"
        "<field var='FORM_TYPE' type='hidden'><value>urn:xmpp:push:summary</value></field>"
        "<field var='message-count'><value>3</value></field>"
        "<field var='last-message-sender'><value>b@y/r</value></field>"
        "<field var='last-message-body'><value>hi</value></field></x></notification>"
        "</item></publish><publish-options>" + opts + "</publish-options></pubsub></iq>"
    ).replace("'", '"')  # the serializer writes double quotes
    bare = st.serialize(notification("localhost", PushRegistration("p", "n", None, 1),
                                     Summary(1)))
    assert "publish-options" not in bare and "last-message" not in bare
