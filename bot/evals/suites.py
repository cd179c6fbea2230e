"""Eval suites: YAML files in ``evals/suites/``, validated on load (errors name file and field).

A suite holds cases of four kinds:

* ``coach``: a question (and optional history) for the coach, with assertions on the answer;
* ``customer``: a scripted role-play (scenario, difficulty, seed, trainee turns), with
  assertions after any turn and at the end;
* ``scoring``: a finished transcript and the scorecard it should get;
* ``guidance``: a trainee line (and the customer's line before it) and the behaviours of the
  guidance catalogue it shows; built-in checks, no assertions and no model call.

Every assertion is a mapping with a ``type`` (see ``ASSERTION_TYPES``); which types and which
``field`` values apply depends on where the assertion sits (``SCOPES``).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bot.datafiles import field_path, read_yaml
from bot.errors import DataValidationError

Scope = Literal["coach", "turn", "end", "scoring"]
Kind = Literal["coach", "customer", "scoring", "guidance"]
KINDS: tuple[str, ...] = ("coach", "customer", "scoring", "guidance")
KINDS_TEXT = ", ".join(KINDS[:-1]) + f" or {KINDS[-1]}"
# The checks every guidance case gets (no `assert` list): see bot.evals.assertions.
GUIDANCE_CHECKS: tuple[str, ...] = ("credited", "no_false_trigger", "trigger_caught")

# Text an assertion can look at, by scope; the first is the default.
TEXT_FIELDS: dict[str, tuple[str, ...]] = {
    "coach": ("answer", "say", "why", "avoid", "question"),
    "turn": ("customer", "trainee"),
    "end": ("customer", "transcript"),
    "scoring": ("scorecard", "summary", "rewrites"),
}
SCOPE_NAMES = {
    "coach": "coach cases",
    "turn": "customer turns",
    "end": "the end of customer cases",
    "scoring": "scoring cases",
}
OUTCOMES = ("resolved", "customer_left", "turn_limit", "ended")
BEATS = (
    "gripe",
    "escalate",
    "soften",
    "reveal",
    "consider_offer",
    "accept",
    "reject_offer",
    "leave",
)
_ID = r"^[a-z0-9][a-z0-9_.-]{0,80}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# --------------------------------------------------------------------------- assertions


def _show(value: str | list[str], joiner: str = ", ") -> str:
    return joiner.join(f"“{v}”" for v in ([value] if isinstance(value, str) else value))


class _Assertion(_Strict):
    label: str | None = Field(None, description="Shown in reports instead of the generated one.")

    #: scopes where this type applies (None: all)
    scopes: ClassVar[frozenset[str] | None] = None

    def describe(self) -> str:
        return self.label or self.type  # type: ignore[attr-defined]


class _TextAssertion(_Assertion):
    field: str | None = None


class Contains(_TextAssertion):
    """Every value appears in the text (case-insensitive unless ``case_sensitive``)."""

    type: Literal["contains"]
    value: str | list[str] = Field(min_length=1)
    case_sensitive: bool = False

    def describe(self) -> str:
        return self.label or f"contains {_show(self.value)}"


class NotContains(_TextAssertion):
    """No value appears in the text."""

    type: Literal["not_contains"]
    value: str | list[str] = Field(min_length=1)
    case_sensitive: bool = False

    def describe(self) -> str:
        return self.label or f"does not contain {_show(self.value)}"


def _compiles(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"not a valid regex: {exc}") from exc
    return pattern


class _PatternAssertion(_TextAssertion):
    """Base for the regex assertions: a pattern that must compile."""

    pattern: str = Field(min_length=1)
    ignore_case: bool = True

    @field_validator("pattern")
    @classmethod
    def _check(cls, value: str) -> str:
        return _compiles(value)


class Regex(_PatternAssertion):
    """The pattern matches somewhere in the text (Python ``re.search``)."""

    type: Literal["regex"]

    def describe(self) -> str:
        return self.label or f"matches /{self.pattern}/"


class NotRegex(_PatternAssertion):
    """The pattern matches nowhere in the text."""

    type: Literal["not_regex"]

    def describe(self) -> str:
        return self.label or f"does not match /{self.pattern}/"


class _GuidanceAssertion(_TextAssertion):
    behaviour: str | list[str] | None = None
    kind: Literal["do", "avoid"] | None = None

    @model_validator(mode="after")
    def _one_target(self) -> _GuidanceAssertion:
        if (self.behaviour is None) == (self.kind is None):
            raise ValueError("give either 'behaviour' (catalogue id) or 'kind' (do / avoid)")
        return self

    def target(self) -> str:
        if self.behaviour is not None:
            ids = [self.behaviour] if isinstance(self.behaviour, str) else self.behaviour
            return " / ".join(ids)
        return f"any {self.kind}-behaviour"


class GuidancePresent(_GuidanceAssertion):
    """The guidance engine finds the behaviour (or any behaviour of ``kind``) in the text."""

    type: Literal["guidance_present"]

    def describe(self) -> str:
        return self.label or f"shows {self.target()}"


class GuidanceAbsent(_GuidanceAssertion):
    """The guidance engine finds no such behaviour in the text."""

    type: Literal["guidance_absent"]

    def describe(self) -> str:
        return self.label or f"free of {self.target()}"


class CitationsValid(_Assertion):
    """Every [n] points to a passage shown, and an answer cites at least ``min`` of them."""

    type: Literal["citations_valid"]
    min: int = Field(1, ge=0)
    scopes: ClassVar[frozenset[str] | None] = frozenset({"coach"})

    def describe(self) -> str:
        return self.label or "citations valid"


class CitesArticle(_Assertion):
    """A cited passage comes from the article (origin file, its number prefix, or title)."""

    type: Literal["cites_article"]
    article: str | list[str] = Field(min_length=1)
    scopes: ClassVar[frozenset[str] | None] = frozenset({"coach"})

    def describe(self) -> str:
        return self.label or f"cites {_show(self.article, ' or ')}"


class Grounded(_TextAssertion):
    """Each claim (sentence) of the text is supported by a cited passage (cosine similarity)."""

    type: Literal["grounded"]
    min_similarity: float = Field(0.4, ge=0, le=1)
    scopes: ClassVar[frozenset[str] | None] = frozenset({"coach"})

    def describe(self) -> str:
        return self.label or "grounded in the passages"


class OutOfScope(_Assertion):
    """The coach declines (``expected: true``) or answers (``expected: false``)."""

    type: Literal["out_of_scope"]
    expected: bool = True
    scopes: ClassVar[frozenset[str] | None] = frozenset({"coach"})

    def describe(self) -> str:
        return self.label or ("declined as out of scope" if self.expected else "answered")


class Flags(_Assertion):
    """Coach answer flags (prefix match): ``absent`` ones must not be raised, ``present`` must."""

    type: Literal["flags"]
    absent: list[str] = Field(default_factory=list)
    present: list[str] = Field(default_factory=list)
    scopes: ClassVar[frozenset[str] | None] = frozenset({"coach"})

    @model_validator(mode="after")
    def _some(self) -> Flags:
        if not self.absent and not self.present:
            raise ValueError("list flags under 'absent' and/or 'present'")
        return self

    def describe(self) -> str:
        parts = [f"no {', '.join(self.absent)}"] if self.absent else []
        parts += [f"has {', '.join(self.present)}"] if self.present else []
        return self.label or "flags: " + "; ".join(parts)


class InCharacter(_Assertion):
    """Customer lines pass the character checks; optionally at most ``max_fallback_rate`` of
    them are trainer-written fallbacks (the model failed to stay in character three times)."""

    type: Literal["in_character"]
    max_fallback_rate: float | None = Field(None, ge=0, le=1)
    scopes: ClassVar[frozenset[str] | None] = frozenset({"turn", "end"})

    def describe(self) -> str:
        extra = (
            f" (fallbacks ≤ {self.max_fallback_rate:.0%})"
            if self.max_fallback_rate is not None
            else ""
        )
        return self.label or f"stays in character{extra}"


class Mood(_Assertion):
    """Anger goes down (de-escalates), up (escalates) or stays (unchanged): after a turn versus
    before it, or at the end versus the start."""

    type: Literal["mood"]
    direction: Literal["de-escalates", "escalates", "unchanged"]
    scopes: ClassVar[frozenset[str] | None] = frozenset({"turn", "end"})

    def describe(self) -> str:
        return self.label or f"mood {self.direction}"


class _OneOf(_Assertion):
    """Base for assertions that a value is one of ``equals`` (validated against ``known``)."""

    equals: str | list[str]
    known: ClassVar[tuple[str, ...]] = ()
    what: ClassVar[str] = ""

    @field_validator("equals")
    @classmethod
    def _known(cls, value: str | list[str]) -> str | list[str]:
        for v in [value] if isinstance(value, str) else value:
            if v not in cls.known:
                raise ValueError(f"unknown {cls.what} {v!r} (one of {', '.join(cls.known)})")
        return value

    def describe(self) -> str:
        return self.label or f"{self.what} {_show(self.equals, ' or ')}"


class OutcomeIs(_OneOf):
    """The session's outcome is one of ``equals``."""

    type: Literal["outcome"]
    known: ClassVar[tuple[str, ...]] = tuple(OUTCOMES)
    what: ClassVar[str] = "outcome"
    scopes: ClassVar[frozenset[str] | None] = frozenset({"end"})


