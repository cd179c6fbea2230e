"""Precision and recall of the guidance engine on a labelled set of lines.

Costs are asymmetric (docs/GUIDANCE.md): flagging a right move as a trigger is the worst error,
so every evaluation also reports the false-trigger rate (lines with no expected trigger where
one was flagged) and which behaviours caused them. ``sure_only`` counts only the detections the
engine is sure of: those are the ones the customer reacts to and the scorecard counts."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from bot.datafiles import field_path, read_yaml
from bot.errors import DataValidationError
from bot.guidance.engine import DetectionContext, GuidanceEngine


class LabelledLine(BaseModel):
    text: str = Field(min_length=1)
    expect: list[str]
    category: str
    context: str | None = None  # what the customer just said


def load_labelled(path: Path, known_ids: set[str]) -> list[LabelledLine]:
    """Load a labelled set; every expected id must exist in the catalogue."""
    try:
        lines = TypeAdapter(list[LabelledLine]).validate_python(read_yaml(path))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise DataValidationError(f"{path}: {field_path(first['loc'])}: {first['msg']}") from exc
    for index, line in enumerate(lines):
        unknown = set(line.expect) - known_ids
        if unknown:
            raise DataValidationError(f"{path}: [{index}].expect: unknown ids {sorted(unknown)}")
    return lines


@dataclass
class Scores:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


@dataclass
class Evaluation:
    lines: int = 0
    by_kind: dict[str, Scores] = field(default_factory=lambda: {"do": Scores(), "avoid": Scores()})
    by_behaviour: dict[str, Scores] = field(default_factory=dict)
    neutral_lines: int = 0
    neutral_triggered: list[str] = field(default_factory=list)
    trigger_free_lines: int = 0  # lines with no expected avoid-behaviour
    false_triggers: list[dict[str, object]] = field(default_factory=list)
    errors: list[dict[str, object]] = field(default_factory=list)
    categories: Counter[str] = field(default_factory=Counter)
    ms_per_line: float = 0.0
    ms_p95: float = 0.0

    @property
    def false_trigger_rate(self) -> float:
        return len(self.false_triggers) / self.trigger_free_lines if self.trigger_free_lines else 0

    @property
    def neutral_clean_rate(self) -> float:
        if not self.neutral_lines:
            return 1.0
        return 1 - len(self.neutral_triggered) / self.neutral_lines


def _count(result: Evaluation, kinds: dict[str, str], found: set[str], expected: set[str]) -> None:
    for behaviour_id in found | expected:
        scores = result.by_behaviour.setdefault(behaviour_id, Scores())
        kind_scores = result.by_kind[kinds[behaviour_id]]
        if behaviour_id in found and behaviour_id in expected:
            scores.tp += 1
            kind_scores.tp += 1
        elif behaviour_id in found:
            scores.fp += 1
            kind_scores.fp += 1
        else:
            scores.fn += 1
            kind_scores.fn += 1


def _false_trigger(
    result: Evaluation, kinds: dict[str, str], line: LabelledLine, found: set[str]
) -> None:
    expected = set(line.expect)
    if any(kinds[b] == "avoid" for b in expected):
        return
    result.trigger_free_lines += 1
    flagged = sorted(b for b in found if kinds[b] == "avoid")
    if flagged:
        result.false_triggers.append({"text": line.text, "flagged": flagged, "expect": line.expect})


def evaluate(
    engine: GuidanceEngine, lines: list[LabelledLine], sure_only: bool = False
) -> Evaluation:
    """Micro-averaged precision/recall per kind and per behaviour, false triggers and neutral
    false alarms (``sure_only``: only the detections the engine is sure of)."""
    kinds = {b.id: b.kind for b in engine.catalogue.behaviours}
    result = Evaluation(lines=len(lines))
    timings: list[float] = []
    engine.warm_up()
    for line in lines:
        context = DetectionContext(customer_last=line.context) if line.context else None
        started = time.perf_counter()
        detections = engine.detect(line.text, context)
        timings.append((time.perf_counter() - started) * 1000)
        found = {d.behaviour_id for d in detections if d.certain or not sure_only}
        expected = set(line.expect)
        result.categories[line.category] += 1
        _count(result, kinds, found, expected)
        _false_trigger(result, kinds, line, found)
        if not expected:
            result.neutral_lines += 1
            if found:
                result.neutral_triggered.append(line.text)
        if found != expected:
            result.errors.append(
                {
                    "text": line.text,
                    "category": line.category,
                    "missed": sorted(expected - found),
                    "extra": sorted(found - expected),
                }
            )
    timings.sort()
    result.ms_per_line = sum(timings) / len(timings) if timings else 0.0
    result.ms_p95 = timings[int(0.95 * (len(timings) - 1))] if timings else 0.0
    return result
