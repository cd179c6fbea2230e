"""The customer's rules and the scorecard come from the catalogue: a behaviour added in YAML
works everywhere with no code change, and a catalogue that doesn't add up is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from bot.config import PROJECT_ROOT
from bot.errors import DataValidationError
from bot.guidance.catalogue import load_catalogue
from bot.guidance.engine import GuidanceEngine
from bot.roleplay.scenarios import load_scenarios
from bot.roleplay.scoring import score_transcript
from bot.roleplay.simulator import CustomerSimulator
from tests.conftest import PROMPTS

CATALOGUE = PROJECT_ROOT / "knowledge" / "guidance.yaml"
SHRUG = {
    "id": "shrug_off",
    "kind": "avoid",
    "name": "Shrugging it off",
    "description": "Telling the customer it is what it is.",
    "why": "It tells them nobody will try to help.",
    "examples": ["It is what it is.", "Meh, whatever happens happens.", "Not much to be done."],
    "patterns": ["\\bit is what it is\\b"],
    "source": {
        "origin": "000_de7749b5180952da.txt",
        "quote": "Employees should use positive phrases that affirm they are listening.",
    },
}


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "guidance.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _with_new_trigger(tmp_path: Path) -> Path:
    data = yaml.safe_load(CATALOGUE.read_text(encoding="utf-8"))
    data["behaviours"].append(SHRUG)
    data["customer_rules"]["instead"]["shrug_off"] = "validate_feelings"
    data["customer_rules"]["strong_triggers"].append("shrug_off")
    data["scorecard"]["do_checks"][3]["points"] -= 3  # 11 triggers x 3 points: keep 100
    return _write(tmp_path, data)


def test_a_trigger_added_in_yaml_angers_the_customer_and_costs_points(tmp_path):
    engine = GuidanceEngine(load_catalogue(_with_new_trigger(tmp_path)), embeddings=None)
    scenario = load_scenarios(PROJECT_ROOT / "prompts" / "scenarios")[0]["damaged-delivery"]
    model = FakeListChatModel(responses=["What do you mean it is what it is? My parcel is ruined!"])
    sim = CustomerSimulator(scenario, model, engine, "medium", 1, prompts=PROMPTS)
    start = sim.state.anger
    turn = sim.respond("Well, it is what it is.")
    assert turn.state.anger == start + 2  # a strong trigger, as the YAML says
    assert [c.cause for c in turn.changes][:1] == ["shrug_off"]
    hint = sim.hint()
    assert hint.behaviour_id == "validate_feelings"  # the YAML's `instead`
    card = score_transcript(sim.end(), engine)
    item = next(i for i in card.items if i.key == "avoided_shrug_off")
    assert not item.passed and item.max_points == 3
    assert sum(i.max_points for i in card.items) + card.weighting["outcome"] == 100
    assert card.weighting["avoiding triggers"] == 33


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["customer_rules"]["instead"].pop("flat_refusal"), "customer_rules.instead"),
        (lambda d: d["customer_rules"]["listening"].append("nope"), "customer_rules.listening"),
        (lambda d: d["customer_rules"]["listening"].append("flat_refusal"), "avoid-behaviour"),
        (lambda d: d["scorecard"].update(avoid_points_each=4), "add up to 110"),
        (lambda d: d["scorecard"]["do_checks"][0]["behaviours"].append("x"), "do_checks[0]"),
        (lambda d: d.pop("scorecard"), "scorecard"),
    ],
)
def test_rules_that_dont_fit_the_catalogue_are_refused(tmp_path, mutate, message):
    data = yaml.safe_load(CATALOGUE.read_text(encoding="utf-8"))
    mutate(data)
    with pytest.raises(DataValidationError) as caught:
        load_catalogue(_write(tmp_path, data))
    assert "guidance.yaml" in str(caught.value) and message in str(caught.value)


def test_an_added_trigger_without_weights_that_add_up_is_refused(tmp_path):
    data = yaml.safe_load(CATALOGUE.read_text(encoding="utf-8"))
    data["behaviours"].append(SHRUG)
    data["customer_rules"]["instead"]["shrug_off"] = "validate_feelings"
    with pytest.raises(DataValidationError, match="add up to 103"):
        load_catalogue(_write(tmp_path, data))