class BeatIs(_OneOf):
    """The customer's beat for this turn is one of ``equals``."""

    type: Literal["beat"]
    known: ClassVar[tuple[str, ...]] = tuple(BEATS)
    what: ClassVar[str] = "beat"
    scopes: ClassVar[frozenset[str] | None] = frozenset({"turn"})


class ScorecardItem(_Assertion):
    """A scorecard check passed (``passed: true``) or failed. ``item`` is a check key
    (listened, validated, open_questions, ...) or an avoid-behaviour id (avoided_<id>)."""

    type: Literal["scorecard_item"]
    item: str = Field(min_length=1)
    passed: bool = True
    scopes: ClassVar[frozenset[str] | None] = frozenset({"end", "scoring"})

    def describe(self) -> str:
        return self.label or f"scorecard {self.item} {'passed' if self.passed else 'failed'}"


class ScoreRange(_Assertion):
    """The scorecard's total is within [min, max]."""

    type: Literal["score"]
    min: int | None = Field(None, ge=0, le=100)
    max: int | None = Field(None, ge=0, le=100)
    scopes: ClassVar[frozenset[str] | None] = frozenset({"end", "scoring"})

    @model_validator(mode="after")
    def _bounds(self) -> ScoreRange:
        if self.min is None and self.max is None:
            raise ValueError("give 'min' and/or 'max'")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("'min' is above 'max'")
        return self

    def describe(self) -> str:
        low = "" if self.min is None else f"≥ {self.min}"
        high = "" if self.max is None else f"≤ {self.max}"
        return self.label or f"score {' and '.join(p for p in (low, high) if p)}"


