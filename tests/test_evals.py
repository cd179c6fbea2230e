"""The eval harness: suites, assertions, cache, baseline, reports, CLI and exit codes.

Unit tests use fake chat models; the regression test breaks a copy of the coach prompt so it
recommends "calm down" and checks the harness reports it against a baseline. One integration
test runs the smoke subset of the default suite on the embedded model.
"""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import TypeAdapter
from rich.console import Console
from typer.testing import CliRunner

from bot.cli import main as cli
from bot.coach.models import Citation, CoachAnswer
from bot.config import PROJECT_ROOT, Settings
from bot.errors import DataValidationError
from bot.evals.assertions import CheckContext, Observation, evaluate
from bot.evals.baseline import compare, load_baseline, save_baseline
from bot.evals.cache import (
    CachedEmbeddings,
    CachingChatModel,
    ResponseCache,
    model_identity,
    request_key,
)
from bot.evals.judge import parse_verdict
from bot.evals.reports import print_terminal, render_html, render_junit, write_reports
from bot.evals.results import AssertionResult, CaseResult, CaseRun, RunReport, exit_code_for
from bot.evals.runner import RunOptions, build_transcript, run_evals
from bot.evals.suites import (
    Assertion,
    Checker,
    FilterError,
    InlineTranscript,
    load_suite,
    load_suites,
    parse_filter,
    resolve_suites,
)
from bot.guidance.engine import load_catalogue
from bot.roleplay.models import MoodState, StateChange, Transcript, Turn
from bot.roleplay.scenarios import load_scenarios
from bot.roleplay.scoring import score_transcript

SUITES_DIR = PROJECT_ROOT / "evals" / "suites"
SCRIPTS_DIR = PROJECT_ROOT / "evals" / "roleplay_scripts"
GOOD = (
    "Say: You have every right to be upset, and I'm sorry your parcel arrived broken.\n"
    "Why: Validating their feelings helps them feel heard [1]."
)
CUSTOMER_LINE = "I want this sorted today, I am really not happy about any of this."
ASSERTION = TypeAdapter(Assertion)


# ----------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def scenarios():
    return load_scenarios(PROJECT_ROOT / "prompts" / "scenarios")[0]


@pytest.fixture(scope="module")
def checker():
    catalogue = load_catalogue(PROJECT_ROOT / "knowledge" / "guidance.yaml")
    return Checker.for_catalogue(
        catalogue,
        load_scenarios(PROJECT_ROOT / "prompts" / "scenarios")[0],
        SCRIPTS_DIR,
    )


@pytest.fixture(scope="module")
def eval_dirs(tmp_path_factory):
    """A data dir (the knowledge index, built once) and a cache dir for eval runs."""
    root = tmp_path_factory.mktemp("evals")
    cache = root / "cache"
    cache.mkdir()
    # Reuse the trained guidance classifier, if this machine has one, instead of retraining.
    for npz in Settings().cache_dir.glob("guidance-*.npz"):
        shutil.copy(npz, cache / npz.name)
    return {"data": root / "data", "cache": cache}


@pytest.fixture
def eval_settings(eval_dirs, tmp_path):
    """Settings for eval runs with a fresh response cache per test."""
    cache = tmp_path / "cache"
    shutil.copytree(eval_dirs["cache"], cache)
    return Settings(_env_file=None, data_dir=eval_dirs["data"], cache_dir=cache)


@pytest.fixture
def cli_env(eval_settings, monkeypatch):
    """Settings for the CLI (``run_cli`` passes them in), with no judge model configured."""
    monkeypatch.delenv("COACHBOT_JUDGE_MODEL", raising=False)
    return eval_settings


class CountingModel(FakeListChatModel):
    """A fake chat model that records how often it was called."""

    calls: int = 0

    def _call(self, *args, **kwargs):
        self.calls += 1
        return super()._call(*args, **kwargs)

    def _stream(self, *args, **kwargs):
        self.calls += 1
        yield from super()._stream(*args, **kwargs)


def fake_models(coach: BaseChatModel | None = None, customer=None, judge=None):
    """A make_chat_model replacement: the judge asks for temperature 0, the customer 0.8."""

    def make(settings, **overrides):
        if overrides.get("temperature") == 0.0:
            return judge or FakeListChatModel(responses=["PASS: it meets the rubric"])
        if overrides.get("temperature") == 0.8:
            return customer or FakeListChatModel(responses=[CUSTOMER_LINE])
        return coach or FakeListChatModel(responses=[GOOD])

    return make


