"""The lexical side of retrieval: BM25 (bm25s) over short texts, English-stemmed (PyStemmer)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import bm25s
import numpy as np
import Stemmer


@lru_cache(maxsize=1)
def _stemmer() -> Any:
    return Stemmer.Stemmer("english")


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    """Lower-cased, stop-worded, stemmed word tokens of each text."""
    return bm25s.tokenize(
        list(texts),
        stopwords="en",
        stemmer=_stemmer().stemWords,
        return_ids=False,
        show_progress=False,
    )


class LexicalIndex:
    """BM25 over ``texts``; :meth:`search` gives positions into them, best first."""

    def __init__(self, texts: Sequence[str], k1: float = 1.2, b: float = 0.75) -> None:
        self.size = len(texts)
        self._bm25: Any = None
        if texts:
            self._bm25 = bm25s.BM25(k1=k1, b=b)
            self._bm25.index(tokenize(texts), show_progress=False)
            self._vocab: dict[str, int] = self._bm25.vocab_dict

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """(position, score) of the ``k`` best texts with a positive score, best first."""
        if self._bm25 is None or k < 1:
            return []
        tokens = [t for t in tokenize([query])[0] if t in self._vocab]
        if not tokens:
            return []
        scores = self._bm25.get_scores(tokens)
        n = min(k, self.size)
        top = np.argpartition(-scores, n - 1)[:n]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(i), float(scores[i])) for i in top if scores[i] > 0]
