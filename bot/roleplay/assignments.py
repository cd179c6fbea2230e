"""Where each trainee stands on the scenarios a trainer set them: not started, attempted or
passed (a session at the assignment's difficulty scoring at least its pass mark), and overdue.

Pure: the caller passes the assignments and the trainees' scored attempts."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field

from bot.roleplay.progress import Attempt

Status = Literal["not started", "attempted", "passed"]


def end_of_day(day: datetime) -> datetime:
    """The instant a UTC day ends (the next midnight): a due day's deadline, an inclusive
    "until" day's bound."""
    return day.replace(tzinfo=UTC) + timedelta(days=1)


def day_of(end: datetime) -> str:
    """The day (YYYY-MM-DD) that :func:`end_of_day` ends."""
    return f"{end - timedelta(seconds=1):%Y-%m-%d}"


class NewAssignment(BaseModel):
    """What a trainer sets: a scenario at a difficulty, a pass mark and an optional due time."""

    assignee: str = Field(min_length=1)  # a user, "group:NAME" or "*": every trainee
    scenario_id: str = Field(min_length=1)
    difficulty: str = "medium"
    pass_mark: int = Field(70, ge=0, le=100)
    due_at: datetime | None = None  # the end of the due day
    created_by: str | None = None


class Assignment(BaseModel):
    id: str
    assignee: str  # a user, or "*": every trainee
    scenario_id: str
    difficulty: str
    pass_mark: int
    due_at: datetime | None = None
    created_by: str | None = None
    created_at: datetime


class AssignmentStatus(BaseModel):
    """One trainee's standing on one assignment."""

    assignment: Assignment
    trainee: str
    status: Status
    attempts: int
    best_score: int | None
    overdue: bool  # past its due date and not passed


def assignment_status(
    assignment: Assignment, trainee: str, attempts: Iterable[Attempt], now: datetime
) -> AssignmentStatus:
    """Only sessions of this trainee, scenario and difficulty, started once it was set, count."""
    counted = [
        a
        for a in attempts
        if a.user == trainee
        and a.scenario_id == assignment.scenario_id
        and a.difficulty == assignment.difficulty
        and a.at >= assignment.created_at
    ]
    best = max((a.score for a in counted), default=None)
    passed = best is not None and best >= assignment.pass_mark
    status: Status = "passed" if passed else "attempted" if counted else "not started"
    due = assignment.due_at
    return AssignmentStatus(
        assignment=assignment,
        trainee=trainee,
        status=status,
        attempts=len(counted),
        best_score=best,
        overdue=not passed and due is not None and now > due,
    )
