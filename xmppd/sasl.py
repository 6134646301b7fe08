"""SASL mechanisms for c2s (RFC 6120 §6): SCRAM-SHA-256 / SCRAM-SHA-1 via scramp (RFC 5802,
RFC 7677) and PLAIN (RFC 4616, offered only on TLS-protected streams).

Credentials are fetched before scramp sees the client-first message, because scramp asks
for them synchronously. Unknown users get a fake verifier so the exchange fails at the
proof like a wrong password would, which does not reveal whether the account exists.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from scramp import ScramException, ScramMechanism

from xmppd.errors import SASLFailure
from xmppd.jid import JIDError, prepare_local

if TYPE_CHECKING:
    from storage.base import Credentials
    from xmppd.accounts import Accounts


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


class Mechanism:
    name = ""

    def __init__(self, accounts: Accounts, domain: str) -> None:
        self.accounts = accounts
        self.domain = domain

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
        if not password or not await self.accounts.verify_plain(self.domain, username, password):
            raise SASLFailure("not-authorized")
        return SaslStep(success=True, username=username)


class Scram(Mechanism):
    """SCRAM-SHA-1 / SCRAM-SHA-256 server side; one instance per exchange."""

    def __init__(self, accounts: Accounts, domain: str, name: str) -> None:
        super().__init__(accounts, domain)
        self.name = name
        self._server: object | None = None
        self._fake = False
        self._username = ""

    async def start(self, initial: bytes | None) -> SaslStep:
        if not initial:
            return SaslStep(challenge=b"")
        return await self._client_first(initial)

    async def respond(self, data: bytes) -> SaslStep:
        if self._server is None:
            return await self._client_first(data)
        return self._client_final(data)

    async def _client_first(self, data: bytes) -> SaslStep:
        msg = _decode(data)
        authzid, authcid = _parse_client_first(msg)
        username = _username(authcid)
        _check_authzid(authzid, username, self.domain)
        creds = (await self.accounts.storage.accounts.get_credentials(self.domain, username)
                 ).get(self.name)
        if creds is None:
            creds = _fake_credentials(self.name, self.domain, username,
                                      self.accounts.iterations)
            self._fake = True
        info = (creds.salt, creds.stored_key, creds.server_key, creds.iterations)
        server = ScramMechanism(self.name).make_server(lambda _u: info)
        try:
            server.set_client_first(msg)
            first = server.get_server_first()
        except ScramException:
            raise SASLFailure("malformed-request") from None
        self._server = server
        self._username = username
        return SaslStep(challenge=first.encode())

    def _client_final(self, data: bytes) -> SaslStep:
        server = self._server
        assert server is not None
        try:
            server.set_client_final(_decode(data))  # type: ignore[attr-defined]
        except ScramException:
            raise SASLFailure("not-authorized") from None
        if self._fake:
            raise SASLFailure("not-authorized")
        final: str = server.get_server_final()  # type: ignore[attr-defined]
        return SaslStep(success=True, data=final.encode(), username=self._username)


def _parse_client_first(msg: str) -> tuple[str, str]:
    """gs2-header and username from a SCRAM client-first-message (RFC 5802 §7)."""
    parts = msg.split(",", 3)
    if len(parts) < 4 or (parts[0] not in ("n", "y") and not parts[0].startswith("p=")):
        raise SASLFailure("malformed-request")
    authzid = ""
    if parts[1]:
        if not parts[1].startswith("a="):
            raise SASLFailure("malformed-request")
        authzid = _unescape(parts[1][2:])
    if not parts[2].startswith("n="):
        raise SASLFailure("malformed-request")
    return authzid, _unescape(parts[2][2:])


def _unescape(saslname: str) -> str:
    if "=" in saslname.replace("=2C", "").replace("=3D", ""):
        raise SASLFailure("malformed-request")
    return saslname.replace("=2C", ",").replace("=3D", "=")


_FAKE_SECRET = os.urandom(32)


def _fake_credentials(mech: str, domain: str, username: str, iterations: int) -> Credentials:
    """Deterministic per user (so a probe sees a stable salt), useless for logging in."""
    from storage.base import Credentials

    seed = hashlib.sha256(_FAKE_SECRET + f"{mech}:{username}@{domain}".encode()).digest()
    size = 32 if mech == "SCRAM-SHA-256" else 20
    return Credentials(mech, seed[:16], iterations, os.urandom(size), os.urandom(size))


def make_mechanism(name: str, accounts: Accounts, domain: str) -> Mechanism:
    if name == "PLAIN":
        return Plain(accounts, domain)
    if name in ("SCRAM-SHA-256", "SCRAM-SHA-1"):
        return Scram(accounts, domain, name)
    raise SASLFailure("invalid-mechanism")
