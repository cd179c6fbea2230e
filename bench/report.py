"""Render ``bench/results/*.json`` into ``bench/RESULTS.md`` (run by ``make bench``).

The page: the machine and versions, every target with its measurement, the numbers of each
benchmark (per-row data stays in the JSON files), how to reproduce, and the analysis kept in
``bench/ANALYSIS.md`` (what bounds the targets that are missed).

Usage: .venv/bin/python bench/report.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from common import BENCH_DIR, RESULTS_DIR
from jinja2 import Environment, FileSystemLoader, StrictUndefined

ORDER = ["model", "coach", "customer", "retrieval", "guidance", "evals", "load-fake",
         "load-fake-db-outage", "load-embedded"]  # fmt: skip


def flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested metrics as (dotted name, value) rows; per-row lists are left to the JSON."""
    if isinstance(value, dict):
        if value and set(value) <= {"n", "p50", "p95", "mean", "max"}:
            return [(prefix, f"p50 {value['p50']} · p95 {value['p95']} · n {value['n']}")]
        rows: list[tuple[str, Any]] = []
        for key, item in value.items():
            if key in {"rows", "samples"}:
                continue
            rows += flatten(item, f"{prefix}.{key}" if prefix else str(key))
        return rows
    if isinstance(value, list) and value and isinstance(value[0], dict | list):
        return [(prefix, f"({len(value)} rows, see the JSON)")]
    return [(prefix, value)]


def load_results(directory: Path = RESULTS_DIR) -> list[dict[str, Any]]:
    found = {p.stem: json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))}
    names = [n for n in ORDER if n in found] + sorted(set(found) - set(ORDER))
    results = []
    for name in names:
        data = found[name]
        data["flat"] = flatten(data.get("metrics", {}))
        data["file"] = f"bench/results/{name}.json"
        results.append(data)
    return results


def render(results: list[dict[str, Any]]) -> str:
    env = Environment(
        loader=FileSystemLoader(BENCH_DIR),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    analysis = BENCH_DIR / "ANALYSIS.md"
    return env.get_template("RESULTS.md.j2").render(
        results=results,
        machine=results[0]["machine"] if results else {},
        analysis=analysis.read_text() if analysis.exists() else "",
    )


def main() -> int:
    results = load_results()
    if not results:
        print("no results in bench/results/: run `make bench` first")
        return 1
    out = BENCH_DIR / "RESULTS.md"
    out.write_text(render(results))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
