"""Retrieval latency and ingestion speed of the knowledge index (issue 8).

Everything goes through the real code path, ``bot.knowledge.KnowledgeIndex``, on an embedded
Chroma store in a temporary data directory (the project's ``data/`` is never touched):

1. Cold ingestion: a fresh store, ``index.ingest()`` of the shipped ``knowledge/``. Reports
   chunks/s and tokens/s (chunk metadata ``tokens``), the embedding model load, and the total
   seconds including that load.
2. Re-ingesting the unchanged knowledge base: ``ingest()`` again in the same process, and
   ``coachbot ingest --json`` in a subprocess pointed at the same store (wall time, which
   includes Python start-up and imports).
3. Retrieval latency, p50 / p95 in ms, of ``index.search(query, k=4)``, the hybrid search
   (query embedding, dense and BM25 rankings of passages, windows and questions, RRF)
   for the questions in ``evals/coach_questions.yaml``: one warm-up search, then
   every question ``--repeat`` times. The same split into its parts: the query embedding alone
   and ``collection.query`` alone with a precomputed vector (with the same ``include`` as
   search, and with distances only), so the results can say what bounds it.
4. The same at each ``--sizes`` chunk count: the store is padded with synthetic chunks added
   directly to ``index.collection`` (and their windows and questions to ``index.units``) with
   precomputed vectors (embedding 100,000 texts with the
   model would take about an hour on 2 cores). Synthetic vectors are float32, 384-d,
   L2-normalised random mixtures of the real chunk vectors and of the vectors of a few hundred
   varied templated sentences, plus noise, so they cluster the way text embeddings do; each
   carries a text made of its sentences and plausible metadata (doc_id, title, origin, section,
   position, tokens). Insert time, the first search after the insert, ``index.status()`` (the
   scan an unchanged ``ingest()`` does first), disk size and peak RSS are recorded too.

Targets: retrieval p95 <= 30 ms at 10,000 chunks; re-ingesting an unchanged knowledge base
<= 1 s (the in-process number; the CLI's is reported beside it).

Usage (writes bench/results/retrieval.json):
    .venv/bin/python bench/retrieval.py                       # --sizes 10000,100000 --repeat 3
    .venv/bin/python bench/retrieval.py --sizes 1000,5000 --repeat 2   # a quick check
The 100,000-chunk case takes a few minutes and about 1 GB of disk and memory.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from common import PROJECT_ROOT, BenchResult, Target, peak_rss_mib, summary, timed

from bot.config import Settings
from bot.knowledge import KnowledgeIndex
from bot.knowledge.index import make_chroma_client

QUESTIONS = PROJECT_ROOT / "evals" / "coach_questions.yaml"
KNOWLEDGE = PROJECT_ROOT / "knowledge"
TARGET_SIZE = 10_000
TARGET_RETRIEVAL_P95_MS = 30.0
TARGET_REINGEST_S = 1.0
K = 4
SEARCH_INCLUDE = ["documents", "metadatas", "distances"]  # what KnowledgeIndex.search asks for
CHUNKS_PER_DOC = 24
SENTENCES_PER_CHUNK = 4
QUESTIONS_PER_CHUNK = 5  # as many as ingest asks the model for
BANK_SIZE = 400

# Word lists for the synthetic knowledge base: a company's own help-desk articles.
_ACTORS = (
    "Agents",
    "The team lead",
    "The duty manager",
    "Our returns desk",
    "The engineer on site",
    "The billing team",
    "The night shift",
    "A new starter",
    "The complaints team",
    "Front-desk staff",
    "The courier partner",
    "The retention team",
    "Second-line support",
    "The store manager",
)
_ACTIONS = (
    "should confirm",
    "must never promise",
    "can refund",
    "needs to log",
    "may escalate",
    "has to check",
    "is allowed to waive the fee for",
    "should explain",
    "will call back about",
    "must record",
    "can rebook",
    "should apologise for",
    "may offer a voucher for",
    "has to photograph",
)
_OBJECTS = (
    "a late delivery",
    "a duplicate charge",
    "the broken boiler",
    "a cancelled flight",
    "the missing parcel",
    "a locked online account",
    "the roaming bill",
    "a faulty laptop",
    "the hotel booking",
    "an overdue kitchen repair",
    "the data breach letter",
    "a mis-sold broadband contract",
    "the gym membership",
    "a water leak in the flat",
    "the car insurance claim",
    "a damaged sofa",
    "the prescription refill",
    "a bounced direct debit",
)
_CONDITIONS = (
    "within two working days",
    "before the end of the call",
    "if the order is over £100",
    "when the customer asks twice",
    "after checking the account notes",
    "only with a manager's approval",
    "once the photos arrive",
    "unless the warranty has expired",
    "during a system outage",
    "on the same day",
    "for repeat complaints",
    "in writing",
    "before closing the ticket",
    "if the customer is vulnerable",
)
_SECTIONS = (
    "Overview",
    "Eligibility",
    "Step-by-step",
    "Refunds and credits",
    "Escalation",
    "What to say",
    "What not to say",
    "Exceptions",
    "Record keeping",
    "Follow-up",
)
_TOPICS = (
    "Deliveries",
    "Billing",
    "Home repairs",
    "Travel changes",
    "Account security",
    "Mobile plans",
    "Electronics returns",
    "Bookings",
    "Insurance claims",
    "Furniture orders",
    "Pharmacy",
    "Broadband",
)


def make_settings(data_dir: Path) -> Settings:
    """Settings isolated in ``data_dir`` (no .env), like tests/conftest.py's make_settings."""
    return Settings(
        _env_file=None,
        data_dir=data_dir,
        knowledge_dir=KNOWLEDGE,
        embeddings="local",
        chroma_host=None,
        chroma_path=None,
    )


