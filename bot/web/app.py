"""The Chainlit app: a thin layer over :mod:`bot.service` (run with `make run`).

Profiles:

* **Practice with a customer**: chat settings choose the scenario and difficulty; the customer's
  lines stream in with a mood indicator; actions give a hint or end the session with a debrief
  (scorecard, quotes, sources and the mood curve as a picture).
* **Ask the coach**: starters with common mid-shift questions; retrieval shown as a step; the
  answer streamed, with its cited passages as side elements named in the answer.
* **Review sessions** (trainers, or everyone when login is off): saved sessions and scores.

Importing this module only registers the handlers; login and the history's data layer are set
up once at startup (:func:`on_app_startup`). Every practice session and coach exchange is saved
(SQLite in the data directory, or ``DATABASE_URL``); Chainlit's own tables give the thread
history and feedback when login is on. Model calls run in worker threads so the event loop keeps
serving other sessions.

One turn at a time per chat (:func:`_one_turn`): a message, a hint or "End and debrief" sent
while a reply is being made waits for it (and says so). Stop and a disconnect cancel the
generation in its worker thread (:mod:`bot.llm.cancel`), which frees the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import chainlit as cl
from chainlit.input_widget import Select

from bot.coach.models import CoachAnswer, CoachEvent
from bot.config import Settings, get_settings
from bot.errors import CoachbotError
from bot.inputs import EmptyInputError
from bot.llm.cancel import GenerationCancelled, cancel_scope
from bot.roleplay.builder import STEP_BY_KEY, STEPS, read_answer
from bot.roleplay.progress import report_csv
from bot.safety import install_log_redaction, redact
from bot.service import DIFFICULTIES, CoachRun, PracticeRun, Services
from bot.store.sessions import EVERY_TRAINEE
from bot.web.auth import WebLogin
from bot.web.dashboard import (
    COMMAND,
    builder_problems_markdown,
    is_assign_request,
    is_builder_request,
    is_progress_request,
    parse_assign,
    parse_filters,
    progress_markdown,
)
from bot.web.mood_chart import mood_badge, mood_curve_svg
from bot.web.progress_charts import heatmap_svg, score_trend_svg
from bot.web.security import install_security_headers
from bot.web.views import (
    RUBRIC_NAME,
    assignments_markdown,
    coach_answer_markdown,
    hint_markdown,
    md,
    practice_brief_markdown,
    retrieval_markdown,
    rubric_markdown,
    scorecard_markdown,
    session_markdown,
    sessions_table_markdown,
    source_label,
)
from bot.web.waiting import WaitingNote

log = logging.getLogger("coachbot.app")
T = TypeVar("T")

PRACTICE = "Practice with a customer"
COACH = "Ask the coach"
REVIEW = "Review sessions"
FRIENDLY_FAILURE = (
    "Sorry, something went wrong on my side ({reason}). Nothing you typed is lost: "
    "send your message again, or carry on."
)
COACH_STARTERS = [
    (
        "Customer is shouting",
        "The customer is shouting at me and won't let me speak. What do I say?",
    ),
    ("Wants a manager", "She demands a manager right now and I can't transfer her. What do I say?"),
    ("Third time calling", "He's been transferred three times and is furious. How do I start?"),
    ("Said sorry already", "I've apologised twice and he's still angry. What now?"),
]

# Model calls hold a worker thread for a whole generation, and the embedded model serves one
# at a time, so waiting sessions park threads. They get a pool of their own: in asyncio's
# default pool (6 threads on 2 cores) they starved each other and Chainlit's own file writes
# (a finished answer's sources waited seconds for a thread under load).
MODEL_WORKERS = ThreadPoolExecutor(max_workers=64, thread_name_prefix="coachbot-model")
CHAT_START_WAIT_S = 300  # a message sent while the chat is starting waits this long at most
BUILDER_TIMEOUT_S = 1800  # the scenario builder waits this long for each answer
WAIT_FOR_REPLY = "Still working on the last reply: this comes right after it."
CLASS_FULL = (
    "This machine is already running {limit} practice sessions, as many as it can while keeping "
    "replies quick. Please wait a few minutes, then start a new chat (top left). If this happens "
    "often, ask your administrator to connect a model server (see deploy/README.md)."
)
STOPPED = "Stopped. That line did not count: send it again, or say something else."

_services: Services | None = None


def services() -> Services:
    """The process-wide services (tests replace them with fakes via :func:`use_services`)."""
    global _services
    if _services is None:
        _services = Services(get_settings())
    return _services


def use_services(replacement: Services | None) -> None:
    global _services
    _services = replacement


# --------------------------------------------------------------------------- startup
#
# Importing this module only registers handlers with Chainlit: it reads no settings and writes
# nothing (not the environment, the database, sqlite3's adapters nor Chainlit's server). The
# process is configured once, by Chainlit's startup hook (`on_app_startup`, run in the server's
# lifespan before it accepts a connection).
#
# The login callback is registered there too, not at import. Chainlit decides per request
# whether login is on (`require_login()` and `/login` read `config.code` each time), but
# `chainlit run` checks for CHAINLIT_AUTH_SECRET right after loading the module
# (`ensure_jwt_secret`): a callback registered at import would need the secret written into the
# environment at import. At startup the secret is set first, then the callback registered.
#
# `chainlit run -w` (watch) is not supported: a reload resets Chainlit's `config.code` and
# re-imports this module without running the startup hook again, so the login callback is gone
# (login off) until the app is restarted.

_configure_lock = threading.Lock()
_configured = False
_login: WebLogin | None = None  # login (bot/web/auth.py), once configured


def configure(settings: Settings) -> bool:
    """Chat history and login for this process, once; True if this call did it.

    History: sqlite3 adapters for Chainlit's list/dict bindings, Chainlit's tables, the element
    file route and the data layer; when the database cannot be prepared, history and feedback
    are off (a warning) and the app still works. Login, when the users file has users (or
    ``COACHBOT_AUTH=on``): the auth secret in the environment and the password callback. A
    malformed users file raises, so the server does not start open to everyone. Either way it
    is not tried again.
    """
    global _configured
    with _configure_lock:
        if _configured:
            return False
        _configured = True
    install_log_redaction([settings.api_key])  # every log line, Chainlit's and uvicorn's too
    _configure_history(settings)
    _configure_login(settings)
    _add_rubric_route()
    return True


def _configure_history(settings: Settings) -> None:
    from bot.store.files import LocalStorageClient
    from bot.store.sessions import (
        chainlit_conninfo,
        create_chainlit_tables,
        register_sqlite_adapters,
    )
    from bot.web.files_route import add_file_route, file_access

    try:
        conninfo = chainlit_conninfo(settings.database)
        register_sqlite_adapters()
        create_chainlit_tables(settings.database)
        files = LocalStorageClient(settings.data_dir / "files")
        add_file_route(files, file_access(settings, _reviewable))
    except Exception as exc:  # the app still works; history and feedback are off
        log.warning("chat history is off: the database could not be prepared (%s)", exc)
        return

    @cl.data_layer
    def _data_layer() -> Any:
        from chainlit.data.sql_alchemy import SQLAlchemyDataLayer

        return SQLAlchemyDataLayer(conninfo=conninfo, storage_provider=files)


def _reviewable(thread_id: str) -> bool:
    """Trainers may review a thread that is a saved session (for the kept-files route)."""
    return services().store.find_by_thread(thread_id) is not None


RUBRIC_URL = "/coachbot/rubric"


class _LinkedText(cl.Text):
    """A side panel the browser reads from one of our routes: never kept as a file of the chat
    (a chat closed while it starts, e.g. by a profile switch, deletes its files under a browser
    about to fetch them) nor copied into the history's storage (the content is the route's)."""

    async def send(self, for_id: str, persist: bool = True) -> None:
        await super().send(for_id, persist=False)


def rubric_page() -> str:
    """The rubric the practice brief links (Markdown; the same for every trainee)."""
    svc = services()
    return rubric_markdown(svc.rubric(), svc.settings.knowledge_dir)


def _add_rubric_route() -> None:
    """Serve the rubric from Chainlit's server (ahead of its catch-all page route)."""
    from chainlit.server import app as server
    from starlette.responses import PlainTextResponse

    async def serve_rubric() -> PlainTextResponse:
        text = await asyncio.to_thread(rubric_page)
        return PlainTextResponse(text, headers={"X-Content-Type-Options": "nosniff"})

    server.add_api_route(RUBRIC_URL, serve_rubric, methods=["GET"])
    routes = server.router.routes
    routes.insert(0, routes.pop())


