"""Choose the line classifier's per-behaviour bars on the DEV split (never the test split).

The classifier is trained on the catalogue and evals/data/guidance/train.yaml (as the engine
does); for every behaviour, the bar is the one with the lowest cost on dev, with asymmetric
costs: a trigger flagged on a line with no trigger 10, a wrong trigger on a line with another
2, a missed trigger 2, a false credit 1, a missed credit 1 (docs/GUIDANCE.md). Writes
knowledge/guidance_thresholds.yaml.

Usage: .venv/bin/python scripts/tune_guidance.py [--out PATH]
"""

from __future__ import annotations

import sys

import numpy as np
import yaml

from bot.config import PROJECT_ROOT, get_settings
from bot.guidance.engine import default_engine, load_training

DEV = PROJECT_ROOT / "evals" / "data" / "guidance" / "dev.yaml"
OUT = PROJECT_ROOT / "knowledge" / "guidance_thresholds.yaml"
GRID = np.round(np.arange(0.2, 0.96, 0.025), 3)
COST = {"false_trigger": 10.0, "wrong_trigger": 2.0, "missed_trigger": 2.0,
        "false_credit": 1.0, "missed_credit": 1.0}  # fmt: skip


def cost_at(bar: float, p: np.ndarray, gold: np.ndarray, has_trigger: np.ndarray, avoid: bool):
    pred = p >= bar
    fp, fn = pred & ~gold, ~pred & gold
    if avoid:
        fp_cost = np.where(has_trigger, COST["wrong_trigger"], COST["false_trigger"])
        return float((fp * fp_cost).sum() + fn.sum() * COST["missed_trigger"])
    return float(fp.sum() * COST["false_credit"] + fn.sum() * COST["missed_credit"])


def main(argv: list[str]) -> int:
    out = argv[argv.index("--out") + 1] if "--out" in argv else OUT
    settings = get_settings()
    engine = default_engine(
        settings.knowledge_dir / "guidance.yaml", cache_dir=settings.cache_dir,
        training=settings.guidance_training,
    )  # fmt: skip
    engine.warm_up()
    dev = load_training(DEV)
    ids = engine.catalogue.ids
    kinds = {b.id: b.kind for b in engine.catalogue.behaviours}
    probs = np.array([[engine.line_probabilities(x.text, x.context)[b] for b in ids] for x in dev])
    gold = np.array([[b in x.expect for b in ids] for x in dev])
    has_trigger = np.array([any(kinds[b] == "avoid" for b in x.expect) for x in dev])
    bars = {}
    for j, b in enumerate(ids):
        costs = [
            cost_at(t, probs[:, j], gold[:, j], has_trigger, kinds[b] == "avoid") for t in GRID
        ]
        best = min(costs)
        plateau = [t for t, c in zip(GRID, costs, strict=True) if c == best]
        bars[b] = float(plateau[len(plateau) // 2])
    data = {"sure": bars, "default_sure": 0.6, "possible_ratio": 0.6, "veto": 0.1}
    header = ("# Bars of the guidance line classifier, chosen on the dev split by "
              "scripts/tune_guidance.py.\n# A probability at or above `sure` is acted on; from "
              "possible_ratio x sure it is shown as possible.\n")  # fmt: skip
    with open(out, "w", encoding="utf-8") as handle:
        handle.write(header + yaml.safe_dump(data, sort_keys=False))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
