"""The Chainlit app's handlers, in-process: a mocked Chainlit context per test, fake models.

Each test builds a ``WebsocketSession`` whose ``emit`` records what the browser would receive,
then awaits the app's handlers directly (see ../shared/PLATFORM.md).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import uuid
from typing import Any

import chainlit as cl
import pytest
from chainlit.context import init_ws_context
from chainlit.session import WebsocketSession
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from bot.config import PROJECT_ROOT
from bot.guidance.engine import default_engine
from bot.knowledge import KnowledgeIndex
from bot.service import Services
from bot.store.sessions import SessionStore
from bot.web import app

from .conftest import ARTICLES_DIR, make_settings, shown

COACH_REPLY = (
    'Say: "You have every right to be upset, and I am sorry your parcel arrived broken."\n'
    "Why: Validating their feelings helps them feel heard [1]."
)
CUSTOMER_LINE = "I want this sorted today, the parcel came smashed and the rain got in."


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("app")
    shutil.copytree(ARTICLES_DIR, tmp / "knowledge" / "articles")
    settings = make_settings(tmp)
    index = KnowledgeIndex(settings)
    index.ingest()
    engine = default_engine(PROJECT_ROOT / "knowledge" / "guidance.yaml")
    return settings, index, engine


@pytest.fixture
def services(shared, tmp_path):
    settings, index, engine = shared
    svc = Services(
        settings.model_copy(update={"data_dir": tmp_path / "data"}),  # a journal of its own
        model=FakeListChatModel(responses=[COACH_REPLY]),
        customer_model=FakeListChatModel(responses=[CUSTOMER_LINE]),
        index=index,
        guidance=engine,
        store=SessionStore(f"sqlite:///{tmp_path / 'coachbot.db'}"),
    )
    app.use_services(svc)
    yield svc
    app.use_services(None)


class Browser:
    """What the browser receives from one session."""

    def __init__(self, profile: str, user: cl.User | None = None) -> None:
        self.events: list[tuple[str, Any]] = []

        async def emit(event: str, data: Any) -> None:
            self.events.append((event, data))

        async def emit_call(*args: Any, **kwargs: Any) -> None:
            return None

        self.session = WebsocketSession(
            id=str(uuid.uuid4()),
            socket_id=str(uuid.uuid4()),
            emit=emit,
            emit_call=emit_call,
            user_env={},
            client_type="webapp",
            thread_id=str(uuid.uuid4()),
            user=user,
            chat_profile=profile,
        )

        # Chainlit keeps element files under .files/<session id>; its server creates .files/.
        self.session.files_dir.parent.mkdir(parents=True, exist_ok=True)

    def run(self, coro_fn, *args: Any) -> Any:
        async def go() -> Any:
            init_ws_context(self.session)
            return await coro_fn(*args)

        return asyncio.run(go())

    def messages(self) -> list[dict[str, Any]]:
        """Final state of every message (new_message updated by update_message), in order."""
        by_id: dict[str, dict[str, Any]] = {}
        for event, data in self.events:
            if event in {"new_message", "update_message"} and isinstance(data, dict):
                by_id[data["id"]] = {**by_id.get(data["id"], {}), **data}
        return list(by_id.values())

    def texts(self) -> list[str]:
        """The messages as a reader sees them (escapes undone: see tests/conftest.shown)."""
        return [shown(m.get("output", "")) for m in self.messages()]

    def markdown(self) -> list[str]:
        """The messages as sent: the Markdown the browser renders."""
        return [m.get("output", "") for m in self.messages()]

    def of(self, event_name: str) -> list[Any]:
        return [data for event, data in self.events if event == event_name]

    def say(self, text: str) -> None:
        async def send() -> None:
            await app.on_message(cl.Message(content=text, author="User"))

        self.run(send)


# --------------------------------------------------------------------------- practice


def test_practice_starts_with_settings_opening_line_mood_and_actions(services):
    browser = Browser(app.PRACTICE)
    browser.run(app.on_chat_start)
    settings = browser.of("chat_settings")[0]
    ids = {w["id"] for w in settings}
    assert ids == {"scenario", "difficulty"}
    scenario = next(w for w in settings if w["id"] == "scenario")
    assert len(scenario["items"]) >= 8
    texts = browser.texts()
    run = cl_session_value(browser, "practice")
    assert any(run.opening_line in t and "anger" in t for t in texts)
    names = {a["name"] for a in browser.of("action")}
    assert {"hint", "end_debrief"} <= names


def test_practice_brief_links_the_rubric_before_the_first_line(services):
    """The trainee sees every check, its points and its article before the session starts."""
    browser = Browser(app.PRACTICE)
    browser.run(app.on_chat_start)
    brief = next(m for m in browser.markdown() if m.startswith("**Practice:"))
    panel = next(e for e in browser.of("element") if e.get("name") == app.RUBRIC_NAME)
    assert panel["display"] == "side" and app.RUBRIC_NAME in brief
    assert panel["url"] == app.RUBRIC_URL  # served by its own route, not a file of this chat
    content = shown(app.rubric_page())
    rubric = services.rubric()
    assert all(check.label in content for check in rubric.checks)
    assert "Out of 100: listening 35" in content and "Source: " in content


def cl_session_value(browser: Browser, key: str) -> Any:
    from chainlit.user_session import user_sessions

    return user_sessions[browser.session.id].get(key)


def test_practice_turn_streams_the_reply_with_mood_and_is_saved(services):
    browser = Browser(app.PRACTICE)
    browser.run(app.on_chat_start)
    browser.say("I'm so sorry your parcel arrived smashed, that must be really upsetting.")
    assert browser.of("stream_token"), "the customer's reply is streamed"
    last = browser.texts()[-1]
    run = cl_session_value(browser, "practice")
    line = run.simulator.transcript.turns[0].customer
    assert last.startswith(line) and "anger" in last
    saved = services.store.get_session(run.session_id)
    assert saved.turns == 1 and saved.thread_id == browser.session.thread_id
    assert saved.transcript().turns[0].customer == line


def test_hint_and_debrief_with_scorecard_and_mood_picture(services):
    browser = Browser(app.PRACTICE)
    browser.run(app.on_chat_start)
    browser.say("I'm so sorry your parcel arrived smashed, that must be really upsetting.")
    browser.run(app.on_hint, cl.Action(name="hint", payload={}))  # actions need no context
    assert any(t.startswith("**Hint:**") and "For example" in t for t in browser.texts())
    browser.run(app.on_end, cl.Action(name="end_debrief", payload={}))
    debrief = next(t for t in browser.texts() if t.startswith("## Debrief"))
    assert "/100" in debrief and "What you did" in debrief and "Source: " in debrief
    images = [e for e in browser.of("element") if e.get("type") == "image"]
    assert images and images[0]["mime"] == "image/svg+xml"
    run = cl_session_value(browser, "practice")
    saved = services.store.get_session(run.session_id)
    assert saved.status == "ended" and saved.score is not None
    assert saved.scorecard() is not None and saved.transcript().hints


def test_messages_after_the_end_are_answered_not_lost(services):
    browser = Browser(app.PRACTICE)
    browser.run(app.on_chat_start)
    browser.run(app.on_end, cl.Action(name="end_debrief", payload={}))
    browser.say("Hello again?")
    assert "has ended" in browser.texts()[-1]


def test_each_practice_session_gets_its_own_seed_and_saves_it(services):
    seeds = set()
    for _ in range(4):
        browser = Browser(app.PRACTICE)
        browser.run(app.on_chat_start)
        browser.say("I'm so sorry, that sounds really upsetting.")
        run = cl_session_value(browser, "practice")
        seed = run.simulator.seed
        assert services.store.get_session(run.session_id).transcript().seed == seed
        seeds.add(seed)
    assert len(seeds) > 1  # 4 draws from a million: equal only by a 1-in-10^17 chance


def test_changing_settings_starts_the_chosen_scenario(services):
    browser = Browser(app.PRACTICE)
    browser.run(app.on_chat_start)
    other = sorted(services.scenarios)[-1]
    browser.run(app.on_settings_update, {"scenario": other, "difficulty": "hard"})
    run = cl_session_value(browser, "practice")
    assert run.scenario.id == other and run.simulator.difficulty == "hard"
    assert any(services.scenarios[other].title in t and "(hard)" in t for t in browser.texts())


@pytest.mark.parametrize("text", ["", "   \n\t "])
def test_empty_message_gets_a_clear_answer(services, text):
    browser = Browser(app.PRACTICE)
    browser.run(app.on_chat_start)
    browser.say(text)
    assert "empty" in browser.texts()[-1]
    assert cl_session_value(browser, "practice").simulator.transcript.turns == []


def test_oversized_message_is_cut_with_a_notice(services):
    browser = Browser(app.PRACTICE)
    browser.run(app.on_chat_start)
    browser.say("I hear how upsetting this is. " * 40_000)  # about 1.2 MB
    assert any("only the first" in t for t in browser.texts())
    turn = cl_session_value(browser, "practice").simulator.transcript.turns[0]
    assert len(turn.trainee) < 2_000


class DyingModel(FakeListChatModel):
    def _stream(self, *args, **kwargs):
        raise ConnectionError("model server went away")


def test_a_message_sent_while_the_chat_starts_waits_instead_of_starting_twice(services):
    """Clients other than the browser can send before the chat start finished (found by the
    load harness: two briefs, two opening lines, two practice runs)."""
    browser = Browser(app.PRACTICE)

    async def start_and_say_at_once() -> None:
        starting = asyncio.create_task(app.on_chat_start())
        await asyncio.sleep(0)  # the chat start is now waiting on its worker thread
        await app.on_message(cl.Message(content="I'm so sorry, that sounds awful.", author="U"))
        await starting

    browser.run(start_and_say_at_once)
    run = cl_session_value(browser, "practice")
    openings = [t for t in browser.texts() if t.startswith(run.opening_line)]
    briefs = [t for t in browser.texts() if t.startswith("**Practice:")]
    assert len(openings) == 1 and len(briefs) == 1
    assert len(run.simulator.transcript.turns) == 1


def test_model_calls_do_not_starve_chainlits_worker_threads():
    """Model calls park worker threads while the model is busy; Chainlit's own blocking work
    (file writes) must still get a thread, and more calls than asyncio's default pool holds
    (min(32, cores + 4)) must all run."""
    release = threading.Event()
    calls = 40

    async def go() -> float:
        loop = asyncio.get_running_loop()
        parked = [asyncio.ensure_future(app._in_thread(release.wait)) for _ in range(calls)]
        try:
            await asyncio.sleep(0.2)
            started = loop.time()
            # What Chainlit does with a file write: the default executor.
            assert await asyncio.wait_for(loop.run_in_executor(None, lambda: 42), 5) == 42
            waited = loop.time() - started
        finally:
            release.set()
        assert all(await asyncio.gather(*parked))
        return waited

    assert asyncio.run(go()) < 5


def test_model_failure_mid_reply_is_friendly_and_the_session_goes_on(services):
    services._customer_model = DyingModel(responses=["x"])
    browser = Browser(app.PRACTICE)
    browser.run(app.on_chat_start)
    browser.say("I'm so sorry your parcel arrived smashed.")
    assert any("did not answer" in t for t in browser.texts())
    services._customer_model = FakeListChatModel(responses=[CUSTOMER_LINE])
    cl_session_value(browser, "practice").simulator.model = services.customer_model
    browser.say("Tell me more about what happened.")
    turns = cl_session_value(browser, "practice").simulator.transcript.turns
    assert len(turns) == 2 and browser.texts()[-1].startswith(turns[1].customer)


def test_unexpected_error_shows_a_friendly_message_not_a_traceback(services, monkeypatch):
    browser = Browser(app.PRACTICE)
    browser.run(app.on_chat_start)
    run = cl_session_value(browser, "practice")
    monkeypatch.setattr(run, "respond", lambda *a, **k: 1 / 0)
    browser.say("Hello")
    last = browser.texts()[-1]
    assert "something went wrong" in last and "Traceback" not in last


# --------------------------------------------------------------------------- coach


def test_coach_profile_has_starters():
    profiles = asyncio.run(app.chat_profiles(None))
    coach = next(p for p in profiles if p.name == app.COACH)
    assert coach.starters and len(coach.starters) >= 3


def test_coach_answer_streams_shows_retrieval_and_cites_side_sources(services):
    browser = Browser(app.COACH)
    browser.run(app.on_chat_start)
    browser.say("The customer is shouting about a broken parcel, what do I say?")
    steps = [m for m in browser.messages() if m.get("type") == "retrieval"]
    assert steps and "[1]" in shown(steps[0]["output"])
    assert browser.of("stream_token")
    answer = browser.texts()[-1]
    assert answer.startswith("**Say:**") and "**Why:**" in answer and "[1]" in answer
    side = [e for e in browser.of("element") if e.get("display") == "side"]
    raw = browser.markdown()[-1]  # Chainlit links an element where its name is in the Markdown
    assert side and all(e["name"] in raw for e in side)
    run = cl_session_value(browser, "coach")
    saved = services.store.get_session(run.session_id)
    assert saved.kind == "coach" and saved.exchanges()[0].say.startswith("You have every right")


def test_coach_declines_a_company_question(services):
    browser = Browser(app.COACH)
    browser.run(app.on_chat_start)
    browser.say("What is our refund window for damaged items?")
    assert "doesn't cover" in browser.texts()[-1]


def test_coach_html_in_a_question_is_not_rendered(services):
    browser = Browser(app.COACH)
    browser.run(app.on_chat_start)
    browser.say("<img src=x onerror=alert(1)> customer is angry, what do I say?")
    for text in browser.markdown():
        assert "<img" not in text


# --------------------------------------------------------------------------- trainers, feedback


def test_profiles_through_chainlit_wrapper():
    # Chainlit calls the hook with (user, language); a signature it can't bind loses the profiles.
    from chainlit.config import config

    trainee = cl.User(identifier="tess", metadata={"role": "trainee"})
    profiles = asyncio.run(config.code.set_chat_profiles(trainee, "en-US"))
    assert [p.name for p in profiles] == [app.PRACTICE, app.COACH]


def test_trainer_profile_only_for_trainers():
    trainee = cl.User(identifier="tess", metadata={"role": "trainee"})
    trainer = cl.User(identifier="tom", metadata={"role": "trainer"})
    assert app.REVIEW not in [p.name for p in asyncio.run(app.chat_profiles(trainee))]
    assert app.REVIEW in [p.name for p in asyncio.run(app.chat_profiles(trainer))]


def _practised_then_trainer(line: str) -> tuple[Any, Browser]:
    """Tess practises one line and ends with a debrief; then Tom opens Review sessions."""
    trainee = Browser(app.PRACTICE, cl.User(identifier="tess", metadata={"role": "trainee"}))
    trainee.run(app.on_chat_start)
    trainee.say(line)
    trainee.run(app.on_end, cl.Action(name="end_debrief", payload={}))
    trainer = Browser(app.REVIEW, cl.User(identifier="tom", metadata={"role": "trainer"}))
    trainer.run(app.on_chat_start)
    return cl_session_value(trainee, "practice"), trainer


def test_trainer_lists_and_opens_a_trainee_session(services):
    run, trainer = _practised_then_trainer(
        "I'm so sorry your parcel arrived smashed, that must be really upsetting."
    )
    table = trainer.texts()[-1]
    assert run.session_id[:8] in table and "tess" in table
    trainer.say(run.session_id[:8])
    shown = trainer.texts()[-1]
    line = run.simulator.transcript.turns[0].customer
    assert "Trainee:" in shown and line[:30] in shown and "Debrief" in shown
    assert f"version {run.scenario.version}" in shown  # the scenario as it was played


def test_trainer_dashboard_shows_trend_heatmap_turns_and_csv(services):
    run, trainer = _practised_then_trainer("Calm down, it's only a parcel.")
    assert "progress" in {a["name"] for a in trainer.of("action")}
    trainer.run(app.on_progress, cl.Action(name="progress", payload={}))
    board = trainer.texts()[-1]
    assert board.startswith("## Progress") and "| tess | 1 |" in board
    trigger = board.split("### Triggers used")[1].split("###")[0]
    assert "Telling them to calm down" in trigger  # the cell names the session and the turn
    assert f"tess: 1 of 1 session(s): `{run.session_id[:8]}` (turn 1)" in trigger
    images = {e["name"] for e in trainer.of("element") if e.get("type") == "image"}
    assert {"Score trends", "Checks missed"} <= images
    csv_file = next(e for e in trainer.of("element") if e.get("name") == "progress.csv")
    kept = trainer.session.files[csv_file["chainlitKey"]]["path"].read_text("utf-8")
    assert kept.splitlines()[0].startswith("session_id,user,date") and "tess" in kept

    trainer.say("progress difficulty=hard")
    assert "0 scored practice session(s)" in trainer.texts()[-1]
    trainer.say("progress since=yesterday")
    assert "is not a day" in trainer.texts()[-1] and "YYYY-MM-DD" in trainer.texts()[-1]


def test_a_trainee_cannot_review(services):
    trainee = Browser(app.REVIEW, cl.User(identifier="tess", metadata={"role": "trainee"}))
    trainee.run(app.on_chat_start)
    assert "Only trainers" in trainee.texts()[-1]


def test_feedback_is_stored(services):
    from chainlit.types import Feedback

    browser = Browser(app.COACH)
    browser.run(app.on_chat_start)
    browser.say("The customer is shouting about a broken parcel, what do I say?")
    answer_id = browser.messages()[-1]["id"]
    thread = browser.session.thread_id
    browser.run(app.on_feedback, Feedback(forId=answer_id, threadId=thread, value=0))
    run = cl_session_value(browser, "coach")
    record = services.store.get_session(run.session_id)
    assert record.feedback_down == 1 and record.feedback[0].step_id == answer_id


# --------------------------------------------------------------------------- saving


def test_a_database_outage_keeps_the_turns_and_saves_them_later(services):
    from bot.service import SAVE_FAILED, PracticeRun
    from bot.store.faults import DatabaseOutage

    store = services.store
    outage = DatabaseOutage(store.engine)
    outage.on = True
    run = PracticeRun(services, "damaged-delivery", "medium", seed=1)
    run.respond("I'm so sorry your parcel arrived smashed.")
    assert run.take_notices() == [SAVE_FAILED]
    run.respond("Tell me more about what happened.")  # still down: kept, in order
    assert run.take_notices() == [SAVE_FAILED]
    assert len(services.writes) == 3  # the start and two saves, in the journal
    outage.on = False
    run.hint()  # back up: the kept saves go first, then this one
    assert run.take_notices() == []
    saved = store.get_session(run.session_id)
    assert saved.turns == 2 and saved.transcript().hints


def test_a_store_that_cannot_be_opened_keeps_the_saves_until_it_can(services, monkeypatch):
    from bot.errors import StorageError
    from bot.service import SAVE_FAILED, CoachRun, Services

    store = services.store
    reachable = {"now": False}

    def open_store(self):
        if not reachable["now"]:
            raise StorageError("could not connect to the database")
        return store

    monkeypatch.setattr(Services, "store", property(open_store))
    run = CoachRun(services)
    run.ask("The customer is shouting about a broken parcel, what do I say?")
    assert run.save.take_notices() == [SAVE_FAILED]
    reachable["now"] = True
    run.ask("And if that doesn't work?")
    assert run.save.take_notices() == []
    assert len(store.get_session(run.session_id).exchanges()) == 2


# --------------------------------------------------------------------------- views


def test_views_name_articles_from_the_knowledge_dir_they_are_given(shared, tmp_path):
    from bot.knowledge.documents import documents_by_origin
    from bot.web.views import source_name

    settings, _index, _engine = shared
    origin, doc = next(iter(documents_by_origin(settings.knowledge_dir).items()))
    assert source_name(origin, settings.knowledge_dir) == f"Source: {doc.meta.title}"
    assert source_name(origin, tmp_path / "elsewhere") == f"Source ({origin})"


# --------------------------------------------------------------------------- startup

IMPORT_PROBE = """
import json, os, sqlite3

