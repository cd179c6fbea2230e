"""Baselines: the per-case results of a trusted run, and what changed since.

A baseline is JSON: the model, when, and for each case (``<suite>/<id>``) whether it passed,
its pass rate, its score and each check's result. A regression is a case that passed in the
baseline and fails now; in a case that already failed, a check that passed and fails now (so a
known failure does not hide a new one in the same case); and a case that fails in both with no
``known_failure`` reason in its suite (a failure nobody has explained is not accepted).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from bot.errors import DataValidationError
from bot.evals.results import BaselineDiff, RunReport, ScoreChange

BASELINE_VERSION = 1
SCORE_TOLERANCE = 0.005  # score moves smaller than this are noise


class BaselineCase(BaseModel):
    passed: bool
    pass_rate: float = Field(ge=0, le=1)
    score: float = Field(ge=0, le=1)
    runs: int = Field(1, ge=1)
    checks: dict[str, bool] = Field(default_factory=dict)  # "<where>: <label>" -> passed


class Baseline(BaseModel):
    version: int = BASELINE_VERSION
    created: str
    model: str
    judge: str | None = None
    repeat: int = 1
    cases: dict[str, BaselineCase]


def baseline_from(report: RunReport) -> Baseline:
    return Baseline(
        created=report.started,
        model=report.model,
        judge=report.judge.description if report.judge else None,
        repeat=report.repeat,
        cases={
            c.key: BaselineCase(
                passed=c.passed,
                pass_rate=c.pass_rate,
                score=c.score,
                runs=len(c.runs),
                checks=c.checks(),
            )
            for c in report.cases
        },
    )


def save_baseline(report: RunReport, path: Path) -> Baseline:
    """Write the run's results as a baseline (atomically)."""
    baseline = baseline_from(report)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(baseline.model_dump(), indent=1, sort_keys=True) + "\n", "utf-8")
    os.replace(tmp, path)
    return baseline


def load_baseline(path: Path) -> Baseline:
    """Read a baseline file; a missing or malformed one raises a one-line error."""
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DataValidationError(
            f"baseline file not found: {path}", hint="create one with --save-baseline"
        ) from exc
    except OSError as exc:
        raise DataValidationError(f"cannot read baseline {path}: {exc.strerror}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataValidationError(f"{path}: not a JSON baseline ({exc})") from exc
    try:
        return Baseline.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise DataValidationError(f"{path}: field '{where}': {first['msg']}") from exc


def compare(report: RunReport, baseline: Baseline, name: str = "") -> BaselineDiff:
    """Newly failing cases and checks, newly passing, still failing, score changes; cases new
    or not run."""
    diff = BaselineDiff(baseline=name, baseline_model=baseline.model)
    seen: set[str] = set()
    for case in report.cases:
        seen.add(case.key)
        before = baseline.cases.get(case.key)
        if before is None:
            diff.new_cases.append(case.key)
            continue
        if before.passed and not case.passed:
            diff.newly_failing.append(case.key)
        elif case.passed and not before.passed:
            diff.newly_passing.append(case.key)
        elif not case.passed:
            diff.still_failing.append(case.key)
            if case.known_failure:
                diff.known_failures[case.key] = case.known_failure
            now = case.checks()
            diff.newly_failing_checks += [
                f"{case.key}: {check}"
                for check, passed in before.checks.items()
                if passed and now.get(check) is False
            ]
        if case.passed and case.known_failure:
            diff.stale_known_failures.append(case.key)
        if abs(case.score - before.score) >= SCORE_TOLERANCE:
            diff.score_changes.append(
                ScoreChange(key=case.key, before=before.score, after=case.score)
            )
    diff.not_run = sorted(set(baseline.cases) - seen)
    return diff
