"""Stopping a generation from another thread (the user pressed Stop, or disconnected).

The thread that generates runs inside :func:`cancel_scope` with a ``threading.Event``; the
code that streams from the model checks :func:`raise_if_cancelled` between tokens (and while
it waits in the local model's queue), so setting the event ends the generation within one
token and frees the model for the next session. The scope is a context variable: each worker
thread has its own, and nothing is passed through the models' signatures.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from bot.errors import CoachbotError

_CURRENT: ContextVar[threading.Event | None] = ContextVar("coachbot_cancel", default=None)


class GenerationCancelled(CoachbotError):
    """The reply was stopped before it was finished (nothing of it is kept)."""

    def __init__(self) -> None:
        super().__init__("the reply was stopped", hint="send your line again to get a reply")


@contextmanager
def cancel_scope(event: threading.Event | None) -> Iterator[None]:
    """Generations in this thread (and context) stop once ``event`` is set."""
    token = _CURRENT.set(event)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def cancelled() -> bool:
    """True when the current scope's event is set."""
    event = _CURRENT.get()
    return event is not None and event.is_set()


def raise_if_cancelled() -> None:
    """Raise :class:`GenerationCancelled` when the current scope's event is set."""
    if cancelled():
        raise GenerationCancelled()
