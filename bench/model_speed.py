"""The limit: the embedded model's own speed through llama.cpp on this machine.

Measures, with the app's settings (threads, context, the configured GGUF):
* prefill tokens/s for prompts of about 250, 500 and 1000 tokens (empty KV cache);
* generation (decode) tokens/s over 128 tokens, sampling each step as generation does;
* the first token of a prompt that shares all but its last ~40 tokens with the previous one
  (KV prefix reuse), and of the same prompt with the cache reset;
* the same generation through llama-cpp-python's high-level ``create_completion``, to show
  what the library itself adds.

Usage: .venv/bin/python bench/model_speed.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import BenchResult, peak_rss_mib, summary

from bot.config import get_settings
from bot.service import Services

FILLER = (
    "The customer called about a parcel that arrived damaged after a long wait, and the agent "
    "listened to the whole story before saying anything, then reflected it back in her words. "
)


def _tokens(llm, n: int) -> list[int]:
    text = FILLER * (n // 30 + 2)
    return llm.tokenize(text.encode(), add_bos=False, special=False)[:n]


def prefill_seconds(llm, tokens: list[int]) -> float:
    llm.reset()
    started = time.perf_counter()
    llm.eval(tokens)
    return time.perf_counter() - started


def decode_seconds(llm, n: int) -> float:
    """``n`` decode steps after a short prompt, each one sample + one eval."""
    llm.reset()
    llm.eval(_tokens(llm, 64))
    started = time.perf_counter()
    for _ in range(n):
        token = llm.sample(temp=0.7, top_k=40, top_p=0.9, repeat_penalty=1.12)
        if token == llm.token_eos():
            token = _tokens(llm, 1)[0]
        llm.eval([token])
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    model = Services(get_settings()).model
    engine = model.engine
    llm = engine.llm
    result = BenchResult(
        "model",
        "The limit: the embedded model through llama.cpp",
        "make bench (or .venv/bin/python bench/model_speed.py)",
    )
    result.metrics["model_file"] = engine.path
    result.metrics["threads"] = llm.n_threads if hasattr(llm, "n_threads") else None
    result.metrics["context"] = llm.n_ctx()
    result.metrics["load_seconds"] = round(engine.load_seconds, 2)

    prefill = {}
    for n in (250, 500, 1000):
        tokens = _tokens(llm, n)
        prefill_seconds(llm, tokens[:32])  # warm
        runs = [prefill_seconds(llm, tokens) for _ in range(args.repeat)]
        seconds = statistics.median(runs)
        prefill[str(n)] = {"seconds": round(seconds, 3), "tokens_per_s": round(n / seconds, 1)}
        print(f"prefill {n} tokens: {seconds:.2f} s ({n / seconds:.0f} tok/s)")
    result.metrics["prefill"] = prefill

    decode_runs = [decode_seconds(llm, 128) for _ in range(args.repeat)]
    decode = statistics.median(decode_runs)
    result.metrics["generation_tokens_per_s"] = round(128 / decode, 1)
    print(f"generation: {128 / decode:.1f} tok/s")

    # KV prefix reuse: a prompt sharing all but its last 40 tokens with the previous one.
    base = _tokens(llm, 600)
    tail = llm.tokenize(b" Now she asks what would be fair, and waits.", add_bos=False)
    reused, cold = [], []
    for _ in range(args.repeat):
        llm.reset()
        llm.eval(base)
        started = time.perf_counter()
        llm.eval(tail)
        llm.sample(temp=0.7)
        reused.append(time.perf_counter() - started)
        cold.append(prefill_seconds(llm, base + tail))
    result.metrics["first_token_600_token_prompt"] = {
        "prefix_reused_s": round(statistics.median(reused), 3),
        "cache_reset_s": round(statistics.median(cold), 3),
    }
    print(
        f"first token, 600-token prompt: {statistics.median(reused):.3f} s with the prefix "
        f"cached, {statistics.median(cold):.2f} s without"
    )

    # The library's own generation path (tokenising, sampling chain, detokenising, streaming).
    library = []
    for _ in range(args.repeat):
        llm.reset()
        started = time.perf_counter()
        out = llm.create_completion(
            prompt=llm.detokenize(_tokens(llm, 64)).decode("utf-8", "ignore"),
            max_tokens=128,
            temperature=0.7,
            repeat_penalty=1.12,
            logit_bias={llm.token_eos(): -1e9},
        )
        n = out["usage"]["completion_tokens"]
        library.append((time.perf_counter() - started, n))
    seconds, n = sorted(library)[len(library) // 2]
    result.metrics["create_completion_64_in_128_out"] = {
        "seconds": round(seconds, 3),
        "output_tokens": n,
    }
    result.metrics["decode_runs_s"] = summary(decode_runs)
    result.metrics["peak_rss_mib"] = peak_rss_mib()
    result.write()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
