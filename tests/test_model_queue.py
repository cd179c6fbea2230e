"""The fair model queue and the bounded prefix cache (issue 18)."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from bot.config import Settings
from bot.llm import make_chat_model
from bot.llm.cancel import GenerationCancelled, cancel_scope
from bot.llm.prefix_cache import MEGABYTE, make_prefix_cache, state_bytes
from bot.llm.queue import ModelQueue, QueueLimitError, describe_position


def wait_until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def _waiter(
    queue: ModelQueue,
    owner: str,
    served: list[str],
    positions: dict[str, list[int]],
    cancel: threading.Event | None = None,
) -> threading.Thread:
    def run() -> None:
        with cancel_scope(cancel):
            try:
                with queue.hold(owner, on_position=positions.setdefault(owner, []).append):
                    served.append(owner)
                    time.sleep(0.1)  # a short generation
            except GenerationCancelled:
                served.append(f"{owner} cancelled")

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _queue_behind_holder(owners: list[str]) -> tuple[ModelQueue, list, dict, threading.Event]:
    """A queue held by "holder" until the returned event is set, with ``owners`` waiting in
    that order."""
    queue = ModelQueue()
    release, held = threading.Event(), threading.Event()

    def holder() -> None:
        with queue.hold("holder"):
            held.set()
            release.wait(5)

    threading.Thread(target=holder).start()
    held.wait(5)
    served: list[str] = []
    positions: dict[str, list[int]] = {}
    threads = []
    for count, owner in enumerate(owners, start=1):
        threads.append(_waiter(queue, owner, served, positions))
        wait_until(lambda count=count: queue.snapshot().waiting == count)
    return queue, served, positions, release


def test_turns_are_served_in_arrival_order_and_told_their_place():
    queue, served, positions, release = _queue_behind_holder(["a", "b", "c"])
    release.set()
    wait_until(lambda: len(served) == 3)
    assert served == ["a", "b", "c"]
    assert positions["a"] == [0]
    assert positions["c"] == [2, 1, 0]
    wait_until(queue.idle)
    assert queue.snapshot().served == 4


def test_a_cancelled_turn_leaves_the_queue_and_the_next_one_moves_up():
    queue, served, positions, release = _queue_behind_holder(["a"])
    stop = threading.Event()
    _waiter(queue, "b", served, positions, cancel=stop)
    wait_until(lambda: queue.snapshot().waiting == 2)
    stop.set()
    wait_until(lambda: "b cancelled" in served)
    assert queue.snapshot().waiting == 1
    release.set()
    wait_until(lambda: "a" in served)
    wait_until(queue.idle)


def test_one_session_may_not_stack_turns_but_others_may_queue():
    queue, served, positions, release = _queue_behind_holder(["a"])
    with pytest.raises(QueueLimitError) as raised, queue.hold("a"):
        pass
    assert "wait for the reply in progress" in raised.value.hint
    _waiter(queue, "b", served, positions)
    wait_until(lambda: queue.snapshot().waiting == 2)
    release.set()
    wait_until(lambda: served == ["a", "b"])


def test_the_holder_knows_since_when_its_turn_has_waited():
    queue = ModelQueue()
    assert queue.waiting_since() is None
    before = time.monotonic()
    with queue.hold("a"):
        since = queue.waiting_since()
        assert since is not None and before <= since <= time.monotonic()
    assert queue.waiting_since() is None


def test_holding_is_reentrant_in_the_same_thread_only():
    queue = ModelQueue()
    inner_done = threading.Event()
    with queue.hold("a"):
        with queue.hold("a"):  # a retry inside the same turn goes straight on
            pass
        other = threading.Thread(target=lambda: (queue.hold("b").__enter__(), inner_done.set()))
        other.start()
        time.sleep(0.1)
        assert not inner_done.is_set(), "another thread got the model while it was held"
    wait_until(inner_done.is_set)


def test_the_waiting_note_says_next_or_how_many_are_ahead():
    assert describe_position(0).startswith("You are next")
    assert "1 turn ahead" in describe_position(1)
    assert "3 turns ahead" in describe_position(3)


class _State:
    """The parts of llama_cpp's LlamaState the cache reads."""

    def __init__(self, kv_bytes: int, rows: int) -> None:
        self.llama_state_size = kv_bytes
        self.scores = np.zeros((rows, 1000), dtype=np.single)
        self.input_ids = np.zeros(16, dtype=np.intc)


def test_the_prefix_cache_keeps_one_logits_row_and_counts_every_byte():
    cache = make_prefix_cache(capacity_mb=1)
    cache[(1, 2, 3)] = _State(kv_bytes=100_000, rows=512)
    (state,) = cache.cache_state.values()
    assert state.scores.shape == (1, 1000), "only the last logits row is kept"
    assert cache.cache_size == state_bytes(state) == 100_000 + 4000 + 64


def test_the_prefix_cache_drops_the_least_recently_used_state_over_its_bound():
    cache = make_prefix_cache(capacity_mb=1)
    for session in range(3):
        cache[(session, 1, 2)] = _State(kv_bytes=400_000, rows=4)
    _ = cache[(1, 1, 2, 9)]  # session 1 is used again: longest prefix (1, 1, 2)
    cache[(3, 1, 2)] = _State(kv_bytes=400_000, rows=4)
    assert set(cache.cache_state) == {(1, 1, 2), (3, 1, 2)}
    report = cache.report()
    assert report.bytes_held <= MEGABYTE and report.evictions == 2 and report.entries == 2
    assert "2 saved prefixes" in report.describe()


@pytest.mark.integration
def test_a_session_that_takes_turns_with_another_reads_only_its_new_tokens():
    """Session A, then B, then A again: with the prefix cache A's second call evaluates only
    what is new since its first call; without it, its whole prompt again."""
    model = make_chat_model(Settings(_env_file=None, max_tokens=4, temperature=0.0), seed=3)
    engine = model.engine
    evaluated: list[int] = []
    original_eval = engine.llm.eval

    def counting_eval(tokens: Any) -> None:
        evaluated.append(len(tokens))
        original_eval(tokens)

    def conversation(name: str, turns: int) -> list[Any]:
        persona = f"You are {name}, a customer. " + "You are upset about a late parcel. " * 25
        messages: list[Any] = [SystemMessage(persona)]
        for turn in range(turns):
            messages += [HumanMessage(f"Question {turn}?"), AIMessage("Not good enough.")]
        return messages[:-1]

    def tokens_read_by_second_turn_of_a() -> int:
        model.invoke(conversation("Ann", 1))
        model.invoke(conversation("Bob", 1))
        evaluated.clear()
        model.invoke(conversation("Ann", 2))
        return sum(evaluated)

    with engine.queue.hold("test"):
        engine.llm.eval = counting_eval
        cache = engine.llm.cache
        try:
            assert cache is not None, "the default settings turn the prefix cache on"
            with_cache = tokens_read_by_second_turn_of_a()
            engine.llm.set_cache(None)
            without_cache = tokens_read_by_second_turn_of_a()
        finally:
            engine.llm.eval = original_eval
            engine.llm.set_cache(cache)
    assert with_cache < 40 < 200 < without_cache, (with_cache, without_cache)


def test_the_prefix_cache_can_be_emptied_for_a_cold_start():
    cache = make_prefix_cache(capacity_mb=1)
    cache[(1, 2)] = _State(kv_bytes=1000, rows=1)
    cache.clear()
    assert cache.report().entries == 0 and cache.cache_size == 0
    with pytest.raises(KeyError):
        _ = cache[(1, 2, 3)]
