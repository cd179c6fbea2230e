"""The scenario builder: plain answers, one per step, become a validated scenario file (errors
name the step to answer again); in the app a trainer builds one, saves it, and tries it."""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import UTC, datetime
from typing import Any

import chainlit as cl
import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from bot.config import PROJECT_ROOT
from bot.errors import CoachbotError
from bot.roleplay.builder import STEP_BY_KEY, STEPS, build, read_answer, scenario_yaml, slug
from bot.roleplay.scenarios import load_scenario
from bot.web import app
from tests.conftest import make_settings
from tests.test_app import Browser, cl_session_value

ANSWERS = {
    "title": "Lost luggage on a honeymoon",
    "summary": "An airline lost a couple's suitcase on the first day of their honeymoon.",
    "customer_name": "Priya",
    "situation": "Priya, 31, flew to Lisbon for her honeymoon; the airline lost her case.",
    "way_of_speaking": "Fast, exasperated, lots of 'seriously?'",
    "wants": "Her case delivered to the hotel today and the cost of essentials covered.",
    "surface_complaints": "- My suitcase never arrived.\n- Nobody at the desk knew where it is.",
    "hidden_issue": "Her late mother's necklace, meant for the wedding photos, is in the case.",
    "reveal_line": "My mum's necklace is in that case. She died last year. It was for the photos.",
    "opening_line": "Seriously? Three days and you still can't tell me where my suitcase is?",
    "fair_resolution": "Trace the case, courier it to the hotel today, pay for essentials.",
    "offer_terms": "* the case delivered to the hotel today: deliver, courier, hotel, today\n"
                   "essentials covered: essentials, receipts, reimburse",
    "facts": "reference | reference, file, claim | It's LIS-88213.",
    "escalate": "Don't tell me to calm down, it's my honeymoon.",
    "soften": "Okay. Thank you for actually listening.",
    "gripe": "skip",
    "reveal": "skip",
    "say_wants": "Get my case to the hotel today.",
    "consider_offer": "{offer}, fine. And {missing}?",
    "accept": "Okay. Thank you, that's fair.",
    "reject_offer": "That's not good enough.",
    "leave": "Forget it. I'm done.",
}  # fmt: skip


def _answers() -> dict[str, Any]:
    return {key: read_answer(STEP_BY_KEY[key], text) for key, text in ANSWERS.items()}


def test_every_step_has_a_question_and_the_answers_make_a_valid_scenario(tmp_path):
    from bot.prompts import PromptLibrary

    prompts = PromptLibrary(PROJECT_ROOT / "prompts")
    assert all(prompts.message("scenario_builder.yaml", step.key) for step in STEPS)
    scenario, problems = build(_answers(), "lost-luggage-on-a-honeymoon")
    assert problems == {} and scenario is not None
    assert (
        scenario.fair_resolution.terms[0].required
        and not scenario.fair_resolution.terms[1].required
    )
    assert scenario.facts[0].answer == "It's LIS-88213." and scenario.fallback_lines.gripe == []
    assert scenario.surface_complaints == [
        "My suitcase never arrived.",
        "Nobody at the desk knew where it is.",
    ]
    path = tmp_path / "s.yaml"
    path.write_text(scenario_yaml(scenario), encoding="utf-8")
    assert load_scenario(path).version == scenario.version  # the file is the scenario


def test_problems_name_the_step_to_ask_again():
    answers = _answers() | {"leave": [], "customer_name": ""}
    scenario, problems = build(answers, "lost-luggage")
    assert scenario is None and {"leave", "customer_name"} <= set(problems)


@pytest.mark.parametrize(
    ("key", "text", "message"),
    [
        ("offer_terms", "a refund", "name: keyword, keyword"),
        ("facts", "reference: LIS-1", "about | keyword, keyword | their answer"),
        ("title", "   ", "empty"),
    ],
)
def test_unreadable_answers_get_a_hint(key, text, message):
    with pytest.raises(CoachbotError) as err:
        read_answer(STEP_BY_KEY[key], text)
    assert message in f"{err.value} {err.value.hint}"


def test_ids_come_from_the_title_and_never_clash():
    assert slug("Lost luggage!", set()) == "lost-luggage"
    assert slug("Lost luggage", {"lost-luggage", "lost-luggage-2"}) == "lost-luggage-3"