class Latency(_Assertion):
    """Wall time (including the original time of cached model calls) is at most
    ``max_seconds``."""

    type: Literal["latency"]
    max_seconds: float = Field(gt=0)
    scopes: ClassVar[frozenset[str] | None] = frozenset({"coach", "turn", "end"})

    def describe(self) -> str:
        return self.label or f"latency ≤ {self.max_seconds:g} s"


class Length(_TextAssertion):
    """The text's length in words / characters is within bounds."""

    type: Literal["length"]
    max_words: int | None = Field(None, ge=1)
    min_words: int | None = Field(None, ge=0)
    max_chars: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _bounds(self) -> Length:
        if self.max_words is None and self.min_words is None and self.max_chars is None:
            raise ValueError("give 'max_words', 'min_words' and/or 'max_chars'")
        return self

    def describe(self) -> str:
        parts = []
        if self.min_words is not None:
            parts.append(f"≥ {self.min_words} words")
        if self.max_words is not None:
            parts.append(f"≤ {self.max_words} words")
        if self.max_chars is not None:
            parts.append(f"≤ {self.max_chars} chars")
        return self.label or "length " + ", ".join(parts)


class LlmRubric(_TextAssertion):
    """A judge model grades the text against the rubric (PASS / FAIL and a reason)."""

    type: Literal["llm_rubric"]
    rubric: str = Field(min_length=5)

    def describe(self) -> str:
        return self.label or f"rubric: {self.rubric[:60]}"


