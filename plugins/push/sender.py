"""Publishing to app servers: at most one request in flight per registration, and the errors
that disable a registration (XEP-0357 §7.1).

Messages that arrive while a publish is awaiting its answer are not sent one by one: the
next publish, sent once the answer came, carries their count and the latest sender and body.
So a burst costs two requests, and what the server holds per registration stays bounded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred

from plugins.push.notify import Summary, notification
from storage.push import PushRegistration
from xmppd.errors import StanzaError
from xmppd.iq import IqTimeout
from xmppd.jid import JID
from xmppd.logs import Logger

Key = tuple[str, str, str]  # (account bare JID, service JID, node)
Lookup = Callable[[JID, tuple[str, str]], Awaitable[PushRegistration | None]]
Drop = Callable[[JID, PushRegistration, str], Awaitable[None]]


@dataclass
class Pending:
    count: int = 0  # messages announced since the device last showed up (message-count)
    sender: str | None = None  # of the latest one, if the operator allows it
    body: str | None = None
    sending: bool = False
    again: bool = False  # more arrived while a publish was in flight
    failures: int = 0  # 'wait' errors and timeouts in a row


class Publisher:
    def __init__(self, host: Any, log: Logger, timeout: float, max_failures: int,
                 lookup: Lookup, drop: Drop) -> None:
        self.host = host
        self.log = log
        self.timeout = timeout
        self.max_failures = max_failures
        self.lookup = lookup  # the registration as stored now (None: disabled meanwhile)
        self.drop = drop  # disable a registration the app server refused
        self.pending: dict[Key, Pending] = {}

    def announce(self, user: JID, reg: PushRegistration, count: int, sender: str | None,
                 body: str | None) -> None:
        key = (user.bare_str, reg.service, reg.node)
        p = self.pending.get(key)
        if p is None:
            p = self.pending[key] = Pending()
        p.count += count
        p.sender, p.body = sender, body
        if p.sending:
            p.again = True
            return
        p.sending = True
        self.host.track(Deferred.fromCoroutine(self._run(user, key, reg, p)))

    def seen(self, user: JID, service: str, node: str) -> None:
        """The device behind this registration is reachable again: the count starts over."""
        key = (user.bare_str, service, node)
        p = self.pending.get(key)
        if p is not None:
            p.count = 0
            if not p.sending:
                del self.pending[key]

    def forget(self, user: JID, keys: list[tuple[str, str]] | None = None) -> None:
        """Registrations that are gone (all of the account's when ``keys`` is None)."""
        for key in [k for k in self.pending if k[0] == user.bare_str and (
                keys is None or k[1:] in keys)]:
            del self.pending[key]

    async def _run(self, user: JID, key: Key, reg: PushRegistration, p: Pending) -> None:
        try:
            while True:
                p.again = False
                summary = Summary(max(p.count, 1), p.sender, p.body)
                p.sender = p.body = None
                if not await self._publish(user, reg, p, summary) or not p.again:
                    return
                found = await self.lookup(user, reg.key)
                if found is None:
                    return
                reg = found
        except Exception:
            self.log.failure("push to {service} for {user} failed", service=reg.service,
                             user=user.bare_str)
        finally:
            p.sending = False
            if self.pending.get(key) is p and p.count == 0:
                del self.pending[key]

    async def _publish(self, user: JID, reg: PushRegistration, p: Pending,
                       summary: Summary) -> bool:
        """One publish; False if the registration was disabled."""
        try:
            await self.host.request(notification(self.host.domain, reg, summary), self.timeout)
        except StanzaError as err:
            if err.type != "wait":
                # §7.1: "If a publish request is returned with an IQ-error, then the server
                # SHOULD consider the particular JID and node combination to be disabled."
                await self.drop(user, reg, f"the app server answered {err.condition}")
                return False
            reason = f"{err.condition} (wait)"
        except IqTimeout:
            reason = "no answer"
        else:
            p.failures = 0
            return True
        # §7.1: a server "MAY choose to keep a service enabled if the error is deemed
        # recoverable or transient, until a sufficient number of errors have been received
        # in a row": an error of type 'wait' (RFC 6120 §8.3.2) or no answer at all.
        p.failures += 1
        if p.failures >= self.max_failures:
            await self.drop(user, reg, f"{p.failures} failures in a row, the last: {reason}")
            return False
        self.log.info("push to {service} for {user}: {reason} ({n} in a row)",
                      service=reg.service, user=user.bare_str, reason=reason, n=p.failures)
        return True
