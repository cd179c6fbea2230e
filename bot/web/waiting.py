"""The chat's side of the model queue: "You are next" / "2 turns ahead of you" while a turn
waits for the embedded model, gone once the turn starts.

The queue reports positions from the worker thread that waits; :class:`WaitingNote` hands each
report to the event loop in the chat's Chainlit context (captured when the note is made, since
worker threads have none) and shows them in order, in one message that it updates and removes.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

import chainlit as cl

from bot.llm.queue import describe_position
from bot.service import Services

log = logging.getLogger(__name__)


class WaitingNote:
    """One turn's waiting note. Make it on the event loop; :meth:`hold` runs in the worker."""

    def __init__(self, services: Services, owner: str) -> None:
        self._services = services
        self._owner = owner
        self._loop = asyncio.get_running_loop()
        self._context = contextvars.copy_context()
        self._message: cl.Message | None = None
        self._order = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self.shown: list[str] = []
        self._waited = False  # set in the worker thread when a position was reported

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the model for the turn (worker thread); the note goes once the turn starts."""
        with self._services.model_slot(self._owner, self._on_position):
            if self._waited:
                self._schedule(self._remove())
            yield

    async def finish(self) -> None:
        """Wait for the note's updates, and make sure it is gone (on the event loop)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._remove()

    def _on_position(self, ahead: int) -> None:
        self._waited = True
        self._schedule(self._show(describe_position(ahead)))

    def _schedule(self, work: Coroutine[Any, Any, None]) -> None:
        self._loop.call_soon_threadsafe(self._start, work, context=self._context)

    def _start(self, work: Coroutine[Any, Any, None]) -> None:
        self._tasks.append(asyncio.ensure_future(work))

    async def _show(self, text: str) -> None:
        async with self._order:
            self.shown.append(text)
            try:
                if self._message is None:
                    self._message = cl.Message(content=text, author="coachbot")
                    await self._message.send()
                else:
                    self._message.content = text
                    await self._message.update()
            except Exception:  # a note that cannot be shown must not fail the turn
                log.warning("could not show the waiting note", exc_info=True)

    async def _remove(self) -> None:
        async with self._order:
            message, self._message = self._message, None
            if message is not None:
                try:
                    await message.remove()
                except Exception:
                    log.warning("could not remove the waiting note", exc_info=True)
