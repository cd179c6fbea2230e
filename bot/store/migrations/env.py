"""Alembic environment for coachbot's own tables: run in-process by bot.store.schema on the
connection it passes (no alembic.ini, no URL read here), or offline to print the SQL for a
dialect (``schema.sql_script``)."""

from __future__ import annotations

from alembic import context

from bot.store.schema import VERSION_TABLE

if context.is_offline_mode():
    context.configure(
        dialect_name=context.config.attributes["dialect"],
        literal_binds=True,
        version_table=VERSION_TABLE,
    )
else:
    connection = context.config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=None,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying
        version_table=VERSION_TABLE,
    )
with context.begin_transaction():
    context.run_migrations()
