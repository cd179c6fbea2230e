"""The `coachbot` command line: a thin layer over the core modules.

Every command takes ``--json`` for machine-readable output and exits non-zero with a one-line
reason on failure (set ``COACHBOT_DEBUG=1`` to see the traceback instead). Practice and coaching
go through bot.service (the app's composition root), so they are cleaned, checked and saved as
in the app. The shared helpers are in bot/cli/common.py; this module registers every command.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from bot.cli import common
from bot.cli.admin import assign, assignments, report, sessions_app, users_app
from bot.cli.capacity import capacity_command
from bot.cli.common import (
    QUIT,
    JsonFlag,
    console,
    err_console,
    guard,
    line,
    notice,
    print_json,
    read_line,
    status,
)
from bot.cli.evals import eval_command
from bot.errors import CoachbotError, describe_failure
from bot.safety import install_log_redaction

if TYPE_CHECKING:
    from bot.coach.models import CoachAnswer, CoachEvent
    from bot.llm.chat import ChatSession
    from bot.roleplay.models import Hint, Turn
    from bot.roleplay.scoring import Scorecard
    from bot.service import CoachRun, PracticeRun

app = typer.Typer(
    name="coachbot",
    help="Practice and live coaching for agents facing upset customers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

NoSave = Annotated[
    bool,
    typer.Option("--no-save", help="Do not save the session (see `coachbot sessions list`)."),
]
UNSAVED = (
    "The database is still unavailable: this session was not saved yet. It is kept in the "
    "write journal of the data directory and saved the next time coachbot runs with the "
    "database back."
)


@app.callback()
def _setup() -> None:
    # Runs before every command: core warnings become notices instead of bare log lines, and
    # no log line holds a key or URL credentials.
    common.start_command()
    install_log_redaction(_known_secrets())


def _known_secrets() -> list[str | None]:
    try:
        return [common.settings().api_key]
    except Exception:  # invalid settings: the command itself reports them
        return []


@app.command()
def ingest(
    path: Annotated[
        Path | None, typer.Argument(help="A file or folder under knowledge/ (default: all).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Build or refresh the knowledge index from knowledge/ (only changed files are redone)."""

    def run() -> None:
        index = common.services().knowledge_index()
        with status("Indexing knowledge…", as_json):
            report = index.ingest(path)
        if as_json:
            print_json({"ok": True, **report.to_dict()})
            return
        c = report.to_dict()["counts"]
        console.print(
            line(
                "Knowledge index ",
                (report.collection, "bold"),
                f": {c['added']} added, {c['updated']} updated, {c['removed']} removed, "
                f"{c['unchanged']} unchanged; {report.chunks_written} chunks written, "
                f"{report.chunks_total} in total ({report.seconds:.2f} s).",
            )
        )
        for skipped in report.skipped:
            err_console.print(line(("skipped", "yellow"), f" {skipped.path}: {skipped.reason}"))

    guard(run, as_json)


@app.command()
def retrieve(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    k: Annotated[int, typer.Option("-k", "--top", min=1, max=50, help="How many chunks.")] = 4,
    as_json: JsonFlag = False,
) -> None:
    """Show the knowledge passages most relevant to QUERY, with the sentences that matched."""
    from rich.text import Text

    def run() -> None:
        hits = common.services().knowledge_index().search(query, k=k)
        if as_json:
            print_json({"ok": True, "query": query, "results": [h.to_dict() for h in hits]})
            return
        if not hits:
            console.print("No passages found. Run `coachbot ingest` first?")
        for rank, hit in enumerate(hits, start=1):
            meta = hit.metadata
            console.rule(
                line(
                    (str(rank), "bold"),
                    f"  score {hit.score:.3f}  {meta.get('title')} — {meta.get('section')}  ",
                    (f"({meta.get('origin')})", "dim"),
                )
            )
            passage = Text(hit.text)
            for start, end in hit.spans:
                passage.stylize("bold yellow", start, end)
            console.print(passage, highlight=False)
            for sentence in hit.sentences:
                console.print(line(("matched: ", "dim"), f"“{sentence}”"), highlight=False)

    guard(run, as_json)


# --------------------------------------------------------------------------- check