def _configure_login(settings: Settings) -> None:
    """Login (:class:`bot.web.auth.WebLogin`) unless ``COACHBOT_AUTH=off``: on while the users
    file has a user (auto), re-checked while the app runs; the secret is set either way, so
    login can turn on without a restart."""
    from bot.store.users import ensure_auth_secret, login_required

    global _login
    _login = None
    if settings.auth == "off":
        return
    login_required(settings)  # a malformed users file raises: the server does not start
    os.environ["CHAINLIT_AUTH_SECRET"] = ensure_auth_secret(settings)
    _login = WebLogin(settings)
    _login.install()
    _login.sync()


@cl.on_app_startup
async def on_app_startup() -> None:
    """Configure the process (:func:`configure`), then load the model, index and guidance in
    the background so the first reply is quick."""
    install_security_headers()  # the Content-Security-Policy on every response
    svc = services()
    try:
        configure(svc.settings)
    except Exception as exc:
        # Chainlit logs and swallows an exception from this hook and serves anyway, which would
        # open the app to everyone (a malformed users file). SystemExit gets through: uvicorn
        # reports "Application startup failed" and `chainlit run` exits.
        log.error("coachbot cannot start: %s", exc)
        raise SystemExit(f"coachbot cannot start: {exc}") from exc
    if _login is not None:
        _login.start_watching()  # adding the first user turns login on, no restart

    def warm() -> None:
        try:
            svc.writes.start()  # saves an earlier run left in the journal, then the timer
        except Exception as exc:
            log.warning("the write journal could not be replayed: %s", exc)
        try:
            svc.warm_up()
            svc.warm_customer_prefixes()  # each scenario's prompt read once, for first turns
        except Exception as exc:  # the first session will report it in a friendly way
            log.warning("warm-up failed: %s", exc)

    asyncio.get_running_loop().run_in_executor(None, warm)


