"""Storage backends for tests: SQLite always; PostgreSQL/MariaDB when their URL is set.

Each use makes a fresh database and drops it afterwards, because the services keep state
between runs. Without a URL the backend is skipped loudly (and in CI, where .ci/run sets the
URLs, a missing URL is a failure instead).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ENV = {"postgres": "XMPPD_TEST_POSTGRES_URL", "mysql": "XMPPD_TEST_MYSQL_URL",
       "redis": "XMPPD_TEST_REDIS_URL"}
# XMPPD_TEST_BACKENDS narrows the list (tox -e stock runs the integration tests once more,
# on Twisted's stock reactor, on SQLite only).
ALL = tuple(os.environ.get("XMPPD_TEST_BACKENDS", "sqlite,postgres,mysql").split(","))
SKIPPED: set[str] = set()


def require(backend: str) -> str:
    """The server URL for a backend, or skip/fail when it is not configured."""
    var = ENV[backend]
    url = os.environ.get(var)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"{var} is not set but CI is: the {backend} backend must be tested")
        SKIPPED.add(backend)
        pytest.skip(f"{backend} backend not tested: set {var} to run it")
    return url


@contextmanager
def database(backend: str, tmp: Path) -> Iterator[str]:
    """Yield a SQLAlchemy URL of a brand-new, empty database; drop it afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp / 'xmppd-test.sqlite'}"
        return
    base = make_url(require(backend))
    name = f"xmppd_t_{secrets.token_hex(6)}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if backend == "mysql":
            conn.execute(text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 "
                              "COLLATE utf8mb4_bin"))
        else:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            if backend == "mysql":
                conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
            else:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
