"""How well the customer-line checker keeps the customer in the customer's voice.

Runs the checker the simulator uses (its form and voice checks, as built by
``bot.service.Services``) over a labelled customer-voice split (``evals/data/customer_voice``)
and prints how many agent lines it catches and how many real customer lines it wrongly
rejects. Report the test split; tune on dev.

Usage: .venv/bin/python scripts/customer_voice_report.py [train|dev|test] [--errors]
"""

from __future__ import annotations

import argparse
import sys

from bot.config import PROJECT_ROOT, get_settings
from bot.roleplay.lines import customer_line_checker
from bot.roleplay.voice import load_voice_lines, voice_report
from bot.service import Services


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("split", choices=["train", "dev", "test"], default="dev", nargs="?")
    parser.add_argument("--errors", action="store_true", help="list every miss")
    args = parser.parse_args(argv)
    services = Services(get_settings())
    lines = load_voice_lines(
        PROJECT_ROOT / "evals" / "data" / "customer_voice" / f"{args.split}.yaml"
    )
    checker = customer_line_checker(
        "Margaret", services.guidance, services.prompts, voice=services.voice_check
    )
    report = voice_report(lines, checker.voice_problem)
    print(f"{args.split}: {report.summary()}")
    for kind, text, problem in report.misses if args.errors else []:
        print(f"  [{kind}] {text!r}" + (f" -> {problem}" if problem else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
