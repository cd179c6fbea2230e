"""A LangChain retriever over :class:`~bot.knowledge.index.KnowledgeIndex`."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict


class KnowledgeRetriever(BaseRetriever):
    """Returns the top ``k`` passages as Documents; the score is in ``metadata['score']``, the
    matched sentences in ``metadata['sentences']``."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: Any  # KnowledgeIndex (kept loose so fakes can stand in for it in tests)
    k: int = 4
    min_score: float = 0.0

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        hits = self.index.search(query, k=self.k)
        return [
            Document(
                page_content=h.text,
                metadata={**h.metadata, "score": h.score, "sentences": list(h.sentences)},
            )
            for h in hits
            if h.score >= self.min_score
        ]
