"""The epoll reactor xmppd runs on: Twisted's, with writes sent once per turn.

Twisted's transports call ``addWriter`` on every ``write()``: ``epoll_ctl`` to ask for
EPOLLOUT, one more pass through ``epoll_wait`` to learn that the socket is writable (it
nearly always is), the ``send``, then ``epoll_ctl`` again from ``stopWriting``. Measured under
``bench`` (py-spy, one core): the registration calls and the extra turn were 5-8 % of the
server's time under ``login`` and ``pairs``. Here a writer is first only remembered; just
before the next ``epoll_wait`` every remembered writer sends what it has (everything written
to one connection during the turn goes out in one ``send``), and only a writer the kernel
did not take everything from is registered for EPOLLOUT, exactly as before.

The second difference: events are dispatched without ``log.callWithLogger``, the legacy
``twisted.python.log`` context (the ``system`` prefix of ``log.msg`` lines written while
handling an event; xmppd logs through ``twisted.logger``, which does not read it). Its
context-stack bookkeeping per event was another 3-4 % under ``login``. Errors raised by a
handler are still logged and disconnect that descriptor only, as in Twisted.
"""

from __future__ import annotations

import errno
from typing import Any

from twisted.internet import epollreactor
from twisted.internet.main import installReactor
from twisted.internet.posixbase import _NO_FILEDESC
from twisted.python import log

# Rounds of flushing before a poll (see _flush_writers).
_FLUSH_ROUNDS = 4


class TurnWriteReactor(epollreactor.EPollReactor):
    """EPollReactor whose writers send at the end of the turn (see the module docstring)."""

    def __init__(self) -> None:
        self._pending_writers: dict[Any, bool] = {}  # insertion-ordered set of writers
        self._flushing: set[Any] = set()
        super().__init__()

    # -- IReactorFDSet --------------------------------------------------------------------

    def addWriter(self, writer: Any) -> None:  # noqa: N802 (Twisted API)
        if writer in self._flushing:
            return  # it is writing right now; _flush_one registers it if data remains
        try:
            fd = writer.fileno()
        except Exception:
            fd = -1
        if fd in self._writes or fd == -1:
            super().addWriter(writer)
            return
        self._pending_writers[writer] = True

    def removeWriter(self, writer: Any) -> None:  # noqa: N802 (Twisted API)
        self._pending_writers.pop(writer, None)
        self._flushing.discard(writer)
        super().removeWriter(writer)

    def getWriters(self) -> list[Any]:  # noqa: N802 (Twisted API)
        writers: list[Any] = super().getWriters()
        return writers + [w for w in self._pending_writers if w not in writers]

    def removeAll(self) -> list[Any]:  # noqa: N802 (Twisted API)
        pending = list(self._pending_writers)
        self._pending_writers.clear()
        removed: list[Any] = super().removeAll()
        return removed + [w for w in pending if w not in removed]

    # -- the turn ---------------------------------------------------------------------------

    def _flush_writers(self) -> None:
        """Every pending writer writes now, oldest first. A writer that an earlier one's
        write closed has left the dict already (``removeWriter``) and is skipped. A writer
        can come back (a drained buffer resumes a producer that writes again): it writes
        again in the next round; after the last round the rest wait for EPOLLOUT."""
        pending = self._pending_writers
        for _ in range(_FLUSH_ROUNDS):
            if not pending:
                return
            for writer in list(pending):
                if pending.pop(writer, False):
                    self._flush_one(writer)
        while pending:
            super().addWriter(pending.popitem()[0])

    def _flush_one(self, writer: Any) -> None:
        """``doWrite`` now; register for EPOLLOUT only if the writer did not stop writing
        (``stopWriting`` -> ``removeWriter`` takes it out of ``_flushing``)."""
        self._flushing.add(writer)
        why: Any = None
        try:
            why = _NO_FILEDESC if writer.fileno() == -1 else writer.doWrite()
        except BaseException as exc:
            why = exc
            log.err()
        if why:
            self._flushing.discard(writer)
            try:
                self._disconnectSelectable(writer, why, False)
            except BaseException:
                log.err()  # a connectionLost that raised: this descriptor only
        elif writer in self._flushing:
            self._flushing.discard(writer)
            super().addWriter(writer)

    def doPoll(self, timeout: float | None) -> None:  # noqa: N802 (Twisted API)
        if self._pending_writers:
            self._flush_writers()
            # The timeout was computed before the flush, which can schedule calls (a drained
            # buffer resumes a producer, which may continue on the next tick) or stop the
            # reactor (the shutdown runs on the next turn): honour both.
            due = 0.0 if self._justStopped else self.timeout()
            if due is not None and (timeout is None or due < timeout):
                timeout = due
        try:
            events = self._poller.poll(-1 if timeout is None else timeout,
                                       len(self._selectables))
        except OSError as err:
            if err.errno == errno.EINTR:
                return
            raise
        selectables = self._selectables
        handle = self._doReadOrWrite
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is not None:
                try:
                    handle(selectable, fd, event)
                except BaseException:
                    log.err()  # as Twisted's callWithLogger: the other events still run

    doIteration = doPoll  # noqa: N815 (Twisted API)


def install() -> TurnWriteReactor:
    """Install this reactor (before anything imports ``twisted.internet.reactor``)."""
    reactor = TurnWriteReactor()
    installReactor(reactor)
    return reactor
