"""Sentences of a passage and the sentence windows matched at retrieval time.

A passage (a chunk) is split into sentences as spans of its own text, so a matched sentence is
always an exact substring of the passage the coach shows and cites. A window is a sentence with
its ``radius`` neighbours on each side, inside the same passage.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A sentence ends at . ! ? or … (with any closing quotes or brackets) before a space and a
# capital, an opening quote, a bracket or a digit; a line break always ends one.
_BOUNDARY = re.compile(r"(?<=[.!?…])[\"”’')\]]*\s+(?=[A-Z“‘\"'(\d])|\n+")
_LIST_MARK = re.compile(r"^\s*(?:[-*+•]\s+)?(?:(?:\d+|[A-Z])[.)]\s+)?")
# "1." or "A." before a list item's text
_MARK_ONLY = re.compile(r"\s*(?:[-*+•]\s+)?(?:\d+|[A-Za-z])[.)]")


@dataclass(frozen=True)
class Window:
    """Sentences ``first``..``last`` of a passage around its ``centre`` sentence."""

    text: str
    centre: int
    first: int
    last: int


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every sentence of ``text``, trimmed of space and list markers."""
    spans: list[tuple[int, int]] = []
    start = 0
    for match in [*_BOUNDARY.finditer(text), None]:
        end = match.start() if match else len(text)
        piece = text[start:end]
        if match and "\n" not in match.group(0) and _MARK_ONLY.fullmatch(piece):
            continue  # a list item's number, not a sentence
        if match and match.group(0).startswith(("”", "’", '"', "'", ")", "]")):
            closing = len(match.group(0)) - len(match.group(0).lstrip("\"”’')]"))
            end, piece = end + closing, text[start : end + closing]
        lead = len(piece) - len(piece.lstrip())
        lead += _LIST_MARK.match(piece[lead:]).end()  # type: ignore[union-attr]
        stripped = piece.rstrip()
        if len(stripped) > lead:
            spans.append((start + lead, start + len(stripped)))
        start = match.end() if match else len(text)
    return spans


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``, in order."""
    return [text[a:b] for a, b in sentence_spans(text)]


def sentence_windows(sentences: list[str], radius: int = 1) -> list[Window]:
    """One window per sentence: it and up to ``radius`` neighbours each side."""
    if radius < 0:
        raise ValueError("radius must be 0 or more")
    windows = []
    for i in range(len(sentences)):
        first, last = max(0, i - radius), min(len(sentences) - 1, i + radius)
        windows.append(Window(" ".join(sentences[first : last + 1]), i, first, last))
    return windows
