"""What a passage is matched by: its sentence windows and the questions it answers.

Each unit's id is its passage's id with ``/w<n>`` (window around sentence n) or ``/q<n>``
(question n), so any ranking of units maps straight back to passages. A window records the
character span of its centre sentence in the passage, so the matched sentence can be shown
and quoted exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.knowledge.questions import QuestionSource
from bot.knowledge.sentences import sentence_spans, sentence_windows


@dataclass(frozen=True)
class Unit:
    """One text that stands for a passage at retrieval time."""

    id: str
    kind: str  # "window" or "question"
    text: str
    metadata: dict[str, Any]


def window_units(chunk_id: str, text: str, radius: int = 1) -> list[Unit]:
    """A window per sentence of the passage ``text``, with its centre sentence's span."""
    spans = sentence_spans(text)
    windows = sentence_windows([text[a:b] for a, b in spans], radius)
    return [
        Unit(
            f"{chunk_id}/w{w.centre}",
            "window",
            w.text,
            {
                "kind": "window",
                "chunk_id": chunk_id,
                "sentence": w.centre,
                "start": spans[w.centre][0],
                "end": spans[w.centre][1],
            },
        )
        for w in windows
    ]


def question_units(
    chunk_id: str, text: str, title: str, section: str, source: QuestionSource | None
) -> list[Unit]:
    """The questions ``source`` gives for the passage (none without a source)."""
    if source is None:
        return []
    return [
        Unit(f"{chunk_id}/q{n}", "question", q, {"kind": "question", "chunk_id": chunk_id})
        for n, q in enumerate(source.questions(text, title, section))
    ]
