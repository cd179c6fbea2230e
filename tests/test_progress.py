"""Trainees' progress: first versus best, recent-weighted scores, the missed-check heatmap with
the turns behind each cell, CSV export, and the same report through the service and the CLI."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from typer.testing import CliRunner

from bot.roleplay.progress import CSV_COLUMNS, Attempt, Missed, progress_report, report_csv

DAY = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
CALM = "Avoided Telling them to calm down"
VALIDATED = "Validated their feelings"
ORDER = [(VALIDATED, "do"), ("Asked open questions", "do"), (CALM, "avoid")]


def _attempt(user: str, day: int, score: int, missed: list[Missed], hints: int = 0) -> Attempt:
    return Attempt(
        session_id=f"{user}-{day}",
        user=user,
        scenario_id="damaged-delivery",
        scenario_title="Damaged delivery",
        difficulty="medium",
        at=DAY + timedelta(days=day),
        score=score,
        outcome="resolved",
        hints_used=hints,
        missed=missed,
    )


def _calm(*turns: int) -> Missed:
    return Missed(check=CALM, kind="avoid", turns=list(turns))


@pytest.fixture
def attempts() -> list[Attempt]:
    return [  # deliberately out of order: the report sorts by time
        _attempt("sam", 2, 70, [Missed(check=VALIDATED, kind="do")], hints=1),
        _attempt("alex", 0, 40, [_calm(2, 4), Missed(check=VALIDATED, kind="do")], hints=2),
        _attempt("alex", 1, 65, [_calm(3)]),
        _attempt("alex", 3, 55, []),
    ]


def test_first_best_last_and_recent_weighted(attempts):
    report = progress_report(attempts, ORDER)
    alex = next(t for t in report.trainees if t.user == "alex")
    assert (alex.attempts, alex.first_score, alex.best_score, alex.last_score) == (3, 40, 65, 55)
    assert alex.improvement == 25 and alex.hints_used == 2
    assert [score for _, score in alex.trend] == [40, 65, 55]
    assert alex.recent_score == round((40 * 0.25 + 65 * 0.5 + 55) / 1.75, 1)


def test_heatmap_ranks_checks_and_points_at_the_turns(attempts):
    report = progress_report(attempts, ORDER)
    assert report.checks == [VALIDATED, CALM, "Asked open questions"]  # a tie keeps ORDER
    cell = next(c for c in report.heatmap if c.user == "alex" and c.check == CALM)
    assert (cell.missed, cell.attempts, cell.rate) == (2, 3, 0.667)
    assert cell.sessions == [("alex-0", [2, 4]), ("alex-1", [3])]
    never = next(c for c in report.heatmap if c.user == "sam" and c.check == CALM)
    assert never.missed == 0 and never.sessions == []


def test_csv_has_a_row_per_session_and_never_a_formula(attempts):
    attempts[0] = attempts[0].model_copy(update={"user": "=HYPERLINK(1)"})
    rows = list(csv.reader(io.StringIO(report_csv(progress_report(attempts, ORDER)))))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 5
    assert rows[1][1] == "alex" and rows[1][7] == "40" and CALM in rows[1][10]
    assert rows[3][1] == "'=HYPERLINK(1)"  # sam's session, the third by time


def _play(svc, user: str, lines: list[str]) -> str:
    from bot.service import PracticeRun

    run = PracticeRun(svc, "damaged-delivery", "medium", seed=1, user=user, role="trainee")
    for text in lines:
        if not run.finished:
            run.respond(text)
    run.end()
    return run.session_id


@pytest.fixture
def played(make_services):
    svc = make_services(FakeListChatModel(responses=["I want this sorted, today."]))
    rude = _play(svc, "alex", ["Calm down, sir.", "As I told you, it's not my job."])
    kind = _play(svc, "alex", ["I'm so sorry, that sounds really upsetting. What happened?"])
    _play(svc, "sam", ["I can hear how frustrating this is. Tell me more?"])
    return svc, rude, kind


def test_the_service_reports_saved_sessions_with_filters(played):
    svc, rude, _ = played
    report = svc.progress()
    assert [t.user for t in report.trainees] == ["alex", "sam"]
    cell = next(c for c in report.heatmap if c.user == "alex" and c.check == CALM)
    assert cell.missed == 1 and cell.sessions[0][0] == rude and cell.sessions[0][1] == [1]
    assert [t.user for t in svc.progress(user="sam").trainees] == ["sam"]
    played_version = svc.scenarios["damaged-delivery"].version
    assert {a.scenario_version for a in report.attempts} == {played_version}
    assert svc.progress(difficulty="hard").attempts == []


def test_report_command_json_and_csv(played, monkeypatch):
    from bot.cli import common
    from bot.cli import main as cli

    svc, _, _ = played
    monkeypatch.setattr(common, "services", lambda: svc)
    runner = CliRunner()
    result = runner.invoke(cli.app, ["report", "--json"])
    assert result.exit_code == 0, result.stdout
    assert len(json.loads(result.stdout)["report"]["attempts"]) == 3
    table = runner.invoke(cli.app, ["report", "--csv", "--user", "alex"]).stdout
    assert table.startswith(",".join(CSV_COLUMNS)) and table.count("\n") == 3
    bad = runner.invoke(cli.app, ["report", "--difficulty", "brutal", "--json"])
    assert bad.exit_code != 0 and "unknown difficulty" in bad.stdout
    assert "Traceback" not in bad.stdout


def test_charts_are_well_formed_svg_with_names_as_text(attempts):
    from xml.etree import ElementTree

    from bot.web.progress_charts import heatmap_svg, score_trend_svg

    attempts[0] = attempts[0].model_copy(update={"user": "<script>x</script>"})
    report = progress_report(attempts, ORDER)
    for svg in (score_trend_svg(report), heatmap_svg(report)):
        root = ElementTree.fromstring(svg)
        assert root.tag.endswith("svg") and not list(
            root.iter("{http://www.w3.org/2000/svg}script")
        )
        assert "<script>" not in svg and "&lt;script&gt;" in svg
    heat = ElementTree.fromstring(heatmap_svg(report))
    cells = [t.text for t in heat.iter("{http://www.w3.org/2000/svg}title")]
    assert "alex: Avoided Telling them to calm down missed 2/3" in cells
