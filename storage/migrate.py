"""Alembic, driven programmatically: ``upgrade(engine)`` brings any backend to head.

Each feature area (roster, archive, rooms ...) owns one migration branch rooted at 0001
(``branch_labels``), so areas evolve independently; ``upgrade`` applies every head.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

MIGRATIONS = Path(__file__).parent / "migrations"


def _config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "heads") -> None:
    command.upgrade(_config(engine), revision)


def current(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def heads(engine: Engine) -> set[str]:
    return set(ScriptDirectory.from_config(_config(engine)).get_heads())
