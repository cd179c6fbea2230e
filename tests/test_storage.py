"""The session store: round trips, feedback, listing, id prefixes, retries, refused writes,
Chainlit's tables (checked against Chainlit's own SQLAlchemyDataLayer) and `coachbot sessions`.

Transcripts, scorecards and coach answers are built by hand: no model is needed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.schema import CreateTable
from typer.testing import CliRunner

from bot.cli import common
from bot.cli import main as cli
from bot.coach.models import Citation, CoachAnswer
from bot.errors import CoachbotError, StorageError
from bot.roleplay.models import Hint, MoodState, Transcript, Turn
from bot.roleplay.scoring import CheckResult, Evidence, Scorecard
from bot.store.sessions import (
    _CL_TABLES,
    SessionStore,
    _Base,
    _engine_url,
    chainlit_conninfo,
    chainlit_table_ddl,
    create_chainlit_tables,
    register_sqlite_adapters,
)
from tests.conftest import make_settings

runner = CliRunner()


# --------------------------------------------------------------------------- builders


def make_transcript(turns: int = 2, outcome: str | None = None) -> Transcript:
    start = MoodState(anger=7, patience=5)
    lines = [
        ("Calm down, it's only a parcel.", "Don't tell me to calm down!", "escalate", 9),
        ("That sounds really frustrating, I'm sorry.", "It is. Nobody listens.", "soften", 8),
        ("Would a replacement tomorrow work for you?", "Fine, that works for me.", "accept", 5),
    ]
    made = []
    for i, (trainee, customer, beat, anger) in enumerate(lines[:turns], start=1):
        made.append(
            Turn(
                index=i,
                trainee=trainee,
                customer=customer,
                beat=beat,
                state=MoodState(anger=anger, patience=5 - i, trust=4 + i, feels_heard=i >= 2),
                detections=[{"behaviour_id": "tell_to_calm_down", "kind": "avoid"}]
                if i == 1
                else [],
            )
        )
    return Transcript(
        scenario_id="damaged-delivery",
        scenario_title="The damaged delivery",
        customer_name="Dana",
        difficulty="hard",
        seed=7,
        opening_line="My parcel arrived smashed!",
        start_state=start,
        turns=made,
        hints=[
            Hint(
                turn=1,
                text="Validate their feelings.",
                behaviour_id="validate_feelings",
                example="That sounds awful.",
                source_origin="000",
                source_quote="Validate.",
            )
        ],
        outcome=outcome,  # type: ignore[arg-type]
    )


def make_scorecard(score: int = 72) -> Scorecard:
    return Scorecard(
        score=score,
        weighting={"listening": 35, "solving together": 25, "avoiding triggers": 30},
        items=[
            CheckResult(
                key="validated",
                label="Validated their feelings",
                kind="do",
                passed=True,
                points=10,
                max_points=10,
                evidence=[Evidence(turn=2, quote="really frustrating", line="...")],
                source_origin="004",
                source_quote="Validate their feelings.",
            )
        ],
        rewrites=[],
        mood=[7, 9, 8],
        outcome="resolved",
        hints_used=1,
        summary="1 of 1 checks passed",
    )


def make_answer(question: str) -> CoachAnswer:
    return CoachAnswer(
        question=question,
        retrieval_query=question,
        answer=f"Say: “I hear you.” Why: it helps [1]. ({question})",
        say="I hear you.",
        why="it helps [1]",
        citations=[
            Citation(
                number=1,
                text="Listen first.",
                score=0.8,
                metadata={"title": "Handling anger", "section": "Listen", "origin": "004"},
            )
        ],
        grounded=True,
    )


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def store(tmp_path: Path, sleeps: list[float]) -> SessionStore:
    s = SessionStore(f"sqlite:///{tmp_path / 'db' / 'coachbot.db'}", sleep=sleeps.append)
    yield s
    s.close()


def locked(times: int | None):
    """A Session.commit that fails with "database is locked" ``times`` times (None: always)."""
    original = Session.commit
    calls = {"n": 0}

    def commit(self: Session) -> None:
        calls["n"] += 1
        if times is None or calls["n"] <= times:
            raise OperationalError("COMMIT", {}, sqlite3.OperationalError("database is locked"))
        original(self)

    return commit, calls


# --------------------------------------------------------------------------- basics


def test_creates_the_parent_dir_enables_wal_and_reopens(tmp_path):
    path = tmp_path / "deep" / "er" / "coachbot.db"
    url = f"sqlite:///{path}"
    first = SessionStore(url)
    sid = first.start_session("coach", user="sam")
    first.close()
    assert path.exists()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    second = SessionStore(url)  # create_all again: idempotent, data kept
    assert [s.id for s in second.list_sessions()] == [sid]
    second.close()


def test_from_settings_uses_the_configured_database(tmp_path):
    settings = make_settings(tmp_path)
    store = SessionStore.from_settings(settings)
    store.start_session("coach")
    store.close()
    assert (settings.data_dir / "coachbot.db").exists()


def test_practice_round_trip(store):
    sid = store.start_session(
        "practice", user="sam", role="trainee", thread_id="t-1", scenario=("x", "X", "easy", 1)
    )
    assert len(sid) == 32 and uuid.UUID(hex=sid).version == 4
    first = store.get_session(sid)
    assert (first.scenario_id, first.difficulty, first.seed) == ("x", "easy", 1)
    assert first.status == "active" and first.turns == 0

    transcript = make_transcript(turns=2)
    summary = store.save_practice(sid, transcript)
    assert summary.status == "active" and summary.turns == 2 and summary.score is None
    # The transcript is authoritative for the scenario fields.
    assert (summary.scenario_id, summary.difficulty, summary.seed) == (
        "damaged-delivery",
        "hard",
        7,
    )

    done = make_transcript(turns=3, outcome="resolved")
    card = make_scorecard(81)
    store.save_practice(sid, done, card)
    record = store.get_session(sid)
    assert record.status == "ended" and record.outcome == "resolved" and record.score == 81
    assert record.turns == 3
    assert record.transcript() == done
    assert record.scorecard() == card
    assert record.user == "sam" and record.role == "trainee" and record.thread_id == "t-1"
    assert (
        record.created_at.tzinfo is not None and record.created_at.utcoffset().total_seconds() == 0
    )
    assert record.updated_at > record.created_at

    # A later save without a scorecard keeps the one already saved.
    store.save_practice(sid, done)
    assert store.get_session(sid).scorecard() == card


def test_practice_with_an_outcome_is_ended_without_a_scorecard(store):
    sid = store.start_session("practice", scenario_id="damaged-delivery", difficulty="hard")
    summary = store.save_practice(sid, make_transcript(turns=1, outcome="customer_left"))
    assert summary.status == "ended" and summary.outcome == "customer_left"
    assert summary.score is None


def test_coach_round_trip(store):
    sid = store.start_session("coach", user="ali", role="agent", thread_id="t-9")
    answers = [make_answer("They are shouting"), make_answer("and if that fails?")]
    for answer in answers:
        store.add_coach_exchange(sid, answer)
    record = store.get_session(sid)
    assert record.turns == 2 and record.kind == "coach"
    assert record.exchanges() == answers
    assert record.transcript() is None
    ended = store.end_session(sid)
    assert ended.status == "ended"


def test_wrong_kind_and_unknown_sessions_are_clear_errors(store):
    coach = store.start_session("coach")
    practice = store.start_session("practice")
    with pytest.raises(CoachbotError, match="coach session, not practice"):
        store.save_practice(coach, make_transcript())
    with pytest.raises(CoachbotError, match="practice session, not coach"):
        store.add_coach_exchange(practice, make_answer("q"))
    with pytest.raises(CoachbotError, match="no saved session"):
        store.add_coach_exchange("0" * 32, make_answer("q"))
    with pytest.raises(CoachbotError, match="unknown session kind"):
        store.start_session("chat")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- feedback


def test_feedback_upserts_per_message_and_is_counted(store):
    sid = store.start_session("coach", thread_id="thread-1")
    first = store.record_feedback(thread_id="thread-1", step_id="step-a", value=1, user="sam")
    again = store.record_feedback(
        thread_id="thread-1", step_id="step-a", value=0, comment="too long", user="sam"
    )
    assert again == first  # the same message: the thumb is replaced
    store.record_feedback(thread_id="thread-1", step_id="step-b", value=1)
    store.record_feedback(thread_id="other-thread", step_id="step-a", value=1)

    record = store.get_session(sid)
    assert (record.feedback_up, record.feedback_down) == (1, 1)
    by_step = {f.step_id: f for f in record.feedback}
    assert by_step["step-a"].value == 0 and by_step["step-a"].comment == "too long"
    assert by_step["step-a"].user == "sam" and by_step["step-a"].session_id == sid
    [summary] = store.list_sessions()
    assert (summary.feedback_up, summary.feedback_down) == (1, 1)


def test_feedback_given_before_the_session_row_is_linked_when_it_starts(store):
    store.record_feedback(thread_id="early", step_id="s1", value=1)
    sid = store.start_session("coach", thread_id="early")
    assert store.get_session(sid).feedback_up == 1


def test_feedback_value_must_be_a_thumb(store):
    with pytest.raises(CoachbotError, match="1 \\(up\\) or 0 \\(down\\)"):
        store.record_feedback(thread_id="t", step_id="s", value=5)


# --------------------------------------------------------------------------- listing, lookup


def test_list_is_newest_first_with_filters(store):
    made = [
        store.start_session("practice", user="sam", role="trainee"),
        store.start_session("coach", user="ali", role="agent"),
        store.start_session("practice", user="ali", role="agent"),
        store.start_session("coach", user="sam", role="trainee"),
    ]
    assert [s.id for s in store.list_sessions()] == made[::-1]
    assert [s.id for s in store.list_sessions(user="sam")] == [made[3], made[0]]
    assert [s.id for s in store.list_sessions(kind="practice")] == [made[2], made[0]]
    assert [s.id for s in store.list_sessions(role="agent")] == [made[2], made[1]]
    assert [s.id for s in store.list_sessions(user="ali", kind="coach")] == [made[1]]
    assert [s.id for s in store.list_sessions(limit=2)] == [made[3], made[2]]
    with pytest.raises(CoachbotError, match="unknown session kind"):
        store.list_sessions(kind="chat")  # type: ignore[arg-type]


def test_get_session_by_unique_prefix_ambiguous_or_unknown(store):
    a = store.start_session("coach", session_id="abc1" + "0" * 28)
    b = store.start_session("coach", session_id="abc2" + "0" * 28)
    assert store.get_session("abc1").id == a
    assert store.get_session(b.upper()).id == b  # full id, any case
    with pytest.raises(CoachbotError, match="ambiguous") as ambiguous:
        store.get_session("abc")
    assert ambiguous.value.hint == "type more characters of the id"
    assert "abc1" in str(ambiguous.value) and "abc2" in str(ambiguous.value)
    for unknown in ("ffff", "not-an-id", "", "%"):
        with pytest.raises(CoachbotError, match="no saved session") as missing:
            store.get_session(unknown)
        assert "sessions list" in (missing.value.hint or "")


def test_find_by_thread_returns_the_newest_session_of_the_thread(store):
    store.start_session("practice", thread_id="t")
    newest = store.start_session("practice", thread_id="t")
    store.start_session("coach", thread_id="elsewhere")
    found = store.find_by_thread("t")
    assert found is not None and found.id == newest
    assert store.find_by_thread("nope") is None


# --------------------------------------------------------------------------- reliability


def test_a_locked_database_is_retried_with_backoff(store, sleeps, monkeypatch):
    commit, calls = locked(times=2)
    monkeypatch.setattr(Session, "commit", commit)
    sid = store.start_session("coach", user="sam")
    monkeypatch.undo()
    assert calls["n"] == 3
    assert len(sleeps) == 2 and 0 < sleeps[0] < sleeps[1] <= 1.0
    assert [s.id for s in store.list_sessions()] == [sid]


def test_a_database_that_stays_locked_raises_storage_error(store, sleeps, monkeypatch):
    sid = store.start_session("coach")
    commit, calls = locked(times=None)
    monkeypatch.setattr(Session, "commit", commit)
    with pytest.raises(StorageError) as failure:
        store.add_coach_exchange(sid, make_answer("q"))
    monkeypatch.undo()
    assert calls["n"] == 3 and len(sleeps) == 2
    message = str(failure.value)
    assert "database is locked" in message
    assert "kept and retried" in message
    assert isinstance(failure.value, CoachbotError)
    assert store.get_session(sid).turns == 0  # nothing half-written


def test_a_write_the_database_refuses_for_good_is_not_a_storage_error(store, monkeypatch):
    """A DataError (a value too long for a Postgres column) can never succeed: it is not the
    transient StorageError that the journal keeps and retries (tests/test_durable_writes.py)."""
    from sqlalchemy.exc import DataError

    from bot.store.journal import WriteRefusedError, is_transient

    sid = store.start_session("coach")

    def refuse(self: Session) -> None:
        raise DataError("UPDATE", {}, sqlite3.DataError("value too long"))

    monkeypatch.setattr(Session, "commit", refuse)
    with pytest.raises(WriteRefusedError, match="refused") as failure:
        store.add_coach_exchange(sid, make_answer("q"))
    assert not isinstance(failure.value, StorageError) and not is_transient(failure.value)


# --------------------------------------------------------------------------- Postgres, Chainlit


def test_own_tables_compile_for_postgres():
    dialect = postgresql.dialect()
    ddl = {
        t.name: str(CreateTable(t).compile(dialect=dialect)) for t in _Base.metadata.sorted_tables
    }
    assert set(ddl) == {
        "coachbot_sessions", "coachbot_feedback", "coachbot_applied_writes", "coachbot_assignments"
    }  # fmt: skip
    assert "PRIMARY KEY (id)" in ddl["coachbot_applied_writes"]
    assert "payload JSON" in ddl["coachbot_sessions"]
    assert "TIMESTAMP WITH TIME ZONE" in ddl["coachbot_sessions"]
    assert "UNIQUE (thread_id, step_id)" in ddl["coachbot_feedback"]


def test_a_bad_url_or_missing_driver_is_a_storage_error(tmp_path):
    with pytest.raises(StorageError, match="not a valid SQLAlchemy URL"):
        SessionStore("not a url")
    with pytest.raises(StorageError, match="driver") as missing:
        SessionStore("postgresql+nosuchdriver://u@localhost/db")
    assert missing.value.hint


def test_a_bare_postgres_url_uses_psycopg_3():
    assert _engine_url("postgresql://u:pw@db/coach").drivername == "postgresql+psycopg"
    assert _engine_url("postgresql+psycopg://u@db/coach").drivername == "postgresql+psycopg"
    assert _engine_url("sqlite:///x.db").drivername == "sqlite"


def test_chainlit_conninfo():
    assert chainlit_conninfo("sqlite:///data/x.db") == "sqlite+aiosqlite:///data/x.db"
    assert chainlit_conninfo("sqlite:////abs/x.db") == "sqlite+aiosqlite:////abs/x.db"
    assert (
        chainlit_conninfo("postgresql+psycopg://u:secret@db:5432/coach")
        == "postgresql+asyncpg://u:secret@db:5432/coach"
    )
    assert chainlit_conninfo("postgresql://u@db/coach") == "postgresql+asyncpg://u@db/coach"
    with pytest.raises(StorageError, match="mysql"):
        chainlit_conninfo("mysql://u@db/coach")


def test_chainlit_ddl_follows_the_documented_postgres_schema():
    pg = "\n".join(chainlit_table_ddl("postgresql"))
    assert '"id" UUID PRIMARY KEY' in pg and '"identifier" TEXT NOT NULL UNIQUE' in pg
    assert '"tags" TEXT[]' in pg and '"metadata" JSONB NOT NULL' in pg
    assert 'FOREIGN KEY ("threadId") REFERENCES threads("id") ON DELETE CASCADE' in pg
    lite = "\n".join(chainlit_table_ddl("sqlite"))
    assert "UUID" not in lite and "JSONB" not in lite and "[]" not in lite


def test_chainlit_tables_are_idempotent_and_gain_missing_columns(tmp_path):
    url = f"sqlite:///{tmp_path / 'cl' / 'app.db'}"
    create_chainlit_tables(url)
    engine = create_engine(url)
    with engine.begin() as conn:  # an older Chainlit's steps table, without two columns
        conn.exec_driver_sql("DROP TABLE steps")
        conn.exec_driver_sql(
            'CREATE TABLE steps ("id" TEXT PRIMARY KEY, "name" TEXT NOT NULL, "type" TEXT NOT '
            'NULL, "threadId" TEXT NOT NULL, "streaming" BOOLEAN NOT NULL, "output" TEXT)'
        )
        conn.exec_driver_sql("""INSERT INTO steps VALUES ('s', 'n', 't', 'th', 0, 'kept')""")
    create_chainlit_tables(url)
    create_chainlit_tables(url)
    inspector = inspect(engine)
    assert set(inspector.get_table_names()) >= {
        "users",
        "threads",
        "steps",
        "elements",
        "feedbacks",
    }
    for table, (columns, _) in _CL_TABLES.items():
        present = {c["name"] for c in inspector.get_columns(table)}
        assert {name for name, _, _ in columns} <= present, table
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT output FROM steps").scalar() == "kept"
    engine.dispose()


@pytest.fixture
def chainlit_root(tmp_path, monkeypatch):
    """Importing chainlit writes .chainlit/ and .files/ into its app root: keep them in tmp."""
    monkeypatch.setenv("CHAINLIT_APP_ROOT", str(tmp_path))
    return tmp_path


def test_chainlit_tables_cover_every_column_chainlit_writes(chainlit_root):
    """The keys Chainlit's Step, Message and Element dicts bind as columns all exist."""
    from chainlit.element import ElementDict
    from chainlit.step import StepDict

    steps = {name for name, _, _ in _CL_TABLES["steps"][0]}
    elements = {name for name, _, _ in _CL_TABLES["elements"][0]}
    # Keys never bound as columns: feedback is joined in, icon is moved into metadata.
    assert set(StepDict.__annotations__) - {"feedback", "icon"} <= steps
    # path is read from disk and never stored.
    assert set(ElementDict.__annotations__) - {"path"} <= elements


