"""The `coachbot` command line: a thin layer over the core modules.

Every command takes ``--json`` for machine-readable output and exits non-zero with a one-line
reason on failure (set ``COACHBOT_DEBUG=1`` to see the traceback instead).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from bot.cli import common
from bot.cli.admin import sessions_app, users_app
from bot.cli.common import (
    JsonFlag,
    console,
    err_console,
    guard,
    notice,
    print_json,
    status,
)
from bot.cli.evals import eval_command
from bot.errors import CoachbotError, describe_failure

app = typer.Typer(
    name="coachbot",
    help="Practice and live coaching for agents facing upset customers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _setup() -> None:
    # Runs before every command: core warnings become notices instead of bare log lines.
    common.start_command()


@app.command()
def ingest(
    path: Annotated[
        Path | None, typer.Argument(help="A file or folder under knowledge/ (default: all).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Build or refresh the knowledge index from knowledge/ (only changed files are redone)."""
    from bot.knowledge import KnowledgeIndex

    def run() -> None:
        index = KnowledgeIndex(common.settings())
        with status("Indexing knowledge…", as_json):
            report = index.ingest(path)
        if as_json:
            print_json({"ok": True, **report.to_dict()})
            return
        c = report.to_dict()["counts"]
        console.print(
            f"Knowledge index [bold]{report.collection}[/]: {c['added']} added, "
            f"{c['updated']} updated, {c['removed']} removed, {c['unchanged']} unchanged; "
            f"{report.chunks_written} chunks written, {report.chunks_total} in total "
            f"({report.seconds:.2f} s)."
        )
        for skipped in report.skipped:
            err_console.print(f"[yellow]skipped[/] {skipped.path}: {skipped.reason}")

    guard(run, as_json)


@app.command()
def retrieve(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option("-k", "--top", min=1, max=50, help="How many chunks.")] = 4,
    as_json: JsonFlag = False,
) -> None:
    """Show the knowledge passages most relevant to QUERY."""
    from bot.knowledge import KnowledgeIndex

    def run() -> None:
        hits = KnowledgeIndex(common.settings()).search(query, k=k)
        if as_json:
            print_json({"ok": True, "query": query, "results": [h.to_dict() for h in hits]})
            return
        if not hits:
            console.print("No passages found. Run `coachbot ingest` first?")
        for rank, hit in enumerate(hits, start=1):
            meta = hit.metadata
            console.rule(
                f"[bold]{rank}[/]  score {hit.score:.3f}  {meta.get('title')} — "
                f"{meta.get('section')}  [dim]({meta.get('origin')})[/]"
            )
            console.print(hit.text, highlight=False)

    guard(run, as_json)


