"""SASL mechanisms for c2s (RFC 6120 §6): SCRAM-SHA-256 / SCRAM-SHA-1 (RFC 5802, RFC 7677)
and PLAIN (RFC 4616, offered only on TLS-protected streams).

The SCRAM server side is written here (hmac/hashlib) rather than with scramp, which xmppd
still uses to derive stored verifiers (xmppd/accounts.py) and tests use as the client:
scramp's server object cost ~80 us per login (its message classes validate and rebuild
every attribute), ~4 % of a whole TLS + SCRAM + bind login under bench/, against ~10 us for
the few checks the server role needs. Unknown users get a fake verifier so the exchange fails
at the proof like a wrong password would, which does not reveal whether the account exists.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from xmppd.accounts import fake_credentials
from xmppd.channelbinding import ChannelBindings
from xmppd.errors import SASLFailure
from xmppd.jid import JIDError, prepare_local

if TYPE_CHECKING:
    from storage.credentials import Credentials
    from xmppd.accounts import Accounts
    from xmppd.authguard import Attempt


class Gate(Protocol):
    """The brute-force guard as a mechanism sees it (xmppd/authguard.py, bound to the
    connection's address and domain)."""

    def refused(self, username: str) -> bool: ...

    def begin(self, username: str) -> Attempt | None: ...


def b64_response(data: str) -> bytes:
    """Decode a SASL initial response or response strictly (RFC 6120 §6.4.2)."""
    if data == "=":
        return b""  # RFC 6120 §6.4.2: "=" is a present but empty response
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise SASLFailure("incorrect-encoding") from None


@dataclass(slots=True)
class SaslStep:
    """Either a challenge to send, or success (with optional additional data)."""

    challenge: bytes | None = None
    success: bool = False
    data: bytes | None = None
    username: str = ""
    disabled: bool = False  # right credentials, disabled account (RFC 6120 §6.5.1)


class Mechanism:
    name = ""

    def __init__(self, accounts: Accounts, domain: str, gate: Gate | None = None) -> None:
        self.accounts = accounts
        self.domain = domain
        self.gate = gate
        self.attempt: Attempt | None = None  # the password check under way, if any

    def check_gate(self, username: str) -> None:
        """As soon as the account is known: refuse it while a ban applies."""
        if self.gate is not None and self.gate.refused(username):
            raise SASLFailure("temporary-auth-failure")

    def begin_check(self, username: str) -> None:
        """Right before a password or proof is checked: a ban, or too many attempts failed
        or still under way, refuse it (RFC 6120 §6.5.12 temporary-auth-failure); the
        caller reports the outcome through ``self.attempt``."""
        if self.gate is not None:
            self.attempt = self.gate.begin(username)
            if self.attempt is None:
                raise SASLFailure("temporary-auth-failure")

    async def start(self, initial: bytes | None) -> SaslStep:
        raise NotImplementedError

    async def respond(self, data: bytes) -> SaslStep:
        raise SASLFailure("malformed-request")


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SASLFailure("malformed-request", "not UTF-8") from None


def _username(authcid: str) -> str:
    try:
        return prepare_local(authcid)
    except JIDError:
        raise SASLFailure("not-authorized") from None


def _check_authzid(authzid: str, username: str, domain: str) -> None:
    """RFC 6120 §6.3.8: an authzid must be the account's own bare JID (no proxy auth)."""
    if authzid and authzid not in (f"{username}@{domain}", username):
        raise SASLFailure("invalid-authzid")


class Plain(Mechanism):
    name = "PLAIN"

    async def start(self, initial: bytes | None) -> SaslStep:
        if initial is None:
            return SaslStep(challenge=b"")
        return await self.respond(initial)

    async def respond(self, data: bytes) -> SaslStep:
        parts = _decode(data).split("\x00")
        if len(parts) != 3:
            raise SASLFailure("malformed-request")
        authzid, authcid, password = parts
        username = _username(authcid)
        _check_authzid(authzid, username, self.domain)
        self.begin_check(username)
        found = await self.accounts.check_plain(self.domain, username, password) \
            if password else None
        if found is None:
            raise SASLFailure("not-authorized")
        return SaslStep(success=True, username=username, disabled=found.disabled)


_SCRAM_HASHES = {"SCRAM-SHA-1": "sha1", "SCRAM-SHA-256": "sha256"}
SCRAM_MECHANISMS = frozenset((*_SCRAM_HASHES, *(m + "-PLUS" for m in _SCRAM_HASHES)))


@dataclass(frozen=True, slots=True)
class Offer:
    """What a stream advertised before authentication: the SASL mechanisms, the channel
    binding types (XEP-0440; None when not advertised) and the bindings' data."""

    mechanisms: tuple[str, ...]
    cb_types: tuple[str, ...] | None = None
    bindings: ChannelBindings | None = None

    @property
    def plus(self) -> bool:
        return any(m.endswith("-PLUS") for m in self.mechanisms)

    def ssdp(self, hash_name: str) -> str:
        """XEP-0474 §5.1: the advertised mechanisms sorted (i;octet) and joined by %x1E, then
        %x1F and the channel binding types likewise when XEP-0440 advertised them, hashed
        with the SCRAM mechanism's hash, base64."""
        text = "\x1e".join(sorted(self.mechanisms))
        if self.cb_types is not None:
            text += "\x1f" + "\x1e".join(sorted(self.cb_types))
        return base64.b64encode(hashlib.new(hash_name, text.encode()).digest()).decode()


class Scram(Mechanism):
    """SCRAM-SHA-1 / SCRAM-SHA-256 and their -PLUS variants, server side (RFC 5802 §5, §6,
    §7); one instance per exchange. -PLUS binds the exchange to the TLS channel
    (xmppd/channelbinding.py); the server-first-message carries XEP-0474's downgrade
    protection hash of what the stream advertised."""

    def __init__(self, accounts: Accounts, domain: str, name: str,
                 gate: Gate | None = None, offer: Offer | None = None) -> None:
        super().__init__(accounts, domain, gate)
        self.name = name
        self.base = name.removesuffix("-PLUS")
        self.plus = self.base != name
        self.hash = _SCRAM_HASHES[self.base]
        self.offer = offer
        self._creds: Credentials | None = None
        self._fake = False
        self._username = ""
        self._cbind = b""  # what client-final's c= must decode to
        self._nonce = ""
        self._auth_prefix = ""

    async def start(self, initial: bytes | None) -> SaslStep:
        if initial is None:  # no initial response: ask for the client-first message
            return SaslStep(challenge=b"")
        return await self._client_first(initial)  # "=" (empty) is malformed for SCRAM

    async def respond(self, data: bytes) -> SaslStep:
        if self._creds is None:
            return await self._client_first(data)
        return self._client_final(data)

    async def _client_first(self, data: bytes) -> SaslStep:
        first = _parse_client_first(_decode(data))
        self._cbind = self._channel_binding(first)
        username = _username(first.authcid)
        _check_authzid(first.authzid, username, self.domain)
        self.check_gate(username)
        creds = (await self.accounts.storage.accounts.get_credentials(self.domain, username)
                 ).get(self.base)
        if creds is None:
            creds = fake_credentials(await self.accounts.fake_secret(), self.base,
                                     self.domain, username, self.accounts.iterations)
            self._fake = True
        # §5.1 r: the server appends its own nonce; 18 random bytes as base64 are printable
        # and never contain ','.
        self._nonce = first.nonce + base64.b64encode(os.urandom(18)).decode("ascii")
        server_first = (f"r={self._nonce},s={base64.b64encode(creds.salt).decode('ascii')},"
                        f"i={creds.iterations}")
        if self.offer is not None:
            server_first += ",h=" + self.offer.ssdp(self.hash)  # XEP-0474
        self._creds, self._username = creds, username
        self._auth_prefix = f"{first.bare},{server_first},"
        return SaslStep(challenge=server_first.encode())

    def _channel_binding(self, first: ClientFirst) -> bytes:
        """RFC 5802 §6: "p=<type>" only with a -PLUS mechanism and a type offered on this
        stream; a -PLUS mechanism only with "p="; "y" (the client binds, but saw no -PLUS
        mechanism) fails when this stream did offer one: the list was tampered with.
        Returns the gs2 header and binding data that client-final's c= must carry."""
        header = first.gs2_header.encode()
        if first.cb_type is not None:
            bindings = self.offer.bindings if self.offer is not None else None
            data = bindings.data(first.cb_type) if bindings is not None else None
            if not self.plus:
                raise SASLFailure("malformed-request", "channel binding needs a -PLUS mechanism")
            if data is None:
                raise SASLFailure("malformed-request", "channel binding type not offered")
            return header + data
        if self.plus:
            raise SASLFailure("malformed-request", "-PLUS mechanisms need channel binding")
        if header.startswith(b"y") and self.offer is not None and self.offer.plus:
            raise SASLFailure("not-authorized", "channel binding was offered")
        return header

    def _client_final(self, data: bytes) -> SaslStep:
        """§5.1 client-final-message = c=<gs2 header>,r=<nonce>[,extensions],p=<proof>;
        AuthMessage and the proof check as §3 defines them."""
        creds = self._creds
        assert creds is not None
        without_proof, sep, proof_b64 = _decode(data).rpartition(",p=")
        attrs = without_proof.split(",")
        if not sep or len(attrs) < 2 or not attrs[0].startswith("c=") \
                or not attrs[1].startswith("r="):
            raise SASLFailure("malformed-request")
        try:
            cbind = base64.b64decode(attrs[0][2:], validate=True)
            proof = base64.b64decode(proof_b64, validate=True)
        except (binascii.Error, ValueError):
            raise SASLFailure("malformed-request") from None
        if not hmac.compare_digest(cbind, self._cbind) or attrs[1][2:] != self._nonce:
            raise SASLFailure("not-authorized")
        self.begin_check(self._username)
        auth_message = (self._auth_prefix + without_proof).encode()
        signature = hmac.digest(creds.stored_key, auth_message, self.hash)
        if len(proof) != len(signature):
            raise SASLFailure("not-authorized")
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        if not hmac.compare_digest(hashlib.new(self.hash, client_key).digest(),
                                   creds.stored_key) or self._fake:
            raise SASLFailure("not-authorized")
        verifier = hmac.digest(creds.server_key, auth_message, self.hash)
        return SaslStep(success=True, data=b"v=" + base64.b64encode(verifier),
                        username=self._username, disabled=creds.disabled)


@dataclass(frozen=True, slots=True)
class ClientFirst:
    gs2_header: str  # "n,," / "y,," / "p=tls-exporter,a=...,": the start of c=
    authzid: str
    authcid: str
    nonce: str
    bare: str  # client-first-message-bare, the start of AuthMessage
    cb_type: str | None = None  # the channel binding type of a "p=" flag


_CB_NAME = re.compile(r"[A-Za-z0-9.-]+")


def _parse_client_first(msg: str) -> ClientFirst:
    """RFC 5802 §7 client-first-message = gs2-header client-first-message-bare; gs2-cbind-flag
    is "n", "y" or "p=" cb-name; a leading "m=" (a mandatory extension, unsupported) fails."""
    parts = msg.split(",", 3)
    if len(parts) < 4:
        raise SASLFailure("malformed-request")
    cb_type: str | None = None
    if parts[0].startswith("p="):
        cb_type = parts[0][2:]
        if _CB_NAME.fullmatch(cb_type) is None:
            raise SASLFailure("malformed-request")
    elif parts[0] not in ("n", "y"):
        raise SASLFailure("malformed-request")
    authzid = ""
    if parts[1]:
        if not parts[1].startswith("a="):
            raise SASLFailure("malformed-request")
        authzid = _unescape(parts[1][2:])
    if not parts[2].startswith("n="):
        raise SASLFailure("malformed-request")
    nonce = parts[3].split(",", 1)[0]
    if not nonce.startswith("r=") or len(nonce) < 3 \
            or not all("\x21" <= ch <= "\x7e" for ch in nonce[2:]):
        raise SASLFailure("malformed-request")
    return ClientFirst(f"{parts[0]},{parts[1]},", authzid, _unescape(parts[2][2:]), nonce[2:],
                       f"{parts[2]},{parts[3]}", cb_type)


_SASLNAME = re.compile(r"(?:[^=,]|=2C|=3D)*")
_SASLNAME_ESCAPES = {"=2C": ",", "=3D": "="}


def _unescape(saslname: str) -> str:
    """RFC 5802 §5.1 saslname: "=" only as "=2C" (",") or "=3D" ("="), decoded in one pass
    (so "=3=2CD" is not taken for an escaped "=" once "=2C" is gone)."""
    if _SASLNAME.fullmatch(saslname) is None:
        raise SASLFailure("malformed-request")
    if "=" not in saslname:
        return saslname
    return re.sub("=2C|=3D", lambda m: _SASLNAME_ESCAPES[m[0]], saslname)


def make_mechanism(name: str, accounts: Accounts, domain: str, gate: Gate | None = None,
                   offer: Offer | None = None) -> Mechanism:
    if name == "PLAIN":
        return Plain(accounts, domain, gate)
    if name in SCRAM_MECHANISMS:
        return Scram(accounts, domain, name, gate, offer)
    raise SASLFailure("invalid-mechanism")
