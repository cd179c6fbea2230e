"""Assertion checks: one function per type, each a verdict and a human "why"; and the
built-in checks of guidance cases (:func:`guidance_line_checks`).

A check gets the assertion (its validated spec from :mod:`bot.evals.suites`), an
:class:`Observation` (what the case produced at that point: a coach answer, a customer turn, the
end of a role-play, or a scorecard) and a :class:`CheckContext` (guidance engine, embeddings,
judge). The "why" always quotes what was seen, so a failure explains itself in the report.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bot.coach.answer_text import why_claims
from bot.evals.results import AssertionResult
from bot.evals.suites import GUIDANCE_CHECKS, TEXT_FIELDS
from bot.guidance.engine import GuidanceEngine, split_sentences
from bot.prompts import PromptLibrary

# (rubric, output, context) -> (verdict or None, reason)
JudgeFn = Callable[[str, str, str], tuple[bool | None, str]]


@dataclass
class Verdict:
    passed: bool
    why: str
    score: float | None = None  # graded 0..1; defaults to 1.0 / 0.0


@dataclass
class Observation:
    """What a case produced where the assertion is checked."""

    scope: str  # coach | turn | end | scoring
    texts: dict[str, str]
    seconds: float = 0.0
    context: str = ""  # what the judge is told about the situation
    answer: Any = None  # CoachAnswer
    turn: Any = None  # Turn
    anger_before: int | None = None
    transcript: Any = None  # Transcript
    turns: list[Any] = field(default_factory=list)  # the turns an end check looks at
    scorecard: Any = None  # Scorecard
    customer_name: str = ""


@dataclass
class CheckContext:
    engine: GuidanceEngine
    judge: JudgeFn | None = None
    prompts: PromptLibrary | None = None  # the customer prompts, for the echo check


def _short(text: str, limit: int = 160) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _around(text: str, start: int, end: int, pad: int = 50) -> str:
    left = max(0, start - pad)
    right = min(len(text), end + pad)
    return (
        ("…" if left else "") + _short(text[left:right], 200) + ("…" if right < len(text) else "")
    )


def _values(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def field_for(assertion: Any, scope: str) -> str:
    """The text field an assertion reads: its ``field``, or the natural default."""
    chosen = getattr(assertion, "field", None)
    if chosen:
        return chosen
    if scope == "coach" and assertion.type in {"guidance_present", "guidance_absent"}:
        return "say"
    if assertion.type == "grounded":
        return "why"
    return TEXT_FIELDS[scope][0]


def _text(assertion: Any, obs: Observation) -> tuple[str, str]:
    name = field_for(assertion, obs.scope)
    return name, obs.texts.get(name, "") or ""


# --------------------------------------------------------------------------- text


def check_contains(a: Any, obs: Observation, ctx: CheckContext) -> Verdict:
    name, text = _text(a, obs)
    haystack = text if a.case_sensitive else text.lower()
    missing = [
        v for v in _values(a.value) if (v if a.case_sensitive else v.lower()) not in haystack
    ]
    if missing:
        return Verdict(False, f"{name} lacks {', '.join(map(repr, missing))}: “{_short(text)}”")
    return Verdict(True, f"{name} contains {', '.join(map(repr, _values(a.value)))}")


def check_not_contains(a: Any, obs: Observation, ctx: CheckContext) -> Verdict:
    name, text = _text(a, obs)
    haystack = text if a.case_sensitive else text.lower()
    for value in _values(a.value):
        position = haystack.find(value if a.case_sensitive else value.lower())
        if position >= 0:
            return Verdict(
                False,
                f"{name} contains {value!r}: “{_around(text, position, position + len(value))}”",
            )
    return Verdict(True, f"{name} free of {', '.join(map(repr, _values(a.value)))}")


def _search(a: Any, text: str) -> re.Match[str] | None:
    return re.search(a.pattern, text, re.I if a.ignore_case else 0)


def check_regex(a: Any, obs: Observation, ctx: CheckContext) -> Verdict:
    name, text = _text(a, obs)
    match = _search(a, text)
    if match is None:
        return Verdict(False, f"no match for /{a.pattern}/ in {name}: “{_short(text)}”")
    return Verdict(True, f"{name} matches: “{_short(match.group(0), 80)}”")


def check_not_regex(a: Any, obs: Observation, ctx: CheckContext) -> Verdict:
    name, text = _text(a, obs)
    match = _search(a, text)
    if match is not None:
        return Verdict(
            False, f"/{a.pattern}/ matches {name}: “{_around(text, match.start(), match.end())}”"
        )
    return Verdict(True, f"no match for /{a.pattern}/ in {name}")


def check_length(a: Any, obs: Observation, ctx: CheckContext) -> Verdict:
    name, text = _text(a, obs)
    words, chars = len(text.split()), len(text)
    problems = []
    if a.max_words is not None and words > a.max_words:
        problems.append(f"{words} words > {a.max_words}")
    if a.min_words is not None and words < a.min_words:
        problems.append(f"{words} words < {a.min_words}")
    if a.max_chars is not None and chars > a.max_chars:
        problems.append(f"{chars} characters > {a.max_chars}")
    if problems:
        return Verdict(False, f"{name}: {'; '.join(problems)}: “{_short(text)}”")
    return Verdict(True, f"{name}: {words} words, {chars} characters")


# --------------------------------------------------------------------------- guidance


def _detections(a: Any, obs: Observation, ctx: CheckContext) -> tuple[str, str, list[Any]]:
    name, text = _text(a, obs)
    # Words handed to someone to say are judged without the quotation / negation rules, as
    # the coach itself does: recommending a quoted "calm down" is still recommending it.
    scoped = not (obs.scope == "coach" and name == "say")
    found = ctx.engine.detect(text, scoped=scoped)
    if a.behaviour is not None:
        wanted = set(_values(a.behaviour))
        found = [d for d in found if d.behaviour_id in wanted]
    else:
        found = [d for d in found if d.kind == a.kind]
    return name, text, found


def _listing(found: list[Any]) -> str:
    return "; ".join(f"{d.behaviour_id} (“{_short(d.evidence, 70)}”)" for d in found)


def check_guidance_present(a: Any, obs: Observation, ctx: CheckContext) -> Verdict:
    name, text, found = _detections(a, obs, ctx)
    if not found:
        return Verdict(False, f"{a.target()} not found in {name}: “{_short(text)}”")
    return Verdict(True, f"{name} shows {_listing(found)}")


def check_guidance_absent(a: Any, obs: Observation, ctx: CheckContext) -> Verdict:
    name, text, found = _detections(a, obs, ctx)
    if found:
        return Verdict(False, f"{name} shows {_listing(found)}: “{_short(text)}”")
    return Verdict(True, f"no {a.target().removeprefix('any ')} in {name}")


# --------------------------------------------------------------------------- guidance cases


@dataclass
class LineVerdicts:
    """A guidance case's behaviour ids by kind (``do`` / ``avoid``): expected and detected, and
    the words that showed each detected one."""

    expected: dict[str, list[str]]
    detected: dict[str, list[str]]
    evidence: dict[str, str] = field(default_factory=dict)

    def shown(self, ids: list[str]) -> str:
        return "; ".join(f"{b} (“{_short(self.evidence.get(b, ''), 70)}”)" for b in ids)


def _credited(v: LineVerdicts) -> Verdict:
    wanted = v.expected["do"]
    if not wanted:
        return Verdict(True, "no do-behaviour expected")
    missed = [b for b in wanted if b not in v.detected["do"]]
    score = 1 - len(missed) / len(wanted)
    if missed:
        found = v.shown(v.detected["do"]) or "no do-behaviour"
        return Verdict(False, f"not credited: {', '.join(missed)} (found {found})", score)
    return Verdict(True, f"credited {v.shown(wanted)}", score)


def _no_false_trigger(v: LineVerdicts) -> Verdict:
    extra = [b for b in v.detected["avoid"] if b not in v.expected["avoid"]]
    if extra:
        return Verdict(False, f"false trigger: {v.shown(extra)}")
    return Verdict(True, "no avoid-behaviour beyond the expected ones")


def _trigger_caught(v: LineVerdicts) -> Verdict:
    wanted = v.expected["avoid"]
    if not wanted:
        return Verdict(True, "no avoid-behaviour expected")
    missed = [b for b in wanted if b not in v.detected["avoid"]]
    score = 1 - len(missed) / len(wanted)
    if missed:
        return Verdict(False, f"trigger missed: {', '.join(missed)}", score)
    return Verdict(True, f"caught {v.shown(wanted)}", score)


GUIDANCE_LINE_CHECKS: dict[str, Callable[[LineVerdicts], Verdict]] = {
    "credited": _credited,
    "no_false_trigger": _no_false_trigger,
    "trigger_caught": _trigger_caught,
}


def guidance_line_checks(verdicts: LineVerdicts) -> list[AssertionResult]:
    """The checks of a guidance case, each reported on its own (see GUIDANCE_CHECKS)."""
    out = []
    for name in GUIDANCE_CHECKS:
        verdict = GUIDANCE_LINE_CHECKS[name](verdicts)
        score = verdict.score if verdict.score is not None else float(verdict.passed)
        out.append(
            AssertionResult(
                type=name, label=name, passed=verdict.passed, why=verdict.why, score=round(score, 4)
            )
        )
    return out


# --------------------------------------------------------------------------- coach

_CITATION = re.compile(r"\[(\d+)\]")


def _origin(citation: Any) -> str:
    return str(citation.metadata.get("origin", ""))


def check_citations_valid(a: Any, obs: Observation, ctx: CheckContext) -> Verdict:
    answer = obs.answer
    numbers = [int(n) for n in _CITATION.findall(answer.answer)]
    shown = {c.number for c in answer.citations}
    invalid = sorted({n for n in numbers if n not in shown})
    if invalid:
        return Verdict(
            False,
            f"cites {', '.join(f'[{n}]' for n in invalid)} but only "
            f"{len(shown)} passage(s) were shown: “{_short(answer.why)}”",
        )
    unsourced = [c.number for c in answer.citations if not _origin(c)]
    if unsourced:
        return Verdict(False, f"passage(s) {unsourced} have no origin (provenance lost)")
    if answer.out_of_scope:
        return Verdict(True, "declined, no citations needed")
    cited = sorted(set(numbers))
    if len(cited) < a.min:
        return Verdict(
            False,
            f"cites {len(cited)} passage(s), needs at least {a.min}: “{_short(answer.why)}”",
        )
    return Verdict(
        True,
        f"cites {', '.join(f'[{n}]' for n in cited) or 'nothing'} of {len(shown)} shown "
        f"({', '.join(_origin(c) for c in answer.citations if c.number in cited)})",
    )


def _matches_article(citation: Any, wanted: str) -> bool:
    origin = _origin(citation)
    title = str(citation.metadata.get("title", "") or "")
    doc_id = str(citation.metadata.get("doc_id", "") or "")
    w = wanted.lower()
    return (
        origin.lower() == w
        or origin.lower().startswith(w)
        or doc_id.lower().endswith(w)
        or (len(w) >= 4 and w in title.lower())
    )


def check_cites_article(a: Any, obs: Observation, ctx: CheckContext) -> Verdict:
    answer = obs.answer
    cited_numbers = {int(n) for n in _CITATION.findall(answer.why)}
    cited = [c for c in answer.citations if c.number in cited_numbers]
    wanted = _values(a.article)
    for citation in cited:
        if any(_matches_article(citation, w) for w in wanted):
            return Verdict(
                True,
                f"[{citation.number}] is {_origin(citation)} "
                f"({citation.metadata.get('title', '')})",
            )
    got = ", ".join(f"[{c.number}] {_origin(c)}" for c in cited) or "no passage"
    return Verdict(False, f"wanted {' or '.join(wanted)}; the answer cites {got}")


def check_grounded(a: Any, obs: Observation, ctx: CheckContext) -> Verdict:
    answer = obs.answer
    name, text = _text(a, obs)
    if answer.out_of_scope:
        return Verdict(False, "the question was declined: there is no answer to ground")
    if not answer.citations:
        return Verdict(False, "no passages were retrieved to ground the answer")
    claims = why_claims(text)
    if not claims:
        return Verdict(False, f"{name} makes no claim to check: “{_short(text)}”")
    units: list[str] = []
    for citation in answer.citations:
        units.append(citation.text)
        units += [citation.text[s:e] for s, e in split_sentences(citation.text)]
    embedder = ctx.engine.embeddings
    if embedder is None:
        return Verdict(False, "no embeddings available to compare claims with passages")
    vectors = _normalised(embedder, claims + units)
    sims = vectors[: len(claims)] @ vectors[len(claims) :].T
    best = sims.max(axis=1)
    supported = [float(b) >= a.min_similarity for b in best]
    score = sum(supported) / len(claims)
    weakest = int(np.argmin(best))
    detail = f"weakest {best[weakest]:.2f}: “{_short(claims[weakest], 90)}”"
    if all(supported):
        return Verdict(True, f"{len(claims)}/{len(claims)} claim(s) supported ({detail})", score)
    return Verdict(
        False,
        f"{sum(supported)}/{len(claims)} claim(s) supported by a passage "
        f"(≥ {a.min_similarity}); {detail}",
        score,
    )


def _normalised(embedder: Any, texts: list[str]) -> np.ndarray:
    if hasattr(embedder, "embed_array"):
        return np.asarray(embedder.embed_array(texts), dtype=np.float32)
    vectors = np.asarray(embedder.embed_documents(texts), dtype=np.float32)
    return vectors / np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)


def check_out_of_scope(a: Any, obs: Observation, ctx: CheckContext) -> Verdict:
    answer = obs.answer
    reason = next((f for f in answer.flags if f.startswith("out_of_scope")), "out_of_scope")
    if answer.out_of_scope == a.expected:
        return Verdict(True, f"declined ({reason})" if answer.out_of_scope else "answered")
    if answer.out_of_scope:
        return Verdict(False, f"declined ({reason}) but should have answered")
    return Verdict(False, f"answered but should have declined: “{_short(answer.answer)}”")


def check_flags(a: Any, obs: Observation, ctx: CheckContext) -> Verdict:
    flags = list(obs.answer.flags)
    raised = [f for f in flags if any(f.startswith(p) for p in a.absent)]
    missing = [p for p in a.present if not any(f.startswith(p) for f in flags)]
    problems = []
    if raised:
        problems.append(f"raised {', '.join(raised)}")
    if missing:
        problems.append(f"missing {', '.join(missing)}")
    if problems:
        return Verdict(False, f"{'; '.join(problems)} (flags: {', '.join(flags) or 'none'})")
    return Verdict(True, f"flags: {', '.join(flags) or 'none'}")


# --------------------------------------------------------------------------- customer


def check_in_character(a: Any, obs: Observation, ctx: CheckContext) -> Verdict:
    from bot.roleplay.lines import LineChecker, customer_line_checker

    turns = obs.turns
    if not turns:
        return Verdict(False, "no customer lines to check")
    problems: list[str] = []
    fallbacks = 0
    said: set[str] = set()
    checker = (
        customer_line_checker(obs.customer_name, ctx.engine, ctx.prompts)
        if ctx.prompts is not None
        else LineChecker(obs.customer_name, ctx.engine)
    )
    for turn in turns:
        if turn.fallback_used:
            fallbacks += 1  # a trainer-written line: the model failed the checks three times
        else:
            problem = checker.problem(turn.customer, turn.beat)
            if problem is not None:
                problems.append(f"turn {turn.index} {problem}: “{_short(turn.customer, 90)}”")
        if turn.customer.strip().lower() == turn.trainee.strip().lower():
            problems.append(f"turn {turn.index} repeats the trainee's line")
        if turn.customer in said:
            problems.append(f"turn {turn.index} repeats an earlier line")
        said.add(turn.customer)
    rate = fallbacks / len(turns)
    if problems:
        return Verdict(False, "; ".join(problems), 0.0)
    summary = f"{len(turns)} line(s) in character, {fallbacks} trainer fallback(s) ({rate:.0%})"
    if a.max_fallback_rate is not None and rate > a.max_fallback_rate:
        return Verdict(
            False,
            f"{summary}: above {a.max_fallback_rate:.0%}, the model broke character too often",
            1.0 - rate,
        )
    return Verdict(True, summary, 1.0 - rate)


def check_mood(a: Any, obs: Observation, ctx: CheckContext) -> Verdict:
    if obs.scope == "turn":
        before, after = obs.anger_before, obs.turn.state.anger
        where = "this turn"
    else:
        if not obs.turns:
            return Verdict(False, "no turns were played")
        before, after = obs.transcript.start_state.anger, obs.turns[-1].state.anger
        where = "the session"
    if after < before:
        seen = "de-escalates"
    elif after > before:
        seen = "escalates"
    else:
        seen = "unchanged"
    causes = ""
    if obs.scope == "turn":
        reasons = [f"{c.cause} ({c.delta:+d})" for c in obs.turn.changes if c.field == "anger"]
        causes = f"; {', '.join(reasons)}" if reasons else ""
    why = f"anger {before} → {after} over {where} ({seen}{causes})"
    return Verdict(seen == a.direction, why)


def check_outcome(a: Any, obs: Observation, ctx: CheckContext) -> Verdict:
    outcome = obs.transcript.outcome
    mood = [obs.transcript.start_state.anger] + [t.state.anger for t in obs.turns]
    why = f"outcome {outcome} after {len(obs.turns)} turn(s), anger {' → '.join(map(str, mood))}"
    return Verdict(outcome in _values(a.equals), why)


def check_beat(a: Any, obs: Observation, ctx: CheckContext) -> Verdict:
    beat = obs.turn.beat
    return Verdict(beat in _values(a.equals), f"beat {beat}: “{_short(obs.turn.customer, 90)}”")


# --------------------------------------------------------------------------- scorecard


def check_scorecard_item(a: Any, obs: Observation, ctx: CheckContext) -> Verdict:
    card = obs.scorecard
    items = {i.key: i for i in card.items}
    item = items.get(a.item) or items.get(f"avoided_{a.item}")
    if item is None:
        return Verdict(False, f"no scorecard item {a.item!r}")
    evidence = "; ".join(f"turn {e.turn}: “{_short(e.quote, 60)}”" for e in item.evidence[:2])
    state = "passed" if item.passed else "failed"
    why = f"{item.label}: {state} ({item.points}/{item.max_points})"
    why += f" — {evidence}" if evidence else (f" — {item.note}" if item.note else "")
    return Verdict(item.passed == a.passed, why)


def check_score(a: Any, obs: Observation, ctx: CheckContext) -> Verdict:
    card = obs.scorecard
    ok = (a.min is None or card.score >= a.min) and (a.max is None or card.score <= a.max)
    return Verdict(ok, f"score {card.score}/100 — {card.summary}")


# --------------------------------------------------------------------------- others


def check_latency(a: Any, obs: Observation, ctx: CheckContext) -> Verdict:
    ok = obs.seconds <= a.max_seconds
    return Verdict(ok, f"{obs.seconds:.2f} s ({'≤' if ok else '>'} {a.max_seconds:g} s)")


def check_llm_rubric(a: Any, obs: Observation, ctx: CheckContext) -> Verdict:
    _, text = _text(a, obs)
    if ctx.judge is None:
        return Verdict(False, "no judge model available")
    verdict, reason = ctx.judge(a.rubric, text, obs.context)
    if verdict is None:
        return Verdict(False, f"the judge gave no PASS / FAIL verdict: “{_short(reason)}”")
    return Verdict(verdict, f"judge: {'PASS' if verdict else 'FAIL'}: {reason or '(no reason)'}")


CHECKS: dict[str, Callable[[Any, Observation, CheckContext], Verdict]] = {
    "contains": check_contains,
    "not_contains": check_not_contains,
    "regex": check_regex,
    "not_regex": check_not_regex,
    "guidance_present": check_guidance_present,
    "guidance_absent": check_guidance_absent,
    "citations_valid": check_citations_valid,
    "cites_article": check_cites_article,
    "grounded": check_grounded,
    "out_of_scope": check_out_of_scope,
    "flags": check_flags,
    "in_character": check_in_character,
    "mood": check_mood,
    "outcome": check_outcome,
    "beat": check_beat,
    "scorecard_item": check_scorecard_item,
    "score": check_score,
    "latency": check_latency,
    "length": check_length,
    "llm_rubric": check_llm_rubric,
}


def evaluate(a: Any, obs: Observation, ctx: CheckContext, where: str = "") -> AssertionResult:
    """Run one assertion; a check that raises fails with the error as its reason."""
    try:
        verdict = CHECKS[a.type](a, obs, ctx)
    except Exception as exc:
        verdict = Verdict(False, f"the check failed: {type(exc).__name__}: {exc}"[:300])
    score = verdict.score if verdict.score is not None else (1.0 if verdict.passed else 0.0)
    return AssertionResult(
        type=a.type,
        label=a.describe(),
        passed=verdict.passed,
        why=verdict.why,
        score=round(score, 4),
        where=where,
        field=field_for(a, obs.scope) if hasattr(a, "field") else None,
    )