def _detections(text: str, customer: str | None) -> tuple[str, list[dict[str, Any]]]:
    """The cleaned line and the guidance behaviours it follows or breaks, with their sources."""
    from bot.guidance.engine import DetectionContext, cited_source
    from bot.inputs import clean_user_text

    services = common.services()
    settings, engine = services.settings, services.guidance
    cleaned = clean_user_text(text, max_tokens=400, count_tokens=None).text
    context = DetectionContext(customer_last=customer) if customer else None
    results = []
    for d in engine.detect(cleaned, context):
        behaviour = engine.catalogue.get(d.behaviour_id)
        results.append(
            {
                **d.to_dict(),
                "description": behaviour.description,
                "why": behaviour.why,
                "source": cited_source(behaviour, settings.knowledge_dir),
            }
        )
    return cleaned, results


def _print_detection(r: dict[str, Any]) -> None:
    colour, mark = ("green", "✔ do") if r["kind"] == "do" else ("red", "✘ avoid")
    sure = "" if r.get("certain", True) else "; possible: not counted, the customer ignores it"
    how = f"({r['method']}, confidence {r['confidence']:.2f}{sure})"
    console.print(line((mark, f"bold {colour}"), " ", (r["name"], "bold"), " ", (how, "dim")))
    console.print(line(f"   evidence: “{r['evidence']}”"))
    console.print(line(f"   why: {r['why']}"))
    src = r["source"]
    console.print(
        line(
            "   source: ",
            (src["quote"], "italic"),
            f" — {src['title'] or src['origin']} ",
            (f"({src['origin']})", "dim"),
        )
    )


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

    def run() -> None:
        cleaned, results = _detections(text, customer)
        if as_json:
            print_json({"ok": True, "text": cleaned, "detections": results})
            return
        if not results:
            console.print("No guidance behaviour detected in this line.")
        for r in results:
            _print_detection(r)

    guard(run, as_json)


# --------------------------------------------------------------------------- scenarios


def _scenarios() -> dict[str, Any]:
    from bot.roleplay.scenarios import load_scenarios

    scenarios, problems = load_scenarios(common.settings().prompts_dir / "scenarios")
    for problem in problems:
        err_console.print(
            line(("skipped scenario", "yellow"), f" {problem.path}: {problem.reason}")
        )
    return scenarios


def _scenario_json(sc: Any) -> dict[str, Any]:
    return {
        "id": sc.id,
        "title": sc.title,
        "summary": sc.summary,
        "customer": sc.customer.name,
        "partly_wrong": sc.customer_partly_wrong is not None,
        "difficulties": {k: v.model_dump() for k, v in sorted(sc.difficulty.items())},
    }


@app.command()
def scenarios(as_json: JsonFlag = False) -> None:
    """List the role-play scenarios (from prompts/scenarios/)."""

    def run() -> None:
        found = _scenarios()
        if as_json:
            print_json({"ok": True, "scenarios": [_scenario_json(sc) for sc in found.values()]})
            return
        table = Table(title="Role-play scenarios")
        for column in ("id", "title", "customer", "summary"):
            table.add_column(column, overflow="fold")
        for sc in found.values():
            table.add_row(Text(sc.id), Text(sc.title), Text(sc.customer.name), Text(sc.summary))
        console.print(table)

    guard(run, as_json)


@app.command()
def rubric(as_json: JsonFlag = False) -> None:
    """What the practice debrief checks: every check, its points, why, and the article behind it."""
    from bot.roleplay.scoring import format_rubric

    def run() -> None:
        card = common.services().rubric()
        if as_json:
            print_json({"ok": True, "rubric": card.model_dump()})
        else:
            console.print(line(format_rubric(card)))

    guard(run, as_json)


def _read_answer_lines(multi: bool) -> str | None:
    """One answer: a line, or for a list, lines until an empty one. None at the end of input."""
    first = read_line("> ")
    if first is None or not multi or first.strip().lower() in ("skip", "stop"):
        return first
    lines = [first]
    while (more := read_line("> ")) not in (None, ""):
        lines.append(str(more))
    return "\n".join(lines)


