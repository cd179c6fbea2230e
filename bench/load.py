"""Load test of the web app: concurrent Chainlit sessions over Socket.IO (issues 8 and 9).

The app runs as a subprocess (``python -m chainlit run <target> --headless``) on 127.0.0.1 and
a free port, in a fresh temporary data directory, with login off and without ``CI`` (Chainlit's
CI mode puts a fake ``OPENAI_API_KEY`` in the environment). ``--model fake`` (the default) runs
``bench/load_app.py``, the real app on a fake chat model that streams slowly; ``--model
embedded`` runs ``bot/web/app.py`` on the embedded model.

Each session is a ``socketio.AsyncClient`` (what the browser does: connect with the session id,
client type and chat profile, emit ``connection_successful``, then one ``client_message`` per
line). Sessions alternate the profiles "Practice with a customer" and "Ask the coach" and send
``--messages`` lines one after another. Chainlit brackets ``on_chat_start`` and each
``client_message`` in ``task_start`` ... ``task_end`` (the browser keeps its input busy in
between; the ``task_end`` sent on connecting has no ``task_start``). A session waits for its chat
start to end (practice: the customer's opening line, with its ``action`` buttons), and a reply is
complete when every task begun since the line was sent has ended; its first token is the first
``stream_token`` in between. ``--eager`` sends the first line without waiting for the chat start,
as a starter clicked at once would.

Reported: time to first token and to the complete reply (p50 / p95, overall and per profile),
errors (error messages, the app's friendly-failure or save-failed text, a disconnect, a reply
timeout, the global deadline, a message from another thread), lost messages (sent, never
answered), whether the session store holds every session with all its turns, the server's peak
RSS (VmHWM) and the tracebacks in its log. One practice and one coach session warm the app up
first (the index, guidance engine and embeddings load on first use); they are not measured.

``--db-outage SECONDS`` (fake model only) stops the session store's database for that long when
the measured sessions start: ``bench/load_app.py`` fails every statement of its engine while a
flag file exists (``bot.store.faults.DatabaseOutage``). The app keeps the writes in its journal
and replays them every ``--journal-flush`` seconds; the harness waits for the outage to end and
the journal to empty, then checks that every line sent was saved once. The app's "saving
failed" notices are expected then: they are counted, not errors.

Usage (writes bench/results/load-<model>.json; exits 1 on any error or lost message):
    .venv/bin/python bench/load.py                           # 20 sessions x 3 messages, fake
    .venv/bin/python bench/load.py --sessions 4 --messages 2 # a quick check
    .venv/bin/python bench/load.py --model embedded          # the real model (slow)
    .venv/bin/python bench/load.py --sessions 6 --messages 3 --db-outage 30  # DB away 30 s
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import os
import random
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/load.py`: make `bench` and `bot` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import PROJECT_ROOT, BenchResult, Target, summary
from bot.rendering import markdown_text

TARGETS = {"fake": "bench/load_app.py", "embedded": "bot/web/app.py"}
PRACTICE_LINES = (
    "I'm so sorry this happened, that sounds really upsetting. Tell me more.",
    "So if I've got this right, you're left without what you paid for. What would feel fair?",
    "I can send a replacement today and refund the delivery charge. Would that work for you?",
    "Thank you for bearing with me. I'll email you tomorrow to make sure it's all sorted.",
)
COACH_QUESTIONS = (
    "The customer is shouting at me and won't let me speak. What do I say?",
    "And if she keeps shouting after that?",
    "He's been transferred three times and is furious. How do I start?",
    "I've apologised twice and he's still angry. What now?",
    "She demands a manager right now and I can't transfer her. What do I say?",
)
# Variables that would point the server elsewhere than its temporary data directory and the
# chosen model: Chainlit's CI mode (a fake OpenAI key), OpenAI settings, a shared database.
_SCRUBBED_ENV = (
    "CI",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "DATABASE_URL",
    "CHROMA_HOST",
    "CHROMA_PATH",
    "COACHBOT_USERS_FILE",
    "CHAINLIT_AUTH_SECRET",
    "LITERAL_API_KEY",
)


# --------------------------------------------------------------------------- the app's texts


def _constants(path: Path, names: set[str]) -> dict[str, str]:
    """String constants of a module, read from its source (importing ``bot.web.app`` would import
    Chainlit, which creates ``.chainlit/``, ``.files/`` and ``chainlit.md`` in the current
    directory, and the whole app stack into the harness's process)."""
    found: dict[str, str] = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name) and target.id in names:
                found[target.id] = ast.literal_eval(node.value)
    missing = names - found.keys()
    if missing:
        raise RuntimeError(f"{path} no longer defines {', '.join(sorted(missing))}")
    return found


