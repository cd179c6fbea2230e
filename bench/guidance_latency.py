"""Per-line latency of the guidance engine, ``GuidanceEngine.detect`` (issue 8).

Measures, in one fresh process:

* cold start: ``default_engine(knowledge/guidance.yaml)`` (catalogue + MiniLM load),
  ``warm_up()`` (the semantic classifier: loaded from the cache under COACHBOT_CACHE_DIR, or
  trained and cached when missing; the result says which) and the first ``detect`` call, and
  their sum; plus training the classifier from scratch on an uncached engine, for reference;
* per-line latency, p50 / p95 / mean ms, of ``detect(text)`` over every line of
  ``tests/data/guidance_labelled.yaml`` and ``tests/data/guidance_heldout.yaml``, each line
  ``--repeat`` times, without and with a customer context (``DetectionContext(customer_last)``,
  which adds the reflect-back check). A line's own context is used where its set gives one
  (a ``customer`` or ``context`` field); the sets have none today, so the other lines are
  paired, round robin, with the customers' lines of ``prompts/scenarios/*.yaml`` (opening
  lines and surface complaints). Lines are timed interleaved, without then with context.

No target in the issue: the numbers are reported.

Usage (writes bench/results/guidance.json):
    .venv/bin/python bench/guidance_latency.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml
from common import PROJECT_ROOT, BenchResult, peak_rss_mib, summary, timed

from bot.config import get_settings
from bot.datafiles import read_yaml
from bot.guidance.engine import DetectionContext, GuidanceEngine, default_engine, load_catalogue
from bot.guidance.metrics import load_labelled
from bot.llm.embeddings import local_embeddings

CATALOGUE = PROJECT_ROOT / "knowledge" / "guidance.yaml"
SETS = {
    "labelled": PROJECT_ROOT / "tests" / "data" / "guidance_labelled.yaml",
    "heldout": PROJECT_ROOT / "tests" / "data" / "guidance_heldout.yaml",
    "dev": PROJECT_ROOT / "evals" / "data" / "guidance" / "dev.yaml",
}
SCENARIOS = PROJECT_ROOT / "prompts" / "scenarios"
CONTEXT_FIELDS = ("customer", "context", "customer_last")


def scenario_customer_lines() -> list[str]:
    """What customers say in the scenarios: opening lines and surface complaints."""
    lines: list[str] = []
    for path in sorted(SCENARIOS.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if data.get("opening_line"):
            lines.append(str(data["opening_line"]))
        lines += [str(c) for c in data.get("surface_complaints") or []]
    return lines


def own_contexts(path: Path) -> list[str | None]:
    """Each raw entry's customer context, when the labelled set gives one."""
    entries = read_yaml(path) or []
    found: list[str | None] = []
    for entry in entries:
        values = [entry.get(f) for f in CONTEXT_FIELDS] if isinstance(entry, dict) else []
        text = next((v for v in values if isinstance(v, str) and v.strip()), None)
        found.append(text)
    return found


