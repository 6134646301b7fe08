"""Per-occupant flood control (XEP-0045 §20.5 "Denial of Service": rapid messages)."""

from __future__ import annotations


class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per second; one token per stanza."""

    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.last = now

    def take(self, now: float) -> bool:
        """Spend a token if there is one (True), else refuse (False)."""
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def full(self, now: float) -> bool:
        """Idle long enough to be as good as new (so it can be forgotten)."""
        return self.tokens + (now - self.last) * self.rate >= self.burst
