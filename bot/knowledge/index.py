"""The knowledge index in Chroma: incremental ingestion and retrieval.

One collection per embedding model (``coachbot-<provider>-<model>``), so switching embedding
models never mixes vectors. Every chunk carries its document's id and content hash; ingestion
compares hashes, so an unchanged file costs nothing, an edited file replaces only its own chunks
and a deleted file's chunks go.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import chromadb
from chromadb.config import Settings as ChromaSettings
from langchain_core.embeddings import Embeddings

from bot.config import Settings
from bot.embeddings import chroma_embedding_function, embedding_model_name, make_embeddings
from bot.errors import KnowledgeError
from bot.knowledge.chunking import CHUNKER_VERSION, chunk_text
from bot.knowledge.documents import KnowledgeDocument, SkippedFile, load_documents

_SLUG = re.compile(r"[^a-z0-9]+")


def collection_name(provider: str, model: str) -> str:
    """A valid Chroma collection name that carries the embedding model."""
    slug = _SLUG.sub("-", f"{provider}-{model}".lower()).strip("-")
    return f"coachbot-{slug}"[:200]


@dataclass
class IngestReport:
    """What one ingestion run did."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    chunks_written: int = 0
    chunks_total: int = 0
    seconds: float = 0.0
    collection: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["counts"] = {
            "added": len(self.added),
            "updated": len(self.updated),
            "removed": len(self.removed),
            "unchanged": len(self.unchanged),
            "skipped": len(self.skipped),
        }
        return data


@dataclass(frozen=True)
class RetrievedChunk:
    """A passage from the knowledge base with its similarity score (cosine, 0..1)."""

    text: str
    score: float
    metadata: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "score": round(self.score, 4), "metadata": self.metadata}


@dataclass
class IndexStatus:
    """How the index compares with the files on disk."""

    collection: str
    chunks: int
    indexed_files: int
    stale: list[str]  # new or edited files not yet ingested
    orphaned: list[str]  # files in the index that are gone from disk
    skipped: list[SkippedFile]

    @property
    def fresh(self) -> bool:
        return not self.stale and not self.orphaned


def make_chroma_client(settings: Settings) -> chromadb.api.ClientAPI:
    """A Chroma client: HTTP when ``CHROMA_HOST`` is set, otherwise embedded and persistent."""
    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    try:
        if settings.chroma_host:
            return chromadb.HttpClient(
                host=settings.chroma_host, port=settings.chroma_port, settings=chroma_settings
            )
        settings.chroma_dir.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(settings.chroma_dir), settings=chroma_settings)
    except Exception as exc:  # chroma raises many types; the user needs one clear line
        where = (
            f"{settings.chroma_host}:{settings.chroma_port}"
            if settings.chroma_host
            else str(settings.chroma_dir)
        )
        raise KnowledgeError(
            f"cannot open the Chroma store at {where}: {exc}",
            hint="check CHROMA_HOST/CHROMA_PORT, or delete the directory and run `coachbot ingest`",
        ) from exc


def _document_hash(doc: KnowledgeDocument, chunk_tokens: int) -> str:
    """Changes when the file or the way it is chunked changes."""
    return hashlib.sha256(f"{doc.sha256}|{CHUNKER_VERSION}|{chunk_tokens}".encode()).hexdigest()[
        :32
    ]


def _embed_text(text: str, title: str, section: str) -> str:
    """What gets embedded: the chunk, led by its section heading for context."""
    return text if section == title else f"{section}\n{text}"