_APP = _constants(
    PROJECT_ROOT / "bot" / "web" / "app.py",
    {"PRACTICE", "COACH", "FRIENDLY_FAILURE", "CLASS_FULL"},
)
_SERVICE = _constants(PROJECT_ROOT / "bot" / "service.py", {"SAVE_FAILED"})
PRACTICE: str = _APP["PRACTICE"]
COACH: str = _APP["COACH"]
FRIENDLY_PREFIX: str = _APP["FRIENDLY_FAILURE"].split("{reason}")[0]
SAVE_FAILED: str = _SERVICE["SAVE_FAILED"]
SAVE_FAILED_ERROR = "save failed notice"
CLASS_FULL_PREFIX: str = _APP["CLASS_FULL"].split("{limit}")[0]
# bot.llm.queue.describe_position: the note a line waiting for the model shows (then removed)
QUEUE_NOTE_MARKERS = ("You are next", "ahead of you")
CONVERSATION_OVER = ("The conversation is over", "This session has ended")
CLASSROOM_LINES = (
    "I'm so sorry this happened, that sounds really upsetting. Tell me more.",
    "That must be so frustrating. What happened next?",
    "So if I've got this right, you're left without what you paid for. Is that it?",
    "I understand why you're angry. How has this affected you?",
    "Is there anything else about this that's worrying you?",
    "Thank you for explaining. What would feel fair to you?",
    "I can send a replacement today and refund the delivery charge. Would that work for you?",
    "Thank you for bearing with me. I'll email you tomorrow to make sure it's all sorted.",
)
# The line bot.store.journal logs when the database is back and the journal is saved.
JOURNAL_REPLAYED = re.compile(r"the database is back: (\d+) journalled write")
OUTAGE_FLAG_ENV = "COACHBOT_FAKE_DB_OUTAGE_FLAG"  # read by bench/load_app.py
JOURNAL_FILE = "pending_writes.sqlite3"  # bot.store.journal.JOURNAL_FILE
DEAD_LETTER_FILE = "dead_letter_writes.jsonl"  # bot.store.journal.DEAD_LETTER_FILE


# --------------------------------------------------------------------------- the server


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(
    data_dir: Path,
    model: str,
    token_delay: float,
    outage_flag: Path | None = None,
    journal_flush_s: float = 15.0,
) -> dict[str, str]:
    """The server's environment: this one minus :data:`_SCRUBBED_ENV`, in ``data_dir``."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    env.update(
        {
            "COACHBOT_DATA_DIR": str(data_dir),
            "COACHBOT_AUTH": "off",
            "COACHBOT_LLM": "local",
            "COACHBOT_EMBEDDINGS": "local",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if model == "fake":
        env["COACHBOT_FAKE_TOKEN_DELAY"] = str(token_delay)
    env["COACHBOT_JOURNAL_FLUSH_S"] = str(journal_flush_s)
    if outage_flag is not None:
        env[OUTAGE_FLAG_ENV] = str(outage_flag)
    return env


class AppServer:
    """``chainlit run <target>`` on 127.0.0.1 and a free port; its output goes to a log file."""

    def __init__(self, target: str, env: dict[str, str], log_path: Path) -> None:
        self.target = target
        self.env = env
        self.log_path = log_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.peak_rss_mib: float | None = None
        self.cpu_s: float | None = None

    def start(self, timeout: float) -> None:
        """Start the server and wait until it answers HTTP (RuntimeError if it does not)."""
        command = [sys.executable, "-m", "chainlit", "run", self.target, "--headless"]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                command,
                cwd=PROJECT_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with urllib.request.urlopen(self.url, timeout=2) as response:
                    response.read()
                return
            except OSError:
                time.sleep(0.3)
        state = "exited" if self.proc.poll() is not None else f"not ready after {timeout:.0f} s"
        raise RuntimeError(f"the app server {state}:\n{self.log_text()[-3000:]}")

    def read_proc_stats(self) -> None:
        """Record the server's peak resident memory (VmHWM, MiB) and CPU time (user + system,
        s) from /proc, while it runs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        proc = Path(f"/proc/{self.proc.pid}")
        try:
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_rss_mib = round(int(line.split()[1]) / 1024, 1)
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            ticks = os.sysconf("SC_CLK_TCK")
            self.cpu_s = round((int(fields[11]) + int(fields[12])) / ticks, 1)
        except (OSError, ValueError, IndexError):
            pass

    def stop(self) -> None:
        """Record the peak RSS and CPU time, then terminate the server (kill it after 20 s)."""
        if self.proc is None:
            return
        self.read_proc_stats()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def log_text(self) -> str:
        """Everything the server has written so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


# --------------------------------------------------------------------------- one chat session


@dataclass
class Reply:
    """The bot's answer to one line, as the browser saw it."""

    session: int
    profile: str
    index: int
    sent: str
    first_token_s: float | None = None
    complete_s: float | None = None
    text: str = ""
    queue_notes: int = 0  # "You are next" / "n turns ahead of you" notes while it waited
    errors: list[str] = field(default_factory=list)

    @property
    def answered(self) -> bool:
        """A complete, non-empty reply arrived (it may still carry an error)."""
        return self.complete_s is not None and bool(self.text.strip())


@dataclass
class SessionReport:
    """One chat session: what was sent, what came back, and what went wrong."""

    index: int
    profile: str
    thread_id: str | None = None
    start_s: float | None = None  # connect to the end of on_chat_start
    sent: list[str] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    turned_away: bool = False  # the class was full: the app said so at the chat start

    @property
    def lost(self) -> int:
        """Lines sent that never got a complete reply."""
        return len(self.sent) - sum(1 for r in self.replies if r.answered)

    def all_errors(self) -> list[str]:
        """Session and reply errors, each naming the session (and the line)."""
        found = [f"session {self.index} ({self.profile}): {e}" for e in self.errors]
        for reply in self.replies:
            label = f"session {self.index} ({self.profile}) line {reply.index + 1}"
            found += [f"{label}: {e}" for e in reply.errors]
        return found