def write_suite(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------- assertions: one per type


def answer(**kw) -> CoachAnswer:
    citation = Citation(
        number=1,
        text=(
            "Instead, employees can use phrases such as “You have every right to feel upset” to "
            "help the upset client to feel validated in their emotions, which can help to sooth "
            "hurt feelings."
        ),
        score=0.6,
        metadata={
            "origin": "000_de7749b5180952da.txt",
            "title": "Understanding Customers' Perspective",
            "section": "Validate",
        },
    )
    values: dict[str, Any] = {
        "question": "She's upset about a broken parcel",
        "retrieval_query": "She's upset about a broken parcel",
        "say": "You have every right to be upset about your parcel.",
        "why": "Phrases like this help the upset client feel validated in their emotions [1].",
        "citations": [citation],
        "grounded": True,
    }
    values.update(kw)
    values.setdefault("answer", f"Say: {values['say']}\nWhy: {values['why']}")
    return CoachAnswer(**values)


def coach_obs(a: CoachAnswer, seconds: float = 1.0) -> Observation:
    return Observation(
        scope="coach",
        texts={"answer": a.answer, "say": a.say, "why": a.why, "avoid": a.avoid or ""},
        seconds=seconds,
        answer=a,
    )


def turn(index, trainee, customer, anger, beat="gripe", fallback=False, changes=()):
    return Turn(
        index=index,
        trainee=trainee,
        customer=customer,
        beat=beat,
        state=MoodState(anger=anger, patience=4),
        fallback_used=fallback,
        changes=list(changes),
    )


def turn_obs(t: Turn, before: int) -> Observation:
    return Observation(
        scope="turn",
        texts={"customer": t.customer, "trainee": t.trainee},
        turn=t,
        anger_before=before,
        turns=[t],
        customer_name="Margaret",
    )


def end_obs(turns: list[Turn], outcome: str, start: int = 7) -> Observation:
    transcript = Transcript(
        scenario_id="damaged-delivery",
        scenario_title="Damaged delivery",
        customer_name="Margaret",
        difficulty="medium",
        seed=0,
        opening_line="It came smashed!",
        start_state=MoodState(anger=start, patience=4),
        turns=turns,
        outcome=outcome,
    )
    return Observation(
        scope="end",
        texts={"customer": "\n".join(t.customer for t in turns)},
        transcript=transcript,
        turns=turns,
        customer_name="Margaret",
    )


def scoring_obs(engine, scenarios, turns: list[dict], outcome="ended") -> Observation:
    spec = InlineTranscript(scenario="damaged-delivery", outcome=outcome, turns=turns)
    transcript = build_transcript(spec, scenarios["damaged-delivery"])
    card = score_transcript(transcript, engine)
    return Observation(
        scope="scoring",
        texts={"scorecard": card.summary, "summary": card.summary},
        transcript=transcript,
        turns=transcript.turns,
        scorecard=card,
    )


GOOD_LINE = "I've been waiting all week for this parcel and it came smashed to bits."
KIND = [{"trainee": "You have every right to be upset.", "customer": "I am.", "anger": 6}]
RUDE = [{"trainee": "Calm down, madam.", "customer": "Don't you dare.", "anger": 9}]


def judge_says(reply: str):
    return lambda rubric, output, context: parse_verdict(reply)


def coach(seconds: float = 1.0, **kw):
    return lambda e, s: coach_obs(answer(**kw), seconds=seconds)


def scored(turns: list[dict]):
    return lambda e, s: scoring_obs(e, s, turns)


# (assertion, observation factory, judge reply or None, expected pass)
CASES: list[tuple[dict, Any, str | None, bool]] = [
    ({"type": "contains", "value": "every right"}, coach(), None, True),
    ({"type": "contains", "value": ["right", "refund"]}, coach(), None, False),
    ({"type": "not_contains", "value": "calm down"}, coach(), None, True),
    ({"type": "not_contains", "value": "UPSET"}, coach(), None, False),
    ({"type": "contains", "value": "UPSET", "case_sensitive": True}, coach(), None, False),
    ({"type": "regex", "pattern": r"\[\d\]", "field": "why"}, coach(), None, True),
    ({"type": "regex", "pattern": r"\?$", "field": "say"}, coach(), None, False),
    ({"type": "not_regex", "pattern": "calm"}, coach(), None, True),
    ({"type": "not_regex", "pattern": "par+cel"}, coach(), None, False),
    ({"type": "guidance_present", "behaviour": "validate_feelings"}, coach(), None, True),
    ({"type": "guidance_present", "kind": "avoid"}, coach(), None, False),
    ({"type": "guidance_absent", "kind": "avoid"}, coach(), None, True),
    # A quoted trigger in words handed to the agent still counts (scope rules off for Say).
    (
        {"type": "guidance_absent", "behaviour": "tell_to_calm_down"},
        coach(say='Just say "please calm down".'),
        None,
        False,
    ),
    ({"type": "citations_valid"}, coach(), None, True),
    ({"type": "citations_valid"}, coach(why="It helps [1] and [3]."), None, False),
    ({"type": "citations_valid"}, coach(why="It helps."), None, False),
    ({"type": "citations_valid", "min": 0}, coach(why="It helps."), None, True),
    ({"type": "cites_article", "article": "000"}, coach(), None, True),
    ({"type": "cites_article", "article": ["004", "Six Steps"]}, coach(), None, False),
    ({"type": "grounded"}, coach(), None, True),
    (
        {"type": "grounded"},
        coach(why="Bananas ripen faster next to apples in a paper bag [1]."),
        None,
        False,
    ),
    ({"type": "grounded"}, coach(out_of_scope=True, citations=[]), None, False),
    (
        {"type": "out_of_scope"},
        coach(out_of_scope=True, flags=["out_of_scope:company"]),
        None,
        True,
    ),
    ({"type": "out_of_scope"}, coach(), None, False),
    ({"type": "out_of_scope", "expected": False}, coach(out_of_scope=True), None, False),
    ({"type": "flags", "absent": ["say_replaced"]}, coach(flags=["uncited"]), None, True),
    (
        {"type": "flags", "absent": ["say_replaced"]},
        coach(flags=["say_replaced_from_catalogue"]),
        None,
        False,
    ),
    ({"type": "flags", "present": ["uncited"]}, coach(), None, False),
    (
        {"type": "in_character"},
        lambda e, s: turn_obs(turn(1, "Hello", GOOD_LINE, 6), 7),
        None,
        True,
    ),
    (
        {"type": "in_character"},
        lambda e, s: turn_obs(
            turn(1, "Hello", "As an AI language model, I cannot be upset about parcels.", 6), 7
        ),
        None,
        False,
    ),
    (
        {"type": "in_character"},
        lambda e, s: turn_obs(
            turn(1, "Hello", "Margaret sighs and looks at the broken box.", 6), 7
        ),
        None,
        False,
    ),
    (
        {"type": "in_character", "max_fallback_rate": 0.5},
        lambda e, s: end_obs(
            [
                turn(1, "a", GOOD_LINE, 6, fallback=True),
                turn(2, "b", "It was a birthday present for Lily, you know.", 5, fallback=True),
            ],
            "ended",
        ),
        None,
        False,
    ),
    (
        {"type": "in_character", "max_fallback_rate": 0.5},
        lambda e, s: end_obs(
            [
                turn(1, "a", GOOD_LINE, 6, fallback=True),
                turn(2, "b", "It was a birthday present for Lily, you know.", 5),
            ],
            "ended",
        ),
        None,
        True,
    ),
    (
        {"type": "mood", "direction": "escalates"},
        lambda e, s: turn_obs(
            turn(
                1,
                "Calm down.",
                "How dare you!",
                9,
                changes=[
                    StateChange(field="anger", delta=2, cause="tell_to_calm_down", reason="x")
                ],
            ),
            7,
        ),
        None,
        True,
    ),
    (
        {"type": "mood", "direction": "de-escalates"},
        lambda e, s: turn_obs(turn(1, "Calm down.", "How dare you!", 9), 7),
        None,
        False,
    ),
    (
        {"type": "mood", "direction": "de-escalates"},
        lambda e, s: end_obs([turn(1, "a", GOOD_LINE, 5)], "ended", start=7),
        None,
        True,
    ),
    (
        {"type": "mood", "direction": "unchanged"},
        lambda e, s: end_obs([turn(1, "a", GOOD_LINE, 5)], "ended", start=7),
        None,
        False,
    ),
    (
        {"type": "outcome", "equals": "resolved"},
        lambda e, s: end_obs([turn(1, "a", "Yes, that works for me.", 2, "accept")], "resolved"),
        None,
        True,
    ),
    (
        {"type": "outcome", "equals": ["customer_left", "turn_limit"]},
        lambda e, s: end_obs([turn(1, "a", GOOD_LINE, 6)], "ended"),
        None,
        False,
    ),
    (
        {"type": "beat", "equals": "gripe"},
        lambda e, s: turn_obs(turn(1, "Hello", GOOD_LINE, 6), 7),
        None,
        True,
    ),
    (
        {"type": "beat", "equals": ["accept", "reveal"]},
        lambda e, s: turn_obs(turn(1, "Hello", GOOD_LINE, 6), 7),
        None,
        False,
    ),
    ({"type": "scorecard_item", "item": "validated"}, scored(KIND), None, True),
    ({"type": "scorecard_item", "item": "validated"}, scored(RUDE), None, False),
    (
        {"type": "scorecard_item", "item": "tell_to_calm_down", "passed": False},
        scored(RUDE),
        None,
        True,
    ),
    (
        {"type": "scorecard_item", "item": "tell_to_calm_down", "passed": False},
        scored(KIND),
        None,
        False,
    ),
    ({"type": "score", "min": 30}, scored(KIND), None, True),
    ({"type": "score", "min": 80}, scored(RUDE), None, False),
    ({"type": "latency", "max_seconds": 2}, coach(seconds=1.5), None, True),
    ({"type": "latency", "max_seconds": 2}, coach(seconds=2.5), None, False),
    ({"type": "length", "field": "say", "max_words": 12}, coach(), None, True),
    ({"type": "length", "field": "say", "max_words": 5}, coach(), None, False),
    ({"type": "length", "field": "say", "min_words": 20}, coach(), None, False),
    ({"type": "length", "max_chars": 20}, coach(), None, False),
    (
        {"type": "llm_rubric", "rubric": "Acknowledges feelings"},
        coach(),
        "PASS: it validates her",
        True,
    ),
    ({"type": "llm_rubric", "rubric": "Acknowledges feelings"}, coach(), "**FAIL** - cold", False),
    (
        {"type": "llm_rubric", "rubric": "Acknowledges feelings"},
        coach(),
        "I think it is okay.",
        False,
    ),
]


@pytest.mark.parametrize(("spec", "make_obs", "judge", "expected"), CASES)
def test_assertion(engine, scenarios, spec, make_obs, judge, expected):
    assertion = ASSERTION.validate_python(spec)
    ctx = CheckContext(engine, judge_says(judge) if judge is not None else None)
    result = evaluate(assertion, make_obs(engine, scenarios), ctx)
    assert result.passed is expected, result.why
    assert result.why and result.label


def test_every_assertion_type_is_tested_both_ways():
    from bot.evals.suites import ASSERTION_TYPES

    outcomes: dict[str, set[bool]] = {}
    for spec, _, _, expected in CASES:
        outcomes.setdefault(spec["type"], set()).add(expected)
    assert set(outcomes) == set(ASSERTION_TYPES)
    assert all(v == {True, False} for v in outcomes.values()), outcomes


def test_failure_reasons_quote_what_was_seen(engine):
    a = ASSERTION.validate_python({"type": "not_contains", "field": "say", "value": "calm down"})
    result = evaluate(a, coach_obs(answer(say="Please calm down, madam.")), CheckContext(engine))
    assert not result.passed and "Please calm down" in result.why and result.field == "say"


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("PASS: fine", True),
        ("FAIL: tells her to calm down", False),
        ("**PASS** — acknowledges it", True),
        ("Verdict: FAIL. Cold.", False),
        ("Fails to acknowledge her.", False),
        ("Sure. PASS: it is warm.", True),
        ("It passes, I think, or fails", None),
        ("", None),
    ],
)
def test_judge_verdict_parsing(reply, verdict):
    assert parse_verdict(reply)[0] is verdict


