"""Per-occupant flood control (XEP-0045 §20.5 "Denial of Service": rapid messages)."""

from __future__ import annotations

from xmppd.ratelimit import TokenBucket

__all__ = ["TokenBucket"]
