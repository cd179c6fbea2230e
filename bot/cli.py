"""The `coachbot` command line: a thin layer over the core modules.

Every command takes ``--json`` for machine-readable output and exits non-zero with a one-line
reason on failure (set ``COACHBOT_DEBUG=1`` to see the traceback instead).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from bot.config import get_settings
from bot.errors import CoachbotError

app = typer.Typer(
    name="coachbot",
    help="Practice and live coaching for agents facing upset customers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def _fail(message: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"ok": False, "error": message}))
    err_console.print(f"[bold red]coachbot: error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _guard(fn: Callable[[], T], as_json: bool = False) -> T:
    """Run ``fn``; turn any failure into a one-line message and exit code 1."""
    try:
        return fn()
    except typer.Exit:
        raise
    except CoachbotError as exc:
        _fail(str(exc), as_json)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        raise typer.Exit(130) from None
    except Exception as exc:
        if os.environ.get("COACHBOT_DEBUG"):
            raise
        _fail(f"{type(exc).__name__}: {exc} (set COACHBOT_DEBUG=1 for details)", as_json)
    raise AssertionError("unreachable")


def _print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str))


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
        index = KnowledgeIndex(get_settings())
        with console.status("Indexing knowledge…", spinner="dots") if not as_json else _null():
            report = index.ingest(path)
        if as_json:
            _print_json({"ok": True, **report.to_dict()})
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

    _guard(run, as_json)


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@app.command()
def retrieve(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option("-k", "--top", min=1, max=50, help="How many chunks.")] = 4,
    as_json: JsonFlag = False,
) -> None:
    """Show the knowledge passages most relevant to QUERY."""
    from bot.knowledge import KnowledgeIndex

    def run() -> None:
        hits = KnowledgeIndex(get_settings()).search(query, k=k)
        if as_json:
            _print_json({"ok": True, "query": query, "results": [h.to_dict() for h in hits]})
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

    _guard(run, as_json)


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
    from bot.guidance import DetectionContext, cited_source, default_engine
    from bot.inputs import clean_user_text

    def run() -> None:
        settings = get_settings()
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
            _print_json({"ok": True, "text": line, "detections": results})
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

    _guard(run, as_json)


@app.command()
def doctor(as_json: JsonFlag = False) -> None:
    """Check the model, llama.cpp, embeddings, tiktoken, the index and the API; say how to fix."""
    from bot.doctor import run_checks

    def run() -> None:
        settings = get_settings()
        with console.status("Checking…") if not as_json else _null():
            checks = run_checks(settings)
        failed = any(c.status == "fail" for c in checks)
        if as_json:
            _print_json({"ok": not failed, "checks": [c.to_dict() for c in checks]})
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

    _guard(run, as_json)


@app.command()
def chat() -> None:
    """Chat with the configured model in the terminal (/reset clears, /quit or Ctrl-D ends)."""
    from bot.chat import ChatSession
    from bot.inputs import EmptyInputError
    from bot.llm import describe_llm, make_chat_model

    settings = get_settings()

    def start() -> ChatSession:
        with console.status(f"Loading {describe_llm(settings)}…"):
            model = make_chat_model(settings)
            if hasattr(model, "engine"):
                _ = model.engine  # load now, not on the first message
        return ChatSession(model=model, context_tokens=settings.local_context)

    session = _guard(start)
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
        for notice in prepared.notices:
            console.print(f"[yellow]{notice}[/]")
        console.print("[bold green]coachbot> [/]", end="")
        try:
            for piece in session.stream_reply(prepared.text):
                console.print(piece, end="", highlight=False, markup=False)
            console.print()
        except KeyboardInterrupt:
            console.print("\n[dim](reply stopped)[/]")
        except Exception as exc:  # the session goes on after a model failure
            if os.environ.get("COACHBOT_DEBUG"):
                raise
            console.print(f"\n[red]The model failed to answer ({type(exc).__name__}: {exc}).[/]")


def main() -> None:  # pragma: no cover - entry point shim
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