def sentence_bank(rng: np.random.Generator, size: int) -> list[str]:
    """``size`` distinct help-desk sentences from the word lists."""
    dims = (len(_ACTORS), len(_ACTIONS), len(_OBJECTS), len(_CONDITIONS))
    picks = rng.choice(int(np.prod(dims)), size=size, replace=False)
    sentences = []
    for flat in picks:
        a, b, c, d = np.unravel_index(int(flat), dims)
        sentences.append(f"{_ACTORS[a]} {_ACTIONS[b]} {_OBJECTS[c]} {_CONDITIONS[d]}.")
    return sentences


class SyntheticChunks:
    """Realistic-looking chunks with precomputed vectors, made in batches."""

    def __init__(
        self,
        real_vectors: np.ndarray,
        sentences: list[str],
        sentence_vectors: np.ndarray,
        seed: int,
    ) -> None:
        self.rng = np.random.default_rng(seed)
        self.real = real_vectors.astype(np.float32)
        self.sentences = sentences
        self.vectors = sentence_vectors.astype(np.float32)
        self.made = 0

    def units(
        self, chunk_id: str, picks: np.ndarray, meta: dict[str, Any]
    ) -> tuple[list[str], list[np.ndarray], list[str], list[dict[str, Any]]]:
        """The windows (one per sentence, with its neighbours) and questions of one chunk."""
        sentences = [self.sentences[i] for i in picks]
        vectors = self.vectors[picks]
        ids, vecs, texts, metas = [], [], [], []
        start = 0
        base = {"doc_id": meta["doc_id"], "doc_hash": "synthetic", "chunk_id": chunk_id}
        for j, sentence in enumerate(sentences):
            first, last = max(0, j - 1), min(len(sentences), j + 2)
            ids.append(f"{chunk_id}/w{j}")
            vecs.append(vectors[first:last].mean(axis=0))
            texts.append(" ".join(sentences[first:last]))
            metas.append({**base, "kind": "window", "sentence": j, "start": start,
                          "end": start + len(sentence)})  # fmt: skip
            start += len(sentence) + 1
        for j in range(QUESTIONS_PER_CHUNK):
            words = sentences[j % len(sentences)].rstrip(".").split()
            ids.append(f"{chunk_id}/q{j}")
            vecs.append(vectors[j % len(sentences)])
            texts.append(f"What happens when {' '.join(words[-6:])}?")
            metas.append({**base, "kind": "question"})
        return ids, vecs, texts, metas

    def noisy(self, vectors: list[np.ndarray]) -> np.ndarray:
        """Row-normalised ``vectors`` plus noise, like the chunks'."""
        m = np.asarray(vectors, dtype=np.float32)
        m /= np.linalg.norm(m, axis=1, keepdims=True)
        m += 0.35 * self.rng.standard_normal(m.shape).astype(np.float32) / np.sqrt(m.shape[1])
        return m / np.linalg.norm(m, axis=1, keepdims=True)

    def batch(self, n: int) -> tuple[list[str], np.ndarray, list[str], list[dict[str, Any]]]:
        rng = self.rng
        dims = self.vectors.shape[1]
        picks = rng.integers(0, len(self.sentences), size=(n, SENTENCES_PER_CHUNK))
        weights = rng.dirichlet(np.ones(SENTENCES_PER_CHUNK), size=n).astype(np.float32)
        mixed = np.einsum("nk,nkd->nd", weights, self.vectors[picks])
        # A quarter of the chunks lean towards one of the articles' chunks (overlapping topics).
        lean = rng.random(n) < 0.25
        if self.real.size and lean.any():
            which = rng.integers(0, len(self.real), size=int(lean.sum()))
            mixed[lean] = 0.6 * mixed[lean] + 0.4 * self.real[which]
        mixed /= np.linalg.norm(mixed, axis=1, keepdims=True)
        noise = rng.standard_normal((n, dims)).astype(np.float32) / np.sqrt(dims)
        vectors = mixed + 0.35 * noise
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)

        ids: list[str] = []
        texts: list[str] = []
        metadatas: list[dict[str, Any]] = []
        units: list[list[Any]] = [[], [], [], []]
        for row in range(n):
            number = self.made + row
            doc, position = divmod(number, CHUNKS_PER_DOC)
            doc_id = f"synthetic/kb-{doc:05d}.md"
            text = " ".join(self.sentences[i] for i in picks[row])
            ids.append(f"{doc_id}#{position}")
            texts.append(text)
            metadatas.append(
                {
                    "doc_id": doc_id,
                    "doc_hash": "synthetic",
                    "title": f"{_TOPICS[doc % len(_TOPICS)]}: procedure {doc}",
                    "publisher": "Synthetic help desk",
                    "origin": f"kb-{doc:05d}.md",
                    "section": _SECTIONS[position % len(_SECTIONS)],
                    "position": position,
                    "tokens": round(len(text.split()) * 1.3),
                }
            )
            made = self.units(ids[-1], picks[row], metadatas[-1])
            for part, values in zip(units, made, strict=True):
                part.extend(values)
        self.made += n
        self.last_units = (units[0], self.noisy(units[1]), units[2], units[3])
        return ids, vectors.astype(np.float32), texts, metadatas


