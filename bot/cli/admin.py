"""`coachbot users ...` and `coachbot sessions ...`: commands over bot.store.users and
bot.store.sessions (registered on the main app in bot/cli/main.py).

Names, transcripts, answers and comments are stored text: they are printed verbatim
(:func:`bot.cli.common.line`), never as Rich markup or terminal control codes.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from bot.cli import common
from bot.cli.common import JsonFlag, console, fail, guard, line, print_json
from bot.errors import CoachbotError

users_app = typer.Typer(no_args_is_help=True, add_completion=False)
sessions_app = typer.Typer(no_args_is_help=True, add_completion=False)


# --------------------------------------------------------------------------- users


def _user_store() -> Any:
    from bot.store.users import UserStore

    return UserStore.from_settings(common.settings())


def _read_password(password_stdin: bool, as_json: bool) -> str:
    if password_stdin:
        lines = sys.stdin.read().splitlines()
        return lines[0] if lines else ""
    if not sys.stdin.isatty():
        fail("no terminal to ask for the password: pipe it in with --password-stdin", as_json)
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


PasswordStdin = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin.")
]


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="The login name.")],
    role: Annotated[str, typer.Option("--role", "-r", help="trainee | agent | trainer")],
    password_stdin: PasswordStdin = False,
    as_json: JsonFlag = False,
) -> None:
    """Add a login user (the password is stored as a bcrypt hash)."""
    from bot.store.users import ROLES

    if role not in ROLES:
        fail(f"unknown role {role!r} (one of: {', '.join(ROLES)})", as_json)
    password = _read_password(password_stdin, as_json)
    store = guard(_user_store, as_json)
    user = guard(lambda: store.add(name, password, role), as_json)
    if as_json:
        print_json({"ok": True, "user": user.model_dump(mode="json"), "file": str(store.path)})
        return
    console.print(
        line("Added ", (user.identifier, "bold"), f" ({user.role}) to {store.path}."),
        highlight=False,
    )


@users_app.command("groups")
def users_groups(
    name: Annotated[str, typer.Argument(help="The login name.")],
    groups: Annotated[
        list[str] | None, typer.Argument(help="Its groups (none: clears them).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Set a user's groups (cohorts a trainer can assign a scenario to: assign --group G)."""
    store = guard(_user_store, as_json)
    user = guard(lambda: store.set_groups(name, groups or []), as_json)
    if as_json:
        print_json({"ok": True, "user": user.model_dump(mode="json")})
        return
    shown = ", ".join(user.groups) or "no groups"
    console.print(line((user.identifier, "bold"), f": {shown}."), highlight=False)


@users_app.command("passwd")
def users_passwd(
    name: Annotated[str, typer.Argument(help="The login name.")],
    password_stdin: PasswordStdin = False,
    as_json: JsonFlag = False,
) -> None:
    """Set a new password for a user."""
    store = guard(_user_store, as_json)
    if guard(lambda: store.get(name), as_json) is None:
        fail(f"no user {name!r} in {store.path} (see `coachbot users list`)", as_json)
    password = _read_password(password_stdin, as_json)
    guard(lambda: store.set_password(name, password), as_json)
    if as_json:
        print_json({"ok": True, "user": name})
        return
    console.print(line("Password changed for ", (name, "bold"), "."), highlight=False)


@users_app.command("list")
def users_list(as_json: JsonFlag = False) -> None:
    """List the login users and their roles (never the password hashes)."""
    store = guard(_user_store, as_json)
    users = guard(store.list, as_json)
    if as_json:
        print_json(
            {
                "ok": True,
                "file": str(store.path),
                "users": [u.model_dump(mode="json") for u in users],
            }
        )
        return
    if not users:
        console.print(
            f"No users in {store.path}. With COACHBOT_AUTH=auto the app asks for no login "
            "until you add one (`coachbot users add NAME --role trainee`).",
            markup=False,
        )
        return
    table = Table(title=Text(f"Users ({store.path})"))
    for column in ("user", "role", "groups", "created"):
        table.add_column(column)
    for user in users:
        table.add_row(
            line(user.identifier),
            line(user.role),
            line(", ".join(user.groups) or "-"),
            f"{user.created_at:%Y-%m-%d %H:%M}",
        )
    console.print(table)


