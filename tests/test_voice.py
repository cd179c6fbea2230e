"""The customer-voice check: a customer's own feelings are the customer's, an agent's words are
not (labelled lines in evals/data/customer_voice, written from the articles alone)."""

from __future__ import annotations

import pytest

from bot.config import PROJECT_ROOT
from bot.errors import DataValidationError
from bot.roleplay.lines import customer_line_checker
from bot.roleplay.voice import load_voice_lines, voice_report
from bot.service import Services
from tests.conftest import PROMPTS, make_settings

VOICE = PROJECT_ROOT / "evals" / "data" / "customer_voice"


@pytest.fixture(scope="module")
def checker(tmp_path_factory, engine):
    services = Services(make_settings(tmp_path_factory.mktemp("voice")), guidance=engine)
    return customer_line_checker("Margaret", engine, PROMPTS, voice=services.voice_check)


@pytest.mark.parametrize(
    "line",
    [
        "I'm disappointed my music box isn't working, and I can't understand why they left it.",
        "I'm so upset. I've waited in all week and nobody has even rung me.",
        "I don't want another replacement, I want my money back.",
    ],
)
def test_a_customer_talking_about_their_own_feelings_is_in_the_customer_voice(checker, line):
    """Each was rejected as "speaks like an agent" before (the trainees' line classifier read a
    customer's feelings as validation), costing retries and ending in a trainer line."""
    assert checker.voice_problem(line) is None


@pytest.mark.parametrize(
    "line",
    [
        "I understand how frustrating this must be for you. Let me see what I can do.",
        "What I can do for you today is send a replacement and refund the delivery.",
        "Here is a response the customer might give:",
    ],
)
def test_an_agent_or_assistant_line_is_not_the_customer_voice(checker, line):
    assert checker.voice_problem(line) is not None


def test_the_voice_check_holds_on_the_dev_split(checker):
    """The bars chosen on dev (docs/ROLEPLAY.md): a regression guard, not a claim."""
    report = voice_report(load_voice_lines(VOICE / "dev.yaml"), checker.voice_problem)
    assert report.agent_recall >= 0.65, report.summary()
    assert report.customer_false_rejection <= 0.12, report.summary()


def test_a_malformed_voice_file_names_the_field(tmp_path):
    bad = tmp_path / "voice.yaml"
    bad.write_text('- text: "Hello"\n  label: "manager"\n')
    with pytest.raises(DataValidationError, match=r"voice.yaml.*\[0\]\.label"):
        load_voice_lines(bad)
