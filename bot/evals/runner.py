"""Running eval cases: the coach, the simulated customer and the scorecard, as the CLI uses them.

Resources come from :class:`bot.service.Services`, the app's composition root, with the eval's
cached embeddings plugged in. Each case run gets its own ``Services`` whose chat model is a
caching wrapper around the shared model under test (so hits, misses and replayed model time
are counted per run), and the judge when it has llm-rubric assertions. ``repeat`` runs each
case several times with different seeds and a case passes when its pass rate reaches its
threshold. Guidance cases only call the shared guidance engine; the report sums them up per
suite (:func:`guidance_summary`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel

from bot.config import PROJECT_ROOT, Settings
from bot.errors import CoachbotError, ModelUnavailableError
from bot.evals.assertions import (
    CheckContext,
    LineVerdicts,
    Observation,
    evaluate,
    guidance_line_checks,
)
from bot.evals.cache import CachedEmbeddings, CachingChatModel, ResponseCache, model_identity
from bot.evals.judge import Judge, make_judge
from bot.evals.results import (
    AssertionResult,
    CaseResult,
    CaseRun,
    GuidanceSummary,
    KindScores,
    RunReport,
    exit_code_for,
)
from bot.evals.suites import (
    CoachCase,
    CustomerCase,
    GuidanceCase,
    InlineTranscript,
    ScoringCase,
    Suite,
)
from bot.guidance.engine import DetectionContext, GuidanceEngine, load_catalogue
from bot.guidance.metrics import Scores
from bot.roleplay.scenarios import Scenario
from bot.safety import redact
from bot.service import Services

SCRIPTS_DIR = PROJECT_ROOT / "evals" / "roleplay_scripts"
SEED_STRIDE = 1000  # a coach repeat shifts every sampling seed by this much

Progress = Callable[[str], None]  # called with the case key after each run


def cache_path(settings: Settings) -> Path:
    return settings.cache_dir / "evals" / "cache.sqlite3"


@dataclass
class RunOptions:
    repeat: int = 1
    workers: int = 1
    use_cache: bool = True
    threshold: float | None = None  # overrides the suites' thresholds
    filter: str | None = None
    scripts_dir: Path = SCRIPTS_DIR


def _guidance_engine(
    settings: Settings, embeddings: CachedEmbeddings, catalogue: Any
) -> GuidanceEngine:
    """The guidance engine over the catalogue, with the eval's cached embeddings (and the
    line classifier with its bars, as the app builds it)."""
    from bot.guidance.classifier import load_thresholds
    from bot.guidance.engine import load_training

    training = settings.guidance_training
    bars = settings.knowledge_dir / "guidance_thresholds.yaml"
    engine = GuidanceEngine(
        catalogue,
        embeddings,
        cache_dir=settings.cache_dir,
        training=load_training(training) if training and training.is_file() else None,
        thresholds=load_thresholds(bars) if bars.is_file() else None,
    )
    engine.warm_up()
    return engine


def _index_embeddings(
    settings: Settings, cache: ResponseCache | None, sentence: CachedEmbeddings
) -> CachedEmbeddings:
    """The knowledge index's embeddings, cached: the guidance engine's when both are local."""
    if settings.embeddings_provider == "local":
        return sentence
    from bot.llm.embeddings import make_embeddings

    return CachedEmbeddings(
        lambda: make_embeddings(settings),
        settings.openai_embedding_model,
        cache,
        normalised=False,
    )


class EvalServices:
    """What every case of a run shares: a :class:`~bot.service.Services` with the eval's
    cached embeddings plugged in (it builds the models under test, the index and the scenarios
    on first use, thread-safely), and the judge. Each case run gets its own ``Services`` over
    these, whose chat model is that run's caching wrapper (:meth:`for_case`).

    ``catalogue`` and ``scenarios`` may be passed when already loaded (the CLI validated the
    suites with them).
    """

    def __init__(
        self,
        settings: Settings,
        cache: ResponseCache | None,
        catalogue: Any = None,
        scenarios: dict[str, Scenario] | None = None,
    ) -> None:
        from bot.llm.embeddings import LOCAL_EMBEDDING_MODEL, local_embeddings

        self.settings = settings
        self.cache = cache
        if catalogue is None:
            catalogue = load_catalogue(settings.knowledge_dir / "guidance.yaml")
        #: do / avoid of each catalogue behaviour (what guidance cases expect is split by it)
        self.behaviour_kinds: dict[str, str] = {b.id: b.kind for b in catalogue.behaviours}
        sentence = CachedEmbeddings(local_embeddings, LOCAL_EMBEDDING_MODEL, cache)
        self.guidance = _guidance_engine(settings, sentence, catalogue)
        self.services = Services(
            settings,
            guidance=self.guidance,
            embeddings=_index_embeddings(settings, cache, sentence),
        )
        self._scenarios = scenarios
        self.subjects: dict[str, BaseChatModel] = {}  # the models under test built so far
        self.judge_built: Judge | None = None
        self._judge_lock = threading.Lock()

    @property
    def index(self) -> Any:
        return self.services.index

    @property
    def scenarios(self) -> dict[str, Scenario]:
        return self._scenarios if self._scenarios is not None else self.services.scenarios

    def chat_model(self, purpose: str) -> BaseChatModel:
        """The model under test, as the app builds it for coaching or for the customer."""
        model = self.services.customer_model if purpose == "customer" else self.services.model
        self.subjects.setdefault(purpose, model)
        return model

    def for_case(self, state: _RunState, purpose: str, seed_offset: int = 0) -> Services:
        """Services for one case run: the shared resources, with the run's caching wrapper
        around the model under test as its chat model."""
        model = state.wrap(self.chat_model(purpose), seed_offset)
        if purpose == "customer":
            return Services(self.settings, customer_model=model, guidance=self.guidance)
        return Services(self.settings, model=model, index=self.index, guidance=self.guidance)

    @property
    def judge(self) -> Judge:
        with self._judge_lock:
            if self.judge_built is None:
                from bot.llm import describe_llm

                self.judge_built = make_judge(self.settings, describe_llm(self.settings))
            return self.judge_built

    def subject_identity(self) -> str:
        subject = self.subjects.get("coach") or self.subjects.get("customer")
        return model_identity(subject) if subject is not None else ""


class _RunState:
    """Wrappers of one case run: counts cache use and model errors across them."""

    def __init__(self, env: EvalServices) -> None:
        self.env = env
        self.wrappers: list[CachingChatModel] = []
        self.judged = 0

    def wrap(self, model: BaseChatModel, seed_offset: int = 0) -> CachingChatModel:
        wrapper = CachingChatModel.wrap(model, self.env.cache, seed_offset)
        self.wrappers.append(wrapper)
        return wrapper

    def judge_fn(self) -> Callable[[str, str, str], tuple[bool | None, str]]:
        judge = self.env.judge
        wrapper = self.wrap(judge.model)

        def grade(rubric: str, output: str, context: str) -> tuple[bool | None, str]:
            self.judged += 1
            return judge.grade(rubric, output, context, model=wrapper)

        return grade

    @property
    def hits(self) -> int:
        return sum(w.counter.hits for w in self.wrappers)

    @property
    def misses(self) -> int:
        return sum(w.counter.misses for w in self.wrappers)

    def replayed(self) -> float:
        return sum(w.counter.replayed_seconds for w in self.wrappers)


def _needs_judge(assertions: list[Any]) -> bool:
    return any(a.type == "llm_rubric" for a in assertions)


def _finish(
    repeat: int,
    seed: int | None,
    results: list[AssertionResult],
    seconds: float,
    state: _RunState,
    output_text: str,
    output: dict[str, Any],
    error: str | None = None,
) -> CaseRun:
    score = sum(r.score for r in results) / len(results) if results else 0.0
    return CaseRun(
        repeat=repeat,
        seed=seed,
        passed=error is None and bool(results) and all(r.passed for r in results),
        score=round(score if error is None else 0.0, 4),
        seconds=round(seconds, 3),
        cache_hits=state.hits,
        cache_misses=state.misses,
        output_text=output_text,
        output=output,
        assertions=results,
        error=error,
    )


# --------------------------------------------------------------------------- coach


def _coach_output_text(answer: Any) -> str:
    lines = [answer.answer]
    for c in answer.citations:
        meta = c.metadata
        lines.append(
            f"[{c.number}] {meta.get('title')} — {meta.get('section')} ({meta.get('origin')}): "
            f"{c.text[:240]}"
        )
    if answer.flags:
        lines.append(f"flags: {', '.join(answer.flags)}")
    lines.append(f"attempts: {answer.attempts}")
    return "\n".join(lines)


def run_coach_case(env: EvalServices, case: CoachCase, repeat: int) -> CaseRun:
    state = _RunState(env)
    coach = env.for_case(state, "coach", seed_offset=repeat * SEED_STRIDE).coach()
    history = [m.model_dump() for m in case.history]
    started = time.perf_counter()
    answer = coach.ask(case.question, history or None)
    seconds = time.perf_counter() - started + state.replayed()
    ctx = CheckContext(
        env.guidance,
        state.judge_fn() if _needs_judge(case.assertions) else None,
        prompts=env.services.prompts,
    )
    obs = Observation(
        scope="coach",
        texts={
            "answer": answer.answer,
            "say": answer.say,
            "why": answer.why,
            "avoid": answer.avoid or "",
            "question": answer.question,
        },
        seconds=seconds,
        context=f"An agent with an upset customer asked the coach: {case.question}",
        answer=answer,
    )
    results = [evaluate(a, obs, ctx) for a in case.assertions]
    output = {
        "question": answer.question,
        "answer": answer.answer,
        "say": answer.say,
        "why": answer.why,
        "avoid": answer.avoid,
        "flags": answer.flags,
        "out_of_scope": answer.out_of_scope,
        "grounded": answer.grounded,
        "attempts": answer.attempts,
        "citations": [
            {
                "number": c.number,
                "origin": c.metadata.get("origin"),
                "title": c.metadata.get("title"),
                "section": c.metadata.get("section"),
                "score": c.score,
            }
            for c in answer.citations
        ],
        "first_token_s": answer.first_token_s,
    }
    error = f"the model failed: {answer.model_error}" if answer.model_error else None
    return _finish(
        repeat,
        repeat * SEED_STRIDE,
        results,
        seconds,
        state,
        _coach_output_text(answer),
        output,
        error,
    )


# --------------------------------------------------------------------------- customer


def _dialogue(opening: str, name: str, turns: list[Any]) -> str:
    lines = [f"{name}: {opening}"]
    for t in turns:
        lines.append(f"Agent: {t.trainee}")
        lines.append(f"{name}: {t.customer}")
    return "\n".join(lines)


def _customer_output_text(transcript: Any, card: Any) -> str:
    name = transcript.customer_name
    lines = [
        f"{transcript.scenario_title} ({transcript.difficulty}, seed {transcript.seed}); "
        f"anger at start {transcript.start_state.anger}",
        f"{name}: {transcript.opening_line}",
    ]
    for t in transcript.turns:
        extra = ", trainer fallback" if t.fallback_used else ""
        lines.append(f"Agent: {t.trainee}")
        lines.append(f"{name}: {t.customer}    [{t.beat}, anger {t.state.anger}{extra}]")
    lines.append(f"Outcome: {transcript.outcome}; score {card.score}/100 — {card.summary}")
    return "\n".join(lines)


def _script_lines(path: Path) -> list[str]:
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CoachbotError(f"cannot read script {path}: {exc}") from exc
    return [line.strip() for line in raw.splitlines() if line.strip()]


def run_customer_case(
    env: EvalServices, case: CustomerCase, repeat: int, scripts_dir: Path = SCRIPTS_DIR
) -> CaseRun:
    from bot.evals.suites import TurnSpec
    from bot.roleplay.scoring import score_transcript
    from bot.roleplay.simulator import CustomerSimulator

    scenario = env.scenarios[case.scenario]
    name = scenario.customer.name
    state = _RunState(env)
    services = env.for_case(state, "customer")
    seed = case.seed + repeat
    sim = CustomerSimulator(
        scenario,
        services.customer_model,
        services.guidance,
        case.difficulty,
        seed,
        prompts=services.prompts,
    )
    if case.script:
        specs = [TurnSpec(say=line) for line in _script_lines(scripts_dir / f"{case.script}.txt")]
    else:
        specs = case.turn_specs()
    judge_needed = _needs_judge(case.assertions) or any(_needs_judge(s.assertions) for s in specs)
    ctx = CheckContext(
        env.guidance, state.judge_fn() if judge_needed else None, prompts=services.prompts
    )
    persona = f"{name}, an upset customer: {scenario.summary}"
    results: list[AssertionResult] = []
    errors: list[str] = []
    total = 0.0
    for number, spec in enumerate(specs, start=1):
        if sim.finished:
            for a in spec.assertions:
                results.append(
                    AssertionResult(
                        type=a.type,
                        label=a.describe(),
                        passed=False,
                        why=f"the session ended ({sim.transcript.outcome}) before turn {number}",
                        score=0.0,
                        where=f"turn {number}",
                    )
                )
            continue
        anger_before = sim.state.anger
        replayed = state.replayed()
        started = time.perf_counter()
        turn = sim.respond(spec.say)
        seconds = time.perf_counter() - started + state.replayed() - replayed
        total += seconds
        if turn.model_error:
            errors.append(f"turn {number}: the model failed: {turn.model_error}")
        if spec.assertions:
            obs = Observation(
                scope="turn",
                texts={"customer": turn.customer, "trainee": turn.trainee},
                seconds=seconds,
                context=f"{persona} The agent just said: “{turn.trainee}”",
                turn=turn,
                anger_before=anger_before,
                transcript=sim.transcript,
                turns=[turn],
                customer_name=name,
            )
            results += [evaluate(a, obs, ctx, where=f"turn {number}") for a in spec.assertions]
    transcript = sim.end()
    card = score_transcript(transcript, env.guidance)
    if case.assertions:
        obs = Observation(
            scope="end",
            texts={
                "customer": "\n".join(t.customer for t in transcript.turns),
                "transcript": _dialogue(scenario.opening_line, name, transcript.turns),
            },
            seconds=total,
            context=persona,
            transcript=transcript,
            turns=transcript.turns,
            scorecard=card,
            customer_name=name,
        )
        results += [evaluate(a, obs, ctx, where="end") for a in case.assertions]
    output = {
        "scenario": scenario.id,
        "difficulty": case.difficulty,
        "seed": seed,
        "outcome": transcript.outcome,
        "mood": card.mood,
        "score": card.score,
        "turns": [
            {
                "trainee": t.trainee,
                "customer": t.customer,
                "beat": t.beat,
                "anger": t.state.anger,
                "fallback_used": t.fallback_used,
                "attempts": t.attempts,
                "seconds": t.seconds,
            }
            for t in transcript.turns
        ],
    }
    return _finish(
        repeat,
        seed,
        results,
        total,
        state,
        _customer_output_text(transcript, card),
        output,
        "; ".join(errors) or None,
    )


# --------------------------------------------------------------------------- scoring


def build_transcript(spec: InlineTranscript, scenario: Any) -> Any:
    """A Transcript from a suite's compact inline form (detections are left to the scorer)."""
    from bot.roleplay.models import MoodState, Transcript, Turn

    preset = scenario.difficulty[spec.difficulty]
    start_anger = preset.start_anger if spec.start_anger is None else spec.start_anger
    turns = [
        Turn(
            index=i,
            trainee=t.trainee,
            customer=t.customer,
            beat=t.beat,
            state=MoodState(anger=t.anger, patience=preset.patience, turn=i),
        )
        for i, t in enumerate(spec.turns, start=1)
    ]
    return Transcript(
        scenario_id=scenario.id,
        scenario_title=scenario.title,
        customer_name=scenario.customer.name,
        difficulty=spec.difficulty,
        seed=0,
        opening_line=scenario.opening_line,
        start_state=MoodState(anger=start_anger, patience=preset.patience),
        turns=turns,
        outcome=spec.outcome,
    )


