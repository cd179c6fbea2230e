"""The eval cache: chat responses and embedding vectors in one SQLite file.

* :class:`CachingChatModel` wraps the real chat model. A request is keyed by the model's
  identity (its type and ``_identifying_params``: model file, sampling defaults), the exact
  messages, the stop words and the call's parameters (max_tokens, seed, temperature...). A hit
  replays the stored chunks as a stream, so the wrapped model is never touched (the embedded
  model's llama.cpp engine is loaded lazily and stays unloaded). A stream the caller stopped
  early (the coach drops a bad Say line mid-reply) is stored as partial; replaying it and asking
  for more generates the rest.
* :class:`CachedEmbeddings` does the same for sentence embeddings (keyed by embedding model and
  text): the coach and the guidance engine embed a few dozen sentences per case, which would
  otherwise be most of a cached re-run.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field

from bot.safety import redact

CACHE_VERSION = 1


def model_identity(model: BaseChatModel) -> str:
    """What makes a model's answers what they are: its type and identifying parameters."""
    try:
        params = dict(model._identifying_params)
        # OpenAI-style models keep sampling defaults and the server outside identifying params.
        params.update(getattr(model, "_default_params", None) or {})
    except Exception:  # pragma: no cover - a model without identifying params
        params = {}
    base_url = getattr(model, "openai_api_base", None)
    if base_url:
        params["base_url"] = base_url
    # the server's credentials are not part of what the model is (and the identity is stored)
    return redact(json.dumps({"type": model._llm_type, **params}, sort_keys=True, default=str))


def request_key(
    identity: str, messages: list[BaseMessage], stop: Any, params: dict[str, Any]
) -> str:
    payload = {
        "v": CACHE_VERSION,
        "model": identity,
        "messages": [[m.type, m.content] for m in messages],
        "stop": stop,
        "params": params,
    }
    blob = json.dumps(payload, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass
class CachedReply:
    chunks: list[str]
    complete: bool
    seconds: float


class ResponseCache:
    """A SQLite file of chat replies and embedding vectors (thread-safe)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, model TEXT NOT NULL,"
                " chunks TEXT NOT NULL, complete INTEGER NOT NULL, seconds REAL NOT NULL,"
                " created REAL NOT NULL)"
            )
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS vectors (model TEXT NOT NULL, key TEXT NOT NULL,"
                " vector BLOB NOT NULL, PRIMARY KEY (model, key))"
            )
            self._conn.commit()

    def get(self, key: str) -> CachedReply | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT chunks, complete, seconds FROM replies WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            return None
        return CachedReply(json.loads(row[0]), bool(row[1]), float(row[2]))

    def put(self, key: str, model: str, chunks: list[str], complete: bool, seconds: float) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?, ?, ?)",
                (key, model, json.dumps(chunks), int(complete), seconds, time.time()),
            )
            self._conn.commit()

    def load_vectors(self, model: str) -> dict[str, np.ndarray]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT key, vector FROM vectors WHERE model = ?", (model,)
            ).fetchall()
        return {key: np.frombuffer(blob, dtype=np.float32) for key, blob in rows}

    def put_vectors(self, model: str, items: list[tuple[str, np.ndarray]]) -> None:
        with self._lock:
            self._conn.executemany(
                "INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)",
                [(model, key, np.asarray(v, dtype=np.float32).tobytes()) for key, v in items],
            )
            self._conn.commit()

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM replies").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()


@dataclass
class CallCounter:
    """Cache hits and misses of one wrapper, and the model time they stand for."""

    hits: int = 0
    misses: int = 0
    replayed_seconds: float = 0.0  # original generation time of the replies served from cache
    live_seconds: float = 0.0
    keys: list[str] = field(default_factory=list)


class CachingChatModel(BaseChatModel):
    """A chat model that serves repeated requests from a :class:`ResponseCache`.

    ``seed_offset`` shifts the sampling seed of every call (``--repeat``: each repeat samples
    differently, and each is cached under its own key). ``store=None`` bypasses the cache.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    inner: BaseChatModel
    identity: str
    store: Any = None  # ResponseCache | None
    seed_offset: int = 0
    counter: CallCounter = Field(default_factory=CallCounter)

    @classmethod
    def wrap(
        cls, inner: BaseChatModel, store: ResponseCache | None, seed_offset: int = 0
    ) -> CachingChatModel:
        return cls(
            inner=inner, identity=model_identity(inner), store=store, seed_offset=seed_offset
        )

    @property
    def _llm_type(self) -> str:
        return "coachbot-eval-cache"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"inner": self.identity, "seed_offset": self.seed_offset}

    def _params(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        params = dict(kwargs)
        if self.seed_offset:
            params["seed"] = int(params.get("seed") or 0) + self.seed_offset
        return params

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        empty = True
        for chunk in self._replay_or_generate(messages, stop, run_manager, **kwargs):
            empty = False
            yield chunk
        if empty:
            # An empty reply (the model stopped at once) is still a reply: LangChain refuses a
            # stream without chunks, and the embedded model sends a final empty one too.
            yield self._chunk("", run_manager)

    def _replay_or_generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        params = self._params(kwargs)
        key = request_key(self.identity, messages, stop, params)
        self.counter.keys.append(key)
        cached = self.store.get(key) if self.store is not None else None
        replayed = ""
        if cached is not None:
            self.counter.hits += 1
            self.counter.replayed_seconds += cached.seconds
            for piece in cached.chunks:
                yield self._chunk(piece, run_manager)
            if cached.complete:
                return
            # Stored partial (the caller stopped early last time) and this caller wants more.
            replayed = "".join(cached.chunks)
        self.counter.misses += 1
        yield from self._live(messages, stop, run_manager, params, key, replayed)

    def _live(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        run_manager: CallbackManagerForLLMRun | None,
        params: dict[str, Any],
        key: str,
        replayed: str,
    ) -> Iterator[ChatGenerationChunk]:
        started = time.perf_counter()
        pieces: list[str] = []
        produced = ""
        iterator = self.inner.stream(messages, stop=stop, **params)
        try:
            for message in iterator:
                piece = str(message.content)
                if not piece:
                    continue
                pieces.append(piece)
                produced += piece
                if replayed:
                    # Skip what the cached prefix already gave (same seed, same text).
                    if len(produced) <= len(replayed):
                        continue
                    piece = produced[len(replayed) :]
                    replayed = ""
                yield self._chunk(piece, run_manager)
        except GeneratorExit:
            self._save(key, pieces, False, started)
            raise
        else:
            self._save(key, pieces, True, started)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()  # frees the llama.cpp engine for the next turn at once

    def _save(self, key: str, pieces: list[str], complete: bool, started: float) -> None:
        seconds = time.perf_counter() - started
        self.counter.live_seconds += seconds
        if self.store is not None and (pieces or complete):
            self.store.put(key, self.identity, pieces, complete, round(seconds, 4))

    @staticmethod
    def _chunk(piece: str, run_manager: CallbackManagerForLLMRun | None) -> ChatGenerationChunk:
        chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
        if run_manager:
            run_manager.on_llm_new_token(piece, chunk=chunk)
        return chunk

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        text = "".join(
            str(c.message.content) for c in self._stream(messages, stop, run_manager, **kwargs)
        )
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])


