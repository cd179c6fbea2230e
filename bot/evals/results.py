"""What an eval run produces: per assertion, per run (repeat), per case, and for the whole run."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, computed_field


class AssertionResult(BaseModel):
    type: str
    label: str
    passed: bool
    why: str
    score: float  # 0..1: 1/0 for pass/fail, or a graded share (e.g. claims supported)
    where: str = ""  # "turn 3", "end" (customer cases)
    field: str | None = None


class CaseRun(BaseModel):
    """One run of a case (``--repeat`` gives several)."""

    repeat: int
    seed: int | None = None
    passed: bool
    score: float
    seconds: float  # wall time plus the original time of cached model calls
    cache_hits: int = 0
    cache_misses: int = 0
    output_text: str = ""
    output: dict[str, Any] = Field(default_factory=dict)
    assertions: list[AssertionResult] = Field(default_factory=list)
    error: str | None = None

    @property
    def failures(self) -> list[AssertionResult]:
        return [a for a in self.assertions if not a.passed]


class CaseResult(BaseModel):
    key: str  # "<suite>/<case id>"
    suite: str
    id: str
    kind: str
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    known_failure: str | None = None  # the suite's reason this case is expected to fail
    threshold: float
    runs: list[CaseRun]
    pass_rate: float
    passed: bool
    score: float
    seconds: float

    @property
    def errored(self) -> bool:
        return any(r.error for r in self.runs)

    def checks(self) -> dict[str, bool]:
        """Each assertion ("<where>: <label>") and whether it passed in enough runs."""
        if not self.runs or not self.runs[0].assertions:
            return {}
        keys: list[str] = []
        for a in self.runs[0].assertions:
            key = f"{a.where}: {a.label}" if a.where else a.label
            n = sum(1 for k in keys if k == key or k.startswith(f"{key} #"))
            keys.append(key if n == 0 else f"{key} #{n + 1}")
        out: dict[str, bool] = {}
        for i, key in enumerate(keys):
            results = [r.assertions[i].passed for r in self.runs if i < len(r.assertions)]
            rate = sum(results) / len(self.runs)
            out[key] = rate >= self.threshold - 1e-9
        return out

    @property
    def status(self) -> str:
        if self.passed:
            return "pass"
        return "error" if self.errored else "fail"


class ScoreChange(BaseModel):
    key: str
    before: float
    after: float


class BaselineDiff(BaseModel):
    baseline: str
    baseline_model: str | None = None
    newly_failing: list[str] = Field(default_factory=list)
    # In a case that already failed in the baseline: checks that passed then and fail now.
    newly_failing_checks: list[str] = Field(default_factory=list)  # "<case key>: <check>"
    newly_passing: list[str] = Field(default_factory=list)
    still_failing: list[str] = Field(default_factory=list)
    # The still-failing cases' reasons from their suites (``known_failure``).
    known_failures: dict[str, str] = Field(default_factory=dict)
    # Marked known_failure but passing now: the mark should go.
    stale_known_failures: list[str] = Field(default_factory=list)
    score_changes: list[ScoreChange] = Field(default_factory=list)
    new_cases: list[str] = Field(default_factory=list)
    not_run: list[str] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def unexplained_failures(self) -> list[str]:
        """Still failing with no reason given: a failure nobody has explained is a regression."""
        return [key for key in self.still_failing if key not in self.known_failures]

    @property
    def regressed(self) -> bool:
        return bool(self.newly_failing or self.newly_failing_checks or self.unexplained_failures)


class JudgeInfo(BaseModel):
    description: str
    configured: bool  # False: nobody set COACHBOT_JUDGE_MODEL, the embedded model judged
    same_as_subject: bool
    warning: str | None = None
    used: int = 0  # rubric assertions graded


class KindScores(BaseModel):
    """Micro-averaged over the lines: a behaviour expected and detected is a true positive."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    precision: float = 1.0  # 1.0 when nothing was detected (as bot.guidance.metrics)
    recall: float = 1.0  # 1.0 when nothing was expected


class GuidanceSummary(BaseModel):
    """The guidance engine over a suite's guidance cases (every run of each; errored runs are
    left out and counted)."""

    lines: int
    errors: int = 0
    avoid: KindScores
    do: KindScores
    # Lines that should show no avoid-behaviour, and those where one was detected anyway.
    lines_without_avoid: int = 0
    false_triggers: int = 0
    false_trigger_rate: float | None = None  # None: no such line
    # Neutral lines (expect: []), and those where nothing at all was detected.
    neutral_lines: int = 0
    neutral_clean: int = 0
    neutral_clean_rate: float | None = None


class RunReport(BaseModel):
    started: str
    seconds: float
    model: str
    model_identity: str = ""
    judge: JudgeInfo | None = None
    prompts_dir: str = ""
    suites: list[str]
    filter: str | None = None
    repeat: int = 1
    workers: int = 1
    cache: str  # "on (<path>)" | "off"
    cache_hits: int = 0
    cache_misses: int = 0
    cases: list[CaseResult]
    # Per suite with guidance cases: the engine's precision, recall and false-trigger rates.
    guidance_summary: dict[str, GuidanceSummary] = Field(default_factory=dict)
    baseline: BaselineDiff | None = None
    exit_code: int = 0

    @property
    def total(self) -> int:
        return len(self.cases)

    @property
    def passed(self) -> int:
        return sum(1 for c in self.cases if c.passed)

    @property
    def failed(self) -> int:
        return self.total - self.passed

    def counts_by_kind(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for case in self.cases:
            row = out.setdefault(case.kind, {"cases": 0, "passed": 0})
            row["cases"] += 1
            row["passed"] += int(case.passed)
        return out

    def to_json(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        data["totals"] = {
            "cases": self.total,
            "passed": self.passed,
            "failed": self.failed,
            "by_kind": self.counts_by_kind(),
        }
        return data


def exit_code_for(report: RunReport) -> int:
    """0: fine; 1: a regression against the baseline (a case, or a check in a case that
    already failed, that passed and fails now) or, without a baseline, a failing case."""
    if report.baseline is not None:
        return 1 if report.baseline.regressed else 0
    return 0 if report.failed == 0 else 1
