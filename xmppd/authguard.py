"""Brute-force protection for password authentication: bans, not just slow answers.

Delaying only the failure reply does not bound the guess rate: an attacker with many
parallel connections treats "no success within a second" as a miss, and a correct guess
was answered at once. So, like ejabberd's mod_fail2ban and Prosody's mod_limit_auth:

* Past ``ban_after`` failures from one address (an IPv4 address, an IPv6 /64) within
  ``ban_window`` seconds, every authentication attempt from it is refused with
  ``<temporary-auth-failure/>`` (RFC 6120 §6.5.12) for ``ban_time`` seconds: correct
  passwords included, and before any password is looked at.
* Past ``account_ban_after`` failures for one account from any address within the window,
  attempts for that account are refused the same way, except from addresses that account
  logged in from recently (so a guessing campaign against a user does not lock the user
  out of the devices they use). A success for another account resets nothing.
* Attempts being verified count as failures until they end, so a burst of parallel
  attempts (PLAIN verifies in a thread) cannot slip past the bar before the first fails.
* At most ``max_unauthenticated_per_ip`` connections from one address may be
  unauthenticated at a time.

Each ban is logged once, in a fixed form a fail2ban filter can match (contrib/fail2ban/).
State is per process and in memory; the ban list can be listed and lifted by an admin.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from xmppd.logs import Logger

log = Logger(namespace="xmppd.auth")

MAX_TRACKED: Final = 100_000  # addresses/accounts with recent failures kept in memory
KNOWN_PER_ACCOUNT: Final = 8  # recent login addresses remembered per account


@dataclass(frozen=True)
class GuardPolicy:
    ban_after: int = 10
    account_ban_after: int = 5
    ban_window: float = 600.0
    ban_time: float = 600.0
    max_unauthenticated_per_ip: int = 128
    exempt_networks: tuple[str, ...] = ()


@dataclass
class Ban:
    """One refused address or account: ``kind`` is "address" or "account"."""

    kind: str
    key: str
    until: float
    failures: int


@dataclass
class _Failures:
    times: deque[float] = field(default_factory=deque)
    in_flight: int = 0


def address_key(ip: str, v6_prefix: int = 64) -> str:
    """What a ban applies to: the IPv4 address, or the IPv6 /64 (one subscriber's LAN) that
    an attacker could otherwise walk through address by address."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, v6_prefix), strict=False))
    return str(addr)


class Attempt:
    """A password check under way; ends with exactly one of ``failed``, ``succeeded`` or
    ``abandoned``."""

    __slots__ = ("account", "address", "done", "guard", "ip")

    def __init__(self, guard: AuthGuard, ip: str, address: str, account: str) -> None:
        self.guard, self.ip, self.address, self.account = guard, ip, address, account
        self.done = False

    def failed(self) -> None:
        if not self.done:
            self.done = True
            self.guard._ended(self, failed=True)

    def succeeded(self) -> None:
        if not self.done:
            self.done = True
            self.guard._ended(self, failed=False)

    def abandoned(self) -> None:
        if not self.done:
            self.done = True
            self.guard._ended(self, failed=None)


class AuthGuard:
    def __init__(self, policy: GuardPolicy, clock_seconds: Callable[[], float]) -> None:
        self.policy = policy
        self._now = clock_seconds
        self._exempt = [ipaddress.ip_network(n, strict=False) for n in policy.exempt_networks]
        self._by_address: OrderedDict[str, _Failures] = OrderedDict()
        self._by_account: OrderedDict[str, _Failures] = OrderedDict()
        self._bans: dict[tuple[str, str], Ban] = {}
        self._known: OrderedDict[str, OrderedDict[str, None]] = OrderedDict()
        self._unauthenticated: dict[str, int] = {}

    def now(self) -> float:
        return self._now()

    def set_policy(self, policy: GuardPolicy) -> None:
        """A reloaded configuration: new limits apply from now on, bans in force stay."""
        self.policy = policy
        self._exempt = [ipaddress.ip_network(n, strict=False) for n in policy.exempt_networks]

    # -- connections ------------------------------------------------------------------------
    def connection_opened(self, ip: str) -> bool:
        """Count an unauthenticated connection; False if the address already has too many."""
        if self._is_exempt(ip):
            return True
        key = address_key(ip)
        count = self._unauthenticated.get(key, 0)
        if count >= self.policy.max_unauthenticated_per_ip:
            return False
        self._unauthenticated[key] = count + 1
        return True

    def connection_done(self, ip: str) -> None:
        """The connection counted by connection_opened authenticated or closed."""
        if self._is_exempt(ip):
            return
        key = address_key(ip)
        count = self._unauthenticated.get(key, 0) - 1
        if count > 0:
            self._unauthenticated[key] = count
        else:
            self._unauthenticated.pop(key, None)

    # -- attempts ---------------------------------------------------------------------------
    def refused(self, ip: str, account: str | None = None) -> Ban | None:
        """The ban that refuses an attempt from ``ip`` (for ``account``, once known)."""
        if self._is_exempt(ip):
            return None
        now = self.now()
        ban = self._active(("address", address_key(ip)), now)
        if ban is None and account is not None and not self._known_address(account, ip):
            ban = self._active(("account", account), now)
        return ban

    def begin(self, ip: str, account: str) -> Attempt | None:
        """Start checking a password; None (refuse with temporary-auth-failure) when a ban
        applies, or when the attempts already failed or in flight reach the bar."""
        if self.refused(ip, account) is not None:
            return None
        address = address_key(ip)
        if self._is_exempt(ip):
            return Attempt(self, ip, "", account)
        now = self.now()
        by_ip = self._entry(self._by_address, address, now)
        by_account = self._entry(self._by_account, account, now)
        # Attempts in flight count as failures until they end: the ban itself comes when
        # failures reach the bar (in _ended), but nothing gets past it meanwhile.
        if len(by_ip.times) + by_ip.in_flight >= self.policy.ban_after:
            return None
        if (len(by_account.times) + by_account.in_flight >= self.policy.account_ban_after
                and not self._known_address(account, ip)):
            return None
        by_ip.in_flight += 1
        by_account.in_flight += 1
        return Attempt(self, ip, address, account)

    def recent_failures(self, ip: str) -> int:
        """Failures from this address within the window (for the reply delay)."""
        entry = self._by_address.get(address_key(ip))
        if entry is None:
            return 0
        self._expire(entry, self.now())
        return len(entry.times)

    def _ended(self, attempt: Attempt, failed: bool | None) -> None:
        if not attempt.address:  # exempt address
            if failed is False:
                self._remember(attempt.account, attempt.ip)
            return
        now = self.now()
        for table, key in ((self._by_address, attempt.address),
                           (self._by_account, attempt.account)):
            entry = table.get(key)
            if entry is None:
                continue
            entry.in_flight = max(0, entry.in_flight - 1)
            if failed:
                entry.times.append(now)
                self._expire(entry, now)
        if failed is False:
            self._remember(attempt.account, attempt.ip)
        elif failed:
            by_ip = self._by_address.get(attempt.address)
            if by_ip is not None and len(by_ip.times) >= self.policy.ban_after:
                self._ban("address", attempt.address, attempt.ip, len(by_ip.times), now)
            by_account = self._by_account.get(attempt.account)
            if by_account is not None and len(by_account.times) >= self.policy.account_ban_after:
                self._ban("account", attempt.account, attempt.ip, len(by_account.times), now)

    # -- the ban list (admin) ---------------------------------------------------------------
    def bans(self) -> list[Ban]:
        now = self.now()
        return sorted((b for b in list(self._bans.values())
                       if self._active((b.kind, b.key), now) is not None),
                      key=lambda b: (b.kind, b.key))

    def lift(self, key: str) -> bool:
        """Lift the ban of an address (or its /64) or an account, and forget its failures."""
        found = False
        for kind, table, k in (("address", self._by_address, address_key(key)),
                               ("account", self._by_account, key)):
            if self._bans.pop((kind, k), None) is not None:
                found = True
            if table.pop(k, None) is not None:
                found = True
        if found:
            log.info("authentication ban lifted: {key}", key=key)
        return found

    # -- internals --------------------------------------------------------------------------
    def _is_exempt(self, ip: str) -> bool:
        if not self._exempt:
            return False
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in net for net in self._exempt)

    def _active(self, key: tuple[str, str], now: float) -> Ban | None:
        ban = self._bans.get(key)
        if ban is not None and ban.until <= now:
            del self._bans[key]
            return None
        return ban

    def _ban(self, kind: str, key: str, ip: str, failures: int, now: float) -> None:
        if self._active((kind, key), now) is not None:
            return
        until = now + self.policy.ban_time
        self._bans[(kind, key)] = Ban(kind, key, until, failures)
        # The one line per ban that contrib/fail2ban/filter.d/xmppd.conf matches.
        log.warn("AUTH-BAN {kind} {key} from {ip}: {failures} failures within {window:.0f}s, "
                 "refused for {seconds:.0f}s", kind=kind, key=key, ip=ip, failures=failures,
                 window=self.policy.ban_window, seconds=self.policy.ban_time)
        if len(self._bans) > MAX_TRACKED:
            for k in [k for k, b in self._bans.items() if b.until <= now]:
                del self._bans[k]

    def _entry(self, table: OrderedDict[str, _Failures], key: str, now: float) -> _Failures:
        entry = table.get(key)
        if entry is None:
            entry = table[key] = _Failures()
            if len(table) > MAX_TRACKED:
                self._trim(table, now)
        else:
            table.move_to_end(key)
            self._expire(entry, now)
        return entry

    def _expire(self, entry: _Failures, now: float) -> None:
        horizon = now - self.policy.ban_window
        times = entry.times
        while times and times[0] <= horizon:
            times.popleft()

    def _trim(self, table: OrderedDict[str, _Failures], now: float) -> None:
        """Forget the least recently seen keys with nothing recent or in flight."""
        for key in list(table)[: len(table) // 4]:
            entry = table[key]
            self._expire(entry, now)
            if not entry.times and not entry.in_flight:
                del table[key]

    def _remember(self, account: str, ip: str) -> None:
        known = self._known.get(account)
        if known is None:
            known = self._known[account] = OrderedDict()
            if len(self._known) > MAX_TRACKED:
                self._known.popitem(last=False)
        else:
            self._known.move_to_end(account)
        key = address_key(ip)
        known[key] = None
        known.move_to_end(key)
        while len(known) > KNOWN_PER_ACCOUNT:
            known.popitem(last=False)

    def _known_address(self, account: str, ip: str) -> bool:
        known = self._known.get(account)
        return known is not None and address_key(ip) in known
