"""Server-originated IQs (IqRegistry.expect/response): answers, errors and timeouts."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.python.failure import Failure

from xmppd import stanza as st
from xmppd.errors import StanzaError
from xmppd.iq import IqRegistry, IqTimeout
from xmppd.xmlparser import parse_fragment


def outcome(reg: IqRegistry, clock: Clock, answer: str | None) -> Any:
    iq = st.iq("set", "", to="push.example", from_="localhost")
    got: list[Any] = []
    reg.expect(iq, 5.0, clock).addBoth(got.append)
    if answer is None:
        clock.advance(5.0)
    else:
        reply = parse_fragment(answer.replace("ID", iq.getAttribute("id")))
        assert reg.response(reply)
    assert len(got) == 1
    return got[0].value if isinstance(got[0], Failure) else got[0]


def test_error_answers_keep_the_type_the_peer_gave() -> None:
    reg, clock = IqRegistry(), Clock()
    err = outcome(reg, clock, "<iq xmlns='jabber:client' type='error' id='ID' "
                  "from='push.example'><error type='wait'><internal-server-error "
                  "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")
    # internal-server-error is 'cancel' by default (RFC 6120 §8.3.3.6); the peer said wait
    assert isinstance(err, StanzaError)
    assert (err.condition, err.type) == ("internal-server-error", "wait")
    err = outcome(reg, clock, "<iq xmlns='jabber:client' type='error' id='ID' "
                  "from='push.example'><error type='bogus'><item-not-found "
                  "xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>")
    assert (err.condition, err.type) == ("item-not-found", "cancel")  # not a type: default
    err = outcome(reg, clock, "<iq xmlns='jabber:client' type='error' id='ID' "
                  "from='push.example'/>")
    assert (err.condition, err.type) == ("undefined-condition", "cancel")


def test_result_and_timeout() -> None:
    reg, clock = IqRegistry(), Clock()
    res = outcome(reg, clock, "<iq xmlns='jabber:client' type='result' id='ID' "
                  "from='push.example'/>")
    assert res.getAttribute("type") == "result"
    assert isinstance(outcome(reg, clock, None), IqTimeout)
