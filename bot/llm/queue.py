"""A fair queue in front of one model: one holder at a time, waiters served first come, first
served.

The embedded model serves one generation at a time. A plain lock lets whichever thread wakes
first win, so under load one trainee can wait far longer than the others. :class:`ModelQueue`
serves turns in arrival order instead, tells each waiter how many turns are ahead of it
(``on_position``), stops waiting when the turn is cancelled (Stop or a disconnect, see
:mod:`bot.llm.cancel`), and limits how many turns one session may have waiting.

Holding is re-entrant in the same thread: a practice turn holds the model once, and every call
it makes inside (the line, a retry, a second candidate) runs without queueing again, so one
session's calls stay together and reuse each other's prefix.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass, field

from bot.errors import CoachbotError
from bot.llm.cancel import raise_if_cancelled

PositionCallback = Callable[[int], None]
_RECENT_WAITS = 200


class QueueLimitError(CoachbotError):
    """This session already has as many turns waiting for the model as it may."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"this chat already has {limit} turn(s) waiting for the model",
            hint="wait for the reply in progress, then send your next line",
        )


@dataclass(eq=False)
class _Ticket:
    owner: str
    thread: int
    queued_at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class QueueSnapshot:
    """What the queue is doing now, and how long recent turns waited."""

    busy: bool
    waiting: int
    served: int
    wait_p50_s: float
    wait_p95_s: float


class ModelQueue:
    """First-come, first-served access to one model (see the module docstring)."""

    def __init__(self, per_owner_limit: int = 1, poll_s: float = 0.05) -> None:
        self.per_owner_limit = per_owner_limit
        self._poll_s = poll_s
        self._cond = threading.Condition()
        self._waiting: deque[_Ticket] = deque()
        self._holder: _Ticket | None = None
        self._served = 0
        self._waits: deque[float] = deque(maxlen=_RECENT_WAITS)
        self._held: ContextVar[_Ticket | None] = ContextVar(f"model_queue_{id(self)}", default=None)

    @contextmanager
    def hold(self, owner: str = "", on_position: PositionCallback | None = None) -> Iterator[None]:
        """Hold the model for the body; wait in line first. ``on_position(n)`` is called with
        the number of turns ahead whenever it changes while waiting (not when served at once).
        Raises :class:`~bot.llm.cancel.GenerationCancelled` if the turn is cancelled while
        waiting, and :class:`QueueLimitError` if ``owner`` already has too many turns waiting.
        """
        if self._holds_here():
            yield
            return
        ticket = self._join(owner)
        try:
            self._wait_for_turn(ticket, on_position)
        except BaseException:
            self._leave(ticket)
            raise
        token = self._held.set(ticket)
        try:
            yield
        finally:
            with suppress(ValueError):  # a generator closed from another context
                self._held.reset(token)
            self._release(ticket)

    def waiting_since(self) -> float | None:
        """When the turn this thread holds joined the queue (``time.monotonic()``), if it
        holds one: the time its trainee has been waiting, queue included."""
        ticket = self._held.get()
        return ticket.queued_at if ticket is not None and self._holds_here() else None

    def idle(self) -> bool:
        """True when nobody holds the model and nobody waits."""
        with self._cond:
            return self._holder is None and not self._waiting

    def snapshot(self) -> QueueSnapshot:
        with self._cond:
            waits = sorted(self._waits)
            return QueueSnapshot(
                busy=self._holder is not None,
                waiting=len(self._waiting),
                served=self._served,
                wait_p50_s=_quantile(waits, 0.5),
                wait_p95_s=_quantile(waits, 0.95),
            )

    # ------------------------------------------------------------------ internals

    def _holds_here(self) -> bool:
        ticket = self._held.get()
        return ticket is not None and ticket is self._holder and ticket.thread == _thread()

    def _join(self, owner: str) -> _Ticket:
        with self._cond:
            if owner and self.per_owner_limit > 0:
                queued = sum(1 for t in self._waiting if t.owner == owner)
                if queued >= self.per_owner_limit:
                    raise QueueLimitError(self.per_owner_limit)
            ticket = _Ticket(owner=owner, thread=_thread())
            self._waiting.append(ticket)
            return ticket

    def _wait_for_turn(self, ticket: _Ticket, on_position: PositionCallback | None) -> None:
        told: int | None = None
        while True:
            with self._cond:
                if self._holder is None and self._waiting[0] is ticket:
                    self._waiting.popleft()
                    self._holder = ticket
                    self._waits.append(time.monotonic() - ticket.queued_at)
                    return
                ahead = self._waiting.index(ticket)
            if on_position is not None and ahead != told:
                on_position(ahead)
                told = ahead
            with self._cond:
                if self._holder is not None or self._waiting[0] is not ticket:
                    self._cond.wait(self._poll_s)
            raise_if_cancelled()

    def _leave(self, ticket: _Ticket) -> None:
        with self._cond:
            if ticket in self._waiting:
                self._waiting.remove(ticket)
            if self._holder is ticket:
                self._holder = None
            self._cond.notify_all()

    def _release(self, ticket: _Ticket) -> None:
        with self._cond:
            if self._holder is ticket:
                self._holder = None
                self._served += 1
            self._cond.notify_all()


def _thread() -> int:
    return threading.get_ident()


def _quantile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))
    return round(sorted_values[index], 3)


def describe_position(ahead: int) -> str:
    """The waiting note a trainee sees: "You are next" or "2 ahead of you"."""
    if ahead <= 0:
        return "You are next: the model is finishing another reply."
    turns = "turn" if ahead == 1 else "turns"
    return f"The model is busy: {ahead} {turns} ahead of you. Your reply comes after them."
