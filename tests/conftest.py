"""Shared fixtures. Unit tests use fakes; tests marked `integration` use the real models."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from bot.config import PROJECT_ROOT, Settings
from bot.prompts import PromptLibrary

SEEDS_DIR = PROJECT_ROOT.parent / "shared" / "seeds"
ARTICLES_DIR = PROJECT_ROOT / "knowledge" / "articles"

PROMPTS = PromptLibrary(PROJECT_ROOT / "prompts")  # the shipped prompts

# Keep tests independent of a developer's .env and OpenAI variables.
for _var in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "COACHBOT_LLM", "COACHBOT_EMBEDDINGS"):
    os.environ.pop(_var, None)


def shown(markdown: str) -> str:
    """What a reader sees of Markdown escaped by ``bot.rendering``: no backslash escapes, no word
    joiners (for asserting on the words of a message)."""
    import re

    from bot.rendering import WORD_JOINER

    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", markdown).replace(WORD_JOINER, "")


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

    cache = Settings(_env_file=None).cache_dir
    return default_engine(PROJECT_ROOT / "knowledge" / "guidance.yaml", cache_dir=cache)


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    """A knowledge index of the shipped articles in a private data directory (read-only use)."""
    from bot.knowledge import KnowledgeIndex

    tmp = tmp_path_factory.mktemp("articles-index")
    shutil.copytree(ARTICLES_DIR, tmp / "knowledge" / "articles")
    built = KnowledgeIndex(make_settings(tmp))
    built.ingest()
    return built


def line_problem(text: str, beat: str, name: str, engine=None, topic: str = "") -> str | None:
    """Why a customer line is unusable, checked as the simulator checks it (shipped prompts;
    with ``engine``, also the catalogue's agent-only behaviours)."""
    from bot.roleplay.lines import CUSTOMER_PROMPTS, LineChecker
    from bot.safety import PromptEcho

    checker = LineChecker(
        name=name,
        engine=engine,
        echo=PromptEcho(PROMPTS.source(t) for t in CUSTOMER_PROMPTS),
        agent_only=frozenset(engine.catalogue.customer_rules.agent_only) if engine else frozenset(),
    )
    return checker.problem(text, beat, topic)


def saved_sessions(settings):
    from bot.store.sessions import SessionStore

    store = SessionStore.from_settings(settings)
    try:
        return store.list_sessions()
    finally:
        store.close()


@pytest.fixture
def make_services(tmp_path, engine):
    """``build(customer_model)``: Services on that customer model (a fake coach model, the
    shared guidance engine, a SQLite store in tmp_path), installed in the app."""
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    from bot.service import Services
    from bot.store.sessions import SessionStore
    from bot.web import app

    def build(customer_model):
        svc = Services(
            make_settings(tmp_path),
            model=FakeListChatModel(responses=['Say: "I hear you."\nWhy: it helps [1].']),
            customer_model=customer_model,
            guidance=engine,
            store=SessionStore(f"sqlite:///{tmp_path / 'coachbot.db'}"),
        )
        app.use_services(svc)
        return svc

    yield build
    app.use_services(None)
