"""Trainees' progress over scored practice sessions: trends, first versus best, and a heatmap of
the checks each trainee most often misses, with the turns behind every cell.

Pure: it takes scored attempts (built from saved scorecards by the caller) and returns a report;
the store, the CLI and the app only fetch and show.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import datetime

from pydantic import BaseModel, Field

from bot.roleplay.scoring import Scorecard


class Missed(BaseModel):
    """A check an attempt lost: a trigger used (with its turns) or a good move never seen."""

    check: str  # the scorecard label, e.g. "Avoided Telling them to calm down"
    kind: str  # "do" | "avoid"
    turns: list[int] = Field(default_factory=list)  # turns of the trigger (empty for a do-check)


class Attempt(BaseModel):
    """One scored practice session, as the report needs it."""

    session_id: str
    user: str
    scenario_id: str
    scenario_title: str
    scenario_version: str | None = None  # the scenario's content hash when it was played
    difficulty: str
    at: datetime
    score: int
    outcome: str | None
    hints_used: int
    missed: list[Missed]


def attempt_from_scorecard(
    card: Scorecard,
    *,
    session_id: str,
    user: str,
    scenario_id: str,
    scenario_title: str,
    difficulty: str,
    at: datetime,
    scenario_version: str | None = None,
) -> Attempt:
    """The report's view of one saved scorecard (only sure detections cost a check)."""
    missed = [
        Missed(check=item.label, kind=item.kind, turns=sorted({e.turn for e in item.evidence}))
        for item in card.items
        if not item.passed
    ]
    return Attempt(
        session_id=session_id,
        user=user,
        scenario_id=scenario_id,
        scenario_title=scenario_title,
        scenario_version=scenario_version,
        difficulty=difficulty,
        at=at,
        score=card.score,
        outcome=card.outcome,
        hints_used=card.hints_used,
        missed=missed,
    )


class TraineeProgress(BaseModel):
    """One trainee's attempts, oldest first, and what they add up to."""

    user: str
    attempts: int
    first_score: int
    best_score: int
    last_score: int
    improvement: int  # best minus first
    recent_score: float  # weighted to recent sessions (each older one counts half as much)
    hints_used: int
    trend: list[tuple[datetime, int]]  # (when, score), oldest first


class HeatCell(BaseModel):
    """How often one trainee missed one check, and where."""

    user: str
    check: str
    kind: str  # "do" (a good move not seen) | "avoid" (a trigger used)
    missed: int
    attempts: int
    rate: float
    # (session id, turns of the trigger): where to look; turns are empty for a missed do-check
    sessions: list[tuple[str, list[int]]]


class ProgressReport(BaseModel):
    trainees: list[TraineeProgress]
    checks: list[str]  # heatmap rows, most often missed first
    heatmap: list[HeatCell]  # one cell per (check, trainee) with at least one attempt
    attempts: list[Attempt]  # oldest first
    unreadable: int = 0  # saved sessions whose scorecard could not be read (left out)


def _recent_weighted(scores: Sequence[int], decay: float = 0.5) -> float:
    """The mean score, each older session weighing ``decay`` times the one after it."""
    weights = [decay ** (len(scores) - 1 - i) for i in range(len(scores))]
    return round(sum(w * s for w, s in zip(weights, scores, strict=True)) / sum(weights), 1)


def _trainee(user: str, attempts: list[Attempt]) -> TraineeProgress:
    scores = [a.score for a in attempts]
    return TraineeProgress(
        user=user,
        attempts=len(attempts),
        first_score=scores[0],
        best_score=max(scores),
        last_score=scores[-1],
        improvement=max(scores) - scores[0],
        recent_score=_recent_weighted(scores),
        hints_used=sum(a.hints_used for a in attempts),
        trend=[(a.at, a.score) for a in attempts],
    )


def _cells(
    user: str, attempts: list[Attempt], checks: Iterable[str], kinds: dict[str, str]
) -> list[HeatCell]:
    cells = []
    for check in checks:
        where = [(a.session_id, m.turns) for a in attempts for m in a.missed if m.check == check]
        cells.append(
            HeatCell(
                user=user,
                check=check,
                kind=kinds[check],
                missed=len(where),
                attempts=len(attempts),
                rate=round(len(where) / len(attempts), 3),
                sessions=where,
            )
        )
    return cells


def progress_report(
    attempts: Iterable[Attempt], check_order: Sequence[tuple[str, str]]
) -> ProgressReport:
    """Per trainee and per check, over ``attempts`` (any order). ``check_order``: every
    scorecard check as (label, kind), in the catalogue's order (ties in the heatmap keep it)."""
    ordered = sorted(attempts, key=lambda a: (a.at, a.session_id))
    by_user: dict[str, list[Attempt]] = {}
    for attempt in ordered:
        by_user.setdefault(attempt.user, []).append(attempt)
    misses = {check: 0 for check, _ in check_order}
    kinds = dict(check_order)
    for attempt in ordered:
        for m in attempt.missed:
            misses[m.check] = misses.get(m.check, 0) + 1
            kinds.setdefault(m.check, m.kind)
    position = {check: i for i, check in enumerate(misses)}
    checks = sorted(misses, key=lambda c: (-misses[c], position[c]))
    users = sorted(by_user)
    return ProgressReport(
        trainees=[_trainee(u, by_user[u]) for u in users],
        checks=checks,
        heatmap=[cell for u in users for cell in _cells(u, by_user[u], checks, kinds)],
        attempts=ordered,
    )


CSV_COLUMNS = (
    "session_id", "user", "date", "scenario_id", "scenario", "scenario_version", "difficulty",
    "score", "outcome", "hints_used", "missed_checks",
)  # fmt: skip


def _text_cell(value: str) -> str:
    """A text cell a spreadsheet shows as text, never runs as a formula."""
    return f"'{value}" if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def report_csv(report: ProgressReport) -> str:
    """One row per attempt, oldest first (opens in a spreadsheet)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for a in report.attempts:
        writer.writerow(
            [
                a.session_id, _text_cell(a.user), a.at.isoformat(timespec="seconds"),
                _text_cell(a.scenario_id), _text_cell(a.scenario_title), a.scenario_version or "",
                a.difficulty, a.score,
                a.outcome or "", a.hints_used, "; ".join(m.check for m in a.missed),
            ]
        )  # fmt: skip
    return out.getvalue()