class KnowledgeIndex:
    """The articles (and users' own files) as searchable chunks in Chroma."""

    def __init__(
        self,
        settings: Settings,
        client: chromadb.api.ClientAPI | None = None,
        embeddings: Embeddings | None = None,
    ) -> None:
        self.settings = settings
        self.root = settings.knowledge_dir.resolve()
        self._client = client
        self._embeddings = embeddings
        self.collection_name = collection_name(
            settings.embeddings_provider, embedding_model_name(settings)
        )
        self._collection: Any = None

    @property
    def embeddings(self) -> Embeddings:
        if self._embeddings is None:
            self._embeddings = make_embeddings(self.settings)
        return self._embeddings

    @property
    def collection(self) -> Any:
        if self._collection is None:
            if self._client is None:
                self._client = make_chroma_client(self.settings)
            self._collection = self._client.get_or_create_collection(
                name=self.collection_name,
                embedding_function=chroma_embedding_function(self.settings),
                metadata={"hnsw:space": "cosine", "chunker": CHUNKER_VERSION},
            )
        return self._collection

    def _resolve_scope(self, path: Path | None) -> Path:
        if path is None:
            return self.root
        scope = (path if path.is_absolute() else Path.cwd() / path).resolve()
        if not scope.is_relative_to(self.root):
            raise KnowledgeError(
                f"{path} is outside the knowledge directory {self.root}",
                hint="copy the file under knowledge/ and ingest again",
            )
        if not scope.exists():
            raise KnowledgeError(f"{path} does not exist")
        return scope

    def _indexed_hashes(self, prefix: str = "") -> dict[str, str]:
        """doc_id -> document hash for every document in the collection (under ``prefix``)."""
        hashes: dict[str, str] = {}
        total = self.collection.count()
        page = 5000
        for offset in range(0, total, page):
            got = self.collection.get(include=["metadatas"], limit=page, offset=offset)
            for meta in got["metadatas"] or []:
                doc_id = str(meta.get("doc_id", ""))
                if doc_id.startswith(prefix):
                    hashes[doc_id] = str(meta.get("doc_hash", ""))
        return hashes

    def _prefix(self, scope: Path) -> str:
        if scope == self.root:
            return ""
        rel = scope.relative_to(self.root).as_posix()
        return rel if scope.is_file() else rel + "/"

    def ingest(
        self, path: Path | None = None, progress: Callable[[str], None] | None = None
    ) -> IngestReport:
        """Bring the index in line with the files under ``path`` (default: all of knowledge/)."""
        started = time.perf_counter()
        scope = self._resolve_scope(path)
        documents, skipped = load_documents(self.root, scope)
        report = IngestReport(skipped=skipped, collection=self.collection_name)
        indexed = self._indexed_hashes(self._prefix(scope))
        skipped_ids = {s.path for s in skipped}
        tokens = self.settings.chunk_tokens

        for doc in documents:
            doc_hash = _document_hash(doc, tokens)
            previous = indexed.get(doc.doc_id)
            if previous == doc_hash:
                report.unchanged.append(doc.doc_id)
                continue
            if progress:
                progress(doc.doc_id)
            report.chunks_written += self._write_document(doc, doc_hash)
            (report.updated if previous is not None else report.added).append(doc.doc_id)

        current = {d.doc_id for d in documents}
        for doc_id in sorted(set(indexed) - current):
            if doc_id in skipped_ids:
                # A file that became unusable keeps its last good chunks; it is reported as skipped.
                continue
            self.collection.delete(where={"doc_id": doc_id})
            report.removed.append(doc_id)

        report.chunks_total = self.collection.count()
        report.seconds = time.perf_counter() - started
        return report

    def _write_document(self, doc: KnowledgeDocument, doc_hash: str) -> int:
        chunks = chunk_text(doc.body, doc.meta.title, self.settings.chunk_tokens)
        self.collection.delete(where={"doc_id": doc.doc_id})
        if not chunks:
            return 0
        base_meta = {
            "doc_id": doc.doc_id,
            "doc_hash": doc_hash,
            "title": doc.meta.title,
            "author": doc.meta.author,
            "publisher": doc.meta.publisher,
            "published": doc.meta.published,
            "origin": doc.origin,
        }
        base_meta = {k: v for k, v in base_meta.items() if v is not None}
        ids = [f"{doc.doc_id}#{c.position}" for c in chunks]
        metadatas = [
            {**base_meta, "section": c.section, "position": c.position, "tokens": c.tokens}
            for c in chunks
        ]
        vectors = self.embeddings.embed_documents(
            [_embed_text(c.text, doc.meta.title, c.section) for c in chunks]
        )
        self.collection.add(
            ids=ids, documents=[c.text for c in chunks], metadatas=metadatas, embeddings=vectors
        )
        return len(chunks)

    def status(self) -> IndexStatus:
        """Compare the index with the files on disk (no writes)."""
        documents, skipped = load_documents(self.root)
        indexed = self._indexed_hashes()
        tokens = self.settings.chunk_tokens
        stale = [d.doc_id for d in documents if indexed.get(d.doc_id) != _document_hash(d, tokens)]
        current = {d.doc_id for d in documents} | {s.path for s in skipped}
        return IndexStatus(
            collection=self.collection_name,
            chunks=self.collection.count(),
            indexed_files=len(indexed),
            stale=stale,
            orphaned=sorted(set(indexed) - current),
            skipped=skipped,
        )

    def search(
        self, query: str, k: int = 4, where: dict[str, Any] | None = None
    ) -> list[RetrievedChunk]:
        """The ``k`` chunks most similar to ``query``, best first."""
        if not query.strip():
            raise KnowledgeError("the query is empty", hint="ask a question in words")
        if k < 1:
            raise KnowledgeError("k must be at least 1")
        vector = self.embeddings.embed_query(query)
        result = self.collection.query(
            query_embeddings=[vector],
            n_results=k,
            where=where,
            include=["documents", "metadatas", "distances"],
        )
        hits: list[RetrievedChunk] = []
        for text, meta, distance in zip(
            result["documents"][0], result["metadatas"][0], result["distances"][0], strict=True
        ):
            public = {k2: v for k2, v in (meta or {}).items() if k2 not in {"doc_hash"}}
            hits.append(
                RetrievedChunk(text=text or "", score=1.0 - float(distance), metadata=public)
            )
        return hits
