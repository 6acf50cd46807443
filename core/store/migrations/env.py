"""Alembic environment of the store: run programmatically by ``SqlStore.migrate`` on its own connection."""

from __future__ import annotations

from activedataflow.store.migrations import VERSION_TABLE
from activedataflow.store.schema import metadata
from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only the store runs these migrations
    raise RuntimeError("run migrations through activedataflow.store.open_store(url).migrate()")

context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
