"""The debrief scorecard: every point explained by a quote and the article passage behind it.

Deterministic: it reads the transcript's guidance detections (recomputed if missing), so the
same transcript always gets the same score. Lines addressed to the grader (or trying to steer
the model: see ``bot.safety.STEERING_PATTERNS``) earn nothing, though a trigger in them
counts. The checks and weights are the catalogue's ``scorecard`` (knowledge/guidance.yaml).
"""

from __future__ import annotations

import random
import re
from typing import Any

from pydantic import BaseModel, Field

from bot.guidance.catalogue import GuidanceCatalogue
from bot.guidance.engine import DetectionContext, GuidanceEngine
from bot.roleplay.models import Transcript
from bot.safety import OFF_SCRIPT


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
    # what the engine was not sure of: shown as "possible", never counted
    possible: list[Evidence] = Field(default_factory=list)
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


def _certain(detection: dict[str, Any]) -> bool:
    return bool(detection.get("certain", True))  # transcripts saved before this field: sure


def _seen_behaviours(
    transcript: Transcript,
    per_turn: list[list[dict[str, Any]]],
    ignored: list[int],
    certain: bool = True,
) -> dict[str, list[Evidence]]:
    """Each behaviour seen in the trainee's lines (those the engine is sure of, or with
    ``certain=False`` the possible ones), with the quotes that show it."""
    seen: dict[str, list[Evidence]] = {}
    for turn, detections in zip(transcript.turns, per_turn, strict=True):
        if turn.index in ignored:
            # A line to the grader (or the model) earns nothing, but a trigger in it still
            # counts: "grader:" in front of "calm down" must not save the trainee the points.
            detections = [
                d for d in detections if d["kind"] == "avoid" and d.get("method") == "pattern"
            ]
        for d in (d for d in detections if _certain(d) == certain):
            seen.setdefault(d["behaviour_id"], []).append(
                Evidence(turn=turn.index, quote=d["evidence"], line=turn.trainee)
            )
    return seen


def _do_items(
    catalogue: GuidanceCatalogue,
    seen: dict[str, list[Evidence]],
    possible: dict[str, list[Evidence]],
) -> list[CheckResult]:
    items = []
    for check in catalogue.scorecard.do_checks:
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
                possible=[] if evidence else _possible(check.behaviours, possible),
                source_origin=source.origin,
                source_quote=source.quote,
                note="" if evidence else "not seen in the conversation",
            )
        )
    return items


def _possible(ids: list[str], possible: dict[str, list[Evidence]]) -> list[Evidence]:
    return sorted((e for b in ids for e in possible.get(b, [])), key=lambda e: e.turn)[:2]


def _avoid_items(
    catalogue: GuidanceCatalogue,
    seen: dict[str, list[Evidence]],
    possible: dict[str, list[Evidence]],
) -> list[CheckResult]:
    each = catalogue.scorecard.avoid_points_each
    items = []
    for behaviour in catalogue.of_kind("avoid"):
        evidence = seen.get(behaviour.id, [])
        items.append(
            CheckResult(
                key=f"avoided_{behaviour.id}",
                label=avoid_label(behaviour.name),
                kind="avoid",
                passed=not evidence,
                points=0 if evidence else each,
                max_points=each,
                evidence=evidence[:3],
                possible=[] if evidence else _possible([behaviour.id], possible),
                source_origin=behaviour.source.origin,
                source_quote=behaviour.source.quote,
                note=f"used {len(evidence)} time(s)" if evidence else "",
            )
        )
    return items


def avoid_label(behaviour_name: str) -> str:
    """The scorecard's label for steering clear of a trigger."""
    return f"Avoided {behaviour_name}"


def check_labels(catalogue: GuidanceCatalogue) -> list[tuple[str, str]]:
    """Every scorecard check's (label, kind), in the scorecard's order."""
    do = [(check.label, "do") for check in catalogue.scorecard.do_checks]
    return do + [(avoid_label(b.name), "avoid") for b in catalogue.of_kind("avoid")]


def _outcome(transcript: Transcript, mood: list[int], points: dict[str, int]) -> tuple[int, str]:
    if transcript.outcome == "resolved":
        return points.get("resolved", 0), "resolved"
    if transcript.turns and mood[-1] < mood[0]:
        return points.get("calmer", 0), "calmer"
    return 0, "other"


def _weighting(catalogue: GuidanceCatalogue, items: list[CheckResult]) -> dict[str, int]:
    """Points per group of checks, in the catalogue's order, then triggers and outcome."""
    weighting: dict[str, int] = {}
    for check in catalogue.scorecard.do_checks:
        weighting[check.group] = weighting.get(check.group, 0) + check.points
    weighting["avoiding triggers"] = sum(i.max_points for i in items if i.kind == "avoid")
    weighting["outcome"] = max(catalogue.scorecard.outcome_points.values(), default=0)
    return weighting


class RubricCheck(BaseModel):
    """One check of the scorecard as the trainee sees it before a session: what, why, source."""

    label: str
    kind: str  # "do" | "avoid"
    group: str
    points: int
    why: str
    source_origin: str
    source_quote: str