@users_app.command("remove")
def users_remove(
    name: Annotated[str, typer.Argument(help="The login name.")],
    as_json: JsonFlag = False,
) -> None:
    """Remove a login user (their saved sessions are kept)."""
    store = guard(_user_store, as_json)
    user = guard(lambda: store.remove(name), as_json)
    if as_json:
        print_json({"ok": True, "removed": user.model_dump(mode="json")})
        return
    console.print(line("Removed ", (user.identifier, "bold"), f" ({user.role})."), highlight=False)


# --------------------------------------------------------------------------- sessions


def _session_store() -> Any:
    from bot.store.sessions import SessionStore

    return SessionStore.from_settings(common.settings())


@sessions_app.command("list")
def sessions_list(
    user: Annotated[str | None, typer.Option("--user", "-u", help="Only this user.")] = None,
    kind: Annotated[str | None, typer.Option("--kind", "-k", help="practice | coach")] = None,
    role: Annotated[str | None, typer.Option("--role", help="Only this role.")] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, help="How many, newest first.")
    ] = 50,
    as_json: JsonFlag = False,
) -> None:
    """List saved sessions, newest first, with scores and thumbs."""

    def run() -> list[Any]:
        if kind is not None and kind not in ("practice", "coach"):
            raise CoachbotError(f"unknown kind {kind!r}", hint="practice or coach")
        return _session_store().list_sessions(user=user, kind=kind, role=role, limit=limit)

    found = guard(run, as_json)
    if as_json:
        print_json({"ok": True, "sessions": [s.model_dump(mode="json") for s in found]})
        return
    if not found:
        console.print("No saved sessions.")
        return
    table = Table(
        title="Saved sessions (newest first)",
        box=None,
        header_style="bold underline",
        pad_edge=False,
        padding=(0, 1),
        collapse_padding=True,
    )
    table.add_column("id", no_wrap=True, min_width=8)
    table.add_column("when", no_wrap=True, min_width=16)
    for column in ("user", "role", "kind"):
        table.add_column(column, overflow="fold")
    table.add_column("scenario", overflow="fold", min_width=10)
    for column in ("difficulty", "turns", "outcome", "score", "👍/👎"):
        right = column in ("turns", "score", "👍/👎")
        table.add_column(column, overflow="fold", justify="right" if right else "left")
    for s in found:
        cells = (
            s.id[:8],
            f"{s.created_at.astimezone():%Y-%m-%d %H:%M}",
            s.user or "-",
            s.role or "-",
            s.kind,
            s.scenario_title or s.scenario_id or "-",
            s.difficulty or "-",
            str(s.turns),
            s.outcome or s.status,
            "-" if s.score is None else str(s.score),
            f"{s.feedback_up}/{s.feedback_down}",
        )
        table.add_row(*(line(cell) for cell in cells))
    console.print(table)


def _mood(turn: Any) -> str:
    state = turn.state
    heard = "feels heard" if state.feels_heard else "not heard yet"
    return f"  (anger {state.anger}/10, trust {state.trust}/10, {heard}, {turn.beat})"


def _print_practice(record: Any) -> None:
    from bot.roleplay.scoring import format_scorecard

    transcript = record.transcript()
    if transcript is None:
        console.print("No transcript saved yet.")
        return
    name = transcript.customer_name
    anger = f"  (anger {transcript.start_state.anger}/10)"
    console.print(line((f"{name}>", "bold red"), " ", transcript.opening_line, (anger, "dim")))
    hints = {h.turn: h for h in transcript.hints}
    if 0 in hints:
        console.print(line(("hint:", "yellow"), " ", hints[0].text))
    for turn in transcript.turns:
        console.print(line((f"{turn.index}. you>", "bold cyan"), " ", turn.trainee))
        mood = _mood(turn)
        console.print(line((f"   {name}>", "bold red"), " ", turn.customer, (mood, "dim")))
        if turn.index in hints:
            console.print(line(("hint:", "yellow"), " ", hints[turn.index].text))
    console.rule(line(f"Outcome: {transcript.outcome or 'unfinished'}"))
    card = record.scorecard()
    if card is None:
        console.print("Not scored yet.")
    else:
        console.print(line(format_scorecard(card)))


