"""Concurrent web sessions against the real app on a fake chat model (bench/load.py).

Starts ``chainlit run bench/load_app.py`` on 127.0.0.1 in a temporary data directory, plays six
sessions (practice and coach alternating) of two lines each at the same time over Socket.IO,
and checks that every line got a complete reply, nothing failed, every session was saved with
all its turns and the server logged no traceback. No latency is asserted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.load import COACH, PRACTICE, LoadConfig, LoadOutcome, run_load

SESSIONS, MESSAGES = 6, 2


def _fake_model_load(**fields: Any) -> LoadConfig:
    """A load on the fake chat model: quick tokens, and bounds for a slow CI machine."""
    defaults: dict[str, Any] = {
        "timeout": 120, "reply_timeout": 30, "token_delay": 0.01, "start_timeout": 60,
    }  # fmt: skip
    return LoadConfig(**(defaults | fields))


def _diagnose(outcome: LoadOutcome) -> str:
    problems = [*outcome.errors(), *outcome.persistence_problems, *outcome.tracebacks]
    log = outcome.log_path.read_text(errors="replace") if outcome.log_path else ""
    return "\n".join(problems[:20]) + "\n--- server log (end) ---\n" + log[-3000:]


def test_concurrent_sessions_are_all_answered_and_saved(tmp_path: Path) -> None:
    config = _fake_model_load(sessions=SESSIONS, messages=MESSAGES, timeout=90)
    outcome = run_load(config, tmp_path)
    why = _diagnose(outcome)

    assert not outcome.setup_errors, why
    assert outcome.errors() == [], why
    assert outcome.lost() == 0, why
    assert [len(r.replies) for r in outcome.reports] == [MESSAGES] * SESSIONS, why
    assert {r.profile for r in outcome.reports} == {PRACTICE, COACH}
    assert all(r.thread_id for r in outcome.reports), why
    assert outcome.persistence_problems == [], why
    assert outcome.saved_sessions >= SESSIONS, why
    assert outcome.tracebacks == [], why
    assert "Traceback" not in outcome.log_path.read_text(errors="replace"), why


def test_a_database_outage_under_load_loses_nothing(tmp_path: Path) -> None:
    """The session database fails every statement for the first seconds of the load (the
    bench's --db-outage): every line is answered, then saved once when it is back."""
    config = _fake_model_load(sessions=4, messages=2, db_outage_s=4, journal_flush_s=0.5)
    outcome = run_load(config, tmp_path)
    why = _diagnose(outcome)

    assert outcome.errors() == [] and outcome.lost() == 0, why
    assert outcome.journal_replayed() > 0, why  # the outage was real: saves waited meanwhile
    assert outcome.persistence_problems == [], why  # every line saved once, in order
    assert outcome.saved_lines == 4 * 2 and outcome.journal_left == 0, why
    assert outcome.dead_letters == 0 and outcome.tracebacks == [], why


def test_a_classroom_beyond_the_limit_is_turned_away_plainly_and_the_rest_all_saved(
    tmp_path: Path, capsys
) -> None:
    """The classroom profile on the fake model: three trainees, the app admitting two, a line
    every 1-2 s for 12 s. The third is told the class is full; the others' lines are all
    answered and saved; the summary and the result numbers are printed without error."""
    from bench.load import print_outcome

    config = _fake_model_load(
        sessions=3,
        profile="classroom",
        minutes=12 / 60,
        think_s=(1.0, 2.0),
        max_trainees=2,
    )
    outcome = run_load(config, tmp_path)
    why = _diagnose(outcome)
    assert outcome.errors() == [] and outcome.lost() == 0, why
    room = outcome.metrics()["classroom"]
    assert room["turned_away"] == 1, why
    assert sum(room["customer_lines"].values()) == len(outcome.replies()) > 0, why
    assert outcome.persistence_problems == [] and outcome.tracebacks == [], why
    print_outcome(outcome)
    assert "turned away 1" in capsys.readouterr().out