class Rubric(BaseModel):
    """What the debrief will check, shown before a session starts (no hidden metrics)."""

    weighting: dict[str, int]
    checks: list[RubricCheck]
    outcome_points: dict[str, int]
    angrier_cap: int


def rubric(catalogue: GuidanceCatalogue) -> Rubric:
    """The scorecard's checks, points and reasons, straight from the catalogue's ``scorecard``."""
    card = catalogue.scorecard
    checks = [_rubric_do_check(catalogue, check) for check in card.do_checks]
    checks += [
        RubricCheck(
            label=f"Avoid {b.name[0].lower()}{b.name[1:]}",
            kind="avoid",
            group="avoiding triggers",
            points=card.avoid_points_each,
            why=b.why,
            source_origin=b.source.origin,
            source_quote=b.source.quote,
        )
        for b in catalogue.of_kind("avoid")
    ]
    weighting: dict[str, int] = {}
    for check in checks:
        weighting[check.group] = weighting.get(check.group, 0) + check.points
    weighting["outcome"] = max(card.outcome_points.values(), default=0)
    return Rubric(
        weighting=weighting,
        checks=checks,
        outcome_points=dict(card.outcome_points),
        angrier_cap=card.angrier_cap,
    )


def _rubric_do_check(catalogue: GuidanceCatalogue, check: Any) -> RubricCheck:
    first = catalogue.get(check.behaviours[0])
    return RubricCheck(
        label=check.label,
        kind="do",
        group=check.group,
        points=check.points,
        why=first.why,
        source_origin=first.source.origin,
        source_quote=first.source.quote,
    )


def format_rubric(card: Rubric) -> str:
    """A plain-text rubric (for the terminal)."""
    lines = [
        "What the debrief checks (100 points): "
        + ", ".join(f"{name} {points}" for name, points in card.weighting.items())
    ]
    for check in card.checks:
        lines.append(f"- {check.label} ({check.points}): {check.why}")
        quote = re.sub(r"\s+", " ", check.source_quote)
        lines.append(f"    source ({check.source_origin}): {quote}")
    resolved, calmer = card.outcome_points.get("resolved", 0), card.outcome_points.get("calmer", 0)
    lines.append(
        f"- Outcome: {resolved} if resolved together, else {calmer} if the customer ends calmer; "
        f"a session that ends angrier than it began scores at most {card.angrier_cap}."
    )
    return "\n".join(lines)


def score_transcript(
    transcript: Transcript, engine: GuidanceEngine, seed: int | None = None
) -> Scorecard:
    """The scorecard for a finished (or unfinished) role-play transcript."""
    catalogue = engine.catalogue
    per_turn = _detections(transcript, engine)
    ignored = [t.index for t in transcript.turns if t.off_script or OFF_SCRIPT.search(t.trainee)]
    seen = _seen_behaviours(transcript, per_turn, ignored)
    possible = _seen_behaviours(transcript, per_turn, ignored, certain=False)
    items = _do_items(catalogue, seen, possible) + _avoid_items(catalogue, seen, possible)
    mood = [transcript.start_state.anger] + [t.state.anger for t in transcript.turns]
    outcome_points, outcome_key = _outcome(transcript, mood, catalogue.scorecard.outcome_points)
    score = sum(i.points for i in items) + outcome_points
    if transcript.turns and mood[-1] > mood[0]:
        score = min(score, catalogue.scorecard.angrier_cap)
    rewrites = _rewrites(transcript, per_turn, ignored, engine, seed)
    passed = sum(1 for i in items if i.passed)
    summary = (
        f"{passed} of {len(items)} checks passed; anger {mood[0]} → {mood[-1]}; "
        f"outcome: {transcript.outcome or 'unfinished'} ({outcome_key}, +{outcome_points})."
    )
    if transcript.turns and mood[-1] > mood[0]:
        summary += f" Ended angrier than it began: at most {catalogue.scorecard.angrier_cap}."
    if transcript.hints:
        summary += f" {len(transcript.hints)} hint(s) used."
    return Scorecard(
        score=max(0, min(100, score)),
        weighting=_weighting(catalogue, items),
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
        avoid = [d for d in detections if d["kind"] == "avoid" and _certain(d)]
        do = [d for d in detections if d["kind"] == "do" and _certain(d)]
        scored.append((len(do) - 2 * len(avoid), turn, avoid))
    scored.sort(key=lambda item: (item[0], item[1].index))
    rewrites: list[Rewrite] = []
    used_examples: set[str] = set()
    for weight, turn, avoid in scored:
        if len(rewrites) >= 3 or weight > 0:
            break
        if avoid:
            target = engine.catalogue.customer_rules.instead[avoid[0]["behaviour_id"]]
            because = f"“{avoid[0]['evidence']}” is {avoid[0]['name'].lower()}"
        else:
            card = engine.catalogue.scorecard
            early = turn.index <= card.rewrite_early_turns
            target = card.rewrite_early if early else card.rewrite_late
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
        for e in item.possible:
            lines.append(f"    possibly, turn {e.turn}: “{e.quote}” (not counted: not sure)")
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