import chainlit.server
from chainlit.config import config

import bot.service, bot.store.files, bot.store.sessions, bot.store.users, bot.web.views


def snapshot():
    return {
        "env": dict(os.environ),
        "routes": [getattr(r, "path", repr(r)) for r in chainlit.server.app.router.routes],
        "sqlite3_adapters": sorted(repr(key) for key in sqlite3.adapters),
        "login_callback": config.code.password_auth_callback is not None,
        "data_layer": config.code.data_layer is not None,
    }


before = snapshot()
import bot.web.app

print(json.dumps({"before": before, "after": snapshot()}))
"""


def test_importing_the_app_changes_nothing(tmp_path):
    """Importing bot.web.app (as `chainlit run`, the load harness and these tests do) leaves the
    environment, Chainlit's router, sqlite3's adapters and the data directory alone, even with
    login on. Run in a fresh interpreter: this one imported the app already."""
    import json
    import subprocess
    import sys

    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"CHAINLIT_AUTH_SECRET", "DATABASE_URL", "COACHBOT_USERS_FILE"}
    }
    env.update(
        PYTHONPATH=str(PROJECT_ROOT),
        COACHBOT_DATA_DIR=str(tmp_path / "data"),
        COACHBOT_AUTH="on",
        CHAINLIT_APP_ROOT=str(tmp_path / "chainlit"),
    )
    (tmp_path / "chainlit").mkdir()  # importing chainlit creates .chainlit/ and .files/ there
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    before, after = found["before"], found["after"]
    changed_env = {
        k
        for k in before["env"].keys() | after["env"].keys()
        if before["env"].get(k) != after["env"].get(k)
    }
    assert changed_env == set()
    assert after["routes"] == before["routes"]
    assert after["sqlite3_adapters"] == before["sqlite3_adapters"]
    assert (after["login_callback"], after["data_layer"]) == (False, False)
    assert not (tmp_path / "data").exists()  # no database, no secret file


@pytest.fixture
def pristine_chainlit(monkeypatch):
    """Chainlit and the process as before the app's startup; restored afterwards."""
    import sqlite3

    from chainlit.config import config
    from chainlit.server import app as server

    monkeypatch.setattr(config.code, "data_layer", None)
    monkeypatch.setattr(config.code, "password_auth_callback", None)
    monkeypatch.setattr(server.router, "routes", list(server.router.routes))
    monkeypatch.delenv("CHAINLIT_AUTH_SECRET", raising=False)
    monkeypatch.setattr(app, "_configured", False)
    adapters = dict(sqlite3.adapters)
    yield config.code, server
    sqlite3.adapters.clear()
    sqlite3.adapters.update(adapters)


