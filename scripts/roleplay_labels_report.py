"""Play the labelled role-play scripts and check what the customer did with each line.

Code decides the mood and the beat; this run checks those decisions (with the real guidance
engine) on the independent labelled scripts of evals/data/roleplay/: a calming line never
raises anger, an escalating one never lowers it, a concrete fair offer is weighed or accepted
with its terms named, and every good script resolves. The customer's wording is not under
test here: lines come from the scenario's banks (``--model`` uses the configured model).

With ``--model`` it also reports the customer's lines as a trainee saw them: the share of
turns that ended on an unadapted trainer line, why model lines were rejected, shown lines that
fail the line checks (agent voice, profanity, repeats, echoes) and the whole-line times.

Usage: .venv/bin/python scripts/roleplay_labels_report.py [--split dev|test] [--model]
       [--seeds 1] [--difficulty medium] [--errors] [--lines] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import Counter
from pathlib import Path

from langchain_core.language_models.fake_chat_models import FakeListChatModel

from bot.config import PROJECT_ROOT, get_settings
from bot.roleplay.labelled import LineResult, ScriptsReport, load_scripts, play_labelled
from bot.roleplay.lines import LineChecker, customer_line_checker
from bot.service import Services


class _NoModel(FakeListChatModel):
    """A model that always fails, so every customer line is a scenario bank line."""

    def _call(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("no model in this run: bank lines only")


def summary(report: ScriptsReport) -> dict[str, object]:
    by_effect = {
        e: sum(r.effect == e for r in report.lines) for e in ("calms", "neutral", "escalates")
    }
    return {
        "lines": len(report.lines), **{f"{k} lines": v for k, v in by_effect.items()},
        "good line raised anger": report.count("good line raised anger"),
        "bad line lowered anger": report.count("bad line lowered anger"),
        "fair offer not weighed": report.count("fair offer not weighed"),
        "fair offer not named": report.count("fair offer not named"),
        "good scripts resolved": f"{sum(report.resolved.values())}/{len(report.resolved)}",
    }  # fmt: skip


def _quantile(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return round(ordered[int(q * (len(ordered) - 1))], 2) if ordered else None


def model_summary(
    reports: list[ScriptsReport], checkers: dict[str, LineChecker]
) -> dict[str, object]:
    """The customer's shown lines: unadapted share, rejection reasons, checks, timing."""
    results = [r for report in reports for r in report.lines]
    turns = [r.turn for r in results if r.turn is not None]
    shown = [p for report in reports for p in _shown_problems(report.lines, checkers)]
    seconds = [t.seconds for t in turns if t.attempts]  # turns that called the model
    first = [t.first_token_s for t in turns if t.first_token_s is not None]
    return {
        "turns": len(turns),
        "unadapted (trainer line)": f"{sum(t.unadapted for t in turns)}/{len(turns)}",
        "trainer line, model failed": f"{sum(t.fallback_used for t in turns)}/{len(turns)}",
        "first attempt shown": f"{sum(t.attempts == 1 and not t.fallback_used for t in turns)}",
        "mean attempts": round(statistics.mean(t.attempts for t in turns), 2) if turns else 0,
        "rejected, why": dict(Counter(r.problem for t in turns for r in t.rejected).most_common()),
        "shown lines failing checks": dict(Counter(shown)),
        "whole line p50 / p95 s": (_quantile(seconds, 0.5), _quantile(seconds, 0.95)),
        "first token p50 s": _quantile(first, 0.5),
    }


def _shown_problems(results: list[LineResult], checkers: dict[str, LineChecker]) -> list[str]:
    """Each shown line re-checked for form, voice, profanity, echoing the trainee and repeats
    (a trainer line is checked too: the trainee sees it all the same)."""
    problems, said = [], set()
    for r in results:
        checker = checkers[r.script]
        problem = checker.shown_problem(r.customer, r.text)
        if (r.script, r.customer) in said:
            problem = "repeated"
        said.add((r.script, r.customer))
        if problem:
            problems.append(problem)
    return problems


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--split", default="dev", choices=["dev", "test"])
    parser.add_argument("--model", action="store_true")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--difficulty", default="medium")
    parser.add_argument("--errors", action="store_true")
    parser.add_argument("--lines", action="store_true", help="print every turn")
    parser.add_argument("--json", help="write every turn and the summary here")
    parser.add_argument("ids", nargs="*", help="only these scripts (all by default)")
    args = parser.parse_args(argv)
    services = Services(get_settings())
    scripts = load_scripts(PROJECT_ROOT / "evals" / "data" / "roleplay" / f"{args.split}.yaml")
    scripts = [s for s in scripts if not args.ids or s.id in args.ids]
    model = None if args.model else _NoModel(responses=["-"])
    reports = [
        play_labelled(
            scripts,
            lambda s, seed=seed: services.customer(s.scenario, args.difficulty, seed, model=model),
        )
        for seed in range(args.seeds)
    ]
    merged = ScriptsReport(lines=[r for rep in reports for r in rep.lines])
    for seed, rep in enumerate(reports):
        merged.resolved |= {f"{k} seed {seed}": v for k, v in rep.resolved.items()}
        merged.outcomes |= {f"{k} seed {seed}": v for k, v in rep.outcomes.items()}
    result = summary(merged)
    if args.model:
        checkers = {s.id: _checker(services, s.scenario) for s in scripts}
        result |= model_summary(reports, checkers)
    for key, value in result.items():
        print(f"{key:26s} {value}")
    for script_id, outcome in merged.outcomes.items():
        print(f"  {script_id:40s} {outcome}")
    for r in merged.problems if args.errors else []:
        print(f"  [{r.script}] {r.problem}: {r.text!r} -> {r.beat} ({r.anger_delta:+d})")
    for r in merged.lines if args.lines else []:
        t = r.turn
        rejected = [(x.problem, x.line) for x in t.rejected] if t else []
        trainer = "TRAINER " if t and t.fallback_used else ""
        print(f"  [{r.script}] {r.text!r}")
        print(f"     -> {r.beat} {r.anger_delta:+d} {trainer}{r.customer!r}")
        for problem, line in rejected:
            print(f"        rejected ({problem}): {line!r}")
    if args.json:
        rows = [
            {
                "script": r.script,
                "trainee": r.text,
                "effect": r.effect,
                "beat": r.beat,
                "customer": r.customer,
                "problem": r.problem,
                "turn": r.turn.model_dump() if r.turn else None,
            }
            for r in merged.lines
        ]
        Path(args.json).write_text(
            json.dumps(
                {"summary": result, "lines": rows}, indent=1, ensure_ascii=False, default=str
            )
        )
    return 0


def _checker(services: Services, scenario_id: str) -> LineChecker:
    customer = services.scenarios[scenario_id].customer
    return customer_line_checker(
        customer.name, services.guidance, services.prompts, customer.may_swear, services.voice_check
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
