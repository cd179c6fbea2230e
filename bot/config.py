"""Settings from the environment and `.env` (pydantic-settings).

Every setting is documented in `.env.example`. Provider selection rules:

* ``COACHBOT_LLM=auto`` (default): OpenAI (or an OpenAI-compatible server) when
  ``OPENAI_API_KEY`` or ``OPENAI_BASE_URL`` is set, otherwise the embedded model.
* ``COACHBOT_EMBEDDINGS=auto`` (default): OpenAI embeddings only when
  ``OPENAI_API_KEY`` is set and ``OPENAI_BASE_URL`` is not (most compatible servers do not
  serve embeddings), otherwise the embedded MiniLM model.
* ``COACHBOT_FALLBACK=local``: when the API still fails after ``OPENAI_MAX_RETRIES`` retries,
  the embedded model answers instead, with a notice (default ``none``: the error is shown).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# `chainlit run` in CI mode (the CI environment variable is set, as on most CI systems) puts
# this placeholder in OPENAI_API_KEY "to have OpenAI providers available". It is not a key:
# taking it for one would switch coachbot to an OpenAI it cannot reach.
CHAINLIT_CI_PLACEHOLDER_KEY = "sk-FAKE-OPENAI-API-KEY"


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "coachbot"


class Settings(BaseSettings):
    """All of coachbot's configuration."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    llm: Literal["auto", "openai", "local"] = Field(
        "auto", validation_alias=AliasChoices("COACHBOT_LLM")
    )
    embeddings: Literal["auto", "openai", "local"] = Field(
        "auto", validation_alias=AliasChoices("COACHBOT_EMBEDDINGS")
    )

    openai_api_key: SecretStr | None = Field(None, validation_alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(None, validation_alias="OPENAI_BASE_URL")
    openai_model: str = Field("gpt-4o-mini", validation_alias="OPENAI_MODEL")
    openai_embedding_model: str = Field(
        "text-embedding-3-small", validation_alias="OPENAI_EMBEDDING_MODEL"
    )
    openai_timeout_s: float = Field(60.0, validation_alias="OPENAI_TIMEOUT")
    openai_max_retries: int = Field(
        3,
        ge=0,
        validation_alias="OPENAI_MAX_RETRIES",
        description="retries of a timed-out, rate-limited (429) or failed (5xx) API call",
    )
    fallback: Literal["none", "local"] = Field(
        "none",
        validation_alias="COACHBOT_FALLBACK",
        description="local: the embedded model answers when the API fails after its retries",
    )

    local_model: str = Field(
        "qwen2.5-coder-1.5b",
        validation_alias="COACHBOT_LOCAL_MODEL",
        description="qwen2.5-coder-1.5b | qwen2.5-coder-0.5b | smollm2-135m | /path/to/model.gguf",
    )
    local_threads: int | None = Field(None, validation_alias="COACHBOT_THREADS")
    local_context: int = Field(4096, validation_alias="COACHBOT_CONTEXT")
    temperature: float = Field(0.7, validation_alias="COACHBOT_TEMPERATURE")
    max_tokens: int = Field(256, validation_alias="COACHBOT_MAX_TOKENS")
    repeat_penalty: float = Field(1.12, validation_alias="COACHBOT_REPEAT_PENALTY")
    seed: int | None = Field(None, validation_alias="COACHBOT_SEED")
    prefix_cache_mb: int = Field(
        1024,
        ge=0,
        validation_alias="COACHBOT_PREFIX_CACHE_MB",
        description="RAM for saved session prefixes of the embedded model (0: off)",
    )
    queue_per_session: int = Field(
        1,
        ge=1,
        validation_alias="COACHBOT_QUEUE_PER_SESSION",
        description="turns one chat may have waiting for the embedded model",
    )
    customer_retry_window_s: float | None = Field(
        5.0,
        gt=0,
        validation_alias="COACHBOT_CUSTOMER_RETRY_WINDOW_S",
        description="no model attempt at a customer line starts once the trainee has waited "
        "this long, in the queue included (the trainer-written line instead); unset: no limit",
    )
    customer_grammar: bool = Field(
        True,
        validation_alias="COACHBOT_CUSTOMER_GRAMMAR",
        description="the embedded model words customer lines under prompts/customer_line.gbnf "
        "(no quotes, labels or stage directions can be sampled)",
    )
    customer_reply: Literal["rewrite", "opener"] = Field(
        "opener",
        validation_alias="COACHBOT_CUSTOMER_REPLY",
        description="how the model words a customer line from the trainer line chosen for it: "
        "rewrite it whole, or write only an opening reaction before it",
    )
    max_trainees: int | None = Field(
        None,
        ge=1,
        validation_alias="COACHBOT_MAX_TRAINEES",
        description="practice sessions admitted at once on the embedded model "
        "(unset: what `coachbot capacity` measured, else no limit)",
    )

    data_dir: Path = Field(PROJECT_ROOT / "data", validation_alias="COACHBOT_DATA_DIR")
    cache_dir: Path = Field(
        default_factory=_default_cache_dir, validation_alias="COACHBOT_CACHE_DIR"
    )
    knowledge_dir: Path = Field(
        PROJECT_ROOT / "knowledge", validation_alias="COACHBOT_KNOWLEDGE_DIR"
    )
    prompts_dir: Path = Field(PROJECT_ROOT / "prompts", validation_alias="COACHBOT_PROMPTS_DIR")

    voice_training: Path | None = Field(
        PROJECT_ROOT / "evals" / "data" / "customer_voice" / "train.yaml",
        validation_alias="COACHBOT_VOICE_TRAINING",
        description="labelled customer and agent lines the customer-voice check is trained on, "
        "with the scenarios' own lines and the guidance training lines (none: off)",
    )
    guidance_training: Path | None = Field(
        PROJECT_ROOT / "evals" / "data" / "guidance" / "train.yaml",
        validation_alias="COACHBOT_GUIDANCE_TRAINING",
        description="labelled lines the guidance line classifier is trained on (none: off)",
    )

    chroma_path: Path | None = Field(None, validation_alias="CHROMA_PATH")
    chroma_host: str | None = Field(None, validation_alias="CHROMA_HOST")
    chroma_port: int = Field(8000, validation_alias="CHROMA_PORT")

    chunk_tokens: int = Field(160, validation_alias="COACHBOT_CHUNK_TOKENS")
    passage_questions: bool = Field(
        True,
        validation_alias="COACHBOT_PASSAGE_QUESTIONS",
        description="ask the chat model at ingest for the questions each new passage answers",
    )

    database_url: str | None = Field(
        None,
        validation_alias="DATABASE_URL",
        description="SQLAlchemy URL; default SQLite at data_dir/coachbot.db",
    )
    journal_flush_s: float = Field(
        15.0,
        validation_alias="COACHBOT_JOURNAL_FLUSH_S",
        description="seconds between retries of the writes the database refused (0: only at "
        "start, on the next save and at shutdown)",
    )
    users_file: Path | None = Field(None, validation_alias="COACHBOT_USERS_FILE")
    auth: Literal["auto", "on", "off"] = Field(
        "auto",
        validation_alias="COACHBOT_AUTH",
        description="auto: login is required once the users file has a user",
    )

    login_max_failures: int = Field(
        5,
        ge=1,
        validation_alias="COACHBOT_LOGIN_MAX_FAILURES",
        description="failed logins per user name, and per client address, within the window",
    )
    login_window_s: float = Field(
        300.0, gt=0, validation_alias="COACHBOT_LOGIN_WINDOW", description="seconds"
    )
    login_lockout_s: float = Field(
        900.0,
        gt=0,
        validation_alias="COACHBOT_LOGIN_LOCKOUT",
        description="seconds a user name or address is refused after too many failures",
    )

    @field_validator("openai_api_key", mode="before")
    @classmethod
    def _not_a_placeholder(cls, value: object) -> object:
        """Blank keys and Chainlit's CI-mode placeholder mean no key."""
        if isinstance(value, str) and value.strip() in {"", CHAINLIT_CI_PLACEHOLDER_KEY}:
            return None
        return value

    @property
    def api_key(self) -> str | None:
        """The OpenAI API key in clear (for the client and for redaction; never shown)."""
        return self.openai_api_key.get_secret_value() if self.openai_api_key else None

    @property
    def database(self) -> str:
        """The SQLAlchemy URL of the session store."""
        return self.database_url or f"sqlite:///{self.data_dir / 'coachbot.db'}"

    @property
    def users_path(self) -> Path:
        """The users file (hashed passwords and roles)."""
        return self.users_file or (self.data_dir / "users.yaml")

    @property
    def chroma_dir(self) -> Path:
        """Where the embedded Chroma store lives (unused with ``CHROMA_HOST``)."""
        return self.chroma_path or (self.data_dir / "chroma")

    @property
    def model_cache_dir(self) -> Path:
        """Where assembled model files are kept (shared across clones)."""
        return self.cache_dir / "models"

    @property
    def llm_provider(self) -> Literal["openai", "local"]:
        """The chat model provider this configuration resolves to."""
        if self.llm != "auto":
            return self.llm
        return "openai" if (self.openai_api_key or self.openai_base_url) else "local"

    @property
    def embeddings_provider(self) -> Literal["openai", "local"]:
        """The embedding provider this configuration resolves to."""
        if self.embeddings != "auto":
            return self.embeddings
        return "openai" if (self.openai_api_key and not self.openai_base_url) else "local"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once)."""
    return Settings()
