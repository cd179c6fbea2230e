"""The coach's records: an answer with its citations, and the events a streaming UI shows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field


class Citation(BaseModel):
    number: int
    text: str
    score: float
    metadata: dict[str, Any]


class CoachAnswer(BaseModel):
    question: str
    retrieval_query: str
    answer: str
    say: str = ""
    why: str = ""
    avoid: str | None = None
    avoid_behaviour: str | None = None
    avoid_source: dict[str, Any] | None = None
    citations: list[Citation] = Field(default_factory=list)
    grounded: bool = False
    out_of_scope: bool = False
    flags: list[str] = Field(default_factory=list)
    notices: list[str] = Field(default_factory=list)
    model_error: str | None = None
    attempts: int = 0
    first_token_s: float | None = None
    seconds: float = 0.0


@dataclass
class CoachEvent:
    """What a streaming interface shows: citations first, then tokens, then the final answer."""

    type: Literal["citations", "token", "restart", "answer"]
    text: str = ""
    citations: list[Citation] | None = None
    answer: CoachAnswer | None = None
