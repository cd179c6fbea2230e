"""Knowledge files: the shipped articles, provenance, faithfulness, and unusable files."""

from __future__ import annotations

import re

import pytest
import yaml

from bot.knowledge.documents import load_documents, parse_document

from .conftest import ARTICLES_DIR, SEEDS_DIR

EXPECTED_ORIGINS = {
    "000_de7749b5180952da.txt",
    "001_d93e7393f2599106.txt",
    "002_e3d136b6d72fa88d.txt",
    "003_129ea2779eed958f.txt",
    "004_e1edace5d98b8d85.txt",
}


def _collapse(text: str) -> str:
    return re.sub(r"\s+", " ", text.replace("\u00a0", " ")).strip()


def test_all_articles_load_with_provenance():
    docs, skipped = load_documents(ARTICLES_DIR.parent)
    assert not skipped
    articles = [d for d in docs if d.doc_id.startswith("articles/")]
    assert {d.origin for d in articles} == EXPECTED_ORIGINS
    for doc in articles:
        assert doc.meta.title and doc.meta.publisher, doc.doc_id
        assert "license_note" in (doc.meta.model_extra or {})
    mcpheat = next(d for d in articles if d.origin.startswith("000_"))
    assert mcpheat.meta.author == "Sean McPheat"
    assert mcpheat.meta.published == "2014-12-02"


@pytest.mark.skipif(not SEEDS_DIR.is_dir(), reason="../shared/seeds is not beside the project")
@pytest.mark.parametrize("origin", sorted(EXPECTED_ORIGINS))
def test_article_text_is_faithful_to_its_seed(origin):
    doc = next(d for d in load_documents(ARTICLES_DIR.parent)[0] if d.origin == origin)
    seed = (SEEDS_DIR / origin).read_text(encoding="utf-8")
    seed = re.sub(r"^\s*(?:•|\d+\.)\s*", "", seed, flags=re.MULTILINE)
    seed_flat = _collapse(seed.replace("•", ""))
    paragraphs = [p for p in doc.body.split("\n\n") if p.strip() and not p.startswith("#")]
    assert len(paragraphs) >= 5
    for paragraph in paragraphs:
        text = re.sub(r"^(?:- |\d+\. )", "", paragraph.strip())
        assert _collapse(text) in seed_flat, f"{origin}: not in the source: {text[:80]}"


def test_page_debris_is_removed():
    text = "\n".join(p.read_text() for p in ARTICLES_DIR.glob("*.md"))
    for debris in (
        "Linkedin",
        "Related Articles",
        "Subscribe",
        "Dollarphotoclub",
        "JPKantor",
        "Arrow down",
    ):
        assert debris not in text


def test_user_file_without_front_matter(tmp_path):
    (tmp_path / "refunds.txt").write_text("Refunds are issued within 14 days.\n")
    (tmp_path / "faq.md").write_text("# Shipping FAQ\n\nWe ship on weekdays.\n")
    docs, skipped = load_documents(tmp_path)
    assert not skipped
    titles = {d.doc_id: d.meta.title for d in docs}
    assert titles == {"faq.md": "Shipping FAQ", "refunds.txt": "refunds"}
    assert all(d.origin == d.path.name for d in docs)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("latin1.md", "caf\xe9 au lait".encode("latin-1"), "not UTF-8"),
        ("empty.md", b"   \n\n", "empty file"),
        ("binary.txt", b"abc\x00def", "binary"),
        ("broken.md", b"---\ntitle: [unclosed\n---\nBody\n", "broken front matter"),
        ("unclosed.md", b"---\ntitle: x\nBody without end\n", "no closing"),
        ("notitle.md", b"---\ntitle: ''\n---\nBody\n", "field 'title'"),
        ("list.md", b"---\n- a\n- b\n---\nBody\n", "key: value"),
        ("nobody.md", b"---\ntitle: T\n---\n\n", "no text after"),
    ],
)
def test_unusable_files_are_named_and_skipped(tmp_path, name, content, reason):
    (tmp_path / name).write_bytes(content)
    (tmp_path / "good.md").write_text("# Good\n\nFine text.\n")
    docs, skipped = load_documents(tmp_path)
    assert [d.doc_id for d in docs] == ["good.md"]
    assert len(skipped) == 1 and skipped[0].path == name
    assert reason in skipped[0].reason


def test_oversized_file_is_skipped(tmp_path, monkeypatch):
    from bot.knowledge import documents

    monkeypatch.setattr(documents, "MAX_FILE_BYTES", 100)
    (tmp_path / "big.md").write_text("word " * 100)
    docs, skipped = load_documents(tmp_path)
    assert not docs and "too large" in skipped[0].reason


def test_symlink_outside_the_root_is_refused(tmp_path):
    outside = tmp_path / "outside.md"
    outside.write_text("# Secret\n\nshould not be ingested\n")
    root = tmp_path / "knowledge"
    root.mkdir()
    (root / "link.md").symlink_to(outside)
    docs, skipped = load_documents(root)
    assert not docs and skipped[0].reason == "links outside the knowledge directory"


def test_front_matter_parses_as_yaml():
    for path in ARTICLES_DIR.glob("*.md"):
        head = path.read_text().split("---")[1]
        assert isinstance(yaml.safe_load(head), dict)
        assert parse_document(path, ARTICLES_DIR.parent).meta.origin in EXPECTED_ORIGINS


def test_broken_front_matter_names_the_line_in_the_file(tmp_path):
    (tmp_path / "bad.md").write_text("---\ntitle: T\nauthor: : x\n---\nBody\n")
    _, skipped = load_documents(tmp_path)
    assert skipped[0].reason.startswith("broken front matter at line 3:")


def test_empty_front_matter_is_allowed(tmp_path):
    (tmp_path / "bare-notes.md").write_text("---\n---\nBody\n")
    docs, skipped = load_documents(tmp_path)
    assert not skipped and docs[0].meta.title == "bare notes" and docs[0].body == "Body\n"