@cl.on_app_shutdown
async def on_app_shutdown() -> None:
    """Save what the journal still holds, if the database is back (else it waits for the next
    start)."""
    await asyncio.get_running_loop().run_in_executor(None, services().writes.close)


def _user() -> tuple[str | None, str | None]:
    user = cl.user_session.get("user")
    if user is None:
        return None, None
    return user.identifier, (user.metadata or {}).get("role")


def _session_id() -> str:
    """This chat's Chainlit session id (its place in the model's queue and the classroom)."""
    try:
        return str(cl.context.session.id)
    except Exception:  # no session (in some tests)
        return ""


def _thread_id() -> str | None:
    try:
        return cl.context.session.thread_id
    except Exception:  # no session (in some tests)
        return None


# --------------------------------------------------------------------------- running sync code


def _cancel_event() -> threading.Event | None:
    """The current turn's cancel event (set by Stop or a disconnect), if any."""
    try:
        return cl.user_session.get("cancel")
    except Exception:  # no Chainlit context
        return None


@contextlib.contextmanager
def _worker_scope(cancel: threading.Event | None, note: WaitingNote | None) -> Iterator[None]:
    """In the worker thread: the turn's cancel scope and, with a note, the model held."""
    with cancel_scope(cancel), note.hold() if note else contextlib.nullcontext():
        yield


def _waiting_note(queued: bool) -> WaitingNote | None:
    """For a turn that needs the model: its place in the model's queue, shown while it waits."""
    return WaitingNote(services(), _session_id()) if queued else None


async def _in_thread(fn: Callable[[], T], *, queued: bool = False) -> T:
    """``fn()`` in a worker thread, in the current turn's cancel scope: when this task is
    cancelled (Stop), the generation in the thread is told to stop too. ``queued``: the whole
    call holds the model (its queue's note shows while it waits)."""
    cancel = _cancel_event()
    note = _waiting_note(queued)

    def work() -> T:
        with _worker_scope(cancel, note):
            return fn()

    try:
        return await asyncio.get_running_loop().run_in_executor(MODEL_WORKERS, work)
    except asyncio.CancelledError:
        if cancel is not None:
            cancel.set()
        raise
    finally:
        if note is not None:
            await note.finish()


