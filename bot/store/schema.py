"""coachbot's own tables, kept up by Alembic migrations (bot/store/migrations/versions/).

Every store opens through :func:`migrate`: a new database gets every migration, one created
before migrations existed (its tables are there, no version row) is stamped at the baseline
first, and an up-to-date one is left alone. Works the same on SQLite and Postgres (where an
advisory lock makes replicas that start together migrate one at a time; on SQLite the store
retries while another process holds the database).

To add a migration, copy the newest file in ``migrations/versions/``, bump ``revision`` and
``down_revision``, and change the ORM rows in bot/store/sessions.py to match
(tests/test_migrations.py checks that the two agree).
"""

from __future__ import annotations

import io
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "coachbot_alembic_version"
BASELINE = "0001"  # the tables as create_all made them before migrations existed
_MIGRATION_LOCK = 7_214_001  # a Postgres advisory lock: replicas starting together take turns


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def sql_script(dialect: str) -> str:
    """Every migration as SQL for ``dialect`` (e.g. "postgresql"), without a database: for a
    DBA to review, and for the tests to check that the migrations compile there."""
    config = Config(output_buffer=io.StringIO())
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["dialect"] = dialect
    command.upgrade(config, "head", sql=True)
    return config.output_buffer.getvalue()  # type: ignore[union-attr]


def head() -> str:
    """The newest migration's revision."""
    script = ScriptDirectory(str(MIGRATIONS))
    return str(script.get_current_head())


def current(engine: Engine) -> str | None:
    """The revision the database is at (None: never migrated)."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def migrate(engine: Engine) -> str:
    """Bring the database to the newest revision; return it."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        config = _config(connection)
        tables = set(inspect(connection).get_table_names())
        if VERSION_TABLE not in tables and "coachbot_sessions" in tables:
            command.stamp(config, BASELINE)  # made by create_all before migrations existed
        command.upgrade(config, "head")
    return head()
