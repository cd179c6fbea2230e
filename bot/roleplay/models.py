"""The role-play's records: the customer's mood state, each turn, hints and the transcript."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, Field

from bot.roleplay.scenarios import Difficulty

# "ended": the trainee stopped before the customer accepted, left or the turn limit came.
Outcome = Literal["resolved", "customer_left", "turn_limit", "ended"]


class MoodState(BaseModel):
    """The customer's state after a turn."""

    anger: int = Field(ge=0, le=10)
    trust: int = Field(5, ge=0, le=10)
    heard: int = 0
    feels_heard: bool = False
    patience: int
    gripes_aired: int = 0
    hidden_revealed: bool = False
    offer_made: bool = False
    solution_asked: bool = False
    offered_terms: list[str] = Field(default_factory=list)  # fair-resolution terms offered so far
    facts_told: list[str] = Field(default_factory=list)  # facts the customer has answered
    turn: int = 0


def spoken_words(text: str) -> list[str]:
    """The words of a line, lower case, without punctuation (to compare what was said)."""
    return re.findall(r"[\w£$']+", text.lower())


class StateChange(BaseModel):
    """One change to the state and the behaviour (or rule) that caused it."""

    field: str
    delta: int | bool
    cause: str  # a behaviour id, or a rule name such as "no_progress"
    reason: str


class RejectedLine(BaseModel):
    """A model line that failed the customer line checks, and the check it failed."""

    line: str
    problem: str


class Turn(BaseModel):
    """One exchange: the trainee's line and the customer's reply."""

    index: int
    trainee: str
    customer: str
    beat: str
    detections: list[dict[str, Any]] = Field(default_factory=list)
    changes: list[StateChange] = Field(default_factory=list)
    state: MoodState
    off_script: bool = False
    attempts: int = 1
    fallback_used: bool = False
    rejected: list[RejectedLine] = Field(default_factory=list)  # failed model lines, and why
    draft: str = ""  # the trainer-written line the model was asked to reword (shown if it failed)

    @property
    def unadapted(self) -> bool:
        """The trainee saw a trainer-written line as written (the model's line failed, or it
        gave the line back unchanged)."""
        return self.fallback_used or (
            bool(self.draft) and spoken_words(self.customer) == spoken_words(self.draft)
        )

    model_error: str | None = None  # the model failed and a trainer-written line was used
    model_notice: str | None = None  # e.g. the embedded model answered for a failed API
    first_token_s: float | None = None
    seconds: float = 0.0


class Hint(BaseModel):
    turn: int
    text: str
    behaviour_id: str
    example: str
    source_origin: str
    source_quote: str


class Transcript(BaseModel):
    """A whole session: what a scorecard and the UI need."""

    scenario_id: str
    scenario_title: str
    scenario_version: str | None = None  # Scenario.version when played (None: saved before)
    customer_name: str
    difficulty: Difficulty
    seed: int
    opening_line: str
    start_state: MoodState
    turns: list[Turn] = Field(default_factory=list)
    hints: list[Hint] = Field(default_factory=list)
    outcome: Outcome | None = None