@app.command()
def check(
    text: Annotated[str, typer.Argument(help="A line an agent says (or would say).")],
    customer: Annotated[
        str | None,
        typer.Option("--customer", help="The customer's last words (helps spot reflecting back)."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Which pieces of the articles' advice TEXT follows or breaks, with the cited passages."""
    from bot.guidance.engine import DetectionContext, cited_source, default_engine
    from bot.inputs import clean_user_text

    def run() -> None:
        settings = common.settings()
        engine = default_engine(settings.knowledge_dir / "guidance.yaml")
        line = clean_user_text(text, max_tokens=400, count_tokens=None).text
        context = DetectionContext(customer_last=customer) if customer else None
        detections = engine.detect(line, context)
        results = []
        for d in detections:
            behaviour = engine.catalogue.get(d.behaviour_id)
            results.append(
                {
                    **d.to_dict(),
                    "description": behaviour.description,
                    "why": behaviour.why,
                    "source": cited_source(behaviour, settings.knowledge_dir),
                }
            )
        if as_json:
            print_json({"ok": True, "text": line, "detections": results})
            return
        if not results:
            console.print("No guidance behaviour detected in this line.")
        for r in results:
            colour, mark = ("green", "✔ do") if r["kind"] == "do" else ("red", "✘ avoid")
            console.print(
                f"[bold {colour}]{mark}[/] [bold]{r['name']}[/] "
                f"[dim]({r['method']}, confidence {r['confidence']:.2f})[/]"
            )
            console.print(f"   evidence: “{r['evidence']}”", highlight=False)
            console.print(f"   why: {r['why']}", highlight=False)
            src = r["source"]
            console.print(
                f"   source: [italic]{src['quote']}[/] — {src['title'] or src['origin']}"
                f" [dim]({src['origin']})[/]",
                highlight=False,
            )

    guard(run, as_json)


def _scenarios() -> dict[str, Any]:
    from bot.roleplay.scenarios import load_scenarios

    settings = common.settings()
    scenarios, problems = load_scenarios(settings.prompts_dir / "scenarios")
    for problem in problems:
        err_console.print(f"[yellow]skipped scenario[/] {problem.path}: {problem.reason}")
    return scenarios


@app.command()
def scenarios(as_json: JsonFlag = False) -> None:
    """List the role-play scenarios (from prompts/scenarios/)."""

    def run() -> None:
        found = _scenarios()
        if as_json:
            print_json(
                {
                    "ok": True,
                    "scenarios": [
                        {
                            "id": sc.id,
                            "title": sc.title,
                            "summary": sc.summary,
                            "customer": sc.customer.name,
                            "partly_wrong": sc.customer_partly_wrong is not None,
                            "difficulties": {
                                k: v.model_dump() for k, v in sorted(sc.difficulty.items())
                            },
                        }
                        for sc in found.values()
                    ],
                }
            )
            return
        table = Table(title="Role-play scenarios")
        for column in ("id", "title", "customer", "summary"):
            table.add_column(column, overflow="fold")
        for sc in found.values():
            table.add_row(sc.id, sc.title, sc.customer.name, sc.summary)
        console.print(table)

    guard(run, as_json)


def _turn_json(turn: Any) -> dict[str, Any]:
    return {
        "trainee": turn.trainee,
        "customer": turn.customer,
        "beat": turn.beat,
        "state": turn.state.model_dump(),
        "changes": [c.model_dump() for c in turn.changes],
        "detections": [
            {k: d[k] for k in ("behaviour_id", "kind", "evidence", "confidence")}
            for d in turn.detections
        ],
        "fallback_used": turn.fallback_used,
        "seconds": turn.seconds,
    }


@app.command()
def roleplay(
    scenario: Annotated[str, typer.Option("--scenario", "-s", help="Scenario id.")],
    difficulty: Annotated[
        str, typer.Option("--difficulty", "-d", help="easy | medium | hard")
    ] = "medium",
    seed: Annotated[int, typer.Option("--seed", help="Seed for a reproducible session.")] = 0,
    turns: Annotated[
        Path | None,
        typer.Option("--turns", help="A file of trainee lines, one per line (scripted run)."),
    ] = None,
    save: Annotated[
        Path | None, typer.Option("--save", help="Write the transcript JSON here.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Practise with an upset customer: interactive, or scripted with --turns.

    Interactive commands: /hint for a hint, /end to finish and see the debrief.
    """
    from bot.guidance.engine import default_engine
    from bot.inputs import EmptyInputError, clean_user_text
    from bot.llm import make_chat_model
    from bot.roleplay.scoring import format_scorecard, score_transcript
    from bot.roleplay.simulator import CustomerSimulator, run_script

    def setup() -> tuple[Any, list[str] | None]:
        found = _scenarios()
        if scenario not in found:
            raise CoachbotError(
                f"unknown scenario {scenario!r}", hint="see `coachbot scenarios` for the ids"
            )
        if difficulty not in {"easy", "medium", "hard"}:
            raise CoachbotError(f"unknown difficulty {difficulty!r}", hint="easy, medium or hard")
        lines = None
        if turns is not None:
            try:
                raw = turns.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise CoachbotError(f"cannot read {turns}: {exc}") from exc
            lines = [ln.strip() for ln in raw.splitlines() if ln.strip()]
            if not lines:
                raise CoachbotError(f"{turns} has no trainee lines")
        settings = common.settings()
        with status("Loading the customer…", as_json):
            model = make_chat_model(settings, temperature=0.8)
            engine = default_engine(settings.knowledge_dir / "guidance.yaml")
            engine.warm_up()
        sim = CustomerSimulator(found[scenario], model, engine, difficulty, seed)  # type: ignore[arg-type]
        return sim, lines

    sim, lines = guard(setup, as_json)
    name = sim.scenario.customer.name

    def model_notices(turn: Any) -> None:
        from bot.service import MODEL_FAILED

        if turn.model_notice:
            notice(turn.model_notice)
        if turn.model_error:
            notice(MODEL_FAILED.format(reason=turn.model_error))

    def show(turn: Any) -> None:
        if as_json:
            return
        console.print(f"[bold cyan]you>[/] {turn.trainee}", highlight=False)
        console.print(
            f"[bold red]{name}>[/] {turn.customer}  "
            f"[dim](anger {turn.state.anger}/10, {turn.beat})[/]",
            highlight=False,
        )
        model_notices(turn)

    if not as_json:
        console.print(f"[bold]{sim.scenario.title}[/] ({difficulty}) — {sim.scenario.summary}")
        console.print(f"[bold red]{name}>[/] {sim.scenario.opening_line}", highlight=False)
    if lines is not None:
        guard(lambda: run_script(sim, lines, show), as_json)
    else:
        console.print("[dim]Type your reply. /hint for a hint, /end to finish.[/]")
        while not sim.finished:
            try:
                line = console.input("[bold cyan]you> [/]") if sys.stdin.isatty() else input()
            except (EOFError, KeyboardInterrupt):
                break
            if line.strip() == "/end":
                break
            if line.strip() == "/hint":
                hint = sim.hint()
                console.print(f"[yellow]hint:[/] {hint.text} e.g. “{hint.example}”")
                console.print(f"[dim]source ({hint.source_origin}): {hint.source_quote}[/]")
                continue
            try:
                text = clean_user_text(line, max_tokens=300, count_tokens=None).text
            except EmptyInputError as exc:
                console.print(f"[yellow]{exc}[/]")
                continue
            try:
                turn = sim.respond(text)
            except Exception as exc:
                if os.environ.get("COACHBOT_DEBUG"):
                    raise
                console.print(f"[red]The customer could not answer ({type(exc).__name__}).[/]")
                continue
            console.print(
                f"[bold red]{name}>[/] {turn.customer}  [dim](anger {turn.state.anger}/10)[/]",
                highlight=False,
            )
            model_notices(turn)
    transcript = sim.end()
    card = guard(lambda: score_transcript(transcript, sim.guidance), as_json)
    if save is not None:
        save.write_text(transcript.model_dump_json(indent=2))
    if as_json:
        print_json(
            {
                "ok": True,
                "scenario": sim.scenario.id,
                "difficulty": difficulty,
                "seed": seed,
                "opening_line": sim.scenario.opening_line,
                "turns": [_turn_json(t) for t in transcript.turns],
                "outcome": transcript.outcome,
                "hints": [h.model_dump() for h in transcript.hints],
                "scorecard": card.model_dump(),
            }
        )
        return
    console.rule(f"Outcome: {transcript.outcome}")
    console.print(format_scorecard(card), highlight=False)


@app.command()
def score(
    transcript_file: Annotated[Path, typer.Argument(help="A transcript JSON (roleplay --save).")],
    as_json: JsonFlag = False,
) -> None:
    """The debrief scorecard for a saved role-play transcript."""
    from pydantic import ValidationError

    from bot.guidance.engine import default_engine
    from bot.roleplay.scoring import format_scorecard, score_transcript
    from bot.roleplay.simulator import Transcript

    def run() -> None:
        try:
            transcript = Transcript.model_validate_json(transcript_file.read_text("utf-8"))
        except OSError as exc:
            raise CoachbotError(f"cannot read {transcript_file}: {exc.strerror}") from exc
        except (ValidationError, ValueError) as exc:
            first = str(exc).splitlines()
            raise CoachbotError(
                f"{transcript_file} is not a coachbot transcript: {' '.join(first[:3])[:200]}"
            ) from exc
        engine = default_engine(common.settings().knowledge_dir / "guidance.yaml")
        card = score_transcript(transcript, engine)
        if as_json:
            print_json({"ok": True, "scorecard": card.model_dump()})
        else:
            console.print(format_scorecard(card), highlight=False)

    guard(run, as_json)


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="What the agent needs help with right now.")],
    k: Annotated[int, typer.Option("-k", min=1, max=10, help="Passages to retrieve.")] = 4,
    as_json: JsonFlag = False,
) -> None:
    """Ask the coach what to say right now: Say / Why / Avoid, with cited passages."""
    from bot.coach.coach import Coach
    from bot.guidance.engine import default_engine
    from bot.knowledge import KnowledgeIndex
    from bot.llm import make_chat_model

    def run() -> None:
        settings = common.settings()
        engine = default_engine(settings.knowledge_dir / "guidance.yaml")
        engine.warm_up()
        coach = Coach(make_chat_model(settings), KnowledgeIndex(settings), engine, k=k)
        final = None
        for event in coach.stream(question):
            if event.type == "citations" and not as_json and event.citations:
                names = ", ".join(
                    f"[{c.number}] {c.metadata.get('title')}" for c in event.citations
                )
                console.print(f"[dim]sources: {names}[/]", highlight=False)
            elif event.type == "token" and not as_json:
                console.print(event.text, end="", highlight=False, markup=False)
            elif event.type == "restart" and not as_json:
                console.print("\n[yellow](rewording: the first suggestion broke the guidance)[/]")
            elif event.type == "answer":
                final = event.answer
        assert final is not None
        if as_json:
            print_json({"ok": True, **final.model_dump()})
            return
        console.print()
        console.rule()
        console.print(final.answer, highlight=False)
        for c in final.citations:
            meta = c.metadata
            console.print(
                f"[bold][{c.number}][/] {meta.get('title')} — {meta.get('section')} "
                f"[dim]({meta.get('origin')})[/]\n    {c.text[:300]}",
                highlight=False,
            )
        if final.flags:
            console.print(f"[dim]flags: {', '.join(final.flags)}[/]")
        for text in final.notices:
            notice(text)

    guard(run, as_json)


@app.command()
def doctor(as_json: JsonFlag = False) -> None:
    """Check the model, llama.cpp, embeddings, tiktoken, the index and the API; say how to fix."""
    from bot.cli.doctor import run_checks

    def run() -> None:
        settings = common.settings()
        with status("Checking…", as_json):
            checks = run_checks(settings)
        failed = any(c.status == "fail" for c in checks)
        if as_json:
            print_json({"ok": not failed, "checks": [c.to_dict() for c in checks]})
        else:
            table = Table(title="coachbot doctor", show_lines=False)
            for column in ("check", "status", "detail", "fix"):
                table.add_column(column, overflow="fold")
            colours = {"ok": "green", "fail": "red", "warn": "yellow", "skip": "dim"}
            for c in checks:
                table.add_row(c.name, f"[{colours[c.status]}]{c.status}[/]", c.detail, c.fix or "")
            console.print(table)
        if failed:
            raise typer.Exit(1)

    guard(run, as_json)


@app.command()
def chat() -> None:
    """Chat with the configured model in the terminal (/reset clears, /quit or Ctrl-D ends)."""
    from bot.inputs import EmptyInputError
    from bot.llm import describe_llm, make_chat_model
    from bot.llm.chat import ChatSession

    settings = common.settings()

    def start() -> ChatSession:
        with console.status(f"Loading {describe_llm(settings)}…"):
            model = make_chat_model(settings)
            if hasattr(model, "engine"):
                _ = model.engine  # load now, not on the first message
        return ChatSession(model=model, context_tokens=settings.local_context)

    session = guard(start)
    console.print(
        f"[bold]coachbot chat[/] — {describe_llm(settings)}. "
        "Ask how to handle a customer. /reset clears the conversation, /quit ends."
    )
    while True:
        try:
            line = console.input("[bold cyan]you> [/]") if sys.stdin.isatty() else input()
        except (EOFError, KeyboardInterrupt):
            console.print()
            break
        if line.strip() in {"/quit", "/exit"}:
            break
        if line.strip() == "/reset":
            session.reset()
            console.print("[dim]conversation cleared[/]")
            continue
        try:
            prepared = session.prepare(line)
        except EmptyInputError as exc:
            console.print(f"[yellow]{exc}[/]")
            continue
        for cut in prepared.notices:
            console.print(f"[yellow]{cut}[/]")
        console.print("[bold green]coachbot> [/]", end="")
        try:
            for piece in session.stream_reply(prepared.text):
                console.print(piece, end="", highlight=False, markup=False)
            console.print()
            while session.notices:
                notice(session.notices.pop(0))
        except KeyboardInterrupt:
            console.print("\n[dim](reply stopped)[/]")
        except Exception as exc:  # the session goes on after a model failure
            if os.environ.get("COACHBOT_DEBUG"):
                raise
            console.print(
                f"\nThe model did not answer: {describe_failure(exc)}",
                style="red",
                markup=False,
                highlight=False,
            )


app.add_typer(users_app, name="users", help="Manage login users (hashed passwords, roles).")
app.add_typer(sessions_app, name="sessions", help="List and show saved sessions and scores.")

app.command("eval")(eval_command)


def main() -> None:  # pragma: no cover - entry point shim
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