# ----------------------------------------------------------------- suites and validation


MINIMAL = """
kind: coach
cases:
  - id: one
    question: "He is shouting, what do I say?"
    assert:
      - {type: contains, value: "x"}
"""


@pytest.mark.parametrize(
    ("old", "new", "field", "words"),
    [
        ("type: contains", "type: containz", "cases[0].assert[0]", "unknown assertion type"),
        (
            '{type: contains, value: "x"}',
            "{type: contains}",
            "cases[0].assert[0].value",
            "required",
        ),
        (
            '{type: contains, value: "x"}',
            "{type: mood, direction: escalates}",
            "cases[0].assert[0].type",
            "does not apply",
        ),
        ('value: "x"', 'value: "x", field: sayy', "cases[0].assert[0].field", "unknown field"),
        (
            '{type: contains, value: "x"}',
            "{type: guidance_present, behaviour: be_nice}",
            "cases[0].assert[0].behaviour",
            "unknown behaviour",
        ),
        (
            '{type: contains, value: "x"}',
            "{type: regex, pattern: '(unclosed'}",
            "cases[0].assert[0].pattern",
            "not a valid regex",
        ),
        (
            '{type: contains, value: "x"}',
            "{type: guidance_present}",
            "cases[0].assert[0]",
            "either 'behaviour'",
        ),
        ("kind: coach\n", "", "cases[0]", "missing 'kind'"),
        ("    question:", "    questoin:", "cases[0].questoin", "Extra inputs"),
        ("  - id: one", "  - id: One Two", "cases[0].id", "pattern"),
        ('value: "x"', 'value: "x", colour: red', "cases[0].assert[0].colour", "Extra inputs"),
    ],
)
def test_suite_errors_name_file_and_field(tmp_path, checker, old, new, field, words):
    assert old in MINIMAL
    path = write_suite(tmp_path / "broken.yaml", MINIMAL.replace(old, new, 1))
    with pytest.raises(DataValidationError) as err:
        load_suite(path, checker)
    message = str(err.value)
    assert str(path) in message and f"field '{field}'" in message and words in message, message
    assert "\n" not in message


CUSTOMER = """
kind: customer
cases:
  - id: c
    scenario: damaged-delivery
    turns:
      - say: "Calm down."
        assert:
          - {type: beat, equals: escalate}
    assert:
      - {type: outcome, equals: customer_left}
"""


@pytest.mark.parametrize(
    ("old", "new", "field", "words"),
    [
        (
            "scenario: damaged-delivery",
            "scenario: no-such-scenario",
            "cases[0].scenario",
            "unknown scenario",
        ),
        (
            "{type: beat, equals: escalate}",
            "{type: outcome, equals: resolved}",
            "cases[0].turns[0].assert[0].type",
            "does not apply to customer turns",
        ),
        ("equals: customer_left", "equals: happy", "cases[0].assert[0].equals", "unknown outcome"),
        ("    turns:", "    script: damaged-delivery/triggers\n    turns:", "cases[0]", "not both"),
        (
            "{type: outcome, equals: customer_left}",
            "{type: scorecard_item, item: charm}",
            "cases[0].assert[0].item",
            "unknown scorecard item",
        ),
        (
            '      - say: "Calm down."',
            '      - sai: "Calm down."',
            "cases[0].turns[0].sai",
            "Extra inputs",
        ),
    ],
)
def test_customer_suite_errors(tmp_path, checker, old, new, field, words):
    path = write_suite(tmp_path / "c.yaml", CUSTOMER.replace(old, new, 1))
    with pytest.raises(DataValidationError) as err:
        load_suite(path, checker)
    assert f"field '{field}'" in str(err.value) and words in str(err.value), str(err.value)


def test_malformed_yaml_and_duplicates(tmp_path, checker):
    bad = write_suite(tmp_path / "bad.yaml", "cases: [unclosed\n")
    with pytest.raises(DataValidationError, match="invalid YAML"):
        load_suite(bad, checker)
    dup = write_suite(tmp_path / "dup.yaml", MINIMAL + MINIMAL.split("cases:\n")[1])
    with pytest.raises(DataValidationError, match="duplicate case id"):
        load_suite(dup, checker)
    with pytest.raises(DataValidationError, match="unknown suite 'nope'"):
        resolve_suites(["nope"], SUITES_DIR)


def test_default_suites_are_valid_and_big_enough(checker):
    suites = load_suites(resolve_suites([], SUITES_DIR), checker)
    cases = [(s.name, c) for s in suites for c in s.cases]
    kinds = {c.kind for _, c in cases}
    assert len(cases) >= 40 and kinds == {"coach", "customer", "scoring", "guidance"}
    smoke = [c for _, c in cases if "smoke" in c.tags]
    assert {c.kind for c in smoke} == {"coach", "customer", "scoring"}
    assert 3 <= len(smoke) <= 15
    rubric = [c for _, c in cases if any(a.type == "llm_rubric" for a in c.assertions)]
    assert 1 <= len(rubric) <= 4, "keep rubric cases few: the small model judges poorly"


def test_suite_level_assertions_apply_to_every_case(checker):
    suite = load_suite(SUITES_DIR / "coach-scope.yaml", checker)
    assert all(c.assertions[0].type == "out_of_scope" for c in suite.cases)


@pytest.mark.parametrize(
    ("expression", "keys"),
    [
        ("tag:smoke", {"a"}),
        ("kind:customer", {"b"}),
        ("not tag:smoke and kind:coach", {"c"}),
        ("(id:a or id:b) and not kind:customer", {"a"}),
        ("c*", {"c"}),
        ("suite:s1", {"a", "b", "c"}),
        ("scenario:damaged-*", {"b"}),
    ],
)
def test_filter_expressions(expression, keys):
    from types import SimpleNamespace as NS

    cases = [
        NS(id="a", tags=["smoke"], kind="coach"),
        NS(id="b", tags=[], kind="customer", scenario="damaged-delivery"),
        NS(id="c", tags=[], kind="coach"),
    ]
    keep = parse_filter(expression)
    assert {c.id for c in cases if keep("s1", c)} == keys


@pytest.mark.parametrize(
    "expression", ["", "tag:", "colour:red", "(tag:smoke", "tag:a and", "or x"]
)
def test_bad_filters_are_rejected(expression):
    with pytest.raises(FilterError, match="--filter"):
        parse_filter(expression)


