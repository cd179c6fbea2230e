"""The session store: practice and coach sessions, scores and thumbs, in SQLite or Postgres.

One sync SQLAlchemy 2.0 engine, two tables of our own (``coachbot_sessions``,
``coachbot_feedback``); callers get pydantic models, never ORM rows. A write that fails because
the database is locked or unreachable is retried with backoff, then raises
:class:`~bot.errors.StorageError` (transient); one the database refuses for good (a DataError,
a ProgrammingError) raises :class:`~bot.store.journal.WriteRefusedError`. The app saves through
:meth:`SessionStore.apply`, which applies a :class:`~bot.store.journal.Write` at most once (its
id is recorded in ``coachbot_applied_writes`` in the same transaction); :mod:`bot.store.journal`
keeps the writes the database refused and replays them.

Chainlit's own data layer (``chainlit.data.sql_alchemy.SQLAlchemyDataLayer``) creates no
tables: :func:`create_chainlit_tables` creates the ones it queries, and :func:`chainlit_conninfo`
turns our sync URL into the async URL it needs.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, Field
from sqlalchemy import (
    JSON,
    DateTime,
    Dialect,
    Engine,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    case,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    NoSuchModuleError,
    OperationalError,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from bot.errors import CoachbotError, StorageError
from bot.roleplay.assignments import Assignment, NewAssignment
from bot.store.journal import Write, WriteRefusedError
from bot.store.schema import migrate

if TYPE_CHECKING:
    from bot.coach.models import CoachAnswer
    from bot.config import Settings
    from bot.roleplay.models import Transcript
    from bot.roleplay.scoring import Scorecard

log = logging.getLogger(__name__)
T = TypeVar("T")

SessionKind = Literal["practice", "coach"]
SessionStatus = Literal["active", "ended"]
KINDS: tuple[str, ...] = ("practice", "coach")

_STORE_HINT = (
    "check DATABASE_URL, that the database is reachable and that no other program holds a lock "
    "on it"
)


# --------------------------------------------------------------------------- ORM (private)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite stores it naive, in UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class _Base(DeclarativeBase):
    pass


class _SessionRow(_Base):
    __tablename__ = "coachbot_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    user_identifier: Mapped[str | None] = mapped_column(String(255), index=True)
    user_role: Mapped[str | None] = mapped_column(String(32))
    thread_id: Mapped[str | None] = mapped_column(String(64), index=True)
    scenario_id: Mapped[str | None] = mapped_column(String(255))
    scenario_title: Mapped[str | None] = mapped_column(String(500))
    difficulty: Mapped[str | None] = mapped_column(String(16))
    seed: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="active")
    outcome: Mapped[str | None] = mapped_column(String(32))
    score: Mapped[int | None] = mapped_column(Integer)
    turns: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class _FeedbackRow(_Base):
    __tablename__ = "coachbot_feedback"
    __table_args__ = (
        UniqueConstraint("thread_id", "step_id", name="uq_coachbot_feedback_thread_step"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("coachbot_sessions.id", ondelete="SET NULL"), index=True
    )
    thread_id: Mapped[str] = mapped_column(String(64), index=True)
    step_id: Mapped[str] = mapped_column(String(64))
    value: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    user_identifier: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class _AppliedWriteRow(_Base):
    """The id of every :class:`Write` applied, committed with it: a replay is skipped."""

    __tablename__ = "coachbot_applied_writes"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    op: Mapped[str] = mapped_column(String(32))
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime())


class _AssignmentRow(_Base):
    """Made by migration 0002 (bot/store/migrations): keep the two in step."""

    __tablename__ = "coachbot_assignments"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # a user, "group:NAME" (the users in that group) or "*" (every trainee)
    assignee: Mapped[str] = mapped_column(String(255), index=True)
    scenario_id: Mapped[str] = mapped_column(String(255))
    difficulty: Mapped[str] = mapped_column(String(16))
    pass_mark: Mapped[int] = mapped_column(Integer)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


# --------------------------------------------------------------------------- public models


EVERY_TRAINEE = "*"
GROUP_PREFIX = "group:"  # an assignee "group:NAME" means every user in group NAME


class ScenarioInfo(BaseModel):
    """What a practice session is about (stored on the session row)."""

    id: str
    title: str | None = None
    difficulty: str | None = None
    seed: int | None = None


class FeedbackRecord(BaseModel):
    id: int
    session_id: str | None
    thread_id: str
    step_id: str
    value: int  # 1 thumbs up, 0 thumbs down
    comment: str | None
    user: str | None
    created_at: datetime


class SessionSummary(BaseModel):
    id: str
    kind: SessionKind
    user: str | None
    role: str | None
    thread_id: str | None = None
    scenario_id: str | None
    scenario_title: str | None
    difficulty: str | None
    seed: int | None = None
    status: SessionStatus
    outcome: str | None
    score: int | None
    turns: int
    created_at: datetime
    updated_at: datetime
    feedback_up: int = 0
    feedback_down: int = 0


class SessionRecord(SessionSummary):
    """A whole session: the summary, its payload and its feedback."""

    payload: dict[str, Any] = Field(default_factory=dict)
    feedback: list[FeedbackRecord] = Field(default_factory=list)

    def transcript(self) -> Transcript | None:
        """The practice transcript, or None for a coach session (or one not saved yet)."""
        from bot.roleplay.models import Transcript

        data = self.payload.get("transcript")
        return Transcript.model_validate(data) if data else None

    def scorecard(self) -> Scorecard | None:
        from bot.roleplay.scoring import Scorecard

        data = self.payload.get("scorecard")
        return Scorecard.model_validate(data) if data else None

    def exchanges(self) -> list[CoachAnswer]:
        """The coach's answers, oldest first (empty for a practice session)."""
        from bot.coach.models import CoachAnswer

        return [CoachAnswer.model_validate(e) for e in self.payload.get("exchanges", [])]