def _text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class CachedEmbeddings(Embeddings):
    """Embeddings served from the cache when seen before; the real model loads on a miss only.

    ``embed_array`` returns L2-normalised float32 vectors, as the guidance engine expects.
    ``model_name`` is the wrapped model's name (the guidance classifier's cache is keyed by it).
    """

    def __init__(
        self,
        factory: Callable[[], Embeddings],
        model_name: str,
        store: ResponseCache | None,
        normalised: bool = True,
    ) -> None:
        self.model_name = model_name
        self._factory = factory
        self._inner: Embeddings | None = None
        self._store = store
        self._normalised = normalised
        self._memory: dict[str, np.ndarray] = store.load_vectors(model_name) if store else {}
        self._lock = threading.Lock()
        self.misses = 0

    @property
    def inner(self) -> Embeddings:
        if self._inner is None:
            self._inner = self._factory()
        return self._inner

    def _compute(self, texts: list[str]) -> np.ndarray:
        inner = self.inner
        if hasattr(inner, "embed_array"):
            return np.asarray(inner.embed_array(texts), dtype=np.float32)
        return np.asarray(inner.embed_documents(texts), dtype=np.float32)

    def _vectors(self, texts: list[str]) -> np.ndarray:
        keys = [_text_key(t) for t in texts]
        with self._lock:
            missing = list(
                dict.fromkeys(t for t, k in zip(texts, keys, strict=True) if k not in self._memory)
            )
        if missing:
            vectors = self._compute(missing)
            items = [(_text_key(t), v) for t, v in zip(missing, vectors, strict=True)]
            with self._lock:
                self.misses += len(missing)
                self._memory.update(items)
            if self._store is not None:
                self._store.put_vectors(self.model_name, items)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._memory[k] for k in keys]).astype(np.float32, copy=False)

    def embed_array(self, texts: list[str]) -> np.ndarray:
        vectors = self._vectors(list(texts))
        if self._normalised or not len(vectors):
            return vectors
        return vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._vectors(list(texts)).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self._vectors([text])[0].tolist()
