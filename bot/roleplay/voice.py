"""Whose voice a line is in: the customer's, or an agent's (or an assistant's).

The customer's lines come from a small model that slips into the agent's part ("I understand
how frustrating this must be", "I can refund that today") or into an assistant's ("Here is
how the customer might reply"). :func:`voice_report` measures a voice check on labelled lines
(``evals/data/customer_voice/``, written by helpers from the articles alone): how many agent
lines it catches, and how many real customer lines it wrongly rejects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from bot.datafiles import field_path, read_yaml
from bot.errors import DataValidationError
from bot.roleplay.scenarios import Scenario

Voice = Literal["customer", "agent"]
# Chosen on the dev split (docs/ROLEPLAY.md): the bar a line's agent probability must reach.
AGENT_VOICE_THRESHOLD = 0.85  # 0.8 until the round-3 guidance lines joined its agent examples
AGENT_VOICE_C = 16.0


class VoiceLine(BaseModel):
    """One labelled line: what was said, and whose voice it is in."""

    model_config = ConfigDict(extra="ignore")

    text: str = Field(min_length=1)
    label: Voice
    kind: str = ""
    setting: str = ""
    note: str = ""
    author: str = ""


def load_voice_lines(path: Path) -> list[VoiceLine]:
    """A labelled customer-voice set; errors name the file and the field."""
    try:
        return TypeAdapter(list[VoiceLine]).validate_python(read_yaml(path))
    except ValidationError as exc:
        first = exc.errors()[0]
        raise DataValidationError(f"{path}: {field_path(first['loc'])}: {first['msg']}") from exc


@dataclass
class VoiceReport:
    """How a voice check did: agent lines caught, customer lines wrongly rejected."""

    agent_caught: int = 0
    agents: int = 0
    customer_rejected: int = 0
    customers: int = 0
    misses: list[tuple[str, str, str | None]] = field(default_factory=list)

    @property
    def agent_recall(self) -> float:
        return self.agent_caught / self.agents if self.agents else 1.0

    @property
    def customer_false_rejection(self) -> float:
        return self.customer_rejected / self.customers if self.customers else 0.0

    def summary(self) -> str:
        return (
            f"agent lines caught {self.agent_caught}/{self.agents} "
            f"({self.agent_recall:.0%}); customer lines wrongly rejected "
            f"{self.customer_rejected}/{self.customers} ({self.customer_false_rejection:.0%})"
        )


def voice_report(lines: Sequence[VoiceLine], problem: Callable[[str], str | None]) -> VoiceReport:
    """Run ``problem(text)`` (None: the line passes as the customer's) over labelled lines."""
    report = VoiceReport()
    for line in lines:
        found = problem(line.text)
        if line.label == "agent":
            report.agents += 1
            report.agent_caught += found is not None
            if found is None:
                report.misses.append(("agent passed", line.text, None))
        else:
            report.customers += 1
            report.customer_rejected += found is not None
            if found is not None:
                report.misses.append(("customer rejected", line.text, found))
    return report


class VoiceClassifier:
    """How likely a line is in an agent's (or assistant's) voice rather than a customer's.

    Word and character n-grams (TF-IDF) under a logistic regression: what marks a voice is its
    pronouns, offers, hedges and stock phrases ("I can…", "that sounds…", "so what you're
    saying…"), which sentence embeddings of the topic blur (measured: MiniLM vectors separated
    the two voices worse on the dev split). Trained in about a second at first use.
    """

    def __init__(self, pipeline: Any, threshold: float) -> None:
        self._pipeline = pipeline
        self.threshold = threshold

    @classmethod
    def train(
        cls,
        customer: Sequence[str],
        agent: Sequence[str],
        threshold: float = AGENT_VOICE_THRESHOLD,
        strength: float = AGENT_VOICE_C,
    ) -> VoiceClassifier:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline, make_union

        features = make_union(
            TfidfVectorizer(
                ngram_range=(1, 3), sublinear_tf=True, token_pattern=r"(?u)\b\w+\b|[?!]"
            ),
            TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2),
        )
        model = LogisticRegression(C=strength, max_iter=4000, class_weight="balanced")
        texts = [*customer, *agent]
        labels = [0] * len(customer) + [1] * len(agent)
        return cls(make_pipeline(features, model).fit(texts, labels), threshold)

    def agent_probability(self, text: str) -> float:
        return float(self._pipeline.predict_proba([text])[0][1])

    def is_agent(self, text: str) -> bool:
        return self.agent_probability(text) >= self.threshold


@lru_cache(maxsize=4)
def trained_voice_classifier(customer: tuple[str, ...], agent: tuple[str, ...]) -> VoiceClassifier:
    """A :class:`VoiceClassifier` on these lines, trained once per process."""
    return VoiceClassifier.train(customer, agent)


def scenario_customer_lines(scenarios: Iterable[Scenario]) -> list[str]:
    """Every line the scenarios give their customers in full (opening lines, facts, and bank
    lines without placeholders): trainer-written examples of a customer's voice."""
    lines: list[str] = []
    for scenario in scenarios:
        bank = scenario.fallback_lines
        for beat in type(bank).model_fields:
            lines += [line for line in getattr(bank, beat) if "{" not in line]
        lines += [scenario.opening_line, *(fact.answer for fact in scenario.facts)]
    return lines
