"""SQLite files as backups: which kind a backup file is, whether a SQLite one is whole and
an xmppd database, an online snapshot of a live database, and copying one over another.

The snapshot uses SQLite's online backup API in a single step: it holds one read
transaction for the whole copy, so the copy is one consistent state; in WAL mode the
server's writers are not blocked meanwhile (a stepwise copy would restart whenever another
connection wrote). The result uses a rollback journal, so it is one self-contained file.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path
from typing import Final

from sqlalchemy.engine import make_url

SQLITE_MAGIC: Final = b"SQLite format 3\x00"


class BackupError(Exception):
    """A clear, complete message for the operator; nothing was changed."""


def kind_of(path: Path) -> str:
    """"sqlite" or "xml"; BackupError for anything else."""
    try:
        with path.open("rb") as f:
            head = f.read(64)
    except OSError as exc:
        raise BackupError(f"cannot read {path}: {exc.strerror or exc}") from None
    if head.startswith(SQLITE_MAGIC):
        return "sqlite"
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        return "xml"
    raise BackupError(f"{path} is not an xmppd backup: neither a SQLite database nor a "
                      "XEP-0227 XML export")


def sqlite_path(url: str) -> Path | None:
    u = make_url(url)
    if u.get_backend_name() != "sqlite":
        return None
    if (u.database or "") in ("", ":memory:"):
        raise BackupError("the database is in memory: there is nothing to back up")
    return Path(u.database or "")


def readonly(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)


def verify_sqlite(path: Path) -> None:
    """A SQLite backup is whole and is an xmppd database; BackupError otherwise."""
    try:
        con = readonly(path)
        try:
            result = [r[0] for r in con.execute("PRAGMA integrity_check")]
            tables = {r[0] for r in con.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} is damaged: {exc}") from None
    if result != ["ok"]:
        raise BackupError(f"{path} is damaged: " + "; ".join(result[:5]))
    if not {"alembic_version", "accounts"} <= tables:
        raise BackupError(f"{path} is a SQLite database but not one of xmppd")


def sqlite_snapshot(source: Path, target: Path) -> None:
    """Copy a (possibly live) SQLite database with the online backup API into ``target``,
    a self-contained file (rollback journal, not WAL), checked before it is kept."""
    if not source.exists():
        raise BackupError(f"no database at {source}: nothing to back up")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        _copy_pages(sqlite3.connect(source, timeout=30), sqlite3.connect(tmp), "DELETE")
        with tmp.open("rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        verify_sqlite(tmp)
        os.replace(tmp, target)
    except sqlite3.Error as exc:
        raise BackupError(f"backup of {source} failed: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _copy_pages(src: sqlite3.Connection, dst: sqlite3.Connection, journal_mode: str) -> None:
    """Every page of ``src`` into ``dst``, which then keeps ``journal_mode``; both closed.
    pages=-1: one step under one read transaction, so the copy is one snapshot (stepwise
    copies restart whenever another connection writes)."""
    try:
        src.backup(dst, pages=-1)
        dst.execute(f"PRAGMA journal_mode={journal_mode}")
    finally:
        dst.close()
        src.close()


def copy_into(backup: Path, target: Path) -> None:
    """Copy the pages of ``backup`` over ``target`` (created if missing), which keeps or
    gets WAL mode, as the server runs it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        _copy_pages(readonly(backup), sqlite3.connect(target, timeout=30), "WAL")
    except sqlite3.Error as exc:
        raise BackupError(f"restore into {target} failed: {exc}") from None
