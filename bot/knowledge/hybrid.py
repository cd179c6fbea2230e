"""Hybrid retrieval: dense (Chroma) and lexical (BM25) rankings of passages, fused by RRF.

Passages are matched through three kinds of text: the passage itself (``chunk``), its sentence
windows (``window``: a sentence and its neighbours) and the questions it answers
(``question``). Each ranking is ``<method>:<kind>`` (``dense:window``, ``lexical:question``...);
every ranking is turned into a ranking of passages (a passage counts at its best text) and the
passage rankings are fused with reciprocal rank fusion. The passage is what is returned, whole,
with the sentence(s) that matched: the centres of its best-ranked windows (their spans are
recomputed from the passage's text, as ingest computed them).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bot.knowledge.fusion import reciprocal_rank_fusion
from bot.knowledge.lexical import LexicalIndex, tokenize
from bot.knowledge.sentences import sentence_spans

KINDS = ("chunk", "window", "question")
METHODS = ("dense", "lexical")
DEFAULT_LISTS = (
    "dense:chunk",
    "dense:window",
    "dense:question",
    "lexical:chunk",
    "lexical:window",
    "lexical:question",
)


@dataclass(frozen=True)
class RetrievalConfig:
    """Which rankings are fused, their weights, how deep each is, and the RRF constant.

    The defaults were chosen on the dev split of the labelled coach questions (train as the
    tie-break; docs/RETRIEVAL.md): all six rankings, the question rankings weighted 4, k = 3."""

    lists: tuple[str, ...] = DEFAULT_LISTS
    rrf_k: float = 3.0
    depth: int = 30  # candidates taken from each ranking
    sentences: int = 2  # matched sentences returned per passage, at most
    weights: dict[str, float] = field(
        default_factory=lambda: {"dense:question": 4.0, "lexical:question": 4.0}
    )  # per ranking, default 1

    def __post_init__(self) -> None:
        for name in self.lists:
            method, _, kind = name.partition(":")
            if method not in METHODS or kind not in KINDS:
                raise ValueError(f"unknown ranking {name!r}: use <dense|lexical>:<kind>")
        if not self.lists:
            raise ValueError("at least one ranking")


@dataclass(frozen=True)
class Match:
    """A passage found by the fusion: its id, fused score, the rankings that found it and its
    best windows (unit ids, best first)."""

    chunk_id: str
    fused: float
    found_by: tuple[str, ...]
    windows: tuple[str, ...]


@dataclass
class _Corpus:
    """One kind's texts for BM25, with the passage each belongs to."""

    ids: list[str]
    chunk_ids: list[str]
    index: LexicalIndex


class LexicalCorpora:
    """BM25 indexes of every kind, built from the collections and rebuilt when they change."""

    def __init__(self, load: Callable[[], dict[str, tuple[list[str], list[str], list[str]]]]):
        self._load = load  # kind -> (ids, chunk ids, texts)
        self._lock = threading.Lock()
        self._corpora: dict[str, _Corpus] = {}
        self._version: object = None

    def get(self, version: object) -> dict[str, _Corpus]:
        """The indexes for ``version`` (anything that changes when the collections do)."""
        with self._lock:
            if version != self._version:
                self._corpora = {
                    kind: _Corpus(ids, chunk_ids, LexicalIndex(texts))
                    for kind, (ids, chunk_ids, texts) in self._load().items()
                }
                self._version = version
            return self._corpora


def _to_chunks(unit_ids: Sequence[str], chunk_of: Callable[[str], str]) -> list[str]:
    """A ranking of texts as a ranking of passages (each at its best text's rank)."""
    seen: dict[str, None] = {}
    for unit in unit_ids:
        seen.setdefault(chunk_of(unit), None)
    return list(seen)


def chunk_of(unit_id: str) -> str:
    """``articles/x.md#3/w2`` -> ``articles/x.md#3`` (a chunk id is its own passage)."""
    head, sep, tail = unit_id.rpartition("/")
    return head if sep and tail[:1] in {"w", "q"} and tail[1:].isdigit() else unit_id


def unit_kind(unit_id: str) -> str:
    """``window``, ``question`` or ``chunk``, from the id."""
    tail = unit_id.rpartition("/")[2]
    if chunk_of(unit_id) == unit_id:
        return "chunk"
    return "window" if tail.startswith("w") else "question"


def fuse(unit_rankings: dict[str, list[str]], config: RetrievalConfig, k: int) -> list[Match]:
    """The ``k`` best passages from the rankings of texts (ids, best first) named by the config."""
    names = [n for n in config.lists if n in unit_rankings]
    passage_rankings = [_to_chunks(unit_rankings[n], chunk_of) for n in names]
    weights = [config.weights.get(n, 1.0) for n in names]
    fused = reciprocal_rank_fusion(passage_rankings, k=config.rrf_k, weights=weights)[:k]
    window_lists = [unit_rankings[n] for n in names if n.endswith(":window")]
    window_scores = reciprocal_rank_fusion(window_lists, k=config.rrf_k) if window_lists else []
    matches = []
    for chunk_id, score in fused:
        found_by = tuple(n for n, r in zip(names, passage_rankings, strict=True) if chunk_id in r)
        windows = tuple(w for w, _ in window_scores if chunk_of(w) == chunk_id)
        matches.append(Match(chunk_id, score, found_by, windows[: config.sentences]))
    return matches


def matched_spans(query: str, passage: str, windows: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """Spans in ``passage`` of the centre sentences of its ranked ``windows`` (ids ending in
    ``/w<n>``); with none ranked, the sentence sharing most (stemmed) words with the query."""
    spans = sentence_spans(passage)
    centres = [int(w.rpartition("/w")[2]) for w in windows]
    found = tuple(spans[n] for n in centres if n < len(spans))
    if found or not spans:
        return found
    words = set(tokenize([query])[0])
    overlap = [len(words & set(t)) for t in tokenize([passage[a:b] for a, b in spans])]
    return (spans[max(range(len(spans)), key=lambda i: (overlap[i], -i))],)


def cosine(vector: Sequence[float], others: Any) -> np.ndarray:
    """Cosine similarity of ``vector`` with each row of ``others``."""
    q = np.asarray(vector, dtype=np.float32)
    m = np.asarray(others, dtype=np.float32).reshape(-1, q.shape[0])
    norms = np.linalg.norm(m, axis=1) * (np.linalg.norm(q) or 1.0)
    return (m @ q) / np.where(norms == 0, 1.0, norms)
