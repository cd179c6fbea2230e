"""Eval suite wall time: the full default suite cold (empty response cache), then cached.

Runs ``coachbot eval --baseline evals/baseline.json --report DIR --json`` twice as a user
would, each a fresh process, with ``COACHBOT_CACHE_DIR`` pointing at a new temporary
directory (its ``models/`` links to the real model cache, so the model is not re-assembled;
the response cache and the guidance classifier start empty). Reports wall time, cases,
passes, model calls and whether the run matched the baseline.

Usage: .venv/bin/python bench/eval_speed.py [--filter EXPR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import PROJECT_ROOT, BenchResult, Target

from bot.config import get_settings


def run_eval(env: dict[str, str], report: Path, extra: list[str]) -> tuple[float, int, dict]:
    command = [
        str(Path(sys.executable).parent / "coachbot"),
        "eval",
        "--baseline",
        str(PROJECT_ROOT / "evals" / "baseline.json"),
        "--report",
        str(report),
        "--json",
        *extra,
    ]
    started = time.perf_counter()
    done = subprocess.run(
        command, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    try:
        payload = json.loads(done.stdout)
    except json.JSONDecodeError:
        payload = {"error": (done.stderr or done.stdout)[-2000:]}
    return seconds, done.returncode, payload


def describe(payload: dict) -> dict:
    totals = payload.get("totals") or {}
    diff = payload.get("baseline") or {}
    return {
        "cases": totals.get("cases"),
        "passed": totals.get("passed"),
        "cache_hits": payload.get("cache_hits"),
        "cache_misses": payload.get("cache_misses"),
        "eval_seconds": payload.get("seconds"),
        "newly_failing": diff.get("newly_failing", []),
        "newly_failing_checks": diff.get("newly_failing_checks", []),
        "newly_passing": diff.get("newly_passing", []),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--filter", default="", help="a --filter expression (default: all)")
    args = parser.parse_args()
    extra = ["--filter", args.filter] if args.filter else []

    settings = get_settings()
    result = BenchResult(
        "evals", "Eval suite wall time, cold and cached", "make bench (bench/eval_speed.py)"
    )
    with tempfile.TemporaryDirectory(prefix="coachbot-eval-bench-") as tmp:
        cache = Path(tmp) / "cache"
        cache.mkdir()
        (cache / "models").symlink_to(settings.model_cache_dir.resolve())
        env = {**os.environ, "COACHBOT_CACHE_DIR": str(cache)}
        runs = {}
        for name in ("cold", "cached"):
            seconds, code, payload = run_eval(env, Path(tmp) / f"report-{name}", extra)
            reports = sorted(p.name for p in (Path(tmp) / f"report-{name}").glob("*"))
            runs[name] = {
                "seconds": round(seconds, 2),
                "exit_code": code,
                "reports": reports,
                **describe(payload),
            }
            if "error" in payload:
                runs[name]["error"] = payload["error"]
            print(f"{name}: {seconds:.1f} s, exit {code}, {runs[name]}")
    result.metrics.update({"filter": args.filter or None, **runs})
    result.targets = [Target("cached re-run of the suite", runs["cached"]["seconds"], 5.0)]
    result.write()
    return 0 if all(r["exit_code"] == 0 for r in runs.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
