"""``coachbot capacity``: how many trainees this machine serves at a stated reply time.

A thin adapter: it plays the shipped empathetic scripts (``evals/roleplay_scripts``) as a few
sessions taking turns on the configured model, times every turn
(:meth:`bot.service.Services.time_practice_turns`), and replays a classroom over those times
(:func:`bot.llm.capacity.classroom_capacity`). The result goes to ``capacity.json`` in the data
directory, where the app reads its admission limit (unless ``COACHBOT_MAX_TRAINEES`` is set).
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Annotated, Any

import typer
from rich.table import Table

from bot.cli import common
from bot.cli.common import JsonFlag, console, guard, print_json, status
from bot.config import PROJECT_ROOT
from bot.errors import CoachbotError
from bot.llm.capacity import (
    CLASSROOM_THINK_S,
    FULL_BUDGET,
    ClassroomEstimate,
    classroom_capacity,
)

SCRIPTS = PROJECT_ROOT / "evals" / "roleplay_scripts"
# The app gives a line 3 attempts when nobody waits, 1 with two turns waiting, and the trainer's
# line at once (0) from three; 2 is replayed with the times of 3 (the slower, so the safer).
MEASURED_BUDGETS = (FULL_BUDGET, 1, 0)


def capacity_command(
    target: Annotated[
        float, typer.Option(min=1.0, help="Reply time (p95, seconds) a trainee should get.")
    ] = 10.0,
    sessions: Annotated[int, typer.Option(min=1, max=8, help="Sessions taking turns.")] = 3,
    turns: Annotated[int, typer.Option(min=1, max=12, help="Lines per session.")] = 4,
    as_json: JsonFlag = False,
) -> None:
    """Measure how many trainees this machine can serve at a reply p95 of TARGET seconds.

    A classroom: each trainee sends a line 15 to 30 s after the customer's last reply. The
    app then admits that many practice sessions at once (COACHBOT_MAX_TRAINEES overrides).
    """

    def run() -> None:
        services = common.services()
        scripts = _scripts(list(services.scenarios), sessions, turns)
        with status("Loading the model…", as_json):
            services.warm_up()
        times: dict[int, list[float]] = {}
        for attempts in MEASURED_BUDGETS:
            label = f"Timing practice turns, {attempts} model attempt(s) a line…"
            with status(label, as_json):
                times[attempts] = services.time_practice_turns(scripts, attempts=attempts)
        window = services.settings.customer_retry_window_s
        trainees, estimates = classroom_capacity(times, target, retry_window_s=window)
        result = _result(services, times, trainees, estimates, target)
        services.capacity_file.parent.mkdir(parents=True, exist_ok=True)
        services.capacity_file.write_text(json.dumps(result, indent=2))
        if as_json:
            print_json(result)
        else:
            _print(result, estimates, str(services.capacity_file))

    guard(run, as_json)


def _scripts(scenario_ids: list[str], sessions: int, turns: int) -> dict[str, list[str]]:
    scripts: dict[str, list[str]] = {}
    for scenario_id in scenario_ids:
        path = SCRIPTS / scenario_id / "empathetic.txt"
        if path.is_file():
            lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
            scripts[scenario_id] = lines[:turns]
        if len(scripts) == sessions:
            break
    if not scripts:
        raise CoachbotError(
            f"no practice scripts in {SCRIPTS}", hint="restore evals/roleplay_scripts from git"
        )
    return scripts


def _summary(times: list[float]) -> dict[str, Any]:
    ordered = sorted(times)
    return {
        "n": len(ordered),
        "p50": round(statistics.median(ordered), 2),
        "p95": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        "all": times,
    }


def _result(
    services: Any,
    times: dict[int, list[float]],
    trainees: int,
    estimates: list[ClassroomEstimate],
    target: float,
) -> dict[str, Any]:
    return {
        "model": services.settings.local_model,
        "llm": services.settings.llm_provider,
        "trainees": trainees,
        "reply_p95_target_s": target,
        "think_s": list(CLASSROOM_THINK_S),
        "turn_s_by_attempts": {str(k): _summary(v) for k, v in times.items()},
        "classes": [e.__dict__ for e in estimates],
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _print(result: dict[str, Any], estimates: list[ClassroomEstimate], where: str) -> None:
    for attempts, turn in result["turn_s_by_attempts"].items():
        console.print(
            f"Practice turn, {attempts} model attempt(s) a line: p50 {turn['p50']} s, "
            f"p95 {turn['p95']} s ({turn['n']} turns, sessions taking turns)."
        )
    table = Table(title="A classroom: a line every 15-30 s per trainee")
    for column in ("trainees", "reply p50 s", "reply p95 s", "model busy", "trainer lines"):
        table.add_column(column, justify="right")
    for e in estimates:
        table.add_row(
            str(e.trainees),
            str(e.reply_p50_s),
            str(e.reply_p95_s),
            f"{e.utilisation:.0%}",
            f"{e.trainer_line_share:.0%}",
        )
    console.print(table)
    console.print(
        f"This machine serves {result['trainees']} trainee(s) at a reply p95 of "
        f"{result['reply_p95_target_s']:g} s or less. Saved to {where}; the app admits that many "
        "practice sessions (COACHBOT_MAX_TRAINEES overrides)."
    )
