"""Error conditions and error replies (RFC 6120 §8.3)."""

from __future__ import annotations

import pytest

from xmppd import stanza as st
from xmppd.errors import (
    STANZA_CONDITIONS,
    SASLFailure,
    StanzaError,
    StreamError,
    error_reply,
    may_reply_with_error,
    parse_error,
)


def test_default_types() -> None:
    assert StanzaError("service-unavailable").type == "cancel"
    assert StanzaError("bad-request").type == "modify"
    assert StanzaError("not-authorized").type == "auth"
    assert StanzaError("resource-constraint").type == "wait"
    assert StanzaError("policy-violation", "wait").type == "wait"
    assert len(STANZA_CONDITIONS) == 22


def test_unknown_conditions_rejected() -> None:
    for cls in (StanzaError, StreamError, SASLFailure):
        with pytest.raises(ValueError):
            cls("no-such-condition")


def test_error_reply_swaps_addresses_and_keeps_payload() -> None:
    msg = st.make("message", attrs={"from": "a@x/r", "to": "b@y", "id": "m1", "type": "chat"})
    st.add(msg, "body", text_="hi")
    reply = error_reply(msg, StanzaError("service-unavailable", text="offline"))
    assert reply.attributes["to"] == "a@x/r" and reply.attributes["from"] == "b@y"
    assert reply.attributes["type"] == "error" and reply.attributes["id"] == "m1"
    assert st.child_text(reply, "body", st.NS_CLIENT) == "hi"
    assert parse_error(reply) == ("cancel", "service-unavailable")
    xml = st.serialize(reply)
    assert '<service-unavailable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/>' in xml
    assert 'xml:lang="en">offline</text>' in xml


def test_never_answer_errors_or_results() -> None:
    assert not may_reply_with_error(st.make("message", attrs={"type": "error"}))
    assert not may_reply_with_error(st.make("iq", attrs={"type": "result"}))
    assert may_reply_with_error(st.make("iq", attrs={"type": "get"}))
    assert may_reply_with_error(st.make("presence"))
