"""Chat model factory: OpenAI / OpenAI-compatible, or the embedded llama.cpp model."""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel

from bot.config import Settings
from bot.llm.local_chat import LocalChatModel
from bot.llm.local_model import locate_model


def describe_llm(settings: Settings) -> str:
    """A one-line description of the configured chat model, for banners and reports."""
    if settings.llm_provider == "openai":
        where = settings.openai_base_url or "OpenAI"
        return f"{settings.openai_model} via {where}"
    return f"{settings.local_model} (embedded, llama.cpp)"


def make_chat_model(settings: Settings, **overrides: object) -> BaseChatModel:
    """The chat model the settings select. ``overrides`` adjust sampling (e.g. temperature)."""
    params: dict[str, object] = {
        "temperature": settings.temperature,
        "max_tokens": settings.max_tokens,
        "seed": settings.seed,
    }
    params.update(overrides)
    if settings.llm_provider == "openai":
        from langchain_openai import ChatOpenAI

        api_key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
        return ChatOpenAI(
            model=settings.openai_model,
            api_key=api_key or "not-needed",  # compatible servers often need no key
            base_url=settings.openai_base_url,
            timeout=settings.openai_timeout_s,
            max_retries=3,
            streaming=True,
            **params,
        )
    path = locate_model(settings.local_model, settings.model_cache_dir)
    return LocalChatModel(
        model_path=str(path),
        n_ctx=settings.local_context,
        n_threads=settings.local_threads,
        repeat_penalty=settings.repeat_penalty,
        **params,
    )