Assertion = Annotated[
    Contains
    | NotContains
    | Regex
    | NotRegex
    | GuidancePresent
    | GuidanceAbsent
    | CitationsValid
    | CitesArticle
    | Grounded
    | OutOfScope
    | Flags
    | InCharacter
    | Mood
    | OutcomeIs
    | BeatIs
    | ScorecardItem
    | ScoreRange
    | Latency
    | Length
    | LlmRubric,
    Field(discriminator="type"),
]
ASSERTION_TYPES: tuple[str, ...] = (
    "contains",
    "not_contains",
    "regex",
    "not_regex",
    "guidance_present",
    "guidance_absent",
    "citations_valid",
    "cites_article",
    "grounded",
    "out_of_scope",
    "flags",
    "in_character",
    "mood",
    "outcome",
    "beat",
    "scorecard_item",
    "score",
    "latency",
    "length",
    "llm_rubric",
)


# --------------------------------------------------------------------------- cases


class _Case(_Strict):
    id: str = Field(pattern=_ID)
    description: str = ""
    tags: list[str] = Field(default_factory=list)
    known_failure: str | None = Field(
        None,
        min_length=1,
        description="Why the case fails in the committed baseline. A case that fails there "
        "without one counts as a regression.",
    )
    threshold: float | None = Field(
        None, ge=0, le=1, description="Share of repeats that must pass (default: suite's, 1.0)."
    )
    assertions: list[Assertion] = Field(default_factory=list, alias="assert")


class Message(_Strict):
    role: Literal["user", "assistant"]
    content: str = Field(min_length=1)


class CoachCase(_Case):
    kind: Literal["coach"]
    question: str = Field(min_length=1)
    history: list[Message] = Field(default_factory=list)


class TurnSpec(_Strict):
    say: str = Field(min_length=1)
    assertions: list[Assertion] = Field(default_factory=list, alias="assert")


