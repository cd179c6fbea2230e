"""Eval reports: a terminal table (rich), a static HTML page, JUnit XML and JSON."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import jinja2
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bot.evals.results import BaselineDiff, CaseResult, GuidanceSummary, RunReport
from bot.rendering import display_text, html_environment
from bot.safety import redact

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
EXIT_CODES = {
    0: "no regression against the baseline (without a baseline: every case passed)",
    1: "a case that passed in the baseline fails now (without a baseline: a case failed)",
    2: "the eval could not run (bad suite, filter, baseline or option; model unavailable)",
}


def exit_meaning(report: RunReport) -> str:
    if report.baseline is not None:
        if report.exit_code:
            diff = report.baseline
            count = len(diff.newly_failing) + len(diff.newly_failing_checks)
            return f"{count} regression(s) against the baseline"
        return "no regression against the baseline"
    if report.exit_code:
        return f"{report.failed} case(s) failed (no baseline given)"
    return "every case passed"


def _first_problem(case: CaseResult) -> str:
    for run in case.runs:
        if run.error:
            return f"error: {run.error}"
        for a in run.failures:
            where = f"{a.where}: " if a.where else ""
            return f"{where}{a.label}: {a.why}"
    return ""


def _result_cell(case: CaseResult, repeat: int) -> str:
    colour = {"pass": "green", "fail": "red", "error": "magenta"}[case.status]
    text = case.status.upper()
    if repeat > 1:
        text += f" {case.pass_rate:.0%}"
    return f"[{colour}]{text}[/]"


def summary_line(report: RunReport) -> str:
    kinds = ", ".join(
        f"{kind} {row['passed']}/{row['cases']}" for kind, row in report.counts_by_kind().items()
    )
    return (
        f"{report.total} cases: {report.passed} passed, {report.failed} failed ({kinds}) "
        f"in {report.seconds:.1f} s; cache {report.cache_hits} hits, {report.cache_misses} misses"
    )


def _share(part: int, whole: int, rate: float | None) -> str:
    return f"{part}/{whole} ({rate:.1%})" if rate is not None else "n/a (no such line)"


def guidance_line(suite: str, g: GuidanceSummary) -> str:
    """A guidance suite's aggregate in one line."""
    errors = f", {g.errors} errored" if g.errors else ""
    return (
        f"{suite} (guidance engine, {g.lines} lines{errors}): "
        f"avoid precision {g.avoid.precision:.3f} recall {g.avoid.recall:.3f}; "
        f"do precision {g.do.precision:.3f} recall {g.do.recall:.3f}; "
        f"false triggers {_share(g.false_triggers, g.lines_without_avoid, g.false_trigger_rate)}; "
        f"neutral clean {_share(g.neutral_clean, g.neutral_lines, g.neutral_clean_rate)}"
    )


def _print_guidance(report: RunReport, console: Console) -> None:
    for suite, summary in report.guidance_summary.items():
        console.print(guidance_line(suite, summary), highlight=False)


def _print_table(report: RunReport, console: Console) -> None:
    table = Table(title=f"coachbot eval — {report.model}", show_lines=False)
    table.add_column("case", no_wrap=True)
    table.add_column("kind")
    table.add_column("result", no_wrap=True)
    table.add_column("score", justify="right")
    table.add_column("time", justify="right")
    for case in report.cases:
        table.add_row(
            Text(case.key),
            Text(case.kind),
            _result_cell(case, report.repeat),
            f"{case.score:.2f}",
            f"{case.seconds:.1f}s",
        )
    console.print(table)


def _print_failures(report: RunReport, console: Console) -> None:
    failing = [c for c in report.cases if not c.passed]
    if failing:
        console.print("[bold]Failures[/] (first problem of each; every detail in --report):")
        for case in failing:  # the problem quotes model output: printed verbatim
            problem = display_text(f" {case.key}: {_first_problem(case)[:300]}")
            console.print(Text("  ").append("✘", style="red").append(problem))


def _print_judge(report: RunReport, console: Console) -> None:
    if report.judge is not None:
        console.print(Text(f"judge: {report.judge.description}"))
        if report.judge.warning:
            console.print(Text("warning:", style="yellow").append(f" {report.judge.warning}"))


def _red(label: str) -> Text:
    return Text(label, style="bold red")


def _baseline_lines(diff: BaselineDiff) -> list[Text]:
    """What changed against the baseline, one console line each (names printed verbatim)."""
    lines: list[Text] = []
    if diff.newly_failing:
        head = _red(f"newly failing ({len(diff.newly_failing)}):")
        lines.append(Text("  ") + head + Text(" " + ", ".join(diff.newly_failing)))
    lines += [
        Text("  ") + _red("newly failing check:") + Text(f" {check}")
        for check in diff.newly_failing_checks
    ]
    if diff.newly_passing:
        head = Text(f"newly passing ({len(diff.newly_passing)}):", style="green")
        lines.append(Text("  ") + head + Text(" " + ", ".join(diff.newly_passing)))
    if diff.unexplained_failures:
        head = _red(f"failing with no known_failure reason ({len(diff.unexplained_failures)}):")
        lines.append(Text("  ") + head + Text(" " + ", ".join(diff.unexplained_failures)))
    if diff.known_failures:
        lines.append(Text(f"  known failures ({len(diff.known_failures)}):"))
        lines += [Text(f"    {key}: {why}") for key, why in diff.known_failures.items()]
    if diff.stale_known_failures:
        lines.append(Text("  passing now, remove known_failure: "
                          + ", ".join(diff.stale_known_failures), style="green"))  # fmt: skip
    lines += [
        Text(f"  score {change.key}: {change.before:.2f} → {change.after:.2f}")
        for change in diff.score_changes
    ]
    if diff.new_cases:
        lines.append(Text(f"  not in the baseline: {', '.join(diff.new_cases)}"))
    if not (
        diff.newly_failing or diff.newly_failing_checks or diff.newly_passing or diff.score_changes
    ):
        lines.append(Text("  no change"))
    return lines


