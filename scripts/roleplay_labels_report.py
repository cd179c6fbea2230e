"""Play the labelled role-play scripts and check what the customer did with each line.

Code decides the mood and the beat; this run checks those decisions (with the real guidance
engine) on the independent labelled scripts of evals/data/roleplay/: a calming line never
raises anger, an escalating one never lowers it, a concrete fair offer is weighed or accepted
with its terms named, and every good script resolves. The customer's wording is not under
test here: lines come from the scenario's banks (``--model`` uses the configured model).

Usage: .venv/bin/python scripts/roleplay_labels_report.py [--split dev|test] [--model]
       [--difficulty medium] [--errors]
"""

from __future__ import annotations

import argparse
import sys

from langchain_core.language_models.fake_chat_models import FakeListChatModel

from bot.config import PROJECT_ROOT, get_settings
from bot.roleplay.labelled import ScriptsReport, load_scripts, play_labelled
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


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--split", default="dev", choices=["dev", "test"])
    parser.add_argument("--model", action="store_true")
    parser.add_argument("--difficulty", default="medium")
    parser.add_argument("--errors", action="store_true")
    args = parser.parse_args(argv)
    services = Services(get_settings())
    scripts = load_scripts(PROJECT_ROOT / "evals" / "data" / "roleplay" / f"{args.split}.yaml")
    model = None if args.model else _NoModel(responses=["-"])
    report = play_labelled(
        scripts, lambda s: services.customer(s.scenario, args.difficulty, 0, model=model)
    )
    for key, value in summary(report).items():
        print(f"{key:26s} {value}")
    for script_id, outcome in report.outcomes.items():
        print(f"  {script_id:34s} {outcome}")
    for r in report.problems if args.errors else []:
        print(f"  [{r.script}] {r.problem}: {r.text!r} -> {r.beat} ({r.anger_delta:+d})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