def _ask_builder_step(svc: Any, key: str) -> Any:
    """One step's answer, asked on stderr (stdout keeps the result, e.g. for --json)."""
    from bot.cli.common import err_console
    from bot.roleplay.builder import STEP_BY_KEY, read_answer

    step = STEP_BY_KEY[key]
    multi = step.kind != "text"
    while True:
        hint = " (one per line, an empty line ends)" if multi else ""
        err_console.print(line((svc.builder_question(key) + hint, "bold")))
        text = _read_answer_lines(multi)
        if text is None or text.strip().lower() == "stop":
            raise CoachbotError("the scenario builder stopped: nothing was saved")
        try:
            return read_answer(step, text)
        except CoachbotError as exc:
            err_console.print(line((f"{exc} ({exc.hint})" if exc.hint else str(exc), "yellow")))


@app.command("build-scenario")
def build_scenario(as_json: JsonFlag = False) -> None:
    """Write a new role-play scenario by answering one question per step (type stop to quit)."""
    from bot.roleplay.builder import STEPS

    def run() -> Any:
        svc = common.services()
        answers: dict[str, Any] = {}
        pending = [step.key for step in STEPS]
        for _ in range(3):
            for key in pending:
                answers[key] = _ask_builder_step(svc, key)
            scenario, problems = svc.build_scenario(answers)
            if scenario is not None:
                return scenario, svc.save_scenario(scenario)
            for key, problem in problems.items():
                common.err_console.print(line((f"{key}: {problem}", "yellow")))
            pending = list(problems)
        raise CoachbotError("the scenario is still not valid: nothing was saved")

    scenario, path = guard(run, as_json)
    if as_json:
        print_json({"ok": True, "scenario": scenario.id, "version": scenario.version,
                    "path": str(path)})  # fmt: skip
    else:
        console.print(line(f"Saved {scenario.id} (version {scenario.version}) to {path}."))


# --------------------------------------------------------------------------- roleplay


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


def _read_turns(path: Path) -> list[str]:
    """The scripted trainee lines of ``--turns`` (blank lines skipped)."""
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CoachbotError(f"cannot read {path}: {exc}") from exc
    lines = [ln.strip() for ln in raw.splitlines() if ln.strip()]
    if not lines:
        raise CoachbotError(f"{path} has no trainee lines")
    return lines


class _Saving:
    """Notices of a practice or coach run, shown once, and whether its saves got through."""

    def __init__(self, run: PracticeRun | CoachRun) -> None:
        self.run = run
        self.notices: list[str] = []

    def show(self, notices: list[str]) -> None:
        for text in notices:
            notice(text)
            if text not in self.notices:
                self.notices.append(text)

    def unsaved(self) -> bool:
        """After the last save: are writes still waiting in the journal? (They are saved the
        next time coachbot runs.)"""
        from bot.service import SAVE_FAILED

        if not self.run.saving or SAVE_FAILED not in self.notices:
            return False
        left = self.run.services.writes.replay()
        if left:
            self.show([UNSAVED])
        return bool(left)

    def print_saved(self) -> None:
        """Where the session was saved (nothing with --no-save or when saving failed)."""
        if self.run.saving and not self.unsaved():
            short = self.run.session_id[:8]
            console.print(
                line((f"Saved as session {short} (coachbot sessions show {short}).", "dim"))
            )