def _print_baseline(report: RunReport, console: Console) -> None:
    diff = report.baseline
    if diff is None:
        return
    console.print(Text(f"baseline {diff.baseline} ({diff.baseline_model}):"))
    for line in _baseline_lines(diff):
        console.print(line)


def print_terminal(report: RunReport, console: Console) -> None:
    _print_table(report, console)
    _print_failures(report, console)
    console.print(summary_line(report), highlight=False)
    _print_guidance(report, console)
    _print_judge(report, console)
    _print_baseline(report, console)
    colour = "green" if report.exit_code == 0 else "red"
    console.print(f"[{colour}]exit {report.exit_code}[/]: {exit_meaning(report)}", highlight=False)


def _environment() -> jinja2.Environment:
    # Outputs are model text: escaped (bot.rendering); the page also carries a CSP that loads
    # nothing from anywhere.
    return html_environment(
        TEMPLATES_DIR, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )


def render_html(report: RunReport) -> str:
    template = _environment().get_template("report.html.j2")
    return template.render(
        report=report,
        summary=summary_line(report),
        guidance_lines=[guidance_line(s, g) for s, g in report.guidance_summary.items()],
        exit_meaning=exit_meaning(report),
        first_problem=_first_problem,
    )


def _junit_properties(node: ET.Element, summary: GuidanceSummary | None) -> None:
    """A guidance suite's aggregate as testsuite properties (guidance.avoid.precision, ...)."""
    if summary is None:
        return
    values: dict[str, float | int | None] = {
        "lines": summary.lines,
        "false_trigger_rate": summary.false_trigger_rate,
        "neutral_clean_rate": summary.neutral_clean_rate,
    }
    for kind in ("avoid", "do"):
        scores = getattr(summary, kind)
        values[f"{kind}.precision"] = scores.precision
        values[f"{kind}.recall"] = scores.recall
    properties = ET.SubElement(node, "properties")
    for name, value in values.items():
        shown = "" if value is None else str(value)
        ET.SubElement(properties, "property", name=f"guidance.{name}", value=shown)


def render_junit(report: RunReport) -> str:
    root = ET.Element(
        "testsuites",
        name="coachbot eval",
        tests=str(report.total),
        failures=str(sum(1 for c in report.cases if c.status == "fail")),
        errors=str(sum(1 for c in report.cases if c.status == "error")),
        time=f"{report.seconds:.3f}",
    )
    for suite in report.suites:
        cases = [c for c in report.cases if c.suite == suite]
        node = ET.SubElement(
            root,
            "testsuite",
            name=suite,
            tests=str(len(cases)),
            failures=str(sum(1 for c in cases if c.status == "fail")),
            errors=str(sum(1 for c in cases if c.status == "error")),
            time=f"{sum(c.seconds for c in cases):.3f}",
        )
        _junit_properties(node, report.guidance_summary.get(suite))
        for case in cases:
            element = ET.SubElement(
                node,
                "testcase",
                classname=f"coachbot.eval.{suite}",
                name=case.id,
                time=f"{case.seconds:.3f}",
            )
            details = []
            for run in case.runs:
                head = f"run {run.repeat + 1} (seed {run.seed}): " if len(case.runs) > 1 else ""
                if run.error:
                    details.append(f"{head}error: {run.error}")
                for a in run.assertions:
                    mark = "PASS" if a.passed else "FAIL"
                    where = f"[{a.where}] " if a.where else ""
                    details.append(f"{head}{mark} {where}{a.label}: {a.why}")
            if not case.passed:
                tag = "error" if case.status == "error" else "failure"
                failure = ET.SubElement(
                    element,
                    tag,
                    message=_first_problem(case)[:500] or "failed",
                    type=tag,
                )
                failure.text = "\n".join(details)
            output = case.runs[-1].output_text if case.runs else ""
            ET.SubElement(element, "system-out").text = output + "\n\n" + "\n".join(details)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")


def write_reports(report: RunReport, directory: Path) -> dict[str, Path]:
    """report.html, junit.xml and results.json in ``directory`` (keys and URL credentials
    masked, whatever quoted them)."""
    directory.mkdir(parents=True, exist_ok=True)
    texts = {
        "html": ("report.html", render_html(report)),
        "junit": ("junit.xml", render_junit(report)),
        "json": ("results.json", json.dumps(report.to_json(), indent=1, ensure_ascii=False) + "\n"),
    }
    paths = {kind: directory / name for kind, (name, _text) in texts.items()}
    for kind, (_name, text) in texts.items():
        paths[kind].write_text(redact(text), encoding="utf-8")
    return paths
