"""Group commit: many small writes share one transaction, each caller still waits for it.

Items submitted while a transaction is in flight go into the next one, so under load the
number of commits (fsyncs) stays small while every Deferred still fires only after its own
row is durable (ARCHITECTURE principle 6: commit before acknowledging).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from sqlalchemy import Connection
from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

from storage.sql import Database

T = TypeVar("T")
R = TypeVar("R")


class BatchWriter(Generic[T, R]):
    def __init__(self, db: Database, write: Callable[[Connection, list[T]], list[R]],
                 max_batch: int = 1000) -> None:
        self.db = db
        self.write = write
        self.max_batch = max_batch
        self._pending: list[tuple[T, Deferred[R]]] = []
        self._busy = False
        self._last: Deferred[R] | None = None  # the last item of the batch in flight
        self.committed = 0  # items whose transaction committed (a metric: archive writes)

    def add(self, item: T) -> Deferred[R]:
        d: Deferred[R] = Deferred()
        self._pending.append((item, d))
        if not self._busy:
            self._flush()
        return d

    def flushed(self) -> Deferred[None]:
        """Fires once everything added so far has committed or failed (batches commit in
        order, so when the last item's does): for a reader that must see the writes issued
        before it, e.g. an archive query right after the messages it should list, which
        are written behind (Host.write_behind)."""
        last = self._pending[-1][1] if self._pending else self._last
        if last is None or last.called:
            return succeed(None)
        out: Deferred[None] = Deferred()

        def fire(result: object) -> object:
            out.callback(None)
            return result

        last.addBoth(fire)
        return out

    def _flush(self) -> None:
        batch, self._pending = self._pending[:self.max_batch], self._pending[self.max_batch:]
        if not batch:
            self._busy = False
            return
        self._busy = True
        self._last = batch[-1][1]
        items = [item for item, _ in batch]
        result = self.db.write(lambda conn: self.write(conn, items))

        def done(results: list[R] | Failure) -> None:
            if isinstance(results, Failure):
                for _, d in batch:
                    d.errback(results)
            else:
                self.committed += len(batch)
                for (_, d), r in zip(batch, results, strict=True):
                    d.callback(r)
            self._flush()

        result.addBoth(done)