async def _iterate_in_thread(make: Callable[[], Iterator[T]], *, queued: bool = False) -> Any:
    """Items of a blocking iterator, produced in a worker thread, as an async iterator (in the
    current turn's cancel scope and, if ``queued``, holding the model, like
    :func:`_in_thread`)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    done = object()
    cancel = _cancel_event()
    note = _waiting_note(queued)

    def work() -> None:
        try:
            with _worker_scope(cancel, note):
                for item in make():
                    loop.call_soon_threadsafe(queue.put_nowait, ("item", item))
        except BaseException as exc:  # handed to the event loop side
            loop.call_soon_threadsafe(queue.put_nowait, ("error", exc))
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, ("done", done))

    future = loop.run_in_executor(MODEL_WORKERS, work)
    try:
        while True:
            kind, value = await queue.get()
            if kind == "item":
                yield value
            elif kind == "error":
                await future
                raise value
            else:
                await future
                return
    except asyncio.CancelledError:
        if cancel is not None:
            cancel.set()
        raise
    finally:
        if note is not None:
            await note.finish()


@contextlib.asynccontextmanager
async def _one_turn(waiting: str | None = None) -> AsyncIterator[None]:
    """One turn at a time in this chat: wait for the turn in progress (sending ``waiting``
    first, if given), then run with a fresh cancel event for Stop and a disconnect."""
    lock: asyncio.Lock | None = cl.user_session.get("turn_lock")
    if lock is None:
        lock = asyncio.Lock()
        cl.user_session.set("turn_lock", lock)
    if lock.locked() and waiting:
        await cl.Message(content=waiting, author="coachbot").send()
    async with lock:
        cl.user_session.set("cancel", threading.Event())
        try:
            yield
        finally:
            cl.user_session.set("cancel", None)


def _stop_generation() -> bool:
    """Tell the generation of the turn in progress to stop; True if there was one."""
    cancel = _cancel_event()
    if cancel is None:
        return False
    cancel.set()
    return True


@cl.on_stop
async def on_stop() -> None:
    """Stop pressed: Chainlit cancels the handler's task; the worker thread stops too."""
    _stop_generation()


@cl.on_chat_end
async def on_chat_end() -> None:
    """The browser went away: stop generating for it (Chainlit does not cancel the task), and
    free its place in the classroom."""
    _stop_generation()
    services().classroom.leave(_session_id())


def _reason(exc: BaseException) -> str:
    """Why it failed, escaped: an error's message can quote what the user typed."""
    if isinstance(exc, CoachbotError):
        return md(redact(str(exc), [services().settings.api_key]))
    return type(exc).__name__


# --------------------------------------------------------------------------- profiles


@cl.set_chat_profiles
async def chat_profiles(
    current_user: cl.User | None = None, language: str | None = None
) -> list[cl.ChatProfile]:
    """The profiles this user may use (Chainlit passes the user and the browser's language)."""
    role = (current_user.metadata or {}).get("role") if current_user else None
    profiles = [
        cl.ChatProfile(
            name=PRACTICE,
            markdown_description="Role-play an upset customer, then get a scorecard.",
            icon="/public/practice.svg",
            default=True,
        ),
        cl.ChatProfile(
            name=COACH,
            markdown_description="What to say right now, from the articles, with sources.",
            icon="/public/coach.svg",
            starters=[
                cl.Starter(label=label, message=message) for label, message in COACH_STARTERS
            ],
        ),
    ]
    if current_user is None or role == "trainer":
        profiles.append(
            cl.ChatProfile(
                name=REVIEW,
                markdown_description="Trainees' saved sessions and scores.",
                icon="/public/review.svg",
            )
        )
    return profiles


@cl.on_chat_start
async def on_chat_start() -> None:
    started = asyncio.Event()  # a message that arrives meanwhile waits for it (on_message)
    cl.user_session.set("chat_started", started)
    profile = cl.user_session.get("chat_profile") or PRACTICE
    try:
        if profile == COACH:
            await _start_coach()
        elif profile == REVIEW:
            await _start_review()
        else:
            await _start_practice()
    except Exception as exc:
        log.exception("chat start failed")
        await cl.Message(content=FRIENDLY_FAILURE.format(reason=_reason(exc))).send()
    finally:
        started.set()


async def _wait_for_chat_start() -> None:
    """A message sent before the chat start has finished waits for it, instead of starting a
    second session of its own (clients other than the browser can send that early)."""
    started: asyncio.Event | None = cl.user_session.get("chat_started")
    if started is not None and not started.is_set():
        try:
            await asyncio.wait_for(started.wait(), CHAT_START_WAIT_S)
        except TimeoutError:
            log.warning(
                "the chat start took over %s s; answering the message anyway", CHAT_START_WAIT_S
            )


