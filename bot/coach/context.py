"""The compact context the coach's model sees: the few passage sentences closest to the
question, numbered by passage, and the citations they come from."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from bot.coach.answer_text import MAX_SENTENCE_WORDS, clip_words
from bot.coach.models import Citation
from bot.guidance.engine import split_sentences
from bot.knowledge.index import RetrievedChunk

Embed = Callable[[list[str]], np.ndarray]


# How much a passage's retrieval rank counts against a sentence's own similarity to the query
# (per rank step). Chosen on the coach questions' train and dev splits (docs/COACH.md): the
# hybrid search ranks the answering passage better than one sentence's MiniLM similarity does.
RANK_PRIOR = 0.15


def _candidates(hits: list[RetrievedChunk]) -> list[tuple[int, str]]:
    """(passage rank, sentence) for every sentence of five words or more that is not itself a
    question: an article's rhetorical question ("So how do we ...?") is no evidence."""
    candidates: list[tuple[int, str]] = []
    for rank, hit in enumerate(hits):
        for start, end in split_sentences(hit.text):
            sentence = hit.text[start:end].strip()
            if len(sentence.split()) >= 5 and not sentence.rstrip("\"'”’)").endswith("?"):
                candidates.append((rank, sentence))
    return candidates


def _choose(order: list[int], candidates: list[tuple[int, str]], wanted: int) -> list[int]:
    """The best sentences, one per passage while other passages have any: the model is shown
    (and cites) [1] and [2] as in its worked example, never [2] of a single passage."""
    chosen: list[int] = []
    for i in order:
        if len(chosen) == wanted:
            break
        if all(candidates[i][0] != candidates[j][0] for j in chosen):
            chosen.append(i)
    for i in order:  # fewer passages than sentences wanted: fill from the best
        if len(chosen) == wanted:
            break
        if i not in chosen:
            chosen.append(i)
    return sorted(chosen)


def select_context(
    embed: Embed, query: str, hits: list[RetrievedChunk], max_sentences: int
) -> tuple[list[Citation], list[dict[str, Any]]]:
    """Citations (the passages used) and the compact numbered context shown to the model."""
    candidates = _candidates(hits)
    if not candidates:
        return [], []
    vectors = embed([query] + [c[1] for c in candidates])
    sims = vectors[1:] @ vectors[0]
    sims = sims + np.array([RANK_PRIOR * (len(hits) - rank) for rank, _ in candidates])
    chosen = _choose(np.argsort(-sims).tolist(), candidates, max_sentences)
    ranks_used: list[int] = []
    for i in sorted(chosen, key=lambda j: candidates[j][0]):
        if candidates[i][0] not in ranks_used:
            ranks_used.append(candidates[i][0])
    number_of = {rank: n for n, rank in enumerate(ranks_used, start=1)}
    citations = [
        Citation(
            number=number_of[rank],
            text=hits[rank].text,
            score=round(hits[rank].score, 4),
            metadata=hits[rank].metadata,
        )
        for rank in ranks_used
    ]
    grouped: dict[int, list[str]] = {}
    for i in chosen:
        rank, sentence = candidates[i]
        grouped.setdefault(number_of[rank], []).append(sentence)
    context = [
        {
            "number": n,
            "text": " ".join(clip_words(x, MAX_SENTENCE_WORDS) for x in s),
            "full": " ".join(s),
        }
        for n, s in sorted(grouped.items())
    ]
    return citations, context