class _Practice:
    """A PracticeRun driven from the terminal (turns are not printed with --json)."""

    def __init__(self, run: PracticeRun, as_json: bool) -> None:
        self.run = run
        self.as_json = as_json
        self.saving = _Saving(run)
        self.name = run.scenario.customer.name

    @classmethod
    def start(
        cls, scenario: str, difficulty: str, seed: int, save: bool, as_json: bool
    ) -> _Practice:
        from bot.service import PracticeRun

        with status("Loading the customer…", as_json):
            run = PracticeRun(common.services(), scenario, difficulty, seed, save=save)
        return cls(run, as_json)

    def notices(self) -> None:
        self.saving.show(self.run.take_notices())

    def print_opening(self) -> None:
        sc = self.run.scenario
        console.print(
            line((sc.title, "bold"), f" ({self.run.simulator.difficulty}) — {sc.summary}")
        )
        console.print(line((f"{self.name}>", "bold red"), " ", sc.opening_line))

    def print_turn(self, turn: Turn, scripted: bool) -> None:
        if scripted:
            console.print(line(("you>", "bold cyan"), " ", turn.trainee))
        mood = f"anger {turn.state.anger}/10" + (f", {turn.beat}" if scripted else "")
        console.print(
            line((f"{self.name}>", "bold red"), " ", turn.customer, (f"  ({mood})", "dim"))
        )

    def print_hint(self, hint: Hint) -> None:
        console.print(line(("hint:", "yellow"), f" {hint.text} e.g. “{hint.example}”"))
        console.print(line((f"source ({hint.source_origin}): {hint.source_quote}", "dim")))

    def script(self, lines: list[str]) -> None:
        """Play ``lines`` (cleaned and cut as in the app) until they or the session end."""
        from bot.inputs import EmptyInputError

        for number, text in enumerate(lines, start=1):
            if self.run.finished:
                break
            try:
                turn = self.run.respond(text)
            except EmptyInputError:
                self.saving.show([f"Line {number} of the script has no text: skipped."])
                continue
            if not self.as_json:
                self.print_turn(turn, scripted=True)
            self.notices()

    def interactive(self) -> None:
        weights = self.run.services.rubric().weighting
        checks = ", ".join(f"{name} {points}" for name, points in weights.items())
        console.print(line((f"The debrief checks {checks} (coachbot rubric: why).", "dim")))
        console.print(line(("Type your reply. /hint for a hint, /end to finish.", "dim")))
        while not self.run.finished:
            text = read_line()
            if text is None or text.strip() == "/end":
                break
            if text.strip() == "/hint":
                self.print_hint(self.run.hint())
            else:
                self._reply(text)
            self.notices()

    def _reply(self, text: str) -> None:
        from bot.inputs import EmptyInputError

        try:
            turn = self.run.respond(text)
        except EmptyInputError as exc:
            console.print(line((str(exc), "yellow")))
            return
        except Exception as exc:
            if os.environ.get("COACHBOT_DEBUG"):
                raise
            reason = f"The customer could not answer ({type(exc).__name__})."
            console.print(line((reason, "red")))
            return
        self.print_turn(turn, scripted=False)

    def end(self) -> Scorecard:
        card = self.run.end()
        self.notices()
        return card

    def print_result(self, card: Scorecard) -> None:
        from bot.roleplay.scoring import format_scorecard

        transcript = self.run.simulator.transcript
        if self.as_json:
            self.saving.unsaved()
            print_json(
                {
                    "ok": True,
                    "scenario": transcript.scenario_id,
                    "difficulty": transcript.difficulty,
                    "seed": transcript.seed,
                    "opening_line": transcript.opening_line,
                    "turns": [_turn_json(t) for t in transcript.turns],
                    "outcome": transcript.outcome,
                    "hints": [h.model_dump() for h in transcript.hints],
                    "scorecard": card.model_dump(),
                    "session_id": self.run.session_id if self.run.saving else None,
                    "notices": self.saving.notices,
                }
            )
            return
        console.rule(Text(f"Outcome: {transcript.outcome}"))
        console.print(line(format_scorecard(card)))
        self.saving.print_saved()


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
    no_save: NoSave = False,
    as_json: JsonFlag = False,
) -> None:
    """Practise with an upset customer: interactive, or scripted with --turns.

    Lines are cleaned and cut (200 tokens) as in the app; the session is saved unless --no-save.

    Interactive commands: /hint for a hint, /end to finish and see the debrief.
    """
    lines = guard(lambda: _read_turns(turns), as_json) if turns is not None else None
    practice = guard(
        lambda: _Practice.start(scenario, difficulty, seed, not no_save, as_json), as_json
    )
    if not as_json:
        practice.print_opening()
    if lines is None:
        practice.interactive()
    else:
        guard(lambda: practice.script(lines), as_json)
    card = guard(practice.end, as_json)
    if save is not None:
        save.write_text(practice.run.simulator.transcript.model_dump_json(indent=2))
    practice.print_result(card)


@app.command()
def score(
    transcript_file: Annotated[Path, typer.Argument(help="A transcript JSON (roleplay --save).")],
    as_json: JsonFlag = False,
) -> None:
    """The debrief scorecard for a saved role-play transcript."""
    from pydantic import ValidationError

    from bot.roleplay.models import Transcript
    from bot.roleplay.scoring import format_scorecard, score_transcript

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
        card = score_transcript(transcript, common.services().guidance)
        if as_json:
            print_json({"ok": True, "scorecard": card.model_dump()})
        else:
            console.print(line(format_scorecard(card)))

    guard(run, as_json)


# --------------------------------------------------------------------------- ask


