"""Coach speed on the embedded model, and its overhead against the raw model.

Asks every question of ``evals/coach_questions.yaml`` (follow-ups with their history) through
``bot.coach.coach.Coach`` exactly as the CLI and the app do, recording every llama.cpp call
(``llm_probe.CallRecorder``). Reports time to first token and whole answer, p50 / p95, for the
answered questions (declined ones make no model call and are reported apart).

Right after each answer, replays its prompt tokens and output tokens straight through
llama.cpp (``llm_probe.replay_calls``, from the KV state the answer started with, so prefix
reuse is the same; interleaving keeps a shared machine's drift out of the ratio) and reports
``end-to-end / raw`` per answer and overall: what retrieval, context selection, the guidance
checks on the Say line, grounding, LangChain and the chat template add to the model's own time.

Usage: .venv/bin/python bench/coach_speed.py [--limit N]
"""

from __future__ import annotations

import argparse

import yaml
from common import PROJECT_ROOT, BenchResult, Target, peak_rss_mib, summary
from llm_probe import CallRecorder, kv_tokens, replay_calls, restore_kv

from bot.config import get_settings
from bot.llm import describe_llm
from bot.service import Services


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=0, help="only the first N questions")
    args = parser.parse_args()

    services = Services(get_settings())
    settings = services.settings
    questions = yaml.safe_load((PROJECT_ROOT / "evals" / "coach_questions.yaml").read_text())
    if args.limit:
        questions = questions[: args.limit]
    coach = services.coach()  # the index ingested, the guidance engine warmed up
    llm = services.model.engine.llm
    recorder = CallRecorder(llm).install()

    llm.reset()
    recorder.label = "warm-up"
    coach.ask("warm-up: how do I greet an upset customer?")
    rows = []
    for q in questions:
        before = kv_tokens(llm)  # the KV state this answer starts from
        first_call = len(recorder.calls)
        recorder.label = q["id"]
        answer = coach.ask(q["question"], q.get("history"))
        calls = recorder.calls[first_call:]
        after = kv_tokens(llm)
        recorder.uninstall()  # the replay's own calls are not recorded
        restore_kv(llm, before)
        raw = replay_calls(llm, calls)
        restore_kv(llm, after)  # the next answer starts where the real run left it
        recorder.install()
        row = {
            "id": q["id"],
            "declined": answer.out_of_scope,
            "first_token_s": answer.first_token_s,
            "seconds": answer.seconds,
            "attempts": answer.attempts,
            "flags": answer.flags,
            "model_calls": len(calls),
            "raw_seconds": round(sum(t.seconds for t in raw), 3),
            "raw_first_token_s": round(raw[0].first_token_s, 3) if raw else None,
            "prompt_tokens": [t.prompt_tokens for t in raw],
            "evaluated_prompt_tokens": [t.evaluated_prompt_tokens for t in raw],
            "output_tokens": [t.output_tokens for t in raw],
        }
        row["ratio"] = round(row["seconds"] / row["raw_seconds"], 3) if raw else None
        rows.append(row)
        print(
            f"{q['id']:34} {answer.seconds:5.2f} s  first token {answer.first_token_s}  "
            f"raw {row['raw_seconds']} s"
        )
    recorder.uninstall()

    answered = [r for r in rows if not r["declined"]]
    declined = [r for r in rows if r["declined"]]
    e2e_total = sum(r["seconds"] for r in answered)
    raw_total = sum(r["raw_seconds"] for r in answered)
    first = summary(r["first_token_s"] for r in answered if r["first_token_s"] is not None)
    whole = summary(r["seconds"] for r in answered)
    ratio_overall = round(e2e_total / raw_total, 3) if raw_total else None
    result = BenchResult(
        "coach",
        "Coach: time to first token, whole answer, overhead against the raw model",
        "make bench (or .venv/bin/python bench/coach_speed.py)",
    )
    result.metrics.update(
        {
            "model": describe_llm(settings),
            "questions": len(rows),
            "answered": len(answered),
            "declined": len(declined),
            "first_token_s": first,
            "whole_answer_s": whole,
            "declined_answer_s": summary(r["seconds"] for r in declined),
            "raw_first_token_s": summary(
                r["raw_first_token_s"] for r in answered if r["raw_first_token_s"] is not None
            ),
            "raw_whole_answer_s": summary(r["raw_seconds"] for r in answered),
            "model_calls_per_answer": summary((r["model_calls"] for r in answered), 2),
            "ratio_overall": ratio_overall,
            "ratio_per_answer": summary((r["ratio"] for r in answered if r["ratio"]), 3),
            "peak_rss_mib": peak_rss_mib(),
            "rows": rows,
        }
    )
    result.targets = [
        Target("coach first token p50", first["p50"], 1.5),
        Target("coach whole answer p50", whole["p50"], 6.0),
        Target("coach end-to-end / raw model", ratio_overall, 1.10, unit="x"),
    ]
    print(
        f"first token p50 {first['p50']} s, whole answer p50 {whole['p50']} s, "
        f"end-to-end / raw {ratio_overall}"
    )
    result.write()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
