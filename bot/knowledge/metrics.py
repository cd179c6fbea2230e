"""Passage-level retrieval quality on labelled questions: hit@k and mean reciprocal rank.

A returned passage answers a question when it contains one of the question's answer quotes,
compared on normalised text (case, quotes, dashes, punctuation and spacing ignored).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

_NOT_WORD = re.compile(r"[\W_]+")


def normalise(text: str) -> str:
    """Lower-case words and digits only, single-spaced (so ’ and ' or — and - do not matter)."""
    return _NOT_WORD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def answers(passage: str, quotes: Sequence[str]) -> bool:
    """Does ``passage`` contain any of ``quotes``?"""
    text = f" {normalise(passage)} "
    return any(f" {normalise(q)} " in text for q in quotes if normalise(q))


def answer_rank(passages: Sequence[str], quotes: Sequence[str]) -> int | None:
    """1-based rank of the first passage that answers, or None."""
    return next((n for n, p in enumerate(passages, start=1) if answers(p, quotes)), None)


@dataclass
class RetrievalScores:
    """hit@k for k in ``cutoffs`` and MRR over the ranks seen (None: not found)."""

    ranks: list[int | None] = field(default_factory=list)
    cutoffs: tuple[int, ...] = (1, 3, 5)
    cited: list[bool] = field(default_factory=list)  # the coach's citations hold the answer

    def add(self, rank: int | None) -> None:
        self.ranks.append(rank)

    def hit_at(self, k: int) -> float:
        return (
            sum(r is not None and r <= k for r in self.ranks) / len(self.ranks)
            if self.ranks
            else 0.0
        )

    @property
    def mrr(self) -> float:
        return sum(1 / r for r in self.ranks if r) / len(self.ranks) if self.ranks else 0.0

    def to_dict(self) -> dict[str, float | int]:
        out: dict[str, float | int] = {"questions": len(self.ranks)}
        out.update({f"hit@{k}": round(self.hit_at(k), 3) for k in self.cutoffs})
        out["mrr"] = round(self.mrr, 3)
        if self.cited:
            out["cited"] = round(sum(self.cited) / len(self.cited), 3)
        return out