def test_chainlit_sqlalchemy_data_layer_round_trip(tmp_path, chainlit_root, caplog):
    pytest.importorskip(
        "greenlet",
        reason="SQLAlchemy 2.1's asyncio (used by Chainlit's SQLAlchemyDataLayer) needs greenlet",
    )
    from chainlit.context import ChainlitContext, context_var
    from chainlit.data.sql_alchemy import SQLAlchemyDataLayer
    from chainlit.message import Message
    from chainlit.session import HTTPSession
    from chainlit.step import Step
    from chainlit.types import Feedback, Pagination, ThreadFilter
    from chainlit.user import User

    url = f"sqlite:///{tmp_path / 'app.db'}"
    create_chainlit_tables(url)
    register_sqlite_adapters()
    thread_id = str(uuid.uuid4())

    async def play() -> dict:
        layer = SQLAlchemyDataLayer(conninfo=chainlit_conninfo(url))
        caplog.clear()  # its constructor warns that no blob storage is configured
        out: dict = {}
        try:
            user = await layer.create_user(User(identifier="sam", metadata={"role": "trainee"}))
            assert user is not None
            out["user"] = user
            # create_step runs at once only outside a websocket session: give it an HTTP one.
            session = HTTPSession(id="s", thread_id=thread_id, user=user, client_type="webapp")
            context_var.set(ChainlitContext(session))
            await layer.update_thread(
                thread_id,
                name="Practice: damaged delivery",
                user_id=user.id,
                metadata={"chat_profile": "Practice", "nested": {"a": 1}},
                tags=["practice", "hard"],
            )
            question = Message(content="The parcel is smashed", author="sam", type="user_message")
            reply = Message(content="I'm sorry, let me", author="coachbot", modes={"m": "x"})
            tool = Step(name="retrieve", type="tool", show_input=True, default_open=True)
            tool.input, tool.output = "query", "passages"
            for step in (question, reply, tool):
                await layer.create_step(step.to_dict())
            reply.content = "I'm sorry, let me fix this today."
            await layer.update_step(reply.to_dict())
            feedback_id = await layer.upsert_feedback(
                Feedback(forId=reply.id, value=1, threadId=thread_id, comment="good")
            )
            await layer.upsert_feedback(
                Feedback(
                    id=feedback_id, forId=reply.id, value=0, threadId=thread_id, comment="changed"
                )
            )
            out["thread"] = await layer.get_thread(thread_id)
            out["author"] = await layer.get_thread_author(thread_id)
            out["page"] = await layer.list_threads(
                Pagination(first=10), ThreadFilter(userId=user.id)
            )
            out["again"] = await layer.get_user("sam")
            out["ids"] = (question.id, reply.id, tool.id)
        finally:
            await layer.close()
        return out

    with caplog.at_level(logging.DEBUG, logger="chainlit"):
        out = asyncio.run(play())
    problems = [
        f"{r.levelname}: {r.getMessage()}"
        for r in caplog.records
        if r.name.startswith("chainlit") and r.levelno >= logging.WARNING
    ]
    assert problems == []  # SQL errors in the data layer are only logged as warnings

    assert out["again"].metadata == {"role": "trainee"} and out["again"].id == out["user"].id
    assert out["author"] == "sam"
    thread = out["thread"]
    assert thread is not None and thread["id"] == thread_id
    assert thread["name"] == "Practice: damaged delivery" and thread["userIdentifier"] == "sam"
    assert json.loads(thread["tags"]) == ["practice", "hard"]
    assert json.loads(thread["metadata"]) == {"chat_profile": "Practice", "nested": {"a": 1}}
    steps = {s["id"]: s for s in thread["steps"]}
    question_id, reply_id, tool_id = out["ids"]
    assert set(steps) == {question_id, reply_id, tool_id}
    assert steps[question_id]["output"] == "The parcel is smashed"
    assert steps[reply_id]["output"] == "I'm sorry, let me fix this today."
    assert steps[reply_id]["feedback"]["value"] == 0
    assert steps[reply_id]["feedback"]["comment"] == "changed"
    assert steps[tool_id]["input"] == "query" and steps[tool_id]["output"] == "passages"
    assert [t["id"] for t in out["page"].data] == [thread_id]


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def cli_settings(tmp_path, monkeypatch):
    settings = make_settings(tmp_path)
    monkeypatch.setattr(common, "get_settings", lambda: settings)
    return settings


