"""Precision and recall of the guidance engine on a labelled set of lines."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from bot.datafiles import field_path, read_yaml
from bot.errors import DataValidationError
from bot.guidance.engine import GuidanceEngine


class LabelledLine(BaseModel):
    text: str = Field(min_length=1)
    expect: list[str]
    category: str


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
    errors: list[dict[str, object]] = field(default_factory=list)
    categories: Counter[str] = field(default_factory=Counter)
    ms_per_line: float = 0.0
    ms_p95: float = 0.0


def evaluate(engine: GuidanceEngine, lines: list[LabelledLine]) -> Evaluation:
    """Micro-averaged precision/recall per kind and per behaviour, and neutral false alarms."""
    kinds = {b.id: b.kind for b in engine.catalogue.behaviours}
    result = Evaluation(lines=len(lines))
    timings: list[float] = []
    engine.warm_up()
    for line in lines:
        started = time.perf_counter()
        found = {d.behaviour_id for d in engine.detect(line.text)}
        timings.append((time.perf_counter() - started) * 1000)
        expected = set(line.expect)
        result.categories[line.category] += 1
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