def dir_mib(path: Path) -> float:
    total = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return round(total / 1024 / 1024, 1)


def measure_retrieval(
    index: KnowledgeIndex, queries: list[str], vectors: list[list[float]], repeat: int
) -> dict[str, Any]:
    """search() end to end, then its two parts alone, for every query ``repeat`` times."""
    _, first = timed(index.search, queries[0], k=K)  # warm-up (the first search after inserts)
    search_ms: list[float] = []
    embed_ms: list[float] = []
    chroma_ms: list[float] = []
    chroma_distances_ms: list[float] = []
    real_hits = 0
    hits_total = 0
    collection = index.collection
    for _ in range(repeat):
        for query, vector in zip(queries, vectors, strict=True):
            hits, seconds = timed(index.search, query, k=K)
            search_ms.append(seconds * 1000)
            real_hits += sum(
                not str(h.metadata.get("doc_id", "")).startswith("synthetic/") for h in hits
            )
            hits_total += len(hits)
            _, seconds = timed(index.embeddings.embed_query, query)
            embed_ms.append(seconds * 1000)
            _, seconds = timed(
                collection.query, query_embeddings=[vector], n_results=K, include=SEARCH_INCLUDE
            )
            chroma_ms.append(seconds * 1000)
            _, seconds = timed(
                collection.query, query_embeddings=[vector], n_results=K, include=["distances"]
            )
            chroma_distances_ms.append(seconds * 1000)
    return {
        "chunks": collection.count(),
        "units": index.units.count(),
        "first_search_ms": round(first * 1000, 2),
        "search_ms": summary(search_ms, 2),
        "query_embedding_ms": summary(embed_ms, 2),
        "chroma_query_ms": summary(chroma_ms, 2),
        "chroma_query_distances_only_ms": summary(chroma_distances_ms, 2),
        "real_article_share_of_hits": round(real_hits / hits_total, 3) if hits_total else None,
    }


