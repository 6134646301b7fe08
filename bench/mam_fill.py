"""Grow a MAM archive to a million messages by cloning rows the server itself wrote.

Filling 10^6 messages through the protocol takes hours (each archived message is a committed
SQLite transaction: ~150/s for Prosody and ejabberd on this class of machine). Instead the
driver sends a few thousand real messages, then this tool copies the owner's rows inside the
server's own SQLite database while the server is stopped, keeping every column the server
wrote and changing only what must stay unique:

* Prosody (``prosodyarchive``): ``key`` (the archive id) gets a suffix; ``sort_id`` is new.
* ejabberd (``archive``): ``timestamp`` is both order and archive id; copies are shifted
  into the past by whole spans of the original rows.
* xmppd (``archive``): ``stanza_id`` (the MAM id, unique per owner) becomes
  ``c<copy>-<source row>``; ``id`` (the paging order) is new.

Run with the server stopped: ``python -m bench.mam_fill --kind prosody --db FILE --owner
u6000 --total 1000000``.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from collections.abc import Callable


def _grow(total: int, count: Callable[[], int], copy_rows: Callable[[int, int], None]) -> int:
    """Copy the owner's rows (copy number, how many) until there are ``total`` of them."""
    have, copy = count(), 0
    while 0 < have < total:
        copy += 1
        copy_rows(copy, min(have, total - have))
        have = count()
    return have


def _counter(db: sqlite3.Connection, sql: str, owner: str) -> Callable[[], int]:
    def count() -> int:
        row = db.execute(sql, (owner,)).fetchone()
        return int(row[0]) if row else 0

    return count


def fill_prosody(db: sqlite3.Connection, owner: str, total: int) -> int:
    def copy_rows(copy: int, n: int) -> None:
        db.execute(
            'INSERT INTO prosodyarchive (host, user, store, key, "when", "with", type, value) '
            'SELECT host, user, store, key || ?, "when", "with", type, value '
            "FROM prosodyarchive WHERE user = ? AND store = 'archive' "
            "ORDER BY sort_id LIMIT ?", (f"-c{time.monotonic_ns()}", owner, n))
        db.commit()

    return _grow(total, _counter(db, "SELECT COUNT(*) FROM prosodyarchive WHERE user = ? "
                                     "AND store = 'archive'", owner), copy_rows)


def fill_ejabberd(db: sqlite3.Connection, owner: str, total: int) -> int:
    def copy_rows(copy: int, n: int) -> None:
        lo, hi = db.execute("SELECT MIN(timestamp), MAX(timestamp) FROM archive "
                            "WHERE username = ?", (owner,)).fetchone()
        span = int(hi) - int(lo) + 1
        db.execute(
            "INSERT INTO archive (username, timestamp, peer, bare_peer, xml, txt, kind, nick) "
            "SELECT username, timestamp - ?, peer, bare_peer, xml, txt, kind, nick "
            "FROM archive WHERE username = ? ORDER BY timestamp LIMIT ?", (span, owner, n))
        db.commit()

    return _grow(total, _counter(db, "SELECT COUNT(*) FROM archive WHERE username = ?", owner),
                 copy_rows)


def fill_xmppd(url: str, owner: str, total: int) -> int:
    """xmppd on any of its databases, by SQLAlchemy URL. stanza_id is the MAM id, unique per
    owner and at most 40 characters: (copy number, source row) is unique and short."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    mysql = engine.dialect.name in ("mysql", "mariadb")
    new_id = ("CONCAT('c', :copy, '-', id)" if mysql
              else "'c' || CAST(:copy AS TEXT) || '-' || CAST(id AS TEXT)")
    with engine.connect() as conn:
        def count() -> int:
            return int(conn.execute(text("SELECT COUNT(*) FROM archive WHERE username = :o"),
                                    {"o": owner}).scalar_one())

        def copy_rows(copy: int, n: int) -> None:
            conn.execute(text(
                "INSERT INTO archive (host, username, stanza_id, with_jid, created, stanza) "
                f"SELECT host, username, {new_id}, with_jid, created, stanza "
                "FROM archive WHERE username = :owner ORDER BY id LIMIT :n"),
                {"copy": copy, "owner": owner, "n": n})
            conn.commit()

        have = _grow(total, count, copy_rows)
        if engine.dialect.name == "postgresql":
            conn.execute(text("ANALYZE archive"))
            conn.commit()
    engine.dispose()
    return have


FILLERS = {"prosody": fill_prosody, "ejabberd": fill_ejabberd}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.mam_fill", description=__doc__)
    p.add_argument("--kind", choices=sorted([*FILLERS, "xmppd"]), required=True)
    p.add_argument("--db", required=True, help="the server's SQLite file (server stopped); "
                   "for xmppd its storage URL (a plain path means SQLite)")
    p.add_argument("--owner", required=True, help="archive owner's localpart")
    p.add_argument("--total", type=int, required=True)
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    if args.kind == "xmppd":
        url = args.db if "://" in args.db else f"sqlite:///{args.db}"
        return _report(args, fill_xmppd(url, args.owner, args.total), t0)
    db = sqlite3.connect(args.db)
    try:
        db.execute("PRAGMA synchronous=OFF")
        have = FILLERS[args.kind](db, args.owner, args.total)
    finally:
        db.close()
    return _report(args, have, t0)


def _report(args: argparse.Namespace, have: int, t0: float) -> int:
    ok = have >= args.total
    print(json.dumps({"kind": args.kind, "owner": args.owner, "archive": have,
                      "seconds": round(time.perf_counter() - t0, 1), "complete": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
