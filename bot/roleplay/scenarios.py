"""Role-play scenarios: data files in ``prompts/scenarios/*.yaml``, validated on load.

Trainers add a scenario by dropping a file there; a broken file is reported with its name and
the field at fault, and the other scenarios still load.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, field_validator

from bot.datafiles import load_yaml_model
from bot.errors import CoachbotError, DataValidationError

Difficulty = Literal["easy", "medium", "hard"]
DIFFICULTIES: tuple[Difficulty, ...] = ("easy", "medium", "hard")


def require_difficulty(value: str) -> Difficulty:
    """``value`` if it names a difficulty, else a CoachbotError that lists them."""
    if value not in DIFFICULTIES:
        raise CoachbotError(f"unknown difficulty {value!r}", hint="easy, medium or hard")
    return value  # type: ignore[return-value]


Beat = Literal[
    "gripe",
    "escalate",
    "soften",
    "reveal",
    "consider_offer",
    "accept",
    "reject_offer",
    "leave",
    "answer_fact",
    "say_wants",
]
BEATS: tuple[str, ...] = Beat.__args__  # type: ignore[attr-defined]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Persona(_Strict):
    name: str = Field(min_length=1, max_length=40)
    situation: str = Field(min_length=10)
    way_of_speaking: str = Field(min_length=5)
    may_swear: bool = Field(False, description="Whether the customer's lines may swear.")


class HiddenIssue(_Strict):
    summary: str = Field(min_length=10, description="The real bone of contention, said last.")
    reveal_line: str = Field(min_length=10, description="How the customer finally says it.")


def _as_words(value: object) -> object:
    """Keywords written as bare numbers in YAML (186, 25) are words too."""
    if isinstance(value, list):
        return [str(v) if isinstance(v, int | float) else v for v in value]
    return value


class OfferTerm(_Strict):
    """One concrete part of the fair resolution, as the customer would name it back."""

    name: str = Field(min_length=3, description="e.g. 'the duplicate £186 refunded today'")
    keywords: list[str] = Field(min_length=1, description="Words of an offer that mean this term.")
    required: bool = Field(True, description="A fair offer cannot lack it.")

    _words = field_validator("keywords", mode="before")(_as_words)


class FairResolution(_Strict):
    summary: str = Field(min_length=10)
    offer_keywords: list[str] = Field(
        min_length=1, description="Words that show the trainee offered something concrete."
    )
    terms: list[OfferTerm] = Field(default_factory=list)


class Fact(_Strict):
    """Something the customer can tell an agent who asks (a number, a date, what was tried)."""

    about: str = Field(min_length=2)
    keywords: list[str] = Field(min_length=1, description="Words of a question asking for it.")
    answer: str = Field(min_length=2, description="The customer's reply, in their voice.")

    _words = field_validator("keywords", mode="before")(_as_words)


class DifficultyPreset(_Strict):
    start_anger: int = Field(ge=0, le=10)
    patience: int = Field(ge=1, le=20, description="Turns without progress before they leave.")
    heard_needed: int = Field(
        ge=1, le=10, description="Good listening moves before they feel heard."
    )


class FallbackLines(_Strict):
    """Trainer-written lines per beat, used when the model's line fails validation."""

    gripe: list[str] = Field(default_factory=list)
    escalate: list[str] = Field(min_length=1)
    soften: list[str] = Field(min_length=1)
    reveal: list[str] = Field(default_factory=list)
    consider_offer: list[str] = Field(min_length=1)
    accept: list[str] = Field(min_length=1)
    reject_offer: list[str] = Field(min_length=1)
    leave: list[str] = Field(min_length=1)
    say_wants: list[str] = Field(default_factory=list)  # asked what would be fair
    carry_on: list[str] = Field(default_factory=list)  # said after answering a factual question


class Scenario(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{2,60}$")
    title: str = Field(min_length=3)
    summary: str = Field(min_length=10)
    customer: Persona
    wants: str = Field(min_length=5)
    surface_complaints: list[str] = Field(min_length=1, max_length=5)
    hidden_issue: HiddenIssue
    customer_partly_wrong: str | None = None
    fair_resolution: FairResolution
    opening_line: str = Field(min_length=5)
    difficulty: dict[Difficulty, DifficultyPreset]
    fallback_lines: FallbackLines
    facts: list[Fact] = Field(default_factory=list)
    max_turns: int = Field(12, ge=4, le=40)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def version(self) -> str:
        """A hash of the scenario's content (not its file's layout or comments): a session
        records it, so a score can be read against the scenario as it was played."""
        content = self.model_dump(mode="json", exclude={"version"})
        return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:12]

    @field_validator("difficulty")
    @classmethod
    def _all_difficulties(
        cls, value: dict[Difficulty, DifficultyPreset]
    ) -> dict[Difficulty, DifficultyPreset]:
        missing = [d for d in DIFFICULTIES if d not in value]
        if missing:
            raise ValueError(f"missing presets {missing}")
        return value


@dataclass(frozen=True)
class ScenarioProblem:
    path: str
    reason: str


def load_scenario(path: Path) -> Scenario:
    """Load one scenario file; errors name the file and the field."""
    return load_yaml_model(path, Scenario, "scenario fields")


def load_scenarios(directory: Path) -> tuple[dict[str, Scenario], list[ScenarioProblem]]:
    """All valid scenarios by id, and the files that could not be used."""
    scenarios: dict[str, Scenario] = {}
    problems: list[ScenarioProblem] = []
    for path in sorted(directory.glob("*.yaml")) + sorted(directory.glob("*.yml")):
        try:
            scenario = load_scenario(path)
        except DataValidationError as exc:
            problems.append(ScenarioProblem(path.name, str(exc)))
            continue
        if scenario.id in scenarios:
            problems.append(ScenarioProblem(path.name, f"duplicate scenario id {scenario.id!r}"))
            continue
        scenarios[scenario.id] = scenario
    return scenarios, problems
