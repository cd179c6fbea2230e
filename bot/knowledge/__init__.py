"""The knowledge base: documents, chunking, the Chroma index and a LangChain retriever."""

from bot.knowledge.documents import KnowledgeDocument, SkippedFile, load_documents
from bot.knowledge.index import IngestReport, KnowledgeIndex, RetrievedChunk
from bot.knowledge.retriever import KnowledgeRetriever

__all__ = [
    "IngestReport",
    "KnowledgeDocument",
    "KnowledgeIndex",
    "KnowledgeRetriever",
    "RetrievedChunk",
    "SkippedFile",
    "load_documents",
]
