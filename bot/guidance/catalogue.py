"""The guidance catalogue (`knowledge/guidance.yaml`): behaviours, the groups the customer's
rules and the scorecard use, and the score weights. Validated on load; errors name the file
and the field, so adding a behaviour or changing a weight needs no code change."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bot.datafiles import load_yaml_model

Kind = Literal["do", "avoid"]


class SourceRef(BaseModel):
    """The article passage a behaviour comes from."""

    model_config = ConfigDict(extra="forbid")

    origin: str = Field(min_length=1)
    quote: str = Field(min_length=10)


class Behaviour(BaseModel):
    """One behaviour of the catalogue."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    kind: Kind
    name: str = Field(min_length=1)
    description: str = Field(min_length=1)
    why: str = Field(min_length=1)
    examples: list[str] = Field(min_length=3)
    # Generic lines for any situation (do-behaviours): the coach starts from these.
    coach_lines: list[str] = Field(default_factory=list)
    patterns: list[str] = Field(default_factory=list)
    source: SourceRef

    @field_validator("patterns")
    @classmethod
    def _patterns_compile(cls, patterns: list[str]) -> list[str]:
        for index, pattern in enumerate(patterns):
            try:
                re.compile(pattern, re.IGNORECASE)
            except re.error as exc:
                raise ValueError(
                    f"pattern {index} {pattern!r} is not a valid regex: {exc}"
                ) from exc
        return patterns


class HintTargets(BaseModel):
    """What a hint suggests at each stage once the customer feels heard (do-behaviours)."""

    model_config = ConfigDict(extra="forbid")

    heard_default: str  # not heard yet and every hearing move already used
    bring_out_hidden: str  # heard, the real issue not out yet
    ask_solution: str  # real issue out, nobody has talked solutions
    propose: str  # asked what is fair, no offer yet
    close: str  # an offer is on the table


class CustomerRules(BaseModel):
    """How the simulated customer reacts to behaviours (see docs/ROLEPLAY.md)."""

    model_config = ConfigDict(extra="forbid")

    listening: list[str] = Field(min_length=1)  # +1 towards feeling heard; soothe
    solving: list[str] = Field(default_factory=list)  # help only once they feel heard
    strong_triggers: list[str] = Field(default_factory=list)  # +2 anger (other triggers +1)
    agent_only: list[str] = Field(default_factory=list)  # a customer's own line never shows
    hearing_order: list[str] = Field(min_length=1)  # hints while they don't feel heard
    offer: str  # the behaviour that makes a line an offer
    refusal: str  # a line showing this is never an offer
    asks_solution: str  # asking what would be fair
    instead: dict[str, str]  # each avoid-behaviour -> the do-behaviour that answers the moment
    hints: HintTargets


class CoachRules(BaseModel):
    """What the coach suggests when a question names no trigger and the classifier is unsure."""

    model_config = ConfigDict(extra="forbid")

    default_target: str


class DoCheck(BaseModel):
    """One do-check of the scorecard: passed when any of its behaviours is seen."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    label: str = Field(min_length=1)
    group: str = Field(min_length=1)  # the weighting line it counts towards
    behaviours: list[str] = Field(min_length=1)
    points: int = Field(ge=0)


class ScorecardWeights(BaseModel):
    """The scorecard's checks and weights; they must add up to 100."""

    model_config = ConfigDict(extra="forbid")

    do_checks: list[DoCheck] = Field(min_length=1)
    avoid_points_each: int = Field(ge=0)  # for each avoid-behaviour not used
    outcome_points: dict[Literal["resolved", "calmer"], int]
    # a session that ends angrier than it began scores at most this, whatever it ticked
    angrier_cap: int = Field(50, ge=0, le=100)
    rewrite_early: str  # a weak line with no trigger, in the first turns: try this
    rewrite_late: str  # ... later on: try this
    rewrite_early_turns: int = Field(2, ge=0)


