"""The session store and Chainlit's data layer on a real Postgres (DATABASE_URL=postgresql://...).

Runs when ``COACHBOT_TEST_DATABASE_URL`` points at a Postgres database that may be wiped, e.g.
``postgresql://postgres@127.0.0.1:55432/coachbot``; skipped (with that reason) otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid

import pytest
from sqlalchemy import create_engine, text

from bot.store.sessions import (
    SessionStore,
    _engine_url,
    chainlit_conninfo,
    create_chainlit_tables,
)

from .test_storage import make_answer, make_scorecard, make_transcript

URL = os.environ.get("COACHBOT_TEST_DATABASE_URL", "")
pytestmark = pytest.mark.skipif(
    not URL.startswith("postgres"),
    reason="set COACHBOT_TEST_DATABASE_URL=postgresql://... to test against Postgres",
)


@pytest.fixture
def url() -> str:
    engine = create_engine(_engine_url(URL))
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return URL


def test_session_store_round_trip_on_postgres(url):
    store = SessionStore(url)
    try:
        practice = store.start_session(
            "practice", user="tess", role="trainee", thread_id=str(uuid.uuid4()),
            scenario_id="damaged-delivery", scenario_title="Damaged delivery",
            difficulty="hard", seed=3,
        )  # fmt: skip
        store.save_practice(practice, make_transcript(turns=2), make_scorecard(score=81))
        coach = store.start_session("coach", user="amir", role="agent")
        store.add_coach_exchange(coach, make_answer("He is shouting, what do I say?"))
        summary = store.get_session(practice)
        store.record_feedback(thread_id=summary.thread_id, step_id="s1", value=1, user="tess")
        store.record_feedback(thread_id=summary.thread_id, step_id="s1", value=0, user="tess")

        listed = store.list_sessions()
        assert [s.id for s in listed] == [coach, practice]
        record = store.get_session(practice[:8])
        assert record.score == 81 and record.status == "ended" and record.turns == 2
        assert record.transcript().turns[1].index == 2 and record.scorecard().score == 81
        assert record.feedback_down == 1 and record.feedback_up == 0
        assert store.get_session(coach).exchanges()[0].question.startswith("He is shouting")
        assert [s.id for s in store.list_sessions(user="tess", kind="practice")] == [practice]
    finally:
        store.close()
    reopened = SessionStore(url)  # a restart keeps everything
    try:
        assert len(reopened.list_sessions()) == 2
    finally:
        reopened.close()


def test_chainlit_data_layer_on_postgres(url, caplog):
    from chainlit.context import ChainlitContext, context_var
    from chainlit.data.sql_alchemy import SQLAlchemyDataLayer
    from chainlit.message import Message
    from chainlit.session import HTTPSession
    from chainlit.types import Feedback, Pagination, ThreadFilter
    from chainlit.user import User

    create_chainlit_tables(url)
    create_chainlit_tables(url)  # idempotent
    thread_id = str(uuid.uuid4())

    async def play() -> dict:
        layer = SQLAlchemyDataLayer(conninfo=chainlit_conninfo(url))
        caplog.clear()
        try:
            user = await layer.create_user(User(identifier="sam", metadata={"role": "trainee"}))
            session = HTTPSession(id="s", thread_id=thread_id, user=user, client_type="webapp")
            context_var.set(ChainlitContext(session))
            await layer.update_thread(
                thread_id, name="Practice", user_id=user.id, metadata={"a": 1}, tags=["practice"]
            )
            question = Message(content="The parcel is smashed", author="sam", type="user_message")
            await layer.create_step(question.to_dict())
            await layer.upsert_feedback(Feedback(forId=question.id, value=1, threadId=thread_id))
            thread = await layer.get_thread(thread_id)
            page = await layer.list_threads(Pagination(first=10), ThreadFilter(userId=user.id))
            return {"thread": thread, "page": page, "question": question.id}
        finally:
            await layer.close()

    with caplog.at_level(logging.DEBUG, logger="chainlit"):
        out = asyncio.run(play())
    problems = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("chainlit") and r.levelno >= logging.WARNING
        and "blob" not in r.getMessage() and "storage client" not in r.getMessage()
    ]  # fmt: skip
    assert problems == []
    thread = out["thread"]
    assert thread["name"] == "Practice" and thread["userIdentifier"] == "sam"
    step = next(s for s in thread["steps"] if s["id"] == out["question"])
    assert step["output"] == "The parcel is smashed" and step["feedback"]["value"] == 1
    assert [t["id"] for t in out["page"].data] == [thread_id]