# ----------------------------------------------------------------- cache


def test_cache_hit_does_not_call_the_model(tmp_path):
    store = ResponseCache(tmp_path / "c.sqlite3")
    inner = CountingModel(responses=["Say: hello there.\nWhy: because [1]."])
    messages = [SystemMessage("system"), HumanMessage("question")]
    first = CachingChatModel.wrap(inner, store).invoke(messages, seed=1, max_tokens=20)
    assert inner.calls == 1
    wrapper = CachingChatModel.wrap(inner, store)
    streamed = "".join(str(c.content) for c in wrapper.stream(messages, seed=1, max_tokens=20))
    assert inner.calls == 1 and streamed == first.content
    assert wrapper.counter.hits == 1 and wrapper.counter.misses == 0
    # Different parameters, or a different model, are different requests.
    CachingChatModel.wrap(inner, store).invoke(messages, seed=2, max_tokens=20)
    assert inner.calls == 2
    other = CountingModel(responses=["Something else."])
    assert CachingChatModel.wrap(other, store).invoke(messages, seed=1).content == "Something else."
    # --no-cache: no store, the model is called every time.
    CachingChatModel.wrap(inner, None).invoke(messages, seed=1, max_tokens=20)
    assert inner.calls == 3


class SilentModel(BaseChatModel):
    """Like the embedded model when it stops at once: one empty final chunk."""

    calls: int = 0

    @property
    def _llm_type(self) -> str:
        return "silent"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=""))])

    def _stream(self, messages, stop=None, run_manager=None, **kwargs):
        self.calls += 1
        yield ChatGenerationChunk(message=AIMessageChunk(content=""))


def test_an_empty_reply_streams_live_and_cached(tmp_path):
    store = ResponseCache(tmp_path / "c.sqlite3")
    inner = SilentModel()
    for _ in range(2):
        chunks = list(CachingChatModel.wrap(inner, store).stream([HumanMessage("q")], seed=1))
        assert "".join(str(c.content) for c in chunks) == ""
    assert inner.calls == 1


def test_repeat_seed_offset_changes_the_key(tmp_path):
    store = ResponseCache(tmp_path / "c.sqlite3")
    inner = CountingModel(responses=["a", "b"])
    messages = [HumanMessage("q")]
    CachingChatModel.wrap(inner, store, seed_offset=0).invoke(messages, seed=1)
    CachingChatModel.wrap(inner, store, seed_offset=1000).invoke(messages, seed=1)
    assert inner.calls == 2


def test_stream_stopped_early_is_completed_on_demand(tmp_path):
    store = ResponseCache(tmp_path / "c.sqlite3")
    text = "Say: one two three four.\nWhy: five six [1]."
    inner = CountingModel(responses=[text, text])
    messages = [HumanMessage("q")]
    stream = CachingChatModel.wrap(inner, store).stream(messages, seed=1)
    head = "".join(str(next(stream).content) for _ in range(6))
    stream.close()
    assert head == text[:6]
    # Replaying the partial reply and stopping at the same place needs no model call...
    replay = CachingChatModel.wrap(inner, store).stream(messages, seed=1)
    assert "".join(str(next(replay).content) for _ in range(6)) == head
    replay.close()
    assert inner.calls == 1
    # ...and a caller that wants the whole reply gets it, generated once more.
    full = CachingChatModel.wrap(inner, store).invoke(messages, seed=1)
    assert full.content == text and inner.calls == 2
    assert CachingChatModel.wrap(inner, store).invoke(messages, seed=1).content == text
    assert inner.calls == 2


def test_cache_hit_never_loads_the_local_model(tmp_path):
    from bot.llm.local_chat import LocalChatModel

    model = LocalChatModel(model_path=str(tmp_path / "missing.gguf"))
    store = ResponseCache(tmp_path / "c.sqlite3")
    messages = [HumanMessage("q")]
    key = request_key(model_identity(model), messages, None, {"seed": 3})
    store.put(key, "local", ["cached ", "reply"], True, 2.5)
    wrapper = CachingChatModel.wrap(model, store)
    assert wrapper.invoke(messages, seed=3).content == "cached reply"
    assert model._engine is None and wrapper.counter.replayed_seconds == 2.5


def test_cached_embeddings_skip_the_model(tmp_path):
    import numpy as np

    calls = []

    class Fake:
        def embed_documents(self, texts):
            calls.append(list(texts))
            return [[float(len(t)), 1.0] for t in texts]

    store = ResponseCache(tmp_path / "c.sqlite3")
    first = CachedEmbeddings(Fake, "fake", store, normalised=False)
    vectors = first.embed_array(["ab", "abcd", "ab"])
    assert calls == [["ab", "abcd"]]
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    second = CachedEmbeddings(lambda: pytest.fail("the model was loaded"), "fake", store)
    assert second.embed_query("abcd") == [4.0, 1.0]


# ----------------------------------------------------------------- running suites


COACH_SUITE = """
name: mini
kind: coach
cases:
  - id: shouting
    tags: [smoke]
    question: "He is shouting about his broken parcel, what do I say?"
    assert:
      - {type: out_of_scope, expected: false}
      - {type: citations_valid}
      - {type: guidance_absent, kind: avoid}
      - {type: not_contains, field: say, value: calm down}
  - id: refund-window
    question: "What's our refund window?"
    assert:
      - {type: out_of_scope}
"""


def test_cached_rerun_does_not_call_the_model(tmp_path, eval_settings, checker, monkeypatch):
    model = CountingModel(responses=[GOOD])
    monkeypatch.setattr("bot.llm.make_chat_model", fake_models(coach=model))
    suites = load_suites([write_suite(tmp_path / "mini.yaml", COACH_SUITE)], checker)
    first = run_evals(suites, eval_settings, RunOptions())
    calls = model.calls
    assert calls >= 1 and first.cache_misses >= 1 and first.passed == 2
    second = run_evals(suites, eval_settings, RunOptions())
    assert model.calls == calls, "a cached re-run must not call the model"
    assert second.cache_misses == 0 and second.cache_hits == first.cache_misses
    assert [c.passed for c in second.cases] == [c.passed for c in first.cases]
    no_cache = run_evals(suites, eval_settings, RunOptions(use_cache=False))
    assert model.calls > calls and no_cache.cache_hits == 0


def test_repeat_reports_a_pass_rate(tmp_path, eval_settings, checker, monkeypatch):
    # A model that alternates a trigger and a good answer: some repeats fail.
    bad = "Say: Please calm down, sir.\nWhy: It helps [1]."
    model = FakeListChatModel(responses=[GOOD, bad, bad])
    monkeypatch.setattr("bot.llm.make_chat_model", fake_models(coach=model))
    suite = COACH_SUITE.replace(
        "      - {type: not_contains, field: say, value: calm down}",
        "      - {type: flags, absent: [say_replaced_from_catalogue]}",
    )
    suites = load_suites([write_suite(tmp_path / "mini.yaml", suite)], checker)
    for s in suites:
        s.cases = s.cases[:1]
    report = run_evals(suites, eval_settings, RunOptions(repeat=2, use_cache=False))
    case = report.cases[0]
    assert len(case.runs) == 2 and case.pass_rate == 0.5 and not case.passed
    assert [r.seed for r in case.runs] == [0, 1000]
    lenient = run_evals(suites, eval_settings, RunOptions(repeat=2, use_cache=False, threshold=0.5))
    assert lenient.cases[0].passed and lenient.cases[0].pass_rate == 0.5