def run_scoring_case(env: EvalServices, case: ScoringCase, repeat: int, suite_dir: Path) -> CaseRun:
    from pydantic import ValidationError

    from bot.roleplay.models import Transcript
    from bot.roleplay.scoring import format_scorecard, score_transcript

    state = _RunState(env)
    if case.transcript is not None:
        transcript = build_transcript(case.transcript, env.scenarios[case.transcript.scenario])
    else:
        path = suite_dir / str(case.transcript_file)
        try:
            transcript = Transcript.model_validate_json(path.read_text(encoding="utf-8"))
        except (OSError, ValidationError, ValueError) as exc:
            raise CoachbotError(f"{path} is not a coachbot transcript: {str(exc)[:200]}") from exc
    started = time.perf_counter()
    card = score_transcript(transcript, env.guidance)
    seconds = time.perf_counter() - started
    ctx = CheckContext(
        env.guidance,
        state.judge_fn() if _needs_judge(case.assertions) else None,
        prompts=env.services.prompts,
    )
    text = format_scorecard(card)
    obs = Observation(
        scope="scoring",
        texts={
            "scorecard": text,
            "summary": card.summary,
            "rewrites": "\n".join(f"{r.instead_of} → {r.try_saying}" for r in card.rewrites),
        },
        seconds=seconds,
        context="The debrief scorecard of a role-play with an upset customer.",
        transcript=transcript,
        turns=transcript.turns,
        scorecard=card,
    )
    results = [evaluate(a, obs, ctx) for a in case.assertions]
    dialogue = _dialogue(transcript.opening_line, transcript.customer_name, transcript.turns)
    output = {
        "score": card.score,
        "items": {i.key: i.passed for i in card.items},
        "outcome": card.outcome,
        "mood": card.mood,
    }
    return _finish(repeat, None, results, seconds, state, f"{dialogue}\n\n{text}", output)