@pytest.fixture
def filled(cli_settings):
    store = SessionStore.from_settings(cli_settings)
    practice = store.start_session("practice", user="sam", role="trainee", thread_id="tp")
    store.save_practice(practice, make_transcript(turns=3, outcome="resolved"), make_scorecard(72))
    store.record_feedback(thread_id="tp", step_id="a", value=1)
    store.record_feedback(thread_id="tp", step_id="b", value=0, comment="too slow", user="sam")
    coach = store.start_session("coach", user="ali", role="agent")
    store.add_coach_exchange(coach, make_answer("They are shouting at me"))
    store.close()
    return {"practice": practice, "coach": coach}


def test_sessions_list_json(filled):
    result = runner.invoke(cli.app, ["sessions", "list", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is True
    sessions = data["sessions"]
    assert [s["id"] for s in sessions] == [filled["coach"], filled["practice"]]
    practice = sessions[1]
    assert practice["score"] == 72 and practice["outcome"] == "resolved" and practice["turns"] == 3
    assert (practice["feedback_up"], practice["feedback_down"]) == (1, 1)
    assert practice["created_at"].endswith("Z") or practice["created_at"].endswith("+00:00")

    only = json.loads(
        runner.invoke(cli.app, ["sessions", "list", "--kind", "coach", "--json"]).stdout
    )
    assert [s["id"] for s in only["sessions"]] == [filled["coach"]]
    mine = json.loads(runner.invoke(cli.app, ["sessions", "list", "-u", "sam", "--json"]).stdout)
    assert [s["id"] for s in mine["sessions"]] == [filled["practice"]]


def test_sessions_list_table(filled, monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")
    result = runner.invoke(cli.app, ["sessions", "list"])
    assert result.exit_code == 0, result.output
    assert filled["practice"][:8] in result.stdout and filled["coach"][:8] in result.stdout
    assert "72" in result.stdout and "1/1" in result.stdout and "resolved" in result.stdout


def test_sessions_list_bad_kind_is_a_one_line_error(filled):
    result = runner.invoke(cli.app, ["sessions", "list", "--kind", "chat", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["ok"] is False
    assert len(result.stderr.strip().splitlines()) == 1


def test_sessions_show_practice(filled):
    result = runner.invoke(cli.app, ["sessions", "show", filled["practice"][:8]])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "My parcel arrived smashed!" in out
    assert "Calm down, it's only a parcel." in out and "anger 9/10" in out
    assert "Fine, that works for me." in out and "anger 5/10" in out and "feels heard" in out
    assert "Score: 72/100" in out  # format_scorecard
    assert "too slow" in out and "👎" in out


def test_sessions_show_coach_and_json(filled):
    result = runner.invoke(cli.app, ["sessions", "show", filled["coach"]])
    assert result.exit_code == 0, result.output
    assert "They are shouting at me" in result.stdout and "I hear you." in result.stdout
    assert "Handling anger" in result.stdout

    data = json.loads(
        runner.invoke(cli.app, ["sessions", "show", filled["coach"], "--json"]).stdout
    )
    assert data["ok"] and data["session"]["id"] == filled["coach"]
    assert data["session"]["payload"]["exchanges"][0]["question"] == "They are shouting at me"


MARKUP = "Sorry [/] see [link=http://x]y[/link] and [bold]this[/]"


def test_sessions_show_prints_stored_text_verbatim_not_as_markup(cli_settings, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    store = SessionStore.from_settings(cli_settings)
    practice = store.start_session("practice", user="[b]sam[/b]", thread_id="tp")
    transcript = make_transcript(turns=2)
    transcript.turns[0].trainee = MARKUP
    transcript.turns[1].customer = "[red]Fine.[/red]"
    store.save_practice(practice, transcript, make_scorecard(50))
    store.record_feedback(thread_id="tp", step_id="a", value=0, comment="[/] [link=http://x]z")
    coach = store.start_session("coach", user="ali")
    store.add_coach_exchange(coach, make_answer(MARKUP))
    store.close()

    shown = runner.invoke(cli.app, ["sessions", "show", practice])
    assert shown.exit_code == 0, shown.output + shown.stderr
    assert f"1. you> {MARKUP}" in shown.stdout
    assert "[red]Fine.[/red]" in shown.stdout and "[b]sam[/b]" in shown.stdout
    assert "[/] [link=http://x]z" in shown.stdout
    asked = runner.invoke(cli.app, ["sessions", "show", coach])
    assert asked.exit_code == 0, asked.output + asked.stderr
    assert f"agent> {MARKUP}" in asked.stdout
    listed = runner.invoke(cli.app, ["sessions", "list"])
    assert listed.exit_code == 0 and "[b]sam[/b]" in listed.stdout


def test_sessions_show_unknown_id(filled):
    result = runner.invoke(cli.app, ["sessions", "show", "ffffffff", "--json"])
    assert result.exit_code == 1
    assert "no saved session with id 'ffffffff'" in json.loads(result.stdout)["error"]