class CustomerCase(_Case):
    kind: Literal["customer"]
    scenario: str = Field(min_length=1)
    difficulty: Literal["easy", "medium", "hard"] = "medium"
    seed: int = 0
    script: str | None = Field(
        None, description="evals/roleplay_scripts/<scenario>/<name>.txt as '<scenario>/<name>'"
    )
    turns: list[TurnSpec | str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _turns_or_script(self) -> CustomerCase:
        if bool(self.script) == bool(self.turns):
            raise ValueError("give either 'turns' (trainee lines) or 'script', not both")
        return self

    def has_assertions(self) -> bool:
        return bool(self.assertions) or any(
            isinstance(t, TurnSpec) and t.assertions for t in self.turns
        )

    def turn_specs(self) -> list[TurnSpec]:
        return [TurnSpec(say=t) if isinstance(t, str) else t for t in self.turns]


class TranscriptTurn(_Strict):
    trainee: str = Field(min_length=1)
    customer: str = Field(min_length=1)
    anger: int = Field(ge=0, le=10)
    beat: Literal[
        "gripe", "escalate", "soften", "reveal", "consider_offer", "accept", "reject_offer", "leave"
    ] = "gripe"


class InlineTranscript(_Strict):
    scenario: str = Field(min_length=1)
    difficulty: Literal["easy", "medium", "hard"] = "medium"
    outcome: Literal["resolved", "customer_left", "turn_limit", "ended"] = "ended"
    start_anger: int | None = Field(None, ge=0, le=10)
    turns: list[TranscriptTurn] = Field(min_length=1)


class ScoringCase(_Case):
    kind: Literal["scoring"]
    transcript: InlineTranscript | None = None
    transcript_file: str | None = Field(
        None, description="A saved transcript JSON (roleplay --save)."
    )

    @model_validator(mode="after")
    def _one_transcript(self) -> ScoringCase:
        if (self.transcript is None) == (self.transcript_file is None):
            raise ValueError("give either 'transcript' (inline) or 'transcript_file'")
        return self


class GuidanceCase(_Case):
    """A trainee line and every catalogue behaviour it shows (``expect: []``: neutral).

    Its checks are built in (``GUIDANCE_CHECKS``): each expected do-behaviour is detected, no
    avoid-behaviour is detected that is not expected, each expected avoid-behaviour is detected.
    """

    kind: Literal["guidance"]
    text: str = Field(min_length=1)
    context: str | None = Field(None, description="The customer's previous line.")
    expect: list[str] = Field(description="Behaviour ids the line shows; [] for a neutral line.")
    category: str | None = None


Case = Annotated[CoachCase | CustomerCase | ScoringCase | GuidanceCase, Field(discriminator="kind")]


class SuiteFile(_Strict):
    name: str | None = Field(None, pattern=_ID)
    description: str = ""
    kind: Kind | None = Field(None, description="Default kind for cases that do not name one.")
    threshold: float = Field(1.0, ge=0, le=1)
    assertions: list[Assertion] = Field(
        default_factory=list,
        alias="assert",
        description="Checked on every case of the suite (at the end of customer cases).",
    )
    cases: list[Case] = Field(min_length=1)


class Suite(BaseModel):
    """A loaded, validated suite."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str
    path: Path
    description: str = ""
    threshold: float = 1.0
    cases: list[Any]  # CoachCase | CustomerCase | ScoringCase | GuidanceCase

    def threshold_for(self, case: Any) -> float:
        return case.threshold if case.threshold is not None else self.threshold


# --------------------------------------------------------------------------- loading


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """Drop the discriminator tags pydantic inserts after a list index."""
    out: list[Any] = []
    tags = set(KINDS) | set(ASSERTION_TYPES) | {"TurnSpec", "str"}
    for i, part in enumerate(loc):
        if isinstance(part, str) and part in tags and i > 0 and isinstance(loc[i - 1], int):
            continue
        if isinstance(part, str) and part.startswith(("function-", "union[")):
            continue
        out.append(part)
    return tuple(out)


def _error(path: Path, where: str, message: str) -> DataValidationError:
    return DataValidationError(f"{path}: field '{where}': {message}")


def _first_error(path: Path, exc: ValidationError) -> DataValidationError:
    errors = exc.errors()
    # A union of plain string and mapping (customer turns) reports both branches; prefer the
    # mapping branch's message, which names the field inside it.
    # A misspelt key shows up as "missing" plus "extra": the extra one names the typo.
    first = next(
        (e for e in errors if e["type"] == "extra_forbidden"),
        next((e for e in errors if "TurnSpec" in e["loc"]), errors[0]),
    )
    loc = _clean_loc(tuple(first["loc"]))
    message = first["msg"]
    if first["type"] == "union_tag_not_found":
        tag = first.get("ctx", {}).get("discriminator", "")
        message = (
            f"missing 'kind' ({KINDS_TEXT})"
            if "kind" in tag
            else "missing 'type' (one of " + ", ".join(ASSERTION_TYPES) + ")"
        )
    elif first["type"] == "union_tag_invalid":
        tag = first.get("ctx", {}).get("tag")
        if "kind" in str(first.get("ctx", {}).get("discriminator", "")):
            message = f"unknown kind {tag!r} ({KINDS_TEXT})"
        else:
            message = f"unknown assertion type {tag!r} (one of {', '.join(ASSERTION_TYPES)})"
    message = message.removeprefix("Value error, ")
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return _error(path, field_path(loc), message + more)


def _scope_check(path: Path, where: str, assertion: Any, scope: str) -> None:
    scopes = assertion.scopes
    if scopes is not None and scope not in scopes:
        allowed = ", ".join(SCOPE_NAMES[s] for s in sorted(scopes))
        raise _error(
            path,
            f"{where}.type",
            f"'{assertion.type}' does not apply to {SCOPE_NAMES[scope]} (only {allowed})",
        )
    field = getattr(assertion, "field", None)
    if field is not None and field not in TEXT_FIELDS[scope]:
        raise _error(
            path,
            f"{where}.field",
            f"unknown field {field!r} for {SCOPE_NAMES[scope]} "
            f"(one of {', '.join(TEXT_FIELDS[scope])})",
        )


class Checker:
    """Cross-checks against the catalogue, the scenarios and the scripts folder (optional)."""

    def __init__(
        self,
        behaviour_ids: Iterable[str] | None = None,
        avoid_ids: Iterable[str] | None = None,
        scenario_ids: Iterable[str] | None = None,
        scripts_dir: Path | None = None,
        do_check_keys: Iterable[str] = (),
    ) -> None:
        self.do_check_keys = set(do_check_keys)
        self.behaviour_ids = set(behaviour_ids) if behaviour_ids is not None else None
        self.avoid_ids = set(avoid_ids) if avoid_ids is not None else None
        self.scenario_ids = set(scenario_ids) if scenario_ids is not None else None
        self.scripts_dir = scripts_dir

    def scorecard_keys(self) -> set[str] | None:
        if self.avoid_ids is None:
            return None
        return self.do_check_keys | {f"avoided_{b}" for b in self.avoid_ids}

    @classmethod
    def for_catalogue(
        cls, catalogue: Any, scenario_ids: Iterable[str] | None, scripts_dir: Path | None
    ) -> Checker:
        """A checker against a guidance catalogue's behaviours and scorecard checks."""
        return cls(
            catalogue.ids,
            [b.id for b in catalogue.of_kind("avoid")],
            scenario_ids,
            scripts_dir,
            do_check_keys=[c.key for c in catalogue.scorecard.do_checks],
        )

    def assertion(self, path: Path, where: str, assertion: Any, scope: str) -> None:
        _scope_check(path, where, assertion, scope)
        if assertion.type in {"guidance_present", "guidance_absent"} and assertion.behaviour:
            ids = (
                [assertion.behaviour]
                if isinstance(assertion.behaviour, str)
                else assertion.behaviour
            )
            for b in ids:
                if self.behaviour_ids is not None and b not in self.behaviour_ids:
                    raise _error(
                        path, f"{where}.behaviour", f"unknown behaviour {b!r} (see guidance.yaml)"
                    )
        if assertion.type == "scorecard_item":
            keys = self.scorecard_keys()
            item = assertion.item
            if keys is not None and item not in keys and f"avoided_{item}" not in keys:
                raise _error(
                    path,
                    f"{where}.item",
                    f"unknown scorecard item {item!r} (one of {', '.join(sorted(keys))})",
                )

    def behaviours(self, path: Path, where: str, ids: list[str]) -> None:
        """Each id names a catalogue behaviour, once (``where`` is the list's field)."""
        for j, b in enumerate(ids):
            if self.behaviour_ids is not None and b not in self.behaviour_ids:
                raise _error(path, f"{where}[{j}]", f"unknown behaviour {b!r} (see guidance.yaml)")
            if b in ids[:j]:
                raise _error(path, f"{where}[{j}]", f"behaviour {b!r} is listed twice")

    def scenario(self, path: Path, where: str, scenario_id: str) -> None:
        if self.scenario_ids is not None and scenario_id not in self.scenario_ids:
            raise _error(
                path,
                where,
                f"unknown scenario {scenario_id!r} (one of {', '.join(sorted(self.scenario_ids))})",
            )

    def script(self, path: Path, where: str, script: str) -> Path:
        base = self.scripts_dir or Path("evals/roleplay_scripts")
        target = (base / f"{script}.txt").resolve()
        if not target.is_relative_to(base.resolve()) or not target.is_file():
            raise _error(path, where, f"no script {script!r} ({base}/<scenario>/<name>.txt)")
        return target


_CASE_SCOPE: dict[str, Scope] = {"coach": "coach", "customer": "end", "scoring": "scoring"}


def _read_suite_file(path: Path) -> SuiteFile:
    """The suite file, parsed; a case without ``kind`` takes the suite's."""
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise DataValidationError(f"{path}: expected a mapping with 'cases'")
    default_kind = data.get("kind")
    if isinstance(data.get("cases"), list) and default_kind in KINDS:
        data["cases"] = [
            {"kind": default_kind, **c} if isinstance(c, dict) and "kind" not in c else c
            for c in data["cases"]
        ]
    try:
        return SuiteFile.model_validate(data)
    except ValidationError as exc:
        raise _first_error(path, exc) from exc


def _check_all(
    checker: Checker, path: Path, prefix: str, assertions: list[Any], scope: str
) -> None:
    for j, a in enumerate(assertions):
        checker.assertion(path, f"{prefix}assert[{j}]", a, scope)


def _check_customer(
    checker: Checker, path: Path, where: str, case: CustomerCase, own: list[Any]
) -> None:
    checker.scenario(path, f"{where}.scenario", case.scenario)
    if case.script:
        checker.script(path, f"{where}.script", case.script)
    for t, turn in enumerate(case.turns):
        if isinstance(turn, TurnSpec):
            _check_all(checker, path, f"{where}.turns[{t}].", turn.assertions, "turn")
    _check_all(checker, path, f"{where}.", own, "end")


def _check_scoring(
    checker: Checker, path: Path, where: str, case: ScoringCase, own: list[Any]
) -> None:
    if case.transcript is not None:
        checker.scenario(path, f"{where}.transcript.scenario", case.transcript.scenario)
    elif case.transcript_file:
        target = (path.parent / case.transcript_file).resolve()
        if not target.is_file():
            raise _error(path, f"{where}.transcript_file", f"no such file: {target}")
    _check_all(checker, path, f"{where}.", own, "scoring")


def _check_guidance(
    checker: Checker, path: Path, where: str, case: GuidanceCase, suite_assertions: list[Any]
) -> None:
    checks = ", ".join(GUIDANCE_CHECKS)
    if suite_assertions:
        raise _error(path, "assert", f"guidance cases take no assertions (built in: {checks})")
    if case.assertions:
        raise _error(
            path, f"{where}.assert", f"guidance cases take no assertions (built in: {checks})"
        )
    checker.behaviours(path, f"{where}.expect", case.expect)


def _check_case(
    checker: Checker, path: Path, where: str, case: Any, suite_assertions: list[Any]
) -> None:
    """Cross-check one case; the suite-level assertions are prepended to its own."""
    if isinstance(case, GuidanceCase):
        _check_guidance(checker, path, where, case, suite_assertions)
        return
    _check_all(checker, path, "", suite_assertions, _CASE_SCOPE[case.kind])
    own = list(case.assertions)
    case.assertions = [*suite_assertions, *own]
    has = case.has_assertions() if isinstance(case, CustomerCase) else bool(case.assertions)
    if not has:
        raise _error(path, f"{where}.assert", "the case has no assertions")
    if isinstance(case, CoachCase):
        _check_all(checker, path, f"{where}.", own, "coach")
    elif isinstance(case, CustomerCase):
        _check_customer(checker, path, where, case, own)
    else:
        _check_scoring(checker, path, where, case, own)


def load_suite(path: Path, checker: Checker | None = None) -> Suite:
    """Load and validate one suite file; errors name the file and the field."""
    parsed = _read_suite_file(path)
    checker = checker or Checker()
    seen: set[str] = set()
    for i, case in enumerate(parsed.cases):
        where = f"cases[{i}]"
        if case.id in seen:
            raise _error(path, f"{where}.id", f"duplicate case id {case.id!r}")
        seen.add(case.id)
        _check_case(checker, path, where, case, parsed.assertions)
    return Suite(
        name=parsed.name or path.stem,
        path=path,
        description=parsed.description,
        threshold=parsed.threshold,
        cases=list(parsed.cases),
    )


def resolve_suites(names: list[str], suites_dir: Path) -> list[Path]:
    """Suite files for ``names`` (a name in ``suites_dir``, or a path); all of them if empty."""
    available = sorted(suites_dir.glob("*.yaml")) + sorted(suites_dir.glob("*.yml"))
    if not names:
        if not available:
            raise DataValidationError(f"no suites in {suites_dir}")
        return available
    by_name = {p.stem: p for p in available}
    out: list[Path] = []
    for name in names:
        candidate = Path(name)
        if name in by_name:
            path = by_name[name]
        elif candidate.suffix in {".yaml", ".yml"} and candidate.is_file():
            path = candidate
        elif candidate.is_dir():
            out += sorted(candidate.glob("*.yaml")) + sorted(candidate.glob("*.yml"))
            continue
        else:
            raise DataValidationError(
                f"unknown suite {name!r}",
                hint="one of: " + (", ".join(by_name) or "(none)") + ", or a path to a .yaml file",
            )
        if path not in out:
            out.append(path)
    return out


def load_suites(paths: list[Path], checker: Checker | None = None) -> list[Suite]:
    suites = [load_suite(p, checker) for p in paths]
    names: dict[str, Path] = {}
    for suite in suites:
        if suite.name in names:
            raise DataValidationError(
                f"{suite.path}: suite name {suite.name!r} is also used by {names[suite.name]}"
            )
        names[suite.name] = suite.path
    return suites


# --------------------------------------------------------------------------- --filter

_TOKEN = re.compile(r"\s*(\(|\)|[^\s()]+)")
FILTER_FIELDS = ("id", "tag", "kind", "suite", "scenario")


class FilterError(DataValidationError):
    """A --filter expression that cannot be parsed."""


Predicate = Callable[[str, Any], bool]  # (suite name, case) -> keep?


def _term(token: str) -> Predicate:
    field, sep, pattern = token.partition(":")
    if not sep:
        field, pattern = "id", token
    field = field.lower()
    if field not in FILTER_FIELDS:
        raise FilterError(
            f"bad --filter: unknown field {field!r} in {token!r}",
            hint="use " + ", ".join(f"{f}:GLOB" for f in FILTER_FIELDS) + ", and/or/not, ( )",
        )
    if not pattern:
        raise FilterError(f"bad --filter: nothing after '{field}:'")

    def match(suite: str, case: Any) -> bool:
        if field == "id":
            values = [case.id, f"{suite}/{case.id}"]
        elif field == "tag":
            values = list(case.tags)
        elif field == "kind":
            values = [case.kind]
        elif field == "suite":
            values = [suite]
        else:
            scenario = getattr(case, "scenario", None) or getattr(
                getattr(case, "transcript", None), "scenario", None
            )
            values = [scenario] if scenario else []
        return any(fnmatch.fnmatchcase(v, pattern) for v in values)

    return match


def _either(a: Predicate, b: Predicate) -> Predicate:
    return lambda s, c: a(s, c) or b(s, c)


def _both(a: Predicate, b: Predicate) -> Predicate:
    return lambda s, c: a(s, c) and b(s, c)


def _negated(inner: Predicate) -> Predicate:
    return lambda s, c: not inner(s, c)


class _FilterParser:
    """Recursive descent over the tokens: ``or`` binds loosest, then ``and``, then ``not``."""

    def __init__(self, expression: str, tokens: list[str]) -> None:
        self.expression = expression
        self.tokens = tokens
        self.position = 0

    def peek(self) -> str | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def at(self, word: str) -> bool:
        return (self.peek() or "").lower() == word

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise FilterError(f"bad --filter: {self.expression!r} ends too early")
        self.position += 1
        return token

    def parse(self) -> Predicate:
        predicate = self.parse_or()
        if self.position != len(self.tokens):
            raise FilterError(
                f"bad --filter: unexpected {self.tokens[self.position]!r} in {self.expression!r}"
            )
        return predicate

    def parse_or(self) -> Predicate:
        left = self.parse_and()
        while self.at("or"):
            self.take()
            left = _either(left, self.parse_and())
        return left

    def parse_and(self) -> Predicate:
        left = self.parse_not()
        while self.at("and"):
            self.take()
            left = _both(left, self.parse_not())
        return left

    def parse_not(self) -> Predicate:
        if self.at("not"):
            self.take()
            return _negated(self.parse_not())
        return self.parse_atom()

    def parse_atom(self) -> Predicate:
        token = self.take()
        if token == "(":
            inner = self.parse_or()
            if self.take() != ")":
                raise FilterError(f"bad --filter: missing ')' in {self.expression!r}")
            return inner
        if token == ")" or token.lower() in {"and", "or"}:
            raise FilterError(f"bad --filter: unexpected {token!r} in {self.expression!r}")
        return _term(token)


def parse_filter(expression: str) -> Predicate:
    """``tag:smoke and not kind:customer``, ``id:calm-*``, ``(suite:coach or tag:x)``..."""
    tokens = _TOKEN.findall(expression)
    if not tokens or "".join(tokens).strip() == "":
        raise FilterError("bad --filter: empty expression")
    return _FilterParser(expression, tokens).parse()