# --------------------------------------------------------------------------- guidance


def _split_kinds(ids: list[str], kinds: dict[str, str]) -> dict[str, list[str]]:
    return {kind: [b for b in ids if kinds.get(b) == kind] for kind in ("do", "avoid")}


def _detection_row(d: Any) -> dict[str, Any]:
    """The public fields of a Detection (any others it may grow are left out)."""
    return {
        "behaviour_id": d.behaviour_id,
        "kind": d.kind,
        "confidence": round(float(d.confidence), 3),
        "evidence": d.evidence,
        "method": d.method,
    }


def _guidance_output_text(case: GuidanceCase, rows: list[dict[str, Any]]) -> str:
    lines = [f"Customer: {case.context}"] if case.context else []
    lines.append(f"Agent: {case.text}")
    lines.append(f"expected: {', '.join(case.expect) or 'nothing (neutral)'}")
    found = [
        f"{r['behaviour_id']} ({r['kind']}, {r['method']} {r['confidence']:.2f}: “{r['evidence']}”)"
        for r in rows
    ]
    lines.append(f"detected: {'; '.join(found) or 'nothing'}")
    return "\n".join(lines)


def run_guidance_case(env: EvalServices, case: GuidanceCase, repeat: int) -> CaseRun:
    """Detect the behaviours of one line with the shared guidance engine (no model call)."""
    state = _RunState(env)
    started = time.perf_counter()
    found = env.guidance.detect(case.text, DetectionContext(customer_last=case.context or None))
    seconds = time.perf_counter() - started
    kinds = {d.behaviour_id: d.kind for d in found} | env.behaviour_kinds
    detected = list(dict.fromkeys(d.behaviour_id for d in found))
    verdicts = LineVerdicts(
        expected=_split_kinds(case.expect, kinds),
        detected=_split_kinds(detected, kinds),
        evidence={d.behaviour_id: d.evidence for d in reversed(found)},
    )
    rows = [_detection_row(d) for d in found]
    output = {
        "text": case.text,
        "context": case.context,
        "category": case.category,
        "expect": case.expect,
        "detected": detected,
        "expected_by_kind": verdicts.expected,
        "detected_by_kind": verdicts.detected,
        "detections": rows,
    }
    results = guidance_line_checks(verdicts)
    text = _guidance_output_text(case, rows)
    return _finish(repeat, None, results, seconds, state, text, output)


