"""The trainer's progress dashboard in the Review profile: filters typed as ``progress key=value``,
the report as Markdown, two pictures (score trends, missed-check heatmap) and a CSV file.

Only parsing and presentation: the report comes from ``Services.progress``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bot.errors import CoachbotError
from bot.rendering import markdown_environment
from bot.rendering import markdown_text as md
from bot.roleplay.assignments import AssignmentStatus, NewAssignment, day_of, end_of_day
from bot.roleplay.progress import ProgressReport
from bot.roleplay.scenarios import require_difficulty
from bot.store.sessions import EVERY_TRAINEE
from bot.web.mood_chart import TEMPLATES

_env = markdown_environment(TEMPLATES)
COMMAND = "progress"
_KEYS = {"trainee": "user", "user": "user", "scenario": "scenario_id", "difficulty": "difficulty",
         "since": "since", "until": "until"}  # fmt: skip
MOST_MISSED = 5


def is_progress_request(text: str) -> bool:
    words = text.strip().split()
    return bool(words) and words[0].lower() == COMMAND


def _day(key: str, value: str) -> datetime:
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise CoachbotError(
            f"{key}={value!r} is not a day", hint="write it as YYYY-MM-DD"
        ) from None


def parse_filters(text: str) -> dict[str, Any]:
    """``progress trainee=sam since=2026-12-01`` as keyword arguments for Services.progress
    (``until`` is inclusive)."""
    filters: dict[str, Any] = {}
    for word in text.strip().split()[1:]:
        key, sep, value = word.partition("=")
        name = _KEYS.get(key.lower())
        if not sep or name is None or not value:
            raise CoachbotError(
                f"cannot read the filter {word!r}",
                hint="use trainee=, scenario=, difficulty=, since= or until= (since=2026-12-01)",
            )
        filters[name] = require_difficulty(value) if name == "difficulty" else value
    if "since" in filters:
        filters["since"] = _day("since", filters["since"])
    if "until" in filters:
        filters["until"] = end_of_day(_day("until", filters["until"]))
    return filters


def _described(filters: dict[str, Any]) -> str:
    shown = {k: v for k, v in filters.items() if k not in ("since", "until")}
    if "since" in filters:
        shown["since"] = f"{filters['since']:%Y-%m-%d}"
    if "until" in filters:
        shown["until"] = day_of(filters["until"])
    return ", ".join(f"{k.replace('_id', '')} {v}" for k, v in shown.items())


BUILDER = ("new scenario", "build scenario", "scenario builder")


def is_builder_request(text: str) -> bool:
    return " ".join(text.lower().split()) in BUILDER


def builder_problems_markdown(problems: dict[str, str]) -> str:
    """What the scenario still lacks, step by step (those steps are asked again)."""
    lines = [f"- {md(key.replace('_', ' '))}: {md(problem)}" for key, problem in problems.items()]
    return "The scenario is not valid yet; these answers are asked again:\n" + "\n".join(lines)


ASSIGN = "assign"
ASSIGN_USAGE = (
    "assign SCENARIO to NAME|group:G|everyone [difficulty=medium] [pass=70] [due=YYYY-MM-DD]"
)


def is_assign_request(text: str) -> bool:
    words = text.strip().split()
    return bool(words) and words[0].lower() == ASSIGN


def parse_assign(text: str) -> NewAssignment:
    """``assign damaged-delivery to sam pass=70 due=2026-12-14`` as an assignment to set (the
    due day's end is the deadline)."""
    words = text.strip().split()
    if len(words) < 4 or words[2].lower() != "to":
        raise CoachbotError("cannot read that assignment", hint=ASSIGN_USAGE)
    who = words[3]
    wanted: dict[str, Any] = {
        "scenario_id": words[1],
        "assignee": EVERY_TRAINEE if who.lower() in ("everyone", "all") else who,
    }
    for word in words[4:]:
        key, _, value = word.partition("=")
        if key == "difficulty":
            wanted["difficulty"] = value
        elif key == "pass" and value.isdigit() and int(value) <= 100:
            wanted["pass_mark"] = int(value)
        elif key == "due":
            wanted["due_at"] = end_of_day(_day("due", value))
        else:
            raise CoachbotError(f"cannot read {word!r}", hint=ASSIGN_USAGE)
    return NewAssignment(**wanted)


def progress_markdown(
    report: ProgressReport, filters: dict[str, Any], statuses: list[AssignmentStatus] | None = None
) -> str:
    """The dashboard's text: trainees, and the most-missed checks with the sessions and turns."""
    return (
        _env.get_template("progress.md.j2")
        .render(
            report=report,
            filters=_described(filters),
            statuses=statuses or [],
            due=day_of,
            triggers=_most_missed(report, "avoid"),
            moves=_most_missed(report, "do"),
        )
        .strip()
    )


def _most_missed(report: ProgressReport, kind: str) -> list[dict[str, Any]]:
    """The checks of ``kind`` missed most often, each with the trainees' cells that missed it."""
    rows = []
    for check in report.checks:
        cells = [c for c in report.heatmap if c.check == check and c.kind == kind and c.missed]
        if cells:
            rows.append({"check": check, "cells": cells})
    return rows[:MOST_MISSED]