class ChatClient:
    """A browser's Socket.IO session with the app, recording every event it receives."""

    def __init__(self, url: str, profile: str) -> None:
        import socketio

        self.url = url
        self.profile = profile
        self.session_id = str(uuid.uuid4())
        self.thread_id: str | None = None
        self.events: list[tuple[float, str, Any]] = []
        self.base = 0  # events before this one (the connection's task_end) are not tasks
        self.disconnected = False
        self.closing = False
        self._changed = asyncio.Event()
        self.sio = socketio.AsyncClient(reconnection=False)
        self.sio.on("*", self._on_event)
        self.sio.on("disconnect", self._on_disconnect)

    async def _on_event(self, event: str, *args: Any) -> None:
        data = args[0] if args else None
        self.events.append((time.perf_counter(), event, data))
        if self.thread_id is None and isinstance(data, dict):
            self.thread_id = data.get("threadId") or data.get("thread_id") or None
        self._changed.set()

    async def _on_disconnect(self, *args: Any) -> None:
        self.disconnected = True
        self._changed.set()

    async def wait_for(self, condition: Any, timeout: float) -> bool:
        """Wait until ``condition()`` holds (False on timeout or a disconnect)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if condition():
                return True
            remaining = deadline - loop.time()
            if self.disconnected or remaining <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def seen(self, event: str, since: int = 0) -> bool:
        """True if ``event`` has arrived since event number ``since``."""
        return any(name == event for _, name, _ in self.events[since:])

    def tasks_open(self) -> int:
        """Tasks begun and not yet ended (the server's ``task_start`` minus ``task_end``)."""
        names = [name for _, name, _ in self.events[self.base :]]
        return names.count("task_start") - names.count("task_end")

    def settled(self, since: int) -> bool:
        """A task has begun since event ``since`` and every task begun has ended."""
        return self.seen("task_start", since) and self.tasks_open() <= 0

    async def connect(self, timeout: float) -> None:
        """Connect as the web app does and wait for the server's first ``task_end``."""
        auth = {
            "sessionId": self.session_id,
            "clientType": "webapp",
            "chatProfile": self.profile,
            "userEnv": "{}",
        }
        await self.sio.connect(
            self.url,
            socketio_path="/ws/socket.io",
            auth=auth,
            transports=["websocket"],
            wait_timeout=timeout,
        )
        await self.sio.emit("connection_successful")
        if not await self.wait_for(lambda: self.seen("task_end"), timeout):
            raise RuntimeError("the server did not acknowledge the connection")
        self.base = next(i for i, (_, name, _) in enumerate(self.events) if name == "task_end")
        self.base += 1

    async def wait_for_start(self, timeout: float) -> bool:
        """Wait until ``on_chat_start`` has run (its task has begun and ended)."""
        return await self.wait_for(lambda: self.settled(self.base), timeout)

    def messages(self, since: int) -> list[dict[str, Any]]:
        """The steps sent or updated since event ``since``, merged by id, in order."""
        merged: dict[str, dict[str, Any]] = {}
        for _, name, data in self.events[since:]:
            if name in {"new_message", "update_message", "stream_start"} and isinstance(data, dict):
                merged[data["id"]] = {**merged.get(data["id"], {}), **data}
        return list(merged.values())

    async def ask(self, session: int, index: int, text: str, timeout: float) -> Reply:
        """Send one line and wait for the whole reply (every task begun since has ended)."""
        reply = Reply(session=session, profile=self.profile, index=index, sent=text)
        mark = len(self.events)
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        message = {
            "id": str(uuid.uuid4()),
            "threadId": self.thread_id or "",
            "name": "User",
            "type": "user_message",
            "output": text,
            "createdAt": now,
        }

        sent_at = time.perf_counter()
        await self.sio.emit("client_message", {"message": message, "fileReferences": []})
        done = await self.wait_for(lambda: self.settled(mark), timeout)
        window = self.events[mark:]
        if done:
            ends = [t for t, name, _ in window if name == "task_end"]
            reply.complete_s = ends[-1] - sent_at
        elif self.disconnected and not self.closing:
            reply.errors.append("disconnected while waiting for the reply")
        else:
            reply.errors.append(f"no complete reply within {timeout:.0f} s")
        tokens = [t for t, name, _ in window if name == "stream_token"]
        steps = self.messages(mark)
        notes = [m for m in steps if _is_queue_note(m.get("output", ""))]
        reply.queue_notes = len(notes)
        said = [m for m in steps if m.get("type") == "assistant_message" and m not in notes]
        if tokens:
            reply.first_token_s = tokens[0] - sent_at
        elif done and said:
            reply.first_token_s = reply.complete_s
        reply.text = "\n\n".join(m.get("output", "") for m in said if m.get("output"))
        for step in steps:
            output = step.get("output", "")
            if step.get("isError"):
                reply.errors.append(f"error message: {output[:200]}")
            elif FRIENDLY_PREFIX in output:
                reply.errors.append(f"friendly failure: {output[:200]}")
            elif SAVE_FAILED in output:
                reply.errors.append(SAVE_FAILED_ERROR)
            if self.thread_id and step.get("threadId") not in (None, "", self.thread_id):
                reply.errors.append(f"a message of another thread ({step.get('threadId')})")
        if done and not reply.text.strip():
            reply.errors.append("the reply was empty")
        return reply

    async def close(self) -> None:
        """Ask the server to drop the session (as a new chat does), then disconnect."""
        self.closing = True
        if self.sio.connected:
            with contextlib.suppress(Exception):  # the server may be gone already
                await asyncio.wait_for(self.sio.emit("clear_session"), 5)
                await asyncio.wait_for(self.sio.disconnect(), 10)


def _is_queue_note(text: str) -> bool:
    return any(marker in text for marker in QUEUE_NOTE_MARKERS)


def lines_for(profile: str, session: int, count: int) -> list[str]:
    """The lines a session sends: practice moves in order; coach questions from an offset."""
    if profile == PRACTICE:
        return [PRACTICE_LINES[i % len(PRACTICE_LINES)] for i in range(count)]
    return [COACH_QUESTIONS[(session + i) % len(COACH_QUESTIONS)] for i in range(count)]


async def run_session(
    url: str,
    report: SessionReport,
    messages: int,
    reply_timeout: float,
    eager: bool = False,
) -> None:
    """Play one session into ``report`` (filled as it goes, so a cancelled one still counts)."""
    client = ChatClient(url, report.profile)
    started = time.perf_counter()
    try:
        try:
            await client.connect(min(30.0, reply_timeout))
        except Exception as exc:
            report.errors.append(f"could not connect: {type(exc).__name__}: {exc}")
            return
        if not eager:
            if not await client.wait_for_start(reply_timeout):
                report.errors.append(f"the chat start did not end within {reply_timeout:.0f} s")
                return
            report.start_s = time.perf_counter() - started
            for step in client.messages(0):
                if step.get("isError") or FRIENDLY_PREFIX in step.get("output", ""):
                    report.errors.append(f"chat start failed: {step.get('output', '')[:200]}")
                    return
            if report.profile == PRACTICE and not client.seen("action"):
                report.errors.append("the customer's opening line (with its actions) never came")
                return
        for i, text in enumerate(lines_for(report.profile, report.index, messages)):
            report.sent.append(text)
            reply = await client.ask(report.index, i, text, reply_timeout)
            report.replies.append(reply)
            if not reply.answered:
                break  # the session is stuck; later lines would only pile up
    finally:
        report.thread_id = client.thread_id
        if client.disconnected and not client.closing:
            report.errors.append("the server disconnected the session")
        await client.close()


async def _start_chat(client: ChatClient, report: SessionReport, timeout: float) -> bool:
    """Connect and wait for the customer's opening line; False (with the reason in ``report``)
    when the chat did not start, or the class was full."""
    started = time.perf_counter()
    try:
        await client.connect(min(30.0, timeout))
    except Exception as exc:
        report.errors.append(f"could not connect: {type(exc).__name__}: {exc}")
        return False
    if not await client.wait_for_start(timeout):
        report.errors.append(f"the chat start did not end within {timeout:.0f} s")
        return False
    report.start_s = time.perf_counter() - started
    if any(CLASS_FULL_PREFIX in m.get("output", "") for m in client.messages(0)):
        report.turned_away = True
        return False
    if not client.seen("action"):
        report.errors.append("the customer's opening line (with its actions) never came")
        return False
    return True


async def _classroom_chat(
    url: str, report: SessionReport, rng: random.Random, until: float, config: LoadConfig
) -> bool:
    """One practice chat of a classroom trainee: think, send, wait, until ``until``. True when
    the conversation ended (the trainee then starts a new chat)."""
    client = ChatClient(url, PRACTICE)
    try:
        if not await _start_chat(client, report, config.reply_timeout):
            return False
        for i, text in enumerate(CLASSROOM_LINES):
            await asyncio.sleep(rng.uniform(*config.think_s))
            if time.monotonic() >= until:
                return False
            report.sent.append(text)
            reply = await client.ask(report.index, i, text, config.reply_timeout)
            report.replies.append(reply)
            if not reply.answered:
                return False
            if any(marker in reply.text for marker in CONVERSATION_OVER):
                return True
        return True  # every line said: a new chat, as a trainee would start
    finally:
        report.thread_id = client.thread_id
        if client.disconnected and not client.closing:
            report.errors.append("the server disconnected the session")
        await client.close()


async def run_classroom(
    url: str, reports: list[SessionReport], config: LoadConfig, deadline: float
) -> None:
    """``config.sessions`` trainees, each sending a line ``config.think_s`` after every reply
    for ``config.minutes``; each chat they open is one report (appended as it starts)."""
    until = time.monotonic() + config.minutes * 60

    async def trainee(number: int) -> None:
        rng = random.Random(number)
        while time.monotonic() < until:
            report = SessionReport(len(reports), PRACTICE)
            reports.append(report)
            if not await _classroom_chat(url, report, rng, until, config):
                return

    tasks = [asyncio.create_task(trainee(n)) for n in range(config.sessions)]
    _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def run_sessions(
    url: str,
    reports: list[SessionReport],
    messages: int,
    reply_timeout: float,
    deadline: float,
    eager: bool = False,
) -> None:
    """Run every session at once; those still running at ``deadline`` (monotonic) are cut."""
    tasks = {
        asyncio.create_task(run_session(url, r, messages, reply_timeout, eager)): r for r in reports
    }
    _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
    for task in pending:
        tasks[task].errors.append("cut by the global deadline")
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for task, result in zip(tasks, results, strict=True):
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            tasks[task].errors.append(f"harness error: {type(result).__name__}: {result}")


# --------------------------------------------------------------------------- checks


def check_persistence(
    database_url: str, reports: list[SessionReport], ignore_threads: set[str]
) -> tuple[list[str], int, int]:
    """Problems with what the session store holds for ``reports`` (one saved session per chat,
    every line and reply in it, nothing unexpected), how many sessions it holds and how many
    lines (turns, coach questions) of ``reports`` it holds."""
    from bot.store.sessions import SessionStore

    store = SessionStore(database_url)
    problems: list[str] = []
    saved_lines = 0
    try:
        saved = store.list_sessions(limit=100_000)
        by_thread: dict[str | None, list[Any]] = defaultdict(list)
        for s in saved:
            by_thread[s.thread_id].append(s)
        for report in reports:
            label = f"session {report.index} ({report.profile})"
            if not report.sent:
                continue
            if report.thread_id is None:
                problems.append(f"{label}: its thread id never reached the client")
                continue
            found = by_thread.pop(report.thread_id, [])
            if not found:
                problems.append(f"{label}: nothing saved for thread {report.thread_id}")
                continue
            if len(found) > 1:
                turns = [s.turns for s in found]
                problems.append(f"{label}: {len(found)} saved sessions for one chat, turns {turns}")
            record = store.get_session(max(found, key=lambda s: s.turns).id)
            want_kind = "practice" if report.profile == PRACTICE else "coach"
            if record.kind != want_kind:
                problems.append(f"{label}: saved as a {record.kind} session")
                continue
            if record.kind == "practice":
                transcript = record.transcript()
                turns = transcript.turns if transcript else []
                said = [t.trainee for t in turns]
                for turn, reply in zip(turns, report.replies, strict=False):
                    shown = markdown_text(turn.customer)  # the app shows the line escaped
                    if reply.answered and shown not in reply.text:
                        problems.append(
                            f"{label} line {turn.index}: saved customer line {turn.customer!r} "
                            f"is not the one shown ({reply.text[:80]!r})"
                        )
            else:
                said = [e.question for e in record.exchanges()]
            saved_lines += len(said)
            if said != report.sent:
                problems.append(
                    f"{label}: saved {len(said)} of {len(report.sent)} lines "
                    f"(saved {said!r}, sent {report.sent!r})"
                )
        for thread, rest in by_thread.items():
            if thread not in ignore_threads:
                problems.append(
                    f"{len(rest)} saved session(s) of thread {thread} that no chat knows "
                    f"({', '.join(f'{s.kind} {s.id[:8]} turns {s.turns}' for s in rest)})"
                )
        return problems, len(saved), saved_lines
    finally:
        store.close()


def customer_line_sources(database_url: str, reports: list[SessionReport]) -> dict[str, int]:
    """Where the saved customer lines of ``reports`` came from: the model, a trainer line after
    failed model attempts, or a trainer line at once (a fact, or the model too busy)."""
    from bot.store.sessions import SessionStore

    store = SessionStore(database_url)
    counts = {"model": 0, "trainer_after_attempts": 0, "trainer_at_once": 0}
    threads = {r.thread_id for r in reports if r.thread_id and r.profile == PRACTICE}
    try:
        for summary_ in store.list_sessions(limit=100_000):
            if summary_.thread_id not in threads:
                continue
            transcript = store.get_session(summary_.id).transcript()
            for turn in transcript.turns if transcript else []:
                if not turn.fallback_used:
                    counts["model"] += 1
                elif turn.attempts:
                    counts["trainer_after_attempts"] += 1
                else:
                    counts["trainer_at_once"] += 1
    finally:
        store.close()
    return counts


def check_chainlit_history(db_path: Path, reports: list[SessionReport]) -> list[str]:
    """Problems with Chainlit's own tables (its data layer logs SQL errors only as warnings):
    each chat needs its thread row and one ``user_message`` step per line sent."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(db_path)) as db:
        threads = {row[0] for row in db.execute("SELECT id FROM threads")}
        counts = dict(
            db.execute(
                'SELECT "threadId", COUNT(*) FROM steps WHERE type = ? GROUP BY "threadId"',
                ("user_message",),
            ).fetchall()
        )
    problems = []
    for report in reports:
        if not report.sent or report.thread_id is None:
            continue
        label = f"session {report.index} ({report.profile})"
        if report.thread_id not in threads:
            problems.append(f"{label}: no Chainlit thread {report.thread_id} in the history")
        if counts.get(report.thread_id, 0) != len(report.sent):
            problems.append(
                f"{label}: the history holds {counts.get(report.thread_id, 0)} of "
                f"{len(report.sent)} user messages"
            )
    return problems


def tracebacks(log: str) -> list[str]:
    """Each traceback in a server log, cut to its first and last lines."""
    found: list[str] = []
    lines = log.splitlines()
    for i, line in enumerate(lines):
        if "Traceback" in line:
            end = i + 1
            while end < len(lines) and (lines[end].startswith((" ", "\t")) or not lines[end]):
                end += 1
            tail = lines[end] if end < len(lines) else ""
            found.append(f"{line.strip()} ... {tail.strip()}"[:300])
    return found


def log_warnings(log: str) -> list[str]:
    """Log lines at WARNING or ERROR level (Chainlit logs its data layer's SQL errors so)."""
    marks = (" - WARNING - ", " - ERROR - ", "WARNING:", "ERROR:", "[WARNING]", "[ERROR]")
    return [line.strip()[:300] for line in log.splitlines() if any(m in line for m in marks)]


# --------------------------------------------------------------------------- one run


@dataclass
class LoadConfig:
    """What to run: the model, how many sessions and lines, and the time limits."""

    model: str = "fake"
    sessions: int = 20
    messages: int = 3
    timeout: float = 600.0
    reply_timeout: float = 180.0
    eager: bool = False
    token_delay: float = 0.02
    start_timeout: float = 180.0
    db_outage_s: float = 0.0  # the database is away this long from the start of the load
    journal_flush_s: float = 2.0  # the app's COACHBOT_JOURNAL_FLUSH_S
    profile: str = "mixed"  # "classroom": practice only, a line every think_s, for minutes
    minutes: float = 10.0
    think_s: tuple[float, float] = (15.0, 30.0)
    max_trainees: int | None = None  # the app's COACHBOT_MAX_TRAINEES


@dataclass
class LoadOutcome:
    """Everything a run measured and found."""

    config: LoadConfig
    reports: list[SessionReport] = field(default_factory=list)
    warm_up: list[SessionReport] = field(default_factory=list)
    persistence_problems: list[str] = field(default_factory=list)
    saved_sessions: int = 0
    tracebacks: list[str] = field(default_factory=list)
    log_warnings: list[str] = field(default_factory=list)
    peak_rss_mib: float | None = None
    server_cpu_s: float | None = None
    setup_errors: list[str] = field(default_factory=list)
    startup_s: float | None = None
    load_s: float | None = None
    log_path: Path | None = None
    saved_lines: int = 0
    journal_left: int | None = None  # writes still in the app's journal after the run
    dead_letters: int | None = None
    outage_s: float | None = None  # how long the database really was away
    customer_lines: dict[str, int] = field(default_factory=dict)

    def errors(self) -> list[str]:
        """Every error of the measured sessions, the warm-up and the setup (during an injected
        outage, the app's "saving failed" notice is expected, not an error)."""
        found = list(self.setup_errors)
        for report in self.warm_up:
            found += [f"warm-up {e}" for e in report.all_errors()]
        for report in self.reports:
            found += report.all_errors()
        if self.config.db_outage_s > 0:
            found = [e for e in found if not e.endswith(SAVE_FAILED_ERROR)]
        if self.journal_left:
            found.append(f"{self.journal_left} write(s) still in the journal after the run")
        if self.dead_letters:
            found.append(f"{self.dead_letters} write(s) refused for good (dead letters)")
        return found

    def save_notices(self) -> int:
        """Replies that carried the app's "saving failed" notice."""
        replies = [x for r in self.reports for x in r.replies]
        return sum(e == SAVE_FAILED_ERROR for x in replies for e in x.errors)

    def journal_replayed(self) -> int:
        """Writes the app kept in its journal while the database was away and saved once it
        was back (from its log): the evidence that an injected outage really refused saves,
        whether or not a reply happened to fall inside it."""
        if self.log_path is None or not self.log_path.exists():
            return 0
        log = self.log_path.read_text(errors="replace")
        return sum(int(n) for n in JOURNAL_REPLAYED.findall(log))

    def lost(self) -> int:
        """Lines of the measured sessions that never got a complete reply."""
        return sum(r.lost for r in self.reports)

    @property
    def ok(self) -> bool:
        """No error, no lost line, everything saved, no traceback in the server log."""
        return not (
            self.errors() or self.lost() or self.persistence_problems or self.tracebacks
        ) and bool(self.reports)

    def replies(self, profile: str | None = None) -> list[Reply]:
        """Measured replies (of one profile) that arrived complete."""
        return [
            r
            for s in self.reports
            for r in s.replies
            if r.answered and (profile is None or r.profile == profile)
        ]

    def metrics(self) -> dict[str, Any]:
        """The numbers for the result file."""
        groups = {"overall": None, PRACTICE: PRACTICE, COACH: COACH}
        latency = {}
        for name, profile in groups.items():
            replies = self.replies(profile)
            latency[name] = {
                "first_token_s": summary(
                    r.first_token_s for r in replies if r.first_token_s is not None
                ),
                "complete_s": summary(r.complete_s for r in replies if r.complete_s is not None),
            }
        sent = sum(len(r.sent) for r in self.reports)
        return {
            "model": self.config.model,
            "profile": self.config.profile,
            "classroom": {
                "minutes": self.config.minutes,
                "think_s": list(self.config.think_s),
                "max_trainees": self.config.max_trainees,
                "chats": len(self.reports),
                "turned_away": sum(r.turned_away for r in self.reports),
                "replies_that_waited_with_a_note": sum(1 for x in self.replies() if x.queue_notes),
                "customer_lines": self.customer_lines,
            }
            if self.config.profile == "classroom"
            else None,
            "sessions": self.config.sessions,
            "messages_per_session": self.config.messages,
            "token_delay_s": self.config.token_delay if self.config.model == "fake" else None,
            "eager": self.config.eager,
            "lines_sent": sent,
            "replies_complete": len(self.replies()),
            "lost_messages": self.lost(),
            "errors": len(self.errors()),
            "error_list": self.errors()[:50],
            "latency": latency,
            "chat_start_s": summary(r.start_s for r in self.reports if r.start_s is not None),
            "persistence": {
                "saved_sessions": self.saved_sessions,
                "problems": self.persistence_problems[:50],
            },
            "server": {
                "peak_rss_mib": self.peak_rss_mib,
                "cpu_s": self.server_cpu_s,
                "startup_s": self.startup_s,
                "tracebacks": self.tracebacks[:20],
                "log_warnings": len(self.log_warnings),
                "log_warning_lines": self.log_warnings[:20],
            },
            "load_wall_s": self.load_s,
            "db_outage": {
                "outage_s": self.outage_s,
                "lines_sent": sent,
                "lines_saved": self.saved_lines,
                "save_failed_notices": self.save_notices(),
                "journal_left": self.journal_left,
                "dead_letters": self.dead_letters,
            }
            if self.config.db_outage_s > 0
            else None,
        }


class Outage:
    """The injected database outage: a flag file that exists for ``seconds`` (the app fails
    every statement of its session store while it does)."""

    def __init__(self, flag: Path, seconds: float) -> None:
        self.flag = flag
        self.seconds = seconds
        self.over = threading.Event()
        self.began: float | None = None
        self.lasted: float | None = None

    def begin(self) -> None:
        self.flag.touch()
        self.began = time.perf_counter()
        timer = threading.Timer(self.seconds, self.end)
        timer.daemon = True
        timer.start()

    def end(self) -> None:
        self.flag.unlink(missing_ok=True)
        if self.began is not None and self.lasted is None:
            self.lasted = round(time.perf_counter() - self.began, 1)
        self.over.set()


def journal_count(data_dir: Path) -> int:
    """Writes waiting in the app's journal (0 when it has none)."""
    path = data_dir / JOURNAL_FILE
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as db:
        return int(db.execute("SELECT COUNT(*) FROM writes").fetchone()[0])


def wait_for_journal(data_dir: Path, timeout: float) -> int:
    """Wait until the app's journal is empty (its timer replays it); returns what is left."""
    deadline = time.monotonic() + timeout
    while (left := journal_count(data_dir)) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


def dead_letter_count(data_dir: Path) -> int:
    path = data_dir / DEAD_LETTER_FILE
    return len(path.read_text().splitlines()) if path.exists() else 0


def _profiles(count: int) -> list[str]:
    return [PRACTICE if i % 2 == 0 else COACH for i in range(count)]


def run_load(config: LoadConfig, work_dir: Path) -> LoadOutcome:
    """Start the app in ``work_dir``, warm it up, run the sessions, stop it, check the store.

    Bounded by ``config.timeout`` overall; the server is always stopped.
    """
    deadline = time.monotonic() + config.timeout
    outcome = LoadOutcome(config=config)
    data_dir = work_dir / "data"
    outcome.log_path = work_dir / "server.log"
    outage = Outage(work_dir / "db-outage", config.db_outage_s) if config.db_outage_s else None
    env = server_env(
        data_dir,
        config.model,
        config.token_delay,
        outage.flag if outage else None,
        config.journal_flush_s,
    )
    if config.max_trainees is not None:
        env["COACHBOT_MAX_TRAINEES"] = str(config.max_trainees)
    server = AppServer(TARGETS[config.model], env, outcome.log_path)
    try:
        started = time.perf_counter()
        server.start(min(config.start_timeout, max(1.0, deadline - time.monotonic())))
        outcome.startup_s = round(time.perf_counter() - started, 2)
        outcome.warm_up = [SessionReport(-1, PRACTICE), SessionReport(-2, COACH)]
        asyncio.run(run_sessions(server.url, outcome.warm_up, 1, config.reply_timeout, deadline))
        started = time.perf_counter()
        if config.profile == "classroom":
            asyncio.run(run_classroom(server.url, outcome.reports, config, deadline))
        else:
            _run_mixed(server.url, outcome, config, deadline, outage)
        outcome.load_s = round(time.perf_counter() - started, 2)
        if outage is not None:  # the database comes back; the app's timer saves the journal
            outage.over.wait(max(0.0, deadline - time.monotonic()))
            wait_for_journal(data_dir, min(config.journal_flush_s * 3 + 10, 60))
    except Exception as exc:
        outcome.setup_errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        if outage is not None:
            outage.end()
            outcome.outage_s = outage.lasted
        server.stop()
        outcome.peak_rss_mib = server.peak_rss_mib
        outcome.server_cpu_s = server.cpu_s
    _check_after(outcome, data_dir, server, outage)
    return outcome


def _run_mixed(
    url: str, outcome: LoadOutcome, config: LoadConfig, deadline: float, outage: Outage | None
) -> None:
    """Every session at once, practice and coach alternating, ``config.messages`` lines each."""
    outcome.reports = [
        SessionReport(i, profile) for i, profile in enumerate(_profiles(config.sessions))
    ]
    if outage is not None:
        outage.begin()
    asyncio.run(
        run_sessions(
            url, outcome.reports, config.messages, config.reply_timeout, deadline, config.eager
        )
    )


def _check_after(
    outcome: LoadOutcome, data_dir: Path, server: AppServer, outage: Outage | None
) -> None:
    """What the server log and the session store say once the server has stopped."""
    if outage is not None:
        outcome.journal_left = journal_count(data_dir)
        outcome.dead_letters = dead_letter_count(data_dir)
    log = server.log_text()
    outcome.tracebacks = tracebacks(log)
    outcome.log_warnings = log_warnings(log)
    if (data_dir / "coachbot.db").exists():
        ignore = {r.thread_id for r in outcome.warm_up if r.thread_id}
        found = check_persistence(f"sqlite:///{data_dir / 'coachbot.db'}", outcome.reports, ignore)
        outcome.persistence_problems, outcome.saved_sessions, outcome.saved_lines = found
        outcome.persistence_problems += check_chainlit_history(
            data_dir / "coachbot.db", outcome.reports
        )
        outcome.customer_lines = customer_line_sources(
            f"sqlite:///{data_dir / 'coachbot.db'}", outcome.reports
        )
    elif outcome.reports:
        outcome.persistence_problems.append(f"no session store at {data_dir / 'coachbot.db'}")


# --------------------------------------------------------------------------- the command


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def print_outcome(outcome: LoadOutcome) -> None:
    """A short human summary of a run."""
    c = outcome.config
    metrics = outcome.metrics()
    delay = f", token delay {c.token_delay} s" if c.model == "fake" else ""
    print(
        f"load-{c.model}: {c.sessions} sessions x {c.messages} lines{delay}; "
        f"load phase {_fmt(outcome.load_s)} s (server start {_fmt(outcome.startup_s)} s)"
    )
    print(f"  {'':26} {'n':>4} {'first p50':>10} {'p95':>7} {'reply p50':>10} {'p95':>7}")
    for name, numbers in metrics["latency"].items():
        first, whole = numbers["first_token_s"], numbers["complete_s"]
        print(
            f"  {name:26} {whole['n']:>4} {_fmt(first['p50']):>10} {_fmt(first['p95']):>7} "
            f"{_fmt(whole['p50']):>10} {_fmt(whole['p95']):>7}"
        )
    start = metrics["chat_start_s"]
    print(f"  chat start (connect to ready) p50 {_fmt(start['p50'])} s, p95 {_fmt(start['p95'])} s")
    print(
        f"  sent {metrics['lines_sent']}, complete {metrics['replies_complete']}, "
        f"lost {metrics['lost_messages']}, errors {metrics['errors']}, "
        f"persistence problems {len(outcome.persistence_problems)} "
        f"({outcome.saved_sessions} sessions saved), tracebacks {len(outcome.tracebacks)}, "
        f"log warnings {len(outcome.log_warnings)}, server peak RSS "
        f"{_fmt(outcome.peak_rss_mib)} MiB, server CPU {_fmt(outcome.server_cpu_s)} s"
    )
    if outage := metrics["db_outage"]:
        print(
            f"  database outage {_fmt(outage['outage_s'])} s: lines sent {outage['lines_sent']}, "
            f"saved {outage['lines_saved']}; 'saving failed' notices "
            f"{outage['save_failed_notices']}; journal left {outage['journal_left']}, "
            f"dead letters {outage['dead_letters']}"
        )
    if room := metrics["classroom"]:
        print(
            f"  classroom {room['minutes']:g} min: {room['chats']} chats, turned away "
            f"{room['turned_away']}, replies that waited with a queue note "
            f"{room['replies_that_waited_with_a_note']}; customer lines {room['customer_lines']}"
        )
    for problem in [*outcome.errors(), *outcome.persistence_problems, *outcome.tracebacks][:30]:
        print(f"  ! {problem}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(TARGETS), default="fake")
    parser.add_argument(
        "--profile",
        choices=["mixed", "classroom"],
        default="mixed",
        help="mixed: practice and coach sessions at once, --messages lines each; classroom: "
        "--sessions trainees, a line 15-30 s after each reply, for --minutes",
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="classroom length")
    parser.add_argument(
        "--max-trainees", type=int, default=None, help="the app's COACHBOT_MAX_TRAINEES"
    )
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--messages", type=int, default=3, help="lines per session")
    parser.add_argument("--timeout", type=float, default=600.0, help="global deadline, s")
    parser.add_argument("--reply-timeout", type=float, default=180.0, help="per reply, s")
    parser.add_argument(
        "--eager", action="store_true", help="send the first line before the chat start ends"
    )
    parser.add_argument("--token-delay", type=float, default=0.02, help="fake model, s/token")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dir")
    parser.add_argument(
        "--db-outage",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="stop the session database this long when the load starts (fake model only)",
    )
    parser.add_argument(
        "--journal-flush", type=float, default=2.0, help="the app's journal replay period, s"
    )
    args = parser.parse_args(argv)
    if args.sessions < 1 or args.messages < 1:
        parser.error("--sessions and --messages must be at least 1")
    if args.db_outage and args.model != "fake":
        parser.error("--db-outage needs --model fake (bench/load_app.py injects the outage)")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the load test, print and write the results; 1 on any error or lost message."""
    args = parse_args(argv)
    config = LoadConfig(
        model=args.model,
        sessions=args.sessions,
        messages=args.messages,
        timeout=max(args.timeout, args.minutes * 60 + 600)
        if args.profile == "classroom"
        else args.timeout,
        reply_timeout=args.reply_timeout,
        eager=args.eager,
        token_delay=args.token_delay,
        db_outage_s=args.db_outage,
        journal_flush_s=args.journal_flush,
        profile=args.profile,
        minutes=args.minutes,
        max_trainees=args.max_trainees,
    )
    suffix = "-db-outage" if args.db_outage else ""
    if args.profile == "classroom":
        suffix = f"-classroom-{args.sessions}"
    result = BenchResult(
        name=f"load-{args.model}{suffix}",
        title=f"Concurrent web sessions ({args.model} model)",
        command="python bench/load.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    )
    work_dir = Path(tempfile.mkdtemp(prefix="coachbot-load-"))
    outcome = run_load(config, work_dir)
    print_outcome(outcome)
    result.metrics = outcome.metrics()
    result.targets = [
        Target("errors", len(outcome.errors()), 0, unit=""),
        Target("lost messages", outcome.lost(), 0, unit=""),
        Target("persistence problems", len(outcome.persistence_problems), 0, unit=""),
        Target("tracebacks in the server log", len(outcome.tracebacks), 0, unit=""),
    ]
    result.notes = [
        "Practice replies are generated whole before the first word is streamed (bot/web/app.py "
        "streams the checked line), so their first token comes after the whole generation.",
    ]
    result.write()
    if args.keep or not outcome.ok:
        print(f"server log and data kept in {work_dir}")
    else:
        shutil.rmtree(work_dir, ignore_errors=True)
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())