@cl.on_message
async def on_message(message: cl.Message) -> None:
    await _wait_for_chat_start()
    profile = cl.user_session.get("chat_profile") or PRACTICE
    try:
        async with _one_turn(WAIT_FOR_REPLY):
            if profile == COACH:
                await _coach_reply(message.content)
            elif profile == REVIEW and not cl.user_session.get("preview"):
                await _review_reply(message.content)
            else:
                await _practice_reply(message.content)
    except GenerationCancelled:
        await cl.Message(content=STOPPED, author="coachbot").send()
    except EmptyInputError as exc:
        await cl.Message(content=f"{md(exc)} — type what you want to say.").send()
    except CoachbotError as exc:
        await cl.Message(content=_reason(exc)).send()
    except Exception as exc:
        log.exception("reply failed")
        await cl.Message(content=FRIENDLY_FAILURE.format(reason=_reason(exc))).send()


# --------------------------------------------------------------------------- practice


def _practice_actions() -> list[cl.Action]:
    return [
        cl.Action(name="hint", payload={}, label="Hint", icon="lightbulb"),
        cl.Action(name="end_debrief", payload={}, label="End and debrief", icon="flag"),
    ]


async def _show_assignments(scenarios: dict[str, Any]) -> tuple[str | None, str | None]:
    """A logged-in trainee's open assignments, soonest due first, each a one-click start; the
    first one is where the session starts. (None, None) when there are none."""
    user, _ = _user()
    if user is None:
        return None, None
    svc = services()
    statuses = await _in_thread(lambda: svc.assignment_statuses(user=user))
    open_ones = [
        s for s in statuses if s.status != "passed" and s.assignment.scenario_id in scenarios
    ]
    if not open_ones:
        return None, None
    actions = [
        cl.Action(
            name="start_assignment",
            payload={"scenario": s.assignment.scenario_id, "difficulty": s.assignment.difficulty},
            label=f"Start: {scenarios[s.assignment.scenario_id].title} ({s.assignment.difficulty})",
            icon="play",
        )
        for s in open_ones[1:]
    ]
    await cl.Message(
        content=assignments_markdown(open_ones, {k: v.title for k, v in scenarios.items()}),
        author="coachbot",
        actions=actions,
    ).send()
    first = open_ones[0].assignment
    return first.scenario_id, first.difficulty


@cl.action_callback("start_assignment")
async def on_start_assignment(action: cl.Action) -> None:
    payload = action.payload or {}
    try:
        await _start_practice(str(payload.get("scenario")), str(payload.get("difficulty")))
    except Exception as exc:
        log.exception("starting an assignment failed")
        await cl.Message(content=FRIENDLY_FAILURE.format(reason=_reason(exc))).send()


def _new_seed() -> int:
    """Each practice session gets its own wording (seed 0 every time made a repeated scenario
    word for word the same); the seed is saved with the transcript, so it can be replayed."""
    return secrets.randbelow(1_000_000)


async def _start_practice(scenario_id: str | None = None, difficulty: str | None = None) -> None:
    svc = services()
    if not svc.classroom.admit(_session_id()):
        await cl.Message(content=CLASS_FULL.format(limit=svc.classroom.limit)).send()
        return
    scenarios = await _in_thread(lambda: svc.scenarios)
    ids = list(scenarios)
    if scenario_id is None and cl.user_session.get("scenario_id") is None:
        scenario_id, difficulty = await _show_assignments(scenarios)
    chosen = scenario_id or cl.user_session.get("scenario_id") or ids[0]
    level = difficulty or cl.user_session.get("difficulty") or "medium"
    if cl.user_session.get("settings_sent") is None:
        cl.user_session.set("settings_sent", True)
        await cl.ChatSettings(
            [
                Select(
                    id="scenario",
                    label="Scenario",
                    items={scenarios[i].title: i for i in ids},
                    initial_value=chosen,
                ),
                Select(
                    id="difficulty",
                    label="Difficulty",
                    values=list(DIFFICULTIES),
                    initial_index=DIFFICULTIES.index(level),  # type: ignore[arg-type]
                ),
            ]
        ).send()
    user, role = _user()
    thread_id = _thread_id()
    run = await _in_thread(
        lambda: PracticeRun(
            svc, chosen, level, seed=_new_seed(), user=user, role=role, thread_id=thread_id
        )
    )
    cl.user_session.set("practice", run)
    cl.user_session.set("scenario_id", chosen)
    cl.user_session.set("difficulty", level)
    scenario = run.scenario
    rubric_panel = _LinkedText(name=RUBRIC_NAME, url=RUBRIC_URL, display="side")
    await cl.Message(
        content=practice_brief_markdown(scenario, level), author="coachbot", elements=[rubric_panel]
    ).send()
    state = run.simulator.state
    await cl.Message(
        content=f"{md(run.opening_line)}\n\n*{mood_badge(state.anger, state.trust, False)}*",
        author=scenario.customer.name,
        actions=_practice_actions(),
    ).send()
    await _notices(run.take_notices())


