"""One composition root: a prompts directory given in Settings takes effect everywhere."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from pydantic import Field

from bot.config import PROJECT_ROOT
from bot.service import CoachRun, PracticeRun, Services

from .conftest import make_settings

MARK = "ZEBRA-MARKER"


class Recorder(FakeListChatModel):
    """A fake chat model that keeps every prompt it is sent (streamed or not)."""

    sent: list[str] = Field(default_factory=list)

    def _stream(self, messages: Any, *args: Any, **kwargs: Any):  # type: ignore[override]
        self.sent.append("\n".join(str(m.content) for m in messages))
        yield from super()._stream(messages, *args, **kwargs)

    def _call(self, messages: Any, *args: Any, **kwargs: Any) -> str:  # type: ignore[override]
        self.sent.append("\n".join(str(m.content) for m in messages))
        return super()._call(messages, *args, **kwargs)


def marked_prompts(tmp_path: Path) -> Path:
    """A copy of the shipped prompts whose texts carry a marker."""
    target = tmp_path / "prompts"
    shutil.copytree(PROJECT_ROOT / "prompts", target)
    system = target / "customer_system.md"
    system.write_text(system.read_text() + f"\n{MARK} system.", encoding="utf-8")
    beats = target / "customer_beats.yaml"
    beats.write_text(
        beats.read_text().replace("complains about this:", f"complains ({MARK} beat) about this:"),
        encoding="utf-8",
    )
    coach = target / "coach_messages.yaml"
    coach.write_text(
        coach.read_text().replace("The guidance I have doesn't cover", f"{MARK} doesn't cover"),
        encoding="utf-8",
    )
    chat = target / "chat_system.md"
    chat.write_text(f"{MARK} chat.\n" + chat.read_text(), encoding="utf-8")
    return target


@pytest.fixture
def services(tmp_path: Path, knowledge_copy: Path, engine, index) -> tuple[Services, Recorder]:
    settings = make_settings(tmp_path, prompts_dir=marked_prompts(tmp_path))
    model = Recorder(responses=["You smashed my parcel and I want it replaced today, honestly."])
    return Services(settings, model=model, guidance=engine, index=index), model


def test_practice_uses_the_configured_prompts(services):
    svc, model = services
    run = PracticeRun(svc, "damaged-delivery", "medium", seed=1)
    run.respond("Hello, this is Sam.")
    assert f"{MARK} system." in model.sent[0] and f"{MARK} beat" in model.sent[0]


def test_coach_uses_the_configured_messages(services):
    svc, _ = services
    answer = CoachRun(svc).ask("Who won the football last night?")
    assert answer.out_of_scope and answer.answer.startswith(f"{MARK} doesn't cover")


def test_chat_uses_the_configured_system_prompt(services):
    svc, _ = services
    assert svc.chat_session().system_prompt.startswith(f"{MARK} chat.")


def test_cli_uses_the_configured_prompts(tmp_path, knowledge_copy, index, monkeypatch):
    import json

    from typer.testing import CliRunner

    from bot.cli import common
    from bot.cli import main as cli

    settings = make_settings(
        tmp_path, prompts_dir=marked_prompts(tmp_path), knowledge_dir=PROJECT_ROOT / "knowledge"
    )
    monkeypatch.setattr(common, "get_settings", lambda: settings)
    monkeypatch.setattr("bot.knowledge.KnowledgeIndex", lambda settings, **_: index)
    monkeypatch.setattr("bot.llm.make_chat_model", lambda settings, **kw: Recorder(responses=["x"]))
    asked = CliRunner().invoke(cli.app, ["ask", "Who won the football?", "--json", "--no-save"])
    assert asked.exit_code == 0, asked.output
    assert json.loads(asked.stdout)["answer"].startswith(f"{MARK} doesn't cover")
