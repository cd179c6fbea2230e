"""`coachbot users ...` and `coachbot sessions ...`: thin commands over bot.store.users and
bot.store.sessions.

Registered on the main app in bot/cli/main.py. bot/cli/main.py imports this module at its top, so
the shared helpers (``_guard``, ``_fail``, ``console``) are taken from it when a command runs, not
at import time.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Annotated, Any

import typer
from rich.table import Table

from bot.config import get_settings
from bot.errors import CoachbotError

# Same option as bot.cli.main.JsonFlag (defined again here: bot.cli.main imports this module first).
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]

users_app = typer.Typer(no_args_is_help=True, add_completion=False)
sessions_app = typer.Typer(no_args_is_help=True, add_completion=False)


def _cli() -> ModuleType:
    from bot.cli import main as cli

    return cli


def _json(data: Any) -> None:
    _cli()._print_json(data)


# --------------------------------------------------------------------------- users


def _user_store() -> Any:
    from bot.store.users import UserStore

    return UserStore.from_settings(get_settings())


def _read_password(password_stdin: bool, as_json: bool) -> str:
    cli = _cli()
    if password_stdin:
        lines = sys.stdin.read().splitlines()
        return lines[0] if lines else ""
    if not sys.stdin.isatty():
        cli._fail("no terminal to ask for the password: pipe it in with --password-stdin", as_json)
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

    cli = _cli()
    if role not in ROLES:
        cli._fail(f"unknown role {role!r} (one of: {', '.join(ROLES)})", as_json)
    password = _read_password(password_stdin, as_json)
    store = cli._guard(_user_store, as_json)
    user = cli._guard(lambda: store.add(name, password, role), as_json)
    if as_json:
        _json({"ok": True, "user": user.model_dump(mode="json"), "file": str(store.path)})
        return
    cli.console.print(f"Added [bold]{user.identifier}[/] ({user.role}) to {store.path}.")


@users_app.command("passwd")
def users_passwd(
    name: Annotated[str, typer.Argument(help="The login name.")],
    password_stdin: PasswordStdin = False,
    as_json: JsonFlag = False,
) -> None:
    """Set a new password for a user."""
    cli = _cli()
    store = cli._guard(_user_store, as_json)
    if cli._guard(lambda: store.get(name), as_json) is None:
        cli._fail(f"no user {name!r} in {store.path} (see `coachbot users list`)", as_json)
    password = _read_password(password_stdin, as_json)
    cli._guard(lambda: store.set_password(name, password), as_json)
    if as_json:
        _json({"ok": True, "user": name})
        return
    cli.console.print(f"Password changed for [bold]{name}[/].")


@users_app.command("list")
def users_list(as_json: JsonFlag = False) -> None:
    """List the login users and their roles (never the password hashes)."""
    cli = _cli()
    store = cli._guard(_user_store, as_json)
    users = cli._guard(store.list, as_json)
    if as_json:
        _json(
            {
                "ok": True,
                "file": str(store.path),
                "users": [u.model_dump(mode="json") for u in users],
            }
        )
        return
    if not users:
        cli.console.print(
            f"No users in {store.path}. With COACHBOT_AUTH=auto the app asks for no login "
            "until you add one (`coachbot users add NAME --role trainee`)."
        )
        return
    table = Table(title=f"Users ({store.path})")
    for column in ("user", "role", "created"):
        table.add_column(column)
    for user in users:
        table.add_row(user.identifier, user.role, f"{user.created_at:%Y-%m-%d %H:%M}")
    cli.console.print(table)


@users_app.command("remove")
def users_remove(
    name: Annotated[str, typer.Argument(help="The login name.")],
    as_json: JsonFlag = False,
) -> None:
    """Remove a login user (their saved sessions are kept)."""
    cli = _cli()
    store = cli._guard(_user_store, as_json)
    user = cli._guard(lambda: store.remove(name), as_json)
    if as_json:
        _json({"ok": True, "removed": user.model_dump(mode="json")})
        return
    cli.console.print(f"Removed [bold]{user.identifier}[/] ({user.role}).")


# --------------------------------------------------------------------------- sessions


def _session_store() -> Any:
    from bot.store.sessions import SessionStore

    return SessionStore.from_settings(get_settings())


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
    cli = _cli()

    def run() -> list[Any]:
        if kind is not None and kind not in ("practice", "coach"):
            raise CoachbotError(f"unknown kind {kind!r}", hint="practice or coach")
        return _session_store().list_sessions(user=user, kind=kind, role=role, limit=limit)

    found = cli._guard(run, as_json)
    if as_json:
        _json({"ok": True, "sessions": [s.model_dump(mode="json") for s in found]})
        return
    if not found:
        cli.console.print("No saved sessions.")
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
        table.add_row(
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
    cli.console.print(table)


def _print_practice(record: Any) -> None:
    from bot.roleplay.scoring import format_scorecard

    console = _cli().console
    transcript = record.transcript()
    if transcript is None:
        console.print("No transcript saved yet.")
        return
    name = transcript.customer_name
    start = transcript.start_state
    console.print(
        f"[bold red]{name}>[/] {transcript.opening_line}  [dim](anger {start.anger}/10)[/]",
        highlight=False,
    )
    hints = {h.turn: h for h in transcript.hints}
    if 0 in hints:
        console.print(f"[yellow]hint:[/] {hints[0].text}", highlight=False)
    for turn in transcript.turns:
        mood = turn.state
        console.print(f"[bold cyan]{turn.index}. you>[/] {turn.trainee}", highlight=False)
        console.print(
            f"[bold red]   {name}>[/] {turn.customer}  [dim](anger {mood.anger}/10, trust "
            f"{mood.trust}/10, {'feels heard' if mood.feels_heard else 'not heard yet'}, "
            f"{turn.beat})[/]",
            highlight=False,
        )
        if turn.index in hints:
            console.print(f"[yellow]hint:[/] {hints[turn.index].text}", highlight=False)
    console.rule(f"Outcome: {transcript.outcome or 'unfinished'}")
    card = record.scorecard()
    if card is None:
        console.print("Not scored yet.")
    else:
        console.print(format_scorecard(card), highlight=False)


def _print_coach(record: Any) -> None:
    console = _cli().console
    exchanges = record.exchanges()
    if not exchanges:
        console.print("No questions asked yet.")
    for i, answer in enumerate(exchanges, start=1):
        console.rule(f"Question {i}")
        console.print(f"[bold cyan]agent>[/] {answer.question}", highlight=False)
        console.print(f"[bold green]coach>[/] {answer.answer}", highlight=False)
        for c in answer.citations:
            meta = c.metadata
            console.print(
                f"  [dim][{c.number}] {meta.get('title')} — {meta.get('section')} "
                f"({meta.get('origin')})[/]",
                highlight=False,
            )
        if answer.flags:
            console.print(f"  [dim]flags: {', '.join(answer.flags)}[/]")


@sessions_app.command("show")
def sessions_show(
    session_id: Annotated[str, typer.Argument(help="A session id or its first characters.")],
    as_json: JsonFlag = False,
) -> None:
    """Show one session: the transcript with the mood per turn and the scorecard, or the coach's
    questions and answers."""
    cli = _cli()
    record = cli._guard(lambda: _session_store().get_session(session_id), as_json)
    if as_json:
        _json({"ok": True, "session": record.model_dump(mode="json")})
        return
    title = record.scenario_title or record.scenario_id or "coach"
    details = [record.kind, record.status]
    if record.difficulty:
        details.append(record.difficulty)
    cli.console.print(
        f"[bold]{record.id}[/]  {title} ({', '.join(details)})\n"
        f"{record.user or 'anonymous'}{f' ({record.role})' if record.role else ''}, "
        f"{record.created_at.astimezone():%Y-%m-%d %H:%M}, {record.turns} turn(s)"
        + (f", score {record.score}/100" if record.score is not None else ""),
        highlight=False,
    )
    cli._guard(
        lambda: _print_practice(record) if record.kind == "practice" else _print_coach(record),
        as_json,
    )
    if record.feedback:
        cli.console.rule("Feedback")
        for f in record.feedback:
            thumb = "👍" if f.value == 1 else "👎"
            comment = f": {f.comment}" if f.comment else ""
            cli.console.print(f"{thumb} {f.user or 'anonymous'}{comment}", highlight=False)
