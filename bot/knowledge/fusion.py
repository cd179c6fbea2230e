"""Reciprocal rank fusion: one ranking from several, by 1 / (k + rank) summed over the lists."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

Key = TypeVar("Key", bound=Hashable)


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[Key]], k: float = 60.0, weights: Sequence[float] | None = None
) -> list[tuple[Key, float]]:
    """Keys of all ``rankings`` (each best first) by fused score, best first.

    A key's score is the sum over the lists it is in of ``weight / (k + rank)``, rank from 1; a
    key repeated within one list counts at its best rank only. Ties keep first-seen order."""
    if k < 0:
        raise ValueError("k must be 0 or more")
    if weights is not None and len(weights) != len(rankings):
        raise ValueError("one weight per ranking")
    scores: dict[Key, float] = {}
    for n, ranking in enumerate(rankings):
        weight = 1.0 if weights is None else weights[n]
        seen: set[Key] = set()
        for rank, key in enumerate(ranking, start=1):
            if key in seen:
                continue
            seen.add(key)
            scores[key] = scores.get(key, 0.0) + weight / (k + rank)
    return sorted(scores.items(), key=lambda item: -item[1])
