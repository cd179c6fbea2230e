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
    assert all(s in d.page_content for d in docs for s in d.metadata["sentences"])


# --------------------------------------------------------------------------- unusable stores


@pytest.fixture
def small(tmp_path):
    """Settings whose knowledge/ is one short file: rebuilding it takes a moment."""
    tips = tmp_path / "knowledge" / "tips.md"
    tips.parent.mkdir()
    tips.write_text(
        "# Tips\n\nNever tell an angry customer to calm down: it sounds patronizing.\n\n"
        "Listen first, then say what you heard.\n"
    )
    return make_settings(tmp_path)


def _built(settings):
    """Ingest, then close the store as if the process ended (its files no longer held open)."""
    index = KnowledgeIndex(settings)
    report = index.ingest()
    index._client.close()
    return report


def _aside(settings):
    """The moved-aside stores next to the configured one."""
    return sorted(settings.chroma_dir.parent.glob(f"{settings.chroma_dir.name}.broken-*"))


def _store_with(settings, vectors, function=None):
    """An embedded store with coachbot's collection name but other vectors or model config."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    from bot.llm.embeddings import chroma_embedding_function

    client = chromadb.PersistentClient(
        path=str(settings.chroma_dir), settings=ChromaSettings(anonymized_telemetry=False)
    )
    collection = client.get_or_create_collection(
        KnowledgeIndex(settings).collection_name,
        embedding_function=function or chroma_embedding_function(settings),
        metadata={"hnsw:space": "cosine"},
    )
    collection.add(
        ids=[str(i) for i in range(len(vectors))],
        documents=["old chunk"] * len(vectors),
        embeddings=vectors,
    )
    client.close()


def _assert_rebuilt(index, settings, reason):
    hits = index.search("Should I tell an angry customer to calm down?", k=1)
    assert hits and "old chunk" not in hits[0].text
    assert len(index.notices) == 1 and reason in index.notices[0]
    (aside,) = _aside(settings)
    assert f"moved it to {aside.name} and rebuilt it from" in index.notices[0]
    assert "(1 file, " in index.notices[0]
    return aside


def test_a_file_in_place_of_the_store_is_moved_aside_and_rebuilt(small, caplog):
    blocker = small.chroma_dir
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a directory")
    index = KnowledgeIndex(small)
    report = index.ingest()
    assert report.added == ["tips.md"] and report.chunks_total >= 1
    aside = _assert_rebuilt(index, small, "(it is a file, not a directory)")
    assert aside.read_text() == "not a directory", "the user's data is kept, not deleted"
    assert report.notices == index.notices
    assert index.notices[0] in caplog.text, "a log warning too (the app's log shows it)"


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("garbage", "file is not a database"),
        ("truncated", "database disk image is malformed"),
        ("directory", "unable to open database file"),
    ],
)
def test_a_corrupt_database_is_moved_aside_and_rebuilt(small, damage, reason):
    expected = _built(small).chunks_total
    database = small.chroma_dir / "chroma.sqlite3"
    data = database.read_bytes()
    if damage == "garbage":
        database.write_bytes(b"\x00garbage" * 4096)
    elif damage == "truncated":
        database.write_bytes(data[: len(data) // 3])
    else:
        database.unlink()
        database.mkdir()
    index = KnowledgeIndex(small)
    aside = _assert_rebuilt(index, small, reason)
    assert index.status().chunks == expected and index.status().fresh
    assert (aside / "chroma.sqlite3").exists(), "the broken store is kept for inspection"
    again = KnowledgeIndex(small).ingest()
    assert not again.notices and again.unchanged == ["tips.md"]


def test_vectors_of_another_size_are_moved_aside_and_rebuilt(small):
    _store_with(small, [[0.1] * 768, [0.2] * 768])
    index = KnowledgeIndex(small)
    _assert_rebuilt(index, small, "its vectors have 768 dimensions, the embedding model makes 384")


def test_a_collection_of_another_embedding_model_is_moved_aside_and_rebuilt(small):
    from bot.llm.embeddings import CoachbotEmbeddingFunction

    other = CoachbotEmbeddingFunction(provider="openai", model="text-embedding-3-large")
    _store_with(small, [[0.1] * 384], function=other)
    index = KnowledgeIndex(small)
    _assert_rebuilt(
        index,
        small,
        "its collection was built with another embedding model "
        "(openai/text-embedding-3-large, not local/all-minilm-l6-v2-int8)",
    )


def test_a_collection_of_another_embedding_function_is_moved_aside_and_rebuilt(small):
    from chromadb.api.types import EmbeddingFunction
    from chromadb.utils.embedding_functions import register_embedding_function

    @register_embedding_function
    class Elsewhere(EmbeddingFunction):
        def __init__(self) -> None:
            pass

        def __call__(self, input):
            return [[0.0] * 384 for _ in input]

        @staticmethod
        def name() -> str:
            return "coachbot-test-elsewhere"

        def get_config(self):
            return {}

        @staticmethod
        def build_from_config(config):
            return Elsewhere()

    _store_with(small, [[0.1] * 384], function=Elsewhere())
    index = KnowledgeIndex(small)
    _assert_rebuilt(index, small, "built with another embedding function (coachbot-test-elsewhere)")


def test_a_store_that_cannot_be_moved_aside_keeps_a_clear_error(small, monkeypatch):
    small.chroma_dir.parent.mkdir(parents=True)
    small.chroma_dir.write_text("not a directory")

    def refuse(self, target):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("pathlib.Path.rename", refuse)
    with pytest.raises(KnowledgeError, match="cannot be moved aside: Permission denied") as err:
        KnowledgeIndex(small).search("calm down")
    assert "move " in err.value.hint and "coachbot ingest" in err.value.hint
    assert small.chroma_dir.read_text() == "not a directory" and not _aside(small)


def test_a_store_without_permission_is_left_alone_with_a_clear_error(small, monkeypatch):
    _built(small)
    (small.chroma_dir / "chroma.sqlite3").write_bytes(b"\x00garbage" * 4096)
    monkeypatch.setattr("bot.knowledge.index.os.access", lambda path, mode: False)
    with pytest.raises(KnowledgeError, match="cannot use the Chroma store at") as err:
        _ = KnowledgeIndex(small).collection
    assert "permissions" in err.value.hint and not _aside(small)


def test_a_chroma_server_is_never_moved_or_rebuilt(small):
    import socket

    small.chroma_dir.parent.mkdir(parents=True)
    small.chroma_dir.write_text("not a directory")
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    server = make_settings(small.data_dir.parent, chroma_host="127.0.0.1", chroma_port=port)
    with pytest.raises(KnowledgeError, match=f"cannot open the Chroma store at 127.0.0.1:{port}"):
        _ = KnowledgeIndex(server).collection
    assert small.chroma_dir.read_text() == "not a directory" and not _aside(small)


def test_a_client_passed_in_is_never_moved_or_rebuilt(small):
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    _store_with(small, [[0.1] * 768])
    client = chromadb.PersistentClient(
        path=str(small.chroma_dir), settings=ChromaSettings(anonymized_telemetry=False)
    )
    with pytest.raises(KnowledgeError, match="768 dimensions") as err:
        _ = KnowledgeIndex(small, client=client).collection
    assert "COACHBOT_EMBEDDINGS" in err.value.hint and not _aside(small)
    client.close()


def test_cli_ingest_and_doctor_report_the_rebuild(small, monkeypatch):
    import json

    from typer.testing import CliRunner

    from bot.cli import common
    from bot.cli import main as cli
    from bot.cli.doctor import check_index

    monkeypatch.setattr(common, "get_settings", lambda: small)
    small.chroma_dir.parent.mkdir(parents=True)
    small.chroma_dir.write_text("not a directory")
    result = CliRunner().invoke(cli.app, ["ingest"])
    assert result.exit_code == 0, result.output
    assert "1 added" in result.stdout
    stderr = " ".join(result.stderr.split())
    assert "could not be used (it is a file, not a directory): moved it to chroma.broken-" in stderr

    (_aside(small)[0]).rename(small.data_dir / "kept")
    _built(small)
    (small.chroma_dir / "chroma.sqlite3").write_bytes(b"\x00garbage" * 4096)
    data = json.loads(CliRunner().invoke(cli.app, ["ingest", "--json"]).stdout)
    assert data["ok"] and data["counts"]["added"] == 1
    assert "file is not a database" in data["notices"][0]

    _built(small)
    (small.chroma_dir / "chroma.sqlite3").write_bytes(b"\x00garbage" * 4096)
    check = check_index(small)
    assert check.status == "warn" and "file is not a database" in check.detail
