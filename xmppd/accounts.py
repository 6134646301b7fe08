"""Account creation, password changes, PLAIN verification and deletion.

Only SCRAM verifiers are kept (salt, iteration count, StoredKey, ServerKey per hash; RFC 5802
§3, RFC 7677). PLAIN logins are checked by recomputing StoredKey from the offered password.
PBKDF2 runs in a worker thread so that the reactor never stalls on it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from typing import Any, Final

from scramp import ScramMechanism
from twisted.internet import threads
from twisted.internet.defer import Deferred

from storage.credentials import Credentials
from storage.facade import Storage
from xmppd.jid import JID, JIDError
from xmppd.logs import Logger

_log = Logger(namespace="xmppd.accounts")

SCRAM_HASHES: Final = ("SCRAM-SHA-256", "SCRAM-SHA-1")
_HASH: Final = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-1": "sha1"}
MAX_PASSWORD_BYTES: Final = 1024


class AccountError(ValueError):
    pass


def derive(password: str, iterations: int) -> list[Credentials]:
    """Blocking: SCRAM verifiers for every supported hash."""
    if not password:
        raise AccountError("empty password")
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise AccountError("password too long")
    out = []
    for mech in SCRAM_HASHES:
        try:
            salt, stored, server, i = ScramMechanism(mech).make_auth_info(
                password, iteration_count=iterations)
        except Exception as exc:  # scramp raises on SASLprep-prohibited characters
            raise AccountError(f"password not acceptable: {exc}") from None
        out.append(Credentials(mech, salt, i, stored, server))
    return out


def check_password(password: str, creds: Credentials) -> bool:
    """Blocking: recompute StoredKey (RFC 5802 §3) and compare in constant time."""
    try:
        _salt, stored, _server, _i = ScramMechanism(creds.mechanism).make_auth_info(
            password, iteration_count=creds.iterations, salt=creds.salt)
    except Exception:
        return False
    return hmac.compare_digest(stored, creds.stored_key)


FAKE_SALT_BYTES: Final = 32  # the length of the salts scramp makes for real accounts


def fake_credentials(secret: bytes, mech: str, domain: str, username: str, iterations: int
                     ) -> Credentials:
    """A verifier for an account that does not exist, for login attempts to fail exactly as
    with a wrong password: deterministic salt per user (a probe sees a stable one) as long
    as a real one (a 16-byte salt among 32-byte ones told unknown accounts apart in one
    request), keys nobody can match."""
    seed = hashlib.sha256(secret + f"{mech}:{username}@{domain}".encode()).digest()
    size = 32 if _HASH.get(mech) == "sha256" else 20
    return Credentials(mech, seed[:FAKE_SALT_BYTES], iterations, os.urandom(size),
                       os.urandom(size))


def split_user(jid: str) -> tuple[str, str]:
    """'user@host' -> prepared (host, username)."""
    try:
        j = JID.parse(jid)
    except JIDError as exc:
        raise AccountError(f"invalid JID {jid!r}: {exc}") from None
    if not j.local or j.resource:
        raise AccountError(f"{jid!r} is not a bare user JID (user@domain)")
    return j.domain, j.local


class Accounts:
    def __init__(self, storage: Storage, iterations: int = 4096) -> None:
        self.storage = storage
        self.iterations = iterations
        self._fake_secret: bytes | None = None

    async def fake_secret(self) -> bytes:
        """The key of the fake SCRAM salts given for unknown accounts (xmppd/sasl.py). Kept
        in the database, so it survives restarts and every node of a cluster uses the same:
        a salt that changed on restart or differed between nodes, while a real account's
        never does, would tell unknown accounts from existing ones."""
        if self._fake_secret is None:
            value = await self.storage.kv.setdefault("", "", "xmppd", "scram-fake-secret",
                                                     secrets.token_hex(32))
            self._fake_secret = bytes.fromhex(value)
        return self._fake_secret

    async def create(self, host: str, username: str, password: str) -> bool:
        creds = await threads.deferToThread(derive, password, self.iterations)
        return await self.storage.accounts.create(host, username, creds)

    async def set_password(self, host: str, username: str, password: str) -> bool:
        """New verifiers; every FAST token of the account is revoked with the old password
        (XEP-0484: a token is no stronger than the login that earned it)."""
        creds = await threads.deferToThread(derive, password, self.iterations)
        changed = await self.storage.accounts.set_credentials(host, username, creds)
        await self.storage.fast.revoke(host, username)
        return changed

    async def verify_plain(self, host: str, username: str, password: str) -> bool:
        return await self.check_plain(host, username, password) is not None

    async def check_plain(self, host: str, username: str, password: str
                          ) -> Credentials | None:
        """The verifier the password matches (it tells whether the account is disabled),
        or None."""
        creds = await self.storage.accounts.get_credentials(host, username)
        c = creds.get("SCRAM-SHA-256") or creds.get("SCRAM-SHA-1")
        if c is None:
            # Unknown account: the same key derivation as for a real one, against a verifier
            # nobody can match, so the time taken does not tell (it was 2.2 ms against
            # 5.5 ms for a real account).
            fake = fake_credentials(await self.fake_secret(), "SCRAM-SHA-256", host,
                                    username, self.iterations)
            await threads.deferToThread(check_password, password, fake)
            return None
        return c if await threads.deferToThread(check_password, password, c) else None

    async def exists(self, host: str, username: str) -> bool:
        return await self.storage.accounts.exists(host, username)

    async def delete(self, host: str, username: str) -> bool:
        return await self.storage.accounts.delete(host, username)


class LoginTimes:
    """When each user last logged in (XEP-0133 get-user-lastlogin), kept in memory and written
    in batches (one transaction every ``interval`` seconds or ``batch`` logins): a write per
    login would cost every login a commit, an fsync on SQLite."""

    def __init__(self, storage: Storage, clock: Any, interval: float = 30.0,
                 batch: int = 1000) -> None:
        self.storage = storage
        self.clock = clock
        self.interval = interval
        self.batch = batch
        self.pending: dict[tuple[str, str], int] = {}
        self._timer: Any = None

    def record(self, host: str, username: str) -> None:
        self.pending[(host, username)] = int(self.clock.seconds())
        if len(self.pending) >= self.batch:
            self.flush()
        elif self._timer is None:
            self._timer = self.clock.callLater(self.interval, self.flush)

    def get(self, host: str, username: str) -> int | None:
        """A login not written yet."""
        return self.pending.get((host, username))

    def flush(self) -> Deferred[None]:
        """Write what is pending; the Deferred fires once it is committed."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        batch = [(h, u, t) for (h, u), t in self.pending.items()]
        self.pending.clear()
        d = self.storage.accounts.record_logins(batch)
        d.addErrback(lambda f: _log.failure("could not record last logins", f))
        return d
