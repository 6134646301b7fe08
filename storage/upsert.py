"""Insert-or-update of one row in a single statement, per dialect.

The portable "UPDATE, and INSERT if nothing was updated" races (two first writes both
insert) and, on MySQL/MariaDB under REPEATABLE READ, deadlocks: the UPDATE of a missing row
takes a gap lock, and two transactions then wait on each other's gap to INSERT. Native
upserts take no such gap lock and never fail on a concurrent first write.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Table, insert, update
from sqlalchemy.dialects.mysql import insert as mysql_insert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert


def upsert(conn: Connection, table: Table, key: dict[str, Any], values: dict[str, Any]) -> None:
    """Make the row identified by ``key`` (its primary key columns) hold ``values``."""
    row = {**key, **values}
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(pg_insert(table).values(row).on_conflict_do_update(
            index_elements=list(key), set_=values))
    elif dialect in ("mysql", "mariadb"):
        conn.execute(mysql_insert(table).values(row).on_duplicate_key_update(values))
    elif dialect == "sqlite":
        conn.execute(sqlite_insert(table).values(row).on_conflict_do_update(
            index_elements=list(key), set_=values))
    else:
        where = [table.c[k] == v for k, v in key.items()]
        if not conn.execute(update(table).where(*where).values(values)).rowcount:
            conn.execute(insert(table).values(row))