@cl.on_settings_update
async def on_settings_update(values: dict[str, Any]) -> None:
    if (cl.user_session.get("chat_profile") or PRACTICE) != PRACTICE:
        return
    scenario_id = values.get("scenario") or cl.user_session.get("scenario_id")
    difficulty = values.get("difficulty") or cl.user_session.get("difficulty") or "medium"
    run: PracticeRun | None = cl.user_session.get("practice")
    if run and run.scenario.id == scenario_id and run.simulator.difficulty == difficulty:
        return
    try:
        await _start_practice(scenario_id, difficulty)
    except Exception as exc:
        log.exception("restart failed")
        await cl.Message(content=FRIENDLY_FAILURE.format(reason=_reason(exc))).send()


async def _practice_reply(text: str) -> None:
    run: PracticeRun | None = cl.user_session.get("practice")
    if run is None:
        await _start_practice()
        run = cl.user_session.get("practice")
    if run is None:  # the class is full: _start_practice said so
        return
    if run.finished:
        await cl.Message(
            content="This session has ended. Start a new chat (top left) to practise again."
        ).send()
        return
    reply = cl.Message(content="", author=run.scenario.customer.name)
    await reply.send()
    turn = await _in_thread(lambda: run.respond(text), queued=True)
    line = md(turn.customer)  # model text: shown literally
    for word in line.split(" "):  # the line is checked before it is shown
        await reply.stream_token(word + " ")
    state = turn.state
    reply.content = f"{line}\n\n*{mood_badge(state.anger, state.trust, state.feels_heard)}*"
    reply.actions = [] if run.finished else _practice_actions()
    await reply.update()
    await _notices(run.take_notices())
    if run.finished:
        outcome = run.simulator.transcript.outcome
        await cl.Message(
            content=f"The conversation is over ({(outcome or '').replace('_', ' ')}). "
            "Here is your debrief."
        ).send()
        await _debrief(run)


@cl.action_callback("hint")
async def on_hint(action: cl.Action) -> None:
    async with _one_turn("The customer is still replying: your hint comes right after."):
        run: PracticeRun | None = cl.user_session.get("practice")
        if run is None or run.finished:
            await cl.Message(content="There is no practice session running.").send()
            return
        hint = await _in_thread(run.hint)  # no model call: it need not queue
        knowledge_dir = services().settings.knowledge_dir
        await cl.Message(content=hint_markdown(hint, knowledge_dir), author="coachbot").send()


@cl.action_callback("end_debrief")
async def on_end(action: cl.Action) -> None:
    async with _one_turn("The customer is still replying: your debrief comes right after."):
        run: PracticeRun | None = cl.user_session.get("practice")
        if run is None:
            await cl.Message(content="There is no practice session running.").send()
            return
        if run.scorecard is not None:
            await cl.Message(content="This session is already debriefed (see above).").send()
            return
        await _debrief(run)


async def _debrief(run: PracticeRun) -> None:
    card = await _in_thread(run.end)  # scoring uses no model: it need not queue
    svg = mood_curve_svg(card.mood)
    chart = cl.Image(
        name="Mood curve", content=svg.encode("utf-8"), mime="image/svg+xml", display="inline"
    )
    transcript = run.final_transcript or run.simulator.transcript  # what was scored
    await cl.Message(
        content=scorecard_markdown(card, transcript, services().settings.knowledge_dir),
        author="coachbot",
        elements=[chart],
    ).send()
    await _notices(run.take_notices())


# --------------------------------------------------------------------------- coach


async def _start_coach() -> None:
    user, role = _user()
    svc = services()
    thread_id = _thread_id()  # read here: worker threads have no Chainlit context
    run = await _in_thread(lambda: CoachRun(svc, user=user, role=role, thread_id=thread_id))
    cl.user_session.set("coach", run)