def _summary(row: _SessionRow, up: int = 0, down: int = 0) -> SessionSummary:
    return SessionSummary(
        id=row.id,
        kind=row.kind,  # type: ignore[arg-type]
        user=row.user_identifier,
        role=row.user_role,
        thread_id=row.thread_id,
        scenario_id=row.scenario_id,
        scenario_title=row.scenario_title,
        difficulty=row.difficulty,
        seed=row.seed,
        status=row.status,  # type: ignore[arg-type]
        outcome=row.outcome,
        score=row.score,
        turns=row.turns,
        created_at=row.created_at,
        updated_at=row.updated_at,
        feedback_up=up,
        feedback_down=down,
    )


def _assignment(row: _AssignmentRow) -> Assignment:
    return Assignment.model_validate(row, from_attributes=True)


def _feedback(row: _FeedbackRow) -> FeedbackRecord:
    return FeedbackRecord(
        id=row.id,
        session_id=row.session_id,
        thread_id=row.thread_id,
        step_id=row.step_id,
        value=row.value,
        comment=row.comment,
        user=row.user_identifier,
        created_at=row.created_at,
    )


def _scenario_info(
    scenario: ScenarioInfo | Mapping[str, Any] | tuple[Any, ...] | None,
) -> ScenarioInfo | None:
    if scenario is None or isinstance(scenario, ScenarioInfo):
        return scenario
    if isinstance(scenario, tuple):
        keys = ("id", "title", "difficulty", "seed")
        if not 1 <= len(scenario) <= 4:
            raise CoachbotError(
                f"scenario must be (id, title, difficulty, seed), got {len(scenario)} values"
            )
        return ScenarioInfo(**dict(zip(keys, scenario, strict=False)))
    return ScenarioInfo.model_validate(dict(scenario))


# --------------------------------------------------------------------------- the store


def _is_memory_sqlite(url: str) -> bool:
    u = make_url(url)
    return u.get_backend_name() == "sqlite" and u.database in (None, "", ":memory:")


def _sqlite_file(url: str) -> Path | None:
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or _is_memory_sqlite(url):
        return None
    database = u.database or ""
    if database.startswith("file:"):
        return None
    return Path(database)


def _parse_url(url: str) -> URL:
    try:
        return make_url(url)
    except ArgumentError as exc:
        raise StorageError(
            f"DATABASE_URL is not a valid SQLAlchemy URL: {exc}",
            hint="e.g. sqlite:///data/coachbot.db or postgresql+psycopg://user:pw@host/db",
        ) from exc


def _engine_url(url: str) -> URL:
    """The URL to connect with: a bare ``postgresql://`` uses psycopg 3 (the installed driver)
    rather than SQLAlchemy's default, psycopg2."""
    parsed = _parse_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _make_engine(url: str, busy_timeout_s: float = 5.0) -> Engine:
    parsed = _engine_url(url)
    if parsed.get_backend_name() != "sqlite":
        try:
            return create_engine(parsed, pool_pre_ping=True)
        except (ImportError, NoSuchModuleError) as exc:  # the driver (psycopg...) is missing
            raise StorageError(
                f"the database driver for {parsed.drivername} is not installed ({exc})",
                hint="for Postgres: pip install 'psycopg[binary]' asyncpg",
            ) from exc
    path = _sqlite_file(url)
    if path is not None:
        path.expanduser().parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {
        "connect_args": {"timeout": busy_timeout_s, "check_same_thread": False}
    }
    if _is_memory_sqlite(url):
        kwargs["poolclass"] = StaticPool
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            if path is not None:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    return engine


