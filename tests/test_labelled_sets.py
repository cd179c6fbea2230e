"""The independently written labelled sets: the test splits are frozen, every label is known."""

from __future__ import annotations

import hashlib

import pytest
import yaml

from bot.config import PROJECT_ROOT
from bot.guidance.catalogue import load_catalogue

DATA = PROJECT_ROOT / "evals" / "data"
FROZEN = {
    "guidance/test.yaml": "5143a322302423324cef6d6598633167f14349fdb5d347cd8a28702c8a933caf",
    "guidance/test-2.yaml": "7bc366a27636a2d9dd27c96b186512f21c191e574101f3862660deb3c0bdc457",
    "guidance/test-3.yaml": "304de8793fa2d285c723b9a0f801742acac4bcf08d11a19562c672c6f3fcce30",
    "coach/test.yaml": "0a57510d4c021d3e4f24837d091dee84c8b7c6b8a7d8f2c5204cd7b3d472506b",
    "coach/test-2.yaml": "7be4cef77ff2899113e3a1e30d19778eda118a60772f00ad7c648e7161112a20",
    "roleplay/test.yaml": "1cef5fda9376a33434cacabe90ed497ec38a85c31f020c685e7ab2cbda0bfae3",
    "customer_voice/test.yaml": "d821a2e2fd626a06f3d07e5558ae1288ef09c0d7cdf47c7d99b19567f2b1876e",
}


@pytest.mark.parametrize("name", sorted(FROZEN))
def test_frozen_test_split_is_unchanged(name: str) -> None:
    digest = hashlib.sha256((DATA / name).read_bytes()).hexdigest()
    assert digest == FROZEN[name], f"{name} is frozen: report label problems, don't edit it"


@pytest.mark.parametrize("split", ["train", "dev", "test", "test-2", "test-3"])
def test_guidance_labels_are_catalogue_behaviours(split: str) -> None:
    ids = set(load_catalogue(PROJECT_ROOT / "knowledge" / "guidance.yaml").ids)
    items = yaml.safe_load((DATA / "guidance" / f"{split}.yaml").read_text(encoding="utf-8"))
    unknown = {b for item in items for b in item["expect"]} - ids
    assert not unknown
    assert all(item["text"].strip() for item in items)


@pytest.mark.parametrize("split", ["train", "dev", "test", "test-2"])
def test_coach_answer_quotes_are_verbatim(split: str) -> None:
    articles = PROJECT_ROOT / "knowledge" / "articles"
    by_origin = {}
    for path in articles.glob("*.md"):
        text = path.read_text(encoding="utf-8")
        origin = next(
            line.split(":", 1)[1].strip().strip('"')
            for line in text.splitlines()
            if line.startswith("origin:")
        )
        by_origin[origin] = " ".join(text.split())
    items = yaml.safe_load((DATA / "coach" / f"{split}.yaml").read_text(encoding="utf-8"))
    for item in items:
        for quote in item.get("answer_quotes", []):
            assert " ".join(quote.split()) in by_origin[item["article"]], (item["id"], quote)


def test_splits_do_not_overlap() -> None:
    def keys(split: str) -> set[str]:
        items = yaml.safe_load((DATA / "guidance" / f"{split}.yaml").read_text(encoding="utf-8"))
        return {f"{i['text']}|{i.get('context', '')}" for i in items}

    train, dev, test, test2 = keys("train"), keys("dev"), keys("test"), keys("test-2")
    test3 = keys("test-3")
    assert not (train & test) and not (dev & test) and not (train & dev)
    assert not (test2 & (train | dev | test))
    assert not (test3 & (train | dev | test | test2))


@pytest.mark.parametrize("split", ["dev", "test"])
def test_roleplay_scripts_are_valid_and_name_known_scenarios(split: str) -> None:
    from bot.roleplay.acts import load_acts
    from bot.roleplay.labelled import load_scripts
    from bot.roleplay.scenarios import load_scenarios

    scripts = load_scripts(DATA / "roleplay" / f"{split}.yaml")
    scenarios, _ = load_scenarios(PROJECT_ROOT / "prompts" / "scenarios")
    acts = {*load_acts(PROJECT_ROOT / "knowledge" / "trainee_acts.yaml").acts, "statement",
            "factual_question", "validation"}  # fmt: skip
    assert {s.scenario for s in scripts} == set(scenarios)
    kinds = {(c, k) for c in scenarios for k in ("good", "mixed", "bad")}
    assert {(s.scenario, s.kind) for s in scripts} == kinds
    unknown = {a for s in scripts for line in s.lines for a in [line.act, *line.acts]} - acts
    assert not unknown, unknown


def test_customer_voice_splits_load_and_do_not_overlap() -> None:
    from bot.roleplay.voice import load_voice_lines

    splits = {
        s: load_voice_lines(DATA / "customer_voice" / f"{s}.yaml") for s in ("train", "dev", "test")
    }
    texts = {s: {line.text.lower() for line in lines} for s, lines in splits.items()}
    assert not (texts["train"] & texts["test"]) and not (texts["dev"] & texts["test"])
    assert not (texts["train"] & texts["dev"])
    for lines in splits.values():
        assert {line.label for line in lines} == {"customer", "agent"}
