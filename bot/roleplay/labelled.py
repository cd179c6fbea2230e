"""Labelled role-play scripts (``evals/data/roleplay/{dev,test}.yaml``) and what the customer
did with each labelled line: the mood checks a trainer relies on.

Each trainee line carries the act and the effect the articles predict (calms, neutral,
escalates); offer lines say whether the offer is concrete and fair. Playing a script through a
simulator checks: a calming line never raises anger, an escalating line never lowers it, a
concrete fair offer is weighed or accepted (never rejected) with its terms named, and a good
script ends resolved.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bot.datafiles import read_yaml, validate_model
from bot.roleplay.models import Turn
from bot.roleplay.simulator import CustomerSimulator

Effect = Literal["calms", "neutral", "escalates"]
_WEIGHING = {"accept", "consider_offer", "reveal"}


class LabelledOffer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    concrete: bool
    fair: bool
    terms: str = ""
    missing: str = ""


class LabelledLine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1)
    act: str
    acts: list[str] = Field(default_factory=list)
    effect: Effect
    offer: LabelledOffer | None = None
    why: str = ""


class LabelledScript(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    scenario: str
    kind: Literal["good", "mixed", "bad"]
    author: str = ""
    lines: list[LabelledLine] = Field(min_length=1)


class LabelledScripts(BaseModel):
    scripts: list[LabelledScript]


def load_scripts(path: Path) -> list[LabelledScript]:
    """A labelled split (a list of scripts); errors name the file and the field."""
    return validate_model(path, {"scripts": read_yaml(path)}, LabelledScripts).scripts


@dataclass
class LineResult:
    script: str
    text: str
    effect: str
    anger_delta: int
    beat: str
    customer: str
    problem: str = ""  # what went wrong, if anything
    turn: Turn | None = None  # the whole turn (attempts, rejected lines, timing)


@dataclass
class ScriptsReport:
    lines: list[LineResult] = field(default_factory=list)
    resolved: dict[str, bool] = field(default_factory=dict)  # good scripts
    outcomes: dict[str, str] = field(default_factory=dict)

    @property
    def problems(self) -> list[LineResult]:
        return [r for r in self.lines if r.problem]

    def count(self, problem: str) -> int:
        return sum(r.problem.startswith(problem) for r in self.lines)


def _problem(line: LabelledLine, delta: int, beat: str, names_offer: bool) -> str:
    if line.effect == "calms" and delta > 0:
        return "good line raised anger"
    if line.effect == "escalates" and delta < 0:
        return "bad line lowered anger"
    if line.offer and line.offer.concrete and line.offer.fair and line.effect != "escalates":
        if beat not in _WEIGHING:
            return f"fair offer not weighed ({beat})"
        if not names_offer:
            return "fair offer not named"
    return ""


def play_labelled(
    scripts: list[LabelledScript], simulator_for: Callable[[LabelledScript], CustomerSimulator]
) -> ScriptsReport:
    """Play every script; every labelled line is checked against what the customer did."""
    report = ScriptsReport()
    for script in scripts:
        sim = simulator_for(script)
        for line in script.lines:
            if sim.finished:
                break
            before = sim.state.anger
            turn = sim.respond(line.text)
            named = _names_offer(turn.customer, sim.state.offered_terms, sim)
            report.lines.append(LineResult(
                script.id, line.text, line.effect, turn.state.anger - before, turn.beat,
                turn.customer, _problem(line, turn.state.anger - before, turn.beat, named), turn,
            ))  # fmt: skip
        outcome = sim.end().outcome or "ended"
        report.outcomes[script.id] = outcome
        if script.kind == "good":
            report.resolved[script.id] = outcome == "resolved"
    return report


def _names_offer(reply: str, offered: list[str], sim: CustomerSimulator) -> bool:
    """The reply says one of the keywords of a term offered so far (or none are known)."""
    terms = [t for t in sim.scenario.fair_resolution.terms if t.name in offered]
    if not terms:
        return True
    low = reply.lower()
    return any(k.lower() in low for t in terms for k in t.keywords)
