"""Token buckets: ``burst`` tokens refilled at ``rate`` per ``per`` seconds, one per event."""

from __future__ import annotations


class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per ``per`` seconds; one token per stanza."""

    __slots__ = ("burst", "last", "per", "rate", "tokens")

    def __init__(self, rate: float, burst: int, now: float, per: float = 1.0) -> None:
        self.rate = rate
        self.per = per
        self.burst = float(burst)
        self.tokens = float(burst)
        self.last = now

    def _refilled(self, now: float) -> float:
        return self.tokens + (now - self.last) * self.rate / self.per

    def take(self, now: float) -> bool:
        """Spend a token if there is one (True), else refuse (False)."""
        self.tokens = min(self.burst, self._refilled(now))
        self.last = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def spend(self, amount: float, now: float) -> float:
        """Spend ``amount`` tokens even past zero (bytes already received must go on); the
        seconds until the debt is repaid, 0.0 if there is none. A byte stream pauses its
        source for that long, so its average rate stays at ``rate`` per ``per``."""
        self.tokens = min(self.burst, self._refilled(now)) - amount
        self.last = now
        return 0.0 if self.tokens >= 0 else -self.tokens * self.per / self.rate

    def full(self, now: float) -> bool:
        """Idle long enough to be as good as new (so it can be forgotten)."""
        return self._refilled(now) >= self.burst