def _count(scores: Scores, expected: set[str], detected: set[str]) -> None:
    scores.tp += len(expected & detected)
    scores.fp += len(detected - expected)
    scores.fn += len(expected - detected)


def _kind_scores(scores: Scores) -> KindScores:
    return KindScores(
        tp=scores.tp,
        fp=scores.fp,
        fn=scores.fn,
        precision=round(scores.precision, 4),
        recall=round(scores.recall, 4),
    )


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def guidance_summary(outputs: list[dict[str, Any]], errors: int = 0) -> GuidanceSummary:
    """Precision and recall per kind, the false-trigger rate (lines expecting no avoid-behaviour
    where one was detected) and the neutral-clean rate, over guidance case outputs."""
    scores = {"do": Scores(), "avoid": Scores()}
    no_avoid = triggered = neutral = clean = 0
    for out in outputs:
        expected, detected = out["expected_by_kind"], out["detected_by_kind"]
        for kind, kind_scores in scores.items():
            _count(kind_scores, set(expected[kind]), set(detected[kind]))
        if not expected["avoid"]:
            no_avoid += 1
            triggered += bool(detected["avoid"])
        if not out["expect"]:
            neutral += 1
            clean += not out["detected"]
    return GuidanceSummary(
        lines=len(outputs),
        errors=errors,
        avoid=_kind_scores(scores["avoid"]),
        do=_kind_scores(scores["do"]),
        lines_without_avoid=no_avoid,
        false_triggers=triggered,
        false_trigger_rate=_rate(triggered, no_avoid),
        neutral_lines=neutral,
        neutral_clean=clean,
        neutral_clean_rate=_rate(clean, neutral),
    )