class _Draft:
    """What the terminal shows while the coach writes: its sources and the draft so far."""

    def __init__(self) -> None:
        self.sources = ""
        self.text = ""
        self.reworded = False

    def add(self, event: CoachEvent) -> None:
        if event.type == "citations" and event.citations:
            names = ", ".join(f"[{c.number}] {c.metadata.get('title')}" for c in event.citations)
            self.sources = f"sources: {names}"
        elif event.type == "token":
            self.text += event.text
        elif event.type == "restart":
            self.text, self.reworded = "", True

    def __rich__(self) -> Text:
        note = "(rewording: the first suggestion broke the guidance)\n" if self.reworded else ""
        return line((self.sources + "\n", "dim"), (note, "yellow"), (self.text, "dim"))


class _Coaching:
    """A CoachRun driven from the terminal: one question, or one after another."""

    def __init__(self, run: CoachRun, as_json: bool) -> None:
        self.run = run
        self.as_json = as_json
        self.saving = _Saving(run)

    @classmethod
    def start(cls, k: int, save: bool, as_json: bool) -> _Coaching:
        from bot.service import CoachRun

        with status("Loading the coach…", as_json):
            run = CoachRun(common.services(), save=save)
        run.coach.k = k  # passages to retrieve (-k)
        return cls(run, as_json)

    def answer(self, question: str) -> CoachAnswer:
        """The coach's answer to ``question``, printed once (unless --json); keeps the history.

        While the model writes, its draft streams in a transient area of the terminal that the
        checked answer then replaces, so the answer is never printed twice."""
        from rich.live import Live

        final = None
        draft = _Draft()
        live = Live(draft, console=console, transient=True, auto_refresh=False)
        with live if not self.as_json else contextlib.nullcontext():
            for event in self.run.stream(question):
                if event.type == "answer":
                    final = event.answer
                elif not self.as_json:
                    draft.add(event)
                    live.refresh()
        assert final is not None
        if not self.as_json:
            self._print_answer(final)
        self.saving.show(final.notices + self.run.save.take_notices())
        return final

    def _print_answer(self, final: CoachAnswer) -> None:
        console.print(line(final.answer))
        for c in final.citations:
            meta = c.metadata
            console.print(
                line(
                    (f"[{c.number}]", "bold"),
                    f" {meta.get('title')} — {meta.get('section')} ",
                    (f"({meta.get('origin')})", "dim"),
                    f"\n    {c.text[:300]}",
                )
            )
        if final.flags:
            console.print(line((f"flags: {', '.join(final.flags)}", "dim")))

    def to_json(self, answer: CoachAnswer) -> dict[str, Any]:
        session_id = self.run.session_id if self.run.saving else None
        return {"ok": True, **answer.model_dump(), "session_id": session_id}

    def loop(self) -> None:
        """Questions from stdin until /quit or its end; follow-ups see the earlier exchanges."""
        if not self.as_json:
            console.print(
                "[bold]coachbot ask[/] — what is happening on your call? Follow-up questions "
                "use the conversation so far. /quit ends."
            )
        while (text := read_line()) is not None and text.strip() not in QUIT:
            self._answer_one(text)

    def _answer_one(self, text: str) -> None:
        """Answer one question of the loop; a failure is reported and the loop goes on."""
        from bot.inputs import EmptyInputError

        try:
            answer = self.answer(text)
        except KeyboardInterrupt:
            console.print("\n(answer stopped)", style="dim")
            return
        except Exception as exc:
            if os.environ.get("COACHBOT_DEBUG"):
                raise
            self._print_failure(exc, "yellow" if isinstance(exc, EmptyInputError) else "red")
            return
        if self.as_json:
            print(json.dumps(self.to_json(answer), ensure_ascii=False, default=str))

    def _print_failure(self, exc: Exception, colour: str) -> None:
        reason = describe_failure(exc)
        if self.as_json:
            print(json.dumps({"ok": False, "error": reason}, ensure_ascii=False))
        else:
            console.print(line((reason, colour)))

    def finish(self) -> None:
        if self.as_json:
            self.saving.unsaved()
        elif self.run.history:
            self.saving.print_saved()


def _refuse_empty(question: str) -> None:
    """An empty question is refused before the model and the index are loaded."""
    from bot.coach.coach import MAX_QUESTION_TOKENS
    from bot.inputs import clean_user_text

    clean_user_text(question, max_tokens=MAX_QUESTION_TOKENS, count_tokens=None)


