"""Precision, recall, false triggers and latency of the guidance engine on every labelled set.

Usage: .venv/bin/python scripts/guidance_report.py [--errors] [--per-behaviour] [--json OUT]
       [FILE ...]
(default: the independent sets evals/data/guidance/{train,dev,test,test-2,test-3}.yaml and the older
tests/data/guidance_{labelled,heldout}.yaml). Each set is scored twice: on what the engine is
sure of (what the customer reacts to and the scorecard counts) and on every detection
(including the "possible" ones).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bot.config import PROJECT_ROOT, get_settings
from bot.guidance.metrics import Evaluation, evaluate, load_labelled
from bot.service import Services

DEFAULT_SETS = [
    "evals/data/guidance/train.yaml",
    "evals/data/guidance/dev.yaml",
    "evals/data/guidance/test.yaml",
    "evals/data/guidance/test-2.yaml",
    "evals/data/guidance/test-3.yaml",
    "tests/data/guidance_labelled.yaml",
    "tests/data/guidance_heldout.yaml",
]
COLUMNS = ("set", "view", "lines", "avoid P", "avoid R", "do P", "do R", "false triggers",
           "neutral clean", "p95 ms")  # fmt: skip


def summary(name: str, view: str, r: Evaluation) -> dict[str, object]:
    avoid, do = r.by_kind["avoid"], r.by_kind["do"]
    return {
        "set": name, "view": view, "lines": r.lines,
        "avoid_precision": round(avoid.precision, 3), "avoid_recall": round(avoid.recall, 3),
        "do_precision": round(do.precision, 3), "do_recall": round(do.recall, 3),
        "false_trigger_rate": round(r.false_trigger_rate, 3),
        "false_triggers": len(r.false_triggers), "trigger_free_lines": r.trigger_free_lines,
        "neutral_clean_rate": round(r.neutral_clean_rate, 3), "ms_p95": round(r.ms_p95, 1),
        "per_behaviour": {
            b: {"precision": round(s.precision, 3), "recall": round(s.recall, 3),
                "tp": s.tp, "fp": s.fp, "fn": s.fn}
            for b, s in sorted(r.by_behaviour.items())
        },
        "false_trigger_lines": r.false_triggers,
    }  # fmt: skip


def row(s: dict[str, object]) -> list[str]:
    ft = f"{s['false_trigger_rate']:.3f} ({s['false_triggers']}/{s['trigger_free_lines']})"
    keys = ("avoid_precision", "avoid_recall", "do_precision", "do_recall")
    return [str(s["set"]), str(s["view"]), str(s["lines"]), *(f"{s[k]:.3f}" for k in keys), ft,
            f"{s['neutral_clean_rate']:.3f}", f"{s['ms_p95']:.1f}"]  # fmt: skip


def main(argv: list[str]) -> int:
    out = argv[argv.index("--json") + 1] if "--json" in argv else None
    files = [a for a in argv if not a.startswith("--") and a != out] or DEFAULT_SETS
    console = Console()
    started = time.perf_counter()
    engine = Services(get_settings()).guidance  # warmed up
    console.print(f"engine ready in {time.perf_counter() - started:.2f} s", markup=False)
    results = []
    for name in files:
        path = Path(name) if Path(name).is_absolute() else PROJECT_ROOT / name
        lines = load_labelled(path, set(engine.catalogue.ids))
        for view, sure in (("sure", True), ("all", False)):
            results.append(summary(name, view, evaluate(engine, lines, sure_only=sure)))
    table = Table(title="guidance engine")
    for column in COLUMNS:
        table.add_column(column)
    for s in results:
        table.add_row(*row(s))
    console.print(table)
    for s in results if "--errors" in argv else []:
        for ft in s["false_trigger_lines"]:  # type: ignore[union-attr]
            console.print(f"  [{s['set']} {s['view']}] {ft['flagged']}: {ft['text']}",
                          markup=False, highlight=False)  # fmt: skip
    if out:
        Path(out).write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
