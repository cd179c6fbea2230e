"""Measuring the embedded model itself: a call recorder and a raw llama.cpp replay.

``CallRecorder`` wraps the shared llama.cpp engine's ``create_completion`` (what the chat
template handler calls) and records every prompt, the sampling parameters, the text it
produced, and when its first token and its end came.

``raw_replay`` then runs the *same* token sequence straight through llama.cpp's low-level
API: it evaluates each recorded prompt (reusing the KV prefix exactly as the real call could)
and then decodes each recorded output token one by one, sampling after each step as
generation does. That is the model's own cost for the same prompt and output tokens, with no
coachbot, LangChain or chat-template code around it, so ``end-to-end / raw`` is coachbot's
overhead.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RecordedCall:
    """One completion the app asked llama.cpp for."""

    prompt: str
    params: dict[str, Any]
    output: str = ""
    started: float = 0.0
    first_token_at: float | None = None
    ended: float = 0.0
    label: str = ""

    @property
    def seconds(self) -> float:
        return self.ended - self.started

    @property
    def first_token_s(self) -> float | None:
        return None if self.first_token_at is None else self.first_token_at - self.started


@dataclass
class CallRecorder:
    """Records every completion made through ``llm`` (a ``llama_cpp.Llama``) while installed."""

    llm: Any
    calls: list[RecordedCall] = field(default_factory=list)
    label: str = ""
    reset_before_each_call: bool = False
    _original: Any = None

    def install(self) -> CallRecorder:
        self._original = self.llm.create_completion
        recorder = self

        def create_completion(prompt: Any, *args: Any, **kwargs: Any) -> Any:
            if recorder.reset_before_each_call:
                recorder.llm.reset()  # forget the KV cache: the whole prompt is evaluated
            call = RecordedCall(prompt=prompt, params=dict(kwargs), label=recorder.label)
            recorder.calls.append(call)
            call.started = time.perf_counter()
            result = recorder._original(prompt, *args, **kwargs)
            if not kwargs.get("stream"):
                call.output = result["choices"][0]["text"]
                call.ended = call.first_token_at = time.perf_counter()
                return result
            return recorder._watch(call, result)

        self.llm.create_completion = create_completion
        return self

    def _watch(self, call: RecordedCall, stream: Iterator[dict[str, Any]]) -> Iterator[Any]:
        try:
            for event in stream:
                text = event["choices"][0].get("text") or ""
                if text and call.first_token_at is None:
                    call.first_token_at = time.perf_counter()
                call.output += text
                call.ended = time.perf_counter()
                yield event
        finally:
            call.ended = call.ended or time.perf_counter()
            close = getattr(stream, "close", None)
            if close is not None:
                close()

    def uninstall(self) -> None:
        if self._original is not None:
            self.llm.create_completion = self._original
            self._original = None


@dataclass
class RawTiming:
    prompt_tokens: int
    evaluated_prompt_tokens: int  # after the KV prefix the previous call left
    output_tokens: int
    first_token_s: float
    seconds: float


def _prompt_tokens(llm: Any, prompt: Any) -> list[int]:
    if isinstance(prompt, list):
        return list(prompt)
    return llm.tokenize(prompt.encode("utf-8"), special=True)


def raw_call(
    llm: Any, prompt_tokens: list[int], output_tokens: list[int], params: dict
) -> RawTiming:
    """Evaluate ``prompt_tokens`` (reusing the cached prefix), then decode ``output_tokens``."""
    cached = llm.n_tokens
    history = list(llm._input_ids[:cached])
    prefix = 0
    for a, b in zip(history, prompt_tokens, strict=False):
        if a != b:
            break
        prefix += 1
    if prefix == len(prompt_tokens):
        prefix -= 1  # at least one token must be evaluated to get fresh logits
    sampling = {
        "temp": params.get("temperature", 0.7),
        "top_k": params.get("top_k", 40),
        "top_p": params.get("top_p", 0.9),
        "repeat_penalty": params.get("repeat_penalty", 1.0),
    }
    started = time.perf_counter()
    if prefix > 0 and llm._ctx.kv_cache_seq_rm(-1, prefix, -1):
        llm.n_tokens = prefix
    else:
        llm.reset()
        prefix = 0
    llm.eval(prompt_tokens[prefix:])
    llm.sample(**sampling)
    first = time.perf_counter() - started
    for token in output_tokens[:-1]:
        llm.eval([token])
        llm.sample(**sampling)
    return RawTiming(
        prompt_tokens=len(prompt_tokens),
        evaluated_prompt_tokens=len(prompt_tokens) - prefix,
        output_tokens=len(output_tokens),
        first_token_s=first,
        seconds=time.perf_counter() - started,
    )


def kv_tokens(llm: Any) -> list[int]:
    """The tokens whose state llama.cpp holds in its KV cache now."""
    return list(llm._input_ids[: llm.n_tokens])


def restore_kv(llm: Any, tokens: list[int]) -> None:
    """Bring the KV cache to ``tokens`` (keeping the common prefix), untimed."""
    prefix = 0
    for a, b in zip(kv_tokens(llm), tokens, strict=False):
        if a != b:
            break
        prefix += 1
    if prefix == 0 or not llm._ctx.kv_cache_seq_rm(-1, prefix, -1):
        llm.reset()
        prefix = 0
    llm.n_tokens = prefix
    if tokens[prefix:]:
        llm.eval(tokens[prefix:])


def replay_calls(llm: Any, calls: list[RecordedCall]) -> list[RawTiming]:
    """Replay ``calls`` from the KV state llama.cpp holds now (see :func:`raw_replay`)."""
    timings = []
    for call in calls:
        prompt = _prompt_tokens(llm, call.prompt)
        output = llm.tokenize(call.output.encode("utf-8"), add_bos=False, special=True) or [
            llm.token_eos()
        ]
        timings.append(raw_call(llm, prompt, output, call.params))
    return timings


def raw_replay(llm: Any, calls: list[RecordedCall]) -> list[RawTiming]:
    """Replay ``calls`` in order from an empty KV cache (so prefix reuse matches the real run,
    provided the real run also started from the first of these calls)."""
    llm.reset()
    return replay_calls(llm, calls)
