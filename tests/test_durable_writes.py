"""Durable writes (bot/store/journal.py): the journal, the dead letters, replay and idempotence,
with the database made to fail by fault injection (bot/store/faults.py).

The outage makes every statement fail with the driver's OperationalError, as a stopped
database does; "restarting the app" is a new store and a new DurableWrites over the same data
directory.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from bot.store.faults import DatabaseOutage
from bot.store.journal import (
    DurableWrites,
    Write,
    coach_exchange_write,
    end_write,
    feedback_write,
    is_transient,
    practice_write,
    start_write,
)
from bot.store.sessions import SessionStore
from tests.test_storage import make_answer, make_transcript


def open_store(data: Path) -> SessionStore:
    return SessionStore(f"sqlite:///{data / 'coachbot.db'}", sleep=lambda _s: None)


def durable(data: Path, store: SessionStore, interval_s: float = 0.0) -> DurableWrites:
    return DurableWrites.in_dir(data, lambda: store, interval_s=interval_s)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def store(data: Path):
    s = open_store(data)
    yield s
    s.close()


# --------------------------------------------------------------------------- the outage


def test_the_injected_outage_fails_like_a_stopped_database(store):
    outage = DatabaseOutage(store.engine)
    outage.on = True
    with pytest.raises(Exception) as failure:
        store.start_session("coach")
    assert is_transient(failure.value) and "injected outage" in str(failure.value)
    outage.on = False
    assert store.start_session("coach")


# --------------------------------------------------------------------------- restart


def test_a_session_saved_during_an_outage_survives_a_restart_with_every_turn_once(data, store):
    writes = durable(data, store)
    outage = DatabaseOutage(store.engine)
    sid, coach = "a" * 32, "c" * 32
    assert writes.submit(start_write("practice", sid, scenario_id="damaged-delivery")) == "saved"
    assert writes.submit(practice_write(sid, make_transcript(turns=1), None)) == "saved"
    assert writes.submit(start_write("coach", coach)) == "saved"

    outage.on = True  # the database stops in the middle of the session
    assert writes.submit(practice_write(sid, make_transcript(turns=2), None)) == "queued"
    assert writes.submit(coach_exchange_write(coach, make_answer("first"))) == "queued"
    assert writes.submit(coach_exchange_write(coach, make_answer("second"))) == "queued"
    assert writes.submit(practice_write(sid, make_transcript(turns=3), None)) == "queued"
    assert writes.close() == 4  # the app stops while the database is still away
    store.close()

    # The app starts again, the database is back: the journal is replayed at start.
    again = open_store(data)
    restarted = durable(data, again)
    assert len(restarted) == 4
    assert restarted.start() == 0
    assert again.get_session(sid).turns == 3
    assert [a.question for a in again.get_session(coach).exchanges()] == ["first", "second"]
    assert restarted.replay() == 0  # nothing left, nothing applied twice
    assert [a.question for a in again.get_session(coach).exchanges()] == ["first", "second"]
    restarted.close()
    again.close()


def test_a_write_whose_commit_answer_was_lost_is_not_applied_twice(data, store, monkeypatch):
    """The commit went through but the answer never came (a connection dropped): the write is
    journalled, and its replay must not add the exchange a second time."""
    writes = durable(data, store)
    coach = "c" * 32
    writes.submit(start_write("coach", coach))
    original = Session.commit
    lost = {"left": 1}

    def commit_then_lose_the_answer(self: Session) -> None:
        original(self)
        if lost["left"]:
            lost["left"] -= 1
            raise OperationalError("COMMIT", {}, sqlite3.OperationalError("disk I/O error"))

    monkeypatch.setattr(Session, "commit", commit_then_lose_the_answer)
    store.attempts = 1
    assert writes.submit(coach_exchange_write(coach, make_answer("once"))) == "queued"
    assert writes.replay() == 0
    assert [a.question for a in store.get_session(coach).exchanges()] == ["once"]


def test_the_same_write_applied_twice_changes_nothing(store):
    coach = "c" * 32
    store.apply(start_write("coach", coach))
    exchange = coach_exchange_write(coach, make_answer("q"))
    assert store.apply(exchange) is True
    assert store.apply(Write.model_validate_json(exchange.model_dump_json())) is False
    assert store.get_session(coach).turns == 1


# --------------------------------------------------------------------------- permanent errors


def too_long(store: SessionStore, marker: str) -> None:
    """Statements that carry ``marker`` fail as Postgres fails a value too long for a column."""

    @event.listens_for(store.engine, "before_cursor_execute")
    def _refuse(conn, cursor, statement, params, context, executemany) -> None:
        if marker in str(params):
            raise sqlite3.DataError("value too long for type character varying(500)")


def test_a_permanent_error_goes_to_the_dead_letters_and_never_blocks_later_writes(
    data, store, caplog
):
    writes = durable(data, store)
    outage = DatabaseOutage(store.engine)
    too_long(store, "BAD-VALUE")
    coach, other = "c" * 32, "d" * 32
    writes.submit(start_write("coach", coach))
    writes.submit(start_write("coach", other))

    outage.on = True
    assert writes.submit(coach_exchange_write(coach, make_answer("before"))) == "queued"
    assert writes.submit(coach_exchange_write(coach, make_answer("BAD-VALUE"))) == "queued"
    assert writes.submit(coach_exchange_write(other, make_answer("after"))) == "queued"
    outage.on = False
    with caplog.at_level(logging.ERROR, logger="bot.store.journal"):
        assert writes.replay() == 0  # the refused write no longer blocks the others
        assert writes.submit(coach_exchange_write(coach, make_answer("later"))) == "saved"
    assert [a.question for a in store.get_session(coach).exchanges()] == ["before", "later"]
    assert [a.question for a in store.get_session(other).exchanges()] == ["after"]
    [letter] = writes.dead_letters.read()
    assert letter["error"].startswith("WriteRefusedError") and "value too long" in letter["error"]
    assert letter["write"]["args"]["answer"]["question"] == "BAD-VALUE"
    refused = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 1 and str(writes.dead_letters.path) in refused[0]


def test_a_refused_write_submitted_directly_is_reported_as_refused(data, store):
    writes = durable(data, store)
    too_long(store, "BAD-VALUE")
    writes.submit(start_write("coach", "c" * 32))
    assert writes.submit(coach_exchange_write("c" * 32, make_answer("BAD-VALUE"))) == "refused"
    assert len(writes) == 0 and len(writes.dead_letters.read()) == 1


def test_a_write_for_a_session_that_does_not_exist_is_a_dead_letter_not_a_retry(data, store):
    writes = durable(data, store)
    assert writes.submit(end_write("0" * 32)) == "refused"
    assert "no saved session" in writes.dead_letters.read()[0]["error"]
    assert len(writes) == 0


def test_an_unreadable_journal_entry_is_a_dead_letter_and_the_rest_is_replayed(data, store):
    writes = durable(data, store)
    outage = DatabaseOutage(store.engine)
    outage.on = True
    writes.submit(start_write("coach", "c" * 32))
    with writes.journal._db:  # a damaged entry ahead of it (a half-written line, say)
        writes.journal._db.execute("UPDATE writes SET seq = 0, id = 'x', body = '{\"op\": '")
    writes.submit(start_write("coach", "d" * 32))
    outage.on = False
    assert writes.replay() == 0
    assert store.get_session("d" * 32).kind == "coach"
    [letter] = writes.dead_letters.read()
    assert letter["write"] == '{"op": ' and "unreadable" in letter["error"]


# --------------------------------------------------------------------------- order, timer


def test_a_queued_older_save_never_overwrites_a_newer_one(data, store):
    writes = durable(data, store)
    outage = DatabaseOutage(store.engine)
    sid = "a" * 32
    writes.submit(start_write("practice", sid))
    outage.on = True
    writes.submit(practice_write(sid, make_transcript(turns=1), None))
    outage.on = False
    # The database is back: the newer save goes behind the older one, not ahead of it.
    assert writes.submit(practice_write(sid, make_transcript(turns=3), None)) == "saved"
    assert store.get_session(sid).turns == 3


def test_the_timer_saves_the_journal_without_a_next_save(data, store):
    writes = durable(data, store, interval_s=0.05)
    outage = DatabaseOutage(store.engine)
    coach = "c" * 32
    outage.on = True
    assert writes.submit(start_write("coach", coach)) == "queued"
    assert writes.submit(coach_exchange_write(coach, make_answer("q"))) == "queued"
    writes.start()
    time.sleep(0.2)
    assert len(writes) == 2  # still away: kept
    outage.on = False
    deadline = time.monotonic() + 5
    while len(writes) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(writes) == 0
    assert store.get_session(coach).turns == 1
    writes.close()


def test_a_store_that_cannot_be_opened_is_a_transient_failure(data, store):
    from bot.errors import StorageError

    reachable = {"now": False}

    def opener() -> SessionStore:
        if not reachable["now"]:
            raise StorageError("could not connect to the database")
        return store

    writes = DurableWrites.in_dir(data, opener, interval_s=0)
    assert writes.submit(start_write("coach", "c" * 32)) == "queued"
    reachable["now"] = True
    assert writes.replay() == 0 and store.get_session("c" * 32).kind == "coach"


def test_an_unusable_journal_directory_falls_back_to_memory(tmp_path, store, caplog):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the data directory should be")
    with caplog.at_level(logging.ERROR, logger="bot.store.journal"):
        writes = durable(blocker / "data", store)
    assert writes.journal.path is not None and "kept in memory" in caplog.text
    assert writes.submit(start_write("coach", "c" * 32)) == "saved"


# --------------------------------------------------------------------------- feedback


def test_feedback_goes_through_the_journal_too(tmp_path, data, store):
    from bot.service import Services
    from tests.conftest import make_settings

    services = Services(make_settings(tmp_path), store=store)
    outage = DatabaseOutage(store.engine)
    outage.on = True
    result = services.record_feedback(thread_id="t1", step_id="s1", value=0, comment="meh")
    assert result == "queued" and len(services.writes) == 1
    outage.on = False
    assert services.writes.replay() == 0
    store.start_session("coach", session_id="c" * 32, thread_id="t1")
    [thumb] = store.get_session("c" * 32).feedback
    assert (thumb.step_id, thumb.value, thumb.comment) == ("s1", 0, "meh")


def test_a_bad_feedback_value_is_refused_before_it_is_journalled():
    from bot.errors import CoachbotError

    with pytest.raises(CoachbotError, match="feedback value"):
        feedback_write(thread_id="t", step_id="s", value=5)
