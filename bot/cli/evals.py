"""``coachbot eval``: a thin adapter over :mod:`bot.evals` (registered in bot/cli/main.py).

Exit codes: 0 no regression (without ``--baseline``: every case passed); 1 a regression against
the baseline (without one: a failing case); 2 the eval could not run (bad suite, filter,
baseline or option, or the model is unavailable); 130 interrupted.

The settings are the process's (``get_settings()``), or a ``Settings`` given as the Click
context object (tests: ``CliRunner().invoke(app, ["eval", ...], obj=settings)``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bot.cli import common
from bot.cli.common import SETUP_ERROR, JsonFlag, console, err_console, guard

if TYPE_CHECKING:
    from bot.config import Settings


def eval_command(
    ctx: typer.Context,
    suites: Annotated[
        list[str] | None,
        typer.Argument(help="Suite names in evals/suites/ or paths to suite files (default: all)."),
    ] = None,
    filter_: Annotated[
        str | None,
        typer.Option(
            "--filter",
            help="Which cases: id:GLOB, tag:T, kind:K, suite:S, scenario:ID with and/or/not/(). "
            "A bare word matches the case id.",
        ),
    ] = None,
    repeat: Annotated[
        int, typer.Option("--repeat", min=1, max=100, help="Runs per case (different seeds).")
    ] = 1,
    workers: Annotated[
        int, typer.Option("--workers", min=1, max=32, help="Cases run in parallel.")
    ] = 1,
    baseline: Annotated[
        Path | None,
        typer.Option("--baseline", help="Compare with this baseline; exit 1 on a regression."),
    ] = None,
    save_baseline: Annotated[
        Path | None, typer.Option("--save-baseline", help="Write this run as a baseline.")
    ] = None,
    report_dir: Annotated[
        Path | None,
        typer.Option("--report", help="Write report.html, junit.xml and results.json here."),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Neither read nor write the response cache.")
    ] = False,
    threshold: Annotated[
        float | None,
        typer.Option(
            "--threshold", min=0.0, max=1.0, help="Pass rate a case needs (overrides suites)."
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Run eval suites against the bot: pass rates, baseline regressions, reports."""
    from bot.config import Settings

    given = ctx.obj if isinstance(ctx.obj, Settings) else None  # tests pass Settings as obj
    code = guard(
        lambda: _run(
            given,
            suites or [],
            filter_,
            repeat,
            workers,
            baseline,
            save_baseline,
            report_dir,
            no_cache,
            threshold,
            as_json,
        ),
        as_json,
        SETUP_ERROR,
    )
    raise typer.Exit(code)


def _run(
    given: Settings | None,
    names: list[str],
    filter_: str | None,
    repeat: int,
    workers: int,
    baseline_path: Path | None,
    save_path: Path | None,
    report_dir: Path | None,
    no_cache: bool,
    threshold: float | None,
    as_json: bool,
) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from bot.config import PROJECT_ROOT
    from bot.errors import DataValidationError
    from bot.evals.baseline import compare, load_baseline, save_baseline
    from bot.evals.reports import print_terminal, write_reports
    from bot.evals.results import exit_code_for
    from bot.evals.runner import SCRIPTS_DIR, RunOptions, run_evals
    from bot.evals.suites import Checker, load_suites, parse_filter, resolve_suites
    from bot.guidance.engine import load_catalogue
    from bot.roleplay.scenarios import load_scenarios

    settings = given or common.settings()
    catalogue = load_catalogue(settings.knowledge_dir / "guidance.yaml")
    scenarios, _ = load_scenarios(settings.prompts_dir / "scenarios")
    checker = Checker.for_catalogue(catalogue, scenarios, SCRIPTS_DIR)
    suites = load_suites(resolve_suites(names, PROJECT_ROOT / "evals" / "suites"), checker)
    if filter_ is not None:
        keep = parse_filter(filter_)
        for suite in suites:
            suite.cases = [c for c in suite.cases if keep(suite.name, c)]
        suites = [s for s in suites if s.cases]
        if not suites:
            raise DataValidationError(f"no case matches --filter {filter_!r}")
    baseline = load_baseline(baseline_path) if baseline_path is not None else None

    total = sum(len(s.cases) for s in suites) * repeat
    options = RunOptions(
        repeat=repeat,
        workers=workers,
        use_cache=not no_cache,
        threshold=threshold,
        filter=filter_,
        scripts_dir=SCRIPTS_DIR,
    )
    with Progress(
        TextColumn("[bold]eval[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=err_console,
        transient=True,
    ) as progress:
        task = progress.add_task("starting…", total=total)

        def advance(key: str) -> None:
            progress.update(task, advance=1, description=key)

        report = run_evals(suites, settings, options, advance, None, catalogue, scenarios)

    if baseline is not None and baseline_path is not None:
        report.baseline = compare(report, baseline, str(baseline_path))
    report.exit_code = exit_code_for(report)
    if save_path is not None:
        save_baseline(report, save_path)
    written = write_reports(report, report_dir) if report_dir is not None else {}
    if as_json:
        print(
            json.dumps(
                {"ok": report.exit_code == 0, **report.to_json()}, ensure_ascii=False, indent=1
            )
        )
    else:
        print_terminal(report, console)
        for kind, path in written.items():
            console.print(f"{kind} report: {path}", highlight=False)
        if save_path is not None:
            console.print(f"baseline saved: {save_path}", highlight=False)
    return report.exit_code
