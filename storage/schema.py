"""Tables. Alembic migrations in ``storage/migrations`` create exactly these; the contract
test suite checks that the migrated schema and this metadata agree.

MySQL/MariaDB index keys are limited to 3072 bytes (utf8mb4 = 4 bytes a character), which is
why key columns have explicit, modest lengths.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.mysql import MEDIUMTEXT

metadata = MetaData()

# Stanzas and XML blobs exceed MySQL's 64 KiB TEXT; MEDIUMTEXT holds 16 MiB.
BigText = Text().with_variant(MEDIUMTEXT(), "mysql", "mariadb")

# JIDs compare by exact (already PRECIS-prepared) code points: MySQL's default collations are
# case- and accent-insensitive, which would merge distinct JIDs, so every table is binary.
MYSQL: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}

HOST = 255
USER = 255

accounts = Table(
    "accounts",
    metadata,
    Column("host", String(HOST), primary_key=True),
    Column("username", String(USER), primary_key=True),
    Column("created", BigInteger, nullable=False),  # unix seconds
    # XEP-0133 disable-user: logins are refused (RFC 6120 §6.5.1 <account-disabled/>) and no
    # data is removed; 0/1 rather than Boolean so every backend stores it alike.
    Column("disabled", Integer, nullable=False, server_default="0"),
    Column("last_login", BigInteger, nullable=True),  # unix seconds of the last resource bound
    **MYSQL,
)

# One row per SCRAM hash; never a password (RFC 5802 §3, RFC 7677).
credentials = Table(
    "credentials",
    metadata,
    Column("host", String(HOST), primary_key=True),
    Column("username", String(USER), primary_key=True),
    Column("mechanism", String(32), primary_key=True),
    Column("salt", LargeBinary(), nullable=False),
    Column("iterations", Integer, nullable=False),
    Column("stored_key", LargeBinary(), nullable=False),
    Column("server_key", LargeBinary(), nullable=False),
    **MYSQL,
)

# Small per-user blobs (private XML, preferences): one generic table.
kv = Table(
    "kv",
    metadata,
    Column("host", String(HOST), primary_key=True),
    Column("username", String(USER), primary_key=True),
    Column("store", String(64), primary_key=True),
    Column("key", String(191), primary_key=True),
    Column("value", BigText, nullable=False),
    **MYSQL,
)

# Tables holding per-user rows keyed by (host, username): deleting an account clears them all
# (XEP-0077 §3.2 cancellation removes every bit of the user's data). New tables register here.
USER_TABLES: list[Table] = [credentials, kv, accounts]
