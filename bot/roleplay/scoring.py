"""The debrief scorecard: every point explained by a quote and the article passage behind it.

Deterministic: it reads the transcript's guidance detections (recomputed if missing), so the
same transcript always gets the same score. Lines addressed to the grader (or trying to steer
the model: see ``bot.roleplay.simulator.STEERING_PATTERNS``) earn nothing, though a trigger in
them counts.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from bot.guidance.engine import DetectionContext, GuidanceEngine
from bot.roleplay.simulator import INSTEAD, OFF_SCRIPT, Transcript


@dataclass(frozen=True)
class DoCheck:
    key: str
    label: str
    behaviours: tuple[str, ...]
    points: int


# Weighting: listening 35, solving together 25, avoiding triggers 30, outcome 10.
DO_CHECKS: tuple[DoCheck, ...] = (
    DoCheck("listened", "Listened and reflected back", ("reflect_back", "listen_actively"), 10),
    DoCheck("validated", "Validated their feelings", ("validate_feelings",), 10),
    DoCheck("open_questions", "Asked open questions", ("open_question",), 10),
    DoCheck("apologised", "Apologised specifically", ("specific_apology",), 5),
    DoCheck("asked_fair", "Asked what a fair solution would be", ("ask_fair_solution",), 10),
    DoCheck("proposed", "Proposed a concrete, fair solution", ("propose_fair_solution",), 10),
    DoCheck(
        "together",
        "Worked together and followed up",
        ("collaborative_language", "follow_up", "invite_perspective"),
        5,
    ),
)
AVOID_POINTS = 3  # for each of the ten avoid-behaviours not used
OUTCOME_POINTS = {"resolved": 10, "calmer": 5, "other": 0}


class Evidence(BaseModel):
    turn: int
    quote: str  # the trainee's words that show (or break) the behaviour
    line: str


class CheckResult(BaseModel):
    key: str
    label: str
    kind: str  # "do" | "avoid"
    passed: bool
    points: int
    max_points: int
    evidence: list[Evidence] = Field(default_factory=list)
    source_origin: str
    source_quote: str
    note: str = ""


class Rewrite(BaseModel):
    turn: int
    instead_of: str
    try_saying: str
    because: str
    source_origin: str


class Scorecard(BaseModel):
    score: int
    weighting: dict[str, int]
    items: list[CheckResult]
    rewrites: list[Rewrite]
    mood: list[int]  # anger at the start and after each turn
    outcome: str | None
    hints_used: int
    ignored_lines: list[int] = Field(default_factory=list)  # turns addressed to the grader
    summary: str


def _detections(transcript: Transcript, engine: GuidanceEngine) -> list[list[dict[str, Any]]]:
    """Per turn detections; recomputed when a transcript was saved without them."""
    out = []
    previous = transcript.opening_line
    for turn in transcript.turns:
        if turn.detections:
            out.append(turn.detections)
        else:
            found = engine.detect(turn.trainee, DetectionContext(customer_last=previous))
            out.append([d.to_dict() for d in found])
        previous = turn.customer
    return out


def score_transcript(
    transcript: Transcript, engine: GuidanceEngine, seed: int | None = None
) -> Scorecard:
    """The scorecard for a finished (or unfinished) role-play transcript."""
    catalogue = engine.catalogue
    per_turn = _detections(transcript, engine)
    ignored = [t.index for t in transcript.turns if t.off_script or OFF_SCRIPT.search(t.trainee)]
    seen: dict[str, list[Evidence]] = {}
    for turn, detections in zip(transcript.turns, per_turn, strict=True):
        if turn.index in ignored:
            # A line to the grader (or the model) earns nothing, but a trigger in it still
            # counts: "grader:" in front of "calm down" must not save the trainee the points.
            detections = [
                d for d in detections if d["kind"] == "avoid" and d.get("method") == "pattern"
            ]
        for d in detections:
            seen.setdefault(d["behaviour_id"], []).append(
                Evidence(turn=turn.index, quote=d["evidence"], line=turn.trainee)
            )

    items: list[CheckResult] = []
    for check in DO_CHECKS:
        evidence = [e for b in check.behaviours for e in seen.get(b, [])]
        source = catalogue.get(check.behaviours[0]).source
        items.append(
            CheckResult(
                key=check.key,
                label=check.label,
                kind="do",
                passed=bool(evidence),
                points=check.points if evidence else 0,
                max_points=check.points,
                evidence=sorted(evidence, key=lambda e: e.turn)[:3],
                source_origin=source.origin,
                source_quote=source.quote,
                note="" if evidence else "not seen in the conversation",
            )
        )
    for behaviour in catalogue.behaviours:
        if behaviour.kind != "avoid":
            continue
        evidence = seen.get(behaviour.id, [])
        items.append(
            CheckResult(
                key=f"avoided_{behaviour.id}",
                label=f"Avoided {behaviour.name}",
                kind="avoid",
                passed=not evidence,
                points=0 if evidence else AVOID_POINTS,
                max_points=AVOID_POINTS,
                evidence=evidence[:3],
                source_origin=behaviour.source.origin,
                source_quote=behaviour.source.quote,
                note=f"used {len(evidence)} time(s)" if evidence else "",
            )
        )

    mood = [transcript.start_state.anger] + [t.state.anger for t in transcript.turns]
    if transcript.outcome == "resolved":
        outcome_points, outcome_key = OUTCOME_POINTS["resolved"], "resolved"
    elif transcript.turns and mood[-1] < mood[0]:
        outcome_points, outcome_key = OUTCOME_POINTS["calmer"], "calmer"
    else:
        outcome_points, outcome_key = 0, "other"
    weighting = {
        "listening": sum(c.points for c in DO_CHECKS[:4]),
        "solving together": sum(c.points for c in DO_CHECKS[4:]),
        "avoiding triggers": AVOID_POINTS * sum(1 for i in items if i.kind == "avoid"),
        "outcome": OUTCOME_POINTS["resolved"],
    }
    score = sum(i.points for i in items) + outcome_points
    rewrites = _rewrites(transcript, per_turn, ignored, engine, seed)
    passed = sum(1 for i in items if i.passed)
    summary = (
        f"{passed} of {len(items)} checks passed; anger {mood[0]} → {mood[-1]}; "
        f"outcome: {transcript.outcome or 'unfinished'} ({outcome_key}, +{outcome_points})."
    )
    if transcript.hints:
        summary += f" {len(transcript.hints)} hint(s) used."
    return Scorecard(
        score=max(0, min(100, score)),
        weighting=weighting,
        items=items,
        rewrites=rewrites,
        mood=mood,
        outcome=transcript.outcome,
        hints_used=len(transcript.hints),
        ignored_lines=ignored,
        summary=summary,
    )


def _rewrites(
    transcript: Transcript,
    per_turn: list[list[dict[str, Any]]],
    ignored: list[int],
    engine: GuidanceEngine,
    seed: int | None,
) -> list[Rewrite]:
    """Two or three "instead of X, try Y" for the weakest lines (most triggers first)."""
    rng = random.Random(transcript.seed if seed is None else seed)
    scored = []
    for turn, detections in zip(transcript.turns, per_turn, strict=True):
        if turn.index in ignored:
            continue
        avoid = [d for d in detections if d["kind"] == "avoid"]
        do = [d for d in detections if d["kind"] == "do"]
        scored.append((len(do) - 2 * len(avoid), turn, avoid))
    scored.sort(key=lambda item: (item[0], item[1].index))
    rewrites: list[Rewrite] = []
    used_examples: set[str] = set()
    for weight, turn, avoid in scored:
        if len(rewrites) >= 3 or weight > 0:
            break
        if avoid:
            target = INSTEAD[avoid[0]["behaviour_id"]]
            because = f"“{avoid[0]['evidence']}” is {avoid[0]['name'].lower()}"
        else:
            target = "reflect_back" if turn.index <= 2 else "ask_fair_solution"
            because = "this line did nothing to help them feel heard"
        behaviour = engine.catalogue.get(target)
        options = [e for e in behaviour.examples if e not in used_examples and len(e) < 120]
        example = rng.choice(options or behaviour.examples)
        used_examples.add(example)
        rewrites.append(
            Rewrite(
                turn=turn.index,
                instead_of=turn.trainee,
                try_saying=example,
                because=f"{because}; {behaviour.name.lower()} works better here: {behaviour.why}",
                source_origin=behaviour.source.origin,
            )
        )
    return rewrites


def format_scorecard(card: Scorecard) -> str:
    """A plain-text scorecard (for the terminal and logs)."""
    lines = [f"Score: {card.score}/100 — {card.summary}"]
    lines.append(
        "Weighting: " + ", ".join(f"{name} {points}" for name, points in card.weighting.items())
    )
    for item in card.items:
        mark = "✔" if item.passed else "✘"
        lines.append(f"{mark} {item.label} ({item.points}/{item.max_points})")
        for e in item.evidence[:2]:
            lines.append(f"    turn {e.turn}: “{e.quote}”")
        if not item.passed or item.kind == "do":
            quote = re.sub(r"\s+", " ", item.source_quote)
            lines.append(f"    source ({item.source_origin}): {quote}")
    if card.rewrites:
        lines.append("Try instead:")
        for r in card.rewrites:
            lines.append(f"  turn {r.turn}: instead of “{r.instead_of}”")
            lines.append(f"           try “{r.try_saying}”")
    lines.append("Anger by turn: " + " → ".join(str(a) for a in card.mood))
    return "\n".join(lines)
