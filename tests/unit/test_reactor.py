"""xmppd's reactor (xmppd/reactor.py): writes of one turn leave in one send before the next
poll, a writer the kernel cannot take whole waits for EPOLLOUT, and a producer resumed by a
flush that continues on a later tick is not left waiting on a poll without a timeout."""

from __future__ import annotations

import socket
import threading
from typing import Any

from twisted.internet import protocol
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from xmppd.reactor import TurnWriteReactor

# Above a transport's bufferSize (64 KiB), so every write pauses the producer, and below its
# SEND_LIMIT (128 KiB), so one doWrite can drain it and resume the producer from the flush.
CHUNK = 96 * 1024


class Sink(protocol.Protocol):
    """Client side: counts bytes and the reads they arrived in; stops the reactor at
    ``expect`` bytes."""

    def __init__(self, reactor: TurnWriteReactor, expect: int) -> None:
        self.reactor, self.expect = reactor, expect
        self.received = bytearray()
        self.reads = 0

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.received += data
        self.reads += 1
        if len(self.received) >= self.expect:
            self.transport.loseConnection()
            self.reactor.stop()


@implementer(IPushProducer)
class Ticker:
    """A streaming producer that writes one chunk per reactor tick (callLater(0)), like
    Twisted's pull-to-push adapters: it pauses when the transport's buffer is full and goes
    on one tick after the transport resumes it."""

    def __init__(self, reactor: TurnWriteReactor, transport: Any, total: int) -> None:
        self.reactor, self.transport, self.left = reactor, transport, total
        self.paused = False
        self.scheduled = False

    def tick(self) -> None:
        self.scheduled = False
        if self.paused or not self.left:
            return
        n = min(CHUNK, self.left)
        self.left -= n
        self.transport.write(b"x" * n)
        if not self.left:
            self.transport.unregisterProducer()
        elif not self.paused:
            self._schedule()

    def _schedule(self) -> None:
        if not self.scheduled:
            self.scheduled = True
            self.reactor.callLater(0, self.tick)

    def pauseProducing(self) -> None:  # noqa: N802
        self.paused = True

    def resumeProducing(self) -> None:  # noqa: N802
        self.paused = False
        self._schedule()

    def stopProducing(self) -> None:  # noqa: N802
        self.left = 0


def run(reactor: TurnWriteReactor, server: type[protocol.Protocol], sink: Sink,
        limit: float = 20.0) -> list[str]:
    """Serve ``server`` on a loopback port, connect ``sink`` to it, run until the sink stops
    the reactor or ``limit`` seconds pass (then the list holds "timeout")."""
    outcome: list[str] = []
    factory = protocol.Factory.forProtocol(server)
    factory.reactor = reactor  # type: ignore[attr-defined]
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    client = protocol.ClientFactory()
    client.protocol = lambda: sink  # type: ignore[assignment]
    reactor.connectTCP("127.0.0.1", port.getHost().port, client)

    def too_long() -> None:
        outcome.append("timeout")
        reactor.stop()

    guard = reactor.callLater(limit, too_long)
    reactor.run(installSignalHandlers=False)
    if guard.active():
        guard.cancel()
    port.stopListening()
    return outcome


class TwoWrites(protocol.Protocol):
    def connectionMade(self) -> None:  # noqa: N802
        self.transport.write(b"hello ")
        self.transport.write(b"world")


def test_writes_of_one_turn_leave_together_without_epollout() -> None:
    reactor = TurnWriteReactor()
    registered: list[int] = []
    real_add = reactor._add

    def add(xer: Any, primary: set[int], *rest: Any) -> None:
        if primary is reactor._writes:
            registered.append(xer.fileno())
        real_add(xer, primary, *rest)

    reactor._add = add  # type: ignore[method-assign]
    sink = Sink(reactor, len(b"hello world"))
    assert run(reactor, TwoWrites, sink) == []
    assert bytes(sink.received) == b"hello world"
    assert sink.reads == 1  # one send for both writes
    # Nobody waited for EPOLLOUT: not the server's writes, and not even the client's
    # connect() (on loopback it has completed by the time the flush calls doConnect).
    assert registered == []