def _print_coach(record: Any) -> None:
    exchanges = record.exchanges()
    if not exchanges:
        console.print("No questions asked yet.")
    for i, answer in enumerate(exchanges, start=1):
        console.rule(f"Question {i}")
        console.print(line(("agent>", "bold cyan"), " ", answer.question))
        console.print(line(("coach>", "bold green"), " ", answer.answer))
        for c in answer.citations:
            meta = c.metadata
            source = f"  [{c.number}] {meta.get('title')} — {meta.get('section')} "
            console.print(line((f"{source}({meta.get('origin')})", "dim")))
        if answer.flags:
            console.print(line((f"  flags: {', '.join(answer.flags)}", "dim")))


def _print_header(record: Any) -> None:
    title = record.scenario_title or record.scenario_id or "coach"
    details = [record.kind, record.status]
    if record.difficulty:
        details.append(record.difficulty)
    transcript = record.transcript() if record.kind == "practice" else None
    if transcript is not None and transcript.scenario_version:
        details.append(f"scenario version {transcript.scenario_version}")
    role = f" ({record.role})" if record.role else ""
    score = f", score {record.score}/100" if record.score is not None else ""
    console.print(
        line(
            (record.id, "bold"),
            f"  {title} ({', '.join(details)})\n",
            f"{record.user or 'anonymous'}{role}, ",
            f"{record.created_at.astimezone():%Y-%m-%d %H:%M}, {record.turns} turn(s){score}",
        )
    )


def _print_feedback(record: Any) -> None:
    console.rule("Feedback")
    for f in record.feedback:
        thumb = "👍" if f.value == 1 else "👎"
        comment = f": {f.comment}" if f.comment else ""
        console.print(line(f"{thumb} {f.user or 'anonymous'}{comment}"))


@sessions_app.command("show")
def sessions_show(
    session_id: Annotated[str, typer.Argument(help="A session id or its first characters.")],
    as_json: JsonFlag = False,
) -> None:
    """Show one session: the transcript with the mood per turn and the scorecard, or the coach's
    questions and answers."""
    record = guard(lambda: _session_store().get_session(session_id), as_json)
    if as_json:
        print_json({"ok": True, "session": record.model_dump(mode="json")})
        return
    _print_header(record)
    guard(
        lambda: _print_practice(record) if record.kind == "practice" else _print_coach(record),
        as_json,
    )
    if record.feedback:
        _print_feedback(record)


# --------------------------------------------------------------------------- progress report


DayOption = typer.Option(formats=["%Y-%m-%d"], help="A day, YYYY-MM-DD (UTC).")


