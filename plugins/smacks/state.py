"""XEP-0198 per-session state and options (plugins/smacks)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.words.xish.domish import Element

from xmppd import stanza as st

NS = "urn:xmpp:sm:3"
MOD = 2 ** 32


@dataclass(frozen=True)
class Options:
    resume_timeout: float = 300.0  # seconds a dropped stream waits to be resumed
    max_resume_timeout: float = 3600.0  # the most a client may ask for with max=
    ack_delay: float = 1.0  # seconds after sending before the server asks for an ack
    max_unacked: int = 5000  # a client that never acks is disconnected beyond this


@dataclass
class SMState:
    session: Any
    resume_id: str | None
    timeout: float
    in_offset: int = 0  # stanzas handled by earlier streams of this session
    in_base: int = 0  # session.stanzas_in when SM was enabled on the current stream
    sent: int = 0  # stanzas sent (mod 2^32)
    acked: int = 0  # last h the client reported
    queue: deque[Element] = field(default_factory=deque)
    timer: IDelayedCall | None = None
    ack_timer: IDelayedCall | None = None

    def handled(self) -> int:
        return (self.in_offset + self.session.stanzas_in - self.in_base) % MOD


def failure(condition: str, h: int | None = None) -> Element:
    failed = st.make("failed", NS, {"h": str(h)} if h is not None else None)
    st.add(failed, condition, st.NS_STANZAS)
    return failed