class Bulk(protocol.Protocol):
    """Writes TOTAL bytes through a Ticker: each chunk pauses it, and the flush that sends
    the chunk resumes it."""

    TOTAL = 8 * 1024 * 1024

    def connectionMade(self) -> None:  # noqa: N802
        reactor = self.factory.reactor  # type: ignore[attr-defined]
        ticker = Ticker(reactor, self.transport, self.TOTAL)
        self.transport.registerProducer(ticker, True)
        ticker.resumeProducing()


def test_producer_resumed_by_a_flush_goes_on_without_other_timers() -> None:
    """The regression: the poll timeout was computed before the flush, so the tick a
    resumed producer scheduled during the flush waited for an unrelated event (here the
    guard timer; a 100 MB download stalled in the integration test). The reader is a plain
    socket in a thread, so its reads wake nothing in the reactor, as with a remote peer."""
    reactor = TurnWriteReactor()
    factory = protocol.Factory.forProtocol(Bulk)
    factory.reactor = reactor  # type: ignore[attr-defined]
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    got: list[int] = []

    def read() -> None:
        total = 0
        with socket.create_connection(("127.0.0.1", port.getHost().port)) as sock:
            while total < Bulk.TOTAL:
                data = sock.recv(1 << 20)
                if not data:
                    break
                total += len(data)
        got.append(total)
        reactor.callFromThread(reactor.stop)

    outcome: list[str] = []

    def too_long() -> None:
        outcome.append("timeout")
        reactor.stop()

    guard = reactor.callLater(20.0, too_long)
    reader = threading.Thread(target=read)
    reactor.callWhenRunning(reader.start)
    reactor.run(installSignalHandlers=False)
    if guard.active():
        guard.cancel()
    port.stopListening()
    reader.join(5)
    assert outcome == []
    assert got == [Bulk.TOTAL]


class FakeWriter:
    """A descriptor whose write closes the other one (as when one connection's write makes
    the server drop another): the closed one must not be flushed after it is gone."""

    def __init__(self, reactor: TurnWriteReactor, fd: int) -> None:
        self.reactor, self.fd = reactor, fd
        self.other: FakeWriter | None = None
        self.writes = 0
        self.closed = False

    def fileno(self) -> int:
        return -1 if self.closed else self.fd

    def doWrite(self) -> None:  # noqa: N802
        assert not self.closed, "flushed after it was closed"
        self.writes += 1
        self.reactor.removeWriter(self)  # drained: stopWriting()
        if self.other is not None and not self.other.closed:
            self.reactor.removeWriter(self.other)
            self.other.closed = True


def test_a_writer_closed_during_the_flush_is_not_written() -> None:
    reactor = TurnWriteReactor()
    a, b = FakeWriter(reactor, 1000), FakeWriter(reactor, 1001)
    a.other, b.other = b, a
    reactor.addWriter(a)
    reactor.addWriter(b)
    assert set(reactor.getWriters()) == {a, b}
    reactor.doPoll(0)
    assert a.writes + b.writes == 1
    assert reactor.getWriters() == []


class OrderedWriter(FakeWriter):
    def __init__(self, reactor: TurnWriteReactor, fd: int, log: list[int]) -> None:
        super().__init__(reactor, fd)
        self.log = log

    def doWrite(self) -> None:  # noqa: N802
        self.log.append(self.fd)
        super().doWrite()


def test_writers_flush_oldest_first() -> None:
    reactor = TurnWriteReactor()
    order: list[int] = []
    for fd in (1003, 1001, 1002):
        reactor.addWriter(OrderedWriter(reactor, fd, order))
    reactor.doPoll(0)
    assert order == [1003, 1001, 1002]


class StoppingWriter(FakeWriter):
    """Stops the reactor from inside its write, as a connectionLost or a producer might."""

    def doWrite(self) -> None:  # noqa: N802
        super().doWrite()
        self.reactor.stop()


def test_stop_during_the_flush_is_not_held_by_the_poll() -> None:
    """The shutdown runs on the turn after stop(); a poll without timeout between the two
    would wait for unrelated I/O (here: the guard timer)."""
    reactor = TurnWriteReactor()
    writer = StoppingWriter(reactor, 1000)
    timed_out: list[bool] = []
    guard = reactor.callLater(10.0, lambda: (timed_out.append(True), reactor.stop()))
    reactor.callWhenRunning(reactor.addWriter, writer)
    reactor.run(installSignalHandlers=False)
    if guard.active():
        guard.cancel()
    assert writer.writes == 1
    assert timed_out == []
