"""One turn at a time per session, and Stop / disconnect cancelling the generation.

The local chat model runs over a stand-in for llama.cpp that streams tokens slowly and counts
every token it produces, so a test can see how many were made after Stop and whether the
model's lock is free again. A gated model holds a reply open while the test presses "End and
debrief" or asks for a hint.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import chainlit as cl
import pytest
from chainlit.context import init_ws_context
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import PrivateAttr

from bot.llm.cancel import GenerationCancelled, cancel_scope
from bot.llm.local_chat import LlamaEngine, LocalChatModel
from bot.service import PracticeRun
from bot.web import app
from tests.test_app import CUSTOMER_LINE, Browser, cl_session_value

TRAINEE = "I'm so sorry your parcel arrived smashed."


class CountingLlama:
    """A llama.cpp stand-in: streams ``w0 w1 ...`` (``max_tokens`` of them, at most ``limit``),
    one every ``delay`` seconds, counting each token it produces."""

    def __init__(self, delay: float = 0.005, limit: int = 1000) -> None:
        self.delay = delay
        self.limit = limit
        self.produced = 0
        self.started = threading.Event()

    def tokenize(self, data: bytes, add_bos: bool = False, special: bool = True) -> list[bytes]:
        return data.split()

    def create_chat_completion(self, messages: Any, stream: bool, **params: Any) -> Iterator[Any]:
        count = min(self.limit, params.get("max_tokens") or self.limit)

        def tokens() -> Iterator[dict[str, Any]]:
            for i in range(count):
                time.sleep(self.delay)
                self.produced += 1
                self.started.set()
                yield {"choices": [{"delta": {"content": f"w{i} "}, "finish_reason": None}]}
            yield {"choices": [{"delta": {}, "finish_reason": "length"}]}

        return tokens()


def counting_model(llm: CountingLlama) -> LocalChatModel:
    model = LocalChatModel(model_path="counting.gguf")
    model._engine = LlamaEngine(llm=llm, path="counting.gguf", load_seconds=0.0)
    return model


def wait_until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


class GatedModel(BaseChatModel):
    """Answers ``line``; the first reply waits until :meth:`release` (the reply "in progress")."""

    line: str = CUSTOMER_LINE
    _entered: threading.Event = PrivateAttr(default_factory=threading.Event)
    _gate: threading.Event = PrivateAttr(default_factory=threading.Event)

    @property
    def _llm_type(self) -> str:
        return "gated"

    def release(self) -> None:
        self._gate.set()

    def _stream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> Iterator[ChatGenerationChunk]:
        self._entered.set()
        assert self._gate.wait(10), "the test never released the reply"
        yield ChatGenerationChunk(message=AIMessageChunk(content=self.line))

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        text = "".join(str(c.message.content) for c in self._stream(messages))
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])


# --------------------------------------------------------------------------- the model


def test_stop_ends_the_generation_within_a_token_and_frees_the_model():
    llm = CountingLlama()
    model = counting_model(llm)
    stop = threading.Event()
    outcome: dict[str, Any] = {}

    def generate() -> None:
        with cancel_scope(stop):
            try:
                chunks = model.stream([HumanMessage("hi")])
                outcome["text"] = "".join(str(c.content) for c in chunks)
            except GenerationCancelled as exc:
                outcome["error"] = exc

    worker = threading.Thread(target=generate)
    worker.start()
    wait_until(lambda: llm.produced >= 5)
    stop.set()
    at_stop = llm.produced
    worker.join(timeout=2)
    assert not worker.is_alive(), "the generation went on after Stop"
    time.sleep(0.05)
    assert llm.produced - at_stop <= 1
    assert isinstance(outcome.get("error"), GenerationCancelled)
    assert model.engine.queue.idle(), "the model is still held"


def test_a_stopped_session_waiting_for_the_model_stops_waiting():
    llm = CountingLlama()
    model = counting_model(llm)
    stop = threading.Event()
    failed: list[BaseException] = []

    def generate() -> None:
        with cancel_scope(stop):
            try:
                list(model.stream([HumanMessage("hi")]))
            except GenerationCancelled as exc:
                failed.append(exc)

    with model.engine.queue.hold("another session"):  # another session is generating
        worker = threading.Thread(target=generate)
        worker.start()
        time.sleep(0.1)
        stop.set()
        worker.join(timeout=2)
        assert not worker.is_alive() and failed
    assert llm.produced == 0


# --------------------------------------------------------------------------- the practice run


def test_a_stopped_reply_leaves_the_session_as_it_was(make_services):
    llm = CountingLlama()
    svc = make_services(counting_model(llm))
    run = PracticeRun(svc, "damaged-delivery", "medium", seed=1, save=False)
    before = run.simulator.state.model_copy()
    stop = threading.Event()
    failed: list[BaseException] = []

    def reply() -> None:
        with cancel_scope(stop):
            try:
                run.respond(TRAINEE)
            except GenerationCancelled as exc:
                failed.append(exc)

    worker = threading.Thread(target=reply)
    worker.start()
    wait_until(lambda: llm.produced >= 3)
    stop.set()
    worker.join(timeout=2)
    assert failed and not worker.is_alive()
    assert run.simulator.transcript.turns == [] and run.simulator.state == before
    assert not run.busy
    turn = run.respond(TRAINEE)  # the model is free: the next line is answered
    assert turn.index == 1 and run.simulator.state.turn == 1


def test_the_debrief_asked_for_during_a_reply_waits_for_it(make_services):
    model = GatedModel()
    svc = make_services(model)
    run = PracticeRun(svc, "damaged-delivery", "medium", seed=1, save=False)
    replying = threading.Thread(target=run.respond, args=(TRAINEE,))
    replying.start()
    assert model._entered.wait(5)
    ending = threading.Thread(target=run.end)
    ending.start()
    time.sleep(0.2)
    assert ending.is_alive(), "the debrief did not wait for the reply in progress"
    assert run.scorecard is None
    model.release()
    replying.join(5)
    ending.join(5)
    assert run.final_transcript is not None and len(run.final_transcript.turns) == 1
    assert run.scorecard is not None and len(run.scorecard.mood) == 2  # start + the one turn
    with pytest.raises(Exception, match="has ended"):
        run.respond("Anything else?")


# --------------------------------------------------------------------------- the app


def _run_with_reply_in_progress(browser: Browser, then: Any) -> Any:
    """Start the chat, send a line, and call ``then(task)`` while its reply is in progress."""

    async def go() -> Any:
        init_ws_context(browser.session)
        await app.on_chat_start()
        task = asyncio.create_task(app.on_message(cl.Message(content=TRAINEE, author="User")))
        return await then(task)

    return asyncio.run(go())


def test_stop_in_the_app_cancels_the_generation_and_frees_the_model(make_services):
    llm = CountingLlama()
    model = counting_model(llm)
    make_services(model)
    browser = Browser(app.PRACTICE)

    async def press_stop(task: asyncio.Task) -> int:
        while llm.produced < 5:
            await asyncio.sleep(0.005)
        task.cancel()  # what Chainlit does on "stop", then it calls on_stop
        await app.on_stop()
        at_stop = llm.produced
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.2)
        return at_stop

    at_stop = _run_with_reply_in_progress(browser, press_stop)
    assert llm.produced - at_stop <= 1
    assert model.engine.queue.idle()
    run = cl_session_value(browser, "practice")
    assert run.simulator.transcript.turns == [] and not run.busy


def test_a_disconnect_cancels_the_generation_and_the_line_is_not_counted(make_services):
    llm = CountingLlama()
    model = counting_model(llm)
    make_services(model)
    browser = Browser(app.PRACTICE)

    async def disconnect(task: asyncio.Task) -> int:
        while llm.produced < 5:
            await asyncio.sleep(0.005)
        await app.on_chat_end()  # Chainlit does not cancel the task on a disconnect
        at_stop = llm.produced
        await asyncio.wait_for(task, 5)
        return at_stop

    at_stop = _run_with_reply_in_progress(browser, disconnect)
    assert llm.produced - at_stop <= 1
    assert app.STOPPED in browser.texts()
    assert model.engine.queue.idle()


def test_end_and_debrief_during_a_reply_says_so_and_debriefs_the_finished_transcript(
    make_services,
):
    model = GatedModel()
    make_services(model)
    browser = Browser(app.PRACTICE)

    async def press_end(task: asyncio.Task) -> None:
        while not model._entered.is_set():
            await asyncio.sleep(0.005)
        ending = asyncio.create_task(app.on_end(cl.Action(name="end_debrief", payload={})))
        await asyncio.sleep(0.2)
        assert not ending.done()
        assert not any(t.startswith("## Debrief") for t in browser.texts())
        model.release()
        await asyncio.wait_for(asyncio.gather(task, ending), 10)

    _run_with_reply_in_progress(browser, press_end)
    texts = browser.texts()
    assert any("your debrief comes right after" in t for t in texts)
    run = cl_session_value(browser, "practice")
    [turn] = run.final_transcript.turns  # the debrief scored the finished reply
    debriefs = [i for i, t in enumerate(texts) if t.startswith("## Debrief")]
    reply = next(i for i, t in enumerate(texts) if t.startswith(turn.customer))
    assert len(debriefs) == 1 and debriefs[0] > reply