def test_customer_and_scoring_cases_run(tmp_path, eval_settings, checker, monkeypatch):
    monkeypatch.setattr("bot.llm.make_chat_model", fake_models())
    suites = load_suites([SUITES_DIR / "customer.yaml", SUITES_DIR / "scoring.yaml"], checker)
    keep = parse_filter("id:damaged-delivery-* or kind:scoring")
    for s in suites:
        s.cases = [c for c in s.cases if keep(s.name, c)]
    report = run_evals(suites, eval_settings, RunOptions())
    by_key = {c.key: c for c in report.cases}
    triggers = by_key["customer/damaged-delivery-triggers"]
    assert triggers.passed, triggers.runs[0].assertions
    assert "Outcome: customer_left" in triggers.runs[0].output_text
    turn_checks = [
        a for a in by_key["customer/damaged-delivery-empathetic"].runs[0].assertions if a.where
    ]
    assert {a.where for a in turn_checks} >= {"turn 1", "turn 4", "end"}
    assert all(c.passed for c in report.cases if c.kind == "scoring")


def test_workers_give_the_same_results(tmp_path, eval_settings, checker, monkeypatch):
    monkeypatch.setattr("bot.llm.make_chat_model", fake_models())
    paths = [write_suite(tmp_path / "mini.yaml", COACH_SUITE), SUITES_DIR / "scoring.yaml"]
    serial = run_evals(load_suites(paths, checker), eval_settings, RunOptions())
    parallel = run_evals(load_suites(paths, checker), eval_settings, RunOptions(workers=3))
    assert [(c.key, c.passed, c.score) for c in parallel.cases] == [
        (c.key, c.passed, c.score) for c in serial.cases
    ]


def test_judge_defaults_to_the_embedded_model_and_says_so(monkeypatch):
    from bot.evals.judge import make_judge

    monkeypatch.setattr("bot.llm.make_chat_model", fake_models())
    monkeypatch.delenv("COACHBOT_JUDGE_MODEL", raising=False)
    settings = Settings(_env_file=None)
    judge = make_judge(settings, "qwen2.5-coder-1.5b (embedded, llama.cpp)")
    assert not judge.info.configured and judge.info.same_as_subject
    assert "COACHBOT_JUDGE_MODEL" in (judge.info.warning or "")
    assert judge.grade("Acknowledges feelings", "You have every right to be upset.")[0] is True

    monkeypatch.setenv("COACHBOT_JUDGE_MODEL", "gpt-4o")
    monkeypatch.setenv("COACHBOT_JUDGE_BASE_URL", "http://127.0.0.1:9/v1")
    judge = make_judge(settings, "qwen2.5-coder-1.5b (embedded, llama.cpp)")
    assert judge.info.configured and judge.info.description == "gpt-4o via http://127.0.0.1:9/v1"
    assert judge.info.warning is None and not judge.info.same_as_subject


# ----------------------------------------------------------------- baseline and exit codes


def _case(key: str, passed: bool, score: float | None = None) -> CaseResult:
    score = score if score is not None else float(passed)
    run = CaseRun(
        repeat=0,
        passed=passed,
        score=score,
        seconds=0.1,
        output_text="<b>model said</b> & more",
        assertions=[
            AssertionResult(
                type="contains", label="contains “x”", passed=passed, why="<i>why</i>", score=score
            )
        ],
    )
    return CaseResult(
        key=key, suite=key.split("/")[0], id=key.split("/")[1], kind="coach", threshold=1.0,
        runs=[run], pass_rate=1.0 if passed else 0.0, passed=passed, score=score, seconds=0.1,
    )  # fmt: skip


def _report(*cases: CaseResult) -> RunReport:
    return RunReport(
        started="2026-01-01T00:00:00+00:00",
        seconds=1.0,
        model="fake",
        suites=sorted({c.suite for c in cases}),
        cache="off",
        cases=list(cases),
    )


def test_baseline_diff_and_exit_codes(tmp_path):
    before = _report(_case("s/a", True), _case("s/b", False), _case("s/c", True, 1.0))
    path = tmp_path / "baseline.json"
    save_baseline(before, path)
    baseline = load_baseline(path)
    assert baseline.cases["s/a"].passed and not baseline.cases["s/b"].passed

    now = _report(
        _case("s/a", False, 0.5), _case("s/b", True), _case("s/c", True, 0.8), _case("s/d", True)
    )
    diff = compare(now, baseline, str(path))
    assert diff.newly_failing == ["s/a"] and diff.newly_passing == ["s/b"]
    assert {c.key for c in diff.score_changes} == {"s/a", "s/b", "s/c"}
    assert diff.new_cases == ["s/d"] and diff.regressed
    now.baseline = diff
    assert exit_code_for(now) == 1

    # A case that already failed in the baseline is a regression unless its suite says why...
    unexplained = _report(_case("s/a", True), _case("s/b", False), _case("s/c", True))
    unexplained.baseline = compare(unexplained, baseline, str(path))
    assert unexplained.baseline.unexplained_failures == ["s/b"]
    assert exit_code_for(unexplained) == 1
    explained = _case("s/b", False)
    explained.known_failure = "cites the wrong article (issue 16)"
    still = _report(_case("s/a", True), explained, _case("s/c", True))
    still.baseline = compare(still, baseline, str(path))
    assert still.baseline.still_failing == ["s/b"] and exit_code_for(still) == 0
    assert still.baseline.known_failures == {"s/b": "cites the wrong article (issue 16)"}
    console = Console(record=True, width=200)
    print_terminal(still, console)
    assert "s/b: cites the wrong article (issue 16)" in console.export_text()
    assert "cites the wrong article (issue 16)" in render_html(still)
    # A known failure that passes now is reported, so the mark can go.
    fixed = _case("s/b", True)
    fixed.known_failure = "cites the wrong article (issue 16)"
    fixed_report = _report(_case("s/a", True), fixed, _case("s/c", True))
    fixed_report.baseline = compare(fixed_report, baseline, str(path))
    assert fixed_report.baseline.stale_known_failures == ["s/b"]
    assert exit_code_for(fixed_report) == 0
    # ...and one of its checks that passed then and fails now is a regression all the same.
    known = _case("s/b", False)
    known.known_failure = "cites the wrong article (issue 16)"
    known.runs[0].assertions.insert(
        0, AssertionResult(type="latency", label="latency ≤ 5 s", passed=True, why="1 s", score=1)
    )
    save_baseline(_report(known), path)
    worse = _case("s/b", False)
    worse.known_failure = "cites the wrong article (issue 16)"
    worse.runs[0].assertions.insert(
        0, AssertionResult(type="latency", label="latency ≤ 5 s", passed=False, why="9 s", score=0)
    )
    worse_report = _report(worse)
    worse_report.baseline = compare(worse_report, load_baseline(path), str(path))
    assert worse_report.baseline.newly_failing_checks == ["s/b: latency ≤ 5 s"]
    assert exit_code_for(worse_report) == 1
    # Without a baseline, any failing case fails the run; all passing is 0.
    assert exit_code_for(_report(_case("s/a", True), _case("s/b", False))) == 1
    assert exit_code_for(_report(_case("s/a", True))) == 0


def test_bad_baseline_files(tmp_path):
    with pytest.raises(DataValidationError, match="baseline file not found"):
        load_baseline(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataValidationError, match="not a JSON baseline"):
        load_baseline(tmp_path / "bad.json")
    (tmp_path / "wrong.json").write_text('{"cases": {}}')
    with pytest.raises(DataValidationError, match="field 'created'"):
        load_baseline(tmp_path / "wrong.json")


# ----------------------------------------------------------------- reports


