"""The OpenAI / OpenAI-compatible chat model: retries, one-line errors, an optional fallback.

Retrying is the openai client's own (``max_retries``, ``OPENAI_MAX_RETRIES``): timeouts,
connection errors, 408, 409, 429 and 5xx are retried with exponential backoff and jitter
(0.5 s, 1 s, 2 s... at most 8 s, or the server's ``Retry-After``); other errors, such as a 401
for a wrong key, fail at once. Whatever still fails becomes a :class:`ModelUnavailableError`
that names the cause and the fix and never contains the key. With ``COACHBOT_FALLBACK=local``,
:class:`FallbackChatModel` lets the embedded model answer instead and says so.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, NoReturn

import openai
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.chat_models import generate_from_stream
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from pydantic import PrivateAttr, SecretStr

from bot.config import Settings
from bot.errors import ModelUnavailableError
from bot.llm import NOTICE_KEY
from bot.safety import redact

log = logging.getLogger(__name__)


def _redact(text: str, key: str | None) -> str:
    """``text`` without the key, anything that looks like one or URL credentials, on one short
    line (:func:`bot.safety.redact`)."""
    return " ".join(redact(text, [key]).split())[:160]


def _server_says(exc: openai.APIError) -> str:
    body = exc.body
    if isinstance(body, dict):
        body = body.get("message") or body.get("error") or body
    return str(body or exc.message)


def api_error(
    exc: openai.APIError, *, where: str, model: str, timeout: float | None, key: str | None
) -> ModelUnavailableError:
    """A one-line error for what openai raised after its retries: the cause and the fix (the
    key and the credentials of ``where`` masked)."""
    where = redact(where, [key])
    request = getattr(exc, "request", None)
    tries = str(request.headers.get("x-stainless-retry-count", "0")) if request else "0"
    retries = int(tries) if tries.isdigit() else 0
    after = f" after {retries} {'retry' if retries == 1 else 'retries'}" if retries else ""
    status = getattr(exc, "status_code", None)
    if isinstance(exc, openai.AuthenticationError):
        return ModelUnavailableError(
            f"the API rejected the key with HTTP {status}", hint="check OPENAI_API_KEY"
        )
    if isinstance(exc, openai.PermissionDeniedError):
        return ModelUnavailableError(
            f"the API refused access to {model} with HTTP {status}",
            hint="check that OPENAI_API_KEY may use OPENAI_MODEL",
        )
    if isinstance(exc, openai.NotFoundError):
        return ModelUnavailableError(
            f"the API at {where} has no model {model} (HTTP 404)",
            hint="check OPENAI_MODEL, and that OPENAI_BASE_URL ends in /v1",
        )
    if isinstance(exc, openai.RateLimitError):
        if exc.code == "insufficient_quota":
            return ModelUnavailableError(
                "the API account has no quota left (HTTP 429)",
                hint="check the plan and billing of OPENAI_API_KEY",
            )
        return ModelUnavailableError(
            f"the API kept refusing requests with HTTP 429 (rate limit){after}",
            hint="wait a minute and try again, or raise the account's rate limits",
        )
    if isinstance(exc, openai.InternalServerError):
        return ModelUnavailableError(
            f"the API server failed with HTTP {status}{after}",
            hint=f"try again later, or check the server at {where}",
        )
    if isinstance(exc, openai.APITimeoutError):
        return ModelUnavailableError(
            f"the API did not answer within {timeout or 600:g} s{after}",
            hint=f"raise OPENAI_TIMEOUT, or check the server at {where}",
        )
    if isinstance(exc, openai.APIConnectionError):
        return ModelUnavailableError(
            f"cannot reach the API at {where}{after}",
            hint="check OPENAI_BASE_URL and that the server is running",
        )
    detail = _redact(_server_says(exc), key)
    code = f" with HTTP {status}" if status else ""
    return ModelUnavailableError(
        f"the API refused the request{code}: {detail}",
        hint="check OPENAI_MODEL and the sampling settings",
    )


def settings_api_error(
    exc: openai.APIError, settings: Settings, model: str
) -> ModelUnavailableError:
    """:func:`api_error` for a call to the configured API (e.g. by OpenAI embeddings)."""
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    return api_error(
        exc,
        where=settings.openai_base_url or "api.openai.com",
        model=model,
        timeout=settings.openai_timeout_s,
        key=key,
    )


class ApiChatModel(ChatOpenAI):
    """``ChatOpenAI`` whose failures are :class:`ModelUnavailableError` (cause, fix, no key)."""

    def _fail(self, exc: openai.APIError) -> NoReturn:
        secret = self.openai_api_key
        key = secret.get_secret_value() if isinstance(secret, SecretStr) else None
        timeout = self.request_timeout if isinstance(self.request_timeout, int | float) else None
        raise api_error(
            exc,
            where=self.openai_api_base or "api.openai.com",
            model=self.model_name,
            timeout=timeout,
            key=key,
        ) from None  # the original may quote the key: it is not chained

    def _generate(self, *args: Any, **kwargs: Any) -> ChatResult:
        try:
            return super()._generate(*args, **kwargs)
        except openai.APIError as exc:
            self._fail(exc)

    def _stream(self, *args: Any, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        try:
            yield from super()._stream(*args, **kwargs)
        except openai.APIError as exc:
            self._fail(exc)

    async def _agenerate(self, *args: Any, **kwargs: Any) -> ChatResult:
        try:
            return await super()._agenerate(*args, **kwargs)
        except openai.APIError as exc:
            self._fail(exc)

    async def _astream(self, *args: Any, **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        try:
            async for chunk in super()._astream(*args, **kwargs):
                yield chunk
        except openai.APIError as exc:
            self._fail(exc)


class ApiEmbeddings(OpenAIEmbeddings):
    """``OpenAIEmbeddings`` whose failures are :class:`ModelUnavailableError` (cause, fix, no
    key), as for the chat model: the app, the CLI and the index all get the same one line."""

    def _fail(self, exc: openai.APIError) -> NoReturn:
        secret = self.openai_api_key
        key = secret.get_secret_value() if isinstance(secret, SecretStr) else None
        timeout = self.request_timeout if isinstance(self.request_timeout, int | float) else None
        raise api_error(
            exc,
            where=self.openai_api_base or "api.openai.com",
            model=self.model,
            timeout=timeout,
            key=key,
        ) from None  # the original may quote the key: it is not chained

    def embed_documents(
        self, texts: list[str], chunk_size: int | None = None, **kwargs: Any
    ) -> list[list[float]]:
        try:
            return super().embed_documents(texts, chunk_size, **kwargs)
        except openai.APIError as exc:
            self._fail(exc)

    def embed_query(self, text: str, **kwargs: Any) -> list[float]:
        try:
            return super().embed_query(text, **kwargs)
        except openai.APIError as exc:
            self._fail(exc)

    async def aembed_documents(
        self, texts: list[str], chunk_size: int | None = None, **kwargs: Any
    ) -> list[list[float]]:
        try:
            return await super().aembed_documents(texts, chunk_size, **kwargs)
        except openai.APIError as exc:
            self._fail(exc)

    async def aembed_query(self, text: str, **kwargs: Any) -> list[float]:
        try:
            return await super().aembed_query(text, **kwargs)
        except openai.APIError as exc:
            self._fail(exc)


class FallbackChatModel(BaseChatModel):
    """The API model, answered by the embedded model when the API fails after its retries.

    Not ``primary.with_fallbacks([...])``: that is a Runnable, not a chat model (the eval cache
    and the chat session take a ``BaseChatModel``), and it cannot say that the fallback
    answered. Here the first chunk of a fallback reply carries a notice in its
    ``response_metadata`` (read it with :func:`bot.llm.model_notice`). The fallback is built on
    first use. A reply the API breaks off mid-stream is not redone: its words were shown.
    """

    primary: BaseChatModel
    make_fallback: Callable[[], BaseChatModel]
    _fallback: BaseChatModel | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "coachbot-api-with-fallback"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        base_url = getattr(self.primary, "openai_api_base", None)
        return {**self.primary._identifying_params, "base_url": base_url, "fallback": "local"}

    def fallback(self) -> BaseChatModel:
        """The fallback model (built once)."""
        with self._lock:
            if self._fallback is None:
                self._fallback = self.make_fallback()
            return self._fallback

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        chunks = self.primary.stream(messages, stop=stop, **kwargs)
        try:
            first = next(chunks, None)
        except ModelUnavailableError as failure:
            yield from self._answer_instead(failure, messages, stop, **kwargs)
            return
        if first is not None:
            yield ChatGenerationChunk(message=first)
        for chunk in chunks:
            yield ChatGenerationChunk(message=chunk)

    def _answer_instead(
        self,
        failure: ModelUnavailableError,
        messages: list[BaseMessage],
        stop: list[str] | None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        notice = f"The API did not answer — {failure} — so the embedded model answered instead."
        try:
            model = self.fallback()
        except ModelUnavailableError as local:
            raise ModelUnavailableError(
                f"{failure.args[0]}, and the embedded fallback model is unavailable too: "
                f"{local.args[0]}",
                hint=failure.hint,
            ) from None
        log.warning("%s", notice)
        for i, chunk in enumerate(model.stream(messages, stop=stop, **kwargs)):
            if i == 0:
                chunk.response_metadata = {**chunk.response_metadata, NOTICE_KEY: notice}
            yield ChatGenerationChunk(message=chunk)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return generate_from_stream(self._stream(messages, stop, run_manager, **kwargs))
