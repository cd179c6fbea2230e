"""Role-play acceptance run on the configured model (the embedded one by default).

For every scenario x seed, plays the scripted empathetic and trigger trainees from
evals/roleplay_scripts/<id>/ and checks the issue's bar:
  * empathetic: ends calmer than the customer started and scores >= 80;
  * triggers: ends angrier, or the customer leaves, and scores <= 40;
  * the customer never breaks character (every shown line passes the character checks).
Writes evals/results/roleplay-matrix.json and prints a summary with turn latency.

Usage: .venv/bin/python scripts/roleplay_matrix.py [--seeds 5] [--difficulty medium] [IDS...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from bot.config import PROJECT_ROOT, get_settings
from bot.llm import describe_llm
from bot.roleplay.lines import CUSTOMER_PROMPTS, LineChecker
from bot.roleplay.scenarios import load_scenarios
from bot.roleplay.scoring import score_transcript
from bot.roleplay.simulator import run_script
from bot.safety import PromptEcho
from bot.service import Services

SCRIPTS = PROJECT_ROOT / "evals" / "roleplay_scripts"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--difficulty", default="medium")
    parser.add_argument("--out", default=str(PROJECT_ROOT / "evals/results/roleplay-matrix.json"))
    parser.add_argument("ids", nargs="*")
    args = parser.parse_args()

    services = Services(get_settings())
    settings = services.settings
    # Every scenario file must load: Services alone would skip a broken one.
    problems = load_scenarios(settings.prompts_dir / "scenarios")[1]
    assert not problems, problems
    scenarios = services.scenarios
    model = services.customer_model
    engine = services.guidance  # warmed up
    echo = PromptEcho(services.prompts.source(name) for name in CUSTOMER_PROMPTS)
    runs = []
    started = time.perf_counter()
    for scenario_id in args.ids or sorted(scenarios):
        scenario = scenarios[scenario_id]
        for kind in ("empathetic", "triggers"):
            lines = (SCRIPTS / scenario_id / f"{kind}.txt").read_text().splitlines()
            for seed in range(1, args.seeds + 1):
                sim = services.customer(scenario_id, args.difficulty, seed, model=model)
                checker = LineChecker(scenario.customer.name, echo=echo)  # form and voice checks
                transcript = run_script(sim, [ln for ln in lines if ln.strip()])
                card = score_transcript(transcript, engine)
                start, end = transcript.start_state.anger, transcript.turns[-1].state.anger
                character = [
                    (t.index, t.customer, problem)
                    for t in transcript.turns
                    if (problem := checker.problem(t.customer, t.beat))
                ]
                if kind == "empathetic":
                    passed = end < start and card.score >= 80
                else:
                    passed = (end > start or transcript.outcome == "customer_left") and (
                        card.score <= 40
                    )
                run = {
                    "scenario": scenario_id,
                    "trainee": kind,
                    "seed": seed,
                    "outcome": transcript.outcome,
                    "anger": card.mood,
                    "score": card.score,
                    "passed": passed and not character,
                    "character_breaks": character,
                    "turns": [
                        {
                            "trainee": t.trainee,
                            "customer": t.customer,
                            "beat": t.beat,
                            "anger": t.state.anger,
                            "attempts": t.attempts,
                            "fallback": t.fallback_used,
                            "first_token_s": t.first_token_s,
                            "seconds": t.seconds,
                        }
                        for t in transcript.turns
                    ],
                }
                runs.append(run)
                flag = "ok " if run["passed"] else "FAIL"
                print(
                    f"{flag} {scenario_id:22} {kind:10} seed {seed}: {transcript.outcome:13} "
                    f"anger {'→'.join(map(str, card.mood))} score {card.score}",
                    flush=True,
                )
    turns = [t for r in runs for t in r["turns"]]
    first = [t["first_token_s"] for t in turns if t["first_token_s"] is not None]
    summary = {
        "model": describe_llm(settings),
        "difficulty": args.difficulty,
        "runs": len(runs),
        "passed": sum(r["passed"] for r in runs),
        "character_breaks": sum(len(r["character_breaks"]) for r in runs),
        "turns": len(turns),
        "fallback_rate": round(sum(t["fallback"] for t in turns) / max(1, len(turns)), 3),
        "mean_attempts": round(statistics.mean(t["attempts"] for t in turns), 2),
        "first_token_p50_s": round(statistics.median(first), 2) if first else None,
        "turn_p50_s": round(statistics.median(t["seconds"] for t in turns), 2),
        "turn_p95_s": round(sorted(t["seconds"] for t in turns)[int(0.95 * (len(turns) - 1))], 2),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "runs": runs}, indent=1, ensure_ascii=False))
    print(json.dumps(summary, indent=1))
    return 0 if summary["passed"] == summary["runs"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