def report(
    user: Annotated[str | None, typer.Option("--user", "-u", help="Only this trainee.")] = None,
    scenario: Annotated[str | None, typer.Option("--scenario", "-s", help="A scenario id.")] = None,
    difficulty: Annotated[
        str | None, typer.Option("--difficulty", "-d", help="easy | medium | hard")
    ] = None,
    since: Annotated[datetime | None, DayOption] = None,
    until: Annotated[datetime | None, DayOption] = None,
    as_csv: Annotated[bool, typer.Option("--csv", help="One row per session, as CSV.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Trainees' progress: sessions, first versus best score, trend, hints, most-missed checks."""

    def run() -> Any:
        from bot.roleplay.assignments import end_of_day
        from bot.roleplay.scenarios import require_difficulty

        return common.services().progress(
            user=user,
            scenario_id=scenario,
            difficulty=require_difficulty(difficulty) if difficulty is not None else None,
            since=since.replace(tzinfo=UTC) if since else None,
            until=end_of_day(until) if until else None,  # --until is inclusive
        )

    found = guard(run, as_json)
    if as_json:
        print_json({"ok": True, "report": found.model_dump(mode="json")})
    elif as_csv:
        from bot.roleplay.progress import report_csv

        sys.stdout.write(report_csv(found))
    else:
        _print_report(found)


def _print_report(found: Any) -> None:
    if not found.attempts:
        console.print("No scored practice sessions match.")
        return
    table = Table(title="Trainees", box=None, header_style="bold underline", padding=(0, 1))
    for column in ("trainee", "sessions", "first", "best", "last", "recent", "hints", "trend"):
        table.add_column(column, justify="left" if column in ("trainee", "trend") else "right")
    for t in found.trainees:
        trend = " ".join(str(score) for _, score in t.trend[-8:])
        cells = (t.user, str(t.attempts), str(t.first_score), str(t.best_score),
                 str(t.last_score), f"{t.recent_score:g}", str(t.hints_used), trend)  # fmt: skip
        table.add_row(*(line(cell) for cell in cells))
    console.print(table)
    console.print(line(("Most often missed (trainee: missed/sessions)", "bold")))
    for check in found.checks[:5]:
        cells = [c for c in found.heatmap if c.check == check and c.missed]
        if cells:
            who = ", ".join(f"{c.user} {c.missed}/{c.attempts}" for c in cells)
            console.print(line(f"  {check}: {who}"))
    if found.unreadable:
        console.print(line((f"{found.unreadable} session(s) could not be read: left out.", "dim")))


# --------------------------------------------------------------------------- assignments


def assign(
    scenario: Annotated[str, typer.Argument(help="A scenario id (coachbot scenarios).")],
    to: Annotated[
        list[str] | None, typer.Option("--to", "-t", help="A trainee (repeat for several).")
    ] = None,
    group: Annotated[
        list[str] | None, typer.Option("--group", "-g", help="A group of users (repeatable).")
    ] = None,
    everyone: Annotated[bool, typer.Option("--everyone", help="Every trainee.")] = False,
    difficulty: Annotated[str, typer.Option("--difficulty", "-d")] = "medium",
    pass_mark: Annotated[int, typer.Option("--pass-mark", "-p", min=0, max=100)] = 70,
    due: Annotated[datetime | None, DayOption] = None,
    as_json: JsonFlag = False,
) -> None:
    """Set a scenario for trainees: a difficulty, a pass mark and a due day (end of that day)."""

    def run() -> list[Any]:
        from bot.store.sessions import EVERY_TRAINEE, GROUP_PREFIX

        targets = [*(to or []), *(f"{GROUP_PREFIX}{g}" for g in group or [])]
        if bool(targets) == everyone:
            raise CoachbotError("say who: --to NAME or --group G (repeatable), or --everyone")
        from bot.roleplay.assignments import NewAssignment, end_of_day

        due_at = end_of_day(due) if due else None
        return [
            common.services().assign(
                NewAssignment(assignee=name, scenario_id=scenario, difficulty=difficulty,
                              pass_mark=pass_mark, due_at=due_at, created_by="cli")
            )
            for name in (targets or [EVERY_TRAINEE])
        ]  # fmt: skip

    made = guard(run, as_json)
    if as_json:
        print_json({"ok": True, "assignments": [a.model_dump(mode="json") for a in made]})
        return
    for a in made:
        who = "every trainee" if a.assignee == "*" else a.assignee
        console.print(line(f"Assigned {a.scenario_id} ({a.difficulty}, pass {a.pass_mark}) "
                           f"to {who}: id {a.id[:8]}"))  # fmt: skip


def assignments(
    user: Annotated[str | None, typer.Option("--user", "-u", help="Only this trainee.")] = None,
    remove: Annotated[
        str | None, typer.Option("--remove", help="Withdraw the assignment with this id.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Assignments and where each trainee stands: not started, attempted, passed, overdue."""

    def run() -> list[Any]:
        if remove:
            common.services().store.remove_assignment(remove)
        return common.services().assignment_statuses(user=user)

    found = guard(run, as_json)
    if as_json:
        print_json({"ok": True, "assignments": [s.model_dump(mode="json") for s in found]})
        return
    if not found:
        console.print("No assignments.")
        return
    from bot.roleplay.assignments import day_of

    table = Table(title="Assignments", box=None, header_style="bold underline", padding=(0, 1))
    for column in ("id", "trainee", "scenario", "difficulty", "pass", "due", "status", "best"):
        table.add_column(column, overflow="fold")
    for s in found:
        a = s.assignment
        due_text = day_of(a.due_at) if a.due_at else "-"
        status = s.status + (", overdue" if s.overdue else "")
        best = "-" if s.best_score is None else str(s.best_score)
        cells = (a.id[:8], s.trainee, a.scenario_id, a.difficulty, str(a.pass_mark), due_text,
                 f"{status} ({s.attempts} tries)", best)  # fmt: skip
        table.add_row(*(line(cell) for cell in cells))
    console.print(table)