@app.command()
def ask(
    question: Annotated[
        str | None,
        typer.Argument(help="What the agent needs help with right now (none: ask in a loop)."),
    ] = None,
    k: Annotated[int, typer.Option("-k", min=1, max=10, help="Passages to retrieve.")] = 4,
    no_save: NoSave = False,
    as_json: JsonFlag = False,
) -> None:
    """Ask the coach what to say right now: Say / Why / Avoid, with cited passages.

    Without QUESTION: one question after another, follow-ups use the conversation; /quit ends.

    With --json, each of those answers is one line of JSON. Saved as in the app unless --no-save.
    """
    if question is not None:
        guard(lambda: _refuse_empty(question), as_json)
    coaching = guard(lambda: _Coaching.start(k, not no_save, as_json), as_json)
    if question is None:
        coaching.loop()
    else:
        answer = guard(lambda: coaching.answer(question), as_json)
        if as_json:
            print_json(coaching.to_json(answer))
    coaching.finish()


# --------------------------------------------------------------------------- doctor, chat


@app.command()
def doctor(as_json: JsonFlag = False) -> None:
    """Check the model, llama.cpp, embeddings, tiktoken, the index and the API; say how to fix."""
    from bot.cli.doctor import run_checks

    def run() -> None:
        with status("Checking…", as_json):
            checks = run_checks(common.settings())
        failed = any(c.status == "fail" for c in checks)
        if as_json:
            print_json({"ok": not failed, "checks": [c.to_dict() for c in checks]})
        else:
            table = Table(title="coachbot doctor", show_lines=False)
            for column in ("check", "status", "detail", "fix"):
                table.add_column(column, overflow="fold")
            colours = {"ok": "green", "fail": "red", "warn": "yellow", "skip": "dim"}
            for c in checks:
                table.add_row(
                    Text(c.name),
                    Text(c.status, colours[c.status]),
                    Text(c.detail),
                    Text(c.fix or ""),
                )
            console.print(table)
        if failed:
            raise typer.Exit(1)

    guard(run, as_json)


def _start_chat() -> tuple[ChatSession, str]:
    from bot.llm import describe_llm

    services = common.services()
    described = describe_llm(services.settings)
    with status(f"Loading {described}…"):
        session = services.chat_session()
        if hasattr(session.model, "engine"):
            _ = session.model.engine  # load now, not on the first message
    return session, described


def _chat_reply(session: ChatSession, text: str) -> None:
    """Stream the model's reply to ``text``; a model failure is reported, the chat goes on."""
    from bot.inputs import EmptyInputError

    try:
        prepared = session.prepare(text)
    except EmptyInputError as exc:
        console.print(line((str(exc), "yellow")))
        return
    for cut in prepared.notices:
        console.print(line((cut, "yellow")))
    console.print("[bold green]coachbot> [/]", end="")
    try:
        for piece in session.stream_reply(prepared.text):
            console.print(line(piece), end="")
        console.print()
        while session.notices:
            notice(session.notices.pop(0))
    except KeyboardInterrupt:
        console.print("\n[dim](reply stopped)[/]")
    except Exception as exc:  # the session goes on after a model failure
        if os.environ.get("COACHBOT_DEBUG"):
            raise
        console.print(line((f"\nThe model did not answer: {describe_failure(exc)}", "red")))


@app.command()
def chat() -> None:
    """Chat with the configured model in the terminal (/reset clears, /quit or Ctrl-D ends)."""
    session, described = guard(_start_chat)
    console.print(
        line(
            ("coachbot chat", "bold"),
            f" — {described}. Ask how to handle a customer. /reset clears the conversation, "
            "/quit ends.",
        )
    )
    while True:
        text = read_line()
        if text is None:
            console.print()
            break
        if text.strip() in QUIT:
            break
        if text.strip() == "/reset":
            session.reset()
            console.print("[dim]conversation cleared[/]")
            continue
        _chat_reply(session, text)


app.add_typer(users_app, name="users", help="Manage login users (hashed passwords, roles).")
app.add_typer(sessions_app, name="sessions", help="List and show saved sessions and scores.")

app.command("eval")(eval_command)
app.command("capacity")(capacity_command)
app.command("report")(report)
app.command("assign")(assign)
app.command("assignments")(assignments)


def main() -> None:  # pragma: no cover - entry point shim
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
