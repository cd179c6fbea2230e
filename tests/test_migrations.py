"""The session store's schema is kept by Alembic migrations: a new database gets them all, an
old one (made by create_all before migrations) is stamped and upgraded with its data kept, and
the migrated schema is exactly what the ORM expects."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from bot.roleplay.assignments import NewAssignment
from bot.store import schema
from bot.store.sessions import SessionStore, _Base

OLD_TABLES = ("coachbot_sessions", "coachbot_feedback", "coachbot_applied_writes")


def test_a_new_database_gets_every_migration(tmp_path):
    store = SessionStore(f"sqlite:///{tmp_path / 'new.db'}")
    assert schema.current(store.engine) == schema.head() == "0002"
    assert "coachbot_assignments" in sa.inspect(store.engine).get_table_names()


def test_an_old_database_is_stamped_upgraded_and_keeps_its_sessions(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    old = [_Base.metadata.tables[name] for name in OLD_TABLES]
    _Base.metadata.create_all(engine, tables=old)  # what a store made before migrations
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO coachbot_sessions (id, kind, status, turns, created_at, updated_at, "
                "payload) VALUES ('abc', 'coach', 'active', 0, '2026-12-01 09:00:00', "
                "'2026-12-01 09:00:00', '{}')"
            )
        )
    engine.dispose()
    store = SessionStore(url)
    assert schema.current(store.engine) == schema.head()
    assert store.get_session("abc").kind == "coach"
    assert store.assignments() == []


def test_opening_an_up_to_date_database_again_changes_nothing(tmp_path):
    url = f"sqlite:///{tmp_path / 'twice.db'}"
    SessionStore(url).add_assignment(
        NewAssignment(assignee="sam", scenario_id="damaged-delivery", difficulty="easy")
    )
    again = SessionStore(url)
    assert [a.assignee for a in again.assignments()] == ["sam"]


def test_the_migrated_schema_is_what_the_orm_expects(tmp_path):
    store = SessionStore(f"sqlite:///{tmp_path / 'same.db'}")
    with store.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        ours = [
            d for d in compare_metadata(context, _Base.metadata)
            if schema.VERSION_TABLE not in str(d)
        ]  # fmt: skip
    assert ours == []


def test_the_migrations_compile_for_postgres():
    script = schema.sql_script("postgresql")
    assert (
        "CREATE TABLE coachbot_sessions" in script and "CREATE TABLE coachbot_assignments" in script
    )
    assert "TIMESTAMP WITH TIME ZONE" in script and "payload JSON NOT NULL" in script
    assert "UPDATE coachbot_alembic_version SET version_num='0002'" in script
