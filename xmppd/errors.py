"""Stanza, stream and SASL errors (RFC 6120 §4.9, §6.5, §8.3) and the error-reply builder.

Code raises these as exceptions; one boundary (router / IQ dispatch / stream) turns them into
XML, so a handler never has to know how an error is addressed or serialised.
"""

from __future__ import annotations

from typing import Final

from twisted.words.xish.domish import Element

from xmppd import stanza as st

# RFC 6120 §8.3.3: each defined condition with the error type its examples use.
STANZA_CONDITIONS: Final[dict[str, str]] = {
    "bad-request": "modify",
    "conflict": "cancel",
    "feature-not-implemented": "cancel",
    "forbidden": "auth",
    "gone": "cancel",
    "internal-server-error": "cancel",
    "item-not-found": "cancel",
    "jid-malformed": "modify",
    "not-acceptable": "modify",
    "not-allowed": "cancel",
    "not-authorized": "auth",
    "policy-violation": "modify",
    "recipient-unavailable": "wait",
    "redirect": "modify",
    "registration-required": "auth",
    "remote-server-not-found": "cancel",
    "remote-server-timeout": "wait",
    "resource-constraint": "wait",
    "service-unavailable": "cancel",
    "subscription-required": "auth",
    "undefined-condition": "cancel",
    "unexpected-request": "wait",
}

# RFC 6120 §4.9.3.
STREAM_CONDITIONS: Final = frozenset((
    "bad-format", "bad-namespace-prefix", "conflict", "connection-timeout", "host-gone",
    "host-unknown", "improper-addressing", "internal-server-error", "invalid-from",
    "invalid-namespace", "invalid-xml", "not-authorized", "not-well-formed", "policy-violation",
    "remote-connection-failed", "reset", "resource-constraint", "restricted-xml",
    "see-other-host", "system-shutdown", "undefined-condition", "unsupported-encoding",
    "unsupported-feature", "unsupported-stanza-type", "unsupported-version",
))

# RFC 6120 §6.5.
SASL_CONDITIONS: Final = frozenset((
    "aborted", "account-disabled", "credentials-expired", "encryption-required",
    "incorrect-encoding", "invalid-authzid", "invalid-mechanism", "malformed-request",
    "mechanism-too-weak", "not-authorized", "temporary-auth-failure",
))


class StanzaError(Exception):
    """A stanza-level error (RFC 6120 §8.3); converted to an error reply at the boundary."""

    def __init__(
        self,
        condition: str,
        type_: str | None = None,
        text: str | None = None,
        app_condition: Element | None = None,
        by: str | None = None,
        echo: bool = True,
    ) -> None:
        if condition not in STANZA_CONDITIONS:
            raise ValueError(f"unknown stanza error condition {condition!r}")
        super().__init__(condition if text is None else f"{condition}: {text}")
        self.condition = condition
        self.type = type_ or STANZA_CONDITIONS[condition]
        self.text = text
        self.app_condition = app_condition
        self.by = by
        self.echo = echo  # False: the error reply leaves out the request's payload (secrets)

    def to_element(self) -> Element:
        """The ``<error/>`` child (RFC 6120 §8.3.2)."""
        err = st.make("error", st.NS_CLIENT, {"type": self.type})
        if self.by:
            err.attributes["by"] = self.by
        st.add(err, self.condition, st.NS_STANZAS)
        if self.text:
            t = st.add(err, "text", st.NS_STANZAS, self.text)
            t.attributes[(st.NS_XML, "lang")] = "en"
        if self.app_condition is not None:
            st.append(err, self.app_condition)
        return err


class StreamError(Exception):
    """A stream-level error (RFC 6120 §4.9): the stream is closed after sending it."""

    def __init__(self, condition: str, text: str | None = None) -> None:
        if condition not in STREAM_CONDITIONS:
            raise ValueError(f"unknown stream error condition {condition!r}")
        super().__init__(condition if text is None else f"{condition}: {text}")
        self.condition = condition
        self.text = text

    def to_element(self) -> Element:
        err = st.make("error", st.NS_STREAMS)
        st.add(err, self.condition, st.NS_STREAM_ERRORS)
        if self.text:
            st.add(err, "text", st.NS_STREAM_ERRORS, self.text)
        return err


class SASLFailure(Exception):
    """A SASL failure (RFC 6120 §6.5); the stream stays open for another attempt."""

    def __init__(self, condition: str, text: str | None = None) -> None:
        if condition not in SASL_CONDITIONS:
            raise ValueError(f"unknown SASL condition {condition!r}")
        super().__init__(condition)
        self.condition = condition
        self.text = text

    def to_element(self) -> Element:
        el = st.make("failure", st.NS_SASL)
        st.add(el, self.condition, st.NS_SASL)
        if self.text:
            st.add(el, "text", st.NS_SASL, self.text)
        return el


def may_reply_with_error(stanza: Element) -> bool:
    """RFC 6120 §8.3.1: never answer an error with an error, nor an IQ result."""
    t = stanza.getAttribute("type")
    return not (t == "error" or (stanza.name == "iq" and t == "result"))


def error_reply(stanza: Element, err: StanzaError) -> Element:
    """Build the error stanza for ``stanza`` (RFC 6120 §8.3.1: swap addresses, same id)."""
    reply = st.make(stanza.name, st.NS_CLIENT, {"type": "error"})
    attrs = stanza.attributes
    if "id" in attrs:
        reply.attributes["id"] = attrs["id"]
    if "from" in attrs:
        reply.attributes["to"] = attrs["from"]
    if "to" in attrs:
        reply.attributes["from"] = attrs["to"]
    if err.echo:
        for c in stanza.children:
            if isinstance(c, Element) and not (c.name == "error" and c.uri == st.NS_CLIENT):
                st.append(reply, st.copy(c))
    st.append(reply, err.to_element())
    return reply


def parse_error(stanza: Element) -> tuple[str, str] | None:
    """(type, condition) of an error stanza, or None."""
    err = st.child(stanza, "error", st.NS_CLIENT)
    if err is None:
        return None
    for c in st.children(err, ns=st.NS_STANZAS):
        if c.name != "text":
            return err.getAttribute("type", ""), c.name
    return err.getAttribute("type", ""), "undefined-condition"
