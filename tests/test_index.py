"""Incremental ingestion into Chroma and retrieval on the real articles."""

from __future__ import annotations

import pytest

from bot.errors import KnowledgeError
from bot.knowledge import KnowledgeIndex, KnowledgeRetriever
from bot.knowledge.index import collection_name

from .conftest import make_settings


@pytest.fixture
def index(settings):
    return KnowledgeIndex(settings)


def _counts(report):
    return report.to_dict()["counts"]


def test_collection_name_carries_the_embedding_model(tmp_path, monkeypatch):
    local = KnowledgeIndex(make_settings(tmp_path))
    assert local.collection_name == "coachbot-local-all-minilm-l6-v2-int8"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    remote = KnowledgeIndex(make_settings(tmp_path))
    assert remote.collection_name == "coachbot-openai-text-embedding-3-small"
    assert 3 <= len(collection_name("x" * 600, "y")) <= 512


def test_incremental_ingest_add_unchanged_edit_delete_bad(index, settings):
    root = settings.knowledge_dir
    first = index.ingest()
    assert _counts(first)["added"] == 5 and first.chunks_total == first.chunks_written > 10

    again = index.ingest()
    assert _counts(again) == {"added": 0, "updated": 0, "removed": 0, "unchanged": 5, "skipped": 0}
    assert again.chunks_written == 0 and again.chunks_total == first.chunks_total

    policy = root / "policies" / "refunds.md"
    policy.parent.mkdir()
    policy.write_text("# Refund policy\n\nRefunds are issued within 14 days of the return.\n")
    added = index.ingest()
    assert added.added == ["policies/refunds.md"] and added.chunks_written == 1

    policy.write_text(
        "# Refund policy\n\nRefunds are issued within 30 days.\n\nAsk for a receipt.\n"
    )
    edited = index.ingest()
    assert edited.updated == ["policies/refunds.md"]
    assert edited.chunks_total == first.chunks_total + 1, "old chunks of the edited file are gone"
    hits = index.search("how many days for a refund", k=1)
    assert "30 days" in hits[0].text

    (root / "bad.md").write_bytes(b"\xff\xfe not utf8")
    bad = index.ingest()
    assert [s.path for s in bad.skipped] == ["bad.md"]
    assert "not UTF-8" in bad.skipped[0].reason
    assert _counts(bad)["unchanged"] == 6

    policy.unlink()
    removed = index.ingest()
    assert removed.removed == ["policies/refunds.md"]
    assert removed.chunks_total == first.chunks_total


def test_ingest_of_a_subfolder_leaves_the_rest(index, settings):
    index.ingest()
    extra = settings.knowledge_dir / "team" / "tips.md"
    extra.parent.mkdir()
    extra.write_text("# Tips\n\nSmile when you answer the phone.\n")
    report = index.ingest(extra.parent)
    assert report.added == ["team/tips.md"] and not report.removed
    assert report.unchanged == []


def test_paths_outside_knowledge_are_refused(index, tmp_path):
    with pytest.raises(KnowledgeError, match="outside the knowledge directory"):
        index.ingest(tmp_path)
    with pytest.raises(KnowledgeError, match="does not exist"):
        index.ingest(index.root / "missing")


def test_status_reports_freshness(index, settings):
    assert index.status().chunks == 0
    index.ingest()
    assert index.status().fresh
    (settings.knowledge_dir / "new.md").write_text("# New\n\nSomething new.\n")
    status = index.status()
    assert status.stale == ["new.md"] and not status.fresh


def test_chunks_carry_metadata(index):
    index.ingest()
    hit = index.search("follow up after resolving the issue", k=1)[0]
    meta = hit.metadata
    for key in ("title", "origin", "section", "position", "doc_id"):
        assert key in meta
    assert "doc_hash" not in meta
    assert 0 < hit.score <= 1


def test_calm_down_question_finds_the_warnings(index):
    index.ingest()
    hits = index.search("Should I tell an angry customer to calm down?", k=4)
    texts = " ".join(h.text for h in hits)
    assert "calm down" in texts.lower()
    assert any("patronizing" in h.text or "irate" in h.text for h in hits)


def test_empty_query_is_refused(index):
    with pytest.raises(KnowledgeError, match="empty"):
        index.search("   ")


def test_langchain_retriever(index):
    index.ingest()
    docs = KnowledgeRetriever(index=index, k=2).invoke("ask what they consider a fair solution")
    assert len(docs) == 2
    assert all("origin" in d.metadata and "score" in d.metadata for d in docs)


def test_unusable_chroma_directory_gives_a_clear_error(tmp_path):
    blocker = tmp_path / "data" / "chroma"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a directory")
    index = KnowledgeIndex(make_settings(tmp_path))
    with pytest.raises(KnowledgeError, match="cannot open the Chroma store"):
        _ = index.collection