def guidance_summaries(cases: list[CaseResult]) -> dict[str, GuidanceSummary]:
    """One summary per suite that has guidance cases (over the runs that did not error)."""
    outputs: dict[str, list[dict[str, Any]]] = {}
    errors: dict[str, int] = {}
    for case in cases:
        if case.kind != "guidance":
            continue
        outputs.setdefault(case.suite, [])
        errors.setdefault(case.suite, 0)
        for run in case.runs:
            if run.error:
                errors[case.suite] += 1
            else:
                outputs[case.suite].append(run.output)
    return {suite: guidance_summary(outs, errors[suite]) for suite, outs in outputs.items()}


# --------------------------------------------------------------------------- the run


@dataclass
class _Task:
    suite: Suite
    case: Any
    repeat: int


def _run_task(env: EvalServices, task: _Task, options: RunOptions) -> CaseRun:
    case = task.case
    try:
        if isinstance(case, CoachCase):
            return run_coach_case(env, case, task.repeat)
        if isinstance(case, CustomerCase):
            return run_customer_case(env, case, task.repeat, options.scripts_dir)
        if isinstance(case, GuidanceCase):
            return run_guidance_case(env, case, task.repeat)
        return run_scoring_case(env, case, task.repeat, task.suite.path.parent)
    except ModelUnavailableError:
        raise
    except Exception as exc:
        return CaseRun(
            repeat=task.repeat,
            passed=False,
            score=0.0,
            seconds=0.0,
            error=redact(f"{type(exc).__name__}: {exc}")[:500],
        )


