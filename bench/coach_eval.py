"""Coach quality and speed on evals/coach_questions.yaml (the embedded model by default).

Checks the issue's bar: retrieval puts an expected article in the top 4 for >= 90% of in-scope
questions; every answer's citations are valid; out-of-scope questions are declined (and
in-scope ones are not); no suggested wording contains an avoid-behaviour. Reports time to
first token and whole answer, p50 / p95. Writes evals/results/coach-eval.json.

Usage: .venv/bin/python bench/coach_eval.py [--retrieval-only] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path

import yaml

from bot.coach.answer_text import rewrite_query
from bot.config import PROJECT_ROOT, get_settings
from bot.llm import describe_llm
from bot.service import Services


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 3)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--retrieval-only", action="store_true")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--out", default=str(PROJECT_ROOT / "evals/results/coach-eval.json"))
    args = parser.parse_args()

    services = Services(get_settings())
    settings = services.settings
    questions = yaml.safe_load((PROJECT_ROOT / "evals" / "coach_questions.yaml").read_text())
    if args.limit:
        questions = questions[: args.limit]
    index = services.index  # ingested
    engine = services.guidance  # warmed up

    # Retrieval: an expected article in the top 4 (after the follow-up rewrite).
    in_scope = [q for q in questions if not q.get("out_of_scope")]
    hits_ok = []
    retrieval_ms = []
    for q in in_scope:
        query, _ = rewrite_query(q["question"], q.get("history"))
        started = time.perf_counter()
        hits = index.search(query, k=4)
        retrieval_ms.append((time.perf_counter() - started) * 1000)
        origins = {h.metadata.get("origin") for h in hits}
        hits_ok.append(bool(origins & set(q["expect_origins"])))
        if not hits_ok[-1]:
            print(f"retrieval miss: {q['id']}: got {sorted(origins)}")
    retrieval_rate = sum(hits_ok) / len(hits_ok)
    print(
        f"retrieval: expected article in top 4 for {sum(hits_ok)}/{len(hits_ok)} "
        f"({retrieval_rate:.0%}); p50 {pct(retrieval_ms, 0.5)} ms"
    )
    result: dict = {
        "model": describe_llm(settings),
        "questions": len(questions),
        "retrieval_top4_rate": round(retrieval_rate, 3),
        "retrieval_p50_ms": pct(retrieval_ms, 0.5),
    }
    if not args.retrieval_only:
        coach = services.coach()
        coach.ask("warm-up: how do I greet an upset customer?")  # load the model, cache the prompt
        rows = []
        for q in questions:
            answer = coach.ask(q["question"], q.get("history"))
            triggers = [d.behaviour_id for d in engine.detect(answer.say) if d.kind == "avoid"]
            numbers = [int(n) for n in re.findall(r"\[(\d+)\]", answer.answer)]
            valid = all(1 <= n <= len(answer.citations) for n in numbers)
            declined_right = answer.out_of_scope == bool(q.get("out_of_scope"))
            rows.append(
                {
                    "id": q["id"],
                    "out_of_scope": answer.out_of_scope,
                    "declined_right": declined_right,
                    "citations_valid": valid,
                    "grounded": answer.grounded,
                    "say_triggers": triggers,
                    "first_token_s": answer.first_token_s,
                    "seconds": answer.seconds,
                    "attempts": answer.attempts,
                    "flags": answer.flags,
                    "answer": answer.answer,
                }
            )
            mark = "ok " if declined_right and valid and not triggers else "BAD"
            print(
                f"{mark} {q['id']:28} {answer.seconds:5.2f}s ttft {answer.first_token_s} "
                f"{answer.flags}"
            )
        answered = [r for r in rows if not r["out_of_scope"]]
        first = [r["first_token_s"] for r in answered if r["first_token_s"] is not None]
        whole = [r["seconds"] for r in answered]
        result.update(
            {
                "declined_correctly": sum(r["declined_right"] for r in rows),
                "citations_valid": sum(r["citations_valid"] for r in rows),
                "grounded": sum(r["grounded"] for r in answered),
                "answered": len(answered),
                "say_with_trigger": sum(bool(r["say_triggers"]) for r in rows),
                "first_token_p50_s": pct(first, 0.5),
                "first_token_p95_s": pct(first, 0.95),
                "answer_p50_s": pct(whole, 0.5),
                "answer_p95_s": pct(whole, 0.95),
                "mean_attempts": round(statistics.mean(r["attempts"] for r in answered), 2),
                "rows": rows,
            }
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, ensure_ascii=False))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