def test_reports_are_written_and_escaped(tmp_path):
    report = _report(_case("s/a", True), _case("s/b", False))
    report.cases[1].runs[0].output_text = "<script>alert('x')</script> & “calm down”"
    report.exit_code = exit_code_for(report)
    paths = write_reports(report, tmp_path / "out")
    assert set(paths) == {"html", "junit", "json"} and all(p.is_file() for p in paths.values())
    html = paths["html"].read_text()
    assert "<script>alert" not in html and "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "&lt;i&gt;why&lt;/i&gt;" in html and "<details" in html and "<script" not in html
    junit = ET.parse(paths["junit"]).getroot()
    assert junit.get("tests") == "2" and junit.get("failures") == "1"
    failure = junit.find(".//testcase[@name='b']/failure")
    assert failure is not None and "<i>why</i>" in (failure.text or "")
    data = json.loads(paths["json"].read_text())
    assert data["totals"] == {
        "cases": 2,
        "passed": 1,
        "failed": 1,
        "by_kind": {"coach": {"cases": 2, "passed": 1}},
    }
    assert data["exit_code"] == 1


def test_html_names_the_judge_and_warns(tmp_path):
    from bot.evals.results import JudgeInfo

    report = _report(_case("s/a", True))
    report.judge = JudgeInfo(
        description="qwen (embedded)", configured=False, same_as_subject=True, warning="weak judge"
    )
    html = render_html(report)
    assert "qwen (embedded)" in html and "no COACHBOT_JUDGE_MODEL" in html and "weak judge" in html
    assert render_junit(report).startswith("<?xml")


# ----------------------------------------------------------------- the CLI


SCORING_SUITE = """
name: sc
kind: scoring
cases:
  - id: kind-words
    transcript:
      scenario: damaged-delivery
      turns:
        - {trainee: "You have every right to be upset.", customer: "I am.", anger: 6}
    assert:
      - {type: scorecard_item, item: validated}
      - {type: score, min: 30}
"""


def run_cli(settings: Settings, *args: str):
    """``coachbot eval ARGS`` with ``settings`` (the Click context object)."""
    result = CliRunner().invoke(cli.app, ["eval", *args], obj=settings)
    assert "Traceback" not in result.output + result.stderr, result.output + result.stderr
    return result