def _model_failure(runs: list[CaseRun]) -> str | None:
    """A model that cannot be loaded makes every answer a fallback: stop instead."""
    for run in runs:
        if run.error and "ModelUnavailableError" in run.error:
            return run.error
    return None


def _tasks(suites: list[Suite], repeat: int) -> list[_Task]:
    return [
        _Task(suite, case, r) for suite in suites for case in suite.cases for r in range(repeat)
    ]


def _prepare(env: EvalServices, tasks: list[_Task]) -> None:
    """Build what the cases need before the workers start (the guidance engine already is)."""
    kinds = {type(t.case) for t in tasks}
    if CoachCase in kinds:
        env.index  # noqa: B018
    if CustomerCase in kinds or ScoringCase in kinds:
        env.scenarios  # noqa: B018


def _run_all(
    env: EvalServices, tasks: list[_Task], options: RunOptions, progress: Progress | None
) -> list[CaseRun]:
    def one(task: _Task) -> CaseRun:
        run = _run_task(env, task, options)
        failure = _model_failure([run])
        if failure is not None:
            raise ModelUnavailableError(f"{task.suite.name}/{task.case.id}: {failure}")
        if progress is not None:
            progress(f"{task.suite.name}/{task.case.id}")
        return run

    if options.workers > 1 and len(tasks) > 1:
        with ThreadPoolExecutor(max_workers=options.workers) as pool:
            return list(pool.map(one, tasks))
    return [one(t) for t in tasks]


