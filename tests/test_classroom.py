"""A classroom on one machine (issue 18): the app's side of the model queue and admission.

The customer is the local chat model over the llama.cpp stand-in of tests/test_turns.py, so
the app really goes through the engine's queue; "another session" holds that queue from a
thread while the test's session sends its line.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import chainlit as cl
from chainlit.context import init_ws_context

from bot.llm.capacity import Admission, budget_when, classroom_capacity, simulate_classroom
from bot.llm.prefix_cache import make_prefix_cache
from bot.service import Services
from bot.web import app
from tests.conftest import make_settings
from tests.test_app import Browser, cl_session_value
from tests.test_turns import TRAINEE, CountingLlama, counting_model


def _another_session_holds(queue: Any) -> tuple[threading.Event, threading.Event]:
    """Hold ``queue`` from another thread until the returned ``release`` is set."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with queue.hold("another session"):
            held.set()
            release.wait(10)

    threading.Thread(target=hold, daemon=True).start()
    assert held.wait(5)
    return held, release


async def _until(condition: Any, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out")


def test_a_line_that_waits_for_the_model_shows_its_place_then_the_note_goes(make_services):
    svc = make_services(counting_model(CountingLlama()))
    browser = Browser(app.PRACTICE)
    _, release = _another_session_holds(svc.model_queue)

    async def go() -> None:
        init_ws_context(browser.session)
        await app.on_chat_start()
        task = asyncio.create_task(app.on_message(cl.Message(content=TRAINEE, author="User")))
        await _until(lambda: any("You are next" in t for t in browser.texts()))
        assert not task.done(), "the reply did not wait for the other session"
        release.set()
        await asyncio.wait_for(task, 10)

    browser.run(go)
    note = next(m for m in browser.messages() if "You are next" in m.get("output", ""))
    removed = [d.get("id") for d in browser.of("delete_message")]
    assert note["id"] in removed, "the waiting note stayed after the reply"
    run = cl_session_value(browser, "practice")
    assert len(run.simulator.transcript.turns) == 1  # the line was answered and counted
    assert svc.model_queue.idle()


def test_a_line_served_at_once_shows_no_waiting_note(make_services):
    make_services(counting_model(CountingLlama()))
    browser = Browser(app.PRACTICE)
    browser.run(app.on_chat_start)
    browser.say(TRAINEE)
    assert not any("ahead of you" in t or "You are next" in t for t in browser.texts())


def test_a_full_class_turns_a_new_practice_session_away_plainly(make_services):
    svc = make_services(counting_model(CountingLlama()))
    svc.classroom.limit = 1
    first, second = Browser(app.PRACTICE), Browser(app.PRACTICE)
    first.run(app.on_chat_start)
    second.run(app.on_chat_start)
    assert cl_session_value(second, "practice") is None
    assert any("already running 1 practice sessions" in t for t in second.texts())
    second.say(TRAINEE)  # a line sent anyway gets no reply and no error
    assert not any("went wrong" in t.lower() for t in second.texts())

    first.run(app.on_chat_end)  # the first trainee leaves: the place is free again
    third = Browser(app.PRACTICE)
    third.run(app.on_chat_start)
    assert cl_session_value(third, "practice") is not None


# --------------------------------------------------------------------------- capacity


def test_one_trainee_waits_only_for_their_own_turn():
    estimate = simulate_classroom(1, {3: [2.0], 0: [0.1]})
    assert estimate.reply_p50_s == estimate.reply_p95_s == 2.0
    assert 0.05 < estimate.utilisation < 0.12  # 2 s of work every 17 to 32 s


def test_the_capacity_is_the_largest_class_within_the_target():
    capacity, estimates = classroom_capacity({3: [2.0, 3.0]}, reply_p95_target_s=10.0)
    assert capacity >= 1
    assert estimates[capacity - 1].reply_p95_s <= 10.0 < estimates[capacity].reply_p95_s
    assert [e.trainees for e in estimates] == list(range(1, capacity + 2))
    slower, _ = classroom_capacity({3: [5.0, 7.0]}, reply_p95_target_s=10.0)
    assert slower < capacity
    # with the trainer's line at once when three wait, the queue drains: a bigger class fits
    shedding, estimates = classroom_capacity({3: [2.0, 3.0], 0: [0.1]}, 10.0)
    assert shedding > capacity and estimates[shedding - 1].trainer_line_share > 0


def test_a_line_gets_one_attempt_less_per_turn_waiting_behind_it():
    assert [budget_when(waiting) for waiting in range(5)] == [3, 2, 1, 0, 0]


def test_the_app_admits_what_capacity_measured_unless_the_setting_says(tmp_path):
    def classroom(**settings: Any) -> Admission:
        return Services(make_settings(tmp_path, **settings)).classroom

    assert classroom().limit is None  # nothing measured: no limit
    data = tmp_path / "data"
    data.mkdir()
    (data / "capacity.json").write_text(json.dumps({"model": "qwen2.5-coder-1.5b", "trainees": 4}))
    assert classroom().limit == 4
    assert classroom(max_trainees=9).limit == 9
    (data / "capacity.json").write_text(json.dumps({"model": "other", "trainees": 4}))
    assert classroom().limit is None  # measured for another model
    (data / "capacity.json").write_text(json.dumps({"model": "qwen2.5-coder-1.5b", "trainees": 0}))
    assert classroom().limit == 1  # too slow for the target: still one trainee at a time
    (data / "capacity.json").write_text("[1, 2]")  # not a result: ignored, not a crash
    assert classroom().limit is None


def test_the_scenarios_customer_prompts_are_read_into_the_prefix_cache_at_start(make_services):
    llm = CountingLlama()
    svc = make_services(counting_model(llm))
    assert svc.warm_customer_prefixes() == 0, "no prefix cache: nothing to warm"
    llm.cache = make_prefix_cache(capacity_mb=1)
    assert svc.warm_customer_prefixes() == len(svc.scenarios)
    assert llm.produced == len(svc.scenarios)  # one token each: the prompt is what counts
    assert svc.model_queue.idle()


def test_a_line_that_waited_out_the_retry_window_is_replayed_as_a_trainer_line():
    slow = {3: [6.0, 7.0], 1: [6.0, 7.0], 0: [0.01]}
    without, _ = classroom_capacity(slow, 10.0, max_trainer_line_share=1.0)
    with_window, estimates = classroom_capacity(
        slow, 10.0, max_trainer_line_share=1.0, retry_window_s=3.0
    )
    assert with_window > without
    assert estimates[with_window - 1].trainer_line_share > 0