async def _coach_reply(text: str) -> None:
    run: CoachRun | None = cl.user_session.get("coach")
    if run is None:
        await _start_coach()
        run = cl.user_session.get("coach")
    assert run is not None
    reply = cl.Message(content="", author="coach")
    final: CoachAnswer | None = None
    sent = False
    async for event in _iterate_in_thread(lambda: run.stream(text), queued=True):
        event: CoachEvent
        if event.type == "citations":
            async with cl.Step(name="Retrieve passages", type="retrieval") as step:
                step.show_input = True  # as Markdown: the default ("json") is a breakable fence
                step.input = md(text)
                step.output = retrieval_markdown(event.citations or [])
        elif event.type == "token":
            if not sent:
                await reply.send()
                sent = True
            await reply.stream_token(md(event.text))  # replaced by the checked answer
        elif event.type == "restart":
            reply.content = ""
            await reply.update()
        elif event.type == "answer":
            final = event.answer
    assert final is not None
    elements = [
        cl.Text(name=source_label(c), content=c.text, display="side") for c in final.citations
    ]
    reply.content = coach_answer_markdown(final)
    reply.elements = elements  # type: ignore[assignment]
    if sent:
        await reply.update()
    else:
        await reply.send()
    await _notices(final.notices + run.save.take_notices())


# --------------------------------------------------------------------------- trainers


async def _start_review() -> None:
    svc = services()
    user, role = _user()
    if user is not None and role != "trainer":
        await cl.Message(content="Only trainers can review sessions.").send()
        return
    summaries = await _in_thread(lambda: svc.store.list_sessions(limit=30))
    await cl.Message(
        content=sessions_table_markdown(summaries)
        + "\n\nType a session id (or its first characters) to open it, or **progress** for the "
        "trainees' progress dashboard.",
        author="coachbot",
        actions=[cl.Action(name="progress", payload={}, label="Progress", icon="chart-line")],
    ).send()


async def _show_progress(text: str) -> None:
    """The progress dashboard: trainees, trends, the missed-check heatmap and a CSV."""
    svc = services()
    filters = parse_filters(text)
    report = await _in_thread(lambda: svc.progress(**filters))
    statuses = await _in_thread(lambda: svc.assignment_statuses(user=filters.get("user")))
    elements: list[Any] = []
    if report.attempts:
        elements = [
            cl.Image(name="Score trends", content=score_trend_svg(report).encode(),
                     mime="image/svg+xml", display="inline"),
            cl.Image(name="Checks missed", content=heatmap_svg(report).encode(),
                     mime="image/svg+xml", display="inline"),
            cl.File(name="progress.csv", content=report_csv(report).encode(), mime="text/csv",
                    display="inline"),
        ]  # fmt: skip
    await cl.Message(
        content=progress_markdown(report, filters, statuses), author="coachbot", elements=elements
    ).send()


BUILDER_STOPPED = "The scenario builder stopped: nothing was saved."
BUILDER_ROUNDS = 3  # times a trainer is asked again about the steps a scenario failed on


async def _ask_step(svc: Services, key: str) -> Any:
    """One builder step: asked until its answer can be read; None if the trainer stops."""
    step = STEP_BY_KEY[key]
    question = svc.builder_question(key) + ("" if not step.optional else " (or skip)")
    while True:
        reply = await cl.AskUserMessage(
            content=f"{md(question)}\n\n*Type stop to leave the builder.*",
            author="coachbot",
            timeout=BUILDER_TIMEOUT_S,
        ).send()
        text = str((reply or {}).get("output") or "")
        if not reply or text.strip().lower() == "stop":
            return None
        try:
            return read_answer(step, text)
        except CoachbotError as exc:
            await cl.Message(content=_reason(exc), author="coachbot").send()


