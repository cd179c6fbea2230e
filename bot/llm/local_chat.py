"""A LangChain chat model over llama-cpp-python, with one shared model per process.

Loading a GGUF costs seconds and ~2 GB of RAM, so every ``LocalChatModel`` that names the same
file shares one ``llama_cpp.Llama`` instance (an engine). Generation holds the engine's fair
queue (:mod:`bot.llm.queue`), so concurrent sessions take turns in arrival order instead of
corrupting the context. llama.cpp re-evaluates only the part of a new prompt after the common
prefix with the previous call, and the engine's prefix cache (:mod:`bot.llm.prefix_cache`)
restores each session's own prefix when sessions alternate. A cancelled scope
(:mod:`bot.llm.cancel`: the user pressed Stop or left) ends the generation between two tokens
and frees the model; a session waiting in the queue stops waiting.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field, PrivateAttr

from bot.errors import ModelUnavailableError
from bot.llm.cancel import raise_if_cancelled
from bot.llm.prefix_cache import PrefixCacheReport, make_prefix_cache
from bot.llm.queue import ModelQueue


@dataclass
class LlamaEngine:
    """One loaded model, the fair queue that serialises its use, and its prefix cache."""

    llm: Any
    path: str
    load_seconds: float
    queue: ModelQueue = field(default_factory=ModelQueue)

    def forget_prefixes(self) -> None:
        """Start cold: no prompt in llama.cpp's KV cache and no saved prefix (for measuring a
        session's first turn as a new session would have it). Call while holding the queue."""
        self.llm.reset()
        cache = getattr(self.llm, "cache", None)
        if cache is not None:
            cache.clear()

    def prefix_cache(self) -> PrefixCacheReport | None:
        """What the prefix cache holds (None when it is off)."""
        cache = getattr(self.llm, "cache", None)
        return cache.report() if cache is not None else None

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))


_ENGINES: dict[tuple[str, int], LlamaEngine] = {}
_ENGINES_LOCK = threading.Lock()


@atexit.register
def close_engines() -> None:
    """Free models before interpreter teardown (llama.cpp's finalizers fail during it)."""
    with _ENGINES_LOCK:
        for engine in _ENGINES.values():
            engine.llm.close()
        _ENGINES.clear()