class GuidanceCatalogue(BaseModel):
    """The whole catalogue file."""

    model_config = ConfigDict(extra="forbid")

    version: int = 1
    behaviours: list[Behaviour] = Field(min_length=1)
    neutral_examples: list[str] = Field(default_factory=list)
    customer_rules: CustomerRules
    coach: CoachRules
    scorecard: ScorecardWeights

    @model_validator(mode="after")
    def _consistent(self) -> GuidanceCatalogue:
        seen: set[str] = set()
        for behaviour in self.behaviours:
            if behaviour.id in seen:
                raise ValueError(f"duplicate behaviour id {behaviour.id!r}")
            seen.add(behaviour.id)
        for where, ids, kind in self._references():
            for behaviour_id in ids:
                self._check_reference(where, behaviour_id, kind)
        self._check_instead()
        self._check_total()
        return self

    def _references(self) -> list[tuple[str, list[str], Kind | None]]:
        rules, card = self.customer_rules, self.scorecard
        refs: list[tuple[str, list[str], Kind | None]] = [
            ("customer_rules.listening", rules.listening, "do"),
            ("customer_rules.solving", rules.solving, "do"),
            ("customer_rules.strong_triggers", rules.strong_triggers, "avoid"),
            ("customer_rules.agent_only", rules.agent_only, "do"),
            ("customer_rules.hearing_order", rules.hearing_order, "do"),
            ("customer_rules.offer", [rules.offer], "do"),
            ("customer_rules.refusal", [rules.refusal], "avoid"),
            ("customer_rules.asks_solution", [rules.asks_solution], "do"),
            ("customer_rules.instead", list(rules.instead.values()), "do"),
            ("customer_rules.hints", list(rules.hints.model_dump().values()), "do"),
            ("coach.default_target", [self.coach.default_target], "do"),
            ("scorecard.rewrite_early", [card.rewrite_early], "do"),
            ("scorecard.rewrite_late", [card.rewrite_late], "do"),
        ]
        refs += [
            (f"scorecard.do_checks[{i}].behaviours", check.behaviours, None)
            for i, check in enumerate(card.do_checks)
        ]
        return refs

    def _check_reference(self, where: str, behaviour_id: str, kind: Kind | None) -> None:
        known = {b.id: b.kind for b in self.behaviours}
        if behaviour_id not in known:
            raise ValueError(f"{where}: unknown behaviour {behaviour_id!r}")
        if kind and known[behaviour_id] != kind:
            raise ValueError(f"{where}: {behaviour_id!r} is a {known[behaviour_id]}-behaviour")

    def _check_instead(self) -> None:
        avoid = {b.id for b in self.behaviours if b.kind == "avoid"}
        missing = sorted(avoid - set(self.customer_rules.instead))
        if missing:
            raise ValueError(f"customer_rules.instead: no entry for {', '.join(missing)}")
        unknown = sorted(set(self.customer_rules.instead) - avoid)
        if unknown:
            raise ValueError(f"customer_rules.instead: not avoid-behaviours: {', '.join(unknown)}")

    def _check_total(self) -> None:
        card = self.scorecard
        do = sum(c.points for c in card.do_checks)
        n_avoid = sum(1 for b in self.behaviours if b.kind == "avoid")
        outcome = max(card.outcome_points.values(), default=0)
        total = do + card.avoid_points_each * n_avoid + outcome
        if total != 100:
            raise ValueError(
                f"scorecard: the weights add up to {total}, not 100 (do checks {do} + "
                f"avoid_points_each {card.avoid_points_each} x {n_avoid} avoid-behaviours + "
                f"outcome {outcome}): change scorecard.avoid_points_each or do_checks points"
            )

    def get(self, behaviour_id: str) -> Behaviour:
        for behaviour in self.behaviours:
            if behaviour.id == behaviour_id:
                return behaviour
        raise KeyError(behaviour_id)

    @property
    def ids(self) -> list[str]:
        return [b.id for b in self.behaviours]

    def of_kind(self, kind: Kind) -> list[Behaviour]:
        return [b for b in self.behaviours if b.kind == kind]


def load_catalogue(path: Path) -> GuidanceCatalogue:
    """Load and validate a catalogue; errors name the file and the field."""
    return load_yaml_model(path, GuidanceCatalogue, "catalogue fields with 'behaviours'")
