"""Assignments: a trainer sets a scenario, difficulty, pass mark and due day; trainees see theirs
first and start one in one click; status (not started, attempted, passed, overdue) shows in the
CLI and on the dashboard."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import chainlit as cl
import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from typer.testing import CliRunner

from bot.roleplay.assignments import Assignment, assignment_status
from bot.roleplay.progress import Attempt
from bot.web import app
from tests.test_app import Browser, cl_session_value

SET = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _assignment(**changes: object) -> Assignment:
    values: dict[str, object] = {
        "id": "a1", "assignee": "sam", "scenario_id": "damaged-delivery", "difficulty": "hard",
        "pass_mark": 70, "due_at": SET + timedelta(days=7), "created_at": SET,
    }  # fmt: skip
    values.update(changes)
    return Assignment.model_validate(values)


def _tried(score: int, days: float, difficulty: str = "hard", user: str = "sam") -> Attempt:
    return Attempt(
        session_id=f"s{score}{days}", user=user, scenario_id="damaged-delivery",
        scenario_title="Damaged delivery", difficulty=difficulty, at=SET + timedelta(days=days),
        score=score, outcome=None, hints_used=0, missed=[],
    )  # fmt: skip


@pytest.mark.parametrize(
    ("attempts", "days_later", "status", "overdue", "best"),
    [
        ([], 1, "not started", False, None),
        ([], 8, "not started", True, None),
        ([_tried(55, 1)], 2, "attempted", False, 55),
        ([_tried(55, 1), _tried(80, 2)], 9, "passed", False, 80),
        # before it was set, at another difficulty, or by someone else: none of these count
        ([_tried(90, -1), _tried(95, 1, "easy"), _tried(99, 1, user="alex")], 2, "not started",
         False, None),
    ],
)  # fmt: skip
def test_status_counts_only_this_trainees_sessions_since_it_was_set(
    attempts, days_later, status, overdue, best
):
    now = SET + timedelta(days=days_later)
    got = assignment_status(_assignment(), "sam", attempts, now)
    assert (got.status, got.overdue, got.best_score) == (status, overdue, best)


@pytest.fixture
def svc(make_services):
    return make_services(FakeListChatModel(responses=["I want this sorted, today."]))


def _cli(svc, monkeypatch, *args: str):
    from bot.cli import common
    from bot.cli import main as cli

    monkeypatch.setattr(common, "services", lambda: svc)
    monkeypatch.setattr(common, "get_settings", lambda: svc.settings)
    return CliRunner().invoke(cli.app, list(args))


def test_assign_and_follow_from_the_cli(svc, monkeypatch):
    from bot.service import PracticeRun

    made = _cli(svc, monkeypatch, "assign", "damaged-delivery", "--to", "sam", "-d", "easy",
                "--pass-mark", "10", "--due", "2099-01-31", "--json")  # fmt: skip
    assert made.exit_code == 0, made.stdout
    assignment = json.loads(made.stdout)["assignments"][0]
    assert assignment["due_at"].startswith("2099-02-01T00:00:00")  # the end of the due day

    run = PracticeRun(svc, "damaged-delivery", "easy", seed=1, user="sam", role="trainee")
    run.respond("I'm so sorry, that sounds really upsetting. What happened?")
    run.end()
    listed = json.loads(_cli(svc, monkeypatch, "assignments", "--json").stdout)["assignments"]
    assert [(s["trainee"], s["status"], s["attempts"]) for s in listed] == [("sam", "passed", 1)]
    text = _cli(svc, monkeypatch, "assignments").stdout
    assert "sam" in text and "passed" in text

    gone = _cli(svc, monkeypatch, "assignments", "--remove", assignment["id"][:8], "--json")
    assert json.loads(gone.stdout)["assignments"] == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["assign", "no-such-scenario", "--to", "sam"], "no scenario 'no-such-scenario'"),
        (["assign", "damaged-delivery", "-d", "brutal", "--everyone"], "unknown difficulty"),
        (["assign", "damaged-delivery"], "--to NAME"),
        (["assignments", "--remove", "zzz"], "matches no assignment"),
    ],
)
def test_bad_assignments_get_a_clear_message(svc, monkeypatch, args, message):
    result = _cli(svc, monkeypatch, *args, "--json")
    assert result.exit_code != 0 and message in result.stdout and "Traceback" not in result.stdout


def test_trainer_assigns_in_the_app_and_the_trainee_starts_it_first(svc):
    trainer = Browser(app.REVIEW, cl.User(identifier="tom", metadata={"role": "trainer"}))
    trainer.run(app.on_chat_start)
    trainer.say("assign billing-error to tess difficulty=hard pass=60 due=2099-01-31")
    assert "Assigned billing-error (hard, pass mark 60) to tess" in trainer.texts()[-1]
    trainer.say("assign long-wait-transfers to everyone due=2099-02-28")
    trainer.say("assign billing-error tess")
    assert "cannot read that assignment" in trainer.texts()[-1]

    tess = Browser(app.PRACTICE, cl.User(identifier="tess", metadata={"role": "trainee"}))
    tess.run(app.on_chat_start)
    first = tess.texts()[0]
    assert first.startswith("**Your assignments**")
    assert first.index("Double charge") < first.index("An hour on hold")  # soonest due first
    assert cl_session_value(tess, "practice").scenario.id == "billing-error"  # started first
    start = next(a for a in tess.of("action") if a["name"] == "start_assignment")
    tess.run(app.on_start_assignment, cl.Action(name="start_assignment", payload=start["payload"]))
    assert cl_session_value(tess, "practice").scenario.id == "long-wait-transfers"
    tess.say("I'm so sorry you've been passed around, that sounds exhausting. What happened?")
    tess.run(app.on_end, cl.Action(name="end_debrief", payload={}))

    trainer.say("progress")
    board = trainer.texts()[-1].split("### Assignments")[1].split("###")[0]
    assert "| tess | billing-error | hard | 60 | 2099-01-31 | not started | 0 | - |" in board
    assert "| tess | long-wait-transfers | medium | 70 | 2099-02-28 | " in board
    assert "not started" not in board.split("long-wait-transfers")[1].split("\n")[0]


def test_a_group_assignment_reaches_each_member(svc, monkeypatch):
    from bot.store.users import UserStore

    users = UserStore(svc.settings.users_path, rounds=4)
    for name, role in (("sam", "trainee"), ("alex", "trainee"), ("kim", "trainee")):
        users.add(name, "long-enough-password", role)
    users.set_groups("sam", ["night-shift"])
    users.set_groups("alex", ["night-shift", "team-b"])
    made = _cli(svc, monkeypatch, "assign", "billing-error", "--group", "night-shift", "--json")
    assert made.exit_code == 0, made.stdout
    listed = json.loads(_cli(svc, monkeypatch, "assignments", "--json").stdout)["assignments"]
    assert sorted(s["trainee"] for s in listed) == ["alex", "sam"]  # not kim
    assert [s.trainee for s in svc.assignment_statuses(user="alex")] == ["alex"]
    assert svc.assignment_statuses(user="kim") == []
    nobody = _cli(svc, monkeypatch, "assign", "billing-error", "--group", "day-shift", "--json")
    assert nobody.exit_code != 0 and "no user is in group 'day-shift'" in nobody.stdout
    shown = _cli(svc, monkeypatch, "users", "list").stdout
    assert "night-shift, team-b" in shown