def default_threads() -> int:
    """Threads for llama.cpp: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def get_engine(
    path: str,
    n_ctx: int = 4096,
    n_threads: int | None = None,
    prefix_cache_mb: int = 0,
    queue_per_session: int = 1,
) -> LlamaEngine:
    """The process-wide engine for ``path`` (loaded on first use). ``prefix_cache_mb`` bounds
    the saved session prefixes (0: off) and ``queue_per_session`` the turns one session may
    have waiting; the first caller's values hold for the process."""
    key = (path, n_ctx)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is not None:
            return engine
        try:
            from llama_cpp import Llama
        except ImportError as exc:  # pragma: no cover - installation problem
            raise ModelUnavailableError(
                "llama-cpp-python is not installed", hint="run `make install`"
            ) from exc
        threads = n_threads or default_threads()
        started = time.perf_counter()
        try:
            llm = Llama(
                model_path=path,
                n_ctx=n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                n_batch=512,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelUnavailableError(
                f"llama.cpp could not load {path}: {exc}",
                hint="check the file is a valid GGUF model, or run `coachbot doctor`",
            ) from exc
        if prefix_cache_mb > 0:
            llm.set_cache(make_prefix_cache(prefix_cache_mb))
        engine = LlamaEngine(
            llm=llm,
            path=path,
            load_seconds=time.perf_counter() - started,
            queue=ModelQueue(per_owner_limit=queue_per_session),
        )
        _ENGINES[key] = engine
        return engine


def _role(message: BaseMessage) -> str:
    if isinstance(message, SystemMessage):
        return "system"
    if isinstance(message, HumanMessage):
        return "user"
    if isinstance(message, AIMessage):
        return "assistant"
    if isinstance(message, ChatMessage):
        return message.role
    raise ValueError(f"unsupported message type for the local model: {type(message).__name__}")


def to_llama_messages(messages: list[BaseMessage]) -> list[dict[str, str]]:
    """LangChain messages as llama.cpp chat messages."""
    return [{"role": _role(m), "content": str(m.content)} for m in messages]


class LocalChatModel(BaseChatModel):
    """Chat with a local GGUF model through llama.cpp, using the model's own chat template."""

    model_path: str
    n_ctx: int = 4096
    n_threads: int | None = None
    prefix_cache_mb: int = 0
    queue_per_session: int = 1
    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 40
    repeat_penalty: float = 1.12
    max_tokens: int = 256
    seed: int | None = None
    stop: list[str] | None = Field(default=None)

    _engine: LlamaEngine | None = PrivateAttr(default=None)

    @property
    def _llm_type(self) -> str:
        return "coachbot-llama-cpp"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_path": self.model_path,
            "n_ctx": self.n_ctx,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "repeat_penalty": self.repeat_penalty,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
        }

    @property
    def engine(self) -> LlamaEngine:
        if self._engine is None:
            self._engine = get_engine(
                self.model_path,
                self.n_ctx,
                self.n_threads,
                self.prefix_cache_mb,
                self.queue_per_session,
            )
        return self._engine

    def get_num_tokens(self, text: str) -> int:
        return self.engine.count_tokens(text)

    def _params(self, stop: list[str] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        params = {
            "temperature": kwargs.pop("temperature", self.temperature),
            "top_p": kwargs.pop("top_p", self.top_p),
            "top_k": kwargs.pop("top_k", self.top_k),
            "repeat_penalty": kwargs.pop("repeat_penalty", self.repeat_penalty),
            "max_tokens": kwargs.pop("max_tokens", self.max_tokens),
            "stop": (stop or []) + (self.stop or []) or None,
        }
        seed = kwargs.pop("seed", self.seed)
        if seed is not None:
            params["seed"] = seed
        grammar = kwargs.pop("grammar", None)  # GBNF text: only what it allows is sampled
        if grammar:
            from llama_cpp import LlamaGrammar

            params["grammar"] = LlamaGrammar.from_string(grammar, verbose=False)
        return params

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        engine = self.engine
        params = self._params(stop, kwargs)
        chat = to_llama_messages(messages)
        with engine.queue.hold():  # re-entrant: a turn that holds the model goes straight on
            yield from self._generate_chunks(engine, chat, params, run_manager)

    def _generate_chunks(
        self,
        engine: LlamaEngine,
        chat: list[dict[str, str]],
        params: dict[str, Any],
        run_manager: CallbackManagerForLLMRun | None,
    ) -> Iterator[ChatGenerationChunk]:
        stream = engine.llm.create_chat_completion(messages=chat, stream=True, **params)
        finish_reason = None
        try:
            for event in stream:
                raise_if_cancelled()  # Stop or a disconnect: no more tokens
                choice = event["choices"][0]
                text = choice.get("delta", {}).get("content") or ""
                finish_reason = choice.get("finish_reason") or finish_reason
                if not text:
                    continue
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
                if run_manager:
                    run_manager.on_llm_new_token(text, chunk=chunk)
                yield chunk
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()  # llama.cpp stops generating now, not when this is collected
        yield ChatGenerationChunk(
            message=AIMessageChunk(content=""),
            generation_info={"finish_reason": finish_reason},
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        text_parts: list[str] = []
        info: dict[str, Any] = {}
        for chunk in self._stream(messages, stop=stop, run_manager=run_manager, **kwargs):
            text_parts.append(str(chunk.message.content))
            if chunk.generation_info:
                info.update(chunk.generation_info)
        message = AIMessage(content="".join(text_parts))
        return ChatResult(generations=[ChatGeneration(message=message, generation_info=info)])
