"""An activated bytestream: bytes copied both ways between the two SOCKS5 connections, within
the limits of the requester's proxy service.

Each direction is a ``Pump``: what one side sends is written to the other at once, and the
sending socket stops being read while either (a) the receiving socket's send buffer is full
(Twisted's push-producer flow control: the pump is the receiving transport's producer) or
(b) the direction's token bucket is in debt (``rate`` bytes per second with one second of
burst; after a chunk the bucket says how long until it is repaid, and the pump resumes
reading then). So a fast sender is slowed to the rate by TCP's own back-pressure, and the
proxy never holds more than one read's worth per direction. The rate is an average: a
stream may get ahead of it by the burst and one read (measured by hand: 400 000 bytes at
100 000 bytes/s arrived in 2.7 s, the first 100 000 at once).

A stream ends when either side closes (the other is closed once what it was sent has been
written), when it has carried ``max_bytes`` (both directions together), or after
``max_duration`` seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IPushProducer
from zope.interface import implementer

from plugins.proxy65.socks5 import Socks5Connection, Socks5Relay, log
from xmppd.ratelimit import TokenBucket


@dataclass(frozen=True)
class StreamLimits:
    rate: int = 0  # bytes per second each way; 0: no limit
    max_bytes: int = 0  # bytes relayed in all; 0: no limit
    max_duration: float = 0.0  # seconds; 0: no limit


@implementer(IPushProducer)
class Pump:
    """One direction of a stream: ``src`` -> ``dst``."""

    def __init__(self, stream: Stream, src: Socks5Connection, dst: Socks5Connection,
                 rate: int) -> None:
        self.stream = stream
        self.src = src
        self.dst = dst
        now = stream.clock.seconds()
        self.bucket = TokenBucket(rate, max(rate, 16384), now) if rate else None
        self.consumer_full = False  # dst's send buffer is full
        self.throttled = False  # the bucket is in debt
        self.resume_call: IDelayedCall | None = None
        src.on_data = self.data
        dst.transport.registerProducer(self, True)

    def data(self, chunk: bytes) -> None:
        chunk = self.stream.count(chunk)
        if chunk:
            self.dst.transport.write(chunk)
        if self.bucket is not None and chunk:
            delay = self.bucket.spend(len(chunk), self.stream.clock.seconds())
            if delay > 0 and not self.throttled:
                self.throttled = True
                self.resume_call = self.stream.clock.callLater(delay, self._repaid)
                self.update()
        if self.stream.over:
            self.stream.close("size limit reached")

    def _repaid(self) -> None:
        self.resume_call = None
        self.throttled = False
        self.update()

    def update(self) -> None:
        if self.consumer_full or self.throttled:
            self.src.pause()
        else:
            self.src.resume()

    # IPushProducer, called by dst's transport
    def pauseProducing(self) -> None:  # noqa: N802
        self.consumer_full = True
        self.update()

    def resumeProducing(self) -> None:  # noqa: N802
        self.consumer_full = False
        self.update()

    def stopProducing(self) -> None:  # noqa: N802
        self.stream.close("connection closed")

    def stop(self) -> None:
        if self.resume_call is not None and self.resume_call.active():
            self.resume_call.cancel()
        self.resume_call = None
        self.src.on_data = _drop
        transport = self.dst.transport
        if transport is not None and getattr(transport, "producer", None) is self:
            transport.unregisterProducer()


def _drop(_data: bytes) -> None:
    """Bytes arriving after a stream ended go nowhere."""


class Stream:
    """Two activated connections relaying to each other."""

    def __init__(self, relay: Socks5Relay, a: Socks5Connection, b: Socks5Connection,
                 limits: StreamLimits, owner: str, label: str) -> None:
        self.relay = relay
        self.clock: Any = relay.clock
        self.a, self.b = a, b
        self.limits = limits
        self.owner = owner  # the requester's bare JID (per-user stream counts)
        self.label = label
        self.relayed = 0
        self.over = False
        self.closed = False
        self.timer: IDelayedCall | None = None
        early_a, early_b = a.activated(), b.activated()
        a.stream = b.stream = self
        self.pumps = (Pump(self, a, b, limits.rate), Pump(self, b, a, limits.rate))
        relay.streams.add(self)
        if limits.max_duration:
            self.timer = self.clock.callLater(limits.max_duration, self.close, "time limit")
        for pump, early in zip(self.pumps, (early_a, early_b), strict=True):
            if early:
                pump.data(early)
        for pump in self.pumps:
            pump.update()  # a party held back before activation is read again

    def count(self, chunk: bytes) -> bytes:
        """The part of ``chunk`` still within ``max_bytes``; marks the stream over at it."""
        limit = self.limits.max_bytes
        if self.over:
            return b""
        if limit and self.relayed + len(chunk) >= limit:
            chunk = chunk[:limit - self.relayed]
            self.over = True
        self.relayed += len(chunk)
        return chunk

    def close(self, why: str) -> None:
        if self.closed:
            return
        self.closed = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        for pump in self.pumps:
            pump.stop()
        self.relay.streams.discard(self)
        log.info("proxy65: stream {label} ended ({why}, {n} bytes)", label=self.label, why=why,
                 n=self.relayed)
        for conn in (self.a, self.b):
            conn.state = "closed"
            conn.resume()  # a paused socket would never see its close
            if conn.transport is not None:
                conn.transport.loseConnection()  # after what it was sent is written
