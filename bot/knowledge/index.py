"""The knowledge index in Chroma: incremental ingestion and retrieval.

One collection per embedding model (``coachbot-<provider>-<model>``), so switching embedding
models never mixes vectors. Every chunk carries its document's id and content hash; ingestion
compares hashes, so an unchanged file costs nothing, an edited file replaces only its own chunks
and a deleted file's chunks go.

The index is derived from knowledge/, so an embedded store that cannot be used (a corrupt or
truncated file, something else at its path, a collection built with another embedding model or
vector size) is moved aside (``chroma.broken-<time>``, never deleted) and rebuilt on open, with a
notice (``KnowledgeIndex.notices``, ``IngestReport.notices`` and a log warning). A Chroma server
is never rebuilt: its problems are errors.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import chromadb
from chromadb.config import Settings as ChromaSettings
from langchain_core.embeddings import Embeddings

from bot.errors import KnowledgeError
from bot.knowledge.chunking import CHUNKER_VERSION, chunk_text
from bot.knowledge.documents import KnowledgeDocument, SkippedFile, load_documents
from bot.knowledge.hybrid import (
    KINDS,
    LexicalCorpora,
    RetrievalConfig,
    cosine,
    fuse,
    matched_spans,
    unit_kind,
)
from bot.knowledge.questions import QuestionSource
from bot.knowledge.units import Unit, question_units, window_units
from bot.llm.embeddings import chroma_embedding_function, embedding_model_name, make_embeddings


class IndexSettings(Protocol):
    """What the index reads of the settings it is given (``bot.config.Settings`` has it all)."""

    knowledge_dir: Path
    chroma_host: str | None
    chroma_port: int
    chunk_tokens: int
    openai_embedding_model: str

    @property
    def chroma_dir(self) -> Path: ...

    @property
    def embeddings_provider(self) -> str: ...


UNITS_VERSION = "windows-questions-1"  # how passages are matched (windows, questions)
COUNT_EVERY_S = 5.0  # how often search re-reads the collections' sizes
_SLUG = re.compile(r"[^a-z0-9]+")
# Errors that say the store is busy or forbidden, not broken: moving it aside would not help.
_NOT_BROKEN = re.compile(r"permission denied|read-?only|locked|busy|no space", re.I)
log = logging.getLogger(__name__)


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
    notices: list[str] = field(default_factory=list)  # e.g. a broken store moved aside

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
    """A passage from the knowledge base: its cosine similarity to the query (0..1), the
    sentence(s) of it that matched (``sentences``, at ``spans`` in ``text``), the fused rank
    score and the rankings that found it."""

    text: str
    score: float
    metadata: dict[str, Any]
    sentences: tuple[str, ...] = ()
    spans: tuple[tuple[int, int], ...] = ()
    fused: float = 0.0
    found_by: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "score": round(self.score, 4),
            "metadata": self.metadata,
            "sentences": list(self.sentences),
            "spans": [list(s) for s in self.spans],
            "fused": round(self.fused, 5),
            "found_by": list(self.found_by),
        }


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


def make_chroma_client(settings: IndexSettings) -> chromadb.api.ClientAPI:
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
            hint="check CHROMA_HOST/CHROMA_PORT and that the server is running"
            if settings.chroma_host
            else f"check the permissions of {where}",
        ) from exc


class _UnusableStore(Exception):
    """The embedded store cannot be used as it is; the message says why."""


def _reason(exc: BaseException) -> str:
    """A short reason for an unusable store, from what chroma (or the OS) raised."""
    if isinstance(exc, KnowledgeError) and exc.__cause__ is not None:
        exc = exc.__cause__
    text = (str(exc) or type(exc).__name__).strip().splitlines()[0]
    if persisted := re.search(r"persisted: (\S+)", text):
        return f"its collection was built with another embedding function ({persisted[1]})"
    return re.sub(r"^(Database error: )?error returned from database: ", "", text)[:200]


def _describe_function(stored: dict[str, Any]) -> str:
    config = stored.get("config") or {}
    if stored.get("name") == "coachbot" and config:
        return f"{config.get('provider')}/{config.get('model')}"
    return str(stored.get("name") or "none recorded")


def _forget_cached_system(path: Path) -> None:
    """Drop chroma's cached client system for ``path``: one whose start failed stays cached,
    broken, and a new client for the same path would get it back (chromadb 1.5)."""
    from chromadb.api.shared_system_client import SharedSystemClient

    getattr(SharedSystemClient, "_identifier_to_system", {}).pop(str(path), None)
    getattr(SharedSystemClient, "_identifier_to_refcount", {}).pop(str(path), None)


def _accessible(path: Path) -> bool:
    """False when the store (or its database file) cannot be read and written by this user."""
    read_write = os.R_OK | os.W_OK
    database = path / "chroma.sqlite3"
    return os.access(path.parent, os.W_OK | os.X_OK) and (
        not path.is_dir()
        or (
            os.access(path, read_write | os.X_OK)
            and (not database.is_file() or os.access(database, read_write))
        )
    )


def _document_hash(doc: KnowledgeDocument, chunk_tokens: int) -> str:
    """Changes when the file or the way it is chunked changes."""
    key = f"{doc.sha256}|{CHUNKER_VERSION}|{chunk_tokens}|{UNITS_VERSION}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _embed_text(text: str, title: str, section: str) -> str:
    """What gets embedded: the chunk, led by its section heading for context."""
    return text if section == title else f"{section}\n{text}"


class KnowledgeIndex:
    """The articles (and users' own files) as searchable chunks in Chroma.

    Passages live in one collection; what they are matched by (sentence windows, and the
    questions ``questions`` gives for each) in a second, ``<collection>-units``. ``retrieval``
    says which rankings :meth:`search` fuses (default: all)."""

    def __init__(
        self,
        settings: IndexSettings,
        client: chromadb.api.ClientAPI | None = None,
        embeddings: Embeddings | None = None,
        *,
        questions: QuestionSource | None = None,
        retrieval: RetrievalConfig | None = None,
    ) -> None:
        self.settings = settings
        self.questions = questions
        self.retrieval = retrieval or RetrievalConfig()
        self.root = settings.knowledge_dir.resolve()
        self._client = client
        self._embeddings = embeddings
        self.collection_name = collection_name(
            settings.embeddings_provider, embedding_model_name(settings)
        )
        self._collection: Any = None
        self._units: Any = None
        self._writes = 0  # changes made here, so the lexical indexes know to rebuild
        self._counted: tuple[float, int, int] | None = None
        self._lexical = LexicalCorpora(self._lexical_texts)
        self._own_client = client is None  # only a store opened here may be moved and rebuilt
        self.notices: list[str] = []  # what opening the store found and did
        self._rebuilt: IngestReport | None = None

    @property
    def embeddings(self) -> Embeddings:
        if self._embeddings is None:
            self._embeddings = make_embeddings(self.settings)
        return self._embeddings

    @property
    def collection(self) -> Any:
        """The collection, opened on first use; an unusable embedded store is rebuilt."""
        if self._collection is None:
            try:
                self._collection = self._open()
            except _UnusableStore as problem:
                self._rebuild(str(problem))
        return self._collection

    @property
    def units(self) -> Any:
        """The collection of windows and questions, beside the passages' collection."""
        if self._units is None:
            collection = self.collection
            try:
                self._units = self._client.get_or_create_collection(  # type: ignore[union-attr]
                    name=f"{self.collection_name}-units",
                    embedding_function=chroma_embedding_function(self.settings),
                    metadata={"hnsw:space": "cosine", "units": UNITS_VERSION},
                )
            except Exception as exc:  # chroma raises many types
                raise KnowledgeError(
                    f"cannot use the Chroma collection {collection.name}-units: {_reason(exc)}",
                    hint="check the Chroma server (CHROMA_HOST)"
                    if self.settings.chroma_host
                    else f"check the permissions of {self.settings.chroma_dir}",
                ) from exc
        return self._units

    def _open(self) -> Any:
        """Open (or create) the collection and check that it fits the configured embeddings.

        Raises ``_UnusableStore`` for an embedded store opened here, ``KnowledgeError`` for a
        Chroma server or a client passed in (those are never moved or rebuilt)."""
        rebuildable = self._own_client and not self.settings.chroma_host
        where = self.settings.chroma_dir
        try:
            if rebuildable and where.exists() and not where.is_dir():
                raise _UnusableStore("it is a file, not a directory")
            if self._client is None:
                self._client = make_chroma_client(self.settings)
            collection = self._client.get_or_create_collection(
                name=self.collection_name,
                embedding_function=chroma_embedding_function(self.settings),
                metadata={"hnsw:space": "cosine", "chunker": CHUNKER_VERSION},
            )
            count = collection.count()  # reads the store: a corrupt file or index fails here
            sample = collection.get(limit=1, include=["embeddings"]) if count else None
        except _UnusableStore:
            raise
        except Exception as exc:  # chroma raises many types
            if rebuildable:
                raise _UnusableStore(_reason(exc)) from exc
            if isinstance(exc, KnowledgeError):
                raise
            raise KnowledgeError(
                f"cannot use the Chroma collection {self.collection_name}: {_reason(exc)}",
                hint="check the Chroma server (CHROMA_HOST)",
            ) from exc
        mismatch = self._mismatch(collection, sample)
        if mismatch is None:
            return collection
        if rebuildable:
            raise _UnusableStore(mismatch)
        raise KnowledgeError(
            f"the Chroma collection {self.collection_name}: {mismatch}",
            hint="delete that collection on the server (it is rebuilt by `coachbot ingest`), "
            "or set COACHBOT_EMBEDDINGS / OPENAI_EMBEDDING_MODEL to the model it was built with",
        )

    def _mismatch(self, collection: Any, sample: dict[str, Any] | None) -> str | None:
        """Why the collection's vectors do not fit the configured embeddings, or None."""
        expected = chroma_embedding_function(self.settings)
        stored = (collection.configuration_json or {}).get("embedding_function") or {}
        if stored.get("name") != expected.name() or stored.get("config") != expected.get_config():
            ours = _describe_function({"name": expected.name(), "config": expected.get_config()})
            return (
                f"its collection was built with another embedding model "
                f"({_describe_function(stored)}, not {ours})"
            )
        vectors = sample.get("embeddings") if sample else None
        if vectors is not None and len(vectors) > 0:
            size = len(vectors[0])
            wanted = len(self.embeddings.embed_query("dimension check"))
            if size != wanted:
                return f"its vectors have {size} dimensions, the embedding model makes {wanted}"
        return None

    def _rebuild(self, reason: str) -> None:
        """Move the unusable embedded store aside (never delete it), then build a new one from
        knowledge/. A store that is only busy or forbidden is left alone: that is an error."""
        where = self.settings.chroma_dir
        if _NOT_BROKEN.search(reason) or not _accessible(where):
            raise KnowledgeError(
                f"cannot use the Chroma store at {where}: {reason}",
                hint=f"check the permissions of {where} and that no other process holds it",
            )
        if self._client is not None:
            with contextlib.suppress(Exception):  # a half-opened client may not close
                self._client.close()  # type: ignore[attr-defined]
            self._client = None
        self._units = None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside, n = where.with_name(f"{where.name}.broken-{stamp}"), 1
        while aside.exists():
            n += 1
            aside = where.with_name(f"{where.name}.broken-{stamp}-{n}")
        try:
            where.rename(aside)
        except OSError as exc:
            raise KnowledgeError(
                f"the Chroma store at {where} is unusable ({reason}) and cannot be moved aside: "
                f"{exc.strerror or exc}",
                hint=f"move {where} away yourself, then run `coachbot ingest`",
            ) from exc
        _forget_cached_system(where)
        try:
            self._collection = self._open()
        except _UnusableStore as again:
            raise KnowledgeError(
                f"cannot create a new Chroma store at {where}: {again}",
                hint=f"check the permissions of {where.parent}",
            ) from None
        report = self._ingest(self.root, None)
        notice = (
            f"The knowledge index at {where} could not be used ({reason}): moved it to "
            f"{aside.name} and rebuilt it from {self.root} ({len(report.added)} "
            f"file{'' if len(report.added) == 1 else 's'}, {report.chunks_total} chunks)."
        )
        log.warning("%s", notice)
        self.notices.append(notice)
        report.notices.append(notice)
        self._rebuilt = report

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
        """Bring the index in line with the files under ``path`` (default: all of knowledge/).

        If opening the store found it unusable, it was rebuilt from all of knowledge/: that
        rebuild is the report (its ``notices`` say what was found and done)."""
        scope = self._resolve_scope(path)
        opened = self._collection is not None
        _ = self.collection
        if not opened and self._rebuilt is not None:
            return self._rebuilt
        return self._ingest(scope, progress)

    def _ingest(self, scope: Path, progress: Callable[[str], None] | None) -> IngestReport:
        started = time.perf_counter()
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
            self.units.delete(where={"doc_id": doc_id})
            self._writes += 1
            report.removed.append(doc_id)

        report.chunks_total = self.collection.count()
        if self.questions is not None:
            report.notices += self.questions.notices
            self.questions.notices = []
        report.seconds = time.perf_counter() - started
        return report

    def _write_document(self, doc: KnowledgeDocument, doc_hash: str) -> int:
        chunks = chunk_text(doc.body, doc.meta.title, self.settings.chunk_tokens)
        self.collection.delete(where={"doc_id": doc.doc_id})
        self.units.delete(where={"doc_id": doc.doc_id})
        self._writes += 1
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
        units = [
            unit
            for chunk_id, c in zip(ids, chunks, strict=True)
            for unit in (
                *window_units(chunk_id, c.text),
                *question_units(chunk_id, c.text, doc.meta.title, c.section, self.questions),
            )
        ]
        self._add_units(units, {"doc_id": doc.doc_id, "doc_hash": doc_hash})
        return len(chunks)

    def _add_units(self, units: list[Unit], base_meta: dict[str, Any]) -> None:
        if not units:
            return
        vectors = self.embeddings.embed_documents([u.text for u in units])
        self.units.add(
            ids=[u.id for u in units],
            documents=[u.text for u in units],
            metadatas=[{**base_meta, **u.metadata} for u in units],
            embeddings=vectors,
        )

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
        self, query: str, k: int = 4, config: RetrievalConfig | None = None
    ) -> list[RetrievedChunk]:
        """The ``k`` passages that best match ``query``, best first (``config``: the index's)."""
        if not query.strip():
            raise KnowledgeError("the query is empty", hint="ask a question in words")
        if k < 1:
            raise KnowledgeError("k must be at least 1")
        config = config or self.retrieval
        vector = self.embeddings.embed_query(query)
        rankings = {**self._dense_rankings(vector, config), **self._lexical_rankings(query, config)}
        matches = fuse(rankings, config, k)
        if not matches:
            return []
        got = self.collection.get(
            ids=[m.chunk_id for m in matches], include=["documents", "metadatas", "embeddings"]
        )
        rows = {
            i: (text or "", meta or {}, emb)
            for i, text, meta, emb in zip(
                got["ids"], got["documents"], got["metadatas"], got["embeddings"], strict=True
            )
        }
        hits = []
        for m in matches:
            if m.chunk_id not in rows:  # removed since the lexical index was built
                continue
            text, meta, emb = rows[m.chunk_id]
            found = matched_spans(query, text, m.windows)
            hits.append(
                RetrievedChunk(
                    text=text,
                    score=float(cosine(vector, emb)[0]),
                    metadata={k2: v for k2, v in meta.items() if k2 != "doc_hash"},
                    sentences=tuple(text[a:b] for a, b in found),
                    spans=found,
                    fused=m.fused,
                    found_by=m.found_by,
                )
            )
        return hits

    def _dense_rankings(self, vector: list[float], config: RetrievalConfig) -> dict[str, list[str]]:
        """``dense:<kind>`` -> ids, nearest first, from Chroma."""
        wanted = {n.split(":")[1] for n in config.lists if n.startswith("dense:")}
        rankings: dict[str, list[str]] = {}
        if "chunk" in wanted:
            found = self.collection.query(
                query_embeddings=[vector], n_results=config.depth, include=[]
            )
            rankings["dense:chunk"] = list(found["ids"][0])
        unit_kinds = wanted - {"chunk"}
        if unit_kinds:
            found = self.units.query(
                query_embeddings=[vector],
                n_results=config.depth * (len(KINDS) - 1),
                include=[],
            )
            for unit_id in found["ids"][0]:
                kind = unit_kind(unit_id)
                if kind in unit_kinds:
                    rankings.setdefault(f"dense:{kind}", []).append(unit_id)
        return rankings

    def _lexical_rankings(self, query: str, config: RetrievalConfig) -> dict[str, list[str]]:
        """``lexical:<kind>`` -> ids, best BM25 score first."""
        wanted = [n.split(":")[1] for n in config.lists if n.startswith("lexical:")]
        if not wanted:
            return {}
        corpora = self._lexical.get(self._version())
        rankings = {}
        for kind in wanted:
            corpus = corpora.get(kind)
            if corpus is not None:
                found = corpus.index.search(query, config.depth)
                rankings[f"lexical:{kind}"] = [corpus.ids[i] for i, _ in found]
        return rankings

    def _lexical_texts(self) -> dict[str, tuple[list[str], list[str], list[str]]]:
        """kind -> (ids, passage ids, texts) of everything indexed, for BM25."""
        out: dict[str, tuple[list[str], list[str], list[str]]] = {
            kind: ([], [], []) for kind in KINDS
        }
        for ids, texts, metas in _pages(self.collection):
            for i, text, meta in zip(ids, texts, metas, strict=True):
                section, title = meta.get("section"), meta.get("title")
                lead = f"{section}\n" if section and section != title else ""
                out["chunk"][0].append(i)
                out["chunk"][1].append(i)
                out["chunk"][2].append(lead + (text or ""))
        for ids, texts, metas in _pages(self.units):
            for i, text, meta in zip(ids, texts, metas, strict=True):
                kind = str(meta.get("kind"))
                if kind in out:
                    out[kind][0].append(i)
                    out[kind][1].append(str(meta.get("chunk_id")))
                    out[kind][2].append(text or "")
        return out

    def _version(self) -> tuple[int, int, int]:
        """What the lexical indexes were built from: this process's writes, and the
        collections' sizes (re-read at most every few seconds: another process writing to a
        Chroma server is seen then)."""
        now = time.monotonic()
        if self._counted is None or now - self._counted[0] > COUNT_EVERY_S:
            self._counted = (now, self.collection.count(), self.units.count())
        return self._counted[1], self._counted[2], self._writes


def _pages(collection: Any, page: int = 5000) -> Any:
    """(ids, documents, metadatas) of a collection, a page at a time."""
    total = collection.count()
    for offset in range(0, total, page):
        got = collection.get(include=["documents", "metadatas"], limit=page, offset=offset)
        yield got["ids"], got["documents"], [m or {} for m in got["metadatas"]]
