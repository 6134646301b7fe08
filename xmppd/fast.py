"""FAST (XEP-0484): tokens a client gets after a password login and authenticates with in
one round trip afterwards, with the Hashed Token mechanisms of draft-schmaus-kitten-sasl-ht.

HT-<hash>-<cb>: the client sends ``authcid NUL HMAC(token, "Initiator" || cb-data)`` and the
server answers ``HMAC(token, "Responder" || cb-data)`` (mutual authentication), cb-data
being the channel binding named by the suffix (EXPR tls-exporter, ENDP
tls-server-end-point, NONE nothing). A token is bound to the mechanism it was requested for
(XEP-0484 §3.3) and to the client (the SASL2 <user-agent/> id); tokens live in storage
(storage/fast.py), are rotated before they expire and revoked with the password.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from storage.fast import FastToken
from xmppd.channelbinding import TLS_EXPORTER, TLS_SERVER_END_POINT, ChannelBindings
from xmppd.errors import SASLFailure
from xmppd.sasl import Gate, Mechanism, Offer, SaslStep, _decode, _username

if TYPE_CHECKING:
    from xmppd.accounts import Accounts

NS_FAST: Final = "urn:xmpp:fast:0"
_HT: Final = {
    "HT-SHA-256-EXPR": ("sha256", TLS_EXPORTER),
    "HT-SHA-256-ENDP": ("sha256", TLS_SERVER_END_POINT),
    "HT-SHA-256-NONE": ("sha256", None),
}


def fast_mechanisms(bindings: ChannelBindings | None, tls: bool) -> tuple[str, ...]:
    """The HT mechanisms this stream can offer: only over TLS (draft §1.2), the binding ones
    when the binding is available here (XEP-0484 §3.1: at least one with, one without)."""
    if not tls:
        return ()
    return tuple(name for name, (_h, cb) in _HT.items()
                 if cb is None or (bindings is not None and cb in bindings.types))


def client_key(user_agent_id: str) -> str:
    """How a client is named in storage: the SHA-256 of its SASL2 <user-agent/> id (the id
    itself is the client's and of unbounded length)."""
    return hashlib.sha256(user_agent_id.encode()).hexdigest()


def new_token(mechanism: str, now: float, ttl: float) -> FastToken:
    """A fresh token: 256 random bits (the draft asks for at least 128)."""
    return FastToken(secrets.token_urlsafe(32), mechanism, int(now + ttl), 0)


@dataclass(frozen=True, slots=True)
class FastRequest:
    """The <fast/> element of a SASL2 authentication with a token (XEP-0484 §3.3)."""

    client: str
    count: int | None = None
    invalidate: bool = False


class HashedToken(Mechanism):
    """One HT exchange: a single client message, success data back (client-first)."""

    def __init__(self, accounts: Accounts, domain: str, name: str, gate: Gate | None,
                 offer: Offer | None, fast: FastRequest, clock: Any) -> None:
        super().__init__(accounts, domain, gate)
        self.name = name
        self.hash, self.cb_type = _HT[name]
        self.offer = offer
        self.fast = fast
        self.clock = clock
        self.token: FastToken | None = None  # the one that authenticated
        self.older = False  # the client has tokens expiring before that one (to retire)
        self.username = ""

    async def start(self, initial: bytes | None) -> SaslStep:
        if initial is None:
            raise SASLFailure("malformed-request", "HT needs an initial response")
        authcid, sep, proof = initial.partition(b"\0")
        if not sep or not proof:
            raise SASLFailure("malformed-request")
        username = _username(_decode(authcid))
        self.check_gate(username)
        cb = b""
        if self.cb_type is not None:
            bindings = self.offer.bindings if self.offer is not None else None
            data = bindings.data(self.cb_type) if bindings is not None else None
            if data is None:
                raise SASLFailure("malformed-request", "channel binding not available")
            cb = data
        tokens = await self.accounts.storage.fast.tokens(
            self.domain, username, self.fast.client, int(self.clock.seconds()))
        self.begin_check(username)
        for token in tokens:
            if token.mechanism != self.name:
                continue  # XEP-0484 §3.3: a token works only with its mechanism
            key = token.token.encode()
            if not hmac.compare_digest(hmac.digest(key, b"Initiator" + cb, self.hash), proof):
                continue
            if self.fast.count is not None and self.fast.count <= token.count:
                # XEP-0484 §3.3: a count not above the last one processed is a replay
                raise SASLFailure("not-authorized", "replayed token")
            self.token, self.username = token, username
            self.older = any(t.expiry < token.expiry for t in tokens)
            return SaslStep(success=True, username=username,
                            data=hmac.digest(key, b"Responder" + cb, self.hash))
        raise SASLFailure("not-authorized")

    async def respond(self, data: bytes) -> SaslStep:
        raise SASLFailure("malformed-request")
