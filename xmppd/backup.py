"""``xmppd backup|restore|export|import``: copies of the data that survive the machine, and
moves between servers.

* ``backup FILE``: on SQLite a consistent snapshot of the live database through SQLite's
  online backup API (a running server keeps going: in WAL mode the copy reads one snapshot
  while writers continue); on PostgreSQL and MariaDB a XEP-0227 export of everything, read
  in one repeatable-read transaction (their native dumps are described in docs/OPERATIONS.md).
* ``restore FILE``: either kind of backup, after checking it (a SQLite file must pass
  ``PRAGMA integrity_check`` and be an xmppd database; an export is imported in one
  transaction, so a damaged one changes nothing). A database that already holds data is
  only overwritten with ``--force``. A SQLite backup restores into PostgreSQL or MariaDB too
  (through an export of it).
* ``export [FILE]`` / ``import FILE...``: XEP-0227 files (xmppd/pie), for everything, some
  hosts (``--host``) or some users (``--user``); import is all-or-nothing per run and
  changes nothing when repeated.

These commands use the database directly, with the server stopped or running. Importing or
restoring while it runs is allowed but a running server keeps rosters and rooms it has
loaded in memory: restart it afterwards (docs/OPERATIONS.md).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Connection, Engine, delete, event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from storage.sqlite_backup import (
    BackupError,
    copy_into,
    kind_of,
    sqlite_path,
    sqlite_snapshot,
    verify_sqlite,
)
from xmppd.config import ServerConfig

AddCommand = Callable[[str, Callable[[argparse.Namespace], int], str], argparse.ArgumentParser]


# -- engines -----------------------------------------------------------------------------------
def open_engine(url: str, write: bool) -> Engine:
    """The database at ``url``, migrated to the current schema, whose transactions really
    are transactions on SQLite too: pysqlite only starts one before a write, so reads would
    not share a snapshot; here every transaction begins explicitly (IMMEDIATE for writers,
    which take the write lock at once instead of failing to upgrade later)."""
    from storage.sql import Database

    db = Database(url, 1)
    db.migrate()
    engine = db.engine
    if db.dialect == "sqlite":
        @event.listens_for(engine, "connect")
        def _autocommit(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        engine.dispose()  # the migration's pooled connection predates the listeners
    return engine


@contextlib.contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """One read transaction that sees a single consistent state of the database."""
    with engine.connect() as conn:
        if engine.dialect.name != "sqlite":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            yield conn


def holds_data(conn: Connection) -> bool:
    """Whether the database has anything a restore would overwrite (the server's own
    bookkeeping, such as its host-less secrets, does not count)."""
    from storage.archive import archive
    from storage.offline import offline_messages
    from storage.rooms import muc_rooms
    from storage.schema import accounts, kv

    for table, where in ((accounts, None), (muc_rooms, None), (archive, None),
                         (offline_messages, None), (kv, kv.c.host != "")):
        stmt = select(func.count()).select_from(table)
        if where is not None:
            stmt = stmt.where(where)
        if conn.execute(stmt).scalar_one():
            return True
    return False


# -- files -------------------------------------------------------------------------------------
@contextlib.contextmanager
def private_output(path: str) -> Iterator[IO[str]]:
    """Write ``path`` readable by its owner only (XEP-0227 "Security Considerations": the
    data is confidential) and atomically: a failed export leaves no partial file."""
    if path == "-":
        yield sys.stdout
        return
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- commands ----------------------------------------------------------------------------------
def _config(args: argparse.Namespace) -> ServerConfig:
    from xmppd.__main__ import _config as load

    return load(args)


def _room_hosts(cfg: ServerConfig) -> list[str]:
    muc = cfg.plugins.get("muc") if isinstance(cfg.plugins, dict) else None
    service = muc.get("service") if isinstance(muc, dict) else None
    return [service] if isinstance(service, str) and service else []


def run_import(engine: Engine, cfg: ServerConfig, files: list[Path], dry_run: bool = False,
               wipe: bool = False, hosts: list[str] | None = None,
               users: list[str] | None = None) -> Any:
    """Import ``files`` in one transaction; returns the Report. PieError/BackupError on
    failure, after which the database is as it was."""
    from storage.schema import metadata
    from xmppd.pie.importer import Importer
    from xmppd.pie.model import Report

    report = Report()

    class DryRun(Exception):
        pass

    served = [*cfg.hosts, *_room_hosts(cfg)]
    try:
        with engine.begin() as conn:
            if wipe:
                for table in reversed(metadata.sorted_tables):
                    conn.execute(delete(table))
            for path in files:
                Importer(conn, served, cfg.auth.iteration_count, report, hosts or (),
                         users or ()).run(path)
            report.finish()
            if dry_run:
                raise DryRun
    except DryRun:
        pass
    except SQLAlchemyError as exc:
        raise BackupError(f"the database refused the import ({exc.__class__.__name__}: "
                          f"{str(exc).splitlines()[0]})") from None
    return report


def cmd_export(args: argparse.Namespace) -> int:
    from xmppd.accounts import AccountError, split_user
    from xmppd.pie.exporter import export

    cfg = _config(args)
    try:
        users = [split_user(u) for u in args.user]
    except AccountError as exc:
        raise SystemExit(f"error: {exc}") from None
    engine = open_engine(cfg.storage_url, write=False)
    try:
        with snapshot(engine) as conn, private_output(args.file) as out:
            n = export(conn, out, args.host, users)
    except OSError as exc:
        print(f"error: cannot write {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    where = "standard output" if args.file == "-" else args.file
    print(f"exported {n} account(s) to {where} (XEP-0227)", file=sys.stderr)
    return 0


def _print_report(report: Any, what: str) -> None:
    for note in report.notes:
        print(f"note: {note}")
    print(f"{what}: {report.summary()}")


def cmd_import(args: argparse.Namespace) -> int:
    from xmppd.accounts import AccountError, split_user
    from xmppd.jid import JIDError, prepare_domain
    from xmppd.pie.model import PieError

    cfg = _config(args)
    try:
        hosts = [prepare_domain(h) for h in args.host]
        users = ["{1}@{0}".format(*split_user(u)) for u in args.user]
    except (AccountError, JIDError) as exc:
        raise SystemExit(f"error: {exc}") from None
    engine = open_engine(cfg.storage_url, write=True)
    files = [Path(f) for f in args.files]
    try:
        report = run_import(engine, cfg, files, args.dry_run, hosts=hosts, users=users)
    except (PieError, BackupError) as exc:
        print(f"error: {exc}\nnothing was imported", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    _print_report(report, "dry run, nothing written" if args.dry_run else "imported")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    cfg = _config(args)
    target = Path(args.file)
    try:
        source = sqlite_path(cfg.storage_url)
        if source is not None:
            sqlite_snapshot(source, target)
            print(f"backup of {source} written to {target} (SQLite snapshot, "
                  f"{target.stat().st_size} bytes)")
            return 0
        engine = open_engine(cfg.storage_url, write=False)
        try:
            from xmppd.pie.exporter import export

            with snapshot(engine) as conn, private_output(args.file) as out:
                n = export(conn, out)
        finally:
            engine.dispose()
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: cannot write {target}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"backup written to {target} (XEP-0227 export of {n} account(s); for "
          f"{make_url(cfg.storage_url).get_backend_name()} see also docs/OPERATIONS.md)")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from xmppd.pie.model import PieError

    cfg = _config(args)
    path = Path(args.file)
    try:
        kind = kind_of(path)
        if kind == "sqlite":
            verify_sqlite(path)
        engine = open_engine(cfg.storage_url, write=True)
        try:
            with engine.connect() as conn, conn.begin():
                full = holds_data(conn)
            if full and not args.force:
                raise BackupError("the database already holds data; restoring would replace "
                                  "it: add --force to do so (stop the server first)")
            target = sqlite_path(cfg.storage_url)
            if kind == "sqlite" and target is not None:
                engine.dispose()
                _restore_sqlite(path, target, cfg.storage_url)
                report = None
            elif kind == "sqlite":
                report = _restore_via_export(path, engine, cfg)
            else:
                report = run_import(engine, cfg, [path], wipe=True)
        finally:
            engine.dispose()
    except (BackupError, PieError) as exc:
        print(f"error: {exc}\nnothing was changed", file=sys.stderr)
        return 1
    if report is not None:
        _print_report(report, "restored")
    print(f"restored {path} into {make_url(cfg.storage_url).render_as_string()}; "
          "start (or restart) the server now")
    return 0


def _restore_sqlite(backup: Path, target: Path, url: str) -> None:
    """Page-for-page copy of a verified backup over the database, then migrations (an older
    backup is brought to the current schema)."""
    from storage.sql import Database

    copy_into(backup, target)
    db = Database(url, 1)
    try:
        db.migrate()
    finally:
        db.stop()


def _restore_via_export(backup: Path, engine: Engine, cfg: ServerConfig) -> Any:
    """A SQLite backup into PostgreSQL or MariaDB: brought to the current schema in a
    scratch copy, exported, and that export imported (in one transaction)."""
    from xmppd.pie.exporter import export

    with tempfile.TemporaryDirectory(prefix="xmppd-restore-") as tmp:
        scratch = Path(tmp) / "backup.sqlite"
        copy_into(backup, scratch)
        copy = open_engine(f"sqlite:///{scratch}", write=False)
        xml = Path(tmp) / "backup.xml"
        try:
            with snapshot(copy) as conn, xml.open("w", encoding="utf-8") as out:
                export(conn, out)
        finally:
            copy.dispose()
        return run_import(engine, cfg, [xml], wipe=True)


def add_commands(add: AddCommand) -> None:
    """Register the commands on the ``xmppd`` parser (``add`` is __main__'s helper)."""
    exp = add("export", cmd_export, "write accounts and their data as a XEP-0227 file")
    exp.add_argument("file", nargs="?", default="-", help="output file (default: stdout)")
    exp.add_argument("--host", action="append", default=[], help="only this host (repeat)")
    exp.add_argument("--user", action="append", default=[], help="only this user (repeat)")
    imp = add("import", cmd_import, "import XEP-0227 files (Prosody, ejabberd, xmppd)")
    imp.add_argument("files", nargs="+", help="XEP-0227 files (all or nothing)")
    imp.add_argument("--dry-run", action="store_true",
                     help="check and count everything, then roll back")
    imp.add_argument("--host", action="append", default=[], help="only this host (repeat)")
    imp.add_argument("--user", action="append", default=[], help="only this user (repeat)")
    bak = add("backup", cmd_backup, "write a consistent backup (the server may be running)")
    bak.add_argument("file")
    res = add("restore", cmd_restore, "restore a backup made by `xmppd backup`")
    res.add_argument("file")
    res.add_argument("--force", action="store_true",
                     help="replace a database that already holds data")
