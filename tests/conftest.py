"""Shared fixtures. Unit tests use fakes; tests marked `integration` use the real models."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from bot.config import PROJECT_ROOT, Settings

SEEDS_DIR = PROJECT_ROOT.parent / "shared" / "seeds"
ARTICLES_DIR = PROJECT_ROOT / "knowledge" / "articles"

# Keep tests independent of a developer's .env and OpenAI variables.
for _var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "COACHBOT_LLM", "COACHBOT_EMBEDDINGS"):
    os.environ.pop(_var, None)


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    """Settings isolated in ``tmp_path`` (no .env); the model cache stays shared."""
    values: dict[str, object] = {
        "data_dir": tmp_path / "data",
        "knowledge_dir": tmp_path / "knowledge",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture
def knowledge_copy(tmp_path: Path) -> Path:
    """A private copy of knowledge/articles under tmp_path/knowledge."""
    target = tmp_path / "knowledge" / "articles"
    shutil.copytree(ARTICLES_DIR, target)
    return target.parent


@pytest.fixture
def settings(tmp_path: Path, knowledge_copy: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture(scope="module")
def engine():
    """The guidance engine over the shipped catalogue (shared by a test module)."""
    from bot.guidance.engine import default_engine

    return default_engine(PROJECT_ROOT / "knowledge" / "guidance.yaml")


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    """A knowledge index of the shipped articles in a private data directory (read-only use)."""
    from bot.knowledge import KnowledgeIndex

    tmp = tmp_path_factory.mktemp("articles-index")
    shutil.copytree(ARTICLES_DIR, tmp / "knowledge" / "articles")
    built = KnowledgeIndex(make_settings(tmp))
    built.ingest()
    return built