def cli_reingest(settings: Settings, repeat: int) -> dict[str, Any]:
    """``coachbot ingest --json`` on the same store in a subprocess: wall time and its report."""
    exe = Path(sys.executable).parent / "coachbot"
    command = [str(exe)] if exe.exists() else [shutil.which("coachbot") or "coachbot"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CHROMA_"))}
    env.update(
        {
            "COACHBOT_DATA_DIR": str(settings.data_dir),
            "COACHBOT_KNOWLEDGE_DIR": str(settings.knowledge_dir),
            "COACHBOT_EMBEDDINGS": "local",
            "CHROMA_PATH": str(settings.chroma_dir),
            "CHROMA_HOST": "",
        }
    )
    started = time.perf_counter()
    subprocess.run([*command, "--help"], env=env, cwd=PROJECT_ROOT, capture_output=True, check=True)
    startup = time.perf_counter() - started
    walls: list[float] = []
    reported: list[float] = []
    written = 0
    for _ in range(repeat):
        started = time.perf_counter()
        done = subprocess.run(
            [*command, "ingest", "--json"],
            env=env,
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        walls.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise RuntimeError(f"coachbot ingest failed ({done.returncode}): {done.stderr[-2000:]}")
        report = json.loads(done.stdout)
        reported.append(report["seconds"])
        written += report["chunks_written"]
    return {
        "wall_s": summary(walls, 3),
        "startup_help_s": round(startup, 3),
        "ingest_reported_s": summary(reported, 4),
        "chunks_written": written,
        "runs": repeat,
    }


def parse_sizes(text: str) -> list[int]:
    sizes = sorted({int(part.replace("_", "")) for part in text.split(",") if part.strip()})
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError("sizes are positive chunk counts, e.g. 10000,100000")
    return sizes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=parse_sizes("10000,100000"),
        help="total chunk counts to pad the store to (default 10000,100000)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of every query (default 3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic chunks")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    result = BenchResult(
        name="retrieval",
        title="Retrieval latency and ingestion throughput",
        command=" ".join([".venv/bin/python bench/retrieval.py", *sys.argv[1:]]),
    )
    questions = [q["question"] for q in yaml.safe_load(QUESTIONS.read_text(encoding="utf-8"))]
    metrics: dict[str, Any] = {"queries": len(questions), "repeat": args.repeat, "k": K}

    with tempfile.TemporaryDirectory(prefix="coachbot-bench-") as tmp:
        settings = make_settings(Path(tmp) / "data")

        # 1. Cold ingestion (nothing loaded yet in this process).
        cold_started = time.perf_counter()
        client, client_s = timed(make_chroma_client, settings)
        index = KnowledgeIndex(settings, client=client)
        embeddings, model_s = timed(lambda: index.embeddings)
        report, ingest_s = timed(index.ingest)
        cold_total = time.perf_counter() - cold_started
        stored = index.collection.get(include=["metadatas", "embeddings"])
        tokens = sum(int(m.get("tokens", 0)) for m in stored["metadatas"])
        chunks = report.chunks_written
        metrics["cold_ingest"] = {
            "documents": len(report.added),
            "skipped": [s.path for s in report.skipped],
            "chunks": chunks,
            "tokens": tokens,
            "client_open_s": round(client_s, 3),
            "model_load_s": round(model_s, 3),
            "ingest_s": round(ingest_s, 3),
            "total_s": round(cold_total, 3),
            "chunks_per_s": round(chunks / ingest_s, 1),
            "tokens_per_s": round(tokens / ingest_s, 1),
            "chunks_per_s_incl_load": round(chunks / cold_total, 1),
            "tokens_per_s_incl_load": round(tokens / cold_total, 1),
        }
        print(
            f"cold ingest: {len(report.added)} documents, {chunks} chunks, {tokens} tokens in "
            f"{ingest_s:.2f} s ({chunks / ingest_s:.1f} chunks/s, "
            f"{tokens / ingest_s:.0f} tokens/s); {cold_total:.2f} s including model load "
            f"({model_s:.2f} s)"
        )

        # 2. Re-ingesting the unchanged knowledge base.
        reingest = []
        for _ in range(args.repeat):
            again, seconds = timed(index.ingest)
            if again.chunks_written or again.removed:
                raise RuntimeError(f"re-ingest was not a no-op: {again.to_dict()['counts']}")
            reingest.append(seconds)
        cli = cli_reingest(settings, args.repeat)
        metrics["reingest_unchanged"] = {
            "in_process_first_s": round(reingest[0], 4),
            "in_process_s": summary(reingest, 4),
            "cli": cli,
        }
        print(
            f"re-ingest unchanged: in-process {reingest[0] * 1000:.1f} ms (first), "
            f"CLI wall {cli['wall_s']['p50']:.2f} s "
            f"(its own ingest {cli['ingest_reported_s']['p50']} s; `coachbot --help` alone "
            f"{cli['startup_help_s']:.2f} s)"
        )

        # 3. Retrieval on the shipped articles only.
        query_vectors = [embeddings.embed_query(q) for q in questions]
        shipped = measure_retrieval(index, questions, query_vectors, args.repeat)
        shipped["peak_rss_mib"] = peak_rss_mib()
        metrics["retrieval_shipped"] = shipped
        print_retrieval("shipped", shipped)

        # 4. Padded with synthetic chunks.
        real_vectors = np.asarray(stored["embeddings"], dtype=np.float32)
        bank = sentence_bank(np.random.default_rng(args.seed), BANK_SIZE)
        bank_vectors, bank_s = timed(embeddings.embed_documents, bank)
        synthetic = SyntheticChunks(
            real_vectors, bank, np.asarray(bank_vectors, dtype=np.float32), args.seed
        )
        batch = min(5000, client.get_max_batch_size())
        metrics["synthetic"] = {
            "sentence_bank": len(bank),
            "sentence_bank_embed_s": round(bank_s, 2),
            "sentences_per_chunk": SENTENCES_PER_CHUNK,
            "insert_batch": batch,
        }
        metrics["retrieval_at_size"] = {}
        collection = index.collection
        for size in args.sizes:
            missing = size - collection.count()
            if missing < 0:
                result.notes.append(f"size {size} skipped: the store already holds more chunks")
                continue
            insert_s = 0.0
            make_s = 0.0
            while missing > 0:
                n = min(batch, missing)
                (ids, vectors, texts, metadatas), seconds = timed(synthetic.batch, n)
                make_s += seconds
                _, seconds = timed(
                    collection.add,
                    ids=ids,
                    embeddings=vectors,
                    documents=texts,
                    metadatas=metadatas,
                )
                insert_s += seconds
                unit_ids, unit_vectors, unit_texts, unit_metas = synthetic.last_units
                for at in range(0, len(unit_ids), batch):
                    _, seconds = timed(
                        index.units.add,
                        ids=unit_ids[at : at + batch],
                        embeddings=unit_vectors[at : at + batch],
                        documents=unit_texts[at : at + batch],
                        metadatas=unit_metas[at : at + batch],
                    )
                    insert_s += seconds
                missing -= n
            added = synthetic.made
            row = measure_retrieval(index, questions, query_vectors, args.repeat)
            _, status_s = timed(index.status)
            row.update(
                {
                    "inserted": added,
                    "insert_s": round(insert_s, 2),
                    "insert_chunks_per_s": round(added / insert_s, 1) if insert_s else None,
                    "vector_generation_s": round(make_s, 2),
                    "status_scan_s": round(status_s, 3),
                    "disk_mib": dir_mib(settings.chroma_dir),
                    "peak_rss_mib": peak_rss_mib(),
                }
            )
            metrics["retrieval_at_size"][str(size)] = row
            print_retrieval("padded", row)
            print(
                f"  {added:,} synthetic chunks so far, this step inserted in {insert_s:.1f} s; "
                f"status() scan {status_s:.2f} s; {row['disk_mib']} MiB on disk"
            )

    metrics["peak_rss_mib"] = peak_rss_mib()
    result.metrics = metrics
    at_target = metrics["retrieval_at_size"].get(str(TARGET_SIZE))
    result.targets = [
        Target(
            f"retrieval p95 at {TARGET_SIZE:,} chunks",
            at_target["search_ms"]["p95"] if at_target else None,
            TARGET_RETRIEVAL_P95_MS,
            "ms",
        ),
        Target(
            "re-ingest unchanged knowledge base (in-process)",
            metrics["reingest_unchanged"]["in_process_first_s"],
            TARGET_REINGEST_S,
            "s",
        ),
    ]
    result.notes += [
        "search_ms is KnowledgeIndex.search(q, k=4) end to end: the hybrid search (query "
        "embedding, Chroma queries of passages and of windows + questions, BM25 over passages, "
        "windows and questions, RRF, fetching the passages and their matched sentences); "
        "chroma_query_ms is one collection.query of the passages with a precomputed vector.",
        "Each synthetic chunk also gets its units, as ingest writes them: a window per sentence "
        "and 5 questions; first_search_ms includes rebuilding the BM25 indexes after the insert.",
        "Synthetic chunks are added directly to the collection with precomputed vectors; a real "
        "ingest() would remove them as orphans, so status_scan_s (index.status(), the same scan "
        "an unchanged ingest() starts with) stands in for re-ingest cost at that size.",
        "CLI re-ingest wall time includes Python start-up and imports; startup_help_s is the "
        "wall time of `coachbot --help` (start-up without the index), ingest_reported_s the "
        "seconds the CLI's own IngestReport gives (includes opening the Chroma client).",
    ]
    if TARGET_SIZE not in args.sizes:
        result.notes.append(f"{TARGET_SIZE:,} chunks was not measured (--sizes): target n/a")
    result.write()
    return 0


def print_retrieval(label: str, row: dict[str, Any]) -> None:
    s, e, c = row["search_ms"], row["query_embedding_ms"], row["chroma_query_ms"]
    print(
        f"retrieval ({label}, {row['chunks']:,} chunks): search p50 {s['p50']} / p95 {s['p95']} ms "
        f"(embedding p50 {e['p50']}, chroma query p50 {c['p50']} / p95 {c['p95']} ms); "
        f"first search {row['first_search_ms']} ms; real-article share of hits "
        f"{row['real_article_share_of_hits']}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