def _reason(exc: DBAPIError) -> str:
    orig = getattr(exc, "orig", None)
    text_ = str(orig) if orig is not None else str(exc)
    return text_.strip().splitlines()[0] if text_.strip() else type(exc).__name__


_HEX = re.compile(r"^[0-9a-f]+$")


class SessionStore:
    """Practice and coach sessions with their scores and feedback (see the module docstring)."""

    attempts = 3
    backoff_s = 0.05  # waits 0.05 s, then 0.1 s between tries

    def __init__(self, url: str, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.url = url
        self.safe_url = _parse_url(url).render_as_string(hide_password=True)
        self._sleep = sleep
        self.engine = _make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._clock = threading.Lock()
        self._last_time: datetime | None = None
        try:
            self._retrying(lambda: migrate(self.engine))
        except DBAPIError as exc:
            raise StorageError(
                f"cannot open the session store at {self.safe_url}: {_reason(exc)}",
                hint=_STORE_HINT,
            ) from exc

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionStore:
        return cls(settings.database)

    def close(self) -> None:
        self.engine.dispose()

    # ---- plumbing
    def _now(self) -> datetime:
        """UTC now, strictly increasing within this store (so "newest first" is stable)."""
        with self._clock:
            now = datetime.now(UTC)
            if self._last_time is not None and now <= self._last_time:
                now = self._last_time + timedelta(microseconds=1)
            self._last_time = now
            return now

    def _retrying(self, fn: Callable[[], T]) -> T:
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=self.backoff_s, min=self.backoff_s, max=1.0),
            retry=retry_if_exception_type(OperationalError),
            sleep=self._sleep,
            reraise=True,
        )
        return retrying(fn)

    def _write(self, what: str, fn: Callable[[Session], T]) -> T:
        """Run ``fn`` in a transaction and commit; retried while the database is locked.

        Raises StorageError when the database stays locked or unreachable (the write may
        succeed later), WriteRefusedError when it refuses the write itself (it never will),
        and IntegrityError as it is (a caller may resolve the conflict).
        """

        def attempt() -> T:
            with self._sessions() as session:
                result = fn(session)
                session.commit()
                return result

        try:
            return self._retrying(attempt)
        except IntegrityError:
            raise
        except (OperationalError, InterfaceError) as exc:
            raise StorageError(
                f"could not save {what} after {self.attempts} tries ({_reason(exc)}); the "
                "write is kept and retried later",
                hint=_STORE_HINT,
            ) from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise StorageError(
                    f"could not save {what} ({_reason(exc)}); the write is kept and retried later",
                    hint=_STORE_HINT,
                ) from exc
            raise WriteRefusedError(
                f"the database refused {what} ({_reason(exc)})",
                hint="the data does not fit the database's schema or constraints; retrying "
                "the same write cannot help",
            ) from exc

    def _read(self, what: str, fn: Callable[[Session], T]) -> T:
        def attempt() -> T:
            with self._sessions() as session:
                return fn(session)

        try:
            return self._retrying(attempt)
        except DBAPIError as exc:
            raise StorageError(
                f"could not read {what} from {self.safe_url} ({_reason(exc)})", hint=_STORE_HINT
            ) from exc

    @staticmethod
    def _row(session: Session, session_id: str) -> _SessionRow:
        row = session.get(_SessionRow, session_id)
        if row is None:
            raise CoachbotError(
                f"no saved session with id {session_id!r}",
                hint="start_session() returns the id to save to",
            )
        return row

    # ---- writes (each public method builds an operation: a label and a function of a Session)
    def start_session(
        self,
        kind: SessionKind,
        *,
        user: str | None = None,
        role: str | None = None,
        thread_id: str | None = None,
        scenario: ScenarioInfo | Mapping[str, Any] | tuple[Any, ...] | None = None,
        scenario_id: str | None = None,
        scenario_title: str | None = None,
        difficulty: str | None = None,
        seed: int | None = None,
        session_id: str | None = None,
    ) -> str:
        """Create a session row and return its id (a uuid4 hex, or ``session_id`` if given,
        so an app can pick the id up front and journal the start, see :meth:`apply`).

        The scenario is ``scenario=(id, title, difficulty, seed)`` (a tuple, mapping or
        ScenarioInfo) or the same as separate keywords; a practice transcript saved later fills
        them in too.
        """
        info = _scenario_info(scenario)
        if info is None and scenario_id is not None:
            info = ScenarioInfo(
                id=scenario_id, title=scenario_title, difficulty=difficulty, seed=seed
            )
        elif info is None and any(v is not None for v in (scenario_title, difficulty, seed)):
            raise CoachbotError("a scenario title, difficulty or seed needs a scenario_id")
        return self._write(
            *self._start_op(
                kind,
                session_id or uuid.uuid4().hex,
                user=user,
                role=role,
                thread_id=thread_id,
                scenario_id=info.id if info else None,
                scenario_title=info.title if info else None,
                difficulty=info.difficulty if info else None,
                seed=info.seed if info else None,
            )
        )

    def _start_op(
        self,
        kind: str,
        session_id: str,
        *,
        user: str | None = None,
        role: str | None = None,
        thread_id: str | None = None,
        scenario_id: str | None = None,
        scenario_title: str | None = None,
        difficulty: str | None = None,
        seed: int | None = None,
    ) -> tuple[str, Callable[[Session], str]]:
        if kind not in KINDS:
            raise CoachbotError(f"unknown session kind {kind!r}", hint="practice or coach")
        now = self._now()
        payload: dict[str, Any] = (
            {"transcript": None, "scorecard": None} if kind == "practice" else {"exchanges": []}
        )

        def run(session: Session) -> str:
            if session.get(_SessionRow, session_id) is not None:
                return session_id  # a retried start that already went through
            session.add(
                _SessionRow(
                    id=session_id,
                    kind=kind,
                    user_identifier=user,
                    user_role=role,
                    thread_id=thread_id,
                    scenario_id=scenario_id,
                    scenario_title=scenario_title,
                    difficulty=difficulty,
                    seed=seed,
                    status="active",
                    turns=0,
                    created_at=now,
                    updated_at=now,
                    payload=payload,
                )
            )
            if thread_id is not None:
                session.flush()
                # Thumbs given in this thread before the session row existed.
                session.execute(
                    update(_FeedbackRow)
                    .where(_FeedbackRow.thread_id == thread_id, _FeedbackRow.session_id.is_(None))
                    .values(session_id=session_id)
                )
            return session_id

        return f"the new {kind} session", run

    def save_practice(
        self, session_id: str, transcript: Transcript, scorecard: Scorecard | None = None
    ) -> SessionSummary:
        """Store the transcript (and scorecard) of a practice session.

        The session is "ended" once a scorecard is given or the transcript has an outcome. A
        scorecard saved earlier is kept when ``scorecard`` is None.
        """
        card = scorecard.model_dump(mode="json") if scorecard is not None else None
        return self._write(*self._practice_op(session_id, transcript.model_dump(mode="json"), card))

    def _practice_op(
        self, session_id: str, transcript: dict[str, Any], scorecard: dict[str, Any] | None
    ) -> tuple[str, Callable[[Session], SessionSummary]]:
        def run(session: Session) -> SessionSummary:
            row = self._row(session, session_id)
            if row.kind != "practice":
                raise CoachbotError(f"session {session_id} is a {row.kind} session, not practice")
            card = scorecard if scorecard is not None else (row.payload or {}).get("scorecard")
            row.payload = {"transcript": transcript, "scorecard": card}
            row.turns = len(transcript.get("turns") or [])
            row.outcome = transcript.get("outcome")
            row.score = card["score"] if card else None
            row.status = "ended" if (card or row.outcome) else "active"
            row.scenario_id = transcript.get("scenario_id")
            row.scenario_title = transcript.get("scenario_title")
            row.difficulty = transcript.get("difficulty")
            row.seed = transcript.get("seed")
            row.updated_at = self._now()
            return _summary(row)

        return f"practice session {session_id[:8]}", run

    def add_coach_exchange(self, session_id: str, answer: CoachAnswer) -> SessionSummary:
        """Append one question and answer to a coach session."""
        return self._write(*self._exchange_op(session_id, answer.model_dump(mode="json")))

    def _exchange_op(
        self, session_id: str, answer: dict[str, Any]
    ) -> tuple[str, Callable[[Session], SessionSummary]]:
        def run(session: Session) -> SessionSummary:
            row = self._row(session, session_id)
            if row.kind != "coach":
                raise CoachbotError(f"session {session_id} is a {row.kind} session, not coach")
            exchanges = [*(row.payload or {}).get("exchanges", []), answer]
            row.payload = {**(row.payload or {}), "exchanges": exchanges}  # a new object: saved
            row.turns = len(exchanges)
            row.updated_at = self._now()
            return _summary(row)

        return f"coach session {session_id[:8]}", run

    def end_session(self, session_id: str, outcome: str | None = None) -> SessionSummary:
        """Mark a session ended (e.g. a coach chat that was closed)."""
        return self._write(*self._end_op(session_id, outcome))

    def _end_op(
        self, session_id: str, outcome: str | None = None
    ) -> tuple[str, Callable[[Session], SessionSummary]]:
        def run(session: Session) -> SessionSummary:
            row = self._row(session, session_id)
            row.status = "ended"
            if outcome is not None:
                row.outcome = outcome
            row.updated_at = self._now()
            return _summary(row)

        return f"session {session_id[:8]}", run

    def record_feedback(
        self,
        *,
        thread_id: str,
        step_id: str,
        value: int,
        comment: str | None = None,
        user: str | None = None,
    ) -> int:
        """Store a thumb (1 up, 0 down) on a message; a new thumb on the same message replaces
        the old one. Linked to the newest session of that thread, if any. Returns the row id."""
        if value not in (0, 1):
            raise CoachbotError(f"feedback value must be 1 (up) or 0 (down), got {value!r}")
        operation = self._feedback_op(thread_id, step_id, value, comment, user)
        try:
            return self._write(*operation)
        except IntegrityError:
            # Another writer inserted the same (thread, step) first: update theirs.
            return self._write(*operation)

    def _feedback_op(
        self,
        thread_id: str,
        step_id: str,
        value: int,
        comment: str | None = None,
        user: str | None = None,
    ) -> tuple[str, Callable[[Session], int]]:
        if value not in (0, 1):
            raise CoachbotError(f"feedback value must be 1 (up) or 0 (down), got {value!r}")

        def run(session: Session) -> int:
            linked = session.scalar(
                select(_SessionRow.id)
                .where(_SessionRow.thread_id == thread_id)
                .order_by(_SessionRow.created_at.desc())
                .limit(1)
            )
            existing = session.scalar(
                select(_FeedbackRow).where(
                    _FeedbackRow.thread_id == thread_id, _FeedbackRow.step_id == step_id
                )
            )
            if existing is None:
                existing = _FeedbackRow(thread_id=thread_id, step_id=step_id)
                session.add(existing)
            existing.session_id = linked
            existing.value = value
            existing.comment = comment
            existing.user_identifier = user
            existing.created_at = self._now()
            session.flush()
            return existing.id

        return "the feedback", run

    # ---- journalled writes
    def _operation(self, write: Write) -> tuple[str, Callable[[Session], Any]]:
        a = write.args
        if write.op == "start_session":
            return self._start_op(**a)
        if write.op == "save_practice":
            return self._practice_op(a["session_id"], a["transcript"], a.get("scorecard"))
        if write.op == "add_coach_exchange":
            return self._exchange_op(a["session_id"], a["answer"])
        if write.op == "end_session":
            return self._end_op(a["session_id"], a.get("outcome"))
        return self._feedback_op(**a)

    def apply(self, write: Write) -> bool:
        """Apply ``write`` once: its id is recorded in the same transaction, so a replay of a
        write that already went through (the commit's answer was lost, a crash before the
        journal forgot it) changes nothing. Returns False for such a replay.

        Raises like the write methods (StorageError: retry later; anything else: never).
        """
        try:
            what, run = self._operation(write)
        except (KeyError, TypeError) as exc:
            raise CoachbotError(f"malformed {write.op} write: {exc!r}") from exc

        def once(session: Session) -> bool:
            if session.get(_AppliedWriteRow, write.id) is not None:
                return False
            run(session)
            session.add(_AppliedWriteRow(id=write.id, op=write.op, applied_at=self._now()))
            return True

        try:
            return self._write(what, once)
        except IntegrityError:
            # Another writer got there first (the same write, or a thumb on the same message):
            # the retry sees their row.
            return self._write(what, once)

    # ---- reads
    def _feedback_counts(self, session: Session, ids: list[str]) -> dict[str, tuple[int, int]]:
        if not ids:
            return {}
        rows = session.execute(
            select(
                _FeedbackRow.session_id,
                func.sum(case((_FeedbackRow.value == 1, 1), else_=0)),
                func.sum(case((_FeedbackRow.value == 0, 1), else_=0)),
            )
            .where(_FeedbackRow.session_id.in_(ids))
            .group_by(_FeedbackRow.session_id)
        ).all()
        return {sid: (int(up or 0), int(down or 0)) for sid, up, down in rows}

    def list_sessions(
        self,
        *,
        user: str | None = None,
        kind: SessionKind | None = None,
        role: str | None = None,
        limit: int = 50,
    ) -> list[SessionSummary]:
        """Sessions, newest first, optionally for one user, kind or role."""
        if kind is not None and kind not in KINDS:
            raise CoachbotError(f"unknown session kind {kind!r}", hint="practice or coach")
        if limit < 1:
            raise CoachbotError(f"limit must be at least 1, got {limit}")

        def run(session: Session) -> list[SessionSummary]:
            query = select(_SessionRow)
            if user is not None:
                query = query.where(_SessionRow.user_identifier == user)
            if kind is not None:
                query = query.where(_SessionRow.kind == kind)
            if role is not None:
                query = query.where(_SessionRow.user_role == role)
            query = query.order_by(_SessionRow.created_at.desc(), _SessionRow.id).limit(limit)
            rows = list(session.scalars(query))
            counts = self._feedback_counts(session, [r.id for r in rows])
            return [_summary(r, *counts.get(r.id, (0, 0))) for r in rows]

        return self._read("the sessions", run)

    def scored_practice(
        self,
        *,
        user: str | None = None,
        scenario_id: str | None = None,
        difficulty: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[SessionRecord]:
        """Practice sessions that have a score, oldest first, with their payloads (for progress
        reports), optionally for one user, scenario or difficulty, started in [since, until)."""

        def run(session: Session) -> list[SessionRecord]:
            query = select(_SessionRow).where(
                _SessionRow.kind == "practice", _SessionRow.score.is_not(None)
            )
            for column, value in (
                (_SessionRow.user_identifier, user),
                (_SessionRow.scenario_id, scenario_id),
                (_SessionRow.difficulty, difficulty),
            ):
                if value is not None:
                    query = query.where(column == value)
            if since is not None:
                query = query.where(_SessionRow.created_at >= since)
            if until is not None:
                query = query.where(_SessionRow.created_at < until)
            rows = session.scalars(query.order_by(_SessionRow.created_at, _SessionRow.id))
            return [
                SessionRecord(**_summary(r).model_dump(), payload=r.payload or {}) for r in rows
            ]

        return self._read("the scored practice sessions", run)

    # ---- assignments
    def add_assignment(self, wanted: NewAssignment) -> Assignment:
        """Keep a new assignment (validated by the caller: see Services.assign)."""
        row = _AssignmentRow(id=uuid.uuid4().hex, created_at=self._now(), **wanted.model_dump())

        def run(session: Session) -> Assignment:
            session.add(row)
            session.flush()
            return _assignment(row)

        return self._write("the assignment", run)

    def assignments(self, assignees: list[str] | None = None) -> list[Assignment]:
        """Assignments, due soonest first (no due date last): all, or those set for any of
        ``assignees`` (a user, their ``group:NAME`` targets and ``"*"``)."""

        def run(session: Session) -> list[Assignment]:
            query = select(_AssignmentRow)
            if assignees is not None:
                query = query.where(_AssignmentRow.assignee.in_(assignees))
            rows = session.scalars(query.order_by(_AssignmentRow.created_at, _AssignmentRow.id))
            found = [_assignment(r) for r in rows]
            return sorted(found, key=lambda a: (a.due_at is None, a.due_at or a.created_at))

        return self._read("the assignments", run)

    def remove_assignment(self, assignment_id: str) -> None:
        """Withdraw an assignment (its sessions stay)."""

        wanted = assignment_id.strip().lower()

        def run(session: Session) -> None:
            query = select(_AssignmentRow).where(_AssignmentRow.id.like(f"{wanted}%")).limit(2)
            rows = list(session.scalars(query)) if _HEX.match(wanted) else []
            if len(rows) != 1:
                problem = "is ambiguous" if rows else "matches no assignment"
                raise CoachbotError(
                    f"the id {assignment_id!r} {problem}",
                    hint="see `coachbot assignments` for the ids",
                )
            session.delete(rows[0])

        self._write("the assignment's removal", run)

    def get_session(self, session_id: str) -> SessionRecord:
        """A session by its id or a unique prefix of it (as `sessions list` shows)."""
        wanted = session_id.strip().lower()

        def run(session: Session) -> SessionRecord:
            row = session.get(_SessionRow, wanted) if wanted else None
            if row is None and wanted and _HEX.match(wanted):
                matches = list(
                    session.scalars(
                        select(_SessionRow)
                        .where(_SessionRow.id.like(f"{wanted}%"))
                        .order_by(_SessionRow.created_at.desc())
                        .limit(6)
                    )
                )
                if len(matches) > 1:
                    shown = ", ".join(m.id[:12] for m in matches[:5])
                    raise CoachbotError(
                        f"session id {session_id!r} is ambiguous: it starts {len(matches)}"
                        f"{'+' if len(matches) > 5 else ''} sessions ({shown})",
                        hint="type more characters of the id",
                    )
                row = matches[0] if matches else None
            if row is None:
                raise CoachbotError(
                    f"no saved session with id {session_id!r}",
                    hint="see `coachbot sessions list` for the ids",
                )
            feedback = list(
                session.scalars(
                    select(_FeedbackRow)
                    .where(_FeedbackRow.session_id == row.id)
                    .order_by(_FeedbackRow.id)
                )
            )
            up = sum(1 for f in feedback if f.value == 1)
            summary = _summary(row, up, len(feedback) - up)
            return SessionRecord(
                **summary.model_dump(),
                payload=row.payload or {},
                feedback=[_feedback(f) for f in feedback],
            )

        return self._read(f"session {session_id!r}", run)

    def find_by_thread(self, thread_id: str) -> SessionSummary | None:
        """The newest session started in this Chainlit thread, if any."""

        def run(session: Session) -> SessionSummary | None:
            row = session.scalar(
                select(_SessionRow)
                .where(_SessionRow.thread_id == thread_id)
                .order_by(_SessionRow.created_at.desc())
                .limit(1)
            )
            if row is None:
                return None
            counts = self._feedback_counts(session, [row.id])
            return _summary(row, *counts.get(row.id, (0, 0)))

        return self._read(f"the session of thread {thread_id}", run)


# --------------------------------------------------------------------------- Chainlit's tables


def chainlit_conninfo(url: str) -> str:
    """The async URL for Chainlit's SQLAlchemyDataLayer from our sync one.

    ``sqlite:///x`` → ``sqlite+aiosqlite:///x``; ``postgresql://`` and ``postgresql+psycopg://``
    (any sync driver) → ``postgresql+asyncpg://``.
    """
    parsed = _parse_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif backend == "postgresql":
        parsed = parsed.set(drivername="postgresql+asyncpg")
    else:
        raise StorageError(
            f"Chainlit's data layer cannot use a {backend} database",
            hint="use SQLite or PostgreSQL in DATABASE_URL",
        )
    return parsed.render_as_string(hide_password=False)


# Column types are written for Postgres (Chainlit's documented schema); SQLite gets TEXT for
# UUID, JSONB and arrays. Columns beyond the documented schema are the ones Chainlit 2.12 binds
# (steps.modes/autoCollapse, elements.autoPlay/playerConfig).
_CL_TABLES: dict[str, tuple[list[tuple[str, str, str]], list[str]]] = {
    "users": (
        [
            ("id", "UUID", "PRIMARY KEY"),
            ("identifier", "TEXT", "NOT NULL UNIQUE"),
            ("metadata", "JSONB", "NOT NULL"),
            ("createdAt", "TEXT", ""),
        ],
        [],
    ),
    "threads": (
        [
            ("id", "UUID", "PRIMARY KEY"),
            ("createdAt", "TEXT", ""),
            ("name", "TEXT", ""),
            ("userId", "UUID", ""),
            ("userIdentifier", "TEXT", ""),
            ("tags", "TEXT[]", ""),
            ("metadata", "JSONB", ""),
        ],
        ['FOREIGN KEY ("userId") REFERENCES users("id") ON DELETE CASCADE'],
    ),
    "steps": (
        [
            ("id", "UUID", "PRIMARY KEY"),
            ("name", "TEXT", "NOT NULL"),
            ("type", "TEXT", "NOT NULL"),
            ("threadId", "UUID", "NOT NULL"),
            ("parentId", "UUID", ""),
            ("streaming", "BOOLEAN", "NOT NULL"),
            ("waitForAnswer", "BOOLEAN", ""),
            ("isError", "BOOLEAN", ""),
            ("metadata", "JSONB", ""),
            ("tags", "TEXT[]", ""),
            ("input", "TEXT", ""),
            ("output", "TEXT", ""),
            ("createdAt", "TEXT", ""),
            ("command", "TEXT", ""),
            ("modes", "JSONB", ""),
            ("start", "TEXT", ""),
            ("end", "TEXT", ""),
            ("generation", "JSONB", ""),
            ("showInput", "TEXT", ""),
            ("language", "TEXT", ""),
            ("indent", "INT", ""),
            ("defaultOpen", "BOOLEAN", ""),
            ("autoCollapse", "BOOLEAN", ""),
        ],
        ['FOREIGN KEY ("threadId") REFERENCES threads("id") ON DELETE CASCADE'],
    ),
    "elements": (
        [
            ("id", "UUID", "PRIMARY KEY"),
            ("threadId", "UUID", ""),
            ("type", "TEXT", ""),
            ("url", "TEXT", ""),
            ("chainlitKey", "TEXT", ""),
            ("name", "TEXT", "NOT NULL"),
            ("display", "TEXT", ""),
            ("objectKey", "TEXT", ""),
            ("size", "TEXT", ""),
            ("page", "INT", ""),
            ("language", "TEXT", ""),
            ("forId", "UUID", ""),
            ("mime", "TEXT", ""),
            ("props", "JSONB", ""),
            ("autoPlay", "BOOLEAN", ""),
            ("playerConfig", "JSONB", ""),
        ],
        ['FOREIGN KEY ("threadId") REFERENCES threads("id") ON DELETE CASCADE'],
    ),
    "feedbacks": (
        [
            ("id", "UUID", "PRIMARY KEY"),
            ("forId", "UUID", "NOT NULL"),
            ("threadId", "UUID", "NOT NULL"),
            ("value", "INT", "NOT NULL"),
            ("comment", "TEXT", ""),
        ],
        ['FOREIGN KEY ("threadId") REFERENCES threads("id") ON DELETE CASCADE'],
    ),
}
_CL_INDEXES = (
    ("threads", "userId"),
    ("steps", "threadId"),
    ("elements", "threadId"),
    ("feedbacks", "forId"),
)
_SQLITE_TYPES = {"UUID": "TEXT", "JSONB": "TEXT", "TEXT[]": "TEXT", "INT": "INTEGER"}


def chainlit_table_ddl(dialect: str) -> list[str]:
    """The CREATE TABLE / CREATE INDEX statements (idempotent) for ``sqlite`` or ``postgresql``."""
    statements = []
    for table, (columns, constraints) in _CL_TABLES.items():
        parts = []
        for name, pg_type, extra in columns:
            sql_type = _SQLITE_TYPES.get(pg_type, pg_type) if dialect == "sqlite" else pg_type
            parts.append(f'"{name}" {sql_type} {extra}'.rstrip())
        body = ",\n  ".join([*parts, *constraints])
        statements.append(f"CREATE TABLE IF NOT EXISTS {table} (\n  {body}\n)")
    for table, column in _CL_INDEXES:
        statements.append(
            f'CREATE INDEX IF NOT EXISTS "ix_{table}_{column}" ON {table} ("{column}")'
        )
    return statements


def create_chainlit_tables(url: str) -> None:
    """Create the tables Chainlit's SQLAlchemyDataLayer uses (idempotent; takes our sync URL).

    Tables made by an older Chainlit get the columns they lack added.
    """
    engine = _make_engine(url)
    dialect = engine.dialect.name
    if dialect not in ("sqlite", "postgresql"):
        raise StorageError(
            f"Chainlit's data layer cannot use a {dialect} database",
            hint="use SQLite or PostgreSQL in DATABASE_URL",
        )
    try:
        with engine.begin() as conn:
            for statement in chainlit_table_ddl(dialect):
                conn.execute(text(statement))
            inspector = inspect(conn)
            for table, (columns, _constraints) in _CL_TABLES.items():
                present = {c["name"] for c in inspector.get_columns(table)}
                for name, pg_type, extra in columns:
                    if name in present or extra:
                        continue
                    sql_type = (
                        _SQLITE_TYPES.get(pg_type, pg_type) if dialect == "sqlite" else pg_type
                    )
                    conn.execute(text(f'ALTER TABLE {table} ADD COLUMN "{name}" {sql_type}'))
    except DBAPIError as exc:
        safe = make_url(url).render_as_string(hide_password=True)
        raise StorageError(
            f"cannot create Chainlit's tables at {safe}: {_reason(exc)}", hint=_STORE_HINT
        ) from exc
    finally:
        engine.dispose()


def register_sqlite_adapters() -> None:
    """Let sqlite3 bind lists and dicts as JSON text (Chainlit binds thread tags as lists)."""
    sqlite3.register_adapter(list, json.dumps)
    sqlite3.register_adapter(dict, json.dumps)
