"""Engine set-up and the bridge that runs blocking SQLAlchemy work in a thread pool.

Every call commits before its Deferred fires, so code that acknowledges something after
``await db.write(...)`` knows the row is durable (ARCHITECTURE principle 6).

``timing``, when set, is told how long each read, write and lookup took, from the call
until its result is back on the calling thread: the wait for a pool thread included, since
that is what the caller waits for (the server's storage latency histograms).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import StaticPool
from twisted.internet import defer, threads
from twisted.python.threadpool import ThreadPool

T = TypeVar("T")


class Database:
    """One engine + one thread pool. ``read``/``write`` return Deferreds fired on the reactor."""

    def __init__(self, url: str, pool_size: int = 8, sqlite_synchronous: str = "FULL") -> None:
        self.url = make_url(url)
        self.dialect = self.url.get_backend_name()
        self._sqlite_memory = self.dialect == "sqlite" and (
            self.url.database or "") in ("", ":memory:")
        self.engine = self._make_engine(pool_size, sqlite_synchronous)
        # lookup() may run on the caller's thread: a SQLite file in WAL mode only (below).
        self._inline_lookups = self.dialect == "sqlite" and not self._sqlite_memory
        # SQLite allows one writer; a single worker serialises writes without lock waits.
        workers = 1 if self.dialect == "sqlite" else pool_size
        self.pool = ThreadPool(minthreads=1, maxthreads=workers, name="xmppd-db")
        self._reactor: Any = None
        self.timing: Callable[[str, float], None] | None = None  # (operation, seconds)

    def _make_engine(self, pool_size: int, synchronous: str) -> Engine:
        if self.dialect == "sqlite":
            memory = self._sqlite_memory
            if not memory:
                Path(self.url.database or "").parent.mkdir(parents=True, exist_ok=True)
            kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
            if memory:
                kwargs["poolclass"] = StaticPool
            engine = create_engine(self.url, **kwargs)

            @event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                if not memory:
                    cur.execute("PRAGMA journal_mode=WAL")
                cur.execute(f"PRAGMA synchronous={synchronous}")
                cur.execute("PRAGMA busy_timeout=10000")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()

            return engine
        if self.dialect in ("mysql", "mariadb"):
            url = self.url
            if "charset" not in url.query:
                url = url.update_query_dict({"charset": "utf8mb4"})
            return create_engine(url, pool_size=pool_size, pool_recycle=3600)
        # No pre-ping (a round trip before every statement): a connection the server closed
        # fails its first use, is invalidated, and the work runs again (read/write below).
        return create_engine(self.url, pool_size=pool_size)

    # -- lifecycle ----------------------------------------------------------------------
    def start(self, reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor
            reactor = default_reactor
        self._reactor = reactor
        if not self.pool.started:
            self.pool.start()

    def stop(self) -> None:
        if self.pool.started:
            self.pool.stop()
        self.engine.dispose()

    def migrate(self) -> None:
        """Apply Alembic migrations up to head (blocking; call before serving)."""
        from storage.migrate import upgrade

        upgrade(self.engine)

    # -- work ---------------------------------------------------------------------------
    def _run(self, fn: Callable[[], T]) -> defer.Deferred[T]:
        if self._reactor is None:
            # Not started (CLI one-shot use or tests without a reactor): run inline.
            try:
                return defer.succeed(fn())
            except Exception:
                return defer.fail()
        return threads.deferToThreadPool(self._reactor, self.pool, fn)

    def _read(self, fn: Callable[[Connection], T]) -> T:
        for attempt in range(2):
            try:
                with self.engine.connect() as conn:
                    return fn(conn)
            except DBAPIError as exc:
                if attempt == 1 or not exc.connection_invalidated:
                    raise
        raise AssertionError("unreachable")

    def _timed(self, operation: str, start: Callable[[], defer.Deferred[T]]
               ) -> defer.Deferred[T]:
        timing = self.timing
        if timing is None:
            return start()
        began = time.perf_counter()
        d = start()

        def done(result: object) -> object:
            timing(operation, time.perf_counter() - began)
            return result

        d.addBoth(done)
        return d

    def read(self, fn: Callable[[Connection], T]) -> defer.Deferred[T]:
        return self._timed("read", lambda: self._run(lambda: self._read(fn)))

    def lookup(self, fn: Callable[[Connection], T]) -> defer.Deferred[T]:
        """A short read by key on a hot path (a login's credentials, whether an account
        exists). On a SQLite file it runs at once on the calling thread: in WAL mode a
        reader neither waits for the writer nor holds it up, and the hop to the pool thread
        and back cost more than the read itself (~8 % of a login's CPU, measured). Over a
        network, or on an in-memory database whose one connection the writer shares, it is
        ``read``. Like ``read``, it sees what earlier, awaited writes committed."""
        if not self._inline_lookups:
            return self._timed("lookup", lambda: self._run(lambda: self._read(fn)))
        began = time.perf_counter()
        try:
            d = defer.succeed(self._read(fn))
        except Exception:
            d = defer.fail()
        if self.timing is not None:
            self.timing("lookup", time.perf_counter() - began)
        return d

    def write(self, fn: Callable[[Connection], T]) -> defer.Deferred[T]:
        """Run ``fn`` in a transaction, committed before the Deferred fires. A transaction
        the database aborted as a deadlock victim is retried (it changed nothing), and so is
        one whose pooled connection the server had closed (it never started)."""

        def work() -> T:
            for attempt in range(5):
                try:
                    with self.engine.begin() as conn:
                        return fn(conn)
                except DBAPIError as exc:
                    if attempt == 4 or not (_is_deadlock(exc) or exc.connection_invalidated):
                        raise
                    time.sleep(0.01 * (attempt + 1))
            raise AssertionError("unreachable")

        return self._timed("write", lambda: self._run(work))

    def call(self, fn: Callable[[], T]) -> defer.Deferred[T]:
        """Run any blocking function in the pool (e.g. PBKDF2)."""
        return self._run(fn)


def _is_deadlock(exc: DBAPIError) -> bool:
    """MySQL/MariaDB 1213 (deadlock) / 1205 (lock wait timeout), PostgreSQL 40P01 / 40001,
    SQLite "database is locked" after busy_timeout."""
    orig = exc.orig
    code = getattr(orig, "args", (None,))[0] if orig is not None else None
    if code in (1213, 1205):
        return True
    if getattr(orig, "pgcode", None) in ("40P01", "40001"):
        return True
    return "database is locked" in str(orig)
