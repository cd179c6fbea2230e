"""Chat model factory: OpenAI / OpenAI-compatible, or the embedded llama.cpp model."""

from __future__ import annotations

from typing import TYPE_CHECKING

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage

from bot.config import Settings
from bot.llm.local_chat import LocalChatModel
from bot.llm.local_model import locate_model
from bot.safety import redact

if TYPE_CHECKING:
    from bot.llm.api import ApiChatModel

NOTICE_KEY = "coachbot_notice"  # response_metadata key of a notice for the user about a reply


def describe_llm(settings: Settings) -> str:
    """A one-line description of the configured chat model, for banners and reports (URL
    credentials and keys masked)."""
    if settings.llm_provider == "openai":
        where = settings.openai_base_url or "OpenAI"
        fallback = ", embedded model as fallback" if settings.fallback == "local" else ""
        return redact(f"{settings.openai_model} via {where}{fallback}", [_key(settings)])
    return f"{settings.local_model} (embedded, llama.cpp)"


def _key(settings: Settings) -> str | None:
    return settings.openai_api_key.get_secret_value() if settings.openai_api_key else None


def model_notice(message: BaseMessage) -> str | None:
    """The notice a chat model attached to a reply (or its first chunk), e.g. that the
    embedded model answered because the API failed."""
    notice = message.response_metadata.get(NOTICE_KEY)
    return str(notice) if notice else None


def _params(settings: Settings, overrides: dict[str, object]) -> dict[str, object]:
    params: dict[str, object] = {
        "temperature": settings.temperature,
        "max_tokens": settings.max_tokens,
        "seed": settings.seed,
    }
    params.update(overrides)
    return params


def make_api_model(settings: Settings, **overrides: object) -> ApiChatModel:
    """The OpenAI / compatible model alone (no fallback): its errors name cause and fix."""
    from bot.llm.api import ApiChatModel

    api_key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    return ApiChatModel(
        model=settings.openai_model,
        api_key=api_key or "not-needed",  # compatible servers often need no key
        base_url=settings.openai_base_url,
        timeout=settings.openai_timeout_s,
        max_retries=settings.openai_max_retries,  # openai's backoff: 429, 5xx, timeouts
        streaming=True,
        **_params(settings, overrides),
    )


def make_local_model(settings: Settings, **overrides: object) -> LocalChatModel:
    """The embedded llama.cpp model (the file is located and verified now, loaded on use)."""
    path = locate_model(settings.local_model, settings.model_cache_dir)
    return LocalChatModel(
        model_path=str(path),
        n_ctx=settings.local_context,
        n_threads=settings.local_threads,
        prefix_cache_mb=settings.prefix_cache_mb,
        queue_per_session=settings.queue_per_session,
        repeat_penalty=settings.repeat_penalty,
        **_params(settings, overrides),
    )


def make_chat_model(settings: Settings, **overrides: object) -> BaseChatModel:
    """The chat model the settings select. ``overrides`` adjust sampling (e.g. temperature).

    With the API and ``COACHBOT_FALLBACK=local``, the embedded model answers the calls the API
    fails (after its retries), with a notice (:func:`model_notice`).
    """
    if settings.llm_provider != "openai":
        return make_local_model(settings, **overrides)
    api = make_api_model(settings, **overrides)
    if settings.fallback != "local":
        return api
    from bot.llm.api import FallbackChatModel

    return FallbackChatModel(
        primary=api, make_fallback=lambda: make_local_model(settings, **overrides)
    )
