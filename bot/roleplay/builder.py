"""The scenario builder: a trainer answers one question per step, in plain text, and gets a
validated scenario (errors name the step to answer again) written as a scenario YAML file.

The steps say which scenario field each answer fills and how it is read; the questions are
data (prompts/scenario_builder.yaml). Difficulty presets and the turn limit take the defaults
below; a trainer can change them in the file afterwards."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import yaml
from pydantic import ValidationError

from bot.errors import CoachbotError
from bot.roleplay.scenarios import Scenario

QUESTIONS_FILE = "scenario_builder.yaml"
SKIP = {"skip", "none", "-", "no"}
DEFAULT_DIFFICULTY = {
    "easy": {"start_anger": 6, "patience": 8, "heard_needed": 2},
    "medium": {"start_anger": 7, "patience": 6, "heard_needed": 3},
    "hard": {"start_anger": 9, "patience": 4, "heard_needed": 4},
}


@dataclass(frozen=True)
class BuilderStep:
    key: str  # the question's name in prompts/scenario_builder.yaml
    kind: Literal["text", "lines", "terms", "facts"]
    optional: bool = False


STEPS: tuple[BuilderStep, ...] = (
    BuilderStep("title", "text"),
    BuilderStep("summary", "text"),
    BuilderStep("customer_name", "text"),
    BuilderStep("situation", "text"),
    BuilderStep("way_of_speaking", "text"),
    BuilderStep("wants", "text"),
    BuilderStep("surface_complaints", "lines"),
    BuilderStep("hidden_issue", "text"),
    BuilderStep("reveal_line", "text"),
    BuilderStep("opening_line", "text"),
    BuilderStep("fair_resolution", "text"),
    BuilderStep("offer_terms", "terms"),
    BuilderStep("facts", "facts", optional=True),
    *(BuilderStep(beat, "lines") for beat in ("escalate", "soften")),
    *(BuilderStep(beat, "lines", optional=True) for beat in ("gripe", "reveal", "say_wants")),
    *(BuilderStep(beat, "lines") for beat in ("consider_offer", "accept", "reject_offer", "leave")),
)
STEP_BY_KEY = {step.key: step for step in STEPS}
# Where a scenario field's validation error sends the trainer back to.
_FIELD_STEP = {
    "customer.name": "customer_name", "customer.situation": "situation",
    "customer.way_of_speaking": "way_of_speaking", "hidden_issue.summary": "hidden_issue",
    "hidden_issue.reveal_line": "reveal_line", "fair_resolution.summary": "fair_resolution",
    "fair_resolution.terms": "offer_terms", "fair_resolution.offer_keywords": "offer_terms",
    "id": "title",
}  # fmt: skip


def _lines(text: str) -> list[str]:
    return [re.sub(r"^\s*(?:[-*•]|\d+[.)])\s+", "", line).strip() for line in text.splitlines()
            if line.strip()]  # fmt: skip


def _terms(text: str) -> list[dict[str, Any]]:
    terms = []
    for line in text.splitlines():
        if not line.strip():
            continue
        required = line.lstrip().startswith("*")
        name, sep, words = line.strip().lstrip("*").partition(":")
        keywords = [w.strip() for w in words.split(",") if w.strip()]
        if not sep or not name.strip() or not keywords:
            raise CoachbotError(f"cannot read the offer term {line.strip()!r}",
                                hint="write it as 'name: keyword, keyword'")  # fmt: skip
        terms.append({"name": name.strip(), "keywords": keywords, "required": required})
    return terms


def _facts(text: str) -> list[dict[str, Any]]:
    facts = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split("|")]
        if len(parts) != 3 or not all(parts):
            hint = "write it as 'about | keyword, keyword | their answer'"
            raise CoachbotError(f"cannot read the fact {line.strip()!r}", hint=hint)
        keywords = [w.strip() for w in parts[1].split(",") if w.strip()]
        facts.append({"about": parts[0], "keywords": keywords, "answer": parts[2]})
    return facts


def read_answer(step: BuilderStep, text: str) -> Any:
    """The value of one answer (CoachbotError with a hint if it cannot be read)."""
    text = text.strip()
    if step.optional and text.lower() in SKIP:
        return []
    if not text:
        raise CoachbotError("that answer is empty", hint="type an answer (or skip, if allowed)")
    if step.kind == "text":
        return " ".join(text.split())
    if step.kind == "lines":
        return _lines(text)
    return _terms(text) if step.kind == "terms" else _facts(text)


def slug(title: str, taken: set[str]) -> str:
    """A scenario id from its title, not one of ``taken``."""
    base = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:50] or "scenario"
    base = base if len(base) >= 3 else f"{base}-scenario"
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}-{n}", n + 1
    return candidate


def scenario_data(answers: dict[str, Any], scenario_id: str) -> dict[str, Any]:
    """The scenario file's content from the builder's answers."""
    terms = answers.get("offer_terms", [])
    banks = ("escalate", "soften", "gripe", "reveal", "say_wants", "consider_offer", "accept",
             "reject_offer", "leave")  # fmt: skip
    return {
        "id": scenario_id,
        "title": answers.get("title"),
        "summary": answers.get("summary"),
        "customer": {
            "name": answers.get("customer_name"),
            "situation": answers.get("situation"),
            "way_of_speaking": answers.get("way_of_speaking"),
        },
        "wants": answers.get("wants"),
        "surface_complaints": answers.get("surface_complaints", [])[:5],
        "hidden_issue": {
            "summary": answers.get("hidden_issue"),
            "reveal_line": answers.get("reveal_line"),
        },
        "facts": answers.get("facts", []),
        "fair_resolution": {
            "summary": answers.get("fair_resolution"),
            "offer_keywords": sorted({w for t in terms for w in t["keywords"]}),
            "terms": terms,
        },
        "opening_line": answers.get("opening_line"),
        "difficulty": DEFAULT_DIFFICULTY,
        "fallback_lines": {beat: answers.get(beat, []) for beat in banks},
    }


def build(answers: dict[str, Any], scenario_id: str) -> tuple[Scenario | None, dict[str, str]]:
    """The validated scenario, or None and the problems by step key (what to ask again)."""
    try:
        return Scenario.model_validate(scenario_data(answers, scenario_id)), {}
    except ValidationError as exc:
        problems: dict[str, str] = {}
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"] if not isinstance(part, int))
            key = _FIELD_STEP.get(field) or field.split(".")[-1]
            problems.setdefault(key if key in STEP_BY_KEY else "title", f"{field}: {error['msg']}")
        return None, problems


def scenario_yaml(scenario: Scenario) -> str:
    """The scenario as a file a trainer can read and edit (the version is derived, not kept)."""
    header = "# Written by the scenario builder. Edit freely: `coachbot scenarios` validates it.\n"
    body = scenario.model_dump(mode="json", exclude={"version"})
    return header + yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=100)
