"""Customer turn speed on the embedded model, with and without KV prefix reuse.

Plays the scripted empathetic trainee (``evals/roleplay_scripts/<id>/empathetic.txt``) against
each scenario through ``bot.roleplay.simulator.CustomerSimulator`` (as the CLI and the app
do), three times: as shipped, one session after another (llama.cpp reuses the cached prefix:
the system prompt and the transcript so far); as shipped with the sessions taking turns (each
turn finds its own prefix in the engine's prefix cache, ``bot/llm/prefix_cache.py``); and with
the prefix cache off and the KV cache reset before every model call. For every turn it
reports the time from the trainee's line to the model's first token, and to the finished,
checked line (retries and a trainer fallback included), p50 / p95. The customer's line is
checked before it is shown, so the whole line is what a trainee waits for.

The prefix-reuse run is then replayed straight through llama.cpp (``llm_probe.raw_replay``)
for the ratio against the raw model.

Usage: .venv/bin/python bench/customer_speed.py [--scenarios ID,ID] [--seed 1]
"""

from __future__ import annotations

import argparse
import time

from common import PROJECT_ROOT, BenchResult, Target, summary
from llm_probe import CallRecorder, raw_replay

from bot.config import get_settings
from bot.roleplay.scenarios import load_scenarios
from bot.service import Services

SCRIPTS = PROJECT_ROOT / "evals" / "roleplay_scripts"


def _script(scenario_id: str) -> list[str]:
    lines = (SCRIPTS / scenario_id / "empathetic.txt").read_text().splitlines()
    return [ln for ln in lines if ln.strip()]


def _order(scripts: dict[str, list[str]], interleave: bool) -> list[tuple[str, int]]:
    """(scenario, line number) in play order: each script to its end, or round-robin (the
    sessions take turns, as trainees in a class do)."""
    if not interleave:
        return [(sid, n) for sid, lines in scripts.items() for n in range(len(lines))]
    longest = max(len(lines) for lines in scripts.values())
    return [(sid, n) for n in range(longest) for sid in scripts if n < len(scripts[sid])]


def play(services, ids, model, recorder, seed: int, tag: str, interleave=False) -> list[dict]:
    scripts = {sid: _script(sid) for sid in ids}
    sims = {sid: services.customer(sid, "medium", seed, model=model) for sid in ids}
    rows = []
    for scenario_id, number in _order(scripts, interleave):
        sim = sims[scenario_id]
        if sim.finished:
            continue
        recorder.label = f"{tag}:{scenario_id}:{number}"
        first_call = len(recorder.calls)
        started = time.perf_counter()
        turn = sim.respond(scripts[scenario_id][number])
        calls = recorder.calls[first_call:]
        first_token = None
        if calls and calls[0].first_token_at is not None:
            first_token = calls[0].first_token_at - started
        rows.append(
            {
                "label": recorder.label,
                "beat": turn.beat,
                "first_token_s": None if first_token is None else round(first_token, 3),
                "seconds": round(time.perf_counter() - started, 3),
                "model_calls": len(calls),
                "fallback": turn.fallback_used,
            }
        )
    for sim in sims.values():
        sim.end()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenarios", default="", help="comma-separated ids (default: all)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    services = Services(get_settings())
    scenarios = services.scenarios
    # Services keeps the usable scenarios only; the result also lists the files it skipped.
    problems = load_scenarios(services.settings.prompts_dir / "scenarios")[1]
    ids = [s for s in args.scenarios.split(",") if s] or sorted(scenarios)
    _ = services.guidance  # build and warm up the engine before timing
    model = services.customer_model
    llm = model.engine.llm
    recorder = CallRecorder(llm).install()

    llm.reset()
    reuse = play(services, ids, model, recorder, args.seed, "reuse")
    reuse_calls = list(recorder.calls)
    model.engine.forget_prefixes()
    taking_turns = play(services, ids, model, recorder, args.seed, "turns", interleave=True)
    cache = llm.cache
    llm.set_cache(None)  # without reuse: no saved prefixes, and the KV cache reset every call
    recorder.reset_before_each_call = True
    try:
        no_reuse = play(services, ids, model, recorder, args.seed, "reset")
    finally:
        llm.set_cache(cache)
        recorder.uninstall()

    print(f"replaying {len(reuse_calls)} model calls straight through llama.cpp ...")
    raw = raw_replay(llm, reuse_calls)
    raw_by_label: dict[str, float] = {}
    for call, timing in zip(reuse_calls, raw, strict=True):
        raw_by_label[call.label] = raw_by_label.get(call.label, 0.0) + timing.seconds
    for row in reuse:
        row["raw_seconds"] = round(raw_by_label.get(row["label"], 0.0), 3)
    modelled = [r for r in reuse if r["raw_seconds"]]
    ratio = round(sum(r["seconds"] for r in modelled) / sum(r["raw_seconds"] for r in modelled), 3)

    def stats(rows: list[dict]) -> dict:
        return {
            "turns": len(rows),
            "first_token_s": summary(r["first_token_s"] for r in rows if r["first_token_s"]),
            "whole_line_s": summary(r["seconds"] for r in rows),
            "model_calls_per_turn": summary((r["model_calls"] for r in rows), 2),
            "fallback_rate": round(sum(r["fallback"] for r in rows) / max(1, len(rows)), 3),
        }

    result = BenchResult(
        "customer",
        "Customer turn: first token and whole line, with and without prefix reuse",
        "make bench (or .venv/bin/python bench/customer_speed.py)",
    )
    with_reuse, without, interleaved = stats(reuse), stats(no_reuse), stats(taking_turns)
    result.metrics.update(
        {
            "scenarios": ids,
            "skipped_scenario_files": [str(p) for p in problems],
            "with_prefix_reuse": with_reuse,
            "without_prefix_reuse": without,
            "sessions_taking_turns_with_prefix_cache": interleaved,
            "raw_whole_line_s": summary(r["raw_seconds"] for r in modelled),
            "ratio_overall": ratio,
            "prompt_tokens": summary((t.prompt_tokens for t in raw), 0),
            "evaluated_prompt_tokens": summary((t.evaluated_prompt_tokens for t in raw), 0),
            "rows": {
                "with_prefix_reuse": reuse,
                "sessions_taking_turns": taking_turns,
                "without_prefix_reuse": no_reuse,
            },
        }
    )
    result.targets = [
        Target("customer first token p50, prefix reuse", with_reuse["first_token_s"]["p50"], 1.5),
        Target(
            "customer first token p50, sessions taking turns",
            interleaved["first_token_s"]["p50"],
            1.5,
        ),
        Target("customer turn end-to-end / raw model", ratio, 1.10, unit="x"),
    ]
    print(
        f"first token p50: {with_reuse['first_token_s']['p50']} s with prefix reuse, "
        f"{without['first_token_s']['p50']} s without, "
        f"{interleaved['first_token_s']['p50']} s with sessions taking turns; whole line p50 "
        f"{with_reuse['whole_line_s']['p50']} s / {without['whole_line_s']['p50']} s; "
        f"end-to-end / raw {ratio}"
    )
    result.write()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