def test_cli_exit_codes(tmp_path, cli_env):
    suite = write_suite(tmp_path / "sc.yaml", SCORING_SUITE)
    ok = run_cli(cli_env, str(suite), "--save-baseline", str(tmp_path / "base.json"))
    assert ok.exit_code == 0, ok.output + ok.stderr
    assert "kind-words" in ok.stdout and (tmp_path / "base.json").is_file()

    failing = write_suite(
        tmp_path / "sc2.yaml",
        SCORING_SUITE.replace("{type: score, min: 30}", "{type: score, min: 99}"),
    )
    # Same suite name and case, now failing: a regression against the baseline.
    regressed = run_cli(cli_env, str(failing), "--baseline", str(tmp_path / "base.json"), "--json")
    assert regressed.exit_code == 1
    data = json.loads(regressed.stdout)
    assert data["baseline"]["newly_failing"] == ["sc/kind-words"] and not data["ok"]
    assert re.search(r"score \d+/100", json.dumps(data["cases"][0]["runs"][0]["assertions"]))
    # Without a baseline a failing case is exit 1 too.
    assert run_cli(cli_env, str(failing)).exit_code == 1
    # Failing in the baseline and still failing: a regression until the suite says why...
    run_cli(cli_env, str(failing), "--save-baseline", str(tmp_path / "failing.json"))
    unexplained = run_cli(cli_env, str(failing), "--baseline", str(tmp_path / "failing.json"))
    assert unexplained.exit_code == 1 and "no known_failure reason" in unexplained.stdout
    # ...and with a known_failure reason, it is not.
    known = write_suite(
        tmp_path / "sc3.yaml",
        SCORING_SUITE.replace("{type: score, min: 30}", "{type: score, min: 99}").replace(
            "  - id: kind-words\n",
            "  - id: kind-words\n    known_failure: one kind line scores low\n",
        ),
    )
    explained = run_cli(cli_env, str(known), "--baseline", str(tmp_path / "failing.json"))
    assert explained.exit_code == 0, explained.stdout
    assert "sc/kind-words: one kind line scores low" in explained.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["no-such-suite"], "unknown suite 'no-such-suite'"),
        (["scoring", "--filter", "colour:red"], "bad --filter"),
        (["scoring", "--filter", "id:nothing-matches-this"], "no case matches"),
        (["scoring", "--baseline", "/nonexistent/base.json"], "baseline file not found"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(cli_env, args, words):
    result = run_cli(cli_env, *args)
    assert result.exit_code == 2 and words in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_malformed_suite_is_one_line(tmp_path, cli_env):
    bad = write_suite(
        tmp_path / "bad.yaml", "cases:\n  - id: x\n    kind: coach\n    question: [\n"
    )
    result = run_cli(cli_env, str(bad), "--json")
    assert result.exit_code == 2 and "invalid YAML" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert json.loads(result.stdout)["ok"] is False


def test_cli_writes_every_report(tmp_path, cli_env, monkeypatch):
    monkeypatch.setattr("bot.llm.make_chat_model", fake_models())
    suite = write_suite(tmp_path / "mini.yaml", COACH_SUITE)
    result = run_cli(
        cli_env, str(suite), str(SUITES_DIR / "scoring.yaml"), "--report", str(tmp_path / "r")
    )
    assert result.exit_code == 0, result.stdout
    for name in ("report.html", "junit.xml", "results.json"):
        assert (tmp_path / "r" / name).is_file()
    html = (tmp_path / "r" / "report.html").read_text()
    assert "mini/shouting" in html and "every right to be upset" in html


# ----------------------------------------------------------------- guidance cases

GUIDANCE_SUITE = """
name: g
kind: guidance
cases:
  - id: apology
    tags: [good, author-x]
    category: good
    text: "I am so sorry your parcel arrived broken."
    expect: [specific_apology]
  - id: reflect
    context: "The parcel arrived broken and the box was soaked through, honestly."
    text: "So the parcel arrived broken and the box was soaked?"
    expect: [reflect_back]
  - id: caught
    text: "That is not my job."
    expect: [not_my_job]
  - id: neutral
    text: "Can I take your account number?"
    expect: []
"""
# A neutral line with a trigger phrase in it: the pattern engine fires, the label says no.
FALSE_TRIGGER = """\
  - id: calm
    text: "Please calm down, sir."
    expect: []
"""
DEV_SPLIT = PROJECT_ROOT / "evals" / "data" / "guidance" / "dev.yaml"
GUIDANCE_CHECKS = ["credited", "no_false_trigger", "trigger_caught"]


def no_model(settings, **overrides):
    raise AssertionError("a guidance case must not build a chat model")


@pytest.fixture
def pattern_engine(monkeypatch):
    """Eval runs get a pattern-only guidance engine (no embeddings: fast) and no chat model."""
    from bot.guidance.engine import GuidanceEngine

    engine = GuidanceEngine(load_catalogue(PROJECT_ROOT / "knowledge" / "guidance.yaml"), None)
    monkeypatch.setattr("bot.evals.runner._guidance_engine", lambda *args: engine)
    monkeypatch.setattr("bot.llm.make_chat_model", no_model)
    return engine


def build_script():
    """scripts/build_guidance_suite.py, imported as a module."""
    import importlib.util

    path = PROJECT_ROOT / "scripts" / "build_guidance_suite.py"
    spec = importlib.util.spec_from_file_location("build_guidance_suite", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_guidance_suite_loads(tmp_path, checker):
    suite = load_suite(write_suite(tmp_path / "g.yaml", GUIDANCE_SUITE), checker)
    by_id = {c.id: c for c in suite.cases}
    assert {c.kind for c in suite.cases} == {"guidance"}
    assert by_id["apology"].expect == ["specific_apology"] and by_id["apology"].category == "good"
    assert by_id["apology"].tags == ["good", "author-x"] and by_id["apology"].context is None
    assert by_id["reflect"].context.startswith("The parcel arrived broken")
    assert by_id["neutral"].expect == [] and by_id["neutral"].assertions == []
    keep = parse_filter("kind:guidance and tag:author-x")
    assert [c.id for c in suite.cases if keep("g", c)] == ["apology"]


@pytest.mark.parametrize(
    ("old", "new", "field", "words"),
    [
        (
            "expect: [specific_apology]",
            "expect: [specific_apology, be_nice]",
            "cases[0].expect[1]",
            "unknown behaviour 'be_nice'",
        ),
        (
            "expect: [specific_apology]",
            "expect: [specific_apology, specific_apology]",
            "cases[0].expect[1]",
            "listed twice",
        ),
        ("    expect: [specific_apology]\n", "", "cases[0].expect", "required"),
        ('    text: "I am so', '    txt: "I am so', "cases[0].txt", "Extra inputs"),
        (
            "    expect: [specific_apology]\n",
            "    expect: [specific_apology]\n    assert:\n      - {type: contains, value: x}\n",
            "cases[0].assert",
            "no assertions (built in: credited, no_false_trigger, trigger_caught)",
        ),
        (
            "kind: guidance\n",
            "",
            "cases[0]",
            "missing 'kind' (coach, customer, scoring or guidance)",
        ),
    ],
)
def test_guidance_suite_errors_name_file_and_field(tmp_path, checker, old, new, field, words):
    assert old in GUIDANCE_SUITE
    path = write_suite(tmp_path / "g.yaml", GUIDANCE_SUITE.replace(old, new, 1))
    with pytest.raises(DataValidationError) as err:
        load_suite(path, checker)
    message = str(err.value)
    assert str(path) in message and f"field '{field}'" in message and words in message, message
    assert "\n" not in message


def test_guidance_cases_run_on_the_engine(tmp_path, eval_settings, checker, pattern_engine):
    suites = load_suites([write_suite(tmp_path / "g.yaml", GUIDANCE_SUITE)], checker)
    report = run_evals(suites, eval_settings, RunOptions(use_cache=False))
    assert report.passed == 4 and report.exit_code == 0
    for case in report.cases:
        assert [a.type for a in case.runs[0].assertions] == GUIDANCE_CHECKS
        assert [a.label for a in case.runs[0].assertions] == GUIDANCE_CHECKS
    by_id = {c.id: c.runs[0] for c in report.cases}
    # reflect_back needs the customer's line: the case's context reached the engine.
    assert by_id["reflect"].output["detected"] == ["reflect_back"]
    assert "Customer: The parcel arrived broken" in by_id["reflect"].output_text
    assert by_id["caught"].output["detected_by_kind"] == {"do": [], "avoid": ["not_my_job"]}
    assert "caught not_my_job" in by_id["caught"].assertions[2].why
    summary = report.guidance_summary["g"]
    assert (summary.lines, summary.do.tp, summary.do.fp, summary.do.fn) == (4, 2, 0, 0)
    assert (summary.avoid.tp, summary.avoid.precision, summary.avoid.recall) == (1, 1.0, 1.0)
    assert (summary.false_triggers, summary.lines_without_avoid) == (0, 3)
    assert (summary.neutral_clean, summary.neutral_lines, summary.neutral_clean_rate) == (1, 1, 1.0)


def test_a_false_trigger_fails_no_false_trigger(tmp_path, eval_settings, checker, pattern_engine):
    path = write_suite(tmp_path / "g.yaml", GUIDANCE_SUITE + FALSE_TRIGGER)
    report = run_evals(load_suites([path], checker), eval_settings, RunOptions(use_cache=False))
    by_id = {c.id: c for c in report.cases}
    calm = by_id["calm"]
    assert not calm.passed and report.exit_code == 1
    assert all(c.passed for c in report.cases if c.id != "calm")
    verdicts = {a.type: a for a in calm.runs[0].assertions}
    assert not verdicts["no_false_trigger"].passed
    assert "false trigger: tell_to_calm_down" in verdicts["no_false_trigger"].why
    assert verdicts["credited"].passed and verdicts["trigger_caught"].passed
    assert calm.checks() == {"credited": True, "no_false_trigger": False, "trigger_caught": True}
    summary = report.guidance_summary["g"]
    assert (summary.false_triggers, summary.lines_without_avoid) == (1, 4)
    assert summary.false_trigger_rate == 0.25 and summary.avoid.fp == 1
    assert summary.avoid.precision == 0.5 and summary.neutral_clean_rate == 0.5
    # The baseline keeps each check, so the comparison sees which one broke.
    saved = save_baseline(report, tmp_path / "base.json")
    assert saved.cases["g/calm"].checks["no_false_trigger"] is False


def test_guidance_aggregate_in_every_report(tmp_path, eval_settings, checker, pattern_engine):
    from rich.console import Console

    from bot.evals.reports import print_terminal

    path = write_suite(tmp_path / "g.yaml", GUIDANCE_SUITE + FALSE_TRIGGER)
    report = run_evals(load_suites([path], checker), eval_settings, RunOptions(use_cache=False))
    console = Console(record=True, width=250)
    print_terminal(report, console)
    text = console.export_text()
    assert "g/calm: no_false_trigger: false trigger: tell_to_calm_down" in text
    assert "g (guidance engine, 5 lines): avoid precision 0.500 recall 1.000" in text
    assert "false triggers 1/4 (25.0%); neutral clean 1/2 (50.0%)" in text
    data = report.to_json()
    assert data["guidance_summary"]["g"]["false_trigger_rate"] == 0.25
    assert data["totals"]["by_kind"] == {"guidance": {"cases": 5, "passed": 4}}
    junit = ET.fromstring(render_junit(report))
    properties = {p.get("name"): p.get("value") for p in junit.iter("property")}
    assert properties["guidance.false_trigger_rate"] == "0.25"
    assert properties["guidance.avoid.precision"] == "0.5"
    failed = [t for t in junit.iter("testcase") if t.find("failure") is not None]
    assert [t.get("name") for t in failed] == ["calm"]
    assert "FAIL no_false_trigger" in (failed[0].find("failure").text or "")
    assert "false triggers 1/4" in render_html(report)


def test_guidance_cases_tolerate_more_detection_fields(
    tmp_path, eval_settings, checker, pattern_engine, monkeypatch
):
    from dataclasses import asdict, dataclass

    from bot.guidance.engine import Detection

    @dataclass(frozen=True)
    class FutureDetection(Detection):
        certain: bool = True

    class FutureEngine:
        """Today's detections with a field they may grow."""

        def detect(self, text, context=None):
            return [FutureDetection(**asdict(d)) for d in pattern_engine.detect(text, context)]

    path = write_suite(tmp_path / "g.yaml", GUIDANCE_SUITE + FALSE_TRIGGER)
    before = run_evals(load_suites([path], checker), eval_settings, RunOptions(use_cache=False))
    monkeypatch.setattr("bot.evals.runner._guidance_engine", lambda *args: FutureEngine())
    after = run_evals(load_suites([path], checker), eval_settings, RunOptions(use_cache=False))
    assert [(c.id, c.passed, c.runs[0].output) for c in after.cases] == [
        (c.id, c.passed, c.runs[0].output) for c in before.cases
    ]
    assert after.guidance_summary == before.guidance_summary


def test_cli_guidance_suite_json_has_the_aggregate(cli_env, pattern_engine):
    import yaml

    lines = len(yaml.safe_load(DEV_SPLIT.read_text(encoding="utf-8")))
    result = run_cli(cli_env, "guidance", "--json")
    assert result.exit_code in (0, 1), result.stderr
    data = json.loads(result.stdout)
    summary = data["guidance_summary"]["guidance"]
    assert summary["lines"] == lines and summary["errors"] == 0
    for kind in ("avoid", "do"):
        assert set(summary[kind]) == {"tp", "fp", "fn", "precision", "recall"}
    assert 0 <= summary["false_trigger_rate"] <= 1 and 0 <= summary["neutral_clean_rate"] <= 1
    assert data["totals"]["by_kind"]["guidance"]["cases"] == lines
    terminal = run_cli(cli_env, "guidance", "--filter", "tag:neutral")
    assert "guidance (guidance engine, " in terminal.stdout and "neutral clean" in terminal.stdout


def test_guidance_suite_is_built_from_the_dev_split(tmp_path):
    import yaml

    script = build_script()
    committed = SUITES_DIR / "guidance.yaml"
    assert committed.read_text(encoding="utf-8") == script.render(script.read_source(DEV_SPLIT)), (
        "evals/suites/guidance.yaml is out of date: run scripts/build_guidance_suite.py"
    )
    items = yaml.safe_load(DEV_SPLIT.read_text(encoding="utf-8"))
    cases = yaml.safe_load(committed.read_text(encoding="utf-8"))["cases"]
    assert len(cases) == len(items)
    for number, (case, item) in enumerate(zip(cases, items, strict=True), start=1):
        assert case["id"] == f"dev-{number:03d}"
        assert case["tags"] == [item["category"], f"author-{item['author']}"]
        assert (case["text"], case.get("context"), case["expect"]) == (
            item["text"],
            item.get("context"),
            item["expect"],
        )
    out = tmp_path / "guidance.yaml"
    assert script.main(["--out", str(out)]) == 0 and out.read_text() == committed.read_text()
    assert script.main(["--out", str(out), "--check"]) == 0
    out.write_text("stale\n")
    assert script.main(["--out", str(out), "--check"]) == 1


def test_build_script_refuses_the_frozen_test_split(tmp_path):
    frozen = tmp_path / "test.yaml"  # a stand-in: the real test split is never opened here
    frozen.write_text("- {text: x, expect: [], category: neutral, author: a}\n")
    with pytest.raises(SystemExit, match="frozen"):
        build_script().read_source(frozen)


# ----------------------------------------------------------------- the regression test


class EchoPromptModel(BaseChatModel):
    """Answers with the worked example of its system prompt: it does what the prompt teaches.

    So a prompt edit that teaches "calm down" makes this model recommend "calm down", as a real
    model following its prompt would.
    """

    @property
    def _llm_type(self) -> str:
        return "echo-prompt"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"echo": 1}

    def _reply(self, messages) -> str:
        system = next(str(m.content) for m in messages if m.type == "system")
        say = re.findall(r'^Say: (".*")\s*$', system, re.M)[-1]
        why = re.findall(r"^Why: (.*)$", system, re.M)[-1]
        return f"Say: {say}\nWhy: {why}"

    def _text(self, messages, stop) -> str:
        text = self._reply(messages)
        for word in stop or []:  # like a real model, stop where a stop sequence starts
            text = text.split(word)[0]
        return text

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        message = AIMessage(content=self._text(messages, stop))
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(self, messages, stop=None, run_manager=None, **kwargs):
        for piece in re.split(r"(?<=\s)", self._text(messages, stop)):
            yield ChatGenerationChunk(message=AIMessageChunk(content=piece))


REGRESSION_SUITE = """
name: calm
kind: coach
assert:
  - {type: guidance_absent, kind: avoid, label: the Say line handed to the agent is safe}
  - {type: flags, absent: [say_replaced_from_catalogue], label: the model's own Say line was usable}
  - {type: flags, absent: [say_regenerated], label: the first Say line followed the guidance}
cases:
  - id: shouting-parcel
    question: "A customer is shouting at me about a late parcel, what do I say?"
  - id: furious-refund
    question: "She's furious her refund still hasn't arrived, how do I respond?"
"""


def test_prompt_recommending_calm_down_is_a_regression(tmp_path, cli_env, monkeypatch):
    good_prompts = tmp_path / "prompts-good"
    broken_prompts = tmp_path / "prompts-broken"
    shutil.copytree(PROJECT_ROOT / "prompts", good_prompts)
    shutil.copytree(PROJECT_ROOT / "prompts", broken_prompts)
    system = broken_prompts / "coach_system.md"
    text = system.read_text()
    example_say = re.findall(r'^Say: ".*"$', text, re.M)[-1]
    example_why = re.findall(r"^Why: .*$", text, re.M)[-1]
    text = text.replace(
        example_say, 'Say: "Please calm down, sir, I can\'t help you while you shout."'
    ).replace(example_why, "Why: Telling them to calm down settles the call [1].")
    text = text.replace(
        "Answer in exactly this shape",
        "Always tell the customer to calm down first.\n\nAnswer in exactly this shape",
    )
    system.write_text(text)
    monkeypatch.setattr("bot.llm.make_chat_model", lambda settings, **kw: EchoPromptModel())
    suite = write_suite(tmp_path / "calm.yaml", REGRESSION_SUITE)
    baseline = tmp_path / "baseline.json"

    def with_prompts(directory: Path, *args: str):
        settings = cli_env.model_copy(update={"prompts_dir": directory})
        return run_cli(settings, str(suite), *args)

    good = with_prompts(good_prompts, "--save-baseline", str(baseline))
    assert good.exit_code == 0, good.stdout
    assert json.loads(baseline.read_text())["cases"]["calm/shouting-parcel"]["passed"]

    broken = with_prompts(
        broken_prompts, "--baseline", str(baseline), "--report", str(tmp_path / "r"), "--json"
    )
    assert broken.exit_code == 1, broken.stdout
    data = json.loads(broken.stdout)
    assert sorted(data["baseline"]["newly_failing"]) == [
        "calm/furious-refund",
        "calm/shouting-parcel",
    ]
    run = data["cases"][0]["runs"][0]
    failed = {a["label"]: a["why"] for a in run["assertions"] if not a["passed"]}
    assert "say_replaced_from_catalogue" in failed["the model's own Say line was usable"]
    assert "tell_to_calm_down" in failed["the first Say line followed the guidance"]
    # The coach's own checks still kept the words handed to the agent safe: what regressed is
    # the prompt, and only the eval against the baseline shows it.
    assert "the Say line handed to the agent is safe" not in failed
    assert "calm down" not in run["output"]["say"].lower()
    html = (tmp_path / "r" / "report.html").read_text()
    assert "Newly failing (2)" in html and "calm/shouting-parcel" in html

    # The good prompt again: no regression.
    assert with_prompts(good_prompts, "--baseline", str(baseline)).exit_code == 0


# ----------------------------------------------------------------- real model (CI smoke)


@pytest.mark.integration
def test_smoke_subset_on_the_embedded_model(tmp_path, monkeypatch):
    """The CI smoke subset of the default suites, cold (no cache), against the baseline."""
    result = CliRunner().invoke(
        cli.app,
        [
            "eval",
            "--filter", "tag:smoke",
            "--no-cache",
            "--baseline", str(PROJECT_ROOT / "evals" / "baseline.json"),
            "--report", str(tmp_path / "report"),
            "--json",
        ],
        obj=Settings(),  # the environment's and .env's, as `coachbot eval` reads them
    )  # fmt: skip
    assert result.exit_code == 0, result.stdout[-3000:] + result.stderr
    data = json.loads(result.stdout)
    assert data["baseline"]["newly_failing"] == []
    assert {c["kind"] for c in data["cases"]} == {"coach", "customer", "scoring"}
    assert (tmp_path / "report" / "report.html").is_file()
