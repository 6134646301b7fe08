"""Alembic environment: the engine comes from storage.migrate (no alembic.ini, no URL here)."""

from alembic import context

import storage.facade  # noqa: F401  (imports every store module, so metadata is complete)
from storage.schema import metadata

engine = context.config.attributes["engine"]
with engine.begin() as connection:
    context.configure(connection=connection, target_metadata=metadata,
                      render_as_batch=engine.dialect.name == "sqlite")
    context.run_migrations()