class Trainer(Browser):
    """A trainer's browser that answers the builder's questions in order."""

    def __init__(self, replies: list[str]) -> None:
        super().__init__(app.REVIEW, cl.User(identifier="tom", metadata={"role": "trainer"}))
        self.replies = list(replies)
        self.asked: list[str] = []

        async def emit_call(event: str, data: Any, timeout: Any = None) -> Any:
            self.asked.append(data["msg"]["output"])
            if not self.replies:
                return None  # the trainer walked away: the ask times out
            return {"id": str(uuid.uuid4()), "output": self.replies.pop(0), "name": "tom",
                    "type": "user_message", "createdAt": datetime.now(UTC).isoformat(),
                    "threadId": self.session.thread_id}  # fmt: skip

        self.session.emit_call = emit_call


@pytest.fixture
def svc(tmp_path, engine):
    from bot.service import Services
    from bot.store.sessions import SessionStore

    prompts = tmp_path / "prompts"
    shutil.copytree(PROJECT_ROOT / "prompts", prompts)
    services = Services(
        make_settings(tmp_path, prompts_dir=prompts),
        model=FakeListChatModel(responses=["ok"]),
        customer_model=FakeListChatModel(responses=["Seriously? Where is my case?"]),
        guidance=engine,
        store=SessionStore(f"sqlite:///{tmp_path / 'coachbot.db'}"),
    )
    app.use_services(services)
    yield services
    app.use_services(None)


def test_a_trainer_builds_saves_and_tries_a_scenario_in_the_app(svc):
    replies = [ANSWERS[step.key] for step in STEPS]
    replies[STEPS.index(STEP_BY_KEY["offer_terms"])] = "just a refund"  # unreadable, asked again
    replies.insert(STEPS.index(STEP_BY_KEY["offer_terms"]) + 1, ANSWERS["offer_terms"])
    trainer = Trainer(replies)
    trainer.run(app.on_chat_start)
    trainer.say("new scenario")
    assert len(trainer.asked) == len(STEPS) + 1 and "stop" in trainer.asked[0]
    assert any("cannot read the offer term" in t for t in trainer.texts())
    saved = trainer.texts()[-1]
    assert "Saved “Lost luggage on a honeymoon” as lost-luggage-on-a-honeymoon" in saved
    scenario = svc.scenarios["lost-luggage-on-a-honeymoon"]  # every later session sees it
    assert f"version {scenario.version}" in saved

    action = next(a for a in trainer.of("action") if a["name"] == "try_scenario")
    trainer.run(app.on_try_scenario, cl.Action(name="try_scenario", payload=action["payload"]))
    assert cl_session_value(trainer, "practice").scenario.id == scenario.id
    trainer.say("I'm so sorry, that sounds awful. What happened?")
    assert cl_session_value(trainer, "practice").simulator.transcript.turns  # a practice turn


def test_a_trainer_who_stops_saves_nothing(svc):
    trainer = Trainer([ANSWERS["title"], "stop"])
    trainer.run(app.on_chat_start)
    before = set(svc.scenarios)
    trainer.say("new scenario")
    assert "nothing was saved" in trainer.texts()[-1] and set(svc.scenarios) == before


def test_the_cli_builds_the_same_scenario_from_typed_answers(svc, monkeypatch):
    from typer.testing import CliRunner

    from bot.cli import common
    from bot.cli import main as cli

    monkeypatch.setattr(common, "services", lambda: svc)
    typed = []
    for step in STEPS:
        text = ANSWERS[step.key]
        typed.append(text if step.kind == "text" or text == "skip" else f"{text}\n")
    result = CliRunner().invoke(cli.app, ["build-scenario", "--json"], input="\n".join(typed))
    assert result.exit_code == 0, result.output
    made = json.loads(result.stdout)
    assert made["scenario"] == "lost-luggage-on-a-honeymoon"
    assert svc.scenarios[made["scenario"]].version == made["version"]
    again = CliRunner().invoke(cli.app, ["build-scenario", "--json"], input="Lost luggage\nstop\n")
    assert again.exit_code != 0 and "nothing was saved" in again.stdout