def _startup_services(shared, tmp_path, monkeypatch) -> tuple[Services, list[int]]:
    from bot.store.users import UserStore

    _settings, index, engine = shared
    settings = make_settings(tmp_path)
    UserStore(settings.users_path, rounds=4).add("tess", "correct horse", "trainee")
    svc = Services(
        settings.model_copy(update={"data_dir": tmp_path / "data"}),  # a journal of its own
        model=FakeListChatModel(responses=[COACH_REPLY]),
        index=index,
        guidance=engine,
        store=SessionStore(settings.database),
    )
    warmed: list[int] = []
    monkeypatch.setattr(svc, "warm_up", lambda: warmed.append(1))
    app.use_services(svc)
    return svc, warmed


def test_startup_configures_login_and_history_once(
    shared, tmp_path, monkeypatch, pristine_chainlit
):
    """What importing the app used to do, now done by Chainlit's startup hook, once."""
    import sqlite3

    from chainlit.data.sql_alchemy import SQLAlchemyDataLayer
    from sqlalchemy import create_engine, inspect

    from bot.store.files import URL_PREFIX

    code, server = pristine_chainlit
    svc, warmed = _startup_services(shared, tmp_path, monkeypatch)
    routes_before = list(server.router.routes)

    async def start_twice() -> None:
        await code.on_app_startup()  # as Chainlit's lifespan calls it
        await code.on_app_startup()
        await asyncio.sleep(0.2)  # the warm-up runs in a worker thread

    try:
        asyncio.run(start_twice())
    finally:
        app.use_services(None)

    # Login: the secret (kept in the data directory) in the environment, the password callback.
    secret = (svc.settings.data_dir / ".chainlit_auth_secret").read_text().strip()
    assert os.environ["CHAINLIT_AUTH_SECRET"] == secret
    assert code.password_auth_callback is not None
    user = asyncio.run(code.password_auth_callback("tess", "correct horse"))
    assert user.identifier == "tess" and user.metadata == {"role": "trainee"}
    assert asyncio.run(code.password_auth_callback("tess", "wrong password")) is None
    # History: sqlite3 binds lists and dicts, Chainlit's tables, the file route first, the layer.
    assert {(list, sqlite3.PrepareProtocol), (dict, sqlite3.PrepareProtocol)} <= set(
        sqlite3.adapters
    )
    tables = set(inspect(create_engine(svc.settings.database)).get_table_names())
    assert {"users", "threads", "steps", "elements", "feedbacks"} <= tables
    added = [r for r in server.router.routes if r not in routes_before]
    # once, though started twice; ahead of Chainlit's own /login, /auth/config and page route
    assert [r.path for r in added] == [
        app.RUBRIC_URL, "/auth/config", "/login", f"{URL_PREFIX}/{{name}}"
    ]  # fmt: skip
    assert server.router.routes[:4] == added
    assert isinstance(code.data_layer(), SQLAlchemyDataLayer)
    assert warmed  # and the model, index and guidance are loaded in the background


def test_a_malformed_users_file_stops_the_startup(shared, tmp_path, monkeypatch, pristine_chainlit):
    """Not a server open to everyone: Chainlit swallows exceptions from its startup hook, so
    the app raises SystemExit, which makes uvicorn report the failure and exit."""
    code, _server = pristine_chainlit
    svc, warmed = _startup_services(shared, tmp_path, monkeypatch)
    svc.settings.users_path.write_text("users:\n  - identifier: tess\n")
    try:
        with pytest.raises(SystemExit, match="cannot start"):
            asyncio.run(code.on_app_startup())
    finally:
        app.use_services(None)
    assert code.password_auth_callback is None and not warmed