def _case_result(suite: Suite, case: Any, runs: list[CaseRun], options: RunOptions) -> CaseResult:
    threshold = options.threshold if options.threshold is not None else suite.threshold_for(case)
    pass_rate = sum(r.passed for r in runs) / len(runs)
    return CaseResult(
        key=f"{suite.name}/{case.id}",
        suite=suite.name,
        id=case.id,
        kind=case.kind,
        description=case.description,
        tags=case.tags,
        known_failure=case.known_failure,
        threshold=threshold,
        runs=runs,
        pass_rate=round(pass_rate, 4),
        passed=pass_rate >= threshold - 1e-9,
        score=round(sum(r.score for r in runs) / len(runs), 4),
        seconds=round(sum(r.seconds for r in runs), 3),
    )


def _case_results(
    suites: list[Suite], tasks: list[_Task], runs: list[CaseRun], options: RunOptions
) -> list[CaseResult]:
    by_case: dict[tuple[str, str], list[CaseRun]] = {}
    for task, run in zip(tasks, runs, strict=True):
        by_case.setdefault((task.suite.name, task.case.id), []).append(run)
    return [
        _case_result(suite, case, by_case[(suite.name, case.id)], options)
        for suite in suites
        for case in suite.cases
    ]


def _judge_info(env: EvalServices, cases: list[CaseResult]) -> Any:
    judge = env.judge_built
    if judge is None:
        return None
    used = sum(1 for c in cases for r in c.runs for a in r.assertions if a.type == "llm_rubric")
    return judge.info.model_copy(update={"used": used})


def run_evals(
    suites: list[Suite],
    settings: Settings,
    options: RunOptions | None = None,
    progress: Progress | None = None,
    store: ResponseCache | None = None,
    catalogue: Any = None,
    scenarios: dict[str, Any] | None = None,
) -> RunReport:
    """Run every case of ``suites`` (already filtered) ``options.repeat`` times.

    ``store`` is the response cache (default: the one under ``settings.cache_dir``, opened and
    closed here). ``catalogue`` and ``scenarios`` may be passed when already loaded (else read
    from ``settings``).
    """
    from bot.llm import describe_llm

    options = options or RunOptions()
    started_at = datetime.now(UTC)
    started = time.perf_counter()
    own_store = store is None and options.use_cache
    if own_store:
        store = ResponseCache(cache_path(settings))
    tasks = _tasks(suites, options.repeat)
    try:
        env = EvalServices(settings, store if options.use_cache else None, catalogue, scenarios)
        _prepare(env, tasks)
        runs = _run_all(env, tasks, options, progress)
    finally:
        if own_store and store is not None:
            store.close()
    cases = _case_results(suites, tasks, runs, options)
    report = RunReport(
        started=started_at.isoformat(timespec="seconds"),
        seconds=round(time.perf_counter() - started, 2),
        model=describe_llm(settings),
        model_identity=env.subject_identity(),
        judge=_judge_info(env, cases),
        prompts_dir=str(settings.prompts_dir),
        suites=[s.name for s in suites],
        filter=options.filter,
        repeat=options.repeat,
        workers=options.workers,
        cache=f"on ({cache_path(settings)})" if options.use_cache else "off (--no-cache)",
        cache_hits=sum(r.cache_hits for r in runs),
        cache_misses=sum(r.cache_misses for r in runs),
        cases=cases,
        guidance_summary=guidance_summaries(cases),
    )
    report.exit_code = exit_code_for(report)
    return report