def classifier_files(cache_dir: Path) -> set[Path]:
    return set(cache_dir.glob("guidance-*.npz")) if cache_dir.is_dir() else set()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs over every line (default 3)")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    result = BenchResult(
        name="guidance",
        title="Guidance detection latency",
        command=" ".join([".venv/bin/python bench/guidance_latency.py", *sys.argv[1:]]),
    )
    settings = get_settings()
    cache_dir = settings.cache_dir
    before = classifier_files(cache_dir)

    # Cold start, in the order the app does it (with the line classifier, as Services builds).
    engine, construct_s = timed(
        default_engine, CATALOGUE, True, cache_dir, settings.guidance_training
    )
    _, warm_s = timed(engine.warm_up)
    created = classifier_files(cache_dir) - before
    known = set(engine.catalogue.ids)
    sets = {name: load_labelled(path, known) for name, path in SETS.items()}
    first_line = sets["labelled"][0].text
    _, first_s = timed(engine.detect, first_line)
    cold = {
        "engine_s": round(construct_s, 3),
        "warm_up_s": round(warm_s, 3),
        "first_detect_ms": round(first_s * 1000, 2),
        "total_s": round(construct_s + warm_s + first_s, 3),
        "classifier_cache": "miss (trained, now cached)" if created else "hit",
    }
    fresh = GuidanceEngine(load_catalogue(CATALOGUE), local_embeddings(), cache_dir=None)
    _, train_s = timed(fresh.warm_up)
    cold["train_uncached_s"] = round(train_s, 3)
    print(
        f"cold: engine {construct_s:.2f} s + warm-up {warm_s:.2f} s "
        f"(classifier cache {cold['classifier_cache']}) + first detect "
        f"{first_s * 1000:.1f} ms = {cold['total_s']:.2f} s; training uncached {train_s:.2f} s"
    )

    # Per-line latency, without and with the customer's last line.
    customers = scenario_customer_lines()
    plain_all: list[float] = []
    context_all: list[float] = []
    per_set: dict[str, Any] = {}
    by_category: dict[str, list[float]] = defaultdict(list)
    for name, lines in sets.items():
        given = own_contexts(SETS[name])
        contexts = [
            DetectionContext(customer_last=given[i] or customers[i % len(customers)])
            for i in range(len(lines))
        ]
        plain: list[float] = []
        with_context: list[float] = []
        changed = 0
        for run in range(args.repeat):
            for line, context in zip(lines, contexts, strict=True):
                engine.forget_vectors()  # every line timed as new (no remembered sentences)
                found, seconds = timed(engine.detect, line.text)
                plain.append(seconds * 1000)
                by_category[line.category].append(seconds * 1000)
                engine.forget_vectors()
                found_ctx, seconds = timed(engine.detect, line.text, context)
                with_context.append(seconds * 1000)
                if run == 0:
                    ids = {d.behaviour_id for d in found}
                    changed += ids != {d.behaviour_id for d in found_ctx}
        per_set[name] = {
            "lines": len(lines),
            "lines_with_own_context": sum(c is not None for c in given),
            "without_context_ms": summary(plain, 2),
            "with_context_ms": summary(with_context, 2),
            "lines_where_context_changed_detections": changed,
        }
        plain_all += plain
        context_all += with_context
        a, b = per_set[name]["without_context_ms"], per_set[name]["with_context_ms"]
        print(
            f"{name} ({len(lines)} lines x {args.repeat}): p50 {a['p50']} / p95 {a['p95']} ms; "
            f"with context p50 {b['p50']} / p95 {b['p95']} ms; context changed the detections "
            f"of {changed} lines"
        )

    overall = {
        "lines": sum(len(lines) for lines in sets.values()),
        "without_context_ms": summary(plain_all, 2),
        "with_context_ms": summary(context_all, 2),
    }
    a, b = overall["without_context_ms"], overall["with_context_ms"]
    print(
        f"all {overall['lines']} lines: without context p50 {a['p50']} / p95 {a['p95']} / mean "
        f"{a['mean']} / max {a['max']} ms; with context p50 {b['p50']} / p95 {b['p95']} / mean "
        f"{b['mean']} / max {b['max']} ms"
    )
    result.metrics = {
        "repeat": args.repeat,
        "cold": cold,
        "overall": overall,
        "sets": per_set,
        "by_category_without_context_ms": {
            k: summary(v, 2) for k, v in sorted(by_category.items())
        },
        "peak_rss_mib": peak_rss_mib(),
    }
    result.notes += [
        "Cold start is engine construction (catalogue + MiniLM ONNX load) + warm_up() + the "
        "first detect; warm_up loads the trained classifier from the cache when present.",
    ]
    own = sum(s["lines_with_own_context"] for s in per_set.values())
    result.notes.append(
        f"{own} of {overall['lines']} labelled lines carry their own customer context; the "
        "with-context runs pair the others with a customer line from prompts/scenarios "
        "(opening lines and surface complaints, round robin)."
    )
    result.write()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
