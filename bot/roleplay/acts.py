"""What a trainee line does as a move: the act the customer answers (a factual question, an
invitation to say more, "what would be fair?", an offer and its terms...).

The acts come from ``knowledge/trainee_acts.yaml`` (patterns, and guidance behaviours that imply
an act) and from the scenario: a question that asks for one of its facts is a factual question;
an offer is read against the terms of its fair resolution (what was offered, what is missing).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot.datafiles import load_yaml_model
from bot.guidance.engine import Detection
from bot.roleplay.scenarios import Fact, OfferTerm, Scenario

Act = Literal[
    "factual_question", "open_question", "anything_else", "reflection", "apology", "offer",
    "fair_question", "wait_request", "closing",
]  # fmt: skip
_QUESTION = re.compile(r"\?|^\W*(what|when|which|where|who|how|can|could|is|are|do|did)\b", re.I)
_WORD = re.compile(r"[a-z0-9£$€]+(?:[.,]\d+)?", re.I)


class ActCues(BaseModel):
    model_config = ConfigDict(extra="forbid")

    patterns: list[str] = Field(default_factory=list)
    behaviours: list[str] = Field(default_factory=list)

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, value: list[str]) -> list[str]:
        for pattern in value:
            re.compile(pattern)
        return value


class ActCatalogue(BaseModel):
    """The act cues, validated on load (a bad pattern names its field)."""

    model_config = ConfigDict(extra="forbid")

    acts: dict[Act, ActCues]
    feelings_question: str
    hedged_offer: str = r"(?!)"  # never, unless the cues say what a hedge is

    @cached_property
    def compiled(self) -> dict[str, list[re.Pattern[str]]]:
        return {a: [re.compile(p, re.I) for p in c.patterns] for a, c in self.acts.items()}


def load_acts(path: Path) -> ActCatalogue:
    return load_yaml_model(path, ActCatalogue, "trainee act cues")


@dataclass(frozen=True)
class OfferReading:
    """An offer read against the scenario's fair resolution."""

    offered: tuple[OfferTerm, ...]  # terms this line offers
    missing: tuple[OfferTerm, ...]  # required terms not offered yet (this line or before)
    unjudged: bool = False  # the scenario lists no terms: any concrete offer counts as fair

    @property
    def fair(self) -> bool:
        return not self.missing and (bool(self.offered) or self.unjudged)

    @property
    def offer_text(self) -> str:
        return _joined([t.name for t in self.offered]) or "what you're offering"

    @property
    def missing_text(self) -> str:
        return _joined([t.name for t in self.missing]) or "the rest of it"

    @property
    def keywords(self) -> list[str]:
        """Words one of which a reply that weighs this offer must say."""
        return [k for t in self.offered for k in t.keywords]


def _joined(names: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


@dataclass
class TraineeMove:
    acts: set[str] = field(default_factory=set)
    fact: Fact | None = None  # the fact a factual question asks for
    offer: OfferReading | None = None


_POSSESSIVE = re.compile(r"(?<=\w)['’]s\b", re.I)


def _plain(text: str) -> str:
    """Lower case, possessives dropped: "cover the bank's charge" offers the "bank charge"."""
    return _POSSESSIVE.sub("", text.lower())


def _words(text: str) -> set[str]:
    """Lower-case words; an amount counts with and without its currency sign (£186, 186)."""
    words = {w.lower().strip(".,") for w in _WORD.findall(text)}
    return words | {w.lstrip("£$€") for w in words}


def _mentions(text: str, words: set[str], keyword: str) -> bool:
    """A keyword of one word matches a word of the line; a phrase matches as a substring."""
    key = _plain(keyword.strip())
    return key in _plain(text) if " " in key else key in words


def asked_fact(text: str, scenario: Scenario, cues: ActCatalogue) -> Fact | None:
    """The scenario fact a question asks for (most keywords matched), if the line asks one."""
    if not _QUESTION.search(text) or re.search(cues.feelings_question, text, re.I):
        return None
    words = _words(text)
    scored = [(sum(_mentions(text, words, k) for k in f.keywords), f) for f in scenario.facts]
    best = max(scored, key=lambda pair: pair[0], default=(0, None))
    return best[1] if best[0] else None


def offered_terms(text: str, scenario: Scenario) -> list[OfferTerm]:
    words = _words(text)
    terms = scenario.fair_resolution.terms
    return [t for t in terms if any(_mentions(text, words, k) for k in t.keywords)]


def read_move(
    text: str, detections: list[Detection], scenario: Scenario, cues: ActCatalogue,
    offered_before: list[str], is_offer: bool,
) -> TraineeMove:  # fmt: skip
    """The acts of a trainee line (``is_offer``: the mood rules see a concrete offer)."""
    found = {d.behaviour_id for d in detections}
    move = TraineeMove()
    for act, patterns in cues.compiled.items():
        if any(p.search(text) for p in patterns) or found & set(cues.acts[act].behaviours):
            move.acts.add(act)
    move.fact = asked_fact(text, scenario, cues)
    if move.fact is not None:
        move.acts.add("factual_question")
    if is_offer:
        move.acts.add("offer")
        hedged = re.search(cues.hedged_offer, text, re.I)
        offered = [] if hedged else offered_terms(text, scenario)
        known = {*offered_before, *(t.name for t in offered)}
        missing = [t for t in scenario.fair_resolution.terms if t.required and t.name not in known]
        unjudged = not scenario.fair_resolution.terms and not hedged
        move.offer = OfferReading(tuple(offered), tuple(missing), unjudged)
    return move
