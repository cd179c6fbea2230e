"""Durable writes: a save the database refuses waits in a local journal, not in memory.

* :class:`Write`: one save as data (an operation, JSON arguments, a stable id). The session
  store applies a write at most once (it records the id in the same transaction), so replaying
  a write never duplicates a turn.
* :class:`WriteJournal`: the writes the database refused, in order, in a SQLite file (stdlib
  ``sqlite3``) in the data directory; it outlives the process.
* :class:`DeadLetters`: writes the database refused for good, one JSON object a line.
* :class:`DurableWrites`: :meth:`~DurableWrites.submit` applies a write now, or behind the
  journalled ones. A transient failure (locked, unreachable, read-only, the store cannot be
  opened: :func:`is_transient`) keeps it in the journal, which is replayed at start, on a timer
  and at shutdown. A permanent failure (bad data, a broken constraint, an unknown session)
  moves it to the dead letters with one log line, and later writes carry on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from bot.errors import CoachbotError, StorageError

log = logging.getLogger(__name__)

JOURNAL_FILE = "pending_writes.sqlite3"
DEAD_LETTER_FILE = "dead_letter_writes.jsonl"

WriteOp = Literal[
    "start_session", "save_practice", "add_coach_exchange", "end_session", "record_feedback"
]
SaveResult = Literal["saved", "queued", "refused"]


class WriteRefusedError(CoachbotError):
    """The database refused a write for good (bad data, a broken constraint): retrying the
    same write cannot succeed."""


class Write(BaseModel):
    """One save to the session store, as data (see :meth:`SessionStore.apply`)."""

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    op: WriteOp
    args: dict[str, Any]
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def what(self) -> str:
        """A short label for logs: the operation and the session (or thread) it is for."""
        target = str(self.args.get("session_id") or self.args.get("thread_id") or "")
        return f"{self.op} {target[:8]} (write {self.id[:8]})"


def _dump(model: BaseModel | None) -> dict[str, Any] | None:
    return model.model_dump(mode="json") if model is not None else None


def start_write(kind: str, session_id: str, **fields: Any) -> Write:
    """Create a session row (``user``, ``role``, ``thread_id``, ``scenario_id``,
    ``scenario_title``, ``difficulty``, ``seed``)."""
    return Write(op="start_session", args={"kind": kind, "session_id": session_id, **fields})


def practice_write(session_id: str, transcript: BaseModel, scorecard: BaseModel | None) -> Write:
    """Store a practice transcript (and scorecard) as they are now."""
    args = {"session_id": session_id, "transcript": _dump(transcript)}
    return Write(op="save_practice", args={**args, "scorecard": _dump(scorecard)})


def coach_exchange_write(session_id: str, answer: BaseModel) -> Write:
    """Append one question and answer to a coach session."""
    return Write(op="add_coach_exchange", args={"session_id": session_id, "answer": _dump(answer)})


def end_write(session_id: str, outcome: str | None = None) -> Write:
    return Write(op="end_session", args={"session_id": session_id, "outcome": outcome})


def feedback_write(
    *, thread_id: str, step_id: str, value: int, comment: str | None = None, user: str | None = None
) -> Write:
    """A thumb (1 up, 0 down) on a message (a new one on the same message replaces it)."""
    if value not in (0, 1):
        raise CoachbotError(f"feedback value must be 1 (up) or 0 (down), got {value!r}")
    args = {"thread_id": thread_id, "step_id": step_id, "value": value}
    return Write(op="record_feedback", args={**args, "comment": comment, "user": user})


def is_transient(exc: BaseException) -> bool:
    """True when the same write may succeed later: the database is locked, unreachable or
    read-only, or the store cannot be opened. Everything else (DataError, IntegrityError,
    ProgrammingError, an unknown session, a malformed write) is permanent."""
    if isinstance(exc, StorageError):  # the store's wrapper of the transient DBAPI errors
        return True
    if isinstance(exc, OperationalError | InterfaceError | DisconnectionError | PoolTimeoutError):
        return True
    if isinstance(exc, DBAPIError):
        return bool(exc.connection_invalidated)
    return isinstance(exc, ConnectionError | TimeoutError)


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}"[:300]


class WriteTarget(Protocol):
    """What :class:`DurableWrites` writes to (the session store)."""

    def apply(self, write: Write) -> bool: ...


# --------------------------------------------------------------------------- the journal


_SCHEMA = """CREATE TABLE IF NOT EXISTS writes (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  body TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  last_error TEXT
)"""


class WriteJournal:
    """Writes waiting for the database, oldest first, in a SQLite file (``None``: in memory).

    A journal that cannot be opened (a read-only data directory) falls back to memory, with
    an error in the log, so the app still runs.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = self._open(path)

    @staticmethod
    def _open(path: Path | None) -> sqlite3.Connection:
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(path, check_same_thread=False, timeout=10)
                db.execute(_SCHEMA)
                db.commit()
                return db
            except (OSError, sqlite3.Error) as exc:
                log.error(
                    "the write journal cannot be opened at %s (%s): writes the database "
                    "refuses are kept in memory only",
                    path,
                    exc,
                )
        db = sqlite3.connect(":memory:", check_same_thread=False)
        db.execute(_SCHEMA)
        return db

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM writes").fetchone()[0])

    def __contains__(self, write_id: object) -> bool:
        with self._lock:
            query = "SELECT 1 FROM writes WHERE id = ?"
            return self._db.execute(query, (write_id,)).fetchone() is not None

    def append(self, write: Write) -> None:
        """Keep ``write`` after the others (the same write twice is kept once)."""
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR IGNORE INTO writes (id, body) VALUES (?, ?)",
                (write.id, write.model_dump_json()),
            )

    def entries(self) -> list[tuple[str, str]]:
        """``(id, body)`` of every waiting write, oldest first."""
        with self._lock:
            return list(self._db.execute("SELECT id, body FROM writes ORDER BY seq"))

    def remove(self, write_id: str) -> None:
        with self._lock, self._db:
            self._db.execute("DELETE FROM writes WHERE id = ?", (write_id,))

    def note_failure(self, write_id: str, error: str) -> None:
        with self._lock, self._db:
            self._db.execute(
                "UPDATE writes SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                (error, write_id),
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()


class DeadLetters:
    """Writes the database refused for good: one JSON object a line (the write, the error,
    when), for an administrator to look at; nothing reads them back automatically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def add(self, body: Write | str, error: BaseException | str) -> None:
        write: Any = body.model_dump(mode="json") if isinstance(body, Write) else body
        if isinstance(write, str):
            with contextlib.suppress(ValueError):  # else kept as the text it is
                write = json.loads(write)
        line = {
            "at": datetime.now(UTC).isoformat(),
            "error": error if isinstance(error, str) else _reason(error),
            "write": write,
        }
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write(json.dumps(line, ensure_ascii=False) + "\n")

    def read(self) -> list[dict[str, Any]]:
        """Every dead letter, oldest first (empty when there is no file)."""
        if not self.path.exists():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]


# --------------------------------------------------------------------------- durable writes


class DurableWrites:
    """Every save goes through :meth:`submit` (see the module docstring).

    ``open_store`` returns the session store; it may raise :class:`StorageError` while the
    database cannot be opened (the write is then journalled too). :meth:`start` replays the
    journal and starts the timer; :meth:`close` stops the timer and replays once more.
    """

    def __init__(
        self,
        open_store: Callable[[], WriteTarget],
        journal: WriteJournal,
        dead_letters: DeadLetters,
        *,
        interval_s: float = 15.0,
    ) -> None:
        self.open_store = open_store
        self.journal = journal
        self.dead_letters = dead_letters
        self.interval_s = interval_s
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        self._down_since: str | None = None  # the error of the outage in progress, if any

    @classmethod
    def in_dir(
        cls, data_dir: Path, open_store: Callable[[], WriteTarget], *, interval_s: float = 15.0
    ) -> DurableWrites:
        """The journal and dead letters in ``data_dir`` (the app's data directory)."""
        return cls(
            open_store,
            WriteJournal(data_dir / JOURNAL_FILE),
            DeadLetters(data_dir / DEAD_LETTER_FILE),
            interval_s=interval_s,
        )

    def __len__(self) -> int:
        """Writes waiting in the journal."""
        return len(self.journal)

    # ---- writing
    def submit(self, write: Write) -> SaveResult:
        """Save ``write`` now, or keep it in the journal behind the writes already waiting
        (never ahead of them, so an older save cannot overwrite a newer one)."""
        with self._lock:
            if len(self.journal):
                self._keep(write)
                return self._replay().get(write.id, "queued")
            result = self._apply(write)
            if result == "queued":
                self._keep(write)
            return result

    def replay(self) -> int:
        """Retry the journalled writes in order; returns how many still wait."""
        with self._lock:
            self._replay()
            return len(self.journal)

    def _keep(self, write: Write) -> None:
        try:
            self.journal.append(write)
        except sqlite3.Error as exc:  # the journal's disk is full or gone: keep it visibly
            log.error("the write journal refused %s (%s)", write.what, exc)
            self.dead_letters.add(write, f"journal: {exc}")

    def _apply(self, write: Write) -> SaveResult:
        try:
            self.open_store().apply(write)
        except Exception as exc:
            if is_transient(exc):
                self._went_down(exc)
                return "queued"
            self.dead_letters.add(write, exc)
            log.error(
                "the database refused %s for good (%s); it is kept in %s and later writes carry on",
                write.what,
                _reason(exc),
                self.dead_letters.path,
            )
            return "refused"
        return "saved"

    def _replay(self) -> dict[str, SaveResult]:
        """One pass over the journal, oldest first, until a write fails transiently."""
        done: dict[str, SaveResult] = {}
        for write_id, body in self.journal.entries():
            try:
                write = Write.model_validate_json(body)
            except ValidationError as exc:
                self.dead_letters.add(body, f"unreadable journal entry: {exc.errors()[:1]}")
                self.journal.remove(write_id)
                continue
            result = self._apply(write)
            if result == "queued":
                self.journal.note_failure(write_id, self._down_since or "")
                break
            self.journal.remove(write_id)
            done[write_id] = result
        if done and self._down_since is not None and not len(self.journal):
            log.warning("the database is back: %d journalled write(s) saved", len(done))
            self._down_since = None
        elif not len(self.journal):
            self._down_since = None
        return done

    def _went_down(self, exc: BaseException) -> None:
        if self._down_since is None:
            log.warning(
                "the session store is unavailable (%s): writes are kept in %s and retried "
                "every %g s",
                _reason(exc),
                self.journal.path or "memory",
                self.interval_s,
            )
        self._down_since = _reason(exc)

    # ---- lifecycle
    def start(self) -> int:
        """Replay the journal (writes left by an earlier run), then retry it every
        ``interval_s`` seconds in a background thread (none when ``interval_s`` <= 0).
        Returns how many writes still wait."""
        left = self.replay()
        if self.interval_s > 0 and self._timer is None:
            self._stop.clear()
            self._timer = threading.Thread(target=self._tick, name="coachbot-journal", daemon=True)
            self._timer.start()
        return left

    def _tick(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                if len(self.journal):
                    self.replay()
            except Exception:  # the timer must survive anything; the next tick retries
                log.exception("replaying the write journal failed")

    def close(self) -> int:
        """Stop the timer and replay once more; returns how many writes are left in the
        journal (they are replayed at the next start). A write submitted later (a reply that
        ends during shutdown) is still journalled."""
        self._stop.set()
        if self._timer is not None:
            self._timer.join(timeout=30)
            self._timer = None
        with self._lock:
            try:
                left = self.replay()
            except Exception:
                log.exception("replaying the write journal at shutdown failed")
                left = len(self.journal)
            if left:
                log.warning(
                    "%d write(s) still wait in %s; they are saved at the next start",
                    left,
                    self.journal.path or "memory (lost at exit)",
                )
            return left