async def _build_scenario() -> None:
    """The scenario builder: one question per step, then a validated, saved scenario."""
    svc = services()
    answers: dict[str, Any] = {}
    pending = [step.key for step in STEPS]
    for _ in range(BUILDER_ROUNDS):
        for key in pending:
            answer = await _ask_step(svc, key)
            if answer is None:
                await cl.Message(content=BUILDER_STOPPED, author="coachbot").send()
                return
            answers[key] = answer
        scenario, problems = svc.build_scenario(answers)
        if scenario is not None:
            break
        await cl.Message(content=builder_problems_markdown(problems), author="coachbot").send()
        pending = list(problems)
    else:
        await cl.Message(content=BUILDER_STOPPED, author="coachbot").send()
        return
    path = await _in_thread(lambda: svc.save_scenario(scenario))
    await cl.Message(
        content=md(
            f"Saved “{scenario.title}” as {scenario.id} (version {scenario.version}) in "
            f"{path.name}. Trainees can pick it in Practice now; assign it with "
            f"assign {scenario.id} to NAME."
        ),
        author="coachbot",
        actions=[
            cl.Action(
                name="try_scenario",
                payload={"scenario": scenario.id},
                label="Try it now",
                icon="play",
            )
        ],
    ).send()


@cl.action_callback("try_scenario")
async def on_try_scenario(action: cl.Action) -> None:
    """A preview: this Review chat becomes a practice session of the new scenario."""
    cl.user_session.set("preview", True)
    try:
        await _start_practice(str((action.payload or {}).get("scenario")), "medium")
    except Exception as exc:
        log.exception("the preview failed")
        await cl.Message(content=FRIENDLY_FAILURE.format(reason=_reason(exc))).send()


async def _assign(text: str, trainer: str | None) -> None:
    svc = services()
    wanted = parse_assign(text)
    wanted = wanted.model_copy(update={"created_by": trainer})
    made = await _in_thread(lambda: svc.assign(wanted))
    who = "every trainee" if made.assignee == EVERY_TRAINEE else made.assignee
    await cl.Message(
        content=md(
            f"Assigned {made.scenario_id} ({made.difficulty}, pass mark {made.pass_mark}) to "
            f"{who}. They see it first when they open Practice; type progress to follow it."
        ),
        author="coachbot",
    ).send()


@cl.action_callback("progress")
async def on_progress(action: cl.Action) -> None:
    user, role = _user()
    if user is not None and role != "trainer":
        await cl.Message(content="Only trainers can review sessions.").send()
        return
    try:
        await _show_progress(COMMAND)
    except CoachbotError as exc:
        await cl.Message(content=_reason(exc)).send()


async def _review_reply(text: str) -> None:
    user, role = _user()
    if user is not None and role != "trainer":
        await cl.Message(content="Only trainers can review sessions.").send()
        return
    svc = services()
    key = text.strip().split()[-1] if text.strip() else ""
    if key.lower() in {"list", "sessions", "all"}:
        await _start_review()
        return
    if is_progress_request(text):
        await _show_progress(text)
        return
    if is_assign_request(text):
        await _assign(text, user)
        return
    if is_builder_request(text):
        await _build_scenario()
        return
    record = await _in_thread(lambda: svc.store.get_session(key))
    elements = []
    card = record.scorecard()
    if card is not None and card.mood:
        svg = mood_curve_svg(card.mood)
        elements.append(
            cl.Image(
                name="Mood curve", content=svg.encode(), mime="image/svg+xml", display="inline"
            )
        )
    await cl.Message(
        content=session_markdown(record, svc.settings.knowledge_dir),
        author="coachbot",
        elements=elements,
    ).send()


# --------------------------------------------------------------------------- feedback, resume


@cl.on_feedback
async def on_feedback(feedback: Any) -> None:
    user, _ = _user()
    svc = services()
    await _in_thread(  # saved like every write: journalled while the database is away
        lambda: svc.record_feedback(
            thread_id=feedback.threadId,
            step_id=feedback.forId,
            value=int(feedback.value),
            comment=feedback.comment,
            user=user,
        )
    )


@cl.on_chat_resume
async def on_chat_resume(thread: dict[str, Any]) -> None:
    """A thread from the history: its messages are shown; practice restarts fresh."""
    profile = cl.user_session.get("chat_profile") or PRACTICE
    if profile == COACH:
        await _start_coach()
        run: CoachRun = cl.user_session.get("coach")
        for step in thread.get("steps", []):
            if step.get("type") == "user_message" and step.get("output"):
                run.history.append({"role": "user", "content": step["output"]})
    elif profile == PRACTICE:
        await cl.Message(
            content="This practice session is saved. Start a new chat to practise again; "
            "trainers can review it under *Review sessions*."
        ).send()


async def _notices(notices: list[str]) -> None:
    for notice in notices:
        await cl.Message(content=f"ℹ️ {md(notice)}", author="coachbot").send()
