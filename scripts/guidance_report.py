"""Precision, recall and latency of the guidance engine on the labelled sets.

Usage: .venv/bin/python scripts/guidance_report.py [--errors] [FILE ...]
(default files: tests/data/guidance_labelled.yaml tests/data/guidance_heldout.yaml)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bot.config import PROJECT_ROOT, get_settings
from bot.guidance.metrics import evaluate, load_labelled
from bot.service import Services

DEFAULT_SETS = ["tests/data/guidance_labelled.yaml", "tests/data/guidance_heldout.yaml"]


def main(argv: list[str]) -> int:
    show_errors = "--errors" in argv
    files = [a for a in argv if not a.startswith("--")] or DEFAULT_SETS
    console = Console()
    started = time.perf_counter()
    engine = Services(get_settings()).guidance  # warmed up
    console.print(f"engine ready in {time.perf_counter() - started:.2f} s")
    for name in files:
        path = Path(name) if Path(name).is_absolute() else PROJECT_ROOT / name
        lines = load_labelled(path, set(engine.catalogue.ids))
        result = evaluate(engine, lines)
        table = Table(title=f"{path.name}: {result.lines} lines {dict(result.categories)}")
        for column in ("scope", "precision", "recall", "tp", "fp", "fn"):
            table.add_column(column, justify="right" if column != "scope" else "left")
        for kind, s in result.by_kind.items():
            table.add_row(f"[bold]{kind}[/]", f"{s.precision:.3f}", f"{s.recall:.3f}",
                          str(s.tp), str(s.fp), str(s.fn))  # fmt: skip
        for behaviour in engine.catalogue.behaviours:
            s = result.by_behaviour.get(behaviour.id)
            if s:
                table.add_row(f"  {behaviour.id}", f"{s.precision:.2f}", f"{s.recall:.2f}",
                              str(s.tp), str(s.fp), str(s.fn))  # fmt: skip
        console.print(table)
        console.print(
            f"neutral lines triggering a behaviour: {len(result.neutral_triggered)} of "
            f"{result.neutral_lines}; latency per line: mean {result.ms_per_line:.1f} ms, "
            f"p95 {result.ms_p95:.1f} ms"
        )
        if show_errors:
            for error in result.errors:
                console.print(
                    f"  [{error['category']}] missed {error['missed']} extra {error['extra']}: "
                    f"{error['text']}",
                    highlight=False,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
