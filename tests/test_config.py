"""Provider selection across environment permutations."""

from __future__ import annotations

import pytest

from bot.config import Settings

CASES = [
    # env, expected llm, expected embeddings
    ({}, "local", "local"),
    ({"OPENAI_API_KEY": "sk-test"}, "openai", "openai"),
    ({"OPENAI_BASE_URL": "http://127.0.0.1:8080/v1"}, "openai", "local"),
    (
        {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": "http://127.0.0.1:8080/v1"},
        "openai",
        "local",
    ),
    ({"OPENAI_API_KEY": "sk-test", "COACHBOT_LLM": "local"}, "local", "openai"),
    ({"COACHBOT_LLM": "openai"}, "openai", "local"),
    ({"OPENAI_API_KEY": "sk-test", "COACHBOT_EMBEDDINGS": "local"}, "openai", "local"),
    ({"COACHBOT_EMBEDDINGS": "openai"}, "local", "openai"),
    # `chainlit run` with CI set puts a placeholder key in the environment: not a key.
    ({"OPENAI_API_KEY": "sk-FAKE-OPENAI-API-KEY"}, "local", "local"),
    ({"OPENAI_API_KEY": "  "}, "local", "local"),
]


@pytest.mark.parametrize(("env", "llm", "embeddings"), CASES)
def test_provider_selection(monkeypatch, env, llm, embeddings):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)
    assert settings.llm_provider == llm
    assert settings.embeddings_provider == embeddings


def test_env_file_is_read(tmp_path, monkeypatch):
    env_file = tmp_path / ".env"
    env_file.write_text("COACHBOT_LLM=openai\nOPENAI_MODEL=my-model\nCHROMA_HOST=chroma.local\n")
    settings = Settings(_env_file=env_file)
    assert settings.llm_provider == "openai"
    assert settings.openai_model == "my-model"
    assert settings.chroma_host == "chroma.local"


def test_invalid_provider_is_rejected(monkeypatch):
    monkeypatch.setenv("COACHBOT_LLM", "gemini")
    with pytest.raises(ValueError, match="COACHBOT_LLM"):
        Settings(_env_file=None)


def test_chroma_path_defaults_into_data_dir(tmp_path):
    settings = Settings(_env_file=None, data_dir=tmp_path)
    assert settings.chroma_dir == tmp_path / "chroma"
    custom = Settings(_env_file=None, data_dir=tmp_path, chroma_path=tmp_path / "elsewhere")
    assert custom.chroma_dir == tmp_path / "elsewhere"


def test_api_key_is_secret(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret")
    settings = Settings(_env_file=None)
    assert "sk-very-secret" not in repr(settings)
